"""ASE calculator for PET-like energy models (bare or ECSE-wrapped).

Forces are :math:`-\\partial E / \\partial \\mathbf{x}` and stress the strain derivative
:math:`\\sigma = V^{-1} \\partial E / \\partial \\varepsilon` (ASE sign convention, energy
unit per Å^3, Voigt order ``xx yy zz yz xz xy``), both by autograd through
:func:`backbones.energy_and_forces` / :func:`backbones.energy_forces_stress`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch import nn

from backbones import energy_and_forces, energy_forces_stress

from .data import atoms_to_data

__all__ = ["ECSECalculator"]


class ECSECalculator(Calculator):
    """ASE calculator wrapping an energy model ``model(data) -> [B]``.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. ``backbones.PET(...)`` or ``ecse.ECSE(PET(...), cutoff=5.0)``; it reads
        ``pos``, ``z``, ``cell`` and ``pbc`` (see :func:`ecse.atomistic.atoms_to_data`)
        and builds its own neighbour list. It is put in ``eval()`` mode.
    dtype : torch.dtype
        Floating dtype of the inputs (match the model's parameters).
    device : str or torch.device
        Device the model lives on.
    **kwargs
        Passed to ``ase.calculators.calculator.Calculator``.

    Notes
    -----
    ``energy``/``free_energy`` and ``forces`` are always computed; ``stress`` only for
    fully periodic structures (requesting it otherwise raises ASE's
    ``PropertyNotImplementedError``). Units are those the model was trained in
    (eV and Å for the usual data sets).

    Examples
    --------
    >>> import torch
    >>> from ase.build import molecule
    >>> from backbones import PET
    >>> atoms = molecule("CH4")
    >>> atoms.calc = ECSECalculator(PET(d_model=16, num_gnn_layers=1).double())
    >>> atoms.get_forces().shape
    (5, 3)
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float64,
                 device: Union[str, torch.device] = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device).eval()
        self.dtype, self.device = dtype, torch.device(device)

    def calculate(self, atoms=None, properties: Optional[Sequence[str]] = None,
                  system_changes: Sequence[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        data = atoms_to_data(self.atoms, dtype=self.dtype).to(self.device)
        with torch.enable_grad():
            if bool(data.pbc.all()):
                energy, forces, stress = energy_forces_stress(self.model, data)
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress[0].detach().cpu().double().numpy())
            else:
                energy, forces = energy_and_forces(self.model, data)
        self.results["energy"] = self.results["free_energy"] = float(energy.detach().reshape(-1)[0])
        self.results["forces"] = forces.detach().cpu().double().numpy().astype(np.float64)

