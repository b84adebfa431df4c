"""The state of one local-mode forward pass: frame settings, known point sets, statistics.

:class:`~ecse.pyg.LocalPointModel` opens a :func:`local_context` around the wrapped
model's forward; adapted layers (:class:`~ecse.pyg.LocalFrameLayer`) and the coordinate
hook of linear layers act only while one is open, so the same modules behave exactly as
the bare model outside it.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from ..frameset import FrameParams

__all__ = ["LocalContext", "local_context", "current_context", "ORIGINS"]

_state = threading.local()

#: where coordinates are measured from (see :class:`LocalContext`)
ORIGINS = ("centroid", "centre")


class LocalContext:
    """Settings and bookkeeping of one forward pass.

    Args:
        cutoff: edges within ``min(cutoff, params.max_outer_cutoff)`` make frames.
        params: :class:`~ecse.frameset.FrameParams` (default: the published settings).
        o3: add mirror frames (exact under reflections too).
        origin: where a centre's coordinates are measured from when an adapted layer
            sees them (the centre itself, or the source points of a layer that reads
            absolute coordinates such as ``EdgeConv`` on ``[x, pos]``): ``"centre"``
            -- from the centre itself (every centre at its frames' origin; strictly
            local); ``"centroid"`` -- from the centroid of the centre's graph (point
            sets registered with their ``batch``, and point sets reached from them
            through a layer's edges), in each of the centre's frames.  Relative
            positions are the same either way.

    Attributes:
        positions: the point sets (``[n, 3]`` tensors) seen so far: ``data.pos`` and the
            source and centre positions handed to adapted layers.
        origins: per point set, ``[n, 3]`` (float64 at least) origin of every row (the
            centroid of its graph), or ``None`` where unknown or ``origin="centre"``.
        records: one dict per adapted layer call (layer name, centres, frames, auxiliary
            centres) or per layer left bare.
    """

    def __init__(self, cutoff: float, params: FrameParams = FrameParams.published(), o3: bool = False,
                 origin: str = "centre"):
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
        self.cutoff, self.params, self.o3, self.origin = float(cutoff), params, bool(o3), origin
        self.positions: list[Tensor] = []
        self.origins: list[Optional[Tensor]] = []
        self.records: list[dict] = []

    def register(self, pos: Optional[Tensor], batch: Optional[Tensor] = None,
                 origin: Optional[Tensor] = None) -> None:
        """Remember a point set, so that its coordinates are recognised in features.

        With ``batch`` (``[n]`` graph index of every row; the centroid of each graph)
        or an explicit per-row ``origin``, the rows' origins are kept too
        (``origin="centroid"`` only)."""
        if not (isinstance(pos, Tensor) and pos.dim() == 2 and pos.shape[-1] == 3):
            return
        known = next((i for i, p in enumerate(self.positions) if p is pos), None)
        if origin is None and batch is not None and self.origin == "centroid":
            geo = pos.to(torch.promote_types(pos.dtype, torch.float64))
            origin = scatter(geo, batch, 0, reduce="mean")[batch]
        if self.origin != "centroid":
            origin = None
        if known is None:
            self.positions.append(pos)
            self.origins.append(origin)
        elif self.origins[known] is None:
            self.origins[known] = origin

    def register_graphs(self, pos: Optional[Tensor], batch: Optional[Tensor]) -> None:
        """:meth:`register` the input cloud with its ``batch`` (``None``: one graph)."""
        if isinstance(pos, Tensor) and pos.dim() == 2:
            if batch is None:
                batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
            self.register(pos, batch)

    def origin_of(self, pos: Optional[Tensor]) -> Optional[Tensor]:
        """Per-row origins of a registered point set (the same tensor object), or ``None``."""
        return next((o for p, o in zip(self.positions, self.origins) if p is pos), None)

    def match(self, x: Optional[Tensor]) -> Optional[Tensor]:
        """The known point set whose coordinates are the last three columns of ``x``
        (exactly, same dtype and rows), or ``None``."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] < 3:
            return None
        for p in self.positions:
            if p.shape[0] == x.shape[0] and p.dtype == x.dtype and p.device == x.device \
                    and (x is p or bool((x[:, -3:] == p).all())):
                return p
        return None


def current_context() -> Optional[LocalContext]:
    """The innermost open :class:`LocalContext`, or ``None``."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def local_context(cutoff: float, params: FrameParams = FrameParams.published(), o3: bool = False,
                  origin: str = "centre") -> Iterator[LocalContext]:
    """Open a :class:`LocalContext` (per thread; contexts nest).

    Example:
        >>> with local_context(3.0) as ctx:
        ...     current_context() is ctx
        True
        >>> current_context() is None
        True
    """
    ctx = LocalContext(cutoff, params, o3, origin)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(ctx)
    try:
        yield ctx
    finally:
        stack.pop()
