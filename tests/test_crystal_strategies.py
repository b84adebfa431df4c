"""Hypothesis strategies for crystals in ``ecse.testing`` (fcc, bcc, hcp, diamond)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ecse.testing import LATTICES, crystals, perfect_crystals, thermal_crystals

SETTINGS = settings(max_examples=15, deadline=None)
SHELL = {"fcc": 12, "bcc": 8, "hcp": 12, "diamond": 4}
CELL_ATOMS = {"fcc": 4, "bcc": 2, "hcp": 2, "diamond": 8}


def _distances(data) -> np.ndarray:
    """``[N, M]`` distances from every atom to every periodic image (self excluded) within reach."""
    pos, cell = data.pos.double().numpy(), data.cell[0].double().numpy()
    cross = np.cross(np.roll(cell, 1, 0), np.roll(cell, 2, 0))
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(cross, axis=1)
    reach = [math.ceil(4.5 / h) for h in heights]  # covers the first two shells (d <= 3.3)
    shifts = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach]))) @ cell
    d = np.linalg.norm(pos[None, :, None] - pos[:, None, None] + shifts[None, None], axis=-1)
    d = d.reshape(len(pos), -1)
    return np.where(d < 1e-9, np.inf, d)


def _check_cell(data, dtype=torch.float64):
    n = len(data.pos)
    assert data.pos.shape == (n, 3) and data.pos.dtype == dtype and data.cell.dtype == dtype
    assert data.cell.shape == (1, 3, 3) and data.pbc.shape == (1, 3) and bool(data.pbc.all())
    assert data.z.shape == (n,) and data.z.dtype == torch.long
    assert torch.linalg.det(data.cell[0].double()) > 0  # right-handed, non-degenerate


@pytest.mark.parametrize("lattice", LATTICES)
@SETTINGS
@given(data=st.data())
def test_perfect_crystals_have_their_first_shell(lattice, data):
    strain = data.draw(st.sampled_from([0.0, 0.01]))
    crystal = data.draw(perfect_crystals(lattice=lattice, strain=strain, rotate=True))
    _check_cell(crystal)
    assert len(crystal.pos) % CELL_ATOMS[lattice] == 0 and len(crystal.pos) <= 64
    d = _distances(crystal)
    nearest = d.min()
    if strain == 0:
        assert 2.2 * (1 - 1e-9) <= nearest <= 3.0 * (1 + 1e-9)
    assert np.ptp(d.min(1)) < 1e-9  # a perfect crystal: every atom has the same environment
    counts = (d < 1.07 * nearest).sum(1)
    assert (counts == SHELL[lattice]).all(), (lattice, counts)
    assert len(set(crystal.z.tolist())) == 1


@SETTINGS
@given(crystal=thermal_crystals(noise=0.05, strain=0.02))
def test_thermal_crystals_keep_atoms_apart_and_inside(crystal):
    _check_cell(crystal)
    assert _distances(crystal).min() >= 2.2 * (1 - 3 * 0.02) - 8.7 * 0.05
    frac = torch.linalg.solve(crystal.cell[0].T, crystal.pos.T).T
    assert bool((frac > -1e-9).all() and (frac < 1 + 1e-9).all())


def test_noise_moves_atoms_off_the_lattice():
    from hypothesis import find  # noise=0 is exact (first-shell test); noise > 0 breaks the symmetry
    noisy = find(thermal_crystals(lattice="fcc", noise=0.05, max_atoms=8),
                 lambda d: np.ptp(_distances(d).min(1)) > 0.05)
    assert len(noisy.pos) in (4, 8)


@settings(max_examples=10, deadline=None)
@given(crystal=crystals(lattice="diamond", noise=0.02, species=(6, 14), alloy=True, dtype=torch.float32,
                        max_atoms=16))
def test_float32_alloy_diamond(crystal):
    _check_cell(crystal, torch.float32)
    assert set(crystal.z.tolist()) <= {6, 14} and len(crystal.pos) in (8, 16)


def test_strategies_shrink_to_the_smallest_perfect_cell():
    from hypothesis import find
    smallest = find(crystals(), lambda d: True)
    a = float(smallest.cell[0, 0, 0])
    assert len(smallest.pos) == 4 and torch.allclose(smallest.cell[0], a * torch.eye(3, dtype=torch.float64))
    assert 2.2 <= a / math.sqrt(2) <= 3.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(lattice="sc"), "unknown lattice"),
    (dict(noise=-0.1), "noise >= 0"),
    (dict(strain=0.5), "strain <= 0.1"),
    (dict(nn_distance=(3.0, 2.0)), "nn_distance"),
    (dict(lattice="diamond", max_atoms=4), "max_atoms"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        crystals(**kwargs)
