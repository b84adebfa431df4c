"""Reading checkpoints and data for :mod:`ecse.atomistic.evaluation`, with clear errors."""
from __future__ import annotations

import os
from typing import Mapping, Union

import torch
from torch_geometric.data import Data

__all__ = ["read_checkpoint", "checkpoint_targets", "load_structures", "available_keys"]

_CKPT_KEYS = ("config", "model", "baseline")


def read_checkpoint(path: Union[str, os.PathLike]):
    """The :class:`~ecse.atomistic.config.TrainConfig` of a training checkpoint.

    Raises ``FileNotFoundError`` (no such file) or ``ValueError`` (not a torch file, or
    not a checkpoint written by :func:`~ecse.atomistic.training.train`).
    """
    from .config import config_from_dict

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of many types
        raise ValueError(f"could not read checkpoint {path!r}: {type(err).__name__}: {err}") from err
    missing = [k for k in _CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path!r} is not an ecse training checkpoint (missing {', '.join(missing)}); "
                         "use last.pt or best.pt written by `ecse train`")
    return config_from_dict(ckpt["config"], source=f"checkpoint {path!r}")


def checkpoint_targets(config) -> dict[str, str]:
    """``{key: type}`` of a training configuration (:func:`~ecse.atomistic.targets.target_types`)."""
    from .targets import target_types

    return target_types(config)


def available_keys(atoms) -> list[str]:
    """Per-structure and per-atom values stored with ``atoms`` (calculator results, info, arrays)."""
    calc = getattr(atoms, "calc", None)
    results = set(getattr(calc, "results", None) or {})
    arrays = set(atoms.arrays) - {"numbers", "positions"}
    return sorted(results | set(atoms.info) | arrays)


def _has(atoms, key: str) -> bool:
    return key in available_keys(atoms)


def load_structures(path: Union[str, os.PathLike], targets: Mapping[str, str], index: str = ":",
                    dtype: torch.dtype = torch.float64, level: str = "graph",
                    add_stress: bool = True) -> tuple[list[Data], dict[str, str]]:
    """Read ``path`` (any ASE format) into ``Data`` with the given targets, in the shapes
    of :func:`~ecse.atomistic.targets.prepare_targets` (rank-2 ``[1, 3, 3]``, ...).

    With ``add_stress`` and an ``energy`` target, a ``stress`` present in every structure
    of an all-periodic file is added as a target. Returns ``(structures, targets)``.

    Raises ``FileNotFoundError``, ``ValueError`` (unreadable file, empty selection, bad
    structure) or ``KeyError`` (a target missing; the message lists the available keys).
    """
    from .data import atoms_to_data, read_structures
    from .targets import prepare_targets, target_level

    path = os.fspath(path)
    frames = read_structures(path, index)
    if not frames:
        raise ValueError(f"no structures in {path!r} with index {index!r}")
    targets = dict(targets)
    if (add_stress and "energy" in targets.values() and "stress" not in targets.values()
            and "stress" not in targets and all(a.pbc.all() and _has(a, "stress") for a in frames)):
        targets["stress"] = "stress"
    kinds = {key: target_level(kind, level) for key, kind in targets.items()}
    out = []
    for k, atoms in enumerate(frames):
        missing = [key for key in kinds if not _has(atoms, key)]
        if missing:
            raise KeyError(f"target(s) {missing} (from the checkpoint's config) not found in {path}[{k}]; "
                           f"available keys: {available_keys(atoms)}")
        out.append(atoms_to_data(atoms, dtype=dtype, targets=kinds, name=f"{path}[{k}]"))
    return prepare_targets(out, targets, source=repr(path)), targets
