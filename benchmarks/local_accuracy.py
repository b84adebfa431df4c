"""Accuracy of the local ensemble, a posteriori and in training (printed, JSON; run by hand).

    python benchmarks/local_accuracy.py [--minutes 5] [--datasets methane water] [--threads 2]

For each data set (methane 800/100/100 from the source's own files; bulk water 300/50/50,
seeded split of ``water_deepmd_400.xyz``):

1. train PET with random-rotation augmentation for ``--minutes`` (wall clock), then
   evaluate the *same weights* bare, as ``ECSE(pet, mode="global")`` and as
   ``ECSE(pet, mode="local")`` (a posteriori symmetrisation);
2. train PET with the local ensemble in the loop (``ecse: {in_loop: true, mode: local}``)
   for the same budget and evaluate it.

With ``--frame-average``, instead: train PET with the local ensemble in the loop twice,
with ``frame_average="tokens"`` (edge tokens averaged over each atom's frames, the
transformer once per atom: the training stack's choice in the loop) and ``"layers"``
(every layer once per (atom, frame) copy: ``PET``'s default, the one that wraps a
bare-trained PET after the fact), and bare PET with rotation augmentation as a reference,
for the same number of epochs (``--epochs``; same seed, data and batches), and evaluate
each as trained:

    python benchmarks/local_accuracy.py --frame-average --datasets methane --epochs 60 [--seed 1]
    python benchmarks/local_accuracy.py --frame-average --datasets methane --epochs 190 --models tokens

(the second: the averaged tokens for about the wall time of the per-copy layers' 60 epochs;
``--models`` picks which of the three to train).

The ensemble uses ``ECSE``'s own frame settings, in training and evaluation alike;
``--published-pruning`` uses the published pruning (threshold 0.9, 4 rounds, 0.15 Å
radial switches) instead, as the runs before ecse's smooth defaults did.

Reported: test energy MAE per atom (meV/atom) and force MAE (meV/Å). The global ensemble
costs one PET pass per retained frame (72 on a water box), so water is evaluated on the
first ``--water-test`` test structures for every model alike.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.data import Batch

from ecse import ECSE
from ecse.frameset import PUBLISHED
from ecse.atomistic.targets import predict
from ecse.atomistic.training import load_model, load_splits, train

ROOT = Path(__file__).resolve().parents[1]
MODEL = dict(cutoff=5.0, d_model=64, num_gnn_layers=2, num_transformer_layers=2, num_heads=4,
             dim_feedforward=128, head_hidden=64)


def _config(dataset: str, data: Path, minutes: float, out: Path, local_in_loop: bool, water_train: int = 300,
            water_val: int = 50, frames: Optional[dict] = None, seed: int = 0) -> dict:
    options = dict(model=MODEL, loss=dict(energy_weight=0.1, forces_weight=1.0),
                   optimiser=dict(lr=1e-3, decay="constant", warmup_epochs=0.0, epochs=10_000),
                   run=dict(max_time=60 * minutes, output_dir=str(out), seed=seed, progress=False))
    if local_in_loop:
        options["ecse"] = dict(in_loop=True, mode="local", **(frames or {}))
    if dataset == "methane":
        d = data / "methane"
        options["data"] = dict(train_file=str(d / "methane_train.xyz"), val_file=str(d / "methane_val.xyz"),
                               test_file=str(d / "methane_test.xyz"))
        options["optimiser"]["batch_size"] = 16
    else:
        options["data"] = dict(files=str(data / "water_bulk_64" / "water_deepmd_400.xyz"), split_sizes=[water_train, water_val, 50])
        options["optimiser"]["batch_size"] = 2
    return options


def _mae(model, test: list, batch_size: int) -> dict:
    types = {"energy": "energy", "forces": "forces"}
    e_err, f_err, n_atoms, start = [], [], 0, time.perf_counter()
    for i in range(0, len(test), batch_size):
        batch = Batch.from_data_list(test[i:i + batch_size])
        out = predict(model, batch, types)
        counts = torch.bincount(batch.batch, minlength=batch.num_graphs)
        e_err.append(((out["energy"].detach() - batch.energy.reshape(-1)) / counts).abs())
        f_err.append((out["forces"].detach() - batch.forces).abs().reshape(-1))
        n_atoms += batch.num_nodes
    stats = getattr(model, "last_stats", {})
    return {"energy_mae_meV_per_atom": 1e3 * float(torch.cat(e_err).mean()),
            "forces_mae_meV_per_A": 1e3 * float(torch.cat(f_err).mean()),
            "seconds": time.perf_counter() - start,
            "frames_per_atom": stats.get("frames_per_atom", stats.get("frames_per_centre"))}


def _frame_settings(args) -> dict:
    """``ECSE`` keyword arguments of the ensemble: none (its defaults) or the published pruning."""
    return dict(PUBLISHED) if args.published_pruning else {}


def compare_frame_average(args) -> dict:
    """Local ensemble in the loop, ``frame_average`` tokens vs layers, and bare PET; equal epochs."""
    results, frames = {}, _frame_settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            rows = {}
            for average in args.models:
                in_loop = average != "bare"
                cfg = _config(dataset, args.data, 1e4, Path(tmp) / dataset / average, in_loop, args.water_train,
                              args.water_val, frames, args.seed)
                cfg["model"] = {**MODEL, "frame_average": "layers" if average == "bare" else average}
                cfg["optimiser"]["epochs"] = args.epochs
                start = time.perf_counter()
                run = train(cfg, log=None)
                seconds = time.perf_counter() - start
                ckpt = run["best_checkpoint"] if Path(run["best_checkpoint"]).is_file() else run["last_checkpoint"]
                test = load_splits(run["config"], torch.float32)[2][:args.water_test if dataset == "water" else None]
                pet = load_model(ckpt, wrap=False)
                model = ECSE(pet, cutoff=5.0, mode="local", **frames) if in_loop else pet
                label = f"local in loop, {average}" if in_loop else "bare PET, rotation-augmented"
                rows[label] = {**_mae(model, test, 16 if dataset == "methane" else 1), "steps": run["global_step"],
                               "train_s": seconds}
                print(f"  {dataset} {label}: {rows[label]}", flush=True)
            results[dataset] = rows
            print(f"\n{dataset} ({args.epochs} epochs, test structures: {len(test)})")
            print(f"  {'model':<30} {'E MAE meV/atom':>15} {'F MAE meV/A':>12} {'train s':>8} {'frames/atom':>11}")
            for label, r in rows.items():
                fpa = f"{r['frames_per_atom']:.2f}" if r.get("frames_per_atom") is not None else "-"
                print(f"  {label:<30} {r['energy_mae_meV_per_atom']:>15.2f} {r['forces_mae_meV_per_A']:>12.1f} "
                      f"{r['train_s']:>8.0f} {fpa:>11}", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--datasets", nargs="+", default=["methane", "water"], choices=["methane", "water"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--water-test", type=int, default=10)
    parser.add_argument("--water-train", type=int, default=300, help="water training structures")
    parser.add_argument("--water-val", type=int, default=50, help="water validation structures")
    parser.add_argument("--frame-average", action="store_true",
                        help="compare PET's frame_average tokens vs layers, trained in the loop")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per model with --frame-average")
    parser.add_argument("--models", nargs="+", default=["tokens", "layers", "bare"], choices=["tokens", "layers", "bare"],
                        help="with --frame-average: which of the three to train")
    parser.add_argument("--published-pruning", action="store_true",
                        help="the ensemble with the published pruning (ecse.frameset.PUBLISHED), not ECSE's defaults")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.frame_average:
        results = compare_frame_average(args)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return
    results, frames = {}, _frame_settings(args)
    print(f"PET {MODEL}, {args.minutes:g} min of training per model, {args.threads} thread(s), float32")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            rows = {}
            for name, in_loop in (("augmented", False), ("local in loop", True)):
                cfg = _config(dataset, args.data, args.minutes, Path(tmp) / dataset / name.replace(" ", "_"), in_loop,
                              frames=frames, seed=args.seed)
                run = train(cfg, log=None)
                ckpt = run["best_checkpoint"] if Path(run["best_checkpoint"]).is_file() else run["last_checkpoint"]
                test = load_splits(run["config"], torch.float32)[2]
                if dataset == "water":
                    test = test[:args.water_test]
                bs = 16 if dataset == "methane" else 1
                pet = load_model(ckpt, wrap=False)
                steps = run["global_step"]
                if not in_loop:
                    rows["bare"] = {**_mae(pet, test, bs), "steps": steps}
                    rows["ECSE global (a posteriori)"] = _mae(ECSE(pet, cutoff=5.0, mode="global", chunk_size=1024,
                                                                   **frames), test, bs)
                    rows["ECSE local (a posteriori)"] = _mae(ECSE(pet, cutoff=5.0, mode="local", **frames), test, bs)
                else:
                    rows["ECSE local, trained in the loop"] = {
                        **_mae(ECSE(pet, cutoff=5.0, mode="local", **frames), test, bs), "steps": steps}
                    rows["its backbone, bare"] = _mae(pet, test, bs)
            results[dataset] = rows
            print(f"\n{dataset} (test structures: {len(test)})")
            print(f"  {'model':<34} {'E MAE meV/atom':>15} {'F MAE meV/A':>12} {'eval s':>8} {'frames/atom':>11}")
            for label, r in rows.items():
                fpa = f"{r['frames_per_atom']:.2f}" if r.get("frames_per_atom") is not None else "-"
                print(f"  {label:<34} {r['energy_mae_meV_per_atom']:>15.2f} {r['forces_mae_meV_per_A']:>12.1f} "
                      f"{r['seconds']:>8.1f} {fpa:>11}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
