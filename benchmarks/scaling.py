"""Cost of exact symmetrisation vs system size: bare PET, global ECSE, local ECSE (printed only).

    python benchmarks/scaling.py [--threads 2] [--repeats 3] [--sizes 192 384 768 1536]
                                 [--small] [--global-max-atoms 192] [--device cpu]

Water boxes of 192, 384, 768 and 1536 atoms (replicas of the first structure of
``water_bulk_64``), float32. For each model and size, a fresh subprocess builds the model,
runs one warm-up and ``--repeats`` energy + forces evaluations (forces by autograd) and
reports the median time and the peak memory above the process's state before the first
evaluation (``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` on CUDA). Every
model evaluates its layers in checkpointed chunks of ``--chunk-tokens`` tokens
(``PET(chunk_tokens=...)``; the global ensemble also chunks its frame copies), so memory
is bounded in every mode.

The global ensemble costs one full PET pass per retained frame, and its frame count grows
with the box, so above ``--global-max-atoms`` its time is *estimated* as
(retained frames) x (bare PET time at that size), marked ``est.``; its frame count is
always computed exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = {192: (1, 1, 1), 384: (2, 1, 1), 768: (2, 2, 1), 1536: (2, 2, 2)}
SMALL = dict(d_model=32, num_gnn_layers=2, num_transformer_layers=1, num_heads=4, dim_feedforward=64, head_hidden=32)


def _box(data_dir: Path, size: int, device: str):
    import torch
    from ase.io import read
    from torch_geometric.data import Batch, Data

    atoms = read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0).repeat(REPLICAS[size])
    return Batch.from_data_list([Data(
        pos=torch.tensor(atoms.positions, dtype=torch.float32), z=torch.tensor(atoms.numbers),
        cell=torch.tensor(atoms.cell.array, dtype=torch.float32)[None],
        pbc=torch.ones(1, 3, dtype=torch.bool))]).to(device)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args) -> None:
    import torch

    from ecse.backbones import PET
    from ecse.atomistic.derivatives import energy_and_forces
    from ecse import ECSE, global_frames

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = _box(args.data, args.size, args.device)
    pet = PET(cutoff=5.0, chunk_tokens=args.chunk_tokens, **(SMALL if args.small else {})).to(args.device)
    result = {"mode": args.worker, "atoms": args.size}
    if args.worker == "bare":
        model = pet
    else:
        model = ECSE(pet, cutoff=5.0, mode=args.worker, chunk_size=4 * args.size)
    if args.worker == "global":
        fs = global_frames(data.pos.double(), 5.0, cell=data.cell.double(), pbc=data.pbc)
        result["frames"] = int(fs.frames.weight.numel())
        result["frames_per_atom"] = result["frames"] / args.size
        if args.estimate_only:
            print(json.dumps(result))
            return
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mib()
    times = []
    for i in range(args.repeats + 1):
        sync()
        start = time.perf_counter()
        energy, forces = energy_and_forces(model, data)
        sync()
        if i:  # the first call is a warm-up
            times.append(time.perf_counter() - start)
        del energy, forces
    result["seconds"] = statistics.median(times)
    result["peak_mib"] = (torch.cuda.max_memory_allocated() / 2 ** 20 if args.device.startswith("cuda")
                          else _rss_mib() - base)
    if args.worker == "local":
        result["frames_per_atom"] = model.last_stats["frames_per_atom"]
        result["frames"] = model.last_stats["frames_per_graph"]
    print(json.dumps(result))


def _run(args, mode: str, size: int, estimate_only: bool = False) -> dict:
    repeats = args.global_repeats if mode == "global" else args.repeats
    cmd = [sys.executable, __file__, "--worker", mode, "--size", str(size), "--threads", str(args.threads),
           "--repeats", str(repeats), "--chunk-tokens", str(args.chunk_tokens), "--data", str(args.data),
           "--device", args.device] + (["--small"] if args.small else []) + (["--estimate-only"] if estimate_only else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        return {"mode": mode, "atoms": size, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 384, 768, 1536], choices=sorted(REPLICAS))
    parser.add_argument("--small", action="store_true", help="small PET (quick look)")
    parser.add_argument("--global-max-atoms", type=int, default=192)
    parser.add_argument("--global-repeats", type=int, default=1, help="repeats of the (slow) global ensemble")
    parser.add_argument("--chunk-tokens", type=int, default=32768)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--worker", choices=["bare", "global", "local"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--estimate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch

    device = args.device if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name()})"
    print(f"torch {torch.__version__}, {device}, {args.threads} thread(s), float32, "
          f"{'small' if args.small else 'published-default'} PET, chunks of {args.chunk_tokens} tokens, "
          f"median of {args.repeats} ({args.global_repeats} for the global ensemble)")
    rows, bare = [], {}
    header = f"{'atoms':>6} {'model':>12} {'frames/atom':>11} {'time (s)':>10} {'ms/atom':>8} {'x bare':>7} {'peak MiB':>9}"
    print(header)
    for size in args.sizes:
        for mode in ("bare", "local", "global"):
            estimate = mode == "global" and size > args.global_max_atoms
            row = _run(args, mode, size, estimate_only=estimate)
            if estimate and "error" not in row:
                row["seconds"], row["estimated"] = row["frames"] * bare[size], True
            rows.append(row)
            if "error" in row:
                print(f"{size:>6} {mode:>12}  failed: {row['error']}")
                continue
            if mode == "bare":
                bare[size] = row["seconds"]
            fpa = f"{row['frames_per_atom']:.2f}" if "frames_per_atom" in row else "-"
            peak = f"{row['peak_mib']:.0f}" if "peak_mib" in row else "-"
            t = row["seconds"]
            print(f"{size:>6} {mode:>12} {fpa:>11} {t:>10.3f}{'*' if estimate else ' '}"
                  f"{1e3 * t / size:>8.2f} {t / bare[size]:>7.1f} {peak:>9}", flush=True)
    local = {r["atoms"]: r["seconds"] / r["atoms"] for r in rows if r["mode"] == "local" and "seconds" in r}
    if len(local) > 1:
        lo, hi = min(local), max(local)
        print(f"local time per atom, {hi} vs {lo} atoms: {local[hi] / local[lo]:.2f}x")
    if 192 in local and 192 in bare:
        print(f"local / bare at 192 atoms: {local[192] * 192 / bare[192]:.2f}x")
    print("* estimated: retained frames x bare time (the global ensemble runs PET once per frame)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
