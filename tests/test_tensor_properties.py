"""Covariant tensor properties (dipoles, polarizabilities, Irreps) of ECSE(PET(output=T)),
the e3nn baseline, the calculator and the Cartesian <-> (l=0, l=2) decomposition."""
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

from ecse.backbones.e3nn_tensor import E3nnTensor, irreps_to_symmetric, symmetric_to_irreps  # noqa: E402
from ecse import ECSE  # noqa: E402
from ecse.atomistic import ECSECalculator  # noqa: E402
from ecse.atomistic import atoms_to_data as _atoms_to_data  # noqa: E402
from ecse.atomistic._metrics import irreducible_parts  # noqa: E402
from ecse.testing import assert_equivariant, random_rotation, relative_error, transform_output  # noqa: E402

from .models import small_pet  # noqa: E402

warnings.filterwarnings("ignore", message=".*TorchScript.*")


def atoms_to_data(atoms, **kw):  # these tests compare in float64 (the default follows torch's)
    return _atoms_to_data(atoms, **{"dtype": torch.float64, **kw})

OUTPUTS = ["vector", "rank2-symmetric", "rank2", "1x0e+1x1o+1x2e"]
WATER_DIMER = "water_tensors/water_dimer_coords_1000.xyz"
QM7X = "qm7x_tensors/qm7x_reduced_100_CHNO_mu_alpha.xyz"


def _random_cloud(seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    return Atoms(numbers=rng.choice([1, 6, 7, 8], size=7), positions=rng.uniform(-1.6, 1.6, size=(7, 3)))


@pytest.fixture(scope="module")
def molecules(shared_data):
    """Two water dimers (zero Lattice with pbc in the file: read as non-periodic), two
    QM7-X molecules and a random cloud, as one float64 batch."""
    import ase.io

    frames = ase.io.read(shared_data / WATER_DIMER, index=":2") + ase.io.read(shared_data / QM7X, index=":2")
    data = [atoms_to_data(a) for a in frames + [_random_cloud()]]
    assert not any(bool(d.pbc.any()) for d in data)
    return Batch.from_data_list(data)


def _as(batch: Batch, dtype: torch.dtype) -> Batch:
    out = batch.clone()
    out.pos, out.cell = batch.pos.to(dtype), batch.cell.to(dtype)
    return out


def _check_rotation(model, batch, output: str, seed: int = 0) -> float:
    """Relative error of ``model(rotated)`` against the rotated prediction (worst of 2 rotations)."""
    y = model(batch).detach()
    errors = []
    for k in range(2):
        R = random_rotation(torch.Generator().manual_seed(seed + k), torch.float64)
        rotated = batch.clone()
        rotated.pos = (batch.pos.double() @ R.T).to(batch.pos.dtype)
        errors.append(relative_error(model(rotated), transform_output(y, R, output)))
    return max(errors)


# --------------------------------------------------------------------------- covariance of ECSE(PET)
@pytest.mark.parametrize("mode", ["global", "local"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_wrapped_pet_tensor_exactly_covariant_float64(molecules, output, mode):
    model = ECSE(small_pet(output=output), cutoff=5.0, output=output, mode=mode).double().eval()
    y = model(molecules).detach()
    assert y.shape[0] == molecules.num_graphs and float(y.norm()) > 1e-3  # a non-trivial prediction
    errors = assert_equivariant(model, molecules, output=output, n_transforms=2, tol=1e-10)
    assert set(errors) == {"rotation", "translation", "permutation"}


@pytest.mark.parametrize("mode", ["global", "local"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_wrapped_pet_tensor_covariant_float32(molecules, output, mode):
    model = ECSE(small_pet(output=output).float(), cutoff=5.0, output=output, mode=mode).eval()
    assert _check_rotation(model, _as(molecules, torch.float32), output) <= 1e-5


@pytest.mark.parametrize("output", OUTPUTS)
def test_bare_pet_tensor_not_covariant(molecules, output):
    assert _check_rotation(small_pet(output=output).eval(), molecules, output) > 1e-4


@torch.no_grad()
def test_rank2_symmetric_output_is_symmetric(molecules):
    y = ECSE(small_pet(output="rank2-symmetric"), cutoff=5.0, output="rank2-symmetric").double()(molecules)
    assert float((y - y.transpose(1, 2)).abs().max()) < 1e-12 * float(y.abs().max())
    y = ECSE(small_pet(output="rank2"), cutoff=5.0, output="rank2").double()(molecules)
    assert float((y - y.transpose(1, 2)).abs().max()) > 1e-6  # general rank 2 keeps its antisymmetric part


# --------------------------------------------------------------------------- degenerate molecules
def _rotated(atoms: Atoms, seed: int) -> tuple[Atoms, np.ndarray]:
    """A copy centred at the origin and rotated by a random ``R`` (``x @ R.T``), and ``R``."""
    R = random_rotation(torch.Generator().manual_seed(seed)).numpy()
    out = atoms.copy()
    out.positions = (atoms.positions - atoms.positions.mean(0)) @ R.T
    return out, R


@pytest.mark.parametrize("mode", ["global", "local"])
def test_linear_molecule_dipole_along_axis(mode):
    atoms = _rotated(molecule("HCN"), seed=3)[0]  # linear, not centrosymmetric; axis in a random direction
    axis = atoms.positions[2] - atoms.positions[0]
    axis = torch.tensor(axis / np.linalg.norm(axis))
    data = atoms_to_data(atoms)
    model = ECSE(small_pet(output="vector"), cutoff=5.0, output="vector", mode=mode).double().eval()
    mu = model(data)[0].detach()
    assert float(torch.linalg.cross(mu, axis).norm()) <= 1e-10 * max(float(mu.norm()), 1.0)
    # no atom has a frame: the dipole is carried by the default (covariant) auxiliary model
    # (global) or by the axial readout of the direction-free copies (local), and is non-zero
    if mode == "global":
        assert model.last_stats["aux_weight_max"] > 0
    assert float(mu.norm()) > 1e-6
    bare = small_pet(output="vector")(data)[0].detach()  # the bare backbone has no such constraint
    assert float(torch.linalg.cross(bare, axis).norm()) > 1e-4 * float(bare.norm())


@pytest.mark.parametrize("output", ["rank2-symmetric", "rank2", "1x0e+1x1o+1x2e"])
def test_linear_molecule_tensors_are_axial_in_local_mode(output):
    # the only tensors a linear molecule's symmetry allows: a I + c n n^T (and, for Irreps,
    # the m = 0 parts about the axis); computed independently from the rotated axis
    atoms, R = _rotated(molecule("HCN"), seed=4)
    axis = torch.tensor(R[:, 2])  # ase's HCN lies along z
    model = ECSE(small_pet(output=output), cutoff=5.0, output=output, mode="local").double().eval()
    y = model(atoms_to_data(atoms))[0].detach()
    rot = torch.tensor(R)
    if output == "1x0e+1x1o+1x2e":
        mu, t = y[1:4], irreps_to_symmetric(torch.cat([y[:1], y[4:]]))
        assert float(torch.linalg.cross(mu, axis).norm()) <= 1e-10 * float(mu.norm())
    else:
        t = y
    in_axis_frame = rot.T @ t @ rot  # back to the molecule's own frame: diag(a, a, c)
    assert float((in_axis_frame - torch.diag(in_axis_frame.diagonal())).abs().max()) <= 1e-10 * float(t.norm())
    assert abs(float(in_axis_frame[0, 0] - in_axis_frame[1, 1])) <= 1e-10 * float(t.norm())
    assert abs(float(in_axis_frame[2, 2] - in_axis_frame[0, 0])) > 1e-6 * float(t.norm())  # not just isotropic


def _trans_dichloroethylene() -> Atoms:
    """trans-C2H2Cl2 (C2h): planar, exactly centrosymmetric (atoms at +p and -p)."""
    half = np.array([[0.667, 0.0, 0.0], [1.42, 1.2, 0.0], [1.25, -0.93, 0.0]])  # C, Cl, H
    atoms = Atoms("CClHCClH", positions=np.concatenate([half, -half]))
    return _rotated(atoms, seed=5)[0]


@pytest.mark.parametrize("mode", ["global", "local"])
def test_centrosymmetric_molecule_dipole(mode):
    atoms = _trans_dichloroethylene()
    normal = np.cross(atoms.positions[1] - atoms.positions[0], atoms.positions[2] - atoms.positions[0])
    normal = torch.tensor(normal / np.linalg.norm(normal))
    data = atoms_to_data(atoms)
    o3 = ECSE(small_pet(output="vector"), cutoff=5.0, output="vector", mode=mode, o3=True).double().eval()
    assert float(o3(data).detach().norm()) < 1e-10
    so3 = ECSE(small_pet(output="vector"), cutoff=5.0, output="vector", mode=mode).double().eval()
    mu = so3(data)[0].detach()
    # rotations alone only force the dipole onto the C2 axis (the plane's normal)
    assert float(mu.norm()) > 1e-6
    assert float(torch.linalg.cross(mu, normal).norm()) <= 1e-10 * float(mu.norm())


# --------------------------------------------------------------------------- e3nn baseline
@pytest.mark.parametrize("output,check_as", [("vector", "vector"), ("rank2-symmetric", "rank2-symmetric"),
                                             ("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e")])
def test_e3nn_baseline_exactly_equivariant(molecules, output, check_as):
    torch.manual_seed(0)
    model = E3nnTensor(output, hidden="8x0e+4x1o+4x2e", num_layers=2, dtype=torch.float32).double().eval()
    y = model(molecules).detach()
    assert float(y.norm()) > 1e-3
    errors = assert_equivariant(model, molecules, output=check_as, o3=True, n_transforms=2, tol=1e-10)
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


def test_e3nn_baseline_rank2_offsets_and_bad_input():
    model = E3nnTensor("rank2-symmetric", hidden="4x0e+2x1o+2x2e", num_layers=1, dtype=torch.float64)
    data = atoms_to_data(molecule("H2O"))
    before = model(data)[0].detach()
    model.set_composition_offsets({1: 1.0, 8: 2.0})
    shift = model(data)[0].detach() - before
    assert torch.allclose(shift, 4.0 * torch.eye(3, dtype=torch.float64), atol=1e-12)  # (2 + 1 + 1) I
    with pytest.raises(ValueError, match="unknown output"):
        E3nnTensor("tensor")
    with pytest.raises(ValueError, match="cannot produce"):
        E3nnTensor("1x3o", hidden="4x0e+2x1o")


# --------------------------------------------------------------------------- Cartesian <-> irreps
def test_symmetric_tensor_irreps_round_trip():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, 3, generator=g, dtype=torch.float64)
    t = a + a.transpose(1, 2)
    f = symmetric_to_irreps(t)
    assert f.shape == (5, 6)
    assert relative_error(irreps_to_symmetric(f), t) < 1e-14
    trace = torch.diagonal(t, dim1=1, dim2=2).sum(-1)
    assert relative_error(f[:, 0], trace / 3 ** 0.5) < 1e-14  # l=0 = tr(T)/sqrt(3)
    traceless = t - trace[:, None, None] / 3 * torch.eye(3, dtype=torch.float64)
    assert relative_error(f[:, 1:].norm(dim=1), traceless.flatten(1).norm(dim=1)) < 1e-14  # orthonormal l=2
    # the evaluation's parts: l=0 = tr/3, l=2 = the traceless Cartesian part
    parts = irreducible_parts(t.numpy(), "rank2-symmetric")
    assert np.allclose(parts["l=0"][:, 0], (f[:, 0] / 3 ** 0.5).numpy(), atol=1e-13)
    assert np.allclose(np.linalg.norm(parts["l=2"], axis=1), f[:, 1:].norm(dim=1).numpy(), atol=1e-13)
    # a rotation acts on the parts with e3nn's Wigner matrices (D^0 = 1, D^2)
    R = random_rotation(g)
    assert relative_error(symmetric_to_irreps(R @ t @ R.T), transform_output(f, R, "1x0e+1x2e")) < 1e-13
    with pytest.raises(ValueError):
        irreps_to_symmetric(torch.zeros(5))


# --------------------------------------------------------------------------- calculator
def test_calculator_tensor_properties_rotate_with_the_molecule():
    atoms = molecule("CH3OH")
    rotated, R = _rotated(atoms, seed=7)
    dip = ECSECalculator(ECSE(small_pet(output="vector"), cutoff=5.0, output="vector").double())
    pol = ECSECalculator(ECSE(small_pet(output="rank2-symmetric"), cutoff=5.0, output="rank2-symmetric").double())
    assert dip.implemented_properties == ["dipole"] and pol.implemented_properties == ["polarizability"]
    atoms.calc = dip
    mu = atoms.get_dipole_moment()
    rotated.calc = dip
    assert mu.shape == (3,) and np.linalg.norm(mu) > 1e-6
    assert np.linalg.norm(rotated.get_dipole_moment() - mu @ R.T) <= 1e-10 * np.linalg.norm(mu)
    alpha = pol.get_property("polarizability", atoms)
    alpha_rot = pol.get_property("polarizability", rotated)
    assert alpha.shape == (3, 3) and np.allclose(alpha, alpha.T, atol=1e-12)
    assert np.linalg.norm(alpha_rot - R @ alpha @ R.T) <= 1e-10 * np.linalg.norm(alpha)
    with pytest.raises(PropertyNotImplementedError):
        pol.get_property("energy", atoms)


def test_calculator_property_names_and_energy_models():
    atoms = molecule("H2O")
    calc = ECSECalculator(small_pet(output="1x0e+1x2e"), property_name="alpha_irreps")
    assert calc.get_property("alpha_irreps", atoms).shape == (6,)
    with pytest.raises(ValueError, match="property_name"):
        ECSECalculator(small_pet(output="1x0e+1x2e"))
    with pytest.raises(ValueError, match="property_name"):
        ECSECalculator(small_pet(), property_name="dipole")
    energy = ECSECalculator(ECSE(small_pet(), cutoff=5.0).double())
    assert "forces" in energy.implemented_properties
    atoms.calc = energy
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (3, 3)
    assert ECSECalculator(small_pet(output="vector"), property_name="mu").get_property("mu", atoms).shape == (3,)


def test_calculator_from_checkpoint(shared_data, tmp_path):
    from ecse.atomistic.training import train

    path = shared_data / "water_tensors" / "water_monomer_coords_1000.xyz"
    model = dict(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2, dim_feedforward=8,
                 head_hidden=8)
    res = train({"data": str(path), "data_index": ":8", "split_sizes": [6, 1, 1],
                 "targets": {"alpha": "rank2-symmetric"}, "model": model, "epochs": 1,
                 "output_dir": str(tmp_path), "progress": False}, log=None)
    atoms = _rotated(molecule("H2O"), seed=2)[0]
    calc = ECSECalculator.from_checkpoint(res["last_checkpoint"])
    assert calc.property_name == "polarizability" and isinstance(calc.model, ECSE)
    alpha = calc.get_property("polarizability", atoms)
    bare = ECSECalculator.from_checkpoint(res["last_checkpoint"], wrap=False, property_name="alpha")
    assert bare.get_property("alpha", atoms).shape == (3, 3) and not isinstance(bare.model, ECSE)
    rotated, R = _rotated(atoms, seed=4)
    assert np.linalg.norm(calc.get_property("polarizability", rotated) - R @ alpha @ R.T) \
        <= 1e-10 * np.linalg.norm(alpha)
