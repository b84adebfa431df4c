"""Voigt vectors of symmetric rank-2 tensors, in ASE's order (``xx, yy, zz, yz, xz, xy``).

Re-exported by :mod:`ecse.covariant`, the home of output kinds.
"""
from __future__ import annotations

__all__ = ["VOIGT", "to_voigt", "from_voigt"]

#: Voigt order of a symmetric rank-2 tensor (ASE's): ``xx, yy, zz, yz, xz, xy``.
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_VOIGT_ROWS, _VOIGT_COLS = [i for i, _ in VOIGT], [j for _, j in VOIGT]
_FROM_VOIGT = [VOIGT.index(tuple(sorted((i, j)))) for i in range(3) for j in range(3)]


def to_voigt(t):
    """Symmetric tensors ``[..., 3, 3]`` -> Voigt vectors ``[..., 6]`` (torch or numpy).

    >>> import torch
    >>> to_voigt(torch.arange(9.0).reshape(3, 3)).tolist()
    [0.0, 4.0, 8.0, 5.0, 2.0, 1.0]
    """
    return t[..., _VOIGT_ROWS, _VOIGT_COLS]


def from_voigt(v):
    """Voigt vectors ``[..., 6]`` -> symmetric tensors ``[..., 3, 3]`` (torch or numpy).

    >>> import torch
    >>> from_voigt(torch.tensor([1.0, 2, 3, 4, 5, 6])).tolist()
    [[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]]
    """
    return v[..., _FROM_VOIGT].reshape(*v.shape[:-1], 3, 3)
