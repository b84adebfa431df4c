"""The pure-torch path of :mod:`ecse.point_ops`: argument checks, chunked exact distance
search (knn and radius), dense feature-space knn and farthest point sampling.

Private: :mod:`ecse.point_ops` is the public interface and picks between this path and
``torch_cluster``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

_PAIRS = 1 << 22  # max entries of one chunk of the distance matrix [rows, cols]


# ----------------------------------------------------------------------------- checks
def _check_points(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor [N, D] with D >= 1, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {x.dtype}")


def _check_batch(batch: Optional[Tensor], n: int, ref: Tensor, name: str) -> Tensor:
    """Validate a batch vector (``None`` -> zeros) and return it as a long tensor."""
    if batch is None:
        return torch.zeros(n, dtype=torch.long, device=ref.device)
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.numel() != n:
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"{name} must be a 1-D tensor with {n} entries, got {shape}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {batch.dtype}")
    if batch.device != ref.device:
        raise ValueError(f"{name} is on {batch.device} but the points are on {ref.device}")
    if n > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError(f"{name} must be sorted (non-decreasing)")
    if n > 0 and int(batch[0]) < 0:
        raise ValueError(f"{name} must be non-negative")
    return batch.long()


def _check_pair(x: Tensor, y: Tensor, batch_x: Optional[Tensor],
                batch_y: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    _check_points(x, "x")
    _check_points(y, "y")
    if x.size(1) != y.size(1) or x.dtype != y.dtype or x.device != y.device:
        raise ValueError(f"x and y must share feature size, dtype and device; got "
                         f"{tuple(x.shape)}/{x.dtype}/{x.device} and "
                         f"{tuple(y.shape)}/{y.dtype}/{y.device}")
    return (_check_batch(batch_x, x.size(0), x, "batch_x"),
            _check_batch(batch_y, y.size(0), y, "batch_y"))


def _check_flow(flow: str) -> None:
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")


def _empty(ref: Tensor) -> Tensor:
    return torch.empty(2, 0, dtype=torch.long, device=ref.device)


# ----------------------------------------------------------------------------- torch path
@torch.no_grad()
def _search(x: Tensor, y: Tensor, bx: Tensor, by: Tensor, k: int,
            r: Optional[float] = None, exclude_self: bool = False) -> Tensor:
    """For each ``y[i]``: up to ``k`` nearest ``x[j]`` of its graph (``|x_j - y_i| < r``)."""
    n, m, d = x.size(0), y.size(0), x.size(1)
    if n == 0 or m == 0 or k <= 0:
        return _empty(x)
    if r is None and d > 3:  # feature spaces: matrix products (see _dense_knn)
        return _dense_knn(x, y, bx, by, k, exclude_self)
    num_graphs = int(torch.maximum(bx.max(), by.max())) + 1
    ptr = torch.zeros(num_graphs + 1, dtype=torch.long, device=x.device)
    ptr[1:] = torch.bincount(bx, minlength=num_graphs).cumsum(0)
    lo, hi = ptr[by].tolist(), ptr[by + 1].tolist()  # column range of each row's graph
    inf = float("inf")
    rows, cols = [], []
    s = 0
    while s < m:  # chunks of rows: largest e with (e - s) * (column span) <= _PAIRS
        a, b = s + 1, m
        while a < b:
            mid = (a + b + 1) // 2
            if (mid - s) * (hi[mid - 1] - lo[s]) <= _PAIRS:
                a = mid
            else:
                b = mid - 1
        e, c0, c1 = a, lo[s], hi[a - 1]
        if c1 > c0:
            d2 = (y[s:e, None, 0] - x[None, c0:c1, 0]).square_()
            for j in range(1, d):  # loop over coordinates: no [rows, cols, D] temporary
                d2.add_((y[s:e, None, j] - x[None, c0:c1, j]).square_())
            if int(by[s]) != int(by[e - 1]):  # chunk spans several graphs
                d2.masked_fill_(by[s:e, None] != bx[None, c0:c1], inf)
            if exclude_self:
                i = torch.arange(s, e, device=x.device)
                ok = (i >= c0) & (i < c1)
                d2[(i - s)[ok], (i - c0)[ok]] = inf
            if r is not None:
                d2.masked_fill_(~(d2 < r * r), inf)
            kk = min(k, c1 - c0)
            if r is not None:  # no longer than the longest neighbour list of the chunk
                kk = min(kk, int((d2 < inf).sum(1).max()))
            if kk > 0:  # each row's neighbours, nearest first
                val, idx = d2.topk(kk, 1, largest=False)
                keep = val < inf
                rows.append(torch.arange(s, e, device=x.device)[:, None].expand(-1, kk)[keep])
                cols.append(idx[keep] + c0)
        s = e
    if not rows:
        return _empty(x)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def _padded(points: Tensor, batch: Tensor, num_graphs: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Points of each graph in rows of ``dense [num_graphs, max(n_max, 1), D]``, ``mask`` of the
    filled entries, points per graph ``deg`` and the graphs' offsets ``ptr [num_graphs + 1]``."""
    deg = torch.bincount(batch, minlength=num_graphs)
    ptr = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
    local = torch.arange(points.size(0), device=points.device) - ptr[batch]
    dense = points.new_zeros(num_graphs, max(int(deg.max()), 1), points.size(1))
    dense[batch, local] = points
    mask = torch.zeros(dense.shape[:2], dtype=torch.bool, device=points.device)
    mask[batch, local] = True
    return dense, mask, deg, ptr


@torch.no_grad()
def _dense_knn(x: Tensor, y: Tensor, bx: Tensor, by: Tensor, k: int, exclude_self: bool = False,
               include_self: bool = False) -> Tensor:
    """kNN by matrix products per graph: ``|x_j|^2 - 2 y_i . x_j`` (features centred per
    graph), graphs padded to ``[B, n_max, D]``, blocks of rows of at most ``_PAIRS`` scores,
    ``topk`` per row (nearest first).  ``exclude_self`` / ``include_self`` (``x is y``):
    the node itself never / always among its neighbours.  Quadratic in the graph size."""
    dev = x.device
    num_graphs = int(torch.maximum(bx.max(), by.max())) + 1
    xd, xmask, xdeg, xptr = _padded(x, bx, num_graphs)
    yd, ymask, _, yptr = _padded(y, by, num_graphs)
    mean = xd.sum(1, keepdim=True) / xdeg.clamp_min(1)[:, None, None].to(x.dtype)
    xd, yd = (xd - mean) * xmask[..., None], (yd - mean) * ymask[..., None]
    bias = xd.square().sum(-1).masked_fill(~xmask, float("inf"))[:, None, :]  # padding never chosen
    kk = min(k, xd.size(1))
    rows = max(1, min(yd.size(1), _PAIRS // (num_graphs * xd.size(1))))
    graph = torch.arange(num_graphs, device=dev)[:, None, None]
    src, dst = [], []
    for r0 in range(0, yd.size(1), rows):
        r1 = min(yd.size(1), r0 + rows)
        score = torch.baddbmm(bias, yd[:, r0:r1], xd.transpose(1, 2), alpha=-2.0)
        if exclude_self or include_self:
            i = torch.arange(r0, min(r1, xd.size(1)), device=dev)
            score[:, i - r0, i] = float("inf") if exclude_self else -float("inf")
        val, idx = score.topk(kk, -1, largest=False)
        keep = (val < float("inf")) & ymask[:, r0:r1, None]
        row = torch.arange(r0, r1, device=dev)[None, :, None]
        dst.append((row + yptr[:-1][graph]).expand_as(idx)[keep])
        src.append((idx + xptr[:-1][graph])[keep])
    if not dst:
        return _empty(x)
    out = torch.stack([torch.cat(dst), torch.cat(src)])
    if len(dst) > 1 and num_graphs > 1:  # blocks of rows hold rows of every graph: regroup by y
        out = out[:, torch.argsort(out[0], stable=True)]
    return out


@torch.no_grad()
def _fps(x: Tensor, batch: Tensor, ratio: float, random_start: bool) -> Tensor:
    dev = x.device
    num_graphs = int(batch.max()) + 1
    dense, mask, deg, ptr = _padded(x, batch, num_graphs)
    # number of samples exactly as torch-cluster computes it (float32 product, ceil)
    n_samp = (deg.to(torch.float32) * torch.tensor(ratio, dtype=x.dtype, device=dev)).ceil()
    n_samp = torch.minimum(n_samp.long(), deg)
    if random_start:
        cur = (torch.rand(num_graphs, device=dev) * deg).long().clamp_max((deg - 1).clamp_min(0))
    else:
        cur = torch.zeros(num_graphs, dtype=torch.long, device=dev)
    ar = torch.arange(num_graphs, device=dev)
    n_max = int(n_samp.max())
    out = torch.empty(num_graphs, n_max, dtype=torch.long, device=dev)
    out[:, 0] = cur
    dist = (dense - dense[ar, cur][:, None]).pow(2).sum(-1).masked_fill(~mask, -1.0)
    for i in range(1, n_max):  # padded entries stay at -1 and are never picked
        cur = dist.argmax(1)  # first maximum, like torch-cluster
        out[:, i] = cur
        dist = torch.minimum(dist, (dense - dense[ar, cur][:, None]).pow(2).sum(-1))
    take = torch.arange(n_max, device=dev)[None, :] < n_samp[:, None]
    return (out + ptr[:-1, None])[take]
