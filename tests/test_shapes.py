"""Tests for the synthetic shape set in :mod:`ecse.demos.shapes`."""

import math

import pytest
import torch

from ecse.demos.shapes import SHAPE_CLASSES, make_shapes, sample_shape
from ecse.rotations import random_rotations


def _one(name, n_points=4000, seed=0, noise=0.0):
    (d,) = make_shapes(1, n_points, classes=[name], noise=noise, seed=seed, dtype=torch.float64)
    return d.pos


def test_classes_and_labels():
    assert len(SHAPE_CLASSES) >= 6
    assert len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)
    data = make_shapes(3, n_points=64, seed=1)
    assert len(data) == 3 * len(SHAPE_CLASSES)
    ys = torch.cat([d.y for d in data])
    assert ys.dtype == torch.long
    assert torch.bincount(ys).tolist() == [3] * len(SHAPE_CLASSES)
    for d in data:
        assert d.pos.shape == (64, 3) and d.pos.dtype == torch.float32
        assert d.y.shape == (1,)
        assert torch.isfinite(d.pos).all()
        assert d.pos.abs().max() < 2.0


def test_class_subset_labels_follow_given_order():
    data = make_shapes(2, n_points=32, classes=["torus", "sphere"], seed=0)
    assert [int(d.y) for d in data] == [0, 1, 0, 1]
    r = data[1].pos.norm(dim=1)
    assert r.std() < 0.05  # the second class is the sphere


def test_unknown_class_raises():
    with pytest.raises(ValueError):
        make_shapes(1, classes=["dodecahedron"])
    with pytest.raises(ValueError):
        sample_shape("dodecahedron", 10, torch.Generator())


def test_deterministic_given_seed():
    a = make_shapes(2, n_points=50, seed=7)
    b = make_shapes(2, n_points=50, seed=7)
    c = make_shapes(2, n_points=50, seed=8)
    for x, y in zip(a, b):
        assert torch.equal(x.pos, y.pos) and torch.equal(x.y, y.y)
    assert not any(torch.allclose(x.pos, z.pos) for x, z in zip(a, c))


def test_dtype_only_changes_storage():
    a = make_shapes(1, n_points=40, seed=3, dtype=torch.float32)
    b = make_shapes(1, n_points=40, seed=3, dtype=torch.float64)
    for x, y in zip(a, b):
        assert y.pos.dtype == torch.float64
        assert torch.equal(x.pos, y.pos.float())


def test_instances_vary_in_size_and_proportion():
    data = make_shapes(6, n_points=256, classes=["box"], noise=0.0, seed=0)
    ext = torch.stack([d.pos.abs().amax(0) for d in data])
    assert ext.std(0).min() > 0.02  # sizes differ between instances
    ratios = ext[:, 2] / ext[:, 0]
    assert ratios.std() > 0.02  # and so do the aspect ratios


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_centred_on_surface_centroid(name):
    pos = _one(name, n_points=20000, seed=2)
    assert pos.mean(0).abs().max() < 0.03


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_noise_level(noise):
    pos = _one("sphere", n_points=5000, seed=4, noise=noise)
    radial_std = pos.norm(dim=1).std()
    assert radial_std == pytest.approx(noise, abs=0.01) if noise else radial_std < 1e-12


def test_sphere_on_surface():
    r = _one("sphere").norm(dim=1)
    assert (r - r.mean()).abs().max() < 1e-12
    assert 0.6 <= r.mean() <= 1.0
    # uniform on the sphere: z is uniform in [-r, r]
    big = _one("sphere", n_points=20000, seed=5)
    z = big[:, 2] / big.norm(dim=1).mean()
    assert (z > 0.5).double().mean().item() == pytest.approx(0.25, abs=0.02)


def test_box_on_faces():
    pos = _one("box")
    h = pos.abs().amax(0)
    assert (h[0] >= h[1]) and (h[1] >= h[2])  # canonical orientation
    gap = (h - pos.abs()).amin(dim=1)  # distance to the nearest face plane
    assert gap.abs().max() < 1e-12
    assert (pos.abs() <= h + 1e-12).all()


def test_cylinder_on_surface():
    pos = _one("cylinder")
    rho = pos[:, :2].norm(dim=1)
    r, hh = rho.max(), pos[:, 2].abs().max()
    on_side = (rho - r).abs() < 1e-12
    on_cap = (pos[:, 2].abs() - hh).abs() < 1e-12
    assert (on_side | on_cap).all()
    frac_side = on_side.double().mean().item()
    expect = 4 * math.pi * r * hh / (4 * math.pi * r * hh + 2 * math.pi * r * r)
    assert frac_side == pytest.approx(float(expect), abs=0.03)


@pytest.mark.parametrize("name", ["cone", "pyramid"])
def test_cone_and_pyramid_on_surface(name):
    pos = _one(name)
    z = pos[:, 2]
    radial = pos[:, :2].norm(dim=1) if name == "cone" else pos[:, :2].abs().amax(1)
    on_base = (z - z.min()).abs() < 1e-12
    assert on_base.any() and (~on_base).sum() > 100
    # lateral points: the radial coordinate is an affine function of z
    zl, rl = z[~on_base], radial[~on_base]
    A = torch.stack([zl, torch.ones_like(zl)], dim=1)
    coef = torch.linalg.lstsq(A, rl.unsqueeze(1)).solution
    assert (A @ coef - rl.unsqueeze(1)).abs().max() < 1e-10
    assert coef[0] < 0  # narrowing towards the apex (+z)
    assert (radial[on_base] <= radial.max() + 1e-12).all()


def test_torus_on_surface():
    pos = _one("torus", n_points=20000)
    rho = pos[:, :2].norm(dim=1)
    big, small = (rho.max() + rho.min()) / 2, (rho.max() - rho.min()) / 2
    dev = ((rho - big) ** 2 + pos[:, 2] ** 2).sqrt() - small
    assert dev.abs().max() < 2e-3  # big, small estimated from the extremes
    # uniform on the surface: the outer half (rho > big) holds more than half the area
    k = float(small / big)
    outer = (rho > big).double().mean().item()
    assert outer == pytest.approx(0.5 + k / math.pi, abs=0.02)


def test_ellipsoid_on_surface():
    pos = _one("ellipsoid")
    # least-squares fit of x^2/a^2 + y^2/b^2 + z^2/c^2 = 1 must be exact
    A = pos**2
    inv = torch.linalg.lstsq(A, torch.ones(len(pos), 1, dtype=pos.dtype)).solution
    assert (A @ inv - 1).abs().max() < 1e-10
    a, b, c = inv.squeeze(1).rsqrt()
    assert a > b > c  # canonical orientation, not a sphere


def test_capsule_on_surface():
    pos = _one("capsule")
    rho, az = pos[:, :2].norm(dim=1), pos[:, 2].abs()
    r = rho.max()
    on_side = (rho - r).abs() < 1e-12
    # cap points lie on spheres of radius r centred at (0, 0, +-hh)
    hh = az[~on_side] - (r**2 - rho[~on_side] ** 2).clamp_min(0).sqrt()
    assert (hh - hh.mean()).abs().max() < 1e-7
    assert (az[on_side] <= hh.mean() + 1e-7).all()
    assert on_side.sum() > 100 and (~on_side).sum() > 100


def test_random_rotations():
    g = torch.Generator().manual_seed(0)
    R = random_rotations(500, g, dtype=torch.float64)
    assert R.shape == (500, 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    assert (R @ R.transpose(1, 2) - eye).abs().max() < 1e-12
    assert (torch.linalg.det(R) - 1).abs().max() < 1e-12
    # Haar measure: E[R] = 0, E[trace R] = 0
    assert R.mean(0).abs().max() < 0.1
    assert random_rotations(3).dtype == torch.float32
    R2 = random_rotations(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(R, R2)
