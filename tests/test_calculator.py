"""``ECSECalculator``'s input dtype: it follows the model's parameters unless given.

Energies, forces and tensors are compared with a direct call of the model on the same
structure (forces by a separate ``torch.autograd.grad``), in float32 and float64.
"""
import numpy as np
import pytest
import torch

pytest.importorskip("ase")
from ase.build import molecule  # noqa: E402

from ecse import ECSE  # noqa: E402
from ecse.atomistic import ECSECalculator, atoms_to_data  # noqa: E402
from ecse.backbones import PET  # noqa: E402

SMALL = dict(cutoff=4.0, d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2, dim_feedforward=8,
             head_hidden=8)


def _pet(dtype, **kwargs):
    torch.manual_seed(0)
    return PET(**SMALL, **kwargs).to(dtype).eval()


def _direct_energy_forces(model, atoms, dtype):
    data = atoms_to_data(atoms, dtype=dtype)
    data.pos.requires_grad_(True)
    energy = model(data).sum()
    (grad,) = torch.autograd.grad(energy, data.pos)
    return float(energy.detach()), (-grad).double().numpy()


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_dtype_follows_the_model(dtype, wrap):
    model = _pet(dtype)
    if wrap:
        model = ECSE(model, cutoff=4.0).to(dtype).eval()
    atoms = molecule("CH3OH")
    atoms.calc = ECSECalculator(model)
    assert atoms.calc.dtype == dtype
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert forces.dtype == np.float64
    ref_energy, ref_forces = _direct_energy_forces(model, atoms, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(energy - ref_energy) <= tol * max(1.0, abs(ref_energy))
    assert np.abs(forces - ref_forces).max() <= tol * max(1.0, np.abs(ref_forces).max())
    assert np.abs(ref_forces).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_model_default_dtype(dtype):
    model = _pet(dtype, output="vector")
    atoms = molecule("H2O")
    atoms.calc = ECSECalculator(model)
    dipole = atoms.get_dipole_moment()
    with torch.no_grad():
        ref = model(atoms_to_data(atoms, dtype=dtype))[0].double().numpy()
    assert np.allclose(dipole, ref, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-13)
    assert np.abs(ref).max() > 1e-4


def test_explicit_dtype_wins():
    model = _pet(torch.float32)
    calc = ECSECalculator(model, dtype=torch.float64)
    assert calc.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32  # the model is not converted
    atoms = molecule("CH4")
    atoms.calc = calc
    with pytest.raises(ValueError, match="float64 but the model's parameters are torch.float32"):
        atoms.get_potential_energy()
    atoms.calc = ECSECalculator(model, dtype=torch.float32)
    assert np.isfinite(atoms.get_potential_energy())


class _Harmonic(torch.nn.Module):
    """A model without parameters or buffers: ``sum |x|^2``."""

    def forward(self, data):
        return data.pos.pow(2).sum().reshape(1)


def test_parameter_free_model_gets_float64():
    atoms = molecule("CH4")
    atoms.calc = ECSECalculator(_Harmonic())
    assert atoms.calc.dtype == torch.float64
    assert np.allclose(atoms.get_forces(), -2 * atoms.positions, atol=1e-12)
