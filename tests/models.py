"""Small backbones shared by the tests: the real ones (small settings) and a smooth MLP."""
import torch
from torch import nn
from torch_geometric.utils import scatter

from ecse.backbones import PET, DGCNN, PointNet2, PointTransformer

#: output type -> number of flat channels the backbone must produce
OUTPUT_CHANNELS = {"scalar": 2, "vector": 3, "rank2": 9, "rank2-symmetric": 6, "1x0e+1x1o+1x2e": 9}


def make_backbone(name: str, out_channels: int, level: str = "graph") -> nn.Module:
    torch.manual_seed(0)
    if name == "pointnet2":
        return PointNet2(out_channels, level=level, ratios=(0.75, 0.5), radii=(1.5, 3.0), hidden=16)
    if name == "dgcnn":
        return DGCNN(out_channels, level=level, k=4, hidden=16)
    if name == "point_transformer":
        return PointTransformer(out_channels, level=level, k=4, hidden=16)
    if name == "mlp":
        return SmoothMLP(out_channels, level=level)
    raise KeyError(name)


class SmoothMLP(nn.Module):
    """A smooth (C-infinity), deliberately non-invariant point-wise MLP with sum pooling."""

    def __init__(self, out_channels: int, level: str = "graph", hidden: int = 16):
        super().__init__()
        self.level = level
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, out_channels))

    def forward(self, data):
        y = self.net(data.pos)
        if self.level == "node":
            return y
        batch = data.batch if data.batch is not None else torch.zeros(len(y), dtype=torch.long)
        return scatter(y, batch, dim=0, dim_size=int(data.num_graphs), reduce="sum")


def small_pet(seed: int = 0, num_gnn_layers: int = 2, **kw) -> PET:
    """A tiny float64 PET for fast tests; keyword arguments override its settings."""
    torch.manual_seed(seed)
    cfg = dict(d_model=16, num_gnn_layers=num_gnn_layers, num_transformer_layers=1, num_heads=2,
               dim_feedforward=32, head_hidden=16)
    return PET(**{**cfg, **kw}).double()
