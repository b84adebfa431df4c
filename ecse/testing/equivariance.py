"""Numerical equivariance checks for any model ``Data -> Tensor``.

Conventions
-----------
* Positions are row vectors ``pos [N, 3]``; an orthogonal ``R`` (rotation or, with
  ``det R = -1``, an improper element) acts as ``pos @ R.T``.  A periodic cell (rows =
  lattice vectors, ``cell [1, 3, 3]`` per graph, ``[B, 3, 3]`` in a batch) becomes
  ``cell @ R.T``, and so do the attributes listed in ``vector_attrs``.
* Outputs transform as (see :func:`transform_output`): ``"scalar"`` invariant;
  ``"vector"`` ``v @ R.T`` (last dim 3); ``"rank2"`` / ``"rank2-symmetric"``
  ``R @ T @ R.T`` (last two dims 3x3); an e3nn irreps string such as ``"1x0e+1x1o"``
  (last dim ``irreps.dim``) ``f @ D.T`` with ``D = e3nn.o3.Irreps(s).D_from_matrix(R)``
  (computed by e3nn, independently of ecse, with parity for improper ``R``).
* Translations leave every output unchanged; permuting the nodes within each graph
  leaves graph-level outputs unchanged and permutes node-level outputs.
* Inputs in ``vector_attrs`` are polar vectors (forces, velocities, edge vectors); an
  improper ``R`` also flips the handedness of a cell (``det(cell)`` changes sign).
* The check runs in the dtype of ``data``.  For tight checks convert the model and the
  data to float64 (``model.double()``, ``data.pos = data.pos.double()``): float64 errors
  of an exactly equivariant model are ~1e-15, float32 ones ~1e-7 .. 1e-5.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> def radius_of_gyration(data):
...     return (data.pos - data.pos.mean(0)).pow(2).sum(1).mean().sqrt().reshape(1)
>>> data = Data(pos=torch.randn(10, 3, dtype=torch.float64))
>>> errors = assert_equivariant(radius_of_gyration, data, "scalar", o3=True, tol=1e-12)
>>> sorted(errors)
['permutation', 'reflection', 'rotation', 'translation']
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..rotations import random_orthogonal, random_rotation

__all__ = ["OUTPUT_TYPES", "assert_equivariant", "transform_output", "relative_error",
           "random_rotation", "random_orthogonal"]

OUTPUT_TYPES: tuple[str, ...] = ("scalar", "vector", "rank2", "rank2-symmetric")
_GRAPH_KEYS = ("cell", "pbc", "ptr")  # never permuted, even if their size happens to equal N


def _irreps(output):
    try:
        from e3nn import o3
        return o3.Irreps(output)
    except Exception as err:
        raise ValueError(f"unknown output type {output!r}: expected one of {OUTPUT_TYPES} "
                         f"or an e3nn Irreps string like '1x0e+1x1o'") from err


def _wigner(irreps, R: Tensor) -> Tensor:
    """``irreps.D_from_matrix(R)`` in float64, avoiding two accuracy pitfalls.

    e3nn builds its generators in the *default* dtype (float32 errors ~1e-5), and
    ``torch.matrix_exp`` of a single small-norm float64 matrix can be ~1e-10 off, so we
    use float64 defaults, ``atan2`` angles, and a 2-batch (highest-degree Pade path).
    """
    from e3nn import o3
    R = R.detach().to(device="cpu", dtype=torch.float64)
    det = torch.det(R).sign()
    Rs = torch.stack([det * R, torch.eye(3, dtype=torch.float64)])
    e_y = Rs[..., :, 1]  # R @ (0, 1, 0)
    alpha = torch.atan2(e_y[..., 0], e_y[..., 2])
    beta = torch.atan2(torch.hypot(e_y[..., 0], e_y[..., 2]), e_y[..., 1])
    rest = o3.angles_to_matrix(alpha, beta, torch.zeros_like(alpha)).transpose(-1, -2) @ Rs
    gamma = torch.atan2(rest[..., 0, 2], rest[..., 0, 0])
    k = torch.stack([(1 - det) / 2, torch.zeros_like(det)])
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return irreps.D_from_angles(alpha, beta, gamma, k)[0]
    finally:
        torch.set_default_dtype(old)


def transform_output(y: Tensor, R: Tensor, output: str = "scalar") -> Tensor:
    """Apply ``R`` to an output ``y`` of the given type (see the module conventions).

    >>> R = random_rotation(torch.Generator().manual_seed(1))
    >>> v = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(transform_output(v, R, "vector"), transform_output(v, R, "1x1o")))
    True
    """
    Ry = R.to(dtype=y.dtype, device=y.device)
    if output == "scalar":
        return y
    if output == "vector":
        if y.ndim < 1 or y.shape[-1] != 3:
            raise ValueError(f"output='vector' needs last dim 3, got shape {tuple(y.shape)}")
        return y @ Ry.T
    if output in ("rank2", "rank2-symmetric"):
        if y.ndim < 2 or y.shape[-2:] != (3, 3):
            raise ValueError(f"output={output!r} needs last two dims 3x3, got shape {tuple(y.shape)}")
        return Ry @ y @ Ry.T
    irreps = _irreps(output)
    if y.ndim < 1 or y.shape[-1] != irreps.dim:
        raise ValueError(f"output={output!r} needs last dim {irreps.dim}, got shape {tuple(y.shape)}")
    return y @ _wigner(irreps, R).to(dtype=y.dtype, device=y.device).T


def relative_error(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / max(||b||, tiny)`` (Frobenius norms over all entries, in float64).

    >>> relative_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    0.0
    """
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(torch.finfo(torch.float64).tiny))


def _batch(data: Data) -> Tensor:
    batch = getattr(data, "batch", None)
    return batch if batch is not None else torch.zeros(data.num_nodes, dtype=torch.long, device=data.pos.device)


def _permutation(batch: Tensor, g: torch.Generator) -> Tensor:
    """Random permutation of node indices that maps every graph onto itself."""
    n = batch.numel()
    keys = batch.double().cpu() + torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    perm = torch.argsort(keys, stable=True)
    if n > 1 and torch.equal(perm, torch.arange(n)) and bool((batch[1:] >= batch[:-1]).all()):
        counts = torch.bincount(batch.cpu())  # identity drawn: rotate every graph by one instead
        start = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        size = torch.repeat_interleave(counts, counts)
        perm = start + (torch.arange(n) - start + 1) % size
    return perm.to(batch.device)


def _transformed(data: Data, vector_attrs: Iterable[str], R: Tensor | None = None, shift: Tensor | None = None,
                 perm: Tensor | None = None) -> Data:
    out = data.clone()
    if R is not None:
        Rt = R.to(dtype=data.pos.dtype, device=data.pos.device).T
        for key in ("pos", "cell", *vector_attrs):
            value = getattr(out, key, None)
            if value is None:
                continue
            if value.shape[-1] != 3:
                raise ValueError(f"vector attribute {key!r} must have last dim 3, got {tuple(value.shape)}")
            out[key] = value @ Rt
    if shift is not None:
        out.pos = out.pos + shift
    if perm is not None:
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        for key in list(out.keys()):
            value = out[key]
            if key == "edge_index":
                out.edge_index = inv[value]
            elif key not in _GRAPH_KEYS and isinstance(value, Tensor) and data.is_node_attr(key):
                out[key] = value[perm]
    if data.pos.requires_grad:
        out.pos = out.pos.detach().requires_grad_(True)
    return out


def assert_equivariant(model: Callable[[Data], Tensor], data: Data, output: str = "scalar", *, level: str = "graph", o3: bool = False,
                       translate: bool = True, permute: bool = True, n_transforms: int = 4,
                       atol: float | None = None, rtol: float | None = None, vector_attrs: Iterable[str] = (),
                       generator: torch.Generator | None = None, tol: float | None = None) -> dict[str, float]:
    """Measure (and optionally assert) the rotation/reflection/translation/permutation symmetry of ``model``.

    Parameters
    ----------
    model : callable ``Data | Batch -> Tensor`` (put it in ``eval()`` mode first).
    data : a ``Data`` or ``Batch`` with ``pos``; not modified.  ``cell`` and ``vector_attrs``
        are rotated with ``pos``; node attributes (``Data.is_node_attr``) are permuted and
        ``edge_index`` is remapped.  One ``R`` is applied to all graphs; translations differ per graph.
    output : ``"scalar"``, ``"vector"``, ``"rank2"``, ``"rank2-symmetric"`` or an e3nn irreps string.
    level : ``"graph"`` (permutations leave the output unchanged) or ``"node"`` (dim 0 = nodes).
    o3 : also test ``n_transforms`` improper orthogonal matrices (key ``"reflection"``).
    translate, permute : also test random translations / within-graph permutations.
    n_transforms : random draws per kind of transformation (so ``1 + n * (2 + o3 + ...)`` calls).
    atol, rtol : if either is given, element-wise check ``|f(gX) - g f(X)| <= atol + rtol |g f(X)|``
        (the other defaults to 0).  Use ``atol`` for outputs that vanish by symmetry.
    vector_attrs : further attributes with last dim 3 that rotate like ``pos`` (not translated).
    generator : ``torch.Generator`` for the random draws (default: seeded with 0, deterministic).
    tol : if given, fail when any relative error exceeds it.

    Returns
    -------
    dict mapping ``"rotation"``, ``"reflection"``, ``"translation"``, ``"permutation"`` (those
    tested) to the largest relative error ``||f(gX) - g f(X)|| / max(||g f(X)||, tiny)``.

    Raises
    ------
    AssertionError if ``tol`` / ``atol`` / ``rtol`` are exceeded; ValueError for an unknown
    ``output`` or ``level``, an output whose shape does not fit, or non-finite outputs.
    """
    if level not in ("graph", "node"):
        raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
    if n_transforms < 1:
        raise ValueError("n_transforms must be >= 1")
    if getattr(data, "pos", None) is None:
        raise ValueError("data has no 'pos'")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    vector_attrs = tuple(vector_attrs)

    def evaluate(d: Data, what: str) -> Tensor:
        y = model(d)
        if not isinstance(y, Tensor):
            raise TypeError(f"model must return a Tensor, got {type(y).__name__}")
        y = y.detach()
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"model output for the {what} input contains NaN or inf")
        return y

    y0 = evaluate(_transformed(data, ()), "original")
    transform_output(y0, torch.eye(3, dtype=y0.dtype), output)  # validates the output spec and shape
    if level == "node" and (y0.ndim == 0 or y0.shape[0] != data.num_nodes):
        raise ValueError(f"level='node' needs output dim 0 = num_nodes = {data.num_nodes}, got {tuple(y0.shape)}")
    y64 = y0.double()
    batch = _batch(data)
    n_graphs = int(batch.max()) + 1 if batch.numel() else 1

    errors: dict[str, float] = {}
    excess: dict[str, float] = {}  # largest violation of the element-wise atol/rtol bound

    def compare(name: str, d: Data, ref: Tensor) -> None:
        y = evaluate(d, name)
        if y.shape != ref.shape:
            raise ValueError(f"output shape changed under {name}: {tuple(ref.shape)} -> {tuple(y.shape)}")
        errors[name] = max(errors.get(name, 0.0), relative_error(y, ref))
        if (atol is not None or rtol is not None) and y.numel():
            over = (y.double() - ref).abs() - ((atol or 0.0) + (rtol or 0.0) * ref.abs())
            excess[name] = max(excess.get(name, 0.0), float(over.max()))

    for _ in range(n_transforms):
        for name, improper in (("rotation", False),) + ((("reflection", True),) if o3 else ()):
            R = random_orthogonal(g, torch.float64, improper=improper)
            compare(name, _transformed(data, vector_attrs, R=R), transform_output(y64, R, output))
        if translate:
            scale = 1.0 + 3.0 * float(data.pos.detach().double().std()) if data.num_nodes > 1 else 1.0
            shift = (torch.randn(n_graphs, 3, generator=g, dtype=torch.float64) * scale)
            shift = shift.to(dtype=data.pos.dtype, device=data.pos.device)[batch]
            compare("translation", _transformed(data, vector_attrs, shift=shift), y64)
        if permute:
            perm = _permutation(batch, g)
            compare("permutation", _transformed(data, vector_attrs, perm=perm),
                    y64[perm.to(y64.device)] if level == "node" else y64)

    failures = [f"{k}: relative error {v:.3e} > tol={tol:.1e}" for k, v in errors.items()
                if tol is not None and v > tol]
    failures += [f"{k}: element-wise |f(gX) - g.f(X)| exceeds atol={atol}, rtol={rtol} by up to {v:.3e}"
                 for k, v in excess.items() if v > 0]
    if failures:
        raise AssertionError("model is not equivariant:\n  " + "\n  ".join(failures))
    return errors
