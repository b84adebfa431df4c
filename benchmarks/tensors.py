"""Dipoles and polarizabilities: ECSE-wrapped PET vs a small e3nn model, same wall-clock budget.

For every data set and tensor target, trains

* ``PET(output=T)`` with rotation augmentation through :func:`ecse.atomistic.train`
  (``targets: {key: T}``), evaluated bare and as ``ECSE(PET, output=T)`` (exactly
  covariant), and
* :class:`ecse.backbones.e3nn_tensor.E3nnTensor` (intrinsically equivariant baseline) with the
  same loss (MSE of the Cartesian components over their training std, after the same
  per-species isotropic baseline for rank-2 targets), optimiser, batch size, split and
  wall-clock budget,

then reports test RMSE as % of the test std per irreducible part (dipole ``l=1``;
polarizability ``l=0`` and ``l=2``) and overall Cartesian RMSE
(:mod:`ecse.atomistic.evaluation`), prints a table and writes JSON::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tensors.py --minutes 3 \\
        --datasets water_monomer qm7x --out runs/tensors/results.json

Both models get a cosine learning-rate decay over the budget (PET: epochs estimated from
one extra timed epoch; e3nn: on elapsed time) and are tested with their best-validation
parameters. ECSE uses the training configuration's ``ecse`` options (the project's
default). Columns: epochs trained, Cartesian test RMSE (data units: atomic units, e·bohr
and bohr^3), RMSE in % of the test std overall and per irreducible part, the largest
relative equivariance error over random rotations, ECSE frames per structure.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_geometric.data import Batch  # noqa: E402

from ecse.backbones.e3nn_tensor import E3nnTensor  # noqa: E402
from ecse.atomistic import evaluate_models  # noqa: E402
from ecse.atomistic.data import fit_composition_baseline, load_dataset, split_dataset  # noqa: E402
from ecse.atomistic.targets import prepare_targets  # noqa: E402
from ecse.atomistic.training import load_model, train  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "water_monomer": (DATA / "water_tensors" / "water_monomer_coords_1000.xyz", [800, 100, 100]),
    "water_dimer": (DATA / "water_tensors" / "water_dimer_coords_1000.xyz", [800, 100, 100]),
    "qm7x": (DATA / "qm7x_tensors" / "qm7x_reduced_100_CHNO_mu_alpha.xyz", [70, 15, 15]),
}
#: task -> (key in the files, target type); "alpha-l02" trains alpha in its l=0 and l=2 parts
TARGETS = {"mu": ("mu", "vector"), "alpha": ("alpha", "rank2-symmetric"), "alpha-l02": ("alpha", "1x0e+1x2e")}
PET_MODEL = dict(d_model=32, num_gnn_layers=2, num_transformer_layers=1, num_heads=2, dim_feedforward=64,
                 head_hidden=32)
E3NN_MODEL = dict(hidden="32x0e+16x1o+8x2e", num_layers=2, lmax=2)


def load_splits(path: Path, key: str, kind: str, sizes: list, seed: int, dtype: torch.dtype) -> tuple:
    """The split of :func:`ecse.atomistic.train` for ``data=path`` (same seed and order)."""
    data = prepare_targets(load_dataset(path, {key: "graph"}, dtype=dtype), {key: kind}, source=str(path))
    return split_dataset(data, sizes, seed=seed)


def iso_baseline(train_set: list, key: str, kind: str) -> dict:
    """Per-species isotropic offsets ``tr(T)/3`` of rank-2 targets (as in training), else none."""
    if kind not in ("rank2", "rank2-symmetric"):
        return {}
    from torch_geometric.data import Data

    iso = [Data(z=d.z, iso=torch.diagonal(d[key].reshape(3, 3)).mean().reshape(1)) for d in train_set]
    return fit_composition_baseline(iso, key="iso")


def train_pet(path: Path, key: str, kind: str, sizes: list, budget: float, args, out_dir: str) -> dict:
    config = {"data": str(path), "targets": {key: kind}, "split_sizes": sizes, "model": PET_MODEL,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "num_threads": args.threads,
              "grad_clip": args.grad_clip, "warmup_epochs": 1.0, "progress": False, "output_dir": out_dir}
    with tempfile.TemporaryDirectory() as tmp:  # one timed epoch sets the length of the cosine decay
        probe = train({**config, "epochs": 1, "output_dir": tmp}, log=None)
    epoch_time = probe["history"][0]["time"]
    epochs = max(1, int(0.95 * budget / epoch_time))
    t0 = time.perf_counter()
    res = train({**config, "epochs": epochs, "max_time": budget}, log=None)
    return {"train_time_s": time.perf_counter() - t0, "epochs": res["epochs_completed"], "planned_epochs": epochs,
            "steps": res["global_step"], "best_epoch": res["best_epoch"], "checkpoint": res["best_checkpoint"]}


def _loss(model, batch, key, scale):
    pred = model(batch)
    return (pred - batch[key].reshape(pred.shape)).pow(2).mean() / scale ** 2


def train_e3nn(path: Path, key: str, kind: str, sizes: list, budget: float, args) -> tuple[torch.nn.Module, dict]:
    """Train the e3nn baseline for ``budget`` seconds (cosine decay on elapsed time)."""
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    train_set, val_set, _ = load_splits(path, key, kind, sizes, args.seed, torch.float32)
    model = E3nnTensor(kind, **E3NN_MODEL, dtype=torch.float32)
    baseline = iso_baseline(train_set, key, kind)
    model.set_composition_offsets(baseline)
    targets = torch.stack([d[key].reshape(-1).double() for d in train_set])
    if baseline:
        iso = torch.tensor([sum(baseline[int(z)] for z in d.z) for d in train_set], dtype=torch.float64)
        targets = targets - iso[:, None] * torch.eye(3, dtype=torch.float64).reshape(1, 9)
    scale = float(targets.std(unbiased=False)) or 1.0
    opt = torch.optim.Adam(model.parameters(), lr=args.lr_e3nn)
    gen = torch.Generator().manual_seed(args.seed)
    best, best_state, epochs, steps = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    while time.perf_counter() - t0 < budget:
        model.train()
        order = torch.randperm(len(train_set), generator=gen).tolist()
        for start in range(0, len(order), args.batch_size):
            progress = min(1.0, (time.perf_counter() - t0) / budget)
            for group in opt.param_groups:
                group["lr"] = args.lr_e3nn * 0.5 * (1 + math.cos(math.pi * progress))
            batch = Batch.from_data_list([train_set[k] for k in order[start:start + args.batch_size]])
            loss = _loss(model, batch, key, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            steps += 1
            if time.perf_counter() - t0 > budget:
                break
        epochs += 1
        model.eval()
        with torch.no_grad():
            val = sum(float(_loss(model, Batch.from_data_list(val_set[s:s + 64]), key, scale)) * len(val_set[s:s + 64])
                      for s in range(0, len(val_set), 64)) / max(len(val_set), 1)
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), {"train_time_s": time.perf_counter() - t0, "epochs": epochs, "steps": steps}


def summarise(metrics: dict) -> dict:
    """Cartesian RMSE and RMSE % of std, overall and per irreducible part (a model trained
    in (l=0, l=2) parts is summarised in Cartesian form, like the others)."""
    metrics = metrics.get("cartesian", metrics)
    return {"rmse": metrics["rmse"], "rmse_pct": metrics["rmse_pct"], "std": metrics["std"],
            "parts": {name: {"rmse": p["rmse"], "rmse_pct": p["rmse_pct"], "std": p["std"]}
                      for name, p in metrics["parts"].items()}}


def run_one(name: str, task: str, args) -> list[dict]:
    path, sizes = DATASETS[name]
    (key, kind), budget = TARGETS[task], 60.0 * args.minutes
    print(f"== {name} {task} ({kind}), seed {args.seed}: {sizes} split, {args.minutes:g} min per model", flush=True)
    test = load_splits(path, key, kind, sizes, args.seed, torch.float64)[2]
    targets, rows = {key: kind}, []
    with tempfile.TemporaryDirectory() as out_dir:
        info = train_pet(path, key, kind, sizes, budget, args, out_dir)
        checkpoint = info.pop("checkpoint")
        bare = load_model(checkpoint, wrap=False).double()
        wrapped = load_model(checkpoint, wrap=True).double()
    report = evaluate_models(bare, wrapped, test, targets, rotations=args.rotations, batch_size=16)
    params = sum(p.numel() for p in bare.parameters())
    for which, label in (("wrapped", "ECSE(PET)"), ("bare", "PET (bare, augmented)")):
        m = report["models"][which]
        rows.append({"dataset": name, "target": task, "type": kind, "seed": args.seed, "model": label,
                     "params": params, **info,
                     "budget_s": budget, "metrics": summarise(m["metrics"][key]),
                     "equivariance_error": m["equivariance_error"][key]["max_relative"],
                     "frames_per_structure": m.get("frames_per_structure")})
    if kind == "1x0e+1x2e":  # the e3nn model predicts exactly these parts: its row is the "alpha" task's
        for row in rows[-2:]:
            print(format_row(row), flush=True)
        return rows
    model, info = train_e3nn(path, key, kind, sizes, budget, args)
    report = evaluate_models(model.double(), None, test, targets, rotations=args.rotations, batch_size=16)
    m = report["models"]["bare"]
    rows.append({"dataset": name, "target": task, "type": kind, "seed": args.seed, "model": "e3nn", "budget_s": budget,
                 "params": sum(p.numel() for p in model.parameters()), **info,
                 "metrics": summarise(m["metrics"][key]),
                 "equivariance_error": m["equivariance_error"][key]["max_relative"]})
    for row in rows[-3:]:
        print(format_row(row), flush=True)
    return rows


HEADER = (f"{'data':<14}{'target':<10}{'model':<23}{'epochs':>7}{'RMSE':>10}{'% std':>8}"
          f"{'l=0 %':>8}{'l=1 %':>8}{'l=2 %':>8}{'equiv.':>10}{'frames':>8}")


def format_row(row: dict) -> str:
    m, parts = row["metrics"], row["metrics"]["parts"]
    cell = lambda p: f"{parts[p]['rmse_pct']:8.2f}" if p in parts else f"{'-':>8}"  # noqa: E731
    return (f"{row['dataset']:<14}{row['target']:<10}{row['model']:<23}{row['epochs']:>7}{m['rmse']:>10.4f}"
            f"{m['rmse_pct']:>8.2f}{cell('l=0')}{cell('l=1')}{cell('l=2')}{row['equivariance_error']:>10.1e}"
            + (f"{row['frames_per_structure']:>8.1f}" if row.get("frames_per_structure") else f"{'-':>8}"))


def format_seed_summary(rows: list[dict]) -> str:
    """Mean and spread (min..max) over seeds of the RMSE % of std, overall and per part."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["target"], row["model"]), []).append(row["metrics"])
    lines = [f"{'data':<14}{'target':<10}{'model':<23}{'seeds':>6}  % std mean (min..max) overall | l=0 | l=1 | l=2"]
    for (data, target, model), runs in groups.items():
        cells = []
        for part in (None, "l=0", "l=1", "l=2"):
            values = [m["rmse_pct"] if part is None else m["parts"][part]["rmse_pct"] for m in runs
                      if part is None or part in m["parts"]]
            cells.append(f"{sum(values) / len(values):.2f} ({min(values):.2f}..{max(values):.2f})" if values else "-")
        lines.append(f"{data:<14}{target:<10}{model:<23}{len(runs):>6}  " + " | ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model and task")
    parser.add_argument("--datasets", nargs="+", default=["water_monomer", "qm7x"], choices=sorted(DATASETS))
    parser.add_argument("--targets", nargs="+", default=["mu", "alpha"], choices=sorted(TARGETS),
                        help="tasks: mu (vector), alpha (Cartesian rank2-symmetric), alpha-l02 (alpha in its "
                             "l=0 and l=2 parts, PET only)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3, help="PET learning rate")
    parser.add_argument("--lr-e3nn", type=float, default=5e-3, help="e3nn learning rate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rotations", type=int, default=2, help="random rotations per test structure (symmetry check)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds (split, initialisation, shuffling); several give a mean and spread")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clipping (both models)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "tensors" / "results.json"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*TorchScript.*")
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        args.seed = seed
        for name in args.datasets:
            for task in args.targets:
                rows += run_one(name, task, args)
    print("\ntest RMSE (Cartesian, data units) and RMSE as % of the test std, per irreducible part")
    print(HEADER)
    for row in rows:
        print(format_row(row))
    if len(args.seeds) > 1:
        print("\n" + format_seed_summary(rows))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"minutes_per_model": args.minutes, "threads": args.threads, "pet_model": PET_MODEL,
                   "e3nn_model": E3NN_MODEL, "lr": args.lr, "lr_e3nn": args.lr_e3nn, "seeds": args.seeds,
                   "grad_clip": args.grad_clip,
                   "batch_size": args.batch_size, "rows": rows}, handle, indent=2)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
