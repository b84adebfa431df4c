"""The steps of the training loop of :mod:`ecse.atomistic.training`, on a :class:`Run`.

:func:`take_step` (one optimisation step of one global batch), :func:`train_one_epoch`
(the steps of an epoch, mid-epoch checkpoints and the step-level stops),
:func:`end_epoch` (validation, history, best model, checkpoints, log), :func:`fit`
(epochs until done or stopped, with the epoch-level budget check) and
:func:`final_test` (the test metrics of the final or best model), as MACE's
``take_step`` / ``train_one_epoch`` / ``evaluate``.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from typing import Optional

import torch
from torch import nn
from torch_geometric.data import Batch

from . import _distributed
from ._bookkeeping import epoch_line, log_fields, progress_bar, rng_states, save_atomic, write_log
from ._objective import combine, evaluate, global_counts, squared_errors
from ._run import Progress, Run
from .config import TrainConfig
from .targets import predict, rotate_targets

__all__ = ["Progress", "Run", "seed_of", "take_step", "micro_batches", "train_one_epoch", "validate", "end_epoch",
           "save", "fit", "final_test"]


def seed_of(*parts: int) -> int:
    """One seed from several integers (``seed``, ``epoch``, ``step``, ...).

    >>> seed_of(0, 1), seed_of(1, 0)
    (1, 1000003)
    """
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2 ** 62)
    return value


def rotations(config: TrainConfig, count: int, epoch: int, step: int) -> Optional[torch.Tensor]:
    """One orthogonal matrix per structure of a global batch ``[count, 3, 3]`` (float64),
    drawn from the generator of ``(seed, epoch, step)``; ``None`` without augmentation."""
    data = config.data
    if not (data.augment_rotations or data.augment_inversion):
        return None
    from ..rotations import random_rotation

    gen = torch.Generator().manual_seed(seed_of(config.run.seed, epoch, step, 1))
    if not data.augment_rotations:  # inversion only: one sign for the batch
        sign = -1.0 if bool(torch.rand((), generator=gen) < 0.5) else 1.0
        return sign * torch.eye(3, dtype=torch.float64).expand(count, 3, 3)
    rots = torch.stack([random_rotation(gen, torch.float64) for _ in range(count)])
    if data.augment_inversion:
        signs = torch.where(torch.rand(count, generator=gen) < 0.5, -1.0, 1.0)
        rots = rots * signs.to(torch.float64)[:, None, None]
    return rots


def take_step(run: Run, order: torch.Tensor) -> tuple[float, bool]:
    """One optimisation step on the global batch ``progress.step`` of ``order``, this
    rank's share in groups of at most ``optimiser.micro_batch_atoms`` atoms
    (:func:`micro_batches`, gradients accumulated); returns its loss (summed over the
    ranks) and whether the time budget is spent."""
    config, ctx, progress, train_set = run.config, run.ctx, run.progress, run.train_set
    epoch, step, size = progress.epoch, progress.step, config.optimiser.batch_size
    idx = order[step * size:(step + 1) * size].tolist()
    start, stop = _distributed.shard_bounds(len(idx), ctx.rank, ctx.world_size)
    # a rank without structures runs the first one with weight 0 (DDP needs every rank)
    local = idx[start:stop] or idx[:1]
    rots = rotations(config, len(idx), epoch, step)
    if rots is not None:
        rots = rots[start:stop] if stop > start else rots[:1]
    counts = global_counts(run.types, len(idx), sum(train_set[k].num_nodes for k in idx))
    groups = micro_batches([train_set[k].num_nodes for k in local], config.optimiser.micro_batch_atoms)
    run.optimizer.zero_grad(set_to_none=True)
    loss = 0.0
    for g, part in enumerate(groups):
        # the loss is a sum over structures divided by the global counts: the groups' gradients add up
        batch = Batch.from_data_list([train_set[k] for k in local[part]]).to(ctx.device)
        if rots is not None:
            batch = rotate_targets(batch, run.types, rots[part])
        last = g == len(groups) - 1
        with contextlib.nullcontext() if last or not hasattr(run.net, "no_sync") else run.net.no_sync():
            pred = predict(run.net, batch, run.types, create_graph=True)
            part_loss = combine(squared_errors(pred, batch, run.types, run.scales), counts, run.weights, run.scales)
            if stop == start:
                part_loss = part_loss * 0.0
            (part_loss * ctx.world_size).backward()  # DDP averages: the sum of the ranks' gradients
        loss += float(part_loss.detach())
    if config.optimiser.grad_clip is not None:
        params = [p for group in run.optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, config.optimiser.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    if run.step_hook is not None:
        run.step_hook(epoch, step)
    max_time = config.run.max_time
    late = max_time is not None and time.perf_counter() - run.t_start > max_time
    batch_loss, late = ctx.all_reduce([loss, float(late)])
    progress.loss_sum += batch_loss * len(idx)
    progress.step, progress.global_step = step + 1, progress.global_step + 1
    return batch_loss, late > 0


def micro_batches(sizes: list[int], atoms: Optional[int]) -> list[slice]:
    """Consecutive groups of structures with ``sizes`` atoms: at most ``atoms`` atoms per
    group, a larger structure alone (``None``: one group).

    >>> micro_batches([5, 5, 300, 5, 5], 12)
    [slice(0, 2, None), slice(2, 3, None), slice(3, 5, None)]
    """
    groups, first, total = [], 0, 0
    for i, n in enumerate(sizes):
        if atoms is not None and i > first and total + n > atoms:
            groups.append(slice(first, i))
            first, total = i, 0
        total += n
    return groups + [slice(first, len(sizes))]


def train_one_epoch(run: Run, t0: float) -> Optional[str]:
    """The remaining steps of epoch ``progress.epoch`` (started at ``t0``); returns
    ``"max_steps"`` or ``"max_time"`` when a step stopped the run, else ``None``."""
    config, progress = run.config, run.progress
    order = torch.randperm(len(run.train_set),
                           generator=torch.Generator().manual_seed(seed_of(config.run.seed, progress.epoch)))
    bar = progress_bar(run.show_bar, run.steps_per_epoch, progress.step,
                       f"epoch {progress.epoch + 1}/{config.optimiser.epochs}")
    stopped, every = None, config.run.checkpoint_every
    while progress.step < run.steps_per_epoch:
        batch_loss, late = take_step(run, order)
        progress.elapsed = time.perf_counter() - t0
        bar.update()
        bar.set_postfix_str(f"loss {batch_loss:.4g}")
        if config.run.max_steps is not None and progress.global_step >= config.run.max_steps:
            stopped = "max_steps"
        elif late:
            stopped = "max_time"
        if stopped is not None:
            break
        if every and progress.global_step % every == 0 and progress.step < run.steps_per_epoch:
            save(run, run.path("last.pt"))
    bar.close()
    return stopped


def validate(run: Run, model: Optional[nn.Module] = None, data: Optional[list] = None) -> dict[str, float]:
    """Loss and metrics of ``model`` (default: the run's) on ``data`` (default: the
    validation split), summed over the ranks."""
    size = run.config.optimiser.val_batch_size or run.config.optimiser.batch_size
    return evaluate(run.model if model is None else model, run.val_set if data is None else data, run.types,
                    run.weights, run.scales, size, run.ctx, run.ctx.device)


def save(run: Run, path: str) -> None:
    """Write the run's checkpoint to ``path`` (rank 0; atomic)."""
    if run.ctx.is_main:
        progress = run.progress
        save_atomic(path, {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                           "scheduler": run.scheduler.state_dict(), "progress": dataclasses.asdict(progress),
                           "rng": rng_states(), "config": run.config.to_dict(), "baseline": run.baseline,
                           "scales": run.scales, "targets": run.types, "epoch": progress.epoch,
                           "step": progress.step})


def end_epoch(run: Run, t0: float) -> None:
    """Validate at the end of epoch ``progress.epoch``, add its row to the history, keep
    the best model, write ``last.pt``/``best.pt``/``log.csv`` and log one line."""
    progress, val_set = run.progress, run.val_set
    val = validate(run)
    row = {"epoch": progress.epoch + 1, "train_loss": progress.loss_sum / len(run.train_set),
           **{f"val_{k}": v for k, v in val.items()}, "lr": run.optimizer.param_groups[0]["lr"],
           "time": time.perf_counter() - t0}
    progress.history = progress.history + [row]
    progress.epoch, progress.step, progress.loss_sum, progress.elapsed = progress.epoch + 1, 0, 0.0, 0.0
    score = row["val_loss"] if val_set else row["train_loss"]
    is_best = score < progress.best_val_loss
    if is_best:
        progress.best_val_loss, progress.best_epoch = score, progress.epoch
    save(run, run.path("last.pt"))
    if is_best:
        save(run, run.path("best.pt"))
    if run.ctx.is_main:
        write_log(run.path("log.csv"), progress.history, log_fields(run.types))
    run.log(epoch_line(run.config, run.types, row, validated=bool(val_set)) + ("  *" if is_best else ""))


def budget_spent(run: Run) -> bool:
    """Whether the ``max_time`` budget is spent (the same answer on every rank)."""
    max_time = run.config.run.max_time
    if max_time is None:
        return False
    return run.ctx.all_reduce([float(time.perf_counter() - run.t_start > max_time)])[0] > 0


def fit(run: Run) -> Optional[str]:
    """Train epochs until ``epochs`` are done or a limit stops the run (checkpointed);
    returns ``None``, ``"max_steps"`` or ``"max_time"``."""
    config, progress = run.config, run.progress
    run.model.train()
    stopped: Optional[str] = None
    while progress.epoch < config.optimiser.epochs and stopped is None:
        epoch, t0 = progress.epoch, time.perf_counter() - progress.elapsed
        stopped = train_one_epoch(run, t0)
        if stopped is not None and progress.step < run.steps_per_epoch:
            save(run, run.path("last.pt"))
            limit = f"max_steps={config.run.max_steps}" if stopped == "max_steps" \
                else f"max_time={config.run.max_time:g}s"
            run.log(f"stopped at {limit} (epoch {epoch + 1}, step {progress.step})")
            break
        end_epoch(run, t0)
        if stopped is None and progress.epoch < config.optimiser.epochs and budget_spent(run):
            stopped = "max_time"
            run.log(f"stopped at max_time={config.run.max_time:g}s after epoch {epoch + 1}")
    return stopped


def final_test(run: Run, stopped: Optional[str]) -> tuple[dict, Optional[str]]:
    """Test metrics and which model gave them: the last model of a finished run; after a
    ``max_time`` stop the best-validation one, counting a state stopped mid-epoch, which
    is validated now and written to ``best.pt`` when it beats the best epoch."""
    progress, val_set, test_set, best_path = run.progress, run.val_set, run.test_set, run.path("best.pt")
    if stopped == "max_time":
        test_model, eval_model = "last", run.model
        if progress.best_epoch and os.path.isfile(best_path):
            if progress.step > 0 and val_set and _stop_state_is_best(run):
                save(run, best_path)  # the partial epoch's state: validated, and better than the best epoch
                test_model = f"best (the stop in epoch {progress.epoch + 1}, step {progress.step})"
            else:
                eval_model = copy.deepcopy(run.model)
                state = torch.load(best_path, map_location=run.ctx.device, weights_only=True)["model"]
                eval_model.load_state_dict(state)
                test_model = f"best (epoch {progress.best_epoch})"
        test = validate(run, eval_model, test_set)
        if test_set:
            run.log(f"test metrics computed with the {test_model} model")
        return test, test_model
    if progress.epoch >= run.config.optimiser.epochs:
        return validate(run, data=test_set), "last"
    return {}, None


def _stop_state_is_best(run: Run) -> bool:
    """Validate the state a ``max_time`` stop left mid-epoch (never validated: validation
    runs at epoch ends) and say whether it beats the best epoch's validation loss.

    Without this, a budget that ends late in an epoch, where the decayed learning rate
    makes the most progress per step, would throw that partial epoch's work away. The
    training state (``progress``, ``last.pt``) is not changed, so a resumed run continues
    exactly as an uninterrupted one; only ``best.pt`` may be replaced by the caller.
    """
    progress, val = run.progress, validate(run)
    better = val["loss"] < progress.best_val_loss
    run.log(f"validation at the stop (epoch {progress.epoch + 1}, step {progress.step}): loss {val['loss']:.5g} "
            f"against the best epoch's {progress.best_val_loss:.5g} (epoch {progress.best_epoch})"
            + (": kept as best.pt" if better else ""))
    return better
