"""Point-cloud classifiers written the way PyG's own example scripts write them.

These models stand in for "a model nobody here wrote": they import only ``torch`` and
``torch_geometric`` (never ``ecse``) and follow the structure of PyG's example scripts

* ``examples/pointnet2_classification.py`` (PointNet++: set abstraction with
  ``fps`` + ``radius`` + bipartite ``PointNetConv``, global set abstraction on
  ``[x, pos]``, log-softmax head);
* ``examples/dgcnn_classification.py`` (DGCNN: two ``DynamicEdgeConv`` layers on
  ``data.pos`` then on features, ``global_max_pool``);
* ``examples/point_transformer_classification.py`` (Point Transformer: transformer
  blocks with ``PointTransformerConv`` on ``knn_graph``, transition-down blocks with
  ``fps`` + ``knn`` + max pooling; its ``forward`` takes ``(x, pos, batch)``, not a data
  object).

Widths are smaller than in the scripts (fast tests); the layer structure, the PyG
functions called and their defaults (random-start ``fps``, ``MLP`` with batch norm,
``add_self_loops`` of ``PointTransformerConv``, ``max_num_neighbors=64``) are the
scripts'.  ``fps``, ``radius``, ``knn``, ``knn_graph`` and ``DynamicEdgeConv`` need
torch-cluster (PyG <= 2.7) or pyg-lib (PyG 2.8).  None of them is rotation invariant.
The tests in ``tests/test_thirdparty_pyg.py`` wrap them, unchanged, in
``ECSE(model, cutoff=..., mode="local")``.
"""
import torch
import torch.nn.functional as F
from torch.nn import Linear as Lin
from torch_geometric.nn import (MLP, DynamicEdgeConv, PointNetConv, PointTransformerConv, fps, global_max_pool,
                                global_mean_pool, knn, knn_graph, radius)
from torch_geometric.utils import scatter

__all__ = ["PointNet2Net", "DGCNNNet", "PointTransformerNet"]


# -- PointNet++ (examples/pointnet2_classification.py) ------------------------------------
class SAModule(torch.nn.Module):
    def __init__(self, ratio, r, nn):
        super().__init__()
        self.ratio = ratio
        self.r = r
        self.conv = PointNetConv(nn, add_self_loops=False)

    def forward(self, x, pos, batch):
        idx = fps(pos, batch, ratio=self.ratio)
        row, col = radius(pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=64)
        edge_index = torch.stack([col, row], dim=0)
        x_dst = None if x is None else x[idx]
        x = self.conv((x, x_dst), (pos, pos[idx]), edge_index)
        pos, batch = pos[idx], batch[idx]
        return x, pos, batch


class GlobalSAModule(torch.nn.Module):
    def __init__(self, nn):
        super().__init__()
        self.nn = nn

    def forward(self, x, pos, batch):
        x = self.nn(torch.cat([x, pos], dim=1))
        x = global_max_pool(x, batch)
        pos = pos.new_zeros((x.size(0), 3))
        batch = torch.arange(x.size(0), device=batch.device)
        return x, pos, batch


class PointNet2Net(torch.nn.Module):
    """PointNet++ classifier, ``model(data)`` -> ``[num_graphs, num_classes]`` log-probabilities."""

    def __init__(self, num_classes=10, r1=0.2, r2=0.4, width=16):
        super().__init__()
        w = width
        # input channels account for both `pos` and node features
        self.sa1_module = SAModule(0.5, r1, MLP([3, w, w, 2 * w]))
        self.sa2_module = SAModule(0.25, r2, MLP([2 * w + 3, 2 * w, 2 * w, 4 * w]))
        self.sa3_module = GlobalSAModule(MLP([4 * w + 3, 4 * w, 8 * w, 16 * w]))
        self.mlp = MLP([16 * w, 8 * w, 4 * w, num_classes], dropout=0.5, norm=None)

    def forward(self, data):
        sa0_out = (data.x, data.pos, data.batch)
        sa1_out = self.sa1_module(*sa0_out)
        sa2_out = self.sa2_module(*sa1_out)
        sa3_out = self.sa3_module(*sa2_out)
        x, pos, batch = sa3_out
        return self.mlp(x).log_softmax(dim=-1)


# -- DGCNN (examples/dgcnn_classification.py) -------------------------------------------------
class DGCNNNet(torch.nn.Module):
    """DGCNN classifier, ``model(data)`` -> ``[num_graphs, out_channels]`` log-probabilities."""

    def __init__(self, out_channels=10, k=20, aggr="max", width=16):
        super().__init__()
        w = width
        self.conv1 = DynamicEdgeConv(MLP([2 * 3, w, w, w]), k, aggr)
        self.conv2 = DynamicEdgeConv(MLP([2 * w, 2 * w]), k, aggr)
        self.lin1 = Lin(2 * w + w, 16 * w)
        self.mlp = MLP([16 * w, 8 * w, 4 * w, out_channels], dropout=0.5, norm=None)

    def forward(self, data):
        pos, batch = data.pos, data.batch
        x1 = self.conv1(pos, batch)
        x2 = self.conv2(x1, batch)
        out = self.lin1(torch.cat([x1, x2], dim=1))
        out = global_max_pool(out, batch)
        out = self.mlp(out)
        return F.log_softmax(out, dim=1)


# -- Point Transformer (examples/point_transformer_classification.py) -----------------------
class TransformerBlock(torch.nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.lin_in = Lin(in_channels, in_channels)
        self.lin_out = Lin(out_channels, out_channels)
        self.pos_nn = MLP([3, 16, out_channels], norm=None, plain_last=False)
        self.attn_nn = MLP([out_channels, 16, out_channels], norm=None, plain_last=False)
        self.transformer = PointTransformerConv(in_channels, out_channels, pos_nn=self.pos_nn,
                                                attn_nn=self.attn_nn)

    def forward(self, x, pos, edge_index):
        x = self.lin_in(x).relu()
        x = self.transformer(x, pos, edge_index)
        x = self.lin_out(x).relu()
        return x


class TransitionDown(torch.nn.Module):
    """Farthest point sampling by ``ratio``, an MLP on the features, max pooling of each
    cluster centre's ``k`` nearest input points."""

    def __init__(self, in_channels, out_channels, ratio=0.25, k=16):
        super().__init__()
        self.k = k
        self.ratio = ratio
        self.mlp = MLP([in_channels, out_channels], plain_last=False)

    def forward(self, x, pos, batch):
        id_clusters = fps(pos, ratio=self.ratio, batch=batch)
        sub_batch = batch[id_clusters] if batch is not None else None
        # for each cluster centre, its k nearest input points (itself included)
        id_k_neighbor = knn(pos, pos[id_clusters], k=self.k, batch_x=batch, batch_y=sub_batch)
        x = self.mlp(x)
        x_out = scatter(x[id_k_neighbor[1]], id_k_neighbor[0], dim=0, dim_size=id_clusters.size(0), reduce="max")
        sub_pos, out = pos[id_clusters], x_out
        return out, sub_pos, sub_batch


class PointTransformerNet(torch.nn.Module):
    """Point Transformer classifier, ``model(x, pos, batch)`` -> ``[num_graphs, out_channels]``
    log-probabilities (``x=None``: a constant dummy feature)."""

    def __init__(self, in_channels=0, out_channels=10, dim_model=(16, 32, 64), k=16):
        super().__init__()
        self.k = k
        in_channels = max(in_channels, 1)  # dummy feature if there is none
        self.mlp_input = MLP([in_channels, dim_model[0]], plain_last=False)
        self.transformer_input = TransformerBlock(in_channels=dim_model[0], out_channels=dim_model[0])
        self.transformers_down = torch.nn.ModuleList()
        self.transition_down = torch.nn.ModuleList()
        for i in range(len(dim_model) - 1):
            self.transition_down.append(TransitionDown(in_channels=dim_model[i], out_channels=dim_model[i + 1],
                                                       k=self.k))
            self.transformers_down.append(TransformerBlock(in_channels=dim_model[i + 1],
                                                           out_channels=dim_model[i + 1]))
        self.mlp_output = MLP([dim_model[-1], 16, out_channels], norm=None)

    def forward(self, x, pos, batch=None):
        if x is None:
            x = torch.ones((pos.shape[0], 1), device=pos.device, dtype=pos.dtype)
        x = self.mlp_input(x)
        edge_index = knn_graph(pos, k=self.k, batch=batch)
        x = self.transformer_input(x, pos, edge_index)
        for i in range(len(self.transformers_down)):
            x, pos, batch = self.transition_down[i](x, pos, batch=batch)
            edge_index = knn_graph(pos, k=self.k, batch=batch)
            x = self.transformers_down[i](x, pos, edge_index)
        x = global_mean_pool(x, batch)
        out = self.mlp_output(x)
        return F.log_softmax(out, dim=-1)
