r"""Neighbour displacement vectors around every centre, for open and periodic clouds.

ECSE builds its frames from displacement vectors only (centre index, vector), so that
periodic images enter exactly like ordinary neighbours.  Indices are found without
gradients (``ecse.point_ops.radius_graph`` for open clouds, `vesin
<https://github.com/Luthaf/vesin>`_ for periodic cells); the vectors themselves are
recomputed in torch, so they are differentiable with respect to ``pos`` and ``cell``.

Convention: a vector points from the centre to the neighbour,
``vector = pos[neighbor] - pos[center] + shift @ cell`` (row vectors, rows of ``cell``
are the lattice vectors).

Bad input is refused before anything is allocated: NaN/inf positions or cells, singular
cells (periodic lattice vectors that are linearly dependent: ``|det| < SINGULAR_TOL``
times the product of their lengths) and periodic structures whose images would make an
unreasonable number of pairs. The estimate for a structure with a periodic direction is
``neighbours per atom ~ N / V_eff * 4/3 pi cutoff^3`` (``V_eff``: the volume of the cell,
with every non-periodic direction counted as the atoms' extent along it, at least
``2 * cutoff``), and ``neighbor_list`` raises a ``ValueError`` naming the structure, the
estimate and the limit when it exceeds :data:`MAX_NEIGHBORS` (a 1-atom cell of 1 Å edge
has about 524 images within 5 Å; dense solids have about 0.2 atoms/Å^3, i.e. about 430
neighbours within 8 Å). Raise the module attribute for larger cutoffs. Open clouds are
not limited (at most ``N (N - 1)`` pairs).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from . import point_ops

__all__ = ["NeighborList", "neighbor_list", "within_radius", "MAX_NEIGHBORS", "SINGULAR_TOL",
           "estimate_neighbors", "lattice_measure"]

#: largest estimated mean number of neighbours per atom of a periodic structure
MAX_NEIGHBORS = 500
#: cells with ``|det| < SINGULAR_TOL * product of the periodic vectors' lengths`` are singular
SINGULAR_TOL = 1e-8


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
    starts = np.cumsum([0] + counts)
    for graph in range(len(counts)):  # every structure is checked before any search
        if periodic[graph].any():
            atoms = positions[starts[graph] : starts[graph + 1]]
            _check_periodic(atoms, boxes[graph], periodic[graph], cutoff, graph)
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


def lattice_measure(vectors: np.ndarray, where: str = "") -> float:
    """Volume (area, length) spanned by the periodic lattice vectors ``vectors`` ``[P, 3]``
    (1 for none); ``ValueError`` when they are linearly dependent: ``measure <=
    SINGULAR_TOL`` times the product of their lengths. ``where`` (e.g. ``" in file[3]"``)
    goes into the message.

    >>> round(lattice_measure(np.eye(3) * 2.0), 9)
    8.0
    """
    lengths = float(np.prod(np.linalg.norm(vectors, axis=1)))
    gram = float(np.linalg.det(vectors @ vectors.T)) if len(vectors) else 1.0
    measure = float(np.sqrt(max(gram, 0.0)))
    if measure <= SINGULAR_TOL * lengths:
        raise ValueError(f"singular cell{where}: the periodic lattice vectors {vectors.tolist()} are linearly "
                         f"dependent (volume {measure:.3g}, lengths' product {lengths:.3g}); give independent "
                         "vectors, or pbc=False for an open structure")
    return measure


def estimate_neighbors(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """Estimated mean number of neighbours per atom within ``cutoff`` of one periodic
    structure (``positions`` ``[N, 3]``, ``cell`` ``[3, 3]``, ``pbc`` ``[3]``), from its
    density: ``N / V_eff * 4/3 pi cutoff^3``, where ``V_eff`` is the measure of the
    periodic lattice vectors times the atoms' extent (at least ``2 * cutoff``) along each
    non-periodic direction. Raises ``ValueError`` for a singular cell.

    Example:
        >>> import numpy as np
        >>> round(estimate_neighbors(np.zeros((1, 3)), np.eye(3), np.ones(3, bool), 5.0))
        524
    """
    vectors = cell[pbc]
    measure = lattice_measure(vectors)
    basis = np.linalg.svd(vectors, full_matrices=True)[2][len(vectors):] if len(vectors) else np.eye(3)
    extent = np.ptp(positions @ basis.T, axis=0) if len(positions) else np.zeros(len(basis))
    volume = measure * float(np.prod(np.maximum(extent, 2.0 * cutoff)))
    return len(positions) / volume * 4.0 / 3.0 * np.pi * cutoff ** 3


def _check_finite(pos: Tensor, batch: Tensor, cell: Optional[Tensor]) -> None:
    if not bool(torch.isfinite(pos).all()):
        atoms = torch.nonzero(~torch.isfinite(pos).all(dim=1)).reshape(-1)
        graphs = sorted(set(batch[atoms].tolist()))
        raise ValueError(f"NaN or infinite positions: atom(s) {atoms[:10].tolist()} of structure(s) {graphs[:10]} "
                         "of the batch")
    if cell is not None and not bool(torch.isfinite(cell).all()):
        graphs = torch.nonzero(~torch.isfinite(cell.reshape(-1, 9)).all(dim=1)).reshape(-1).tolist()
        raise ValueError(f"NaN or infinite cell of structure(s) {graphs[:10]} of the batch")


def _check_periodic(positions: np.ndarray, box: np.ndarray, flags: np.ndarray, cutoff: float, graph: int) -> None:
    try:
        per_atom = estimate_neighbors(positions, box, flags, cutoff)
    except ValueError as err:
        raise ValueError(f"structure {graph} of the batch: {err}") from None
    if per_atom > MAX_NEIGHBORS:
        raise ValueError(
            f"structure {graph} of the batch: about {per_atom:.3g} neighbours per atom within cutoff {cutoff:g} "
            f"(estimated {per_atom * len(positions):.3g} pairs for {len(positions)} atoms), above the limit "
            f"ecse.neighbors.MAX_NEIGHBORS = {MAX_NEIGHBORS}: the cell is tiny compared with the cutoff, so the "
            "periodic images repeat the same atoms many times (raise the limit if this is intended)")


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

    Raises:
        ValueError: NaN/inf positions or cell, a singular cell, or a periodic structure
            with more than :data:`MAX_NEIGHBORS` estimated neighbours per atom (checked
            before the search; the message names the structure's index in the batch).

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
    _check_finite(pos, batch, cell)
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
