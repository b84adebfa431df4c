"""Pieces of ``benchmarks/smoothness.py`` (issue 15's table): the restraints of the water and Cu cells.

The NVE runs add the same invariant terms to bare and wrapped PET: springs on the
intramolecular pairs and, for water, repulsive walls on intermolecular contacts.  These
tests compare the walls with distances computed independently (ASE: minimum image for
water, its neighbour list over all periodic images for the small Cu cell).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

smoothness = pytest.importorskip("smoothness")


class _Zero(nn.Module):
    def forward(self, data):
        return data.pos.sum().reshape(1) * 0.0


@pytest.fixture(scope="module")
def water_cell(shared_data):
    atoms, _ = smoothness.small_water_cell(shared_data)
    return atoms


def test_water_walls_cover_every_intermolecular_pair_and_start_inactive(water_cell):
    restraint = smoothness.restraint_pairs("water", water_cell)
    pairs, wall_pairs = restraint["pairs"], restraint["wall_pairs"]
    n = len(water_cell)
    assert pairs.shape == (2, n) and torch.all(pairs[0] // 3 == pairs[1] // 3)
    assert wall_pairs.shape[1] == n * (n - 1) // 2 - n  # 3 intramolecular pairs per molecule
    assert torch.all(wall_pairs[0] // 3 != wall_pairs[1] // 3)
    model = smoothness.Restrained(_Zero(), **restraint)
    assert float(model(smoothness.to_data(water_cell))) == pytest.approx(0.0, abs=1e-12)
    methane = smoothness.restraint_pairs("methane", water_cell[:5])
    assert methane["wall_pairs"] is None and methane["wall_r0"] is None


def test_water_springs_per_pair_against_numpy_lengths(water_cell):
    """Stretch one O-H bond by 0.1 A: the springs' energy is 46/2 * 0.1^2 for that bond plus
    20/2 * (change of the H-H distance)^2, from lengths computed with numpy."""
    atoms = water_cell.copy()
    bond = atoms.positions[1] - atoms.positions[0]
    atoms.positions[1] += 0.1 * bond / np.linalg.norm(bond)
    restraint = smoothness.restraint_pairs("water", water_cell)
    assert restraint["k"].shape == (restraint["pairs"].shape[1],)
    model = smoothness.Restrained(_Zero(), **restraint)
    energy = model(smoothness.to_data(atoms))
    hh = [np.linalg.norm(a.get_distance(1, 2, mic=True)) for a in (water_cell, atoms)]
    expected = 0.5 * 46.0 * 0.1 ** 2 + 0.5 * 20.0 * (hh[1] - hh[0]) ** 2
    assert smoothness.WATER_SPRINGS == {False: 46.0, True: 20.0}
    assert energy.shape == (1,)
    assert float(energy) == pytest.approx(expected, rel=1e-9)


def test_water_wall_energy_and_force_against_ase_distances(water_cell):
    """Push one oxygen towards another molecule's: the energy is the walls' sum over the
    minimum-image distances that ASE gives, and the force pushes the oxygens apart."""
    atoms = water_cell.copy()
    o_a, o_b = 0, 3  # oxygens of molecules 0 and 1
    d = atoms.get_distance(o_a, o_b, mic=True, vector=True)
    shift = d * (1.0 - 2.1 / np.linalg.norm(d))  # molecule 1 to 2.1 A from molecule 0
    atoms.positions[3:6] -= shift
    model = smoothness.Restrained(_Zero(), **smoothness.restraint_pairs("water", water_cell))
    data = smoothness.to_data(atoms)
    data.pos.requires_grad_(True)
    energy = model(data)
    (grad,) = torch.autograd.grad(energy.sum(), data.pos)
    distances = atoms.get_all_distances(mic=True)
    symbols = atoms.get_chemical_symbols()
    expected = sum(20.0 * max(smoothness.WATER_WALLS[symbols[a], symbols[b]] - distances[a, b], 0.0) ** 3
                   for a in range(len(atoms)) for b in range(a + 1, len(atoms)) if a // 3 != b // 3)
    assert expected >= 20.0 * 0.25 ** 3  # the O-O wall at least
    assert float(energy.detach()) == pytest.approx(expected, rel=1e-10)
    force = -grad
    towards_b = torch.tensor(atoms.get_distance(o_a, o_b, mic=True, vector=True), dtype=force.dtype)
    assert float(force[o_a] @ towards_b) < 0 < float(force[o_b] @ towards_b)
    assert torch.allclose(force.sum(0), torch.zeros(3, dtype=force.dtype), atol=1e-10)


def test_cu_wall_sums_every_periodic_image_against_ase_neighbour_list():
    """In a 3.61 A cubic Cu cell (two of the fcc cell's four atoms) an atom moved to 1.9 A
    from *two* images of the other is pushed by both: the wall energy equals the sum over
    ASE's neighbour list (every image within the wall), which a minimum-image wall would
    halve."""
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)[:2]
    atoms.positions[1] = atoms.positions[0] + [1.805, 0.6, 0.0]  # 1.90 A from atom 0 and its -x image
    restraint = smoothness.restraint_pairs("cu300", atoms)
    assert restraint["pairs"] is None and restraint["wall_pairs"].shape == (2, 1)
    model = smoothness.Restrained(_Zero(), **restraint)
    data = smoothness.to_data(atoms)
    data.pos.requires_grad_(True)
    energy = model(data)
    (grad,) = torch.autograd.grad(energy.sum(), data.pos)
    i, j, d = neighbor_list("ijd", atoms, smoothness.CU_WALL)
    assert sum(1 for a, b in zip(i, j) if {a, b} == {0, 1}) == 4  # two images, both directions
    expected = 0.5 * sum(smoothness.CU_WALL_K * (smoothness.CU_WALL - x) ** 3 for x in d)
    assert expected > 0.0
    assert float(energy.detach()) == pytest.approx(expected, rel=1e-10)
    # the two images pull atom 1 along +x and -x equally: only the y component survives
    force = -grad
    assert abs(float(force[1, 0])) < 1e-10 < float(force[1, 1])
    assert torch.allclose(force.sum(0), torch.zeros(3, dtype=force.dtype), atol=1e-10)


def test_train_pet_trains_through_the_given_wrapper():
    """``train_pet(..., in_loop=...)`` (``benchmarks/tokens_in_loop.py``) fits the weights
    through the wrapper, once per step, with the PET's ``frame_average`` as asked."""
    from ase.io import read

    from ecse import ECSE
    from ecse.atomistic.datasets import bundled_dataset

    calls = []

    def through_local_ensemble(pet):
        model = ECSE(pet, smoothness.CUTOFF, mode="local")
        model.register_forward_hook(lambda *_: calls.append(1))
        return model

    frames = read(bundled_dataset("methane")["train"], index=":8")
    pet, info = smoothness.train_pet(frames, 0.5, 0, batch_size=2, log=lambda *_: None, frame_average="tokens",
                                     in_loop=through_local_ensemble)
    assert pet.frame_average == "tokens" and not pet.training
    assert info["steps"] >= 1 and len(calls) == info["steps"]


def test_water_pet_has_the_radial_basis_and_old_checkpoints_are_refitted(tmp_path, shared_data, capsys):
    """The water PET embeds distances in a Gaussian basis (with the linear embedding PET does
    not learn water's forces); a water checkpoint saved with another configuration is not
    loaded but refitted."""
    import argparse

    assert smoothness.make_pet(0, system="water")._config["num_radial"] == 32
    assert smoothness.make_pet(0, system="methane")._config["num_radial"] == 0
    old = smoothness.make_pet(0)  # the configuration water's checkpoints had before
    info = {"seconds": 1e9, "augmented": True, "steps": 1, "data": smoothness.TRAINING_DATA["water"]}
    torch.save({"state_dict": old.state_dict(), "config": smoothness.SMALL, "info": info}, tmp_path / "water.pt")
    args = argparse.Namespace(checkpoints=tmp_path, retrain=False, train_seconds=0.01, seed=0, data=shared_data,
                              frame_average="layers", cu_size=1)
    pet, fitted = smoothness.trained_pet("water", args)
    assert "training the water PET" in capsys.readouterr().out
    assert pet._config["num_radial"] == 32 and fitted["steps"] >= 1
    assert torch.load(tmp_path / "water.pt", weights_only=False)["config"]["num_radial"] == 32


def test_replay_nve_reproduces_the_run_and_compares_another_surface(tmp_path):
    """``benchmarks/replay_nve.py``: on the run's own calculator the path excursion is the run's
    (from its logged total energy); on a stiffer surface along the same path it differs."""
    import argparse

    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.io import write

    from ecse.atomistic.md import run_nve

    replay_nve = pytest.importorskip("replay_nve")
    run = run_nve(Icosahedron("Cu", 2), EMT(), timestep_fs=1.0, steps=60, temperature_K=500, seed=0, keep_frames=True)
    write(tmp_path / "run.extxyz", run.frames)

    class Stiffer(EMT):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["energy"] *= 3.0
            self.results["forces"] = self.results["forces"] * 3.0

    args = argparse.Namespace(start=0, stop=None, timestep=1.0)
    lines = []
    rows = replay_nve.replay(tmp_path / "run.extxyz", {"bare": EMT(), "local": Stiffer()}, args, lines.append)
    expected = np.abs(run.total_energy - run.total_energy[0]).max() / len(run.frames[0])
    assert rows["bare"]["excursion"] == pytest.approx(expected, rel=1e-6)
    assert rows["bare"]["errors"].shape == (60,)
    assert rows["local"]["excursion"] > 2 * rows["bare"]["excursion"]
    assert any(line.startswith("| local |") and "x)" in line for line in lines)


def test_nve_seeds_groups_logged_runs_by_model_and_pairs_same_starts(tmp_path, capsys):
    """``benchmarks/nve_seeds.py``: drifts are least-squares slopes of the logged total energy
    per atom (numpy's polyfit here), grouped by the log's label; ratios are to the reference."""
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron

    from ecse.atomistic.md import run_nve

    nve_seeds = pytest.importorskip("nve_seeds")

    class Stiffer(EMT):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["energy"] *= 2.0
            self.results["forces"] = self.results["forces"] * 2.0

    atoms = Icosahedron("Cu", 2)
    logs, slopes = [], {"bare": [], "stiff": []}
    for seed in (0, 1, 2):
        for label, calc in (("bare", EMT()), ("stiff", Stiffer())):
            path = tmp_path / f"seed{seed}" / f"{label}.log"
            path.parent.mkdir(exist_ok=True)
            run_nve(atoms, calc, timestep_fs=4.0, steps=30, temperature_K=800, seed=seed, desc=f"NVE {label}",
                    logfile=path)
            table = np.loadtxt(path)
            slopes[label].append(np.polyfit(table[:, 1], table[:, 4] / len(atoms), 1)[0])
            logs.append(str(path))
    out = nve_seeds.main(logs)
    for label in ("bare", "stiff"):
        assert [r["drift"] for r in out["runs"][label]] == pytest.approx(slopes[label], rel=1e-9)
        g = out["groups"][label]
        assert g["runs"] == 3
        assert g["mean_drift"] == pytest.approx(np.mean(slopes[label]), rel=1e-9)
        assert g["median_drift"] == pytest.approx(np.median(slopes[label]), rel=1e-9)
        assert g["mean_drift_se"] == pytest.approx(np.std(slopes[label], ddof=1) / np.sqrt(3), rel=1e-9)
        assert g["median_abs_drift"] == pytest.approx(np.median(np.abs(slopes[label])), rel=1e-9)
    printed = capsys.readouterr().out
    ratio = abs(np.median(slopes["stiff"]) / np.median(slopes["bare"]))
    assert f"({ratio:.2f}x)" in printed
    pair = abs(slopes["stiff"][1] / slopes["bare"][1])
    assert f"| stiff | {tmp_path / 'seed1'} | {pair:.2f}x |" in printed

    # drifts of both signs: the median of their sizes is not the size of their median
    mixed = nve_seeds.group_stats([{"drift": d, "excursion": 1.0} for d in (3e-5, -1e-5, -2e-5)])
    assert mixed["median_drift"] == pytest.approx(-1e-5) and mixed["median_abs_drift"] == pytest.approx(2e-5)

    bad = tmp_path / "bad.log"
    bad.write_text("0 0.0 1.0 1.0 2.0 300.0\n1 0.1 1.0 1.0 2.0 300.0\n")
    with pytest.raises(ValueError, match="bad.log"):
        nve_seeds.read_log(bad)
    with pytest.raises(SystemExit, match="no run labelled 'none'"):
        nve_seeds.main(logs + ["--reference", "none"])
    # the bootstrap interval of every printed ratio brackets the ratio itself
    for name, interval in out["intervals"]["stiff"].items():
        assert name == "permutation_p" or interval[0] <= interval[1]
    low, high = out["intervals"]["stiff"]["median abs(drift)"]
    assert low <= abs(np.median(np.abs(slopes["stiff"])) / np.median(np.abs(slopes["bare"]))) <= high


def test_nve_seeds_intervals_and_permutation_test():
    """The bootstrap interval of a ratio and the permutation p-value against cases with a
    known answer."""
    nve_seeds = pytest.importorskip("nve_seeds")
    # no spread: the interval is the ratio
    assert nve_seeds.bootstrap_ratio([3.0, 3.0, 3.0], [1.5, 1.5], np.median) == (2.0, 2.0)
    # separated samples: the interval excludes 1; the same distribution: it contains 1
    rng = np.random.default_rng(1)
    big, small = 10 + rng.normal(size=12), 1 + 0.1 * rng.normal(size=12)
    low, high = nve_seeds.bootstrap_ratio(big, small, np.median)
    assert 5 < low < np.median(big) / np.median(small) < high < 20
    low, high = nve_seeds.bootstrap_ratio(rng.exponential(size=30), rng.exponential(size=30), np.median)
    assert low < 1 < high
    # against the exact p-value from every split of the pooled runs (equally likely under
    # one distribution; 10000 permutations: standard error below 0.005)
    from itertools import combinations

    values, reference = [10.0, 11.0, 12.0, 4.0], [1.0, 2.0, 3.0, 5.0, 2.5]
    pooled, observed = np.array(values + reference), np.median(values) / np.median(reference)
    splits = [np.array(c) for c in combinations(range(len(pooled)), len(values))]
    exact = np.mean([np.median(pooled[c]) / np.median(np.delete(pooled, c)) >= observed for c in splits])
    assert 0 < exact < 0.1
    p = nve_seeds.permutation_p(values, reference, np.median, draws=10000)
    assert abs(p - exact) < 0.015
    # identical samples: every split reaches the observed ratio 1
    assert nve_seeds.permutation_p([1.0, 1.0], [1.0, 1.0, 1.0], np.median, draws=200) == 1.0


def test_chunk_tokens_option_changes_speed_not_numbers(tmp_path):
    """``--chunk-tokens 0`` (one call per layer) and ``--chunk-tokens N`` set the loaded PET's
    chunking; energy and forces of ECSE(PET) on a 4-atom Cu cell (130 frames per atom, so
    that PET's default splits the layers into checkpointed groups) equal the default's."""
    import argparse

    from ase.build import bulk

    from ecse import ECSE

    pet = smoothness.make_pet(0, system="cu")
    info = {"seconds": 1e9, "augmented": True, "steps": 1, "data": smoothness.TRAINING_DATA["cu"]}
    torch.save({"state_dict": pet.state_dict(), "config": smoothness.SMALL, "info": info}, tmp_path / "cu1.pt")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=3)
    results = {}
    for chunk in (None, 0, 7):
        args = argparse.Namespace(checkpoints=tmp_path, retrain=False, train_seconds=1.0, seed=0, cu_size=1,
                                  frame_average="layers", chunk_tokens=chunk)
        loaded, _ = smoothness.trained_pet("cu", args)
        assert loaded.chunk_tokens == {None: pet.chunk_tokens, 0: None, 7: 7}[chunk]
        data = smoothness.to_data(atoms)
        data.pos.requires_grad_(True)
        energy = ECSE(loaded, smoothness.CUTOFF, mode="local")(data).sum()
        (grad,) = torch.autograd.grad(energy, data.pos)
        results[chunk] = (energy.detach(), grad)
    for chunk in (0, 7):
        assert torch.allclose(results[chunk][0], results[None][0], rtol=1e-12, atol=0)
        assert torch.allclose(results[chunk][1], results[None][1], rtol=1e-9, atol=1e-12)


def test_nve_restart_option_keeps_and_continues_each_run(tmp_path):
    """``--nve-restart DIR``: each run keeps its state as ``DIR/<formula>_<label>_seed<seed>.npz``;
    the same run started again continues from the file to the numbers of an uninterrupted run."""
    import argparse

    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=1)
    morse = smoothness.Morse(torch.full((30, 30), 2.55, dtype=torch.float64))
    settings = dict(timestep=1.0, nve_budget=1e9, trajectories=None, nve_logs=None, seed=4)
    whole = smoothness.nve(morse, atoms, 300.0, 0.02, argparse.Namespace(**settings, nve_restart=None), print, "m")
    kept = argparse.Namespace(**settings, nve_restart=tmp_path / "state")
    half = smoothness.nve(morse, atoms, 300.0, 0.01, kept, print, "m")
    path = tmp_path / "state" / "Cu4_m_seed4.npz"
    assert int(np.load(path)["step"]) == 10 and half["steps"] == 10
    resumed = smoothness.nve(morse, atoms, 300.0, 0.02, kept, print, "m")
    assert int(np.load(path)["step"]) == 20
    assert resumed["drift"] == whole["drift"] and resumed["excursion"] == whole["excursion"]
