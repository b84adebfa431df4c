"""DGCNN (Wang et al., 2019) on top of :mod:`ecse.point_ops` (no torch-cluster needed)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MLP, EdgeConv, global_max_pool, global_mean_pool

from ecse.point_ops import feature_knn_graph, knn_graph

from ._init import reinitialise
from .pointnet2 import check_level, read_data

__all__ = ["DGCNN"]


class DGCNN(nn.Module):
    r"""Dynamic graph CNN: stacked :class:`~torch_geometric.nn.conv.EdgeConv` layers on
    k-nearest-neighbour graphs that are rebuilt from each layer's input features.

    The first layer takes ``[x, pos]`` and builds its graph on ``pos``; later graphs
    live in feature space. The concatenated layer outputs are embedded per point
    (``16 * hidden``); ``level="graph"`` concatenates global max and mean pooling and
    applies an MLP head, ``level="node"`` concatenates the global max feature with the
    per-point features. With ``hidden=64`` the widths are the paper's classification
    network (EdgeConv 64-64-128-256, embedding 1024, head 512-256). Each node counts
    itself among its ``k`` neighbours (as ``DynamicEdgeConv``). Not rotation invariant.

    Args:
        out_channels (int): Size of each output sample.
        in_channels (int, optional): Size of the point features ``data.x``;
            ``0`` means positions only. (default: :obj:`0`)
        level (str, optional): ``"graph"`` or ``"node"``. (default: :obj:`"graph"`)
        k (int, optional): Number of neighbours. (default: :obj:`20`)
        hidden (int, optional): Base width. (default: :obj:`64`)
        widths (Sequence[int], optional): EdgeConv widths in units of ``hidden``.
            (default: :obj:`(1, 1, 2, 4)`)
        act (str, optional): Activation. (default: :obj:`"leaky_relu"` with slope 0.2)
        norm (str, optional): Normalisation of the MLPs. (default: :obj:`None`)
        dropout (float, optional): Dropout of the head. (default: :obj:`0.0`)
        feature_knn (str, optional): Neighbour search of the graphs in feature space:
            ``"dense"`` (:func:`ecse.point_ops.feature_knn_graph`, matrix products and
            top-k per graph, a cost independent of how the features are distributed) or
            ``"tree"`` (:func:`ecse.point_ops.knn_graph`, torch-cluster's KD-tree when
            installed).  Both are quadratic in the cloud size; they may pick different
            neighbours only where two distances agree to rounding. (default: :obj:`"dense"`)

    Shapes:
        - **input:** ``data.pos`` :math:`(N, 3)`, ``data.x`` :math:`(N, F_{in})` if
          ``in_channels > 0``, optional ``data.batch`` :math:`(N)` (sorted)
        - **output:** :math:`(B, F_{out})` for ``level="graph"``,
          :math:`(N, F_{out})` for ``level="node"``
    """

    def __init__(self, out_channels: int, in_channels: int = 0, level: str = "graph",
                 k: int = 20, hidden: int = 64, widths: Sequence[int] = (1, 1, 2, 4),
                 act: str = "leaky_relu", norm: Optional[str] = None, dropout: float = 0.0,
                 feature_knn: str = "dense"):
        super().__init__()
        if feature_knn not in ("dense", "tree"):
            raise ValueError(f"feature_knn must be 'dense' or 'tree', got {feature_knn!r}")
        self._config = dict(out_channels=out_channels, in_channels=in_channels, level=level, k=k, hidden=hidden,
                            widths=widths, act=act, norm=norm, dropout=dropout, feature_knn=feature_knn)
        self.feature_knn = feature_knn
        self.out_channels, self.in_channels = out_channels, in_channels
        self.level, self.k, self.hidden = check_level(level), k, hidden
        self.widths = tuple(widths)
        kw = dict(act=act, norm=norm,
                  act_kwargs={"negative_slope": 0.2} if act == "leaky_relu" else None)
        self.convs = nn.ModuleList()
        c_in = in_channels + 3
        for w in self.widths:
            c = w * hidden
            self.convs.append(EdgeConv(MLP([2 * c_in, c], plain_last=False, **kw), aggr="max"))
            c_in = c
        cat = sum(self.widths) * hidden
        emb = 16 * hidden
        self.embed = MLP([cat, emb], plain_last=False, **kw)
        if level == "graph":
            self.head = MLP([2 * emb, emb // 2, emb // 4, out_channels], dropout=dropout, **kw)
        else:
            self.head = MLP([emb + cat, 4 * hidden, 4 * hidden, 2 * hidden, out_channels],
                            dropout=dropout, **kw)

    def reset_parameters(self) -> None:
        """Reinitialise all learnable parameters: under the same seed, exactly as a new model."""
        reinitialise(self, self._config)

    def forward(self, data: Any) -> Tensor:
        pos, x, batch, num_graphs = read_data(data, self.in_channels, self)
        h = pos if x is None else torch.cat([x, pos], dim=-1)
        feats = []
        for i, conv in enumerate(self.convs):
            if i == 0 or self.feature_knn == "tree":
                edge_index = knn_graph(pos if i == 0 else h, self.k, batch, loop=True)
            else:
                edge_index = feature_knn_graph(h, self.k, batch, loop=True)
            h = conv(h, edge_index)
            feats.append(h)
        local = torch.cat(feats, dim=-1)
        e = self.embed(local)
        g_max = global_max_pool(e, batch, size=num_graphs)
        if self.level == "graph":
            return self.head(torch.cat([g_max, global_mean_pool(e, batch, size=num_graphs)], -1))
        return self.head(torch.cat([g_max[batch], local], dim=-1))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"level={self.level!r}, k={self.k}, hidden={self.hidden})")
