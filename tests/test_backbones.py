"""Tests of the plain PointNet++, DGCNN and Point Transformer backbones."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from ecse.backbones import DGCNN, PET, E3nnTensor, PointNet2, PointTransformer
from ecse import point_ops as P
from ecse._validation import check_input_dtype

SMALL = {  # small but complete configurations: every code path, fast on CPU
    PointNet2: dict(hidden=16, radii=(0.5, 1.0)),
    DGCNN: dict(hidden=16, k=6),
    PointTransformer: dict(hidden=16, k=6, ratios=(0.5, 0.5)),
}
MODELS = list(SMALL)
LEVELS = ["graph", "node"]
OUT = 5


@pytest.fixture(params=["torch", "cluster"])
def backend(request):
    if request.param == "cluster" and not P.HAS_TORCH_CLUSTER:
        pytest.skip("torch_cluster is not importable")
    with P.use_backend(request.param):
        yield request.param


def make(cls, level, in_channels=0, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return cls(OUT, in_channels=in_channels, level=level, **SMALL[cls]).to(dtype)


def clouds(sizes, in_channels=0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        d = Data(pos=torch.randn(n, 3, generator=g).to(dtype))
        if in_channels:
            d.x = torch.randn(n, in_channels, generator=g).to(dtype)
        out.append(d)
    return out


def expected_shape(level, sizes):
    return (len(sizes), OUT) if level == "graph" else (sum(sizes), OUT)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("in_channels", [0, 2])
def test_shape_and_finite(backend, cls, level, in_channels):
    sizes = [20, 33]
    model = make(cls, level, in_channels)
    out = model(Batch.from_data_list(clouds(sizes, in_channels)))
    assert out.shape == expected_shape(level, sizes) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    single = model(clouds([25], in_channels)[0])  # no data.batch
    assert single.shape == expected_shape(level, [25])
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("level", LEVELS)
def test_batch_equals_one_at_a_time_float64(backend, cls, level):
    sizes = [12, 41, 5, 28]
    data = clouds(sizes, 2, torch.float64)
    model = make(cls, level, 2, torch.float64)
    batched = model(Batch.from_data_list(data))
    assert batched.dtype == torch.float64
    singles = torch.cat([model(d) for d in data])
    assert batched.shape == singles.shape == expected_shape(level, sizes)
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("level", LEVELS)
def test_not_rotation_invariant(backend, cls, level):
    data = clouds([30, 24], 0, torch.float64, seed=1)
    model = make(cls, level, 0, torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2),
                                      dtype=torch.float64))[0]
    rotated = [Data(pos=d.pos @ rot.T) for d in data]
    out = model(Batch.from_data_list(data))
    out_rot = model(Batch.from_data_list(rotated))
    assert ((out_rot - out).norm() / out.norm()).item() > 1e-3


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("level", LEVELS)
def test_tiny_clouds(backend, cls, level):
    model = make(cls, level, 1)
    for sizes in ([1], [2], [1, 2, 1], [2, 9]):
        data = clouds(sizes, 1)
        batch = Batch.from_data_list(data)
        assert model(batch).shape == expected_shape(level, sizes)
        assert torch.isfinite(model(batch)).all()
        assert model(data[0]).shape == expected_shape(level, sizes[:1])


@pytest.mark.parametrize("cls", MODELS)
def test_api(cls):
    model = make(cls, "node", 3)
    assert cls.__name__ in repr(model) and "level='node'" in repr(model)
    before = [p.detach().clone() for p in model.parameters()]
    model.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="data.x"):
        model(Data(pos=torch.randn(5, 3)))  # x required when in_channels > 0
    with pytest.raises(ValueError, match="data.x"):
        model(Data(pos=torch.randn(5, 3), x=torch.randn(5, 2)))
    with pytest.raises(ValueError, match="pos"):
        model(Data(pos=torch.randn(5, 2), x=torch.randn(5, 3)))
    with pytest.raises(ValueError, match="level"):
        cls(OUT, level="edge")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


# -- every backbone (PyG ones, PET, E3nnTensor): dtype/device check, reset_parameters, repr --

def _atoms(dtype):
    g = torch.Generator().manual_seed(3)
    return Data(pos=(2.0 * torch.rand(6, 3, generator=g)).to(dtype), z=torch.tensor([6, 1, 1, 8, 1, 1]))


ALL = {  # name -> (builder(dtype), data(dtype), what repr must show)
    "PointNet2": (lambda dt: PointNet2(OUT, in_channels=2, **SMALL[PointNet2]).to(dt),
                  lambda dt: clouds([12], 2, dt)[0], ["PointNet2(2, 5", "level='graph'", "radii=(0.5, 1.0)"]),
    "DGCNN": (lambda dt: DGCNN(OUT, in_channels=2, level="node", **SMALL[DGCNN]).to(dt),
              lambda dt: clouds([12], 2, dt)[0], ["DGCNN(2, 5", "level='node'", "k=6", "hidden=16"]),
    "PointTransformer": (lambda dt: PointTransformer(OUT, in_channels=2, **SMALL[PointTransformer]).to(dt),
                         lambda dt: clouds([12], 2, dt)[0], ["PointTransformer(2, 5", "k=6", "ratios=(0.5, 0.5)"]),
    "PET": (lambda dt: PET(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2, dim_feedforward=8,
                           head_hidden=8, cutoff=3.0, output="vector", num_radial=4).to(dt), _atoms,
            ["PET(cutoff=3.0", "d_model=8", "num_gnn_layers=1", "num_heads=2", "num_radial=4", "output='vector'"]),
    "E3nnTensor": (lambda dt: E3nnTensor("rank2-symmetric", cutoff=3.0, hidden="4x0e+2x1o+2x2e", num_layers=1,
                                         dtype=dt), _atoms,
                   ["E3nnTensor(output='rank2-symmetric'", "irreps_out='1x0e+1x2e'", "num_layers=1", "cutoff=3.0",
                    "level='graph'"]),
}


@pytest.mark.parametrize("name", list(ALL))
def test_mixed_dtypes_raise_one_clear_error(name):
    build, data, _ = ALL[name]
    model = build(torch.float32)
    assert model(data(torch.float32)).dtype == torch.float32
    with pytest.raises(ValueError, match=rf"^{name}: data.pos is torch.float64 but the model's parameters are "
                                         r"torch.float32; convert the model \(model.double\(\)\) or the data "
                                         r"\(data.pos.float\(\)\)$"):
        model(data(torch.float64))
    model.double()
    assert model(data(torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"data.pos is torch.float32 but the model's parameters are torch.float64"):
        model(data(torch.float32))


@pytest.mark.parametrize("cls", MODELS)
def test_mixed_feature_dtype_raises(cls):
    model, data = make(cls, "graph", 2), clouds([12], 2)[0]
    data.x = data.x.double()
    with pytest.raises(ValueError, match=r"data.x is torch.float64 but the model's parameters are torch.float32"):
        model(data)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reset_parameters_restores_a_new_model(name, dtype):
    build, _, _ = ALL[name]
    torch.manual_seed(11)
    new = build(dtype)
    model = build(dtype)
    with torch.no_grad():  # as after training
        for p in model.parameters():
            p.add_(0.1)
        if name == "PET":
            model.set_composition_offsets({1: 1.0})
            model.set_output_scale(2.0)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(11)
    model.reset_parameters()
    state = model.state_dict()
    assert list(state) == list(new.state_dict())
    for key, value in new.state_dict().items():
        assert state[key].dtype == dtype or not state[key].is_floating_point()
        assert torch.equal(state[key], value), key
    assert any(not torch.equal(trained[k], state[k]) for k in state)


@pytest.mark.parametrize("name", list(ALL))
def test_repr_names_the_class_and_key_settings(name):
    build, _, shows = ALL[name]
    text = repr(build(torch.float32))
    assert "\n" not in text
    for part in shows:
        assert part in text, (part, text)


def test_check_input_dtype_devices_and_what_passes():
    lin = torch.nn.Linear(3, 1)
    check_input_dtype(lin, None)
    check_input_dtype(lin, torch.zeros(2, dtype=torch.long))  # integer inputs are not compared
    check_input_dtype(torch.nn.ReLU(), torch.zeros(2, dtype=torch.float64))  # no parameters
    with pytest.raises(ValueError, match=r"^Linear: data.x is on meta but the model's parameters are on cpu; "
                                         r"move the model \(model.to\('meta'\)\) or the data \(data.x.to\('cpu'\)\)$"):
        check_input_dtype(lin, torch.zeros(2, 3, device="meta"), "data.x")
