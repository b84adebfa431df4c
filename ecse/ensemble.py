r"""``ECSE``: wrap any PyG model so that it is exactly rotation equivariant and smooth.

.. math::
    y(X) = \frac{\sum_k w_k\, F_k \cdot f\big((X - x_{o_k}) F_k\big) + w_{aux}\, f_{aux}(X)}
                {\sum_k w_k + w_{aux}}

where the frames :math:`(o_k, F_k, w_k)` are built from the cloud itself
(:mod:`ecse.frameset`), :math:`F \cdot` is the action of the frame on the output type
(:mod:`ecse.covariant`) and :math:`f_{aux}` is an intrinsically symmetric fallback
(:mod:`ecse.auxiliary`).  A global rotation ``X -> X R^T`` maps every frame to
``R F_k`` and leaves the weights and the frame coordinates unchanged, so ``y`` rotates
exactly; each copy is centred on its frame's origin, so ``y`` is also exactly
translation invariant.  Everything is a smooth function of ``X``: forces and other
derivatives come from autograd.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._ensemble_bookkeeping import (aux_offsets, check_output_shape, frame_chunks, global_stats, local_stats,
                                   warn_if_costly)
from ._memory import release_free_memory
from ._validation import check_input_dtype, check_point_cloud
from .auxiliary import DistanceAux
from .covariant import OutputSpec
from .frameset import PUBLISHED, FrameParams, global_frames
from .local import local_frames
from .pyg import LocalPointModel
from .replicate import replicate_in_frames

__all__ = ["ECSE", "GLOBAL_PASSES_WARNING", "MEMORY_BOUND_GB"]

GLOBAL_PASSES_WARNING = 64
"""Global mode warns (once per call) when a structure needs more backbone passes (retained
frames, mirror images included) than this; a perfect crystal keeps every frame of every
atom (a 4-atom fcc cell: 96), a small molecule a few (methane: 2 to 8)."""

MEMORY_BOUND_GB = 4.0
"""Bound on the peak memory growth (GB, resident) of energy and forces in float64 of
``ECSE(PET(), cutoff=5.0)``, global or local mode, default arguments, for structures up to
2000 atoms at the densities of solids and liquids (perfect fcc, bcc, hcp and diamond
crystals included).  ECSE's
``chunk_size`` and PET's ``chunk_tokens`` cap the tokens held at once (PET runs an input of
up to ``chunk_above`` tokens in one call, within the bound; both ``"auto"`` by default,
which keeps a group of a wider or deeper PET at about the memory of ``PET()``'s); what remains grows
with the number of atoms and of neighbour pairs (the frames of every atom and a few
per-edge tensors of width ``d_model``), largest for dense crystals such as diamond
carbon (86 neighbours within 5 Å).  ``tests/test_memory.py`` checks the worst cases CI
can afford."""


class ECSE(nn.Module):
    r"""Equivariant Coordinate System Ensemble around a backbone ``f(data)``.

    Args:
        backbone: any ``nn.Module`` called as ``backbone(data)`` on a PyG ``Batch``,
            returning ``[num_graphs, ...]`` (``level="graph"``) or ``[num_nodes, ...]``
            (``level="node"``).
        cutoff: radius within which neighbours define frames (the backbone's cutoff
            for atomistic models), in the unit of ``pos``.
        output: ``"scalar"``, ``"vector"``, ``"rank2"``, ``"rank2-symmetric"`` or an
            e3nn Irreps string (see :mod:`ecse.covariant` for the expected sizes).
        level: ``"graph"`` or ``"node"``.
        o3: also exact under reflections (adds the mirror image of every frame, so it
            doubles the cost).  With ``o3=False`` (SO(3)), reflecting the input gives
            what this wrapper gives for the mirrored backbone ``f(x @ diag(1,-1,1))``.
        aux: fallback for clouds without a usable frame: ``"default"`` (a learnable
            :class:`~ecse.auxiliary.DistanceAux`, plus the backbone's per-species
            ``composition_offsets`` when it has them, as PET does), an ``nn.Module`` with the same
            call signature, or ``None`` (then such a cloud raises ``ValueError``).
        out_shape: per-item output shape after reshaping, e.g. ``(5,)`` for five
            invariant logits; default ``()`` for scalars and the component shape
            otherwise (``(3,)``, ``(3, 3)``, ``(irreps.dim,)``).
        chunk_size: global mode: about this many *tokens* per backbone call, a token being
            a node or a neighbour pair within ``cutoff`` of a frame copy (what a
            message-passing backbone holds; at most this plus one copy per call).  With
            more than one chunk, each chunk (copies, backbone, rotation back) is
            recomputed in the backward pass (``torch.utils.checkpoint``), so energies,
            forces and training stay within one chunk's memory; the default (2048),
            with ``PET``'s default ``chunk_tokens``, keeps the peak memory of energy and
            forces in float64 within :data:`MEMORY_BOUND_GB` (see there).  ``None``:
            all frames in one call.  A backbone with batch-norm layers in training mode
            is always called once on all frames: its batch statistics span the call, so
            chunks would change the result.
        vector_attrs: node/edge/graph attributes rotated like positions (all others
            are passed unchanged and must be invariant).
        beta, aux_threshold, pruning_threshold, max_outer_cutoff: see
            :class:`~ecse.frameset.FrameParams` (published defaults).
        angle_threshold, angle_width, cutoff_angle_start, radial_width, num_prunings: see
            :class:`~ecse.frameset.FrameParams`.  ``None`` (default): ecse's smooth settings
            (0.12, 0.12, 0.03, 0.5, no pruning), which keep forces and molecular dynamics
            about as smooth as the backbone's; except for a
            PyG point model in local mode (:class:`ecse.pyg.LocalPointModel`:
            classification and segmentation, no derivative), which gets the published
            ones (:data:`ecse.frameset.PUBLISHED`: 0.2, 0.15, 0.2, 0.15, 4 rounds; several times fewer
            frames on shapes).  Pass them to choose either way.
        mode: ``"global"`` (default): the whole backbone is evaluated once per retained
            frame of each graph (any backbone): the right tool for molecules, point
            clouds and backbones that are not message passing.  A solid pools the
            frames of all its atoms, so it costs hundreds of backbone passes of the
            whole cell (a perfect 8-atom diamond cell: 96); ``forward`` warns, once
            per model, when a structure needs more than :data:`GLOBAL_PASSES_WARNING`
            passes.
            ``"local"``: every per-atom update of a message-passing backbone is
            evaluated in that atom's own frames and averaged (:mod:`ecse.local`), linear in
            system size: about (frames per atom) x the bare model, or about one to two
            bare passes for PET with ``frame_average="tokens"`` (each edge token averaged over
            the atom's frames; cheaper on solids, for weights trained through it).  Needs a
            backbone with ``forward(data, local_frames=...)`` such as
            ``ecse.backbones.PET``; the auxiliary path is then the backbone's own
            direction-free evaluation, and ``aux``/``chunk_size`` are not used.  Any other
            model (PyG point models: PointNet2, DGCNN, PointTransformer, your own
            ``MessagePassing`` on ``pos``) gets its layers that read relative positions
            evaluated in their centres' own frames (:class:`ecse.pyg.LocalPointModel`;
            covariant outputs at ``level="node"`` only).
        length_scale: the length-valued settings (``1/beta``, ``radial_width``,
            ``max_outer_cutoff``) are in units of ``length_scale``.  The published
            values are for Å and a 5 Å cutoff; for clouds in other units use e.g.
            ``length_scale=cutoff / 5`` (otherwise unit-size shapes get thousands of
            near-equal frames).

    Shapes:
        input: ``data.pos`` ``[N, 3]``, optional ``batch`` ``[N]``, ``cell`` ``[B, 3, 3]``.
        output: ``[B, *out_shape]`` or ``[N, *out_shape]``.

    ``forward`` raises ``ValueError`` (naming both) when ``data.pos`` and the backbone's
    parameters differ in dtype or device.  After each call, ``last_stats`` holds frame
    statistics (frames per graph before and after pruning, frames per centre, inner
    cutoffs, auxiliary weights).

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from torch_geometric.utils import scatter
        >>> def backbone(data):  # any PyG model; this one is far from invariant
        ...     return scatter(data.pos[:, 0] ** 3, data.batch, dim=0, dim_size=data.num_graphs)
        >>> model = ECSE(backbone, cutoff=3.0, aux=None)
        >>> pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1.2, 0], [0.3, 0.2, 1]], dtype=torch.float64)
        >>> R = torch.tensor([[0., -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
        >>> a, b = model(Data(pos=pos)), model(Data(pos=pos @ R.T + 1.0))
        >>> bool(torch.allclose(a, b, atol=1e-12))
        True
    """

    def __init__(self, backbone: nn.Module, cutoff: float, output: str = "scalar", level: str = "graph",
                 o3: bool = False, aux: Union[str, nn.Module, None] = "default",
                 out_shape: Optional[Sequence[int]] = None, chunk_size: Optional[int] = 2048,
                 vector_attrs: Sequence[str] = (), beta: float = 5.0, angle_threshold: Optional[float] = None,
                 angle_width: Optional[float] = None, cutoff_angle_start: Optional[float] = None,
                 radial_width: Optional[float] = None, aux_threshold: float = 0.5,
                 pruning_threshold: float = 0.9, num_prunings: Optional[int] = None, max_outer_cutoff: float = 10.0,
                 length_scale: float = 1.0, mode: str = "global"):
        super().__init__()
        if mode not in ("global", "local"):
            raise ValueError(f"mode must be 'global' or 'local', got {mode!r}")
        backbone_output = getattr(getattr(backbone, "spec", None), "name", None)
        if mode == "local" and backbone_output is not None and backbone_output != output:
            raise ValueError(f"the backbone predicts output={backbone_output!r} but ECSE was given "
                             f"output={output!r}")
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number, got {cutoff!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
        self.backbone, self.mode = backbone, mode
        self.cutoff, self.level, self.o3 = float(cutoff), level, bool(o3)
        self.spec = OutputSpec(output)
        self.out_shape = tuple(self.spec.component_shape if out_shape is None else out_shape)
        self.chunk_size, self.vector_attrs = chunk_size, tuple(vector_attrs)
        point_model = mode == "local" and not getattr(backbone, "supports_local_frames", False)
        given = {"angle_threshold": angle_threshold, "angle_width": angle_width,
                 "cutoff_angle_start": cutoff_angle_start, "radial_width": radial_width, "num_prunings": num_prunings}
        frame_settings = {**(PUBLISHED if point_model else {}), **{k: v for k, v in given.items() if v is not None}}
        self.params = FrameParams.scaled(length_scale, beta=beta,
                                         aux_threshold=aux_threshold, pruning_threshold=pruning_threshold,
                                         max_outer_cutoff=max_outer_cutoff, **frame_settings)
        if point_model:
            # an unchanged PyG point model: its layers that read relative positions are
            # evaluated in their centres' own frames (ecse.pyg; ValueError if it has none)
            self.backbone = LocalPointModel(backbone, self.cutoff, self.params, self.o3, output, level)
        if aux == "default" and mode == "local":
            aux = None  # the backbone's own direction-free evaluation is the auxiliary path
        self._aux_is_default = aux == "default"
        if aux == "default":
            outer = min(self.cutoff, self.params.max_outer_cutoff)
            aux = DistanceAux(output, self.out_shape, outer, level, o3)
            dtypes = {p.dtype for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
            if len(dtypes) == 1:
                aux = aux.to(dtypes.pop())  # follow a float64 backbone
        elif aux is not None and not isinstance(aux, nn.Module):
            raise ValueError("aux must be 'default', an nn.Module or None")
        self.aux = aux
        self.last_stats: dict = {}
        self._warned_above: Optional[int] = None  # the pass threshold this model has warned about

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.backbone.__class__.__name__}, cutoff={self.cutoff}, "
                f"output={self.spec.name!r}, level={self.level!r}, o3={self.o3}, mode={self.mode!r})")

    def forward(self, data) -> Tensor:
        pos, batch, num_graphs = check_point_cloud(data)
        if isinstance(self.backbone, nn.Module):
            check_input_dtype(self.backbone, pos, owner="ECSE")
        # geometry (frames, frame coordinates, rotating back, averaging) in float64 at
        # least; only the backbone (and aux) run in the data's precision
        geo = torch.promote_types(pos.dtype, torch.float64) if pos.device.type != "mps" else pos.dtype
        pos_geo = pos.to(geo)
        cell = getattr(data, "cell", None)
        if self.mode == "local":
            return self._forward_local(data, pos_geo, batch, num_graphs, cell, geo)
        fs = global_frames(pos_geo, self.cutoff, batch, num_graphs, None if cell is None else cell.to(geo),
                           getattr(data, "pbc", None), self.params, self.o3)
        frames, graph = fs.frames, fs.graph
        num_items = num_graphs if self.level == "graph" else pos.shape[0]
        total = pos_geo.new_zeros(num_items, *self.out_shape)
        # once per model (MD and training loops call it often); getattr: models pickled before
        if getattr(self, "_warned_above", None) != GLOBAL_PASSES_WARNING:
            if warn_if_costly(graph, num_graphs, GLOBAL_PASSES_WARNING):
                self._warned_above = GLOBAL_PASSES_WARNING
        chunks = frame_chunks(graph, batch, num_graphs, fs.neighbors.center, self.chunk_size, self.backbone)
        # with several chunks, each chunk (copies, backbone, rotation back) is recomputed in
        # the backward pass instead of keeping its activations: memory stays within one chunk
        several = len(chunks) > 1
        run = partial(self._evaluate_frames, data, batch, num_graphs, num_items, fs, pos_geo, several)
        for chunk in chunks:
            total = total + (checkpoint(run, chunk, use_reentrant=False) if several and torch.is_grad_enabled()
                             else run(chunk))
        weight_sum = pos_geo.new_zeros(num_graphs).index_add(0, graph, frames.weight)
        aux_weight = fs.aux_weight
        if bool((aux_weight > 0).any()):
            if self.aux is None:
                raise ValueError("a cloud has no usable frame (too few points, collinear, or no wide-angle "
                                 "pair within the cutoff) and aux=None; pass aux='default' or a model")
            aux_dtypes = {p.dtype for p in self.aux.parameters() if p.is_floating_point()}
            if aux_dtypes and aux_dtypes != {pos.dtype}:
                raise ValueError(f"the auxiliary model is {aux_dtypes.pop()} but data.pos is {pos.dtype}: "
                                 "convert the whole wrapper, e.g. model.double()")
            nl = fs.neighbors
            y_aux = self.aux(nl.center, nl.neighbor, nl.vector.to(pos.dtype), pos.shape[0], batch, num_graphs,
                             getattr(data, "z", None)).to(geo)
            check_output_shape(y_aux, num_items, self.out_shape, self.level, "aux")
            if self._aux_is_default:
                y_aux = y_aux + aux_offsets(self.backbone, self.spec, self.level, self.out_shape, data, batch,
                                            num_graphs, y_aux)
            scale = aux_weight if self.level == "graph" else aux_weight[batch]
            total = total + y_aux * scale.reshape(-1, *([1] * len(self.out_shape)))
        norm = weight_sum + aux_weight
        if self.level == "node":
            norm = norm[batch]
        self.last_stats = global_stats(fs, num_graphs, pos.shape[0], self.o3)
        return (total / norm.reshape(-1, *([1] * len(self.out_shape)))).to(pos.dtype)

    def _evaluate_frames(self, data, batch: Tensor, num_graphs: int, num_items: int, fs, pos_geo: Tensor,
                         release: bool, chunk: Tensor) -> Tensor:
        """The weighted, rotated-back backbone outputs of frames ``chunk``, summed per item
        ``[num_items, *out_shape]``."""
        if release:
            release_free_memory()  # the previous chunk's freed activations (here and when recomputed)
        frames, graph = fs.frames, fs.graph
        copies = replicate_in_frames(data, batch, num_graphs, graph[chunk], frames.center[chunk],
                                     frames.rotation[chunk], self.vector_attrs, pos=pos_geo)
        y = self.spec.components(self.backbone(copies.batch)).to(pos_geo.dtype)
        if self.level == "graph":
            rotation, weight, target = frames.rotation[chunk], frames.weight[chunk], graph[chunk]
        else:
            local = copies.node_copy
            rotation, weight = frames.rotation[chunk][local], frames.weight[chunk][local]
            target = copies.node_source
        check_output_shape(y, rotation.shape[0], self.out_shape, self.level)
        y = self.spec.act(y, rotation) * weight.reshape(-1, *([1] * (y.dim() - 1)))
        return pos_geo.new_zeros(num_items, *self.out_shape).index_add(0, target, y)

    def _forward_local(self, data, pos_geo: Tensor, batch: Tensor, num_graphs: int, cell, geo) -> Tensor:
        num_items = num_graphs if self.level == "graph" else pos_geo.shape[0]
        if isinstance(self.backbone, LocalPointModel):  # frames per layer centre (ecse.pyg)
            y = self.backbone(data)
            check_output_shape(y, num_items, self.out_shape, self.level)
            self.last_stats = dict(self.backbone.last_stats)
            return y
        lf = local_frames(pos_geo, self.cutoff, batch, None if cell is None else cell.to(geo),
                          getattr(data, "pbc", None), self.params, self.o3)
        y = self.backbone(data, local_frames=lf)
        check_output_shape(y, num_items, self.out_shape, self.level)
        self.last_stats = local_stats(lf, num_graphs, self.o3)
        return y
