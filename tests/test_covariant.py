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


KINDS = ["scalar", "vector", "rank2", "rank2-symmetric", "2x0e+1x0o+1x1o+1x1e+2x2e", "1x1o+1x2e"]


def _random(spec, n, seed=5):
    y = torch.randn(n, *spec.component_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return 0.5 * (y + y.transpose(-1, -2)) if spec.is_symmetric else y


def test_voigt_order_is_ases():
    from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

    from ecse.covariant import VOIGT, from_voigt, to_voigt

    t = _random(OutputSpec("rank2-symmetric"), 1)[0]
    assert torch.equal(to_voigt(t), torch.as_tensor(full_3x3_to_voigt_6_stress(t.numpy())))
    v = torch.randn(6, dtype=torch.float64)
    assert torch.equal(from_voigt(v), torch.as_tensor(voigt_6_to_full_3x3_stress(v.numpy())))
    assert [f"{'xyz'[i]}{'xyz'[j]}" for i, j in VOIGT] == list(OutputSpec("rank2-symmetric").component_labels)


@pytest.mark.parametrize("output", KINDS)
def test_shapes_packing_and_labels(output):
    spec = OutputSpec(output)
    y = _random(spec, 4)
    packed = spec.pack(y)
    assert packed.shape == (4, spec.packed_size) and len(spec.component_labels) == spec.packed_size
    assert torch.equal(spec.unpack(packed), y)
    assert spec.is_scalar or torch.equal(spec.components(packed), y)
    assert spec.flat_size == y[0].numel()
    assert torch.equal(torch.as_tensor(spec.pack(y.numpy())), packed)  # numpy arrays too
    expected = {"scalar": 0, "vector": 1}.get(output, 2)
    assert spec.lmax == expected and spec.is_irreps == (output not in ("scalar", "vector", "rank2", "rank2-symmetric"))


@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("output", KINDS)
def test_invariants_isotropic_baseline_and_irreducible_parts(output, improper):
    spec = OutputSpec(output)
    y, R = _random(spec, 5), _orthogonal(5, improper, 7)
    inv = spec.invariant_part(y)
    assert torch.allclose(spec.invariant_part(inv), inv, atol=1e-12)  # a projection
    assert torch.allclose(spec.act(inv, R), inv, atol=1e-12)  # of invariant values
    assert torch.allclose(spec.invariant_part(spec.act(y, R)), inv, atol=1e-12)
    b = torch.randn(5, dtype=torch.float64)
    iso = spec.isotropic(b)
    assert torch.allclose(spec.act(iso, R), iso, atol=1e-12)
    if spec.has_isotropic:
        assert torch.allclose(spec.invariant(iso), b, atol=1e-12)
        assert torch.allclose(spec.invariant(spec.act(y, R)), spec.invariant(y), atol=1e-12)
    else:
        assert spec.invariant(y) is None and torch.equal(iso, torch.zeros_like(iso)) and output != "scalar"
    parts, rotated = spec.irreducible_parts(y), spec.irreducible_parts(spec.act(y, R))
    for name in parts:  # the norm of every irreducible part is rotation invariant
        assert torch.allclose(parts[name].norm(dim=1), rotated[name].norm(dim=1), atol=1e-12), name
    if spec.is_rank2:  # and they add up to the tensor
        a = parts.get("l=1", torch.zeros(5, 3, dtype=torch.float64))
        antisym = torch.zeros(5, 3, 3, dtype=torch.float64)
        antisym[:, 1, 2], antisym[:, 0, 2], antisym[:, 0, 1] = a[:, 0], a[:, 1], a[:, 2]
        antisym = antisym - antisym.transpose(1, 2)
        total = parts["l=0"][:, :, None] * torch.eye(3, dtype=torch.float64) + antisym + parts["l=2"].reshape(5, 3, 3)
        assert torch.allclose(total, y, atol=1e-12)
        assert torch.allclose(parts["l=0"][:, 0], spec.invariant(y), atol=1e-12)  # tr(T)/3: l=2 is traceless


def _direction_values(spec, vectors, o3_mode):
    """Every basis covariant of ``direction_blocks`` (one per coefficient): ``[E, n, *components]``."""
    out, start = [], 0
    for mul, width, basis in spec.direction_blocks(vectors, o3_mode):
        for _ in range(mul):
            value = torch.zeros(len(vectors), spec.flat_size, dtype=torch.float64)
            if basis is not None:
                value[:, start:start + width] = basis
            out.append(value)
            start += width
    assert start == spec.flat_size
    return torch.stack(out, dim=1).reshape(len(vectors), -1, *spec.component_shape)


@pytest.mark.parametrize("o3_mode", [False, True])
@pytest.mark.parametrize("output", KINDS)
def test_direction_blocks_and_invariant_basis_are_covariant(output, o3_mode):
    spec = OutputSpec(output)
    r = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    R = _orthogonal(6, o3_mode, 8)  # with o3, reflections too
    rotated = _direction_values(spec, torch.einsum("kij,kj->ki", R, r), o3_mode)
    assert torch.allclose(rotated, spec.act(_direction_values(spec, r, o3_mode), R), atol=1e-12)
    assert float(rotated.abs().max()) > 0.1
    basis = spec.invariant_basis(o3_mode, dtype=torch.float64).reshape(-1, *spec.component_shape)
    if basis.shape[0]:
        rows = basis.expand(6, *basis.shape)
        assert torch.allclose(spec.act(rows, R), rows, atol=1e-12)
    counts = {"scalar": 1, "vector": 0, "rank2": 1, "rank2-symmetric": 1, "1x1o+1x2e": 0}
    assert basis.shape[0] == counts.get(output, 3)  # 2x0e+1x0o: one row per l=0 copy


def _packed_representation(spec, R):
    """``[K, packed, packed]``: how ``R[k]`` acts on the independent numbers of ``spec``."""
    basis = spec.unpack(torch.eye(spec.packed_size, dtype=torch.float64))  # [P, *components]
    images = spec.act(basis.expand(len(R), *basis.shape), R)
    return torch.stack([spec.pack(image) for image in images])


@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("output", ["vector", "rank2", "rank2-symmetric", "2x1e+1x0o"])
def test_as_irreps_is_the_same_representation(output, improper):
    spec = OutputSpec(output)
    irreps = spec.as_irreps
    assert irreps.dim == spec.packed_size
    R = _orthogonal(4, improper, 9)
    cartesian = _packed_representation(spec, R)
    spherical = _packed_representation(OutputSpec(str(irreps)), R)
    # equal characters for proper and improper R: equivalent O(3) representations
    assert torch.allclose(torch.diagonal(cartesian, dim1=1, dim2=2).sum(-1),
                          torch.diagonal(spherical, dim1=1, dim2=2).sum(-1), atol=1e-12)


def test_as_irreps_layouts():
    from ecse.covariant import symmetric_to_irreps

    assert OutputSpec("scalar").as_irreps is None
    assert str(OutputSpec("1x0e+1x2e").as_irreps) == "1x0e+1x2e"
    R = _orthogonal(3, True, 10)
    v = torch.randn(3, 3, dtype=torch.float64)
    assert torch.allclose(OutputSpec("vector").act(v, R), OutputSpec(str(OutputSpec("vector").as_irreps)).act(v, R))
    sym = OutputSpec("rank2-symmetric")
    T = torch.randn(3, 3, 3, dtype=torch.float64)
    T = T + T.transpose(1, 2)
    lhs = symmetric_to_irreps(sym.act(T, R))
    rhs = OutputSpec(str(sym.as_irreps)).act(symmetric_to_irreps(T), R)
    assert torch.allclose(lhs, rhs, atol=1e-12)
