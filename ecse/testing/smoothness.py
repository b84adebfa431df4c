"""Continuity probe: walk a model along a path and look for kinks in its energy.

A machine-learned potential is only usable in molecular dynamics if its energy is
smooth: a jump in the force (a kink in the energy) breaks energy conservation.
:func:`smoothness_profile` moves the atoms of one structure along a straight line
``pos + s * direction`` (or a user path ``s -> positions``), evaluates all points in
batches, and returns the energy ``E(s)``, the directional derivative ``dE/ds``
(autograd; minus the force along the path), the curvature ``d2E/ds2`` (finite
differences of ``dE/ds``) and where the curvature is largest.  A kink with slope jump
``J`` between two grid points ``h`` apart shows up as a curvature ``~ J / (2 h)``
that grows as the grid is refined; a smooth model's curvature does not.

:func:`assert_smooth` compares a model's worst curvature with a reference's (for
example an ECSE-wrapped model against its bare backbone) on the same path.  A backbone
that is not exactly invariant has a different curvature along the same path in every
orientation, while its exactly invariant wrapper has one; :func:`orientation_curvatures`
measures that spread (the same path rigidly rotated), and ``assert_smooth(...,
orientations=k)`` takes the reference's largest curvature over ``k`` random orientations
as the yardstick.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> def energy(batch):  # harmonic wells, one energy per graph
...     per_atom = 0.5 * batch.pos.pow(2).sum(1)
...     return torch.zeros(batch.num_graphs, dtype=per_atom.dtype).index_add_(0, batch.batch, per_atom)
>>> data = Data(pos=torch.randn(4, 3, dtype=torch.float64))
>>> profile = smoothness_profile(energy, data, span=1.0, points=11)
>>> profile.energy.shape, round(float(profile.curvature.abs().max()), 6)
(torch.Size([11]), 1.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..rotations import random_rotation
from .equivariance import _transformed

__all__ = ["SmoothnessProfile", "smoothness_profile", "orientation_curvatures", "assert_smooth"]

Path = Callable[[Tensor], Tensor]


@dataclass
class SmoothnessProfile:
    """Energy along a path ``s``, its derivative and curvature (all ``[points]``, detached).

    ``slope`` is ``dE/ds`` by autograd (``force = -slope`` is the force along the
    path for a unit direction); ``curvature`` is ``d2E/ds2`` by finite differences of
    ``slope`` (second order inside, first order at the ends); ``worst_index`` is the
    point of largest ``|curvature|``; ``max_slope_jump`` is the largest change of
    ``slope`` between neighbouring points.
    """

    s: Tensor
    energy: Tensor
    slope: Tensor
    curvature: Tensor
    worst_index: int
    worst_curvature: float
    max_slope_jump: float

    @property
    def force(self) -> Tensor:
        """Directional force ``-dE/ds``."""
        return -self.slope

    @property
    def worst_s(self) -> float:
        """Path coordinate of the largest ``|curvature|``."""
        return float(self.s[self.worst_index])

    def __str__(self) -> str:
        return (f"max |d2E/ds2| = {abs(self.worst_curvature):.4g} at s = {self.worst_s:.6g} "
                f"(point {self.worst_index} of {len(self.s)}); max |slope jump| = {self.max_slope_jump:.4g}")


def _grid(span, points: int, dtype: torch.dtype) -> Tensor:
    if points < 3:
        raise ValueError(f"need points >= 3 to form a curvature, got {points}")
    start, stop = (0.0, float(span)) if isinstance(span, (int, float)) else map(float, span)
    if not stop > start:
        raise ValueError(f"span must give start < stop, got {span!r}")
    return torch.linspace(start, stop, points, dtype=dtype)


def _straight(data: Data, direction: Optional[Tensor], seed: int) -> Path:
    pos = data.pos.detach()
    direction = _direction(pos, direction, seed)
    if direction.shape != pos.shape:
        raise ValueError(f"direction has shape {tuple(direction.shape)}; expected pos's {tuple(pos.shape)}")
    norm = direction.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("direction must be finite and non-zero")
    direction = direction / norm
    return lambda s: pos + s.reshape(-1, 1, 1) * direction


def _direction(pos: Tensor, direction: Optional[Tensor], seed: int) -> Tensor:
    """``direction`` in ``pos``'s dtype; ``None``: a gaussian one from ``seed``."""
    if direction is None:
        direction = torch.randn(pos.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.as_tensor(direction).to(pos.dtype)


def _one_structure(data: Data) -> Data:
    """``data`` itself, or the only graph of a ``Batch`` of one."""
    if isinstance(data, Batch):
        if data.num_graphs != 1:
            raise ValueError(f"data must be one structure, got a Batch of {data.num_graphs} graphs")
        data = data.get_example(0)
    return data


def _user_path(path: Path, n: int, dtype: torch.dtype) -> Path:
    def positions(s: Tensor) -> Tensor:
        out = torch.stack([torch.as_tensor(path(si)) for si in s.unbind()])
        if out.shape[1:] != (n, 3) or not out.is_floating_point():
            raise ValueError(f"path(s) must return float positions of shape ({n}, 3), got {tuple(out.shape[1:])}")
        return out.to(dtype)
    return positions


def _energies(model, data: Data, pos: Tensor, batched: bool, reduce) -> Tensor:
    """Energies ``[k]`` of ``k`` displaced copies (``pos [k, N, 3]``) of ``data``."""
    k = pos.shape[0]
    template = data.clone()
    template.pos = template.pos.detach()
    if not batched:
        outs = []
        for p in pos.unbind():
            d = template.clone()
            d.pos = p
            outs.append(reduce(model(d).reshape(1, -1)))
        return torch.cat(outs)
    batch = Batch.from_data_list([template] * k)
    batch.pos = pos.reshape(-1, 3)
    out = model(batch)
    if out.dim() == 0 or out.shape[0] != k:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for a batch of {k} graphs; expected "
                         f"[{k}] or [{k}, ...] (pass batched=False for a model that takes one structure)")
    return reduce(out.reshape(k, -1))


def smoothness_profile(model: Callable[[Data], Tensor], data: Data, direction: Optional[Tensor] = None,
                       span: Union[float, Sequence[float]] = 1.0, points: int = 41, *,
                       path: Optional[Path] = None, batch_size: Optional[int] = 1, batched: bool = True,
                       reduce: Optional[Callable[[Tensor], Tensor]] = None, seed: int = 0) -> SmoothnessProfile:
    """Walk ``model`` along a path through ``data`` and profile its energy.

    Parameters
    ----------
    model : callable ``Data/Batch -> Tensor`` with one row per graph (``[B]`` or ``[B, ...]``).
        Gradients must flow from the output to ``pos``; ``model`` is called as is
        (put it in ``eval()`` mode yourself).
    data : one structure (``pos [N, 3]``; other attributes such as ``z``, ``cell``,
        ``pbc`` are copied unchanged to every point), or a ``Batch`` of one.
    direction : ``[N, 3]`` displacement, normalised over all atoms (Frobenius norm 1),
        so that ``s`` is a length; default a random gaussian direction from ``seed``.
    span : ``stop`` (the path runs over ``s`` in ``[0, stop]``) or ``(start, stop)``.
    points : number of equally spaced values of ``s`` (at least 3).
    path : callable ``s -> positions [N, 3]`` (``s`` a 0-d tensor, differentiable in
        ``s``) used instead of the straight line; ``direction`` is then ignored.
    batch_size : evaluate at most this many points per model call; the default, one,
        keeps peak memory at that of one model call. Raise it for small models (fewer,
        larger calls), or pass ``None`` for all points in one call.
    batched : ``False`` calls the model once per point on a plain ``Data``.
    reduce : maps the model output ``[k, C]`` to energies ``[k]``; default: sum over ``C``.
    seed : seed of the default direction.

    Returns
    -------
    SmoothnessProfile
    """
    data = _one_structure(data)
    dtype = data.pos.dtype
    s_grid = _grid(span, points, dtype)
    walk = _user_path(path, data.pos.shape[0], dtype) if path is not None else _straight(data, direction, seed)
    reduce = reduce or (lambda out: out.sum(1))
    step = batch_size or points
    energy, slope = [], []
    with torch.enable_grad():
        for chunk in s_grid.split(step):
            s = chunk.clone().requires_grad_(True)
            e = _energies(model, data, walk(s), batched, reduce)
            (de_ds,) = torch.autograd.grad(e.sum(), s)  # each E_i depends on s_i only
            energy.append(e.detach())
            slope.append(de_ds.detach())
    energy, slope = torch.cat(energy), torch.cat(slope)
    curvature = torch.gradient(slope, spacing=(s_grid,))[0]
    worst = int(curvature.abs().argmax())
    return SmoothnessProfile(s=s_grid, energy=energy, slope=slope, curvature=curvature, worst_index=worst,
                             worst_curvature=float(curvature[worst]),
                             max_slope_jump=float(slope.diff().abs().max()))


def orientation_curvatures(model: Callable[[Data], Tensor], data: Data, direction: Optional[Tensor] = None,
                           span: Union[float, Sequence[float]] = 1.0, points: int = 41, *, rotations: int = 8,
                           rotation_seed: int = 0, vector_attrs: Sequence[str] = (), seed: int = 0,
                           **kwargs) -> Tensor:
    """Worst ``|d2E/ds2|`` of ``model`` along one straight path seen in several orientations.

    The structure (``pos``, ``cell`` and ``vector_attrs``) and the path's direction are
    rotated together, ``x -> x @ R.T``, by the identity and ``rotations`` random rotations
    (seeded by ``rotation_seed``), so every orientation sees the same geometry along the
    path.  An exactly invariant model gives one value ``rotations + 1`` times; a model that
    is not (a backbone trained with rotation augmentation) gives a spread, which is the
    part of its curvature that the choice of the lab frame decides.  ``direction``,
    ``span``, ``points`` and ``seed`` are as in :func:`smoothness_profile`, which receives
    ``kwargs`` (``batch_size``, ``batched``, ``reduce``; not ``path``).

    Returns
    -------
    ``[rotations + 1]`` worst ``|d2E/ds2|``, the given orientation first.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> def anisotropic(batch):  # x**4 of every atom: depends on the orientation
    ...     per_atom = batch.pos[:, 0].pow(4)
    ...     return torch.zeros(batch.num_graphs, dtype=per_atom.dtype).index_add_(0, batch.batch, per_atom)
    >>> data = Data(pos=torch.randn(4, 3, dtype=torch.float64))
    >>> values = orientation_curvatures(anisotropic, data, span=0.5, points=21, rotations=4)
    >>> values.shape, bool(values.max() > 1.01 * values.min())
    (torch.Size([5]), True)
    """
    if "path" in kwargs:
        raise ValueError("orientation_curvatures takes a straight path (direction), not path=")
    if rotations < 0:
        raise ValueError(f"rotations must be >= 0, got {rotations}")
    data = _one_structure(data)
    direction = _direction(data.pos, direction, seed)
    g = torch.Generator().manual_seed(rotation_seed)
    turns = [torch.eye(3, dtype=torch.float64)] + [random_rotation(g, dtype=torch.float64) for _ in range(rotations)]
    out = []
    for R in turns:
        rotated = _transformed(data, vector_attrs, R)
        profile = smoothness_profile(model, rotated, direction @ R.T.to(direction.dtype), span, points, **kwargs)
        out.append(abs(profile.worst_curvature))
    return torch.tensor(out, dtype=torch.float64)


def assert_smooth(model: Callable[[Data], Tensor], reference: Callable[[Data], Tensor], data: Data,
                  direction: Optional[Tensor] = None, span: Union[float, Sequence[float]] = 1.0,
                  points: int = 41, *, max_ratio: float = 3.0, atol: float = 0.0, orientations: int = 0,
                  **kwargs) -> tuple[SmoothnessProfile, SmoothnessProfile]:
    """Assert that ``model`` is no less smooth than ``reference`` along the same path.

    Raises ``AssertionError`` when ``max |d2E/ds2|`` of ``model`` exceeds
    ``max_ratio * max |d2E/ds2|`` of ``reference`` plus ``atol``.  A typical use: an
    ECSE-wrapped model against its bare backbone.  ``kwargs`` go to
    :func:`smoothness_profile` (``path``, ``batch_size``, ``batched``, ``reduce``,
    ``seed``); both models see the same path.  ``orientations=k > 0`` (straight paths
    only): the reference's curvature is its largest over the given orientation and ``k``
    random rotations of the structure and path (:func:`orientation_curvatures`), the
    yardstick for an exactly invariant ``model`` around a reference that is not, whose
    curvature along a path depends on the arbitrary lab frame.

    Returns
    -------
    (profile of model, profile of reference in the given orientation)
    """
    mine = smoothness_profile(model, data, direction, span, points, **kwargs)
    ref = smoothness_profile(reference, data, direction, span, points, **kwargs)
    ref_worst, where = abs(ref.worst_curvature), f"at s = {ref.worst_s:.6g}"
    if orientations > 0:
        spread = orientation_curvatures(reference, data, direction, span, points, rotations=orientations, **kwargs)
        ref_worst, where = float(spread.max()), f"the largest over {orientations + 1} orientations"
    worst, bound = abs(mine.worst_curvature), max_ratio * ref_worst + atol
    if not worst <= bound:
        ratio = worst / ref_worst if ref_worst else float("inf")
        raise AssertionError(
            f"model is not smooth: max |d2E/ds2| = {worst:.4g} at s = {mine.worst_s:.6g} is {ratio:.3g} times "
            f"the reference's {ref_worst:.4g} ({where}); allowed: "
            f"max_ratio={max_ratio} (+ atol={atol}). Max |slope jump| between neighbouring points: "
            f"model {mine.max_slope_jump:.4g}, reference {ref.max_slope_jump:.4g}.")
    return mine, ref
