"""The public continuity probe ``ecse.testing.smoothness_profile`` / ``assert_smooth``."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from ecse.testing import SmoothnessProfile, assert_smooth, orientation_curvatures, smoothness_profile

DTYPES = [torch.float64, torch.float32]
KINK_S = 0.37


def _graph_sum(batch, per_atom):
    index = getattr(batch, "batch", None)
    if index is None:
        return per_atom.sum().reshape(1)
    return torch.zeros(batch.num_graphs, dtype=per_atom.dtype).index_add_(0, index, per_atom)


def harmonic(batch):
    return _graph_sum(batch, 0.5 * batch.pos.pow(2).sum(1))


def _pair_vectors(batch):
    """All intra-graph pairs i < j, minimum image when the graphs carry a cell."""
    index = getattr(batch, "batch", None)
    index = torch.zeros(len(batch.pos), dtype=torch.long) if index is None else index
    i, j = torch.triu_indices(len(batch.pos), len(batch.pos), 1)
    keep = index[i] == index[j]
    i, j = i[keep], j[keep]
    r = batch.pos[j] - batch.pos[i]
    if getattr(batch, "cell", None) is not None:
        cell = batch.cell.reshape(-1, 3, 3)[index[i]]
        frac = torch.linalg.solve(cell.transpose(1, 2), r.unsqueeze(-1)).squeeze(-1)
        r = ((frac - frac.round()).unsqueeze(1) @ cell).squeeze(1)
    return index[i], r


def morse(batch, depth=1.0, a=1.2, r0=1.5):
    graph, r = _pair_vectors(batch)
    e = depth * (1 - torch.exp(-a * (r.norm(dim=1) - r0))).pow(2)
    n = int(graph.max()) + 1 if getattr(batch, "batch", None) is not None else 1
    return torch.zeros(n, dtype=e.dtype).index_add_(0, graph, e)


def kinked(pos0, direction, smooth=morse, height=2.0):
    """``smooth + height * |s - KINK_S|`` along ``pos0 + s * direction``: a slope jump of ``2 * height``."""
    d = direction / direction.norm()

    def model(batch):
        n = len(pos0)
        s = ((batch.pos.reshape(-1, n, 3) - pos0) * d).sum((1, 2))
        return smooth(batch) + height * (s - KINK_S).abs()
    return model


def _cloud(dtype, n=5, seed=0, periodic=False):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.2
    data = Data(pos=pos.to(dtype), z=torch.ones(n, dtype=torch.long))
    if periodic:
        data.cell = (6.0 * torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(3, 3, generator=g,
                                                                               dtype=torch.float64)).to(dtype)[None]
        data.pbc = torch.ones(1, 3, dtype=torch.bool)
    direction = torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype)
    return data, direction


@pytest.mark.parametrize("dtype", DTYPES)
def test_harmonic_profile_is_exact(dtype):
    data, direction = _cloud(dtype)
    prof = smoothness_profile(harmonic, data, direction, span=(-0.5, 0.5), points=21)
    assert isinstance(prof, SmoothnessProfile) and prof.energy.dtype == dtype
    d = direction / direction.norm()
    expected_slope = (data.pos * d).sum() + prof.s  # E = |pos0 + s d|^2 / 2
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(prof.slope, expected_slope, atol=tol, rtol=0)
    torch.testing.assert_close(prof.force, -expected_slope, atol=tol, rtol=0)
    torch.testing.assert_close(prof.curvature, torch.ones_like(prof.s), atol=100 * tol, rtol=0)
    torch.testing.assert_close(prof.energy, 0.5 * (data.pos + prof.s[:, None, None] * d).pow(2).sum((1, 2)),
                               atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic, height", [(False, 2.0), (True, 2.0), (False, -2.0)])
def test_probe_finds_a_known_kink(dtype, periodic, height):
    data, direction = _cloud(dtype, periodic=periodic)
    model = kinked(data.pos, direction, height=height)
    prof = smoothness_profile(model, data, direction, span=1.0, points=41)
    h = 1.0 / 40
    assert abs(prof.worst_s - KINK_S) <= h + 1e-6, str(prof)
    assert prof.max_slope_jump == pytest.approx(4.0, rel=0.05)  # 2 |height|, plus the smooth part's change
    assert prof.worst_curvature * height > 4.0 / (2 * h) * 0.8  # convex (concave) kink: curvature > 0 (< 0)
    # a finer grid makes the kink's curvature grow; a smooth model's would not
    fine = smoothness_profile(model, data, direction, span=(0.3, 0.45), points=41)
    assert abs(fine.worst_curvature) > 5 * abs(prof.worst_curvature)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic", [False, True])
def test_slope_matches_finite_differences_of_energy(dtype, periodic):
    data, direction = _cloud(dtype, periodic=periodic)
    prof = smoothness_profile(morse, data, direction, span=(-0.2, 0.2), points=81)
    h = float(prof.s[1] - prof.s[0])
    fd = (prof.energy[2:] - prof.energy[:-2]) / (2 * h)
    scale = prof.slope.abs().max()
    tol = 1e-4 if dtype == torch.float64 else 3e-2
    assert ((fd - prof.slope[1:-1]).abs().max() / scale) < tol
    assert prof.max_slope_jump < 0.1 * scale  # smooth: neighbouring slopes are close


def test_batched_chunked_and_single_calls_agree():
    data, direction = _cloud(torch.float64, periodic=True)
    calls = []

    def counted(batch):
        calls.append(batch.num_graphs if getattr(batch, "batch", None) is not None else 1)
        return morse(batch)

    full = smoothness_profile(counted, data, direction, points=12, batch_size=None)
    assert calls == [12]  # one Batch of all displaced copies
    calls.clear()
    default = smoothness_profile(counted, data, direction, points=12)
    assert len(calls) == 12 and max(calls) == 1  # default: one point per call (bounded memory)
    calls.clear()
    chunked = smoothness_profile(counted, data, direction, points=12, batch_size=5)
    assert calls == [5, 5, 2]
    calls.clear()
    single = smoothness_profile(counted, data, direction, points=12, batched=False)
    assert calls == [1] * 12
    calls.clear()
    from_batch = smoothness_profile(counted, Batch.from_data_list([data]), direction, points=12, batch_size=None)
    assert calls == [12]
    for other in (default, chunked, single, from_batch):
        torch.testing.assert_close(other.energy, full.energy)
        torch.testing.assert_close(other.slope, full.slope)


def test_user_path_and_default_direction():
    data, _ = _cloud(torch.float64)
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    def rotate(s):  # rotate the whole cloud by angle s about z: the energy is constant
        c, si = torch.cos(s), torch.sin(s)
        R = torch.stack([torch.stack([c, -si, 0 * s]), torch.stack([si, c, 0 * s]), axis.to(s.dtype)])
        return data.pos @ R.T

    prof = smoothness_profile(morse, data, span=2 * math.pi, points=17, path=rotate)
    assert (prof.energy - prof.energy[0]).abs().max() < 1e-12 and prof.slope.abs().max() < 1e-12
    one = smoothness_profile(harmonic, data, points=9, seed=3)
    two = smoothness_profile(harmonic, data, points=9, seed=3)
    three = smoothness_profile(harmonic, data, points=9, seed=4)
    torch.testing.assert_close(one.slope, two.slope)
    assert not torch.allclose(one.slope, three.slope)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic", [False, True])
def test_assert_smooth(dtype, periodic):
    data, direction = _cloud(dtype, periodic=periodic)
    ratio = lambda b: 1.5 * morse(b)  # noqa: E731 - smooth, 1.5 times the reference's curvature
    mine, ref = assert_smooth(ratio, morse, data, direction, span=1.0, points=41)
    assert abs(mine.worst_curvature) == pytest.approx(1.5 * abs(ref.worst_curvature), rel=1e-3)
    with pytest.raises(AssertionError, match=r"not smooth: max \|d2E/ds2\|.*max_ratio=3.0"):
        assert_smooth(kinked(data.pos, direction), morse, data, direction, span=1.0, points=41)
    with pytest.raises(AssertionError, match="max_ratio=1.2"):
        assert_smooth(ratio, morse, data, direction, span=1.0, points=41, max_ratio=1.2)


def x_quartic(batch):
    """``sum_i x_i**4``: the curvature along a path depends on the path's orientation."""
    return _graph_sum(batch, batch.pos[:, 0].pow(4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic", [False, True])
def test_orientation_curvatures(dtype, periodic):
    data, direction = _cloud(dtype, periodic=periodic)
    # an invariant model (Morse pairs, minimum image) has one curvature in every orientation
    invariant = orientation_curvatures(morse, data, direction, span=1.0, points=41, rotations=5)
    assert invariant.shape == (6,)
    torch.testing.assert_close(invariant, invariant[:1].expand(6), rtol=1e-3 if dtype == torch.float32 else 1e-9,
                               atol=0.0)
    # the first value is the given orientation's, as smoothness_profile gives it
    alone = smoothness_profile(morse, data, direction, span=1.0, points=41)
    assert float(invariant[0]) == pytest.approx(abs(alone.worst_curvature), rel=1e-6)
    # an anisotropic one does not; moving every atom along y, x**4 has no curvature at all
    along_y = torch.zeros_like(direction)
    along_y[:, 1] = 1.0
    spread = orientation_curvatures(x_quartic, data, along_y, span=1.0, points=41, rotations=5)
    assert float(spread[0]) < 1e-3 < float(spread[1:].min())
    with pytest.raises(ValueError, match="straight path"):
        orientation_curvatures(morse, data, path=lambda s: data.pos)


def test_assert_smooth_against_the_reference_in_several_orientations():
    """An exactly invariant model against an anisotropic reference whose curvature happens to
    vanish in the lab frame along this path: only the orientations' yardstick is fair."""
    data, _ = _cloud(torch.float64)
    along_y = torch.zeros_like(data.pos)
    along_y[:, 1] = 1.0
    isotropic = lambda b: _graph_sum(b, b.pos.pow(2).sum(1).pow(2) / 5.0)  # noqa: E731 - invariant
    with pytest.raises(AssertionError, match=r"reference's 0 \(at s"):
        assert_smooth(isotropic, x_quartic, data, along_y, span=1.0, points=41)
    mine, ref = assert_smooth(isotropic, x_quartic, data, along_y, span=1.0, points=41, orientations=8,
                              max_ratio=3.0)
    assert abs(ref.worst_curvature) < 1e-3  # the returned reference profile is the given orientation's
    with pytest.raises(AssertionError, match="largest over 9 orientations"):
        assert_smooth(isotropic, x_quartic, data, along_y, span=1.0, points=41, orientations=8, max_ratio=0.01)


@pytest.mark.parametrize("kwargs, match", [
    (dict(points=2), "points >= 3"),
    (dict(span=(1.0, 0.0)), "start < stop"),
    (dict(direction=torch.zeros(5, 3)), "non-zero"),
    (dict(direction=torch.ones(4, 3)), "expected pos's"),
    (dict(path=lambda s: torch.zeros(3, 3)), "shape"),
    (dict(data=None), "one structure"),
])
def test_bad_input(kwargs, match):
    data, _ = _cloud(torch.float64)
    if "data" in kwargs:  # a Batch of two structures
        kwargs["data"] = Batch.from_data_list([data, data])
    with pytest.raises(ValueError, match=match):
        smoothness_profile(harmonic, **{"data": data, **kwargs})


def test_model_that_does_not_batch_gets_a_clear_error():
    data, _ = _cloud(torch.float64)
    with pytest.raises(ValueError, match="batched=False"):
        smoothness_profile(lambda b: harmonic(b).sum(), data, points=5)
