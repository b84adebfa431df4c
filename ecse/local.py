r"""Local (per-atom) frame ensembles, for message-passing backbones.

The global ensemble (:mod:`ecse.frameset`) evaluates the whole model once per retained
frame of a graph, so its cost grows with the system.  A *local* ensemble symmetrises
every per-atom update instead: atom :math:`i` gets its own frames :math:`F_{ik}` (built
from its own neighbours, weighted and pruned per atom with the published rules), the
update :math:`g` is evaluated once per frame on the atom's environment expressed in that
frame, and the results are averaged,

.. math::
    h_i = \frac{\sum_k w_{ik}\; F_{ik} \cdot g\big(\{\mathbf r_{ij} F_{ik}\}_j, m_{ij}\big)
               + w^{aux}_i\; \pi\, g\big(\{\mathbf 0\}_j, m_{ij}\big)}
              {\sum_k w_{ik} + w^{aux}_i},

where :math:`F \cdot` is the action on the output type (identity for invariant features
and messages) and the auxiliary term evaluates the update with every direction removed
(zero vectors; invariant edge features such as :math:`|\mathbf r_{ij}|` stay), projected
by :math:`\pi` onto the invariant part of the output type.  A backbone may also hand
over the per-edge outputs of these direction-free copies: they are then placed along
their edges by the axial readout (:mod:`ecse.axial`), so an atom without frames (every
atom of a linear molecule) still contributes vectors and anisotropic tensors.  A rotation maps
:math:`F_{ik} \to R F_{ik}` and leaves :math:`\mathbf r_{ij} F_{ik}` and the weights
unchanged, so invariant features stay exactly invariant layer after layer, and covariant
outputs rotate exactly.  The cost is about (mean frames per atom) times the bare model,
independent of the system size, for a backbone that runs each update on every copy.  A
backbone may instead average only its direction-dependent inputs over the copies and run
the rest once per atom (PET's ``frame_average="tokens"``: edge tokens), at about the bare
model's cost.

Interface for a backbone (see :class:`ecse.backbones.PET` for a complete example): accept
``forward(data, local_frames=None)``; when given a :class:`LocalFrames`, evaluate each
per-atom update on the *copies* ``lf.atom`` (one per frame, plus auxiliary copies), with
the edges of ``lf.edge_copies(center)``, directions ``lf.rotate(vectors, copy)``, and
average with ``lf.combine`` / ``lf.combine_edges`` / ``lf.combine_covariant``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .axial import axial_covariant
from .covariant import OutputSpec
from .frames import Frames, add_mirror_frames
from .frameset import FrameParams, candidate_frames
from .pruning import auxiliary_weight, prune_weights

__all__ = ["LocalFrames", "assemble_local_frames", "local_frames"]


class LocalFrames(NamedTuple):
    """Per-atom frame copies with normalised weights.

    Attributes:
        atom: ``[C]`` atom of each copy, sorted.
        rotation: ``[C, 3, 3]`` frame of each copy, axes as columns (identity for the
            auxiliary copies).
        weight: ``[C]`` :math:`w_{ik} / (\\sum_k w_{ik} + w^{aux}_i)`; sums to 1 per atom.
        invariant: ``[C]`` True for auxiliary copies (they see no directions).
        num_atoms: ``N``.
        aux_weight: ``[N]`` unnormalised auxiliary weight per atom.
        num_candidates: frames with weight > 0 before pruning (all atoms).
        inner_cutoff: ``[N]`` adaptive inner cutoff per atom.
    """

    atom: Tensor
    rotation: Tensor
    weight: Tensor
    invariant: Tensor
    num_atoms: int
    aux_weight: Tensor
    num_candidates: int
    inner_cutoff: Tensor

    @property
    def num_frames(self) -> int:
        """Number of frame copies (auxiliary copies excluded)."""
        return int((~self.invariant).sum())

    def edge_copies(self, center: Tensor) -> tuple[Tensor, Tensor]:
        """Copies of the edges: every edge of a copy's atom, once per copy.

        Args:
            center: ``[E]`` centre atom of each edge, sorted.

        Returns:
            ``(copy, edge)``, both ``[E_c]`` and sorted by copy: the copy each edge copy
            belongs to and the original edge it repeats.
        """
        degree = torch.bincount(center, minlength=self.num_atoms)
        start = torch.cumsum(degree, 0) - degree
        per_copy = degree[self.atom]
        copy = torch.repeat_interleave(torch.arange(self.atom.numel(), device=center.device), per_copy)
        first = torch.cumsum(per_copy, 0) - per_copy
        edge = start[self.atom][copy] + torch.arange(copy.numel(), device=center.device) - first[copy]
        return copy, edge

    def rotate(self, vectors: Tensor, copy: Tensor) -> Tensor:
        """``vectors[e] @ rotation[copy[e]]`` (frame coordinates), zero for auxiliary copies;
        computed in the frames' precision and returned in ``vectors.dtype``.

        Shapes: ``vectors`` ``[E_c, 3]``, ``copy`` ``[E_c]`` -> ``[E_c, 3]``.
        """
        rot = self.rotation[copy]
        out = torch.einsum("ei,eij->ej", vectors.to(rot.dtype), rot)
        return out.masked_fill(self.invariant[copy, None], 0.0).to(vectors.dtype)

    def combine(self, values: Tensor) -> Tensor:
        """Weighted per-atom average of invariant per-copy values: ``[C, ...]`` -> ``[N, ...]``."""
        w = self.weight.to(values.dtype).reshape(-1, *([1] * (values.dim() - 1)))
        return values.new_zeros(self.num_atoms, *values.shape[1:]).index_add(0, self.atom, values * w)

    def combine_edges(self, values: Tensor, copy: Tensor, edge: Tensor, num_edges: int) -> Tensor:
        """Weighted average of invariant per-edge-copy values over the copies of each edge:
        ``[E_c, ...]`` -> ``[E, ...]``."""
        w = self.weight.to(values.dtype)[copy].reshape(-1, *([1] * (values.dim() - 1)))
        return values.new_zeros(num_edges, *values.shape[1:]).index_add(0, edge, values * w)

    def combine_covariant(self, values: Tensor, spec: OutputSpec, aux_edge_values: Optional[Tensor] = None,
                          aux_edge_copy: Optional[Tensor] = None,
                          aux_edge_vectors: Optional[Tensor] = None) -> Tensor:
        """Rotate per-copy predictions back to the lab frame and average them per atom.

        ``values`` ``[C, *components]`` are in each copy's frame; auxiliary copies keep only
        the invariant part of the type (vectors: none; rank-2: the isotropic trace part;
        Irreps: the ``0e`` blocks), which keeps the average exactly covariant.  A backbone
        may add per-edge outputs of auxiliary copies, ``aux_edge_values`` ``[E_a,
        *components]`` of copies ``aux_edge_copy`` ``[E_a]`` with lab-frame edge vectors
        ``aux_edge_vectors`` ``[E_a, 3]``: they are placed along their edges by the axial
        readout (:func:`ecse.axial.axial_covariant`), so such atoms keep a covariant
        (e.g. dipole) contribution.
        """
        geo = self.rotation.dtype
        rotated = spec.act(values.to(geo), self.rotation)
        invariant_part = spec.invariant_part(values.to(geo))
        if aux_edge_values is not None and aux_edge_values.shape[0] > 0:
            if not bool(self.invariant[aux_edge_copy].all()):
                raise ValueError("aux_edge_copy must index auxiliary (invariant) copies only")
            edges = axial_covariant(aux_edge_values.to(geo), aux_edge_vectors.to(geo), spec)
            invariant_part = invariant_part.index_add(0, aux_edge_copy, edges)
        mask = self.invariant.reshape(-1, *([1] * (values.dim() - 1)))
        return self.combine(torch.where(mask, invariant_part, rotated)).to(values.dtype)


def local_frames(pos: Tensor, cutoff: float, batch: Optional[Tensor] = None, cell: Optional[Tensor] = None,
                 pbc: Optional[Tensor] = None, params: FrameParams = FrameParams(),
                 o3: bool = False) -> LocalFrames:
    """Weighted, per-atom pruned frames of every atom, plus auxiliary copies.

    Args:
        pos: ``[N, 3]`` positions (use float64 for exactness).
        cutoff: neighbours within ``min(cutoff, params.max_outer_cutoff)`` define frames.
        batch, cell, pbc: as in :func:`ecse.neighbors.neighbor_list`.
        params: :class:`~ecse.frameset.FrameParams` (ecse's defaults;
            :meth:`~ecse.frameset.FrameParams.published` for the published ones).
        o3: add the mirror image of every frame (exact under reflections too).

    Example:
        >>> import torch
        >>> pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.1]], dtype=torch.float64)
        >>> lf = local_frames(pos, 3.0)
        >>> torch.allclose(lf.combine(torch.ones(lf.atom.numel(), dtype=torch.float64)), torch.ones(4, dtype=torch.float64))
        True
    """
    n = pos.shape[0]
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    _, r_in, frames = candidate_frames(pos, cutoff, batch, cell, pbc, params)
    return assemble_local_frames(frames, r_in, n, params, o3)


def assemble_local_frames(frames: Frames, r_in: Tensor, num_centers: int, params: FrameParams = FrameParams(),
                          o3: bool = False) -> LocalFrames:
    """Per-centre ensembles from candidate ``frames``: auxiliary weight, pruning, optional
    mirror frames, one identity copy per centre that needs the auxiliary path, weights
    normalised per centre, copies sorted by centre.

    Shared by :func:`local_frames` (frames from an atom's neighbour list) and
    :func:`ecse.pyg.edge_local_frames` (frames from a layer's own edges).
    """
    n, p = num_centers, params
    aux = auxiliary_weight(frames.weight, frames.center, n, p.aux_threshold)
    weight = prune_weights(frames.weight, frames.center, n, p.pruning_threshold, p.num_prunings,
                           p.aux_threshold)
    keep = weight > 0
    kept = Frames(frames.center[keep], frames.rotation[keep], weight[keep])
    if o3:
        kept = add_mirror_frames(kept)
    aux_atoms = torch.nonzero(aux > 0).reshape(-1)
    eye = torch.eye(3, dtype=r_in.dtype, device=r_in.device).expand(aux_atoms.numel(), 3, 3)
    atom = torch.cat([kept.center, aux_atoms])
    rotation = torch.cat([kept.rotation, eye])
    raw = torch.cat([kept.weight, aux[aux_atoms]])
    invariant = torch.cat([torch.zeros_like(kept.center, dtype=torch.bool),
                           torch.ones_like(aux_atoms, dtype=torch.bool)])
    norm = r_in.new_zeros(n).index_add(0, atom, raw)
    order = torch.argsort(atom, stable=True)
    atom = atom[order]
    return LocalFrames(atom, rotation[order], raw[order] / norm[atom], invariant[order], n, aux,
                       int((frames.weight > 0).sum()), r_in)
