r"""PET, the Point Edge Transformer (Pozdnyakov & Ceriotti, NeurIPS 2023), in plain torch.

PET is *not* rotation invariant by construction (it reads Cartesian displacement
vectors); wrap it as ``ECSE(PET(), cutoff=5.0)`` to make it exactly invariant.

Per message-passing (GNN) layer :math:`l` and atom :math:`i` with neighbours :math:`j`
(:math:`r_{ij} < r_c`, periodic images included):

.. math::

    t_{ij} = \mathrm{MLP}\big([\,W_r (\mathbf r_{ij}, |\mathbf r_{ij}|, g(|\mathbf r_{ij}|)),\; m_{ij}\,]\big),
    \qquad t_{i0} = \mathrm{Emb}_l(z_i),

    (o_{i0}, o_{ij}) = \mathrm{Transformer}_l(t_{i0}, t_{ij}) \text{ with attention }
    a_{ij} \leftarrow a_{ij} f_c(r_{ij}) / \textstyle\sum_k a_{ik} f_c(r_{ik}),

    E_i^{(l)} = H_l(o_{i0}) + \textstyle\sum_j f_c(r_{ij})\, B_l(o_{ij}),
    \qquad m_{ij} \leftarrow (m_{ij} + o_{ji}) / 2,

with :math:`m^{(0)}_{ij} = \mathrm{Emb}(z_j)`, :math:`g` an optional Gaussian expansion of the
distance (``num_radial`` functions; none in the published PET), :math:`f_c` the cosine switch from 1 at
:math:`r_c - w` to 0 at :math:`r_c`, and :math:`E = \sum_i (b_{z_i} + \sum_l E_i^{(l)})`
(:math:`b` = composition offsets).
"""
from __future__ import annotations

import math
from typing import Mapping, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ecse._validation import check_input_dtype
from ecse.covariant import OutputSpec
from ecse.elements import MAX_Z, atomic_numbers
from ecse.neighbors import neighbor_list

from ._init import reinitialise
from ._pet_groups import auto_budgets, chunk_budget, layer_groups, run_layer, token_inputs
from ._pet_layer import GNNLayer
from ._pet_local import AtomSequences, AveragedSequences, FrameSequences, copy_cost
from ._pet_utils import GaussianBasis, cutoff_switch, reverse_edges

__all__ = ["PET"]


class PET(nn.Module):
    r"""Point Edge Transformer (published defaults): energies, or covariant properties.

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
        level: ``"graph"`` (sum per structure) or ``"node"`` (per-atom contributions).
        output: ``"scalar"`` (energy), ``"vector"``, ``"rank2"``, ``"rank2-symmetric"`` or an
            e3nn Irreps string: the heads predict that many components per atom, in the
            coordinates PET is given (wrap with ``ECSE(..., output=output)`` to make them
            exactly covariant).
        chunk_tokens: memory budget of one transformer call, in tokens: each
            message-passing layer runs on consecutive groups of sequences (atoms, or
            frame copies in local mode) whose padded size
            :math:`n L (1 + L / L_a)` (:math:`n` sequences of :math:`L` tokens,
            :math:`L_a = 4\,d_{model}/n_{heads}` for the attention weights, 128 by
            default) stays within it; every group builds its tokens from per-edge inputs
            and reduces them to per-edge values, and with more than one group each
            group's activations are recomputed in the backward pass
            (``torch.utils.checkpoint``), so the memory of energies, forces and training
            stays at about one group's (plus per-edge tensors) whatever the size of the
            system, once it is split (``chunk_above``; see
            :data:`ecse.ensemble.MEMORY_BOUND_GB`).  Results equal the unchunked
            evaluation up to rounding.  ``"auto"`` (default): 4096 at the published size,
            scaled inversely with the memory of a token
            (``num_transformer_layers * (3 d_model + dim_feedforward)`` plus a part that
            does not grow with the width), so that a group
            of a wider or deeper PET holds about the same memory and a narrower one runs
            in fewer, larger groups (:func:`ecse.backbones._pet_groups.auto_budgets`).
            ``None``: all sequences in one call per layer, activations kept.
        chunk_above: split a layer into groups of ``chunk_tokens`` only when all its
            sequences together cost more than this (the same padded measure); smaller
            inputs (a small molecule, a batch of them, a solid of about a hundred atoms)
            run in one call with their activations kept, which is faster (no
            recomputation in the backward pass) at a few times the memory of one group.
            ``"auto"`` (default): 12288 at the published size, scaled as
            ``chunk_tokens`` and inversely with ``num_gnn_layers / 3`` (one call keeps
            every layer's activations).  ``None``: split whenever they cost more than
            ``chunk_tokens``.
        zero_init_heads: start the last layer of every atom and edge head at zero, so a
            new model predicts exactly the composition baseline (``False``: PyTorch's
            default initialisation).  The per-atom output sums one edge head per
            neighbour, so with random heads a dense system starts far from its
            baseline by an offset that grows with the number of neighbours, and a
            short training spends its budget removing that offset.
        num_radial: number of Gaussian functions of :math:`|r_{ij}|` (evenly spaced on
            :math:`[0, r_c]`, as SchNet's) added to the edge embedding's input; 0
            (default) is the published PET, whose edge embedding is linear in
            :math:`(\mathbf r_{ij}, |r_{ij}|)`.  A linear embedding resolves distances
            only through the MLPs that follow it, which learn slowly where the forces
            hinge on a narrow range of distances (``benchmarks/water_forces.py``
            compares both embeddings on bulk water).
        frame_average: how ``forward(data, local_frames=lf)`` (``ECSE(..., mode="local")``)
            uses an atom's frames.  ``"layers"`` (default): run every layer's
            transformer once per (atom, frame) copy and average its edge outputs and
            readouts, which costs (frames per atom) times the bare model.  ``"tokens"``
            (scalar outputs only): average every edge token over the atom's frames after
            the first hidden layer of the token MLP (:mod:`ecse.backbones._pet_layer`),
            then run the transformer once per atom, so a local ensemble costs one bare
            evaluation plus a per-copy embedding of a few operations per channel
            (computed in cache-sized chunks), whatever the number of frames (solids).
            Both are exactly
            invariant and as continuous as the frame weights; they are different models
            (equal when every atom has one frame).  ``"layers"`` averages the outputs of
            the model as trained, so it wraps a PET trained bare after the fact.
            ``"tokens"`` feeds the transformer averaged tokens that a bare-trained PET never
            saw: train the weights through the ensemble
            (``ECSE(PET(frame_average="tokens"), cutoff, mode="local")`` in the loop, the
            training stack's default for ``ecse.in_loop`` in local mode).  Wrapped after
            the fact its predictions and forces are not the trained model's
            (``benchmarks/tokens_in_loop.py``).

    Shapes:
        input: ``data.pos`` ``[N, 3]``, ``data.z`` ``[N]`` (atomic numbers 1..118),
        optional ``data.batch`` ``[N]``, ``data.cell`` ``[B, 3, 3]`` (rows = lattice
        vectors), ``data.pbc`` ``[B, 3]``.
        output: ``[B, *shape]`` (``level="graph"``) or ``[N, *shape]`` (``level="node"``),
        with ``shape`` ``()`` for scalars, ``(3,)`` vectors, ``(3, 3)`` rank-2 (symmetric
        for ``"rank2-symmetric"``), ``(irreps.dim,)`` Irreps.

    Attention is cutoff-modulated (keys weighted by :math:`f_c(r_{ij})`, renormalised;
    the central token has weight 1) and padded to the largest neighbour count in the
    batch, so atoms enter and leave the cutoff smoothly (energy C1, forces C0).
    The learned per-atom outputs are multiplied by ``output_scale`` (a buffer, 1 unless
    :meth:`set_output_scale` changes it) and composition offsets :math:`b_z` are added
    to scalar outputs, as :math:`b_z I` to rank-2 outputs and to the first ``0e``
    component of Irreps outputs (an invariant, covariant baseline).

    ``forward(data, local_frames=lf)`` evaluates every per-atom update in the atom's own
    frames (:mod:`ecse.local`, ``frame_average``); use it through
    ``ECSE(PET(), cutoff=5.0, mode="local")``.
    """

    supports_local_frames = True

    def __init__(self, cutoff: float = 5.0, cutoff_width: float = 0.2, d_model: int = 128,
                 num_gnn_layers: int = 3, num_transformer_layers: int = 3, num_heads: int = 4,
                 dim_feedforward: int = 512, head_hidden: int = 128, pre_ln: bool = False,
                 fused_attention: bool = False, level: str = "graph", output: str = "scalar",
                 chunk_tokens: Union[int, str, None] = "auto", zero_init_heads: bool = False,
                 num_radial: int = 0, frame_average: str = "layers", chunk_above: Union[int, str, None] = "auto"):
        super().__init__()
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if not 0 < cutoff_width <= cutoff:
            raise ValueError(f"need 0 < cutoff_width <= cutoff, got {cutoff_width}, {cutoff}")
        if num_radial < 0 or num_radial == 1:
            raise ValueError(f"num_radial must be 0 (no radial basis) or at least 2, got {num_radial}")
        auto_tokens, auto_above = auto_budgets(d_model, dim_feedforward, num_transformer_layers, num_gnn_layers)
        self.chunk_tokens = chunk_budget("chunk_tokens", chunk_tokens, auto_tokens, minimum=1)
        self.chunk_above = chunk_budget("chunk_above", chunk_above, auto_above, minimum=0)
        self.cutoff, self.cutoff_width, self.level = float(cutoff), float(cutoff_width), level
        self.spec, self.output = OutputSpec(output), output
        if frame_average not in ("tokens", "layers"):
            raise ValueError(f"frame_average must be 'tokens' or 'layers', got {frame_average!r}")
        if frame_average == "tokens" and not self.spec.is_scalar:
            raise ValueError(f"frame_average='tokens' needs a scalar output, got output={output!r} "
                             "(covariant outputs use 'layers')")
        self.frame_average = frame_average
        # sequence length from which the attention weights (num_heads x L per token, a few
        # copies) cost as much memory as the rest of a token's activations (~4 d_model)
        self.attention_length = 4.0 * d_model / num_heads
        self.out_dim = out_dim = self.spec.packed_size  # per-atom numbers the heads predict
        self._config = dict(cutoff=cutoff, cutoff_width=cutoff_width, d_model=d_model, num_gnn_layers=num_gnn_layers,
                            num_transformer_layers=num_transformer_layers, num_heads=num_heads,
                            dim_feedforward=dim_feedforward, head_hidden=head_hidden, pre_ln=pre_ln,
                            fused_attention=fused_attention, level=level, output=output, chunk_tokens=chunk_tokens,
                            zero_init_heads=zero_init_heads, num_radial=num_radial, frame_average=frame_average,
                            chunk_above=chunk_above)
        self.neighbor_embedding = nn.Embedding(MAX_Z + 1, d_model)
        self.radial = GaussianBasis(cutoff, num_radial) if num_radial else None
        self.gnn_layers = nn.ModuleList(
            GNNLayer(d_model, num_transformer_layers, num_heads, dim_feedforward, head_hidden, pre_ln,
                      fused_attention, out_dim, num_radial)
            for _ in range(num_gnn_layers))
        self.register_buffer("composition_offsets", torch.zeros(MAX_Z + 1))
        self.register_buffer("output_scale", torch.ones(()))
        if zero_init_heads:
            for layer in self.gnn_layers:
                for head in (layer.head, layer.bond_head):
                    nn.init.zeros_(head[-1].weight)
                    nn.init.zeros_(head[-1].bias)

    def set_composition_offsets(self, offsets: Union[Mapping, Tensor]) -> None:
        """Set per-species energy offsets :math:`b_z` from ``{z or symbol: value}`` or a
        tensor ``[119]`` indexed by atomic number (unlisted species stay unchanged)."""
        if isinstance(offsets, Tensor):
            if offsets.shape != self.composition_offsets.shape:
                raise ValueError(f"offsets tensor must have shape [{MAX_Z + 1}], got {tuple(offsets.shape)}")
            self.composition_offsets.copy_(offsets)
            return
        from ase.data import atomic_numbers as numbers_of_symbols
        for key, value in offsets.items():
            z = numbers_of_symbols.get(key, 0) if isinstance(key, str) else int(key)
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"unknown element {key!r} in composition offsets")
            self.composition_offsets[z] = float(value)

    def set_output_scale(self, scale: float) -> None:
        """Multiply the learned per-atom outputs by ``scale`` (before the offsets), so a
        freshly initialised model predicts at the target's scale (``train`` sets the
        training set's force, or target, standard deviation, as MACE does)."""
        scale = float(scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"output scale must be positive and finite, got {scale}")
        self.output_scale.fill_(scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the output scale existed had an implicit scale of 1
        state_dict.setdefault(prefix + "output_scale", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        c = self._config
        return (f"{type(self).__name__}(cutoff={self.cutoff}, d_model={c['d_model']}, "
                f"num_gnn_layers={c['num_gnn_layers']}, num_transformer_layers={c['num_transformer_layers']}, "
                f"num_heads={c['num_heads']}, num_radial={c['num_radial']}, output={self.output!r}, "
                f"level={self.level!r})")

    def reset_parameters(self) -> None:
        """Reinitialise every parameter and buffer (composition offsets 0, output scale 1):
        under the same seed, exactly as a new ``PET``."""
        reinitialise(self, self._config)

    def forward(self, data, local_frames=None) -> Tensor:
        """Per-structure (or per-atom) outputs; ``local_frames``: evaluate every per-atom
        update in each of the atom's frames (:mod:`ecse.local`), as ``ECSE(..., mode="local")`` does."""
        pos, z, batch = data.pos, atomic_numbers(data, "PET"), getattr(data, "batch", None)
        check_input_dtype(self, pos, "data.pos")
        batch = torch.zeros_like(z) if batch is None else batch
        nl = neighbor_list(pos, self.cutoff, batch, getattr(data, "cell", None), getattr(data, "pbc", None))
        r = nl.vector.norm(dim=-1)
        fc = cutoff_switch(r, self.cutoff, self.cutoff_width)
        rev = reverse_edges(nl.center, nl.neighbor, nl.vector)
        # token sequences: one per atom (bare, or frame-averaged tokens), or one per (atom, frame)
        # copy (ecse.backbones._pet_local)
        if local_frames is None:
            seq = AtomSequences(z, nl.center)
        elif self.frame_average == "tokens":
            seq = AveragedSequences(local_frames, z, nl.center,
                                    copy_cost(self._config["d_model"], len(self.gnn_layers)))
        else:
            seq = FrameSequences(local_frames, z, nl.center, nl.vector, self.spec)
        message = self.neighbor_embedding(z[nl.neighbor])  # m_ij = Emb(z_j)
        total = self.composition_offsets.new_zeros(seq.z.numel(), self.out_dim)  # sum_l E_i^(l)
        groups = layer_groups(seq, self.chunk_tokens, self.chunk_above, self.attention_length)
        # one group: token inputs built once for all layers; several: per group, inside it
        inputs = token_inputs(self.radial, seq, slice(None), nl.vector, r, fc) if len(groups) == 1 else None
        for layer in self.gnn_layers:
            atom, edge_out = run_layer(layer, self.radial, seq, groups, inputs, nl.vector, r, fc, message)
            total = total + atom  # H(o_i0) + sum_j f_c B(o_ij)
            message = (message + edge_out[rev]).mul_(0.5)  # m_ij <- (m_ij + o_ji) / 2
        values = seq.atoms(self.spec.unpack(total)) * self.output_scale.to(total.dtype)
        values = values + self.spec.isotropic(self.composition_offsets.to(pos.dtype)[z])  # + b_z
        if self.level == "node":
            return values
        num_graphs = data.num_graphs if isinstance(data, Batch) else int(batch.max()) + 1 if z.numel() else 1
        return values.new_zeros(num_graphs, *values.shape[1:]).index_add(0, batch, values)
