"""ASE calculator for PET-like models (bare or ECSE-wrapped): energies, or one tensor.

An **energy model** (``output="scalar"``) gives ``energy``/``free_energy``, forces
:math:`-\\partial E / \\partial \\mathbf{x}` and, for fully periodic structures, the stress
:math:`\\sigma = V^{-1} \\partial E / \\partial \\varepsilon` (ASE sign convention, energy
unit per Å^3, Voigt order ``xx yy zz yz xz xy``), by autograd through
:func:`ecse.atomistic.derivatives.energy_and_forces` / :func:`ecse.atomistic.derivatives.energy_forces_stress`.

A **tensor model** (``PET(output="vector" | "rank2" | "rank2-symmetric" | Irreps)``, bare
or in ``ECSE(..., output=...)``) gives one per-structure tensor in ``results``: by default
``"dipole"`` (shape ``(3,)``) for vectors and ``"polarizability"`` (``(3, 3)``) for rank-2
tensors; Irreps outputs (``(irreps.dim,)``) need a ``property_name``. ``atoms.get_dipole_moment()``
then works as usual, and ``calc.get_property("polarizability", atoms)`` reads the tensor.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch import nn

from .._validation import _reference
from ..covariant import OutputSpec
from .data import atoms_to_data
from .derivatives import energy_and_forces, energy_forces_stress

__all__ = ["ECSECalculator"]

_ENERGY_PROPERTIES = ["energy", "free_energy", "forces", "stress"]


def _model_output(model: nn.Module) -> str:
    """The output type a model declares through its ``spec`` (PET, ECSE), else ``"scalar"``."""
    spec = getattr(model, "spec", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) else "scalar"


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating-point parameter (else buffer); float64 if none."""
    ref = _reference(model)
    return torch.float64 if ref is None else ref.dtype


def _default_property(spec: OutputSpec) -> Optional[str]:
    """``results`` key of a tensor model: ``"dipole"`` (vectors), ``"polarizability"`` (rank-2)."""
    return "dipole" if spec.is_vector else "polarizability" if spec.is_rank2 else None


class ECSECalculator(Calculator):
    """ASE calculator wrapping an energy model ``model(data) -> [B]`` or a tensor model
    ``model(data) -> [B, 3]``, ``[B, 3, 3]``, ``[B, irreps.dim]``.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. ``backbones.PET(...)``, ``ecse.ECSE(PET(...), cutoff=5.0)`` or
        ``ECSE(PET(output="vector"), cutoff=5.0, output="vector")``; it reads ``pos``,
        ``z``, ``cell`` and ``pbc`` (see :func:`ecse.atomistic.atoms_to_data`) and builds
        its own neighbour list. It is put in ``eval()`` mode.
    dtype : torch.dtype, optional
        Floating dtype of the inputs; default: that of the model's first floating-point
        parameter (else buffer; float64 for a model without either), so a float32 model
        gets float32 inputs. A ``dtype`` given here wins and must match the model's
        parameters (the model is not converted). Results are returned in float64.
    device : str or torch.device
        Device the model lives on.
    output : str, optional
        The model's output type (``"scalar"`` for energies, ``"vector"``, ``"rank2"``,
        ``"rank2-symmetric"`` or an e3nn Irreps string); default: ``model.spec.name``
        when the model has one (PET, ECSE), else ``"scalar"``.
    property_name : str, optional
        Key of a tensor model's prediction in ``results``: default ``"dipole"`` for
        vectors and ``"polarizability"`` for rank-2 outputs; required for Irreps.
    **kwargs
        Passed to ``ase.calculators.calculator.Calculator``.

    Notes
    -----
    Energy models: ``energy``/``free_energy`` and ``forces`` are always computed;
    ``stress`` only for fully periodic structures (requesting it otherwise raises ASE's
    ``PropertyNotImplementedError``). Tensor models provide only their tensor (asking
    them for an energy raises ``PropertyNotImplementedError``). Units are those the model
    was trained in: eV and Å for the usual energy data sets; for ``water_tensors`` and
    ``qm7x_tensors`` atomic units (dipole e·bohr, polarizability bohr^3), positions in Å
    (ASE's own ``dipole`` convention is e·Å: convert if you mix them).

    Examples
    --------
    >>> import torch
    >>> from ase.build import molecule
    >>> from ecse.backbones import PET
    >>> atoms = molecule("CH4")
    >>> atoms.calc = ECSECalculator(PET(d_model=16, num_gnn_layers=1).double())
    >>> atoms.get_forces().shape
    (5, 3)
    >>> small = dict(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2,
    ...              dim_feedforward=8, head_hidden=8)
    >>> atoms.calc = ECSECalculator(PET(output="vector", **small).double())
    >>> atoms.get_dipole_moment().shape
    (3,)
    """

    implemented_properties = list(_ENERGY_PROPERTIES)

    def __init__(self, model: nn.Module, dtype: Optional[torch.dtype] = None,
                 device: Union[str, torch.device] = "cpu", output: Optional[str] = None,
                 property_name: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device).eval()
        self.dtype = _model_dtype(self.model) if dtype is None else dtype
        self.device = torch.device(device)
        self.output = _model_output(model) if output is None else output
        self.spec = OutputSpec(self.output)  # validates the type
        if self.spec.is_scalar:
            if property_name is not None:
                raise ValueError(f"property_name={property_name!r} is for tensor models; this one predicts "
                                 "energies (output='scalar')")
            self.property_name = None
            self.implemented_properties = list(_ENERGY_PROPERTIES)
        else:
            name = property_name or _default_property(self.spec)
            if name is None:
                raise ValueError(f"a model with output={self.output!r} needs a property_name (the key of its "
                                 "prediction in calc.results)")
            if name in _ENERGY_PROPERTIES:
                raise ValueError(f"property_name={name!r} is reserved for energy models")
            self.property_name = name
            self.implemented_properties = [name]

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], wrap: bool = True, dtype: torch.dtype = torch.float64,
                        device: Union[str, torch.device] = "cpu", property_name: Optional[str] = None,
                        **kwargs) -> "ECSECalculator":
        """A calculator for the model of a training checkpoint (``last.pt``/``best.pt``).

        ``wrap=True`` (default) symmetrises it with ``ECSE`` (exactly equivariant),
        ``False`` uses the bare backbone. The output type (energy or tensor) comes from
        the checkpoint's targets; the model is converted to ``dtype``.
        """
        from .training import load_model

        model = load_model(path, wrap=wrap).to(dtype=dtype, device=device)
        return cls(model, dtype=dtype, device=device, property_name=property_name, **kwargs)

    def calculate(self, atoms=None, properties: Optional[Sequence[str]] = None,
                  system_changes: Sequence[str] = all_changes) -> None:
        default = ["energy"] if self.property_name is None else [self.property_name]
        super().calculate(atoms, properties or default, system_changes)
        data = atoms_to_data(self.atoms, dtype=self.dtype).to(self.device)
        if self.property_name is not None:
            with torch.no_grad():
                y = self.model(data)
            expected = (1, *self.spec.component_shape)
            if tuple(y.shape) != expected:
                raise ValueError(f"the model returned shape {tuple(y.shape)} for one structure; output="
                                 f"{self.output!r} needs {expected}")
            self.results[self.property_name] = y.detach()[0].cpu().double().numpy().astype(np.float64)
            return
        with torch.enable_grad():
            if bool(data.pbc.all()):
                energy, forces, stress = energy_forces_stress(self.model, data)
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress[0].detach().cpu().double().numpy())
            else:
                energy, forces = energy_and_forces(self.model, data)
        self.results["energy"] = self.results["free_energy"] = float(energy.detach().reshape(-1)[0])
        self.results["forces"] = forces.detach().cpu().double().numpy().astype(np.float64)
