r"""ASE ``Atoms`` -> PyTorch Geometric ``Data``, dataset loading, splitting and
composition baselines.

Conventions
-----------
* ``cell`` ``[1, 3, 3]`` has the lattice vectors as rows (ASE's convention); it is all
  zeros for non-periodic structures, and ``pbc`` ``[1, 3]`` is then all ``False``.
* ``edge_index`` ``[2, E]`` follows PyG's ``source_to_target`` flow:
  ``edge_index[0]`` is the neighbour :math:`j`, ``edge_index[1]`` the centre :math:`i`
  (edges sorted by centre), and the integer ``shift`` ``[E, 3]`` gives the periodic
  image, so that the displacement from :math:`i` to :math:`j` is
  ``pos[j] - pos[i] + shift @ cell``.
* Graph-level targets carry a leading dimension of 1 (energy ``[1]``, stress
  ``[1, 3, 3]``, dipole ``[1, 3]``) so that ``Batch.from_data_list`` stacks them;
  node-level targets are ``[N, ...]``.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch_geometric.data import Data

from ..neighbors import SINGULAR_TOL, lattice_measure, neighbor_list
from ..elements import MAX_Z
from ._composition import apply_composition_baseline, composition_energy, fit_composition_baseline

__all__ = [
    "atoms_to_data",
    "load_dataset",
    "split_dataset",
    "fit_composition_baseline",
    "composition_energy",
    "apply_composition_baseline",
]

_KINDS = ("graph", "node")


def _where(name: Optional[str]) -> str:
    return f" in {name}" if name else ""


def _periodicity(atoms, name: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(cell [3, 3], pbc [3])``; a periodic direction with a zero lattice vector is
    dropped (a zero cell makes the structure non-periodic). Missing vectors of partially
    periodic cells are completed orthogonally (ASE's ``Cell.complete``). A singular cell
    (linearly dependent periodic vectors) or a NaN/inf cell raises ``ValueError``."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not np.isfinite(cell).all():
        raise ValueError(f"NaN or infinite cell{_where(name)}: {cell.tolist()}")
    pbc = np.asarray(atoms.pbc, dtype=bool) & (np.abs(cell).sum(axis=1) > 0)
    if not pbc.any():
        return np.zeros((3, 3)), np.zeros(3, dtype=bool)
    vectors = cell[pbc]
    lattice_measure(vectors, _where(name))
    full = np.asarray(atoms.cell.complete(), dtype=np.float64)
    if abs(np.linalg.det(full)) <= SINGULAR_TOL * float(np.prod(np.linalg.norm(full, axis=1))):
        # non-periodic vectors along periodic ones: replace them by orthonormal directions
        full[~pbc] = np.linalg.svd(vectors, full_matrices=True)[2][len(vectors):]
    return full, pbc


def _read_target(atoms, key: str, kind: str, name: Optional[str]) -> np.ndarray:
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if key in results:
        value = results[key]
    elif key in atoms.info:
        value = atoms.info[key]
    elif key in atoms.arrays:
        value = atoms.arrays[key]
    else:
        raise KeyError(f"target {key!r} not found{_where(name)} (looked in atoms.calc.results, "
                       f"atoms.info and atoms.arrays)")
    try:
        value = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"target {key!r}{_where(name)} is not numeric: {err}") from None
    if not np.isfinite(value).all():
        raise ValueError(f"target {key!r}{_where(name)} has NaN or infinite values")
    if key == "stress" and value.shape == (6,):
        from ase.stress import voigt_6_to_full_3x3_stress

        value = voigt_6_to_full_3x3_stress(value)
    if kind == "node" and (value.ndim == 0 or value.shape[0] != len(atoms)):
        raise ValueError(f"node target {key!r}{_where(name)} has shape {value.shape}, "
                         f"expected a leading dimension of {len(atoms)} atoms")
    return value[None] if kind == "graph" else value


def atoms_to_data(atoms, cutoff: Optional[float] = None, dtype: Optional[torch.dtype] = None,
                  targets: Optional[Mapping[str, str]] = None, name: Optional[str] = None) -> Data:
    """Convert one ``ase.Atoms`` to a PyG ``Data``.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    cutoff : float, optional
        When given, also store ``edge_index`` ``[2, E]`` (``[neighbour j, centre i]``)
        and integer periodic ``shift`` ``[E, 3]`` (full list, vesin) such that
        ``pos[j] - pos[i] + shift @ cell`` is the displacement. Not needed for PET,
        which builds its own neighbour list.
    dtype : torch.dtype, optional
        Floating dtype of ``pos``, ``cell`` and the targets; default
        ``torch.get_default_dtype()`` (float32 unless changed), the dtype of a freshly
        built model such as ``PET()``. Pass ``torch.float64`` for a ``.double()`` model.
    targets : mapping, optional
        ``{key: "graph" | "node"}``, e.g. ``{"energy": "graph", "forces": "node"}``.
        Values come from ``atoms.calc.results`` (where ``ase.io.read`` puts
        energy/forces/stress/dipole of extxyz files), else ``atoms.info`` or
        ``atoms.arrays``. Voigt stress (6) is converted to 3x3.
    name : str, optional
        Label of the structure (e.g. ``"file.xyz[3]"``) used in error messages.

    Returns
    -------
    torch_geometric.data.Data
        With ``z`` (long), ``pos``, ``cell`` ``[1, 3, 3]``, ``pbc`` ``[1, 3]``,
        ``num_nodes`` and the targets.

    Raises
    ------
    ValueError
        No atoms, unknown element (atomic number 0, e.g. ASE's ``'X'``, or > 118), NaN/inf positions
        or cell, a singular cell, a bad target kind, a node target of the wrong length, a
        non-finite target value, or (with ``cutoff``) too many periodic images (see
        :func:`ecse.neighbors.neighbor_list`). Messages name the structure (``name``).
    KeyError
        A requested target is missing.

    Examples
    --------
    >>> import torch
    >>> from ase.build import molecule
    >>> data = atoms_to_data(molecule("CH4"), cutoff=2.0)
    >>> data.z.tolist(), tuple(data.cell.shape), data.edge_index.shape[1]
    ([6, 1, 1, 1, 1], (1, 3, 3), 20)
    >>> data.pos.dtype == torch.get_default_dtype()
    True
    >>> atoms_to_data(molecule("CH4"), dtype=torch.float64).pos.dtype
    torch.float64
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype (torch.float32, torch.float64), got {dtype!r}")
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    if numbers.size == 0:
        raise ValueError(f"empty structure (no atoms){_where(name)}")
    bad = (numbers < 1) | (numbers > MAX_Z)
    if bad.any():
        from ase.data import chemical_symbols

        symbols = sorted({chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
                          for z in numbers[bad].tolist()})
        raise ValueError(f"unknown element(s) {symbols} (atomic numbers {sorted(set(numbers[bad].tolist()))})"
                         f"{_where(name)}; supported: 1..{MAX_Z}")
    cell, pbc = _periodicity(atoms, name)
    positions = np.asarray(atoms.positions, dtype=np.float64)
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise ValueError(f"NaN or infinite positions{_where(name)}: atom(s) {np.flatnonzero(bad)[:10].tolist()}")
    data = Data(z=torch.from_numpy(numbers), pos=torch.tensor(positions, dtype=dtype),
                cell=torch.tensor(cell, dtype=dtype)[None], pbc=torch.from_numpy(pbc)[None],
                num_nodes=len(atoms))
    if cutoff is not None:  # float64 search, whatever the stored dtype
        try:
            nl = neighbor_list(torch.from_numpy(positions), float(cutoff), cell=torch.from_numpy(cell)[None],
                               pbc=torch.from_numpy(pbc)[None])
        except ValueError as err:
            raise ValueError(f"{name or 'structure'}: {err}".replace("structure 0 of the batch: ", "")) from None
        data.edge_index = torch.stack([nl.neighbor, nl.center])
        data.shift = nl.shift
    for key, kind in (targets or {}).items():
        if kind not in _KINDS:
            raise ValueError(f"target {key!r}: kind must be one of {_KINDS}, got {kind!r}")
        data[key] = torch.tensor(_read_target(atoms, key, kind, name), dtype=dtype)
    return data


def _count(path: str) -> str:
    import ase.io

    try:
        return f"index out of range, the file has {len(ase.io.read(path, index=':'))} structure(s)"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def read_structures(path: Union[str, os.PathLike], index: Union[str, int, slice] = ":") -> list:
    """``ase.io.read(path, index)`` as a list of ``Atoms``, with errors naming the file.

    Raises ``FileNotFoundError`` (no such file) or ``ValueError`` (ASE cannot read it).
    """
    import ase.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path!r}")
    try:
        frames = ase.io.read(path, index=index)
    except (StopIteration, IndexError) as err:  # an index beyond the last structure
        raise ValueError(f"could not read {path!r} with ASE (index {index!r}): {_count(path)}") from err
    except Exception as err:  # ASE raises many different types for unreadable files
        raise ValueError(f"could not read {path!r} with ASE (index {index!r}): {type(err).__name__}: {err}") from err
    return frames if isinstance(frames, list) else [frames]


def load_dataset(path: Union[str, os.PathLike], targets: Optional[Mapping[str, str]] = None,
                 cutoff: Optional[float] = None, index: Union[str, int, slice] = ":",
                 dtype: Optional[torch.dtype] = None) -> list[Data]:
    """Read any ASE-readable file (extxyz, ...) into a list of ``Data``.

    Parameters
    ----------
    path : str or PathLike
        File to read (format guessed by ASE from the name/content).
    targets, cutoff, dtype
        As in :func:`atoms_to_data` (``dtype`` default: ``torch.get_default_dtype()``).
    index : str, int or slice
        ASE index selection (``":"`` = all frames).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        ASE cannot read it or ``index`` selects nothing (the message names the file), or a
        structure is invalid (the message names the file and the structure's index).

    Examples
    --------
    >>> data = load_dataset("methane_train.xyz", {"energy": "graph", "forces": "node"})  # doctest: +SKIP
    """
    path = os.fspath(path)
    frames = read_structures(path, index)
    if not frames:
        raise ValueError(f"no structures in {path!r} with index {index!r}")
    return [atoms_to_data(atoms, cutoff=cutoff, dtype=dtype, targets=targets, name=f"{path}[{k}]")
            for k, atoms in enumerate(frames)]


def split_dataset(data_list: Sequence, sizes: Sequence[Union[int, float]] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> tuple[list, list, list]:
    """Seeded random split into disjoint ``(train, val, test)`` lists.

    Parameters
    ----------
    data_list : sequence
        Items to split.
    sizes : three ints or three fractions
        Integer counts (sum <= ``len(data_list)``) or fractions in [0, 1] (sum <= 1;
        when they sum to 1 the test set takes the rounding remainder).
    seed : int
        Seed of the permutation (same seed -> same split).

    Examples
    --------
    >>> train, val, test = split_dataset(list(range(10)), (6, 2, 2), seed=0)
    >>> len(train), len(val), len(test), sorted(train + val + test) == list(range(10))
    (6, 2, 2, True)
    """
    n = len(data_list)
    if len(sizes) != 3:
        raise ValueError(f"sizes must have 3 entries (train, val, test), got {sizes!r}")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
        counts = [int(s) for s in sizes]
        if min(counts) < 0 or sum(counts) > n:
            raise ValueError(f"sizes {counts} must be >= 0 and sum to at most {n}")
    else:
        fractions = [float(s) for s in sizes]
        if min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
            raise ValueError(f"fractions {fractions} must be >= 0 and sum to at most 1")
        counts = [int(np.floor(f * n + 1e-9)) for f in fractions]
        if abs(sum(fractions) - 1) < 1e-9:
            counts[2] = n - counts[0] - counts[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    bounds = np.cumsum([0] + counts)
    return tuple([data_list[k] for k in perm[bounds[s]:bounds[s + 1]]] for s in range(3))
