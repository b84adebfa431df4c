"""Composition baselines: per-element reference energies fitted by least squares.

Private home of :func:`fit_composition_baseline`, :func:`composition_energy` and
:func:`apply_composition_baseline`, which :mod:`ecse.atomistic.data` exports.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from ..elements import MAX_Z

__all__ = ["fit_composition_baseline", "composition_energy", "apply_composition_baseline"]


def _counts(data_list: Sequence[Data], elements: np.ndarray) -> np.ndarray:
    column = np.full(MAX_Z + 1, -1)
    column[elements] = np.arange(len(elements))
    rows = [np.bincount(column[d.z.cpu().numpy()], minlength=len(elements)) for d in data_list]
    return np.stack(rows).astype(np.float64)


def fit_composition_baseline(data_list: Sequence[Data], key: str = "energy") -> dict[int, float]:
    r"""Per-element energies :math:`b_Z` from least squares :math:`E_s \approx \sum_Z n_{sZ} b_Z`.

    Solved with ``numpy.linalg.lstsq`` (minimum-norm solution). When the composition
    matrix is rank deficient only the projection onto its row space is identifiable:
    e.g. a data set of CH4 only determines :math:`b_C + 4 b_H` (the mean energy), and the
    minimum-norm split :math:`b \propto (1, 4)` is returned; predictions on structures
    of the same compositions are nonetheless exact least-squares fits.

    Returns
    -------
    dict
        ``{atomic number: energy}``, usable with ``PET.set_composition_offsets``.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> ds = [Data(z=torch.tensor(z), energy=torch.tensor([e], dtype=torch.float64))
    ...       for z, e in [([1, 1], -1.0), ([1, 8], -3.5), ([8, 8], -6.0)]]
    >>> {k: round(v, 6) for k, v in fit_composition_baseline(ds).items()}
    {1: -0.5, 8: -3.0}
    """
    if len(data_list) == 0:
        raise ValueError("cannot fit a composition baseline on an empty data set")
    elements = np.unique(np.concatenate([d.z.cpu().numpy().reshape(-1) for d in data_list]))
    counts = _counts(data_list, elements)
    energy = np.array([float(d[key].reshape(-1)[0]) for d in data_list])
    coef, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    return {int(z): float(c) for z, c in zip(elements, coef)}


def composition_energy(data: Data, baseline: Mapping[int, float]) -> Tensor:
    """Baseline energy ``[B]`` of a ``Data``/``Batch`` (sum of per-atom :math:`b_{Z}`).

    Raises ``ValueError`` if an element of ``data`` has no baseline entry.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> composition_energy(Data(z=torch.tensor([6, 1, 1])), {1: -0.5, 6: -2.0}).tolist()
    [-3.0]
    """
    dtype = data.pos.dtype if getattr(data, "pos", None) is not None else torch.float64
    table = torch.full((MAX_Z + 1,), float("nan"), dtype=dtype, device=data.z.device)
    table[torch.tensor(list(baseline.keys()), dtype=torch.long, device=table.device)] = torch.tensor(
        list(baseline.values()), dtype=dtype, device=table.device)
    z = data.z.long().reshape(-1)
    per_atom = table[z]
    if bool(per_atom.isnan().any()):
        raise ValueError(f"no baseline energy for element(s) {sorted(set(z[per_atom.isnan()].tolist()))}")
    batch = getattr(data, "batch", None)
    if batch is None:
        return per_atom.sum().reshape(1)
    return per_atom.new_zeros(int(data.num_graphs)).index_add(0, batch, per_atom)


def apply_composition_baseline(data_list: Sequence[Data], baseline: Mapping[int, float],
                               key: str = "energy") -> list[Data]:
    """Copies of ``data_list`` with ``data[key]`` minus the composition energy.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> d = Data(z=torch.tensor([1, 1]), energy=torch.tensor([-1.5], dtype=torch.float64))
    >>> apply_composition_baseline([d], {1: -0.5})[0].energy.tolist()
    [-0.5]
    """
    out = []
    for data in data_list:
        data = data.clone()
        target = data[key]
        data[key] = target - composition_energy(data, baseline).to(target.dtype).reshape(target.shape)
        out.append(data)
    return out
