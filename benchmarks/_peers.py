"""Pieces of the accuracy benchmark shared by its models (``benchmarks/accuracy.py``).

* :class:`SchNetEnergy`: PyG's ``SchNet`` as an energy model ``forward(data) -> [B]`` on
  ecse's neighbour list (periodic images included, no neighbour cap), with the
  composition baseline as frozen ``atomref`` and the per-atom output scaled by ``sE``.
* :func:`residual_scales`, :func:`metrics`: loss scales and test metrics, defined once
  for every model (MACE's worker repeats the same formulas in its own venv).
* :func:`train_energy_model`: the budgeted training loop of the peers, with the protocol
  of ``ecse.atomistic.train`` + ``max_time``: loss ``we * MSE(E/N) / sE**2 + wf *
  MSE(F) / sF**2``, Adam with a linear warm-up and a cosine schedule over
  :func:`epochs_for_budget` epochs, optional gradient-norm clipping,
  validation after every completed epoch, a mid-epoch stop when the budget is spent (the
  stopped state is validated too, once an epoch has completed) and the best-validation
  state kept (the last state when no epoch completed).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ecse.atomistic.derivatives import energy_and_forces
from ecse.neighbors import neighbor_list

__all__ = ["SchNetEnergy", "residual_scales", "metrics", "energy_force_loss", "epochs_for_budget",
           "warmup_cosine", "train_energy_model"]


class SchNetEnergy(nn.Module):
    """PyG ``SchNet`` energy ``[B]`` of a ``Data``/``Batch`` (``pos``, ``z``, optional
    ``batch``, ``cell`` ``[B, 3, 3]``, ``pbc`` ``[B, 3]``); forces by autograd.

    The SchNet modules (embedding, continuous-filter interaction blocks with cosine
    cutoff, Gaussian expansion, two-layer atomwise head) are PyG's; only the graph comes
    from :func:`ecse.neighbors.neighbor_list`, so periodic images count and nothing caps
    the neighbour count (PyG's ``radius_graph`` keeps 32). Per atom,
    ``E_i = std * head(h_i) + b_{z_i}`` with the composition energies ``b`` frozen.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> model = SchNetEnergy({1: -0.5, 6: -10.0}, std=0.1, hidden_channels=8, num_filters=8,
    ...                      num_interactions=1, num_gaussians=4)
    >>> data = Data(pos=torch.randn(5, 3), z=torch.tensor([6, 1, 1, 1, 1]))
    >>> model(data).shape
    torch.Size([1])
    """

    def __init__(self, baseline: Mapping[int, float], std: float = 1.0, cutoff: float = 5.0, **schnet):
        super().__init__()
        from torch_geometric.nn.models import SchNet

        atomref = torch.zeros(100, 1)
        for z, energy in baseline.items():
            if not 1 <= int(z) < 100:
                raise ValueError(f"SchNetEnergy: PyG's SchNet embeds elements 1..99, got atomic number {z}")
            atomref[int(z), 0] = float(energy)
        self.cutoff = float(cutoff)
        self.schnet = SchNet(cutoff=cutoff, atomref=atomref, std=float(std), mean=0.0, **schnet)
        self.schnet.atomref.weight.requires_grad_(False)  # composition baseline fixed, like PET's offsets

    def forward(self, data) -> Tensor:
        net, pos, z = self.schnet, data.pos, data.z.long().reshape(-1)
        batch = getattr(data, "batch", None)
        batch = torch.zeros_like(z) if batch is None else batch
        nl = neighbor_list(pos, self.cutoff, batch, getattr(data, "cell", None), getattr(data, "pbc", None))
        dist = nl.vector.norm(dim=-1)
        edge_index = torch.stack([nl.neighbor, nl.center])  # messages flow neighbour -> centre
        h, edge_attr = net.embedding(z), net.distance_expansion(dist)
        for interaction in net.interactions:
            h = h + interaction(h, edge_index, dist, edge_attr)
        h = net.lin2(net.act(net.lin1(h))) * net.std + net.mean + net.atomref(z)
        num_graphs = int(data.num_graphs) if isinstance(data, Batch) else int(batch.max()) + 1
        return h.new_zeros(num_graphs).index_add(0, batch, h.squeeze(-1))


def residual_scales(train: Sequence, baseline: Mapping[int, float], energy_key: str = "energy",
                    forces_key: str = "forces") -> tuple[float, float]:
    """``(sE, sF)``: population std of the per-atom energy after the composition baseline
    and of the force components over ``train`` (as ``ecse.atomistic.train``)."""
    table = np.zeros(119)
    table[list(baseline)] = list(baseline.values())
    per_atom = [(float(d[energy_key].reshape(-1)[0]) - table[d.z.numpy()].sum()) / d.num_nodes for d in train]
    forces = torch.cat([d[forces_key].reshape(-1).double() for d in train])
    s_e, s_f = float(np.std(per_atom)), float(forces.std(unbiased=False))
    return (s_e if s_e > 1e-12 else 1.0), (s_f if s_f > 1e-12 else 1.0)


def energy_force_loss(energy: Tensor, forces: Tensor, batch, scales: tuple[float, float],
                      weights: tuple[float, float], energy_key: str = "energy", forces_key: str = "forces") -> Tensor:
    """``we * MSE(E/N) / sE**2 + wf * MSE(F) / sF**2`` of one batch."""
    n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)
    e_err = (energy - batch[energy_key].reshape(-1)) / n_atoms
    return (weights[0] * e_err.pow(2).mean() / scales[0] ** 2
            + weights[1] * (forces - batch[forces_key]).pow(2).mean() / scales[1] ** 2)


def metrics(model: nn.Module, data: Sequence, batch_size: int, scales: tuple[float, float] = (1.0, 1.0),
            weights: tuple[float, float] = (0.1, 1.0), energy_key: str = "energy",
            forces_key: str = "forces") -> dict[str, float]:
    """Loss, energy MAE per atom (mean over structures, eV) and force-component MAE (eV/Å)."""
    was_training = model.training
    model.eval()
    sums, n_comp = np.zeros(3), 0
    for start in range(0, len(data), batch_size):
        batch = Batch.from_data_list(list(data[start:start + batch_size]))
        energy, forces = (t.detach() for t in energy_and_forces(model, batch))
        n_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)
        loss = energy_force_loss(energy, forces, batch, scales, weights, energy_key, forces_key)
        sums += [float(loss) * batch.num_graphs,
                 float(((energy - batch[energy_key].reshape(-1)) / n_atoms).abs().sum()),
                 float((forces - batch[forces_key]).abs().sum())]
        n_comp += forces.numel()
    model.train(was_training)
    return {"loss": sums[0] / len(data), "energy_mae_per_atom": sums[1] / len(data), "forces_mae": sums[2] / n_comp}


def epochs_for_budget(max_time: float, step_seconds: float, steps_per_epoch: int, eval_seconds: float,
                      val_batches: int) -> int:
    """Epochs (training steps + one validation pass each) to plan for ``max_time``, rounded
    up: the budget then stops the last epoch part-way, where the cosine decay is nearly
    done, and the state there is validated, instead of a rounded-down plan leaving up to
    an epoch of the budget unused (PET on the water box: 343 of 1800 s).

    >>> epochs_for_budget(60.0, 0.5, 10, 1.0, 2)  # 60 s / 7 s per epoch = 8.6
    9
    """
    return max(1, math.ceil(max_time / (steps_per_epoch * step_seconds + val_batches * eval_seconds)))


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay to 0
    at ``total_steps`` (as ``ecse.atomistic.train`` with ``warmup_epochs`` and
    ``decay="cosine"``).

    >>> f = warmup_cosine(100, 10)
    >>> round(f(0), 3), round(f(10), 3), round(f(55), 3), round(f(100), 3)
    (0.1, 1.0, 0.5, 0.0)
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    return factor


def _step(model: nn.Module, optimizer, batch, scales, weights, keys, grad_clip: Optional[float] = None) -> float:
    energy, forces = energy_and_forces(model, batch, create_graph=True)
    loss = energy_force_loss(energy, forces, batch, scales, weights, *keys)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


def probe_epochs(make_model: Callable[[], nn.Module], train: Sequence, val: Sequence, batch_size: int,
                 val_batch_size: int, lr: float, max_time: float, scales, weights, keys, warmup: int = 3,
                 timed: int = 5) -> tuple[int, float]:
    """Time training steps and one validation batch of a throw-away ``make_model()``;
    returns ``(epochs_for_budget(...), seconds per step)``.

    The first steps of a model are slower than its steady state (allocator and caches
    warming up; MACE's were 3x slower on methane, PET's 2.5x on water), and a single
    slow step skews a mean: ``warmup`` untimed steps, then the median of ``timed`` ones.
    MACE's worker (``benchmarks/mace_worker.py``, another venv) uses the same 3 + 5.
    """
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = Batch.from_data_list(list(train[:batch_size]))
    for _ in range(warmup):
        _step(model, optimizer, batch, scales, weights, keys)
    times = []
    for _ in range(timed):
        start = time.perf_counter()
        _step(model, optimizer, batch, scales, weights, keys)
        times.append(time.perf_counter() - start)
    t_step = float(np.median(times))
    val_batch = Batch.from_data_list(list(val[:val_batch_size]))
    energy_and_forces(model.eval(), val_batch)  # warm-up
    start = time.perf_counter()
    energy_and_forces(model, val_batch)
    t_eval = time.perf_counter() - start
    epochs = epochs_for_budget(max_time, t_step, math.ceil(len(train) / batch_size), t_eval,
                               math.ceil(len(val) / val_batch_size))
    return epochs, t_step


def train_energy_model(make_model: Callable[[], nn.Module], train: Sequence, val: Sequence, *, batch_size: int,
                       val_batch_size: int, lr: float, max_time: float, scales: tuple[float, float],
                       weights: tuple[float, float] = (0.1, 1.0), seed: int = 0,
                       keys: tuple[str, str] = ("energy", "forces"), grad_clip: Optional[float] = None,
                       warmup_epochs: float = 0.0, log: Optional[Callable[[str], None]] = print) -> dict:
    """Train ``make_model()`` on energies and forces within ``max_time`` seconds (see the
    module docstring); returns ``model`` (best-validation state), ``epochs_planned``,
    ``epochs_run``, ``steps``, ``train_time``, ``probe_step_time`` and ``history``."""
    log = log or (lambda msg: None)
    torch.manual_seed(seed)
    epochs, t_step = probe_epochs(make_model, train, val, batch_size, val_batch_size, lr, max_time, scales,
                                  weights, keys)
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, round(warmup_epochs * steps_per_epoch)))
    best, best_state, history, steps, start = math.inf, None, [], 0, time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        late = False
        for k in range(steps_per_epoch):
            idx = order[k * batch_size:(k + 1) * batch_size].tolist()
            _step(model, optimizer, Batch.from_data_list([train[i] for i in idx]), scales, weights, keys, grad_clip)
            scheduler.step()
            steps += 1
            late = time.perf_counter() - start > max_time
            if late:
                break
        partial = late and k + 1 < steps_per_epoch
        if partial:
            log(f"  stopped by the budget in epoch {epoch + 1}/{epochs} (step {k + 1}/{steps_per_epoch})")
        if partial and best_state is None:  # no epoch completed: the last state, as ecse.atomistic.train
            break
        row = {"epoch": epoch + 1, "steps": steps, **metrics(model, val, val_batch_size, scales, weights, *keys),
               "time": time.perf_counter() - start, "partial": partial}
        history.append(row)
        if row["loss"] < best:
            best, best_state = row["loss"], copy.deepcopy(model.state_dict())
        log(f"  {'stop in ' if partial else ''}epoch {epoch + 1}/{epochs}  val E/atom MAE "
            f"{row['energy_mae_per_atom'] * 1e3:.3f} meV  F MAE {row['forces_mae'] * 1e3:.1f} meV/A  "
            f"{row['time']:.0f}s" + ("  *" if row["loss"] == best else ""))
        if late:
            break
    train_time = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"model": model.eval(), "epochs_planned": epochs,
            "epochs_run": sum(not row["partial"] for row in history), "steps": steps,
            "train_time": train_time, "probe_step_time": t_step, "history": history, "best_val_loss": best}
