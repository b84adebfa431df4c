"""Labelled synthetic 3D shapes for demos and tests.

No ModelNet/ShapeNet download is needed: :func:`make_shapes` samples point
clouds uniformly on the surfaces of simple parametric solids (sphere, box,
cylinder, cone, torus, ellipsoid, capsule, square pyramid) with random sizes
and aspect ratios.  Every cloud is centred on the centroid of its surface and
left in a *canonical* orientation (symmetry axis along ``z``, longest extent
along ``x``), so that a model trained on these clouds has never seen a
rotation -- which is exactly what the rotation demo needs.

All sampling is vectorised over points and driven by a single
:class:`torch.Generator`, so the result is deterministic given ``seed``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["SHAPE_CLASSES", "make_shapes", "sample_shape"]

SHAPE_CLASSES: tuple[str, ...] = (
    "sphere",
    "box",
    "cylinder",
    "cone",
    "torus",
    "ellipsoid",
    "capsule",
    "pyramid",
)

_F64 = torch.float64


def _u(n: int, g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=_F64)


def _unit_sphere(n: int, g: torch.Generator) -> Tensor:
    v = torch.randn(n, 3, generator=g, dtype=_F64)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _disk(n: int, radius: float, z: float, g: torch.Generator) -> Tensor:
    r = radius * _u(n, g).sqrt()
    t = _u(n, g, 0.0, 2 * math.pi)
    return torch.stack([r * t.cos(), r * t.sin(), torch.full_like(r, z)], dim=1)


def _triangles(n: int, a: Tensor, b: Tensor, c: Tensor, g: torch.Generator) -> Tensor:
    """Uniform points on triangles ``(a, b, c)`` given per point (each [n, 3])."""
    r1 = _u(n, g).sqrt().unsqueeze(1)
    r2 = _u(n, g).unsqueeze(1)
    return (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c


def _mixture(n: int, areas: Sequence[float], g: torch.Generator) -> list[int]:
    """Number of points for each surface component, proportional to its area."""
    w = torch.tensor(list(areas), dtype=_F64)
    idx = torch.multinomial(w / w.sum(), n, replacement=True, generator=g)
    return torch.bincount(idx, minlength=len(areas)).tolist()


def _sphere(n: int, g: torch.Generator) -> Tensor:
    return _u(1, g, 0.6, 1.0) * _unit_sphere(n, g)


def _box(n: int, g: torch.Generator) -> Tensor:
    # half extents sorted descending along x, y, z (canonical orientation)
    h = _u(3, g, 0.3, 1.0).sort(descending=True).values
    areas = [h[1] * h[2]] * 2 + [h[0] * h[2]] * 2 + [h[0] * h[1]] * 2
    parts = []
    for face, m in enumerate(_mixture(n, [float(a) for a in areas], g)):
        axis, sign = face // 2, (1.0 if face % 2 == 0 else -1.0)
        p = (2 * torch.rand(m, 3, generator=g, dtype=_F64) - 1) * h
        p[:, axis] = sign * h[axis]
        parts.append(p)
    return torch.cat(parts)


def _cylinder(n: int, g: torch.Generator) -> Tensor:
    r, hh = float(_u(1, g, 0.3, 0.7)), float(_u(1, g, 0.3, 1.0))
    m_side, m_top, m_bot = _mixture(n, [4 * math.pi * r * hh, math.pi * r * r, math.pi * r * r], g)
    t = _u(m_side, g, 0.0, 2 * math.pi)
    side = torch.stack([r * t.cos(), r * t.sin(), _u(m_side, g, -hh, hh)], dim=1)
    return torch.cat([side, _disk(m_top, r, hh, g), _disk(m_bot, r, -hh, g)])


def _apex_solid_centroid(lateral: float, base: float, height: float) -> float:
    """Height (above the base) of the surface centroid of a cone or pyramid."""
    return (lateral * height / 3.0) / (lateral + base)


def _cone(n: int, g: torch.Generator) -> Tensor:
    r, h = float(_u(1, g, 0.4, 0.9)), float(_u(1, g, 0.8, 1.8))
    lateral, base = math.pi * r * math.hypot(r, h), math.pi * r * r
    m_side, m_base = _mixture(n, [lateral, base], g)
    s = _u(m_side, g).sqrt()  # fraction of the way from apex to base
    t = _u(m_side, g, 0.0, 2 * math.pi)
    side = torch.stack([r * s * t.cos(), r * s * t.sin(), h * (1 - s)], dim=1)
    pts = torch.cat([side, _disk(m_base, r, 0.0, g)])
    pts[:, 2] -= _apex_solid_centroid(lateral, base, h)
    return pts


def _torus(n: int, g: torch.Generator) -> Tensor:
    big = float(_u(1, g, 0.5, 0.8))
    small = big * float(_u(1, g, 0.2, 0.6))
    k = small / big
    # tube angle v has density ∝ 1 + k cos v: invert the CDF with Newton steps
    m = _u(n, g, 0.0, 2 * math.pi)
    v = m.clone()
    for _ in range(30):
        v = v - (v + k * v.sin() - m) / (1 + k * v.cos())
    u = _u(n, g, 0.0, 2 * math.pi)
    rho = big + small * v.cos()
    return torch.stack([rho * u.cos(), rho * u.sin(), small * v.sin()], dim=1)


def _ellipsoid(n: int, g: torch.Generator) -> Tensor:
    a = float(_u(1, g, 0.8, 1.0))
    b, c = a * float(_u(1, g, 0.45, 0.8)), a * float(_u(1, g, 0.2, 0.45))
    ax = torch.tensor([a, b, c], dtype=_F64)
    bc, ac, ab = ax[1] * ax[2], ax[0] * ax[2], ax[0] * ax[1]
    gmax = float(max(bc, ac, ab))
    out, have = [], 0
    while have < n:  # rejection sampling by the area element of the sphere->ellipsoid map
        p = _unit_sphere(4 * n, g)
        dens = ((bc * p[:, 0]) ** 2 + (ac * p[:, 1]) ** 2 + (ab * p[:, 2]) ** 2).sqrt()
        keep = _u(4 * n, g) * gmax < dens
        out.append(p[keep] * ax)
        have += int(keep.sum())
    return torch.cat(out)[:n]


def _capsule(n: int, g: torch.Generator) -> Tensor:
    r, hh = float(_u(1, g, 0.25, 0.5)), float(_u(1, g, 0.3, 0.7))
    m_side, m_caps = _mixture(n, [4 * math.pi * r * hh, 4 * math.pi * r * r], g)
    t = _u(m_side, g, 0.0, 2 * math.pi)
    side = torch.stack([r * t.cos(), r * t.sin(), _u(m_side, g, -hh, hh)], dim=1)
    caps = r * _unit_sphere(m_caps, g)
    caps[:, 2] += torch.where(caps[:, 2] >= 0, hh, -hh)
    return torch.cat([side, caps])


def _pyramid(n: int, g: torch.Generator) -> Tensor:
    a, h = float(_u(1, g, 0.4, 0.9)), float(_u(1, g, 0.8, 1.8))
    face_area = a * math.hypot(a, h)  # (1/2) * base edge 2a * slant height
    base_area = 4 * a * a
    counts = _mixture(n, [face_area] * 4 + [base_area], g)
    corners = torch.tensor([[a, a, 0], [-a, a, 0], [-a, -a, 0], [a, -a, 0]], dtype=_F64)
    apex = torch.tensor([0.0, 0.0, h], dtype=_F64)
    parts = []
    for f in range(4):
        m = counts[f]
        parts.append(_triangles(m, apex.expand(m, 3), corners[f].expand(m, 3),
                                corners[(f + 1) % 4].expand(m, 3), g))
    base = (2 * torch.rand(counts[4], 3, generator=g, dtype=_F64) - 1) * a
    base[:, 2] = 0.0
    pts = torch.cat(parts + [base])
    pts[:, 2] -= _apex_solid_centroid(4 * face_area, base_area, h)
    return pts


_SAMPLERS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "sphere": _sphere,
    "box": _box,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
    "ellipsoid": _ellipsoid,
    "capsule": _capsule,
    "pyramid": _pyramid,
}


def sample_shape(name: str, n_points: int, generator: torch.Generator) -> Tensor:
    """Sample one noise-free shape of class ``name``.

    Parameters
    ----------
    name : str
        One of :data:`SHAPE_CLASSES`.
    n_points : int
        Number of surface points.
    generator : torch.Generator
        Source of randomness (sizes, proportions and point positions).

    Returns
    -------
    Tensor
        ``[n_points, 3]`` float64 points, uniformly distributed on the
        surface, in canonical orientation, centred on the surface centroid,
        in random order.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown shape class {name!r}; choose from {SHAPE_CLASSES}")
    pts = _SAMPLERS[name](n_points, generator)
    return pts[torch.randperm(n_points, generator=generator)]


def make_shapes(
    n_per_class: int,
    n_points: int = 128,
    classes: Sequence[str] | None = None,
    noise: float = 0.01,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[Data]:
    """Generate a labelled set of synthetic, canonically oriented shapes.

    Parameters
    ----------
    n_per_class : int
        Number of clouds per class.
    n_points : int, default 128
        Points per cloud.
    classes : sequence of str, optional
        Subset (and order) of :data:`SHAPE_CLASSES` to use; labels ``y`` are
        indices into this sequence. Defaults to all classes.
    noise : float, default 0.01
        Standard deviation of isotropic gaussian noise added to each point.
    seed : int, default 0
        Seed; the output is a deterministic function of all arguments.
        Sampling happens in float64, so ``dtype`` only changes the storage.
    dtype : torch.dtype, default torch.float32
        Floating dtype of ``pos``.

    Returns
    -------
    list of torch_geometric.data.Data
        ``n_per_class * len(classes)`` clouds, classes interleaved
        (``c0, c1, ..., c0, c1, ...``), each with ``pos`` ``[n_points, 3]``
        and ``y`` (long tensor of shape ``[1]``).
    """
    classes = tuple(SHAPE_CLASSES if classes is None else classes)
    for c in classes:
        if c not in _SAMPLERS:
            raise ValueError(f"unknown shape class {c!r}; choose from {SHAPE_CLASSES}")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(n_per_class):
        for label, name in enumerate(classes):
            pos = sample_shape(name, n_points, g)
            if noise > 0:
                pos = pos + noise * torch.randn(pos.shape, generator=g, dtype=_F64)
            out.append(Data(pos=pos.to(dtype), y=torch.tensor([label], dtype=torch.long)))
    return out
