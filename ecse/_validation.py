"""Input checks with clear messages (bad input never reaches torch internals)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["check_point_cloud", "check_input_dtype", "NODE_KEYS"]

#: attributes that PyG's conventions make per point (atomic numbers, features): their
#: first dimension must match ``data.pos``'s.
NODE_KEYS = ("z", "x")


def check_point_cloud(data) -> tuple[Tensor, Tensor, int]:
    """Check a PyG ``Data``/``Batch`` and return ``(pos, batch, num_graphs)``.

    Raises:
        ValueError: missing/empty/non-finite/wrongly shaped ``pos``, non-float dtype, a
            :data:`NODE_KEYS` attribute with another number of rows,
            ``batch`` of the wrong length or unsorted, tensors on different devices or
            of mixed float dtypes, a ``cell`` of the wrong shape or dtype.
    """
    pos = getattr(data, "pos", None)
    if not isinstance(pos, Tensor):
        raise ValueError("data.pos is missing: ECSE needs positions as a [N, 3] tensor")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"data.pos must have shape [N, 3], got {tuple(pos.shape)}")
    if pos.shape[0] == 0:
        raise ValueError("empty point cloud: data.pos has no points")
    if not pos.is_floating_point():
        raise ValueError(f"data.pos must be a floating-point tensor, got {pos.dtype}")
    if not bool(torch.isfinite(pos).all()):
        bad = int((~torch.isfinite(pos)).any(dim=1).sum())
        raise ValueError(f"data.pos has {bad} point(s) with NaN or infinite coordinates")
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        num_graphs = 1
    else:
        if batch.device != pos.device:
            raise ValueError(f"data.batch is on {batch.device} but data.pos is on {pos.device}")
        if batch.dim() != 1 or batch.shape[0] != pos.shape[0]:
            raise ValueError(f"data.batch must have shape [{pos.shape[0]}], got {tuple(batch.shape)}")
        if batch.dtype != torch.long:
            raise ValueError(f"data.batch must be int64, got {batch.dtype}")
        if bool((batch[1:] < batch[:-1]).any()) or int(batch.min()) < 0:
            raise ValueError("data.batch must be sorted and non-negative (as PyG builds it)")
        num_graphs = int(getattr(data, "num_graphs", 0) or int(batch.max()) + 1)
        if bool((torch.bincount(batch, minlength=num_graphs) == 0).any()):
            raise ValueError("empty point cloud: a graph in the batch has no points")
    for key in NODE_KEYS:
        value = getattr(data, key, None)
        if isinstance(value, Tensor) and (value.dim() == 0 or value.shape[0] != pos.shape[0]):
            raise ValueError(f"data.{key} must have one row per point ({pos.shape[0]}, as data.pos), "
                             f"got shape {tuple(value.shape)}")
    for key in data.keys():
        value = data[key]
        if isinstance(value, Tensor) and value.device != pos.device:
            raise ValueError(f"data.{key} is on {value.device} but data.pos is on {pos.device}")
        if isinstance(value, Tensor) and value.is_floating_point() and value.dtype != pos.dtype:
            raise ValueError(f"data.{key} is {value.dtype} but data.pos is {pos.dtype}: use one float dtype")
    cell = getattr(data, "cell", None)
    if cell is not None:
        if cell.numel() != 9 * num_graphs:
            raise ValueError(f"data.cell must hold one 3x3 cell per graph ([{num_graphs}, 3, 3]), "
                             f"got {tuple(cell.shape)}")
        if not bool(torch.isfinite(cell).all()):
            raise ValueError("data.cell has NaN or infinite entries")
    return pos, batch, num_graphs


_CAST = {torch.float64: "double", torch.float32: "float", torch.float16: "half", torch.bfloat16: "bfloat16"}


def _cast(dtype: torch.dtype) -> str:
    return f"{_CAST[dtype]}()" if dtype in _CAST else f"to({dtype})"


def _reference(module: torch.nn.Module) -> Optional[Tensor]:
    """The module's first floating-point parameter (or buffer, if it has no parameters)."""
    for tensors in (module.parameters(), module.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t
    return None


def check_input_dtype(module: torch.nn.Module, tensor: Optional[Tensor], name: str = "data.pos",
                      owner: Optional[str] = None) -> None:
    """Check that a floating-point input matches the dtype and device of ``module``'s parameters.

    Call it at the top of a model's ``forward``, so a float64 ``data.pos`` given to a float32
    model fails here with one clear message instead of deep inside torch ("mat1 and mat2
    must have the same dtype").  ``None``, integer tensors and parameter-free modules pass.

    Args:
        module: the model (its first floating-point parameter, else buffer, is the reference).
        tensor: the input to check.
        name: how the message names the input (``"data.pos"``, ``"data.x"``).
        owner: how the message names the model (default: ``module``'s class name; a
            wrapper such as ``ECSE`` passes its own name and its backbone as ``module``).

    Raises:
        ValueError: naming the model class, both dtypes (or devices) and the conversion to apply.

    Examples
    --------
    >>> check_input_dtype(torch.nn.Linear(3, 1), torch.zeros(2, 3))
    >>> check_input_dtype(torch.nn.Linear(3, 1), torch.zeros(2, 3, dtype=torch.float64))
    Traceback (most recent call last):
        ...
    ValueError: Linear: data.pos is torch.float64 but the model's parameters are torch.float32; convert the model (model.double()) or the data (data.pos.float())
    """
    if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
        return
    ref = _reference(module)
    if ref is None:
        return
    owner = owner or type(module).__name__
    if tensor.dtype != ref.dtype:
        raise ValueError(f"{owner}: {name} is {tensor.dtype} but the model's parameters are {ref.dtype}; convert "
                         f"the model (model.{_cast(tensor.dtype)}) or the data ({name}.{_cast(ref.dtype)})")
    if tensor.device != ref.device:
        raise ValueError(f"{owner}: {name} is on {tensor.device} but the model's parameters are on {ref.device}; "
                         f"move the model (model.to('{tensor.device}')) or the data ({name}.to('{ref.device}'))")
