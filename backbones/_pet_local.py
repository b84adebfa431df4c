r"""Where :class:`ecse.backbones.PET` runs its per-atom transformers: the bookkeeping of the
bare model and of local frame ensembles (:mod:`ecse.local`) behind one small interface.

PET's transformer runs over token *sequences*: a central token and one token per edge.
The bare model has one sequence per atom (:class:`AtomSequences`, where every method is
the identity).  A local ensemble either averages each edge token over the atom's frames
before the transformer, which then runs once per atom (:class:`AveragedSequences`,
``PET(frame_average="tokens")``), or runs it once per (atom, frame) copy
(:class:`FrameSequences`, ``frame_average="layers"``), each copy seeing the atom's edges
in its own frame, plus direction-free auxiliary copies.
Every method takes ``part``, a slice of the edge tokens covering whole sequences, so
that PET can build the tokens of a group of sequences, run the layer on them and
reduce them to per-edge values without holding a token-sized tensor for all of them
(:meth:`AtomSequences.chunks` plans the groups).

=====================  ==========================  ===========================================
method                 bare (one per atom)         local (one per frame copy)
=====================  ==========================  ===========================================
``tokens(v)``          ``v``                       ``v`` repeated for every copy of the edge
``directions(r)``      ``r``                       :math:`\mathbf r_{ij} F_{ik}` (0: auxiliary)
``embed(layer, g, m)`` edge tokens                 edge tokens of every copy
``edges(o)``           ``o``                       weighted average over the copies of an edge
                                                   (the part's edges ``edge_span(part)``)
``edge_readout(b)``    ``(b, None)``               ``b`` without, and the covariant edge readouts
                                                   of, auxiliary copies (for the axial readout)
``atoms(y)``           ``y``                       frame average (rotated back for covariant
                                                   outputs, :meth:`ecse.local.LocalFrames.combine_covariant`)
=====================  ==========================  ===========================================
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ecse.covariant import OutputSpec

from ._pet_utils import pad_edges

__all__ = ["AtomSequences", "AveragedSequences", "FrameSequences", "chunk_cost", "copy_cost"]

_ALL = slice(None)
#: numbers that one frame copy of an edge keeps for the backward pass of
#: :meth:`AveragedSequences.embed`, over all layers: its rotated geometry, the rotation it
#: came from, and per layer its weight and edge index (the averaged SiLU layer,
#: :mod:`ecse.backbones._token_average`, keeps no ``d_model``-wide activation).
COPY_NUMBERS = 24
#: numbers that one unit of :func:`chunk_cost` keeps per layer, per ``d_model`` channel: a
#: lower bound (PET's published and small sizes keep about 30 and 17 in float64).
UNIT_NUMBERS_PER_CHANNEL = 16


def copy_cost(d_model: int, num_layers: int) -> float:
    """Memory of one frame copy of an edge in :func:`chunk_cost`'s unit (per layer).

    >>> round(copy_cost(128, 3), 4)
    0.0039
    """
    return COPY_NUMBERS / (UNIT_NUMBERS_PER_CHANNEL * d_model * num_layers)


def chunk_cost(num_sequences: Tensor, length: Tensor, attention_length: float) -> Tensor:
    r"""Memory cost, in tokens, of ``num_sequences`` sequences padded to ``length`` tokens:
    :math:`n L (1 + L / L_a)`; the second term is the attention weights, which grow as
    :math:`L^2` per sequence (``attention_length`` :math:`L_a`, the length from which
    they cost as much as the rest of a token's activations).

    >>> float(chunk_cost(torch.tensor(10), torch.tensor(40), 40.0))
    800.0
    """
    length = length.double()
    return num_sequences * length * (1.0 + length / attention_length)


class AtomSequences:
    """One token sequence per atom (bare PET).

    Attributes:
        z: ``[S]`` species of each sequence's central atom.
        owner: ``[T]`` sequence of each edge token, sorted.
        slot: ``[T]`` position of each edge token in its padded sequence (1-based).
        max_nb: the longest sequence's number of edge tokens.

    Args:
        z: ``[N]`` atomic numbers.
        center: ``[E]`` centre atom of each edge, sorted.
    """

    #: ``[S]`` memory cost of a sequence besides its tokens (in tokens), or ``None``.
    extra_cost: Optional[Tensor] = None

    def __init__(self, z: Tensor, center: Tensor):
        self.z, self.owner = z, center
        self.slot, self.max_nb = pad_edges(center, z.shape[0])

    def chunks(self, budget: Optional[float], attention_length: float) -> list[tuple[int, int, int, int]]:
        """Consecutive groups of sequences ``(s0, s1, t0, t1)`` (sequences ``s0:s1``, edge
        tokens ``t0:t1``) whose :func:`chunk_cost`, padded to the group's longest
        sequence, stays within ``budget`` (a group holds at least one sequence);
        ``budget=None``: one group."""
        S, T = self.z.numel(), self.owner.numel()
        if budget is None or S == 0:
            return [(0, S, 0, T)]
        degree = torch.bincount(self.owner, minlength=S)
        length = degree + 1
        bounds, s0, width = [0], 0, max(int(budget), 1)  # a sequence costs at least 1
        while s0 < S:
            window = length[s0:s0 + width]
            counts = torch.arange(1, window.numel() + 1, device=window.device)
            cost = chunk_cost(counts, torch.cummax(window, 0).values, attention_length)  # non-decreasing
            if self.extra_cost is not None:
                cost = cost + torch.cumsum(self.extra_cost[s0:s0 + width], 0)
            s0 += max(int((cost <= budget).sum()), 1)
            bounds.append(s0)
        ends = torch.cat([degree.new_zeros(1), torch.cumsum(degree, 0)])[bounds].tolist()
        return [(bounds[i], bounds[i + 1], ends[i], ends[i + 1]) for i in range(len(bounds) - 1)]

    def tokens(self, edge_values: Tensor, part: slice = _ALL) -> Tensor:
        """Per-edge values ``[E, ...]`` -> per edge token ``[T, ...]`` (of ``part``)."""
        return edge_values if part == _ALL else edge_values[part]

    def directions(self, vectors: Tensor, part: slice = _ALL) -> Tensor:
        """The edge vectors ``[E, 3]`` as the edge tokens of ``part`` see them, ``[T, 3]``."""
        return vectors if part == _ALL else vectors[part]

    def geometry_edges(self, edge_values: Tensor, part: slice = _ALL) -> Tensor:
        """Per-edge values ``[E, ...]`` -> per row of the geometry that ``directions`` gives."""
        return self.tokens(edge_values, part)

    def embed(self, layer, geometry: Tensor, message: Tensor, part: slice = _ALL) -> Tensor:
        """The edge tokens ``[T, d]`` of ``part``: ``layer.embed`` of the geometry rows and of
        the per-edge messages ``message`` ``[E, d]``."""
        return layer.embed(geometry, self.tokens(message, part))

    def edge_span(self, part: slice) -> tuple[int, int]:
        """The edges ``a0:a1`` that the tokens of ``part`` (whole sequences) belong to."""
        return part.start, part.stop

    def edges(self, token_values: Tensor, part: slice = _ALL, span: Optional[tuple[int, int]] = None) -> Tensor:
        """Per-edge-token outputs ``[T, ...]`` of ``part`` -> per edge of ``span``
        (default: all edges), ``[a1 - a0, ...]`` (invariant values)."""
        return token_values

    def edge_readout(self, bond: Tensor, part: slice = _ALL) -> tuple[Tensor, Optional[Tensor]]:
        """The edge readouts ``[T, C]`` of ``part`` summed into their sequences' outputs,
        and those set aside for the axial readout (``None``: none)."""
        return bond, None

    def keep_aux(self, aux_bonds: Optional[Tensor]) -> None:
        """Add one layer's set-aside edge readouts (all tokens, in token order)."""

    def atoms(self, values: Tensor) -> Tensor:
        """Per-sequence outputs ``[S, *components]`` -> per atom ``[N, *components]``."""
        return values


class FrameSequences(AtomSequences):
    """One token sequence per (atom, frame) copy of a :class:`ecse.local.LocalFrames`.

    Args:
        lf: the local frames.
        z: ``[N]`` atomic numbers.
        center: ``[E]`` centre atom of each edge, sorted.
        vectors: ``[E, 3]`` lab-frame edge vectors.
        spec: the output type; for covariant outputs, the edge readouts of auxiliary
            copies are kept per edge and placed along the edges (:mod:`ecse.axial`)
            instead of being dropped.
    """

    def __init__(self, lf, z: Tensor, center: Tensor, vectors: Tensor, spec: OutputSpec):
        if lf.num_atoms != z.numel():
            raise ValueError(f"local_frames are for {lf.num_atoms} atoms, data has {z.numel()}")
        owner, self.edge = lf.edge_copies(center)
        super().__init__(z[lf.atom], owner)
        self.lf, self.spec, self.vectors, self.num_edges = lf, spec, vectors, center.numel()
        self.aux = None if spec.is_scalar else lf.invariant[owner]  # auxiliary edge tokens
        self.aux_bonds: Optional[Tensor] = None  # their edge readouts, summed over the layers

    def tokens(self, edge_values: Tensor, part: slice = _ALL) -> Tensor:
        return edge_values[self.edge[part]]

    def directions(self, vectors: Tensor, part: slice = _ALL) -> Tensor:
        return self.lf.rotate(vectors[self.edge[part]], self.owner[part])

    def edge_span(self, part: slice) -> tuple[int, int]:
        # copies are sorted by atom and each lists its atom's edges in order, so the
        # tokens of whole copies cover the edges from their first token's to their last's
        if part.stop <= part.start:
            return 0, 0
        return int(self.edge[part.start]), int(self.edge[part.stop - 1]) + 1

    def edges(self, token_values: Tensor, part: slice = _ALL, span: Optional[tuple[int, int]] = None) -> Tensor:
        a0, a1 = (0, self.num_edges) if span is None else span
        return self.lf.combine_edges(token_values, self.owner[part], self.edge[part] - a0, a1 - a0)

    def edge_readout(self, bond: Tensor, part: slice = _ALL) -> tuple[Tensor, Optional[Tensor]]:
        if self.aux is None:
            return bond, None
        aux = self.aux[part]
        return bond.masked_fill(aux[:, None], 0.0), bond[aux]

    def keep_aux(self, aux_bonds: Optional[Tensor]) -> None:
        if aux_bonds is not None:
            self.aux_bonds = aux_bonds if self.aux_bonds is None else self.aux_bonds + aux_bonds

    def atoms(self, values: Tensor) -> Tensor:
        if self.aux is None:
            return self.lf.combine(values)
        aux_values = None if self.aux_bonds is None else self.spec.unpack(self.aux_bonds)
        return self.lf.combine_covariant(values, self.spec, aux_values, self.owner[self.aux],
                                         self.vectors[self.edge[self.aux]])


class AveragedSequences(AtomSequences):
    r"""One sequence per atom whose edge tokens are averaged over the atom's frame copies
    of a :class:`ecse.local.LocalFrames` (:meth:`ecse.backbones._pet_layer.GNNLayer.embed_averaged`):
    the geometry has one row per copy of an edge (:math:`\mathbf r_{ij} F_{ik}`, zero
    direction for auxiliary copies), everything after the token is bare PET.  A copy of an
    edge counts as ``cost_per_copy`` units of memory (``extra_cost``).

    Args:
        lf: the local frames.
        z: ``[N]`` atomic numbers.
        center: ``[E]`` centre atom of each edge, sorted.
        cost_per_copy: memory of a copy in :func:`chunk_cost`'s unit (:func:`copy_cost`).
    """

    def __init__(self, lf, z: Tensor, center: Tensor, cost_per_copy: float):
        if lf.num_atoms != z.numel():
            raise ValueError(f"local_frames are for {lf.num_atoms} atoms, data has {z.numel()}")
        super().__init__(z, center)
        self.lf = lf
        self.copy, self.edge = lf.edge_copies(center)  # sorted by copy, copies by atom
        atom = lf.atom[self.copy]
        # copy rows of the edges t0:t1 (whole atoms): bound[t0]:bound[t1]
        self.bound = torch.searchsorted(atom, torch.cat([center, center.new_tensor([z.numel()])]))
        self.extra_cost = cost_per_copy * torch.bincount(atom, minlength=z.numel()).double()

    def _rows(self, part: slice) -> slice:
        if part == _ALL:
            return _ALL
        return slice(int(self.bound[part.start]), int(self.bound[part.stop]))

    def directions(self, vectors: Tensor, part: slice = _ALL) -> Tensor:
        rows = self._rows(part)
        return self.lf.rotate(vectors[self.edge[rows]], self.copy[rows])

    def geometry_edges(self, edge_values: Tensor, part: slice = _ALL) -> Tensor:
        return edge_values[self.edge[self._rows(part)]]

    def embed(self, layer, geometry: Tensor, message: Tensor, part: slice = _ALL) -> Tensor:
        rows, t0 = self._rows(part), 0 if part == _ALL else part.start
        weight = self.lf.weight.to(geometry.dtype)[self.copy[rows]]
        return layer.embed_averaged(geometry, self.tokens(message, part), self.edge[rows] - t0, weight)
