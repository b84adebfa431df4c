r"""Default auxiliary model: intrinsically invariant/covariant, for degenerate clouds.

ECSE hands over smoothly to an auxiliary model where no frame has weight (one or two
points, collinear clouds, no wide-angle pair within the cutoff).  This default is a
small learnable model built only from neighbour displacements :math:`\mathbf r_{ij}`
inside the cutoff, so its symmetry holds by construction:

.. math::
    y_i = b(z_i) + \sum_j \phi(r_{ij}, z_i, z_j, \rho_i)\, B(\mathbf r_{ij}),

with :math:`\phi` an MLP on a radial basis (times a smooth cutoff), :math:`\rho_i` the
summed radial basis of centre :math:`i` (so that :math:`\phi_{ij} \ne \phi_{ji}` and
pair terms do not cancel in a graph sum), and :math:`B`:
``1`` for scalars, :math:`\mathbf r` for vectors, :math:`\mathbf r \otimes \mathbf r`
(plus :math:`b\,I` on the node) for rank-2 tensors, and e3nn's (unnormalised, hence
smooth) spherical harmonics :math:`Y_l(\mathbf r)` for Irreps.  Graph-level outputs
sum :math:`y_i` over the graph.  Parts that a set of displacement vectors cannot
carry (the antisymmetric part of a rank-2 tensor; with ``o3=True``, irreps whose
parity is not :math:`(-1)^l`) are zero.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .covariant import OutputSpec
from .switching import cutoff_function

__all__ = ["DistanceAux"]

MAX_ATOMIC_NUMBER = 119


class DistanceAux(nn.Module):
    """Learnable invariant (or covariant) fallback model on neighbour displacements.

    Args:
        output: output type (see :class:`ecse.covariant.OutputSpec`).
        out_shape: per-graph (or per-node) output shape, including the component dims.
        cutoff: neighbour radius.
        level: ``"graph"`` or ``"node"``.
        o3: zero the irreps that displacement vectors cannot carry under reflections.
        num_radial: number of Gaussian radial functions.
        hidden: hidden width of the radial MLP.

    Shapes:
        forward returns ``[B, *out_shape]`` (graph) or ``[N, *out_shape]`` (node).
    """

    def __init__(self, output: str, out_shape: tuple[int, ...], cutoff: float, level: str = "graph",
                 o3: bool = False, num_radial: int = 8, hidden: int = 32):
        super().__init__()
        self.spec = OutputSpec(output)
        self.out_shape = tuple(out_shape)
        self.cutoff, self.level, self.o3 = float(cutoff), level, o3
        ncomp = len(self.spec.component_shape)
        self.channel_shape = self.out_shape[: len(self.out_shape) - ncomp] if ncomp else self.out_shape
        self.channels = math.prod(self.channel_shape)
        unit = torch.zeros(1, 3)
        n_edge = sum(mul for mul, _, _ in self.spec.direction_blocks(unit, o3))
        n_node = self.spec.invariant_basis(o3).shape[0]
        self.n_edge, self.n_node = n_edge, n_node
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num_radial), persistent=False)
        self.radial = nn.Sequential(nn.Linear(num_radial, hidden), nn.SiLU(), nn.Linear(hidden, self.channels * n_edge))
        self.environment = nn.Linear(num_radial, hidden, bias=False)
        self.species = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden)
        self.node_bias = nn.Parameter(torch.zeros(self.channels * max(n_node, 1)))
        self.node_species = nn.Linear(hidden, self.channels * max(n_node, 1), bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.radial[0], self.radial[2], self.environment):
            layer.reset_parameters()
        nn.init.normal_(self.species.weight, std=0.1)
        nn.init.zeros_(self.node_bias)
        nn.init.zeros_(self.node_species.weight)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(output={self.spec.name!r}, out_shape={self.out_shape}, "
                f"cutoff={self.cutoff}, level={self.level!r})")

    def forward(self, center: Tensor, neighbor: Tensor, vector: Tensor, num_nodes: int,
                batch: Tensor, num_graphs: int, z: Optional[Tensor] = None) -> Tensor:
        length = vector.norm(dim=-1, keepdim=True)
        width = self.cutoff / len(self.centers)
        rbf = torch.exp(-((length - self.centers) / width) ** 2)
        smooth = cutoff_function(length, self.cutoff, 0.25 * self.cutoff)  # [E, 1]
        rbf = rbf * smooth
        # the centre's environment makes phi_ij != phi_ji, so pair terms do not cancel
        environment = rbf.new_zeros(num_nodes, rbf.shape[1]).index_add(0, center, rbf)
        hidden_in = self.radial[0](rbf) + self.environment(environment)[center]
        node_species = None
        if z is not None:
            emb = self.species(z)
            hidden_in = hidden_in + emb[center] * emb[neighbor]
            node_species = self.node_species(emb)
        # the cutoff multiplies the coefficients themselves (an MLP maps zero features to
        # its bias), so an edge enters and leaves the cutoff smoothly
        coeff = (self.radial[2](self.radial[1](hidden_in)) * smooth).reshape(-1, self.channels, self.n_edge)
        edge = self._edge_terms(coeff, vector)  # [E, C, *comp]
        node = vector.new_zeros(num_nodes, *edge.shape[1:]).index_add(0, center, edge)
        node = node + self._node_terms(node_species, num_nodes, vector)
        node = node.reshape(num_nodes, *self.out_shape)
        if self.level == "node":
            return node
        return vector.new_zeros(num_graphs, *self.out_shape).index_add(0, batch, node)

    def _edge_terms(self, coeff: Tensor, vector: Tensor) -> Tensor:
        """``sum_b coeff_b B_b(r)`` per edge and channel: ``[E, C, *components]``."""
        parts, start = [], 0
        for mul, width, basis in self.spec.direction_blocks(vector / self.cutoff, self.o3):
            c = coeff[..., start : start + mul]
            start += mul
            parts.append(vector.new_zeros(*c.shape, width) if basis is None else c[..., None] * basis[:, None, None, :])
        edge = torch.cat([p.flatten(-2) for p in parts], dim=-1)
        return edge.reshape(*edge.shape[:2], *self.spec.component_shape)

    def _node_terms(self, node_species: Optional[Tensor], num_nodes: int, vector: Tensor) -> Tensor:
        """The per-node invariant term ``b(z_i)`` in the type's invariant subspace."""
        basis = self.spec.invariant_basis(self.o3, dtype=vector.dtype, device=vector.device)
        if basis.shape[0] == 0:  # no invariant part (vectors)
            return vector.new_zeros(num_nodes, self.channels, *self.spec.component_shape)
        bias = self.node_bias.expand(num_nodes, -1)
        if node_species is not None:
            bias = bias + node_species
        bias = bias.reshape(num_nodes, self.channels, -1)
        return (bias @ basis).reshape(num_nodes, self.channels, *self.spec.component_shape)
