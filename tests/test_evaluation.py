"""Tests of ``ecse.atomistic.evaluation`` (``ecse eval``): metrics against independent
numpy computations, symmetry measures, report files and clear errors."""
import json
import os

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

pytest.importorskip("ase")

from ecse import ECSE  # noqa: E402
from ecse.atomistic import evaluation  # noqa: E402
from ecse.atomistic._metrics import irreducible_parts, tensor_metrics  # noqa: E402
from ecse.atomistic._report import format_number  # noqa: E402
from ecse.atomistic.datasets import bundled_dataset  # noqa: E402
from ecse.atomistic.evaluation import evaluate_checkpoint, evaluate_models  # noqa: E402
from ecse.cli import main  # noqa: E402
from ecse.testing import random_rotation  # noqa: E402

from .models import SmoothMLP, small_pet  # noqa: E402

METHANE = bundled_dataset("methane")
EF = {"energy": "energy", "forces": "forces"}


@pytest.fixture(scope="module")
def methane():
    structures, _ = evaluation.load_structures(METHANE["test"], EF, index=":6", dtype=torch.float64)
    return structures


@pytest.fixture(scope="module")
def pet_models():
    pet = small_pet(seed=1, num_gnn_layers=1)
    return pet.eval(), ECSE(pet, cutoff=5.0).double().eval()


def _reference_energy_forces(model, data_list):
    """Energies and forces one structure at a time, by plain autograd (no helpers)."""
    energies, forces = [], []
    for d in data_list:
        pos = d.pos.detach().clone().requires_grad_(True)
        e = model(Data(pos=pos, z=d.z, cell=d.cell, pbc=d.pbc)).sum()
        (g,) = torch.autograd.grad(e, pos)
        energies.append(float(e.detach()))
        forces.append(-g.numpy())
    return np.array(energies), forces


def test_energy_force_metrics_match_numpy(methane, pet_models):
    bare, _ = pet_models
    rep = evaluate_models(bare, None, methane, EF, rotations=0, batch_size=4)
    e_pred, f_pred = _reference_energy_forces(bare, methane)
    e_true = np.array([float(d.energy) for d in methane])
    n = np.array([d.num_nodes for d in methane], dtype=float)
    f_err = np.concatenate([f - d.forces.numpy() for f, d in zip(f_pred, methane)])
    m = rep["models"]["bare"]["metrics"]
    assert m["energy"]["mae"] == pytest.approx(np.abs(e_pred - e_true).mean(), rel=1e-9)
    assert m["energy"]["rmse"] == pytest.approx(np.sqrt(((e_pred - e_true) ** 2).mean()), rel=1e-9)
    assert m["energy"]["mae_per_atom"] == pytest.approx(np.abs((e_pred - e_true) / n).mean(), rel=1e-9)
    assert m["energy"]["rmse_per_atom"] == pytest.approx(np.sqrt((((e_pred - e_true) / n) ** 2).mean()), rel=1e-9)
    assert m["forces"]["mae"] == pytest.approx(np.abs(f_err).mean(), rel=1e-9)
    assert m["forces"]["rmse"] == pytest.approx(np.sqrt((f_err ** 2).mean()), rel=1e-9)
    assert rep["num_atoms"] == int(n.sum()) and rep["models"]["bare"]["rotational_std"]["energy"] is None
    np.testing.assert_allclose(rep["predictions"]["bare"]["energy"]["pred"], e_pred, rtol=1e-12)


def test_symmetry_measures_bare_vs_wrapped(methane, pet_models):
    bare, wrapped = pet_models
    rep = evaluate_models(bare, wrapped, methane, EF, rotations=3, batch_size=4, seed=2)
    b, w = rep["models"]["bare"], rep["models"]["wrapped"]
    for key in ("energy", "forces"):
        assert b["rotational_std"][key] > 1e-6
        assert b["equivariance_error"][key]["max_relative"] > 1e-6
        assert w["rotational_std"][key] < 1e-10
        assert w["equivariance_error"][key]["max_relative"] < 1e-10
    # independent check of the bare discrepancy for one structure and one rotation
    R = random_rotation(torch.Generator().manual_seed(5))
    d = methane[0]
    rot = Data(pos=d.pos @ R.T, z=d.z, cell=d.cell @ R.T, pbc=d.pbc)
    (e0,), (f0,) = [x for x in _reference_energy_forces(bare, [d])]
    (e1,), (f1,) = [x for x in _reference_energy_forces(bare, [rot])]
    assert abs(e1 - e0) > 1e-6 and np.abs(f1 @ R.numpy() - f0).max() > 1e-6
    # frames per structure as ECSE reports them on the whole set
    wrapped(Batch.from_data_list(methane))
    assert w["frames_per_structure"] == pytest.approx(wrapped.last_stats["frames_per_graph"], rel=1e-12)
    assert w["frames_per_structure"] >= 1 and "frames_per_structure" not in b


def test_symmetry_measures_float32():
    pet = small_pet(seed=1, num_gnn_layers=1).float()
    data, _ = evaluation.load_structures(METHANE["test"], EF, index=":4", dtype=torch.float32)
    rep = evaluate_models(pet, ECSE(pet, cutoff=5.0).float(), data, EF, rotations=2, batch_size=4)
    b, w = rep["models"]["bare"], rep["models"]["wrapped"]
    assert w["equivariance_error"]["energy"]["max_relative"] < 1e-6
    assert w["equivariance_error"]["forces"]["max_relative"] < 1e-3
    assert b["equivariance_error"]["forces"]["max_relative"] > 10 * w["equivariance_error"]["forces"]["max_relative"]


def test_tensor_metrics_match_numpy():
    rng = np.random.default_rng(0)
    true, pred = rng.normal(size=(7, 3, 3)), rng.normal(size=(7, 3, 3))
    m = tensor_metrics(pred, true, "rank2")
    err = pred - true
    assert m["components"]["xy"]["mae"] == pytest.approx(np.abs(err[:, 0, 1]).mean())
    assert m["components"]["zx"]["rmse"] == pytest.approx(np.sqrt((err[:, 2, 0] ** 2).mean()))
    assert m["components"]["yy"]["rmse_pct"] == pytest.approx(100 * np.sqrt((err[:, 1, 1] ** 2).mean())
                                                              / true[:, 1, 1].std())
    iso = (np.einsum("nii->n", pred) - np.einsum("nii->n", true)) / 3
    assert m["parts"]["l=0"]["mae"] == pytest.approx(np.abs(iso).mean())
    assert m["parts"]["l=0"]["rmse_pct"] == pytest.approx(
        100 * np.sqrt((iso ** 2).mean()) / (np.einsum("nii->n", true) / 3).std())
    anti = 0.5 * (err - err.transpose(0, 2, 1))
    assert m["parts"]["l=1"]["rmse"] == pytest.approx(np.sqrt((anti ** 2).sum((1, 2)).mean() / 6))
    sym = 0.5 * (err + err.transpose(0, 2, 1)) - np.eye(3) * (np.einsum("nii->n", err) / 3)[:, None, None]
    assert m["parts"]["l=2"]["rmse"] == pytest.approx(np.sqrt((sym ** 2).mean()))
    assert m["parts"]["l=2"]["mae"] == pytest.approx(np.abs(sym).mean())
    # the parts' RMSEs do not depend on the orientation of the data (same R for both)
    R = random_rotation(torch.Generator().manual_seed(3)).numpy()
    m_rot = tensor_metrics(R @ pred @ R.T, R @ true @ R.T, "rank2")
    for part in ("l=0", "l=1", "l=2"):
        assert m_rot["parts"][part]["rmse"] == pytest.approx(m["parts"][part]["rmse"], rel=1e-10)
    # symmetric tensors: six components, no l=1 part
    s = tensor_metrics(pred + pred.transpose(0, 2, 1), true + true.transpose(0, 2, 1), "rank2-symmetric")
    assert sorted(s["components"]) == sorted(["xx", "yy", "zz", "yz", "xz", "xy"])
    assert sorted(s["parts"]) == ["l=0", "l=2"]
    # irreps: one part per block
    v = tensor_metrics(pred.reshape(7, 9)[:, :4], true.reshape(7, 9)[:, :4], "1x0e+1x1o")
    assert v["parts"]["1o"]["rmse"] == pytest.approx(np.sqrt((err.reshape(7, 9)[:, 1:4] ** 2).mean()))
    assert v["parts"]["0e"]["mae"] == pytest.approx(np.abs(err.reshape(7, 9)[:, 0]).mean())
    assert len(irreducible_parts(true.reshape(7, 9)[:, :2], "2x0e")) == 2


class _Rank2(torch.nn.Module):
    """A smooth, non-equivariant model of a 3x3 tensor per structure."""

    def __init__(self):
        super().__init__()
        self.mlp = SmoothMLP(9).double()

    def forward(self, data):
        return self.mlp(data).reshape(-1, 3, 3)


@pytest.mark.parametrize("kind", ["vector", "rank2", "1x0e+1x1o"])
def test_tensor_targets_and_equivariance(methane, kind):
    torch.manual_seed(0)
    bare = {"vector": SmoothMLP(3), "rank2": _Rank2(), "1x0e+1x1o": SmoothMLP(4)}[kind].double()
    wrapped = ECSE(bare, cutoff=5.0, output=kind).double()
    g = torch.Generator().manual_seed(1)
    shape = {"vector": (1, 3), "rank2": (1, 9), "1x0e+1x1o": (1, 4)}[kind]  # rank-2 flat, as read from extxyz
    data = [Data(pos=d.pos, z=d.z, cell=d.cell, pbc=d.pbc, t=torch.randn(*shape, generator=g, dtype=torch.float64))
            for d in methane]
    rep = evaluate_models(bare, wrapped, data, {"t": kind}, rotations=3, batch_size=4)
    with torch.no_grad():
        pred = bare(Batch.from_data_list(data)).numpy()
    true = torch.cat([d.t for d in data]).numpy().reshape(pred.shape)
    m = rep["models"]["bare"]["metrics"]["t"]
    assert m["rmse"] == pytest.approx(np.sqrt(((pred - true) ** 2).mean()), rel=1e-10)
    assert set(m["parts"]) == {"vector": {"l=1"}, "rank2": {"l=0", "l=1", "l=2"}, "1x0e+1x1o": {"0e", "1o"}}[kind]
    assert rep["models"]["bare"]["rotational_std"]["t"] > 1e-6
    assert rep["models"]["wrapped"]["equivariance_error"]["t"]["max_relative"] < 1e-10
    assert rep["models"]["wrapped"]["rotational_std"]["t"] < 1e-10
    assert "% of std" in evaluation.format_report(rep)


def test_stress_of_periodic_data_is_added_and_symmetric(tmp_path):
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    rng = np.random.default_rng(0)
    for k in range(2):
        atoms = bulk("Si", "diamond", a=5.4, cubic=True)
        atoms.positions += 0.1 * rng.normal(size=atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 * k, forces=rng.normal(size=(len(atoms), 3)),
                                           stress=rng.normal(size=6))
        frames.append(atoms)
    path = tmp_path / "si.extxyz"
    write(path, frames)
    structures, targets = evaluation.load_structures(path, EF)
    assert targets == {**EF, "stress": "stress"} and structures[0].stress.shape == (1, 3, 3)
    pet = small_pet(seed=0, num_gnn_layers=1, cutoff=3.0)
    rep = evaluate_models(pet, ECSE(pet, cutoff=3.0).double(), structures, targets, rotations=2)
    from ecse.atomistic.derivatives import energy_forces_stress
    _, _, s = energy_forces_stress(pet, Batch.from_data_list(structures))
    true = torch.cat([d.stress for d in structures])
    assert rep["models"]["bare"]["metrics"]["stress"]["mae"] == pytest.approx(float((s - true).abs().mean()))
    assert rep["models"]["wrapped"]["equivariance_error"]["stress"]["max_relative"] < 1e-10


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from ecse.atomistic.training import train

    out = tmp_path_factory.mktemp("ckpt")
    train({"data": str(METHANE["val"]), "data_index": ":12", "split_sizes": [8, 2, 2], "epochs": 1,
           "batch_size": 4, "output_dir": str(out), "seed": 0,
           "model": {"d_model": 8, "num_gnn_layers": 1, "num_transformer_layers": 1, "num_heads": 2,
                     "dim_feedforward": 8, "head_hidden": 8}}, log=None)
    return out / "best.pt"


def test_evaluate_checkpoint_writes_report_and_plot(checkpoint, tmp_path):
    lines = []
    rep = evaluate_checkpoint(checkpoint, METHANE["test"], index=":4", output_dir=tmp_path, rotations=2,
                              log=lines.append)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["num_structures"] == 4 and saved["dtype"] == "float64" and "predictions" not in saved
    assert set(saved["models"]) == {"bare", "wrapped"} and saved["models"]["wrapped"]["name"] == "ECSE(PET)"
    assert saved["models"]["bare"]["metrics"]["forces"]["mae"] == pytest.approx(
        rep["models"]["bare"]["metrics"]["forces"]["mae"])
    assert saved["models"]["wrapped"]["equivariance_error"]["forces"]["max_relative"] < 1e-10
    assert (tmp_path / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = lines[-1]
    mae = rep["models"]["bare"]["metrics"]["energy"]["mae"] * 1000
    assert "ECSE(PET)" in table and "forces MAE" in table and evaluation.format_report(rep) == table
    assert format_number(mae) in table


def test_evaluate_tensor_checkpoint(shared_data, tmp_path):
    """A PET polarizability model from `train(targets=...)`: parts l=0 and l=2, exact when wrapped."""
    from ecse.atomistic.training import train

    water = shared_data / "water_tensors" / "water_monomer_coords_1000.xyz"
    train({"data": str(water), "data_index": ":12", "split_sizes": [8, 2, 2], "epochs": 1, "batch_size": 4,
           "output_dir": str(tmp_path), "targets": {"alpha": "rank2-symmetric"},
           "model": {"d_model": 8, "num_gnn_layers": 1, "num_transformer_layers": 1, "num_heads": 2,
                     "dim_feedforward": 8, "head_hidden": 8}}, log=None)
    rep = evaluate_checkpoint(tmp_path / "best.pt", water, index="20:24", rotations=2, log=None)
    bare, wrapped = rep["models"]["bare"], rep["models"]["wrapped"]
    assert rep["targets"] == {"alpha": "rank2-symmetric"} and set(bare["metrics"]["alpha"]["parts"]) == {"l=0", "l=2"}
    true = rep["predictions"]["bare"]["alpha"]["true"]
    assert true.shape == (4, 3, 3) and np.allclose(true, true.transpose(0, 2, 1))
    iso = np.einsum("nii->n", rep["predictions"]["bare"]["alpha"]["pred"] - true) / 3
    assert bare["metrics"]["alpha"]["parts"]["l=0"]["mae"] == pytest.approx(np.abs(iso).mean())
    assert bare["rotational_std"]["alpha"] > 1e-8 and wrapped["rotational_std"]["alpha"] < 1e-10
    assert wrapped["equivariance_error"]["alpha"]["max_relative"] < 1e-10
    assert (tmp_path / "parity.png").is_file() and "alpha l=2 RMSE" in evaluation.format_report(rep)


def test_cli_eval(checkpoint, tmp_path, capsys):
    code = main(["eval", str(checkpoint), str(METHANE["test"]), "--index", ":3", "--rotations", "2",
                 "--output", str(tmp_path), "--no-wrapped", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == 0 and "energy MAE" in out and "ECSE(PET)" not in out
    assert json.loads((tmp_path / "report.json").read_text())["dtype"] == "float32"


def test_cli_eval_clear_errors(checkpoint, tmp_path, capsys):
    from ase.build import molecule
    from ase.io import write

    def run(*argv):
        code = main(["eval", *map(str, argv), "--rotations", "0", "--output", str(tmp_path)])
        return code, capsys.readouterr().err

    code, err = run(tmp_path / "missing.pt", METHANE["test"])
    assert code == 2 and "checkpoint not found" in err and "missing.pt" in err
    not_ckpt = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(2)}, not_ckpt)
    code, err = run(not_ckpt, METHANE["test"])
    assert code == 2 and "not an ecse training checkpoint" in err
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is not a structure file\n")
    code, err = run(checkpoint, garbage)
    assert code == 2 and "could not read" in err and "garbage.txt" in err
    code, err = run(checkpoint, tmp_path / "nothing.xyz")
    assert code == 2 and "data file not found" in err
    no_energy = tmp_path / "no_energy.xyz"
    write(no_energy, molecule("CH4"))
    code, err = run(checkpoint, no_energy)
    assert code == 2 and "'energy'" in err and "available keys" in err
    assert not os.path.exists(tmp_path / "report.json")
    with pytest.raises(ValueError, match="rotations"):
        evaluate_models(None, None, [Data(pos=torch.zeros(1, 3))], {}, rotations=-1)
    with pytest.raises(ValueError, match="unknown type"):
        evaluate_models(None, None, [Data(pos=torch.zeros(1, 3))], {"x": "tensor"})


def test_methane_demo_config_overrides():
    from ecse.atomistic.config import config_from_dict
    from ecse.demos.methane import methane_demo_config

    full, fast = methane_demo_config(), methane_demo_config(fast=True)
    run, opt = {"full": full["run"], "fast": fast["run"]}, {"full": full["optimiser"], "fast": fast["optimiser"]}
    assert run["full"]["max_time"] > 0 and run["fast"]["max_time"] is None
    assert opt["fast"]["epochs"] < opt["full"]["epochs"]
    assert fast["model"]["d_model"] < full["model"]["d_model"] and run["full"]["num_threads"] == 1
    assert methane_demo_config(max_time=0)["run"]["max_time"] is None
    cfg = methane_demo_config("out", epochs=1, threads=2, max_time=5)
    assert (cfg["optimiser"]["epochs"], cfg["run"]["num_threads"], cfg["run"]["max_time"],
            cfg["optimiser"]["warmup_epochs"]) == (1, 2, 5.0, 1.0)
    config_from_dict(cfg)  # a valid TrainConfig
    with pytest.raises(ValueError, match="epochs"):
        methane_demo_config(epochs=0)
