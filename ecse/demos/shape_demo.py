"""Rotation demo: a DGCNN trained on unrotated shapes, with and without ECSE.

Three classifiers, all trained on unrotated shapes only, are tested on
unrotated and on randomly rotated shapes:

* the bare DGCNN learns the canonical orientation and fails on rotated shapes;
* the same trained weights wrapped in :class:`ecse.ECSE` are exactly rotation
  invariant (identical predictions on rotated and unrotated shapes), but not
  accurate: inside ECSE the backbone sees every cloud re-centred on one of its
  points and expressed in a local frame, views it was never trained on;
* a DGCNN trained on such frame views (:class:`FrameViewSampler`, still from
  unrotated shapes only) and wrapped in ECSE is both exactly invariant and
  accurate.

The pieces are small functions so that the notebook
``notebooks/01_wrap_any_pyg_model.ipynb`` can run them step by step;
:func:`run_shape_demo` chains them and is what ``python -m ecse demo`` runs.

Examples
--------
>>> from ecse.demos.shape_demo import run_shape_demo
>>> results = run_shape_demo(fast=True)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch_geometric.data import Data

from .classifier_training import accuracy, evaluate, predict, recalibrate_batchnorm, train_classifier
from ..frame_views import FrameViewSampler
from ..rotations import random_rotations
from ._shape_report import equivariance_errors, format_results
from .shapes import SHAPE_CLASSES, make_shapes

__all__ = [
    "demo_config",
    "build_classifier",
    "choose_cutoff",
    "rotate_shapes",
    "train_classifier",
    "recalibrate_batchnorm",
    "evaluate",
    "predict",
    "accuracy",
    "wrap_classifier",
    "equivariance_errors",
    "format_results",
    "run_shape_demo",
]

Log = Callable[[str], None]


def demo_config(fast: bool = False) -> dict:
    """Default sizes of the demo.

    Parameters
    ----------
    fast : bool, default False
        Tiny sizes for CI (well under a minute on 2 CPU threads) instead of
        the default (a few minutes).

    Returns
    -------
    dict
        Keys ``epochs`` (bare model), ``frame_epochs`` and ``views_per_shape``
        (training on ECSE frame views), ``n_train_per_class``,
        ``n_test_per_class``, ``n_points``, ``k`` and ``hidden`` (DGCNN),
        ``batch_size``, ``lr``, ``neighbors`` (target neighbour count of the
        ECSE cutoff).
    """
    if fast:
        return dict(epochs=4, frame_epochs=6, views_per_shape=2, n_train_per_class=12,
                    n_test_per_class=3, n_points=64, k=10, hidden=16, batch_size=16, lr=3e-3,
                    neighbors=12)
    return dict(epochs=8, frame_epochs=20, views_per_shape=2, n_train_per_class=50,
                n_test_per_class=12, n_points=96, k=12, hidden=32, batch_size=16, lr=2e-3,
                neighbors=12)


def build_classifier(num_classes: int = len(SHAPE_CLASSES), k: int = 12, hidden: int = 32,
                     widths: Sequence[int] = (1, 1, 2), seed: int = 0) -> nn.Module:
    """A small :class:`ecse.backbones.DGCNN` graph classifier on raw coordinates.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    k : int
        Number of nearest neighbours of the dynamic graphs.
    hidden : int
        Base width of the EdgeConv layers (the paper's network has 64).
    widths : sequence of int
        EdgeConv widths in units of ``hidden``.
    seed : int
        Seed of the weight initialisation.
    """
    from ..backbones import DGCNN

    torch.manual_seed(seed)
    return DGCNN(num_classes, in_channels=0, level="graph", k=k, hidden=hidden,
                 widths=tuple(widths), norm="batch_norm")


def choose_cutoff(data_list: Sequence[Data], n_neighbors: int = 16, max_shapes: int = 32) -> float:
    """ECSE cutoff from the point spacing: the median radius holding ``n_neighbors`` points.

    Parameters
    ----------
    data_list : sequence of Data
        Clouds with ``pos``.
    n_neighbors : int, default 16
        Target number of neighbours (excluding the centre) inside the cutoff.
    max_shapes : int, default 32
        Only the first ``max_shapes`` clouds are used.

    Returns
    -------
    float
        The cutoff radius in the clouds' length units.
    """
    radii = []
    for d in list(data_list)[:max_shapes]:
        pos = d.pos.double()
        dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
        k = min(n_neighbors, len(pos) - 1)
        radii.append(dist.kthvalue(k + 1, dim=1).values)  # +1: the centre itself
    return float(torch.cat(radii).median())


def rotate_shapes(data_list: Sequence[Data], seed: int = 0) -> list[Data]:
    """Copies of the clouds, each rotated by its own Haar-random rotation about the origin."""
    g = torch.Generator().manual_seed(seed)
    rots = random_rotations(len(data_list), g, dtype=torch.float64)
    out = []
    for d, rot in zip(data_list, rots):
        e = d.clone()
        e.pos = (d.pos.double() @ rot.T).to(d.pos.dtype)
        out.append(e)
    return out


def wrap_classifier(backbone: nn.Module, cutoff: float, num_classes: int,
                    chunk_size: int | None = 32768, **kwargs) -> nn.Module:
    """Wrap a graph classifier in :class:`ecse.ECSE` (invariant logits); the backbone is untouched.

    Parameters
    ----------
    backbone : nn.Module
        Trained classifier returning ``[num_graphs, num_classes]``.
    cutoff : float
        ECSE cutoff (see :func:`choose_cutoff`).
    num_classes : int
        Number of logits (``out_shape=(num_classes,)``).
    chunk_size : int, optional
        Maximum number of nodes (over all frame copies) per backbone call.
    **kwargs
        Further :class:`ecse.ECSE` arguments (default ``length_scale=cutoff / 5``:
        the published length settings are for a 5 Å cutoff; and the published frame
        settings, :data:`ecse.frameset.PUBLISHED`: a classifier takes no derivative, so
        it can use their fewer frames).
    """
    from ..ensemble import ECSE
    from ..frameset import PUBLISHED

    kwargs.setdefault("length_scale", cutoff / 5.0)
    for key, value in PUBLISHED.items():
        kwargs.setdefault(key, value)
    return ECSE(backbone, cutoff=cutoff, output="scalar", level="graph",
                out_shape=(num_classes,), chunk_size=chunk_size, **kwargs).eval()


def run_shape_demo(epochs: int | None = None, n_train_per_class: int | None = None,
                   n_test_per_class: int | None = None, n_points: int | None = None,
                   seed: int = 0, fast: bool = False, train_in_frames: bool = True,
                   frame_epochs: int | None = None, log: Log | None = print) -> dict:
    """Train on unrotated shapes; compare bare and ECSE-wrapped accuracy on rotated ones.

    Steps: (1) train a DGCNN on unrotated shapes; evaluate it on unrotated
    and randomly rotated test shapes; (2) wrap the same weights in ECSE and
    evaluate again; (3) if ``train_in_frames``, train a second DGCNN (same
    initialisation, same unrotated shapes) on random ECSE frame views
    (:class:`FrameViewSampler`) and evaluate it wrapped in ECSE; (4) measure
    the rotation, translation and permutation errors of the bare and the
    wrapped classifier in float64 on a few test shapes.

    Parameters
    ----------
    epochs, n_train_per_class, n_test_per_class, n_points : int, optional
        Override the defaults of :func:`demo_config`.
    frame_epochs : int, optional
        Epochs of step (3); default: :func:`demo_config`'s, or ``2 * epochs``
        when ``epochs`` is given.
    seed : int, default 0
        Seed of data, initialisation, batch order and test rotations.
    fast : bool, default False
        Tiny configuration for CI.
    train_in_frames : bool, default True
        Run step (3).
    log : callable, optional
        Receives the progress lines and the final table (``None``: silent).

    Returns
    -------
    dict
        Accuracies ``acc_{bare,ecse,ecse_trained}_{unrotated,rotated}``;
        ``changed_predictions_ecse`` (test shapes whose ECSE prediction
        changes under the rotation); ``frames_per_shape`` (mean retained
        frames); ``aux_weight_max``; ``cutoff``; ``equivariance_bare`` and
        ``equivariance_ecse`` (dicts of relative errors); ``history`` and
        ``history_frames``; ``config``; timings ``train_time_s``,
        ``eval_time_s``, ``total_time_s``.
    """
    say = log if log is not None else (lambda _msg: None)
    t0 = time.perf_counter()
    cfg = demo_config(fast)
    for key, val in dict(epochs=epochs, n_train_per_class=n_train_per_class,
                         n_test_per_class=n_test_per_class, n_points=n_points).items():
        if val is not None:
            cfg[key] = int(val)
    if frame_epochs is not None or epochs is not None:
        cfg["frame_epochs"] = int(frame_epochs if frame_epochs is not None else 2 * epochs)
    num_classes = len(SHAPE_CLASSES)
    train = make_shapes(cfg["n_train_per_class"], cfg["n_points"], seed=seed)
    test = make_shapes(cfg["n_test_per_class"], cfg["n_points"], seed=seed + 10_000)
    test_rot = rotate_shapes(test, seed=seed + 20_000)
    cutoff = choose_cutoff(train, cfg["neighbors"])
    say(f"{len(train)} training / {len(test)} test shapes, {num_classes} classes, "
        f"{cfg['n_points']} points each; ECSE cutoff {cutoff:.3f} "
        f"(~{cfg['neighbors']} neighbours)")
    res = dict(num_classes=num_classes, cutoff=cutoff, config=cfg)
    train_time = 0.0

    def timed_train(model, data, epochs, desc):
        nonlocal train_time
        start = time.perf_counter()
        hist = train_classifier(model, data, epochs=epochs, lr=cfg["lr"],
                                batch_size=cfg["batch_size"], seed=seed, log=log, desc=desc)
        train_time += time.perf_counter() - start
        return hist

    def build():
        return build_classifier(num_classes, k=cfg["k"], hidden=cfg["hidden"], seed=seed)

    model = build()
    res["history"] = timed_train(model, train, cfg["epochs"], "[bare] ")
    res["acc_bare_unrotated"] = accuracy(model, test)
    res["acc_bare_rotated"] = accuracy(model, test_rot)

    wrapped = wrap_classifier(model, cutoff, num_classes)
    ecse_rot, ecse_unrot = evaluate(wrapped, test_rot), evaluate(wrapped, test)
    res["acc_ecse_rotated"] = ecse_rot["accuracy"]
    res["acc_ecse_unrotated"] = ecse_unrot["accuracy"]
    res["frames_per_shape"] = (ecse_rot["frames_per_shape"] + ecse_unrot["frames_per_shape"]) / 2
    res["aux_weight_max"] = max(ecse_rot["aux_weight_max"], ecse_unrot["aux_weight_max"])
    res["changed_predictions_ecse"] = int((ecse_rot["pred"] != ecse_unrot["pred"]).sum())

    if train_in_frames:
        start = time.perf_counter()
        views = FrameViewSampler(train, cutoff, seed=seed, views_per_shape=cfg["views_per_shape"],
                                 length_scale=cutoff / 5.0)
        train_time += time.perf_counter() - start
        say(f"frame views: {views.frames_per_shape:.1f} frames per training shape")
        model_f = build()
        res["history_frames"] = timed_train(model_f, views, cfg["frame_epochs"], "[frame views] ")
        wrapped_f = wrap_classifier(model_f, cutoff, num_classes)
        res["acc_ecse_trained_rotated"] = accuracy(wrapped_f, test_rot)
        res["acc_ecse_trained_unrotated"] = accuracy(wrapped_f, test)

    probe = test[: min(2, len(test))]
    res["equivariance_bare"] = equivariance_errors(model, probe)
    res["equivariance_ecse"] = equivariance_errors(wrapped, probe)
    total = time.perf_counter() - t0
    res.update(train_time_s=train_time, eval_time_s=total - train_time, total_time_s=total)
    say(format_results(res))
    say(f"time: training {res['train_time_s']:.0f}s, evaluation {res['eval_time_s']:.0f}s, "
        f"total {total:.0f}s")
    return res
