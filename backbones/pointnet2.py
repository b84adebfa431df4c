"""PointNet++ (Qi et al., 2017) on top of :mod:`ecse.point_ops` (no torch-cluster needed)."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MLP, PointNetConv, global_max_pool
from torch_geometric.utils import scatter

from ecse._validation import check_input_dtype
from ecse.point_ops import fps, knn, radius

from ._init import reinitialise

__all__ = ["PointNet2", "knn_interpolate"]

_LEVELS = ("graph", "node")


def read_data(data: Any, in_channels: int, model: Optional[nn.Module] = None
              ) -> Tuple[Tensor, Optional[Tensor], Tensor, int]:
    """Return ``(pos, x, batch, num_graphs)`` from ``data`` and check the shapes (and,
    given the ``model``, that ``pos`` and ``x`` have its parameters' dtype and device).

    ``x`` is ``None`` when ``in_channels == 0`` (any ``data.x`` is then ignored).
    """
    pos = getattr(data, "pos", None)
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(1) != 3:
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else None
        raise ValueError(f"data.pos must be a tensor of shape [N, 3], got {shape}")
    n = pos.size(0)
    x = None
    if in_channels > 0:
        x = getattr(data, "x", None)
        if not isinstance(x, Tensor) or tuple(x.shape) != (n, in_channels):
            shape = tuple(x.shape) if isinstance(x, Tensor) else None
            raise ValueError(f"data.x must have shape [{n}, {in_channels}] "
                             f"(in_channels={in_channels}), got {shape}")
    if model is not None:
        check_input_dtype(model, pos, "data.pos")
        check_input_dtype(model, x, "data.x")
    batch = getattr(data, "batch", None)
    if batch is None:
        return pos, x, pos.new_zeros(n, dtype=torch.long), 1
    if batch.dim() != 1 or batch.numel() != n:
        raise ValueError(f"data.batch must have shape [{n}], got {tuple(batch.shape)}")
    num_graphs = getattr(data, "num_graphs", None)
    if not isinstance(num_graphs, int):
        num_graphs = int(batch.max()) + 1 if n > 0 else 0
    return pos, x, batch, num_graphs


def check_level(level: str) -> str:
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    return level


def knn_interpolate(x: Tensor, pos_x: Tensor, pos_y: Tensor, batch_x: Tensor,
                    batch_y: Tensor, k: int = 3) -> Tensor:
    r"""Inverse squared distance weighted average of the ``k`` nearest ``x`` features.

    Same formula as :func:`torch_geometric.nn.knn_interpolate`, but neighbours come from
    :func:`ecse.point_ops.knn` and the weights stay differentiable in the positions.

    Shapes: ``x`` ``[N, C]``, ``pos_x`` ``[N, 3]``, ``pos_y`` ``[M, 3]`` -> ``[M, C]``.
    """
    y_idx, x_idx = knn(pos_x, pos_y, k, batch_x, batch_y)
    d2 = (pos_x[x_idx] - pos_y[y_idx]).pow(2).sum(-1, keepdim=True)
    w = 1.0 / d2.clamp_min(1e-16)
    num = scatter(x[x_idx] * w, y_idx, 0, dim_size=pos_y.size(0), reduce="sum")
    return num / scatter(w, y_idx, 0, dim_size=pos_y.size(0), reduce="sum")


class _SetAbstraction(nn.Module):
    """FPS, ball query and a shared MLP on ``[x_j, pos_j - pos_i]`` max-pooled per ball."""

    def __init__(self, ratio: float, r: float, mlp: nn.Module, max_num_neighbors: int):
        super().__init__()
        self.ratio, self.r, self.max_num_neighbors = ratio, r, max_num_neighbors
        self.conv = PointNetConv(mlp, add_self_loops=False, aggr="max")

    def forward(self, x: Optional[Tensor], pos: Tensor,
                batch: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        idx = fps(pos, batch, ratio=self.ratio)
        row, col = radius(pos, pos[idx], self.r, batch, batch[idx],
                          max_num_neighbors=self.max_num_neighbors)
        edge_index = torch.stack([col, row], dim=0)
        x_dst = None if x is None else x[idx]
        x = self.conv((x, x_dst), (pos, pos[idx]), edge_index)
        return x, pos[idx], batch[idx]


class PointNet2(nn.Module):
    r"""PointNet++ with single-scale grouping (SSG), for graphs or nodes.

    Set abstraction levels (farthest point sampling, ball query of radius ``radii[l]``,
    PointNet on relative positions, max pooling), then a global PointNet on
    ``[x, pos]``. ``level="graph"`` max-pools and applies an MLP head;
    ``level="node"`` propagates features back with inverse-distance
    :func:`knn_interpolate` (3 neighbours) and skip connections (the input level
    also gets ``pos``). With ``hidden=64`` the widths are the paper's (SA 64-64-128,
    128-128-256, 256-512-1024; head 512-256). Not rotation invariant: relative and
    absolute positions enter as features.

    Args:
        out_channels (int): Size of each output sample.
        in_channels (int, optional): Size of the point features ``data.x``;
            ``0`` means positions only. (default: :obj:`0`)
        level (str, optional): ``"graph"`` or ``"node"``. (default: :obj:`"graph"`)
        ratios (Sequence[float], optional): FPS ratio of each set abstraction level.
            (default: :obj:`(0.5, 0.25)`)
        radii (Sequence[float], optional): Ball radius of each level.
            (default: :obj:`(0.2, 0.4)`)
        hidden (int, optional): Base width; level ``l`` uses ``hidden * 2**l``.
            (default: :obj:`64`)
        max_num_neighbors (int, optional): Ball query size. (default: :obj:`64`)
        act (str, optional): Activation. (default: :obj:`"relu"`)
        norm (str, optional): Normalisation of the MLPs, e.g. ``"batch_norm"``.
            (default: :obj:`None`)
        dropout (float, optional): Dropout of the head. (default: :obj:`0.0`)

    Shapes:
        - **input:** ``data.pos`` :math:`(N, 3)`, ``data.x`` :math:`(N, F_{in})` if
          ``in_channels > 0``, optional ``data.batch`` :math:`(N)` (sorted)
        - **output:** :math:`(B, F_{out})` for ``level="graph"``,
          :math:`(N, F_{out})` for ``level="node"``
    """

    def __init__(self, out_channels: int, in_channels: int = 0, level: str = "graph",
                 ratios: Sequence[float] = (0.5, 0.25), radii: Sequence[float] = (0.2, 0.4),
                 hidden: int = 64, max_num_neighbors: int = 64, act: str = "relu",
                 norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        self._config = dict(out_channels=out_channels, in_channels=in_channels, level=level, ratios=ratios,
                            radii=radii, hidden=hidden, max_num_neighbors=max_num_neighbors, act=act, norm=norm,
                            dropout=dropout)
        if len(ratios) != len(radii) or len(ratios) == 0:
            raise ValueError("ratios and radii must be non-empty and of equal length")
        self.out_channels, self.in_channels = out_channels, in_channels
        self.level, self.hidden = check_level(level), hidden
        self.ratios, self.radii = tuple(ratios), tuple(radii)
        kw = dict(act=act, norm=norm)

        skips = [in_channels + 3]  # feature width at each resolution (level 0: [x, pos])
        self.sa = nn.ModuleList()
        c_in = in_channels
        for i, (ratio, r) in enumerate(zip(self.ratios, self.radii)):
            c = hidden * 2 ** i
            mlp = MLP([c_in + 3, c, c, 2 * c], plain_last=False, **kw)
            self.sa.append(_SetAbstraction(ratio, r, mlp, max_num_neighbors))
            c_in = 2 * c
            skips.append(c_in)
        g = 4 * c_in
        self.global_mlp = MLP([c_in + 3, c_in, 2 * c_in, g], plain_last=False, **kw)

        if level == "graph":
            self.fp = nn.ModuleList()
            self.head = MLP([g, g // 2, g // 4, out_channels], dropout=dropout, **kw)
        else:
            self.fp = nn.ModuleList()  # fp[l] maps level l+1 -> level l (coarse to fine)
            cur = g
            for lvl in range(len(self.ratios), -1, -1):
                s = skips[lvl]
                widths = [cur + s, s, s] if lvl > 0 else [cur + s, cur, cur, cur]
                self.fp.insert(0, MLP(widths, plain_last=False, **kw))
                cur = widths[-1]
            self.head = MLP([cur, cur, out_channels], dropout=dropout, **kw)

    def reset_parameters(self) -> None:
        """Reinitialise all learnable parameters: under the same seed, exactly as a new model."""
        reinitialise(self, self._config)

    def forward(self, data: Any) -> Tensor:
        pos, x, batch, num_graphs = read_data(data, self.in_channels, self)
        levels = [(x, pos, batch)]
        for sa in self.sa:
            levels.append(sa(*levels[-1]))
        x_l, pos_l, batch_l = levels[-1]
        h = self.global_mlp(torch.cat([x_l, pos_l], dim=-1))
        h = global_max_pool(h, batch_l, size=num_graphs)  # [B, g]
        if self.level == "graph":
            return self.head(h)

        h = h[batch_l]  # global feature back to the coarsest points
        for lvl in range(len(self.sa), -1, -1):
            x_s, pos_s, batch_s = levels[lvl]
            if lvl == 0:
                x_s = pos_s if x_s is None else torch.cat([x_s, pos_s], dim=-1)
            if lvl < len(self.sa):
                _, pos_c, batch_c = levels[lvl + 1]
                h = knn_interpolate(h, pos_c, pos_s, batch_c, batch_s, k=3)
            h = self.fp[lvl](torch.cat([h, x_s], dim=-1))
        return self.head(h)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"level={self.level!r}, ratios={self.ratios}, radii={self.radii}, "
                f"hidden={self.hidden})")
