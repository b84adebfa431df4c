"""Command line interface: ``ecse <command> [options]`` (also ``python -m ecse``).

Commands
--------
demo
    The main job: train ``ecse.backbones.PET`` on the bundled methane data, then compare the
    bare and the ECSE-wrapped model on the test split (see :mod:`ecse.demos.methane`).
shapes
    Train a DGCNN on unrotated synthetic shapes and compare it with its
    ECSE-wrapped version on rotated test shapes (see :mod:`ecse.demos.shape_demo`).
train
    Train ``ecse.backbones.PET`` on energies and forces from a YAML configuration
    (see :mod:`ecse.atomistic.training` and :class:`ecse.atomistic.config.TrainConfig`).
eval
    Evaluate a training checkpoint on an ASE-readable file, bare and ECSE-wrapped
    (see :mod:`ecse.atomistic.evaluation`).

Errors
------
One handler (:mod:`ecse._cli_errors`) serves every command. A user error (missing or
unreadable file, bad YAML, unknown option, unknown element, bad index, missing target key,
NaN in the data, an output folder that cannot be written) prints one line
``ecse: error: ...`` to stderr and exits with status 2; any other exception prints one
line ``ecse: internal error: ...`` and exits with status 1. ``ecse --debug COMMAND ...``
(or ``COMMAND --debug``) shows the traceback instead. ``ecse --version`` prints the version.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Optional, Sequence

from ._cli_errors import USER_ERRORS, check_writable, run_command

__all__ = ["build_parser", "main", "USER_ERRORS", "format_test_summary"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum``, with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value
    return parse


_positive_int, _nonnegative_int = _int_at_least(1), _int_at_least(0)


def _set_threads(threads: Optional[int]) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demos.methane import run_methane_demo

    check_writable(args.output)
    run_methane_demo(args.output, fast=args.fast, epochs=args.epochs, threads=args.threads, seed=args.seed,
                     max_time=args.max_time, log=_say)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .atomistic.evaluation import evaluate_checkpoint

    _set_threads(args.threads)
    if args.output is not None:
        check_writable(args.output)
    elif os.path.isfile(args.checkpoint):
        check_writable(os.path.dirname(os.path.abspath(args.checkpoint)), "checkpoint folder (default output)")
    evaluate_checkpoint(args.checkpoint, args.data, index=args.index, output_dir=args.output,
                        rotations=args.rotations, batch_size=args.batch_size, wrapped=not args.no_wrapped,
                        dtype=args.dtype, seed=args.seed, plot=not args.no_plot, log=_say)
    return 0


def _cmd_shapes(args: argparse.Namespace) -> int:
    from .demos.shape_demo import run_shape_demo

    _set_threads(args.threads)
    run_shape_demo(epochs=args.epochs, frame_epochs=args.frame_epochs,
                   train_in_frames=not args.no_frame_training, n_train_per_class=args.n_train,
                   n_test_per_class=args.n_test, n_points=args.points,
                   seed=args.seed, fast=args.fast, log=_say)
    return 0


def _output_dir(config) -> Optional[str]:
    """The configuration's output folder (flat ``output_dir`` or the ``run`` section's)."""
    for holder in (config, getattr(config, "run", None)):
        folder = getattr(holder, "output_dir", None)
        if isinstance(folder, (str, os.PathLike)):
            return os.fspath(folder)
    return None


def format_test_summary(test: dict) -> str:
    """One line of the test metrics a run actually has (energy, forces, stress or tensors).

    Examples
    --------
    >>> format_test_summary({"loss": 0.5, "energy_mae": 0.1, "energy_rmse": 0.2,
    ...                      "energy_mae_per_atom": 0.02, "forces_mae": 0.3, "forces_rmse": 0.4})
    'test: energy MAE 0.1 (0.02/atom), RMSE 0.2; forces MAE 0.3, RMSE 0.4; loss 0.5'
    >>> format_test_summary({"loss": 1.0, "mu_mae": 0.5, "mu_rmse": 0.7})
    'test: mu MAE 0.5, RMSE 0.7; loss 1'
    >>> format_test_summary({"loss": float("nan"), "mu_mae": float("nan")})
    'test: no test structures'
    """
    finite = {k: v for k, v in test.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    names = [k[:-len("_mae")] for k in test if k.endswith("_mae")]
    parts = []
    for name in names:
        if f"{name}_mae" not in finite:
            continue
        text = f"{name} MAE {finite[name + '_mae']:.4g}"
        if f"{name}_mae_per_atom" in finite:
            text += f" ({finite[name + '_mae_per_atom']:.4g}/atom)"
        if f"{name}_rmse" in finite:
            text += f", RMSE {finite[name + '_rmse']:.4g}"
        parts.append(text)
    if not parts:
        return "test: no test structures"
    if "loss" in finite:
        parts.append(f"loss {finite['loss']:.4g}")
    return "test: " + "; ".join(parts)


def _cmd_train(args: argparse.Namespace) -> int:
    from .atomistic.config import load_config
    from .atomistic.training import train

    config = load_config(args.config)
    folder = _output_dir(config)
    if folder is not None:
        check_writable(folder)
    result = train(config, resume=args.resume, log=_say)
    if result.get("test"):
        _say(format_test_summary(result["test"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="ecse",
        description="Equivariant coordinate system ensembles for PyTorch Geometric models.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ecse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo", parents=[common], help="main job: train PET on bundled methane data, evaluate it bare and ECSE-wrapped",
        description="Train PET on the methane data shipped with ecse (a few minutes on 2 CPU cores), "
                    "then evaluate best.pt on the test split, bare and ECSE-wrapped: errors, rotational "
                    "discrepancy, measured equivariance error and ECSE frames. Writes best.pt, last.pt, "
                    "log.csv, report.json and parity.png to --output.")
    demo.add_argument("--fast", action="store_true", help="tiny configuration (CI, well under a minute)")
    demo.add_argument("--output", default="runs/demo", metavar="DIR", help="output folder (default runs/demo)")
    demo.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="training epochs")
    demo.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                      help="torch CPU threads (default 1; more do not speed up this small model)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--max-time", type=float, default=None, metavar="S",
                      help="training budget in seconds (default 270, none with --fast; 0: no limit)")
    demo.set_defaults(func=_cmd_demo)

    shapes = sub.add_parser(
        "shapes", parents=[common], help="rotation demo: bare vs ECSE-wrapped DGCNN on synthetic shapes",
        description="Train a DGCNN on unrotated synthetic shapes, then compare the bare and "
                    "the ECSE-wrapped model (same weights) on rotated test shapes.")
    shapes.add_argument("--fast", action="store_true", help="tiny configuration (CI, < 1 minute)")
    shapes.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                        help="training epochs of the bare model")
    shapes.add_argument("--frame-epochs", type=_nonnegative_int, default=None, metavar="N",
                        help="training epochs on ECSE frame views (default: 2 x --epochs if given)")
    shapes.add_argument("--no-frame-training", action="store_true",
                        help="skip training a backbone on ECSE frame views")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    shapes.add_argument("--n-train", type=_positive_int, default=None, metavar="N",
                        help="training shapes per class")
    shapes.add_argument("--n-test", type=_positive_int, default=None, metavar="N", help="test shapes per class")
    shapes.add_argument("--points", type=_positive_int, default=None, metavar="N", help="points per shape")
    shapes.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                        help="torch CPU threads (default: torch's choice)")
    shapes.set_defaults(func=_cmd_shapes)

    trainer = sub.add_parser(
        "train", parents=[common], help="train a PET energy/force model from a YAML configuration",
        description="Train ecse.backbones.PET (optionally through ECSE) on energies and forces; "
                    "writes last.pt, best.pt and log.csv to the configuration's output_dir.")
    trainer.add_argument("config", metavar="CONFIG.yaml", help="YAML file of TrainConfig options")
    trainer.add_argument("--resume", action="store_true",
                         help="continue exactly from output_dir/last.pt (also mid-epoch)")
    trainer.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "eval", parents=[common], help="evaluate a checkpoint, bare and ECSE-wrapped, on an ASE-readable file",
        description="Errors (energy, forces, stress, tensors), rotational discrepancy of the bare model, "
                    "measured equivariance error and frames of the ECSE-wrapped model; writes report.json "
                    "and parity.png to --output and prints a table. Target keys come from the checkpoint.")
    ev.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by `ecse train`")
    ev.add_argument("data", metavar="DATA", help="any ASE-readable file with the checkpoint's target keys")
    ev.add_argument("--index", default=":", help="ASE index of the structures to use (default ':')")
    ev.add_argument("--output", default=None, metavar="DIR", help="output folder (default: the checkpoint's)")
    ev.add_argument("--rotations", type=_nonnegative_int, default=8, metavar="K",
                    help="random rotations per structure for the symmetry measures (default 8, 0: skip)")
    ev.add_argument("--batch-size", type=_positive_int, default=16, metavar="B",
                    help="structures per call (default 16)")
    ev.add_argument("--no-wrapped", action="store_true", help="evaluate the bare model only")
    ev.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                    help="evaluation precision (default float64)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the rotations (default 0)")
    ev.add_argument("--no-plot", action="store_true", help="skip parity.png")
    ev.add_argument("--threads", type=_positive_int, default=None, metavar="T", help="torch CPU threads")
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecse`` console script; returns the exit status (0 success,
    1 internal error, 2 user error; argparse's usage errors also exit with 2)."""
    args = build_parser().parse_args(argv)
    return run_command(args.func, args, debug=bool(getattr(args, "debug", False)))
