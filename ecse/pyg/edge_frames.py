r"""Per-centre frames built from a layer's own edges, and the edges repeated per frame.

A message-passing layer aggregates, at each centre :math:`i`, messages from the sources
:math:`j` of its edges :math:`j \to i`.  :func:`edge_local_frames` builds the frames of
every centre from exactly these displacements :math:`\mathbf r_{ij} = \mathbf p_j -
\mathbf p_i` with the published ECSE rules (adaptive inner cutoff, pair frames, weights,
per-centre pruning, auxiliary weight: :mod:`ecse.cutoff`, :mod:`ecse.frames`,
:mod:`ecse.pruning`), and returns them as a :class:`~ecse.local.LocalFrames` (one copy
per retained frame of a centre plus one auxiliary copy where the auxiliary weight is
non-zero; weights sum to one per centre).  :func:`frame_coordinates` then expresses
every edge of a copy in that copy's frame,

.. math::
    \mathbf r_{ij} F_{ik} \quad\text{(frame copies)}, \qquad
    (|\mathbf r_{ij}|, 0, 0) \quad\text{(auxiliary copies)},

both unchanged by a rotation :math:`\mathbf p \to \mathbf p R^T` (which maps
:math:`F_{ik} \to R F_{ik}`).  The auxiliary copies keep each neighbour's distance but
no direction, so a centre without a usable frame (collinear or too few neighbours) still
sees its radial environment.

Smoothness: weights, inner cutoff and pruning are smooth in the positions for a fixed
edge set, and an edge longer than the outer cutoff :math:`r_{out}` does not make frames
(its weight fades out with :math:`f_c(r; r_{out}, \delta)`).  So the frames are
continuous wherever the layer's edge set does not change, and also when an edge
appears or disappears beyond :math:`r_{out}` (a radius layer with radius at least
``cutoff``).  A k-nearest-neighbour edge set changes when the k-th and (k+1)-th
neighbours swap; there the bare layer itself jumps, and the frames jump with it if the
swapped neighbour lies inside the centre's inner cutoff.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..frameset import FrameParams, neighbor_frames
from ..local import LocalFrames, assemble_local_frames

__all__ = ["edge_local_frames", "frame_coordinates"]


def edge_local_frames(center: Tensor, vector: Tensor, num_centers: int, cutoff: float,
                      params: FrameParams = FrameParams.published(), o3: bool = False) -> LocalFrames:
    """Weighted, per-centre pruned frames from the edges of a layer.

    Args:
        center: ``[E]`` centre (target) of each edge, sorted.
        vector: ``[E, 3]`` displacement ``p_source - p_centre`` of each edge (use float64
            for exactness); zero vectors (self loops) are ignored.
        num_centers: ``N``, number of centres (targets of the layer).
        cutoff: edges within ``min(cutoff, params.max_outer_cutoff)`` make frames.
        params: :class:`~ecse.frameset.FrameParams` (default: the published settings).
        o3: add the mirror image of every frame.

    Returns:
        :class:`~ecse.local.LocalFrames` over the ``N`` centres.

    Example:
        >>> import torch
        >>> center = torch.tensor([0, 0, 0, 1])
        >>> vector = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1.2], [1, 0, 0]], dtype=torch.float64)
        >>> lf = edge_local_frames(center, vector, 2, 3.0)
        >>> lf.num_frames > 0, bool(lf.invariant[lf.atom == 1].all())
        (True, True)
    """
    p, n = params, num_centers
    keep = vector.square().sum(-1) > 0
    center, vector = center[keep], vector[keep]
    outer = min(float(cutoff), p.max_outer_cutoff)
    r_in, frames = neighbor_frames(center, vector, n, outer, p)
    return assemble_local_frames(frames, r_in, n, p, o3)


def frame_coordinates(lf: LocalFrames, vector: Tensor, copy: Tensor) -> Tensor:
    r"""Edge displacements in the frame of their copy: ``vector[e] @ F[copy[e]]``, and
    :math:`(|\mathbf r|, 0, 0)` for auxiliary copies.

    Shapes: ``vector`` ``[E_c, 3]`` (lab frame), ``copy`` ``[E_c]`` -> ``[E_c, 3]`` in
    the frames' precision.

    Example:
        >>> import torch
        >>> lf = edge_local_frames(torch.tensor([0]), torch.tensor([[0., 2, 0]], dtype=torch.float64), 1, 3.0)
        >>> frame_coordinates(lf, torch.tensor([[0., 2, 0]], dtype=torch.float64), torch.tensor([0]))
        tensor([[2., 0., 0.]], dtype=torch.float64)
    """
    rot = lf.rotation[copy]
    vector = vector.to(rot.dtype)
    rotated = torch.einsum("ei,eij->ej", vector, rot)
    sq = vector.square().sum(-1)
    # |r| with a finite gradient at r = 0 (self loops)
    length = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))
    radial = torch.stack([length, torch.zeros_like(length), torch.zeros_like(length)], -1)
    return torch.where(lf.invariant[copy, None], radial, rotated)
