r"""Covariant outputs: what a backbone may predict and how a rotation acts on it.

Conventions (row vectors throughout): a rotation or reflection ``R`` acts on positions
as ``x @ R.T``; on the supported outputs it acts as

=====================  =================================  ===============
``output``             backbone's trailing dims           action of ``R``
=====================  =================================  ===============
``"scalar"``           anything                           unchanged
``"vector"``           ``3``                              ``v @ R.T``
``"rank2"``            ``(3, 3)`` or ``9`` (row-major)    ``R @ T @ R.T``
``"rank2-symmetric"``  ``(3, 3)`` (symmetrised) or ``6``  ``R @ T @ R.T``
                       (``xx, yy, zz, yz, xz, xy``)
Irreps string          ``irreps.dim`` (e3nn layout)       ``f @ D(R).T``
=====================  =================================  ===============

A prediction ``y'`` made in a frame ``F`` (coordinates ``x @ F``) goes back to the
lab frame as the action of ``F`` on it: ``v' @ F.T``, ``F @ T' @ F.T``, ``D(F) f'``.

Irreps are rotated with the Wigner matrices of :mod:`ecse.wigner` (re-exported here with
the Cartesian <-> ``1x0e+1x2e`` conversions); Voigt vectors of symmetric tensors, in ASE's
order, are converted by :func:`to_voigt` and :func:`from_voigt`.
"""
from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import Tensor

from ._voigt import VOIGT, from_voigt, to_voigt
from .wigner import irreps_to_symmetric, symmetric_to_irreps, wigner_D

__all__ = ["OutputSpec", "VOIGT", "to_voigt", "from_voigt", "wigner_D", "symmetric_to_irreps",
           "irreps_to_symmetric"]

_AXES = "xyz"
# the named kinds: component shape, packed size (numbers per item), highest l, labels
_KINDS = {
    "scalar": ((), 1, 0, ("value",)),
    "vector": ((3,), 3, 1, tuple(_AXES)),
    "rank2": ((3, 3), 9, 2, tuple(a + b for a in _AXES for b in _AXES)),
    "rank2-symmetric": ((3, 3), 6, 2, tuple(_AXES[i] + _AXES[j] for i, j in VOIGT)),
}
_NAMED = tuple(_KINDS)
# the e3nn Irreps a named kind transforms as (OutputSpec.as_irreps); a scalar has none
_AS_IRREPS = {"vector": "1x1o", "rank2": "1x0e+1x1e+1x2e", "rank2-symmetric": "1x0e+1x2e"}
_spherical_harmonics = o3.spherical_harmonics


class OutputSpec:
    """One output type: its components, invariant parts, isotropic baseline and rotations.

    Every question about an output kind is answered here, so a new kind is added in this
    class only.  ``kind`` is ``"scalar"``, ``"vector"``, ``"rank2"``,
    ``"rank2-symmetric"`` or ``"irreps"`` (then ``irreps`` is the parsed e3nn Irreps).

    * shapes: ``component_shape`` (``()``, ``(3,)``, ``(3, 3)``, ``(irreps.dim,)``),
      ``flat_size`` (its number of entries), ``packed_size`` and :meth:`pack` /
      :meth:`unpack` (the independent numbers: Voigt order :data:`VOIGT` for symmetric
      tensors, row-major otherwise), :attr:`component_labels` (in packed order);
    * invariants: :meth:`invariant` (the scalar an isotropic value carries: the value,
      ``tr(T)/3``, the first ``0e`` entry), :meth:`isotropic` (its inverse),
      :meth:`invariant_part` (projection on the rotation-invariant subspace),
      :meth:`irreducible_parts`;
    * rotations: :meth:`act`; intrinsically covariant bases: :meth:`direction_blocks`,
      :meth:`invariant_basis`.

    Example:
        >>> import torch
        >>> spec = OutputSpec("vector")
        >>> R = torch.tensor([[[0., -1, 0], [1, 0, 0], [0, 0, 1]]])
        >>> spec.act(torch.tensor([[1.0, 0, 0]]), R)
        tensor([[0., 1., 0.]])
        >>> OutputSpec("rank2-symmetric").packed_size, OutputSpec("1x0e+1x2e").flat_size
        (6, 6)
    """

    #: the named kinds (besides e3nn Irreps strings)
    NAMED: tuple[str, ...] = _NAMED

    def __init__(self, output: str):
        self.name = output
        self.irreps = None
        if output in _KINDS:
            self.kind = output
            self.component_shape, self.packed_size, self.lmax, labels = _KINDS[output]
        else:
            try:
                self.irreps = o3.Irreps(output)
            except Exception as err:  # e3nn raises a bare ValueError/AssertionError
                raise ValueError(
                    f"unknown output {output!r}: use one of {_NAMED} or an e3nn Irreps string "
                    "such as '1x0e+1x1o'"
                ) from err
            self.kind = "irreps"
            self.component_shape, self.packed_size = (self.irreps.dim,), self.irreps.dim
            self.lmax = max((ir.l for _, ir in self.irreps), default=0)
            labels = tuple(f"{name}[{m}]" for name, sl in self.irrep_blocks() for m in range(sl.stop - sl.start))
        self.flat_size = math.prod(self.component_shape)
        self.component_labels: tuple[str, ...] = labels

    def __repr__(self) -> str:
        return f"OutputSpec({self.name!r})"

    # -- what kind of object -------------------------------------------------------
    is_scalar = property(lambda self: self.kind == "scalar", doc="Invariant (no component dims).")
    is_vector = property(lambda self: self.kind == "vector", doc="A polar vector ``[3]``.")
    is_rank2 = property(lambda self: self.kind in ("rank2", "rank2-symmetric"), doc="A Cartesian ``[3, 3]``.")
    is_symmetric = property(lambda self: self.kind == "rank2-symmetric", doc="A symmetric Cartesian rank-2.")
    is_irreps = property(lambda self: self.kind == "irreps", doc="e3nn Irreps features.")

    @property
    def is_spherical_rank2(self) -> bool:
        """Irreps exactly ``1x0e+1x2e``: a symmetric rank-2 tensor in its ``l=0, 2`` parts."""
        return self.is_irreps and str(self.irreps) == "1x0e+1x2e"

    @property
    def as_irreps(self) -> o3.Irreps | None:
        """The e3nn Irreps this type transforms as under O(3): ``1x1o`` (vector),
        ``1x0e+1x1e+1x2e`` (rank-2; its ``l=1`` part is axial), ``1x0e+1x2e`` (symmetric
        rank-2, in the layout of :func:`symmetric_to_irreps`), the Irreps themselves;
        ``None`` for a scalar (any number of invariant channels).

        >>> [str(OutputSpec(k).as_irreps) for k in ("vector", "rank2-symmetric", "2x1e")]
        ['1x1o', '1x0e+1x2e', '2x1e']
        >>> OutputSpec("scalar").as_irreps is None
        True
        """
        if self.is_irreps:
            return self.irreps
        form = _AS_IRREPS.get(self.kind)
        return None if form is None else o3.Irreps(form)

    @property
    def has_isotropic(self) -> bool:
        """Whether :meth:`isotropic` can carry a non-zero invariant (not for vectors)."""
        return self.is_scalar or self.is_rank2 or self.scalar_index() is not None

    # -- shapes ----------------------------------------------------------------------
    def components(self, y: Tensor) -> Tensor:
        """Reshape a backbone's raw output (trailing ``component_shape`` or ``packed_size``)
        into this type's components, checking sizes (``rank2-symmetric``: symmetrised)."""
        shape = tuple(y.shape)
        if self.is_rank2:
            if shape[-2:] == (3, 3):
                return 0.5 * (y + y.transpose(-1, -2)) if self.is_symmetric else y
            if shape[-1:] == (self.packed_size,):
                return self.unpack(y)
            raise ValueError(f"output={self.name!r} needs trailing dims (3, 3) or {self.packed_size}; "
                             f"backbone gave {shape}")
        need = self.component_shape
        if need and shape[-len(need):] != need:
            raise ValueError(f"output={self.name!r} needs a last dim of {need[0]}; backbone gave {shape}")
        return y

    def pack(self, y):
        """Components ``[n, *component_shape]`` -> independent numbers ``[n, packed_size]``
        (torch or numpy; Voigt order for ``rank2-symmetric``)."""
        return to_voigt(y.reshape(y.shape[0], 3, 3)) if self.is_symmetric else y.reshape(y.shape[0], -1)

    def unpack(self, p):
        """Independent numbers ``[..., packed_size]`` -> components ``[..., *component_shape]``."""
        return from_voigt(p) if self.is_symmetric else p.reshape(*p.shape[:-1], *self.component_shape)

    def irrep_blocks(self) -> list[tuple[str, slice]]:
        """``(name, slice)`` of every irrep copy of an Irreps type, named ``"{l}{p}"``
        (plus ``"#k"`` when repeated); ``[]`` for named kinds."""
        if not self.is_irreps:
            return []
        names = [str(ir) for mul, ir in self.irreps for _ in range(mul)]
        out, seen, start = [], {}, 0
        for name, (mul, ir) in zip(names, (b for b in self.irreps for _ in range(b.mul))):
            k = seen.get(name, 0)
            seen[name] = k + 1
            out.append((name + (f"#{k}" if names.count(name) > 1 else ""), slice(start, start + ir.dim)))
            start += ir.dim
        return out

    # -- invariants ------------------------------------------------------------------
    def scalar_index(self) -> int | None:
        """Index of the first ``0e`` component of an Irreps type (``None`` if there is none
        or the type is not Irreps)."""
        if not self.is_irreps:
            return None
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            if ir.l == 0 and ir.p == 1:
                return sl.start
        return None

    def invariant(self, y: Tensor) -> Tensor | None:
        """The invariant that :meth:`isotropic` carries, ``[...]`` from ``[..., *components]``:
        the value (scalar), ``tr(T)/3`` (rank-2), the first ``0e`` entry (Irreps); ``None``
        when the type has none (:attr:`has_isotropic`)."""
        if self.is_scalar:
            return y
        if self.is_rank2:
            return torch.diagonal(y, dim1=-2, dim2=-1).mean(-1)
        index = self.scalar_index()
        return None if index is None else y[..., index]

    def isotropic(self, b: Tensor) -> Tensor:
        """The invariant baseline of this type carrying scalars ``b`` ``[K]``: ``b`` itself
        (scalar), ``b I`` (rank-2), ``b`` in the first ``0e`` component (Irreps), zero
        (vector, or Irreps without ``0e``); ``[K, *components]``.

        >>> OutputSpec("1x0e+1x2e").isotropic(torch.tensor([2.0])).tolist()
        [[2.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
        """
        if self.is_scalar:
            return b
        if self.is_rank2:
            return b[:, None, None] * torch.eye(3, dtype=b.dtype, device=b.device)
        out = b.new_zeros(b.shape[0], *self.component_shape)
        index = self.scalar_index()
        if index is not None:
            out[:, index] = b
        return out

    def invariant_part(self, values: Tensor) -> Tensor:
        """The rotation-invariant part of ``values`` ``[K, *components]`` (O(3)): all of a
        scalar, none of a vector, ``tr(T)/3 I`` of a rank-2 tensor, the ``0e`` blocks."""
        if self.is_scalar:
            return values
        if self.is_vector:
            return torch.zeros_like(values)
        if self.is_rank2:
            trace = values.diagonal(dim1=-2, dim2=-1).sum(-1)
            eye = torch.eye(3, dtype=values.dtype, device=values.device)
            return trace[..., None, None] / 3.0 * eye
        keep = torch.zeros(values.shape[-1], dtype=values.dtype, device=values.device)
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            if ir.l == 0 and ir.p == 1:
                keep[sl] = 1.0
        return values * keep

    def irreducible_parts(self, y: Tensor) -> dict[str, Tensor]:
        """``{name: [n, k]}``: a vector's ``l=1``; a rank-2 tensor's ``l=0`` (``tr T/3``),
        ``l=1`` (``A_yz, A_xz, A_xy`` of ``A = (T - T^T)/2``, not for ``rank2-symmetric``)
        and ``l=2`` (the 9 entries of the symmetric traceless part); one part per irrep
        copy (:meth:`irrep_blocks`); a scalar's ``l=0``."""
        n = y.shape[0]
        if self.is_rank2:
            t = y.reshape(n, 3, 3)
            iso = torch.diagonal(t, dim1=1, dim2=2).sum(-1) / 3.0
            sym = 0.5 * (t + t.transpose(1, 2)) - iso[:, None, None] * torch.eye(3, dtype=t.dtype)
            parts = {"l=0": iso[:, None]}
            if not self.is_symmetric:
                a = 0.5 * (t - t.transpose(1, 2))
                parts["l=1"] = torch.stack([a[:, 1, 2], a[:, 0, 2], a[:, 0, 1]], dim=1)
            parts["l=2"] = sym.reshape(n, 9)
            return parts
        if not self.is_irreps:
            return {f"l={self.lmax}": y.reshape(n, -1)}
        return {name: y.reshape(n, -1)[:, sl] for name, sl in self.irrep_blocks()}

    # -- rotations and intrinsically covariant bases -----------------------------------
    def act(self, y: Tensor, rotation: Tensor) -> Tensor:
        """Apply ``rotation[k]`` to ``y[k]``: ``y`` ``[K, ..., *components]``, ``rotation`` ``[K, 3, 3]``."""
        if self.is_scalar:
            return y
        if self.is_vector:
            return torch.einsum("kij,k...j->k...i", rotation, y)
        if self.is_rank2:
            return torch.einsum("kij,k...jl,kml->k...im", rotation, y, rotation)
        parts = []
        for (mul, ir), (sl, d) in zip(self.irreps, wigner_D(self.irreps, rotation)):
            block = y[..., sl].reshape(*y.shape[:-1], mul, ir.dim)
            parts.append(torch.einsum("kij,k...mj->k...mi", d, block).reshape(*y.shape[:-1], -1))
        return torch.cat(parts, dim=-1)

    def direction_blocks(self, r: Tensor, o3: bool = False) -> list[tuple[int, int, Tensor | None]]:
        """Covariants of this type made from vectors ``r`` ``[E, 3]``, as blocks
        ``(mul, width, Y)``: ``mul`` copies of ``Y`` ``[E, width]`` (``None``: zero) fill
        the next ``mul * width`` flat components.  ``1`` (scalar), ``r`` (vector),
        ``r r^T`` (rank-2), e3nn's unnormalised ``Y_l(r)`` (Irreps; with ``o3``, zero
        for irreps whose parity is not ``(-1)^l``, which vectors cannot carry).
        """
        if self.is_scalar:
            return [(1, 1, r.new_ones(r.shape[0], 1))]
        if self.is_vector:
            return [(1, 3, r)]
        if self.is_rank2:
            return [(1, 9, (r[:, :, None] * r[:, None, :]).reshape(-1, 9))]
        return [(mul, ir.dim, _spherical_harmonics(ir.l, r, normalize=False, normalization="component")
                 if (not o3) or ir.p == (-1) ** ir.l else None) for mul, ir in self.irreps]

    def invariant_basis(self, o3: bool = False, dtype=None, device=None) -> Tensor:
        """Rows spanning the invariant values ``[n, flat_size]``: ``1`` (scalar), none
        (vector), ``I`` (rank-2), a unit row per ``l=0`` copy (Irreps; with ``o3``, zero
        rows for ``0o``)."""
        if not self.is_irreps:
            rows = [torch.eye(3).reshape(9) if self.is_rank2 else torch.ones(1)] if self.has_isotropic else []
            return torch.stack(rows).to(dtype=dtype, device=device) if rows else \
                torch.zeros(0, self.flat_size, dtype=dtype, device=device)
        rows = []
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            for m in range(mul if ir.l == 0 else 0):
                row = torch.zeros(self.flat_size, dtype=dtype, device=device)
                row[sl.start + m] = float((not o3) or ir.p == 1)
                rows.append(row)
        return torch.stack(rows) if rows else torch.zeros(0, self.flat_size, dtype=dtype, device=device)
