r"""Covariant outputs: what a backbone may predict and how a rotation acts on it.

Conventions (row vectors throughout): a rotation or reflection ``R`` acts on positions
as ``x @ R.T``; on the supported outputs it acts as

===================  ==================================  ===========================
``output``           backbone's trailing dims            action of ``R``
===================  ==================================  ===========================
``"scalar"``         anything                            unchanged
``"vector"``         ``3``                               ``v @ R.T``
``"rank2"``          ``(3, 3)`` or ``9`` (row-major)     ``R @ T @ R.T``
``"rank2-symmetric"`` ``(3, 3)`` (symmetrised) or ``6``   ``R @ T @ R.T``
                     (``xx, yy, zz, yz, xz, xy``)
Irreps string        ``irreps.dim`` (e3nn layout)        ``f @ D(R).T``
===================  ==================================  ===========================

A prediction ``y'`` made in a frame ``F`` (coordinates ``x @ F``) goes back to the
lab frame as the action of ``F`` on it: ``v' @ F.T``, ``F @ T' @ F.T``, ``D(F) f'``.

Wigner matrices are built without Euler angles: ``D_1 = R`` (e3nn's l=1 basis is
x, y, z) and ``D_l = (2l+1) C_l^T (D_{l-1} \otimes D_1) C_l`` with ``C_l`` e3nn's
``wigner_3j(l-1, 1, l)``, built in float64.  For an improper ``R``,
``D(R) = p D_l(-R)`` (e3nn's parity convention), so O(3) irreps work too.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from e3nn import o3
from torch import Tensor

__all__ = ["OutputSpec", "wigner_D", "symmetric_to_irreps", "irreps_to_symmetric"]

_NAMED = ("scalar", "vector", "rank2", "rank2-symmetric")
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


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


class OutputSpec:
    """Parsed ``output`` argument: checks backbone outputs and applies rotations.

    Example:
        >>> import torch
        >>> spec = OutputSpec("vector")
        >>> R = torch.tensor([[[0., -1, 0], [1, 0, 0], [0, 0, 1]]])
        >>> spec.act(torch.tensor([[1.0, 0, 0]]), R)
        tensor([[0., 1., 0.]])
    """

    def __init__(self, output: str):
        self.name = output
        self.irreps = None
        if output in _NAMED:
            self.kind = output
        else:
            try:
                self.irreps = o3.Irreps(output)
            except Exception as err:  # e3nn raises a bare ValueError/AssertionError
                raise ValueError(
                    f"unknown output {output!r}: use one of {_NAMED} or an e3nn Irreps string "
                    "such as '1x0e+1x1o'"
                ) from err
            self.kind = "irreps"
        self.component_shape = {
            "scalar": (), "vector": (3,), "rank2": (3, 3), "rank2-symmetric": (3, 3),
            "irreps": (self.irreps.dim,) if self.irreps is not None else (),
        }[self.kind]

    def __repr__(self) -> str:
        return f"OutputSpec({self.name!r})"

    def components(self, y: Tensor) -> Tensor:
        """Reshape a backbone's raw output into this type's components, checking sizes."""
        shape = tuple(y.shape)
        if self.kind in ("rank2", "rank2-symmetric"):
            if shape[-2:] == (3, 3):
                return 0.5 * (y + y.transpose(-1, -2)) if self.kind == "rank2-symmetric" else y
            if self.kind == "rank2" and shape[-1:] == (9,):
                return y.reshape(*shape[:-1], 3, 3)
            if self.kind == "rank2-symmetric" and shape[-1:] == (6,):
                t = y.new_zeros(*shape[:-1], 3, 3)
                for c, (i, j) in enumerate(_VOIGT):
                    t[..., i, j] = y[..., c]
                    t[..., j, i] = y[..., c]
                return t
            sizes = "(3, 3) or 9" if self.kind == "rank2" else "(3, 3) or 6"
            raise ValueError(f"output={self.name!r} needs trailing dims {sizes}; backbone gave {shape}")
        need = self.component_shape
        if need and shape[-len(need):] != need:
            raise ValueError(f"output={self.name!r} needs a last dim of {need[0]}; backbone gave {shape}")
        return y

    def scalar_index(self) -> int | None:
        """Index of the first ``0e`` component of an Irreps type (``None`` if there is none
        or the type is not Irreps)."""
        if self.kind != "irreps":
            return None
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            if ir.l == 0 and ir.p == 1:
                return sl.start
        return None

    def isotropic(self, b: Tensor) -> Tensor:
        """The invariant baseline of this type carrying scalars ``b`` ``[K]``: ``b`` itself
        (scalar), ``b I`` (rank-2), ``b`` in the first ``0e`` component (Irreps), zero
        (vector, or Irreps without ``0e``); ``[K, *components]``.

        >>> OutputSpec("1x0e+1x2e").isotropic(torch.tensor([2.0])).tolist()
        [[2.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
        """
        if self.kind == "scalar":
            return b
        if self.kind in ("rank2", "rank2-symmetric"):
            return b[:, None, None] * torch.eye(3, dtype=b.dtype, device=b.device)
        out = b.new_zeros(b.shape[0], *self.component_shape)
        index = self.scalar_index()
        if index is not None:
            out[:, index] = b
        return out

    def act(self, y: Tensor, rotation: Tensor) -> Tensor:
        """Apply ``rotation[k]`` to ``y[k]``: ``y`` ``[K, ..., *components]``, ``rotation`` ``[K, 3, 3]``."""
        if self.kind == "scalar":
            return y
        if self.kind == "vector":
            return torch.einsum("kij,k...j->k...i", rotation, y)
        if self.kind in ("rank2", "rank2-symmetric"):
            return torch.einsum("kij,k...jl,kml->k...im", rotation, y, rotation)
        parts = []
        for (mul, ir), (sl, d) in zip(self.irreps, wigner_D(self.irreps, rotation)):
            block = y[..., sl].reshape(*y.shape[:-1], mul, ir.dim)
            parts.append(torch.einsum("kij,k...mj->k...mi", d, block).reshape(*y.shape[:-1], -1))
        return torch.cat(parts, dim=-1)


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
