"""Tests for the shape demo (:mod:`ecse.demos.shape_demo`), the CLI (``ecse demo``/``shapes``/``eval``) and the
tutorial notebook."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from ecse import FrameViewSampler
from ecse.demos import shape_demo as demo
from ecse.cli import build_parser, main
from ecse.demos.shapes import SHAPE_CLASSES, make_shapes

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_wrap_any_pyg_model.ipynb"


@pytest.fixture(scope="module")
def fast_results():
    lines = []
    res = demo.run_shape_demo(fast=True, log=lines.append)
    return res, lines


def test_run_shape_demo_fast(fast_results):
    res, lines = fast_results
    for key in ("bare", "ecse", "ecse_trained"):
        for which in ("unrotated", "rotated"):
            acc = res[f"acc_{key}_{which}"]
            assert 0.0 <= acc <= 1.0
    assert res["num_classes"] == len(SHAPE_CLASSES)
    assert res["cutoff"] > 0 and res["frames_per_shape"] >= 1
    assert res["aux_weight_max"] == pytest.approx(0.0, abs=1e-6)
    n_test = res["config"]["n_test_per_class"] * len(SHAPE_CLASSES)
    # the wrapped classifier gives the same predictions on rotated shapes (float32 ties aside)
    assert res["changed_predictions_ecse"] <= 1
    assert abs(res["acc_ecse_rotated"] - res["acc_ecse_unrotated"]) <= 1 / n_test + 1e-12
    assert len(res["history"]) == res["config"]["epochs"]
    assert len(res["history_frames"]) == res["config"]["frame_epochs"]
    assert all(math.isfinite(h["loss"]) for h in res["history"] + res["history_frames"])
    # measured in float64: exact for the wrapped model, far off for the bare one
    assert set(res["equivariance_ecse"]) >= {"rotation", "translation", "permutation"}
    assert max(res["equivariance_ecse"].values()) < 1e-6
    assert res["equivariance_bare"]["rotation"] > 1e-3
    assert res["total_time_s"] >= res["train_time_s"] > 0
    text = "\n".join(lines)
    assert "test accuracy" in text and "ECSE(DGCNN)" in text and "max relative error" in text
    assert text.count("epoch") >= res["config"]["epochs"]


def test_format_results_matches_numbers(fast_results):
    res, _ = fast_results
    table = demo.format_results(res)
    assert f"{res['acc_bare_unrotated']:.3f}" in table
    assert f"{res['cutoff']:.3f}" in table


def test_demo_config_overrides_and_fast_is_smaller():
    fast, full = demo.demo_config(True), demo.demo_config(False)
    assert set(fast) == set(full)
    for key in ("epochs", "n_train_per_class", "n_test_per_class", "n_points"):
        assert fast[key] <= full[key]


def _dist(pos):
    return torch.cdist(pos.double(), pos.double(), compute_mode="donot_use_mm_for_euclid_dist")


def test_choose_cutoff_from_spacing():
    pos = torch.zeros(101, 3, dtype=torch.float64)
    pos[:, 0] = torch.arange(101) * 0.5  # points on a line, spacing 0.5
    # all but the two end points have 2 neighbours at 0.5 and 4 within 1.0
    assert demo.choose_cutoff([Data(pos=pos)], n_neighbors=2) == pytest.approx(0.5)
    assert demo.choose_cutoff([Data(pos=pos)], n_neighbors=4) == pytest.approx(1.0)
    assert demo.choose_cutoff([Data(pos=pos)] * 3, n_neighbors=4) == pytest.approx(1.0)


def test_rotate_shapes_is_an_isometry_and_keeps_labels():
    data = make_shapes(1, n_points=40, seed=1)
    rot = demo.rotate_shapes(data, seed=3)
    assert len(rot) == len(data)
    for a, b in zip(data, rot):
        assert torch.equal(a.y, b.y)
        assert not torch.allclose(a.pos, b.pos)
        assert torch.allclose(_dist(a.pos), _dist(b.pos), atol=1e-5)
    again = demo.rotate_shapes(data, seed=3)
    assert all(torch.equal(a.pos, b.pos) for a, b in zip(rot, again))


def test_frame_view_sampler():
    data = make_shapes(1, n_points=48, seed=2)
    cutoff = demo.choose_cutoff(data, 12)
    sampler = FrameViewSampler(data, cutoff, seed=0, views_per_shape=2, length_scale=cutoff / 5)
    assert sampler.frames_per_shape >= 1
    views = sampler(1)
    assert len(views) == 2 * len(data)
    for i, v in enumerate(views):
        src = data[i // 2]
        assert torch.equal(v.y, src.y)
        assert v.pos.norm(dim=1).min() < 1e-6  # the frame's origin is a point of the cloud
        assert torch.allclose(_dist(v.pos), _dist(src.pos), atol=1e-5)
    # frame views do not depend on the orientation of the input
    data64 = make_shapes(1, n_points=48, seed=2, dtype=torch.float64)
    rot = demo.rotate_shapes(data64, seed=5)
    frames, frames_rot = (FrameViewSampler(d, cutoff, length_scale=cutoff / 5).frames for d in (data64, rot))
    for (_, _, w), (_, _, w_rot) in zip(frames, frames_rot):
        assert torch.allclose(w.sort().values, w_rot.sort().values, atol=1e-10)


def test_evaluate_bare_model_has_no_frames():
    data = make_shapes(1, n_points=32, seed=0)
    model = demo.build_classifier(len(SHAPE_CLASSES), k=6, hidden=8, seed=0)
    out = demo.evaluate(model, data, batch_size=3)
    assert out["frames_per_shape"] is None
    assert out["pred"].shape == (len(data),)
    assert out["accuracy"] == demo.accuracy(model, data)


def test_cli_requires_a_command():
    with pytest.raises(SystemExit) as err:
        main([])
    assert err.value.code == 2
    args = build_parser().parse_args(["shapes", "--fast", "--epochs", "2", "--seed", "3"])
    assert args.fast and args.epochs == 2 and args.seed == 3 and args.command == "shapes"
    args = build_parser().parse_args(["demo", "--fast", "--epochs", "2", "--output", "out", "--threads", "1"])
    assert (args.command, args.fast, args.epochs, args.output, args.threads) == ("demo", True, 2, "out", 1)
    args = build_parser().parse_args(["demo", "--max-time", "0"])
    assert args.output == "runs/demo" and args.max_time == 0 and args.threads is None
    args = build_parser().parse_args(["eval", "a.pt", "b.xyz", "--rotations", "3", "--no-wrapped"])
    assert (args.checkpoint, args.data, args.rotations, args.no_wrapped, args.dtype) == ("a.pt", "b.xyz", 3, True,
                                                                                        "float64")
    with pytest.raises(SystemExit):  # the shape demo's options moved to `ecse shapes`
        build_parser().parse_args(["demo", "--n-train", "3"])


def _run_cli(*argv, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "ecse", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_python_m_ecse_shapes_fast():
    out = _run_cli("shapes", "--fast", "--threads", "1")
    assert "test accuracy" in out and "unrotated" in out and "rotated" in out
    assert "bare DGCNN" in out and "ECSE(DGCNN)" in out and "max relative error" in out


@pytest.mark.slow
def test_python_m_ecse_demo_fast(tmp_path):
    import json

    out_dir = tmp_path / "demo"
    out = _run_cli("demo", "--fast", "--output", str(out_dir), cwd=tmp_path)
    for name in ("best.pt", "last.pt", "log.csv", "report.json", "parity.png"):
        assert (out_dir / name).is_file(), name
    report = json.loads((out_dir / "report.json").read_text())
    assert report["models"]["bare"]["name"] == "PET" and report["models"]["wrapped"]["name"] == "ECSE(PET)"
    assert report["models"]["wrapped"]["equivariance_error"]["forces"]["max_relative"] < 1e-10
    assert report["models"]["bare"]["rotational_std"]["energy"] > 1e-6
    assert "epoch 1/" in out and "energy MAE [meV]" in out and "ECSE frames per structure" in out
    from ecse.atomistic.training import load_model

    assert type(load_model(out_dir / "best.pt", wrap=True)).__name__ == "ECSE"


@pytest.mark.slow
def test_notebook_runs(monkeypatch):
    from .notebooks import run_notebook, stream_text

    text = stream_text(run_notebook(NOTEBOOK, monkeypatch))
    assert "ECSE(DGCNN)" in text and "rotation" in text
