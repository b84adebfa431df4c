"""Train ``backbones.PET`` (optionally through ``ECSE``) on energies and forces.

:func:`train` runs a :class:`~ecse.atomistic.config.TrainConfig`: seeded split, composition
baseline fitted on the training split and set as PET's offsets, energy + force loss (forces
by autograd), random rotation augmentation, validation every epoch, ``last.pt``/``best.pt``
checkpoints and a ``log.csv``. A run killed at any point resumes *exactly* (bit-identical
parameters on the same machine) with ``train(config, resume=True)`` from the last
checkpoint, which is written at every epoch end and, with ``checkpoint_every``, every that
many steps. Shuffling and augmentation draw from generators seeded by
``(seed, epoch, step)``, so they do not depend on how often a run was interrupted.
"""
from __future__ import annotations

import csv
import math
import os
import random
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from .config import TrainConfig, config_from_dict
from .data import fit_composition_baseline, load_dataset, split_dataset

__all__ = ["train", "load_model", "build_model"]

_LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_energy_mae", "val_energy_mae_per_atom",
               "val_forces_mae", "lr", "time")


def build_model(config: TrainConfig, baseline: Optional[dict] = None, wrap: Optional[bool] = None) -> nn.Module:
    """``PET(**config.model)`` with composition offsets ``baseline``, wrapped in ``ECSE``
    when ``wrap`` (default ``config.ecse_in_loop``), in ``config.dtype``."""
    from backbones import PET

    pet = PET(**config.model)
    if baseline:
        pet.set_composition_offsets(baseline)
    model: nn.Module = pet
    if config.ecse_in_loop if wrap is None else wrap:
        from ..ensemble import ECSE

        model = ECSE(pet, **{"cutoff": pet.cutoff, **config.ecse})
    return model.to(dtype=getattr(torch, config.dtype), device=config.device)


def load_model(checkpoint_path: Union[str, os.PathLike], wrap: Optional[bool] = None) -> nn.Module:
    """Rebuild the trained model (eval mode) from a ``last.pt``/``best.pt`` checkpoint.

    ``wrap=True`` returns ``ECSE(PET)``, ``False`` the bare PET, ``None`` the model as
    trained (``config.ecse_in_loop``).
    """
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    config = config_from_dict(ckpt["config"], source=f"checkpoint {os.fspath(checkpoint_path)!r}")
    config.device = "cpu"
    model = build_model(config, ckpt["baseline"])
    model.load_state_dict(ckpt["model"])
    if wrap is not None and wrap != config.ecse_in_loop:
        from ..ensemble import ECSE

        model = ECSE(model, **{"cutoff": model.cutoff, **config.ecse}) if wrap else model.backbone
    return model.eval()


def _load_splits(config: TrainConfig, dtype: torch.dtype) -> tuple[list, list, list]:
    targets = {config.energy_key: "graph", config.forces_key: "node"}

    def read(paths: Union[str, Sequence[str], None]) -> list:
        paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
        return [d for p in paths for d in load_dataset(p, targets, index=config.data_index, dtype=dtype)]

    if config.data is not None:
        return split_dataset(read(config.data), config.split_sizes, seed=config.seed)
    return read(config.train_file), read(config.val_file), read(config.test_file)


def _scales(train: list, ekey: str, fkey: str, baseline: dict) -> tuple[float, float]:
    """Std of the per-atom residual energy and of the force components (training set)."""
    table = np.zeros(119)
    table[list(baseline)] = list(baseline.values())
    per_atom = [(float(d[ekey].reshape(-1)[0]) - table[d.z.numpy()].sum()) / d.num_nodes for d in train]
    forces = torch.cat([d[fkey].reshape(-1).double() for d in train])
    s_e, s_f = float(np.std(per_atom)), float(forces.std(unbiased=False)) if forces.numel() else 0.0
    return (s_e if s_e > 1e-12 else 1.0), (s_f if s_f > 1e-12 else 1.0)


def _rotate(batch: Batch, fkey: str, generator: torch.Generator, inversion: bool) -> Batch:
    """One random rotation (and inversion) per structure: ``x @ R.T`` for pos, cell, forces."""
    from ..testing import random_rotation

    dtype = batch.pos.dtype
    rots = torch.stack([random_rotation(generator, torch.float64) for _ in range(batch.num_graphs)])
    if inversion:
        signs = torch.where(torch.rand(batch.num_graphs, generator=generator) < 0.5, -1.0, 1.0)
        rots = rots * signs.to(torch.float64)[:, None, None]
    rots = rots.to(dtype=dtype, device=batch.pos.device)
    per_node = rots[batch.batch]
    batch.pos = torch.einsum("nij,nj->ni", per_node, batch.pos)
    batch[fkey] = torch.einsum("nij,nj->ni", per_node, batch[fkey])
    batch.cell = batch.cell @ rots.transpose(1, 2)
    return batch


def _forward(model: nn.Module, batch: Batch, create_graph: bool) -> tuple[Tensor, Tensor]:
    from backbones import energy_and_forces

    return energy_and_forces(model, batch, create_graph=create_graph)


def _loss(config: TrainConfig, energy: Tensor, forces: Tensor, batch: Batch, s_e: float, s_f: float) -> Tensor:
    n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)
    e_err = (energy - batch[config.energy_key].reshape(-1)) / n_atoms
    f_err = forces - batch[config.forces_key]
    return (config.energy_weight * e_err.pow(2).mean() / s_e ** 2
            + config.forces_weight * f_err.pow(2).mean() / s_f ** 2)


def _evaluate(model: nn.Module, data: list, config: TrainConfig, s_e: float, s_f: float) -> dict[str, float]:
    """Loss, energy MAE (per structure and per atom) and force MAE over ``data``."""
    if not data:
        return {k: float("nan") for k in ("loss", "energy_mae", "energy_mae_per_atom", "forces_mae")}
    model.eval()
    size, sums, n_atoms = config.val_batch_size or config.batch_size, np.zeros(4), 0
    for start in range(0, len(data), size):
        batch = Batch.from_data_list(data[start:start + size]).to(config.device)
        energy, forces = _forward(model, batch, create_graph=False)
        energy, forces = energy.detach(), forces.detach()
        counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)
        e_err = energy - batch[config.energy_key].reshape(-1)
        f_err = (forces - batch[config.forces_key]).abs()
        sums += [float(_loss(config, energy, forces, batch, s_e, s_f)) * batch.num_graphs,
                 float(e_err.abs().sum()), float((e_err / counts).abs().sum()), float(f_err.sum())]
        n_atoms += batch.num_nodes
    model.train()
    return {"loss": float(sums[0]) / len(data), "energy_mae": float(sums[1]) / len(data),
            "energy_mae_per_atom": float(sums[2]) / len(data), "forces_mae": float(sums[3]) / (3 * n_atoms)}


def _lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total, warm = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.decay == "cosine":
            progress = min(1.0, (step - warm) / max(1.0, total - warm))
            return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if config.decay == "step":
            return config.decay_gamma ** (step // (config.decay_step_epochs * steps_per_epoch))
        return 1.0

    return factor


def _rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate()}


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


def _save(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written checkpoint


def _write_log(path: str, history: list[dict]) -> None:
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    os.replace(path + ".tmp", path)


def _seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2 ** 62)
    return value


def train(config: Union[TrainConfig, dict], resume: bool = False,
          log: Optional[Callable[[str], None]] = print,
          step_hook: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Train PET as configured; returns a summary ``dict`` (also holding ``"model"``).

    Parameters
    ----------
    config : TrainConfig or dict
        The run's options (a dict is validated like a YAML file).
    resume : bool
        Continue from ``output_dir/last.pt`` (exactly, also from a mid-epoch checkpoint);
        starts afresh when there is none.
    log : callable, optional
        Receives one progress line per epoch (``None``: silent).
    step_hook : callable, optional
        Called as ``step_hook(epoch, step)`` after every optimisation step (tests use it
        to simulate a kill).
    """
    if isinstance(config, dict):
        config = config_from_dict(config)
    log = log or (lambda msg: None)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dtype = getattr(torch, config.dtype)
    os.makedirs(config.output_dir, exist_ok=True)
    last_path, best_path = (os.path.join(config.output_dir, n) for n in ("last.pt", "best.pt"))
    log_path = os.path.join(config.output_dir, "log.csv")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    train_set, val_set, test_set = _load_splits(config, dtype)
    if not train_set:
        raise ValueError("the training split is empty")
    baseline = fit_composition_baseline(train_set, key=config.energy_key)
    s_e, s_f = _scales(train_set, config.energy_key, config.forces_key, baseline)
    model = build_model(config, baseline)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, steps_per_epoch))
    st = {"epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0, "elapsed": 0.0,
          "best_val_loss": float("inf"), "history": []}

    if resume and os.path.isfile(last_path):
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        st.update(ckpt["progress"])
        _set_rng_states(ckpt["rng"])
        log(f"resuming from {last_path}: epoch {st['epoch'] + 1}, step {st['step']}")

    def checkpoint(path: str) -> None:
        _save(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "progress": dict(st), "rng": _rng_states(),
                     "config": config.to_dict(), "baseline": baseline, "scales": [s_e, s_f],
                     "epoch": st["epoch"], "step": st["step"]})

    model.train()
    stopped = False
    while st["epoch"] < config.epochs and not stopped:
        epoch, t0 = st["epoch"], time.perf_counter() - st["elapsed"]
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(_seed(config.seed, epoch)))
        while st["step"] < steps_per_epoch:
            step = st["step"]
            idx = order[step * config.batch_size:(step + 1) * config.batch_size].tolist()
            batch = Batch.from_data_list([train_set[k] for k in idx]).to(config.device)
            if config.augment_rotations or config.augment_inversion:
                gen = torch.Generator().manual_seed(_seed(config.seed, epoch, step, 1))
                if config.augment_rotations:
                    batch = _rotate(batch, config.forces_key, gen, config.augment_inversion)
                else:  # inversion only
                    sign = -1.0 if bool(torch.rand((), generator=gen) < 0.5) else 1.0
                    batch.pos, batch.cell = sign * batch.pos, sign * batch.cell
                    batch[config.forces_key] = sign * batch[config.forces_key]
            energy, forces = _forward(model, batch, create_graph=True)
            loss = _loss(config, energy, forces, batch, s_e, s_f)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            st["loss_sum"] += float(loss.detach()) * len(idx)
            st["step"], st["global_step"] = step + 1, st["global_step"] + 1
            st["elapsed"] = time.perf_counter() - t0
            if step_hook is not None:
                step_hook(epoch, step)
            if config.max_steps is not None and st["global_step"] >= config.max_steps:
                stopped = True
                break
            if config.checkpoint_every and st["global_step"] % config.checkpoint_every == 0 \
                    and st["step"] < steps_per_epoch:
                checkpoint(last_path)
        if stopped and st["step"] < steps_per_epoch:
            checkpoint(last_path)
            log(f"stopped at max_steps={config.max_steps} (epoch {epoch + 1}, step {st['step']})")
            break
        val = _evaluate(model, val_set, config, s_e, s_f)
        row = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / len(train_set), "val_loss": val["loss"],
               "val_energy_mae": val["energy_mae"], "val_energy_mae_per_atom": val["energy_mae_per_atom"],
               "val_forces_mae": val["forces_mae"], "lr": optimizer.param_groups[0]["lr"],
               "time": time.perf_counter() - t0}
        st["history"] = st["history"] + [row]
        st.update(epoch=epoch + 1, step=0, loss_sum=0.0, elapsed=0.0)
        score = row["val_loss"] if val_set else row["train_loss"]
        is_best = score < st["best_val_loss"]
        if is_best:
            st["best_val_loss"] = score
        checkpoint(last_path)
        if is_best:
            checkpoint(best_path)
        _write_log(log_path, st["history"])
        log(f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.4g}  val E MAE "
            f"{row['val_energy_mae']:.4g} ({row['val_energy_mae_per_atom']:.4g}/atom)  val F MAE "
            f"{row['val_forces_mae']:.4g}  lr {row['lr']:.3g}  {row['time']:.1f}s" + ("  *" if is_best else ""))

    test = _evaluate(model, test_set, config, s_e, s_f) if st["epoch"] >= config.epochs else {}
    return {"model": model, "config": config, "baseline": baseline, "scales": (s_e, s_f),
            "epochs_completed": st["epoch"], "global_step": st["global_step"], "finished": st["epoch"] >= config.epochs,
            "history": st["history"], "best_val_loss": st["best_val_loss"], "test": test,
            "last_checkpoint": last_path, "best_checkpoint": best_path, "log": log_path}
