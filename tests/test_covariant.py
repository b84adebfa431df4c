"""Wigner matrices and output reshaping against e3nn and plain matrix algebra."""
import pytest
import torch
from e3nn import o3

from ecse.covariant import OutputSpec, wigner_D


def _orthogonal(n, improper, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    q = q * torch.det(q).sign()[:, None, None]  # proper
    return -q if improper else q


@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("irreps", ["0e", "1o", "1e", "2e + 2o", "3o + 4e + 0o", "2x1o + 3x2e"])
def test_wigner_matches_e3nn(irreps, improper):
    R = _orthogonal(4, improper)
    irreps = o3.Irreps(irreps)
    full = torch.zeros(4, irreps.dim, irreps.dim, dtype=torch.float64)
    for (mul, ir), (sl, d) in zip(irreps, wigner_D(irreps, R)):
        for m in range(mul):
            s = sl.start + m * ir.dim
            full[:, s : s + ir.dim, s : s + ir.dim] = d
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's Euler route is float32-accurate otherwise
    try:
        expected = torch.stack([irreps.D_from_matrix(r) for r in R])
    finally:
        torch.set_default_dtype(default)
    assert torch.allclose(full, expected, atol=1e-12)


def test_wigner_float32_and_gradient_at_identity():
    R = torch.eye(3, dtype=torch.float64, requires_grad=True)
    blocks = wigner_D(o3.Irreps("2e+3o"), R.unsqueeze(0))
    loss = sum(d.sum() for _, d in blocks)
    (g,) = torch.autograd.grad(loss, R)
    assert torch.isfinite(g).all()  # e3nn's Euler-angle route gives NaN here
    R32 = _orthogonal(3, False).float()
    d32 = wigner_D(o3.Irreps("2e"), R32)[0][1]
    assert d32.dtype == torch.float32
    assert torch.allclose(d32 @ d32.transpose(1, 2), torch.eye(5).expand(3, 5, 5), atol=1e-5)


@pytest.mark.parametrize("output", ["vector", "rank2", "rank2-symmetric", "1x0e+1x1o+1x2e"])
def test_act_is_a_group_action(output):
    spec = OutputSpec(output)
    A, B = _orthogonal(5, False, 1), _orthogonal(5, True, 2)
    y = torch.randn(5, 2, *spec.component_shape, dtype=torch.float64)
    if output == "rank2-symmetric":
        y = y + y.transpose(-1, -2)
    lhs = spec.act(spec.act(y, B), A)
    rhs = spec.act(y, A @ B)
    assert torch.allclose(lhs, rhs, atol=1e-12)
    assert not torch.allclose(spec.act(y, A), y, atol=1e-3)


def test_act_conventions():
    R = _orthogonal(1, False, 4)
    v = torch.randn(1, 3, dtype=torch.float64)
    assert torch.allclose(OutputSpec("vector").act(v, R), v @ R[0].T)
    T = torch.randn(1, 3, 3, dtype=torch.float64)
    assert torch.allclose(OutputSpec("rank2").act(T, R), R @ T @ R.transpose(1, 2))


def test_components_reshape_and_errors():
    y9 = torch.arange(18.0).reshape(2, 9)
    assert torch.equal(OutputSpec("rank2").components(y9), y9.reshape(2, 3, 3))
    y6 = torch.tensor([[1.0, 2, 3, 4, 5, 6]])
    t = OutputSpec("rank2-symmetric").components(y6)[0]
    assert torch.equal(t, torch.tensor([[1.0, 6, 5], [6, 2, 4], [5, 4, 3]]))
    with pytest.raises(ValueError, match="last dim of 3"):
        OutputSpec("vector").components(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="trailing dims"):
        OutputSpec("rank2").components(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="unknown output"):
        OutputSpec("tensor-ish")
