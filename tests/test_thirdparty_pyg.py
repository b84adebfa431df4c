"""Local mode on models nobody here wrote: PyG's example classifiers, unchanged.

``tests/thirdparty_models.py`` writes PointNet++, DGCNN and Point Transformer the way PyG's
example scripts do (imports: torch and torch_geometric only).  Each is wrapped, without
any edit, as ``ECSE(model, cutoff=..., mode="local")`` and compared on a rotated and
translated copy of the cloud (an independent computation).  The examples' ``fps`` starts
at a random point (``random_start=True``); both calls of a comparison get the same random
start (:func:`_same_randomness`), as dropout masks would get the same seed.  Under PyG 2.8
without pyg-lib, PyG's neighbour search is torch-cluster's, as in PyG 2.7
(:func:`neighbour_search`).
"""
import ast
import contextlib
import ctypes
import ctypes.util
import functools
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch, Data

from ecse import ECSE
from ecse.demos.shapes import make_shapes
from ecse.pyg import LocalPointModel
from ecse.testing import point_clouds, random_rotation, rotations

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["pointnet2", "dgcnn", "point_transformer"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CUTOFF = 3.0
CLASSES = 5
CLOUDS = st.sampled_from(["random", "clustered"]).flatmap(lambda k: point_clouds(kind=k, min_points=6, max_points=24))


def _pyg_search_missing() -> bool:
    """PyG 2.8 without pyg-lib: its fps / radius / knn / knn_graph / DynamicEdgeConv raise."""
    from torch_geometric.nn import knn_graph
    try:
        knn_graph(torch.zeros(2, 3), k=1)
    except ImportError:
        return True
    return False


try:
    import torch_cluster
except ImportError:  # PyG 2.7's neighbour search, and the stand-in for pyg-lib under PyG 2.8
    torch_cluster = None
_skip = pytest.mark.skipif(torch_cluster is None and _pyg_search_missing(),
                           reason="PyG's fps/radius/knn need torch-cluster or pyg-lib")


def _dynamic_forward(self, x, batch=None):
    """``DynamicEdgeConv.forward`` of PyG 2.7 (kNN from torch-cluster)."""
    x = (x, x) if isinstance(x, torch.Tensor) else x
    b = (batch, batch) if isinstance(batch, torch.Tensor) else (batch or (None, None))
    return self.propagate(torch_cluster.knn(x[0], x[1], self.k, b[0], b[1]).flip([0]), x=x)


@contextlib.contextmanager
def neighbour_search():
    """Under PyG 2.8 without pyg-lib, give the models torch-cluster's search, which PyG 2.7
    calls with the same arguments (the models and the adapter are not touched)."""
    if not _pyg_search_missing():
        yield
        return
    from torch_geometric.nn import DynamicEdgeConv

    from . import thirdparty_models as tm
    with contextlib.ExitStack() as stack:
        for name in ("fps", "knn", "knn_graph", "radius"):
            stack.enter_context(mock.patch.object(tm, name, getattr(torch_cluster, name)))
        stack.enter_context(mock.patch.object(DynamicEdgeConv, "forward", _dynamic_forward))
        stack.enter_context(mock.patch("torch_geometric.typing.WITH_KNN", True))  # DynamicEdgeConv.__init__
        yield


def needs_cluster(test):
    """Skip without a neighbour search for PyG; run the test inside :func:`neighbour_search`."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        with neighbour_search():
            return test(*args, **kwargs)
    return _skip(run)


def _model(name: str):
    from .thirdparty_models import DGCNNNet, PointNet2Net, PointTransformerNet

    torch.manual_seed(0)
    if name == "pointnet2":
        return PointNet2Net(CLASSES, r1=1.5, r2=3.0)
    if name == "dgcnn":
        return DGCNNNet(CLASSES, k=6)
    return PointTransformerNet(0, CLASSES, k=6)


def _same_randomness(seed: int = 0) -> None:
    """The same random draws for both calls of a comparison: torch's generator (dropout,
    pyg-lib) and the C library's ``rand`` (torch-cluster's random ``fps`` start)."""
    torch.manual_seed(seed)
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).srand(seed)


def _call(model, pos: torch.Tensor, dtype: torch.dtype, wrapped: bool = True):
    data = Batch.from_data_list([Data(pos=pos.to(dtype))])
    _same_randomness()
    if not wrapped and "pos" in __import__("inspect").signature(model.forward).parameters:
        return model(data.x, data.pos, data.batch)  # as PyG's Point Transformer example calls it
    return model(data)


def _err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).norm()) / max(float(b.norm()), 1e-4)


def _pair(model, pos, R, dtype, wrapped=True):
    pos = pos.to(torch.float64)
    shift = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    with torch.no_grad():
        return _call(model, pos, dtype, wrapped), _call(model, pos @ R.to(torch.float64).T + shift, dtype, wrapped)


def _distance_ties(pos, tol=1e-6):
    d = torch.cdist(pos, pos).sort(dim=1).values
    return bool((d[:, 1:] - d[:, :-1] < tol).any())


def test_the_models_import_only_torch_and_pyg():
    tree = ast.parse((ROOT / "tests" / "thirdparty_models.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add("." if node.level else node.module.split(".")[0])
    assert roots == {"torch", "torch_geometric"}, roots


@needs_cluster
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4, deadline=None)
@given(data=CLOUDS, R=rotations())
def test_unchanged_thirdparty_models_are_exact_in_local_mode(name, data, R):
    assume(not _distance_ties(data.pos))  # kNN and FPS choices are discontinuous at exact ties
    for dtype in (torch.float64, torch.float32):
        model = ECSE(_model(name).to(dtype).eval(), cutoff=CUTOFF, mode="local", out_shape=(CLASSES,))
        a, b = _pair(model, data.pos, R, dtype)
        assert a.shape == (1, CLASSES) and a.dtype == dtype and torch.isfinite(a).all()
        assert _err(b, a) <= TOL[dtype], (_err(b, a), dtype)


def _cloud(seed: int, n: int = 24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.5, random_rotation(g, dtype=torch.float64)


@needs_cluster
@pytest.mark.parametrize("name", NAMES)
def test_bare_models_are_not_invariant_and_stay_unchanged(name):
    pos, R = _cloud(1)
    bare = _model(name).double().eval()
    keys = sorted(bare.state_dict())
    a, b = _pair(bare, pos, R, torch.float64, wrapped=False)
    assert _err(b, a) > 1e-5, "the bare model looks invariant already"
    model = ECSE(bare, cutoff=CUTOFF, mode="local", out_shape=(CLASSES,))
    c, d = _pair(model, pos, R, torch.float64)
    assert _err(d, c) <= 1e-10 and _err(c, a) > 1e-5  # exact, and not the bare output
    assert model.last_stats["frames_per_centre"] > 0
    # the wrapped model is unchanged outside the wrapper: same outputs, same state-dict keys
    assert torch.equal(_pair(bare, pos, R, torch.float64, wrapped=False)[0], a)
    assert sorted(model.backbone.state_dict()) == keys == sorted(bare.state_dict())
    # the layers that read relative positions are the adapted ones
    expected = {"pointnet2": ["sa1_module.conv", "sa2_module.conv"], "dgcnn": ["conv1", "conv2"],
                "point_transformer": ["transformer_input.transformer", "transformers_down.0.transformer",
                                      "transformers_down.1.transformer"]}[name]
    assert model.backbone.adapted == expected


@needs_cluster
def test_dgcnn_example_second_layer_runs_bare_on_features():
    model = LocalPointModel(_model("dgcnn").double().eval(), cutoff=CUTOFF)
    pos, _ = _cloud(2)
    _call(model, pos, torch.float64)
    assert [(r["layer"], r["mode"]) for r in model.last_stats["layers"]] == [("conv1", "frames"), ("conv2", "bare")]


@needs_cluster
def test_model_with_x_pos_batch_arguments_is_called_by_name_or_directly():
    """PyG's Point Transformer example takes ``(x, pos, batch)``: the adapter calls it with
    the data's attributes by name, or passes the model's own arguments through."""
    model = LocalPointModel(_model("point_transformer").double().eval(), cutoff=CUTOFF)
    pos, R = _cloud(3)
    data = Batch.from_data_list([Data(pos=pos), Data(pos=pos[:15] @ R.T)])
    with torch.no_grad():
        _same_randomness()
        by_name = model(data)
        _same_randomness()
        direct = model(None, data.pos, data.batch)
        _same_randomness()
        keywords = model(x=None, pos=data.pos, batch=data.batch)
    assert by_name.shape == (2, CLASSES) and torch.equal(by_name, direct) and torch.equal(by_name, keywords)


@needs_cluster
@pytest.mark.parametrize("name", NAMES)
def test_training_mode_through_the_wrapper_is_invariant_and_has_gradients(name):
    """Batch norm over all frame copies and dropout with the same seed: still exact."""
    pos, R = _cloud(4)
    model = ECSE(_model(name).double().train(), cutoff=CUTOFF, mode="local", out_shape=(CLASSES,))
    a = _call(model, pos, torch.float64)
    b = _call(model, pos @ R.T, torch.float64)
    assert _err(b, a) <= 1e-10
    a.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def _benchmark(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_local_shapes_benchmark_smoke(capsys):
    rows = _benchmark("local_shapes").main(["--budget", "0.3", "--n-train-per-class", "2", "--n-test-per-class", "1",
                                            "--n-points", "24", "--k", "5", "--hidden", "8"])
    assert [r["model"] for r in rows] == ["bare", "global", "local"]
    assert all(r["epochs"] > 0 and 0 <= r["acc_rot"] <= 1 and r["train_s"] >= 0.3 for r in rows)
    assert rows[1]["changed"] == rows[2]["changed"] == 0  # exactly invariant predictions
    out = capsys.readouterr().out
    assert "ECSE local" in out and "acc rot" in out


def test_local_shapes_benchmark_equal_epochs(capsys):
    rows = _benchmark("local_shapes").main(["--epochs", "2", "--models", "local", "local-centre",
                                            "--n-train-per-class", "2", "--n-test-per-class", "1",
                                            "--n-points", "24", "--k", "5", "--hidden", "8", "--dropout", "0.5"])
    assert [r["model"] for r in rows] == ["local", "local-centre"]
    assert all(r["epochs"] == 2 and r["changed"] == 0 for r in rows)
    assert "2 epochs per model" in capsys.readouterr().out


def test_local_shapes_jitter_is_the_same_for_every_model():
    """The training recipe's jitter: fresh per epoch, fixed by the seed (not by the model),
    of the requested size, on copies (the training shapes stay as they were)."""
    bench = _benchmark("local_shapes")
    shapes = make_shapes(2, 40, seed=0)
    before = [d.pos.clone() for d in shapes]
    a, b, c = (bench.jitter_shapes(shapes, 0.01, seed) for seed in (5, 5, 6))
    assert all(torch.equal(x.pos, y.pos) for x, y in zip(a, b))
    assert not torch.equal(a[0].pos, c[0].pos)
    noise = torch.cat([x.pos - d.pos for x, d in zip(a, shapes)])
    assert 0.008 < float(noise.std()) < 0.012 and a[0].pos.dtype == shapes[0].pos.dtype
    assert all(torch.equal(d.pos, p) for d, p in zip(shapes, before))


def test_local_pointcloud_benchmark_workers_and_summary(capsys):
    bench = _benchmark("local_pointcloud")
    rows = []
    for mode in ("bare", "local", "global"):
        bench.main(["--worker", mode, "--model", "dgcnn", "--size", "48", "--repeats", "1"])
        rows.append(__import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert rows[1]["frames"] > 0 and rows[2]["frames"] > 1 and all(r["seconds"] > 0 for r in rows)
    rows += [dict(r, points=1024) for r in rows[:2]] + [dict(rows[1], points=96, seconds=2 * rows[1]["seconds"])]
    bench._summary(rows, ["dgcnn"], [48, 96])
    line = capsys.readouterr().out.splitlines()[-2].split()
    # local: twice the time for twice the points; bare: no time at 96 points
    assert line[0] == "dgcnn" and float(line[2]) == pytest.approx(1.0) and line[3] == "-"
    # local / bare per size: at 48 points, and none at 96 points (no bare time)
    assert float(line[4]) == pytest.approx(rows[1]["seconds"] / rows[0]["seconds"], rel=1e-2) and line[5] == "-"
