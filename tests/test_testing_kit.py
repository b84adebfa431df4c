"""Tests of the public test kit ``ecse.testing`` (strategies and ``assert_equivariant``)."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch
from e3nn import o3 as e3o3
from hypothesis import find, given, settings
from torch_geometric.data import Batch, Data

from ecse.testing import (assert_equivariant, orthogonal_matrices, point_clouds, random_orthogonal,
                          random_rotation, relative_error, rotations, transform_output)
from ecse.testing import strategies as S

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------- toy models
def _graphs(data) -> tuple[torch.Tensor, int]:
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(data.num_nodes, dtype=torch.long), 1
    return batch, int(batch.max()) + 1


def _gsum(x: torch.Tensor, batch: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros((n,) + x.shape[1:], dtype=x.dtype).index_add_(0, batch, x)


def _centred(data) -> torch.Tensor:
    batch, n = _graphs(data)
    count = _gsum(torch.ones(len(batch), dtype=data.pos.dtype), batch, n)
    return data.pos - (_gsum(data.pos, batch, n) / count[:, None])[batch]


def pair_distance_sum(data):  # invariant, [B]
    batch, n = _graphs(data)
    d = torch.cdist(data.pos, data.pos) * (batch[:, None] == batch[None])
    return _gsum(d.sum(1), batch, n) / 2


def cubic_moment(data):  # vector, [B, 3]
    r = _centred(data)
    return _gsum(r * r.pow(2).sum(1, keepdim=True), *_graphs(data))


def gyration_tensor(data):  # rank2, [B, 3, 3]
    r = _centred(data)
    return _gsum(r[:, :, None] * r[:, None, :], *_graphs(data))


def harmonics(data):  # "1x0e+1x1o+1x2e", [B, 9]
    return _gsum(e3o3.spherical_harmonics([0, 1, 2], _centred(data), normalize=False), *_graphs(data))


def centred_positions(data):  # node-level vector, [N, 3]
    return _centred(data)


def triple_product(data):  # SO(3)-invariant pseudoscalar of the first three points, [1]
    r = _centred(data)
    return torch.linalg.det(r[:3]).reshape(1)


def raw_x_squares(data):  # not invariant
    return data.pos[:, 0].pow(2).sum().reshape(1)


def fixed_direction(data):  # invariant length along a fixed axis: not a vector
    return pair_distance_sum(data)[:, None] * torch.tensor([0.0, 0.0, 1.0], dtype=data.pos.dtype)


def _cloud(n=7, seed=0, dtype=F64) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(pos=(3 * torch.randn(n, 3, generator=g, dtype=F64)).to(dtype))


def _batch() -> Batch:
    return Batch.from_data_list([_cloud(n, seed=n) for n in (5, 1, 8, 3)])


# --------------------------------------------------------------------------- strategies
def _sv(pos: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals((pos - pos.mean(0)).double())


@SETTINGS
@given(point_clouds(species=True, max_points=16))
def test_any_cloud_min_distance_species_dtype(data):
    assert data.pos.dtype == F64 and data.pos.shape[1] == 3 and 1 <= len(data.pos) <= 16
    assert data.z.dtype == torch.long and data.z.shape == (len(data.pos),)
    assert set(data.z.tolist()) <= set(S.SPECIES)
    if len(data.pos) > 1:
        assert torch.pdist(data.pos).min() >= 0.3 * 1.5


@SETTINGS
@given(S.collinear_clouds(min_points=2), S.planar_clouds(min_points=3))
def test_collinear_and_planar_ranks(line, plane):
    s = _sv(line.pos)
    assert s[1] <= 1e-12 * s[0]
    s = _sv(plane.pos)
    assert s[2] <= 1e-12 * s[0]


@SETTINGS
@given(S.near_degenerate_clouds(min_points=4))
def test_near_degenerate_is_close_to_but_not_exactly_degenerate(data):
    s = _sv(data.pos)  # close to planar (or collinear), but never exactly collinear
    assert s[2] < 0.05 * s[0] and s[1] > 1e-12 * s[0]


@SETTINGS
@given(S.symmetric_clouds(min_points=3))
def test_symmetric_clouds_have_repeated_distances(data):
    d = torch.pdist(data.pos)
    distinct = torch.unique(torch.round(d / d.min() * 1e6))
    assert len(distinct) < len(d)
    assert d.min() >= 0.3 * 1.5


@SETTINGS
@given(S.periodic_clouds(dtype=torch.float32, max_points=12), S.clustered_clouds(periodic=True, max_points=8))
def test_periodic_clouds(filled, embedded):
    for data in (filled, embedded):
        assert data.cell.shape == (1, 3, 3) and data.pbc.shape == (1, 3) and bool(data.pbc.all())
        cell = data.cell[0].double()
        assert torch.linalg.cond(cell) < 10
        frac = data.pos.double() @ torch.linalg.inv(cell)
        assert bool(((frac > -1e-6) & (frac < 1 + 1e-6)).all())
    assert filled.pos.dtype == torch.float32 and filled.cell.dtype == torch.float32
    cell = filled.cell[0].double()
    shifts = torch.tensor([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=F64) @ cell
    pos = filled.pos.double()
    d = (pos[:, None, None] - pos[None, :, None] + shifts).norm(dim=-1)
    d[torch.arange(len(pos)), torch.arange(len(pos)), 13] = math.inf  # 13 = zero shift
    assert d.min() >= 0.3 * 1.5 * (1 - 1e-5)


@pytest.mark.parametrize("kind", S.KINDS)
def test_minimal_examples_keep_the_promises(kind):
    data = find(point_clouds(kind, min_points=5, max_points=5 if kind != "symmetric" else 8), lambda d: True,
                settings=settings(database=None))
    s = _sv(data.pos)
    assert torch.pdist(data.pos).min() >= 0.3 * 1.5
    assert s[1] <= 1e-12 * s[0] if kind == "collinear" else True
    assert s[2] <= 1e-12 * s[0] if kind == "planar" else True


@pytest.mark.parametrize("fallback", ["_outside", "_outside_flat", "periodic"])
def test_rejection_fallbacks_keep_the_promises(fallback):
    # proposals that always collide force the deterministic fallback points
    cell = np.array([[5.0, 0.3, 0.0], [0.2, 4.0, 0.1], [-0.4, 0.0, 4.5]])
    dist, fb = S._periodic_dist(cell) if fallback == "periodic" else (None, getattr(S, fallback))
    pos = torch.from_numpy(S._rejection(None, 12, lambda draw: np.zeros(3), 0.5, dist, fb))
    if fallback == "periodic":
        pos = pos - torch.floor(pos @ torch.linalg.inv(torch.from_numpy(cell))) @ torch.from_numpy(cell)
        pos = torch.cat([pos + torch.tensor([a, b, c], dtype=F64) @ torch.from_numpy(cell)
                         for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    assert torch.pdist(pos).min() >= 0.5 - 1e-12
    assert pos[:, 2].abs().max() == 0 if fallback == "_outside_flat" else _sv(pos)[2] > 0.1


@SETTINGS
@given(rotations(), orthogonal_matrices(torch.float32))
def test_rotation_strategies(R, Q):
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=F64), atol=1e-12) and torch.det(R) > 0
    assert Q.dtype == torch.float32 and torch.allclose(Q @ Q.T, torch.eye(3), atol=1e-5)


def test_orthogonal_strategy_reaches_reflections():
    find(orthogonal_matrices(), lambda Q: bool(torch.det(Q) < 0), settings=settings(database=None))


def test_random_helpers_are_haar_like_and_reproducible():
    g = torch.Generator().manual_seed(3)
    Rs = torch.stack([random_rotation(g) for _ in range(2000)])
    assert torch.allclose(Rs @ Rs.transpose(1, 2), torch.eye(3, dtype=F64).expand(2000, 3, 3), atol=1e-12)
    assert Rs.mean(0).abs().max() < 0.06  # Haar measure: E[R] = 0
    assert torch.equal(random_rotation(torch.Generator().manual_seed(1)),
                       random_rotation(torch.Generator().manual_seed(1)))
    assert torch.det(random_orthogonal(g, improper=True)) < 0 < torch.det(random_orthogonal(g, improper=False))
    assert random_rotation(dtype=torch.float32).dtype == torch.float32


# --------------------------------------------------------------------------- transform_output
def test_transform_output_conventions():
    R = random_orthogonal(torch.Generator().manual_seed(0), improper=True)
    v = torch.randn(4, 3, dtype=F64)
    assert torch.allclose(transform_output(v, R, "vector"), v @ R.T)
    assert torch.allclose(transform_output(v, R, "1x1o"), v @ R.T, atol=1e-13)
    assert torch.allclose(transform_output(v, R, "1x1e"), -(v @ R.T), atol=1e-13)  # pseudovector
    T = torch.randn(2, 3, 3, dtype=F64)
    assert torch.allclose(transform_output(T, R, "rank2"), R @ T @ R.T)
    s = torch.randn(5, 1, dtype=F64)
    assert torch.equal(transform_output(s, R, "scalar"), s)
    assert torch.allclose(transform_output(s, R, "0o"), -s)


def test_wigner_matrices_are_accurate_for_small_angles():
    # plain e3nn D_from_matrix is ~1e-10 off here (torch.matrix_exp of one small matrix)
    R = e3o3.matrix_y(torch.tensor(0.0440651576617, dtype=F64)) @ e3o3.matrix_x(torch.tensor(1.72, dtype=F64))
    v = torch.eye(3, dtype=F64)
    assert (transform_output(v, R, "1x1o") - v @ R.T).abs().max() < 1e-14
    y = torch.randn(3, 9, dtype=F64)
    R2 = random_rotation(torch.Generator().manual_seed(5))
    two_steps = transform_output(transform_output(y, R, "1x0e+1x1o+1x2e"), R2, "1x0e+1x1o+1x2e")
    assert relative_error(two_steps, transform_output(y, R2 @ R, "1x0e+1x1o+1x2e")) < 1e-13


# --------------------------------------------------------------------------- assert_equivariant
@pytest.mark.parametrize("model, output, level", [
    (pair_distance_sum, "scalar", "graph"), (cubic_moment, "vector", "graph"),
    (gyration_tensor, "rank2-symmetric", "graph"), (harmonics, "1x0e+1x1o+1x2e", "graph"),
    (centred_positions, "vector", "node"),
])
@pytest.mark.parametrize("batched", [False, True])
def test_equivariant_models_pass(model, output, level, batched):
    data = _batch() if batched else _cloud()
    errors = assert_equivariant(model, data, output, level=level, o3=True, tol=1e-12)
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}
    assert max(errors.values()) < 1e-12


@pytest.mark.parametrize("model, output, level, bad", [
    (raw_x_squares, "scalar", "graph", {"rotation", "translation"}),
    (fixed_direction, "vector", "graph", {"rotation"}),
    (lambda d: centred_positions(d).roll(1, 0), "vector", "node", {"permutation"}),
])
def test_non_equivariant_models_are_caught(model, output, level, bad):
    errors = assert_equivariant(model, _cloud(), output, level=level)
    assert {k for k, v in errors.items() if v > 1e-2} == bad
    with pytest.raises(AssertionError, match=sorted(bad)[0]):
        assert_equivariant(model, _cloud(), output, level=level, tol=1e-6)


def test_o3_detects_pseudoscalars():
    errors = assert_equivariant(triple_product, _cloud(), "scalar", o3=True, permute=False)
    assert errors["rotation"] < 1e-12 and errors["reflection"] > 1.0
    assert "reflection" not in assert_equivariant(triple_product, _cloud(), "scalar", permute=False)
    assert_equivariant(triple_product, _cloud(), "0o", o3=True, permute=False, tol=1e-12)


def test_batch_translations_are_per_graph():
    def global_centroid(data):  # leaks across graphs: invariant only under a common translation
        r = data.pos - data.pos.mean(0)
        return _gsum(r.norm(dim=1), *_graphs(data))
    errors = assert_equivariant(global_centroid, _batch(), "scalar")
    assert errors["rotation"] < 1e-12 and errors["translation"] > 1e-2


def test_edge_index_node_attributes_vector_attrs_and_cell_follow_the_transform():
    data = _cloud(6)
    data.z = torch.tensor([1, 6, 6, 8, 1, 7])
    data.edge_index = torch.tensor([[0, 1, 1, 2, 3, 5], [1, 0, 2, 4, 5, 0]])
    gen = torch.Generator().manual_seed(0)
    data.vel = 3 * torch.randn(6, 3, dtype=F64, generator=gen)
    data.cell = (4 * torch.eye(3, dtype=F64) + torch.randn(3, 3, dtype=F64, generator=gen))[None]
    original = data.clone()

    def edge_model(d):  # uses edge_index, z, vel and the cell
        i, j = d.edge_index
        e = (d.z[i] * (d.pos[i] - d.pos[j]).norm(dim=1)).sum()
        return (e * d.cell[:, 0] + (d.vel * d.z[:, None]).sum(0)).reshape(1, 3)

    assert_equivariant(edge_model, data, "vector", vector_attrs=("vel",), tol=1e-12)
    errors = assert_equivariant(edge_model, data, "vector")  # vel not rotated
    assert errors["rotation"] > 1e-2
    for key in original.keys():
        assert torch.equal(original[key], data[key])  # the user's data is not mutated


def test_permutations_are_never_the_identity_when_avoidable():
    data = Data(pos=torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=F64), z=torch.tensor([1, 6]))
    for seed in range(8):
        errors = assert_equivariant(lambda d: d.z[:1].to(F64), data, n_transforms=1,
                                    generator=torch.Generator().manual_seed(seed))
        assert errors["permutation"] > 0.5


def test_autograd_forces_with_requires_grad():
    def forces(d):
        pos = d.pos if d.pos.requires_grad else d.pos.requires_grad_(True)
        return -torch.autograd.grad(pair_distance_sum(d).sum(), pos)[0]
    data = _batch()
    assert_equivariant(forces, data, "vector", level="node", o3=True, tol=1e-12)
    data.pos.requires_grad_(True)
    assert_equivariant(forces, data, "vector", level="node", tol=1e-12)


def test_float32_errors_are_rounding_sized():
    model = pair_distance_sum
    errors = assert_equivariant(model, _cloud(dtype=torch.float32), "scalar", o3=True)
    assert 1e-10 < errors["rotation"] < 1e-4
    assert max(assert_equivariant(model, _cloud(), "scalar", o3=True).values()) < 1e-14


def test_atol_rtol_elementwise_check():
    cube = Data(pos=torch.tensor([[a, b, c] for a in (-1., 1.) for b in (-1., 1.) for c in (-1., 1.)], dtype=F64))
    errors = assert_equivariant(cubic_moment, cube, "vector")  # vanishes by symmetry: relative error useless
    assert_equivariant(cubic_moment, cube, "vector", atol=1e-12)
    with pytest.raises(AssertionError, match="element-wise"):
        assert_equivariant(fixed_direction, _cloud(), "vector", rtol=1e-6)
    assert set(errors) == {"rotation", "translation", "permutation"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(model=pair_distance_sum, output="pseudo-thing"), "unknown output"),
    (dict(model=pair_distance_sum, output="vector"), "last dim 3"),
    (dict(model=pair_distance_sum, output="rank2"), "3x3"),
    (dict(model=cubic_moment, output="1x0e+1x2e"), "last dim 6"),
    (dict(model=pair_distance_sum, output="scalar", level="node"), "num_nodes"),
    (dict(model=pair_distance_sum, output="scalar", level="atoms"), "level"),
    (dict(model=lambda d: pair_distance_sum(d) * math.nan, output="scalar"), "NaN"),
    (dict(model=pair_distance_sum, output="scalar", vector_attrs=("z",)), "last dim 3"),
])
def test_bad_specifications_raise_value_error(kwargs, match):
    data = _cloud()
    data.z = torch.ones(7, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        assert_equivariant(data=data, **kwargs)


# --------------------------------------------------------------------------- property tests
def _atol(model, data) -> float:
    return 1e-11 * (1.0 + float(model(data).abs().max()))


@SETTINGS
@given(point_clouds(max_points=12))
def test_property_invariant_and_covariant_models(data):
    assert_equivariant(pair_distance_sum, data, "scalar", o3=True, n_transforms=2, tol=1e-11)
    for model, output in ((cubic_moment, "vector"), (gyration_tensor, "rank2"), (harmonics, "1x0e+1x1o+1x2e")):
        assert_equivariant(model, data, output, o3=True, n_transforms=2, atol=_atol(model, data), rtol=1e-11)


@SETTINGS
@given(point_clouds(min_points=2, max_points=12, periodic=True))
def test_property_periodic_cell_is_rotated(data):
    def metric(d):  # C^T C transforms like a rank-2 tensor iff the cell is rotated with pos
        return d.cell.transpose(-1, -2) @ d.cell + gyration_tensor(d)
    assert_equivariant(metric, data, "rank2-symmetric", o3=True, n_transforms=2, atol=_atol(metric, data), rtol=1e-11)


@SETTINGS
@given(point_clouds(min_points=4, max_points=12, kind="random"))
def test_property_non_invariant_model_is_caught(data):
    errors = assert_equivariant(raw_x_squares, data, "scalar", n_transforms=2)
    assert errors["rotation"] > 1e-2 and errors["translation"] > 1e-2


def test_every_public_name_of_the_kit_resolves():
    import ecse.testing as kit
    from ecse.testing import strategies
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    for name in ("crystals", "perfect_crystals", "thermal_crystals", "LATTICES"):
        assert getattr(kit, name) is getattr(strategies, name), name
    assert {"smoothness_profile", "assert_smooth", "SmoothnessProfile"} <= set(kit.__all__)
