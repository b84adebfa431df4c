"""PET's frame-averaged tokens (``PET(frame_average="tokens")``): the averaged token
against a loop over frame copies, hand-made frames against bare PET, exactness on
molecules, alloys and perfect crystals in float64 and float32, chunked against
unchunked, continuity, and the option's checks.  The per-copy default
(``frame_average="layers"``): tests/test_local.py."""
import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Batch

from ecse import ECSE
from ecse.atomistic import atoms_to_data
from ecse.atomistic.derivatives import energy_and_forces
from ecse.backbones import PET
from ecse.backbones._pet_layer import GNNLayer
from ecse.local import LocalFrames, local_frames
from ecse.testing import random_rotation

SMALL = dict(d_model=16, num_gnn_layers=2, num_transformer_layers=1, num_heads=2, dim_feedforward=32,
             head_hidden=16, cutoff=4.0, frame_average="tokens")


def test_averaged_token_matches_a_loop_over_copies():
    torch.manual_seed(0)
    layer = GNNLayer(8, 1, 2, 16, 8, False, False, num_radial=3).double()
    g = torch.Generator().manual_seed(1)
    E, C = 5, 12
    geometry = torch.randn(C, 7, generator=g, dtype=torch.float64)
    message = torch.randn(E, 8, generator=g, dtype=torch.float64)
    edge = torch.randint(0, E, (C,), generator=g)
    edge[:E] = torch.arange(E)  # every edge has a copy
    weight = torch.rand(C, generator=g, dtype=torch.float64)
    weight = weight / torch.zeros(E, dtype=torch.float64).index_add(0, edge, weight)[edge]
    expected = []
    for e in range(E):  # sum_k w_k silu(L1 [r_embed(g_k), m]) then L2, copy by copy
        hidden = sum(w * layer.compress[1](layer.compress[0](torch.cat([layer.r_embed(gk), message[e]])))
                     for gk, w, ek in zip(geometry, weight, edge) if ek == e)
        expected.append(layer.compress[2](hidden))
    got = layer.embed_averaged(geometry, message, edge, weight)
    assert torch.allclose(got, torch.stack(expected), rtol=1e-12, atol=1e-13)
    # one copy per edge with weight 1: PET's own token
    one = layer.embed_averaged(geometry[:E], message, torch.arange(E), torch.ones(E, dtype=torch.float64))
    assert torch.allclose(one, layer.embed(geometry[:E], message), rtol=1e-12, atol=1e-13)


def _hand_made_frames(data, rotations_per_atom, weights):
    """Every atom gets the same frame copies (``rotations_per_atom`` ``[K, 3, 3]``, weights ``[K]``)."""
    n, k = data.num_nodes, rotations_per_atom.shape[0]
    atom = torch.arange(n).repeat_interleave(k)
    return LocalFrames(atom=atom, rotation=rotations_per_atom.repeat(n, 1, 1), weight=weights.repeat(n),
                       invariant=torch.zeros(n * k, dtype=torch.bool), num_atoms=n,
                       aux_weight=torch.zeros(n, dtype=torch.float64), num_candidates=n * k,
                       inner_cutoff=torch.full((n,), 4.0, dtype=torch.float64))


@pytest.mark.parametrize("chunk_tokens", [None, 30])
def test_identity_and_global_frames_give_bare_pet(chunk_tokens):
    data = Batch.from_data_list([atoms_to_data(molecule("CH3CH2OH"), dtype=torch.float64)])
    torch.manual_seed(0)
    pet = PET(**SMALL, chunk_tokens=chunk_tokens, chunk_above=None).double()
    bare = pet(data)
    eye = torch.eye(3, dtype=torch.float64)
    # two identity copies (0.3, 0.7): the average of equal tokens is bare PET
    lf = _hand_made_frames(data, torch.stack([eye, eye]), torch.tensor([0.3, 0.7], dtype=torch.float64))
    assert torch.allclose(pet(data, local_frames=lf), bare, rtol=1e-12)
    # one frame R for every atom: PET evaluated on the structure rotated into R
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lf = _hand_made_frames(data, R[None], torch.ones(1, dtype=torch.float64))
    rotated = data.clone()
    rotated.pos = data.pos @ R
    assert torch.allclose(pet(data, local_frames=lf), pet(rotated), rtol=1e-12)
    # two different frames: not the average of the two rotated evaluations (the tokens are averaged)
    lf2 = _hand_made_frames(data, torch.stack([eye, R]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    mixed = pet(data, local_frames=lf2)
    assert not torch.allclose(mixed, 0.5 * (bare + pet(rotated)), rtol=1e-6)


def _structures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    cu.numbers[1] = 79  # an alloy
    si = bulk("Si", "diamond", a=5.43, cubic=True)  # perfect: 12 equal-weight frames per atom
    return {"molecule": molecule("CH3CH2OH"), "alloy": cu, "diamond": si}


@pytest.mark.parametrize("name", ["molecule", "alloy", "diamond"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_tokens_mode_is_exactly_invariant(name, dtype, tol):
    atoms = _structures()[name]
    torch.manual_seed(0)
    pet = PET(**SMALL).to(dtype)
    model = ECSE(pet, cutoff=4.0, mode="local").to(dtype)
    data = Batch.from_data_list([atoms_to_data(atoms, dtype=dtype)])
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(5)).to(dtype)
    rotated = data.clone()
    rotated.pos = data.pos @ R.T + torch.tensor([0.2, -0.4, 1.0], dtype=dtype)
    if getattr(data, "cell", None) is not None:
        rotated.cell = data.cell @ R.T
    e, f = energy_and_forces(model, data)
    e2, f2 = energy_and_forces(model, rotated)
    # force scale: a rattled copy's forces (at a perfect site they cancel to rounding noise)
    rattled = atoms.copy()
    rattled.rattle(0.05, seed=2)
    scale = max(float(energy_and_forces(model, Batch.from_data_list([atoms_to_data(rattled, dtype=dtype)]))[1]
                      .abs().max()), 1.0)
    assert float((e2 - e).abs()) <= tol * max(float(e.abs()), 1.0)
    assert float((f2 - f @ R.T).abs().max()) <= tol * scale
    be, _ = energy_and_forces(pet, rotated)  # the bare model is not invariant
    assert float((be - pet(data)).abs()) > 1e-4 * max(float(e.abs()), 1.0) or name == "diamond"


def test_frame_average_option():
    options = {k: v for k, v in SMALL.items() if k != "frame_average"}
    assert PET(**options).frame_average == "layers"
    assert PET(**SMALL).frame_average == "tokens"
    with pytest.raises(ValueError, match="frame_average"):
        PET(**options, frame_average="frames")
    with pytest.raises(ValueError, match="scalar output"):
        PET(**SMALL, output="vector")


def test_tokens_and_layers_agree_where_every_atom_has_one_frame():
    data = Batch.from_data_list([atoms_to_data(molecule("CH3CH2OH"), dtype=torch.float64)])
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    lf = _hand_made_frames(data, R[None], torch.ones(1, dtype=torch.float64))
    out = []
    for mode in ("tokens", "layers"):
        torch.manual_seed(0)
        out.append(PET(**{**SMALL, "frame_average": mode}).double()(data, local_frames=lf))
    assert torch.allclose(out[0], out[1], rtol=1e-12)
    # and on real frames they differ (different models), both exactly invariant (above / test_local.py)
    lf = local_frames(data.pos, 4.0)
    assert lf.num_frames > data.num_nodes


def test_tokens_chunked_equals_unchunked():
    atoms = _structures()["alloy"]
    data = Batch.from_data_list([atoms_to_data(atoms, dtype=torch.float64)])
    results = []
    for chunks in (None, 40):
        torch.manual_seed(0)
        model = ECSE(PET(**{**SMALL, "chunk_tokens": chunks, "chunk_above": None}).double(), cutoff=4.0, mode="local").double()
        results.append(torch.cat([t.reshape(-1) for t in energy_and_forces(model, data)]))
    assert torch.allclose(results[0], results[1], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("chunk_elements", [7, 1 << 17])
def test_force_training_gradients_equal_the_plain_token_average(monkeypatch, chunk_elements):
    """The parameter gradients of a force loss (training in the loop, second derivatives
    of the chunked token average) against the same model whose token average is the plain
    torch composition, on a thermal fcc alloy cell."""
    from ecse.backbones import _pet_layer, _token_average

    atoms = _structures()["alloy"]
    data = Batch.from_data_list([atoms_to_data(atoms, dtype=torch.float64)])
    torch.manual_seed(0)
    model = ECSE(PET(**SMALL).double(), cutoff=4.0, mode="local").double()

    def gradients():
        energy, forces = energy_and_forces(model, data, create_graph=True)
        loss = energy.square().sum() + forces.square().sum()
        return torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, materialize_grads=True)

    monkeypatch.setattr(_token_average, "CHUNK_ELEMENTS", chunk_elements)
    chunked = gradients()

    def plain(shift, geometry, along, weight, edge):
        hidden = torch.nn.functional.silu(shift[edge] + geometry @ along.T)
        return torch.zeros_like(shift).index_add(0, edge, weight[:, None] * hidden)

    monkeypatch.setattr(_pet_layer, "frame_averaged_silu", plain)
    expected = gradients()
    assert sum(float(g.abs().sum()) for g in expected) > 0
    for got, want in zip(chunked, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_tokens_mode_is_continuous_where_frames_appear_and_hand_over():
    # the paths of tests/test_local.py: frames appear and are pruned; every atom loses its frames
    from .test_local import _assert_continuous, _local

    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.05, 0], [0.3, 0.4, 1.0], [3.5, 3.0, 0.5]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3] = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64) * 1.2
    _assert_continuous(_local("scalar", cutoff=4.0, frame_average="tokens")[1], x0, v, torch.tensor([6, 1, 1, 8, 1]))
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0.6, 0], [2.0, 0, 0], [3.0, 0.6, 0]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[1, 1] = v[3, 1] = -0.6
    _assert_continuous(_local("scalar", cutoff=4.0, frame_average="tokens")[1], x0, v, torch.tensor([6, 6, 8, 1]))
