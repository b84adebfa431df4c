"""Bookkeeping of ``ECSE``'s backbone passes: chunks of frames, the cost warning, statistics.

Private helpers of :class:`ecse.ensemble.ECSE`; they decide how the retained frames of a
batch are grouped into backbone calls and report what a call cost, without touching the
values the ensemble computes.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

__all__ = ["frame_chunks", "warn_if_costly", "global_stats", "local_stats", "check_output_shape", "aux_offsets"]


def batch_statistics_in_use(module) -> bool:
    """Whether ``module`` normalises with the statistics of the current batch (a batch-norm
    layer in training mode), so that splitting a call into chunks would change its output."""
    return isinstance(module, nn.Module) and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in module.modules())


def frame_chunks(graph: Tensor, batch: Tensor, num_graphs: int, pair_center: Tensor, chunk_size, backbone) \
        -> list[Tensor]:
    """Split the frames into consecutive groups of about ``chunk_size`` copied tokens.

    Tokens are nodes plus neighbour pairs (``pair_center`` ``[P]``: the centre of each
    pair); frame ``k`` of graph ``graph[k]`` goes to chunk ``floor(start / chunk_size)``,
    ``start`` being the number of tokens copied before it, so a chunk holds at most
    ``chunk_size`` tokens plus one graph.  One chunk when ``chunk_size`` is ``None`` or the
    backbone normalises with batch statistics (chunking would change its output); none when
    there is no frame.
    """
    n_frames = graph.numel()
    if n_frames == 0:
        return []  # every graph is carried by the auxiliary model
    frames = torch.arange(n_frames, device=graph.device)
    if chunk_size is None or batch_statistics_in_use(backbone):
        return [frames]
    tokens = torch.bincount(batch, minlength=num_graphs) + torch.bincount(batch[pair_center], minlength=num_graphs)
    sizes = tokens[graph]
    chunk_of_frame = (torch.cumsum(sizes, 0) - sizes) // chunk_size
    counts = torch.unique_consecutive(chunk_of_frame, return_counts=True)[1]
    return list(torch.split(frames, counts.tolist()))


def warn_if_costly(graph: Tensor, num_graphs: int, threshold: int) -> bool:
    """One warning when a structure needs more than ``threshold`` backbone passes; whether it warned."""
    if graph.numel() <= threshold:
        return False
    passes = int(torch.bincount(graph, minlength=num_graphs).max())
    if passes > threshold:
        warnings.warn(f"ECSE global mode: a structure needs {passes} backbone passes (one per retained frame; "
                      f"warning above {threshold}); for solids and other large systems, "
                      "mode='local' costs about (frames per atom) passes of a message-passing backbone, "
                      "about one to two with ecse.backbones.PET(frame_average='tokens') trained through the "
                      "ensemble (shown once per model)",
                      stacklevel=2)
        return True
    return False


def global_stats(fs, num_graphs: int, num_centers: int, o3: bool) -> dict:
    """``ECSE.last_stats`` of a global-mode call on the frame set ``fs``."""
    kept = fs.frames.weight.numel() // (2 if o3 else 1)
    return {
        "frames_per_graph": kept / num_graphs,
        "frames_per_graph_before_pruning": fs.num_candidates / num_graphs,
        "frames_per_centre": kept / num_centers,
        "frames_per_centre_before_pruning": fs.num_candidates / num_centers,
        "backbone_evaluations": fs.frames.weight.numel(),
        "inner_cutoff_mean": float(fs.inner_cutoff.detach().mean()),
        "aux_weight_max": float(fs.aux_weight.detach().max()),
    }


def local_stats(lf, num_graphs: int, o3: bool) -> dict:
    """``ECSE.last_stats`` of a local-mode call on the local frames ``lf``."""
    n, mirrors = max(lf.num_atoms, 1), (2 if o3 else 1)
    return {
        "frames_per_atom": lf.num_frames / mirrors / n,
        "frames_per_atom_before_pruning": lf.num_candidates / n,
        "frames_per_graph": lf.num_frames / mirrors / num_graphs,
        "backbone_copies_per_atom": lf.atom.numel() / n,
        "aux_atoms": int((lf.aux_weight > 0).sum()),
        "inner_cutoff_mean": float(lf.inner_cutoff.detach().mean()) if lf.num_atoms else float("nan"),
        "aux_weight_max": float(lf.aux_weight.detach().max()) if lf.num_atoms else 0.0,
    }


def check_output_shape(y: Tensor, n: int, out_shape: tuple, level: str, who: str = "backbone") -> None:
    """Raise ``ValueError`` unless ``y`` has shape ``(n, *out_shape)``."""
    if tuple(y.shape) != (n, *out_shape):
        raise ValueError(f"{who} output has shape {tuple(y.shape)} but ECSE expects "
                         f"({n}, *out_shape={out_shape}) for level={level!r}; "
                         "set out_shape (e.g. out_shape=(num_classes,)) or level to match")


def aux_offsets(backbone, spec, level: str, out_shape: tuple, data, batch: Tensor, num_graphs: int,
                like: Tensor) -> Tensor:
    """The backbone's per-species offsets (``composition_offsets``, as PET's), which the
    default auxiliary model adds to its own prediction: a structure whose frames all
    vanish (a molecule dissociating in MD) then keeps its baseline energy instead of
    jumping to the auxiliary model's O(1) value.  Zero when the backbone has none or the
    output has no isotropic part of the spec's shape."""
    offsets, z = getattr(backbone, "composition_offsets", None), getattr(data, "z", None)
    if offsets is None or z is None or not spec.has_isotropic or tuple(out_shape) != spec.component_shape:
        return like.new_zeros(())
    per_node = offsets.to(like)[z.long().reshape(-1)]
    if level == "graph":
        per_node = like.new_zeros(num_graphs).index_add(0, batch, per_node)
    return spec.isotropic(per_node)
