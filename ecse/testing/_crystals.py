"""Hypothesis strategies for crystals: perfect and thermal fcc, bcc, hcp and diamond cells.

Re-exported by :mod:`ecse.testing.strategies` and :mod:`ecse.testing`.  Each example
is a small periodic supercell as a :class:`torch_geometric.data.Data` with ``pos``
``[N, 3]``, ``z`` ``[N]``, ``cell`` ``[1, 3, 3]`` (lattice vectors as rows) and ``pbc``
``[1, 3]`` (all ``True``):

* the nearest-neighbour distance ``d`` is drawn from ``nn_distance``; the cubic
  lattices are built from their conventional cells (fcc 4, bcc 2, diamond 8 atoms),
  hcp from its 2-atom hexagonal cell with ``c/a`` drawn from ``[1.58, 1.68]`` (ideal
  1.633); the supercell repeats each of them 1-4 times along each lattice vector,
  with at most ``max_atoms`` atoms;
* ``strain``: the cell (and the atoms, in fractional coordinates) is deformed by
  ``I + e`` with ``e`` symmetric, entries drawn from ``[-strain, strain]`` (a small
  skew and stretch);
* ``noise``: every coordinate moves by ``noise * g`` with ``g`` a standard normal
  clipped to ``[-2.5, 2.5]``; ``noise=0`` gives the perfect crystal.  Positions are
  wrapped into the cell.  Any two atoms stay at least ``d * (1 - 3 * strain) - 8.7 * noise``
  apart (periodic images included).

The first shell (12 atoms for fcc and hcp, 8 for bcc, 4 for diamond) lies within
``1.03 * d * (1 + 3 * strain)`` of an atom of a perfect crystal (1.03: hcp with
``c/a != 1.633``) and the second shell beyond ``1.15 * d * (1 - 3 * strain)``.
Examples shrink towards one cell, no strain, no noise, simple values of ``d`` and
the first species.

Examples
--------
>>> from hypothesis import given, settings
>>> @settings(max_examples=5, deadline=None)
... @given(thermal_crystals(lattice="fcc", noise=0.02))
... def check(data):
...     assert data.cell.shape == (1, 3, 3) and len(data.pos) % 4 == 0
>>> check()
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from torch_geometric.data import Data

__all__ = ["LATTICES", "CRYSTAL_SPECIES", "crystals", "perfect_crystals", "thermal_crystals"]

LATTICES: tuple[str, ...] = ("fcc", "bcc", "hcp", "diamond")
CRYSTAL_SPECIES: tuple[int, ...] = (29, 13, 26, 14)  # Cu, Al, Fe, Si
_CLIP = 2.5
_CELL_ATOMS = {"fcc": 4, "bcc": 2, "hcp": 2, "diamond": 8}


def _basis(lattice: str, d: float, c_over_a: float) -> tuple[np.ndarray, np.ndarray]:
    """``(cell [3, 3], fractional positions [B, 3])`` with nearest-neighbour distance ``d``."""
    if lattice == "hcp":  # scale a so that the shorter of the in-plane and out-of-plane bonds is d
        d = d / min(1.0, math.sqrt(1 / 3 + c_over_a**2 / 4))
        cell = d * np.array([[1.0, 0.0, 0.0], [-0.5, math.sqrt(3) / 2, 0.0], [0.0, 0.0, c_over_a]])
        return cell, np.array([[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 0.5]])
    fcc = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    if lattice == "fcc":
        return d * math.sqrt(2) * np.eye(3), fcc
    if lattice == "bcc":
        return d * 2 / math.sqrt(3) * np.eye(3), np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    return d * 4 / math.sqrt(3) * np.eye(3), np.concatenate([fcc, fcc + 0.25])  # diamond


@st.composite
def _crystals(draw, lattice, noise, strain, max_atoms, species, alloy, rotate, nn_distance, dtype) -> Data:
    from .strategies import _gauss, _rot, _unit  # at draw time: no import cycle with strategies

    lattice = lattice or draw(st.sampled_from([k for k in LATTICES if _CELL_ATOMS[k] <= max_atoms]))
    d = draw(st.floats(*nn_distance))
    c_over_a = draw(st.floats(1.58, 1.68)) if lattice == "hcp" else 1.0
    cell, frac = _basis(lattice, d, c_over_a)
    limit = max_atoms // len(frac)
    reps = []
    for _ in range(3):
        reps.append(draw(st.integers(1, max(1, min(4, limit)))))
        limit //= reps[-1]
    grid = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 1, 3)
    frac = ((grid + frac[None]) / np.array(reps)).reshape(-1, 3)
    cell = np.array(reps, dtype=np.float64)[:, None] * cell
    if strain > 0:
        e = np.array([draw(st.floats(-strain, strain)) for _ in range(9)]).reshape(3, 3)
        cell = cell @ (np.eye(3) + (e + e.T) / 2)
    pos = frac @ cell
    if noise > 0:
        g = np.array([_gauss(draw(_unit)) for _ in range(pos.size)]).reshape(pos.shape)
        pos = pos + noise * np.clip(g, -_CLIP, _CLIP)
        pos = (pos @ np.linalg.inv(cell)) % 1.0 @ cell
    if rotate:
        R = _rot(draw)
        pos, cell = pos @ R.T, cell @ R.T
    n = len(pos)
    if alloy:
        z = draw(st.lists(st.sampled_from(tuple(species)), min_size=n, max_size=n))
    else:
        z = [draw(st.sampled_from(tuple(species)))] * n
    return Data(pos=torch.from_numpy(np.ascontiguousarray(pos)).to(dtype), z=torch.tensor(z, dtype=torch.long),
                cell=torch.from_numpy(np.ascontiguousarray(cell)).to(dtype)[None],
                pbc=torch.ones(1, 3, dtype=torch.bool))


def crystals(lattice: Optional[str] = None, noise: float = 0.0, strain: float = 0.0, max_atoms: int = 64,
             species: Sequence[int] = CRYSTAL_SPECIES, alloy: bool = False, rotate: bool = False,
             nn_distance: tuple[float, float] = (2.2, 3.0), dtype: torch.dtype = torch.float64):
    """Strategy for periodic crystals (see the module docstring).

    Parameters
    ----------
    lattice : one of ``LATTICES``, or None to sample one.
    noise : standard deviation (length units of ``nn_distance``) of the clipped gaussian
        displacement of every coordinate; 0 gives perfect crystals.
    strain : largest entry of the random symmetric strain of the cell (``0 <= strain <= 0.1``).
    max_atoms : largest number of atoms (at least the size of the lattice's cell).
    species : atomic numbers to draw from: one per crystal, or one per site if ``alloy``.
    rotate : apply a random rotation to positions and cell (``R`` acts as ``x @ R.T``).
    nn_distance : range of the nearest-neighbour distance of the unstrained crystal.
    dtype : floating dtype of ``pos`` and ``cell``.
    """
    if lattice is not None and lattice not in LATTICES:
        raise ValueError(f"unknown lattice {lattice!r}; expected None or one of {LATTICES}")
    if not noise >= 0 or not 0 <= strain <= 0.1:
        raise ValueError(f"need noise >= 0 and 0 <= strain <= 0.1, got noise={noise}, strain={strain}")
    if not 0 < nn_distance[0] <= nn_distance[1] or not species:
        raise ValueError(f"need 0 < nn_distance[0] <= nn_distance[1] and some species, got {nn_distance}, {species}")
    if max_atoms < (_CELL_ATOMS[lattice] if lattice else 2):
        raise ValueError(f"max_atoms={max_atoms} is smaller than the smallest cell of {lattice or 'any lattice'}")
    return _crystals(lattice, float(noise), float(strain), max_atoms, tuple(species), alloy, rotate,
                     tuple(map(float, nn_distance)), dtype)


def perfect_crystals(**kwargs) -> st.SearchStrategy[Data]:
    """``crystals(noise=0.0, ...)``: ideal (optionally strained and rotated) crystals."""
    return crystals(**{**kwargs, "noise": 0.0})


def thermal_crystals(noise: float = 0.05, **kwargs) -> st.SearchStrategy[Data]:
    """``crystals(noise=0.05, ...)``: crystals with small thermal-like displacements."""
    return crystals(noise=noise, **kwargs)
