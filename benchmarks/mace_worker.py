"""MACE side of the peer benchmarks; runs inside ``.venv-mace`` (``benchmarks/setup_peers.sh``).

mace-torch pins e3nn 0.4.4 while ecse uses e3nn 0.5.9, so MACE lives in its own venv and
``benchmarks/accuracy.py`` and ``benchmarks/pet.py`` call this script as a subprocess. It
imports neither ecse nor torch_geometric. The last line it prints is ``RESULT {json}``.

    .venv-mace/bin/python benchmarks/mace_worker.py train SPEC.json
    .venv-mace/bin/python benchmarks/mace_worker.py time WATER.xyz [--repeats 3] [--threads 2]

``train``: SPEC (written by ``benchmarks/accuracy.py``) names the split files (extxyz with
``REF_energy`` / ``REF_forces``), the composition baseline (MACE's E0s, fixed), the loss
scales ``[sE, sF]`` and weights, the optimiser settings, the wall-clock budget
``max_time`` (s) and the model hyper-parameters. Protocol, shared with PET and SchNet in
``accuracy.py``: loss ``we * MSE(E/N) / sE**2 + wf * MSE(F) / sF**2``; Adam with a linear
warm-up (``warmup_epochs``), gradient-norm clipping (``grad_clip``) and a cosine
schedule over the epochs that fit the budget, rounded up (estimated from timed probe
steps on a throw-away model); validation after every completed epoch; a mid-epoch stop
when the budget is spent, whose state is validated too; the test MAEs are those of the
best-validation state (the last state when no epoch completed).

``time``: median wall time of one energy + forces evaluation of a published-default
``ScaleShiftMACE`` (128x0e+128x1o, max_ell 3, correlation 3, r_max 5, 2 interactions) on
the first structure of the file, float32, random weights; ``seconds`` includes building
MACE's neighbour graph, ``model_seconds`` does not.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # e3nn 0.4.4 / torch 2.13 deprecation noise

import mace  # noqa: F401  (first: sets the torch.load flag that e3nn 0.4.4 needs)
import numpy as np
import torch
from e3nn import o3
from mace import data as mdata
from mace import modules, tools
from mace.tools import torch_geometric as mtg

__all__ = ["build_mace", "train", "time_forward"]

ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"
DEFAULT_MODEL = dict(r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, num_interactions=2,
                     hidden_irreps="128x0e+128x1o", correlation=3, MLP_irreps="16x0e",
                     radial_MLP=[64, 64, 64])


def _read(path: str, z_table, r_max: float) -> list:
    import ase.io

    spec = mdata.KeySpecification(info_keys={"energy": ENERGY_KEY}, arrays_keys={"forces": FORCES_KEY})
    frames = ase.io.read(path, index=":")
    for k, atoms in enumerate(frames):
        if ENERGY_KEY not in atoms.info or FORCES_KEY not in atoms.arrays:
            raise KeyError(f"{path}[{k}]: needs info[{ENERGY_KEY!r}] and arrays[{FORCES_KEY!r}]")
    configs = [mdata.config_from_atoms(a, key_specification=spec) for a in frames]
    return [mdata.AtomicData.from_config(c, z_table=z_table, cutoff=r_max) for c in configs]


def build_mace(zs, atomic_energies, avg_num_neighbors: float, scale: float = 1.0, shift: float = 0.0,
               **hyper) -> torch.nn.Module:
    """``ScaleShiftMACE`` as ``mace_run_train --model MACE`` builds it (residual interaction
    blocks, plain first block, SiLU gate), with ``hyper`` overriding :data:`DEFAULT_MODEL`."""
    h = {**DEFAULT_MODEL, **hyper}
    return modules.ScaleShiftMACE(
        r_max=h["r_max"], num_bessel=h["num_bessel"], num_polynomial_cutoff=h["num_polynomial_cutoff"],
        max_ell=h["max_ell"], interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=h["num_interactions"], num_elements=len(zs), hidden_irreps=o3.Irreps(h["hidden_irreps"]),
        MLP_irreps=o3.Irreps(h["MLP_irreps"]), atomic_energies=np.asarray(atomic_energies, dtype=np.float64),
        avg_num_neighbors=float(avg_num_neighbors), atomic_numbers=list(zs), correlation=h["correlation"],
        gate=torch.nn.functional.silu, radial_MLP=list(h["radial_MLP"]),
        atomic_inter_scale=float(scale), atomic_inter_shift=float(shift))


def _loss(out, batch, s_e: float, s_f: float, w_e: float, w_f: float) -> torch.Tensor:
    n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
    e_err = (out["energy"] - batch.energy) / n_atoms
    return w_e * e_err.pow(2).mean() / s_e ** 2 + w_f * (out["forces"] - batch.forces).pow(2).mean() / s_f ** 2


def _evaluate(model, loader, spec) -> dict:
    """Loss, energy MAE per atom (mean over structures) and force-component MAE, in eV, eV/Å."""
    sums, n_struct, n_comp = np.zeros(3), 0, 0
    for batch in loader:
        out = model(batch.to_dict(), training=False, compute_force=True)
        energy, forces = out["energy"].detach(), out["forces"].detach()
        n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(energy.dtype)
        loss = _loss({"energy": energy, "forces": forces}, batch, *spec["scales"], spec["energy_weight"],
                     spec["forces_weight"])
        sums += [float(loss) * batch.num_graphs, float(((energy - batch.energy) / n_atoms).abs().sum()),
                 float((forces - batch.forces).abs().sum())]
        n_struct, n_comp = n_struct + batch.num_graphs, n_comp + forces.numel()
    return {"loss": sums[0] / n_struct, "energy_mae_per_atom": sums[1] / n_struct, "forces_mae": sums[2] / n_comp}


def _warmup_cosine(total_steps: int, warmup_steps: int):
    """Linear warm-up, then cosine decay to 0 (``_peers.warmup_cosine``; this venv has no ecse)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))))
    return factor


def train(spec: dict) -> dict:
    """Train MACE as ``spec`` says (see the module docstring); returns the result ``dict``."""
    torch.set_num_threads(int(spec.get("threads", 2)))
    torch.set_default_dtype(getattr(torch, spec.get("dtype", "float32")))
    hyper = {**DEFAULT_MODEL, **spec.get("model", {})}
    baseline = {int(z): float(e) for z, e in spec["baseline"].items()}
    z_table = tools.AtomicNumberTable(sorted(baseline))
    sets = {name: _read(spec[name], z_table, hyper["r_max"]) for name in ("train", "val", "test")}
    bs, vbs = int(spec["batch_size"]), int(spec.get("val_batch_size") or spec["batch_size"])
    gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    train_loader = mtg.dataloader.DataLoader(sets["train"], batch_size=bs, shuffle=True, drop_last=False,
                                             generator=gen)
    val_loader, test_loader = (mtg.dataloader.DataLoader(sets[n], batch_size=vbs, shuffle=False)
                               for n in ("val", "test"))
    avg_nb = modules.compute_avg_num_neighbors(mtg.dataloader.DataLoader(sets["train"], batch_size=vbs))
    s_e, s_f = spec["scales"]
    make = lambda: build_mace(z_table.zs, [baseline[z] for z in z_table.zs], avg_nb, scale=s_f, shift=0.0,
                              **spec.get("model", {}))

    def step(model, optimizer, batch) -> torch.Tensor:
        out = model(batch.to_dict(), training=True, compute_force=True)
        loss = _loss(out, batch, s_e, s_f, spec["energy_weight"], spec["forces_weight"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.get("grad_clip") is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(spec["grad_clip"]))
        optimizer.step()
        return loss.detach()

    # probe: time a few steps and one validation batch on a throw-away model
    torch.manual_seed(int(spec.get("seed", 0)))
    probe = make()
    probe_opt = torch.optim.Adam(probe.parameters(), lr=spec["lr"])
    first = next(iter(mtg.dataloader.DataLoader(sets["train"], batch_size=bs)))
    # MACE's first steps are several times slower than its steady state (0.29 s against
    # 0.10 s on methane): warm up 3 steps, then take the median of 5 timed ones
    for _ in range(3):
        step(probe, probe_opt, first)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        step(probe, probe_opt, first)
        times.append(time.perf_counter() - t0)
    t_step = sorted(times)[len(times) // 2]
    val_batch = next(iter(val_loader)).to_dict()
    probe(val_batch, training=False, compute_force=True)
    t0 = time.perf_counter()
    probe(val_batch, training=False, compute_force=True)
    t_eval = time.perf_counter() - t0
    steps_per_epoch = len(train_loader)
    t_epoch = steps_per_epoch * t_step + len(val_loader) * t_eval
    epochs = max(1, math.ceil(spec["max_time"] / t_epoch))  # rounded up, as _peers.epochs_for_budget
    del probe, probe_opt

    torch.manual_seed(int(spec.get("seed", 0)))
    model = make()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    warmup_steps = round(float(spec.get("warmup_epochs", 0.0)) * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(epochs * steps_per_epoch, warmup_steps))
    best, best_state, history, steps, start = math.inf, None, [], 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        late, done = False, 0
        for batch in train_loader:
            step(model, optimizer, batch)
            scheduler.step()
            steps, done = steps + 1, done + 1
            late = time.perf_counter() - start > spec["max_time"]
            if late:
                break
        partial = late and done < steps_per_epoch
        if partial:
            print(f"mace: stopped by the budget in epoch {epoch + 1}/{epochs} (step {done}/{steps_per_epoch})",
                  file=sys.stderr, flush=True)
        if partial and best_state is None:  # no epoch completed: the last state, as ecse.atomistic.train
            break
        model.eval()  # a mid-epoch stop's state is validated too, as ecse.atomistic.train
        val = _evaluate(model, val_loader, spec)
        history.append({"epoch": epoch + 1, "steps": steps, "time": time.perf_counter() - start,
                        "partial": partial, **val})
        print(f"mace {'stop in ' if partial else ''}epoch {epoch + 1}/{epochs}  val E/atom MAE "
              f"{val['energy_mae_per_atom'] * 1e3:.3f} meV  F MAE {val['forces_mae'] * 1e3:.1f} meV/A  "
              f"{history[-1]['time']:.0f}s", file=sys.stderr, flush=True)
        if val["loss"] < best:
            best, best_state = val["loss"], copy.deepcopy(model.state_dict())
        if late:
            break
    train_time = time.perf_counter() - start
    if best_state is not None:  # else no epoch completed: the last state
        model.load_state_dict(best_state)
    model.eval()
    t0 = time.perf_counter()
    test = _evaluate(model, test_loader, spec)
    eval_time = time.perf_counter() - t0
    return {"model": "mace", "params": n_params, "hyper": hyper, "avg_num_neighbors": avg_nb,
            "epochs_planned": epochs, "epochs_run": sum(not row["partial"] for row in history), "steps": steps, "train_time": train_time,
            "probe_step_time": t_step, "eval_time": eval_time, "best_val_loss": best, "history": history,
            "test_energy_mae_per_atom": test["energy_mae_per_atom"], "test_forces_mae": test["forces_mae"]}


def time_forward(path: str, repeats: int = 3, threads: int = 2, **hyper) -> dict:
    """Median seconds of one energy + forces evaluation of a random-weight MACE (see docstring)."""
    import ase.io

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    atoms = ase.io.read(path, index=0)
    atoms.info[ENERGY_KEY], atoms.arrays[FORCES_KEY] = 0.0, np.zeros((len(atoms), 3))
    h = {**DEFAULT_MODEL, **hyper}
    z_table = tools.AtomicNumberTable(sorted(set(atoms.numbers.tolist())))
    config = mdata.config_from_atoms(atoms, key_specification=mdata.KeySpecification(
        info_keys={"energy": ENERGY_KEY}, arrays_keys={"forces": FORCES_KEY}))

    def graph():
        data = mdata.AtomicData.from_config(config, z_table=z_table, cutoff=h["r_max"])
        return mtg.batch.Batch.from_data_list([data]).to_dict()

    batch = graph()
    avg_nb = float(batch["edge_index"].shape[1]) / len(atoms)
    torch.manual_seed(0)
    model = build_mace(z_table.zs, np.zeros(len(z_table)), avg_nb, **hyper).eval()

    def median(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    full = median(lambda: model(graph(), training=False, compute_force=True)["forces"])
    bare = median(lambda: model(batch, training=False, compute_force=True)["forces"])
    return {"model": "mace", "seconds": full, "model_seconds": bare, "atoms": len(atoms),
            "params": sum(p.numel() for p in model.parameters()), "hyper": h, "threads": torch.get_num_threads(),
            "avg_num_neighbors": avg_nb}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train on the split files named in SPEC.json")
    p_train.add_argument("spec")
    p_time = sub.add_parser("time", help="time energy + forces on the first structure of a file")
    p_time.add_argument("xyz")
    p_time.add_argument("--repeats", type=int, default=3)
    p_time.add_argument("--threads", type=int, default=2)
    p_time.add_argument("--model", default="{}", help="JSON overrides of the model hyper-parameters")
    args = parser.parse_args(argv)
    if args.command == "train":
        with open(args.spec, encoding="utf-8") as handle:
            result = train(json.load(handle))
    else:
        result = time_forward(args.xyz, args.repeats, args.threads, **json.loads(args.model))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
