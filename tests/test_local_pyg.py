"""Local mode for unchanged PyG point models (``ecse.pyg``): exact invariance per layer type.

References are independent of the adapter: the same model on a rotated (and translated)
cloud.  Each model test also checks that the bare model is far from invariant, so a test
would notice if the adapter did nothing.
"""
import io

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import (MLP, DynamicEdgeConv, EdgeConv, GCNConv, MessagePassing, PointNetConv,
                                PointTransformerConv, PPFConv)
from torch_geometric.utils import scatter

from ecse import ECSE, FrameParams, point_ops
from ecse.backbones import DGCNN, PointNet2, PointTransformer
from ecse.pyg import LocalFrameLayer, LocalPointModel, edge_local_frames, local_context, symmetrize_layers
from ecse.pyg.model import _coordinates_hook
from ecse.switching import cutoff_function
from ecse.testing import orthogonal_matrices, point_clouds, random_rotation, rotations, transform_output

from .models import make_backbone
from .test_smoothness import _assert_continuous

BACKBONES = ["pointnet2", "dgcnn", "point_transformer"]
GENERIC = ["random", "clustered", "planar", "collinear", "near_degenerate"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CLOUDS = st.sampled_from(GENERIC).flatmap(lambda k: point_clouds(kind=k, min_points=3, max_points=12))


def _err(a, b):
    return float((a - b).norm()) / max(float(b.norm()), 1e-4)


def _distance_ties(pos, tol=1e-6):
    d = torch.cdist(pos, pos).sort(dim=1).values
    return bool((d[:, 1:] - d[:, :-1] < tol).any())


def _outputs(model, data, R, dtype):
    pos = data.pos.to(torch.float64)
    shift = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    one = Batch.from_data_list([Data(pos=pos.to(dtype))])
    two = Batch.from_data_list([Data(pos=(pos @ R.to(torch.float64).T + shift).to(dtype))])
    with torch.no_grad():
        return model(one), model(two)


def _check(model, data, R, dtype):
    a, b = _outputs(model, data, R, dtype)
    assert a.dtype == dtype and torch.isfinite(a).all()
    assert _err(b, a) <= TOL[dtype], (_err(b, a), dtype)


class RelConv(MessagePassing):
    """A user layer: messages from ``pos_j - pos_i`` (not invariant by itself)."""

    def __init__(self, channels: int = 8):
        super().__init__(aggr="add")
        self.mlp = nn.Sequential(nn.Linear(3, channels), nn.Tanh(), nn.Linear(channels, channels))

    def forward(self, x, pos, edge_index):
        return self.propagate(edge_index, x=x, pos=pos)

    def message(self, x_j, pos_i, pos_j):
        return x_j * self.mlp(pos_j - pos_i)


class LayerNet(nn.Module):
    """One geometric layer of the given type, then invariant features only."""

    def __init__(self, kind: str, level: str = "graph", radius: float = 3.0):
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.level, self.radius = kind, level, radius
        self.embed = nn.Linear(3, 8)  # reads raw coordinates: seen from each point's own frames
        if kind == "user":
            self.conv = RelConv(8)
        elif kind == "pointnet":
            self.conv = PointNetConv(MLP([8 + 3, 8, 8], norm=None), MLP([8, 8], norm=None))
        elif kind == "transformer":
            self.conv = PointTransformerConv(8, 8, pos_nn=MLP([3, 8, 8], norm=None), attn_nn=MLP([8, 8], norm=None))
        elif kind == "edge":
            self.conv = EdgeConv(MLP([2 * 11, 8, 8], norm=None), aggr="add")
        elif kind == "dynamic":
            self.conv = DynamicEdgeConv(MLP([2 * 3, 8, 8], norm=None), k=4, aggr="add")
        self.head = nn.Linear(8, 2)

    def forward(self, data):
        pos, batch = data.pos, data.batch
        x = torch.tanh(self.embed(pos))
        edges = point_ops.radius_graph(pos, self.radius, batch, loop=False)
        if self.kind == "edge":
            h = self.conv(torch.cat([x, pos], -1), edges)
        elif self.kind == "dynamic":
            h = self.conv(pos, batch)
        else:
            h = self.conv(x, pos, edges)
        y = self.head(torch.tanh(h))
        return y if self.level == "node" else scatter(y, batch, 0, dim_size=data.num_graphs, reduce="sum")


def _local_layer_net(kind, level, dtype):
    return LocalPointModel(LayerNet(kind, level).to(dtype), cutoff=3.0)


@pytest.mark.parametrize("level", ["graph", "node"])
@pytest.mark.parametrize("kind", ["user", "pointnet", "transformer", "edge", "dynamic"])
@settings(max_examples=4, deadline=None)
@given(data=st.sampled_from(GENERIC + ["symmetric"]).flatmap(
    lambda k: point_clouds(kind=k, min_points=3, max_points=12)), R=rotations())
def test_every_adapted_layer_type_is_exact(kind, level, data, R):
    if kind == "dynamic":
        try:  # PyG's DynamicEdgeConv needs torch-cluster (torch-geometric <= 2.7) or pyg-lib (2.8)
            DynamicEdgeConv(nn.Identity(), k=1)
        except ImportError as err:
            pytest.skip(str(err))
    # kNN graphs are discontinuous at exact distance ties, which symmetric clouds have
    # (test_exactness.py excludes them for kNN backbones for the same reason)
    assume(kind != "dynamic" or not _distance_ties(data.pos))
    for dtype in (torch.float64, torch.float32):
        _check(_local_layer_net(kind, level, dtype), data, R, dtype)


@pytest.mark.parametrize("kind", ["user", "pointnet", "transformer", "edge"])
def test_bare_layer_nets_are_not_invariant(kind):
    data = Data(pos=torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    R = random_rotation(torch.Generator().manual_seed(1), dtype=torch.float64)
    a, b = _outputs(LayerNet(kind).double(), data, R, torch.float64)
    assert _err(b, a) > 1e-3


@pytest.mark.parametrize("level", ["graph", "node"])
@pytest.mark.parametrize("name", BACKBONES)
@settings(max_examples=3, deadline=None)
@given(data=CLOUDS, R=rotations())
def test_shipped_backbones_are_exact_in_local_mode(name, level, data, R):
    for dtype in (torch.float64, torch.float32):
        _check(LocalPointModel(make_backbone(name, 2, level).to(dtype), cutoff=3.0), data, R, dtype)


@pytest.mark.parametrize("backend", ["torch", "cluster"])
@pytest.mark.parametrize("name", BACKBONES)
def test_both_neighbour_backends_exact_and_bare_not(name, backend):
    if backend == "cluster" and not point_ops.HAS_TORCH_CLUSTER:
        pytest.skip("torch-cluster is not installed")
    g = torch.Generator().manual_seed(7)
    data = Data(pos=torch.randn(16, 3, generator=g, dtype=torch.float64) * 1.5)
    R = random_rotation(g, dtype=torch.float64)
    with point_ops.use_backend(backend):
        bare = make_backbone(name, 2, "node").double()
        a, b = _outputs(bare, data, R, torch.float64)
        assert _err(b, a) > 1e-3, "the bare backbone looks invariant already"
        model = LocalPointModel(bare, cutoff=3.0)
        for dtype in (torch.float64, torch.float32):
            _check(model.to(dtype), data, R, dtype)
        assert model.last_stats["frames_per_centre"] > 0


@pytest.mark.parametrize("name", BACKBONES)
def test_batched_clouds_match_single_clouds_and_tiny_clouds_run(name):
    model = LocalPointModel(make_backbone(name, 2, "node").double(), cutoff=3.0)
    g = torch.Generator().manual_seed(13)
    clouds = [torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.3 for n in (7, 1, 2, 9)]
    with torch.no_grad():
        together = model(Batch.from_data_list([Data(pos=p) for p in clouds]))
        alone = torch.cat([model(Batch.from_data_list([Data(pos=p)])) for p in clouds])
    assert torch.isfinite(together).all() and torch.allclose(together, alone, atol=1e-12, rtol=0)


def test_layers_that_only_see_invariant_features_are_left_alone():
    net = nn.ModuleDict({"gcn": GCNConv(4, 4), "ppf": PPFConv(MLP([4, 4])), "mlp": MLP([3, 4])})
    assert symmetrize_layers(net) == [] and type(net["gcn"]) is GCNConv and type(net["ppf"]) is PPFConv
    with pytest.raises(ValueError, match="nothing to symmetrise"):
        LocalPointModel(net, cutoff=3.0)
    # DGCNN: only the first EdgeConv (on coordinates) is evaluated in frames
    model = LocalPointModel(make_backbone("dgcnn", 2).double(), cutoff=3.0)
    data = Batch.from_data_list([Data(pos=torch.randn(9, 3, dtype=torch.float64))])
    model(data)
    modes = [(r["layer"], r["mode"]) for r in model.last_stats["layers"]]
    assert modes[0] == ("convs.0", "frames") and all(m == "bare" for _, m in modes[1:]) and len(modes) == 4


def test_ppf_conv_is_invariant_without_adaptation():
    torch.manual_seed(0)
    conv = PPFConv(MLP([4, 8], norm=None)).double()

    def net(data):  # normals rotate with the cloud; point-pair features are invariant
        pos = data.pos - data.pos.mean(0)
        normal = pos / pos.norm(dim=-1, keepdim=True)
        return conv(None, pos, normal, point_ops.radius_graph(pos, 3.0)).sum(0)

    assert symmetrize_layers(nn.ModuleList([conv])) == []
    data = Data(pos=torch.randn(10, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    R = random_rotation(torch.Generator().manual_seed(3), dtype=torch.float64)
    a, b = _outputs(net, data, R, torch.float64)
    assert _err(b, a) <= 1e-10


def test_outside_the_wrapper_the_adapted_model_is_the_bare_one():
    bare = make_backbone("point_transformer", 2).double()
    data = Batch.from_data_list([Data(pos=torch.randn(10, 3, dtype=torch.float64))])
    with torch.no_grad():
        before = bare(data)
        local = LocalPointModel(bare, cutoff=3.0)
        assert isinstance(bare.blocks[0].conv, LocalFrameLayer)
        assert torch.equal(bare(data), before) and not torch.allclose(local(data), before)
    assert symmetrize_layers(bare) == local.adapted  # idempotent


def test_coordinates_as_features_need_the_hook():
    """Point Transformer embeds raw coordinates; without the hook the output is not invariant."""
    model = LocalPointModel(make_backbone("point_transformer", 2).double(), cutoff=3.0)
    data = Data(pos=torch.randn(12, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    R = random_rotation(torch.Generator().manual_seed(5), dtype=torch.float64)
    for module in model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _coordinates_hook:
                del module._forward_pre_hooks[key]
    a, b = _outputs(model, data, R, torch.float64)
    assert _err(b, a) > 1e-3


class _Capture(nn.Module):
    """EdgeConv's ``nn``: remembers its input ``[x_i, x_j - x_i]``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, z):
        self.seen = z.detach()
        return self.lin(z)


class _EdgeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = EdgeConv(_Capture(), aggr="max")

    def forward(self, data):
        return self.conv(data.pos, point_ops.knn_graph(data.pos, 4, data.batch))


@pytest.mark.parametrize("origin", ["centroid", "centre"])
def test_edge_conv_sees_coordinates_from_the_centroid_in_the_centres_frames(origin):
    """origin='centroid': the centre at (p_i - c) F_ik (|p_i - c| preserved), sources at
    (p_j - c) F_ik; origin='centre': the centre at zero.  x_j - x_i is the same either way."""
    g = torch.Generator().manual_seed(21)
    clouds = [Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64) + 5.0 * i) for i, n in enumerate((9, 11))]
    batch = Batch.from_data_list(clouds)
    model = LocalPointModel(_EdgeNet().double(), cutoff=3.0, origin=origin)
    model(batch)
    seen = model.model.conv.layer.nn.seen
    centre, rel = seen[:, :3], seen[:, 3:]
    if origin == "centre":
        assert torch.equal(centre, torch.zeros_like(centre))
    else:
        c = torch.stack([d.pos.mean(0) for d in clouds])[batch.batch]
        radii = (batch.pos - c).norm(dim=-1)
        got = centre.norm(dim=-1)
        # every copy's centre sits at the distance of one of the points from its centroid
        assert bool((got[:, None] - radii[None, :]).abs().min(1).values.max() < 1e-12)
        assert got.max() > 1.0  # not at the origin
    lengths = torch.cdist(batch.pos, batch.pos)
    assert bool((rel.norm(dim=-1)[:, None] - lengths.flatten()[None]).abs().min(1).values.max() < 1e-12)


@pytest.mark.parametrize("name", BACKBONES)
@settings(max_examples=3, deadline=None)
@given(data=CLOUDS, R=rotations())
def test_centroid_origin_is_exact(name, data, R):
    """origin='centroid' (coordinates from each graph's centroid, in the centres' frames):
    two graphs per batch, only the second rotated and translated."""
    other = torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.3
    pos = data.pos.to(torch.float64)
    moved = pos @ R.to(torch.float64).T + torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        model = LocalPointModel(make_backbone(name, 2, "node").to(dtype), cutoff=3.0, origin="centroid")
        with torch.no_grad():
            a = model(Batch.from_data_list([Data(pos=other.to(dtype)), Data(pos=pos.to(dtype))]))
            b = model(Batch.from_data_list([Data(pos=other.to(dtype)), Data(pos=moved.to(dtype))]))
        assert _err(b, a) <= TOL[dtype], (_err(b, a), dtype)


def test_local_output_depends_on_the_shape():
    model = LocalPointModel(LayerNet("user").double(), cutoff=3.0)
    g = torch.Generator().manual_seed(6)
    pos = torch.randn(8, 3, generator=g, dtype=torch.float64)
    a, _ = _outputs(model, Data(pos=pos), torch.eye(3), torch.float64)
    b, _ = _outputs(model, Data(pos=pos * 1.3), torch.eye(3), torch.float64)
    assert _err(b, a) > 1e-3


def test_gradients_rotate_with_the_cloud():
    model = LocalPointModel(LayerNet("transformer").double(), cutoff=3.0)
    g = torch.Generator().manual_seed(8)
    pos = torch.randn(9, 3, generator=g, dtype=torch.float64) * 1.2
    R = random_rotation(g, dtype=torch.float64)

    def grad(p):
        p = p.clone().requires_grad_(True)
        model(Batch.from_data_list([Data(pos=p)])).sum().backward()
        return p.grad

    g1, g2 = grad(pos), grad(pos @ R.T)
    assert torch.isfinite(g1).all() and _err(g2, g1 @ R.T) <= 1e-10


def test_edge_frames_weights_sum_to_one_and_follow_the_edges():
    g = torch.Generator().manual_seed(9)
    center = torch.tensor([0, 0, 0, 0, 1, 1, 3])
    vector = torch.randn(7, 3, generator=g, dtype=torch.float64)
    lf = edge_local_frames(center, vector, 4, 3.0)
    sums = torch.zeros(4, dtype=torch.float64).index_add(0, lf.atom, lf.weight)
    assert torch.allclose(sums, torch.ones(4, dtype=torch.float64), atol=1e-14)
    # centres with fewer than two edges have no frame (auxiliary copy only)
    assert bool(lf.invariant[(lf.atom == 2) | (lf.atom == 3)].all()) and bool((~lf.invariant[lf.atom == 0]).any())
    # a rotated edge set gives rotated frames (R F) with the same weights
    R = random_rotation(g, dtype=torch.float64)
    lf2 = edge_local_frames(center, vector @ R.T, 4, 3.0)
    assert torch.allclose(lf2.weight, lf.weight, atol=1e-12)
    frames = ~lf.invariant  # auxiliary copies keep the identity
    assert torch.equal(lf2.invariant, lf.invariant)
    assert torch.allclose(lf2.rotation[frames], R @ lf.rotation[frames], atol=1e-12)


class SmoothRelConv(RelConv):
    """``RelConv`` whose messages fade out smoothly at the radius of its graph."""

    def message(self, x_j, pos_i, pos_j):
        fade = cutoff_function((pos_j - pos_i).norm(dim=-1, keepdim=True), 4.0, 1.0)
        return x_j * self.mlp(pos_j - pos_i) * fade


def _smooth_model():
    net = LayerNet("user", radius=4.0)
    net.conv = SmoothRelConv(8)
    return LocalPointModel(net.double(), cutoff=4.0)


def _copies_along(model, x0, v, ts):
    """Frames (and auxiliary centres) of the adapted layer along ``X(t) = X0 + t V``."""
    out = []
    with torch.no_grad():
        for t in ts:
            model(Batch.from_data_list([Data(pos=x0 + t * v)]))
            out.append((model.last_stats["frames_per_centre"], model.last_stats["aux_centres"]))
    return out


def test_smooth_when_a_neighbour_crosses_the_inner_cutoff():
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.05, 0], [0.3, 0.4, 1.0], [3.5, 3.0, 0.5]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3] = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64) * 1.2
    model = _smooth_model()
    assert len(set(_copies_along(model, x0, v, torch.linspace(0, 1, 21, dtype=torch.float64)))) > 1
    _assert_continuous(model, x0, v)


def test_smooth_hand_over_to_the_auxiliary_copies_when_collinear():
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0.6, 0], [2.0, 0, 0], [3.0, 0.6, 0]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[1, 1] = v[3, 1] = -0.6
    model = _smooth_model()
    stats = _copies_along(model, x0, v, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert stats[0][0] > 0 and stats[1] == (0.0, 4)  # frames at the start, only auxiliary copies at the end
    _assert_continuous(model, x0, v)


def test_smooth_when_a_point_enters_the_layer_radius():
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.1, 0], [0.2, 0.1, 1.3], [4.6, 0.3, 0.2]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[4, 0] = -1.2  # atom 4 enters the 4.0 radius of atoms 0-3
    _assert_continuous(_smooth_model(), x0, v)


class NormNet(nn.Module):
    """Reads ``[features, r]`` (``r`` the last three columns) through ``|r|`` only: invariant."""

    def __init__(self, c_in: int, c_out: int, drop: int = 0):
        super().__init__()
        self.drop, self.lin = drop, nn.Linear(c_in - 3 - drop + 1, c_out)

    def forward(self, m):
        return torch.tanh(self.lin(torch.cat([m[:, self.drop:-3], m[:, -3:].norm(dim=-1, keepdim=True)], -1)))


class EdgeNormNet(nn.Module):
    """EdgeConv's ``nn`` on ``[x_i, x_j - x_i]`` with coordinates last in ``x``: reads the
    features and ``|p_j - p_i|`` only (not the absolute ``p_i``)."""

    def __init__(self, c: int, c_out: int):
        super().__init__()
        self.c, self.lin = c, nn.Linear(2 * c + 1, c_out)

    def forward(self, m):
        c = self.c
        xi, d = m[:, :c], m[:, c + 3:]
        return torch.tanh(self.lin(torch.cat([xi, d[:, :c], d[:, c:].norm(dim=-1, keepdim=True)], -1)))


@pytest.mark.parametrize("kind", ["pointnet", "bipartite", "transformer", "user", "edge"])
def test_a_layer_with_invariant_messages_is_unchanged(kind):
    """All frame copies then give the same value: the bookkeeping (edges per copy, self
    loops, features, pairs, weights summing to one) must reproduce the bare layer."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(11)
    pos = torch.randn(14, 3, generator=g, dtype=torch.float64) * 1.3
    x = torch.randn(14, 4, generator=g, dtype=torch.float64)
    edges = point_ops.radius_graph(pos, 2.5)
    centres = torch.tensor([0, 3, 5, 8, 13])
    if kind == "pointnet":
        layer, args = PointNetConv(NormNet(7, 6), aggr="add"), (x, pos, edges)
    elif kind == "bipartite":  # as PointNet++ set abstraction: centres are a subset
        row, col = point_ops.radius(pos, pos[centres], 2.5)
        layer = PointNetConv(NormNet(7, 6), aggr="add", add_self_loops=False)
        args = ((x, x[centres]), (pos, pos[centres]), torch.stack([col, row]))
    elif kind == "transformer":
        layer = PointTransformerConv(4, 4, pos_nn=NormNet(3, 4), attn_nn=nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
        args = (x, pos, edges)
    elif kind == "user":
        layer = RelConv(4)
        layer.mlp = NormNet(3, 4)
        args = (x, pos, edges)
    else:
        layer, args = EdgeConv(EdgeNormNet(4, 6), aggr="add"), (torch.cat([x, pos], -1), edges)
    layer = layer.double()
    bare = layer(*args)
    adapted = LocalFrameLayer(layer)
    with local_context(2.5) as ctx:
        ctx.register(pos)
        local = adapted(*args)
    assert ctx.records[0]["mode"] == "frames" and ctx.records[0]["copies"] > ctx.records[0]["centres"]
    assert torch.allclose(local, bare, atol=1e-12, rtol=0), float((local - bare).abs().max())


@pytest.mark.parametrize("output", ["vector", "rank2"])
@pytest.mark.parametrize("name", BACKBONES)
@settings(max_examples=2, deadline=None)
@given(data=CLOUDS, R=rotations())
def test_covariant_node_outputs_rotate_back_per_node(name, output, data, R):
    channels = {"vector": 3, "rank2": 9}[output]
    for dtype in (torch.float64, torch.float32):
        model = LocalPointModel(make_backbone(name, channels, "node").to(dtype), cutoff=3.0, output=output,
                                level="node")
        a, b = _outputs(model, data, R, dtype)
        Rd = R.to(dtype)
        expected = a @ Rd.T if output == "vector" else Rd @ a @ Rd.T
        assert _err(b, expected) <= TOL[dtype], (_err(b, expected), dtype)


def test_covariant_node_outputs_are_not_trivial():
    model = LocalPointModel(make_backbone("dgcnn", 3, "node").double(), cutoff=3.0, output="vector", level="node")
    data = Data(pos=torch.randn(12, 3, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 1.3)
    a, _ = _outputs(model, data, torch.eye(3, dtype=torch.float64), torch.float64)
    assert bool((a.norm(dim=-1) > 1e-3).all())  # every node has frames here


GRAPH_OUTPUTS = {"vector": 3, "rank2": 9, "1x0e+1x1o+1x2e": 9}


def _act(output, R, y):
    """``y`` (``[..., *components]``) rotated by ``R``, computed independently of ECSE."""
    if output == "vector":
        return y @ R.T
    if output == "rank2":
        return R @ y @ R.T
    return transform_output(y, R, output)  # the test kit's Wigner matrices (checked against e3nn)


@pytest.mark.parametrize("output", list(GRAPH_OUTPUTS))
@pytest.mark.parametrize("name", BACKBONES)
@settings(max_examples=2, deadline=None)
@given(data=CLOUDS, R=rotations())
def test_covariant_graph_outputs_rotate_with_the_cloud(name, output, data, R):
    """Graph level: per-node outputs rotated back per node, summed per graph (two graphs
    in one batch, only the second rotated and translated)."""
    other = Data(pos=torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.3)
    for dtype in (torch.float64, torch.float32):
        model = LocalPointModel(make_backbone(name, GRAPH_OUTPUTS[output], "node").to(dtype), cutoff=3.0,
                                output=output, level="graph")
        pos = data.pos.to(torch.float64)
        moved = pos @ R.to(torch.float64).T + torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
        one = Batch.from_data_list([Data(pos=other.pos.to(dtype)), Data(pos=pos.to(dtype))])
        two = Batch.from_data_list([Data(pos=other.pos.to(dtype)), Data(pos=moved.to(dtype))])
        with torch.no_grad():
            a, b = model(one), model(two)
        assert a.shape[0] == 2 and a.dtype == dtype and torch.isfinite(a).all()
        Rd = R.to(dtype)
        expected = _act(output, Rd, a[1:].reshape(1, 3, 3) if output == "rank2" else a[1:])
        assert _err(b[1:], expected) <= TOL[dtype], (_err(b[1:], expected), dtype)
        assert _err(b[:1], a[:1]) <= TOL[dtype]  # the unmoved graph is unchanged


def test_covariant_graph_output_is_the_sum_of_node_outputs_and_not_trivial():
    g = torch.Generator().manual_seed(13)
    clouds = [Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.3) for n in (9, 12)]
    batch = Batch.from_data_list(clouds)
    bare = make_backbone("dgcnn", 3, "node").double()
    node = LocalPointModel(bare, cutoff=3.0, output="vector", level="node")
    graph = LocalPointModel(bare, cutoff=3.0, output="vector", level="graph")
    with torch.no_grad():
        per_node, per_graph = node(batch), graph(batch)
    assert per_graph.shape == (2, 3) and bool((per_graph.norm(dim=-1) > 1e-3).all())
    assert torch.allclose(per_graph, scatter(per_node, batch.batch, 0, reduce="sum"), atol=1e-12)


def test_covariant_output_of_a_pooled_model_is_refused():
    model = LocalPointModel(make_backbone("dgcnn", 3), cutoff=3.0, output="vector")  # graph-level backbone
    data = Batch.from_data_list([Data(pos=torch.randn(12, 3, dtype=torch.float64))] * 2)
    with pytest.raises(ValueError, match="per-node outputs"):
        model.double()(data)


class NormalConv(MessagePassing):
    """A user layer with normals (rotated with the frame) and invariant edge attributes."""

    def __init__(self, invariant: bool = False):
        super().__init__(aggr="add")
        self.invariant = invariant
        self.mlp = nn.Sequential(nn.Linear(3 + 3 + 3 + 1, 8), nn.Tanh(), nn.Linear(8, 4))

    def forward(self, x, pos, normal, edge_index, edge_attr):
        return self.propagate(edge_index, x=x, pos=pos, normal=normal, edge_attr=edge_attr)

    def message(self, x_j, pos_i, pos_j, normal_i, normal_j, edge_attr):
        r = pos_j - pos_i
        if self.invariant:  # dot products only: the bare layer is invariant already
            r = torch.stack([r.norm(dim=-1), (normal_i * normal_j).sum(-1), (r * normal_j).sum(-1)], -1)
            n_i, n_j = torch.zeros_like(r), torch.zeros_like(r)
        else:
            n_i, n_j = normal_i, normal_j
        return x_j * self.mlp(torch.cat([r, n_i, n_j, edge_attr], -1))


class NormalNet(nn.Module):
    def __init__(self, invariant: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = NormalConv(invariant)

    def forward(self, data):
        pos = data.pos
        centred = pos - pos.mean(0)
        normal = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        edges = point_ops.radius_graph(pos, 3.0)
        dist = (pos[edges[0]] - pos[edges[1]]).norm(dim=-1, keepdim=True)
        x = torch.ones(pos.shape[0], 4, dtype=pos.dtype)
        return self.conv(x, pos, normal, edges, dist).sum(0, keepdim=True)


def test_user_layer_with_normals_and_edge_attributes():
    g = torch.Generator().manual_seed(16)
    data = Data(pos=torch.randn(11, 3, generator=g, dtype=torch.float64) * 1.3)
    R = random_rotation(g, dtype=torch.float64)
    a, b = _outputs(NormalNet().double(), data, R, torch.float64)
    assert _err(b, a) > 1e-3  # bare: not invariant
    for dtype in (torch.float64, torch.float32):
        _check(LocalPointModel(NormalNet().to(dtype), cutoff=3.0), data, R, dtype)
    # with invariant messages the adapted layer is the bare one where every centre has
    # frames (auxiliary copies see no normals: they carry no direction)
    net = NormalNet(invariant=True).double()
    one = Batch.from_data_list([Data(pos=data.pos * 0.6)])
    model = LocalPointModel(net, cutoff=3.0)
    with torch.no_grad():
        bare, local = net(one), model(one)
    assert model.last_stats["aux_centres"] == 0
    assert torch.allclose(local, bare, atol=1e-12, rtol=0)


@settings(max_examples=4, deadline=None)
@given(data=CLOUDS, Q=orthogonal_matrices())
def test_o3_adds_mirror_frames_and_is_exact_under_reflections(data, Q):
    model = LocalPointModel(make_backbone("point_transformer", 2, "node").double(), cutoff=3.0, o3=True)
    _check(model, data, Q, torch.float64)
    so3 = LocalPointModel(make_backbone("point_transformer", 2, "node").double(), cutoff=3.0)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    cloud = Data(pos=torch.randn(10, 3, generator=torch.Generator().manual_seed(17), dtype=torch.float64))
    a, b = _outputs(so3, cloud, mirror, torch.float64)
    assert _err(b, a) > 1e-4  # SO(3) frames alone do not see reflections


@pytest.mark.parametrize("name", BACKBONES)
def test_invariant_point_features_next_to_coordinates(name):
    """``in_channels > 0``: the models read ``[x, pos]``; only the coordinate columns change."""
    torch.manual_seed(0)
    cls, kw = {"pointnet2": (PointNet2, dict(ratios=(0.75, 0.5), radii=(1.5, 3.0))), "dgcnn": (DGCNN, dict(k=4)),
               "point_transformer": (PointTransformer, dict(k=4))}[name]
    model = LocalPointModel(cls(2, in_channels=2, level="node", hidden=16, **kw).double(), cutoff=3.0)
    g = torch.Generator().manual_seed(18)
    pos = torch.randn(14, 3, generator=g, dtype=torch.float64) * 1.3
    x = torch.randn(14, 2, generator=g, dtype=torch.float64)
    R = random_rotation(g, dtype=torch.float64)
    with torch.no_grad():
        a = model(Batch.from_data_list([Data(pos=pos, x=x)]))
        b = model(Batch.from_data_list([Data(pos=pos @ R.T + 1.0, x=x)]))
        c = model(Batch.from_data_list([Data(pos=pos, x=x.flip(0))]))
    assert _err(b, a) <= 1e-10 and _err(c, a) > 1e-3  # the features still matter


def test_checkpoints_of_the_bare_model_load_and_back():
    bare = make_backbone("point_transformer", 2).double()
    keys = list(bare.state_dict())
    trained = make_backbone("point_transformer", 2).double()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)
    model = LocalPointModel(bare, cutoff=3.0)
    assert sorted(model.state_dict()) == sorted(keys) == sorted(bare.state_dict())  # wrapper and layers transparent
    model.load_state_dict(trained.state_dict())  # strict
    assert torch.equal(bare.blocks[0].conv.layer.lin.weight, trained.blocks[0].conv.lin.weight)
    fresh = make_backbone("point_transformer", 2).double()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.blocks[0].conv.lin.weight, trained.blocks[0].conv.lin.weight)
    buffer = io.BytesIO()  # the whole module pickles (hooks included)
    torch.save(model, buffer)
    buffer.seek(0)
    data = Batch.from_data_list([Data(pos=torch.randn(9, 3, dtype=torch.float64))])
    with torch.no_grad():
        assert torch.equal(torch.load(buffer, weights_only=False)(data), model(data))


@pytest.mark.parametrize("level", ["graph", "node"])
@pytest.mark.parametrize("name", BACKBONES)
def test_ecse_local_mode_uses_the_adapter_for_unchanged_pyg_models(name, level):
    g = torch.Generator().manual_seed(14)
    data = Data(pos=torch.randn(12, 3, generator=g, dtype=torch.float64) * 1.3)
    R = random_rotation(g, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        bare = make_backbone(name, 2, level).to(dtype)
        model = ECSE(bare, cutoff=3.0, mode="local", level=level, out_shape=(2,)).to(dtype)
        assert isinstance(model.backbone, LocalPointModel) and model.aux is None
        _check(model, data, R, dtype)
        assert model.last_stats["frames_per_centre"] > 0
        if dtype == torch.float64:  # the same numbers as the adapter on its own
            one = Batch.from_data_list([data])
            with torch.no_grad():
                assert torch.equal(model(one), LocalPointModel(bare, cutoff=3.0)(one))


def test_ecse_local_mode_vector_node_output_and_refusals():
    g = torch.Generator().manual_seed(15)
    data = Data(pos=torch.randn(10, 3, generator=g, dtype=torch.float64) * 1.3)
    R = random_rotation(g, dtype=torch.float64)
    model = ECSE(make_backbone("dgcnn", 3, "node").double(), cutoff=3.0, output="vector", level="node",
                 mode="local").double()
    a, b = _outputs(model, data, R, torch.float64)
    assert _err(b, a @ R.T) <= 1e-10
    assert model.params == FrameParams.published()  # a point model in local mode: the published settings
    with pytest.raises(ValueError, match="local_frames"):
        ECSE(nn.Linear(3, 1), cutoff=3.0, mode="local")  # nothing that reads relative positions
    graph = ECSE(make_backbone("dgcnn", 3, "node").double(), cutoff=3.0, output="vector", level="graph",
                 mode="local").double()
    a, b = _outputs(graph, data, R, torch.float64)
    assert a.shape == (1, 3) and _err(b, a @ R.T) <= 1e-10
    with pytest.raises(ValueError, match="per-node outputs"):  # a graph-level backbone pools itself
        _outputs(ECSE(make_backbone("dgcnn", 3).double(), cutoff=3.0, output="vector", mode="local").double(),
                 data, R, torch.float64)
