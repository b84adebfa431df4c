"""Error metrics of the evaluation (:mod:`ecse.atomistic.evaluation`), in numpy.

Target types: ``"energy"`` (``[S]``), ``"forces"`` (``[N, 3]``), ``"stress"``
(``[S, 3, 3]``), ``"vector"`` (``[n, 3]``), ``"rank2"`` / ``"rank2-symmetric"``
(``[n, 3, 3]``) and e3nn Irreps strings (``[n, dim]``); ``n`` counts structures or atoms.

Irreducible parts of a tensor ``T`` (each reported with MAE, RMSE and target std over the
listed components, pooled over items):

* vector: ``l=1``, the three components;
* rank-2: ``l=0`` the isotropic value ``tr(T)/3``; ``l=1`` the three independent
  components ``(A_yz, A_xz, A_xy)`` of the antisymmetric part ``A = (T - T^T)/2``;
  ``l=2`` the nine Cartesian components of the symmetric traceless part
  ``(T + T^T)/2 - tr(T)/3 I``. Their RMSEs are invariant under rotations of the data;
* Irreps: one part per irrep block, named ``"{l}{p}"`` plus ``"#k"`` when repeated.

Example
-------
>>> import numpy as np
>>> m = tensor_metrics(np.ones((4, 3)), np.zeros((4, 3)), "vector")
>>> m["parts"]["l=1"]["rmse"], sorted(m["components"])
(1.0, ['x', 'y', 'z'])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..covariant import irreps_to_symmetric
from .targets import ENERGY_TYPES, TENSOR_TYPES, target_type

__all__ = ["ENERGY_TYPES", "TENSOR_TYPES", "component_labels", "irreducible_parts", "error_stats",
           "energy_metrics", "tensor_metrics"]


def component_labels(kind: str) -> list[str]:
    """Names of the Cartesian (or Irreps) components, in the order of ``_flat``.

    >>> component_labels("rank2-symmetric")
    ['xx', 'yy', 'zz', 'yz', 'xz', 'xy']
    """
    return list(target_type(kind).labels)


def _flat(y: np.ndarray, kind: str) -> np.ndarray:
    """``[n, components]`` view of predictions or targets of type ``kind`` (Voigt order
    for symmetric tensors, :meth:`ecse.covariant.OutputSpec.pack`)."""
    return target_type(kind).spec.pack(y)


def irreducible_parts(y: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """``{part name: [n, components]}`` for a tensor type (see the module docstring and
    :meth:`ecse.covariant.OutputSpec.irreducible_parts`).

    >>> T = np.array([[[1.0, 2, 0], [0, 1, 0], [0, 0, 1]]])
    >>> {k: v.round(3).tolist() for k, v in irreducible_parts(T, "rank2").items()}["l=1"]
    [[0.0, 0.0, 1.0]]
    """
    parts = target_type(kind).spec.irreducible_parts(torch.as_tensor(np.asarray(y)))
    return {name: part.numpy() for name, part in parts.items()}


def error_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and std of ``true`` over all entries (std: per column, pooled), with the
    errors also as % of that std.

    >>> error_stats(np.array([[1.0], [3.0]]), np.array([[0.0], [2.0]]))
    {'mae': 1.0, 'rmse': 1.0, 'std': 1.0, 'mae_pct': 100.0, 'rmse_pct': 100.0}
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match the target shape {true.shape}")
    err = (pred - true).reshape(len(true), -1)
    cols = true.reshape(len(true), -1)
    std = float(np.sqrt(cols.var(axis=0).mean())) if cols.size else float("nan")
    mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))
    pct = (lambda v: 100.0 * v / std) if std > 0 else (lambda v: float("nan"))
    return {"mae": mae, "rmse": rmse, "std": std, "mae_pct": pct(mae), "rmse_pct": pct(rmse)}


def energy_metrics(pred: np.ndarray, true: np.ndarray, kind: str,
                   atoms_per_structure: Sequence[int] | None = None) -> dict[str, float]:
    """Metrics of an energy (also per atom, given ``atoms_per_structure``), forces or stress.

    >>> energy_metrics(np.array([2.0, 4.0]), np.array([0.0, 0.0]), "energy", [2, 4])["mae_per_atom"]
    1.0
    """
    out = error_stats(pred, true)
    if target_type(kind).errors_per_atom and atoms_per_structure is not None:
        n = np.asarray(atoms_per_structure, dtype=np.float64)
        per_atom = error_stats(np.asarray(pred).reshape(-1) / n, np.asarray(true).reshape(-1) / n)
        out.update({f"{k}_per_atom": v for k, v in per_atom.items()})
    return out


def tensor_metrics(pred: np.ndarray, true: np.ndarray, kind: str) -> dict:
    """Overall, per-component and per-irreducible-part statistics of a tensor target."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match the target shape {true.shape}")
    fp, ft = _flat(pred, kind), _flat(true, kind)
    out = error_stats(fp, ft)
    out["components"] = {label: error_stats(fp[:, k:k + 1], ft[:, k:k + 1])
                         for k, label in enumerate(component_labels(kind))}
    parts_p, parts_t = irreducible_parts(pred, kind), irreducible_parts(true, kind)
    out["parts"] = {name: error_stats(parts_p[name], parts_t[name]) for name in parts_t}
    if target_type(kind).spec.is_spherical_rank2:
        # a symmetric tensor trained in its (l=0, l=2) parts: also in Cartesian form
        cart = [irreps_to_symmetric(torch.as_tensor(y.reshape(len(y), 6))).numpy() for y in (pred, true)]
        out["cartesian"] = tensor_metrics(cart[0], cart[1], "rank2-symmetric")
    return out
