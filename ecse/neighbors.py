r"""Neighbour displacement vectors around every centre, for open and periodic clouds.

ECSE builds its frames from displacement vectors only (centre index, vector), so that
periodic images enter exactly like ordinary neighbours.  Indices are found without
gradients (``ecse.point_ops.radius_graph`` for open clouds, `vesin
<https://github.com/Luthaf/vesin>`_ for periodic cells); the vectors themselves are
recomputed in torch, so they are differentiable with respect to ``pos`` and ``cell``.

Convention: a vector points from the centre to the neighbour,
``vector = pos[neighbor] - pos[center] + shift @ cell`` (row vectors, rows of ``cell``
are the lattice vectors).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from . import point_ops

__all__ = ["NeighborList", "neighbor_list", "within_radius"]


class NeighborList(NamedTuple):
    """Neighbours of every centre, sorted by centre.

    Attributes:
        center: ``[E]`` index of the centre node.
        neighbor: ``[E]`` index of the neighbour node (an image of it for periodic cells).
        vector: ``[E, 3]`` displacement from the centre to the neighbour.
        shift: ``[E, 3]`` integer cell shift of the neighbour's image (zeros for open
            clouds): ``vector = pos[neighbor] - pos[center] + shift @ cell``.
    """

    center: Tensor
    neighbor: Tensor
    vector: Tensor
    shift: Tensor


def _open_pairs(pos: Tensor, batch: Tensor, cutoff: float) -> tuple[Tensor, Tensor, None]:
    counts = torch.bincount(batch)
    edge_index = point_ops.radius_graph(
        pos.detach(), cutoff, batch=batch, loop=False, max_num_neighbors=int(counts.max())
    )
    return edge_index[1], edge_index[0], None


def _periodic_pairs(
    pos: Tensor, batch: Tensor, cutoff: float, cell: Tensor, pbc: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    from vesin import NeighborList as VesinNeighborList

    calculator = VesinNeighborList(cutoff=float(cutoff), full_list=True)
    counts = torch.bincount(batch, minlength=cell.shape[0]).tolist()
    positions = pos.detach().cpu().double().numpy()
    boxes = cell.detach().cpu().double().numpy()
    periodic = pbc.detach().cpu().numpy()
    centers, neighbors, shifts = [], [], []
    offset = 0
    for graph, count in enumerate(counts):  # one vesin call per structure
        flags = periodic[graph]
        box = boxes[graph] if flags.any() else np.zeros((3, 3))
        i, j, s = calculator.compute(
            positions[offset : offset + count], box, [bool(f) for f in flags], quantities="ijS"
        )
        centers.append(i.astype(np.int64) + offset)
        neighbors.append(j.astype(np.int64) + offset)
        shifts.append(s.astype(np.int64))
        offset += count
    as_tensor = lambda a: torch.from_numpy(np.concatenate(a)).to(pos.device)  # noqa: E731
    return as_tensor(centers), as_tensor(neighbors), as_tensor(shifts)


def neighbor_list(
    pos: Tensor,
    cutoff: float,
    batch: Optional[Tensor] = None,
    cell: Optional[Tensor] = None,
    pbc: Optional[Tensor] = None,
) -> NeighborList:
    """Displacements from every centre to every neighbour within ``cutoff``.

    Args:
        pos: node positions, ``[N, 3]``.
        cutoff: radius (same length unit as ``pos``).
        batch: graph of each node, ``[N]`` (sorted); ``None`` for one graph.
        cell: lattice vectors as rows, ``[B, 3, 3]`` (or ``[3, 3]`` for one graph);
            ``None`` for open clouds.
        pbc: periodic directions, ``[B, 3]`` bool; defaults to all periodic when a
            cell is given.

    Returns:
        :class:`NeighborList`, sorted by centre.  Coincident points (zero-length
        vectors) are left out: they define no direction.

    Example:
        >>> import torch
        >>> nl = neighbor_list(torch.tensor([[0., 0, 0], [1, 0, 0], [5, 0, 0]]), 2.0)
        >>> nl.center.tolist(), nl.neighbor.tolist()
        ([0, 1], [1, 0])
    """
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if pos.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=pos.device)
        return NeighborList(empty, empty, pos.new_zeros(0, 3), empty.reshape(0, 3))
    if cell is not None:
        cell = cell.reshape(-1, 3, 3)
        if pbc is None:
            pbc = torch.ones(cell.shape[0], 3, dtype=torch.bool, device=pos.device)
        pbc = pbc.reshape(-1, 3).bool() & (cell.abs().sum(-1) > 0)
    if cell is None or not bool(pbc.any()):
        center, neighbor, shift = _open_pairs(pos, batch, cutoff)
    else:
        center, neighbor, shift = _periodic_pairs(pos, batch, cutoff, cell, pbc)
    vector = pos[neighbor] - pos[center]
    if shift is None:
        shift = torch.zeros(center.numel(), 3, dtype=torch.long, device=pos.device)
    else:
        vector = vector + torch.einsum("ea,eab->eb", shift.to(pos.dtype), cell[batch[center]])
    keep = (vector.detach() != 0).any(dim=1)
    order = torch.argsort(center[keep], stable=True)
    return NeighborList(center[keep][order], neighbor[keep][order], vector[keep][order], shift[keep][order])


def within_radius(center: Tensor, vector: Tensor, radius) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbours strictly inside ``radius`` (a float, or a ``[N]`` tensor per centre).

    Returns ``(center, length, unit)`` of the kept neighbours, still sorted by centre.
    """
    length = vector.norm(dim=-1)
    limit = radius[center] if isinstance(radius, Tensor) else radius
    inside = length < limit
    length = length[inside]
    return center[inside], length, vector[inside] / length.unsqueeze(-1)
