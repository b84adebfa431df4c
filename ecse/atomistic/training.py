"""Train ``ecse.backbones.PET`` (optionally through ``ECSE``) on energies, forces and stress,
or on one tensor property (a dipole, a polarizability, any e3nn Irreps).

:func:`train` runs a :class:`~ecse.atomistic.config.TrainConfig`: seeded split, composition
baseline fitted on the training split and set as PET's offsets, a loss over the targets
(:mod:`ecse.atomistic.targets`; forces and stress by autograd), random rotation
augmentation that rotates every target, validation every epoch, ``last.pt``/``best.pt``
checkpoints and a ``log.csv``. A run killed at any point resumes *exactly* (bit-identical
parameters on the same machine) with ``train(config, resume=True)`` from the last
checkpoint, which is written at every epoch end and, with ``checkpoint_every``, every that
many steps. Shuffling and augmentation draw from generators seeded by
``(seed, epoch, step)``, so they do not depend on how often a run was interrupted.
``max_time`` stops a run cleanly after a wall-clock budget; a state it stops mid-epoch
is validated and kept as ``best.pt`` when it beats the best epoch.

Data-parallel training (``torch.distributed``), e.g. two processes on one machine::

    torchrun --standalone --nproc_per_node=2 -m ecse train CONFIG.yaml [--resume]

(``.venv/bin/torchrun`` for the project's virtual environment). Every process reads the
data; each step's global batch of ``batch_size`` structures (the same seeded permutation
as a single process) is split into contiguous per-rank slices, the model is wrapped in
``DistributedDataParallel`` (forces by ``create_graph=True`` double backward work with it),
and each rank's loss is its share of the *global* batch loss, so the averaged gradient
equals the single-process gradient up to rounding: results do not depend on the number
of processes. Validation and test sums are all-reduced; rank 0 alone writes checkpoints,
``log.csv``, log lines and the progress bar. The backend is ``gloo`` on CPU and ``nccl``
on CUDA (``device: cuda`` becomes ``cuda:LOCAL_RANK``), or the config's ``backend``.
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from . import _distributed
from ._bookkeeping import epoch_line, log_fields, progress_bar, rng_states, save_atomic, set_rng_states, write_log
from ._objective import (combine, evaluate, fit_baseline, fit_scales, global_counts, squared_errors,
                         target_weights)
from .config import TrainConfig, config_from_dict
from .data import load_dataset, split_dataset
from .targets import predict, prepare_targets, rotate_targets, target_types, tensor_target

__all__ = ["train", "load_model", "build_model", "target_types", "predict"]


def _ecse(pet: nn.Module, config: TrainConfig) -> nn.Module:
    from ..ensemble import ECSE

    tensor = tensor_target(target_types(config))
    return ECSE(pet, **{"cutoff": pet.cutoff, **config.ecse, **({"output": tensor[1]} if tensor else {})})


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def output_scale(scales: Mapping[str, float], types: Mapping[str, str]) -> float:
    """The scale ``train`` gives PET's outputs: the force std when forces are a target,
    else the std of the (first) energy or tensor target."""
    forces = [k for k, kind in types.items() if kind == "forces"]
    if forces:
        return scales[forces[0]]
    first = [k for k, kind in types.items() if kind not in ("stress",)]
    return scales[first[0]] if first else 1.0


def build_model(config: TrainConfig, baseline: Optional[dict] = None, wrap: Optional[bool] = None) -> nn.Module:
    """``PET(**config.model)`` (with ``output=`` the tensor target's type, if any) with
    composition offsets ``baseline``, wrapped in ``ECSE`` (same ``output``) when ``wrap``
    (default ``config.ecse_in_loop``), in ``config.dtype``."""
    from ..backbones import PET

    options, tensor = dict(config.model), tensor_target(target_types(config))
    if tensor is not None:
        if options.get("output", tensor[1]) != tensor[1] or options.get("level", "graph") != "graph":
            raise ValueError(f"tensor target {tensor[0]!r} ({tensor[1]}) is per structure: leave 'output' and "
                             f"'level' out of the model options, got {options}")
        options["output"] = tensor[1]
    pet = PET(**options)
    if baseline:
        pet.set_composition_offsets(baseline)
    model: nn.Module = _ecse(pet, config) if (config.ecse_in_loop if wrap is None else wrap) else pet
    return model.to(dtype=getattr(torch, config.dtype), device=config.device)


def load_model(checkpoint_path: Union[str, os.PathLike], wrap: Optional[bool] = None) -> nn.Module:
    """Rebuild the trained model (eval mode) from a ``last.pt``/``best.pt`` checkpoint.

    ``wrap=True`` returns ``ECSE(PET)``, ``False`` the bare PET, ``None`` the model as
    trained (``config.ecse_in_loop``). Tensor models come back with their ``output``.
    """
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    config = config_from_dict(ckpt["config"], source=f"checkpoint {os.fspath(checkpoint_path)!r}")
    config.device = "cpu"
    model = build_model(config, ckpt["baseline"])
    model.load_state_dict(ckpt["model"])
    if wrap is not None and wrap != config.ecse_in_loop:
        model = _ecse(model, config).to(getattr(torch, config.dtype)) if wrap else model.backbone
    return model.eval()


def _load_splits(config: TrainConfig, types: dict, dtype: torch.dtype) -> tuple[list, list, list]:
    kinds = {key: "node" if kind == "forces" else "graph" for key, kind in types.items()}

    def read(paths: Union[str, Sequence[str], None]) -> list:
        paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
        return [d for p in paths for d in prepare_targets(
            load_dataset(p, kinds, index=config.data_index, dtype=dtype), types, source=repr(p))]

    if config.data is not None:
        return split_dataset(read(config.data), config.split_sizes, seed=config.seed)
    return read(config.train_file), read(config.val_file), read(config.test_file)


def _rotations(config: TrainConfig, count: int, epoch: int, step: int) -> Optional[torch.Tensor]:
    """One orthogonal matrix per structure of a global batch ``[count, 3, 3]`` (float64),
    drawn from the generator of ``(seed, epoch, step)``; ``None`` without augmentation."""
    if not (config.augment_rotations or config.augment_inversion):
        return None
    from ..rotations import random_rotation

    gen = torch.Generator().manual_seed(_seed(config.seed, epoch, step, 1))
    if not config.augment_rotations:  # inversion only: one sign for the batch
        sign = -1.0 if bool(torch.rand((), generator=gen) < 0.5) else 1.0
        return sign * torch.eye(3, dtype=torch.float64).expand(count, 3, 3)
    rots = torch.stack([random_rotation(gen, torch.float64) for _ in range(count)])
    if config.augment_inversion:
        signs = torch.where(torch.rand(count, generator=gen) < 0.5, -1.0, 1.0)
        rots = rots * signs.to(torch.float64)[:, None, None]
    return rots


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
        Receives one progress line per epoch on rank 0 (``None``: silent).
    step_hook : callable, optional
        Called as ``step_hook(epoch, step)`` after every optimisation step (tests use it
        to simulate a kill).

    Returns
    -------
    dict
        ``model`` (unwrapped from DDP), ``history``, ``test`` (metrics of the final model,
        or of the best-validation model after a ``max_time`` stop, counting the state at a
        mid-epoch stop, which is validated then: ``test_model`` says which), ``stopped``
        (``None``, ``"max_steps"`` or ``"max_time"``), ``finished``,
        ``scales`` (``{key: std}``), ``targets``, ``rank``/``world_size``, paths.
    """
    t_start = time.perf_counter()
    if isinstance(config, dict):
        config = config_from_dict(config)
    ctx = _distributed.setup(config.backend, config.device)
    try:
        return _train(config, ctx, resume, (log if ctx.is_main else None) or (lambda msg: None), step_hook, t_start)
    finally:
        ctx.close()


def _train(config: TrainConfig, ctx, resume: bool, log: Callable[[str], None],
           step_hook: Optional[Callable[[int, int], None]], t_start: float) -> dict[str, Any]:
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dtype, device, types = getattr(torch, config.dtype), ctx.device, target_types(config)
    os.makedirs(config.output_dir, exist_ok=True)
    last_path, best_path = (os.path.join(config.output_dir, n) for n in ("last.pt", "best.pt"))
    log_path, fields = os.path.join(config.output_dir, "log.csv"), log_fields(types)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    train_set, val_set, test_set = _load_splits(config, types, dtype)
    if not train_set:
        raise ValueError("the training split is empty")
    baseline = fit_baseline(train_set, types)
    scales, weights = fit_scales(train_set, types, baseline), target_weights(config, types)
    model = build_model(config, baseline).to(device)
    if config.scale_outputs:
        _backbone(model).set_output_scale(output_scale(scales, types))
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, steps_per_epoch))
    st = {"epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0, "elapsed": 0.0,
          "best_val_loss": float("inf"), "best_epoch": 0, "history": []}

    if resume and os.path.isfile(last_path):
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        st.update(ckpt["progress"])
        set_rng_states(ckpt["rng"])
        log(f"resuming from {last_path}: epoch {st['epoch'] + 1}, step {st['step']}")
    net = ctx.wrap(model)
    show_bar = ctx.is_main and (sys.stderr.isatty() if config.progress is None else config.progress)
    val_size = config.val_batch_size or config.batch_size

    def checkpoint(path: str) -> None:
        if ctx.is_main:
            save_atomic(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "progress": dict(st), "rng": rng_states(),
                               "config": config.to_dict(), "baseline": baseline, "scales": scales,
                               "targets": types, "epoch": st["epoch"], "step": st["step"]})

    def time_up() -> bool:  # the same answer on every rank
        if config.max_time is None:
            return False
        return ctx.all_reduce([float(time.perf_counter() - t_start > config.max_time)])[0] > 0

    model.train()
    stopped: Optional[str] = None
    while st["epoch"] < config.epochs and stopped is None:
        epoch, t0 = st["epoch"], time.perf_counter() - st["elapsed"]
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(_seed(config.seed, epoch)))
        bar = progress_bar(show_bar, steps_per_epoch, st["step"], f"epoch {epoch + 1}/{config.epochs}")
        while st["step"] < steps_per_epoch:
            step = st["step"]
            idx = order[step * config.batch_size:(step + 1) * config.batch_size].tolist()
            start, stop = _distributed.shard_bounds(len(idx), ctx.rank, ctx.world_size)
            # a rank without structures runs the first one with weight 0 (DDP needs every rank)
            local = idx[start:stop] or idx[:1]
            batch = Batch.from_data_list([train_set[k] for k in local]).to(device)
            rots = _rotations(config, len(idx), epoch, step)
            if rots is not None:
                batch = rotate_targets(batch, types, rots[start:stop] if stop > start else rots[:1])
            counts = global_counts(types, len(idx), sum(train_set[k].num_nodes for k in idx))
            pred = predict(net, batch, types, create_graph=True)
            loss = combine(squared_errors(pred, batch, types, scales), counts, weights, scales)
            if stop == start:
                loss = loss * 0.0
            optimizer.zero_grad(set_to_none=True)
            (loss * ctx.world_size).backward()  # DDP averages: the sum of the ranks' gradients
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            if step_hook is not None:
                step_hook(epoch, step)
            late = config.max_time is not None and time.perf_counter() - t_start > config.max_time
            batch_loss, late = ctx.all_reduce([float(loss.detach()), float(late)])
            st["loss_sum"] += batch_loss * len(idx)
            st["step"], st["global_step"] = step + 1, st["global_step"] + 1
            st["elapsed"] = time.perf_counter() - t0
            bar.update()
            bar.set_postfix_str(f"loss {batch_loss:.4g}")
            if config.max_steps is not None and st["global_step"] >= config.max_steps:
                stopped = "max_steps"
            elif late > 0:
                stopped = "max_time"
            if stopped is not None:
                break
            if config.checkpoint_every and st["global_step"] % config.checkpoint_every == 0 \
                    and st["step"] < steps_per_epoch:
                checkpoint(last_path)
        bar.close()
        if stopped is not None and st["step"] < steps_per_epoch:
            checkpoint(last_path)
            limit = f"max_steps={config.max_steps}" if stopped == "max_steps" else f"max_time={config.max_time:g}s"
            log(f"stopped at {limit} (epoch {epoch + 1}, step {st['step']})")
            break
        val = evaluate(model, val_set, types, weights, scales, val_size, ctx, device)
        row = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / len(train_set),
               **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[0]["lr"],
               "time": time.perf_counter() - t0}
        st["history"] = st["history"] + [row]
        st.update(epoch=epoch + 1, step=0, loss_sum=0.0, elapsed=0.0)
        score = row["val_loss"] if val_set else row["train_loss"]
        is_best = score < st["best_val_loss"]
        if is_best:
            st["best_val_loss"], st["best_epoch"] = score, epoch + 1
        checkpoint(last_path)
        if is_best:
            checkpoint(best_path)
        if ctx.is_main:
            write_log(log_path, st["history"], fields)
        log(epoch_line(config, types, row) + ("  *" if is_best else ""))
        if stopped is None and st["epoch"] < config.epochs and time_up():
            stopped = "max_time"
            log(f"stopped at max_time={config.max_time:g}s after epoch {epoch + 1}")

    ctx.barrier()  # checkpoints written before anyone reads them
    finished, test, test_model = st["epoch"] >= config.epochs, {}, None
    if stopped == "max_time":
        test_model, eval_model = "last", model
        if st["best_epoch"] and os.path.isfile(best_path):
            if st["step"] > 0 and val_set and _stop_state_is_best(st, model, val_set, types, weights, scales,
                                                                  val_size, ctx, device, log):
                checkpoint(best_path)  # the partial epoch's state: validated, and better than the best epoch
                test_model = f"best (the stop in epoch {st['epoch'] + 1}, step {st['step']})"
            else:
                eval_model = copy.deepcopy(model)
                eval_model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True)["model"])
                test_model = f"best (epoch {st['best_epoch']})"
        test = evaluate(eval_model, test_set, types, weights, scales, val_size, ctx, device)
    elif finished:
        test_model = "last"
        test = evaluate(model, test_set, types, weights, scales, val_size, ctx, device)
    if stopped == "max_time" and test_set:
        log(f"test metrics computed with the {test_model} model")
    ctx.barrier()
    return {"model": model, "config": config, "baseline": baseline, "scales": scales, "targets": types,
            "epochs_completed": st["epoch"], "global_step": st["global_step"], "finished": finished,
            "stopped": stopped, "history": st["history"], "best_val_loss": st["best_val_loss"],
            "best_epoch": st["best_epoch"], "test": test, "test_model": test_model, "rank": ctx.rank,
            "world_size": ctx.world_size, "last_checkpoint": last_path, "best_checkpoint": best_path,
            "log": log_path}


def _stop_state_is_best(st: dict, model, val_set, types, weights, scales, val_size, ctx, device,
                        log: Callable[[str], None]) -> bool:
    """Validate the state a ``max_time`` stop left mid-epoch (never validated: validation
    runs at epoch ends) and say whether it beats the best epoch's validation loss.

    Without this, a budget that ends late in an epoch, where the decayed learning rate
    makes the most progress per step, would throw that partial epoch's work away. The
    training state (``st``, ``last.pt``) is not changed, so a resumed run continues
    exactly as an uninterrupted one; only ``best.pt`` may be replaced by the caller.
    """
    val = evaluate(model, val_set, types, weights, scales, val_size, ctx, device)
    better = val["loss"] < st["best_val_loss"]
    log(f"validation at the stop (epoch {st['epoch'] + 1}, step {st['step']}): loss {val['loss']:.5g} "
        f"against the best epoch's {st['best_val_loss']:.5g} (epoch {st['best_epoch']})"
        + (": kept as best.pt" if better else ""))
    return better
