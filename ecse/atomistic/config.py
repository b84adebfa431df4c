"""Training configuration of atomistic models (:func:`ecse.atomistic.training.train`).

A configuration is a :class:`TrainConfig` of six typed sections, usually read from YAML
with :func:`load_config`. Every option has a documented default (see the sections'
classes), so a minimal file names the data, e.g.::

    data: {files: methane_train.xyz, split_sizes: [0.8, 0.1, 0.1]}
    model: {d_model: 64, num_gnn_layers: 2}     # PETHypers: PET's hyperparameters
    optimiser: {epochs: 50, lr: 0.001}
    run: {output_dir: runs/methane}

=============  ===============================  ============================================
section        class                            options
=============  ===============================  ============================================
``data``       :class:`DataOptions`             files, splits, targets, augmentation
``model``      :class:`PETHypers`               ``ecse.backbones.PET``'s hyperparameters
``ecse``       :class:`ECSEOptions`             the ECSE wrapper (``in_loop``, frames)
``loss``       :class:`LossOptions`             loss weights, output scaling
``optimiser``  :class:`OptimiserOptions`        optimiser, batches, learning-rate schedule
``run``        :class:`RunOptions`              seed, dtype, device, outputs, budgets
=============  ===============================  ============================================

A tensor property instead of energies (one tensor per model; see
:mod:`ecse.atomistic.targets`)::

    data: {files: water_monomer_coords_1000.xyz, targets: {alpha: rank2-symmetric}}

An unknown key raises ``ValueError`` naming the valid keys of its section. The flat form
of earlier versions (all options at the top level, e.g. ``data: a.xyz``, ``lr: 0.01``)
still loads, with a one-line warning that shows the same configuration in sections;
checkpoints written with it load silently.

>>> config = config_from_dict({"data": {"files": "a.xyz"}, "optimiser": {"lr": 1}})
>>> config.optimiser.lr, config.target_types
(1.0, {'energy': 'energy', 'forces': 'forces'})
>>> config_from_dict({"data": {"files": "a.xyz"}, "lr": 1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown key 'lr' in config (top level); valid keys: data, ..., run ('lr' is now optimiser.lr)

Needs ``pyyaml`` for :func:`load_config` (``pip install ecse[atomistic]``).
"""
from __future__ import annotations

import dataclasses
import os
import types as _types
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from ..covariant import OutputSpec
from ._flat import FLAT_OPTIONS, SECTIONS, flow_yaml, is_flat, moved_to, nest
from ._hypers import ECSEOptions, PETHypers
from ._options import Section, unknown_keys_error
from ._sections import DataOptions, LossOptions, OptimiserOptions, RunOptions

__all__ = ["TrainConfig", "load_config", "config_from_dict", "replace", "DataOptions", "PETHypers", "ECSEOptions",
           "LossOptions", "OptimiserOptions", "RunOptions"]

_CLASSES: dict[str, type] = {"data": DataOptions, "model": PETHypers, "ecse": ECSEOptions, "loss": LossOptions,
                             "optimiser": OptimiserOptions, "run": RunOptions}


def _energy_output(output: Optional[str]) -> bool:
    """Whether a model section's ``output`` suits an energy model: unset, or a scalar."""
    try:
        return output is None or OutputSpec(output).is_scalar
    except ValueError:  # not an output type at all
        return False


@dataclass(frozen=True)
class TrainConfig:
    """All options of a training run, in sections (each a mapping is turned into its
    class, with unknown keys rejected). The targets are resolved once, here:
    :attr:`target_types`. Reading an option by its flat name (``config.lr``) still works
    and returns the section's value (``config.optimiser.lr``)."""

    data: DataOptions = field(default_factory=DataOptions)
    """Files, splits, targets, augmentation (:class:`DataOptions`)."""
    model: PETHypers = field(default_factory=PETHypers)
    """PET's hyperparameters (:class:`PETHypers`)."""
    ecse: ECSEOptions = field(default_factory=ECSEOptions)
    """The ECSE wrapper (:class:`ECSEOptions`)."""
    loss: LossOptions = field(default_factory=LossOptions)
    """Loss weights and output scaling (:class:`LossOptions`)."""
    optimiser: OptimiserOptions = field(default_factory=OptimiserOptions)
    """Optimiser, batches, schedule (:class:`OptimiserOptions`)."""
    run: RunOptions = field(default_factory=RunOptions)
    """Seed, precision, device, outputs, budgets (:class:`RunOptions`)."""

    def __post_init__(self) -> None:
        from .targets import target_types, tensor_target

        for name, cls in _CLASSES.items():
            value = getattr(self, name)
            if not isinstance(value, Section):
                object.__setattr__(self, name, cls.from_dict(value))
        data, loss = self.data, self.loss
        resolved = target_types(_types.SimpleNamespace(  # validates the targets with a clear error
            targets=data.targets, energy_key=data.energy_key, forces_key=data.forces_key,
            stress_key=data.stress_key, stress_weight=loss.stress_weight))
        tensor = tensor_target(resolved)
        if tensor is not None and (self.model.output not in (None, tensor[1]) or self.model.level != "graph"):
            raise ValueError(f"tensor target {tensor[0]!r} ({tensor[1]}) is per structure: leave 'output' and "
                             f"'level' out of the model section, got output={self.model.output!r}, "
                             f"level={self.model.level!r}")
        if tensor is None and not _energy_output(self.model.output):
            raise ValueError(f"an energy model predicts a scalar: leave 'output' out of the model section, "
                             f"got output={self.model.output!r}")
        object.__setattr__(self, "_target_types", resolved)

    @property
    def target_types(self) -> dict[str, str]:
        """``{key in the files: type}`` of the run (see :mod:`ecse.atomistic.targets`)."""
        return dict(self._target_types)

    @property
    def tensor_target(self) -> Optional[tuple[str, str]]:
        """``(key, type)`` of the tensor target, or ``None`` for an energy model."""
        from .targets import tensor_target

        return tensor_target(self._target_types)

    def __getattr__(self, name: str) -> Any:  # only called for names that are not fields
        if name in FLAT_OPTIONS and name not in SECTIONS:
            section, option = FLAT_OPTIONS[name]
            return getattr(getattr(self, section), option)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as nested plain dicts (for checkpoints and YAML)."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}


def config_from_dict(options: Mapping[str, Any], source: str = "config", *,
                     flat_warning: Optional[type[Warning]] = DeprecationWarning) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested (or flat) options, naming unknown keys.

    Parameters
    ----------
    options : mapping
        ``{section: {option: value}}``; the flat form of earlier versions is converted.
    source : str
        Named in error messages (a file, a checkpoint).
    flat_warning : Warning subclass, optional
        Category of the one-line warning for the flat form (``None``: silent, as for
        checkpoints written with it).

    Raises
    ------
    ValueError
        An unknown key (the message lists the valid keys of its section, and says where
        an option of the flat form went) or inconsistent values.
    TypeError
        An option of the wrong type (named).

    Examples
    --------
    >>> config_from_dict({"data": {"files": "a.xyz"}, "optimiser": {"learning_rate": 1}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown key 'learning_rate' in section 'optimiser' of config; valid keys: name, lr, ...
    >>> config_from_dict({"data": "a.xyz", "lr": 0.01}, flat_warning=None).optimiser.lr
    0.01
    """
    if not isinstance(options, Mapping):
        raise TypeError(f"{source} must be a mapping of options, got {type(options).__name__}")
    if is_flat(options):
        nested = nest(options, source)
        if flat_warning is not None:
            warnings.warn(f"{source} uses the flat option form, which is deprecated; in sections it reads: "
                          f"{flow_yaml(nested)}", flat_warning, stacklevel=3)
        options = nested
    unknown = [k for k in options if k not in SECTIONS]
    if unknown:
        moved = {k: moved_to(k) for k in unknown if k in FLAT_OPTIONS}
        raise unknown_keys_error(unknown, list(SECTIONS), f"{source} (top level)", moved)
    return TrainConfig(**{name: _CLASSES[name].from_dict(options[name], source) for name in SECTIONS
                          if name in options})


def load_config(path: Union[str, os.PathLike]) -> TrainConfig:
    """Read a :class:`TrainConfig` from a YAML file (a file in the flat form loads with a
    ``FutureWarning`` that shows it in sections).

    Relative data paths stay relative to the working directory.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Invalid YAML, unknown options (named, with the valid ones) or inconsistent values.
    TypeError
        An option of the wrong type (named).
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path!r}")
    with open(path, encoding="utf-8") as handle:
        try:
            options = yaml.safe_load(handle)
        except yaml.YAMLError as err:
            raise ValueError(f"invalid YAML in {path!r}: {err}") from err
    return config_from_dict(options or {}, source=repr(path), flat_warning=FutureWarning)


def replace(config: TrainConfig, **sections: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with some options of some sections changed.

    >>> config = config_from_dict({"data": {"files": "a.xyz"}})
    >>> replace(config, run={"device": "cpu", "seed": 3}).run.seed
    3
    """
    changed = {name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    return dataclasses.replace(config, **changed)
