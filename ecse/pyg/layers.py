r"""Adapter that evaluates a PyG message-passing layer in its centres' own frames.

For a layer whose messages read the relative positions :math:`\mathbf r_{ij} =
\mathbf p_j - \mathbf p_i` of its edges :math:`j \to i`, the adapted output at centre
:math:`i` is

.. math::
    h_i = \sum_k \bar w_{ik}\; \mathrm{layer}\big(x_i, \{x_j, \mathbf r_{ij} F_{ik}\}_{j \to i}\big)
        + \bar w^{aux}_i\; \mathrm{layer}\big(x_i, \{x_j, (|\mathbf r_{ij}|, 0, 0)\}_{j \to i}\big),

with the frames :math:`F_{ik}` and normalised weights :math:`\bar w` of centre
:math:`i` built from the same edges (:func:`~ecse.pyg.edge_frames.edge_local_frames`).
Each term only sees rotation-invariant coordinates, so :math:`h_i` is exactly invariant
(and translation invariant) whenever the features :math:`x` are.

Vectorised by an *expanded graph*: every (centre, frame) copy becomes a target node at
the origin (or at the centre seen from its graph's centroid, below) with the centre's
features, and every edge of a copy gets its own source node displaced by
:math:`\mathbf r_{ij} F_{ik}` with the source's features; the layer's own ``forward``
runs once on this graph and the copies' outputs are averaged per centre.  Supported:

* ``"pos"``: any ``MessagePassing`` whose ``forward`` takes ``pos`` and ``edge_index``
  (``PointNetConv``, ``PointTransformerConv``, user layers computing messages from
  ``pos_j - pos_i``); optional arguments ``x``, ``normal`` (rotated with the frame;
  zero in auxiliary copies) and ``edge_attr`` (invariant, repeated per copy).  Bipartite
  (pair) inputs stay bipartite; single tensors give a single-node-set expanded graph.
* ``"edge"``: ``EdgeConv`` and ``"dynamic"``: ``DynamicEdgeConv``, when the last three
  columns of ``x`` are the coordinates of a known point set (e.g. ``data.pos``): those
  columns are replaced by :math:`(\mathbf p_j - \mathbf o_i) F_{ik}` for sources and
  :math:`(\mathbf p_i - \mathbf o_i) F_{ik}` for the centre, :math:`\mathbf o_i` the
  centre itself (``origin="centre"`` of the context: the centre at zero) or the
  centroid of the centre's graph (``origin="centroid"``, the default of
  :class:`~ecse.pyg.LocalPointModel`: the bare layer on its cloud seen from the
  centroid in the centre's frame).  Otherwise the layer only sees
  features and runs unchanged.

In ``"pos"`` layers the centre copies sit at :math:`(\mathbf p_i - \mathbf o_i) F_{ik}`
and their sources at :math:`(\mathbf p_i - \mathbf o_i) F_{ik} + \mathbf r_{ij} F_{ik}`
likewise (relative positions as above; a layer reading absolute positions sees them
from :math:`\mathbf o_i`).

A layer with ``add_self_loops=True`` gets its self loops added on the original graph
(as PyG does) and switched off on the expanded one.  ``PPFConv`` is not adapted: its
point-pair features are already invariant.  Batch normalisation in training mode inside
an adapted layer (PyG's ``MLP`` default) normalises over all frame copies at once: still
exactly invariant (the set of copies is), but not the per-frame average of the bare
layer; in eval mode it is.  A user layer must not change ``edge_index`` in its
``forward`` other than through ``add_self_loops`` (the expanded graph's nodes are copies).
"""
from __future__ import annotations

import inspect
from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import DynamicEdgeConv, EdgeConv, MessagePassing, PPFConv
from torch_geometric.utils import add_self_loops, remove_self_loops

from ..point_ops import knn
from ._transparent import make_transparent
from .context import LocalContext, current_context
from .edge_frames import edge_local_frames, frame_coordinates

__all__ = ["LocalFrameLayer", "layer_kind", "INVARIANT_LAYERS"]

#: layer types whose messages are already rotation invariant (left alone)
INVARIANT_LAYERS = (PPFConv,)
_KNOWN_ARGS = ("x", "pos", "edge_index", "normal", "edge_attr")


def layer_kind(module: nn.Module) -> Optional[str]:
    """``"pos"``, ``"edge"``, ``"dynamic"`` for a layer :class:`LocalFrameLayer` adapts, else ``None``.

    Example:
        >>> from torch_geometric.nn import GCNConv, PointNetConv
        >>> layer_kind(PointNetConv()), layer_kind(GCNConv(4, 4))
        ('pos', None)
    """
    if not isinstance(module, MessagePassing) or isinstance(module, INVARIANT_LAYERS):
        return None
    if isinstance(module, DynamicEdgeConv):
        return "dynamic"
    if isinstance(module, EdgeConv):
        return "edge"
    params = inspect.signature(module.forward).parameters
    return "pos" if "pos" in params and "edge_index" in params else None


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class LocalFrameLayer(nn.Module):
    """A message-passing layer evaluated in its centres' frames (see the module docstring).

    Outside a :func:`~ecse.pyg.context.local_context` it is the bare layer.

    Args:
        layer: the PyG layer (kept as ``self.layer``; its parameters are shared; the
            state-dict keys are the bare layer's).
        name: name used in statistics.

    Shapes:
        as the wrapped layer; outputs must be invariant features ``[N_dst, ...]``.
    """

    def __init__(self, layer: MessagePassing, name: str = ""):
        super().__init__()
        kind = layer_kind(layer)
        if kind is None:
            raise ValueError(f"{type(layer).__name__} is not a layer that reads relative positions")
        self.layer, self.kind, self.name = layer, kind, name
        make_transparent(self, "layer")  # the bare layer's state-dict keys
        self._signature = inspect.signature(layer.forward)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.layer!r}, kind={self.kind!r})"

    def forward(self, *args, **kwargs):
        ctx = current_context()
        if ctx is None:
            return self.layer(*args, **kwargs)
        a = self._signature.bind(*args, **kwargs)
        a.apply_defaults()
        a = dict(a.arguments)
        if self.kind == "pos":
            return self._pos_forward(ctx, a)
        return self._edge_forward(ctx, a)

    # -- layers with a ``pos`` argument ---------------------------------------------------
    def _pos_forward(self, ctx: LocalContext, a: dict) -> Tensor:
        for key, value in a.items():
            if key not in _KNOWN_ARGS and (isinstance(value, Tensor) or isinstance(value, (tuple, list))):
                raise ValueError(f"{type(self.layer).__name__}.forward argument {key!r}: local mode knows "
                                 f"only {_KNOWN_ARGS} (node positions, features, normals, edges)")
        pos, bipartite = a["pos"], isinstance(a["pos"], (tuple, list))
        pos_src, pos_dst = _pair(pos)
        ctx.register(pos_src), ctx.register(pos_dst)
        x = a.get("x")
        if not bipartite and isinstance(x, (tuple, list)):
            bipartite = True
        x_src, x_dst = _pair(x) if isinstance(x, (tuple, list)) or not bipartite else (x, None)
        src, dst, perm = self._edges(a["edge_index"], pos_src.shape[0], pos_dst.shape[0])
        geo = torch.promote_types(pos_src.dtype, torch.float64)
        vector = pos_src.to(geo)[src] - pos_dst.to(geo)[dst]
        lf, copy, edge = self._frames(ctx, dst, vector, pos_dst.shape[0])
        atom, s = lf.atom, src[edge]
        rel = frame_coordinates(lf, vector[edge], copy)
        zero = _centre_coordinates(ctx, lf, pos_src, pos_dst, src, dst)
        if zero is None:
            zero, rel = pos_dst.new_zeros(atom.numel(), 3), rel.to(pos_src.dtype)
        else:  # sources at centre + r_ij F_ik: relative positions unchanged
            zero, rel = zero.to(pos_dst.dtype), (zero[copy] + rel).to(pos_src.dtype)
        new = dict(a)
        if a.get("normal") is not None:
            n_src, n_dst = _pair(a["normal"])
            rot = lf.rotation
            ns = _rotate(n_src[s], rot[copy], lf.invariant[copy])
            nd = _rotate(n_dst[atom], rot, lf.invariant)
            new["normal"] = (ns, nd) if bipartite else torch.cat([nd, ns])
        if a.get("edge_attr") is not None:
            new["edge_attr"] = a["edge_attr"][perm][edge]
        num = atom.numel()
        if bipartite:
            new["pos"] = (rel, zero)
            new["x"] = (None if x_src is None else x_src[s], None if x_dst is None else x_dst[atom])
            new["edge_index"] = torch.stack([torch.arange(s.numel(), device=s.device), copy])
        else:
            new["pos"] = torch.cat([zero, rel])
            if x_src is not None:
                new["x"] = torch.cat([x_src[atom], x_src[s]])
            new["edge_index"] = torch.stack([num + torch.arange(s.numel(), device=s.device), copy])
        out = self._call(new)
        return lf.combine(out[:num])

    # -- EdgeConv / DynamicEdgeConv on coordinates ----------------------------------------
    def _edge_forward(self, ctx: LocalContext, a: dict) -> Tensor:
        x_src, x_dst = _pair(a["x"])
        p_src, p_dst = ctx.match(x_src), ctx.match(x_dst)
        if p_src is None or p_dst is None:
            ctx.records.append({"layer": self.name, "mode": "bare"})
            return self.layer(**a)
        if self.kind == "dynamic":
            b_src, b_dst = _pair(a.get("batch"))
            edge_index = knn(x_src, x_dst, self.layer.k, b_src, b_dst).flip([0])
        else:
            edge_index = a["edge_index"]
        src, dst, _ = self._edges(edge_index, x_src.shape[0], x_dst.shape[0], self_loops=False)
        geo = torch.promote_types(p_src.dtype, torch.float64)
        vector = p_src.to(geo)[src] - p_dst.to(geo)[dst]
        lf, copy, edge = self._frames(ctx, dst, vector, x_dst.shape[0])
        s = src[edge]
        rel = frame_coordinates(lf, vector[edge], copy)
        centre = _centre_coordinates(ctx, lf, p_src, p_dst, src, dst)
        if centre is None:
            centre, rel = x_dst.new_zeros(lf.atom.numel(), 3), rel.to(x_src.dtype)
        else:  # sources at centre + r_ij F_ik: x_j - x_i unchanged
            centre, rel = centre.to(x_dst.dtype), (centre[copy] + rel).to(x_src.dtype)
        xs = torch.cat([x_src[s, :-3], rel], -1)
        xd = torch.cat([x_dst[lf.atom, :-3], centre], -1)
        new_edges = torch.stack([torch.arange(s.numel(), device=s.device), copy])
        out = self.layer.propagate(new_edges, x=(xs, xd), size=(s.numel(), lf.atom.numel()))
        return lf.combine(out)

    # -- shared steps -----------------------------------------------------------------------
    def _edges(self, edge_index, num_src: int, num_dst: int, self_loops: bool = True):
        """Source, target (sorted) and sorting permutation of the layer's edges, with the
        layer's own self-loop handling applied."""
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"{type(self.layer).__name__}: local mode needs edge_index as a [2, E] tensor "
                             f"(not a SparseTensor), got {type(edge_index).__name__}")
        if self_loops and getattr(self.layer, "add_self_loops", False) is True:
            edge_index, _ = remove_self_loops(edge_index)
            edge_index, _ = add_self_loops(edge_index, num_nodes=min(num_src, num_dst))
        perm = torch.argsort(edge_index[1], stable=True)
        return edge_index[0][perm], edge_index[1][perm], perm

    def _frames(self, ctx: LocalContext, dst: Tensor, vector: Tensor, num_dst: int):
        lf = edge_local_frames(dst, vector, num_dst, ctx.cutoff, ctx.params, ctx.o3)
        copy, edge = lf.edge_copies(dst)
        ctx.records.append({"layer": self.name, "mode": "frames", "centres": num_dst,
                            "frames": lf.num_frames // (2 if ctx.o3 else 1), "copies": lf.atom.numel(),
                            "aux_centres": int((lf.aux_weight > 0).sum()), "edges": dst.numel(),
                            "edge_copies": edge.numel()})
        return lf, copy, edge

    def _call(self, kwargs: dict) -> Tensor:
        loops = getattr(self.layer, "add_self_loops", None)
        if loops is True:
            self.layer.add_self_loops = False  # already added on the original graph
        try:
            return self.layer(**kwargs)
        finally:
            if loops is True:
                self.layer.add_self_loops = True


def _centre_coordinates(ctx: LocalContext, lf, p_src: Tensor, p_dst: Tensor, src: Tensor,
                        dst: Tensor) -> Optional[Tensor]:
    """Each copy's centre seen from its graph's origin in the copy's frame,
    ``(p_i - o_i) F_ik`` (``(|p_i - o_i|, 0, 0)`` for auxiliary copies), float64 at
    least; ``None`` where the origins are unknown (the centre is then at the origin).

    The origins of a centre set not registered with them are those of its edges'
    sources (the same graph); a centre without edges is its own origin."""
    o_dst = ctx.origin_of(p_dst)
    if o_dst is None:
        o_src = ctx.origin_of(p_src)
        if o_src is None:
            return None
        o_dst = p_dst.to(o_src.dtype).clone()
        o_dst[dst] = o_src[src]
        ctx.register(p_dst, origin=o_dst)
    atom = lf.atom
    offset = p_dst.to(o_dst.dtype)[atom] - o_dst[atom]
    return frame_coordinates(lf, offset, torch.arange(atom.numel(), device=atom.device))


def _rotate(vectors: Tensor, rotation: Tensor, invariant: Tensor) -> Tensor:
    """``vectors @ rotation`` per row (frame coordinates), zero for auxiliary copies."""
    out = torch.einsum("ei,eij->ej", vectors.to(rotation.dtype), rotation)
    return out.masked_fill(invariant[:, None], 0.0).to(vectors.dtype)
