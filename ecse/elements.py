"""Chemical elements: the one home of the supported atomic numbers.

Atomic numbers ``z`` run from 1 (H) to :data:`MAX_Z` (118, Og); embeddings and
per-element tables have ``MAX_Z + 1`` rows, indexed by ``z`` (row 0 unused).

>>> MAX_Z
118
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MAX_Z", "atomic_numbers"]

MAX_Z: int = 118


def atomic_numbers(data, owner: str) -> Tensor:
    """``data.z`` as ``[N]`` int64, checked: one integer from 1 to :data:`MAX_Z` per point.

    A floating-point ``z`` is accepted when every entry is a whole number (some data sets
    store it so); anything else would be truncated to another element, so it is refused.

    Args:
        data: a PyG ``Data``/``Batch`` with ``pos`` ``[N, 3]`` and ``z`` ``[N]`` (or ``[N, 1]``).
        owner: the model's name, for the messages.

    Raises:
        ValueError: ``z`` missing, of another length than ``pos``, not whole numbers, or
            outside 1..118, naming the offending values.

    >>> from torch_geometric.data import Data
    >>> atomic_numbers(Data(pos=torch.zeros(2, 3), z=torch.tensor([8.0, 1.0])), "PET")
    tensor([8, 1])
    >>> atomic_numbers(Data(pos=torch.zeros(2, 3), z=torch.tensor([8.0, 1.5])), "PET")
    Traceback (most recent call last):
        ...
    ValueError: PET: data.z must hold whole atomic numbers, got [1.5]
    """
    z = getattr(data, "z", None)
    if not isinstance(z, Tensor):
        raise ValueError(f"{owner} needs atomic numbers in data.z")
    pos = getattr(data, "pos", None)
    if z.dim() == 2 and z.shape[1] == 1:
        z = z.reshape(-1)
    if z.dim() != 1 or (isinstance(pos, Tensor) and z.shape[0] != pos.shape[0]):
        points = f"{pos.shape[0]} points" if isinstance(pos, Tensor) else "one entry per point"
        raise ValueError(f"{owner}: data.z must have shape [N] (N = {points}), got {tuple(z.shape)}")
    if z.dtype == torch.bool or z.is_complex():
        raise ValueError(f"{owner}: data.z must be an integer tensor of atomic numbers, got {z.dtype}")
    if z.is_floating_point():
        fractional = z != torch.round(z)
        if bool(fractional.any()):
            raise ValueError(f"{owner}: data.z must hold whole atomic numbers, "
                             f"got {sorted(set(z[fractional].tolist()))[:5]}")
    z = z.long()
    bad = (z < 1) | (z > MAX_Z)
    if bool(bad.any()):
        raise ValueError(f"{owner}: unknown element(s) with atomic number {sorted(set(z[bad].tolist()))}; "
                         f"supported: 1..{MAX_Z}")
    return z
