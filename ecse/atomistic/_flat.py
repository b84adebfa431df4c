"""The flat option form of training configurations written before the sections
(:mod:`ecse.atomistic.config`): every option at the top level, ``model`` and ``ecse``
as plain dicts. :func:`nest` turns it into the sectioned form, option by option:

>>> nest({"data": "a.xyz", "lr": 0.01, "ecse_in_loop": True, "model": {"d_model": 16}})
{'data': {'files': 'a.xyz'}, 'model': {'d_model': 16}, 'ecse': {'in_loop': True}, 'optimiser': {'lr': 0.01}}
>>> flow_yaml({"data": {"files": "a.xyz"}, "optimiser": {"lr": 0.01}})
'{data: {files: a.xyz}, optimiser: {lr: 0.01}}'
"""
from __future__ import annotations

from typing import Any, Mapping

from ..frameset import PUBLISHED
from ._options import unknown_keys_error

__all__ = ["FLAT_OPTIONS", "SECTIONS", "is_flat", "nest", "moved_to", "flow_yaml"]

#: the sections of a configuration, in order
SECTIONS = ("data", "model", "ecse", "loss", "optimiser", "run")

#: ``{flat option: (section, option in the section)}``; ``model``/``ecse`` were dicts
FLAT_OPTIONS: dict[str, tuple[str, str]] = {
    "data": ("data", "files"), "train_file": ("data", "train_file"), "val_file": ("data", "val_file"),
    "test_file": ("data", "test_file"), "data_index": ("data", "index"), "energy_key": ("data", "energy_key"),
    "forces_key": ("data", "forces_key"), "stress_key": ("data", "stress_key"), "targets": ("data", "targets"),
    "split_sizes": ("data", "split_sizes"), "augment_rotations": ("data", "augment_rotations"),
    "augment_inversion": ("data", "augment_inversion"),
    "model": ("model", ""), "ecse": ("ecse", ""), "ecse_in_loop": ("ecse", "in_loop"),
    "energy_weight": ("loss", "energy_weight"), "forces_weight": ("loss", "forces_weight"),
    "stress_weight": ("loss", "stress_weight"), "scale_outputs": ("loss", "scale_outputs"),
    "optimizer": ("optimiser", "name"), "lr": ("optimiser", "lr"), "weight_decay": ("optimiser", "weight_decay"),
    "epochs": ("optimiser", "epochs"), "batch_size": ("optimiser", "batch_size"),
    "val_batch_size": ("optimiser", "val_batch_size"), "warmup_epochs": ("optimiser", "warmup_epochs"),
    "decay": ("optimiser", "decay"), "min_lr_ratio": ("optimiser", "min_lr_ratio"),
    "decay_step_epochs": ("optimiser", "decay_step_epochs"), "decay_gamma": ("optimiser", "decay_gamma"),
    "grad_clip": ("optimiser", "grad_clip"),
    "seed": ("run", "seed"), "dtype": ("run", "dtype"), "device": ("run", "device"),
    "num_threads": ("run", "num_threads"), "output_dir": ("run", "output_dir"),
    "checkpoint_every": ("run", "checkpoint_every"), "max_steps": ("run", "max_steps"),
    "max_time": ("run", "max_time"), "progress": ("run", "progress"), "backend": ("run", "backend"),
}


def moved_to(key: str) -> str:
    """Where the flat option ``key`` lives now, e.g. ``"optimiser.lr"``."""
    section, name = FLAT_OPTIONS[key]
    return f"{section}.{name}" if name else f"section {section!r}"


def is_flat(options: Mapping[str, Any]) -> bool:
    """True for the flat form: ``data`` is a file (not a section) or no top-level key is
    a section only the sectioned form has (``model``/``ecse`` exist in both)."""
    if "data" in options and not isinstance(options["data"], Mapping):
        return True
    only_sectioned = {"data", "loss", "optimiser", "run"}
    return not any(key in only_sectioned for key in options) and any(key not in SECTIONS for key in options)


def nest(options: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """The sectioned form of flat ``options`` (only the options given, in section order).

    A flat ``ecse`` dict meant ECSE's defaults of the time plus its entries, so one without
    ``num_prunings``, ``radial_width``, ``angle_threshold``, ``angle_width`` or
    ``cutoff_angle_start`` gets the published values (:data:`ecse.frameset.PUBLISHED`: 4
    rounds, 0.15 Å, 0.2, 0.15 and 0.2; the sectioned defaults are 0, 0.5, 0.12, 0.12 and
    0.03); without an ``ecse`` entry the default applied, as now.
    """
    unknown = [k for k in options if k not in FLAT_OPTIONS]
    sections = [k for k in unknown if k in SECTIONS]
    if sections:
        flat = ", ".join(f"{k!r} -> {moved_to(k)}" for k in options if k in FLAT_OPTIONS and k not in SECTIONS)
        raise ValueError(f"{source} mixes sections ({', '.join(repr(k) for k in sections)}) with options of the "
                         f"flat form; move these into their sections: {flat}")
    if unknown:
        raise unknown_keys_error(unknown, sorted(FLAT_OPTIONS), f"{source} (flat form)")
    nested: dict[str, dict] = {}
    for key, value in options.items():
        section, name = FLAT_OPTIONS[key]
        part = nested.setdefault(section, {})
        if name:
            part[name] = value
        elif key == "ecse" and isinstance(value, Mapping):
            part.update({**PUBLISHED, **value})
        else:
            if not isinstance(value, Mapping):
                raise TypeError(f"option {key!r} of {source} must be a mapping, got {value!r} ({type(value).__name__})")
            part.update(value)
    return {section: nested[section] for section in SECTIONS if section in nested}


def flow_yaml(value: Any) -> str:
    """``value`` as one line of YAML (flow style), for messages."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10 ** 6).strip()
