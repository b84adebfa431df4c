"""Training loop of ``ecse.atomistic.training`` on a tiny PET and 40 methane structures."""
from __future__ import annotations

import csv
import os

import pytest
import torch

pytest.importorskip("ase")
pytest.importorskip("yaml")

from torch_geometric.data import Batch  # noqa: E402

from ecse.atomistic._flat import FLAT_OPTIONS, SECTIONS  # noqa: E402
from ecse.atomistic.config import TrainConfig, config_from_dict, load_config  # noqa: E402
from ecse.atomistic.training import load_model, train  # noqa: E402

def _data_path() -> str:
    shared = "/work/shared/data/methane/methane_train.xyz"
    if os.path.isfile(shared):
        return shared
    try:
        from ecse.atomistic.datasets import bundled_dataset
    except ImportError:
        return shared
    return str(bundled_dataset("methane")["train"])


DATA = _data_path()
pytestmark = pytest.mark.skipif(not os.path.isfile(DATA), reason="methane data set not available")

TINY_MODEL = {"cutoff": 3.0, "d_model": 16, "num_gnn_layers": 1, "num_transformer_layers": 1,
              "num_heads": 2, "dim_feedforward": 32, "head_hidden": 16}


def sections(base: dict, **overrides) -> dict:
    """``base`` (nested options) with ``overrides`` applied: ``section={option: value}``,
    or ``option=value`` by the option's flat name (``epochs=5``: ``optimiser.epochs``)."""
    out = {name: dict(values) for name, values in base.items()}
    for key, value in overrides.items():
        if key in SECTIONS:
            out[key] = {**out.get(key, {}), **value}
        else:
            section, name = FLAT_OPTIONS[key]
            out.setdefault(section, {})[name] = value
    return out


def tiny(output_dir, **overrides) -> dict:
    return sections({"data": {"files": DATA, "index": ":40", "split_sizes": [24, 8, 8]}, "model": TINY_MODEL,
                     "optimiser": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 0.5},
                     "run": {"dtype": "float64", "output_dir": str(output_dir)}}, **overrides)


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return train(tiny(out, run={"checkpoint_every": 2}), log=None), out


def test_training_reduces_loss_and_writes_outputs(tmp_path):
    result = train(tiny(tmp_path, optimiser={"epochs": 4}, data={"augment_rotations": False}), log=None)
    losses = [row["train_loss"] for row in result["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert result["finished"] and result["test"]["forces_mae"] > 0
    for name in ("last.pt", "best.pt", "log.csv"):
        assert (tmp_path / name).is_file()
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "val_energy_mae", "val_forces_mae", "lr", "time"} <= set(rows[0])


def test_load_model_matches_in_memory(straight_run):
    result, out = straight_run
    model = result["model"].eval()
    loaded = load_model(out / "last.pt")
    from ecse.atomistic import load_dataset

    batch = Batch.from_data_list(load_dataset(DATA, index=":5", dtype=torch.float64))
    assert torch.equal(model(batch).detach(), loaded(batch).detach())
    assert not torch.equal(loaded.composition_offsets, torch.zeros_like(loaded.composition_offsets))


def test_training_scales_the_outputs_by_the_force_std(straight_run, tmp_path):
    import ase.io
    import numpy as np

    result, _ = straight_run
    frames = ase.io.read(DATA, index=":40")
    from ecse.atomistic import split_dataset

    train_idx = split_dataset(list(range(40)), [24, 8, 8], 0)[0]
    force_std = np.concatenate([frames[i].get_forces().reshape(-1) for i in train_idx]).std()
    assert float(result["model"].output_scale) == pytest.approx(force_std, rel=1e-6)
    unscaled = train(tiny(tmp_path, optimiser={"epochs": 1}, loss={"scale_outputs": False}), log=None)
    assert float(unscaled["model"].output_scale) == 1.0


def test_exact_resume_after_kill_mid_epoch(straight_run, tmp_path):
    result_a, _ = straight_run

    class Killed(Exception):
        pass

    def kill(epoch, step):  # second epoch, after step 1 (last checkpoint: global step 4)
        if epoch == 1 and step == 1:
            raise Killed

    with pytest.raises(Killed):
        train(tiny(tmp_path, run={"checkpoint_every": 2}), log=None, step_hook=kill)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["global_step"] == 4
    result_b = train(tiny(tmp_path, run={"checkpoint_every": 2}), resume=True, log=None)
    assert result_b["global_step"] == result_a["global_step"] == 6
    assert torch.equal(flat_params(result_a["model"]), flat_params(result_b["model"]))
    assert [r["train_loss"] for r in result_a["history"]] == [r["train_loss"] for r in result_b["history"]]


def test_max_steps_then_resume(straight_run, tmp_path):
    result_a, _ = straight_run
    partial = train(tiny(tmp_path, run={"max_steps": 2}), log=None)
    assert not partial["finished"] and partial["global_step"] == 2
    result_b = train(tiny(tmp_path), resume=True, log=None)
    assert torch.equal(flat_params(result_a["model"]), flat_params(result_b["model"]))


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="'learning_rate'"):
        config_from_dict({"data": {"files": DATA}, "optimiser": {"learning_rate": 1e-3}})
    with pytest.raises(TypeError, match="'epochs'"):
        TrainConfig(data={"files": DATA}, optimiser={"epochs": "ten"})
    with pytest.raises(TypeError, match="'name'"):
        TrainConfig(data={"files": DATA}, optimiser={"name": "sgd"})
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig()
    path = tmp_path / "cfg.yaml"
    path.write_text(f"data: {{files: {DATA}}}\noptimiser: {{batchsize: 4}}\n")
    with pytest.raises(ValueError, match="'batchsize'"):
        load_config(path)


def test_cli_train(tmp_path, capsys):
    import yaml

    from ecse.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path / "run", optimiser={"epochs": 1})))
    assert main(["train", str(path)]) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.pt").is_file()
    assert main(["train", str(path), "--resume"]) == 0  # already finished: no further epochs


@pytest.mark.parametrize("in_loop", [False, True])
def test_micro_batches_give_the_whole_batch_step(tmp_path, monkeypatch, in_loop):
    """Training in groups of at most 6 atoms (one methane each) takes the same steps as
    whole batches of 8 structures (float64), with no pass seeing more than 6 atoms."""
    from ecse.atomistic import _loop

    predict = _loop.predict

    def run(atoms, out):
        seen = []
        monkeypatch.setattr(_loop, "predict", lambda net, batch, *a, **k: seen.append(batch.num_nodes)
                            or predict(net, batch, *a, **k))
        config = tiny(out, optimiser={"epochs": 1, "micro_batch_atoms": atoms}, data={"split_sizes": [24, 4, 0]},
                      ecse={"in_loop": in_loop})
        return flat_params(train(config, log=None)["model"]), seen

    whole, seen_whole = run(None, tmp_path / "whole")
    grouped, seen_grouped = run(6, tmp_path / "grouped")
    assert max(seen_whole) == 40 and max(seen_grouped) <= 6 and len(seen_grouped) == 8 * len(seen_whole)
    torch.testing.assert_close(grouped, whole, rtol=1e-9, atol=1e-11)


def test_micro_batch_atoms_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="micro_batch_atoms"):
        train(tiny(tmp_path, optimiser={"micro_batch_atoms": 0}), log=None)


def test_ecse_in_loop_and_wrapping(tmp_path):
    result = train(tiny(tmp_path, optimiser={"epochs": 1}, data={"split_sizes": [8, 4, 0]}, ecse={"in_loop": True}),
                   log=None)
    assert type(result["model"]).__name__ == "ECSE" and result["finished"]
    assert type(load_model(tmp_path / "last.pt")).__name__ == "ECSE"
    assert type(load_model(tmp_path / "last.pt", wrap=False)).__name__ == "PET"


# --------------------------------------------------------------------- targets, stress, tensors, max_time

TENSOR_FILE = "water_tensors/water_monomer_coords_1000.xyz"


def water(shared_data, output_dir, targets, **overrides) -> dict:
    return sections({"data": {"files": str(shared_data / TENSOR_FILE), "index": ":20", "split_sizes": [12, 4, 4],
                              "targets": targets}, "model": TINY_MODEL,
                     "optimiser": {"epochs": 3, "batch_size": 4, "lr": 3e-3},
                     "run": {"dtype": "float64", "output_dir": str(output_dir), "progress": False}}, **overrides)


@pytest.fixture(scope="module")
def emt_cells(tmp_path_factory):
    """Six rattled, strained 4-atom Cu cells with EMT energies, forces and stress."""
    import ase.io
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng, frames = np.random.default_rng(0), []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    path = tmp_path_factory.mktemp("emt") / "cu.xyz"
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_stress_in_the_loss_reduces_the_stress_error(emt_cells, tmp_path):
    from ecse.atomistic.derivatives import energy_forces_stress

    from ecse.atomistic import load_dataset, split_dataset
    from ecse.atomistic.training import build_model

    # full-batch steps on 2 cells, the stress term alone in the loss: without it (or with
    # a wrong sign) the stress error would not go down
    options = {"data": {"files": emt_cells, "split_sizes": [2, 1, 1], "augment_rotations": False},
               "model": TINY_MODEL, "optimiser": {"epochs": 5, "batch_size": 2, "lr": 1e-2, "decay": "constant"},
               "loss": {"energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 1.0},
               "run": {"dtype": "float64", "output_dir": str(tmp_path), "progress": False}}
    result = train(options, log=None)
    assert result["targets"] == {"energy": "energy", "forces": "forces", "stress": "stress"}
    losses = [row["train_loss"] for row in result["history"]]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    cells = Batch.from_data_list(
        split_dataset(load_dataset(emt_cells, {"stress": "graph"}, dtype=torch.float64), [2, 1, 1])[0])
    torch.manual_seed(0)
    initial = build_model(config_from_dict(options), result["baseline"])
    initial.set_output_scale(float(result["model"].output_scale))
    errors = [float((energy_forces_stress(model, cells)[2].detach() - cells.stress.reshape(-1, 3, 3)).pow(2).mean())
              for model in (initial, result["model"])]  # computed here, not by the training code
    assert errors[1] < 0.8 * errors[0]  # measured: 0.68
    assert losses[0] == pytest.approx(errors[0] / result["scales"]["stress"] ** 2, rel=1e-9)
    assert result["test"]["stress_mae"] > 0
    with open(tmp_path / "log.csv") as handle:
        assert "val_stress_mae" in next(csv.reader(handle))


def test_stress_needs_periodic_structures(tmp_path):
    import ase.io
    import numpy as np
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = molecule("CH4")
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((5, 3)), stress=np.zeros(6))
    ase.io.write(tmp_path / "molecule.xyz", [atoms, atoms], format="extxyz")
    with pytest.raises(ValueError, match=r"molecule.xyz'\[0\]: stress target 'stress' needs a periodic structure"):
        train({"data": {"files": str(tmp_path / "molecule.xyz"), "split_sizes": [1, 1, 0]},
               "loss": {"stress_weight": 1.0}, "run": {"output_dir": str(tmp_path)}}, log=None)


@pytest.mark.parametrize("kind", ["rank2-symmetric", "vector"])
def test_tensor_training_reduces_loss_and_resumes_exactly(shared_data, tmp_path, kind):
    if not (shared_data / TENSOR_FILE).is_file():
        pytest.skip("water tensor data not available")
    key = "alpha" if kind.startswith("rank2") else "mu"
    straight = train(water(shared_data, tmp_path / "a", {key: kind}, run={"checkpoint_every": 2}), log=None)
    losses = [row["train_loss"] for row in straight["history"]]
    assert min(losses[1:]) < 0.8 * losses[0]  # measured: 0.77 (alpha), 0.68 (mu)
    assert set(straight["test"]) == {"loss", f"{key}_mae", f"{key}_rmse"}
    if kind.startswith("rank2"):  # isotropic composition baseline: trace / 3 of the mean alpha
        assert straight["baseline"] and straight["model"].composition_offsets[8] != 0

    def kill(epoch, step):
        if epoch == 1 and step == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(water(shared_data, tmp_path / "b", {key: kind}, run={"checkpoint_every": 2}), log=None,
              step_hook=kill)
    resumed = train(water(shared_data, tmp_path / "b", {key: kind}, run={"checkpoint_every": 2}), resume=True,
                    log=None)
    assert torch.equal(flat_params(straight["model"]), flat_params(resumed["model"]))
    assert losses == [row["train_loss"] for row in resumed["history"]]


def test_tensor_checkpoint_rebuilds_an_equivariant_model(shared_data, tmp_path):
    if not (shared_data / TENSOR_FILE).is_file():
        pytest.skip("water tensor data not available")
    from ecse.atomistic import load_dataset
    from ecse.testing import random_rotation

    result = train(water(shared_data, tmp_path, {"alpha": "rank2"}, optimiser={"epochs": 1}), log=None)
    data = load_dataset(shared_data / TENSOR_FILE, index=":3", dtype=torch.float64)
    batch = Batch.from_data_list(data)
    bare, wrapped = load_model(tmp_path / "last.pt", wrap=False), load_model(tmp_path / "last.pt", wrap=True)
    assert torch.equal(bare(batch).detach(), result["model"].eval()(batch).detach())
    assert tuple(wrapped(batch).shape) == (3, 3, 3)
    R = random_rotation(torch.Generator().manual_seed(3))
    rotated = Batch.from_data_list([d.clone() for d in data])
    rotated.pos = rotated.pos @ R.T
    expected = R @ wrapped(batch).detach() @ R.T  # R T R^T, computed here
    assert torch.allclose(wrapped(rotated).detach(), expected, atol=1e-10)


def test_rotate_targets_matches_independent_formulas():
    import numpy as np
    from e3nn import o3
    from torch_geometric.data import Data

    from ecse.atomistic.targets import rotate_targets
    from ecse.testing import random_orthogonal

    gen = torch.Generator().manual_seed(0)
    irreps = "1x0e+1x1o+1x2e"
    data = [Data(z=torch.tensor([8, 1, 1]), pos=torch.randn(3, 3, generator=gen, dtype=torch.float64),
                 cell=torch.zeros(1, 3, 3, dtype=torch.float64), forces=torch.randn(3, 3, dtype=torch.float64),
                 mu=torch.randn(1, 3, dtype=torch.float64), alpha=torch.randn(1, 3, 3, dtype=torch.float64),
                 f=torch.randn(1, 9, dtype=torch.float64)) for _ in range(2)]
    batch = Batch.from_data_list([d.clone() for d in data])
    rots = torch.stack([random_orthogonal(gen, improper=False), random_orthogonal(gen, improper=True)])
    types = {"forces": "forces", "mu": "vector", "alpha": "rank2", "f": irreps}
    out = rotate_targets(batch, types, rots)
    for g, (d, R) in enumerate(zip(data, rots.numpy())):
        nodes = out.batch == g
        np.testing.assert_allclose(out.pos[nodes].numpy(), d.pos.numpy() @ R.T, atol=1e-12)
        np.testing.assert_allclose(out.forces[nodes].numpy(), d.forces.numpy() @ R.T, atol=1e-12)
        np.testing.assert_allclose(out.mu[g].numpy(), R @ d.mu[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(out.alpha[g].numpy(), R @ d.alpha[0].numpy() @ R.T, atol=1e-12)
        D = o3.Irreps(irreps).D_from_matrix(torch.as_tensor(R)).double()  # e3nn's own Wigner matrices
        np.testing.assert_allclose(out.f[g].numpy(), (D @ d.f[0]).numpy(), atol=1e-5)


def test_target_errors(tmp_path, shared_data):
    with pytest.raises(ValueError, match="'mu' has unknown type 'dipole'"):
        TrainConfig(data={"files": DATA, "targets": {"mu": "dipole"}})
    with pytest.raises(ValueError, match="exactly one tensor target"):
        TrainConfig(data={"files": DATA, "targets": {"mu": "vector", "alpha": "rank2"}})
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainConfig(data={"files": DATA, "targets": {"energy": "energy", "mu": "1x1o"}})
    with pytest.raises(ValueError, match="need an 'energy' target"):
        TrainConfig(data={"files": DATA, "targets": {"forces": "forces"}})
    with pytest.raises(ValueError, match="no stress target"):
        TrainConfig(data={"files": DATA, "targets": {"energy": "energy"}}, loss={"stress_weight": 1.0})
    with pytest.raises(ValueError, match="leave 'output' and 'level' out of the model section"):
        TrainConfig(data={"files": DATA, "targets": {"mu": "vector"}}, model={"output": "rank2"})
    with pytest.raises(ValueError, match="an energy model predicts a scalar"):
        TrainConfig(data={"files": DATA}, model={"output": "vector"})
    assert TrainConfig(data={"files": DATA, "targets": {"mu": "vector"}}, model={"output": "vector"}).model.output
    if (shared_data / TENSOR_FILE).is_file():  # 'mu' has 3 numbers, not 9
        with pytest.raises(ValueError, match=r"water_monomer_coords_1000.xyz'\[0\]: target 'mu' \(rank2\) has 3"):
            train(water(shared_data, tmp_path, {"mu": "rank2"}), log=None)
        with pytest.raises(KeyError, match="'polar' not found"):
            train(water(shared_data, tmp_path, {"polar": "rank2"}), log=None)


class StepClock:
    """Stands in for the ``time`` module: one "second" per optimisation step (``tick``)."""
    now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def tick(self, *args) -> None:
        self.now += 1.0

    def install(self, monkeypatch) -> None:
        """Replace ``time`` where the training code reads the clock (start and loop)."""
        import ecse.atomistic._loop as loop
        import ecse.atomistic.training as training

        for module in (training, loop):
            monkeypatch.setattr(module, "time", self)


def test_max_time_stops_and_tests_the_best_model(tmp_path, monkeypatch):
    from ecse.atomistic.derivatives import energy_and_forces

    from ecse.atomistic import load_dataset, split_dataset

    clock = StepClock()
    clock.install(monkeypatch)

    result = train(tiny(tmp_path, optimiser={"epochs": 10}, run={"max_time": 4.5}), log=None, step_hook=clock.tick)
    # 3 steps per epoch: epoch 1 ends at t=3, epoch 2 stops after its 2nd step (t=5 > 4.5)
    assert result["stopped"] == "max_time" and not result["finished"]
    assert result["global_step"] == 5 and result["epochs_completed"] == 1
    assert result["test_model"] == "best (epoch 1)"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["global_step"] == 5
    best = load_model(tmp_path / "best.pt")
    test = Batch.from_data_list(
        split_dataset(load_dataset(DATA, {"forces": "node"}, index=":40", dtype=torch.float64), [24, 8, 8])[2])
    mae = float((energy_and_forces(best, test)[1] - test.forces).abs().mean())
    assert result["test"]["forces_mae"] == pytest.approx(mae, rel=1e-10)
    last_mae = float((energy_and_forces(result["model"], test)[1] - test.forces).abs().mean())
    assert abs(last_mae - mae) > 1e-8  # the last model differs: the test really used best.pt


@pytest.mark.parametrize("stop_loss, kept", [(0.5, "stop"), (2.0, "epoch")])
def test_max_time_validates_the_state_it_stopped_mid_epoch(tmp_path, monkeypatch, stop_loss, kept):
    import ecse.atomistic._loop as loop

    clock = StepClock()
    clock.install(monkeypatch)
    real, calls = loop.evaluate, []

    def scripted(model, data, *args):  # validation losses: epoch 1 -> 1.0, the stop -> stop_loss
        out = real(model, data, *args)
        calls.append(len(data))
        if len(calls) <= 2:
            out["loss"] = 1.0 if len(calls) == 1 else stop_loss
        return out

    monkeypatch.setattr(loop, "evaluate", scripted)
    result = train(tiny(tmp_path, optimiser={"epochs": 10}, run={"max_time": 4.5}), log=None, step_hook=clock.tick)
    assert calls[:2] == [8, 8] and len(calls) == 3  # epoch 1, the stop (both validation), then the test set
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["progress"]["global_step"] == 5 and last["progress"]["best_epoch"] == 1
    if kept == "stop":
        assert result["test_model"] == "best (the stop in epoch 2, step 2)"
        assert best["progress"]["global_step"] == 5
        assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    else:
        assert result["test_model"] == "best (epoch 1)" and best["progress"]["global_step"] == 3


def test_max_time_wall_clock(tmp_path):
    result = train(tiny(tmp_path, optimiser={"epochs": 50}, run={"max_time": 1e-3}), log=None)
    assert result["stopped"] == "max_time" and result["global_step"] == 1 and result["test_model"] == "last"
    assert result["test"]["forces_mae"] > 0


def test_progress_bar(tmp_path, capsys):
    train(tiny(tmp_path / "a", optimiser={"epochs": 1}, run={"progress": True}), log=None)
    assert "epoch 1/1" in capsys.readouterr().err
    train(tiny(tmp_path / "b", optimiser={"epochs": 1}, run={"progress": False}), log=None)
    assert capsys.readouterr().err == ""


def test_output_scale_takes_forces_else_the_first_energy_or_tensor():
    from ecse.atomistic.training import output_scale

    scales = {"E": 2.0, "F": 3.0, "S": 5.0, "mu": 7.0}
    assert output_scale(scales, {"S": "stress", "E": "energy", "F": "forces"}) == 3.0
    assert output_scale(scales, {"S": "stress", "E": "energy"}) == 2.0
    assert output_scale(scales, {"mu": "vector"}) == 7.0


def test_log_fields_and_epoch_line_list_forces_then_stress():
    from types import SimpleNamespace

    from ecse.atomistic._bookkeeping import epoch_line, log_fields

    types = {"S": "stress", "E": "energy", "F": "forces"}
    middle = ["val_energy_mae", "val_energy_mae_per_atom"]
    assert log_fields(types) == ["epoch", "train_loss", "val_loss", *middle, "val_forces_mae", "val_stress_mae",
                                 "lr", "time"]
    assert log_fields({"E": "energy", "S": "stress"})[3:-2] == [*middle, "val_stress_mae"]
    assert log_fields({"E": "energy"})[3:-2] == middle
    assert log_fields({"mu": "1x1o"})[3:-2] == ["val_mu_rmse", "val_mu_mae"]
    row = dict(epoch=1, train_loss=1.0, val_loss=2.0, val_energy_mae=0.1, val_energy_mae_per_atom=0.02,
               val_forces_mae=0.3, val_stress_mae=0.4, lr=1e-3, time=1.5)
    line = epoch_line(SimpleNamespace(optimiser=SimpleNamespace(epochs=5)), types, row)
    assert "val E MAE 0.1 (0.02/atom)  val F MAE 0.3  val S MAE 0.4  lr" in line
    empty = {**row, **{key: float("nan") for key in row if key.startswith("val_")}}
    line = epoch_line(SimpleNamespace(optimiser=SimpleNamespace(epochs=5)), types, empty, validated=False)
    assert "no validation set (best.pt: lowest training loss)  lr" in line and "nan" not in line
