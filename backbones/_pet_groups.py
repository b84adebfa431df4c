"""PET's GNN layers run over groups of token sequences, so that memory follows a token budget.

:class:`~backbones.pet.PET` builds its sequences (one per atom, or one per (atom, frame)
copy, :mod:`backbones._pet_local`) and hands each layer to :func:`run_layer`. When the
sequences fit in one group, the layer runs on all of them at once; otherwise each group's
tokens are built, run and reduced to per-edge values inside one call whose activations are
recomputed in the backward pass (``torch.utils.checkpoint``), so no token-sized tensor of
all groups is kept. Results equal the one-group call.
"""
from __future__ import annotations

import numbers
from functools import partial
from typing import Optional

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ecse._memory import release_free_memory

__all__ = ["layer_groups", "token_inputs", "run_layer", "auto_budgets", "chunk_budget", "token_width",
           "PUBLISHED_CHUNK_TOKENS", "PUBLISHED_CHUNK_ABOVE", "PUBLISHED_BUDGETS"]

#: ``chunk_tokens`` and ``chunk_above`` of PET at its published size (``PET()``), whose
#: memory ``ecse.ensemble.MEMORY_BOUND_GB`` was measured with; ``"auto"`` scales them.
PUBLISHED_CHUNK_TOKENS, PUBLISHED_CHUNK_ABOVE = 4096, 12288
#: the same two budgets as ``PET`` keyword arguments, to pin them at another width
PUBLISHED_BUDGETS = {"chunk_tokens": PUBLISHED_CHUNK_TOKENS, "chunk_above": PUBLISHED_CHUNK_ABOVE}


def token_width(d_model: int, dim_feedforward: int, num_transformer_layers: int) -> int:
    """Relative memory of one token in one message-passing layer: ``num_transformer_layers
    * (3 d_model + dim_feedforward) + 256`` (the last term: what does not grow with the
    width, indices, switches and geometry), fitted to the growth of the peak memory of
    energy and forces with the group size at ``d_model`` 32 to 512 (the budgets it gives
    are compared by ``benchmarks/chunk_budget.py``); the attention weights are counted by
    :func:`~ecse.backbones._pet_local.chunk_cost`.

    >>> token_width(128, 512, 3)
    2944
    """
    return num_transformer_layers * (3 * d_model + dim_feedforward) + 256


def auto_budgets(d_model: int, dim_feedforward: int, num_transformer_layers: int,
                 num_gnn_layers: int) -> tuple[int, int]:
    """``(chunk_tokens, chunk_above)`` whose groups and unsplit calls hold about the memory
    of the published PET's (4096 and 12288 tokens): a token of a wider or deeper PET
    counts for more (:func:`token_width`), and an unsplit call keeps the activations of
    every message-passing layer.

    >>> auto_budgets(128, 512, 3, 3)
    (4096, 12288)
    >>> auto_budgets(256, 1024, 3, 3)
    (2141, 6423)
    """
    scale = token_width(d_model, dim_feedforward, num_transformer_layers) / token_width(128, 512, 3)
    return (max(1, round(PUBLISHED_CHUNK_TOKENS / scale)),
            max(1, round(PUBLISHED_CHUNK_ABOVE / (scale * num_gnn_layers / 3))))


def chunk_budget(name: str, value, auto: int, minimum: int) -> Optional[int]:
    """The budget ``name`` as PET uses it: ``"auto"`` -> ``auto``; ``None`` stays; an
    integer of at least ``minimum`` stays, anything else raises ``ValueError``."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be an integer, 'auto' or None, got {value!r}")
        return auto
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum):
        bound = "positive" if minimum else "non-negative"
        raise ValueError(f"{name} must be a {bound} integer, 'auto' or None, got {value!r}")
    return None if value is None else int(value)


def layer_groups(seq, chunk_tokens: Optional[int], chunk_above: Optional[int],
                 attention_length: int) -> list[tuple[int, int, int, int]]:
    """Groups of sequences ``(s0, s1, t0, t1)`` (sequences ``s0:s1``, edge tokens ``t0:t1``):
    one if they all fit in ``chunk_above`` (or ``chunk_tokens``), else groups of
    ``chunk_tokens`` tokens."""
    if chunk_tokens is not None and chunk_above is not None and chunk_above > chunk_tokens:
        whole = seq.chunks(chunk_above, attention_length)
        if len(whole) == 1:
            return whole
    return seq.chunks(chunk_tokens, attention_length)


def token_inputs(radial, seq, part: slice, vectors: Tensor, r: Tensor, fc: Tensor) -> tuple[Tensor, Tensor]:
    """Edge-token geometry ``(r_ij, |r_ij|, g(|r_ij|))`` and cutoff switch of the tokens
    ``part``; ``radial``: the Gaussian expansion ``g`` or ``None``."""
    d = seq.geometry_edges(r, part)
    expansion = [] if radial is None else [radial(d)]
    return torch.cat([seq.directions(vectors, part), d[:, None]] + expansion, 1), seq.tokens(fc, part)


def run_layer(layer, radial, seq, groups, inputs, vectors: Tensor, r: Tensor, fc: Tensor,
              message: Tensor) -> tuple[Tensor, Tensor]:
    """One GNN layer over all sequences: per-sequence readouts ``[S, C]`` and per-edge
    outputs ``[E, d]``.

    ``groups`` from :func:`layer_groups`; ``inputs``: :func:`token_inputs` of all tokens when
    there is one group (built once for every layer), else ``None``."""
    if len(groups) == 1:
        geometry, fc_tokens = inputs
        atom, bond, edge_out = layer(seq.z, seq.owner, seq.slot, seq.max_nb, seq.embed(layer, geometry, message),
                                     fc_tokens)
        bond, aux_bond = seq.edge_readout(bond)
        seq.keep_aux(aux_bond)
        return atom.index_add(0, seq.owner, bond), seq.edges(edge_out)
    run = partial(_layer_part, layer, radial, seq, vectors, r, fc, message)
    edge_out = message.new_zeros(message.shape)
    atoms, aux = [], []
    for s0, s1, t0, t1 in groups:
        atom, edges, aux_bond = (checkpoint(run, s0, s1, t0, t1, use_reentrant=False) if torch.is_grad_enabled()
                                 else run(s0, s1, t0, t1))
        a0, a1 = seq.edge_span(slice(t0, t1))
        edge_out.index_add_(0, torch.arange(a0, a1, device=r.device), edges)  # (groups may share an atom)
        atoms.append(atom)
        aux.append(aux_bond)
    seq.keep_aux(_cat(aux))
    return _cat(atoms), edge_out


def _layer_part(layer, radial, seq, vectors, r, fc, message, s0: int, s1: int, t0: int, t1: int):
    """The layer on sequences ``s0:s1`` (edge tokens ``t0:t1``), from per-edge inputs:
    (readouts ``[s1 - s0, C]``, outputs of the edges they cover ``[a1 - a0, d]``, edge
    readouts set aside for the axial readout or ``None``)."""
    release_free_memory()  # the previous group's freed activations (here and when recomputed)
    part = slice(t0, t1)
    geometry, fc_tokens = token_inputs(radial, seq, part, vectors, r, fc)
    owner, slot = seq.owner[part] - s0, seq.slot[part]
    atom, bond, edge_out = layer(seq.z[s0:s1], owner, slot, int(slot.max()) if t1 > t0 else 0,
                                 seq.embed(layer, geometry, message, part), fc_tokens)
    bond, aux_bond = seq.edge_readout(bond, part)
    return atom.index_add(0, owner, bond), seq.edges(edge_out, part, seq.edge_span(part)), aux_bond


def _cat(parts: list) -> Optional[Tensor]:
    return None if parts[0] is None else parts[0] if len(parts) == 1 else torch.cat(parts)
