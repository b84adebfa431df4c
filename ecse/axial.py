r"""Covariant outputs from invariant per-edge values: the axial readout.

An atom whose environment admits no frame (all neighbours on a line, say) is handled by
a direction-free evaluation whose outputs are invariant.  Keeping only their invariant
part would make its vector outputs vanish, so a linear molecule would have no dipole.
The axial readout gives each *edge* :math:`ij` a frame :math:`A_{ij}` whose third axis
is :math:`\hat{\mathbf r}_{ij}` and reads the edge's invariant output :math:`y_{ij}` in
it, keeping only the part that does not depend on the (arbitrary) rotation or mirror
about that axis:

.. math::
    c_{ij} = A_{ij} \cdot \Pi_{O(2)}\, y_{ij}, \qquad
    \Pi_{O(2)}\, y = \frac{1}{2K} \sum_{k<K} \sum_{s \in \{I, M\}} R_z(2\pi k/K)\, s \cdot y,

with :math:`M = \mathrm{diag}(1, -1, 1)` and :math:`K = l_{max} + 1` (exact: it keeps
the :math:`m = 0` components).  A vector becomes :math:`y_z \hat{\mathbf r}_{ij}`, a
rank-2 tensor :math:`a (I - \hat{\mathbf r}\hat{\mathbf r}^T) + c\, \hat{\mathbf r}
\hat{\mathbf r}^T` with :math:`a = (y_{xx} + y_{yy})/2, c = y_{zz}`, an irrep block its
:math:`m = 0` part along :math:`\hat{\mathbf r}_{ij}` (zero for axial vectors and other
blocks with no such part).  Because :math:`\Pi_{O(2)}` is invariant under the axis's
stabiliser, :math:`c_{ij}` does not depend on how :math:`A_{ij}` was completed, is
smooth in :math:`\mathbf r_{ij} \ne 0`, and transforms exactly under O(3).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .covariant import OutputSpec

__all__ = ["axial_frames", "axial_projection", "axial_covariant"]


def axial_frames(directions: Tensor) -> Tensor:
    """Proper rotations ``[E, 3, 3]`` whose third column is ``directions / |directions|``.

    Shapes: ``directions`` ``[E, 3]`` (non-zero) -> ``[E, 3, 3]`` (columns = frame axes,
    so ``x @ A`` are coordinates in the frame).
    """
    axis = directions / directions.norm(dim=-1, keepdim=True)
    helper = torch.zeros_like(axis)
    use_x = axis[:, 0].abs() < 0.9
    helper[use_x, 0] = 1.0
    helper[~use_x, 1] = 1.0
    first = helper - (helper * axis).sum(-1, keepdim=True) * axis
    first = first / first.norm(dim=-1, keepdim=True)
    second = torch.linalg.cross(axis, first)
    return torch.stack([first, second, axis], dim=-1)


def axial_projection(values: Tensor, spec: OutputSpec) -> Tensor:
    """The part of ``values`` ``[E, *components]`` invariant under every rotation about
    the z axis and the mirror ``y -> -y`` (the group O(2) of the z axis)."""
    if spec.is_scalar:
        return values
    k = max(3, spec.lmax + 1)
    mirror = torch.diag(values.new_tensor([1.0, -1.0, 1.0]))
    total = torch.zeros_like(values)
    for step in range(k):
        c, s = math.cos(2 * math.pi * step / k), math.sin(2 * math.pi * step / k)
        turn = values.new_tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        for g in (turn, turn @ mirror):
            total = total + spec.act(values, g.expand(values.shape[0], 3, 3))
    return total / (2 * k)


def axial_covariant(values: Tensor, directions: Tensor, spec: OutputSpec) -> Tensor:
    """Lab-frame covariant outputs ``[E, *components]`` from invariant per-edge values
    ``[E, *components]`` and the edges' lab-frame vectors ``directions`` ``[E, 3]``.

    Example:
        >>> import torch
        >>> spec = OutputSpec("vector")
        >>> out = axial_covariant(torch.tensor([[5.0, 7.0, 2.0]]), torch.tensor([[0.0, 3.0, 0.0]]), spec)
        >>> out.round(decimals=6).tolist()
        [[0.0, 2.0, 0.0]]
    """
    if values.shape[0] == 0 or spec.is_scalar:
        return values
    frames = axial_frames(directions.to(values.dtype))
    return spec.act(axial_projection(values, spec), frames)
