"""Local mode's global context (``LocalPointModel(origin="centroid")``, the default): every
centre's patch is seen from its graph's centroid in the centre's frames, so the network
knows how the patches sit in the cloud, exactly invariantly.

References are independent of the adapter: the same model on a rotated and translated
cloud.
"""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import EdgeConv

from ecse import ECSE, point_ops
from ecse.backbones import DGCNN
from ecse.pyg import LocalPointModel
from ecse.testing import point_clouds, rotations

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CLOUDS = st.sampled_from(["random", "clustered", "planar", "collinear", "near_degenerate"]).flatmap(
    lambda k: point_clouds(kind=k, min_points=4, max_points=12))


def _err(a, b):
    return float((a - b).norm()) / max(float(b.norm()), 1e-4)


class _PatchNet(nn.Module):
    """One EdgeConv on coordinates over a kNN graph, per-node outputs (as DGCNN's first layer)."""

    def __init__(self, k: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.k = k
        self.conv = EdgeConv(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)), aggr="max")

    def forward(self, data):
        return self.conv(data.pos, point_ops.knn_graph(data.pos, self.k, data.batch))


def test_default_origin_is_the_centroid():
    assert LocalPointModel(_PatchNet(), cutoff=3.0).origin == "centroid"
    model = ECSE(DGCNN(2, k=4, hidden=4), cutoff=3.0, mode="local", out_shape=(2,))
    assert model.backbone.origin == "centroid"


def _patch_and_cluster(shift):
    """A 5-point patch at the origin and a far 5-point cluster at ``shift``: the patch's kNN
    neighbourhoods (k = 3) stay inside it wherever the cluster is."""
    g = torch.Generator().manual_seed(4)
    patch = 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    cluster = 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64) + torch.tensor(shift, dtype=torch.float64)
    return Data(pos=torch.cat([patch, cluster]))


@pytest.mark.parametrize("origin", ["centroid", "centre"])
def test_patches_know_where_they_sit_in_the_cloud(origin):
    """The same patch, the rest of the cloud elsewhere: only the centroid context tells the
    patch's points apart (origin='centre' sees nothing beyond each neighbourhood)."""
    model = LocalPointModel(_PatchNet().double(), cutoff=3.0, origin=origin)
    with torch.no_grad():
        near = model(_patch_and_cluster([6.0, 0.0, 0.0]))[:5]
        far = model(_patch_and_cluster([0.0, 14.0, 3.0]))[:5]
    if origin == "centroid":
        assert _err(far, near) > 1e-2
    else:
        assert _err(far, near) < 1e-12


@settings(max_examples=6, deadline=None)
@given(data=CLOUDS, R=rotations(), shift=st.tuples(*[st.floats(-3, 3)] * 3))
def test_default_local_dgcnn_is_exact_under_rotation_and_translation(data, R, shift):
    """ECSE(DGCNN, mode='local') with its default context, graph and node level: a batch of
    two clouds, only the second rotated and translated; float64 and float32."""
    other = torch.randn(9, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.3
    pos = data.pos.to(torch.float64)
    d = torch.cdist(pos, pos).sort(dim=1).values
    assume(not bool((d[:, 1:] - d[:, :-1] < 1e-6).any()))  # kNN ties: the bare choice is itself arbitrary
    moved = pos @ R.to(torch.float64).T + torch.tensor(shift, dtype=torch.float64)
    for level in ("graph", "node"):
        torch.manual_seed(1)
        backbone = DGCNN(3, level=level, k=4, hidden=4)
        for dtype in (torch.float64, torch.float32):
            model = ECSE(backbone.to(dtype), cutoff=3.0, mode="local", level=level, out_shape=(3,)).eval()
            with torch.no_grad():
                a = model(Batch.from_data_list([Data(pos=other.to(dtype)), Data(pos=pos.to(dtype))]))
                b = model(Batch.from_data_list([Data(pos=other.to(dtype)), Data(pos=moved.to(dtype))]))
            assert a.dtype == dtype and torch.isfinite(a).all()
            assert _err(b, a) <= TOL[dtype], (level, dtype, _err(b, a))


def test_bare_dgcnn_is_not_invariant():
    """The reference above is not trivial: the bare model changes under the same motion."""
    pos = torch.randn(10, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    torch.manual_seed(1)
    model = DGCNN(3, k=4, hidden=4).double().eval()
    with torch.no_grad():
        assert _err(model(Data(pos=pos @ R.T + 1.0)), model(Data(pos=pos))) > 1e-3
