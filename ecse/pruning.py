r"""Smooth pruning of frame weights and the weight of the auxiliary (fallback) model.

Per ensemble (a graph, or a centre in a local ensemble), with the smooth max
:math:`SM_\beta(w; w) = \sum_k w_k^2 e^{\beta w_k} / \sum_k w_k e^{\beta w_k}` of the
weights, weighted by themselves:

* pruning with ``rounds`` :math:`= R \ge 1`: one smooth step applied to the weights,

  .. math::  w_k \leftarrow w_k\,[\,q(w_k; t\,m, (1-t)\,m)\,(1 - \tau) + \tau\,], \qquad
             m = SM_{\beta_R}(w; w), \quad \beta_R = 2^{\min(R, 4) - 1},

  with :math:`\tau = f_c(m; a, a/2)` switching pruning off smoothly when every weight is
  small (:math:`t` = ``threshold``, :math:`a` = ``aux_threshold``); ``rounds = 0``: no
  pruning;
* auxiliary weight :math:`w_{aux} = f_c(SM_1(w; w); a, a)`: 1 when no frame has weight,
  0 once the smooth max reaches :math:`a`.

Frames whose pruned weight is exactly zero contribute nothing and can be dropped.

Why not the published rounds.  The published rule applies the step ``R`` times, each
round to the weights pruned by the round before and with :math:`m = SM_1` recomputed
from them, so that :math:`m` climbs towards the best weight.  That is a feedback loop: a
frame inside the window loses weight, which raises the next round's :math:`m`, which
prunes it (and the frames beside it) further.  Each round multiplies the derivatives
of the result by the slope of that loop, so after 4 rounds the pruned weights change
over displacements far shorter than the step's own window (along random paths through
perfect hcp and diamond crystals, water and thermal Cu, the second derivative of the
weight-averaged frame is 10-200 times that of one round and still grows when the grid is
refined to 2.5e-4 A).  It is smooth, but narrower than any MD step: forces jump.  Here every
round instead sharpens the smooth max (:math:`\beta` doubles per round, from the
published :math:`\beta = 1`), computed once from the unpruned weights, and the step is
applied once: no feedback, so the result is exactly as smooth as one step of width
:math:`(1-t)\,m`.  One round is the published rule; with more rounds :math:`m` moves
towards the best weight as in the published rule (frames within a fraction :math:`1-t`
of it are kept), without its compounding.  :math:`\beta` stops at 8 (4 rounds), where
:math:`m` is within a few per cent of the best weight; a sharper max would itself bend
quickly where the best frames swap.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .switching import cutoff_function, segment_smooth_max, step_up

__all__ = ["smooth_max_weight", "prune_weights", "pruning_sharpness", "auxiliary_weight"]

#: Rounds after which the sharpness of the pruning's smooth max stops growing.
_MAX_SHARPENING_ROUNDS = 4


def smooth_max_weight(weight: Tensor, index: Tensor, num_segments: int, beta: float = 1.0) -> Tensor:
    r""":math:`SM_\beta(w; w)` per segment, ``[S]`` (0 for a segment without weight)."""
    return segment_smooth_max(weight, weight, index, num_segments, beta)


def pruning_sharpness(rounds: int) -> float:
    r"""Sharpness :math:`\beta_R = 2^{\min(R, 4) - 1}` of the smooth max that pruning
    compares the weights with (``rounds >= 1``).

    >>> [pruning_sharpness(r) for r in (1, 2, 3, 4, 10)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1 to prune, got {rounds}")
    return float(2 ** (min(rounds, _MAX_SHARPENING_ROUNDS) - 1))


def prune_weights(
    weight: Tensor,
    index: Tensor,
    num_segments: int,
    threshold: float = 0.9,
    rounds: int = 4,
    aux_threshold: float = 0.5,
) -> Tensor:
    """Smoothly prune the weights of frames far below the best one of their segment.

    Args:
        weight: frame weights ``[F]``.
        index: segment (graph or centre) of each frame ``[F]``.
        num_segments: number of segments.
        threshold: frames below ``threshold * m`` are removed (weight exactly 0), frames
            above ``m`` are kept as they are (``m``: the smooth max of the weights).
        rounds: 0 turns pruning off; from 1 on, each round doubles the sharpness of the
            smooth max ``m`` (up to 4 rounds), so that ``m`` moves towards the best weight
            (see the module docstring: one step, never compounded).
        aux_threshold: pruning is off while ``m <= aux_threshold / 2`` and fully on
            from ``m >= aux_threshold``.

    Shapes:
        returns ``[F]``.

    Example:
        >>> import torch
        >>> w = torch.tensor([6.0, 5.8, 5.3, 3.0], dtype=torch.float64)
        >>> prune_weights(w, torch.zeros(4, dtype=torch.long), 1)  # the second is in the window
        tensor([6.0000, 5.2318, 0.0000, 0.0000], dtype=torch.float64)
    """
    if rounds < 1:
        return weight
    floor = 0.25 * aux_threshold  # below this m pruning is off anyway; avoids 0/0
    w_max = smooth_max_weight(weight, index, num_segments, pruning_sharpness(rounds))
    turn_on = cutoff_function(w_max, aux_threshold, 0.5 * aux_threshold)[index]
    scale = torch.where(w_max > floor, w_max, torch.full_like(w_max, floor))[index]
    factor = step_up(weight, threshold * scale, (1 - threshold) * scale)
    return weight * (factor * (1 - turn_on) + turn_on)


def auxiliary_weight(
    weight: Tensor, index: Tensor, num_segments: int, aux_threshold: float = 0.5
) -> Tensor:
    """Weight of the auxiliary model per segment, ``[S]``: 1 with no usable frame, 0 from
    ``SM_1(w; w) >= aux_threshold`` on (computed from the unpruned weights)."""
    w_max = smooth_max_weight(weight, index, num_segments)
    return cutoff_function(w_max, aux_threshold, aux_threshold)
