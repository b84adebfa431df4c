"""The axial readout (ecse/axial.py) against closed forms, and its covariance."""
import pytest
import torch

from ecse.axial import axial_covariant, axial_frames, axial_projection
from ecse.covariant import OutputSpec
from ecse.testing import random_rotation


def _directions(dtype, n=7, seed=0):
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    d[0] = torch.tensor([1.0, 0.0, 0.0], dtype=dtype)  # the helper-axis switch of axial_frames
    d[1] = torch.tensor([0.0, 0.0, -2.0], dtype=dtype)
    return d


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_axial_frames_are_proper_and_aligned(dtype, tol):
    d = _directions(dtype)
    frames = axial_frames(d)
    eye = torch.eye(3, dtype=dtype).expand(len(d), 3, 3)
    assert torch.allclose(frames.transpose(1, 2) @ frames, eye, atol=tol)
    assert torch.allclose(torch.linalg.det(frames), torch.ones(len(d), dtype=dtype), atol=tol)
    assert torch.allclose(frames[:, :, 2], d / d.norm(dim=1, keepdim=True), atol=tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_closed_forms_of_vectors_and_rank2(dtype, tol):
    d = _directions(dtype)
    n = d / d.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(len(d), 3, generator=gen, dtype=dtype)
    assert torch.allclose(axial_covariant(v, d, OutputSpec("vector")), v[:, 2:] * n, atol=tol)
    t = torch.randn(len(d), 3, 3, generator=gen, dtype=dtype)
    a, c = 0.5 * (t[:, 0, 0] + t[:, 1, 1]), t[:, 2, 2]
    nn = n[:, :, None] * n[:, None, :]
    expected = a[:, None, None] * (torch.eye(3, dtype=dtype) - nn) + c[:, None, None] * nn
    for kind in ("rank2", "rank2-symmetric"):
        assert torch.allclose(axial_covariant(t, d, OutputSpec(kind)), expected, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("kind", ["vector", "rank2", "1x0e+1x1o+1x2e+1x1e+1x3o+1x0o"])
def test_axial_readout_is_covariant_under_rotations_and_reflections(kind, dtype, tol):
    spec = OutputSpec(kind)
    d = _directions(dtype, seed=2)
    y = torch.randn(len(d), *spec.component_shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    out = axial_covariant(y, d, spec)
    for sign in (1.0, -1.0):
        R = sign * random_rotation(torch.Generator().manual_seed(4), torch.float64).to(dtype)
        moved = axial_covariant(y, d @ R.T, spec)  # the invariant per-edge values do not move
        expected = spec.act(out, R.expand(len(d), 3, 3))
        assert float((moved - expected).abs().max()) <= tol * max(1.0, float(out.abs().max()))


def test_projection_keeps_only_the_axis_invariant_parts():
    spec = OutputSpec("1x1e+1x0o+1x1o")  # axial vector and pseudoscalar: flipped by the mirror -> 0
    y = torch.arange(1.0, 8.0, dtype=torch.float64)[None]
    p = axial_projection(y, spec)
    assert torch.allclose(p[0, :4], torch.zeros(4, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(p[0, 4:], torch.tensor([0.0, 0.0, 7.0], dtype=torch.float64), atol=1e-14)
