r"""Adaptive inner cutoff: per centre, the smallest radius that holds a good pair.

For a centre with neighbour displacements :math:`r_j` (lengths) and unit vectors
:math:`\hat r_j` inside the outer cutoff :math:`r_{out}`, every unordered pair
:math:`j < k` gets

.. math::
    v_{jk} = SM_\beta(r_j, r_k) + W_0(1/e)/\beta, \qquad
    u_{jk} = f_c(r_j; r_{out}, \delta)\, f_c(r_k; r_{out}, \delta)\, q(s_{jk}; W, \Delta W),

with :math:`s_{jk} = |\hat r_j \times \hat r_k|^2`.  A sentinel
:math:`(v = r_{out}, u = 1)` is added and

.. math::  r_{in} = SM_{-\beta}(v; u) + \delta.

In words: smoothly, the smallest radius that holds one clearly non-collinear pair, plus
a margin :math:`\delta`.  The shift by :math:`W_0(1/e)/\beta` makes
:math:`v_{jk} \ge \max(r_j, r_k)`, so the best pair lies fully inside :math:`r_{in}`.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ._pairs import group_blocks, group_slots, pairs_within_groups
from .neighbors import within_radius
from .switching import LAMBERT_W0_INV_E, cutoff_function, smooth_max_pair, step_up

__all__ = ["adaptive_inner_cutoff", "pair_sin2", "PAIR_BLOCK"]

PAIR_BLOCK = 1 << 18
"""Pairs of neighbours evaluated at once by :func:`adaptive_inner_cutoff`. A centre with
``k`` neighbours has ``k (k - 1) / 2`` pairs, each held as about a dozen numbers (about
120 bytes) while they are evaluated: a liquid of 20000 atoms at 50 neighbours would hold
2.6 GB at once. Larger inputs run in blocks of centres (each recomputed in the backward
pass, not kept); the result does not depend on the block size."""


def adaptive_inner_cutoff(
    center: Tensor,
    vector: Tensor,
    num_centers: int,
    outer_cutoff: float,
    beta: float = 5.0,
    angle_threshold: float = 0.2,
    angle_width: float = 0.15,
    radial_width: float = 0.15,
) -> Tensor:
    r"""Adaptive inner cutoff :math:`r_{in}` of every centre.

    Args:
        center: centre of each neighbour, sorted, ``[E]``.
        vector: displacement to each neighbour, ``[E, 3]``.
        num_centers: number of centres ``N``.
        outer_cutoff: :math:`r_{out}`; neighbours beyond it are ignored.
        beta: sharpness :math:`\beta` of the smooth max/min (inverse length).
        angle_threshold: :math:`W`, the :math:`\sin^2` angle above which a pair counts.
        angle_width: :math:`\Delta W`, width of that switch.
        radial_width: :math:`\delta`, width of the radial cutoffs and the margin.

    Shapes:
        returns ``[N]``.  A centre without a non-collinear pair gets
        :math:`r_{out} + \delta`.

    Memory: centres run in blocks of about :data:`PAIR_BLOCK` pairs of neighbours; with
    gradients each block is checkpointed (recomputed in the backward pass), so the pairs
    of one block at most are held at once.

    Example:
        >>> import torch
        >>> from ecse.neighbors import neighbor_list
        >>> pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1.2, 0], [3, 0, 0]], dtype=torch.float64)
        >>> nl = neighbor_list(pos, 5.0)
        >>> r_in = adaptive_inner_cutoff(nl.center, nl.vector, 4, 5.0)
        >>> bool(1.2 < r_in[0] < 2.0)
        True
    """
    settings = dict(outer_cutoff=outer_cutoff, beta=beta, angle_threshold=angle_threshold,
                    angle_width=angle_width, radial_width=radial_width)
    blocks = group_blocks(center, num_centers, PAIR_BLOCK)
    if len(blocks) <= 1:
        return _inner_cutoff(vector, center, num_centers, **settings)
    keep = torch.is_grad_enabled() and vector.requires_grad
    parts = []
    for c0, c1, e0, e1 in blocks:
        block = partial(_inner_cutoff, center=center[e0:e1] - c0, num_centers=c1 - c0, **settings)
        parts.append(checkpoint(block, vector[e0:e1], use_reentrant=False) if keep else block(vector[e0:e1]))
    return torch.cat(parts)


def _inner_cutoff(vector: Tensor, center: Tensor, num_centers: int, outer_cutoff: float, beta: float,
                  angle_threshold: float, angle_width: float, radial_width: float) -> Tensor:
    """:func:`adaptive_inner_cutoff` of centres ``0..num_centers-1`` in one pass."""
    center, length, unit = within_radius(center, vector, outer_cutoff)
    first, second = pairs_within_groups(center, num_centers, ordered=False)
    pair_center = center.index_select(0, first)
    s = pair_sin2(center, unit, num_centers, first, second, pair_center)
    radial = cutoff_function(length, outer_cutoff, radial_width)
    per_neighbour = torch.stack([length, radial], dim=1)  # one gather per side for both
    a, b = per_neighbour.index_select(0, first), per_neighbour.index_select(0, second)
    shift = LAMBERT_W0_INV_E / beta
    value = smooth_max_pair(a[:, 0], b[:, 0], beta) + shift
    weight = a[:, 1] * b[:, 1] * _step_up_sparse(s, angle_threshold, angle_width)
    return _smooth_min_with_sentinel(value, weight, center, pair_center, length, num_centers, outer_cutoff,
                                     beta, shift) + radial_width


def _smooth_min_with_sentinel(value: Tensor, weight: Tensor, center: Tensor, pair_center: Tensor, length: Tensor,
                              num_centers: int, outer_cutoff: float, beta: float, shift: float) -> Tensor:
    r""":math:`SM_{-\beta}` of the pair values plus the sentinel :math:`(r_{out}, 1)`, per centre.

    Every pair value is at least (nearest-neighbour distance + shift) of its centre, so
    that lower bound, found over the E neighbours rather than the P pairs, keeps every
    exponent at or below zero; one scatter over the pairs then gives both sums.
    """
    floor = length.new_full((num_centers,), outer_cutoff)
    floor = floor.scatter_reduce(0, center, length.detach(), reduce="amin") + shift
    floor = torch.minimum(floor, floor.new_tensor(outer_cutoff))
    factor = weight * torch.exp(-beta * (value - floor.index_select(0, pair_center)))
    sums = value.new_zeros(num_centers, 2).index_add_(0, pair_center, torch.stack([factor * value, factor], 1))
    sentinel = torch.exp(-beta * (outer_cutoff - floor))
    return (sums[:, 0] + sentinel * outer_cutoff) / (sums[:, 1] + sentinel)


def _step_up_sparse(s: Tensor, start: float, width: float) -> Tensor:
    """``step_up(s, start, width)``, evaluating the switch only inside its window."""
    out = (s >= start + width).to(s.dtype)
    window = ((s > start) & (s < start + width)).nonzero().squeeze(1)
    return out.index_put((window,), step_up(s[window], start, width))


def pair_sin2(center: Tensor, unit: Tensor, num_centers: int, first: Tensor, second: Tensor,
              pair_center: Tensor) -> Tensor:
    r""":math:`|\hat r_a \times \hat r_b|^2 = 1 - (\hat r_a \cdot \hat r_b)^2` for pairs of one centre.

    The dot products of all neighbours of a centre come from one batched matrix product
    over a padded ``[N, K, 3]`` tensor, which is much faster than gathering ``[P, 3]``
    rows for every pair.
    """
    counts, _, slot = group_slots(center, num_centers)
    k = int(counts.max()) if counts.numel() else 0
    padded = unit.new_zeros(num_centers, max(k, 1), 3)
    padded[center, slot] = unit
    gram = torch.bmm(padded, padded.transpose(1, 2)).reshape(-1)
    flat = (pair_center * k + slot.index_select(0, first)) * k + slot.index_select(0, second)
    cos = gram.index_select(0, flat)
    return (1 - cos * cos).clamp_min(0)
