"""Adaptive cutoff, frames, weights and pruning against the loop-based reference."""
import itertools

import numpy as np
import pytest
import torch

from ecse import global_frames, neighbor_list
from ecse.cutoff import adaptive_inner_cutoff
from ecse.frames import build_frames
from ecse.pruning import prune_weights
from ecse._pairs import pairs_within_groups
from ecse.pruning import auxiliary_weight

from . import reference_impl as ref


def _cloud(n, seed, scale=1.2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * scale


def _random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


@pytest.mark.parametrize("ordered", [False, True])
def test_pairs_within_groups_matches_itertools(ordered):
    group = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3])
    first, second = pairs_within_groups(group, 5, ordered)
    mine = sorted(zip(first.tolist(), second.tolist()))
    expected = []
    for g in range(5):
        members = [i for i, x in enumerate(group.tolist()) if x == g]
        pairs = itertools.permutations(members, 2) if ordered else itertools.combinations(members, 2)
        expected.extend(pairs)
    assert mine == sorted(expected)


@pytest.mark.parametrize("seed", range(6))
def test_group_blocks_cover_the_groups_in_order_within_the_budget(seed):
    from ecse._pairs import group_blocks

    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 12, size=int(rng.integers(1, 40)))
    group = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
    budget = int(rng.integers(1, 80))
    blocks = group_blocks(group, len(sizes), budget)
    pairs = sizes * (sizes - 1) // 2
    assert blocks[0][0] == 0 and blocks[-1][1] == len(sizes)
    for (g0, g1, e0, e1), nxt in zip(blocks, blocks[1:] + [None]):
        assert g1 > g0 and (nxt is None or nxt[0] == g1)
        assert (e0, e1) == (int(sizes[:g0].sum()), int(sizes[:g1].sum()))
        assert pairs[g0:g1 - 1].sum() < budget  # at most the budget plus one group's pairs
    # a group's block is where the pairs before it reach a multiple of the budget
    before = np.cumsum(pairs) - pairs
    labels = np.concatenate([np.full(g1 - g0, k) for k, (g0, g1, _, _) in enumerate(blocks)])
    assert np.array_equal(labels, np.unique(before // budget, return_inverse=True)[1])


@pytest.mark.parametrize("seed", range(4))
def test_inner_cutoff_matches_reference(seed):
    pos = _cloud(9, seed)
    nl = neighbor_list(pos, 4.0)
    r_in = adaptive_inner_cutoff(nl.center, nl.vector, 9, 4.0)
    expected = [ref.inner_cutoff(pos.numpy(), i, 4.0) for i in range(9)]
    assert np.allclose(r_in.numpy(), expected, atol=1e-12)


def _structures():
    """A molecule-like cloud, a liquid-like box, thermal fcc Cu, bcc Fe and diamond C, and
    perfect fcc Cu and bcc Fe (periodic)."""
    from ase.build import bulk
    from ecse.atomistic import atoms_to_data

    crystals = []
    for symbol, lattice, a, rattle in (("Cu", "fcc", 3.6, 0.05), ("Fe", "bcc", 2.87, 0.05),
                                       ("C", "diamond", 3.57, 0.05), ("Cu", "fcc", 3.6, 0.0), ("Fe", "bcc", 2.87, 0.0)):
        atoms = bulk(symbol, lattice, a=a, cubic=True).repeat(2)
        atoms.rattle(rattle, seed=1)
        data = atoms_to_data(atoms, dtype=torch.float64)
        crystals.append((data.pos, data.cell, data.pbc))
    g = torch.Generator().manual_seed(3)
    box = torch.rand(60, 3, generator=g, dtype=torch.float64) * 8.4
    return [(_cloud(12, 0), None, None), (box, None, None), *crystals]


@pytest.mark.parametrize("index", range(7), ids=["cloud", "liquid", "fcc-Cu", "bcc-Fe", "diamond-C",
                                                 "perfect-fcc-Cu", "perfect-bcc-Fe"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inner_cutoff_in_blocks_equals_one_pass(monkeypatch, index, dtype):
    # the value, the gradient and a second derivative (force training) of a function of
    # r_in do not depend on how many centres are evaluated at once
    import ecse.cutoff as cutoff

    pos, cell, pbc = _structures()[index]
    pos = pos.to(dtype)
    n = pos.shape[0]
    results, checkpoints = [], []
    real = cutoff.checkpoint
    monkeypatch.setattr(cutoff, "checkpoint", lambda *a, **k: checkpoints.append(1) or real(*a, **k))
    for block in (1 << 40, 50):
        monkeypatch.setattr(cutoff, "PAIR_BLOCK", block)
        x = pos.clone().requires_grad_()
        nl = neighbor_list(x, 5.0, torch.zeros(n, dtype=torch.long), cell if cell is None else cell.to(dtype), pbc)
        r_in = adaptive_inner_cutoff(nl.center, nl.vector, n, 5.0)
        energy = (r_in * torch.arange(1, n + 1, dtype=dtype)).sin().sum()
        (grad,) = torch.autograd.grad(energy, x, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), x)
        with torch.no_grad():
            assert torch.equal(adaptive_inner_cutoff(nl.center, nl.vector, n, 5.0), r_in.detach())
        results.append((r_in.detach(), grad.detach(), second))
    assert len(checkpoints) > 3  # the small blocks ran, checkpointed
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for one, blocked in zip(*results):
        assert torch.allclose(one, blocked, rtol=tol, atol=tol * float(one.abs().max()))


def test_inner_cutoff_for_a_centre_without_a_good_pair_is_outer_plus_margin():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2.1, 0, 0]], dtype=torch.float64)
    nl = neighbor_list(pos, 5.0)
    r_in = adaptive_inner_cutoff(nl.center, nl.vector, 3, 5.0)
    assert torch.allclose(r_in, torch.full((3,), 5.15, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_frames_and_weights_match_reference(seed):
    pos = _cloud(8, seed)
    nl = neighbor_list(pos, 4.0)
    r_in = adaptive_inner_cutoff(nl.center, nl.vector, 8, 4.0)
    frames = build_frames(nl.center, nl.vector, r_in, 8, outer_cutoff=4.0)
    expected = ref.frames(pos.numpy(), 4.0)
    keep = frames.weight > 0
    assert int(keep.sum()) == len(expected)
    key = lambda t: (t[0], round(t[1], 9), np.round(t[2], 9).ravel().tolist())  # noqa: E731
    mine = sorted(zip(frames.center[keep].tolist(), frames.weight[keep].tolist(), frames.rotation[keep].numpy()), key=key)
    theirs = sorted(((c, w, F) for c, F, w in expected), key=key)
    for (c1, w1, f1), (c2, w2, f2) in zip(mine, theirs):
        assert c1 == c2 and w1 == pytest.approx(w2, abs=1e-12)
        assert np.allclose(f1, f2, atol=1e-12)


def test_frames_are_proper_rotations_and_rotate_with_the_input():
    pos = _cloud(10, 7)
    R = _random_rotation(3)
    a = global_frames(pos, 4.0)
    b = global_frames(pos @ R.T + 0.7, 4.0)
    F = a.frames.rotation
    eye = torch.eye(3, dtype=torch.float64).expand_as(F)
    assert torch.allclose(F.transpose(1, 2) @ F, eye, atol=1e-13)
    assert torch.allclose(torch.linalg.det(F), torch.ones(len(F), dtype=torch.float64), atol=1e-13)
    assert torch.equal(a.frames.center, b.frames.center)
    assert torch.allclose(b.frames.rotation, R @ F, atol=1e-12)
    assert torch.allclose(a.frames.weight, b.frames.weight, atol=1e-12)
    assert torch.allclose(a.inner_cutoff, b.inner_cutoff, atol=1e-12)


def _prune_one_step(weights, threshold=0.9, beta=8.0, aux=0.5):
    """Loop reference of ecse.pruning: one step against SM_beta(w; w) of the unpruned weights."""
    w_max = ref.smooth_max(weights, weights, beta)
    turn_on = ref.fc(w_max, aux, aux / 2)
    return [wk * (ref.q(wk, threshold * w_max, (1 - threshold) * w_max) * (1 - turn_on) + turn_on)
            for wk in weights]


def test_pruning_matches_reference_and_keeps_the_best():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(30, generator=g, dtype=torch.float64) * 3
    index = torch.zeros(30, dtype=torch.long)
    # one round is the published rule exactly
    assert np.allclose(prune_weights(w, index, 1, rounds=1).numpy(), ref.prune(w.tolist(), rounds=1), atol=1e-12)
    # more rounds sharpen the smooth max (beta 1, 2, 4, 8) instead of compounding the step
    for rounds, beta in [(2, 2.0), (4, 8.0), (9, 8.0)]:
        expected = _prune_one_step(w.tolist(), beta=beta)
        assert np.allclose(prune_weights(w, index, 1, rounds=rounds).numpy(), expected, atol=1e-12)
    pruned = prune_weights(w, index, 1)
    assert int((pruned > 0).sum()) < int((prune_weights(w, index, 1, rounds=1) > 0).sum()) < 30
    assert pruned[w.argmax()] == w.max()  # the best frame keeps its full weight
    assert bool((pruned <= w).all())
    assert torch.equal(prune_weights(w, index, 1, rounds=0), w)


def test_pruning_is_off_for_small_weights_and_aux_takes_over():
    w = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    index = torch.zeros(3, dtype=torch.long)
    assert torch.equal(prune_weights(w, index, 1), w)
    assert float(auxiliary_weight(w, index, 1)) == pytest.approx(ref.aux_weight(w.tolist()), abs=1e-14)
    assert 0 < float(auxiliary_weight(w, index, 1)) < 1
    assert float(auxiliary_weight(torch.tensor([2.0], dtype=torch.float64), index[:1], 1)) == 0
    assert float(auxiliary_weight(w[:0], index[:0], 1)) == 1


def test_neighbor_list_periodic_matches_ase(shared_data):
    ase_io = pytest.importorskip("ase.io")
    from ase.neighborlist import neighbor_list as ase_nl

    atoms = ase_io.read(shared_data / "water_bulk_64" / "water_deepmd_400.xyz", index=0)
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array).unsqueeze(0)
    nl = neighbor_list(pos, 5.0, cell=cell)
    i, j, D = ase_nl("ijD", atoms, 5.0)
    mine = sorted(zip(nl.center.tolist(), nl.neighbor.tolist(), np.round(nl.vector.numpy(), 8).tolist()))
    theirs = sorted(zip(i.tolist(), j.tolist(), np.round(D, 8).tolist()))
    assert len(mine) == len(theirs)
    assert mine == theirs


@pytest.mark.parametrize("scale", [0.01, 0.2, 30.0])
def test_length_scale_makes_frames_scale_covariant(scale):
    from ecse import FrameParams

    pos = _cloud(12, 5)
    a = global_frames(pos, 4.0)
    b = global_frames(pos * scale, 4.0 * scale, params=FrameParams.scaled(scale))
    assert torch.equal(a.frames.center, b.frames.center)
    assert torch.allclose(a.frames.rotation, b.frames.rotation, atol=1e-12)
    assert torch.allclose(a.frames.weight, b.frames.weight, rtol=1e-10, atol=1e-12)
    assert torch.allclose(a.inner_cutoff * scale, b.inner_cutoff, rtol=1e-12)
    unscaled = global_frames(pos * scale, 4.0 * scale)  # published Å defaults on a rescaled cloud
    assert unscaled.frames.weight.numel() != a.frames.weight.numel() or scale == 1.0


def test_unknown_frame_parameters_are_named():
    from ecse import FrameParams, FrameViewSampler
    from torch_geometric.data import Data

    with pytest.raises(ValueError, match="bet"):
        FrameParams.scaled(2.0, bet=3.0)
    with pytest.raises(ValueError, match="unknown frame parameter"):
        FrameViewSampler([Data(pos=_cloud(6, 0))], 3.0, beta=5.0, raidal_width=0.1)
