"""Atomistic tools: ASE structures -> PyG data, data sets, composition baselines, an
ASE calculator for (ECSE-wrapped) energy models such as ``ecse.backbones.PET``, and the
evaluation of trained checkpoints, bare and ECSE-wrapped (``ecse eval``).

Needs ``ase`` (optional dependency: ``pip install ecse[atomistic]``); ``import ecse``
does not import this subpackage.

Example
-------
>>> from ase.build import molecule
>>> from ecse.backbones import PET
>>> from ecse import ECSE
>>> from ecse.atomistic import ECSECalculator
>>> atoms = molecule("CH4")
>>> atoms.calc = ECSECalculator(ECSE(PET(d_model=16, num_gnn_layers=1), cutoff=5.0).double())
>>> energy = atoms.get_potential_energy()
"""
from .calculator import ECSECalculator
from .data import (apply_composition_baseline, atoms_to_data, composition_energy, fit_composition_baseline,
                   load_dataset, split_dataset)
from .evaluation import evaluate_checkpoint, evaluate_models

__all__ = [
    "ECSECalculator",
    "apply_composition_baseline",
    "atoms_to_data",
    "composition_energy",
    "evaluate_checkpoint",
    "evaluate_models",
    "fit_composition_baseline",
    "load_dataset",
    "split_dataset",
]
