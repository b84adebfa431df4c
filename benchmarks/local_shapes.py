"""Accuracy on randomly rotated shapes at an equal training budget: bare DGCNN with rotation
augmentation, ECSE global mode and ECSE local mode (printed only).

    python benchmarks/local_shapes.py [--budget 120] [--threads 1] [--seed 0]
                                      [--models bare global local] [--n-train-per-class 50]
                                      [--n-test-per-class 50] [--n-points 96] [--k 12] [--hidden 32]
                                      [--epochs N] [--jitter 0.005] [--dropout 0.0]

Data and classifier as in ``ecse shapes`` (:mod:`ecse.demos.shape_demo`): synthetic shapes
of 8 classes (:func:`~ecse.demos.shapes.make_shapes`, float32), canonically oriented
training shapes, test shapes each under its own random rotation
(:func:`~ecse.demos.shape_demo.rotate_shapes`); a DGCNN with batch norm
(:func:`~ecse.demos.shape_demo.build_classifier`), the same initialisation for every
model; ECSE cutoff from :func:`~ecse.demos.shape_demo.choose_cutoff` (12 neighbours),
``length_scale = cutoff / 5``.

Training, the same for every model: every epoch's training clouds get fresh Gaussian
noise of standard deviation ``--jitter`` on each coordinate (the same noise for every
model; the shapes are about unit size, the median nearest-neighbour distance of their
96 points about 0.11; ``--jitter 0`` switches it off; ``--dropout`` adds dropout to the
hidden layers of every model's head), then Adam, batch size 16, the same batch order, learning
rate ``lr`` decayed along a cosine of the *elapsed fraction of the wall-clock budget*;
it stops after the first batch that ends past ``--budget`` seconds (everything an
epoch needs, e.g. rotating or sampling its clouds, counts).  With ``--epochs`` every
model trains for that many epochs instead (cosine over the epochs): an equal budget
that a shared, busy machine does not distort.  Then the batch-norm
statistics are recomputed on the last epoch's clouds (not counted).

* ``bare``: the DGCNN, each epoch's (jittered) training shapes under fresh random rotations;
* ``global``: ``ECSE(DGCNN)`` in global mode; its backbone trained on one random ECSE
  frame view per shape and epoch (:class:`~ecse.frame_views.FrameViewSampler`, a
  stochastic version of training the whole ensemble at one backbone pass per shape;
  the frames of the training set are computed once, inside the budget, on the
  shapes without jitter), evaluated as the full ensemble;
* ``local``: ``ECSE(DGCNN, mode="local")`` (:class:`ecse.pyg.LocalPointModel`, its
  default ``origin="centroid"``: the first EdgeConv sees the cloud from its centroid in
  each centre's frames, as the bare model sees a centred cloud), trained through the
  wrapper on the (jittered) unrotated shapes (it is exactly invariant, so rotating them
  would change nothing);
* ``local-centre`` (not run by default): the same with ``origin="centre"`` (each point
  at its own frames' origin: only its neighbour patch).

The default 50 test shapes per class (400) give a binomial standard error of about 1.3 %
at 93 % accuracy (2.6 % with 12 per class).

Reported per model: epochs done within the budget, seconds per epoch, accuracy on the
unrotated and on the rotated test shapes, test shapes whose prediction changes under
the rotation, the evaluation time of both test sets, and the accuracy on the
(canonically oriented) training shapes.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MLP

from ecse import ECSE
from ecse.demos.classifier_training import recalibrate_batchnorm
from ecse.demos.shape_demo import build_classifier, choose_cutoff, rotate_shapes, wrap_classifier
from ecse.demos.shapes import SHAPE_CLASSES, make_shapes
from ecse.frame_views import FrameViewSampler

MODELS = ("bare", "global", "local", "local-centre")
LABELS = {"bare": "bare DGCNN + rotation augmentation", "global": "ECSE global (frame-view training)",
          "local": "ECSE local (trained through it)", "local-centre": "ECSE local, origin='centre'"}


def jitter_shapes(data_list, sigma: float, seed: int) -> list:
    """Copies of the clouds with independent Gaussian noise of standard deviation ``sigma``
    on every coordinate (the same noise whatever the model)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in data_list:
        e = d.clone()
        e.pos = d.pos + sigma * torch.randn(d.pos.shape, generator=g, dtype=torch.float64).to(d.pos.dtype)
        out.append(e)
    return out


def train_for(model: nn.Module, clouds_of_epoch, budget: float, lr: float, batch_size: int, seed: int,
              epochs: int | None = None) -> dict:
    """Train until ``budget`` seconds have passed (or for ``epochs`` epochs); cosine learning
    rate over the budget (or the epochs)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, epoch, done = time.perf_counter(), 0, None
    while done is None:
        epoch += 1
        clouds = list(clouds_of_epoch(epoch))
        loader = DataLoader(clouds, batch_size=batch_size, shuffle=True, generator=g)
        model.train()
        for i, batch in enumerate(loader):
            if epochs is None:
                frac = min((time.perf_counter() - start) / budget, 1.0)
            else:
                frac = (epoch - 1 + i / len(loader)) / epochs
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * frac))
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(batch), batch.y)
            loss.backward()
            opt.step()
            if epochs is None and time.perf_counter() - start >= budget:
                done = epoch - 1 + (i + 1) / len(loader)
                break
        if epochs is not None and epoch == epochs:
            done = float(epochs)
    seconds = time.perf_counter() - start
    recalibrate_batchnorm(model, clouds, batch_size)
    return {"epochs": done, "train_s": seconds, "s_per_epoch": seconds / done, "loss": loss.item()}


@torch.no_grad()
def predict(model: nn.Module, data_list, batch_size: int = 16) -> torch.Tensor:
    model.eval()
    return torch.cat([model(b).argmax(-1) for b in DataLoader(list(data_list), batch_size=batch_size)])


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="ECSE global mode: a structure needs")  # expected here
    num_classes = len(SHAPE_CLASSES)
    train = make_shapes(args.n_train_per_class, args.n_points, seed=args.seed)
    test = make_shapes(args.n_test_per_class, args.n_points, seed=args.seed + 10_000)
    test_rot = rotate_shapes(test, seed=args.seed + 20_000)
    y = torch.cat([d.y for d in test])
    cutoff = choose_cutoff(train, 12)
    print(f"torch {torch.__version__}, cpu, {args.threads} thread(s), float32; {len(train)} training / "
          f"{len(test)} test shapes, {num_classes} classes, {args.n_points} points; DGCNN k={args.k} "
          f"hidden={args.hidden}; cutoff {cutoff:.3f}; budget "
          f"{f'{args.epochs} epochs' if args.epochs else f'{args.budget:g} s'} per model, seed {args.seed}",
          flush=True)
    print(f"{'model':<36} {'epochs':>6} {'s/epoch':>7} {'frames':>6} {'acc':>6} {'acc rot':>7} {'changed':>7} "
          f"{'eval s':>6} {'acc train':>9}")
    rows = []
    for name in args.models:
        backbone = build_classifier(num_classes, k=args.k, hidden=args.hidden, seed=args.seed)
        if args.dropout:
            for m in backbone.head.modules():
                if isinstance(m, MLP):
                    m.dropout = [args.dropout] * (len(m.dropout) - 1) + [0.0]
        base = (lambda epoch: jitter_shapes(train, args.jitter, args.seed + 40_000 + epoch)) if args.jitter \
            else (lambda epoch: train)
        if name == "bare":
            model, trained = backbone, backbone
            clouds = lambda epoch: rotate_shapes(base(epoch), seed=args.seed + 30_000 + epoch)  # noqa: E731
        elif name == "global":
            model, trained = wrap_classifier(backbone, cutoff, num_classes), backbone
            state = {}

            def clouds(epoch, state=state):
                if "views" not in state:  # the frames of the training set: inside the budget
                    state["views"] = FrameViewSampler(train, cutoff, seed=args.seed, length_scale=cutoff / 5)
                return state["views"](epoch)
        else:
            extra = {} if args.local_prunings is None else {"num_prunings": args.local_prunings}
            model = ECSE(backbone, cutoff=cutoff, mode="local", out_shape=(num_classes,), length_scale=cutoff / 5,
                         **extra)
            if name == "local-centre":
                model.backbone.origin = "centre"
            trained, clouds = model, base
        row = {"model": name, **train_for(trained, clouds, args.budget, args.lr, 16, args.seed, args.epochs)}
        start = time.perf_counter()
        pred, pred_rot = predict(model, test), predict(model, test_rot)
        row.update(eval_s=time.perf_counter() - start, acc=float((pred == y).float().mean()),
                   acc_rot=float((pred_rot == y).float().mean()), changed=int((pred != pred_rot).sum()))
        row["acc_train"] = float((predict(model, train) == torch.cat([d.y for d in train])).float().mean())
        if name == "global":
            row["frames"] = state["views"].frames_per_shape
        elif name.startswith("local"):
            row["frames"] = model.last_stats["frames_per_centre"]
        rows.append(row)
        frames = f"{row['frames']:.1f}" if "frames" in row else "-"
        print(f"{LABELS[name]:<36} {row['epochs']:>6.1f} {row['s_per_epoch']:>7.2f} {frames:>6} {row['acc']:>6.3f} "
              f"{row['acc_rot']:>7.3f} {row['changed']:>7d} {row['eval_s']:>6.1f} {row['acc_train']:>9.3f}", flush=True)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every model for this many epochs instead of --budget seconds")
    parser.add_argument("--local-prunings", type=int, default=None,
                        help="local mode: ECSE(num_prunings=...) (default: ECSE's own)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS[:3]), choices=MODELS)
    parser.add_argument("--n-train-per-class", type=int, default=50)
    parser.add_argument("--n-test-per-class", type=int, default=50)
    parser.add_argument("--n-points", type=int, default=96)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--jitter", type=float, default=0.005,
                        help="std of the fresh Gaussian noise on every epoch's training clouds (every model; 0: none)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout of the classifier head (every model)")
    args = parser.parse_args(argv)
    rows = run(args)
    print("(frames: per shape for global, per layer centre for local; acc rot: accuracy on randomly rotated test "
          "shapes; changed: test shapes whose prediction the rotation changes)")
    return rows


if __name__ == "__main__":
    main()
