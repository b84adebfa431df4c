r"""Local ECSE mode for PyTorch Geometric point models (PointNet++, DGCNN, Point Transformer,
your own ``MessagePassing`` layers).

Positions enter a point-cloud network through relative positions around a centre.  Each
such aggregation is evaluated in its centre's own frames (built from the layer's own
neighbours with the ECSE weights, pruning and auxiliary hand-over) and averaged, so its
output is exactly invariant and the rest of the network sees only invariant features:

.. math::
    h_i = \sum_k \bar w_{ik}\, \mathrm{layer}\big(x_i, \{x_j, \mathbf r_{ij} F_{ik}\}\big)
        + \bar w^{aux}_i\, \mathrm{layer}\big(x_i, \{x_j, (|\mathbf r_{ij}|, 0, 0)\}\big).

Cost: about (frames per centre) times each adapted layer, linear in the cloud size.

Building blocks, from high to low level:

* :class:`LocalPointModel` -- wrap an unchanged model, called as ``model(data)`` or, for a
  ``forward(x, pos, batch)`` as in PyG's Point Transformer example, with the data's
  attributes by name (``ECSE(model, mode="local")`` uses it for models without PET's
  ``local_frames`` interface);
* :func:`symmetrize_layers` / :class:`LocalFrameLayer` -- adapt the layers of a model /
  one layer (active only inside :func:`local_context`);
* :func:`edge_local_frames`, :func:`frame_coordinates` -- frames of the centres of any
  edge set and edge displacements in them, for custom layers.

Example (a custom aggregation from the building blocks; any function of the frame
coordinates is allowed):

>>> import torch
>>> from ecse.point_ops import radius_graph
>>> def aggregate(pos, weight):
...     src, dst = radius_graph(pos, 3.0)
...     order = torch.argsort(dst, stable=True)
...     src, dst = src[order], dst[order]
...     lf = edge_local_frames(dst, pos[src] - pos[dst], pos.shape[0], cutoff=3.0)
...     copy, edge = lf.edge_copies(dst)  # every edge once per frame of its centre
...     r = frame_coordinates(lf, (pos[src] - pos[dst])[edge], copy)
...     per_copy = r.new_zeros(lf.atom.numel(), 4).index_add(0, copy, torch.tanh(r @ weight))
...     return lf.combine(per_copy)  # weighted average over each centre's frames
>>> g = torch.Generator().manual_seed(0)
>>> pos, weight = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
>>> from ecse.rotations import random_rotation
>>> R = random_rotation(g, dtype=torch.float64)
>>> bool(torch.allclose(aggregate(pos, weight), aggregate(pos @ R.T, weight), atol=1e-12))
True
"""
from .context import LocalContext, current_context, local_context
from .edge_frames import edge_local_frames, frame_coordinates
from .layers import INVARIANT_LAYERS, LocalFrameLayer, layer_kind
from .model import LocalPointModel, symmetrize_layers

__all__ = ["LocalPointModel", "symmetrize_layers", "LocalFrameLayer", "layer_kind", "INVARIANT_LAYERS",
           "edge_local_frames", "frame_coordinates", "LocalContext", "local_context", "current_context"]
