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
formulas over chunks of copies small enough to stay in the processor's cache and keeps
no ``[C, d]`` tensor for the backward pass (it recomputes the pre-activations there).

The backward pass is itself differentiable (``create_graph=True``, training on forces):
it is a second chunked function whose own backward (the second derivatives, formulas in
:func:`_second_order`) is chunked too, so training through the average keeps no
``[C, d]`` tensor either.  Third derivatives go through the plain differentiable
formulas.  Values and derivatives of every order equal those of the plain torch
composition up to rounding.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

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


def _chunks(shift: Tensor, geometry: Tensor, along: Tensor, edge: Tensor):
    """``(rows, e, pre, gate)`` per chunk: the copies' slice, edges, pre-activations and sigmoids."""
    step = _rows(shift.shape[1])
    for a in range(0, geometry.shape[0], step):
        part, e = slice(a, a + step), edge[a:a + step]
        pre = torch.addmm(shift[e], geometry[part], along.T)
        yield part, e, pre, torch.sigmoid(pre)


def _silu_slope(pre: Tensor, gate: Tensor) -> Tensor:
    """:math:`\\sigma'(x) = s\\,(1 + x(1 - s))`, :math:`s` the sigmoid."""
    return gate * (1 + pre * (1 - gate))


class _FrameAveragedSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shift: Tensor, geometry: Tensor, along: Tensor, weight: Tensor, edge: Tensor) -> Tensor:
        ctx.save_for_backward(shift, geometry, along, weight, edge)
        out = shift.new_zeros(shift.shape)
        for part, e, pre, gate in _chunks(shift, geometry, along, edge):
            out.index_add_(0, e, pre.mul_(gate).mul_(weight[part, None]))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        inputs = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable (and chunked) backward
            grads = _FrameAveragedSiLUGrad.apply(*inputs, grad)
            return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad)), None)
        return (*_first_order(*inputs, grad, ctx.needs_input_grad), None)


def _first_order(shift, geometry, along, weight, edge, grad, need) -> tuple[Optional[Tensor], ...]:
    r"""Gradients of :math:`\sum_e \mathbf G_e \cdot \mathbf h_e` with respect to
    ``(shift, geometry, along, weight)`` (those flagged in ``need``), :math:`\mathbf G` = ``grad``:
    with :math:`P_c = w_c\, \mathbf G_{e(c)} \odot \sigma'(\mathbf x_c)`, they are
    :math:`\sum_{c \to e} P_c`, :math:`P_c A`, :math:`P^\top g` and
    :math:`\sigma(\mathbf x_c) \cdot \mathbf G_{e(c)}`."""
    g_shift = torch.zeros_like(shift) if need[0] else None
    g_geometry = geometry.new_empty(geometry.shape) if need[1] else None
    g_along = torch.zeros_like(along) if need[2] else None
    g_weight = weight.new_empty(weight.shape) if need[3] else None
    for part, e, pre, gate in _chunks(shift, geometry, along, edge):
        g_out = grad[e]
        if g_weight is not None:
            g_weight[part] = (pre * gate * g_out).sum(1)
        g_pre = g_out.mul_(weight[part, None]).mul_(gate.mul_(pre.mul_(1 - gate).add_(1)))  # P_c
        if g_shift is not None:
            g_shift.index_add_(0, e, g_pre)
        if g_geometry is not None:
            torch.mm(g_pre, along, out=g_geometry[part])
        if g_along is not None:
            g_along.addmm_(g_pre.T, geometry[part])
    return g_shift, g_geometry, g_along, g_weight


class _FrameAveragedSiLUGrad(torch.autograd.Function):
    """:func:`_first_order` (all four gradients) as a function of ``(shift, geometry,
    along, weight, edge, grad)``, differentiable: its backward is :func:`_second_order`."""

    @staticmethod
    def forward(ctx, shift, geometry, along, weight, edge, grad):
        ctx.save_for_backward(shift, geometry, along, weight, edge, grad)
        ctx.set_materialize_grads(False)
        return _first_order(shift, geometry, along, weight, edge, grad, (True,) * 4)

    @staticmethod
    def backward(ctx, u_shift, u_geometry, u_along, u_weight):
        inputs = ctx.saved_tensors
        need = ctx.needs_input_grad
        upstream = (u_shift, u_geometry, u_along, u_weight)
        if torch.is_grad_enabled():  # third derivatives: differentiate the plain formulas
            return _plain_second_order(inputs, upstream, need)
        got = _second_order(*inputs, *upstream, (*need[:4], need[5]))
        return (*got[:4], None, got[4])


def _second_order(shift, geometry, along, weight, edge, grad, u_shift, u_geometry, u_along, u_weight, need):
    r"""Vector-Jacobian product of :func:`_first_order` with the cotangents ``u_*`` (any of
    them ``None`` for zero), with respect to ``(shift, geometry, along, weight, grad)``
    (those flagged in ``need``), in chunks.

    With :math:`V_c = U^{b}_{e(c)} + A\,U^{g}_c + U^{A} \mathbf g_c` (the cotangent of
    :math:`P_c`) and the pre-activation's cotangent

    .. math::

        Q_c = w_c V_c \odot \mathbf G_{e(c)} \odot \sigma''(\mathbf x_c)
              + U^{w}_c\, \mathbf G_{e(c)} \odot \sigma'(\mathbf x_c):

    * shift: :math:`\sum_{c \to e} Q_c`; geometry: :math:`Q_c A + P_c\, U^{A}`;
    * along: :math:`Q^\top g + P^\top U^{g}`; weight: :math:`V_c \cdot (\mathbf G_{e(c)} \odot \sigma'(\mathbf x_c))`;
    * grad: :math:`\sum_{c \to e} w_c V_c \odot \sigma'(\mathbf x_c) + U^{w}_c\, \sigma(\mathbf x_c)`.
    """
    out_shift = torch.zeros_like(shift) if need[0] else None
    out_geometry = geometry.new_empty(geometry.shape) if need[1] else None
    out_along = torch.zeros_like(along) if need[2] else None
    out_weight = weight.new_empty(weight.shape) if need[3] else None
    out_grad = torch.zeros_like(grad) if need[4] else None
    for part, e, pre, gate in _chunks(shift, geometry, along, edge):
        w, g_out = weight[part, None], grad[e]
        rest = 1 - gate
        bent = pre * rest  # x (1 - s)
        slope = (bent + 1).mul_(gate)  # sigma'
        g_slope = g_out * slope
        v = u_shift[e] if u_shift is not None else torch.zeros_like(pre)
        if u_geometry is not None:
            v.addmm_(u_geometry[part], along.T)
        if u_along is not None:
            v.addmm_(geometry[part], u_along.T)
        v_w = v * w
        # sigma'' = s (1 - s) (2 + x (1 - 2 s)) = s (1 - s) (2 + 2 x (1 - s) - x)
        q = bent.mul_(2).sub_(pre).add_(2).mul_(gate).mul_(rest).mul_(v_w).mul_(g_out)
        if u_weight is not None:
            q.addcmul_(g_slope, u_weight[part, None])
        if out_shift is not None:
            out_shift.index_add_(0, e, q)
        p = None if u_along is None and u_geometry is None else g_slope * w  # P_c
        if out_geometry is not None:
            torch.mm(q, along, out=out_geometry[part])
            if u_along is not None:
                out_geometry[part].addmm_(p, u_along)
        if out_along is not None:
            out_along.addmm_(q.T, geometry[part])
            if u_geometry is not None:
                out_along.addmm_(p.T, u_geometry[part])
        if out_weight is not None:
            out_weight[part] = torch.linalg.vecdot(v, g_slope)
        if out_grad is not None:
            g = v_w.mul_(slope)
            if u_weight is not None:
                g.addcmul_(pre.mul_(gate), u_weight[part, None])
            out_grad.index_add_(0, e, g)
    return out_shift, out_geometry, out_along, out_weight, out_grad


def _plain_second_order(inputs, upstream, need):
    """:func:`_second_order` by autograd through the plain formulas (differentiable again)."""
    need = (*need[:4], need[5])
    with torch.enable_grad():
        # aliases: the gradient with respect to each input counts only the paths through
        # it here, not those through other inputs that depend on it
        shift, geometry, along, weight, grad = (x.view_as(x) for x in (*inputs[:4], inputs[5]))
        wrt = [x for x, n in zip((shift, geometry, along, weight, grad), need) if n]
        first = _plain_first_order(shift, geometry, along, weight, inputs[4], grad)
        pairs = [(f, u) for f, u in zip(first, upstream) if u is not None]
        got = iter(torch.autograd.grad([f for f, _ in pairs], wrt, [u for _, u in pairs], create_graph=True,
                                       allow_unused=True) if pairs and wrt else ())
    out = [next(got) if n else None for n in need]
    return (*out[:4], None, out[4])


def _plain_first_order(shift, geometry, along, weight, edge, grad):
    pre = torch.addmm(shift[edge], geometry, along.T)
    gate = torch.sigmoid(pre)
    g_out = grad[edge]
    g_pre = g_out * weight[:, None] * _silu_slope(pre, gate)
    return (torch.zeros_like(shift).index_add(0, edge, g_pre), g_pre @ along, g_pre.T @ geometry,
            (pre * gate * g_out).sum(1))
