"""The shape demo's report: measured invariance errors and the results table.

Re-exported by :mod:`ecse.demos.shape_demo`.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch, Data

__all__ = ["equivariance_errors", "format_results"]


def equivariance_errors(model: nn.Module, data_list: Sequence[Data], n_transforms: int = 4) -> dict:
    """Measured relative invariance errors of a graph classifier, in float64.

    A float64 copy of ``model`` is evaluated on a float64 batch of
    ``data_list`` with :func:`ecse.testing.assert_equivariant` (measuring
    only, no tolerance).

    Returns
    -------
    dict
        ``{"rotation": ..., "translation": ..., "permutation": ...}`` maximal
        relative errors of the logits.
    """
    from ..testing import assert_equivariant

    model64 = copy.deepcopy(model).double().eval()
    batch = Batch.from_data_list([Data(pos=d.pos.double(), y=d.y) for d in data_list])
    with torch.no_grad():
        errors = assert_equivariant(model64, batch, output="scalar", level="graph",
                                    n_transforms=n_transforms)
    return {k: float(v) for k, v in errors.items()}


_ROWS = (
    ("bare", "bare DGCNN (trained on unrotated)"),
    ("ecse", "ECSE(DGCNN), same weights"),
    ("ecse_trained", "ECSE(DGCNN trained on frame views)"),
)


def format_results(res: dict) -> str:
    """The accuracy table and equivariance errors of :func:`run_shape_demo` as text."""
    lines = [f"{'test accuracy':<40}{'unrotated':>10}{'rotated':>10}"]
    for key, label in _ROWS:
        if f"acc_{key}_rotated" in res:
            lines.append(f"{label:<40}{res[f'acc_{key}_unrotated']:>10.3f}"
                         f"{res[f'acc_{key}_rotated']:>10.3f}")
    lines.append(f"(chance {1 / res['num_classes']:.3f}; ECSE cutoff {res['cutoff']:.3f}; "
                 f"{res['frames_per_shape']:.1f} frames per shape on average)")
    lines.append(f"{'max relative error, float64':<34}{'rotation':>10}{'translation':>13}"
                 f"{'permutation':>13}")
    for key, label in (("bare", "bare DGCNN"), ("ecse", "ECSE(DGCNN)")):
        e = res[f"equivariance_{key}"]
        lines.append(f"{label:<34}{e['rotation']:>10.1e}{e['translation']:>13.1e}"
                     f"{e['permutation']:>13.1e}")
    return "\n".join(lines)
