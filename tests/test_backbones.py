"""Tests of the plain PointNet++, DGCNN and Point Transformer backbones."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from ecse.backbones import DGCNN, PointNet2, PointTransformer
from ecse import point_ops as P

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
