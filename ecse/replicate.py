"""Copies of graphs, one per frame, batched into one PyG ``Batch`` (vectorised).

A copy of graph ``g`` seen in frame ``(origin o, axes F)`` holds
``pos' = (pos - pos[o]) @ F``, ``cell' = cell @ F`` and every attribute named in
``vector_attrs`` rotated as ``v @ F``; every other attribute is copied unchanged
(node features such as ``x`` or ``z`` must be rotation invariant).  Each copy lists its
frame's origin node first and the others in their input order, so backbones that start
from the first point (farthest point sampling) do not depend on the input order.
``edge_index`` is re-mapped, so backbones that bring their own graph (or periodic ``shift`` vectors,
which are integers and invariant) work too.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

__all__ = ["FrameCopies", "replicate_in_frames"]

_SPECIAL = {"pos", "batch", "ptr", "edge_index", "cell", "pbc"}


class FrameCopies(NamedTuple):
    """The batched copies and how they map back.

    Attributes:
        batch: a ``Batch`` of ``C`` graphs (one per frame).
        node_source: ``[M]`` original node of each copied node.
        node_copy: ``[M]`` copy (frame) of each copied node.
    """

    batch: Batch
    node_source: Tensor
    node_copy: Tensor


def _segments(ptr: Tensor, graph: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices of the items of graphs ``graph`` (items of graph g: ptr[g]:ptr[g+1])."""
    counts = ptr[graph + 1] - ptr[graph]
    copy = torch.repeat_interleave(torch.arange(graph.numel(), device=graph.device), counts)
    new_start = torch.cumsum(counts, 0) - counts
    local = torch.arange(copy.numel(), device=graph.device) - new_start[copy]
    return ptr[graph][copy] + local, copy, new_start


def _ptr(index: Tensor, num_graphs: int) -> Tensor:
    counts = torch.bincount(index, minlength=num_graphs)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def replicate_in_frames(data: Data, batch: Tensor, num_graphs: int, graph: Tensor, origin: Tensor,
                        rotation: Tensor, vector_attrs: Sequence[str] = (), pos: Optional[Tensor] = None
                        ) -> FrameCopies:
    """Batch one rotated copy of ``graph[c]`` per frame ``c``.

    Args:
        data: the input ``Data``/``Batch``.
        batch: ``[N]`` graph of each node (sorted).
        num_graphs: ``B``.
        graph: ``[C]`` graph of each frame.
        origin: ``[C]`` node whose position becomes the origin of the copy.
        rotation: ``[C, 3, 3]`` frame axes (columns).
        vector_attrs: node/edge attributes rotated like positions.
        pos: positions to use instead of ``data.pos`` (e.g. a float64 copy: the frame
            coordinates are computed in the precision of ``rotation`` and rounded once
            to ``data.pos.dtype``).
    """
    node_ptr = _ptr(batch, num_graphs)
    node_source, node_copy, node_start = _segments(node_ptr, graph)
    # list the frame's origin first in its copy (FPS-style backbones then start there,
    # whatever the input order): local slot 0 <- origin, slots 1..k <- nodes before it
    origin_local = (origin - node_ptr[graph])[node_copy]
    slot = node_source - node_ptr[graph][node_copy]
    source_local = torch.where(slot == 0, origin_local, torch.where(slot <= origin_local, slot - 1, slot))
    node_source = node_ptr[graph][node_copy] + source_local
    frame_of_node = rotation[node_copy]
    pos = data.pos if pos is None else pos
    relative = pos[node_source] - pos[origin][node_copy]
    out = {"pos": torch.einsum("mi,mij->mj", relative, frame_of_node).to(data.pos.dtype)}
    num_nodes = data.num_nodes
    edge_index = getattr(data, "edge_index", None)
    if edge_index is not None:
        edge_graph = batch[edge_index[0]]
        order = torch.argsort(edge_graph, stable=True)
        edge_index, edge_graph = edge_index[:, order], edge_graph[order]
        edge_source, edge_copy, _ = _segments(_ptr(edge_graph, num_graphs), graph)
        old_local = edge_index[:, edge_source] - node_ptr[graph][edge_copy]
        origin_of_edge = (origin - node_ptr[graph])[edge_copy]
        new_local = torch.where(old_local == origin_of_edge, 0,
                                torch.where(old_local < origin_of_edge, old_local + 1, old_local))
        out["edge_index"] = new_local + node_start[edge_copy]
    for key in data.keys():
        value = data[key]
        if key in _SPECIAL or not isinstance(value, Tensor):
            continue
        if value.dim() > 0 and value.shape[0] == num_nodes and data.is_node_attr(key):
            value, copy = value[node_source], node_copy
        elif edge_index is not None and data.is_edge_attr(key):
            value, copy = value[order][edge_source], edge_copy
        elif value.dim() > 0 and value.shape[0] == num_graphs:
            value, copy = value[graph], None
        else:
            out[key] = value
            continue
        if key in vector_attrs:
            frames = rotation if copy is None else rotation[copy]
            value = torch.einsum("mi,mij->mj", value.to(frames.dtype), frames).to(value.dtype)
        out[key] = value
    cell = getattr(data, "cell", None)
    if cell is not None:
        out["cell"] = torch.bmm(cell.reshape(-1, 3, 3)[graph].to(rotation.dtype), rotation).to(cell.dtype)
    if getattr(data, "pbc", None) is not None:
        out["pbc"] = data.pbc.reshape(-1, 3)[graph]
    copies = Batch(batch=node_copy, **out)
    copies.ptr = node_start.new_zeros(graph.numel() + 1)
    copies.ptr[1:] = torch.cumsum(node_ptr[graph + 1] - node_ptr[graph], 0)
    copies._num_graphs = graph.numel()
    return FrameCopies(copies, node_source, node_copy)
