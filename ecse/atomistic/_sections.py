"""The data, loss, optimiser and run sections of a training configuration
(:mod:`ecse.atomistic.config`), each option documented where it is defined.

>>> DataOptions(files="a.xyz").split_sizes
[0.8, 0.1, 0.1]
>>> OptimiserOptions(epochs=10, warmup_epochs=20)
Traceback (most recent call last):
...
ValueError: need lr > 0 and 0 <= warmup_epochs <= epochs (section 'optimiser'), got lr 0.001, warmup_epochs 20.0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ._options import Section

__all__ = ["DataOptions", "LossOptions", "OptimiserOptions", "RunOptions"]

#: ``data.split_sizes``'s default: fractions of ``files`` for training, validation and test
DEFAULT_SPLIT = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class DataOptions(Section):
    """Where the structures and their targets come from, and how they are augmented."""

    section = "data"

    files: Union[str, list[str], None] = None
    """File(s) readable by ASE, concatenated and split randomly by ``split_sizes``. Give
    either ``files`` or ``train_file`` (with optional ``val_file``/``test_file``)."""
    train_file: Optional[str] = None
    """Training structures (explicit split files: no random split)."""
    val_file: Optional[str] = None
    """Validation structures (with ``train_file``; none: the best epoch is the one with
    the lowest training loss)."""
    test_file: Optional[str] = None
    """Test structures (with ``train_file``), evaluated after training."""
    index: str = ":"
    """ASE index applied to every file (e.g. ``":100"`` for the first 100 structures)."""
    split_sizes: list[Union[int, float]] = field(default_factory=lambda: list(DEFAULT_SPLIT))
    """``[train, val, test]`` counts or fractions of the structures of ``files`` (not used,
    and refused if changed, with ``train_file``)."""
    targets: Optional[dict[str, str]] = None
    """``{key in the files: type}``, type ``energy``, ``forces``, ``stress``, ``vector``,
    ``rank2``, ``rank2-symmetric`` or an e3nn Irreps string (see
    :mod:`ecse.atomistic.targets`). A model predicts either an energy (forces and stress
    by autograd) or exactly one tensor. ``null``: ``{energy_key: energy, forces_key:
    forces}``, plus ``{stress_key: stress}`` when the loss's ``stress_weight > 0``."""
    energy_key: str = "energy"
    """Name of the energy in the files (when ``targets`` is ``null``)."""
    forces_key: str = "forces"
    """Name of the forces in the files (when ``targets`` is ``null``)."""
    stress_key: str = "stress"
    """Name of the stress in the files (when ``targets`` is ``null``)."""
    augment_rotations: bool = True
    """A random rotation per structure and step, applied to the positions, the cell and
    every target (forces, stress, tensors)."""
    augment_inversion: bool = False
    """Also invert each structure with probability 1/2."""

    def check(self) -> None:
        if (self.files is None) == (self.train_file is None):
            raise ValueError("section 'data': give exactly one of 'files' (split by 'split_sizes') or 'train_file'")
        if self.files is not None and (self.val_file is not None or self.test_file is not None):
            raise ValueError("section 'data': 'val_file'/'test_file' go with 'train_file', not with 'files'")
        if self.train_file is not None and list(self.split_sizes) != list(DEFAULT_SPLIT):
            raise ValueError("section 'data': 'split_sizes' splits 'files'; with 'train_file' the split is "
                             "given by the files (val_file, test_file)")
        if len(self.split_sizes) != 3:
            raise ValueError(f"section 'data': 'split_sizes' needs 3 entries [train, val, test], "
                             f"got {self.split_sizes}")


@dataclass(frozen=True)
class LossOptions(Section):
    """The loss, ``energy_weight * MSE(E/N) / sE**2 + forces_weight * MSE(F) / sF**2 +
    stress_weight * MSE(stress) / sS**2``, with ``sE`` the training-set std of the
    per-atom energy after the composition baseline and ``sF``, ``sS`` those of the force
    and stress components. A tensor target's loss is ``MSE(components) / sT**2`` (``sT``
    its components' std, after the isotropic composition baseline for rank-2 targets); an
    Irreps target divides each ``mul x irrep`` group by its own std."""

    section = "loss"

    energy_weight: float = 0.1
    """Weight of the per-atom energy term."""
    forces_weight: float = 1.0
    """Weight of the force term."""
    stress_weight: float = 0.0
    """Weight of the stress term (0: no stress target; needs periodic structures)."""
    scale_outputs: bool = True
    """Multiply PET's learned outputs by a training-set scale (``PET.set_output_scale``):
    the force-component std when forces are trained (MACE's convention), else the std of
    the per-atom energy or of the tensor target, so a new model predicts at the targets'
    magnitude."""

    def check(self) -> None:
        self.positive("energy_weight", "forces_weight", "stress_weight", minimum=0)


@dataclass(frozen=True)
class OptimiserOptions(Section):
    """Optimiser, batches and learning-rate schedule (per optimisation step)."""

    section = "optimiser"

    name: Literal["adam", "adamw"] = "adam"
    """``adam`` (``torch.optim.Adam``) or ``adamw`` (decoupled weight decay)."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """Weight decay of the optimiser."""
    epochs: int = 100
    """Passes over the training split; the schedule spans them."""
    batch_size: int = 8
    """Structures per optimisation step (the global batch under ``torchrun``)."""
    val_batch_size: Optional[int] = None
    """Structures per validation and test batch (``null``: ``batch_size``)."""
    micro_batch_atoms: Optional[int] = 256
    """Atoms per forward and backward pass of a training step: the step's structures run
    in consecutive groups of at most this many atoms (a larger structure runs alone) whose
    gradients add up to the whole batch's, so a step's memory is about one group's.
    Training on forces keeps every activation for the second derivatives (about 20 MB
    per atom for PET's published sizes in a dense liquid or metal, float32), which
    ``model.chunk_tokens`` does not bound.  ``null``: the whole batch in one pass."""
    warmup_epochs: float = 0.0
    """Linear warm-up of the learning rate over this many epochs."""
    decay: Literal["cosine", "step", "constant"] = "cosine"
    """Schedule after the warm-up: cosine to ``min_lr_ratio * lr`` at the last step,
    ``step`` (times ``decay_gamma`` every ``decay_step_epochs``) or ``constant``."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine decay, as a fraction of ``lr``."""
    decay_step_epochs: int = 10
    """Epochs between the decays of ``decay: step``."""
    decay_gamma: float = 0.5
    """Factor of each decay of ``decay: step``."""
    grad_clip: Optional[float] = None
    """Clip the gradient norm to this value (``null``: no clipping)."""

    def check(self) -> None:
        self.positive("epochs", "batch_size", "val_batch_size", "decay_step_epochs", "micro_batch_atoms")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"need lr > 0 and 0 <= warmup_epochs <= epochs (section 'optimiser'), "
                             f"got lr {self.lr}, warmup_epochs {self.warmup_epochs}")


@dataclass(frozen=True)
class RunOptions(Section):
    """Where and how the run executes: seed, precision, device, outputs and budgets."""

    section = "run"

    seed: int = 0
    """Seed of the split, the initialisation, the shuffling and the augmentation."""
    dtype: Literal["float32", "float64"] = "float32"
    """Precision of the model and the data."""
    device: str = "cpu"
    """Torch device (``cuda`` becomes ``cuda:LOCAL_RANK`` under ``torchrun``)."""
    num_threads: Optional[int] = None
    """Torch CPU threads (``null``: torch's choice)."""
    output_dir: str = "runs/pet"
    """Folder of ``last.pt``, ``best.pt`` and ``log.csv``."""
    checkpoint_every: Optional[int] = None
    """Also write ``last.pt`` every this many optimisation steps (``null``: at epoch ends
    only), so a killed run resumes exactly from a recent step."""
    max_steps: Optional[int] = None
    """Stop, after checkpointing, at this global step count (``null``: no limit)."""
    max_time: Optional[float] = None
    """Wall-clock budget in seconds of one ``train`` call, data loading included
    (``null``: none). The run stops after the step that exceeds it, checkpoints,
    validates a state it stopped mid-epoch (written to ``best.pt`` when it beats the best
    epoch) and computes the test metrics with the best-validation model (the last one
    when no epoch has finished). A resumed run gets a new budget; the learning-rate
    schedule still spans ``epochs``."""
    progress: Optional[bool] = None
    """A tqdm bar per epoch (``null``: when stderr is a terminal)."""
    backend: Optional[Literal["gloo", "nccl"]] = None
    """``torch.distributed`` backend under ``torchrun`` (``null``: ``nccl`` on CUDA, else
    ``gloo``)."""

    def check(self) -> None:
        self.positive("checkpoint_every")
        self.positive("max_steps", minimum=0)
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"config option 'max_time' (section 'run') must be a positive number of seconds, "
                             f"got {self.max_time}")
