r"""One message-passing layer of :class:`ecse.backbones.PET`: edge tokens, transformer, heads.

The edge token of an edge is :math:`t_{ij} = L_2\,\sigma(L_1[\,W_r \mathbf g_{ij},\; m_{ij}\,])`
(``compress``: two linear maps :math:`L_1, L_2` around a SiLU :math:`\sigma`, applied to
the edge embedding of the geometry :math:`\mathbf g_{ij} = (\mathbf r_{ij}, |\mathbf r_{ij}|,
\dots)` and the incoming message).  In a local frame ensemble with *averaged tokens*
(``PET(frame_average="tokens")``) the hidden layer is averaged over the centre's frames
:math:`F_{ik}` (weights :math:`w_{ik}`, summing to 1) before :math:`L_2`:

.. math::

    t_{ij} = L_2 \textstyle\sum_k w_{ik}\, \sigma\big(A\,\mathbf g_{ij}(F_{ik}) + B\,m_{ij} + b\big),

with :math:`A = L_1^{(r)} W_r` and :math:`b` folded from the two linear maps, so a frame
copy of an edge costs a few operations per channel (computed in cache-sized chunks,
:mod:`ecse.backbones._token_average`), and the transformer runs once per atom.
With one frame of weight 1 this is PET evaluated in that frame.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ecse.elements import MAX_Z

from ._pet_utils import TransformerLayer, mlp
from ._token_average import frame_averaged_silu

__all__ = ["GNNLayer"]


class GNNLayer(nn.Module):
    """One PET message-passing layer: edge tokens + central token -> transformer -> heads."""

    def __init__(self, d: int, n_tf: int, heads: int, d_ff: int, head_hidden: int, pre_ln: bool,
                 fused: bool, out_dim: int = 1, num_radial: int = 0):
        super().__init__()
        self.r_embed = nn.Linear(4 + num_radial, d)
        self.compress = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, d))
        self.central = nn.Embedding(MAX_Z + 1, d)
        self.layers = nn.ModuleList(TransformerLayer(d, heads, d_ff, pre_ln, fused) for _ in range(n_tf))
        self.head, self.bond_head = mlp(d, head_hidden, out_dim), mlp(d, head_hidden, out_dim)

    def embed(self, geometry: Tensor, message: Tensor) -> Tensor:
        """Edge tokens ``[T, d]`` from the geometry ``[T, 4 + num_radial]`` and messages ``[T, d]``."""
        return self.compress(torch.cat([self.r_embed(geometry), message], 1))

    def embed_averaged(self, geometry: Tensor, message: Tensor, edge: Tensor, weight: Tensor) -> Tensor:
        r"""Edge tokens averaged over frame copies (the module docstring's formula).

        Args:
            geometry: ``[C, 4 + num_radial]`` the geometry of each copy of an edge, in its frame.
            message: ``[E, d]`` per-edge messages.
            edge: ``[C]`` the edge each copy belongs to.
            weight: ``[C]`` each copy's weight (per edge, the copies' weights sum to 1).

        Returns:
            ``[E, d]`` edge tokens.
        """
        first, d = self.compress[0], self.r_embed.out_features
        w_r, w_m = first.weight[:, :d], first.weight[:, d:]
        along = w_r @ self.r_embed.weight  # A: geometry -> hidden
        shift = message @ w_m.T + (w_r @ self.r_embed.bias + first.bias)  # B m + b, per edge
        return self.compress[2](frame_averaged_silu(shift, geometry, along, weight, edge))

    def forward(self, z: Tensor, center: Tensor, slot: Tensor, max_nb: int, edge: Tensor, fc: Tensor):
        """Run the transformer on the sequences of atoms ``z`` ``[N]`` with edge tokens ``edge``
        ``[T, d]`` at ``(center, slot)``: per-atom readouts ``[N, C]``, edge readouts ``[T, C]``
        (times ``fc``) and edge outputs ``[T, d]``."""
        N = z.shape[0]
        # sequence per atom: central token (slot 0, weight 1), then its edges, then padding
        x = self.central(z)[:, None, :].repeat(1, max_nb + 1, 1).index_put((center, slot), edge)
        weight = torch.cat([fc.new_ones(N, 1), fc.new_zeros(N, max_nb)], 1).index_put((center, slot), fc)
        valid = torch.zeros(N, max_nb + 1, dtype=torch.bool, device=z.device)
        valid[:, 0] = True
        valid[center, slot] = True
        for layer in self.layers:
            x = layer(x, weight, valid)
        out_edge = x[center, slot]
        atom = self.head(x[:, 0])
        bond = self.bond_head(out_edge) * fc[:, None]
        return atom, bond, out_edge
