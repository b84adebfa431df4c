"""Public test kit: check that *your* model is rotation-equivariant.

* :func:`assert_equivariant` -- measure (and assert) the rotation, reflection,
  translation and permutation errors of any ``Data -> Tensor`` model;
* :func:`transform_output`, :func:`relative_error`, :func:`random_rotation`,
  :func:`random_orthogonal` -- the conventions and helpers it is built on;
* :func:`smoothness_profile` -- walk a model along a path (straight or user-given)
  and profile its energy, directional force and curvature, with the worst point;
  :func:`assert_smooth` -- assert a model is no less smooth than a reference
  (e.g. an ECSE-wrapped model against its backbone) along the same path;
* hypothesis strategies (need ``pip install hypothesis``, loaded on first use):
  :func:`point_clouds` and one strategy per kind of cloud, :func:`rotations`,
  :func:`orthogonal_matrices`; periodic crystals (fcc, bcc, hcp, diamond supercells
  with a random lattice constant, optional strain, rotation and thermal noise):
  :func:`crystals`, :func:`perfect_crystals`, :func:`thermal_crystals`.

Conventions: positions are row vectors ``[N, 3]`` and ``R`` acts as ``pos @ R.T``
(cells ``[1, 3, 3]`` as ``cell @ R.T``); see :mod:`ecse.testing.equivariance`.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> from ecse.testing import assert_equivariant
>>> model = lambda d: (d.pos - d.pos.mean(0)).norm(dim=1).sum().reshape(1)
>>> errs = assert_equivariant(model, Data(pos=torch.randn(6, 3, dtype=torch.float64)), tol=1e-12)
"""

from __future__ import annotations

import importlib

from ..rotations import random_orthogonal, random_rotation
from .equivariance import (OUTPUT_TYPES, assert_equivariant,
                           relative_error, transform_output)
from .smoothness import SmoothnessProfile, assert_smooth, orientation_curvatures, smoothness_profile

_STRATEGIES = (
    "KINDS", "SPECIES", "point_clouds", "random_clouds", "clustered_clouds", "collinear_clouds",
    "planar_clouds", "symmetric_clouds", "near_degenerate_clouds", "periodic_clouds",
    "rotations", "orthogonal_matrices", "LATTICES", "CRYSTAL_SPECIES", "crystals", "perfect_crystals",
    "thermal_crystals",
)

__all__ = ["OUTPUT_TYPES", "assert_equivariant", "transform_output", "relative_error",
           "random_rotation", "random_orthogonal", "SmoothnessProfile", "smoothness_profile",
           "orientation_curvatures", "assert_smooth", *_STRATEGIES]


def __getattr__(name: str):
    if name in _STRATEGIES or name == "strategies":
        try:
            strategies = importlib.import_module(f"{__name__}.strategies")
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(f"ecse.testing.{name} needs hypothesis: pip install hypothesis") from err
        return strategies if name == "strategies" else getattr(strategies, name)
    raise AttributeError(f"module 'ecse.testing' has no attribute {name!r}")
