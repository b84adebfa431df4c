"""Frames, cost and smoothness of ECSE(PET) on solids, water and methane (printed, never asserted).

    python benchmarks/solids.py [--systems water192 cu300 ...] [--repeats 3] [--pet small|default]
                                [--points 7] [--budget 75] [--no-sweep] [--quick] [--out rows.json]

For every system (periodic cells from ``../shared/data``, the bundled ``methane`` and
``emt_metals`` sets, and perfect crystals from ``ase.build.bulk(...).repeat``):

* frames per atom of the local ensemble (``ecse.local_frames``: frame copies with
  weight > 0 per atom; mean and max) and retained frames per structure of the global
  ensemble (``ecse.global_frames``), ``ECSE``'s default frame settings, 5 A cutoff;
* energy + forces (autograd) of bare PET and of ``ECSE(PET, mode="local")`` with the same
  weights and ``PET(frame_average="tokens")`` (column ``local``; its curvature and
  rotation errors too), and on ``--layers-systems`` with PET's default
  ``frame_average="layers"`` (every layer once per frame copy), measured side by side (interleaved calls, median of ``--repeats``): time and
  cost ratio, and the peak resident memory of each call above the memory before it
  (Linux ``/proc/self/clear_refs``; ``-`` elsewhere).  The global ensemble is timed only
  when its backbone passes (retained frames per structure) are at most
  ``--global-max-passes``; otherwise only its frame count is given;
* the rotation error of ECSE(PET) (energy and forces, one random rotation, float64);
* the curvature ratio: ``max |d2E/ds2|`` of ECSE(PET) over that of bare PET along the
  same random straight path (``ecse.testing.smoothness_profile``, ``--points`` points,
  per-atom RMS displacement ``--rms`` A at the end of the path).  Skipped (``-``) when the
  estimated time (points x measured time per call) exceeds ``--budget`` seconds.

Then a frame-settings sweep (``--sweep-systems``): frames per atom vs curvature ratio vs
cost ratio for ``SWEEP``: the defaults, the published pruning and other pruning settings
with the published 0.15 Å / 0.15 switches, and no pruning with them.

The PET has random weights (seeded, float64, eval mode; its output heads are not
zero-initialised, so its energy depends on orientation as a trained model's does).
``--pet small`` (the default, so that a run fits in about ten minutes on one thread) is
``benchmarks/scaling.py``'s small PET; ``--pet default`` is ``PET()`` (published sizes).
Both evaluate their layers in chunks of ``--chunk-tokens`` tokens (default: PET's own, bounded memory).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch

from _fresh_process import reset_peak, status_mib
from ecse.frameset import PUBLISHED
from scaling import SMALL

ROOT = Path(__file__).resolve().parents[1]
CUTOFF = 5.0
PERFECT = {  # symbol, lattice, lattice constants, repeat
    "fcc": ("Cu", "fcc", dict(a=3.61, cubic=True), (2, 2, 2)),
    "bcc": ("Fe", "bcc", dict(a=2.87, cubic=True), (3, 3, 3)),
    "hcp": ("Mg", "hcp", dict(a=3.21, c=5.21), (3, 3, 2)),
    "diamond": ("Si", "diamond", dict(a=5.43, cubic=True), (2, 2, 2)),
}
EMT = {"cu300": ("thermal", 300.0), "cu1000": ("thermal", 1000.0), "alloy": ("alloy", 300.0),
       "liquid": ("liquid", 2000.0)}
SYSTEMS = ["methane", "water192", "water1536", *EMT, *PERFECT]
SWEEP = [  # (label, ECSE keyword arguments); explicit, so that a change of the defaults changes no row but the first
    ("defaults", {}),
    ("published (0.9, 4 rounds, rw 0.15)", dict(PUBLISHED)),
    ("0.9, 1 round, rw 0.15", {**PUBLISHED, "pruning_threshold": 0.9, "num_prunings": 1}),
    ("0.8, 4 rounds, rw 0.15", {**PUBLISHED, "pruning_threshold": 0.8}),
    ("no pruning, rw 0.15", {**PUBLISHED, "num_prunings": 0}),
]


def structures(name: str, data_dir: Path, methane_count: int = 20, quick: bool = False) -> tuple[list, str]:
    """``(list of ase.Atoms, description)`` of a named system (``quick``: perfect crystals
    as one conventional cell, with the same frames per atom)."""
    from ase.build import bulk
    from ase.io import read

    from ecse.atomistic.datasets import bundled_dataset

    if name == "methane":
        return read(bundled_dataset("methane")["test"], index=f":{methane_count}"), "bundled methane_test"
    if name.startswith("water"):
        atoms = read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0)
        return [atoms if name == "water192" else atoms.repeat(2)], "water_bulk_64[0]" + (" x2x2x2" if name != "water192" else "")
    if name in EMT:
        kind, temperature = EMT[name]
        for atoms in read(bundled_dataset("emt_metals")["test"], index=":"):
            if atoms.info["config_type"] == kind and float(atoms.info["temperature"]) == temperature:
                return [atoms], f"emt_metals test, {kind} {temperature:.0f} K"
        raise ValueError(f"no {kind} frame at {temperature} K in the bundled emt_metals test set")
    symbol, lattice, kwargs, rep = PERFECT[name]
    rep = (1, 1, 1) if quick else rep
    return [bulk(symbol, lattice, **kwargs).repeat(rep)], f"perfect {lattice} {symbol} x{rep}"


def to_batch(atoms_list):
    from torch_geometric.data import Batch

    from ecse.atomistic import atoms_to_data

    return Batch.from_data_list([atoms_to_data(a, dtype=torch.float64) for a in atoms_list])


def make_pet(size: str, chunk_tokens: int | None, seed: int = 0):
    from ecse.backbones import PET

    torch.manual_seed(seed)
    chunks = {} if chunk_tokens is None else {"chunk_tokens": chunk_tokens}
    pet = PET(**chunks, **(SMALL if size == "small" else {})).double().eval()
    heads = [p for layer in pet.gnn_layers for p in (layer.head[-1].weight, layer.bond_head[-1].weight)]
    if all(bool((h == 0).all()) for h in heads):  # zero-initialised heads: make the energy orientation-dependent
        for h in heads:
            torch.nn.init.normal_(h, std=0.01)
    return pet


# ---- measurement helpers --------------------------------------------------------------------

def with_frame_average(pet, frame_average: str):
    """``pet`` with the same weights and the given ``frame_average``."""
    from ecse.backbones import PET

    other = PET(**{**pet._config, "frame_average": frame_average}).double().eval()
    other.load_state_dict(pet.state_dict())
    return other


def timed(fn) -> tuple[float, float | None]:
    """``(seconds, peak MiB above the resident memory before the call or None)``."""
    gc.collect()
    base = reset_peak(trim=True)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = None if base is None else status_mib("VmHWM") - base
    return seconds, peak


def side_by_side(models: dict, data, repeats: int) -> dict:
    """Interleaved energy + forces calls: per model the median time and max peak memory,
    and per model the median of the per-repeat time ratios to ``models["bare"]``."""
    from ecse.atomistic.derivatives import energy_and_forces

    return side_by_side_calls({name: (lambda m=model: energy_and_forces(m, data)) for name, model in models.items()},
                              repeats)


def side_by_side_calls(calls: dict, repeats: int) -> dict:
    """:func:`side_by_side` for any functions without arguments (``calls["bare"]`` the reference)."""
    runs = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            runs[name].append(timed(call))
    out = {}
    for name, rs in runs.items():
        peaks = [p for _, p in rs if p is not None]
        out[name] = {"seconds": statistics.median(t for t, _ in rs), "peak_mib": max(peaks) if peaks else None,
                     "ratio": statistics.median(t / b for (t, _), (b, _) in zip(rs, runs["bare"]))}
    return out


def frame_counts(data, params) -> dict:
    from ecse import global_frames, local_frames

    cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
    lf = local_frames(data.pos, CUTOFF, data.batch, cell, pbc, params)
    kept = (~lf.invariant) & (lf.weight > 0)
    per_atom = torch.bincount(lf.atom[kept], minlength=lf.num_atoms).double()
    fs = global_frames(data.pos, CUTOFF, data.batch, data.num_graphs, cell, pbc, params)
    per_graph = torch.bincount(fs.graph, minlength=data.num_graphs).double()
    return {"local_mean": float(per_atom.mean()), "local_max": int(per_atom.max()),
            "aux_atoms": int((lf.aux_weight > 0).sum()), "global_per_structure": float(per_graph.mean()),
            "global_max": int(per_graph.max())}


def rotation_errors(model, data, energy, forces, seed: int = 1) -> tuple[float, float]:
    """Relative energy error and largest absolute force error (eV/A; forces of a perfect
    crystal vanish, so a relative force error means nothing there) under one rotation."""
    from ecse.atomistic.derivatives import energy_and_forces
    from ecse.rotations import random_rotation
    from ecse.testing import relative_error

    R = random_rotation(torch.Generator().manual_seed(seed))
    rotated = data.clone()
    rotated.pos = data.pos @ R.T
    if getattr(data, "cell", None) is not None:
        rotated.cell = data.cell @ R.T
    e, f = energy_and_forces(model, rotated)
    return relative_error(e.detach(), energy.detach()), float((f.detach() - forces.detach() @ R.T).abs().max())


def curvature(model, data, points: int, rms: float) -> float:
    from ecse.testing import smoothness_profile

    single = data.get_example(0) if hasattr(data, "get_example") else data
    span = rms * single.pos.shape[0] ** 0.5  # unit direction over all atoms: per-atom RMS = s / sqrt(N)
    return abs(smoothness_profile(model, single, span=span, points=points).worst_curvature)


# ---- the benchmark ----------------------------------------------------------------------------

def measure_system(name: str, pet, args) -> dict:
    from ecse import ECSE
    from ecse.atomistic.derivatives import energy_and_forces

    atoms_list, source = structures(name, args.data, args.methane_count, args.quick)
    data = to_batch(atoms_list)
    # "local": frame-averaged tokens (cost); "layers": PET's default, every layer once per (atom, frame) copy
    local = ECSE(with_frame_average(pet, "tokens"), CUTOFF, mode="local")
    row = {"system": name, "source": source, "atoms": int(data.pos.shape[0] // data.num_graphs),
           "structures": data.num_graphs, **frame_counts(data, local.params)}
    models = {"bare": pet, "local": local}
    if name in args.layers_systems:
        models["layers"] = ECSE(with_frame_average(pet, "layers"), CUTOFF, mode="local")
    if row["global_per_structure"] <= args.global_max_passes:
        models["global"] = ECSE(pet, CUTOFF, mode="global")
    timing = side_by_side(models, data, args.repeats)
    for mode, t in timing.items():
        row[f"{mode}_seconds"], row[f"{mode}_peak_mib"] = t["seconds"], t["peak_mib"]
        if mode != "bare":
            row[f"{mode}_ratio"] = t["ratio"]
    energy, forces = energy_and_forces(local, data)
    row["rot_err_energy"], row["rot_err_forces_max"] = rotation_errors(local, data, energy, forces)
    e0, f0 = energy_and_forces(pet, data)
    row["bare_rot_err_energy"], row["bare_rot_err_forces_max"] = rotation_errors(pet, data, e0, f0)
    per_call = (row["bare_seconds"] + row["local_seconds"]) / data.num_graphs
    row["curvature_estimate_s"] = args.points * per_call
    if name not in args.no_curvature and row["curvature_estimate_s"] <= args.budget:
        row["bare_curvature"] = curvature(pet, data, args.points, args.rms)
        row["local_curvature"] = curvature(local, data, args.points, args.rms)
        row["curvature_ratio"] = row["local_curvature"] / row["bare_curvature"]
    return row


def sweep(name: str, pet, base: dict, args) -> list[dict]:
    """Frames per atom, cost ratio and curvature ratio for each pruning setting on one system."""
    from ecse import ECSE

    data = to_batch(structures(name, args.data, args.methane_count, args.quick)[0][:1])
    out = []
    for label, setting in SWEEP:
        model = ECSE(with_frame_average(pet, "tokens"), CUTOFF, mode="local", **setting)
        row = {"system": name, "setting": label, "kwargs": setting, **frame_counts(data, model.params)}
        if not setting and base["structures"] == 1:  # the defaults: the table's own measurement
            row.update({k: base[k] for k in ("local_seconds", "local_ratio", "curvature_ratio") if k in base})
            out.append(row)
            _print_sweep(row)
            continue
        # estimated seconds per local call: scale the defaults' by frames per atom
        estimate = base["local_seconds"] * row["local_mean"] / max(base["local_mean"], 1e-9)
        if estimate <= args.budget:
            t = side_by_side({"bare": pet, "local": model}, data, args.sweep_repeats)
            row["local_seconds"], row["local_ratio"] = t["local"]["seconds"], t["local"]["ratio"]
            estimate = t["local"]["seconds"]
        if "bare_curvature" in base and args.points * estimate <= args.budget:  # same path as the table's
            row["curvature_ratio"] = curvature(model, data, args.points, args.rms) / base["bare_curvature"]
        out.append(row)
        _print_sweep(row)
    return out


def _print_sweep(row: dict) -> None:
    print(f"| {row['system']} | {row['setting']} | {row['local_mean']:.2f}, {row['local_max']} | "
          f"{_fmt(row.get('local_ratio'), '.1f')} | {_fmt(row.get('curvature_ratio'), '.2f')} |", flush=True)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict]) -> str:
    lines = ["| system | atoms | local frames/atom (mean, max) | global frames/structure | bare ms/atom | "
             "local (tokens) / bare | local (layers) / bare | global / bare | peak MiB (bare, local) | curvature ratio | "
             "rotation error, ECSE: E rel., F max eV/A (bare: E rel.) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        atoms = f"{r['atoms']}" + (f" (x{r['structures']})" if r["structures"] > 1 else "")
        ms = 1e3 * r["bare_seconds"] / (r["atoms"] * r["structures"])
        lines.append(
            f"| {r['system']} | {atoms} | {r['local_mean']:.2f}, {r['local_max']} | {r['global_per_structure']:.1f} | "
            f"{ms:.2f} | {r['local_ratio']:.1f}x | {_fmt(r.get('layers_ratio'), '.1f')} | {_fmt(r.get('global_ratio'), '.1f')} | "
            f"{_fmt(r['bare_peak_mib'], '.0f')}, {_fmt(r['local_peak_mib'], '.0f')} | "
            f"{_fmt(r.get('curvature_ratio'), '.2f')} | {r['rot_err_energy']:.0e}, {r['rot_err_forces_max']:.0e} ({r['bare_rot_err_energy']:.0e}) |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side timing repeats (median)")
    parser.add_argument("--pet", choices=["small", "default"], default="small")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="PET's chunk_tokens (default: PET's own)")
    parser.add_argument("--layers-systems", nargs="*", default=["methane", "water192", "cu300"],
                        help="also time local mode with PET's default frame_average='layers' (same weights) on these")
    parser.add_argument("--points", type=int, default=7, help="points of the curvature path")
    parser.add_argument("--rms", type=float, default=0.1, help="per-atom RMS displacement (A) at the path's end")
    parser.add_argument("--budget", type=float, default=75.0,
                        help="skip a curvature (or sweep timing) estimated to take longer (s)")
    parser.add_argument("--no-curvature", nargs="*", default=["water1536"], help="systems without curvature")
    parser.add_argument("--global-max-passes", type=float, default=32,
                        help="time the global ensemble only up to this many frames per structure")
    parser.add_argument("--methane-count", type=int, default=20, help="methane structures (one batch)")
    parser.add_argument("--sweep-systems", nargs="*", default=["cu300", "water192"])
    parser.add_argument("--sweep-repeats", type=int, default=1)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.points, args.methane_count, args.sweep_repeats = 1, 3, 2, 1
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "pet": args.pet,
            "chunk_tokens": args.chunk_tokens, "repeats": args.repeats, "points": args.points, "rms": args.rms,
            "budget_s": args.budget, "global_max_passes": args.global_max_passes, "commit": commit,
            "loadavg": os.getloadavg()}
    pet = make_pet(args.pet, args.chunk_tokens)
    print(f"torch {meta['torch']}, {meta['threads']} thread(s), float64, {args.pet} PET (random weights, seed 0), "
          f"chunks of {pet.chunk_tokens} tokens, median of {args.repeats}; commit {commit}; "
          f"load average {meta['loadavg'][0]:.2f}")
    print(f"curvature: {args.points} points, per-atom RMS displacement {args.rms} A, skipped above {args.budget:.0f} s "
          f"(estimate); global ensemble timed up to {args.global_max_passes:g} passes per structure")
    start = time.perf_counter()
    rows = []
    for name in args.systems:
        row = measure_system(name, pet, args)
        rows.append(row)
        print(f"  {name}: {row['local_mean']:.2f} frames/atom, local/bare {row['local_ratio']:.1f}x, "
              f"curvature ratio {_fmt(row.get('curvature_ratio'), '.2f')} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    print()
    print(markdown(rows))
    by_name = {r["system"]: r for r in rows}
    if {"water192", "water1536"} <= set(by_name):
        small, big = by_name["water192"], by_name["water1536"]
        for mode in ("bare", "local"):
            print(f"water, {mode} time per atom 1536 vs 192 atoms: "
                  f"{big[f'{mode}_seconds'] / 1536 / (small[f'{mode}_seconds'] / 192):.2f}x")
    sweeps = []
    if not args.no_sweep:
        print("\npruning sweep (local mode; '-': skipped, estimated above the budget)\n"
              "| system | pruning setting | frames/atom (mean, max) | local / bare | curvature ratio |\n"
              "|---|---|---|---|---|")
        for name in args.sweep_systems:
            base = by_name.get(name) or measure_system(name, pet, args)
            sweeps += sweep(name, pet, base, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    result = {"meta": meta, "rows": rows, "sweep": sweeps}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
