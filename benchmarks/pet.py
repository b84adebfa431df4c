"""PET energy + forces: bare vs ECSE-wrapped (global ensemble) vs MACE, side by side (printed only).

    python benchmarks/pet.py [--threads 2] [--repeats 3] [--small] [--no-mace]

On the 192-atom periodic water box (water_bulk_64, first structure): median wall time of
one energy + forces evaluation (forces by autograd) for bare PET and for
``ECSE(PET, cutoff=5, output="scalar")``, their ratio, and the frames the ensemble used.
The global ensemble evaluates PET once per retained frame, so the ratio is about the
number of retained frames; issue 4's local ensemble is meant to remove that factor.
``--small`` uses a small PET (d_model 32, 1+1 layers) for a quick look.

MACE runs beside them in its own venv (``bash benchmarks/setup_peers.sh``; mace-torch pins
e3nn 0.4.4) through ``benchmarks/mace_worker.py time``: a ``ScaleShiftMACE`` of the
published default size (128x0e+128x1o, max_ell 3, correlation 3, r_max 5 Å, 2
interactions; ``--small``: 32x0e+32x1o), float32, random weights, energy + forces by
autograd on the same box, median of the same repeats, MACE's own neighbour graph
(matscipy) built inside the timed call, as PET's is.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch, Data

from ecse.backbones import PET
from ecse.atomistic.derivatives import energy_and_forces
from ecse import ECSE

ROOT = Path(__file__).resolve().parents[1]
MACE_SMALL = {"hidden_irreps": "32x0e+32x1o"}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mace_seconds(python: Path, xyz: Path, repeats: int, threads: int, small: bool) -> dict:
    """``mace_worker.py time`` in the MACE venv: ``{"seconds", "model_seconds", "params", ...}``
    or ``{"error": ...}``."""
    if not python.is_file():
        return {"error": f"no {python}: run `bash benchmarks/setup_peers.sh` first"}
    cmd = [str(python), str(ROOT / "benchmarks" / "mace_worker.py"), "time", str(xyz), "--repeats", str(repeats),
           "--threads", str(threads), "--model", json.dumps(MACE_SMALL if small else {})]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=3600,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": f"mace_worker exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--no-mace", action="store_true", help="skip MACE")
    parser.add_argument("--mace-python", type=Path, default=ROOT / ".venv-mace" / "bin" / "python")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from ase.io import read

    xyz = args.data / "water_bulk_64" / "water_deepmd_400.xyz"
    atoms = read(xyz, index=0)
    data = Batch.from_data_list([Data(
        pos=torch.tensor(atoms.positions, dtype=torch.float32),
        z=torch.tensor(atoms.numbers, dtype=torch.long),
        cell=torch.tensor(atoms.cell.array, dtype=torch.float32).unsqueeze(0),
        pbc=torch.tensor(atoms.pbc).unsqueeze(0))])
    torch.manual_seed(0)
    hyper = dict(d_model=32, num_gnn_layers=1, num_transformer_layers=1, num_heads=4, dim_feedforward=64,
                 head_hidden=32) if args.small else {}
    pet = PET(cutoff=5.0, **hyper)
    wrapped = ECSE(pet, cutoff=5.0, output="scalar", chunk_size=4 * data.num_nodes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, "
          f"{'small' if args.small else 'published-default'} PET ({sum(p.numel() for p in pet.parameters()):,} "
          f"parameters), water box {data.num_nodes} atoms, median of {args.repeats}")
    t_bare = median_seconds(lambda: energy_and_forces(pet, data), args.repeats)
    print(f"  bare PET          energy+forces {t_bare:8.3f} s")
    t_wrapped = median_seconds(lambda: energy_and_forces(wrapped, data), args.repeats)
    stats = wrapped.last_stats
    print(f"  ECSE(PET) global  energy+forces {t_wrapped:8.3f} s   "
          f"({stats['frames_per_graph']:.0f} frames, {stats['frames_per_graph_before_pruning']:.0f} before pruning)")
    if args.no_mace:
        print(f"  ratio ECSE(PET) / bare PET: {t_wrapped / t_bare:.1f}x")
        return
    mace = mace_seconds(args.mace_python, xyz, args.repeats, args.threads, args.small)
    if "error" in mace:
        print(f"  MACE: {mace['error']}")
        print(f"  ratio ECSE(PET) / bare PET: {t_wrapped / t_bare:.1f}x")
        return
    t_mace = mace["seconds"]
    print(f"  MACE              energy+forces {t_mace:8.3f} s   ({mace['hyper']['hidden_irreps']}, "
          f"{mace['params']:,} parameters; {mace['model_seconds']:.3f} s without its graph)")
    print(f"  ratios: ECSE(PET) / bare PET {t_wrapped / t_bare:.1f}x, ECSE(PET) / MACE {t_wrapped / t_mace:.1f}x, "
          f"bare PET / MACE {t_bare / t_mace:.2f}x")


if __name__ == "__main__":
    main()
