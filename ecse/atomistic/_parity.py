"""Parity plots (prediction vs reference) of an evaluation, drawn with matplotlib's Agg
canvas (no display needed; the global matplotlib backend is left alone)."""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ._metrics import _flat, component_labels, irreducible_parts
from .targets import target_type

__all__ = ["parity_panels", "parity_plot"]

_MAX_COMPONENT_PANELS = 9


def parity_panels(true: np.ndarray, pred: np.ndarray, key: str, kind: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(title, true, pred)`` of every panel of one target: one panel for energy, forces
    and stress (all components), one per component for tensors (one per irreducible part
    when there are more than 9 components).

    >>> [t for t, _, _ in parity_panels(np.zeros((2, 3)), np.zeros((2, 3)), "mu", "vector")]
    ['mu x', 'mu y', 'mu z']
    """
    target = target_type(kind)
    if target.energy_like:
        return [(f"{key} [{target.unit}]", true.reshape(-1), pred.reshape(-1))]
    labels = component_labels(kind)
    if len(labels) <= _MAX_COMPONENT_PANELS:
        ft, fp = _flat(true, kind), _flat(pred, kind)
        return [(f"{key} {label}", ft[:, k], fp[:, k]) for k, label in enumerate(labels)]
    pt, pp = irreducible_parts(true, kind), irreducible_parts(pred, kind)
    return [(f"{key} {name}", pt[name].reshape(-1), pp[name].reshape(-1)) for name in pt]


def parity_plot(predictions: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], targets: Mapping[str, str],
                path: str | os.PathLike, model_names: Mapping[str, str] | None = None) -> str:
    """Write a PNG with one row per model and one column per panel.

    Parameters
    ----------
    predictions : ``{model: {target key: {"true": array, "pred": array}}}``
    targets : ``{target key: type}``
    path : output file (``.png``)
    model_names : row titles (default: the model keys)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(predictions)
    if not rows:
        raise ValueError("nothing to plot: no model predictions")
    panels = {m: [p for key, kind in targets.items()
                  for p in parity_panels(predictions[m][key]["true"], predictions[m][key]["pred"], key, kind)]
              for m in rows}
    ncols = max(len(p) for p in panels.values())
    fig = Figure(figsize=(3.2 * ncols, 3.2 * len(rows)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(rows), ncols, squeeze=False))
    for r, model in enumerate(rows):
        name = (model_names or {}).get(model, model)
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(panels[model]):
                ax.set_axis_off()
                continue
            title, t, p = panels[model][c]
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, zorder=0)
            ax.scatter(t, p, s=4, alpha=0.5, lw=0)
            rmse = float(np.sqrt(np.mean((p - t) ** 2)))
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.text(0.03, 0.97, f"RMSE {rmse:.3g}", transform=ax.transAxes, va="top", fontsize=8)
            ax.set_xlabel("reference", fontsize=8)
            ax.set_ylabel("predicted", fontsize=8)
            ax.tick_params(labelsize=7)
    path = os.fspath(path)
    fig.savefig(path, dpi=110)
    return path
