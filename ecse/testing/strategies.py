"""Hypothesis strategies for point clouds, rotations and orthogonal matrices.

Every cloud strategy returns a :class:`torch_geometric.data.Data` with

* ``pos`` -- ``[N, 3]`` row vectors in the requested ``dtype``;
* ``z`` -- ``LongTensor [N]`` of atomic numbers from ``SPECIES`` (``species=True``);
* ``cell`` -- ``[1, 3, 3]`` lattice vectors as rows and ``pbc`` -- ``[1, 3]`` all
  ``True`` (``periodic=True``); the leading 1 makes PyG batching give ``[B, 3, 3]``.

Any two points are at least ``0.3 * scale`` apart (for periodic clouds: also
between periodic images).  A matrix ``R`` acts on positions as ``pos @ R.T`` and on
cells as ``cell @ R.T``.  Examples shrink towards few points, hydrogen species and
the identity rotation.  ``random_rotation`` / ``random_orthogonal`` are plain
``torch.Generator`` helpers for tests that do not use hypothesis.

Examples
--------
>>> from hypothesis import given, settings
>>> @settings(max_examples=5, deadline=None)
... @given(point_clouds(kind="planar", min_points=3))
... def check(data):
...     assert torch.linalg.matrix_rank(data.pos - data.pos.mean(0)) <= 2
>>> check()
"""

from __future__ import annotations

import functools
import itertools
import math
from statistics import NormalDist

import numpy as np
import torch
from hypothesis import strategies as st
from torch_geometric.data import Data

from ..rotations import quaternion_to_matrix as _quaternion_to_matrix, random_orthogonal, random_rotation
from ._polyhedra import SHAPES as _SHAPES, min_pair_distance as _pdist_min

__all__ = [
    "KINDS", "SPECIES", "point_clouds", "random_clouds", "clustered_clouds", "collinear_clouds",
    "planar_clouds", "symmetric_clouds", "near_degenerate_clouds", "periodic_clouds",
    "rotations", "orthogonal_matrices", "random_rotation", "random_orthogonal",
    "LATTICES", "CRYSTAL_SPECIES", "crystals", "perfect_crystals", "thermal_crystals",
]

KINDS: tuple[str, ...] = ("random", "clustered", "collinear", "planar", "symmetric", "near_degenerate")
SPECIES: tuple[int, ...] = (1, 6, 7, 8)
_MIN_DIST = 0.35  # internal spacing (x scale); leaves room for near-degenerate perturbations
_TRIES = 8
_GOLDEN = math.pi * (3.0 - math.sqrt(5.0))

_unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


def _gauss(v: float) -> float:
    """Map ``v`` in [-1, 1] to a standard normal variate (0 maps to 0, so it shrinks well)."""
    return NormalDist().inv_cdf(0.5 + 0.4999999 * v)


def _vec(draw, k: int = 3, elements=_unit) -> np.ndarray:
    return np.array([draw(elements) for _ in range(k)], dtype=np.float64)


def _fib_dir(k: int) -> np.ndarray:
    """Deterministic, well-spread unit vectors (Fibonacci sphere), used as fallbacks."""
    y = 1.0 - 2.0 * ((k * 0.618034) % 1.0)
    r = math.sqrt(max(0.0, 1.0 - y * y))
    return np.array([r * math.cos(k * _GOLDEN), y, r * math.sin(k * _GOLDEN)])


def _rot(draw) -> np.ndarray:
    """A uniform rotation from a gaussian quaternion; all-zero draws give the identity."""
    q = torch.tensor([_gauss(draw(_unit)) for _ in range(4)], dtype=torch.float64)
    return np.eye(3) if q.norm() < 1e-6 else _quaternion_to_matrix(q).numpy()


@st.composite
def rotations(draw, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniformly distributed SO(3) matrices (from a normalised gaussian quaternion)."""
    return torch.from_numpy(_rot(draw)).to(dtype)


@st.composite
def orthogonal_matrices(draw, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniformly distributed O(3) matrices: a rotation, times -1 (an improper element) or not."""
    R = torch.from_numpy(_rot(draw))
    return (-R if draw(st.booleans()) else R).to(dtype)


def _outside(pts: list[np.ndarray], i: int, min_dist: float, flat: bool = False) -> np.ndarray:
    """A deterministic point at least ``min_dist`` from all of ``pts`` (in their plane z=0 if ``flat``)."""
    d = _fib_dir(i) * np.array([1.0, 1.0, 0.0 if flat else 1.0])
    d = d / np.linalg.norm(d) if np.linalg.norm(d) > 0.1 else np.array([1.0, 0.0, 0.0])
    c = np.mean(pts, 0)
    return c + (np.linalg.norm(np.asarray(pts) - c, axis=-1).max() + min_dist) * d


_outside_flat = functools.partial(_outside, flat=True)


def _rejection(draw, n: int, propose, min_dist: float, dist=None, fallback=_outside) -> np.ndarray:
    """Draw ``n`` points from ``propose(draw)`` keeping them ``min_dist`` apart.

    ``propose`` returns a ``[3]`` array or ``None`` (rejected).  After ``_TRIES``
    failures ``fallback(points, i, min_dist)`` supplies a deterministic point instead.
    """
    dist = dist or (lambda p, q: np.linalg.norm(q - p, axis=-1))
    pts: list[np.ndarray] = []
    for i in range(n):
        for _ in range(_TRIES):
            p = propose(draw)
            if p is not None and (not pts or dist(p, np.asarray(pts)).min() >= min_dist):
                break
        else:
            p = fallback(pts, i, min_dist)
        pts.append(p)
    return np.asarray(pts)


def _collinear(draw, n: int, scale: float) -> np.ndarray:
    t = np.cumsum(np.concatenate([[0.0], _vec(draw, n - 1, st.floats(0.4, 1.6)) * scale]))
    order = draw(st.permutations(range(n)))
    return (t[order] - t.mean())[:, None] * _rot(draw)[:, 0]


def _planar(draw, n: int, scale: float) -> np.ndarray:
    radius = scale * math.sqrt(n) * 1.2

    def propose(draw):
        u, v = draw(_unit), draw(_unit)
        return np.array([u, v, 0.0]) * radius if u * u + v * v <= 1 else None

    return _rejection(draw, n, propose, _MIN_DIST * scale, fallback=_outside_flat) @ _rot(draw).T


def _clustered(draw, n: int, scale: float) -> np.ndarray:
    k = draw(st.integers(1, min(4, n)))
    spread = scale * n ** (1 / 3) * 2.0
    centres = [_vec(draw) * spread for _ in range(k)]
    sigma = 0.6 * scale * (n / k) ** (1 / 3)
    counter = itertools.count()

    def propose(draw):
        c = centres[next(counter) % k]
        return c + sigma * np.array([_gauss(x) for x in _vec(draw)])

    return _rejection(draw, n, propose, _MIN_DIST * scale)


def _symmetric_options(n_min: int, n_max: int) -> list[tuple[str, bool]]:
    options = [(name, c) for name, v in _SHAPES.items() for c in (False, True) if n_min <= len(v) + c <= n_max]
    return ([("point", False)] if n_min <= 1 else []) + options


def _symmetric(draw, n_min: int, n_max: int, scale: float) -> np.ndarray:
    name, centre = draw(st.sampled_from(_symmetric_options(n_min, n_max)))
    if name == "point":
        return np.zeros((1, 3))
    v = _SHAPES[name] / _pdist_min(_SHAPES[name])
    if centre:
        v = np.concatenate([v, np.zeros((1, 3))])
    edge = scale * draw(st.floats(0.6, 1.6)) / min(1.0, _pdist_min(v))
    return edge * v @ _rot(draw).T


def _heights(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (rows = lattice vectors)."""
    cross = np.cross(np.roll(cell, 1, 0), np.roll(cell, 2, 0))
    return abs(np.linalg.det(cell)) / np.linalg.norm(cross, axis=1)


def _periodic_dist(cell: np.ndarray):
    inv = np.linalg.inv(cell)
    shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]) @ cell

    def dist(p, q):
        d = q - p
        d = d - np.round(d @ inv) @ cell
        return np.linalg.norm(d[:, None, :] + shifts, axis=-1).min(1)

    def fallback(pts, i, min_dist):  # first admissible point of a Kronecker sequence in the cell
        for k in range(1, 100_000):
            p = ((0.5 + (k + 7919 * i) * _KRONECKER) % 1.0) @ cell
            if dist(p, np.asarray(pts)).min() >= min_dist:
                return p
        raise RuntimeError("could not place a point in the periodic cell")  # pragma: no cover
    return dist, fallback


_KRONECKER = np.array([1 / 1.2207440846 ** k for k in (1, 2, 3)])


def _random_cell(draw, n: int, scale: float) -> np.ndarray:
    """A random cell, condition number <= 4, volume ~ ``n`` times a ball of radius ``scale``."""
    base = (np.eye(3) + 0.2 * _vec(draw, 9).reshape(3, 3)) @ _rot(draw).T
    vol = n * 4.19 * scale**3 * draw(st.floats(1.0, 3.0))
    length = max((vol / abs(np.linalg.det(base))) ** (1 / 3), 3 * scale / _heights(base).min())
    return base * length


@st.composite
def _clouds(draw, kind, min_points, max_points, species, periodic, dtype, scale) -> Data:
    if kind is None:
        kinds = [k for k in KINDS if k != "symmetric" or _symmetric_options(min_points, max_points)]
        kind = draw(st.sampled_from(kinds))
    n = 0 if kind == "symmetric" else draw(st.integers(min_points, max_points))
    cell = None
    if kind == "symmetric":
        pos = _symmetric(draw, min_points, max_points, scale)
    elif kind in ("collinear", "planar", "near_degenerate"):
        line = kind == "collinear" or (kind == "near_degenerate" and draw(st.booleans()))
        pos = _collinear(draw, n, scale) if line else _planar(draw, n, scale)
        if kind == "near_degenerate":  # the fixed _fib_dir part keeps it off exact degeneracy when shrunk
            eps = scale * 10.0 ** draw(st.floats(-6.0, -2.0))
            noise = [0.5 * _fib_dir(3 * i + 1) + 0.25 * _vec(draw) for i in range(n)]
            pos = pos + eps * np.asarray(noise)
    elif kind == "clustered":
        pos = _clustered(draw, n, scale)
    elif periodic:  # "random": fill the cell uniformly
        cell = _random_cell(draw, n, scale)

        def propose(draw):
            return _vec(draw, 3, st.floats(0.0, 1.0, exclude_max=True)) @ cell

        pos = _rejection(draw, n, propose, _MIN_DIST * scale, *_periodic_dist(cell))
    else:
        def propose(draw):  # uniform in a ball of radius ~ scale * n^(1/3)
            p = _vec(draw)
            return p * scale * n ** (1 / 3) if p @ p <= 1 else None

        pos = _rejection(draw, n, propose, _MIN_DIST * scale)
    if periodic and cell is None:  # embed the finite cloud in a cell with generous vacuum
        cell = _random_cell(draw, 1, scale)
        diam = 2 * np.linalg.norm(pos - pos.mean(0), axis=1).max()
        cell = cell * (diam + 3 * scale * draw(st.floats(1.0, 2.0))) / _heights(cell).min()
        pos = pos - pos.mean(0) + 0.5 * cell.sum(0)
    elif cell is None:
        pos = pos + _vec(draw) * scale
    data = Data(pos=torch.from_numpy(np.ascontiguousarray(pos)).to(dtype))
    if species:
        z = draw(st.lists(st.sampled_from(SPECIES), min_size=len(pos), max_size=len(pos)))
        data.z = torch.tensor(z, dtype=torch.long)
    if periodic:
        data.cell = torch.from_numpy(np.ascontiguousarray(cell)).to(dtype)[None]
        data.pbc = torch.ones(1, 3, dtype=torch.bool)
    return data


def point_clouds(kind: str | None = None, min_points: int = 1, max_points: int = 24, species: bool = False,
                 periodic: bool = False, dtype: torch.dtype = torch.float64, scale: float = 1.5):
    """Strategy for point clouds as ``Data(pos=[N, 3], ...)``.

    Parameters
    ----------
    kind : one of ``KINDS`` or None (sample a kind; "random" is the simplest).
        "random": uniform in a ball of radius ``~scale * N**(1/3)`` (with ``periodic=True``:
        uniform in the cell); "clustered": a few gaussian clusters; "collinear"; "planar";
        "symmetric": regular polygon / platonic solid vertices (optionally plus the centre),
        randomly rotated and scaled, so ``N`` is one of the template sizes in range;
        "near_degenerate": collinear or planar plus a ``1e-6 .. 1e-2`` (relative to
        ``scale``) perturbation.  Non-random periodic kinds sit in a cell with vacuum.
    min_points, max_points : inclusive bounds on ``N``.
    species : add ``z`` (atomic numbers from ``SPECIES``).
    periodic : add a well-conditioned random ``cell`` ``[1, 3, 3]`` and ``pbc`` ``[1, 3]``.
    dtype : floating dtype of ``pos`` and ``cell``.
    scale : typical nearest-neighbour spacing; points are at least ``0.3 * scale`` apart.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected None or one of {KINDS}")
    if not 1 <= min_points <= max_points:
        raise ValueError(f"need 1 <= min_points <= max_points, got {min_points}, {max_points}")
    if kind == "symmetric" and not _symmetric_options(min_points, max_points):
        raise ValueError(f"no symmetric template has between {min_points} and {max_points} points")
    return _clouds(kind, min_points, max_points, species, periodic, dtype, scale)


def _kind_strategy(kind: str, **defaults):
    def strategy(**kwargs) -> st.SearchStrategy[Data]:
        return point_clouds(**{"kind": kind, **defaults, **kwargs})
    strategy.__name__ = strategy.__qualname__ = f"{'periodic' if defaults else kind}_clouds"
    strategy.__doc__ = f"``point_clouds(kind={kind!r}, {''.join(f'{k}={v}, ' for k, v in defaults.items())}...)``."
    return strategy


random_clouds = _kind_strategy("random")
clustered_clouds = _kind_strategy("clustered")
collinear_clouds = _kind_strategy("collinear")
planar_clouds = _kind_strategy("planar")
symmetric_clouds = _kind_strategy("symmetric")
near_degenerate_clouds = _kind_strategy("near_degenerate")
periodic_clouds = _kind_strategy("random", periodic=True)  # points filling a periodic cell

# crystals (fcc, bcc, hcp, diamond; perfect or thermal) live in ._crystals
from ._crystals import CRYSTAL_SPECIES, LATTICES, crystals, perfect_crystals, thermal_crystals  # noqa: E402
