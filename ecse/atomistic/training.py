"""Train ``ecse.backbones.PET`` (optionally through ``ECSE``) on energies, forces and stress,
or on one tensor property (a dipole, a polarizability, any e3nn Irreps).

:func:`train` runs a :class:`~ecse.atomistic.config.TrainConfig`: seeded split, composition
baseline fitted on the training split and set as PET's offsets, a loss over the targets
(:mod:`ecse.atomistic.targets`; forces and stress by autograd), random rotation
augmentation that rotates every target, validation every epoch, ``last.pt``/``best.pt``
checkpoints and a ``log.csv``. A run killed at any point resumes *exactly* (bit-identical
parameters on the same machine) with ``train(config, resume=True)`` from the last
checkpoint, which is written at every epoch end and, with ``run.checkpoint_every``, every that
many steps. Shuffling and augmentation draw from generators seeded by
``(seed, epoch, step)``, so they do not depend on how often a run was interrupted.
``run.max_time`` stops a run cleanly after a wall-clock budget; a state it stops mid-epoch
is validated and kept as ``best.pt`` when it beats the best epoch.

Data-parallel training (``torch.distributed``), e.g. two processes on one machine::

    torchrun --standalone --nproc_per_node=2 -m ecse train CONFIG.yaml [--resume]

(``.venv/bin/torchrun`` for the project's virtual environment). Every process reads the
data; each step's global batch of ``optimiser.batch_size`` structures (the same seeded permutation
as a single process) is split into contiguous per-rank slices, the model is wrapped in
``DistributedDataParallel`` (forces by ``create_graph=True`` double backward work with it),
and each rank's loss is its share of the *global* batch loss, so the averaged gradient
equals the single-process gradient up to rounding: results do not depend on the number
of processes. Validation and test sums are all-reduced; rank 0 alone writes checkpoints,
``log.csv``, log lines and the progress bar. The backend is ``gloo`` on CPU and ``nccl``
on CUDA (``device: cuda`` becomes ``cuda:LOCAL_RANK``), or the ``run`` section's ``backend``.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import _distributed
from ._bookkeeping import set_rng_states
from ._checkpoint import checkpoint_config, read_checkpoint
from ._loop import Progress, Run, final_test, fit
from ._objective import fit_baseline, fit_scales, target_weights
from .config import TrainConfig, config_from_dict, replace
from .data import load_dataset, split_dataset
from .targets import predict, prepare_targets, target_level, target_type, target_types

__all__ = ["train", "load_model", "build_model", "load_splits", "output_scale", "target_types", "predict"]


def _ecse(pet: nn.Module, config: TrainConfig) -> nn.Module:
    from ..ensemble import ECSE

    tensor = config.tensor_target
    return ECSE(pet, **config.ecse.kwargs(pet.cutoff, tensor[1] if tensor else None))


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def output_scale(scales: Mapping[str, float], types: Mapping[str, str]) -> float:
    """The scale ``train`` gives PET's outputs: the force std when forces are a target,
    else the std of the (first) energy or tensor target."""
    forces = [k for k, kind in types.items() if target_type(kind).per_atom]
    if forces:
        return scales[forces[0]]
    first = [k for k, kind in types.items() if not target_type(kind).derivative]
    return scales[first[0]] if first else 1.0


def build_model(config: TrainConfig, baseline: Optional[dict] = None, wrap: Optional[bool] = None) -> nn.Module:
    """``PET(**config.model)`` (with ``output=`` the tensor target's type, if any) with
    composition offsets ``baseline``, wrapped in ``ECSE(**config.ecse)`` (same ``output``)
    when ``wrap`` (default ``config.ecse.in_loop``), in ``config.run.dtype``."""
    from ..backbones import PET

    tensor = config.tensor_target
    trained_local = config.ecse.in_loop and config.ecse.mode == "local"
    pet = PET(**config.model.kwargs(tensor[1] if tensor else None, trained_local=trained_local))
    if baseline:
        pet.set_composition_offsets(baseline)
    model: nn.Module = _ecse(pet, config) if (config.ecse.in_loop if wrap is None else wrap) else pet
    return model.to(dtype=getattr(torch, config.run.dtype), device=config.run.device)


def load_model(checkpoint_path: Union[str, os.PathLike], wrap: Optional[bool] = None) -> nn.Module:
    """Rebuild the trained model (eval mode) from a ``last.pt``/``best.pt`` checkpoint.

    ``wrap=True`` returns ``ECSE(PET)``, ``False`` the bare PET, ``None`` the model as
    trained (``config.ecse.in_loop``). Tensor models come back with their ``output``.
    Checkpoints of earlier versions (flat configuration) load as well.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A truncated file, a file that is not a torch checkpoint, or one that is not a
        training checkpoint (e.g. a plain ``state_dict``), named in the message.
    """
    path = os.fspath(checkpoint_path)
    ckpt = read_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    config = replace(config, run={"device": "cpu"})
    model = build_model(config, ckpt["baseline"])
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"checkpoint {path!r}: its model weights do not fit its configuration: {err}") from err
    if wrap is not None and wrap != config.ecse.in_loop:
        if wrap and config.ecse.mode == "local" and getattr(model, "frame_average", None) == "tokens":
            warnings.warn(f"checkpoint {path!r}: a PET trained bare, wrapped in a local ensemble with "
                          "frame_average='tokens' (its model section): averaged tokens are a different function "
                          "from the trained one, so its predictions are not the trained model's; set "
                          "model.frame_average: layers to wrap it after the fact", stacklevel=2)
        model = _ecse(model, config).to(getattr(torch, config.run.dtype)) if wrap else model.backbone
    return model.eval()


def load_splits(config: TrainConfig, dtype: torch.dtype) -> tuple[list, list, list]:
    """The training, validation and test structures of ``config`` (seeded random split of
    ``data.files``, or the split files), with their targets prepared."""
    data, types = config.data, config.target_types
    kinds = {key: target_level(kind) for key, kind in types.items()}  # tensors: one per structure

    def read(paths: Union[str, Sequence[str], None]) -> list:
        paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
        return [d for p in paths for d in prepare_targets(
            load_dataset(p, kinds, index=data.index, dtype=dtype), types, source=repr(p))]

    if data.files is not None:
        return split_dataset(read(data.files), data.split_sizes, seed=config.run.seed)
    return read(data.train_file), read(data.val_file), read(data.test_file)


def _lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    opt = config.optimiser
    total, warm = opt.epochs * steps_per_epoch, opt.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if opt.decay == "cosine":
            progress = min(1.0, (step - warm) / max(1.0, total - warm))
            return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if opt.decay == "step":
            return opt.decay_gamma ** (step // (opt.decay_step_epochs * steps_per_epoch))
        return 1.0

    return factor


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
    ctx = _distributed.setup(config.run.backend, config.run.device)
    run = None
    try:
        run = _start(config, ctx, resume, (log if ctx.is_main else None) or (lambda msg: None), step_hook, t_start)
        stopped = fit(run)
        ctx.barrier()  # checkpoints written before anyone reads them
        test, test_model = final_test(run, stopped)
        ctx.barrier()
        return _summary(run, stopped, test, test_model)
    finally:
        if run is not None:
            # free DDP (its reducer) while the process group lives on: freed after
            # ctx.close(), the reducer would destroy the gloo group holding the GIL, while a
            # gloo thread that frees the last barrier's tensors waits for it (a deadlock)
            run.net = None
        ctx.close()


def _start(config: TrainConfig, ctx: _distributed.Context, resume: bool, log: Callable[[str], None],
           step_hook: Optional[Callable[[int, int], None]], t_start: float) -> Run:
    """Seed, read the data, fit the baseline and scales, build the model and optimiser,
    and restore ``last.pt`` when resuming."""
    if config.run.num_threads:
        torch.set_num_threads(config.run.num_threads)
    dtype, device, types = getattr(torch, config.run.dtype), ctx.device, config.target_types
    os.makedirs(config.run.output_dir, exist_ok=True)
    random.seed(config.run.seed)
    np.random.seed(config.run.seed)
    torch.manual_seed(config.run.seed)

    train_set, val_set, test_set = load_splits(config, dtype)
    if not train_set:
        raise ValueError("the training split is empty")
    baseline = fit_baseline(train_set, types)
    scales, weights = fit_scales(train_set, types, baseline), target_weights(config.loss, types)
    model = build_model(config, baseline).to(device)
    if config.loss.scale_outputs:
        _backbone(model).set_output_scale(output_scale(scales, types))
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if config.optimiser.name == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=config.optimiser.lr, weight_decay=config.optimiser.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.optimiser.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, steps_per_epoch))
    progress = Progress()
    last_path = os.path.join(config.run.output_dir, "last.pt")
    if resume and os.path.isfile(last_path):
        ckpt = read_checkpoint(last_path, ("model", "optimizer", "scheduler", "progress", "rng"))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        progress = Progress(**ckpt["progress"])
        set_rng_states(ckpt["rng"])
        log(f"resuming from {last_path}: epoch {progress.epoch + 1}, step {progress.step}")
    show_bar = ctx.is_main and (sys.stderr.isatty() if config.run.progress is None else config.run.progress)
    return Run(config=config, ctx=ctx, model=model, net=ctx.wrap(model), optimizer=optimizer, scheduler=scheduler,
               train_set=train_set, val_set=val_set, test_set=test_set, types=types, weights=weights,
               scales=scales, baseline=baseline, progress=progress, t_start=t_start, log=log,
               step_hook=step_hook, show_bar=show_bar)


def _summary(run: Run, stopped: Optional[str], test: dict, test_model: Optional[str]) -> dict[str, Any]:
    progress = run.progress
    return {"model": run.model, "config": run.config, "baseline": run.baseline, "scales": run.scales,
            "targets": run.types, "epochs_completed": progress.epoch, "global_step": progress.global_step,
            "finished": progress.epoch >= run.config.optimiser.epochs, "stopped": stopped,
            "history": progress.history, "best_val_loss": progress.best_val_loss,
            "best_epoch": progress.best_epoch, "test": test, "test_model": test_model, "rank": run.ctx.rank,
            "world_size": run.ctx.world_size, "last_checkpoint": run.path("last.pt"),
            "best_checkpoint": run.path("best.pt"), "log": run.path("log.csv")}
