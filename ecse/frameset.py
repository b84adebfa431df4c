"""The whole frame pipeline of a global ensemble: neighbours -> r_in -> frames -> pruning.

:func:`global_frames` pools the frames of every centre of a graph (the published
"global" ensemble), prunes them per graph, and returns the retained frames with their
weights and the auxiliary weight of each graph.  All steps are vectorised over graphs,
centres and frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .cutoff import adaptive_inner_cutoff
from .frames import Frames, add_mirror_frames, build_frames
from .neighbors import NeighborList, neighbor_list
from .pruning import auxiliary_weight, prune_weights

__all__ = ["FrameParams", "FrameSet", "PUBLISHED", "candidate_frames", "global_frames", "neighbor_frames"]

#: The settings in which the published ECSE differs from :class:`FrameParams`' defaults.
PUBLISHED = {"angle_threshold": 0.2, "angle_width": 0.15, "cutoff_angle_start": 0.2, "radial_width": 0.15,
             "num_prunings": 4}


@dataclass(frozen=True)
class FrameParams:
    """Numbers of the frame construction.

    The defaults are ecse's, chosen for smooth derivatives (forces, molecular dynamics):
    the published ones except ``angle_threshold`` and ``angle_width`` (0.12 and 0.12 instead
    of 0.2 and 0.15), ``cutoff_angle_start`` (0.03 instead of the angle threshold),
    ``radial_width`` (0.5 instead of 0.15) and ``num_prunings`` (0 instead of 4).  The
    published pruning keeps only the frames within 10 % of the best weight, which switches
    frames on and off over hundredths of an Å, and a 0.15 Å radial switch does the same to
    neighbours crossing the inner cutoff.  The published angular switch
    (sin² from 0.2 to 0.35) holds the pair that a hydrogen of water forms with its own
    molecule (sin² about 0.24-0.45 as the molecule bends): as that pair's weight changes,
    the adaptive inner cutoff moves by the distance to the next good pair over a small
    fraction of that motion; with the switch at sin² 0.12-0.24 the pair always counts at
    thermal bends.  When a molecule bends much further (an H-O-H angle of 120-160°, which a
    briefly trained model can reach in dynamics), the cutoff still has to hand over to the
    next pairs, about 1.3 Å further out; starting the cutoff's switch at sin² 0.03 spreads
    that handover over about 40° instead of 15° of bend, so ``r_in`` moves about 8 times
    more gently (``tests/test_frames_smoothness.py``).
    Each of these makes the forces of a wrapped, nearly invariant model steep
    (``benchmarks/frame_probe.py`` and ``benchmarks/smoothness.py`` measure it).  The price
    is more frames per atom, several times the published count on molecules, liquids and
    metals (``benchmarks/RESULTS.md``).  :meth:`published` gives the published values, for uses that take no
    derivative (classification, segmentation of point clouds).

    Attributes:
        beta: sharpness of the smooth min in the adaptive cutoff (1/length). Default 5.
        angle_threshold: ``W``, sin^2 of the angle from which a pair is a good frame. 0.12
            (published: 0.2).
        angle_width: ``Delta W``, width of the angular switch. 0.12 (published: 0.15).
            A frame's weight is zero below sin^2 ``W - Delta W``, switches on up to ``W``
            and then keeps growing with the angle.
        cutoff_angle_start: sin^2 from which a pair starts to count for the adaptive inner
            cutoff; it counts fully from ``W + Delta W``.  0.03 (published: ``W``, 0.2).
            Must be in ``(0, W + Delta W)``; lower values hand the cutoff over from a
            bending pair to the next ones more gradually, but let a nearly collinear pair
            hold the cutoff of a distorted molecule's atom, which then keeps fewer frames.
        radial_width: ``delta``, width of the radial switches and margin of r_in. 0.5
            (published: 0.15).
        aux_threshold: ``w_max`` from which the auxiliary model is off. 0.5.
        pruning_threshold: frames below this fraction of ``w_max`` are pruned. 0.9.
        num_prunings: pruning rounds, 0 = no pruning. 0 (published: 4). Each round doubles
            the sharpness of the smooth max that the weights are compared with; the step is
            applied once (not compounded as published, see :mod:`ecse.pruning`).
        max_outer_cutoff: the outer cutoff is ``min(cutoff, max_outer_cutoff)``. 10.

    Example:
        >>> FrameParams().num_prunings, FrameParams.published().num_prunings
        (0, 4)
    """

    beta: float = 5.0
    angle_threshold: float = 0.12
    angle_width: float = 0.12
    cutoff_angle_start: float = 0.03
    radial_width: float = 0.5
    aux_threshold: float = 0.5
    pruning_threshold: float = 0.9
    num_prunings: int = 0
    max_outer_cutoff: float = 10.0

    @classmethod
    def published(cls, **values) -> "FrameParams":
        """The published settings (:data:`PUBLISHED`: ``angle_threshold=0.2``, ``angle_width=0.15``,
        ``radial_width=0.15``, ``num_prunings=4``), overridden by
        ``values``: fewer frames, rougher derivatives."""
        return cls(**{**PUBLISHED, **values})

    @classmethod
    def scaled(cls, length_scale: float = 1.0, **values) -> "FrameParams":
        """Parameters with the length-valued ones given in units of ``length_scale``.

        ``beta`` (an inverse length), ``radial_width`` and ``max_outer_cutoff`` are
        published for Å-sized clouds (a 5 Å cutoff); for clouds measured in another unit,
        ``length_scale`` is the size of "1 Å" in that unit, e.g. ``cutoff / 5``.

        Raises:
            ValueError: a non-positive ``length_scale`` or an unknown parameter name.
        """
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown frame parameter(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        p = cls(**values)
        return replace(p, beta=p.beta / length_scale, radial_width=p.radial_width * length_scale,
                       max_outer_cutoff=p.max_outer_cutoff * length_scale)

    def cutoff_angle_switch(self) -> tuple[float, float]:
        """``(start, width)`` of the angular switch of the adaptive inner cutoff (sin^2):
        from ``cutoff_angle_start`` to ``angle_threshold + angle_width``."""
        end = self.angle_threshold + self.angle_width
        return self.cutoff_angle_start, end - self.cutoff_angle_start

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (value >= 0 if name == "num_prunings" else value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 < self.pruning_threshold < 1:
            raise ValueError(f"pruning_threshold must be in (0, 1), got {self.pruning_threshold}")
        if self.angle_width > self.angle_threshold:
            raise ValueError("angle_width must not exceed angle_threshold")
        if not self.cutoff_angle_start < self.angle_threshold + self.angle_width:
            raise ValueError(f"cutoff_angle_start ({self.cutoff_angle_start}) must be below angle_threshold + "
                             f"angle_width ({self.angle_threshold + self.angle_width:g}), where a pair counts "
                             "fully for the inner cutoff")


class FrameSet(NamedTuple):
    """Retained frames of a batch of graphs.

    Attributes:
        frames: retained :class:`~ecse.frames.Frames` (weights > 0).
        graph: ``[F]`` graph of each frame.
        aux_weight: ``[B]`` weight of the auxiliary model per graph.
        neighbors: the :class:`~ecse.neighbors.NeighborList` within the outer cutoff.
        inner_cutoff: ``[N]`` adaptive inner cutoff per centre.
        num_candidates: number of frames before pruning (weight > 0).
    """

    frames: Frames
    graph: Tensor
    aux_weight: Tensor
    neighbors: NeighborList
    inner_cutoff: Tensor
    num_candidates: int


def candidate_frames(pos: Tensor, cutoff: float, batch: Tensor, cell: Optional[Tensor], pbc: Optional[Tensor],
                     params: FrameParams) -> tuple[NeighborList, Tensor, Frames]:
    """Neighbours within the outer cutoff, the inner cutoff ``[N]`` of every centre and
    all its frames before pruning (shared by the global and the local ensembles)."""
    outer = min(float(cutoff), params.max_outer_cutoff)
    nl = neighbor_list(pos, outer, batch, cell, pbc)
    return (nl, *neighbor_frames(nl.center, nl.vector, pos.shape[0], outer, params))


def neighbor_frames(center: Tensor, vector: Tensor, num_centers: int, outer_cutoff: float,
                    params: FrameParams) -> tuple[Tensor, Frames]:
    """The inner cutoff ``[N]`` of every centre and all its frames before pruning, from
    its neighbours (``center`` sorted, displacements ``vector``) within ``outer_cutoff``."""
    p = params
    r_in = adaptive_inner_cutoff(center, vector, num_centers, outer_cutoff, p.beta, *p.cutoff_angle_switch(),
                                 p.radial_width)
    frames = build_frames(center, vector, r_in, num_centers, p.angle_threshold, p.angle_width, p.radial_width,
                          outer_cutoff)
    return r_in, frames


def global_frames(pos: Tensor, cutoff: float, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                  cell: Optional[Tensor] = None, pbc: Optional[Tensor] = None,
                  params: FrameParams = FrameParams(), o3: bool = False) -> FrameSet:
    """Weighted, pruned frames of every graph (frames of all its centres pooled).

    Args:
        pos: ``[N, 3]`` positions.
        cutoff: model cutoff; the outer cutoff is ``min(cutoff, params.max_outer_cutoff)``.
        batch: ``[N]`` graph of each node (``None``: one graph).
        num_graphs: ``B`` (default ``batch.max() + 1``).
        cell, pbc: periodic cell ``[B, 3, 3]`` (rows are lattice vectors) and flags ``[B, 3]``.
        params: :class:`FrameParams`.
        o3: add the mirror image of every frame (exact under reflections too).

    Example:
        >>> import torch
        >>> pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.1]], dtype=torch.float64)
        >>> fs = global_frames(pos, 3.0)
        >>> bool(fs.frames.weight.gt(0).all()), fs.aux_weight.tolist()
        (True, [0.0])
    """
    n = pos.shape[0]
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if n else 1
    p = params
    nl, r_in, frames = candidate_frames(pos, cutoff, batch, cell, pbc, params)
    graph = batch[frames.center]
    aux = auxiliary_weight(frames.weight, graph, num_graphs, p.aux_threshold)
    weight = prune_weights(frames.weight, graph, num_graphs, p.pruning_threshold, p.num_prunings,
                           p.aux_threshold)
    candidates = int((frames.weight > 0).sum())
    keep = weight > 0
    frames = Frames(frames.center[keep], frames.rotation[keep], weight[keep])
    graph = graph[keep]
    if o3:
        frames = add_mirror_frames(frames)
        graph = graph.repeat_interleave(2)
    return FrameSet(frames, graph, aux, nl, r_in, candidates)
