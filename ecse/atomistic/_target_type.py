"""The target types of the atomistic stack, one record each (:class:`TargetType`).

Private home of :class:`TargetType` and :func:`target_type`; the public names live in
:mod:`ecse.atomistic.targets`, whose module docstring has the table of types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

from ..covariant import OutputSpec

__all__ = ["ENERGY_TYPES", "TENSOR_TYPES", "TargetType", "target_type"]

#: energy-like target types (one model: energy, with forces/stress by autograd)
ENERGY_TYPES = ("energy", "forces", "stress")
#: named tensor target types (besides e3nn Irreps strings)
TENSOR_TYPES = tuple(name for name in OutputSpec.NAMED if not OutputSpec(name).is_scalar)


@dataclass(frozen=True)
class TargetType:
    """Everything the atomistic code asks about one target type (the table of
    :mod:`ecse.atomistic.targets`).

    Attributes
    ----------
    name : the type (``"energy"``, ``"forces"``, ``"stress"``, a tensor output type).
    spec : its components and rotation (:class:`~ecse.covariant.OutputSpec`): energy a
        scalar, forces a vector, stress a symmetric rank-2 tensor, tensors their own.
    energy_like : predicted by an energy model (forces and stress by autograd).
    level : ``"graph"`` / ``"node"`` for energy-like types, ``None`` for tensors (the
        model's level).
    unit : ``eV``, ``eV/Å``, ``eV/Å³`` for energy-like types (reports print meV), else ``None``.
    per_atom : one value per atom (forces) instead of one per structure.
    derivative : a derivative of the energy (forces, stress).
    periodic : needs a periodic structure (stress).
    errors_per_atom : errors are also divided by the atom count (energy; its loss uses them).
    strict_symmetric : 9 Cartesian numbers must form a symmetric tensor (``rank2-symmetric``).
    labels : names of the packed components (:meth:`OutputSpec.pack`).

    >>> target_type("forces").spec, target_type("stress").level, target_type("vector").level
    (OutputSpec('vector'), 'graph', None)
    """

    name: str
    spec: OutputSpec = field(repr=False)
    energy_like: bool = False
    level: Optional[str] = None
    unit: Optional[str] = None
    per_atom: bool = False
    derivative: bool = False
    periodic: bool = False
    errors_per_atom: bool = False
    strict_symmetric: bool = False
    labels: tuple = field(default=(), repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one structure's (forces: one atom's) value."""
        return self.spec.component_shape

    def level_for(self, level: str = "graph") -> str:
        """``"graph"`` or ``"node"``: where a target of this type lives (tensors: ``level``)."""
        if self.level is not None:
            return self.level
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        return level

    def metric_name(self, key: str) -> str:
        """Prefix of this target's metrics: the type for energy-like targets, else the key."""
        return self.name if self.energy_like else key


_ENERGY_LIKE = {
    "energy": dict(output="scalar", level="graph", unit="eV", errors_per_atom=True, labels=("E",)),
    "forces": dict(output="vector", level="node", unit="eV/Å", per_atom=True, derivative=True),
    "stress": dict(output="rank2-symmetric", level="graph", unit="eV/Å³", derivative=True, periodic=True),
}


@lru_cache(maxsize=None)
def target_type(kind: str) -> TargetType:
    """The :class:`TargetType` of ``kind``; ``ValueError`` for an unknown type.

    >>> t = target_type("1x0e+1x2e"); t.spec.is_spherical_rank2, t.shape, t.energy_like
    (True, (6,), False)
    """
    if kind in _ENERGY_LIKE:
        opts = dict(_ENERGY_LIKE[kind])
        spec = OutputSpec(opts.pop("output"))
        return TargetType(kind, spec, energy_like=True, **{"labels": spec.component_labels, **opts})
    try:
        spec = OutputSpec(kind)
    except (ValueError, TypeError):
        spec = None
    if spec is None or spec.is_scalar or spec.flat_size == 0:
        raise ValueError(f"unknown type {kind!r}; use one of {', '.join(ENERGY_TYPES + TENSOR_TYPES)} or an e3nn "
                         "Irreps string such as '1x1o' or '1x0e+1x2e'")
    return TargetType(kind, spec, strict_symmetric=spec.is_symmetric, labels=spec.component_labels)
