"""The main job, ``ecse demo``: train PET on the bundled methane data, then compare the
bare and the ECSE-wrapped model on the test split.

PET reads Cartesian displacements, so even trained with random rotations it is only
approximately rotation invariant: its energy and (rotated-back) forces change with the
orientation of a molecule. ``ECSE(PET)`` with the same weights is exactly invariant
(equivariant forces) at about the same accuracy. The demo trains with
:func:`~ecse.atomistic.training.train` (checkpoints ``best.pt``/``last.pt`` and
``log.csv`` in the output folder; ``best.pt`` loads with
:func:`~ecse.atomistic.training.load_model`), then runs
:func:`~ecse.atomistic.evaluation.evaluate_checkpoint` on the bundled test file, which
writes ``report.json`` and ``parity.png`` next to them and prints the table.

Example
-------
>>> from ecse.demos.methane import run_methane_demo
>>> result = run_methane_demo("runs/demo", fast=True)  # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from ..atomistic.datasets import bundled_dataset

__all__ = ["methane_demo_config", "run_methane_demo"]

_FULL = dict(
    data=dict(index=":"),
    model=dict(d_model=64, num_gnn_layers=2, num_transformer_layers=2, num_heads=4, dim_feedforward=128,
               head_hidden=64, pre_ln=True),
    optimiser=dict(epochs=60, batch_size=8, lr=2e-3, warmup_epochs=1.0, grad_clip=1.0))
_MAX_TIME = 270.0  # s of training in the full run: the demo stays within ~5 minutes on a busy machine
_FAST = dict(
    data=dict(index=":96"),
    model=dict(d_model=16, num_gnn_layers=1, num_transformer_layers=1, num_heads=2, dim_feedforward=32,
               head_hidden=16, pre_ln=True),
    optimiser=dict(epochs=4, batch_size=8, lr=3e-3, warmup_epochs=0.0, grad_clip=1.0))
_EVAL = {False: dict(index=":", rotations=8), True: dict(index=":16", rotations=2)}


def methane_demo_config(output: str = "runs/demo", fast: bool = False, epochs: Optional[int] = None,
                        threads: Optional[int] = None, seed: int = 0, max_time: Optional[float] = None) -> dict:
    """Training options (a :class:`~ecse.atomistic.config.TrainConfig` dict, in sections)
    of the demo.

    ``max_time``: training budget in seconds (default 270 for the full run, none for
    ``fast``; 0: no limit).

    >>> cfg = methane_demo_config(fast=True, epochs=2)
    >>> cfg["optimiser"]["epochs"], cfg["run"]["output_dir"], os.path.basename(cfg["data"]["train_file"])
    (2, 'runs/demo', 'methane_train.xyz')
    """
    files = bundled_dataset("methane")
    preset = _FAST if fast else _FULL
    options = {section: dict(values) for section, values in preset.items()}
    options["data"].update(train_file=str(files["train"]), val_file=str(files["val"]), test_file=str(files["test"]))
    limit = (None if fast else _MAX_TIME) if max_time is None else max_time
    options["run"] = dict(output_dir=os.fspath(output), seed=seed, num_threads=threads or 1, dtype="float32",
                          max_time=float(limit) if limit else None)
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        optimiser = options["optimiser"]
        optimiser.update(epochs=epochs, warmup_epochs=min(optimiser["warmup_epochs"], float(epochs)))
    return options


def run_methane_demo(output: str = "runs/demo", fast: bool = False, epochs: Optional[int] = None,
                     threads: Optional[int] = None, seed: int = 0, max_time: Optional[float] = None,
                     log: Optional[Callable[[str], None]] = print) -> dict:
    """Train PET on the bundled methane data and evaluate it bare and ECSE-wrapped.

    Parameters
    ----------
    output : str
        Folder of ``best.pt``, ``last.pt``, ``log.csv``, ``report.json``, ``parity.png``.
    fast : bool
        Tiny model, 96 training structures, 4 epochs, 16 test structures (CI). The full
        run trains 60 epochs on 800 structures.
    max_time : float, optional
        Training budget in seconds (default 270 s for the full run: on a slow or busy
        machine training stops early and the best model so far is evaluated; 0: none).
    epochs, threads, seed
        Override the number of epochs; torch CPU threads (default 1: the small molecules
        give each operation too little work to share, and on a busy machine spinning
        OpenMP threads slow every epoch down); seed of initialisation,
        shuffling, augmentation and test rotations.
    log : callable or None
        Receives the progress lines and the final table.

    Returns
    -------
    dict
        ``{"train": summary of train(), "report": evaluation report, "total_time_s"}``.
    """
    from ..atomistic.evaluation import evaluate_checkpoint
    from ..atomistic.training import train

    t0 = time.perf_counter()
    say = log or (lambda msg: None)
    config = methane_demo_config(output, fast, epochs, threads, seed, max_time)
    model, run = config["model"], config["run"]
    say(f"Training PET (d_model={model['d_model']}, {model['num_gnn_layers']} message-passing layers) on the "
        f"bundled methane data, {config['optimiser']['epochs']} epochs"
        + (f" (at most {run['max_time']:.0f} s)" if run["max_time"] else "")
        + f", float32, random rotations as augmentation; checkpoints in {run['output_dir']}/")
    summary = train(config, log=say)
    summary.pop("model", None)
    say(f"training took {time.perf_counter() - t0:.0f} s; evaluating best.pt on the test split, bare and "
        "ECSE-wrapped (same weights), in float64")
    evaluation = _EVAL[bool(fast)]
    report = evaluate_checkpoint(summary["best_checkpoint"], config["data"]["test_file"], index=evaluation["index"],
                                 output_dir=run["output_dir"], rotations=evaluation["rotations"],
                                 batch_size=16, dtype="float64", seed=seed, log=say)
    total = time.perf_counter() - t0
    say(f"total time {total:.0f} s")
    return {"train": summary, "report": report, "total_time_s": total}
