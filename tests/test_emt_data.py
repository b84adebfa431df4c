"""The EMT fcc-metal generator (``ecse.atomistic.emt``) and the bundled ``emt_metals`` set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

ase_io = pytest.importorskip("ase.io")
from ase.calculators.emt import EMT  # noqa: E402

from ecse.atomistic import load_dataset  # noqa: E402
from ecse.atomistic.datasets import bundled_dataset  # noqa: E402
from ecse.atomistic.emt import KINDS, emt_lattice_constant, emt_structures  # noqa: E402

FAST = dict(size=1, steps=5, interval=3, melt_steps=5)  # tiny cells, a few MD steps


@pytest.fixture(scope="module")
def bundled():
    paths = bundled_dataset("emt_metals")
    return {split: ase_io.read(path, index=":") for split, path in paths.items()}


def _s111(atoms, cells_per_edge=3):
    """Structure factor at the fcc (111) reciprocal vector: ~N for the crystal, O(1) for a liquid."""
    q = 2 * np.pi * np.ones(3) / (atoms.cell.array[0, 0] / cells_per_edge)
    return abs(np.exp(1j * atoms.positions @ q).sum()) ** 2 / len(atoms)


def test_bundled_set_has_every_kind_with_finite_labels(bundled):
    assert {split: len(frames) for split, frames in bundled.items()} == {"train": 10, "val": 8, "test": 8}
    for split, frames in bundled.items():
        assert {a.info["config_type"] for a in frames} == set(KINDS), split
        for a in frames:
            assert a.pbc.all() and a.get_forces().shape == (len(a), 3)
            assert np.isfinite(a.get_potential_energy()) and np.isfinite(a.get_stress()).all()
    temps = {(a.info["config_type"], a.info["temperature"]) for a in bundled["train"]}
    assert {("thermal", 300.0), ("thermal", 1000.0), ("liquid", 2000.0)} <= temps
    readme = (bundled_dataset("emt_metals")["train"].parent / "README.md").read_text()
    assert "not DFT" in readme and "generate_emt_data.py" in readme and "eV/Å^3" in readme


def test_bundled_labels_are_emt_values_in_ase_units(bundled):
    """Recomputing EMT on the stored positions (8 decimals in Å) gives the stored labels."""
    for a in bundled["test"]:
        b = a.copy()
        b.calc = EMT()
        np.testing.assert_allclose(b.get_potential_energy(), a.get_potential_energy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-6)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-8)


def test_bundled_structures_are_what_their_kind_says(bundled):
    frames = {}
    for a in bundled["test"] + bundled["val"]:
        frames.setdefault((a.info["config_type"], a.info["temperature"]), a)
    assert np.abs(frames["perfect", 0.0].get_forces()).max() < 1e-10
    assert len(frames["vacancy", 300.0]) == 107 and len(frames["surface", 300.0]) == 80
    assert set(frames["alloy", 300.0].get_chemical_symbols()) == {"Cu", "Au"}
    assert _s111(frames["thermal", 300.0]) > 50 and _s111(frames["thermal", 1000.0]) > 30
    assert _s111(frames["liquid", 2000.0]) < 20  # melted: no fcc order left
    hot, cold = frames["thermal", 1000.0].get_forces(), frames["thermal", 300.0].get_forces()
    assert np.sqrt((hot ** 2).mean()) > np.sqrt((cold ** 2).mean())


def test_bundled_set_loads_as_pyg_data_with_stress():
    data = load_dataset(bundled_dataset("emt_metals")["val"], {"energy": "graph", "forces": "node",
                                                              "stress": "graph"}, dtype=torch.float64)
    assert len(data) == 8 and data[0].stress.shape == (1, 3, 3) and data[0].cell.shape == (1, 3, 3)
    assert all(bool(d.pbc.all()) for d in data)


def test_emt_lattice_constant_is_the_energy_minimum():
    from ase.build import bulk
    a0 = emt_lattice_constant("Cu")
    energies = []
    for a in (a0 * 0.999, a0, a0 * 1.001):
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    assert energies[1] < energies[0] and energies[1] < energies[2]


@pytest.mark.parametrize("kind", KINDS)
def test_emt_structures_is_seeded_and_labelled(kind):
    first = emt_structures(kind, "Cu", n=2, seed=3, **FAST)
    again = emt_structures(kind, "Cu", n=2, seed=3, **FAST)
    other = emt_structures(kind, "Cu", n=2, seed=4, **FAST)
    assert len(first) == 2 and all(a.info["config_type"] == kind for a in first)
    assert len(first[0]) == {"vacancy": 3, "surface": 12}.get(kind, 4)  # size=1: 4-atom cubic cell
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.get_potential_energy() == b.get_potential_energy()
    if kind != "perfect":  # perfect cells draw nothing at random
        assert not np.array_equal(first[-1].positions, other[-1].positions)
    for a in first:
        b = a.copy()
        b.calc = EMT()
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-9)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-12)
        assert abs(a.get_stress()).max() > 1e-4  # cells are under stress: the sign is tested


def test_emt_structures_options():
    (nial,) = emt_structures("alloy", "Ni", alloy_with="Al", fraction=0.25, **FAST)
    assert nial.get_chemical_symbols().count("Al") == 1 and len(nial) == 4
    perfect = emt_structures("perfect", "Au", n=3, size=1, strain=0.02)
    volumes = [a.get_volume() for a in perfect]
    assert volumes[0] < volumes[1] < volumes[2]
    np.testing.assert_allclose(perfect[1].cell.lengths(), emt_lattice_constant("Au"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="bcc"), "unknown kind"),
    (dict(kind="thermal", element="Fe"), "no EMT parameters"),
    (dict(kind="alloy", alloy_with="Zr"), "no EMT parameters"),
    (dict(kind="alloy", fraction=1.0), "fraction"),
    (dict(kind="thermal", temperature=0.0), "positive temperature"),
    (dict(kind="thermal", n=0), "n >= 1"),
])
def test_emt_structures_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        emt_structures(**{**FAST, **kwargs})


def test_write_emt_dataset_splits(tmp_path):
    from ecse.atomistic.emt import write_emt_dataset
    recipe = (("perfect", "Cu", None, 3), ("thermal", "Ag", 500.0, 2))
    paths = write_emt_dataset(tmp_path, recipe, size=1, steps=5, interval=3, name="tiny")
    counts = {split: len(ase_io.read(path, index=":")) for split, path in paths.items()}
    assert counts == {"train": 2, "val": 1, "test": 2} and paths["val"].name == "tiny_val.xyz"


def test_bundled_set_is_what_the_generator_gives(bundled):
    """Entry 0 of DEFAULT_RECIPE (perfect cells, seed 0) regenerated (the MD entries together take about a minute)."""
    from ecse.atomistic.emt import DEFAULT_RECIPE
    kind, element, temperature, n = DEFAULT_RECIPE[0]
    perfect = emt_structures(kind, element, temperature, n, seed=0)
    stored = [a for split in ("train", "val", "test") for a in bundled[split] if a.info["config_type"] == "perfect"]
    np.testing.assert_allclose([a.get_potential_energy() for a in stored],
                               [a.get_potential_energy() for a in perfect], atol=1e-6)
    np.testing.assert_allclose(stored[-1].cell.array, perfect[-1].cell.array, atol=1e-8)
