r"""Wigner matrices of e3nn Irreps and the Cartesian <-> ``1x0e+1x2e`` change of basis.

Wigner matrices are built without Euler angles: ``D_1 = R`` (e3nn's l=1 basis is
x, y, z) and ``D_l = (2l+1) C_l^T (D_{l-1} \otimes D_1) C_l`` with ``C_l`` e3nn's
``wigner_3j(l-1, 1, l)``, built in float64.  For an improper ``R``,
``D(R) = p D_l(-R)`` (e3nn's parity convention), so O(3) irreps work too.
:class:`ecse.covariant.OutputSpec` uses them to rotate Irreps outputs.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from e3nn import o3
from torch import Tensor

__all__ = ["wigner_D", "symmetric_to_irreps", "irreps_to_symmetric"]


@lru_cache(maxsize=None)
def _coupling_float64(l: int) -> Tensor:
    return o3.wigner_3j(l - 1, 1, l, dtype=torch.float64).reshape(-1, 2 * l + 1) * (2 * l + 1) ** 0.5


def _proper_wigner(rotation: Tensor, lmax: int) -> list[Tensor]:
    """``[D_0, ..., D_lmax]`` of proper rotations ``[K, 3, 3]``, each ``[K, 2l+1, 2l+1]``."""
    k = rotation.shape[0]
    blocks = [rotation.new_ones(k, 1, 1), rotation]
    for l in range(2, lmax + 1):
        coupling = _coupling_float64(l).to(rotation)
        prev = blocks[-1]
        kron = torch.einsum("kab,kcd->kacbd", prev, rotation).reshape(k, 3 * (2 * l - 1), -1)
        blocks.append(coupling.T @ kron @ coupling)
    return blocks[: lmax + 1]


def wigner_D(irreps: o3.Irreps, rotation: Tensor) -> list[tuple[slice, Tensor]]:
    """Wigner blocks of ``irreps`` for orthogonal matrices ``rotation`` ``[K, 3, 3]``.

    Returns ``[(slice, D), ...]``: the slice of the feature dimension of each
    ``mul x (l, p)`` block and its ``[K, 2l+1, 2l+1]`` matrix (shared by the ``mul``
    copies).  Agrees with ``irreps.D_from_matrix`` to rounding, also for reflections.
    """
    irreps = o3.Irreps(irreps)
    det = torch.linalg.det(rotation).sign()
    proper = rotation * det[:, None, None]
    lmax = max((ir.l for _, ir in irreps), default=0)
    blocks = _proper_wigner(proper, lmax)
    improper = det < 0
    out = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        d = blocks[ir.l]
        if ir.p == -1:
            d = d * torch.where(improper, -1.0, 1.0).to(d)[:, None, None]
        out.append((sl, d))
    return out


@lru_cache(maxsize=None)
def _change_of_basis() -> Tensor:
    """``Q`` ``[6, 3, 3]`` (float64, orthonormal rows): ``T = einsum("k,kij", f, Q)`` for
    ``f`` in ``1x0e+1x2e``; built with e3nn's ``CartesianTensor("ij=ji")`` in float64."""
    from e3nn.io import CartesianTensor

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        q = CartesianTensor("ij=ji").reduced_tensor_products().change_of_basis
    finally:
        torch.set_default_dtype(old)
    return q.detach().to(torch.float64).clone()


def irreps_to_symmetric(f: Tensor) -> Tensor:
    """``1x0e+1x2e`` features ``[..., 6]`` -> symmetric Cartesian tensors ``[..., 3, 3]``.

    >>> f = torch.zeros(6, dtype=torch.float64); f[0] = 3 ** 0.5
    >>> irreps_to_symmetric(f).diagonal().round(decimals=12).tolist()  # l=0 = tr(T)/sqrt(3)
    [1.0, 1.0, 1.0]
    """
    if f.shape[-1] != 6:
        raise ValueError(f"1x0e+1x2e features need a last dim of 6, got shape {tuple(f.shape)}")
    return torch.einsum("...k,kij->...ij", f, _change_of_basis().to(f))


def symmetric_to_irreps(t: Tensor) -> Tensor:
    """Symmetric Cartesian tensors ``[..., 3, 3]`` -> ``1x0e+1x2e`` features ``[..., 6]``
    (the antisymmetric part, if any, is dropped).

    >>> t = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> round(float(symmetric_to_irreps(t)[0]), 6) == round(6 / 3 ** 0.5, 6)
    True
    """
    if t.shape[-2:] != (3, 3):
        raise ValueError(f"need Cartesian tensors [..., 3, 3], got shape {tuple(t.shape)}")
    return torch.einsum("...ij,kij->...k", 0.5 * (t + t.transpose(-1, -2)), _change_of_basis().to(t))
