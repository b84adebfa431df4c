"""ecse: smooth, exact rotational symmetrisation of any point-cloud network.

Wrap a PyTorch Geometric model so that its predictions are exactly invariant (scalars)
or covariant (vectors, rank-2 tensors, e3nn irreps) under rotations (optionally
reflections), translation and permutation invariant, and smooth in the positions::

    from ecse import ECSE
    model = ECSE(backbone, cutoff=5.0, output="vector")
    y = model(data)          # data: torch_geometric Data/Batch with .pos

Conventions (row vectors): a rotation ``R`` acts on positions as ``x @ R.T``; a frame
``F`` has its axes as columns and frame coordinates are ``x @ F``; vectors go back as
``v @ F.T`` and rank-2 tensors as ``F @ T @ F.T``.  See ``ecse.covariant``.

Public modules: ``switching`` (smooth functions), ``neighbors``, ``cutoff`` (adaptive
inner cutoff), ``frames``, ``pruning``, ``frameset`` (the whole frame pipeline),
``covariant`` (output types, Wigner matrices, Cartesian <-> ``1x0e+1x2e``),
``auxiliary``, ``ensemble``, ``local`` (per-atom ensembles for message-passing
backbones), ``axial`` (covariant readout of direction-free per-edge outputs), ``point_ops`` (knn/radius/fps with or
without torch-cluster) and ``testing`` (hypothesis strategies, ``assert_equivariant``).
"""
from .auxiliary import DistanceAux
from .covariant import OutputSpec, irreps_to_symmetric, symmetric_to_irreps, wigner_D
from .cutoff import adaptive_inner_cutoff
from .ensemble import ECSE
from .frame_views import FrameViewSampler
from .frames import Frames, add_mirror_frames, build_frames
from .frameset import FrameParams, FrameSet, global_frames
from .local import LocalFrames, local_frames
from .neighbors import NeighborList, neighbor_list
from .pruning import auxiliary_weight, prune_weights, smooth_max_weight
from .switching import cutoff_function, segment_smooth_max, smooth_max_pair, step_up, step_up_linear, stitch

__version__ = "0.1.0"

__all__ = [
    "ECSE",
    "DistanceAux",
    "FrameParams",
    "FrameSet",
    "FrameViewSampler",
    "Frames",
    "LocalFrames",
    "NeighborList",
    "OutputSpec",
    "adaptive_inner_cutoff",
    "add_mirror_frames",
    "auxiliary_weight",
    "build_frames",
    "cutoff_function",
    "global_frames",
    "irreps_to_symmetric",
    "local_frames",
    "neighbor_list",
    "prune_weights",
    "segment_smooth_max",
    "smooth_max_pair",
    "smooth_max_weight",
    "step_up",
    "step_up_linear",
    "stitch",
    "symmetric_to_irreps",
    "wigner_D",
]
