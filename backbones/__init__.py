"""Plain (not rotation invariant) PyTorch Geometric point-cloud backbones.

Each model's ``forward(data)`` reads ``data.pos`` ``[N, 3]``, ``data.x`` ``[N, in_channels]``
(only when ``in_channels > 0``) and an optional sorted ``data.batch``, and returns
``[num_graphs, out_channels]`` (``level="graph"``) or ``[N, out_channels]``
(``level="node"``). Neighbour search goes through :mod:`ecse.point_ops`, so the models
run with or without torch-cluster; wrap them with ECSE to make them rotation equivariant.

Supported torch-geometric versions: 2.5-2.7 (2.7.0 is pinned and tested).
"""
from .dgcnn import DGCNN
from .point_transformer import PointTransformer
from .pointnet2 import PointNet2

__all__ = ["PointNet2", "DGCNN", "PointTransformer"]
