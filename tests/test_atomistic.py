"""ecse.atomistic: ASE conversion, data sets, composition baseline and the ASE calculator."""
from pathlib import Path

import numpy as np
import pytest
import torch

ase = pytest.importorskip("ase")
import ase.io  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from torch_geometric.data import Batch, Data  # noqa: E402

from ecse import ECSE  # noqa: E402
from ecse.atomistic import (ECSECalculator, apply_composition_baseline, atoms_to_data,  # noqa: E402
                            composition_energy, fit_composition_baseline, load_dataset, split_dataset)

from . import models  # noqa: E402

METHANE = Path("/work/shared/data/methane/methane_train.xyz")
TARGETS = {"energy": "graph", "forces": "node", "stress": "graph", "dipole": "graph"}


def small_pet(seed=0, **kw):
    return models.small_pet(seed, **{"num_gnn_layers": 1, **kw})


def copper(seed=0):
    atoms = bulk("Cu", cubic=True)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * np.random.default_rng(seed).normal(size=(3, 3))),
                   scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ----------------------------------------------------------------------------- data
def test_atoms_to_data_fields_and_batching():
    mol, cu = molecule("CH4"), copper()
    d_mol, d_cu = atoms_to_data(mol, dtype=torch.float64), atoms_to_data(cu, dtype=torch.float32)
    assert d_mol.z.dtype == torch.long and d_mol.z.tolist() == [6, 1, 1, 1, 1]
    assert d_mol.pos.dtype == torch.float64 and d_mol.num_nodes == 5
    assert torch.all(d_mol.cell == 0) and d_mol.cell.shape == (1, 3, 3) and not d_mol.pbc.any()
    assert d_cu.pbc.all() and d_cu.pos.dtype == torch.float32
    np.testing.assert_allclose(d_cu.cell[0].numpy(), cu.cell.array, rtol=1e-6)
    batch = Batch.from_data_list([atoms_to_data(cu), atoms_to_data(cu)])
    assert batch.cell.shape == (2, 3, 3) and batch.pbc.shape == (2, 3)
    # a zero cell is non-periodic; a singular one (parallel lattice vectors) is an error
    d = atoms_to_data(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=np.zeros((3, 3)), pbc=True))
    assert not d.pbc.any() and torch.all(d.cell == 0)
    with pytest.raises(ValueError, match=r"singular cell in h2\.xyz\[3\]"):
        atoms_to_data(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]],
                            pbc=True), name="h2.xyz[3]")


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_atoms_to_data_follows_the_default_dtype(default):
    old = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        atoms = copper()
        atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=np.ones((len(atoms), 3)))
        data = atoms_to_data(atoms, targets={"energy": "graph", "forces": "node"})
        assert data.pos.dtype == data.cell.dtype == data.energy.dtype == data.forces.dtype == default
        assert atoms_to_data(atoms, dtype=torch.float16).pos.dtype == torch.float16
    finally:
        torch.set_default_dtype(old)
    # the first line a new user writes: a fresh PET and the default conversion agree
    pet = models.small_pet(0)
    assert torch.isfinite(pet.float()(atoms_to_data(molecule("CH4")))).all()
    with pytest.raises(ValueError, match="dtype"):
        atoms_to_data(molecule("CH4"), dtype=torch.int64)


@pytest.mark.parametrize("periodic", [False, True])
def test_edges_and_shifts(periodic):
    atoms, cutoff = (copper(), 4.0) if periodic else (molecule("CH3CH2OH"), 2.5)
    data = atoms_to_data(atoms, cutoff=cutoff, dtype=torch.float64)
    j, i = data.edge_index
    disp = data.pos[j] - data.pos[i] + data.shift.double() @ data.cell[0]
    assert torch.all(i[1:] >= i[:-1])  # sorted by centre
    assert float(disp.norm(dim=1).max()) < cutoff
    # independent reference: ASE's own neighbour list (centres, neighbours, integer shifts)
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    ref_i, ref_j, ref_s = ase_neighbor_list("ijS", atoms, cutoff)
    key = lambda c, n, s: sorted(zip(c.tolist(), n.tolist(), np.asarray(s).tolist()))  # noqa: E731
    assert key(i, j, data.shift) == key(ref_i, ref_j, ref_s)
    if periodic:
        assert data.shift.abs().sum() > 0
        batch = Batch.from_data_list([data, data])  # edge_index is offset, shift is not
        assert batch.edge_index.shape[1] == 2 * data.edge_index.shape[1]
        assert int(batch.edge_index.max()) == 2 * data.num_nodes - 1


def test_targets_extxyz_roundtrip(tmp_path):
    frames = []
    rng = np.random.default_rng(0)
    for k in range(3):
        atoms = copper(seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.5 * k, forces=rng.normal(size=(len(atoms), 3)),
                                           stress=rng.normal(size=6), dipole=rng.normal(size=3))
        atoms.info["charge_state"] = float(k)
        atoms.arrays["charges"] = rng.normal(size=len(atoms))
        frames.append(atoms)
    path = tmp_path / "set.extxyz"
    ase.io.write(path, frames, format="extxyz")
    data = load_dataset(path, {**TARGETS, "charge_state": "graph", "charges": "node"}, cutoff=3.0,
                        dtype=torch.float64)
    assert len(data) == 3
    for d, atoms in zip(data, frames):
        assert d.energy.shape == (1,) and d.stress.shape == (1, 3, 3) and d.dipole.shape == (1, 3)
        np.testing.assert_allclose(d.forces.numpy(), atoms.get_forces(), atol=1e-7)  # extxyz: 8 decimals
        np.testing.assert_allclose(d.stress[0].numpy(), atoms.get_stress(voigt=False), atol=1e-7)
        np.testing.assert_allclose(d.dipole[0].numpy(), atoms.calc.results["dipole"], atol=1e-7)
        assert d.charges.shape == (len(atoms),) and d.edge_index.shape[0] == 2
    batch = Batch.from_data_list(data)
    assert batch.energy.tolist() == [0.0, -1.5, -3.0] and batch.stress.shape == (3, 3, 3)
    assert load_dataset(path, {"energy": "graph"}, index=1)[0].energy.item() == -1.5


def test_errors(tmp_path):
    with pytest.raises(KeyError, match="dipole.*set.xyz\\[0\\]"):
        path = tmp_path / "set.xyz"
        atoms = molecule("H2O")
        atoms.calc = SinglePointCalculator(atoms, energy=1.0)
        ase.io.write(path, atoms, format="extxyz")
        load_dataset(path, {"energy": "graph", "dipole": "graph"})
    with pytest.raises(ValueError, match="'X'"):
        atoms_to_data(Atoms("XH", positions=[[0, 0, 0], [1, 0, 0]]))
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        load_dataset(tmp_path / "nope.xyz", {"energy": "graph"})
    bad = tmp_path / "garbage.xyz"
    bad.write_text("this is\nnot an xyz file\n")
    with pytest.raises(ValueError, match="garbage.xyz"):
        load_dataset(bad, {"energy": "graph"})
    with pytest.raises(ValueError, match="forces"):
        atoms = molecule("H2O")
        atoms.info["forces"] = np.zeros((2, 3))
        atoms_to_data(atoms, targets={"forces": "node"})


def test_split_dataset():
    items = list(range(23))
    train, val, test = split_dataset(items, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (18, 2, 3)
    assert sorted(train + val + test) == items
    assert (train, val, test) == split_dataset(items, (0.8, 0.1, 0.1), seed=3)
    assert train != split_dataset(items, (0.8, 0.1, 0.1), seed=4)[0]
    parts = split_dataset(items, (5, 4, 3), seed=0)
    assert [len(p) for p in parts] == [5, 4, 3] and len(set(sum(parts, []))) == 12
    with pytest.raises(ValueError):
        split_dataset(items, (20, 5, 0))
    with pytest.raises(ValueError):
        split_dataset(items, (0.9, 0.2, 0.0))


# ----------------------------------------------------------------------------- baseline
def test_composition_baseline_exact():
    rng = np.random.default_rng(0)
    truth = {1: -0.5, 6: -37.8, 7: -54.6, 8: -75.1}
    elements = np.array(list(truth))
    data = []
    for _ in range(20):
        z = torch.from_numpy(rng.choice(elements, size=int(rng.integers(2, 9))))
        energy = sum(truth[int(v)] for v in z)
        data.append(Data(z=z, pos=torch.zeros(len(z), 3, dtype=torch.float64),
                         energy=torch.tensor([energy], dtype=torch.float64)))
    fitted = fit_composition_baseline(data)
    assert fitted.keys() == truth.keys()
    assert max(abs(fitted[k] - truth[k]) for k in truth) < 1e-10
    batch = Batch.from_data_list(data)
    assert rel(composition_energy(batch, fitted), batch.energy) < 1e-12
    residual = apply_composition_baseline(data, fitted)
    assert max(abs(float(d.energy)) for d in residual) < 1e-9
    assert data[0].energy.abs().item() > 0.1  # originals untouched
    with pytest.raises(ValueError, match="9"):
        composition_energy(Data(z=torch.tensor([9]), pos=torch.zeros(1, 3)), fitted)


def test_composition_baseline_methane_rank_deficient():
    if not METHANE.exists():
        pytest.skip(f"{METHANE} not found")
    data = load_dataset(METHANE, {"energy": "graph", "forces": "node"}, index=":200", dtype=torch.float64)
    energies = torch.cat([d.energy for d in data])
    fitted = fit_composition_baseline(data)
    assert set(fitted) == {1, 6}
    # only b_C + 4 b_H is identifiable: it equals the mean energy; min-norm split is (1, 4)-proportional
    assert abs(fitted[6] + 4 * fitted[1] - energies.mean().item()) < 1e-8
    assert abs(fitted[1] - 4 * fitted[6]) < 1e-8
    pred = composition_energy(Batch.from_data_list(data), fitted)
    assert rel(pred, torch.full_like(pred, energies.mean().item())) < 1e-12


# ----------------------------------------------------------------------------- calculator
def test_calculator_forces_finite_differences():
    atoms = molecule("CH4")
    atoms.rattle(0.1, seed=0)
    atoms.calc = ECSECalculator(small_pet())
    forces = atoms.get_forces()
    assert atoms.get_potential_energy() == atoms.get_potential_energy(force_consistent=True)
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    assert rel(forces, numerical) < 1e-6
    assert abs(forces.sum(0)).max() < 1e-10  # translation invariance
    with pytest.raises(Exception):  # no stress for a molecule
        atoms.get_stress()


def test_calculator_stress_finite_differences():
    atoms = copper()
    atoms.calc = ECSECalculator(small_pet(cutoff=4.0))
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    numerical = calculate_numerical_stress(atoms, eps=1e-6)
    assert rel(stress, numerical) < 1e-5
    assert rel(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5)) < 1e-6


@pytest.mark.parametrize("periodic", [False, True])
def test_wrapped_calculator_equivariance(periodic):
    atoms = copper() if periodic else molecule("CH4")
    if not periodic:
        atoms.rattle(0.05, seed=1)
    calc = ECSECalculator(ECSE(small_pet(cutoff=4.0), cutoff=4.0, output="scalar").double())
    atoms.calc = calc
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    s0 = atoms.get_stress(voigt=False) if periodic else None
    rotated = atoms.copy()
    rotated.rotate(73.0, (1.0, -2.0, 0.5), rotate_cell=True)
    rot_t = np.linalg.lstsq(atoms.positions, rotated.positions, rcond=None)[0]  # R.T, positions are x @ R.T
    assert np.allclose(rot_t.T @ rot_t, np.eye(3), atol=1e-10)
    rotated.calc = calc
    e1, f1 = rotated.get_potential_energy(), rotated.get_forces()
    assert abs(e1 - e0) <= 1e-10 * max(abs(e0), 1.0)
    assert rel(f1, f0 @ rot_t) < 1e-10
    if periodic:
        assert rel(rotated.get_stress(voigt=False), rot_t.T @ s0 @ rot_t) < 1e-10


def test_nve_md_runs():
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = molecule("CH4")
    atoms.calc = ECSECalculator(ECSE(small_pet(), cutoff=5.0, output="scalar").double())
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    total = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.attach(lambda: total.append(atoms.get_total_energy()), interval=1)
    dyn.run(20)
    assert len(total) == 21 and np.all(np.isfinite(total))
    assert np.all(np.isfinite(atoms.positions))


# ----------------------------------------------------------------------------- neighbour-list guards
def test_neighbor_estimate_matches_the_counts():
    from ase.build import fcc111
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    from ecse.neighbors import estimate_neighbors

    slab = fcc111("Cu", (4, 4, 4), vacuum=10.0)
    slab.pbc = [True, True, False]
    wire = bulk("Cu", cubic=True)
    wire.pbc = [True, False, False]
    for atoms in (bulk("Cu", cubic=True).repeat(3), slab, wire, Atoms("Cu", cell=[1.0] * 3, pbc=True)):
        true = len(ase_neighbor_list("i", atoms, 5.0)) / len(atoms)  # independent count
        estimate = estimate_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)
        assert 0.5 * true < estimate < 1.5 * true, (atoms, estimate, true)


def test_neighbor_list_refuses_before_searching(monkeypatch):
    import ecse.neighbors as nb

    def pos(*rows):
        return torch.tensor(rows, dtype=torch.float64)

    tiny = torch.eye(3, dtype=torch.float64)[None]  # 1 A cell, 524 images within 5 A
    with pytest.raises(ValueError, match=r"structure 0 of the batch: about 524 neighbours per atom within cutoff 5 "
                                         r"\(estimated 524 pairs for 1 atoms\), above the limit "
                                         r"ecse.neighbors.MAX_NEIGHBORS = 500"):
        nb.neighbor_list(pos([0.0, 0, 0]), 5.0, cell=tiny)
    monkeypatch.setattr(nb, "MAX_NEIGHBORS", 600)  # the documented knob
    assert nb.neighbor_list(pos([0.0, 0, 0]), 5.0, cell=tiny).center.numel() > 400
    # the second structure of a batch is named, and nothing is searched before the check
    import vesin

    searched = []
    compute = vesin.NeighborList.compute
    monkeypatch.setattr(vesin.NeighborList, "compute",
                        lambda self, *args, **kw: searched.append(1) or compute(self, *args, **kw))
    batch = torch.tensor([0, 1])
    cells = torch.stack([4.0 * torch.eye(3, dtype=torch.float64), 0.5 * torch.eye(3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="structure 1 of the batch"):
        nb.neighbor_list(pos([0.0, 0, 0], [0, 0, 0]), 5.0, batch=batch, cell=cells)
    assert searched == []
    nb.neighbor_list(pos([0.0, 0, 0], [0, 0, 0]), 5.0, batch=batch, cell=4.0 * cells)
    assert searched == [1, 1]  # the patch sees the searches
    with pytest.raises(ValueError, match="singular cell"):
        nb.neighbor_list(pos([0.0, 0, 0]), 2.0, cell=torch.tensor([[1.0, 0, 0], [2, 0, 0], [0, 0, 1]]).double())
    with pytest.raises(ValueError, match=r"NaN or infinite positions: atom\(s\) \[1\]"):
        nb.neighbor_list(pos([0.0, 0, 0], [float("nan"), 0, 0]), 2.0)
    with pytest.raises(ValueError, match="NaN or infinite cell"):
        nb.neighbor_list(pos([0.0, 0, 0]), 2.0, cell=torch.full((1, 3, 3), float("inf"), dtype=torch.float64))
    # a zero lattice vector is a non-periodic direction, not a singular cell
    flat = torch.tensor([[[3.0, 0, 0], [0, 3, 0], [0, 0, 0]]], dtype=torch.float64)
    assert nb.neighbor_list(pos([0.0, 0, 0], [1, 1, 0]), 2.0, cell=flat).center.tolist() == [0, 1]


def test_left_handed_cell_gives_the_right_handed_energy():
    atoms = copper()
    left = atoms.copy()
    left.set_cell(atoms.cell.array * np.array([[1.0], [1.0], [-1.0]]), scale_atoms=False)  # same lattice
    assert np.linalg.det(left.cell.array) < 0
    model = ECSE(small_pet(cutoff=4.0), cutoff=4.0).double()
    for calc_model in (small_pet(cutoff=4.0), model):
        energies = []
        for a in (atoms, left):
            a = a.copy()
            a.calc = ECSECalculator(calc_model)
            energies.append(a.get_potential_energy())
        assert abs(energies[0] - energies[1]) <= 1e-10 * abs(energies[0])
