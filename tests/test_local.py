"""Local (per-atom) ensembles, ``ECSE(PET(...), mode="local")``: exact, smooth, consistent.

References are independent of the wrapper: rotated inputs against outputs rotated with
``ecse.testing.transform_output`` (R itself, or e3nn's Wigner matrices), and a plain
Python loop for the bookkeeping of frame copies.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch, Data

from ecse.atomistic.derivatives import energy_and_forces
from ecse import ECSE, FrameParams
from ecse.local import local_frames
from ecse.testing import orthogonal_matrices, point_clouds, random_rotation, rotations, transform_output

from .models import small_pet
from .test_smoothness import _largest_step

OUTPUTS = ["scalar", "vector", "rank2", "rank2-symmetric", "1x0e+1x1o+1x2e"]
GENERIC = ["random", "clustered", "planar", "near_degenerate", "collinear"]


def _err(actual, expected, floor=1e-4):
    return float((actual - expected).norm()) / max(float(expected.norm()), floor)


def _local(output="scalar", cutoff=3.0, dtype=torch.float64, o3=False, **kw):
    pet = small_pet(cutoff=cutoff, output=output, **kw).to(dtype)
    return pet, ECSE(pet, cutoff=cutoff, output=output, mode="local", o3=o3).to(dtype)


def _with_species(data):
    if getattr(data, "z", None) is None:
        data.z = torch.full((data.num_nodes,), 6, dtype=torch.long)
    return data


def _pair(model, data, R, dtype):
    data = _with_species(data.clone())
    data.pos = data.pos.to(dtype)
    rotated = data.clone()
    rotated.pos = data.pos @ R.to(dtype).T + torch.tensor([0.3, -1.1, 2.0], dtype=dtype)
    with torch.no_grad():
        return model(Batch.from_data_list([data])), model(Batch.from_data_list([rotated]))


def test_local_frames_bookkeeping_matches_a_loop():
    g = torch.Generator().manual_seed(3)
    pos = torch.randn(9, 3, generator=g, dtype=torch.float64) * 1.2
    lf = local_frames(pos, 3.0)
    # weights sum to one per atom, copies sorted by atom
    sums = torch.zeros(9, dtype=torch.float64).index_add(0, lf.atom, lf.weight)
    assert torch.allclose(sums, torch.ones(9, dtype=torch.float64), atol=1e-14)
    assert bool((lf.atom[1:] >= lf.atom[:-1]).all()) and lf.num_frames > 9
    # edge copies against a loop over copies and edges
    center = torch.tensor([0, 0, 1, 2, 2, 2, 4, 5, 5, 8])
    lf_small = lf._replace(atom=torch.tensor([0, 0, 2, 3, 5, 5, 5, 8]), num_atoms=9)
    copy, edge = lf_small.edge_copies(center)
    expected = [(c, e) for c, a in enumerate(lf_small.atom.tolist())
                for e, ce in enumerate(center.tolist()) if ce == a]
    assert list(zip(copy.tolist(), edge.tolist())) == expected


def test_frames_are_pruned_per_atom():
    # each atom keeps its own best frames: every atom with a frame keeps at least one
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.1, 0], [0.2, 0.3, 1.2], [1.4, 1.3, 0.4]],
                       dtype=torch.float64)
    lf = local_frames(pos, 3.0)
    has_frame = torch.zeros(5, dtype=torch.bool)
    has_frame[lf.atom[~lf.invariant]] = True
    assert bool(has_frame.all())
    weights = [lf.weight[(lf.atom == i) & ~lf.invariant] for i in range(5)]
    assert all(float(w.max()) >= 0.9 * float(w.sum()) / len(w) for w in weights)


@pytest.mark.parametrize("output", OUTPUTS)
@settings(max_examples=8, deadline=None)
@given(data=st.sampled_from(GENERIC).flatmap(lambda k: point_clouds(kind=k, min_points=2, max_points=10,
                                                                       species=True)),
       R=rotations())
def test_local_mode_is_exact_float64(output, data, R):
    pet, model = _local(output)
    a, b = _pair(model, data, R, torch.float64)
    assert _err(b, transform_output(a, R, output)) <= 1e-10


@settings(max_examples=10, deadline=None)
@given(data=point_clouds(min_points=1, max_points=12, species=True), R=rotations())
def test_local_energy_is_exact_on_any_cloud_including_symmetric_ones(data, R):
    pet, model = _local("scalar")
    a, b = _pair(model, data, R, torch.float64)
    assert _err(b, a, floor=1e-8) <= 1e-10


@pytest.mark.parametrize("output", ["scalar", "vector", "rank2-symmetric"])
def test_local_mode_is_exact_float32_and_bare_pet_is_not(output):
    g = torch.Generator().manual_seed(1)
    data = Data(pos=torch.randn(10, 3, generator=g, dtype=torch.float64) * 1.3,
                z=torch.tensor([1, 6, 7, 8, 1, 1, 6, 8, 1, 6]))
    R = random_rotation(g, torch.float64)
    pet, model = _local(output, dtype=torch.float32)
    a, b = _pair(model, data, R, torch.float32)
    assert _err(b.double(), transform_output(a.double(), R, output)) <= 1e-5
    a, b = _pair(pet, data, R, torch.float32)
    assert _err(b.double(), transform_output(a.double(), R, output)) > 1e-4  # 30x the tolerance


@settings(max_examples=6, deadline=None)
@given(data=point_clouds(kind="random", min_points=3, max_points=9, species=True), Q=orthogonal_matrices())
def test_o3_local_mode_is_exact_under_reflections(data, Q):
    pet, model = _local("vector", o3=True)
    a, b = _pair(model, data, Q, torch.float64)
    assert _err(b, transform_output(a, Q, "vector")) <= 1e-10


def test_local_pet_on_periodic_water_energy_and_forces(shared_data):
    from ase.io import read

    atoms = read(shared_data / "water_bulk_64" / "water_deepmd_400.xyz", index=0)
    R = random_rotation(torch.Generator().manual_seed(2), torch.float64)

    def batch(pos, cell):
        return Batch.from_data_list([Data(pos=pos, z=torch.tensor(atoms.numbers), cell=cell[None],
                                          pbc=torch.ones(1, 3, dtype=torch.bool))])

    pos, cell = torch.tensor(atoms.positions), torch.tensor(atoms.cell.array)
    pet, model = _local("scalar", cutoff=4.0, num_gnn_layers=1)
    e1, f1 = energy_and_forces(model, batch(pos, cell))
    assert 1.0 < model.last_stats["frames_per_atom"] < 20.0  # the global ensemble: thousands per structure
    e2, f2 = energy_and_forces(model, batch(pos @ R.T - 0.7, cell @ R.T))
    assert float((e1 - e2).abs().detach() / e1.abs().detach()) <= 1e-10
    assert float((f1 @ R.T - f2).norm() / f1.norm()) <= 1e-10
    e3, _ = energy_and_forces(pet, batch(pos @ R.T, cell @ R.T))
    assert float((e3 - pet(batch(pos, cell))).abs()) > 1e-8  # the bare model is not invariant


def test_chunked_layers_give_the_same_energy_forces_and_training_gradients():
    g = torch.Generator().manual_seed(4)
    data = Batch.from_data_list([Data(pos=torch.randn(12, 3, generator=g, dtype=torch.float64) * 1.4,
                                      z=torch.tensor([1, 6] * 6))])
    results = []
    for chunk in (None, 7):
        pet, model = _local("scalar", chunk_tokens=chunk, chunk_above=None)
        energy, forces = energy_and_forces(model, data, create_graph=True)
        forces.pow(2).sum().backward()
        # (a force loss leaves the heads' last biases without a gradient: None in both runs)
        results.append((energy.detach(), forces.detach(), [p.grad for p in pet.parameters()]))
    (e0, f0, g0), (e1, f1, g1) = results
    assert torch.allclose(e0, e1, rtol=1e-12) and torch.allclose(f0, f1, rtol=1e-10, atol=1e-12)
    assert all((a is None and b is None) or torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(g0, g1))


def test_local_mode_needs_a_local_backbone_and_a_matching_output():
    with pytest.raises(ValueError, match="local_frames"):
        ECSE(torch.nn.Linear(3, 1), cutoff=3.0, mode="local")  # PyG point models: tests/test_local_pyg.py
    with pytest.raises(ValueError, match="output"):
        ECSE(small_pet(output="vector"), cutoff=3.0, output="scalar", mode="local")
    with pytest.raises(ValueError, match="mode"):
        ECSE(small_pet(), cutoff=3.0, mode="per-atom")


# --- smoothness (same zoom-in test as tests/test_smoothness.py) -------------------------

def _values_and_slopes(model, x0, v, ts, z):
    pos = (x0.unsqueeze(0) + ts.reshape(-1, 1, 1) * v.unsqueeze(0)).detach().requires_grad_(True)
    batch = Batch.from_data_list([Data(pos=p, z=z) for p in pos])
    batch.pos = pos.reshape(-1, 3)
    y = model(batch).reshape(len(ts), -1)
    (g,) = torch.autograd.grad(y.sum(), pos)
    return y.detach(), (g * v).sum(dim=(1, 2)).detach()


def _assert_continuous(model, x0, v, z, levels=6, points=21):
    for which in (0, 1):
        a, b, steps = 0.0, 1.0, []
        for _ in range(levels):
            ts = torch.linspace(a, b, points, dtype=torch.float64)
            step = _largest_step(_values_and_slopes(model, x0, v, ts, z)[which])
            i = int(step.argmax())
            steps.append(float(step[i]))
            a, b = float(ts[i]), float(ts[i + 1])
        assert steps[-1] <= 0.2 * steps[-2] + 1e-13, (which, steps)
        assert steps[-1] <= 1e-3 * max(steps) + 1e-13, (which, steps)


def _events(x0, v, cutoff=4.0, n=21):
    stats = [local_frames(x0 + t * v, cutoff) for t in torch.linspace(0, 1, n, dtype=torch.float64)]
    return [s.num_frames for s in stats], [s.num_candidates for s in stats], [float(s.aux_weight.max()) for s in stats]


def test_local_mode_is_smooth_when_frames_appear_and_are_pruned():
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.05, 0], [0.3, 0.4, 1.0], [3.5, 3.0, 0.5]],
                      dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3] = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64) * 1.2
    kept, candidates, _ = _events(x0, v)
    assert len(set(candidates)) > 1 and len(set(kept)) > 1  # frames appear / are pruned on the path
    z = torch.tensor([6, 1, 1, 8, 1])
    for output in ("scalar", "vector"):
        _assert_continuous(_local(output, cutoff=4.0)[1], x0, v, z)


def test_local_mode_hands_over_smoothly_to_the_direction_free_path():
    # a bent chain straightens: every atom loses its frames and the aux weight goes 0 -> 1
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0.6, 0], [2.0, 0, 0], [3.0, 0.6, 0]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[1, 1] = v[3, 1] = -0.6
    _, _, aux = _events(x0, v, n=41)
    assert aux[0] == 0.0 and aux[-1] == 1.0
    z = torch.tensor([6, 6, 8, 1])
    for output in ("scalar", "vector", "rank2-symmetric"):  # vector: the axial readout takes over
        _assert_continuous(_local(output, cutoff=4.0)[1], x0, v, z)


def test_local_mode_is_smooth_when_an_atom_crosses_the_cutoff():
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0.2, 0], [0.1, 1.2, 0.3], [3.7, 0.3, 0.2]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3, 0] = 0.6  # atom 3 leaves the 4.0 cutoff of atoms 0 and 2
    z = torch.tensor([6, 1, 8, 1])
    _assert_continuous(_local("scalar", cutoff=4.0)[1], x0, v, z)


def test_default_frame_parameters_are_used():
    pet, model = _local()
    assert model.params == FrameParams()
    # ecse's smooth settings, not the published ones; each one can be overridden alone
    assert (model.params.angle_threshold, model.params.angle_width, model.params.cutoff_angle_start,
            model.params.radial_width, model.params.num_prunings) == (0.12, 0.12, 0.03, 0.5, 0)
    assert ECSE(pet, cutoff=3.0).params == FrameParams()
    published = ECSE(pet, cutoff=3.0, angle_threshold=0.2, angle_width=0.15, cutoff_angle_start=0.2,
                     radial_width=0.15, num_prunings=4)
    assert published.params == FrameParams.published()
    assert ECSE(pet, cutoff=3.0, angle_threshold=0.3).params == FrameParams(angle_threshold=0.3)


class _TinyMessagePassing(torch.nn.Module):
    """A user backbone written against the documented ``ecse.local`` interface: each atom
    sums an MLP of its (direction-dependent) edge vectors; two rounds of messages."""

    supports_local_frames = True

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.edge = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        self.readout = torch.nn.Linear(4, 1)

    def forward(self, data, local_frames=None):
        from ecse.neighbors import neighbor_list
        from ecse.switching import cutoff_function

        nl = neighbor_list(data.pos, 3.0, data.batch)
        n, lf = data.num_nodes, local_frames
        if lf is None:
            unit, edge, vec = nl.center, torch.arange(nl.center.numel()), nl.vector
        else:
            unit, edge = lf.edge_copies(nl.center)
            vec = lf.rotate(nl.vector[edge], unit)
        fc = cutoff_function(nl.vector.norm(dim=1), 3.0, 0.5)[edge]
        num_units = n if lf is None else lf.atom.numel()  # atoms, or (atom, frame) copies
        h = data.pos.new_zeros(n, 1)
        for _ in range(2):
            feats = torch.cat([vec, vec.norm(dim=1, keepdim=True), h[nl.neighbor[edge]]], 1)
            per_unit = vec.new_zeros(num_units, 4).index_add(0, unit, self.edge(feats) * fc[:, None])
            h_new = per_unit if lf is None else lf.combine(per_unit)  # invariant per-atom update
            h = self.readout(torch.tanh(h_new))
        return torch.zeros(data.num_graphs, dtype=vec.dtype).index_add(0, data.batch, h.squeeze(1))


def test_the_local_interface_makes_a_user_message_passing_backbone_exact():
    g = torch.Generator().manual_seed(5)
    data = Batch.from_data_list([Data(pos=torch.randn(8, 3, generator=g, dtype=torch.float64) * 1.2),
                                 Data(pos=torch.randn(5, 3, generator=g, dtype=torch.float64) * 1.2)])
    backbone = _TinyMessagePassing().double()
    model = ECSE(backbone, cutoff=3.0, mode="local")
    R = random_rotation(g, torch.float64)
    rotated = data.clone()
    rotated.pos = data.pos @ R.T
    with torch.no_grad():
        a, b = model(data), model(rotated)
        bare_a, bare_b = backbone(data), backbone(rotated)
    assert _err(b, a, floor=1e-8) <= 1e-10
    assert _err(bare_b, bare_a, floor=1e-8) > 1e-4
