r"""Local coordinate frames from ordered pairs of neighbours, with smooth weights.

For a centre and an ordered pair :math:`(j, k)` of its neighbours,

.. math::
    e_1 = \hat r_j, \quad e_2 = \frac{\hat r_j \times \hat r_k}{|\hat r_j \times \hat r_k|},
    \quad e_3 = e_1 \times e_2, \qquad F = [e_1\; e_2\; e_3]

(axes as columns, a proper rotation).  Coordinates in the frame are ``x @ F`` and a
global rotation ``x -> x @ R.T`` maps the frame to ``R @ F``, so ``x @ F`` is invariant.
The weight of the frame is

.. math::
    w = f_c(r_j; r_{in}, \delta)\, f_c(r_k; r_{in}, \delta)\, q_{lin}(s_{jk}; W - \Delta W, \Delta W),

zero unless both neighbours are inside the centre's inner cutoff and the angle is wide
enough; :math:`q_{lin}` keeps growing with :math:`s`, so wider angles win.

Given the outer cutoff, the weight is also multiplied by
:math:`f_c(r_j; r_{out}, \delta) f_c(r_k; r_{out}, \delta)`.  The published weight lacks this
factor and jumps when a neighbour enters the outer cutoff of a centre that has no good pair
yet (its :math:`r_{in} = r_{out} + \delta`, so :math:`f_c(r; r_{in}, \delta) = 1` at
:math:`r = r_{out}`); the factor makes it continuous and changes nothing whenever
:math:`r_{in} \le r_{out}`, which is nearly always.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ._pairs import pairs_within_groups
from .neighbors import within_radius
from .switching import cutoff_function, step_up_linear

__all__ = ["Frames", "build_frames", "add_mirror_frames", "MIRROR"]

#: The fixed reflection used for O(3) ensembles: flips the frame's second axis.
MIRROR = (1.0, -1.0, 1.0)


class Frames(NamedTuple):
    """A set of weighted frames.

    Attributes:
        center: ``[F]`` centre node of each frame (also its origin).
        rotation: ``[F, 3, 3]`` frame axes as columns (proper, or improper for mirrors).
        weight: ``[F]`` non-negative weight.
    """

    center: Tensor
    rotation: Tensor
    weight: Tensor


def build_frames(
    center: Tensor,
    vector: Tensor,
    inner_cutoff: Tensor,
    num_centers: int,
    angle_threshold: float = 0.2,
    angle_width: float = 0.15,
    radial_width: float = 0.15,
    outer_cutoff: Optional[float] = None,
) -> Frames:
    r"""Frames and weights of every centre from its neighbours inside ``inner_cutoff``.

    Only frames whose weight can be non-zero are returned (both neighbours strictly
    inside :math:`r_{in}`, :math:`s_{jk} > W - \Delta W`); the others have weight exactly
    zero, with zero gradient, so leaving them out changes nothing.

    Args:
        center: centre of each neighbour, sorted, ``[E]``.
        vector: displacement to each neighbour, ``[E, 3]``.
        inner_cutoff: :math:`r_{in}` per centre, ``[N]``.
        num_centers: ``N``.
        angle_threshold, angle_width, radial_width: :math:`W`, :math:`\Delta W`,
            :math:`\delta` (see :func:`ecse.cutoff.adaptive_inner_cutoff`).
        outer_cutoff: :math:`r_{out}`; when given, weights fade out with
            :math:`f_c(r; r_{out}, \delta)` of both neighbours (continuity at the outer
            cutoff, see the module docstring).  ``None``: the published weight.

    Shapes:
        returns :class:`Frames` with ``F`` frames, grouped by centre.

    Example:
        >>> import torch
        >>> center = torch.tensor([0, 0])
        >>> vector = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
        >>> frames = build_frames(center, vector, torch.tensor([2.0]), 1)
        >>> frames.rotation[0]
        tensor([[ 1.,  0.,  0.],
                [ 0.,  0., -1.],
                [ 0.,  1.,  0.]])
    """
    center, length, unit = within_radius(center, vector, inner_cutoff)
    first, second = pairs_within_groups(center, num_centers, ordered=True)
    normal = torch.linalg.cross(unit[first], unit[second])
    s = normal.square().sum(-1)
    keep = s > angle_threshold - angle_width
    first, second, normal, s = first[keep], second[keep], normal[keep], s[keep]
    e1 = unit[first]
    e2 = normal / s.sqrt().unsqueeze(-1)
    e3 = torch.linalg.cross(e1, e2)
    rotation = torch.stack([e1, e2, e3], dim=-1)
    frame_center = center[first]
    r_in = inner_cutoff[frame_center]
    weight = (
        cutoff_function(length[first], r_in, radial_width)
        * cutoff_function(length[second], r_in, radial_width)
        * step_up_linear(s, angle_threshold - angle_width, angle_width)
    )
    if outer_cutoff is not None:
        weight = (weight * cutoff_function(length[first], outer_cutoff, radial_width)
                  * cutoff_function(length[second], outer_cutoff, radial_width))
    return Frames(frame_center, rotation, weight)


def add_mirror_frames(frames: Frames) -> Frames:
    """Pair every frame ``F`` with its mirror image ``F @ diag(1, -1, 1)``, same weight.

    A reflection ``R`` of the input maps the frame of a pair to ``R @ F @ M`` (the
    cross product flips), so the set ``{F, F M}`` maps onto itself: an ensemble over
    both is exact under O(3), not only SO(3).  Frames are interleaved
    ``[F_0, F_0 M, F_1, F_1 M, ...]``.
    """
    mirror = torch.tensor(MIRROR, dtype=frames.rotation.dtype, device=frames.rotation.device)
    mirrored = frames.rotation * mirror  # scales the columns: F @ diag(M)
    rotation = torch.stack([frames.rotation, mirrored], dim=1).reshape(-1, 3, 3)
    return Frames(
        frames.center.repeat_interleave(2), rotation, frames.weight.repeat_interleave(2)
    )
