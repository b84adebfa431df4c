"""Command line interface: ``ecse <command> [options]`` (also ``python -m ecse``).

Commands
--------
demo
    Train a DGCNN on unrotated synthetic shapes and compare it with its
    ECSE-wrapped version on rotated test shapes (see :mod:`ecse.demo`).
train
    Train ``backbones.PET`` on energies and forces from a YAML configuration
    (see :mod:`ecse.atomistic.training` and :class:`ecse.atomistic.config.TrainConfig`).
"""

from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["build_parser", "main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import run_shape_demo

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
        "demo", help="rotation demo: bare vs ECSE-wrapped DGCNN on synthetic shapes",
        description="Train a DGCNN on unrotated synthetic shapes, then compare the bare and "
                    "the ECSE-wrapped model (same weights) on rotated test shapes.")
    demo.add_argument("--fast", action="store_true", help="tiny configuration (CI, < 1 minute)")
    demo.add_argument("--epochs", type=int, default=None, metavar="N",
                      help="training epochs of the bare model")
    demo.add_argument("--frame-epochs", type=int, default=None, metavar="N",
                      help="training epochs on ECSE frame views (default: 2 x --epochs if given)")
    demo.add_argument("--no-frame-training", action="store_true",
                      help="skip training a backbone on ECSE frame views")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--n-train", type=int, default=None, metavar="N",
                      help="training shapes per class")
    demo.add_argument("--n-test", type=int, default=None, metavar="N", help="test shapes per class")
    demo.add_argument("--points", type=int, default=None, metavar="N", help="points per shape")
    demo.add_argument("--threads", type=int, default=None, metavar="T",
                      help="torch CPU threads (default: torch's choice)")
    demo.set_defaults(func=_cmd_demo)

    trainer = sub.add_parser(
        "train", help="train a PET energy/force model from a YAML configuration",
        description="Train backbones.PET (optionally through ECSE) on energies and forces; "
                    "writes last.pt, best.pt and log.csv to the configuration's output_dir.")
    trainer.add_argument("config", metavar="CONFIG.yaml", help="YAML file of TrainConfig options")
    trainer.add_argument("--resume", action="store_true",
                         help="continue exactly from output_dir/last.pt (also mid-epoch)")
    trainer.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecse`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
