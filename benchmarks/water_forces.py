"""Does a model start learning bulk-water forces? PET (published linear distance
embedding), PET with a Gaussian distance basis (``num_radial``) and SchNet, side by side.

    python benchmarks/water_forces.py [--steps 150] [--energy-weight 0 0.1] [--threads 2]
                                      [--models pet pet-basis schnet] [--train 100]

A diagnostic, run by hand (about 2.5 minutes per PET run on 2 cores, 20 s per SchNet run);
it prints a table and asserts nothing. Each run trains a fresh model (seed 0) on the first
``--train`` structures of the water split's training file (``benchmarks/accuracy.py``'s
seeded 300/50/50 split of ``water_bulk_64/water_deepmd_400.xyz``), one box per step in
a fixed order, no augmentation, Adam at a constant lr (1e-3), gradient clipping at 1.0,
loss ``w * MSE(E/N) / sE**2 + MSE(F) / sF**2`` (``sE``, ``sF``: the training boxes' stds
after the composition baseline, as in the accuracy harness). Reported per run: the force
term (``MSE(F) / sF**2``; 1.0 = zero forces) averaged over the first and the last 20
steps, the mean ``|F|`` predicted over the last 20 steps (data: 0.60 eV/Å), the largest
energy term ``MSE(E/N) / sE**2`` of the last 20 steps, and the median gradient norm.

Models: PET as in ``benchmarks/accuracy.py`` (d_model 64, 2x2 layers, heads start at
zero, output scale sF), ``pet-basis`` the same with ``num_radial=32``; SchNet as there
(PyG, 128 features, 3 blocks, 50 Gaussians, output scale sE).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _peers import SchNetEnergy, residual_scales  # noqa: E402
from accuracy import PET_HYPER, SCHNET_HYPER, write_splits  # noqa: E402
from ecse.backbones import PET  # noqa: E402
from ecse.atomistic.derivatives import energy_and_forces  # noqa: E402
from ecse.atomistic import fit_composition_baseline, load_dataset  # noqa: E402

KEYS = {"REF_energy": "graph", "REF_forces": "node"}


def make_model(name: str, baseline: dict, s_e: float, s_f: float) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "schnet":
        return SchNetEnergy(baseline, std=s_e, **SCHNET_HYPER)
    model = PET(**{**PET_HYPER, "num_radial": 32 if name == "pet-basis" else 0})
    model.set_composition_offsets(baseline)
    model.set_output_scale(s_f)
    return model


def run(name: str, data: list, baseline: dict, s_e: float, s_f: float, steps: int, energy_weight: float,
        lr: float) -> dict:
    model = make_model(name, baseline, s_e, s_f)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    force_terms, energy_terms, norms, sizes = [], [], [], []
    t0 = time.perf_counter()
    for step in range(steps):
        batch = Batch.from_data_list([data[step % len(data)]])
        energy, forces = energy_and_forces(model, batch, create_graph=True)
        force_term = (forces - batch.REF_forces).pow(2).mean() / s_f ** 2
        energy_term = ((energy - batch.REF_energy.reshape(-1)) / batch.num_nodes).pow(2).mean() / s_e ** 2
        loss = force_term + energy_weight * energy_term
        optimizer.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        optimizer.step()
        force_terms.append(float(force_term.detach()))
        energy_terms.append(float(energy_term.detach()))
        sizes.append(float(forces.detach().abs().mean()))
    window = min(20, steps)
    return {"model": name, "energy_weight": energy_weight, "steps": steps,
            "force_first": statistics.fmean(force_terms[:window]), "force_last": statistics.fmean(force_terms[-window:]),
            "abs_force_last": statistics.fmean(sizes[-window:]), "energy_max_last": max(energy_terms[-window:]),
            "grad_norm_median": statistics.median(norms), "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--energy-weight", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--models", nargs="+", choices=["pet", "pet-basis", "schnet"],
                        default=["pet", "pet-basis", "schnet"])
    parser.add_argument("--train", type=int, default=100, help="training boxes used (first N of the split)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_splits("water", args.data, Path(tmp), seed=0)
        data = load_dataset(paths["train"], KEYS, index=f":{args.train}", dtype=torch.float32)
    baseline = fit_composition_baseline(data, "REF_energy")
    s_e, s_f = residual_scales(data, baseline, "REF_energy", "REF_forces")
    print(f"water: {len(data)} training boxes, sE {s_e:.4g} eV/atom, sF {s_f:.4g} eV/A, lr {args.lr:g}, "
          f"{args.steps} steps, torch {torch.__version__}, {args.threads} thread(s)", flush=True)
    print(f"{'model':10s} {'E weight':>8s} {'F term first':>12s} {'F term last':>11s} {'|F| last':>9s} "
          f"{'max E term':>10s} {'grad norm':>9s} {'s':>5s}", flush=True)
    for weight in args.energy_weight:
        for name in args.models:
            r = run(name, data, baseline, s_e, s_f, args.steps, weight, args.lr)
            print(f"{name:10s} {weight:8g} {r['force_first']:12.3f} {r['force_last']:11.3f} {r['abs_force_last']:9.4f} "
                  f"{r['energy_max_last']:10.3g} {r['grad_norm_median']:9.3g} {r['seconds']:5.0f}", flush=True)


if __name__ == "__main__":
    main()
