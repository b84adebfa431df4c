r"""PET, the Point Edge Transformer (Pozdnyakov & Ceriotti, NeurIPS 2023), in plain torch.

PET is *not* rotation invariant by construction (it reads Cartesian displacement
vectors); wrap it as ``ECSE(PET(), cutoff=5.0)`` to make it exactly invariant.

Per message-passing (GNN) layer :math:`l` and atom :math:`i` with neighbours :math:`j`
(:math:`r_{ij} < r_c`, periodic images included):

.. math::

    t_{ij} = \mathrm{MLP}\big([\,W_r (\mathbf r_{ij}, |\mathbf r_{ij}|),\; m_{ij}\,]\big),
    \qquad t_{i0} = \mathrm{Emb}_l(z_i),

    (o_{i0}, o_{ij}) = \mathrm{Transformer}_l(t_{i0}, t_{ij}) \text{ with attention }
    a_{ij} \leftarrow a_{ij} f_c(r_{ij}) / \textstyle\sum_k a_{ik} f_c(r_{ik}),

    E_i^{(l)} = H_l(o_{i0}) + \textstyle\sum_j f_c(r_{ij})\, B_l(o_{ij}),
    \qquad m_{ij} \leftarrow (m_{ij} + o_{ji}) / 2,

with :math:`m^{(0)}_{ij} = \mathrm{Emb}(z_j)`, :math:`f_c` the cosine switch from 1 at
:math:`r_c - w` to 0 at :math:`r_c`, and :math:`E = \sum_i (b_{z_i} + \sum_l E_i^{(l)})`
(:math:`b` = composition offsets).
"""
from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ecse.neighbors import neighbor_list

from ._pet_utils import MAX_Z, TransformerLayer, cutoff_switch, mlp, pad_edges, reverse_edges

__all__ = ["PET", "energy_and_forces", "energy_forces_stress"]


class _GNNLayer(nn.Module):
    """One PET message-passing layer: edge tokens + central token -> transformer -> heads."""

    def __init__(self, d: int, n_tf: int, heads: int, d_ff: int, head_hidden: int, pre_ln: bool,
                 fused: bool):
        super().__init__()
        self.r_embed = nn.Linear(4, d)
        self.compress = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, d))
        self.central = nn.Embedding(MAX_Z + 1, d)
        self.layers = nn.ModuleList(TransformerLayer(d, heads, d_ff, pre_ln, fused) for _ in range(n_tf))
        self.head, self.bond_head = mlp(d, head_hidden, 1), mlp(d, head_hidden, 1)

    def forward(self, z, center, slot, max_nb, vec, r, fc, message):
        N = z.shape[0]
        edge = self.compress(torch.cat([self.r_embed(torch.cat([vec, r[:, None]], 1)), message], 1))
        # sequence per atom: central token (slot 0, weight 1), then its edges, then padding
        x = self.central(z)[:, None, :].repeat(1, max_nb + 1, 1).index_put((center, slot), edge)
        weight = torch.cat([fc.new_ones(N, 1), fc.new_zeros(N, max_nb)], 1).index_put((center, slot), fc)
        valid = torch.zeros(N, max_nb + 1, dtype=torch.bool, device=z.device)
        valid[:, 0] = True
        valid[center, slot] = True
        for layer in self.layers:
            x = layer(x, weight, valid)
        out_edge = x[center, slot]
        atom = self.head(x[:, 0]).squeeze(-1)
        bond = self.bond_head(out_edge).squeeze(-1) * fc
        return atom.index_add(0, center, bond), out_edge


class PET(nn.Module):
    r"""Point Edge Transformer energy model (published defaults).

    Args:
        cutoff: neighbour cutoff :math:`r_c` in Å (5.0).
        cutoff_width: width :math:`w` of the cosine switch of the attention and of the
            edge readout (0.2 Å).
        d_model: token width (128).
        num_gnn_layers: message-passing layers (3).
        num_transformer_layers: transformer layers per GNN layer (3).
        num_heads: attention heads (4).
        dim_feedforward: hidden width of the transformer feed-forward (512, SiLU).
        head_hidden: hidden width of the two-hidden-layer atom and edge heads (128).
        pre_ln: pre-LayerNorm transformer instead of post-LN (post-LN default).
        fused_attention: compute the (identical) modulated attention with torch's fused
            ``scaled_dot_product_attention`` and an additive :math:`\log f_c` mask
            (faster and lighter on memory for large neighbour counts).
        level: ``"graph"`` (energy per structure) or ``"node"`` (per-atom energies).

    Shapes:
        input: ``data.pos`` ``[N, 3]``, ``data.z`` ``[N]`` (atomic numbers 1..118),
        optional ``data.batch`` ``[N]``, ``data.cell`` ``[B, 3, 3]`` (rows = lattice
        vectors), ``data.pbc`` ``[B, 3]``.
        output: ``[B]`` (``level="graph"``) or ``[N]`` (``level="node"``).

    Attention is cutoff-modulated (keys weighted by :math:`f_c(r_{ij})`, renormalised;
    the central token has weight 1) and padded to the largest neighbour count in the
    batch, so atoms enter and leave the cutoff smoothly (energy C1, forces C0).
    """

    def __init__(self, cutoff: float = 5.0, cutoff_width: float = 0.2, d_model: int = 128,
                 num_gnn_layers: int = 3, num_transformer_layers: int = 3, num_heads: int = 4,
                 dim_feedforward: int = 512, head_hidden: int = 128, pre_ln: bool = False,
                 fused_attention: bool = False, level: str = "graph"):
        super().__init__()
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if not 0 < cutoff_width <= cutoff:
            raise ValueError(f"need 0 < cutoff_width <= cutoff, got {cutoff_width}, {cutoff}")
        self.cutoff, self.cutoff_width, self.level = float(cutoff), float(cutoff_width), level
        self.neighbor_embedding = nn.Embedding(MAX_Z + 1, d_model)
        self.gnn_layers = nn.ModuleList(
            _GNNLayer(d_model, num_transformer_layers, num_heads, dim_feedforward, head_hidden, pre_ln,
                      fused_attention)
            for _ in range(num_gnn_layers))
        self.register_buffer("composition_offsets", torch.zeros(MAX_Z + 1))

    def set_composition_offsets(self, offsets: Union[Mapping, Tensor]) -> None:
        """Set per-species energy offsets :math:`b_z` from ``{z or symbol: value}`` or a
        tensor ``[119]`` indexed by atomic number (unlisted species stay unchanged)."""
        if isinstance(offsets, Tensor):
            if offsets.shape != self.composition_offsets.shape:
                raise ValueError(f"offsets tensor must have shape [{MAX_Z + 1}], got {tuple(offsets.shape)}")
            self.composition_offsets.copy_(offsets)
            return
        from ase.data import atomic_numbers
        for key, value in offsets.items():
            z = atomic_numbers[key] if isinstance(key, str) else int(key)
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"unknown element {key!r} in composition offsets")
            self.composition_offsets[z] = float(value)

    def forward(self, data) -> Tensor:
        pos, z = data.pos, getattr(data, "z", None)
        if z is None:
            raise ValueError("PET needs atomic numbers in data.z")
        z = z.long().reshape(-1)
        bad = (z < 1) | (z > MAX_Z)
        if bool(bad.any()):
            raise ValueError(f"PET: unknown element(s) with atomic number {sorted(set(z[bad].tolist()))}; "
                             f"supported: 1..{MAX_Z}")
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros_like(z)
        nl = neighbor_list(pos, self.cutoff, batch, getattr(data, "cell", None), getattr(data, "pbc", None))
        center, vec = nl.center, nl.vector
        r = vec.norm(dim=-1)
        fc = cutoff_switch(r, self.cutoff, self.cutoff_width)
        rev = reverse_edges(center, nl.neighbor, vec)
        slot, max_nb = pad_edges(center, z.shape[0])
        message = self.neighbor_embedding(z[nl.neighbor])
        energy = self.composition_offsets.to(pos.dtype)[z]
        for layer in self.gnn_layers:
            e_atom, out_edge = layer(z, center, slot, max_nb, vec, r, fc, message)
            energy = energy + e_atom
            message = 0.5 * (message + out_edge[rev])
        if self.level == "node":
            return energy
        num_graphs = data.num_graphs if isinstance(data, Batch) else int(batch.max()) + 1 if z.numel() else 1
        return energy.new_zeros(num_graphs).index_add(0, batch, energy)


def energy_and_forces(model: nn.Module, data, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Energies ``[B]`` and forces ``F = -dE/dpos`` ``[N, 3]`` by autograd
    (``create_graph=True`` to train on forces)."""
    data = data.clone()
    data.pos = data.pos.detach().requires_grad_(True)
    energy = model(data)
    (grad,) = torch.autograd.grad(energy.sum(), data.pos, create_graph=create_graph)
    return energy, -grad


def energy_forces_stress(model: nn.Module, data, create_graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""Energies ``[B]``, forces ``[N, 3]`` and stress ``[B, 3, 3]`` of periodic structures.

    Positions and cell are strained by :math:`(I + \varepsilon)` with symmetric
    :math:`\varepsilon`; :math:`\sigma = \frac{1}{V} \partial E / \partial \varepsilon`
    at :math:`\varepsilon = 0` (ASE's sign convention).
    """
    data = data.clone()
    pos, cell = data.pos.detach().requires_grad_(True), data.cell.detach().reshape(-1, 3, 3)
    batch = getattr(data, "batch", None)
    batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device) if batch is None else batch
    eps = torch.zeros_like(cell).requires_grad_(True)
    deform = torch.eye(3, dtype=pos.dtype, device=pos.device) + 0.5 * (eps + eps.transpose(1, 2))
    data.pos = torch.einsum("ni,nij->nj", pos, deform[batch])
    data.cell = cell @ deform
    energy = model(data)
    grad_pos, grad_eps = torch.autograd.grad(energy.sum(), (pos, eps), create_graph=create_graph)
    volume = torch.linalg.det(cell).abs()
    return energy, -grad_pos, grad_eps / volume[:, None, None]
