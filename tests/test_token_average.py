"""The chunked frame average of a SiLU layer (``ecse.backbones._token_average``) against
the plain torch composition: values, first, second and third derivatives, chunk
boundaries anywhere, float64 and float32, and the memory of training through it."""
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


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
@pytest.mark.parametrize("chunk_elements", [1, 15, 1 << 17])
def test_force_loss_gradient_matches_the_plain_composition(monkeypatch, dtype, tol, chunk_elements):
    """d/d(inputs) of |d out / d geometry|^2 + |d out / d weight|^2, as a force loss takes
    it (the chunked second derivatives)."""
    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", chunk_elements)
    shift, geometry, along, weight, edge = _inputs(dtype)
    upstream = torch.randn(shift.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)

    def loss(fn):
        out = fn(shift, geometry, along, weight, edge)
        forces, slope = torch.autograd.grad((out * upstream).sum(), (geometry, weight), create_graph=True)
        return torch.autograd.grad(forces.square().sum() + slope.square().sum(), (shift, geometry, along, weight))

    for name, got, want in zip(("shift", "geometry", "along", "weight"), loss(frame_averaged_silu), loss(_plain)):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"second derivative, {name}")


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (3,), (1, 3), (0, 1, 2, 3)])
def test_every_cotangent_of_the_backward(monkeypatch, wrt):
    """Each gradient of the backward pass alone, and as a function of the upstream gradient
    too (gradients of gradients with respect to the upstream gradient, as double
    backward takes them), in chunks of 3 copies."""
    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", 15)
    inputs = _inputs(torch.float64)
    upstream = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64,
                           requires_grad=True)
    tangents = [torch.randn(inputs[i].shape, generator=torch.Generator().manual_seed(11 + i), dtype=torch.float64)
                for i in wrt]

    def second(fn):
        grads = torch.autograd.grad(fn(*inputs), [inputs[i] for i in wrt], upstream, create_graph=True)
        total = sum((g * t).sum() for g, t in zip(grads, tangents))
        return torch.autograd.grad(total, [*inputs[:4], upstream], allow_unused=True, materialize_grads=True)

    for name, got, want in zip(("shift", "geometry", "along", "weight", "upstream"), second(frame_averaged_silu),
                               second(_plain)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"{wrt}: {name}")


def test_third_derivatives_match_the_plain_composition(monkeypatch):
    """Differentiating the second derivatives once more goes through the plain formulas."""
    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", 10)
    shift, geometry, along, weight, edge = _inputs(torch.float64, E=3, C=8, d=2, k=3)
    fn = lambda *x: frame_averaged_silu(*x, edge)  # noqa: E731

    def third(f):
        out = f(shift, geometry, along, weight).sin().sum()
        g, = torch.autograd.grad(out, geometry, create_graph=True)
        h, = torch.autograd.grad(g.square().sum(), weight, create_graph=True)
        return torch.autograd.grad(h.square().sum(), (shift, along))

    for got, want in zip(third(fn), third(lambda *x: _plain(*x, edge))):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def test_training_through_the_average_keeps_no_copy_sized_tensor():
    """A force-loss step keeps no ``[copies, d]`` tensor between the passes (about 30 of
    them, one per temporary, on the plain composition's double backward)."""
    from torch.autograd.graph import saved_tensors_hooks

    shift, geometry, along, weight, edge = _inputs(torch.float64, E=50, C=20000, d=64, k=4)
    largest = []

    def pack(t):
        largest.append(t.numel())
        return t

    def loss(fn):
        with saved_tensors_hooks(pack, lambda t: t):
            out = fn(shift, geometry, along, weight, edge)
            forces, = torch.autograd.grad(out.square().sum(), geometry, create_graph=True)
            total = forces.square().sum()
        torch.autograd.grad(total, (shift, along, weight))
        return max(largest)

    assert loss(_plain) >= 20000 * 64
    largest.clear()
    assert loss(frame_averaged_silu) < 20000 * 64 / 10, "a [copies, d] tensor is saved for the backward pass"
