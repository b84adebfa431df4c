"""Point Transformer (Zhao et al., 2021) on top of :mod:`ecse.point_ops` (no torch-cluster)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MLP, PointTransformerConv, global_mean_pool
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import scatter

from ecse.point_ops import fps, knn, knn_graph

from ._init import reinitialise
from .pointnet2 import check_level, knn_interpolate, read_data

__all__ = ["PointTransformer"]


class _Block(nn.Module):
    """Residual point transformer block: ``x + act(lin_out(attn(act(lin_in(x)))))``."""

    def __init__(self, c: int, act: str, norm: Optional[str]):
        super().__init__()
        self.lin_in, self.lin_out = nn.Linear(c, c), nn.Linear(c, c)
        self.act = activation_resolver(act)
        pos_nn = MLP([3, c, c], act=act, norm=norm)  # positional encoding of pos_i - pos_j
        attn_nn = MLP([c, c, c], act=act, norm=norm)
        self.conv = PointTransformerConv(c, c, pos_nn=pos_nn, attn_nn=attn_nn)

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor) -> Tensor:
        h = self.conv(self.act(self.lin_in(x)), pos, edge_index)
        return x + self.act(self.lin_out(h))


class _Down(nn.Module):
    """Transition down: FPS, per-point MLP, max pooling over the k nearest points."""

    def __init__(self, c_in: int, c_out: int, ratio: float, k: int, kw: Dict[str, Any]):
        super().__init__()
        self.ratio, self.k = ratio, k
        self.mlp = MLP([c_in, c_out], plain_last=False, **kw)

    def forward(self, x: Tensor, pos: Tensor, batch: Tensor):
        idx = fps(pos, batch, ratio=self.ratio)
        row, col = knn(pos, pos[idx], self.k, batch, batch[idx])
        x = scatter(self.mlp(x)[col], row, 0, dim_size=idx.numel(), reduce="max")
        return x, pos[idx], batch[idx]


class PointTransformer(nn.Module):
    r"""Point Transformer with vector self-attention on k-nearest-neighbour graphs.

    An input MLP on ``[x, pos]``, a transformer block, then per entry of ``ratios`` a
    transition down (FPS + kNN max pooling) doubling the width, each followed by a
    transformer block (:class:`~torch_geometric.nn.conv.PointTransformerConv` with an
    MLP positional encoding of ``pos_i - pos_j`` and an MLP attention). ``level="graph"``
    mean-pools and applies an MLP head; ``level="node"`` is the paper's U-Net: a summit
    MLP and block, then per level a transition up (linear layers, :func:`knn_interpolate`
    and a skip connection) and a block. With ``hidden=32`` and four ratios of ``0.25``
    the widths are the paper's (32-64-128-256-512). Not rotation invariant.

    Args:
        out_channels (int): Size of each output sample.
        in_channels (int, optional): Size of the point features ``data.x``;
            ``0`` means positions only. (default: :obj:`0`)
        level (str, optional): ``"graph"`` or ``"node"``. (default: :obj:`"graph"`)
        k (int, optional): Neighbours of attention and pooling. (default: :obj:`16`)
        hidden (int, optional): Width of the first level. (default: :obj:`32`)
        ratios (Sequence[float], optional): FPS ratio of each transition down.
            (default: :obj:`(0.25, 0.25, 0.25, 0.25)`)
        act (str, optional): Activation. (default: :obj:`"relu"`)
        norm (str, optional): Normalisation of the MLPs. (default: :obj:`None`)
        dropout (float, optional): Dropout of the head. (default: :obj:`0.0`)

    Shapes:
        - **input:** ``data.pos`` :math:`(N, 3)`, ``data.x`` :math:`(N, F_{in})` if
          ``in_channels > 0``, optional ``data.batch`` :math:`(N)` (sorted)
        - **output:** :math:`(B, F_{out})` for ``level="graph"``,
          :math:`(N, F_{out})` for ``level="node"``
    """

    def __init__(self, out_channels: int, in_channels: int = 0, level: str = "graph",
                 k: int = 16, hidden: int = 32,
                 ratios: Sequence[float] = (0.25, 0.25, 0.25, 0.25), act: str = "relu",
                 norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        self._config = dict(out_channels=out_channels, in_channels=in_channels, level=level, k=k, hidden=hidden,
                            ratios=ratios, act=act, norm=norm, dropout=dropout)
        self.out_channels, self.in_channels = out_channels, in_channels
        self.level, self.k, self.hidden = check_level(level), k, hidden
        self.ratios = tuple(ratios)
        kw = dict(act=act, norm=norm)
        dims = [hidden * 2 ** i for i in range(len(self.ratios) + 1)]
        self.mlp_in = MLP([in_channels + 3, hidden, hidden], plain_last=False, **kw)
        self.blocks = nn.ModuleList([_Block(d, act, norm) for d in dims])
        self.downs = nn.ModuleList(
            [_Down(dims[i], dims[i + 1], r, k, kw) for i, r in enumerate(self.ratios)])
        if level == "graph":
            self.head = MLP([dims[-1], dims[-1] // 2, dims[-1] // 4, out_channels],
                            dropout=dropout, **kw)
            return
        self.summit = MLP([dims[-1], dims[-1]], plain_last=False, **kw)
        self.summit_block = _Block(dims[-1], act, norm)
        self.up_sub = nn.ModuleList(  # up_*[i]: level i+1 -> level i
            [MLP([dims[i + 1], dims[i]], plain_last=False, **kw) for i in range(len(dims) - 1)])
        self.up_skip = nn.ModuleList(
            [MLP([dims[i], dims[i]], plain_last=False, **kw) for i in range(len(dims) - 1)])
        self.up_blocks = nn.ModuleList([_Block(dims[i], act, norm) for i in range(len(dims) - 1)])
        self.head = MLP([hidden, hidden, out_channels], dropout=dropout, **kw)

    def reset_parameters(self) -> None:
        """Reinitialise all learnable parameters: under the same seed, exactly as a new model."""
        reinitialise(self, self._config)

    def forward(self, data: Any) -> Tensor:
        pos, x, batch, num_graphs = read_data(data, self.in_channels, self)
        h = self.mlp_in(pos if x is None else torch.cat([x, pos], dim=-1))
        levels, graphs = [], []
        for i, block in enumerate(self.blocks):
            if i > 0:
                h, pos, batch = self.downs[i - 1](h, pos, batch)
            graphs.append(knn_graph(pos, self.k, batch, loop=True))
            h = block(h, pos, graphs[-1])
            levels.append((h, pos, batch))
        if self.level == "graph":
            return self.head(global_mean_pool(h, batch, size=num_graphs))

        h = self.summit_block(self.summit(h), pos, graphs[-1])
        for i in range(len(levels) - 2, -1, -1):
            x_s, pos_s, batch_s = levels[i]
            up = knn_interpolate(self.up_sub[i](h), pos, pos_s, batch, batch_s, k=3)
            h = self.up_blocks[i](self.up_skip[i](x_s) + up, pos_s, graphs[i])
            pos, batch = pos_s, batch_s
        return self.head(h)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"level={self.level!r}, k={self.k}, hidden={self.hidden}, "
                f"ratios={self.ratios})")
