"""Fast checks of the accuracy benchmark's pieces (``benchmarks/_peers.py``, ``accuracy.py``).

The MACE worker runs in its own venv; its test runs only where ``.venv-mace`` exists
(``bash benchmarks/setup_peers.sh``; about 6 s) and ``ECSE_PEER_TESTS`` is not ``0``.
"""
import doctest
import json
import math
import os
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _peers  # noqa: E402
from _peers import SchNetEnergy, metrics, residual_scales, train_energy_model  # noqa: E402

from ecse.atomistic.derivatives import energy_and_forces  # noqa: E402
from ecse.testing import random_rotation  # noqa: E402

TINY = dict(hidden_channels=8, num_filters=8, num_interactions=2, num_gaussians=6)
BASELINE = {1: -0.5, 8: -2.0}


def _box(dtype=torch.float64, seed=0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[4.0, 0.0, 0.0], [0.3, 4.5, 0.0], [0.2, -0.4, 5.0]], dtype=dtype)
    frac = torch.rand(6, 3, generator=gen, dtype=dtype)
    return Data(pos=frac @ cell, z=torch.tensor([8, 1, 1, 8, 1, 1]), cell=cell[None],
                pbc=torch.ones(1, 3, dtype=torch.bool))


def _schnet(dtype=torch.float64, cutoff=3.0) -> SchNetEnergy:
    torch.manual_seed(0)
    return SchNetEnergy(BASELINE, std=0.3, cutoff=cutoff, **TINY).to(dtype)


def test_peers_doctests():
    result = doctest.testmod(_peers)
    assert result.attempted >= 2 and result.failed == 0


def test_schnet_zero_head_gives_the_composition_baseline():
    model = _schnet()
    torch.nn.init.zeros_(model.schnet.lin2.weight)
    torch.nn.init.zeros_(model.schnet.lin2.bias)
    molecule = Data(pos=torch.randn(3, 3, dtype=torch.float64), z=torch.tensor([8, 1, 1]),
                    cell=torch.zeros(1, 3, 3, dtype=torch.float64), pbc=torch.zeros(1, 3, dtype=torch.bool))
    batch = Batch.from_data_list([_box(), molecule])
    expected = torch.tensor([2 * -2.0 + 4 * -0.5, -2.0 + 2 * -0.5], dtype=torch.float64)
    torch.testing.assert_close(model(batch), expected)
    assert not model.schnet.atomref.weight.requires_grad


def test_schnet_periodic_images_rotation_and_forces():
    model, data = _schnet(), _box()
    energy, forces = energy_and_forces(model, data)
    # moving an atom by a lattice vector changes nothing: periodic images are neighbours
    moved = data.clone()
    moved.pos = moved.pos.clone()
    moved.pos[2] += data.cell[0, 1] - data.cell[0, 2]
    torch.testing.assert_close(model(moved), energy, rtol=1e-12, atol=1e-12)
    # rotating positions and cell rotates the forces (x @ R.T)
    rot = random_rotation(torch.Generator().manual_seed(3), torch.float64)
    turned = data.clone()
    turned.pos, turned.cell = data.pos @ rot.T, data.cell @ rot.T
    e_rot, f_rot = energy_and_forces(model, turned)
    torch.testing.assert_close(e_rot, energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f_rot, forces @ rot.T, rtol=1e-9, atol=1e-11)
    # forces are -dE/dx: central finite differences
    h, fd = 1e-5, torch.zeros_like(forces)
    for i in range(data.num_nodes):
        for k in range(3):
            plus, minus = data.clone(), data.clone()
            plus.pos, minus.pos = data.pos.clone(), data.pos.clone()
            plus.pos[i, k] += h
            minus.pos[i, k] -= h
            fd[i, k] = -(model(plus) - model(minus)).item() / (2 * h)
    torch.testing.assert_close(forces, fd, rtol=1e-5, atol=1e-7)
    assert forces.abs().max() > 1e-6  # not trivially zero


def test_schnet_matches_pyg_forward_without_neighbour_cap():
    # an open, dense cloud: PyG's own SchNet.forward (radius_graph, cap lifted) is the reference
    try:  # PyG's radius_graph needs torch-cluster (torch-geometric <= 2.7) or pyg-lib (2.8)
        from torch_geometric.nn import radius_graph
        radius_graph(torch.zeros(2, 3), 1.0)
    except ImportError as err:
        pytest.skip(str(err))
    gen = torch.Generator().manual_seed(1)
    pos = torch.rand(60, 3, generator=gen, dtype=torch.float64) * 3.0
    z = torch.randint(0, 2, (60,), generator=gen) * 7 + 1  # H and O
    model = _schnet(cutoff=4.0)
    ours = model(Data(pos=pos, z=z))
    model.schnet.interaction_graph.max_num_neighbors = 1000
    torch.testing.assert_close(ours, model.schnet(z, pos).reshape(-1), rtol=1e-10, atol=1e-10)
    model.schnet.interaction_graph.max_num_neighbors = 32  # PyG's default cap drops neighbours here
    assert not torch.allclose(ours, model.schnet(z, pos).reshape(-1))


class _Constant(torch.nn.Module):
    """E = c * (number of atoms) + 0 * sum(pos): forces identically zero."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, data):
        batch = data.batch
        return torch.zeros(data.num_graphs, dtype=data.pos.dtype).index_add(
            0, batch, self.c + 0.0 * data.pos.sum(-1))


def _labelled(n_atoms: int, energy: float, seed: int) -> Data:
    gen = torch.Generator().manual_seed(seed)
    return Data(pos=torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64),
                z=torch.ones(n_atoms, dtype=torch.long),
                energy=torch.tensor([energy], dtype=torch.float64),
                forces=torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64))


def test_metrics_match_hand_computation():
    data = [_labelled(2, -1.5, 0), _labelled(4, 1.0, 1), _labelled(3, 0.3, 2)]
    out = metrics(_Constant(0.25), data, batch_size=2, scales=(0.5, 2.0), weights=(0.1, 1.0))
    e_err = np.array([(0.5 - -1.5) / 2, (1.0 - 1.0) / 4, (0.75 - 0.3) / 3])
    forces = np.concatenate([d.forces.numpy().ravel() for d in data])
    assert out["energy_mae_per_atom"] == pytest.approx(np.abs(e_err).mean(), rel=1e-12)
    assert out["forces_mae"] == pytest.approx(np.abs(forces).mean(), rel=1e-12)
    # per-batch loss weighted by structures: batches {0, 1} and {2}
    f = [d.forces.numpy() for d in data]
    loss01 = 0.1 * np.mean(e_err[:2] ** 2) / 0.25 + np.mean(np.concatenate([f[0], f[1]]) ** 2) / 4.0
    loss2 = 0.1 * e_err[2] ** 2 / 0.25 + np.mean(f[2] ** 2) / 4.0
    assert out["loss"] == pytest.approx((2 * loss01 + loss2) / 3, rel=1e-10)


def test_residual_scales_are_population_stds():
    data = [_labelled(2, -1.5, 0), _labelled(4, 1.0, 1), _labelled(3, 0.3, 2)]
    s_e, s_f = residual_scales(data, {1: 0.1})
    per_atom = [(-1.5 - 0.2) / 2, (1.0 - 0.4) / 4, (0.3 - 0.3) / 3]
    assert s_e == pytest.approx(np.std(per_atom), rel=1e-12)
    assert s_f == pytest.approx(np.std(np.concatenate([d.forces.numpy().ravel() for d in data])), rel=1e-12)


def _labelled_boxes(n: int) -> list:
    data = [_box(torch.float32, seed=s) for s in range(n)]
    for k, d in enumerate(data):
        d.energy = torch.tensor([-6.0 + 0.1 * k])
        d.forces = 0.1 * torch.randn(6, 3, generator=torch.Generator().manual_seed(k))
    return data


def _tiny_schnet() -> SchNetEnergy:
    return SchNetEnergy(BASELINE, std=0.1, cutoff=3.0, **TINY)


def test_budgeted_training_stops_and_keeps_the_best_state():
    data, make = _labelled_boxes(8), _tiny_schnet
    out = train_energy_model(make, data[:6], data[6:], batch_size=2, val_batch_size=2, lr=1e-3, max_time=1.0,
                             scales=(0.1, 0.1), log=None)
    assert out["steps"] >= 1 and out["epochs_planned"] >= 1
    assert out["train_time"] < 1.0 + 5 * out["probe_step_time"] + 5.0
    whole = [row for row in out["history"] if not row["partial"]]
    assert len(whole) == out["epochs_run"] <= out["epochs_planned"]
    assert all(row["partial"] for row in out["history"][len(whole):])  # only the stop can be partial
    if out["history"]:
        best = min(row["loss"] for row in out["history"])
        assert metrics(out["model"], data[6:], 2, (0.1, 0.1))["loss"] == pytest.approx(best, rel=1e-5)


def test_budgeted_training_validates_the_state_it_stopped_mid_epoch(monkeypatch):
    class Clock:  # one "second" per training step
        now = 0.0

        def perf_counter(self):
            return self.now

    clock, real_step = Clock(), _peers._step

    def step(*args, **kwargs):
        clock.now += 1.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(_peers, "time", clock)
    monkeypatch.setattr(_peers, "_step", step)
    monkeypatch.setattr(_peers, "probe_epochs", lambda *args, **kwargs: (3, 1.0))
    data, make = _labelled_boxes(8), _tiny_schnet
    out = train_energy_model(make, data[:6], data[6:], batch_size=2, val_batch_size=2, lr=1e-2, max_time=4.5,
                             scales=(0.1, 0.1), log=None)
    # 3 steps per epoch: epoch 1 ends at t=3; epoch 2 stops after its 2nd step (t=5 > 4.5) and is validated
    assert out["steps"] == 5 and out["epochs_run"] == 1
    assert [(row["steps"], row["partial"]) for row in out["history"]] == [(3, False), (5, True)]
    best = min(row["loss"] for row in out["history"])
    assert metrics(out["model"], data[6:], 2, (0.1, 0.1))["loss"] == pytest.approx(best, rel=1e-5)


def test_water_split_files(shared_data, tmp_path):
    import ase.io

    from accuracy import ENERGY_KEY, FORCES_KEY, write_splits

    paths = write_splits("water", shared_data, tmp_path)
    parts = {k: ase.io.read(p, index=":") for k, p in paths.items()}
    assert [len(parts[k]) for k in ("train", "val", "test")] == [300, 50, 50]
    source = ase.io.read(shared_data / "water_bulk_64" / "water_deepmd_400.xyz", index=":")
    key = lambda atoms: np.round(atoms.positions, 4).tobytes()  # noqa: E731  (energies repeat in this file)
    by_positions = {key(a): a for a in source}
    assert len(by_positions) == 400
    seen = set()
    for frames in parts.values():
        for atoms in frames:
            ref = by_positions[key(atoms)]
            assert atoms.info[ENERGY_KEY] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
            np.testing.assert_allclose(atoms.arrays[FORCES_KEY], ref.get_forces(), atol=1e-10)
            assert atoms.pbc.all() and np.allclose(atoms.cell.array, ref.cell.array)
            seen.add(key(atoms))
    assert len(seen) == 400  # disjoint splits covering every structure


def test_format_table_shows_errors():
    from accuracy import format_table

    rows = [{"dataset": "methane", "model": "PET", "params": 1000, "epochs_run": 2, "epochs_planned": 3,
             "steps": 10, "train_time_s": 5.0, "energy_mae_per_atom_meV": 1.23456, "forces_mae_meV_per_A": 78.9,
             "eval_time_s": 1.0},
            {"dataset": "methane", "model": "MACE", "error": "no .venv-mace"}]
    table = format_table(rows)
    assert "1.235" in table and "78.9" in table and "2/3" in table and "error: no .venv-mace" in table


@pytest.mark.skipif(os.environ.get("ECSE_PEER_TESTS") == "0" or not (ROOT / ".venv-mace" / "bin" / "python").is_file(),
                    reason="needs .venv-mace (bash benchmarks/setup_peers.sh)")
def test_mace_worker_times_a_tiny_model(shared_data):
    proc = subprocess.run([str(ROOT / ".venv-mace" / "bin" / "python"), str(ROOT / "benchmarks" / "mace_worker.py"),
                           "time", str(shared_data / "methane" / "methane_test.xyz"), "--repeats", "1",
                           "--threads", "1",
                           "--model", json.dumps({"hidden_irreps": "8x0e+8x1o", "max_ell": 1, "correlation": 1})],
                          stdout=subprocess.PIPE, text=True, timeout=600)
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert result["atoms"] == 5 and math.isfinite(result["seconds"]) and result["seconds"] > 0


def test_warmup_and_clipping_reach_the_peers_training():
    # warm-up: the first step runs at lr / warmup_steps; clipping bounds the update of a
    # huge gradient (Adam's first step is lr * sign-like either way, so check the norm)
    factor = _peers.warmup_cosine(100, 10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0) and factor(100) == pytest.approx(0.0)
    model = torch.nn.Linear(3, 1, bias=False)
    model.weight.grad = torch.full((1, 3), 1e6)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    assert float(norm) == pytest.approx(math.sqrt(3) * 1e6) and float(model.weight.grad.norm()) == pytest.approx(1.0)


def test_tensor_benchmark_trains_alpha_in_parts_and_summarises_seeds(shared_data, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tensors

    out = tmp_path / "t.json"
    rows = tensors.main(["--minutes", "0.03", "--datasets", "qm7x", "--targets", "alpha-l02", "--seeds", "0", "1",
                         "--rotations", "1", "--out", str(out)])
    assert [(r["target"], r["type"], r["model"], r["seed"]) for r in rows] == [
        ("alpha-l02", "1x0e+1x2e", "ECSE(PET)", 0), ("alpha-l02", "1x0e+1x2e", "PET (bare, augmented)", 0),
        ("alpha-l02", "1x0e+1x2e", "ECSE(PET)", 1), ("alpha-l02", "1x0e+1x2e", "PET (bare, augmented)", 1)]
    # trained in (l=0, l=2) parts, reported in Cartesian form like the other rows
    assert set(rows[0]["metrics"]["parts"]) == {"l=0", "l=2"} and rows[0]["equivariance_error"] < 1e-10
    summary = tensors.format_seed_summary(rows)
    values = [r["metrics"]["rmse_pct"] for r in rows if r["model"] == "ECSE(PET)"]
    assert f"{sum(values) / 2:.2f} ({min(values):.2f}..{max(values):.2f})" in summary
    assert json.loads(out.read_text())["seeds"] == [0, 1]


class _SlowCalls(torch.nn.Module):
    """A tiny SchNet that sleeps on the forward calls numbered in ``slow`` (a slow start
    and one outlier), to check what the epoch planner times."""

    def __init__(self, slow: set, seconds: float = 0.6):
        super().__init__()
        self.inner, self.slow, self.seconds, self.calls = _schnet(torch.float32), slow, seconds, 0

    def forward(self, data):
        if self.calls in self.slow:
            time.sleep(self.seconds)
        self.calls += 1
        return self.inner(data)


def test_epoch_planner_times_the_steady_state():
    data = [_box(torch.float32, seed=s) for s in range(6)]
    for k, d in enumerate(data):
        d.energy, d.forces = torch.tensor([-6.0 + 0.1 * k]), torch.zeros(6, 3)
    # calls 0-2: a slow start (skipped as warm-up); call 5: an outlier among the 5 timed steps
    epochs, t_step = _peers.probe_epochs(lambda: _SlowCalls({0, 1, 2, 5}), data[:4], data[4:], 2, 2, 1e-3,
                                         60.0, (0.1, 0.1), (0.1, 1.0), ("energy", "forces"))
    assert t_step < 0.1  # a mean over the timed steps would be >= 0.12 s, the slow start 0.6 s
    assert epochs >= 1


def test_ecse_variants_rows_compare_like_with_like(tmp_path):
    import ase.io

    import ecse_variants
    from ecse.atomistic.datasets import bundled_dataset
    from ecse.atomistic.training import load_model, train

    files = bundled_dataset("methane")
    model = {"cutoff": 3.0, "d_model": 8, "num_gnn_layers": 1, "num_transformer_layers": 1, "num_heads": 2,
             "dim_feedforward": 16, "head_hidden": 8}
    train({"data": {"files": str(files["train"]), "index": ":12", "split_sizes": [8, 2, 2]}, "model": model,
           "optimiser": {"epochs": 1, "batch_size": 4}, "run": {"dtype": "float64", "output_dir": str(tmp_path)}},
          log=None)
    frames = ase.io.read(files["test"], index=":4")
    for atoms in frames:
        atoms.info["REF_energy"], atoms.arrays["REF_forces"] = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
    frames[1] = frames[1][:4]  # a CH3 fragment: structures of different sizes weigh differently
    ase.io.write(tmp_path / "test.xyz", frames, format="extxyz")
    out = ecse_variants.main([str(tmp_path / "last.pt"), str(tmp_path / "test.xyz"), "--n-global", "3",
                              "--batch-size", "1", "--threads", "1", "--out", str(tmp_path / "v.json")])
    assert list(out) == list(ecse_variants.VARIANTS)
    assert [row["n"] for row in out.values()] == [3, 3, 4] and all(row["bare"]["n"] == row["n"] for row in out.values())
    # one structure at a time, aggregated, equals one batch of all of them
    test = ecse_variants.load_dataset(str(tmp_path / "test.xyz"), {"REF_energy": "graph", "REF_forces": "node"},
                                      dtype=torch.float64)
    bare = load_model(tmp_path / "last.pt", wrap=False)
    whole = metrics(bare, test[:3], 3, (1.0, 1.0), (0.1, 1.0), "REF_energy", "REF_forces")
    for row in (out["global, published pruning"]["bare"], ecse_variants.evaluate(bare, test[:3], 1)):
        assert row["E_meV_atom"] == pytest.approx(1e3 * whole["energy_mae_per_atom"], rel=1e-9)
        assert row["F_meV_A"] == pytest.approx(1e3 * whole["forces_mae"], rel=1e-9)
    assert all(row["frames"] > 0 for row in out.values())
    assert json.loads((tmp_path / "v.json").read_text()).keys() == out.keys()
    only_local = ecse_variants.main([str(tmp_path / "last.pt"), str(tmp_path / "test.xyz"), "--n-global", "0",
                                     "--threads", "1", "--out", str(tmp_path / "w.json")])
    assert list(only_local) == ["local"] and only_local["local"]["F_meV_A"] == out["local"]["F_meV_A"]


def test_energy_weight_option_reaches_training_and_the_report(shared_data, tmp_path, monkeypatch):
    import accuracy
    import ecse.atomistic.training as training

    seen = {}

    class Captured(Exception):
        pass

    def fake_train(options, log=None):
        seen.update(options)
        raise Captured("options captured")

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(accuracy, "probe_epochs", lambda *args, **kwargs: (1, 0.1))
    out = tmp_path / "accuracy.json"
    result = accuracy.main(["--datasets", "methane", "--models", "pet", "--minutes", "1", "--threads", "1",
                            "--energy-weight", "0.0123", "--pet-radial", "7", "--data", str(shared_data),
                            "--workdir", str(tmp_path), "--out", str(out)])
    assert seen["loss"]["energy_weight"] == 0.0123 and seen["loss"]["forces_weight"] == 1.0
    assert seen["run"]["num_threads"] == 1 and seen["ecse"]["num_prunings"] == 4  # the published pruning
    assert seen["model"]["num_radial"] == 7 and json.loads(out.read_text())["settings"]["pet"]["num_radial"] == 7
    assert result["results"][0]["error"].startswith("Captured")  # one failing model is reported, not fatal
    assert json.loads(out.read_text())["settings"]["common"]["energy_weight"] == 0.0123


def test_water_forces_diagnostic_runs_each_model(shared_data, tmp_path):
    from accuracy import write_splits
    from water_forces import KEYS, make_model, run

    from ecse.atomistic import fit_composition_baseline, load_dataset

    data = load_dataset(write_splits("water", shared_data, tmp_path)["train"], KEYS, index=":2", dtype=torch.float32)
    baseline = fit_composition_baseline(data, "REF_energy")
    s_e, s_f = residual_scales(data, baseline, "REF_energy", "REF_forces")
    assert make_model("pet", baseline, s_e, s_f).gnn_layers[0].r_embed.in_features == 4
    assert make_model("pet-basis", baseline, s_e, s_f).gnn_layers[0].r_embed.in_features == 4 + 32
    zero_forces = float(data[0].REF_forces.pow(2).mean()) / s_f ** 2  # the first step sees box 0
    for name in ("pet", "pet-basis", "schnet"):
        out = run(name, data, baseline, s_e, s_f, steps=1, energy_weight=0.1, lr=1e-3)
        # one step: the force term is that of the fresh model (zero forces for PET's zero heads)
        assert out["steps"] == 1 and math.isfinite(out["grad_norm_median"]) and out["grad_norm_median"] > 0
        if name != "schnet":
            assert out["force_first"] == pytest.approx(zero_forces, rel=1e-4) and out["abs_force_last"] == 0


def test_water_protocol_runs_the_harness_settings(shared_data, tmp_path, monkeypatch):
    import water_protocol

    from ecse.atomistic.config import config_from_dict

    seen = {}

    def fake_train(options, log=None):
        seen.update(options)
        return {"global_step": 3, "epochs_completed": 1, "test_model": "last",
                "test": {"energy_mae_per_atom": 0.001, "forces_mae": 0.2}}

    monkeypatch.setattr(water_protocol, "train", fake_train)
    monkeypatch.setattr(water_protocol.tempfile, "tempdir", str(tmp_path))  # its split folder
    water_protocol.main(["--num-radial", "5", "--energy-weight", "0.001", "--device", "cpu", "--max-time", "7",
                         "--data", str(shared_data), "--output-dir", str(tmp_path / "out")])
    assert seen["model"]["num_radial"] == 5 and seen["loss"]["energy_weight"] == 0.001
    assert seen["run"]["max_time"] == 7 and seen["run"]["device"] == "cpu" and seen["data"]["test_file"]
    assert seen["model"]["d_model"] == water_protocol.PET_HYPER["d_model"] and seen["data"]["augment_rotations"]
    config = config_from_dict(seen)  # every option is one the trainer knows, in the sectioned form
    assert config.optimiser.lr == 1e-3 and config.ecse.num_prunings == 4


def test_local_accuracy_trains_and_evaluates_with_the_same_frame_settings(tmp_path):
    """``benchmarks/local_accuracy.py``: the ensemble in the loop gets ``ECSE``'s defaults
    (no frame keyword in the ``ecse`` section, so the training config's defaults apply) or,
    with ``--published-pruning``, ``ecse.frameset.PUBLISHED``; the seed reaches the run."""
    import argparse

    import local_accuracy

    from ecse.atomistic._hypers import ECSEOptions
    from ecse.frameset import PUBLISHED

    data = ROOT.parent / "shared" / "data"
    for published in (False, True):
        frames = local_accuracy._frame_settings(argparse.Namespace(published_pruning=published))
        cfg = local_accuracy._config("methane", data, 1.0, tmp_path, True, frames=frames, seed=3)
        section = {k: v for k, v in cfg["ecse"].items() if k not in ("in_loop", "mode")}
        assert section == (dict(PUBLISHED) if published else {})
        assert cfg["run"]["seed"] == 3
        # what ECSE gets in the loop: the published values, or the same as ECSE's own defaults
        kwargs = ECSEOptions(**cfg["ecse"]).kwargs(cutoff=5.0)
        assert kwargs["num_prunings"] == (4 if published else 0)
        for key, value in PUBLISHED.items():
            assert (kwargs[key] == value) == published, key
    assert "ecse" not in local_accuracy._config("methane", data, 1.0, tmp_path, False)
