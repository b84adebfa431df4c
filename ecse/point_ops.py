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
from typing import Iterator, Optional

import torch
from torch import Tensor

from ._point_search import _check_batch, _check_flow, _check_pair, _check_points, _dense_knn, _empty, _fps, _search

__all__ = ["knn", "knn_graph", "feature_knn_graph", "radius", "radius_graph", "fps", "set_backend",
           "get_backend", "use_backend", "HAS_TORCH_CLUSTER"]

try:  # a broken binary (torch ABI mismatch) raises OSError/RuntimeError, not ImportError
    import torch_cluster as _tc
    HAS_TORCH_CLUSTER = True
except (ImportError, OSError, RuntimeError):  # pragma: no cover - depends on the env
    _tc = None
    HAS_TORCH_CLUSTER = False

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
