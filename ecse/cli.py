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
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["build_parser", "main"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _fail(command: str, err: Exception) -> int:
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"ecse {command}: error: {message}", file=sys.stderr, flush=True)
    return 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demos.methane import run_methane_demo

    run_methane_demo(args.output, fast=args.fast, epochs=args.epochs, threads=args.threads, seed=args.seed,
                     max_time=args.max_time, log=_say)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from .atomistic.evaluation import evaluate_checkpoint

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        evaluate_checkpoint(args.checkpoint, args.data, index=args.index, output_dir=args.output,
                            rotations=args.rotations, batch_size=args.batch_size, wrapped=not args.no_wrapped,
                            dtype=args.dtype, seed=args.seed, plot=not args.no_plot, log=_say)
    except (FileNotFoundError, ValueError, KeyError) as err:
        return _fail("eval", err)
    return 0


def _cmd_shapes(args: argparse.Namespace) -> int:
    import torch

    from .demos.shape_demo import run_shape_demo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_shape_demo(epochs=args.epochs, frame_epochs=args.frame_epochs,
                   train_in_frames=not args.no_frame_training, n_train_per_class=args.n_train,
                   n_test_per_class=args.n_test, n_points=args.points,
                   seed=args.seed, fast=args.fast, log=lambda msg: print(msg, flush=True))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .atomistic.config import load_config
    from .atomistic.training import train

    config = load_config(args.config)
    result = train(config, resume=args.resume, log=lambda msg: print(msg, flush=True))
    test = result["test"]
    if test:
        print(f"test: E MAE {test['energy_mae']:.4g} ({test['energy_mae_per_atom']:.4g}/atom), "
              f"F MAE {test['forces_mae']:.4g}", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="ecse",
        description="Equivariant coordinate system ensembles for PyTorch Geometric models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo", help="main job: train PET on bundled methane data, evaluate it bare and ECSE-wrapped",
        description="Train PET on the methane data shipped with ecse (a few minutes on 2 CPU cores), "
                    "then evaluate best.pt on the test split, bare and ECSE-wrapped: errors, rotational "
                    "discrepancy, measured equivariance error and ECSE frames. Writes best.pt, last.pt, "
                    "log.csv, report.json and parity.png to --output.")
    demo.add_argument("--fast", action="store_true", help="tiny configuration (CI, well under a minute)")
    demo.add_argument("--output", default="runs/demo", metavar="DIR", help="output folder (default runs/demo)")
    demo.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs")
    demo.add_argument("--threads", type=int, default=None, metavar="T",
                      help="torch CPU threads (default 1; more do not speed up this small model)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--max-time", type=float, default=None, metavar="S",
                      help="training budget in seconds (default 270, none with --fast; 0: no limit)")
    demo.set_defaults(func=_cmd_demo)

    shapes = sub.add_parser(
        "shapes", help="rotation demo: bare vs ECSE-wrapped DGCNN on synthetic shapes",
        description="Train a DGCNN on unrotated synthetic shapes, then compare the bare and "
                    "the ECSE-wrapped model (same weights) on rotated test shapes.")
    shapes.add_argument("--fast", action="store_true", help="tiny configuration (CI, < 1 minute)")
    shapes.add_argument("--epochs", type=int, default=None, metavar="N",
                        help="training epochs of the bare model")
    shapes.add_argument("--frame-epochs", type=int, default=None, metavar="N",
                        help="training epochs on ECSE frame views (default: 2 x --epochs if given)")
    shapes.add_argument("--no-frame-training", action="store_true",
                        help="skip training a backbone on ECSE frame views")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    shapes.add_argument("--n-train", type=int, default=None, metavar="N",
                        help="training shapes per class")
    shapes.add_argument("--n-test", type=int, default=None, metavar="N", help="test shapes per class")
    shapes.add_argument("--points", type=int, default=None, metavar="N", help="points per shape")
    shapes.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch CPU threads (default: torch's choice)")
    shapes.set_defaults(func=_cmd_shapes)

    trainer = sub.add_parser(
        "train", help="train a PET energy/force model from a YAML configuration",
        description="Train ecse.backbones.PET (optionally through ECSE) on energies and forces; "
                    "writes last.pt, best.pt and log.csv to the configuration's output_dir.")
    trainer.add_argument("config", metavar="CONFIG.yaml", help="YAML file of TrainConfig options")
    trainer.add_argument("--resume", action="store_true",
                         help="continue exactly from output_dir/last.pt (also mid-epoch)")
    trainer.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "eval", help="evaluate a checkpoint, bare and ECSE-wrapped, on an ASE-readable file",
        description="Errors (energy, forces, stress, tensors), rotational discrepancy of the bare model, "
                    "measured equivariance error and frames of the ECSE-wrapped model; writes report.json "
                    "and parity.png to --output and prints a table. Target keys come from the checkpoint.")
    ev.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by `ecse train`")
    ev.add_argument("data", metavar="DATA", help="any ASE-readable file with the checkpoint's target keys")
    ev.add_argument("--index", default=":", help="ASE index of the structures to use (default ':')")
    ev.add_argument("--output", default=None, metavar="DIR", help="output folder (default: the checkpoint's)")
    ev.add_argument("--rotations", type=int, default=8, metavar="K",
                    help="random rotations per structure for the symmetry measures (default 8, 0: skip)")
    ev.add_argument("--batch-size", type=int, default=16, metavar="B", help="structures per call (default 16)")
    ev.add_argument("--no-wrapped", action="store_true", help="evaluate the bare model only")
    ev.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                    help="evaluation precision (default float64)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the rotations (default 0)")
    ev.add_argument("--no-plot", action="store_true", help="skip parity.png")
    ev.add_argument("--threads", type=int, default=None, metavar="T", help="torch CPU threads")
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecse`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
