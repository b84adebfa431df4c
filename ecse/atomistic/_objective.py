"""Loss, scales, baselines and metrics of :mod:`ecse.atomistic.training`.

The loss of a set of structures is a weighted sum over targets of
``sum of squared errors / count / scale**2``: energy errors per atom over the number
of structures, forces over ``3 x atoms``, stress over ``9 x structures``, a tensor over
its components. The sums are additive over structures, so a data-parallel step takes
each rank's sums over the *global* counts, and the ranks' losses add up to the loss
of the whole batch (independent of how it was split).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .data import fit_composition_baseline
from .targets import energy_keys, predict, target_shape, tensor_target

__all__ = ["fit_baseline", "fit_scales", "target_weights", "squared_errors", "global_counts", "combine",
           "evaluate", "metric_names"]


def fit_baseline(train: Sequence[Data], types: Mapping[str, str]) -> dict[int, float]:
    """Composition offsets: per-element energies, per-element isotropic parts
    ``trace / 3`` of a rank-2 target (PET adds them as ``b_z I``), else none."""
    tensor = tensor_target(types)
    if tensor is None:
        return fit_composition_baseline(train, key=energy_keys(types)["energy"])
    key, kind = tensor
    if kind not in ("rank2", "rank2-symmetric"):
        return {}
    iso = [Data(z=d.z, iso=torch.diagonal(d[key].reshape(3, 3)).mean().reshape(1)) for d in train]
    return fit_composition_baseline(iso, key="iso")


def _baseline_sums(train: Sequence[Data], baseline: Mapping[int, float]) -> np.ndarray:
    table = np.zeros(119)
    table[list(baseline)] = list(baseline.values())
    return np.array([table[d.z.numpy()].sum() for d in train])


def fit_scales(train: Sequence[Data], types: Mapping[str, str], baseline: Mapping[int, float]) -> dict[str, float]:
    """Training-set std of every target (1.0 where it vanishes): per-atom energy after
    the baseline, force / stress components, tensor components after the baseline."""
    base = _baseline_sums(train, baseline) if baseline else np.zeros(len(train))
    scales = {}
    for key, kind in types.items():
        if kind == "energy":
            values = np.array([(float(d[key].reshape(-1)[0]) - b) / d.num_nodes for d, b in zip(train, base)])
        else:
            stacked = torch.stack([d[key].reshape(-1, *target_shape(kind)).double() for d in train]) \
                if kind != "forces" else torch.cat([d[key].double() for d in train])
            if kind in ("rank2", "rank2-symmetric"):
                stacked = stacked - torch.as_tensor(base)[:, None, None, None] * torch.eye(3, dtype=torch.float64)
            values = stacked.reshape(-1).numpy()
        s = float(np.std(values)) if values.size else 0.0
        scales[key] = s if s > 1e-12 else 1.0
    return scales


def target_weights(config, types: Mapping[str, str]) -> dict[str, float]:
    """Loss weight of every target (``energy_weight``, ...; 1 for a tensor target)."""
    named = {"energy": config.energy_weight, "forces": config.forces_weight, "stress": config.stress_weight}
    return {key: named.get(kind, 1.0) for key, kind in types.items()}


def squared_errors(pred: Mapping[str, Tensor], batch: Batch, types: Mapping[str, str]) -> dict[str, Tensor]:
    """Sums of squared errors per target (energy: per atom), differentiable."""
    out = {}
    for key, kind in types.items():
        ref = batch[key]
        if kind == "energy":
            n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred[key].dtype)
            out[key] = ((pred[key] - ref.reshape(-1)) / n_atoms).pow(2).sum()
        else:
            out[key] = (pred[key] - ref.reshape(pred[key].shape)).pow(2).sum()
    return out


def global_counts(types: Mapping[str, str], num_structures: int, num_atoms: int) -> dict[str, int]:
    """Number of error terms per target in a set of structures."""
    counts = {}
    for key, kind in types.items():
        if kind == "forces":
            counts[key] = 3 * num_atoms
        else:
            counts[key] = num_structures * math.prod(target_shape(kind))
    return counts


def combine(sse: Mapping[str, Tensor], counts: Mapping[str, int], weights: Mapping[str, float],
            scales: Mapping[str, float]):
    """``sum_k weight_k * sse_k / count_k / scale_k**2``."""
    return sum(weights[k] * sse[k] / max(counts[k], 1) / scales[k] ** 2 for k in sse)


def metric_names(types: Mapping[str, str]) -> list[str]:
    """Names of the metrics :func:`evaluate` returns."""
    names = ["loss"]
    for key, kind in types.items():
        if kind == "energy":
            names += ["energy_mae", "energy_rmse", "energy_mae_per_atom", "energy_rmse_per_atom"]
        elif kind in ("forces", "stress"):
            names += [f"{kind}_mae", f"{kind}_rmse"]
        else:
            names += [f"{key}_mae", f"{key}_rmse"]
    return names


def evaluate(model: nn.Module, data: Sequence[Data], types: Mapping[str, str], weights: Mapping[str, float],
             scales: Mapping[str, float], batch_size: int, ctx, device: str) -> dict[str, float]:
    """Loss and MAE/RMSE of every target over ``data`` (this rank's share; summed over
    the ranks). Energy errors per structure and per atom; components otherwise."""
    if not data:
        return {name: float("nan") for name in metric_names(types)}
    was_training = model.training
    model.eval()
    keys = list(types)
    sums = np.zeros(4 * len(keys) + 2)  # per key: sse, sae, sse/atom, sae/atom; then structures, atoms
    part = ctx.shard(data)
    for start in range(0, len(part), batch_size):
        batch = Batch.from_data_list(part[start:start + batch_size]).to(device)
        pred = {k: v.detach() for k, v in predict(model, batch, types).items()}
        n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(batch.pos.dtype)
        for i, (key, kind) in enumerate(types.items()):
            err = pred[key] - batch[key].reshape(pred[key].shape)
            per_atom = err / n_atoms if kind == "energy" else err
            sums[4 * i:4 * i + 4] += [float(err.pow(2).sum()), float(err.abs().sum()),
                                      float(per_atom.pow(2).sum()), float(per_atom.abs().sum())]
        sums[-2:] += [batch.num_graphs, batch.num_nodes]
    model.train(was_training)
    sums = np.asarray(ctx.all_reduce(sums.tolist()))
    counts = global_counts(types, int(sums[-2]), int(sums[-1]))
    sse = {k: sums[4 * i + (2 if types[k] == "energy" else 0)] for i, k in enumerate(keys)}
    out = {"loss": float(combine(sse, counts, weights, scales))}
    for i, (key, kind) in enumerate(types.items()):
        sq, ab, sq_atom, ab_atom = sums[4 * i:4 * i + 4]
        name, n = (kind if kind in ("energy", "forces", "stress") else key), max(counts[key], 1)
        out[f"{name}_mae"], out[f"{name}_rmse"] = float(ab / n), float(math.sqrt(sq / n))
        if kind == "energy":
            out["energy_mae_per_atom"], out["energy_rmse_per_atom"] = float(ab_atom / n), float(math.sqrt(sq_atom / n))
    return {name: out[name] for name in metric_names(types)}
