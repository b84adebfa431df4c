"""Random rotations and orthogonal matrices: the one home of the library's rotation sampling.

Conventions: matrices act on row vectors as ``pos @ R.T``; ``det R = +1`` for rotations
(SO(3)), ``-1`` for improper elements of O(3). Sampling is Haar-uniform, from normalised
gaussian quaternions, in float64 before the cast to ``dtype``. The test kit
(:mod:`ecse.testing`) re-exports these functions.

Examples
--------
>>> import torch
>>> R = random_rotations(4, torch.Generator().manual_seed(0), dtype=torch.float64)
>>> R.shape, bool(torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(4, 3, 3)))
(torch.Size([4, 3, 3]), True)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["quaternion_to_matrix", "random_orthogonal", "random_rotation", "random_rotations"]


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of (not necessarily normalised) quaternions ``q = (w, x, y, z)``
    ``[..., 4]``.

    >>> quaternion_to_matrix(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def random_rotation(generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Haar-random SO(3) matrix ``[3, 3]`` from a gaussian quaternion.

    >>> R = random_rotation(torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype))), round(float(torch.det(R)), 6)
    (True, 1.0)
    """
    q = torch.randn(4, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype)


def random_rotations(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` Haar-random SO(3) matrices ``[n, 3, 3]`` (one batched draw of ``n`` quaternions).

    Parameters
    ----------
    n : int
        Number of rotations.
    generator : torch.Generator, optional
        Source of randomness.
    dtype : torch.dtype, default torch.float32
        Dtype of the result (sampling is in float64).
    """
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype)


def random_orthogonal(generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                      improper: bool | None = None) -> Tensor:
    """Haar-random O(3) matrix; ``improper=True`` forces ``det = -1``, ``False`` forces ``+1``,
    ``None`` draws either with probability 1/2.

    >>> round(float(torch.det(random_orthogonal(improper=True))), 6)
    -1.0
    """
    R = random_rotation(generator, torch.float64)
    if improper is None:
        improper = bool(torch.rand((), generator=generator) < 0.5)
    return (-R if improper else R).to(dtype)
