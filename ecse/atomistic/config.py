"""Training configuration of atomistic models (:func:`ecse.atomistic.training.train`).

A configuration is a :class:`TrainConfig` dataclass, usually read from YAML with
:func:`load_config`. Every field has a documented default, so a minimal YAML file only
names the data, e.g.::

    data: methane_train.xyz
    split_sizes: [0.8, 0.1, 0.1]
    model: {d_model: 64, num_gnn_layers: 2}
    epochs: 50
    output_dir: runs/methane

A tensor property instead of energies (one tensor per model; see
:mod:`ecse.atomistic.targets`)::

    data: water_monomer_coords_1000.xyz
    targets: {alpha: rank2-symmetric}

Needs ``pyyaml`` for :func:`load_config` (``pip install ecse[atomistic]``).
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

__all__ = ["TrainConfig", "load_config", "config_from_dict"]


@dataclass
class TrainConfig:
    """All options of a training run (defaults in brackets).

    Data
    ----
    data : str or list of str, optional
        File(s) readable by ASE, concatenated and split randomly by ``split_sizes``.
        Give either ``data`` or ``train_file`` (with optional ``val_file``/``test_file``).
    train_file, val_file, test_file : str, optional
        Explicit split files (no random split).
    data_index : str
        ASE index applied to every file (``":"``, e.g. ``":100"`` for the first 100).
    energy_key, forces_key, stress_key : str
        Target names in the files (``"energy"``, ``"forces"``, ``"stress"``) used when
        ``targets`` is not given.
    targets : dict, optional
        ``{key in the files: type}`` with type ``energy``, ``forces``, ``stress``,
        ``vector``, ``rank2``, ``rank2-symmetric`` or an e3nn Irreps string. A model
        predicts either an energy (with forces and/or stress by autograd) or exactly
        one tensor. Default (None): ``{energy_key: energy, forces_key: forces}``, plus
        ``{stress_key: stress}`` when ``stress_weight > 0``. See
        :mod:`ecse.atomistic.targets` for the shapes read from the files.
    split_sizes : list
        ``[train, val, test]`` counts or fractions for ``data`` (``[0.8, 0.1, 0.1]``).
    seed : int
        Seed of the split, the initialisation, the shuffling and the augmentation (0).

    Model
    -----
    model : dict
        Keyword arguments of ``ecse.backbones.PET`` (``cutoff``, ``d_model``, ...; unlisted
        ones keep PET's defaults).
    scale_outputs : bool
        Multiply PET's learned outputs by a training-set scale (``PET.set_output_scale``):
        the force-component std when forces are trained (MACE's convention), else the
        std of the energy per atom or of the tensor target (True). A fresh model then
        predicts forces of the right magnitude, instead of about 50x too small.
    ecse_in_loop : bool
        Train through ``ECSE(PET)`` (fine-tuning of the symmetrised model; False).
    ecse : dict
        Extra keyword arguments of ``ECSE`` (``cutoff`` defaults to PET's cutoff), used
        in the loop and whenever a checkpoint is loaded wrapped. Default
        ``{num_prunings: 0}``: no frame pruning. The published pruning (threshold 0.9,
        4 rounds) switches frames on and off over a narrow range of weights; with a
        backbone that is only approximately invariant this makes the wrapped forces
        steep there (measured on the demo's methane PET: force MAE 432 meV/Å with
        pruning, 356 without, bare 352, before the output scale; 30-minute PET:
        213.1, 210.1 and 210.2; NVE MD with pruning did not conserve energy at
        0.5 fs). Without pruning it costs more frames (methane 20.7 instead of 3.4 per
        structure); ``{}`` restores the published settings, ``{mode: local}`` selects
        the per-atom ensemble.

    Optimisation
    ------------
    epochs (100), batch_size (8), val_batch_size (None: ``batch_size``),
    optimizer ("adam" | "adamw"), lr (1e-3), weight_decay (0.0),
    warmup_epochs (0.0, linear warm-up), decay ("cosine" | "step" | "constant"),
    min_lr_ratio (0.0, floor of the cosine), decay_step_epochs (10) and decay_gamma (0.5)
    for ``"step"``, grad_clip (None: no clipping of the gradient norm).

    Loss
    ----
    energy_weight (0.1), forces_weight (1.0), stress_weight (0.0 = off): the loss is
    ``energy_weight * MSE(E/N) / sE**2 + forces_weight * MSE(F) / sF**2
    + stress_weight * MSE(stress) / sS**2`` with ``sE`` the training-set std of the
    per-atom energy after the composition baseline and ``sF``, ``sS`` those of the
    force and stress components (stress needs periodic structures). A tensor target's
    loss is ``MSE(components) / sT**2``, ``sT`` the training-set std of its components
    (after the isotropic composition baseline for rank-2 targets); an Irreps target
    divides each ``mul x irrep`` group by its own std instead (so a polarizability
    trained as ``1x0e+1x2e`` weighs its l=0 and l=2 parts alike).

    Augmentation
    ------------
    augment_rotations (True): a random rotation per structure and step (positions,
    cell, forces, stress and tensor targets); augment_inversion (False): also invert
    with probability 1/2.

    Run
    ---
    dtype ("float32" | "float64"), device ("cpu"), num_threads (None: torch's choice),
    output_dir ("runs/pet"), checkpoint_every (None: only at epoch ends; else also every
    this many optimisation steps, for exact resumption of a killed run),
    max_steps (None: stop, after checkpointing, at this global step count),
    max_time (None: wall-clock budget in seconds of one ``train`` call, data loading
    included; the run stops cleanly after the step that exceeds it, checkpoints,
    validates the stopped state when it stopped mid-epoch (and writes it to ``best.pt``
    when it beats the best epoch), and computes the test metrics with the best-validation
    model, or the last one when no epoch has finished; a resumed run gets a new budget;
    the learning-rate schedule still spans ``epochs``), progress (None: a
    tqdm bar per epoch when stderr is a terminal; True/False force it on/off),
    backend (None: ``"nccl"`` on CUDA, else ``"gloo"``; used only when launched by
    ``torchrun`` with several processes, see :mod:`ecse.atomistic.training`).
    """

    data: Union[str, list, None] = None
    train_file: Optional[str] = None
    val_file: Optional[str] = None
    test_file: Optional[str] = None
    data_index: str = ":"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    targets: Optional[dict] = None
    split_sizes: list = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    model: dict = field(default_factory=dict)
    scale_outputs: bool = True
    ecse_in_loop: bool = False
    ecse: dict = field(default_factory=lambda: {"num_prunings": 0})
    epochs: int = 100
    batch_size: int = 8
    val_batch_size: Optional[int] = None
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    decay: Literal["cosine", "step", "constant"] = "cosine"
    min_lr_ratio: float = 0.0
    decay_step_epochs: int = 10
    decay_gamma: float = 0.5
    grad_clip: Optional[float] = None
    energy_weight: float = 0.1
    forces_weight: float = 1.0
    stress_weight: float = 0.0
    augment_rotations: bool = True
    augment_inversion: bool = False
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    num_threads: Optional[int] = None
    output_dir: str = "runs/pet"
    checkpoint_every: Optional[int] = None
    max_steps: Optional[int] = None
    max_time: Optional[float] = None
    progress: Optional[bool] = None
    backend: Optional[Literal["gloo", "nccl"]] = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise TypeError(f"config option {f.name!r}: expected {_describe(hints[f.name])}, "
                                f"got {value!r} ({type(value).__name__})")
            if hints[f.name] in (float, Optional[float]) and isinstance(value, int):
                setattr(self, f.name, float(value))
        if (self.data is None) == (self.train_file is None):
            raise ValueError("give exactly one of 'data' (split by 'split_sizes') or 'train_file'")
        if self.data is not None and (self.val_file is not None or self.test_file is not None):
            raise ValueError("'val_file'/'test_file' go with 'train_file', not with 'data'")
        for name in ("epochs", "batch_size", "val_batch_size", "checkpoint_every", "max_steps",
                     "decay_step_epochs"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "max_steps" else 1):
                raise ValueError(f"config option {name!r} must be positive, got {value}")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"need lr > 0 and 0 <= warmup_epochs <= epochs, got {self.lr}, {self.warmup_epochs}")
        if len(self.split_sizes) != 3:
            raise ValueError(f"'split_sizes' needs 3 entries [train, val, test], got {self.split_sizes}")
        for name in ("energy_weight", "forces_weight", "stress_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"config option {name!r} must be >= 0, got {getattr(self, name)}")
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"config option 'max_time' must be a positive number of seconds, got {self.max_time}")
        from .targets import target_types

        target_types(self)  # validates 'targets' (types, combinations) with a clear error

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the options (for checkpoints and YAML)."""
        return dataclasses.asdict(self)


def _matches(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or tp)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def config_from_dict(options: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig`, naming unknown options in the error.

    Examples
    --------
    >>> config_from_dict({"data": "a.xyz", "lr": 1}).lr
    1.0
    >>> config_from_dict({"data": "a.xyz", "learning_rate": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown option(s) in config: 'learning_rate' (known: ...)
    """
    if not isinstance(options, Mapping):
        raise TypeError(f"{source} must be a mapping of options, got {type(options).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ValueError(f"unknown option(s) in {source}: {', '.join(repr(k) for k in unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    return TrainConfig(**options)


def load_config(path: Union[str, os.PathLike]) -> TrainConfig:
    """Read a :class:`TrainConfig` from a YAML file.

    Relative data paths stay relative to the working directory.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Invalid YAML, unknown options (named) or inconsistent values.
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
    return config_from_dict(options or {}, source=repr(path))
