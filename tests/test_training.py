"""Training loop of ``ecse.atomistic.training`` on a tiny PET and 40 methane structures."""
from __future__ import annotations

import csv
import os

import pytest
import torch

pytest.importorskip("ase")
pytest.importorskip("yaml")

from torch_geometric.data import Batch  # noqa: E402

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


def tiny(output_dir, **overrides) -> dict:
    options = {"data": DATA, "data_index": ":40", "split_sizes": [24, 8, 8], "model": TINY_MODEL,
               "epochs": 2, "batch_size": 8, "lr": 3e-3, "dtype": "float64", "warmup_epochs": 0.5,
               "output_dir": str(output_dir)}
    options.update(overrides)
    return options


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return train(tiny(out, checkpoint_every=2), log=None), out


def test_training_reduces_loss_and_writes_outputs(tmp_path):
    result = train(tiny(tmp_path, epochs=4, augment_rotations=False), log=None)
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

    batch = Batch.from_data_list(load_dataset(DATA, index=":5"))
    assert torch.equal(model(batch).detach(), loaded(batch).detach())
    assert not torch.equal(loaded.composition_offsets, torch.zeros_like(loaded.composition_offsets))


def test_exact_resume_after_kill_mid_epoch(straight_run, tmp_path):
    result_a, _ = straight_run

    class Killed(Exception):
        pass

    def kill(epoch, step):  # second epoch, after step 1 (last checkpoint: global step 4)
        if epoch == 1 and step == 1:
            raise Killed

    with pytest.raises(Killed):
        train(tiny(tmp_path, checkpoint_every=2), log=None, step_hook=kill)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["global_step"] == 4
    result_b = train(tiny(tmp_path, checkpoint_every=2), resume=True, log=None)
    assert result_b["global_step"] == result_a["global_step"] == 6
    assert torch.equal(flat_params(result_a["model"]), flat_params(result_b["model"]))
    assert [r["train_loss"] for r in result_a["history"]] == [r["train_loss"] for r in result_b["history"]]


def test_max_steps_then_resume(straight_run, tmp_path):
    result_a, _ = straight_run
    partial = train(tiny(tmp_path, max_steps=2), log=None)
    assert not partial["finished"] and partial["global_step"] == 2
    result_b = train(tiny(tmp_path), resume=True, log=None)
    assert torch.equal(flat_params(result_a["model"]), flat_params(result_b["model"]))


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="'learning_rate'"):
        config_from_dict({"data": DATA, "learning_rate": 1e-3})
    with pytest.raises(TypeError, match="'epochs'"):
        TrainConfig(data=DATA, epochs="ten")
    with pytest.raises(TypeError, match="'optimizer'"):
        TrainConfig(data=DATA, optimizer="sgd")
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig()
    path = tmp_path / "cfg.yaml"
    path.write_text(f"data: {DATA}\nbatchsize: 4\n")
    with pytest.raises(ValueError, match="'batchsize'"):
        load_config(path)


def test_cli_train(tmp_path, capsys):
    import yaml

    from ecse.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path / "run", epochs=1)))
    assert main(["train", str(path)]) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.pt").is_file()
    assert main(["train", str(path), "--resume"]) == 0  # already finished: no further epochs


def test_ecse_in_loop_and_wrapping(tmp_path):
    result = train(tiny(tmp_path, epochs=1, split_sizes=[8, 4, 0], ecse_in_loop=True), log=None)
    assert type(result["model"]).__name__ == "ECSE" and result["finished"]
    assert type(load_model(tmp_path / "last.pt")).__name__ == "ECSE"
    assert type(load_model(tmp_path / "last.pt", wrap=False)).__name__ == "PET"
