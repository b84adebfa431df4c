"""A symmetric polarizability trained in its l=0 and l=2 parts (type ``1x0e+1x2e``) from
Cartesian data: conversion, baseline, per-part loss scales, training and evaluation."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from torch_geometric.data import Batch, Data  # noqa: E402

from ecse.atomistic._objective import component_weights, fit_baseline, fit_scales, squared_errors  # noqa: E402
from ecse.atomistic.targets import prepare_targets  # noqa: E402

from .test_training import TENSOR_FILE, flat_params, water  # noqa: E402

PARTS = "1x0e+1x2e"


def _alpha(seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(3, 3))
    return a + a.T + 6 * np.eye(3)


def test_cartesian_alpha_is_read_as_l0_l2_parts():
    t = _alpha(0)
    data = [Data(z=torch.tensor([8, 1, 1]), alpha=torch.tensor(t.reshape(1, 9)))]
    (out,) = prepare_targets(data, {"alpha": PARTS})
    f = out.alpha.reshape(-1)
    assert f.shape == (6,)
    # independent checks: l=0 is tr/sqrt(3); the change of basis is orthonormal, so the
    # traceless part's norm is the l=2 part's norm
    assert float(f[0]) == pytest.approx(np.trace(t) / math.sqrt(3), rel=1e-12)
    traceless = t - np.trace(t) / 3 * np.eye(3)
    assert float(f[1:].norm()) == pytest.approx(np.linalg.norm(traceless), rel=1e-12)
    # and it rotates as l=2: the rotated tensor's parts are D(R) times these
    from ecse.covariant import OutputSpec
    from ecse.testing import random_rotation

    R = random_rotation(torch.Generator().manual_seed(1), torch.float64)
    rotated = [Data(z=torch.tensor([8]), alpha=(R @ torch.tensor(t) @ R.T).reshape(1, 9))]
    (rot,) = prepare_targets(rotated, {"alpha": PARTS})
    expected = OutputSpec(PARTS).act(f[None], R[None])
    assert torch.allclose(rot.alpha, expected, atol=1e-12)


def test_non_symmetric_or_wrong_size_alpha_is_rejected():
    bad = Data(z=torch.tensor([8]), alpha=torch.tensor([[1.0, 2, 0, 0, 1, 0, 0, 0, 1]], dtype=torch.float64))
    with pytest.raises(ValueError, match="not symmetric"):
        prepare_targets([bad], {"alpha": PARTS})
    short = Data(z=torch.tensor([8]), alpha=torch.zeros(1, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"'alpha' \(1x0e\+1x2e\) has 5 numbers"):
        prepare_targets([short], {"alpha": PARTS})


def test_baseline_and_per_part_scales():
    rng = np.random.default_rng(3)
    data = []
    for k in range(12):
        n_h = 1 + k % 3
        t = _alpha(k) * (1 + n_h) + 0.1 * rng.normal()
        data.append(Data(z=torch.tensor([8] + [1] * n_h), alpha=torch.tensor((t + t.T).reshape(1, 9) / 2)))
    data = prepare_targets(data, {"alpha": PARTS})
    types = {"alpha": PARTS}
    baseline = fit_baseline(data, types)
    assert set(baseline) == {1, 8}
    # independent least squares on the l=0 part (tr / sqrt 3) against the composition
    counts = np.array([[1.0, float((d.z == 1).sum())] for d in data])
    l0 = np.array([float(d.alpha[0, 0]) for d in data])
    coef = np.linalg.lstsq(counts, l0, rcond=None)[0]
    assert [baseline[8], baseline[1]] == pytest.approx(coef.tolist(), rel=1e-8)
    scales = fit_scales(data, types, baseline)
    residual = l0 - counts @ coef
    l2 = np.concatenate([d.alpha[0, 1:].numpy() for d in data])
    assert scales["alpha[1x0e]"] == pytest.approx(residual.std(), rel=1e-8)
    assert scales["alpha[1x2e]"] == pytest.approx(l2.std(), rel=1e-8)
    assert scales["alpha"] == pytest.approx(np.concatenate([residual, l2]).std(), rel=1e-8)
    # the loss divides each part's squared errors by its own variance
    pred = {"alpha": torch.zeros(2, 6, dtype=torch.float64)}
    batch = Batch.from_data_list(data[:2])
    sse = squared_errors(pred, batch, types, scales)["alpha"] / scales["alpha"] ** 2
    err = batch.alpha.reshape(2, 6)
    expected = float(err[:, :1].pow(2).sum()) / scales["alpha[1x0e]"] ** 2 + \
        float(err[:, 1:].pow(2).sum()) / scales["alpha[1x2e]"] ** 2
    assert float(sse) == pytest.approx(expected, rel=1e-12)
    assert component_weights("mu", "vector", scales) is None


def test_training_in_parts_from_the_cli_config_and_evaluation(shared_data, tmp_path):
    if not (shared_data / TENSOR_FILE).is_file():
        pytest.skip("water tensor data not available")
    from ecse.atomistic.evaluation import evaluate_checkpoint
    from ecse.atomistic.training import load_model, train

    result = train(water(shared_data, tmp_path / "run", {"alpha": PARTS}, epochs=5), log=None)
    losses = [row["train_loss"] for row in result["history"]]
    assert min(losses[1:]) < 0.8 * losses[0]
    model = result["model"]
    assert model.spec.name == PARTS and float(model.composition_offsets[8]) != 0.0
    assert {"alpha[1x0e]", "alpha[1x2e]"} <= set(result["scales"])
    reloaded = load_model(tmp_path / "run" / "last.pt")
    assert torch.equal(flat_params(reloaded), flat_params(model))
    report = evaluate_checkpoint(tmp_path / "run" / "last.pt", shared_data / TENSOR_FILE, index="20:26",
                                 output_dir=tmp_path / "eval", rotations=2)
    metrics = report["models"]["wrapped"]["metrics"]["alpha"]
    assert set(metrics["parts"]) == {"0e", "2e"}
    assert set(metrics["cartesian"]["parts"]) == {"l=0", "l=2"}
    # l=0 part of the (l=0, l=2) form is tr/sqrt(3); the Cartesian l=0 part is tr/3
    assert metrics["cartesian"]["parts"]["l=0"]["rmse"] == pytest.approx(
        metrics["parts"]["0e"]["rmse"] / math.sqrt(3), rel=1e-6)
