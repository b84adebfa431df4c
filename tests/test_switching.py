"""Smooth functions: values, smoothness at the switching points, NaN-free gradients."""
import math

import pytest
import torch

from ecse.switching import (cutoff_function, segment_smooth_max, smooth_max_pair, step_up,
                            step_up_linear, stitch)

from . import reference_impl as ref


def test_values_match_reference_formulas():
    r = torch.linspace(-0.5, 6.0, 301, dtype=torch.float64)
    mine = cutoff_function(r, 5.0, 0.7)
    expected = torch.tensor([ref.fc(float(x), 5.0, 0.7) for x in r], dtype=torch.float64)
    assert torch.allclose(mine, expected, atol=1e-15)
    s = torch.linspace(0, 1, 301, dtype=torch.float64)
    assert torch.allclose(step_up(s, 0.2, 0.15), torch.tensor([ref.q(float(x), 0.2, 0.15) for x in s], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(step_up_linear(s, 0.05, 0.15),
                          torch.tensor([ref.q_lin(float(x), 0.05, 0.15) for x in s], dtype=torch.float64), atol=1e-15)


def test_limits_and_monotonicity():
    x = torch.linspace(-1.5, 1.5, 1001, dtype=torch.float64)
    y = stitch(x)
    assert y[0] == 1 and y[-1] == -1
    assert bool((y[1:] <= y[:-1]).all())
    assert float(stitch(torch.tensor(0.0))) == 0.0
    assert float(cutoff_function(torch.tensor(4.925, dtype=torch.float64), 5.0, 0.15)) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("edge", [-1.0, 1.0])
def test_all_derivatives_vanish_at_the_ends(edge):
    # finite differences of order 1..3 shrink faster than any power near the edge
    x = torch.tensor(edge, dtype=torch.float64, requires_grad=True)
    y = stitch(x)
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    (g2,) = torch.autograd.grad(g, x)
    assert g == 0 and g2 == 0
    for h in (1e-1, 5e-2, 2.5e-2):
        inner = edge - math.copysign(h, edge)
        d = abs(float(stitch(torch.tensor(inner, dtype=torch.float64))) - float(y))
        assert d < h**4  # flat to high order


def test_gradients_are_finite_everywhere():
    r = torch.tensor([0.0, 4.85, 4.9, 5.0, 7.0], dtype=torch.float64, requires_grad=True)
    for f in (lambda r: cutoff_function(r, 5.0, 0.15), lambda r: step_up(r, 4.85, 0.15),
              lambda r: step_up_linear(r, 4.85, 0.15)):
        (g,) = torch.autograd.grad(f(r).sum(), r)
        assert torch.isfinite(g).all()


def test_derivative_is_continuous_across_the_switch():
    # dense scan of the derivative: neighbouring samples differ by O(step)
    for step in (1e-3, 1e-4):
        r = torch.arange(4.7, 5.1, step, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(cutoff_function(r, 5.0, 0.15).sum(), r)
        jumps = (g[1:] - g[:-1]).abs().max()
        assert jumps < 2000 * step


def test_smooth_max_pair_and_segments_against_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(50, generator=g, dtype=torch.float64) * 5, torch.rand(50, generator=g, dtype=torch.float64) * 5
    expected = torch.tensor([ref.smooth_max([x, y], [1, 1], 5.0) for x, y in zip(a.tolist(), b.tolist())], dtype=torch.float64)
    assert torch.allclose(smooth_max_pair(a, b, 5.0), expected, atol=1e-13)
    assert bool((smooth_max_pair(a, b, 5.0) + ref.W0_INV_E / 5 >= torch.maximum(a, b) - 1e-14).all())
    values = torch.rand(40, generator=g, dtype=torch.float64) * 3
    weights = torch.rand(40, generator=g, dtype=torch.float64)
    weights[::5] = 0
    index = torch.sort(torch.randint(0, 6, (40,), generator=g)).values
    for beta in (5.0, -5.0, 1.0):
        mine = segment_smooth_max(values, weights, index, 7, beta)
        for s in range(7):
            m = index == s
            expected = ref.smooth_max(values[m].tolist(), weights[m].tolist(), beta)
            assert float(mine[s]) == pytest.approx(expected, abs=1e-13)


def test_segment_smooth_max_is_stable_in_float32_and_handles_empty_weight():
    values = torch.tensor([100.0, 101.0, 3.0], dtype=torch.float32)
    weights = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float32)
    index = torch.tensor([0, 0, 1])
    out = segment_smooth_max(values, weights, index, 2, 5.0)
    assert torch.isfinite(out).all() and out[1] == 0
    assert 100.9 < float(out[0]) < 101.0
