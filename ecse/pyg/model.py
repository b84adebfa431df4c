r"""Local mode for an unchanged PyG point model: find its geometric layers and symmetrise them.

:func:`symmetrize_layers` replaces, inside a model, every layer that reads relative
positions by a :class:`~ecse.pyg.layers.LocalFrameLayer` (same parameters, bare
behaviour outside a local context).  :class:`LocalPointModel` runs the model inside a
:func:`~ecse.pyg.context.local_context`, so that

* each adapted layer is evaluated in its centres' own frames and averaged (exactly
  invariant outputs, translation invariant too);
* raw coordinates used as point *features* inside an adapted layer (``EdgeConv`` on
  ``[x, pos]``) are seen from the centroid of the point's graph in each of the centre's
  frames (``origin="centroid"``, the default: the centre at :math:`(\mathbf p_i -
  \mathbf o_i) F_{ik}`, so each centre knows where its patch sits in the cloud, its
  distance from the centroid and the centroid's direction in its frames, all exactly
  invariant) or from the centre itself (``origin="centre"``: every centre at its
  frames' origin, nothing beyond the layer's neighbourhood);
* raw coordinates used as point features elsewhere have no frame: a linear layer
  (``torch.nn.Linear`` or PyG's ``Linear``, e.g. the first layer of an ``MLP``) whose
  input ends with the three coordinate columns of a known point set (``data.pos``, or
  the source/centre positions handed to an adapted layer, e.g. FPS centres) gets those
  columns as :math:`(|\mathbf p_i - \mathbf o_i|, 0, 0)`, the distance from the
  centroid (zeros with ``origin="centre"``);
* everything else (neighbour search, FPS, pooling, distance interpolation, layers that
  see only invariant features) is unchanged; it must itself be rotation invariant, as
  radius/kNN search, deterministic FPS and distance weights are (up to exact ties).

The network then sees only invariant features, and invariant (scalar) outputs are
exact.  Smoothness: frames and weights add no discontinuity while each layer's edge set is
fixed (see :mod:`ecse.pyg.edge_frames` for edges entering or leaving); the model's own
discrete choices (kNN sets, FPS, a capped ball query) jump as in the bare model.

A covariant output (``output="vector"``, ``"rank2"``, an Irreps string) needs a model
with per-node outputs :math:`v_i` (e.g. ``level="node"`` of the shipped backbones); each
is read as the node's components in each of its own frames :math:`F_{ik}`
(:func:`ecse.local.local_frames`, neighbours within ``cutoff``) and rotated back,

.. math::
    y_i = \sum_k \bar w_{ik}\, F_{ik} \cdot v_i + \bar w^{aux}_i\, \pi(v_i),

with :math:`\pi` the projection on the invariant part of the type
(:meth:`ecse.local.LocalFrames.combine_covariant`).  At ``level="graph"`` the output is
the sum of the nodes' :math:`y_i` over each graph (as PET's per-atom contributions):
a model that pools itself has no frame left to rotate its pooled output back with.
"""
from __future__ import annotations

import inspect
from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.data.data import BaseData
from torch_geometric.nn.dense.linear import Linear as PyGLinear

from .._validation import check_point_cloud
from ..covariant import OutputSpec
from ..frameset import FrameParams
from ..local import local_frames
from ._transparent import make_transparent
from .context import ORIGINS, current_context, local_context
from .layers import LocalFrameLayer, layer_kind

__all__ = ["LocalPointModel", "symmetrize_layers"]

_LINEAR = (nn.Linear, PyGLinear)


def symmetrize_layers(model: nn.Module) -> list[str]:
    """Replace every layer of ``model`` that reads relative positions by a
    :class:`~ecse.pyg.layers.LocalFrameLayer` wrapping it, in place (idempotent).

    Returns:
        the names of the adapted layers (already adapted ones included).

    Example:
        >>> from torch import nn
        >>> from torch_geometric.nn import GCNConv, PointNetConv
        >>> net = nn.ModuleDict({"a": PointNetConv(), "b": GCNConv(3, 3)})
        >>> symmetrize_layers(net), type(net["b"]).__name__
        (['a'], 'GCNConv')
    """
    names = []
    for name, module in list(model.named_modules()):
        if isinstance(module, LocalFrameLayer):
            names.append(name)
            continue
        if name == "" or layer_kind(module) is None or _inside_adapter(model, name):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LocalFrameLayer(module, name))
        names.append(name)
    return names


def _inside_adapter(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), LocalFrameLayer) for i in range(1, len(parts)))


def _coordinates_hook(module: nn.Module, args: tuple):
    """Forward pre-hook of linear layers: coordinates of a known point set ->
    ``(|p - o|, 0, 0)`` (distance from the centroid of the point's graph), or zeros where
    the origins are unknown."""
    ctx = current_context()
    if ctx is None or not args:
        return None
    x = args[0]
    p = ctx.match(x)
    if p is None:
        return None
    origin, coords = ctx.origin_of(p), x.new_zeros(x.shape[0], 3)
    if origin is not None:
        coords = torch.cat([(p.to(origin.dtype) - origin).norm(dim=-1, keepdim=True).to(x.dtype),
                            coords[:, 1:]], -1)
    return (torch.cat([x[:, :-3], coords], -1), *args[1:])


class LocalPointModel(nn.Module):
    """Run a PyG point model with every geometric layer in its centres' own frames.

    Args:
        model: the model, called as ``model(data)``, or, when its ``forward`` takes
            ``pos`` instead of a data object (``forward(x, pos, batch)`` as in PyG's
            Point Transformer example), with the data's attributes by name
            (``model(x=data.x, pos=data.pos, batch=data.batch)``; parameters the data
            lacks keep their defaults); modified in place by
            :func:`symmetrize_layers` (parameters shared; the modified model still
            behaves as the bare one when called directly).  State-dict keys are the
            bare model's, so its checkpoints load here and back.
        cutoff: edges of a layer within ``min(cutoff, params.max_outer_cutoff)`` make
            its frames (for a radius layer, choose ``cutoff`` at most its radius for
            frames continuous across it).
        params: :class:`~ecse.frameset.FrameParams`; default the published settings
            (pruning; no derivative is taken of a classifier), ``FrameParams()`` for smooth ones.
        o3: add mirror frames (exact under reflections too; twice the copies).
        output: ``"scalar"`` (any invariant output) or a covariant type of
            :class:`~ecse.covariant.OutputSpec`; the model must then return per-node
            outputs ``[N, ...]`` (see the module docstring).
        level: ``"graph"`` or ``"node"``; for a covariant output, ``"graph"`` sums the
            rotated-back node outputs over each graph.
        origin: where coordinates read as features are measured from: ``"centroid"``
            of each graph (the default; what the bare model sees of a centred cloud,
            per frame: how each centre's patch sits relative to the cloud) or
            ``"centre"`` (every centre at its own frames' origin: no information
            beyond the layers' neighbourhoods).  Relative positions are unaffected.

    Raises:
        ValueError: the model has no layer that reads relative positions; (when
            called) a covariant output but the model's output is not per node.

    Shapes:
        as ``model``; covariant outputs ``[N, *component_shape]`` (``level="node"``) or
        ``[B, *component_shape]`` (``level="graph"``).

    After each call, ``last_stats`` holds frames per centre (over all adapted calls)
    and per-layer records.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from torch_geometric.nn import PointNetConv
        >>> from ecse.point_ops import radius_graph
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = PointNetConv(torch.nn.Linear(3, 4))
        ...     def forward(self, data):
        ...         return self.conv(None, data.pos, radius_graph(data.pos, 2.0)).sum(0, keepdim=True)
        >>> model = LocalPointModel(Net().double(), cutoff=2.0)
        >>> pos = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1.2, 0], [0.3, 0.2, 1]], dtype=torch.float64)
        >>> R = torch.tensor([[0., -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
        >>> bool(torch.allclose(model(Data(pos=pos)), model(Data(pos=pos @ R.T)), atol=1e-12))
        True
    """

    def __init__(self, model: nn.Module, cutoff: float, params: FrameParams = FrameParams.published(), o3: bool = False,
                 output: str = "scalar", level: str = "graph", origin: str = "centroid"):
        super().__init__()
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
        self.model, self.cutoff, self.params, self.o3 = model, float(cutoff), params, bool(o3)
        self.origin = origin
        self.spec, self.level = OutputSpec(output), level
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        self.adapted = symmetrize_layers(model)
        make_transparent(self, "model")  # state-dict keys of the bare model: its checkpoints load
        if not self.adapted:
            raise ValueError(f"{type(model).__name__} has no layer that reads relative positions (a "
                             "MessagePassing layer with forward(..., pos, edge_index), EdgeConv or DynamicEdgeConv) "
                             "and no forward(data, local_frames=...) interface (see ecse.local): local mode has "
                             "nothing to symmetrise; use mode='global'")
        for name, module in model.named_modules():
            if isinstance(module, _LINEAR) and not _inside_adapter(model, name) \
                    and _coordinates_hook not in module._forward_pre_hooks.values():
                module.register_forward_pre_hook(_coordinates_hook)
        self._by_name = _named_parameters(model)
        self.last_stats: dict = {}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({type(self.model).__name__}, adapted={self.adapted}, cutoff={self.cutoff})"

    def forward(self, *args, **kwargs) -> Tensor:
        """``model(data)``; a model with ``forward(..., pos, ...)`` as ``model(data)`` (its
        arguments by name from the data) or with its own arguments."""
        data = args[0] if len(args) == 1 and not kwargs else None
        with local_context(self.cutoff, self.params, self.o3, self.origin) as ctx:
            if self._by_name is not None and isinstance(data, BaseData):
                kwargs = {k: getattr(data, k, None) for k, required in self._by_name.items()
                          if required or k in data or k == "batch"}
                ctx.register_graphs(kwargs.get("pos"), kwargs.get("batch"))
                y = self.model(**kwargs)
            elif self._by_name is not None:  # called with the model's own arguments
                bound = inspect.signature(self.model.forward).bind_partial(*args, **kwargs).arguments
                ctx.register_graphs(bound.get("pos"), bound.get("batch"))
                y = self.model(*args, **kwargs)
            else:
                first = args[0] if args else None
                ctx.register_graphs(getattr(first, "pos", None), getattr(first, "batch", None))
                y = self.model(*args, **kwargs)
        self.last_stats = _stats(ctx.records)
        if self.spec.is_scalar:
            return y
        if not isinstance(data, BaseData):
            raise ValueError(f"output={self.spec.name!r}: call the local model as model(data) (a PyG Data/Batch "
                             "with pos) for covariant outputs")
        pos, batch, num_graphs = check_point_cloud(data)
        geo = torch.promote_types(pos.dtype, torch.float64)
        cell = getattr(data, "cell", None)
        lf = local_frames(pos.to(geo), self.cutoff, batch, None if cell is None else cell.to(geo),
                          getattr(data, "pbc", None), self.params, self.o3)
        values = self.spec.components(y).to(geo)
        if values.shape[0] != pos.shape[0]:
            raise ValueError(f"output={self.spec.name!r} in local mode needs per-node outputs [N={pos.shape[0]}, "
                             f"...] from the model (at level={self.level!r}; e.g. the backbone's level='node'), "
                             f"got {tuple(y.shape)}: a pooled output has no frame to be rotated back with")
        out = lf.combine_covariant(values[lf.atom], self.spec)
        if self.level == "graph":
            out = out.new_zeros(num_graphs, *out.shape[1:]).index_add(0, batch, out)
        return out.to(y.dtype)


def _named_parameters(model: nn.Module) -> Optional[dict[str, bool]]:
    """``{name: required}`` of ``model.forward``'s parameters when it takes ``pos`` (called
    by name from a data object; a required one the data lacks is ``None``), else ``None``
    (called as ``model(data)``)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    if "pos" not in params:
        return None
    return {k: p.default is p.empty for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _stats(records: list[dict]) -> dict:
    framed = [r for r in records if r["mode"] == "frames"]
    centres = sum(r["centres"] for r in framed)
    return {
        "frames_per_centre": sum(r["frames"] for r in framed) / max(centres, 1),
        "copies_per_centre": sum(r["copies"] for r in framed) / max(centres, 1),
        "edge_copies_per_edge": sum(r["edge_copies"] for r in framed) / max(sum(r["edges"] for r in framed), 1),
        "aux_centres": sum(r["aux_centres"] for r in framed),
        "layers": records,
    }
