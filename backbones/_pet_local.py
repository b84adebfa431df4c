r"""Where :class:`ecse.backbones.PET` runs its per-atom transformers: the bookkeeping of the
bare model and of local frame ensembles (:mod:`ecse.local`) behind one small interface.

PET's transformer runs over token *sequences*: a central token and one token per edge.
The bare model has one sequence per atom (:class:`AtomSequences`, where every method is
the identity); a local ensemble has one per (atom, frame) copy (:class:`FrameSequences`),
each seeing the atom's edges in its own frame, plus direction-free auxiliary copies.

=====================  ==========================  ===========================================
method                 bare (one per atom)         local (one per frame copy)
=====================  ==========================  ===========================================
``tokens(v)``          ``v``                       ``v`` repeated for every copy of the edge
``directions(r)``      ``r``                       :math:`\mathbf r_{ij} F_{ik}` (0: auxiliary)
``edges(o)``           ``o``                       weighted average over the copies of an edge
``edge_readout(b)``    ``b``                       ``b``; auxiliary copies' covariant edge
                                                   readouts set aside for the axial readout
``atoms(y)``           ``y``                       frame average (rotated back for covariant
                                                   outputs, :meth:`ecse.local.LocalFrames.combine_covariant`)
=====================  ==========================  ===========================================
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from ecse.covariant import OutputSpec

from ._pet_utils import pad_edges

__all__ = ["AtomSequences", "FrameSequences"]


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

    def __init__(self, z: Tensor, center: Tensor):
        self.z, self.owner = z, center
        self.slot, self.max_nb = pad_edges(center, z.shape[0])

    def tokens(self, edge_values: Tensor) -> Tensor:
        """Per-edge values ``[E, ...]`` -> per edge token ``[T, ...]``."""
        return edge_values

    def directions(self, vectors: Tensor) -> Tensor:
        """The edge vectors ``[E, 3]`` as each edge token sees them, ``[T, 3]``."""
        return vectors

    def edges(self, token_values: Tensor) -> Tensor:
        """Per-edge-token outputs ``[T, ...]`` -> per edge ``[E, ...]`` (invariant values)."""
        return token_values

    def edge_readout(self, bond: Tensor) -> Tensor:
        """The edge readouts ``[T, C]`` that are summed into their sequences' outputs."""
        return bond

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

    def tokens(self, edge_values: Tensor) -> Tensor:
        return edge_values[self.edge]

    def directions(self, vectors: Tensor) -> Tensor:
        return self.lf.rotate(vectors[self.edge], self.owner)

    def edges(self, token_values: Tensor) -> Tensor:
        return self.lf.combine_edges(token_values, self.owner, self.edge, self.num_edges)

    def edge_readout(self, bond: Tensor) -> Tensor:
        if self.aux is None:
            return bond
        kept = bond[self.aux]
        self.aux_bonds = kept if self.aux_bonds is None else self.aux_bonds + kept
        return bond.masked_fill(self.aux[:, None], 0.0)

    def atoms(self, values: Tensor) -> Tensor:
        if self.aux is None:
            return self.lf.combine(values)
        aux_values = None if self.aux_bonds is None else self.spec.unpack(self.aux_bonds)
        return self.lf.combine_covariant(values, self.spec, aux_values, self.owner[self.aux],
                                         self.vectors[self.edge[self.aux]])
