"""Vertex templates of symmetric point clouds, for :func:`ecse.testing.symmetric_clouds`."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["SHAPES", "min_pair_distance"]


def _templates() -> dict[str, np.ndarray]:
    """Platonic solids and regular polygons (2 to 12 vertices, in the xy plane), by name."""
    phi = (1 + math.sqrt(5)) / 2
    cube = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=np.float64)

    def cyc(vs):
        return np.array([v[i:] + v[:i] for v in vs for i in range(3)], dtype=np.float64)

    sign = [(a, b) for a in (-1, 1) for b in (-1, 1)]
    shapes = {
        "tetrahedron": cube[cube.prod(1) > 0],
        "octahedron": np.concatenate([np.eye(3), -np.eye(3)]),
        "cube": cube,
        "icosahedron": cyc([[0.0, a, b * phi] for a, b in sign]),
        "dodecahedron": np.concatenate([cube, cyc([[0.0, a / phi, b * phi] for a, b in sign])]),
    }
    for k in range(2, 13):
        ang = np.arange(k) * (2 * math.pi / k)
        shapes[f"polygon{k}"] = np.stack([np.cos(ang), np.sin(ang), np.zeros(k)], 1)
    return shapes


def min_pair_distance(v: np.ndarray) -> float:
    """The smallest distance between two rows of ``v`` ``[n >= 2, 3]``."""
    d = np.linalg.norm(v[:, None] - v[None], axis=-1)
    return float(d[np.triu_indices(len(v), 1)].min())


SHAPES = _templates()
