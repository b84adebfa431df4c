"""Peak memory and time of training steps with and without micro-batches (printed, never asserted).

    python benchmarks/micro_batches.py [--structures 2] [--steps 2] [--settings none 256]
                                       [--system water192|emt] [--data ../shared/data] [--tiny]

``ecse.atomistic.train`` on ``--structures`` structures per step (``optimiser.batch_size``)
of one periodic system, ``PET()`` at its published sizes, float32, energies and forces
in the loss, ``--steps`` optimisation steps (one epoch of distinct structures), once per setting of
``optimiser.micro_batch_atoms`` (``none``: the whole batch in one pass), each in a fresh
process: its peak resident memory (``ru_maxrss``) and the seconds per step (the median
of the steps after the first, from ``step_hook``).  ``water192``: the first frames of
``water_bulk_64`` (192 atoms); ``emt``: the bundled ``emt_metals`` training cells (10 EMT
Cu and CuAu cells of 80-108 atoms: thermal, perfect, vacancy, surface, strained, alloy,
liquid).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_file(system: str, data: Path, count: int, out: Path) -> str:
    from ase.io import read, write

    if system == "water192":
        frames = read(data / "water_bulk_64" / "water_deepmd_400.xyz", index=f":{count + 2}")
    else:
        from ecse.atomistic.datasets import bundled_dataset

        frames = read(bundled_dataset("emt_metals")["train"], index=":")[:count + 2]
    path = out / f"{system}.extxyz"
    write(path, frames, format="extxyz")
    return str(path)


#: ``--tiny``: a small PET for smoke tests
TINY = {"d_model": 16, "num_gnn_layers": 1, "num_transformer_layers": 1, "num_heads": 2, "dim_feedforward": 32,
        "head_hidden": 16}


def worker(path: str, structures: int, steps: int, atoms: int | None, tiny: bool = False) -> dict:
    import resource

    import torch

    from ecse.atomistic.training import train

    torch.set_num_threads(1)
    stamps = []
    with tempfile.TemporaryDirectory() as out:
        config = {"data": {"files": path, "split_sizes": [structures * steps, 1, 1]},
                  "model": TINY if tiny else {},
                  "optimiser": {"batch_size": structures, "epochs": 1, "micro_batch_atoms": atoms},
                  "run": {"dtype": "float32", "output_dir": out, "max_steps": steps, "progress": False}}
        train(config, log=None, step_hook=lambda epoch, step: stamps.append(time.perf_counter()))
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds_per_step": statistics.median(per_step) if per_step else float("nan")}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=["water192", "emt"], default="water192")
    parser.add_argument("--structures", type=int, default=2, help="structures per step (batch_size)")
    parser.add_argument("--steps", type=int, default=3, help="optimisation steps per setting")
    parser.add_argument("--settings", nargs="+", default=["none", "256"], help="micro_batch_atoms values")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tiny", action="store_true", help="a small PET (smoke test)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        path, structures, steps, atoms, tiny = args.worker
        print(json.dumps(worker(path, int(structures), int(steps), None if atoms == "none" else int(atoms),
                                tiny == "tiny")))
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = data_file(args.system, args.data, args.structures * args.steps, Path(tmp))
        print(f"{args.system}: {args.structures} structures per step, {args.steps} steps, "
              f"{'a tiny PET' if args.tiny else 'PET()'}, float32, 1 thread; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.2f}")
        print("| micro_batch_atoms | peak RSS, MiB | s per step |\n|---|---|---|")
        for setting in args.settings:
            out = subprocess.run([sys.executable, __file__, "--worker", path, str(args.structures), str(args.steps),
                                  setting, "tiny" if args.tiny else "published"], capture_output=True, text=True,
                                 check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            row = {"micro_batch_atoms": setting, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"| {setting} | {row['peak_mib']:.0f} | {row['seconds_per_step']:.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
