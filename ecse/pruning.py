r"""Smooth pruning of frame weights and the weight of the auxiliary (fallback) model.

Per ensemble (a graph, or a centre in a local ensemble), with
:math:`w_{max} = SM_1(w; w)` (a smooth max of the weights, weighted by themselves):

* pruning, repeated ``rounds`` times:
  :math:`w_k \leftarrow w_k\,[\,q(w_k; t\,w_{max}, (1-t)\,w_{max})\,(1 - \tau) + \tau\,]`,
  with :math:`\tau = f_c(w_{max}; a, a/2)` switching pruning off smoothly when every
  weight is small (:math:`t` = ``threshold``, :math:`a` = ``aux_threshold``);
* auxiliary weight :math:`w_{aux} = f_c(w_{max}; a, a)`: 1 when no frame has weight,
  0 once :math:`w_{max} \ge a`.

Frames whose pruned weight is exactly zero contribute nothing and can be dropped.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .switching import cutoff_function, segment_smooth_max, step_up

__all__ = ["smooth_max_weight", "prune_weights", "auxiliary_weight"]


def smooth_max_weight(weight: Tensor, index: Tensor, num_segments: int) -> Tensor:
    r""":math:`w_{max} = SM_1(w; w)` per segment, ``[S]`` (0 for a segment without weight)."""
    return segment_smooth_max(weight, weight, index, num_segments, 1.0)


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
        threshold: frames below ``threshold * w_max`` are removed (weight exactly 0),
            frames above ``w_max`` are kept as they are.
        rounds: number of pruning rounds (``w_max`` is recomputed each round).
        aux_threshold: pruning is off while ``w_max <= aux_threshold / 2`` and fully on
            from ``w_max >= aux_threshold``.

    Shapes:
        returns ``[F]``.
    """
    floor = 0.25 * aux_threshold  # below this w_max pruning is off anyway; avoids 0/0
    for _ in range(rounds):
        w_max = smooth_max_weight(weight, index, num_segments)
        turn_on = cutoff_function(w_max, aux_threshold, 0.5 * aux_threshold)
        scale = torch.where(w_max > floor, w_max, torch.full_like(w_max, floor))[index]
        factor = step_up(weight, threshold * scale, (1 - threshold) * scale)
        weight = weight * (factor * (1 - turn_on[index]) + turn_on[index])
    return weight


def auxiliary_weight(
    weight: Tensor, index: Tensor, num_segments: int, aux_threshold: float = 0.5
) -> Tensor:
    """Weight of the auxiliary model per segment, ``[S]``: 1 with no usable frame, 0 from
    ``w_max >= aux_threshold`` on (computed from the unpruned weights)."""
    w_max = smooth_max_weight(weight, index, num_segments)
    return cutoff_function(w_max, aux_threshold, aux_threshold)
