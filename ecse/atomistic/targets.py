"""Training targets: their types, how they are read, rotated and predicted.

A training configuration names its targets as ``{key in the files: type}``
(:func:`target_types`). A model predicts **either** an energy, with forces and/or
stress by autograd, **or exactly one** tensor:

===================  ==========================================  =============
type                 read from the files as                      stored as
===================  ==========================================  =============
``energy``           1 number per structure                      ``[1]``
``forces``           3 numbers per atom                          ``[N, 3]``
``stress``           9 (row-major) or 6 (Voigt) numbers          ``[1, 3, 3]``
``vector``           3 numbers (e.g. a dipole ``mu``)            ``[1, 3]``
``rank2``            9 numbers, row-major                        ``[1, 3, 3]``
``rank2-symmetric``  9 row-major (symmetric) or 6 Voigt numbers  ``[1, 3, 3]``
Irreps string        ``irreps.dim`` numbers in e3nn's layout     ``[1, dim]``
``"1x0e+1x2e"``      also 9 Cartesian numbers (symmetric),       ``[1, 6]``
                     converted to ``(tr T / sqrt 3, l=2 part)``
===================  ==========================================  =============

So a symmetric polarizability stored as 9 Cartesian numbers trains either in Cartesian
form (``alpha: rank2-symmetric``) or in its ``l=0`` and ``l=2`` parts (``alpha:
1x0e+1x2e``, each part's loss scaled by its own spread, see
:mod:`ecse.atomistic._objective`).

Voigt order is ``xx, yy, zz, yz, xz, xy`` (ASE's). Under a rotation ``R`` (positions
``x @ R.T``) forces and vectors go to ``v @ R.T``, stress and rank-2 tensors to
``R @ T @ R.T`` and Irreps features to ``f @ D(R).T`` (:func:`rotate_targets`). The same
formulas hold for an inversion ``R = -I`` (``augment_inversion``): a ``vector`` is
polar (a dipole changes sign), a rank-2 tensor is unchanged; use an Irreps type such
as ``"1x1e"`` for an axial vector.

Evaluation code can reuse :func:`target_types` and :func:`predict`:

>>> from ecse.atomistic.config import config_from_dict
>>> target_types(config_from_dict({"data": {"files": "a.xyz"}}))
{'energy': 'energy', 'forces': 'forces'}
>>> target_types(config_from_dict({"data": {"files": "a.xyz", "targets": {"alpha": "rank2-symmetric"}}}))
{'alpha': 'rank2-symmetric'}
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..covariant import from_voigt, symmetric_to_irreps
from ._target_type import ENERGY_TYPES, TENSOR_TYPES, TargetType, target_type

__all__ = ["ENERGY_TYPES", "TENSOR_TYPES", "TargetType", "target_type", "target_types", "check_targets",
           "tensor_target", "energy_keys", "target_shape", "target_level", "prepare_targets", "rotate_targets",
           "predict"]


def check_targets(targets: Mapping[str, str]) -> dict[str, str]:
    """Validate a ``{key: type}`` mapping; returns it as a plain ``dict``.

    Raises
    ------
    ValueError
        An unknown type, two tensor targets, a tensor target next to energy-like ones,
        forces/stress without an energy, or two targets of one energy-like type.

    Examples
    --------
    >>> check_targets({"mu": "vector"})
    {'mu': 'vector'}
    >>> check_targets({"mu": "vector", "alpha": "rank2"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: targets: 'mu' (vector) and 'alpha' (rank2) are both tensor targets; ...
    """
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError(f"'targets' must be a non-empty mapping {{key: type}}, got {targets!r}")
    out: dict[str, str] = {}
    for key, kind in targets.items():
        if not isinstance(key, str) or not isinstance(kind, str):
            raise ValueError(f"targets: keys and types must be strings, got {key!r}: {kind!r}")
        try:
            target_type(kind)
        except ValueError as err:
            raise ValueError(f"targets: {key!r} has {err}") from None
        out[key] = kind
    tensors = [k for k, t in out.items() if not target_type(t).energy_like]
    energy_like = [k for k, t in out.items() if target_type(t).energy_like]
    if len(tensors) > 1:
        names = " and ".join(f"{k!r} ({out[k]})" for k in tensors)
        raise ValueError(f"targets: {names} are both tensor targets; a model predicts exactly one tensor "
                         "target (train one model per tensor)")
    if tensors and energy_like:
        raise ValueError(f"targets: tensor target {tensors[0]!r} ({out[tensors[0]]}) cannot be combined with "
                         f"{', '.join(repr(k) for k in energy_like)}: a model predicts either an energy (with "
                         "forces and stress by autograd) or one tensor")
    for kind in ENERGY_TYPES:
        keys = [k for k in energy_like if out[k] == kind]
        if len(keys) > 1:
            raise ValueError(f"targets: at most one target of type {kind!r}, got {keys}")
    if energy_like and "energy" not in out.values():
        raise ValueError(f"targets: {', '.join(repr(k) for k in energy_like)} need an 'energy' target "
                         "(forces and stress are derivatives of the energy)")
    return out


def target_types(config: Any) -> dict[str, str]:
    """The targets of a :class:`~ecse.atomistic.config.TrainConfig` as ``{key: type}``.

    ``config.targets`` when given (validated), else ``{energy_key: "energy",
    forces_key: "forces"}`` plus ``{stress_key: "stress"}`` when ``stress_weight > 0``.
    """
    if config.targets is None:
        types = {config.energy_key: "energy", config.forces_key: "forces"}
        if config.stress_weight > 0:
            types[config.stress_key] = "stress"
        return check_targets(types)
    types = check_targets(config.targets)
    if config.stress_weight > 0 and "stress" not in types.values():
        raise ValueError(f"stress_weight={config.stress_weight} but 'targets' has no stress target: "
                         f"add e.g. {config.stress_key}: stress")
    return types


def tensor_target(types: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """``(key, type)`` of the tensor target, or ``None`` for an energy model."""
    found = [(k, t) for k, t in types.items() if not target_type(t).energy_like]
    return found[0] if found else None


def energy_keys(types: Mapping[str, str]) -> dict[str, Optional[str]]:
    """``{"energy": key or None, "forces": ..., "stress": ...}``."""
    return {kind: next((k for k, t in types.items() if t == kind), None) for kind in ENERGY_TYPES}


def target_shape(kind: str) -> tuple[int, ...]:
    """Shape of one structure's value (without the leading 1; forces: per atom).

    >>> target_shape("rank2-symmetric"), target_shape("1x0e+1x2e")
    ((3, 3), (6,))
    """
    return target_type(kind).shape


def target_level(kind: str, level: str = "graph") -> str:
    """``"graph"`` or ``"node"``: where a target of this type lives (tensors: ``level``)."""
    return target_type(kind).level_for(level)


def _as_tensor(value: Tensor, key: str, kind: str, where: str) -> Tensor:
    target = target_type(kind)
    spec, flat = target.spec, value.reshape(-1)
    n = flat.numel()
    if spec.is_rank2:
        if n == spec.packed_size != 9:  # Voigt
            return from_voigt(flat)[None]
        if n != 9:
            sizes = "9 (row-major) or 6 (Voigt xx yy zz yz xz xy)" if spec.is_symmetric else "9 (row-major)"
            raise ValueError(f"{where}: target {key!r} ({kind}) has {n} numbers, expected {sizes}")
        t = flat.reshape(3, 3)
        if target.strict_symmetric:
            scale = float(t.abs().max()) or 1.0
            if float((t - t.T).abs().max()) > 1e-6 * scale:
                raise ValueError(f"{where}: target {key!r} is declared {kind} but is not symmetric; "
                                 "use type 'rank2'")
        return t[None]
    if n == 9 and spec.is_spherical_rank2:  # a Cartesian symmetric tensor -> (l=0, l=2)
        t = _as_tensor(value, key, "rank2-symmetric", where)
        return symmetric_to_irreps(t.to(torch.float64)).to(t.dtype)
    if n != spec.flat_size:
        raise ValueError(f"{where}: target {key!r} ({kind}) has {n} numbers, expected {spec.flat_size}")
    return flat.reshape(1, *spec.component_shape)


def prepare_targets(data_list: Sequence, types: Mapping[str, str], source: str = "data") -> list:
    """Bring the targets of ``data_list`` (read as graph/node targets) to the shapes of
    the table above, checking their sizes; errors name ``source[index]`` and the key.

    Stress needs periodic structures (a non-singular cell).
    """
    for index, data in enumerate(data_list):
        where = f"{source}[{index}]"
        for key, kind in types.items():
            value, target = data[key], target_type(kind)
            if target.per_atom:
                if tuple(value.shape) != (data.num_nodes, *target.shape):
                    raise ValueError(f"{where}: {kind} {key!r} have shape {tuple(value.shape)}, "
                                     f"expected ({data.num_nodes}, {', '.join(map(str, target.shape))})")
                continue
            data[key] = _as_tensor(value, key, kind, where)
            if target.periodic and not bool(data.pbc.any()):
                raise ValueError(f"{where}: {kind} target {key!r} needs a periodic structure (this one has no "
                                 "periodic cell)")
    return list(data_list)


def rotate_targets(batch, types: Mapping[str, str], rotations: Tensor):
    """Rotate a ``Batch`` in place by ``rotations[g]`` ``[B, 3, 3]`` per structure
    (orthogonal, proper or not): positions and forces ``v @ R.T``, cell ``cell @ R.T``,
    stress and rank-2 targets ``R @ T @ R.T``, vectors ``v @ R.T``, Irreps targets
    ``f @ D(R).T`` (e3nn's parity convention). Returns the batch.
    """
    rot = rotations.to(dtype=batch.pos.dtype, device=batch.pos.device)
    per_node = rot[batch.batch]
    batch.pos = torch.einsum("nij,nj->ni", per_node, batch.pos)
    batch.cell = batch.cell @ rot.transpose(1, 2)
    for key, kind in types.items():
        target = target_type(kind)
        batch[key] = target.spec.act(batch[key], per_node if target.per_atom else rot)
    return batch


def predict(model: nn.Module, batch, types: Mapping[str, str], create_graph: bool = False) -> dict[str, Tensor]:
    """Predictions of a trained model for every target, as ``{key: tensor}``.

    Energy models give the energy ``[B]`` and, when targets of those types are listed,
    forces ``[N, 3]`` (``-dE/dpos``) and stress ``[B, 3, 3]`` (periodic structures only)
    by autograd (``create_graph=True`` to train on them). A tensor model gives its
    target: ``[B, 3]``, ``[B, 3, 3]`` or ``[B, irreps.dim]``.

    Examples
    --------
    >>> import torch
    >>> from ase.build import molecule
    >>> from ecse.backbones import PET
    >>> from torch_geometric.data import Batch
    >>> from ecse.atomistic import atoms_to_data
    >>> batch = Batch.from_data_list([atoms_to_data(molecule("H2O"), dtype=torch.float64)])
    >>> out = predict(PET(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=1,
    ...                   dim_feedforward=8, head_hidden=8).double(), batch, {"energy": "energy", "forces": "forces"})
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'energy': (1,), 'forces': (3, 3)}
    """
    from .derivatives import energy_and_forces, energy_forces_stress

    tensor = tensor_target(types)
    if tensor is not None:
        return {tensor[0]: model(batch)}
    keys = energy_keys(types)
    if keys["stress"] is not None:
        energy, forces, stress = energy_forces_stress(model, batch, create_graph=create_graph)
        out = {keys["energy"]: energy, keys["stress"]: stress}
    elif keys["forces"] is not None:
        energy, forces = energy_and_forces(model, batch, create_graph=create_graph)
        out = {keys["energy"]: energy}
    else:
        return {keys["energy"]: model(batch)}
    if keys["forces"] is not None:
        out[keys["forces"]] = forces
    return out
