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
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .data import fit_composition_baseline
from .targets import energy_keys, predict, target_type, tensor_target

__all__ = ["fit_baseline", "fit_scales", "irreps_groups", "component_weights", "target_weights", "squared_errors",
           "global_counts", "combine",
           "evaluate", "metric_names"]


def fit_baseline(train: Sequence[Data], types: Mapping[str, str]) -> dict[int, float]:
    """Composition offsets: per-element energies, per-element isotropic parts
    ``trace / 3`` of a rank-2 target (PET adds them as ``b_z I``), else none."""
    tensor = tensor_target(types)
    if tensor is None:
        return fit_composition_baseline(train, key=energy_keys(types)["energy"])
    key, kind = tensor
    spec = target_type(kind).spec
    if not spec.has_isotropic:
        return {}
    iso = [Data(z=d.z, iso=spec.invariant(d[key].reshape(spec.component_shape)).reshape(1)) for d in train]
    return fit_composition_baseline(iso, key="iso")


def irreps_groups(key: str, kind: str) -> list[tuple[str, slice]]:
    """``(scale name, slice)`` of every ``mul x irrep`` group of an Irreps target: the
    loss divides each group's errors by its own training-set std, stored in the scales
    as ``"{key}[{mul}x{irrep}]"`` (``#k`` appended when a group repeats).

    >>> irreps_groups("alpha", "1x0e+1x2e")
    [('alpha[1x0e]', slice(0, 1, None)), ('alpha[1x2e]', slice(1, 6, None))]
    """
    out, seen = [], {}
    irreps = target_type(kind).spec.irreps
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        name = f"{key}[{mul}x{ir}]"
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append((name + (f"#{count}" if count else ""), sl))
    return out


def _baseline_sums(train: Sequence[Data], baseline: Mapping[int, float]) -> np.ndarray:
    table = np.zeros(119)
    table[list(baseline)] = list(baseline.values())
    return np.array([table[d.z.numpy()].sum() for d in train])


def fit_scales(train: Sequence[Data], types: Mapping[str, str], baseline: Mapping[int, float]) -> dict[str, float]:
    """Training-set std of every target (1.0 where it vanishes): per-atom energy after
    the baseline, force / stress components, tensor components after the baseline; for
    an Irreps target also the std of every group (:func:`irreps_groups`)."""
    base = _baseline_sums(train, baseline) if baseline else np.zeros(len(train))
    scales = {}
    for key, kind in types.items():
        target = target_type(kind)
        if target.errors_per_atom:  # energy
            values = np.array([(float(d[key].reshape(-1)[0]) - b) / d.num_nodes for d, b in zip(train, base)])
        else:
            stacked = torch.cat([d[key].double() for d in train]) if target.per_atom else \
                torch.stack([d[key].reshape(-1, *target.shape).double() for d in train])
            if not target.energy_like and target.spec.has_isotropic:  # tensors: after the baseline
                stacked = stacked - target.spec.isotropic(torch.as_tensor(base))[:, None]
            values = stacked.reshape(-1).numpy()
            if target.spec.is_irreps:
                for name, sl in irreps_groups(key, kind):
                    block = stacked[..., sl].reshape(-1).numpy()
                    spread = float(np.std(block)) if block.size else 0.0
                    scales[name] = spread if spread > 1e-12 else None
        s = float(np.std(values)) if values.size else 0.0
        scales[key] = s if s > 1e-12 else 1.0
        for name in [k for k, v in scales.items() if v is None]:  # a constant group: the overall std
            scales[name] = scales[key]
    return scales


def component_weights(key: str, kind: str, scales: Mapping[str, float]):
    """Per-component loss weights ``(s / s_group)**2`` ``[dim]`` of an Irreps target (so
    that ``combine``'s division by ``s**2`` leaves each group divided by its own
    ``s_group**2``), or ``None`` for other types or scales without groups."""
    if not target_type(kind).spec.is_irreps:
        return None
    groups = irreps_groups(key, kind)
    if not all(name in scales for name, _ in groups):
        return None
    weights = torch.ones(groups[-1][1].stop, dtype=torch.float64)
    for name, sl in groups:
        weights[sl] = (scales[key] / scales[name]) ** 2
    return weights


def target_weights(config, types: Mapping[str, str]) -> dict[str, float]:
    """Loss weight of every target (``energy_weight``, ...; 1 for a tensor target)."""
    named = {"energy": config.energy_weight, "forces": config.forces_weight, "stress": config.stress_weight}
    return {key: named.get(kind, 1.0) for key, kind in types.items()}


def squared_errors(pred: Mapping[str, Tensor], batch: Batch, types: Mapping[str, str],
                   scales: Optional[Mapping[str, float]] = None) -> dict[str, Tensor]:
    """Sums of squared errors per target (energy: per atom), differentiable; with
    ``scales``, an Irreps target's components are weighted by :func:`component_weights`."""
    out = {}
    for key, kind in types.items():
        ref = batch[key]
        if target_type(kind).errors_per_atom:
            n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred[key].dtype)
            out[key] = ((pred[key] - ref.reshape(-1)) / n_atoms).pow(2).sum()
        else:
            err2 = (pred[key] - ref.reshape(pred[key].shape)).pow(2)
            weights = component_weights(key, kind, scales) if scales is not None else None
            out[key] = (err2 * weights.to(err2)).sum() if weights is not None else err2.sum()
    return out


def global_counts(types: Mapping[str, str], num_structures: int, num_atoms: int) -> dict[str, int]:
    """Number of error terms per target in a set of structures."""
    counts = {}
    for key, kind in types.items():
        target = target_type(kind)
        counts[key] = (num_atoms if target.per_atom else num_structures) * math.prod(target.shape)
    return counts


def combine(sse: Mapping[str, Tensor], counts: Mapping[str, int], weights: Mapping[str, float],
            scales: Mapping[str, float]):
    """``sum_k weight_k * sse_k / count_k / scale_k**2``."""
    return sum(weights[k] * sse[k] / max(counts[k], 1) / scales[k] ** 2 for k in sse)


def metric_names(types: Mapping[str, str]) -> list[str]:
    """Names of the metrics :func:`evaluate` returns."""
    names = ["loss"]
    for key, kind in types.items():
        target, name = target_type(kind), target_type(kind).metric_name(key)
        names += [f"{name}_mae", f"{name}_rmse"]
        if target.errors_per_atom:
            names += [f"{name}_mae_per_atom", f"{name}_rmse_per_atom"]
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
    # per key: sse, sae, sse/atom, sae/atom; then the loss's (weighted) sse per key; then structures, atoms
    sums = np.zeros(5 * len(keys) + 2)
    loss_at = 4 * len(keys)
    part = ctx.shard(data)
    for start in range(0, len(part), batch_size):
        batch = Batch.from_data_list(part[start:start + batch_size]).to(device)
        pred = {k: v.detach() for k, v in predict(model, batch, types).items()}
        n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(batch.pos.dtype)
        for i, (key, kind) in enumerate(types.items()):
            err = pred[key] - batch[key].reshape(pred[key].shape)
            per_atom = err / n_atoms if target_type(kind).errors_per_atom else err
            sums[4 * i:4 * i + 4] += [float(err.pow(2).sum()), float(err.abs().sum()),
                                      float(per_atom.pow(2).sum()), float(per_atom.abs().sum())]
        weighted = squared_errors(pred, batch, types, scales)
        sums[loss_at:loss_at + len(keys)] += [float(weighted[k]) for k in keys]
        sums[-2:] += [batch.num_graphs, batch.num_nodes]
    model.train(was_training)
    sums = np.asarray(ctx.all_reduce(sums.tolist()))
    counts = global_counts(types, int(sums[-2]), int(sums[-1]))
    sse = {k: sums[loss_at + i] for i, k in enumerate(keys)}
    out = {"loss": float(combine(sse, counts, weights, scales))}
    for i, (key, kind) in enumerate(types.items()):
        sq, ab, sq_atom, ab_atom = sums[4 * i:4 * i + 4]
        target, n = target_type(kind), max(counts[key], 1)
        name = target.metric_name(key)
        out[f"{name}_mae"], out[f"{name}_rmse"] = float(ab / n), float(math.sqrt(sq / n))
        if target.errors_per_atom:
            out[f"{name}_mae_per_atom"], out[f"{name}_rmse_per_atom"] = float(ab_atom / n), float(math.sqrt(sq_atom / n))
    return {name: out[name] for name in metric_names(types)}
