"""Data-parallel training: 2 CPU processes (torchrun, gloo) give the 1-process result."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("ase")
yaml = pytest.importorskip("yaml")
dist = pytest.importorskip("torch.distributed")
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from ecse.atomistic.config import config_from_dict  # noqa: E402
from ecse.atomistic.training import build_model, train  # noqa: E402
from .test_training import DATA, TINY_MODEL, sections  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.isfile(DATA), reason="methane data set not available")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def options(output_dir, **overrides) -> dict:
    # 8 training structures in global batches of 3: steps of 3, 3, 2 structures, so the
    # ranks get uneven slices (1 + 2, 1 + 2, 1 + 1); rotations and inversions on
    return sections({"data": {"files": DATA, "index": ":12", "split_sizes": [8, 3, 1], "augment_inversion": True},
                     "model": TINY_MODEL, "optimiser": {"epochs": 2, "batch_size": 3, "lr": 3e-3},
                     "run": {"dtype": "float64", "output_dir": str(output_dir), "progress": False}}, **overrides)


def torchrun(config_path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "ecse", "train", str(config_path), *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as err:  # show what the workers printed before the hang
        out = [o.decode(errors="replace") if isinstance(o, bytes) else (o or "") for o in (err.stdout, err.stderr)]
        raise AssertionError(f"torchrun did not finish in 240 s; its output:\n{out[0][-3000:]}{out[1][-3000:]}") from err
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def params(state: dict, names) -> torch.Tensor:
    return torch.cat([state[name].reshape(-1) for name in names])


@pytest.mark.parametrize("micro_batch_atoms", [None, 5])
def test_two_processes_match_one(tmp_path, micro_batch_atoms):
    """Also with one methane per forward pass (``micro_batch_atoms: 5``): the ranks then
    run one or two groups per step, and only their last one synchronises the gradients."""
    single = train(options(tmp_path / "one"), log=None)
    # checkpoints do not depend on the number of processes: one process stops mid-epoch 2
    # (3 steps per epoch), two processes resume from its last.pt (one torchrun launch)
    train(options(tmp_path / "two", run={"max_steps": 4}), log=None)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(options(tmp_path / "two", optimiser={"micro_batch_atoms": micro_batch_atoms})))
    proc = torchrun(config, "--resume")
    assert proc.stdout.count("resuming from") == proc.stdout.count("epoch 2/2") == 1  # rank 0 alone logs

    ckpt = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert ckpt["progress"]["global_step"] == single["global_step"] == 6
    names = [name for name, _ in single["model"].named_parameters()]
    one, two = params(single["model"].state_dict(), names), params(ckpt["model"], names)
    torch.manual_seed(0)
    start = params(build_model(config_from_dict(options(tmp_path)), single["baseline"]).state_dict(), names)
    assert (one - start).abs().max() > 1e-2  # training moved the parameters well beyond the tolerance
    assert (one - two).abs().max() < 1e-6  # measured: 2e-14
    assert torch.equal(ckpt["model"]["composition_offsets"], single["model"].composition_offsets)
    for a, b in zip(single["history"], ckpt["progress"]["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-9)
