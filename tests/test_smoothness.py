"""ECSE is smooth along paths where its discrete structure changes.

Along a path ``X(t) = X0 + t V`` the wrapped output ``y(t)`` and its derivative
``dy/dt`` (autograd) are sampled on a grid; the grid is refined twentyfold around its
largest step, several times.  For a continuous function the largest step ends up
shrinking with the grid; a jump keeps its size at every level.  Each path is chosen so that an event really
happens on it (a neighbour crosses the inner cutoff, a frame is pruned, the cloud turns
collinear and the auxiliary model takes over), which the tests check too.
"""
import pytest
import torch
from torch_geometric.data import Batch, Data

from ecse import ECSE, global_frames

from .models import make_backbone


def _model(output="scalar"):
    channels = {"scalar": 1, "vector": 3}[output]
    backbone = make_backbone("mlp", channels).double()
    return ECSE(backbone, cutoff=4.0, output=output, out_shape=(channels,) if output == "scalar" else None).double()


def _values_and_slopes(model, x0, v, ts):
    pos = (x0.unsqueeze(0) + ts.reshape(-1, 1, 1) * v.unsqueeze(0)).detach().requires_grad_(True)
    batch = Batch.from_data_list([Data(pos=p) for p in pos])
    batch.pos = pos.reshape(-1, 3)
    y = model(batch).reshape(len(ts), -1)
    (g,) = torch.autograd.grad(y.sum(), pos)
    slope = (g * v).sum(dim=(1, 2))  # d(sum of components)/dt
    return y.detach(), slope.detach()


def _largest_step(values):
    return (values[1:] - values[:-1]).abs().reshape(len(values) - 1, -1).amax(dim=1)


def _assert_continuous(model, x0, v, t0=0.0, t1=1.0, levels=6, points=21):
    """Zoom ``levels`` times (x20 each) into the largest step of y (and of dy/dt).

    At the last levels a continuous function's largest step shrinks with the grid,
    while a jump keeps its size at every level.
    """
    for which in (0, 1):  # 0: value, 1: derivative
        a, b, steps = t0, t1, []
        for _ in range(levels):
            ts = torch.linspace(a, b, points, dtype=torch.float64)
            step = _largest_step(_values_and_slopes(model, x0, v, ts)[which])
            i = int(step.argmax())
            steps.append(float(step[i]))
            a, b = float(ts[i]), float(ts[i + 1])
        label = ("value", "derivative")[which]
        assert steps[-1] <= 0.2 * steps[-2] + 1e-13, (label, steps)
        assert steps[-1] <= 1e-3 * max(steps) + 1e-13, (label, steps)


def _frame_stats(x0, v, ts, cutoff=4.0):
    counts, aux = [], []
    for t in ts:
        fs = global_frames(x0 + t * v, cutoff)
        counts.append(fs.num_candidates)
        aux.append(float(fs.aux_weight))
    return counts, aux


def test_the_test_detects_a_jump():
    class Step(torch.nn.Module):
        def forward(self, data):  # jumps when a point crosses r = 1 from the frame origin
            from torch_geometric.utils import scatter

            r = data.pos.norm(dim=1)
            per_point = torch.where(r > 1.0, 1.0, 0.0) + r
            return scatter(per_point, data.batch, dim=0, dim_size=data.num_graphs).unsqueeze(1)

    x0 = torch.tensor([[0.0, 0, 0], [0.9, 0, 0], [0, 1.1, 0], [0.2, 0.1, 1.3]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[1, 0] = 0.4
    model = ECSE(Step(), cutoff=4.0, out_shape=(1,)).double()
    with pytest.raises(AssertionError):
        _assert_continuous(model, x0, v)


def test_neighbour_crossing_the_inner_cutoff():
    # centre 0 with a good pair (1, 2) at ~1 A; atom 3 moves out through r_in
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.05, 0], [0.3, 0.4, 1.0], [3.5, 3.0, 0.5]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3] = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64) * 1.2
    counts, _ = _frame_stats(x0, v, torch.linspace(0, 1, 21, dtype=torch.float64))
    assert len(set(counts)) > 1  # frames appear/disappear along the path
    _assert_continuous(_model(), x0, v)
    _assert_continuous(_model("vector"), x0, v)


def test_frame_weight_crossing_the_pruning_threshold():
    # opening one angle changes which frames are within 0.9 of the best
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.5, 0.87, 0], [0.2, 0.3, 1.1], [-0.9, 0.2, -0.1]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[2] = torch.tensor([-0.6, 0.1, 0.0], dtype=torch.float64)
    model = _model()
    kept = []
    for t in torch.linspace(0, 1, 21, dtype=torch.float64):
        model(Data(pos=x0 + t * v))
        kept.append(model.last_stats["frames_per_graph"])
    assert len(set(kept)) > 1  # the set of retained frames changes along the path
    _assert_continuous(model, x0, v)


def test_bending_to_collinear_hands_over_to_the_auxiliary_model():
    # a bent 4-atom chain straightens: frames lose all weight, aux weight goes 0 -> 1
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0.6, 0], [2.0, 0, 0], [3.0, 0.6, 0]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[1, 1] = v[3, 1] = -0.6
    _, aux = _frame_stats(x0, v, torch.linspace(0, 1, 41, dtype=torch.float64))
    assert aux[0] == 0.0 and aux[-1] == 1.0
    model = _model()
    with torch.no_grad():
        model.aux.node_bias.fill_(0.7)  # make the auxiliary output clearly different
    _assert_continuous(model, x0, v)
    _assert_continuous(_model("vector"), x0, v)


def test_auxiliary_model_is_smooth_when_an_atom_crosses_the_outer_cutoff():
    # collinear chain: no frame has weight, the auxiliary model carries everything;
    # the last atom moves out through the 4.0 cutoff of atom 0
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.2, 0, 0], [3.6, 0, 0]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[3, 0] = 0.8
    _, aux = _frame_stats(x0, v, torch.linspace(0, 1, 11, dtype=torch.float64))
    assert set(aux) == {1.0}
    model = _model("vector")
    with torch.no_grad():
        for p in model.aux.radial.parameters():
            p.add_(0.5)  # non-zero biases: a coefficient that ignores the cutoff would jump
    _assert_continuous(model, x0, v)


def test_atom_entering_the_outer_cutoff_of_a_centre_without_frames():
    # a dimer has no frame (aux weight 1); a third atom comes in through the 4.0 cutoff
    # of atom 0. The published frame weight (no outer-cutoff factor) jumps from 0 here.
    x0 = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [-2.0, 3.55, 0.3]], dtype=torch.float64)
    v = torch.zeros_like(x0)
    v[2] = torch.tensor([0.5, -0.6, 0.0], dtype=torch.float64)
    counts, aux = _frame_stats(x0, v, torch.linspace(0, 1, 21, dtype=torch.float64))
    assert counts[0] == 0 and counts[-1] > 0 and aux[0] == 1.0 and aux[-1] < 1.0
    model = _model()
    with torch.no_grad():
        model.aux.node_bias.fill_(0.7)
    _assert_continuous(model, x0, v)
