"""PET energy + forces: bare vs ECSE-wrapped (global ensemble), side by side (printed only).

    python benchmarks/pet.py [--threads 2] [--repeats 3] [--small]

On the 192-atom periodic water box (water_bulk_64, first structure): median wall time of
one energy + forces evaluation (forces by autograd) for bare PET and for
``ECSE(PET, cutoff=5, output="scalar")``, their ratio, and the frames the ensemble used.
The global ensemble evaluates PET once per retained frame, so the ratio is about the
number of retained frames; issue 4's local ensemble is meant to remove that factor.
``--small`` uses a small PET (d_model 32, 1+1 layers) for a quick look.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch, Data

from backbones import PET, energy_and_forces
from ecse import ECSE


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from ase.io import read

    atoms = read(args.data / "water_bulk_64" / "water_deepmd_400.xyz", index=0)
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
    print(f"  ratio wrapped / bare: {t_wrapped / t_bare:.1f}x")
    print("  (MACE side by side needs its own venv, mace-torch pins e3nn 0.4.4: not in this script yet)")


if __name__ == "__main__":
    main()
