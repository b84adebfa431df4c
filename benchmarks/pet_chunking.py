"""Bare PET's layer splitting: one call below ``chunk_above`` against groups of ``chunk_tokens``
(printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/pet_chunking.py [--repeats 3] [--cases cu108 c64 ...]

``PET()`` (published default sizes), float64, energy + forces by autograd, on each case with
PET's defaults (``"auto"``, at this size ``chunk_tokens=4096``, ``chunk_above=12288``: an
input whose padded token cost is within 12288 runs each layer in one call) and with
``chunk_above=None`` (split into checkpointed groups of 4096 whenever the input costs more
than 4096, the behaviour before ``chunk_above``).  Each (case, setting) runs in a fresh
process: one call gives the peak growth of the resident memory (``/proc/self/status``
VmHWM after a reset), then ``--repeats`` more calls give the median time.  The ratio is
"split / default" of the two medians, measured in the same run.

Cases: ``methane32`` (32 bundled methane molecules in one batch), ``cu108`` (EMT fcc Cu at
300 K, 108 atoms), ``liquid108`` (EMT liquid Cu at 2000 K), ``alloy108`` (EMT CuAu on fcc
sites), ``c64`` (perfect diamond carbon, 64 atoms), ``fe54`` (perfect bcc Fe, 54 atoms),
``water192`` (``water_bulk_64`` frame 0, above ``chunk_above``: split in both), ``cu500``
(perfect fcc Cu, 500 atoms: split in both).
"""
from __future__ import annotations

from pathlib import Path

from _fresh_process import peak_and_median, run_comparison

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

    peak, seconds, (energy, _) = peak_and_median(lambda: energy_and_forces(pet, data), repeats)
    return {"atoms": data.num_nodes, "groups": groups, "peak_gb": peak, "seconds": seconds,
            "energy": float(energy.detach().sum())}


COLUMNS = ["case", "atoms", "groups (default / split)", "peak GB (default / split)", "s (default / split)",
           "split / default"]


def _row(name: str, d: dict, s: dict) -> str:
    return (f"| {name} | {d['atoms']} | {d['groups']} / {s['groups']} | {d['peak_gb']:.2f} / {s['peak_gb']:.2f} | "
            f"{d['seconds']:.2f} / {s['seconds']:.2f} | {s['seconds'] / d['seconds']:.2f} |")


def main(argv=None) -> None:
    run_comparison(__file__, __doc__, CASES, CASES, "ABOVE", ROOT, worker, "PET() float64", ("12288", "none"),
                   COLUMNS, _row, argv)


if __name__ == "__main__":
    main()
