"""ECSE as a module: consistency, reflections, batching, chunking, gradients, bad input."""
import pytest
import torch
from e3nn import o3
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from ecse import ECSE
from ecse.testing import assert_equivariant, random_orthogonal, random_rotation, relative_error, transform_output

from .models import make_backbone

MIRROR = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


def _cloud(n=10, seed=0, scale=1.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * scale


class EquivariantBackbone(nn.Module):
    """Intrinsically equivariant: centred-point moments (scalar, vector, rank 2, irreps)."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, data):
        c = data.pos - scatter(data.pos, data.batch, dim=0, reduce="mean")[data.batch]
        r2 = c.square().sum(-1, keepdim=True)
        B = int(data.num_graphs)
        if self.output == "scalar":
            per = torch.cat([r2, r2.square()], dim=1)
        elif self.output == "vector":
            per = c * r2 + 0.3 * c * r2.square()
        elif self.output == "rank2":
            per = (c.unsqueeze(-1) * (c * r2).unsqueeze(-2)).reshape(-1, 9)
        else:
            per = o3.spherical_harmonics(o3.Irreps(self.output), c + 0.1 * c * r2, normalize=False)
        return scatter(per, data.batch, dim=0, dim_size=B)


@pytest.mark.parametrize("output", ["scalar", "vector", "rank2", "0e+1o+2e+3o"])
def test_wrapping_an_equivariant_backbone_changes_nothing(output):
    # each frame's prediction, rotated back, equals the lab-frame one: a check of the
    # rotate-back convention and scale that rotating inputs alone cannot see
    backbone = EquivariantBackbone(output)
    model = ECSE(backbone, cutoff=3.0, output=output, out_shape=(2,) if output == "scalar" else None, aux=None)
    batch = Batch.from_data_list([Data(pos=_cloud(9, s)) for s in range(3)])
    expected = model.spec.components(backbone(batch))
    assert relative_error(model(batch), expected) < 1e-12


@pytest.mark.parametrize("name", ["dgcnn", "pointnet2"])
def test_translation_permutation_and_rotation_with_the_testing_kit(name):
    model = ECSE(make_backbone(name, 3).double(), cutoff=3.0, output="vector")
    errors = assert_equivariant(model, Data(pos=_cloud()), "vector", tol=1e-10)
    assert set(errors) >= {"rotation", "translation", "permutation"}


def test_o3_mode_is_exact_under_reflections_and_so3_mode_obeys_the_mirror_law():
    backbone = make_backbone("mlp", 3).double()
    pos = _cloud(11, 3)
    g = torch.Generator().manual_seed(5)
    P = random_orthogonal(generator=g, improper=True)
    assert torch.det(P) < 0
    o3_model = ECSE(backbone, cutoff=3.0, output="vector", o3=True)
    a, b = o3_model(Data(pos=pos)), o3_model(Data(pos=pos @ P.T))
    assert relative_error(b, a @ P.T) < 1e-10
    so3_model = ECSE(backbone, cutoff=3.0, output="vector")
    a, b = so3_model(Data(pos=pos)), so3_model(Data(pos=pos @ P.T))
    assert relative_error(b, a @ P.T) > 1e-3  # SO(3) mode is not reflection-equivariant
    # documented law: reflecting the input = wrapping the mirrored backbone
    def mirrored_backbone(d):
        d = d.clone()
        d.pos = d.pos @ MIRROR
        return backbone(d) @ MIRROR

    mirrored = ECSE(mirrored_backbone, cutoff=3.0, output="vector")
    # the mirrored backbone predicts mirrored vectors, so compare after undoing P
    assert relative_error(b, mirrored(Data(pos=pos)) @ P.T) < 1e-10


def test_deterministic_batched_and_chunked_results_agree():
    backbone = make_backbone("dgcnn", 2).double()
    clouds = [Data(pos=_cloud(n, n)) for n in (6, 11, 1, 8)]
    model = ECSE(backbone, cutoff=3.0, out_shape=(2,))
    batch = Batch.from_data_list(clouds)
    y = model(batch)
    assert torch.equal(y, model(batch))  # no random rotation per call
    one_by_one = torch.cat([model(Batch.from_data_list([c])) for c in clouds])
    assert torch.allclose(y, one_by_one, atol=1e-12)
    chunked = ECSE(backbone, cutoff=3.0, out_shape=(2,), chunk_size=40)
    chunked.aux.load_state_dict(model.aux.state_dict())
    assert torch.allclose(chunked(batch), y, atol=1e-12)


def test_chunks_recomputed_in_backward_give_the_same_forces_and_second_derivatives():
    from ecse.atomistic.derivatives import energy_and_forces

    from .models import small_pet

    pet = small_pet()
    data = Batch.from_data_list([Data(pos=_cloud(9, 2), z=torch.tensor([1, 6, 8] * 3))])
    grads = []
    for chunk in (None, 12):  # 12 nodes per chunk: one frame copy per backbone call
        model = ECSE(pet, cutoff=3.0, chunk_size=chunk)
        energy, forces = energy_and_forces(model, data, create_graph=True)
        pet.zero_grad()
        forces.pow(2).sum().backward()
        grads.append((energy.detach(), forces.detach(), [p.grad.clone() for p in pet.parameters()]))
    (e0, f0, g0), (e1, f1, g1) = grads
    assert torch.allclose(e0, e1, rtol=1e-12) and torch.allclose(f0, f1, rtol=1e-10, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(g0, g1))


def test_forces_from_autograd_match_finite_differences():
    model = ECSE(make_backbone("mlp", 1).double(), cutoff=3.0, out_shape=(1,))
    pos = _cloud(7, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(Data(pos=pos)).sum(), pos)
    h = 1e-6
    for i, k in [(0, 0), (3, 1), (6, 2)]:
        plus, minus = pos.detach().clone(), pos.detach().clone()
        plus[i, k] += h
        minus[i, k] -= h
        with torch.no_grad():
            fd = (model(Data(pos=plus)) - model(Data(pos=minus))).sum() / (2 * h)
        assert float(grad[i, k]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_and_collinear_clouds_use_the_auxiliary_model(n):
    model = ECSE(make_backbone("mlp", 3).double(), cutoff=3.0, output="vector")
    pos = torch.tensor([[0.0, 0, 0], [1.1, 0, 0], [2.0, 0, 0]], dtype=torch.float64)[:n] + 0.3
    y = model(Data(pos=pos))
    assert torch.isfinite(y).all() and model.last_stats["aux_weight_max"] == 1.0
    if n == 3:
        assert float(y.norm()) > 1e-3  # the fallback predicts a real (non-zero) dipole
    R = random_rotation(generator=torch.Generator().manual_seed(n))
    assert relative_error(model(Data(pos=pos @ R.T)), transform_output(y, R, "vector")) < 1e-12
    no_aux = ECSE(make_backbone("mlp", 3).double(), cutoff=3.0, output="vector", aux=None)
    with pytest.raises(ValueError, match="no usable frame"):
        no_aux(Data(pos=pos))


@pytest.mark.parametrize("make_data, message", [
    (lambda: Data(pos=torch.tensor([[0.0, 0, float("nan")], [1, 0, 0]])), "NaN"),
    (lambda: Data(pos=torch.tensor([[0.0, 0, float("inf")]])), "infinite"),
    (lambda: Data(pos=torch.zeros(0, 3)), "empty"),
    (lambda: Data(pos=torch.zeros(4, 2)), r"shape \[N, 3\]"),
    (lambda: Data(pos=torch.zeros(4, 3, dtype=torch.long)), "floating-point"),
    (lambda: Data(pos=torch.randn(4, 3), batch=torch.zeros(3, dtype=torch.long)), "batch"),
    (lambda: Data(pos=torch.randn(4, 3), x=torch.randn(4, 2, dtype=torch.float64)), "one float dtype"),
    (lambda: Data(pos=torch.randn(4, 3), cell=torch.eye(2)), "cell"),
    (lambda: Data(x=torch.randn(4, 3)), "pos is missing"),
    (lambda: Data(pos=torch.randn(4, 3), z=torch.ones(3, dtype=torch.long)), r"data.z must have one row per point \(4"),
    (lambda: Data(pos=torch.randn(4, 3), x=torch.randn(5, 2)), r"data.x must have one row per point .* \(5, 2\)"),
])
def test_bad_input_raises_a_clear_error(make_data, message):
    model = ECSE(make_backbone("mlp", 1), cutoff=3.0, out_shape=(1,))
    with pytest.raises(ValueError, match=message):
        model(make_data())


def test_mismatched_output_shape_and_bad_arguments():
    model = ECSE(make_backbone("mlp", 4).double(), cutoff=3.0)  # out_shape defaults to ()
    with pytest.raises(ValueError, match="out_shape"):
        model(Data(pos=_cloud()))
    with pytest.raises(ValueError, match="last dim of 3"):
        ECSE(make_backbone("mlp", 4).double(), cutoff=3.0, output="vector")(Data(pos=_cloud()))
    with pytest.raises(ValueError, match="cutoff"):
        ECSE(make_backbone("mlp", 1), cutoff=-1.0)
    with pytest.raises(ValueError, match="level"):
        ECSE(make_backbone("mlp", 1), cutoff=1.0, level="edge")
    with pytest.raises(ValueError, match="unknown output"):
        ECSE(make_backbone("mlp", 1), cutoff=1.0, output="matrix")
    with pytest.raises(ValueError, match="pruning_threshold"):
        ECSE(make_backbone("mlp", 1), cutoff=1.0, pruning_threshold=1.5)


def test_float32_models_get_float32_outputs_from_float64_geometry():
    backbone = make_backbone("mlp", 3)
    model = ECSE(backbone, cutoff=3.0, output="vector")
    y = model(Data(pos=_cloud().float()))
    assert y.dtype == torch.float32 and model.aux.node_bias.dtype == torch.float32


@pytest.mark.parametrize("output, o3_mode", [("0e+1o+2e+1e", True), ("0e+1o+2e", False), ("rank2-symmetric", False),
                                             ("vector", True)])
def test_default_auxiliary_model_is_exactly_covariant(output, o3_mode):
    # a near-collinear cloud: the auxiliary model carries (part of) the output
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0.02, 0], [2.1, 0, 0.01], [3.0, 0.05, 0]], dtype=torch.float64)
    torch.manual_seed(0)
    channels = {"0e+1o+2e+1e": 12, "0e+1o+2e": 9, "rank2-symmetric": 6, "vector": 3}[output]
    model = ECSE(make_backbone("mlp", channels).double(), cutoff=3.5, output=output, o3=o3_mode)
    torch.nn.init.normal_(model.aux.node_bias)
    errors = assert_equivariant(model, Data(pos=pos), output, o3=o3_mode, tol=1e-10)
    assert model.last_stats["aux_weight_max"] == 1.0
    y = model(Data(pos=pos))
    assert float(y.norm()) > 1e-3  # and it predicts something
    assert errors["rotation"] <= 1e-10


def test_device_mix_is_reported_before_any_computation():
    # no GPU needed: the meta device stands in for "another device"
    data = Data(pos=torch.randn(4, 3), batch=torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="device|on meta"):
        ECSE(make_backbone("mlp", 1), cutoff=3.0, out_shape=(1,))(data)
    data = Data(pos=torch.randn(4, 3), z=torch.ones(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="data.z is on meta"):
        ECSE(make_backbone("mlp", 1), cutoff=3.0, out_shape=(1,))(data)


def test_dtype_or_device_mismatch_with_the_model_is_one_clear_error():
    model = ECSE(make_backbone("mlp", 1).double(), cutoff=3.0, out_shape=(1,))
    message = (r"ECSE: data.pos is torch.float32 but the model's parameters are torch.float64; convert the "
               r"model \(model.float\(\)\) or the data \(data.pos.double\(\)\)")
    with pytest.raises(ValueError, match=message):
        model(Data(pos=_cloud().float()))
    assert model(Data(pos=_cloud())).dtype == torch.float64
    with pytest.raises(ValueError, match="data.pos is torch.float64 but the model's parameters are torch.float32"):
        ECSE(make_backbone("mlp", 1), cutoff=3.0, out_shape=(1,))(Data(pos=_cloud()))
    # no GPU needed: parameters on the meta device stand in for "another device"
    meta = ECSE(make_backbone("mlp", 1).to("meta"), cutoff=3.0, out_shape=(1,))
    with pytest.raises(ValueError, match="ECSE: data.pos is on cpu but the model's parameters are on meta"):
        meta(Data(pos=_cloud().float()))
    # a parameter-free backbone (any function) takes any dtype
    def backbone(d):
        return scatter(d.pos[:, 0] ** 2, d.batch, dim=0, dim_size=d.num_graphs)

    assert ECSE(backbone, cutoff=3.0, aux=None)(Data(pos=_cloud())).dtype == torch.float64


def test_default_auxiliary_model_carries_the_backbone_composition_offsets():
    # a dimer has no frame: the auxiliary model carries it, and must keep PET's baseline
    from .models import small_pet

    pet = small_pet()
    model = ECSE(pet, cutoff=3.0)
    dimer = Batch.from_data_list([Data(pos=torch.tensor([[0.0, 0, 0], [1.1, 0, 0]], dtype=torch.float64),
                                       z=torch.tensor([6, 8]))])
    before = model(dimer)
    assert model.last_stats["aux_weight_max"] == 1.0
    pet.set_composition_offsets({6: -1030.0, 8: -2040.0})
    assert float(model(dimer) - before) == pytest.approx(-3070.0, abs=1e-9)


def test_batchnorm_in_training_mode_is_never_chunked():
    # batch statistics span one backbone call: chunks would change the output (or, with one
    # copy per chunk, fail inside torch); in eval mode chunks are used and change nothing
    class NormedDistances(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm = torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4)

        def forward(self, data):
            from torch_geometric.nn import global_mean_pool
            d = (data.pos - global_mean_pool(data.pos, data.batch)[data.batch])[:, :1]
            return self.norm(global_mean_pool(self.lin(d), data.batch)).sum(1)

    torch.manual_seed(0)
    batch = Batch.from_data_list([Data(pos=torch.randn(6, 3, dtype=torch.float64)) for _ in range(2)])
    backbone = NormedDistances().double()
    chunked, whole = (ECSE(backbone, cutoff=3.0, aux=None, chunk_size=size).double() for size in (1, None))
    torch.testing.assert_close(chunked(batch), whole(batch), rtol=1e-12, atol=1e-12)
    chunked.eval(), whole.eval()
    torch.testing.assert_close(chunked(batch), whole(batch), rtol=1e-12, atol=1e-12)
