"""The chunked frame average of a SiLU layer (``ecse.backbones._token_average``) against
the plain torch composition: values, first and second derivatives, chunk boundaries
anywhere, float64 and float32."""
import pytest
import torch
from torch.nn import functional as F

from ecse.backbones import _token_average
from ecse.backbones._token_average import frame_averaged_silu


def _inputs(dtype, E=7, C=40, d=5, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    shift = torch.randn(E, d, generator=g, dtype=dtype, requires_grad=True)
    geometry = torch.randn(C, k, generator=g, dtype=dtype, requires_grad=True)
    along = torch.randn(d, k, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.rand(C, generator=g, dtype=dtype, requires_grad=True)
    edge = torch.randint(0, E, (C,), generator=g)
    return shift, geometry, along, weight, edge


def _plain(shift, geometry, along, weight, edge):
    hidden = F.silu(shift[edge] + geometry @ along.T)
    return torch.zeros_like(shift).index_add(0, edge, weight[:, None] * hidden)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("chunk_elements", [1, 15, 1 << 17])  # one copy, 3 copies, all copies per chunk
@pytest.mark.parametrize("create_graph", [False, True])  # the chunked and the differentiable backward
def test_values_and_gradients_equal_the_plain_composition(monkeypatch, dtype, tol, chunk_elements, create_graph):
    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", chunk_elements)
    inputs = _inputs(dtype)
    out = frame_averaged_silu(*inputs)
    expected = _plain(*inputs)
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    grads = torch.autograd.grad(out, inputs[:4], upstream, create_graph=create_graph)
    expected_grads = torch.autograd.grad(expected, inputs[:4], upstream)
    for name, got, want in zip(("shift", "geometry", "along", "weight"), grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"gradient of {name}")


def test_only_the_requested_gradients_are_computed():
    shift, geometry, along, weight, edge = _inputs(torch.float64)
    along = along.detach()
    out = frame_averaged_silu(shift, geometry, along, weight, edge)
    g_geometry, = torch.autograd.grad(out.sum(), geometry)
    torch.testing.assert_close(g_geometry, torch.autograd.grad(_plain(shift, geometry, along, weight, edge).sum(),
                                                               geometry)[0])


def test_first_and_second_derivatives_pass_gradcheck(monkeypatch):
    """Second derivatives (forces in a loss) go through the differentiable backward."""
    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", 10)
    shift, geometry, along, weight, edge = _inputs(torch.float64, E=3, C=8, d=2, k=3)
    fn = lambda *x: frame_averaged_silu(*x, edge)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (shift, geometry, along, weight))
    assert torch.autograd.gradgradcheck(fn, (shift, geometry, along, weight))


def test_force_loss_gradient_matches_the_plain_composition():
    """d/d(parameters) of |d out / d geometry|^2, as a force loss takes it."""
    shift, geometry, along, weight, edge = _inputs(torch.float64)

    def loss(fn):
        forces, = torch.autograd.grad(fn(shift, geometry, along, weight, edge).square().sum(), geometry,
                                      create_graph=True)
        return torch.autograd.grad(forces.square().sum(), (shift, along, weight))

    for got, want in zip(loss(frame_averaged_silu), loss(_plain)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
