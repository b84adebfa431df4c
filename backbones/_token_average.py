r"""Weighted average over frame copies of a SiLU layer, in cache-sized chunks.

For copies :math:`c` of edges :math:`e(c)` (one copy per frame of the edge's centre) with
weights :math:`w_c`, per-copy inputs :math:`\mathbf g_c` and per-edge shifts
:math:`\mathbf b_e`:

.. math::

    \mathbf h_e = \sum_{c:\, e(c) = e} w_c\, \sigma(A\,\mathbf g_c + \mathbf b_e),
    \qquad \sigma(x) = x\,\mathrm{sigmoid}(x).

Written with torch operations, every step (gather, matrix product, SiLU, weighting,
scatter, and each of their gradients) reads and writes a ``[C, d]`` tensor: with about a
hundred frames per atom (metals) that is a gigabyte per step in float64, and the time
goes to memory traffic, not arithmetic.  :func:`frame_averaged_silu` runs the same
formulas over chunks of copies small enough to stay in the processor's cache, keeps
no ``[C, d]`` tensor for the backward pass (it recomputes the pre-activations there),
and returns exactly the same values and gradients up to rounding.  When the backward
pass itself is differentiated (``create_graph=True``, training on forces) it uses the
unchunked differentiable formulas, so second derivatives are those of the plain
composition.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["frame_averaged_silu", "CHUNK_ELEMENTS"]

#: Elements of one chunk's ``[copies, d]`` tensors (1 MB in float64).
CHUNK_ELEMENTS = 1 << 17


def frame_averaged_silu(shift: Tensor, geometry: Tensor, along: Tensor, weight: Tensor, edge: Tensor) -> Tensor:
    r""":math:`\mathbf h_e = \sum_{c \to e} w_c\, \sigma(A \mathbf g_c + \mathbf b_e)` (module docstring).

    Args:
        shift: ``[E, d]`` per-edge shifts :math:`\mathbf b_e`.
        geometry: ``[C, k]`` per-copy inputs :math:`\mathbf g_c`.
        along: ``[d, k]`` the matrix :math:`A`.
        weight: ``[C]`` copy weights :math:`w_c`.
        edge: ``[C]`` the edge of each copy (any order).

    Returns:
        ``[E, d]``.

    Example:
        >>> import torch
        >>> shift, geometry, along = torch.randn(3, 4), torch.randn(5, 2), torch.randn(4, 2)
        >>> weight, edge = torch.rand(5), torch.tensor([0, 0, 1, 2, 2])
        >>> plain = torch.zeros(3, 4).index_add(0, edge, weight[:, None] * torch.nn.functional.silu(
        ...     shift[edge] + geometry @ along.T))
        >>> torch.allclose(frame_averaged_silu(shift, geometry, along, weight, edge), plain)
        True
    """
    return _FrameAveragedSiLU.apply(shift, geometry, along, weight, edge)


def _rows(d: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(d, 1))


class _FrameAveragedSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shift: Tensor, geometry: Tensor, along: Tensor, weight: Tensor, edge: Tensor) -> Tensor:
        ctx.save_for_backward(shift, geometry, along, weight, edge)
        out = shift.new_zeros(shift.shape)
        rows = _rows(shift.shape[1])
        for a in range(0, geometry.shape[0], rows):
            e = edge[a:a + rows]
            hidden = F.silu(torch.addmm(shift[e], geometry[a:a + rows], along.T))
            out.index_add_(0, e, hidden.mul_(weight[a:a + rows, None]))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        shift, geometry, along, weight, edge = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: the differentiable, unchunked formulas
            return (*_plain_gradients(shift, geometry, along, weight, edge, grad, need), None)
        g_shift = torch.zeros_like(shift) if need[0] else None
        g_geometry = geometry.new_empty(geometry.shape) if need[1] else None
        g_along = torch.zeros_like(along) if need[2] else None
        g_weight = weight.new_empty(weight.shape) if need[3] else None
        rows = _rows(shift.shape[1])
        for a in range(0, geometry.shape[0], rows):
            part, e = slice(a, a + rows), edge[a:a + rows]
            pre = torch.addmm(shift[e], geometry[part], along.T)
            gate = torch.sigmoid(pre)
            g_out = grad[e]
            if g_weight is not None:
                g_weight[part] = (pre * gate * g_out).sum(1)
            # d silu / dx = s (1 + x (1 - s))
            g_pre = g_out.mul_(weight[part, None]).mul_(gate.mul_(pre.mul_(1 - gate).add_(1)))
            if g_shift is not None:
                g_shift.index_add_(0, e, g_pre)
            if g_geometry is not None:
                torch.mm(g_pre, along, out=g_geometry[part])
            if g_along is not None:
                g_along.addmm_(g_pre.T, geometry[part])
        return g_shift, g_geometry, g_along, g_weight, None


def _plain_gradients(shift, geometry, along, weight, edge, grad, need):
    pre = torch.addmm(shift[edge], geometry, along.T)
    gate = torch.sigmoid(pre)
    g_out = grad[edge]
    g_pre = g_out * weight[:, None] * gate * (1 + pre * (1 - gate))
    return (torch.zeros_like(shift).index_add(0, edge, g_pre) if need[0] else None,
            g_pre @ along if need[1] else None,
            g_pre.T @ geometry if need[2] else None,
            (pre * gate * g_out).sum(1) if need[3] else None)
