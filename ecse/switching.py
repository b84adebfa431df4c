r"""Smooth (C-infinity) switching functions and smooth max/min.

Every step of ECSE is built from these, so that the ensemble is a smooth function of
the positions.  All functions are vectorised, differentiable and NaN-free (values and
gradients) for every finite input, including the switching boundaries where the
functions become exactly constant.

The building block is the stitch function on :math:`(-1, 1)`

.. math::  S(x) = \tanh\!\Big(\frac{1}{x+1} + \frac{1}{x-1}\Big) = \tanh\frac{2x}{x^2-1},

which goes from +1 at :math:`x \to -1` to -1 at :math:`x \to 1` with all derivatives
vanishing at both ends.

Examples
--------
>>> import torch
>>> from ecse.switching import cutoff_function, step_up
>>> cutoff_function(torch.tensor([0.0, 4.925, 5.0]), 5.0, 0.15)
tensor([1.0000, 0.5000, 0.0000])
>>> step_up(torch.tensor([0.1, 0.275, 0.5]), 0.2, 0.15)
tensor([0.0000, 0.5000, 1.0000])
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "stitch",
    "cutoff_function",
    "step_up",
    "step_up_linear",
    "smooth_max_pair",
    "segment_smooth_max",
    "LAMBERT_W0_INV_E",
]

#: Principal branch of the Lambert W function at 1/e: the shift ``W0(1/e)/b`` makes the
#: smooth max of two numbers at least their true max.
LAMBERT_W0_INV_E = 0.27846454276107380


def stitch(x: Tensor) -> Tensor:
    r"""Stitch function :math:`S(x)` on (-1, 1), extended by +1 below and -1 above."""
    inside = (x > -1) & (x < 1)
    xs = torch.where(inside, x, torch.zeros_like(x))  # keeps gradients finite outside
    value = torch.tanh(2 * xs / (xs * xs - 1))
    return torch.where(inside, value, torch.where(x <= -1, 1.0, -1.0).to(x.dtype))


def _step_down(g: Tensor) -> Tensor:
    """1 for g <= -1, 0 for g >= 1, smooth in between."""
    return 0.5 + 0.5 * stitch(g)


def cutoff_function(r: Tensor, r_cut: Tensor | float, width: Tensor | float) -> Tensor:
    r"""Smooth cutoff :math:`f_c(r; r_c, d)`.

    1 for :math:`r \le r_c - d`, 0 for :math:`r \ge r_c`, and
    :math:`\tfrac12 + \tfrac12 S(g)` with :math:`g = 2(r - r_c + d/2)/d` in between.

    Args:
        r: distances, any shape.
        r_cut: cutoff :math:`r_c` (scalar or broadcastable tensor, e.g. one per centre).
        width: switching width :math:`d > 0`.
    """
    return _step_down(2 * (r - r_cut + 0.5 * width) / width)


def step_up(s: Tensor, start: Tensor | float, width: Tensor | float) -> Tensor:
    r"""Smooth step :math:`q(s; w, d)`: 0 for :math:`s \le w`, 1 for :math:`s \ge w + d`."""
    return _step_down(-2 * (s - start - 0.5 * width) / width)


def step_up_linear(s: Tensor, start: Tensor | float, width: Tensor | float) -> Tensor:
    r"""Growing step :math:`q(s; w, d)\,(s - w)/d`: 0 below ``start``, then keeps growing.

    Used for frame weights, so that pairs at wider angles win.
    """
    return step_up(s, start, width) * (s - start) / width


def smooth_max_pair(a: Tensor, b: Tensor, beta: float) -> Tensor:
    r"""Smooth max of two numbers with unit weights, :math:`SM_\beta(a, b)`.

    Equal to :math:`(a e^{\beta a} + b e^{\beta b}) / (e^{\beta a} + e^{\beta b})`,
    evaluated stably as ``b + (a - b) * sigmoid(beta (a - b))``.
    """
    d = a - b
    return b + d * torch.sigmoid(beta * d)


def segment_smooth_max(
    values: Tensor, weights: Tensor, index: Tensor, num_segments: int, beta: float
) -> Tensor:
    r"""Weighted smooth max within segments (a smooth min for ``beta < 0``).

    .. math::  SM_\beta(v; u) = \frac{\sum_k u_k v_k e^{\beta v_k}}{\sum_k u_k e^{\beta v_k}}

    computed per segment with the largest exponent subtracted (stable in float32).
    Entries with zero weight drop out; a segment whose weights are all zero gets 0.

    Args:
        values: :math:`v`, shape ``[E]``.
        weights: non-negative :math:`u`, shape ``[E]``.
        index: segment of each entry, shape ``[E]``, values in ``[0, num_segments)``.
        num_segments: number of segments ``S``.
        beta: sharpness (inverse units of ``values``).

    Shapes:
        returns ``[S]``.
    """
    exponent = beta * values
    masked = torch.where(weights > 0, exponent, torch.full_like(exponent, -math.inf))
    shift = torch.full((num_segments,), -math.inf, dtype=values.dtype, device=values.device)
    shift = shift.scatter_reduce(0, index, masked.detach(), reduce="amax", include_self=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    u = weights * torch.exp(torch.clamp(exponent - shift[index], max=0.0))
    den = torch.zeros(num_segments, dtype=values.dtype, device=values.device).index_add(0, index, u)
    num = torch.zeros_like(den).index_add(0, index, u * values)
    safe = den > 0
    return torch.where(safe, num / torch.where(safe, den, torch.ones_like(den)), torch.zeros_like(den))
