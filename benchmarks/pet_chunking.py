"""Bare PET's layer splitting: one call below ``chunk_above`` against groups of ``chunk_tokens``
(printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/pet_chunking.py [--repeats 3] [--cases cu108 c64 ...]

``PET()`` (published default sizes), float64, energy + forces by autograd, on each case with
PET's defaults (``chunk_tokens=4096``, ``chunk_above=12288``: an input whose padded token
cost is within 12288 runs each layer in one call) and with ``chunk_above=None`` (split into
checkpointed groups of 4096 whenever the input costs more than 4096, the behaviour before
``chunk_above``).  Each (case, setting) runs in a fresh process: one call gives the peak
growth of the resident memory (``/proc/self/status`` VmHWM after a reset), then
``--repeats`` more calls give the median time.  The ratio is "split / default" of the two
medians, measured in the same run.

Cases: ``methane32`` (32 bundled methane molecules in one batch), ``cu108`` (EMT fcc Cu at
300 K, 108 atoms), ``liquid108`` (EMT liquid Cu at 2000 K), ``alloy108`` (EMT CuAu on fcc
sites), ``c64`` (perfect diamond carbon, 64 atoms), ``fe54`` (perfect bcc Fe, 54 atoms),
``water192`` (``water_bulk_64`` frame 0, above ``chunk_above``: split in both), ``cu500``
(perfect fcc Cu, 500 atoms: split in both).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ["methane32", "cu108", "liquid108", "alloy108", "c64", "fe54", "water192", "cu500"]


def structures(name: str, data_dir: Path) -> list:
    from ase.build import bulk
    from ase.io import read

    from ecse.atomistic.datasets import bundled_dataset
    from ecse.atomistic.emt import emt_structures

    if name == "methane32":
        return read(bundled_dataset("methane")["test"], index=":32")
    if name in ("cu108", "liquid108", "alloy108"):
        kind = {"cu108": "thermal", "liquid108": "liquid", "alloy108": "alloy"}[name]
        return list(emt_structures(kind, "Cu", temperature=300.0 if kind == "thermal" else None, n=1, size=3,
                                   seed=101))
    if name == "water192":
        return [read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0)]
    lattice = {"c64": ("C", "diamond", 2), "fe54": ("Fe", "bcc", 3), "cu500": ("Cu", "fcc", 5)}[name]
    return [bulk(lattice[0], lattice[1], cubic=True).repeat(lattice[2])]


def worker(name: str, above: str, repeats: int, data_dir: Path) -> dict:
    import torch
    from torch_geometric.data import Batch

    from ecse.atomistic import atoms_to_data
    from ecse.atomistic.derivatives import energy_and_forces
    from ecse.backbones import PET
    from ecse.backbones._pet_groups import layer_groups
    from ecse.backbones._pet_local import AtomSequences
    from ecse.neighbors import neighbor_list

    torch.set_num_threads(1)
    data = Batch.from_data_list([atoms_to_data(a, dtype=torch.float64) for a in structures(name, data_dir)])
    torch.manual_seed(0)
    pet = PET(chunk_above=None if above == "none" else int(above)).double()
    nl = neighbor_list(data.pos, pet.cutoff, data.batch, getattr(data, "cell", None), getattr(data, "pbc", None))
    groups = len(layer_groups(AtomSequences(data.z, nl.center), pet.chunk_tokens, pet.chunk_above,
                              pet.attention_length))

    def status_gb(key: str) -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
        return int(line.split()[1]) / 2**20

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    base = status_gb("VmRSS")
    energy_and_forces(pet, data)
    peak = status_gb("VmHWM") - base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        energy, _ = energy_and_forces(pet, data)
        times.append(time.perf_counter() - start)
    return {"atoms": data.num_nodes, "groups": groups, "peak_gb": peak, "seconds": statistics.median(times),
            "energy": float(energy.detach().sum())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "ABOVE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.data)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {__import__('os').getloadavg()[0]:.2f}; PET() float64, 1 thread, median of {args.repeats}\n")
    print("| case | atoms | groups (default / split) | peak GB (default / split) | s (default / split) | "
          "split / default |\n|---|---|---|---|---|---|")
    for name in args.cases:
        rows = []
        for above in ("12288", "none"):
            out = subprocess.run([sys.executable, __file__, "--worker", name, above, "--repeats", str(args.repeats),
                                  "--data", str(args.data)], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        (d, s) = rows
        assert abs(d["energy"] - s["energy"]) <= 1e-9 * max(1.0, abs(s["energy"])), (d, s)
        print(f"| {name} | {d['atoms']} | {d['groups']} / {s['groups']} | {d['peak_gb']:.2f} / {s['peak_gb']:.2f} | "
              f"{d['seconds']:.2f} / {s['seconds']:.2f} | {s['seconds'] / d['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
