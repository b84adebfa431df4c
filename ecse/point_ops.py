r"""Neighbour search on point clouds (knn, radius, farthest point sampling).

Same signatures, conventions and return formats as ``torch_cluster`` (which
``torch_geometric.nn.knn`` / ``radius`` / ``fps`` call in PyG 2.7), with two backends:

* ``"cluster"``: ``torch_cluster`` kernels, used by default when it is importable;
* ``"torch"``: pure, vectorised torch. Distances are computed exactly
  (``(y_i - x_j)**2`` summed, no ``|a|^2 + |b|^2 - 2ab`` cancellation) in row chunks of
  at most ~4M distances, and only between points of the same graph; ``knn`` in more than
  three dimensions (feature spaces) uses matrix products instead
  (:func:`feature_knn_graph`).

Choose with :func:`set_backend`, :func:`use_backend`, or the environment variable
``ECSE_NEIGHBOR_BACKEND`` (``auto`` | ``torch`` | ``cluster``) read at import. Batch
vectors must be sorted, as in PyG. Index search never carries gradients.

Differences between the backends (results agree otherwise, up to ties):

* ``radius`` with more than ``max_num_neighbors`` points within ``r``: the torch path
  keeps the nearest ones, torch-cluster an arbitrary subset.
* ``knn_graph(loop=False)``: the torch path excludes the node itself by index;
  torch-cluster asks for ``k + 1`` and drops self-matches, so with duplicate points it
  may return ``k + 1`` neighbours or keep the node itself.

Example
-------
>>> import torch
>>> from ecse.point_ops import knn, use_backend
>>> x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
>>> y = torch.tensor([[-1.0, 0.2], [1.0, -0.3]])
>>> with use_backend("torch"):
...     knn(x, y, 2)
tensor([[0, 0, 1, 1],
        [1, 0, 2, 3]])
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["knn", "knn_graph", "feature_knn_graph", "radius", "radius_graph", "fps", "set_backend",
           "get_backend", "use_backend", "HAS_TORCH_CLUSTER"]

try:  # a broken binary (torch ABI mismatch) raises OSError/RuntimeError, not ImportError
    import torch_cluster as _tc
    HAS_TORCH_CLUSTER = True
except (ImportError, OSError, RuntimeError):  # pragma: no cover - depends on the env
    _tc = None
    HAS_TORCH_CLUSTER = False

_PAIRS = 1 << 22  # max entries of one chunk of the distance matrix [rows, cols]
_BACKENDS = ("auto", "torch", "cluster")
_backend = "auto"


def set_backend(name: str) -> None:
    """Select the backend: ``"auto"`` (torch-cluster if importable), ``"torch"``, ``"cluster"``.

    Raises ``ValueError`` for an unknown name and ``ImportError`` for ``"cluster"`` when
    torch-cluster cannot be imported.
    """
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"unknown neighbour backend {name!r}; expected one of {_BACKENDS}")
    if name == "cluster" and not HAS_TORCH_CLUSTER:
        raise ImportError("neighbour backend 'cluster' needs torch-cluster, which cannot be "
                          "imported; install it (pip install torch-cluster) or use 'torch'")
    _backend = name


def get_backend() -> str:
    """The resolved backend in use: ``"torch"`` or ``"cluster"``."""
    if _backend == "auto":
        return "cluster" if HAS_TORCH_CLUSTER else "torch"
    return _backend


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager that switches the backend temporarily (see :func:`set_backend`)."""
    old = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


set_backend(os.environ.get("ECSE_NEIGHBOR_BACKEND", "auto").strip().lower() or "auto")


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


@torch.no_grad()
def _dense_knn(x: Tensor, y: Tensor, bx: Tensor, by: Tensor, k: int, exclude_self: bool = False,
               include_self: bool = False) -> Tensor:
    """kNN by matrix products per graph: ``|x_j|^2 - 2 y_i . x_j`` (features centred per
    graph), graphs padded to ``[B, n_max, D]``, blocks of rows of at most ``_PAIRS`` scores,
    ``topk`` per row (nearest first).  ``exclude_self`` / ``include_self`` (``x is y``):
    the node itself never / always among its neighbours.  Quadratic in the graph size."""
    dev, dim = x.device, x.size(1)
    num_graphs = int(torch.maximum(bx.max(), by.max())) + 1

    def pad(points, batch):
        deg = torch.bincount(batch, minlength=num_graphs)
        ptr = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
        local = torch.arange(points.size(0), device=dev) - ptr[batch]
        dense = points.new_zeros(num_graphs, max(int(deg.max()), 1), dim)
        dense[batch, local] = points
        mask = torch.zeros(dense.shape[:2], dtype=torch.bool, device=dev)
        mask[batch, local] = True
        return dense, mask, deg, ptr

    xd, xmask, xdeg, xptr = pad(x, bx)
    yd, ymask, _, yptr = pad(y, by)
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
    n, dev = x.size(0), x.device
    num_graphs = int(batch.max()) + 1
    deg = torch.bincount(batch, minlength=num_graphs)
    ptr = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
    # number of samples exactly as torch-cluster computes it (float32 product, ceil)
    n_samp = (deg.to(torch.float32) * torch.tensor(ratio, dtype=x.dtype, device=dev)).ceil()
    n_samp = torch.minimum(n_samp.long(), deg)
    local = torch.arange(n, device=dev) - ptr[batch]
    dense = x.new_zeros(num_graphs, int(deg.max()), x.size(1))
    dense[batch, local] = x
    mask = torch.zeros(dense.shape[:2], dtype=torch.bool, device=dev)
    mask[batch, local] = True
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


# ----------------------------------------------------------------------------- public API
def knn(x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor] = None,
        batch_y: Optional[Tensor] = None) -> Tensor:
    """For each point of ``y``, its ``k`` nearest points of ``x`` in the same graph.

    Parameters
    ----------
    x, y : Tensor
        Points ``[N, D]`` and queries ``[M, D]`` (same dtype and device).
    k : int
        Number of neighbours (fewer for graphs with fewer than ``k`` points).
    batch_x, batch_y : LongTensor, optional
        Sorted graph index ``[N]`` / ``[M]``; ``None`` means a single graph.

    Returns
    -------
    LongTensor ``[2, E]``: row 0 indexes ``y``, row 1 indexes ``x``, grouped by ``y``.

    Examples
    --------
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> knn(x, torch.tensor([[2.9]]), 2)
    tensor([[0, 0],
            [2, 1]])
    """
    batch_x, batch_y = _check_pair(x, y, batch_x, batch_y)
    if x.size(0) == 0 or y.size(0) == 0:
        return _empty(x)
    if get_backend() == "cluster":
        return _tc.knn(x, y, k, batch_x, batch_y)
    return _search(x.detach(), y.detach(), batch_x, batch_y, k)


def knn_graph(x: Tensor, k: int, batch: Optional[Tensor] = None, loop: bool = False,
              flow: str = "source_to_target") -> Tensor:
    """Edges from every node to its ``k`` nearest nodes of the same graph.

    Parameters
    ----------
    x : Tensor ``[N, D]``; k : int; batch : LongTensor ``[N]``, optional (sorted)
    loop : bool
        Whether the node itself is a neighbour (counted among the ``k``).
    flow : str
        ``"source_to_target"`` (PyG default): ``edge_index[1]`` is the centre and
        ``edge_index[0]`` its neighbour; ``"target_to_source"``: the other way round.

    Returns
    -------
    LongTensor ``[2, E]``

    Examples
    --------
    >>> knn_graph(torch.tensor([[0.0], [1.0], [3.0]]), 1)
    tensor([[1, 0, 1],
            [0, 1, 2]])
    """
    _check_points(x, "x")
    _check_flow(flow)
    batch = _check_batch(batch, x.size(0), x, "batch")
    if x.size(0) == 0:
        return _empty(x)
    if get_backend() == "cluster":
        return _tc.knn_graph(x, k, batch, loop=loop, flow=flow)
    edge_index = _search(x.detach(), x.detach(), batch, batch, k, exclude_self=not loop)
    return edge_index.flip(0) if flow == "source_to_target" else edge_index


def feature_knn_graph(x: Tensor, k: int, batch: Optional[Tensor] = None, loop: bool = False,
                      flow: str = "source_to_target") -> Tensor:
    """:func:`knn_graph` in a feature space, by matrix products on either backend.

    Per graph, the scores ``|x_j|^2 - 2 x_i . x_j`` of all pairs (features centred per
    graph) in blocks of rows, and ``topk`` per row: quadratic time and, unlike a KD-tree
    (torch-cluster on CPU), a cost that does not depend on how the features are
    distributed; the rounding of the expanded square may reorder neighbours whose
    distances agree to about ``eps * |x|^2``.  With ``loop=True`` every node is its own
    first neighbour (one of the ``k``).  For coordinates (``D <= 3``) use :func:`knn_graph`.

    Parameters and returns as :func:`knn_graph`.

    Examples
    --------
    >>> feature_knn_graph(torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]), 1)
    tensor([[1, 0, 1],
            [0, 1, 2]])
    """
    _check_points(x, "x")
    _check_flow(flow)
    batch = _check_batch(batch, x.size(0), x, "batch")
    if x.size(0) == 0 or k <= 0:
        return _empty(x)
    edge_index = _dense_knn(x.detach(), x.detach(), batch, batch, k, exclude_self=not loop, include_self=loop)
    return edge_index.flip(0) if flow == "source_to_target" else edge_index


def radius(x: Tensor, y: Tensor, r: float, batch_x: Optional[Tensor] = None,
           batch_y: Optional[Tensor] = None, max_num_neighbors: int = 32) -> Tensor:
    """For each point of ``y``, the points of ``x`` in the same graph with distance ``< r``.

    Parameters
    ----------
    x, y, batch_x, batch_y : as in :func:`knn`; r : float, the (exclusive) radius
    max_num_neighbors : int
        At most this many per point of ``y``: the nearest ones on the torch backend,
        an arbitrary subset on torch-cluster.

    Returns
    -------
    LongTensor ``[2, E]``: row 0 indexes ``y``, row 1 indexes ``x``, grouped by ``y``.

    Examples
    --------
    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> radius(x, torch.tensor([[0.2]]), 1.0)
    tensor([[0, 0],
            [0, 1]])
    """
    batch_x, batch_y = _check_pair(x, y, batch_x, batch_y)
    if x.size(0) == 0 or y.size(0) == 0:
        return _empty(x)
    if get_backend() == "cluster":
        return _tc.radius(x, y, r, batch_x, batch_y, max_num_neighbors)
    return _search(x.detach(), y.detach(), batch_x, batch_y, max_num_neighbors, r=float(r))


def radius_graph(x: Tensor, r: float, batch: Optional[Tensor] = None, loop: bool = False,
                 max_num_neighbors: int = 32, flow: str = "source_to_target") -> Tensor:
    """Edges between all nodes of the same graph closer than ``r``.

    Parameters are those of :func:`radius` and :func:`knn_graph`; returns ``[2, E]``.

    Examples
    --------
    >>> radius_graph(torch.tensor([[0.0], [1.0], [3.0]]), 1.5)
    tensor([[1, 0],
            [0, 1]])
    """
    _check_points(x, "x")
    _check_flow(flow)
    batch = _check_batch(batch, x.size(0), x, "batch")
    if x.size(0) == 0:
        return _empty(x)
    if get_backend() == "cluster":
        return _tc.radius_graph(x, r, batch, loop=loop, max_num_neighbors=max_num_neighbors,
                                flow=flow)
    edge_index = _search(x.detach(), x.detach(), batch, batch, max_num_neighbors, r=float(r),
                         exclude_self=not loop)
    return edge_index.flip(0) if flow == "source_to_target" else edge_index


def fps(x: Tensor, batch: Optional[Tensor] = None, ratio: float = 0.5,
        random_start: bool = False) -> Tensor:
    """Farthest point sampling of ``ceil(ratio * n_g)`` points in each graph.

    Parameters
    ----------
    x : Tensor ``[N, D]``; batch : LongTensor ``[N]``, optional (sorted)
    ratio : float
        Fraction of points to keep, in ``(0, 1]``.
    random_start : bool
        ``False``: each graph starts at its first point, so the result is deterministic
        (and identical on both backends; ties go to the lowest index).

    Returns
    -------
    LongTensor: indices into ``x``, grouped by graph.

    Examples
    --------
    >>> fps(torch.tensor([[0.0], [1.0], [3.0], [2.0]]), ratio=0.5)
    tensor([0, 2])
    """
    _check_points(x, "x")
    batch = _check_batch(batch, x.size(0), x, "batch")
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    if get_backend() == "cluster":  # its kernel fails on empty graphs: renumber the ids
        batch = torch.unique_consecutive(batch, return_inverse=True)[1]
        return _tc.fps(x, batch, float(ratio), random_start)
    return _fps(x.detach(), batch, float(ratio), random_start)
