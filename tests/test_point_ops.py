"""Tests of ecse.point_ops: torch path against brute force, torch against torch-cluster."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ecse import _point_search as search
from ecse import point_ops as P

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["torch", "cluster"]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "cluster" and not P.HAS_TORCH_CLUSTER:
        pytest.skip("torch_cluster is not importable")
    with P.use_backend(request.param):
        yield request.param


def cloud(sizes, dtype=torch.float64, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.cat([torch.full((s,), i, dtype=torch.long) for i, s in enumerate(sizes)])
    return torch.rand(len(batch), dim, generator=g).to(dtype), batch


def edge_set(e):
    return set(map(tuple, e.t().tolist()))


def dist(x, y):
    return torch.cdist(y.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")


def ref_knn(x, y, k, bx, by, skip_self=False):
    d = dist(x, y)
    out = set()
    for i in range(y.size(0)):
        cand = [j for j in torch.nonzero(bx == by[i]).flatten().tolist()
                if not (skip_self and j == i)]
        cand.sort(key=lambda j: d[i, j].item())
        out |= {(i, j) for j in cand[:k]}
    return out


def ref_radius(x, y, r, bx, by, skip_self=False):
    mask = (dist(x, y) < r) & (by[:, None] == bx[None, :])
    if skip_self:
        mask.fill_diagonal_(False)
    return edge_set(mask.nonzero().t())


def ref_fps(x, batch, ratio):
    out = []
    for g in batch.unique().tolist():
        idx = torch.nonzero(batch == g).flatten()
        pts = x[idx]
        n = int(torch.ceil(torch.tensor(len(idx), dtype=torch.float32)
                           * torch.tensor(ratio, dtype=x.dtype)))
        sel = [0]
        d = (pts - pts[0]).pow(2).sum(1)
        for _ in range(1, n):
            j = int(d.argmax())
            sel.append(j)
            d = torch.minimum(d, (pts - pts[j]).pow(2).sum(1))
        out += idx[sel].tolist()
    return out


SIZES = [7, 1, 0, 15, 3, 12]  # includes an empty graph (a gap in the batch ids)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 4, 20])
def test_knn_matches_bruteforce(backend, dtype, k):
    x, bx = cloud(SIZES, dtype)
    y, by = cloud([3, 2, 4, 5, 1, 2], dtype, seed=1)
    e = P.knn(x, y, k, bx, by)
    assert e.dtype == torch.long and e.shape[0] == 2
    assert edge_set(e) == ref_knn(x, y, k, bx, by)
    assert torch.all(e[0][1:] >= e[0][:-1])  # grouped by y, as torch-cluster


@pytest.mark.parametrize("dtype", DTYPES)
def test_radius_matches_bruteforce(backend, dtype):
    x, bx = cloud(SIZES, dtype)
    y, by = cloud([3, 2, 4, 5, 1, 2], dtype, seed=1)
    for r in [0.1, 0.35, 2.0]:
        assert edge_set(P.radius(x, y, r, bx, by, max_num_neighbors=100)) == \
            ref_radius(x, y, r, bx, by)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_graphs_match_bruteforce(backend, dtype, loop, flow):
    x, b = cloud(SIZES, dtype)
    flip = (lambda s: {(j, i) for i, j in s}) if flow == "source_to_target" else (lambda s: s)
    for k in [1, 3, 30]:
        e = P.knn_graph(x, k, b, loop=loop, flow=flow)
        assert edge_set(e) == flip(ref_knn(x, x, k, b, b, skip_self=not loop))
    e = P.radius_graph(x, 0.4, b, loop=loop, max_num_neighbors=100, flow=flow)
    assert edge_set(e) == flip(ref_radius(x, x, 0.4, b, b, skip_self=not loop))


def test_no_batch_and_single_batch_agree(backend):
    x, _ = cloud([25])
    zero = torch.zeros(25, dtype=torch.long)
    assert edge_set(P.knn_graph(x, 5)) == edge_set(P.knn_graph(x, 5, zero))
    assert edge_set(P.radius(x, x[:4], 0.5)) == edge_set(P.radius(x, x[:4], 0.5, zero, zero[:4]))
    assert torch.equal(P.fps(x), P.fps(x, zero))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.77, 1.0])
def test_fps_matches_reference(backend, dtype, ratio):
    x, b = cloud(SIZES, dtype)
    idx = P.fps(x, b, ratio=ratio)
    assert idx.dtype == torch.long
    assert idx.tolist() == ref_fps(x, b, ratio)


@pytest.mark.skipif(not P.HAS_TORCH_CLUSTER, reason="torch_cluster is not importable")
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_and_cluster_agree(dtype):
    x, bx = cloud([40, 1, 2, 0, 60, 33], dtype, seed=3)
    y, by = cloud([5, 1, 1, 2, 9, 4], dtype, seed=4)

    def run():
        return [P.knn(x, y, 6, bx, by), P.radius(x, y, 0.3, bx, by, 500),
                P.knn_graph(x, 8, bx), P.knn_graph(x, 8, bx, loop=True),
                P.radius_graph(x, 0.3, bx, max_num_neighbors=500),
                P.radius_graph(x, 0.3, bx, loop=True, max_num_neighbors=500)]

    with P.use_backend("torch"):
        res_t = run()
        fps_t = [P.fps(x, bx, r) for r in (0.1, 0.5, 0.9)]
    with P.use_backend("cluster"):
        res_c = run()
        fps_c = [P.fps(x, bx, r) for r in (0.1, 0.5, 0.9)]
    for a, c in zip(res_t, res_c):
        assert edge_set(a) == edge_set(c)
    for a, c in zip(fps_t, fps_c):
        assert torch.equal(a, c)


def test_radius_cap_keeps_nearest():
    x, b = cloud([30, 20])
    with P.use_backend("torch"):
        capped = P.radius(x, x, 0.6, b, b, max_num_neighbors=4)
        near = P.knn(x, x, 4, b, b)
    d = (x[near[0]] - x[near[1]]).norm(dim=1)
    assert edge_set(capped) == edge_set(near[:, d < 0.6])
    assert torch.bincount(capped[0]).max() <= 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loop", [False, True])
def test_feature_knn_matches_bruteforce(backend, dtype, loop, monkeypatch):
    """Feature spaces (D > 3): matrix products per graph, in one block or many blocks of rows."""
    x, b = cloud(SIZES, dtype, dim=16)
    y, by = cloud([3, 2, 4, 5, 1, 2], dtype, dim=16, seed=1)
    for pairs in (search._PAIRS, 37):
        monkeypatch.setattr(search, "_PAIRS", pairs)
        for k in [1, 3, 30]:
            e = P.feature_knn_graph(x, k, b, loop=loop, flow="target_to_source")
            assert edge_set(e) == ref_knn(x, x, k, b, b, skip_self=not loop)
            assert torch.all(e[0][1:] >= e[0][:-1])  # grouped by centre
        with P.use_backend("torch"):  # the torch backend's knn in D > 3 takes the same path
            assert edge_set(P.knn(x, y, 4, b, by)) == ref_knn(x, y, 4, b, by)


def test_chunking_does_not_change_results(monkeypatch):
    x, b = cloud([9, 30, 2, 17], seed=5)
    with P.use_backend("torch"):
        full = [P.knn_graph(x, 5, b), P.radius_graph(x, 0.5, b, max_num_neighbors=3)]
        monkeypatch.setattr(search, "_PAIRS", 37)
        chunked = [P.knn_graph(x, 5, b), P.radius_graph(x, 0.5, b, max_num_neighbors=3)]
    for a, c in zip(full, chunked):
        assert torch.equal(a, c)


def test_small_and_empty_inputs(backend):
    one = torch.rand(1, 3)
    assert P.fps(one).tolist() == [0]
    assert P.knn(one, one, 5).tolist() == [[0], [0]]
    assert P.knn_graph(one, 5).shape == (2, 0)
    assert P.knn_graph(one, 5, loop=True).tolist() == [[0], [0]]
    two = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    assert edge_set(P.knn_graph(two, 10)) == {(0, 1), (1, 0)}
    empty = torch.empty(0, 3)
    assert P.knn(empty, one, 3).shape == (2, 0)
    assert P.radius(one, empty, 1.0).shape == (2, 0)
    assert P.fps(empty).shape == (0,)


def test_grad_inputs_are_fine(backend):
    x = torch.rand(10, 3, requires_grad=True)
    e = P.knn_graph(x, 3)
    assert not e.requires_grad and e.shape == (2, 30)


def test_bad_inputs_raise(backend):
    x = torch.rand(10, 3)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        P.knn(x[:, 0], x, 2)
    with pytest.raises(ValueError):
        P.knn(x, torch.rand(4, 2), 2)
    with pytest.raises(ValueError):
        P.knn(x, x.double(), 2)
    with pytest.raises(ValueError, match="batch"):
        P.knn_graph(x, 2, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="sorted"):
        P.radius_graph(x, 0.5, torch.tensor([0, 1] * 5))
    with pytest.raises(ValueError):
        P.fps(x, ratio=0.0)
    with pytest.raises(ValueError):
        P.knn_graph(x, 2, flow="sideways")
    with pytest.raises(ValueError):
        P.radius_graph(torch.rand(2, 3, 3), 0.5)


def test_backend_switching():
    before = P.get_backend()
    with pytest.raises(ValueError):
        P.set_backend("faiss")
    with P.use_backend("torch"):
        assert P.get_backend() == "torch"
    assert P.get_backend() == before
    if not P.HAS_TORCH_CLUSTER:
        with pytest.raises(ImportError):
            P.set_backend("cluster")


def _run_python(code, **env):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_env_var_selects_backend():
    out = _run_python("from ecse import point_ops as P; print(P.get_backend())",
                      ECSE_NEIGHBOR_BACKEND="torch")
    assert out.strip() == "torch"


def test_runs_without_torch_cluster():
    out = _run_python("""
        import sys
        sys.modules["torch_cluster"] = None  # makes `import torch_cluster` fail
        import pytest, torch
        from torch_geometric.data import Batch, Data
        from ecse import point_ops as P
        import backbones
        assert not P.HAS_TORCH_CLUSTER and P.get_backend() == "torch"
        with pytest.raises(ImportError):
            P.set_backend("cluster")
        torch.manual_seed(0)
        data = Batch.from_data_list([Data(pos=torch.randn(n, 3)) for n in (1, 2, 30)])
        small = dict(PointNet2=dict(hidden=8), DGCNN=dict(hidden=8, k=4),
                     PointTransformer=dict(hidden=8, k=4, ratios=(0.5,)))
        for name in small:
            for level in ("graph", "node"):
                out = getattr(backbones, name)(3, level=level, **small[name])(data)
                assert out.shape == ((3, 3) if level == "graph" else (33, 3))
                assert torch.isfinite(out).all()
        from ecse import ECSE
        wrapped = ECSE(backbones.DGCNN(3, hidden=8, k=4), cutoff=2.0, output="vector")
        assert torch.isfinite(wrapped(data)).all() and wrapped.last_stats["frames_per_graph"] > 0
        print("ok", P.get_backend())
    """)
    assert out.strip() == "ok torch"
