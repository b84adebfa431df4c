"""Plain (not rotation invariant) PyTorch Geometric point-cloud backbones.

Each model's ``forward(data)`` reads ``data.pos`` ``[N, 3]``, ``data.x`` ``[N, in_channels]``
(only when ``in_channels > 0``) and an optional sorted ``data.batch``, and returns
``[num_graphs, out_channels]`` (``level="graph"``) or ``[N, out_channels]``
(``level="node"``). Neighbour search goes through :mod:`ecse.point_ops`, so the models
run with or without torch-cluster; wrap them with ECSE to make them rotation equivariant.

``PET`` (Point Edge Transformer, Pozdnyakov & Ceriotti 2023) is the atomistic backbone: it
reads ``pos``, atomic numbers ``z`` and optional periodic ``cell``/``pbc``, builds its own
neighbour list and returns energies; :mod:`ecse.atomistic.derivatives` differentiates any
energy model (bare or ECSE-wrapped) by autograd.

Installed and imported as ``ecse.backbones`` (the repository folder ``backbones/`` is mapped
onto that package name); nothing installs a top-level ``backbones``.

Supported torch-geometric versions: 2.5-2.7 (2.7.0 is pinned and tested).
"""
from .dgcnn import DGCNN
from .e3nn_tensor import E3nnTensor, irreps_to_symmetric, symmetric_to_irreps
from .point_transformer import PointTransformer
from .pet import PET
from .pointnet2 import PointNet2

__all__ = ["PointNet2", "DGCNN", "PointTransformer", "PET", "E3nnTensor",
           "irreps_to_symmetric", "symmetric_to_irreps"]
