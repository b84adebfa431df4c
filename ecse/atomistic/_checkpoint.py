"""Training checkpoints (``last.pt``/``best.pt``) of :mod:`ecse.atomistic.training`:
reading them with one clear error per kind of bad file, and their configuration.

A checkpoint is a ``dict`` written by ``torch.save`` with the keys ``model``,
``optimizer``, ``scheduler``, ``progress``, ``rng``, ``config`` (the options, nested;
checkpoints of earlier versions hold the flat form), ``baseline``, ``scales``,
``targets``, ``epoch`` and ``step``.

>>> read_checkpoint("no/such/last.pt")
Traceback (most recent call last):
...
FileNotFoundError: checkpoint not found: 'no/such/last.pt'
"""
from __future__ import annotations

import os
from typing import Any, Sequence, Union

import torch

from .config import TrainConfig, config_from_dict, replace

__all__ = ["REQUIRED_KEYS", "read_checkpoint", "checkpoint_config"]

#: keys every training checkpoint has (enough to rebuild the model)
REQUIRED_KEYS = ("config", "model", "baseline")


def read_checkpoint(path: Union[str, os.PathLike], required: Sequence[str] = REQUIRED_KEYS) -> dict[str, Any]:
    """The ``dict`` of a training checkpoint, on the CPU.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A file ``torch.load`` cannot read (truncated, not a torch file), or a torch file
        that is not a training checkpoint (e.g. a plain ``state_dict``); the message
        names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and unpickler errors of many types
        raise ValueError(f"could not read checkpoint {path!r} (truncated, or not written by torch.save?): "
                         f"{type(err).__name__}: {err}") from err
    missing = [key for key in required if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        found = f"keys {sorted(map(str, ckpt))[:5]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path!r} is not an ecse training checkpoint (missing {', '.join(missing)}; found "
                         f"{found}); use last.pt or best.pt written by `ecse train`")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], path: Union[str, os.PathLike]) -> TrainConfig:
    """The :class:`~ecse.atomistic.config.TrainConfig` stored in ``ckpt`` (read from
    ``path``, named in errors); the flat form of earlier checkpoints loads silently."""
    source = f"checkpoint {os.fspath(path)!r}"
    if not isinstance(ckpt["config"], dict):
        raise ValueError(f"{source}: its 'config' is a {type(ckpt['config']).__name__}, not a mapping of options")
    try:
        config = config_from_dict(ckpt["config"], source=source, flat_warning=None)
    except TypeError as err:  # an option of the wrong type: one error type for a bad checkpoint
        raise ValueError(f"{source}: {err}") from err
    if "frame_average" not in _model_section(ckpt["config"]):  # written before the option existed: per-copy layers
        config = replace(config, model={"frame_average": "layers"})
    return config


def _model_section(options: dict[str, Any]) -> dict[str, Any]:
    """The model options of a stored configuration, nested or flat."""
    model = options.get("model", {})
    return model if isinstance(model, dict) else {}
