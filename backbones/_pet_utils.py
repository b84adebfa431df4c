"""Building blocks of :class:`ecse.backbones.pet.PET`: cutoff switch, reverse edges, padding,
cutoff-modulated multi-head attention and the transformer layer."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["cutoff_switch", "reverse_edges", "pad_edges", "GaussianBasis", "CutoffAttention", "TransformerLayer",
           "mlp"]


def cutoff_switch(r: Tensor, cutoff: float, width: float) -> Tensor:
    r"""Smooth switch :math:`f_c(r)`: 1 for ``r <= cutoff - width``, 0 for ``r >= cutoff``,
    :math:`\tfrac12\,(1 + \cos(\pi (r - cutoff + width) / width))` in between (C1)."""
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


def reverse_edges(center: Tensor, neighbor: Tensor, vector: Tensor, quantum: float = 1e-6) -> Tensor:
    """Index of the reverse edge ``(j, i, -v)`` of every edge ``(i, j, v)`` of a full list.

    ``vector = pos[j] - pos[i] + shift @ cell`` is negated *exactly* in floating point for
    the reverse edge, so rounding it to a grid of ``quantum`` and matching the integer
    keys ``(center, neighbor, round(v / quantum))`` after a lexicographic sort is exact;
    distinct periodic images of one neighbour differ by a lattice vector, never by
    ``quantum``.

    Shapes: ``center``, ``neighbor`` ``[E]``, ``vector`` ``[E, 3]`` -> ``[E]``.
    """
    E = center.numel()
    if E == 0:
        return center.new_zeros(0)
    n = int(max(center.max(), neighbor.max())) + 1
    q = torch.round(vector.detach().double() / quantum).long()
    fwd = torch.cat([(center * n + neighbor)[:, None], q], dim=1)
    bwd = torch.cat([(neighbor * n + center)[:, None], -q], dim=1)
    # both key sets are the same set (the list is symmetric): match them in sorted order
    order_f, order_b = _lexsort(fwd), _lexsort(bwd)
    rev = torch.empty_like(center)
    rev[order_b] = order_f
    if not torch.equal(fwd[rev], bwd):
        raise ValueError("the neighbour list is not symmetric (every edge needs its reverse edge)")
    return rev


def _lexsort(keys: Tensor) -> Tensor:
    """Permutation sorting the rows of an integer ``[E, K]`` tensor lexicographically."""
    order = torch.arange(keys.shape[0], device=keys.device)
    for col in range(keys.shape[1] - 1, -1, -1):
        order = order[torch.argsort(keys[order, col], stable=True)]
    return order


def pad_edges(center: Tensor, num_nodes: int) -> tuple[Tensor, int]:
    """Slot of every edge in its centre's padded sequence (1-based: slot 0 is the central
    token) and the maximum number of neighbours ``M``; ``center`` must be sorted."""
    counts = torch.bincount(center, minlength=num_nodes)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(center.numel(), device=center.device) - start[center] + 1
    return slot, int(counts.max()) if center.numel() else 0


class GaussianBasis(nn.Module):
    r"""Gaussian expansion of distances, as SchNet's:
    :math:`g_k(r) = \exp(-(r - \mu_k)^2 / (2 \delta^2))` with ``num`` centres
    :math:`\mu_k` evenly spaced on :math:`[0, r_c]` and width :math:`\delta` equal to
    their spacing.

    Shapes: ``r`` ``[E]`` -> ``[E, num]``.

    Examples
    --------
    >>> GaussianBasis(5.0, 6)(torch.tensor([0.0, 2.5])).shape
    torch.Size([2, 6])
    """

    def __init__(self, cutoff: float, num: int):
        super().__init__()
        if num < 2:
            raise ValueError(f"a Gaussian basis needs at least 2 functions, got {num}")
        self.register_buffer("centers", torch.linspace(0.0, float(cutoff), num), persistent=False)
        self.coeff = -0.5 / (float(cutoff) / (num - 1)) ** 2

    def forward(self, r: Tensor) -> Tensor:
        return torch.exp(self.coeff * (r[:, None] - self.centers.to(r.dtype)) ** 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cutoff={float(self.centers[-1]):g}, num={self.centers.numel()})"


def mlp(d_in: int, hidden: int, d_out: int, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden ``Linear + SiLU`` layers followed by a ``Linear`` output layer."""
    layers, width = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, d_out))


class CutoffAttention(nn.Module):
    r"""Multi-head self-attention whose weights are modulated by the keys' cutoff switch:
    :math:`a_{ij} \leftarrow a_{ij} f_c(r_j) / \sum_k a_{ik} f_c(r_k)` with
    :math:`a = \mathrm{softmax}(q k^T / \sqrt{d_h})` over the valid (unpadded) keys.

    ``fused=True`` computes the same weights as
    :math:`\mathrm{softmax}(q k^T / \sqrt{d_h} + \log f_c)` with torch's
    ``scaled_dot_product_attention`` (several times faster and lighter on memory).

    Shapes: ``x`` ``[N, L, d]``, ``fc`` ``[N, L]`` (0 on padding), ``valid`` ``[N, L]``.
    """

    def __init__(self, d_model: int, num_heads: int, fused: bool = False):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.fused = num_heads, fused
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, fc: Tensor, valid: Tensor) -> Tensor:
        N, L, d = x.shape
        q, k, v = self.qkv(x).view(N, L, 3, self.num_heads, d // self.num_heads).unbind(2)
        if self.fused:
            keep = valid & (fc > 0)
            bias = torch.where(keep, fc.clamp_min(torch.finfo(fc.dtype).tiny).log(), float("-inf"))
            y = nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias[:, None, None, :])
            return self.out(y.transpose(1, 2).reshape(N, L, d))
        logits = torch.einsum("nqhc,nkhc->nhqk", q, k) / math.sqrt(d // self.num_heads)
        logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
        a = torch.softmax(logits, dim=-1) * fc[:, None, None, :]
        a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        return self.out(torch.einsum("nhqk,nkhc->nqhc", a, v).reshape(N, L, d))


class TransformerLayer(nn.Module):
    """Attention + feed-forward (``Linear, SiLU, Linear``) with residuals and LayerNorm;
    post-LN (``x = LN(x + f(x))``, as torch's default and the PET paper) or pre-LN."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, pre_ln: bool = False,
                 fused: bool = False):
        super().__init__()
        self.attn, self.pre_ln = CutoffAttention(d_model, num_heads, fused), pre_ln
        self.ff = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.SiLU(),
                                nn.Linear(dim_feedforward, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x: Tensor, fc: Tensor, valid: Tensor) -> Tensor:
        if self.pre_ln:
            x = x + self.attn(self.norm1(x), fc, valid)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.attn(x, fc, valid))
        return self.norm2(x + self.ff(x))
