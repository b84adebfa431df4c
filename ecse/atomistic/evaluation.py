"""Evaluate a trained model, bare and ECSE-wrapped: errors, rotational symmetry, frames.

:func:`evaluate_checkpoint` (``ecse eval CHECKPOINT DATA``) rebuilds the bare backbone and
``ECSE(backbone)`` from a training checkpoint (:func:`~ecse.atomistic.training.load_model`),
reads the targets named in the checkpoint's configuration from any ASE-readable file and
reports, per model (:func:`evaluate_models`):

* errors (:mod:`ecse.atomistic._metrics`): energy MAE/RMSE per structure and per atom,
  force and stress MAE/RMSE; for tensor targets MAE/RMSE per Cartesian component and per
  irreducible part, also in % of the target's std;
* ``rotational_std``: std of the predictions over ``rotations`` random rotations of every
  structure, after rotating them back (energy ``E(Rx)``, forces ``F(Rx) R``, tensors with
  ``R^T``), averaged over structures and components: zero for an exactly equivariant model;
* ``equivariance_error``: largest relative error ``||g^-1 y(gx) - y(x)|| / ||y(x)||`` per
  structure over the same rotations (and the largest absolute one);
* for ECSE: mean retained frames per structure (``ECSE.last_stats``).

It writes ``report.json`` and ``parity.png`` and prints a compact table
(:func:`format_report`).

Example
-------
>>> from ase.build import molecule
>>> from ecse.backbones import PET
>>> from ecse import ECSE
>>> from ecse.atomistic import atoms_to_data
>>> atoms = molecule("CH4")
>>> atoms.info["energy"] = -1.0
>>> pet = PET(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2,
...           dim_feedforward=8, head_hidden=8).double()
>>> import torch
>>> data = [atoms_to_data(atoms, targets={"energy": "graph"}, dtype=torch.float64)]
>>> rep = evaluate_models(pet, ECSE(pet, cutoff=5.0).double(), data, {"energy": "energy"}, rotations=2)
>>> rep["models"]["wrapped"]["equivariance_error"]["energy"]["max_relative"] < 1e-12
True
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from ._eval_io import checkpoint_targets, load_structures, read_checkpoint
from ._metrics import energy_metrics, tensor_metrics
from ._report import format_report
from .targets import check_targets, predict, target_level, target_type

__all__ = ["evaluate_checkpoint", "evaluate_models", "predict_targets", "format_report", "load_structures"]

Log = Optional[Callable[[str], None]]


def predict_targets(model: nn.Module, batch: Batch, targets: Mapping[str, str]) -> dict[str, Tensor]:
    """Detached predictions ``{key: tensor}`` of ``model`` on ``batch``
    (:func:`ecse.atomistic.targets.predict`: energy ``[B]``, forces ``[N, 3]`` and stress
    ``[B, 3, 3]`` by autograd, or the one tensor target ``[B, ...]``)."""
    if any(target_type(kind).derivative for kind in targets.values()):
        out = predict(model, batch, targets)
    else:
        with torch.no_grad():
            out = predict(model, batch, targets)
    return {key: value.detach() for key, value in out.items()}


def _rotate_batch(batch: Batch, R: Tensor) -> Batch:
    out = batch.clone()
    out.pos = batch.pos @ R.T
    if getattr(batch, "cell", None) is not None:
        out.cell = batch.cell @ R.T
    return out


def _rotate_back(y: Tensor, R: Tensor, kind: str) -> Tensor:
    """Undo ``R`` on an output of type ``kind`` (apply ``R^T`` to every row of ``y``)."""
    return target_type(kind).spec.act(y, R.T.expand(y.shape[0], 3, 3))


def _per_structure_norm2(y: Tensor, index: Tensor, n: int) -> Tensor:
    """Squared norm of ``y`` per structure (``index`` maps rows to structures)."""
    sq = y.double().reshape(y.shape[0], -1).pow(2).sum(1)
    return sq.new_zeros(n).index_add(0, index, sq)


def _evaluate_one(model: nn.Module, data_list: Sequence[Data], targets: Mapping[str, str], level: dict,
                  rotations: int, batch_size: int, seed: int) -> tuple[dict, dict]:
    from ..rotations import random_rotation

    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    preds = {k: [] for k in targets}
    trues = {k: [] for k in targets}
    std_sum, std_count = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0)
    eq_rel, eq_abs = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0.0)
    frames = {"frames_per_structure": 0.0, "frames_per_structure_before_pruning": 0.0, "aux_weight_max": 0.0}
    is_ecse = hasattr(model, "last_stats")
    device = next(iter(model.parameters()), torch.empty(0)).device
    t_plain = t_rot = 0.0
    for start in range(0, len(data_list), batch_size):
        batch = Batch.from_data_list(list(data_list[start:start + batch_size])).to(device)
        nb = batch.num_graphs
        t0 = time.perf_counter()
        ref = predict_targets(model, batch, targets)
        t_plain += time.perf_counter() - t0
        if is_ecse:
            stats = model.last_stats
            frames["frames_per_structure"] += stats["frames_per_graph"] * nb
            frames["frames_per_structure_before_pruning"] += stats["frames_per_graph_before_pruning"] * nb
            frames["aux_weight_max"] = max(frames["aux_weight_max"], stats["aux_weight_max"])
        index = {k: batch.batch if level[k] == "node" else torch.arange(nb, device=device) for k in targets}
        for key, y in ref.items():
            true = batch[key]
            if true.numel() != y.numel():
                raise ValueError(f"target {key!r}: the model predicts {tuple(y.shape)} per batch but the data "
                                 f"holds {tuple(true.shape)}")
            preds[key].append(y.double().cpu().numpy())
            trues[key].append(true.reshape(y.shape).double().cpu().numpy())
        t0 = time.perf_counter()
        back = {k: [] for k in targets}
        for _ in range(rotations):
            R = random_rotation(gen, torch.float64).to(dtype=batch.pos.dtype, device=device)
            out = predict_targets(model, _rotate_batch(batch, R), targets)
            for key, y in out.items():
                y = _rotate_back(y, R, targets[key])
                back[key].append(y)
                diff = _per_structure_norm2(y - ref[key], index[key], nb).sqrt()
                norm = _per_structure_norm2(ref[key], index[key], nb).sqrt()
                eq_abs[key] = max(eq_abs[key], float(diff.max()))
                eq_rel[key] = max(eq_rel[key], float((diff / norm.clamp_min(1e-300)).max()))
        t_rot += time.perf_counter() - t0
        if rotations >= 2:
            for key, ys in back.items():
                std = torch.stack(ys).double().std(dim=0, unbiased=False)
                std_sum[key] += float(std.sum())
                std_count[key] += std.numel()
    n = len(data_list)
    result = {
        "name": f"ECSE({type(model.backbone).__name__})" if is_ecse else type(model).__name__,
        "time_s": t_plain, "rotations_time_s": t_rot,
        "rotational_std": {k: std_sum[k] / std_count[k] if std_count[k] else None for k in targets},
        "equivariance_error": {k: {"max_relative": eq_rel[k], "max_abs": eq_abs[k]} if rotations else None
                               for k in targets},
    }
    if is_ecse:
        result.update({k: (v / n if k.startswith("frames") else v) for k, v in frames.items()})
    arrays = {k: {"true": np.concatenate(trues[k]), "pred": np.concatenate(preds[k])} for k in targets}
    return result, arrays


def evaluate_models(bare: Optional[nn.Module], wrapped: Optional[nn.Module], data_list: Sequence[Data],
                    targets: Mapping[str, str], *, rotations: int = 8, batch_size: int = 16, seed: int = 0,
                    level: str = "graph", log: Log = None) -> dict:
    """Errors and symmetry measures of a bare model and its ECSE wrapper on ``data_list``.

    Parameters
    ----------
    bare, wrapped : nn.Module or None
        The models (either may be ``None``); put them in the data's dtype.
    data_list : sequence of Data
        Structures holding the targets (``atoms_to_data`` layout).
    targets : mapping
        ``{key: type}``, type one of ``energy``, ``forces``, ``stress``, ``vector``,
        ``rank2``, ``rank2-symmetric`` or an e3nn Irreps string.
    rotations : int
        Random rotations per structure for ``rotational_std`` (needs >= 2) and
        ``equivariance_error`` (needs >= 1); 0 skips both.
    batch_size, seed
        Structures per model call; seed of the rotations (the same for both models).
    level : str
        ``"graph"`` or ``"node"``: level of the tensor targets.

    Returns
    -------
    dict
        ``{"num_structures", "num_atoms", "targets", "rotations", "models": {name: {...}},
        "predictions": {name: {key: {"true", "pred"}}}}`` (numpy arrays in
        ``predictions``; the rest is JSON-ready).
    """
    if not data_list:
        raise ValueError("no structures to evaluate")
    if rotations < 0 or batch_size < 1:
        raise ValueError(f"need rotations >= 0 and batch_size >= 1, got {rotations}, {batch_size}")
    targets = check_targets(targets)
    levels = {k: target_level(kind, level) for k, kind in targets.items()}
    for key in targets:
        if key not in data_list[0]:
            raise KeyError(f"target {key!r} is not in the data (data keys: {sorted(data_list[0].keys())})")
    counts = [d.num_nodes for d in data_list]
    report: dict = {"num_structures": len(data_list), "num_atoms": int(sum(counts)), "targets": dict(targets),
                    "rotations": rotations, "seed": seed, "models": {}, "predictions": {}}
    for name, model in (("bare", bare), ("wrapped", wrapped)):
        if model is None:
            continue
        if log:
            log(f"evaluating the {name} model on {len(data_list)} structures ({rotations} rotations each)")
        result, arrays = _evaluate_one(model, data_list, targets, levels, rotations, batch_size, seed)
        result["metrics"] = {
            key: (energy_metrics(arrays[key]["pred"], arrays[key]["true"], kind, counts)
                  if target_type(kind).energy_like else tensor_metrics(arrays[key]["pred"], arrays[key]["true"], kind))
            for key, kind in targets.items()}
        report["models"][name] = result
        report["predictions"][name] = arrays
    return report


def _json_ready(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "predictions"}


def evaluate_checkpoint(checkpoint: Union[str, os.PathLike], data: Union[str, os.PathLike], *, index: str = ":",
                        output_dir: Union[str, os.PathLike, None] = None, rotations: int = 8, batch_size: int = 16,
                        wrapped: bool = True, dtype: Union[str, torch.dtype] = "float64", seed: int = 0,
                        plot: bool = True, log: Log = print) -> dict:
    """Evaluate a training checkpoint on an ASE-readable file (``ecse eval``).

    Writes ``report.json`` (and ``parity.png`` if ``plot``) to ``output_dir`` (default:
    the checkpoint's folder), logs the table of :func:`format_report` and returns the
    report of :func:`evaluate_models` with ``checkpoint``, ``data``, ``dtype`` and the
    output paths added. The target keys and types come from the checkpoint's config.

    Raises
    ------
    FileNotFoundError
        Missing checkpoint or data file.
    ValueError
        Not a training checkpoint, unreadable data, bad options.
    KeyError
        A target of the checkpoint's config is missing from the data (the message lists
        the keys that are there).
    """
    from .training import load_model

    t0 = time.perf_counter()
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if torch_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    ckpt_path = os.fspath(checkpoint)
    config = read_checkpoint(ckpt_path)
    targets = checkpoint_targets(config)
    level = "graph"  # tensor targets are per structure (training.build_model)
    structures, targets = load_structures(data, targets, index=index, dtype=torch_dtype, level=level)
    bare = load_model(ckpt_path, wrap=False).to(torch_dtype)
    model = load_model(ckpt_path, wrap=True).to(torch_dtype) if wrapped else None
    report = evaluate_models(bare, model, structures, targets, rotations=rotations, batch_size=batch_size,
                             seed=seed, level=level, log=log)
    out_dir = os.fspath(output_dir) if output_dir is not None else os.path.dirname(os.path.abspath(ckpt_path))
    os.makedirs(out_dir, exist_ok=True)
    report.update(checkpoint=os.path.abspath(ckpt_path), data=os.path.abspath(os.fspath(data)), index=index,
                  dtype=str(torch_dtype).replace("torch.", ""), report_path=os.path.join(out_dir, "report.json"))
    if plot:
        try:
            from ._parity import parity_plot

            names = {k: v["name"] for k, v in report["models"].items()}
            report["parity_path"] = parity_plot(report["predictions"], targets,
                                                os.path.join(out_dir, "parity.png"), names)
        except ImportError:
            if log:
                log("matplotlib is not installed (pip install ecse[demo]): no parity plot")
    report["total_time_s"] = time.perf_counter() - t0
    with open(report["report_path"], "w", encoding="utf-8") as handle:
        json.dump(_json_ready(report), handle, indent=2)
    if log:
        log(format_report(report))
    return report
