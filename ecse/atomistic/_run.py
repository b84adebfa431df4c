"""What one training run holds (:class:`Run`) and where it stands (:class:`Progress`).

Used by the loop's steps in :mod:`ecse.atomistic._loop`, which re-exports both.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from . import _distributed
from .config import TrainConfig

__all__ = ["Progress", "Run"]


@dataclass
class Progress:
    """Where a run stands; stored as the checkpoint's ``progress`` dict (these keys)."""

    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Optimisation steps completed in the current epoch."""
    global_step: int = 0
    """Optimisation steps completed in all."""
    loss_sum: float = 0.0
    """Sum over the current epoch's structures of the batch losses."""
    elapsed: float = 0.0
    """Seconds spent in the current epoch (carried over a resumption)."""
    best_val_loss: float = math.inf
    """Best validation loss at an epoch end (the training loss without validation data)."""
    best_epoch: int = 0
    """The epoch of ``best_val_loss`` (0: none yet)."""
    history: list = field(default_factory=list)
    """One row per completed epoch (the columns of ``log.csv``)."""


@dataclass
class Run:
    """Everything one training run holds: options, process, model, optimiser, data."""

    config: TrainConfig
    ctx: _distributed.Context
    model: nn.Module
    net: nn.Module  # the model, or DDP around it
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: list
    val_set: list
    test_set: list
    types: dict
    weights: dict
    scales: dict
    baseline: dict
    progress: Progress
    t_start: float
    log: Callable[[str], None]
    step_hook: Optional[Callable[[int, int], None]] = None
    show_bar: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.config.optimiser.batch_size)

    def path(self, name: str) -> str:
        """``name`` in the output folder (``last.pt``, ``best.pt``, ``log.csv``)."""
        return os.path.join(self.config.run.output_dir, name)
