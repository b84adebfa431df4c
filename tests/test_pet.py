"""Tests of the PET backbone (backbones/pet.py): gradients, invariances, smoothness, ECSE."""
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch, Data

from ecse.backbones._pet_utils import reverse_edges
from ecse.backbones.pet import PET
from ecse.atomistic.derivatives import energy_and_forces, energy_forces_stress
from ecse import ECSE
from ecse.frameset import PUBLISHED
from ecse.neighbors import neighbor_list
from ecse.testing import random_rotation

from .models import small_pet

DATA = Path("/work/shared/data")
F64 = torch.float64


def methane(seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.tensor([[0., 0, 0], [.63, .63, .63], [-.63, -.63, .63], [-.63, .63, -.63], [.63, -.63, -.63]])
    return Data(pos=(pos + 0.1 * torch.randn(5, 3, generator=g)).to(F64), z=torch.tensor([6, 1, 1, 1, 1]))


def box(seed=0):
    """4 atoms in a small triclinic cell; with cutoff 3.0 atoms see several images of each other."""
    g = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[3.2, 0, 0], [0.3, 3.0, 0], [-0.2, 0.4, 3.4]], dtype=F64)
    frac = torch.rand(4, 3, generator=g, dtype=F64)
    return Data(pos=frac @ cell, z=torch.tensor([8, 1, 1, 8]), cell=cell[None],
                pbc=torch.ones(1, 3, dtype=torch.bool))


def rotated(data, R):
    out = data.clone()
    out.pos = data.pos @ R.T
    if getattr(data, "cell", None) is not None:
        out.cell = data.cell @ R.T
    return out


def rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def finite_difference_forces(model, data, h=1e-5):
    """Central differences of the energy, one coordinate at a time."""
    fd = torch.zeros_like(data.pos)
    for i in range(data.pos.shape[0]):
        for a in range(3):
            plus, minus = data.clone(), data.clone()
            plus.pos[i, a] += h
            minus.pos[i, a] -= h
            fd[i, a] = -(model(plus) - model(minus)).item() / (2 * h)
    return fd


@pytest.mark.parametrize("make, cutoff", [(methane, 5.0), (box, 3.0)])
def test_forces_match_finite_differences(make, cutoff):
    model, data = small_pet(cutoff=cutoff), make()
    _, forces = energy_and_forces(model, data)
    fd = finite_difference_forces(model, data)
    assert rel(forces, fd) < 1e-7


def test_stress_matches_finite_strain():
    model, data = small_pet(cutoff=3.0), box(1)
    energy, _, stress = energy_forces_stress(model, data)
    assert torch.allclose(energy, model(data))
    volume, h, fd = torch.linalg.det(data.cell[0]).abs(), 1e-5, torch.zeros(3, 3, dtype=F64)
    for a in range(3):
        for b in range(3):
            strain = torch.zeros(3, 3, dtype=F64)
            strain[a, b] += h / 2
            strain[b, a] += h / 2
            values = []
            for sign in (1, -1):
                d = data.clone()
                d.pos, d.cell = data.pos @ (torch.eye(3, dtype=F64) + sign * strain), data.cell @ (
                    torch.eye(3, dtype=F64) + sign * strain)
                values.append(model(d).item())
            fd[a, b] = (values[0] - values[1]) / (2 * h) / volume
    assert rel(stress[0], fd) < 1e-7 and float(stress.abs().max()) > 1e-4


@pytest.mark.parametrize("make, cutoff", [(methane, 5.0), (box, 3.0)])
def test_permutation_and_translation_invariance(make, cutoff):
    model, data = small_pet(cutoff=cutoff, level="node"), make()
    per_atom = model(data)
    perm = torch.randperm(data.pos.shape[0], generator=torch.Generator().manual_seed(1))
    permuted = data.clone()
    permuted.pos, permuted.z = data.pos[perm], data.z[perm]
    assert torch.allclose(model(permuted), per_atom[perm], rtol=1e-12, atol=1e-12)
    shifted = data.clone()
    shifted.pos = data.pos + torch.tensor([0.37, -1.3, 2.1], dtype=F64)
    assert torch.allclose(model(shifted), per_atom, rtol=1e-10, atol=1e-10)
    graph = small_pet(cutoff=cutoff)(data)
    assert torch.allclose(graph, per_atom.sum().reshape(1), rtol=1e-12)


def test_batch_equals_one_by_one():
    model = small_pet(cutoff=3.0)
    molecules = [methane(0), methane(1)]
    for m in molecules:  # open structures inside a periodic batch: zero cell, no pbc
        m.cell, m.pbc = torch.zeros(1, 3, 3, dtype=F64), torch.zeros(1, 3, dtype=torch.bool)
    items = [molecules[0], box(0), molecules[1], box(2)]
    batched = model(Batch.from_data_list(items))
    single = torch.cat([model(d) for d in items])
    assert batched.shape == (4,)
    assert torch.allclose(batched, single, rtol=1e-12, atol=1e-12)
    plain = methane(0)
    assert torch.allclose(model(plain), single[0], rtol=1e-12)


def test_reverse_edges_periodic():
    data = box(0)
    nl = neighbor_list(data.pos, 4.0, None, data.cell, data.pbc)
    rev = reverse_edges(nl.center, nl.neighbor, nl.vector)
    assert torch.equal(nl.center[rev], nl.neighbor) and torch.equal(nl.neighbor[rev], nl.center)
    assert torch.equal(nl.vector[rev], -nl.vector) and torch.equal(rev[rev], torch.arange(rev.numel()))
    assert (nl.center == nl.neighbor).any()  # self-images are present and matched


def test_smooth_when_an_atom_crosses_the_cutoff():
    """Atom 3 moves along +x through r = R_CUT from atom 0; it is out of reach of the others."""
    model = small_pet()  # published cutoff 5.0, switch width 0.2
    base = torch.tensor([[0., 0, 0], [-1, 0, 0], [0, 1.1, 0], [0, 0, 0]], dtype=F64)
    z = torch.tensor([6, 1, 8, 1])

    def jumps(step):
        r = torch.arange(4.95, 5.05 + step / 2, step, dtype=F64)
        pos = base.repeat(len(r), 1, 1)
        pos[:, 3, 0] = r
        batch = Batch.from_data_list([Data(pos=p, z=z) for p in pos])
        energy, forces = energy_and_forces(model, batch)
        forces = forces.reshape(len(r), 4, 3)
        return energy.diff().abs().max(), (forces[1:] - forces[:-1]).abs().max(), forces

    e_coarse, f_coarse, forces = jumps(1e-3)
    e_fine, f_fine, _ = jumps(1e-4)
    assert float(forces[:len(forces) // 2, 3].abs().max()) > 1e-6  # atom 3 does interact inside
    assert forces[-1, 3].abs().max() < 1e-12  # and not at all beyond the cutoff
    assert e_coarse / e_fine > 7 and f_coarse / f_fine > 5, (e_coarse, e_fine, f_coarse, f_fine)


def test_bare_pet_is_not_rotation_invariant():
    R = random_rotation(generator=torch.Generator().manual_seed(0))
    for model, data in ((small_pet(), methane()), (small_pet(cutoff=3.0), box())):
        assert rel(model(rotated(data, R)), model(data)) > 1e-6


def _check_ecse(model, data, R):
    energy, forces = energy_and_forces(model, data)
    energy_r, forces_r = energy_and_forces(model, rotated(data, R))
    assert rel(energy_r, energy) < 1e-10
    assert rel(forces_r, forces @ R.T) < 1e-10


def test_ecse_pet_methane_exact():
    path = DATA / "methane" / "methane_test.xyz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    import ase.io

    frames = ase.io.read(path, index=":3")
    data = Batch.from_data_list([Data(pos=torch.tensor(a.positions, dtype=F64), z=torch.tensor(a.numbers))
                                 for a in frames])
    model = ECSE(small_pet(), cutoff=5.0, output="scalar", aux="default").double()
    _check_ecse(model, data, random_rotation(generator=torch.Generator().manual_seed(0)))


def test_ecse_pet_water_box_exact():
    path = DATA / "water_bulk_64" / "water_deepmd_400.xyz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    import ase.io

    atoms = ase.io.read(path, index=0)
    assert len(atoms) == 192
    data = Data(pos=torch.tensor(atoms.positions, dtype=F64), z=torch.tensor(atoms.numbers),
                cell=torch.tensor(atoms.cell.array, dtype=F64)[None], pbc=torch.ones(1, 3, dtype=torch.bool))
    pet = small_pet(cutoff=4.0, d_model=8, num_gnn_layers=1, dim_feedforward=16, head_hidden=8)
    # the published frame settings: about 70 global frames here instead of about 2300
    # (exactness does not depend on them; local mode is the tool for a box like this)
    model = ECSE(pet, cutoff=4.0, output="scalar", aux="default", **PUBLISHED).double()
    _check_ecse(model, data, random_rotation(generator=torch.Generator().manual_seed(0)))


def test_fused_attention_matches_explicit():
    explicit, fused = small_pet(), small_pet(fused_attention=True)
    for data in (methane(), Batch.from_data_list([methane(1), methane(2)])):
        e1, f1 = energy_and_forces(explicit, data)
        e2, f2 = energy_and_forces(fused, data)
        assert rel(e2, e1) < 1e-12 and rel(f2, f1) < 1e-10


def test_force_training_gradient():
    """create_graph=True: the gradient of a force loss wrt a weight matches finite differences."""
    model, data = small_pet(), methane()
    weight = model.gnn_layers[0].r_embed.weight

    def loss():
        return energy_and_forces(model, data, create_graph=True)[1].pow(2).sum()

    (grad,) = torch.autograd.grad(loss(), weight)
    h, values = 1e-5, []
    for sign in (1, -1):
        with torch.no_grad():
            weight[2, 1] += sign * h
        values.append(loss().item())
        with torch.no_grad():
            weight[2, 1] -= sign * h
    fd = (values[0] - values[1]) / (2 * h)
    assert abs(grad[2, 1].item() - fd) < 1e-6 * max(1.0, abs(fd))
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [0, 200])
def test_unknown_element_raises(bad):
    data = methane()
    data.z = torch.tensor([6, 1, bad, 1, 1])
    with pytest.raises(ValueError, match=rf"\b{bad}\b"):
        small_pet()(data)


def test_atomic_numbers_are_whole_numbers_one_per_atom():
    model, data = small_pet(), methane()
    reference = model(data)
    data.z = methane().z.double()  # whole numbers stored as floats are the same elements
    assert torch.equal(model(data), reference)
    data.z = methane().z[:, None]  # [N, 1]
    assert torch.equal(model(data), reference)
    data.z = methane().z.double() + torch.tensor([0.0, 0, 0.5, 0, 0])  # would truncate to H
    with pytest.raises(ValueError, match=r"whole atomic numbers, got \[1.5\]"):
        model(data)
    data.z = methane().z[:4]
    with pytest.raises(ValueError, match=r"data.z must have shape \[N\] \(N = 5 points\), got \(4,\)"):
        model(data)
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        model.set_composition_offsets({"Xx": 1.0})


def test_composition_offsets_and_any_species():
    model, data = small_pet(), methane()
    before = model(data)
    model.set_composition_offsets({"C": 1.0, 1: 0.5})
    assert torch.allclose(model(data), before + 3.0, rtol=1e-12)
    table = torch.zeros(119, dtype=F64)
    model.set_composition_offsets(table)
    assert torch.allclose(model(data), before, rtol=1e-12)
    data.z = torch.tensor([100, 92, 1, 55, 118])  # any element, nothing declared in advance
    assert torch.isfinite(model(data)).all()


def test_output_scale_multiplies_the_learned_part_only():
    model, data = small_pet(), methane()
    model.set_composition_offsets({"C": -10.0, "H": -0.5})
    offsets = -12.0
    learned = model(data) - offsets
    model.set_output_scale(3.0)
    assert torch.allclose(model(data), offsets + 3.0 * learned, rtol=1e-12)
    _, forces = energy_and_forces(model, data)
    model.set_output_scale(1.0)
    _, forces_1 = energy_and_forces(model, data)
    assert torch.allclose(forces, 3.0 * forces_1, rtol=1e-12)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="output scale"):
            model.set_output_scale(bad)


def test_checkpoint_without_output_scale_loads_with_scale_one():
    model, data = small_pet(), methane()
    model.set_output_scale(5.0)
    old = {k: v for k, v in model.state_dict().items() if k != "output_scale"}  # an older checkpoint
    fresh = small_pet()
    fresh.set_output_scale(7.0)
    fresh.load_state_dict(old)
    assert float(fresh.output_scale) == 1.0
    model.set_output_scale(1.0)
    assert torch.equal(fresh(data), model(data))


def test_published_defaults_run_in_float32():
    model = PET()
    assert (model.cutoff, model.cutoff_width, len(model.gnn_layers)) == (5.0, 0.2, 3)
    layer = model.gnn_layers[0]
    assert len(layer.layers) == 3 and layer.layers[0].attn.num_heads == 4
    assert layer.layers[0].ff[0].out_features == 512 and layer.r_embed.out_features == 128
    data = methane()
    data.pos = data.pos.float()
    energy = model(data)
    assert energy.shape == (1,) and energy.dtype == torch.float32 and torch.isfinite(energy).all()
    model.level = "node"
    assert torch.allclose(model(data).sum(), energy[0], rtol=1e-5)


def test_zero_init_heads_start_at_the_baseline_and_learn():
    data = Batch.from_data_list([methane(0), box(1)])
    model = small_pet(cutoff=3.0, zero_init_heads=True)
    model.set_composition_offsets({"C": -10.0, "H": -0.5, "O": -4.0})
    model.set_output_scale(2.0)
    energy, forces = energy_and_forces(model, data)
    torch.testing.assert_close(energy, torch.tensor([-12.0, -9.0], dtype=F64), rtol=0, atol=0)
    assert forces.abs().max() == 0
    # the heads' last layers get gradients, so training leaves the baseline
    target = torch.randn(forces.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        energy_and_forces(model, data, create_graph=True)[1].sub(target).pow(2).sum().backward()
        optimizer.step()
    assert energy_and_forces(model, data)[1].abs().max() > 1e-4
    # the default initialisation is unchanged (same seed, same parameters but the heads')
    default = small_pet(cutoff=3.0)
    assert default.gnn_layers[0].bond_head[-1].weight.abs().sum() > 0
    torch.testing.assert_close(small_pet(cutoff=3.0, zero_init_heads=True).gnn_layers[0].r_embed.weight,
                               default.gnn_layers[0].r_embed.weight)


def test_radial_basis_option():
    published, with_basis = small_pet(cutoff=3.0), small_pet(cutoff=3.0, num_radial=8)
    assert published.gnn_layers[0].r_embed.in_features == 4  # (r_ij, |r_ij|), as published
    assert with_basis.gnn_layers[1].r_embed.in_features == 4 + 8
    # the basis is a fixed expansion: no parameters, no checkpoint entries of its own
    extra = set(with_basis.state_dict()) - set(published.state_dict())
    assert not extra and len(with_basis.state_dict()) == len(published.state_dict())
    # SchNet's Gaussians: centres 0..cutoff, width = spacing, 1 at a centre
    basis = with_basis.radial
    r = torch.tensor([0.0, 3.0 / 7, 1.0], dtype=F64)
    g = basis(r)
    torch.testing.assert_close(g[0, 0], torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(g[1, 1], torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(g[2], torch.exp(-0.5 * ((1.0 - torch.linspace(0, 3, 8, dtype=F64)) / (3 / 7)) ** 2))
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="num_radial"):
            PET(num_radial=bad)


@pytest.mark.parametrize("make, cutoff", [(methane, 5.0), (box, 3.0)])
def test_radial_basis_forces_and_ecse_exactness(make, cutoff):
    model, data = small_pet(cutoff=cutoff, num_radial=6), make()
    _, forces = energy_and_forces(model, data)
    fd = finite_difference_forces(model, data)
    assert rel(forces, fd) < 1e-7
    R = random_rotation(generator=torch.Generator().manual_seed(3), dtype=F64)
    _check_ecse(ECSE(model, cutoff=cutoff, output="scalar", aux="default").double(), data, R)


def _stretched_waters(count, seed):
    """Water molecules with O-H bonds of 0.97 +- 0.05 Å and harmonic bond forces (k = 40 eV/Å²):
    forces that hinge on a narrow range of distances, as in liquid water."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(count):
        lengths = 0.97 + 0.05 * (2 * torch.rand(2, generator=g, dtype=F64) - 1)
        angle = torch.deg2rad(104.5 + 10 * (2 * torch.rand((), generator=g, dtype=F64) - 1))
        pos = torch.stack([torch.zeros(3, dtype=F64),
                           lengths[0] * torch.tensor([1.0, 0, 0], dtype=F64),
                           lengths[1] * torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros((), dtype=F64)])])
        bond = pos[1:] - pos[0]
        r = bond.norm(dim=1, keepdim=True)
        f_h = -40.0 * (r - 0.97) * bond / r
        items.append(Data(pos=pos, z=torch.tensor([8, 1, 1]), forces=torch.cat([-f_h.sum(0, keepdim=True), f_h])))
    return Batch.from_data_list(items)


def test_radial_basis_learns_bond_forces_the_linear_embedding_does_not():
    train, test = _stretched_waters(32, 0), _stretched_waters(32, 1)
    scale = float(train.forces.std())

    def test_error(num_radial):
        model = small_pet(cutoff=2.0, num_radial=num_radial, zero_init_heads=True)
        model.set_output_scale(scale)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(60):
            optimizer.zero_grad()
            loss = energy_and_forces(model, train, create_graph=True)[1].sub(train.forces).pow(2).mean()
            loss.backward()
            optimizer.step()
        return float(energy_and_forces(model, test)[1].sub(test.forces).pow(2).mean() / test.forces.pow(2).mean())

    linear, basis = test_error(0), test_error(16)
    assert basis < 0.05 and basis < 0.1 * linear, (basis, linear)


@pytest.mark.parametrize("output", ["scalar", "vector", "rank2"])
def test_one_identity_frame_per_atom_is_the_bare_model(output):
    """The local-frame bookkeeping (FrameSequences) with one identity frame of weight 1 per
    atom reproduces the bare bookkeeping (AtomSequences), layer after layer."""
    from ecse.local import LocalFrames

    data = Batch.from_data_list([methane(0), box(1)])
    n = data.pos.shape[0]
    eye = torch.eye(3, dtype=F64).expand(n, 3, 3)
    lf = LocalFrames(torch.arange(n), eye, torch.ones(n, dtype=F64), torch.zeros(n, dtype=torch.bool), n,
                     torch.zeros(n, dtype=F64), n, torch.full((n,), 3.0, dtype=F64))
    model = small_pet(cutoff=3.0, output=output)
    model.set_composition_offsets({"C": -1.0, "H": 0.5, "O": 2.0})
    bare = model(data)
    torch.testing.assert_close(model(data, local_frames=lf), bare, rtol=1e-13, atol=1e-13)
    model.chunk_tokens, model.chunk_above = 5, None  # checkpointed chunks of sequences: same numbers
    torch.testing.assert_close(model(data, local_frames=lf), bare, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="local_frames are for 3 atoms, data has 9"):
        model(data, local_frames=lf._replace(num_atoms=3))
