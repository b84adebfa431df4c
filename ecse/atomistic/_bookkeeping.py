"""Bookkeeping of :mod:`ecse.atomistic.training`: RNG states, atomic checkpoint
writes, ``log.csv``, epoch log lines and the tqdm progress bar."""
from __future__ import annotations

import csv
import os
import random
import sys
from typing import Any

import numpy as np
import torch

from .targets import energy_keys, target_type, tensor_target

__all__ = ["rng_states", "set_rng_states", "save_atomic", "log_fields", "write_log", "progress_bar", "epoch_line"]


def rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


def save_atomic(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written checkpoint


def _derivatives(types: dict) -> list[str]:
    """The energy derivatives among the targets (``forces``, ``stress``), in that order."""
    return [kind for kind, key in energy_keys(types).items() if key is not None and target_type(kind).derivative]


def log_fields(types: dict) -> list[str]:
    tensor = tensor_target(types)
    if tensor is not None:
        middle = [f"val_{tensor[0]}_rmse", f"val_{tensor[0]}_mae"]
    else:
        middle = ["val_energy_mae", "val_energy_mae_per_atom"] + [
            f"val_{kind}_mae" for kind in _derivatives(types)]
    return ["epoch", "train_loss", "val_loss", *middle, "lr", "time"]


def write_log(path: str, history: list[dict], fields: list[str]) -> None:
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    os.replace(path + ".tmp", path)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def close(self) -> None: ...


def progress_bar(show: bool, total: int, initial: int, desc: str):
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def epoch_line(config, types: dict, row: dict, validated: bool = True) -> str:
    """One epoch's log line; ``validated=False`` (no validation set) names the training
    loss as what picks ``best.pt`` instead of printing empty (NaN) validation errors."""
    tensor = tensor_target(types)
    if not validated:
        metrics = "no validation set (best.pt: lowest training loss)"
    elif tensor is not None:
        key = tensor[0]
        metrics = f"val {key} RMSE {row[f'val_{key}_rmse']:.4g} MAE {row[f'val_{key}_mae']:.4g}"
    else:
        metrics = (f"val E MAE {row['val_energy_mae']:.4g} ({row['val_energy_mae_per_atom']:.4g}/atom)"
                   + "".join(f"  val {kind[0].upper()} MAE {row[f'val_{kind}_mae']:.4g}"
                             for kind in _derivatives(types)))
    return f"epoch {row['epoch']}/{config.optimiser.epochs}  loss {row['train_loss']:.4g}  {metrics}  lr {row['lr']:.3g}  " \
           f"{row['time']:.1f}s"
