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

from torch import Tensor

from ..frameset import FrameParams

__all__ = ["LocalContext", "local_context", "current_context"]

_state = threading.local()


class LocalContext:
    """Settings and bookkeeping of one forward pass.

    Args:
        cutoff: edges within ``min(cutoff, params.max_outer_cutoff)`` make frames.
        params: :class:`~ecse.frameset.FrameParams`.
        o3: add mirror frames (exact under reflections too).

    Attributes:
        positions: the point sets (``[n, 3]`` tensors) seen so far: ``data.pos`` and the
            source and centre positions handed to adapted layers.
        records: one dict per adapted layer call (layer name, centres, frames, auxiliary
            centres) or per layer left bare.
    """

    def __init__(self, cutoff: float, params: FrameParams = FrameParams(), o3: bool = False):
        self.cutoff, self.params, self.o3 = float(cutoff), params, bool(o3)
        self.positions: list[Tensor] = []
        self.records: list[dict] = []

    def register(self, pos: Optional[Tensor]) -> None:
        """Remember a point set, so that its coordinates are recognised in features."""
        if isinstance(pos, Tensor) and pos.dim() == 2 and pos.shape[-1] == 3 \
                and not any(p is pos for p in self.positions):
            self.positions.append(pos)

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
def local_context(cutoff: float, params: FrameParams = FrameParams(), o3: bool = False) -> Iterator[LocalContext]:
    """Open a :class:`LocalContext` (per thread; contexts nest).

    Example:
        >>> with local_context(3.0) as ctx:
        ...     current_context() is ctx
        True
        >>> current_context() is None
        True
    """
    ctx = LocalContext(cutoff, params, o3)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(ctx)
    try:
        yield ctx
    finally:
        stack.pop()
