"""ecse: smooth, exact rotational symmetrisation of any point-cloud network.

Wrap a PyTorch Geometric model so that its predictions are exactly invariant (scalars)
or covariant (vectors, rank-2 tensors, e3nn irreps) under rotations (optionally
reflections), translation and permutation invariant, and smooth in the positions::

    from ecse import ECSE
    model = ECSE(backbone, cutoff=5.0, output="vector")
    y = model(data)          # data: torch_geometric Data/Batch with .pos

Conventions (row vectors): a rotation ``R`` acts on positions as ``x @ R.T``; a frame
``F`` has its axes as columns and frame coordinates are ``x @ F``; vectors go back as
``v @ F.T`` and rank-2 tensors as ``F @ T @ F.T``.  See :mod:`ecse.covariant`.

The package is layered; each layer imports only from the layers before it:

* geometry: :mod:`ecse.neighbors` (open and periodic neighbour lists),
  :mod:`ecse.point_ops` (knn / radius / fps with or without torch-cluster),
  :mod:`ecse.rotations` (random rotations);
* frames: :mod:`ecse.switching` (smooth functions), :mod:`ecse.cutoff` (adaptive inner
  cutoff), :mod:`ecse.frames`, :mod:`ecse.pruning`, :mod:`ecse.frameset` (the whole
  global pipeline), :mod:`ecse.local` (per-atom frames), :mod:`ecse.frame_views`;
* outputs: :mod:`ecse.covariant` (output kinds, Wigner matrices, Cartesian <->
  ``1x0e+1x2e``), :mod:`ecse.axial`;
* ensembles: :mod:`ecse.ensemble` (:class:`ECSE`), :mod:`ecse.replicate`,
  :mod:`ecse.auxiliary`;
* :mod:`ecse.testing` (hypothesis strategies, ``assert_equivariant``; core only);
* :mod:`ecse.backbones` (PET, PointNet++, DGCNN, Point Transformer, an e3nn baseline);
* :mod:`ecse.atomistic` (ASE data, derivatives, training, evaluation, MD, calculator);
* :mod:`ecse.demos` and :mod:`ecse.cli`.

This namespace exports what a user calls; the building blocks stay in their modules.
"""
from .auxiliary import DistanceAux
from .covariant import OutputSpec, wigner_D
from .ensemble import ECSE
from .frame_views import FrameViewSampler
from .frameset import FrameParams, global_frames
from .local import LocalFrames, local_frames
from .neighbors import NeighborList, neighbor_list

__version__ = "0.1.0"

__all__ = [
    "ECSE",
    "DistanceAux",
    "FrameParams",
    "FrameViewSampler",
    "LocalFrames",
    "NeighborList",
    "OutputSpec",
    "global_frames",
    "local_frames",
    "neighbor_list",
    "wigner_D",
]
