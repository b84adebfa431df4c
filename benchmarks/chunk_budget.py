"""PET's chunk budgets at other widths: the published size's token counts against
``"auto"`` (printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/chunk_budget.py [--repeats 3] [--cases c64-w512 ...]

PET splits each message-passing layer into checkpointed groups of ``chunk_tokens`` tokens
once an input costs more than ``chunk_above``.  Until ``"auto"`` both were token counts
whatever the width (4096 and 12288): a token of a PET with ``d_model`` 512 holds about four
times the memory of one of ``PET()``, and one of the small PET of the benchmarks about a
twelfth.  ``"auto"`` (the default now) scales both inversely with a token's memory
(``ecse.backbones._pet_groups.auto_budgets``).  Each (case, setting) runs in a fresh
process, float64, energy + forces by autograd, one thread: one call gives the peak growth
of the resident memory, then ``--repeats`` more calls the median time; "published / auto"
is the ratio of the two medians, measured in the same run, and the energies of the two
settings must agree to 1e-9.

Cases (random weights, seed 0; ``small`` is ``benchmarks/scaling.py``'s PET, ``d_model``
32, 2 x 1 layers; ``wD`` is ``PET(d_model=D, dim_feedforward=4 D, head_hidden=D)``):

* ``cu4-small``: ``ECSE(PET, 5.0, mode="local")``, per-copy layers, 4 EMT Cu atoms at
  300 K (about 130 frames per atom);
* ``water192-small``: bare small PET on ``water_bulk_64`` frame 0;
* ``c64``, ``c64-w256``, ``c64-w512``: bare PET on perfect diamond carbon, 64 atoms (86
  neighbours each; ``PET()``'s largest unsplit input, ``tests/test_memory.py``);
* ``cu256-w512``: bare PET on perfect fcc Cu, 256 atoms;
* ``fe54-w512``: bare PET on perfect bcc Fe, 54 atoms;
* ``cu4-w256``: per-copy layers as ``cu4-small``, with ``PET`` of ``d_model`` 256.
"""
from __future__ import annotations

from pathlib import Path

from _fresh_process import peak_and_median, run_comparison
from scaling import SMALL

ROOT = Path(__file__).resolve().parents[1]
CASES = ["cu4-small", "water192-small", "c64", "c64-w256", "c64-w512", "cu256-w512", "fe54-w512", "cu4-w256"]


def _width(name: str) -> dict:
    if name.endswith("-small"):
        return SMALL
    if "-w" in name:
        d = int(name.rsplit("-w", 1)[1])
        return dict(d_model=d, dim_feedforward=4 * d, head_hidden=d)
    return {}


def build(name: str, setting: str, data_dir: Path):
    """``(model, list of ase.Atoms)`` of a case with the budgets of ``setting``."""
    import torch
    from ase.build import bulk
    from ase.io import read

    from ecse import ECSE
    from ecse.atomistic.emt import emt_structures
    from ecse.backbones import PET
    from ecse.backbones._pet_groups import PUBLISHED_BUDGETS

    torch.manual_seed(0)
    pet = PET(**_width(name), **(PUBLISHED_BUDGETS if setting == "published" else {})).double()
    if name.startswith("cu4"):
        atoms = emt_structures("thermal", "Cu", temperature=300.0, n=1, size=1, seed=101)
        return ECSE(pet, cutoff=5.0, mode="local").double(), list(atoms)
    if name.startswith("water192"):
        return pet, [read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0)]
    if name.startswith("c64"):
        return pet, [bulk("C", "diamond", cubic=True).repeat(2)]
    if name.startswith("fe54"):
        return pet, [bulk("Fe", "bcc", cubic=True).repeat(3)]
    return pet, [bulk("Cu", "fcc", cubic=True).repeat(4)]


def worker(name: str, setting: str, repeats: int, data_dir: Path) -> dict:
    import torch
    from torch_geometric.data import Batch

    from ecse.atomistic import atoms_to_data
    from ecse.atomistic.derivatives import energy_and_forces
    from ecse.backbones import PET

    torch.set_num_threads(1)
    model, atoms = build(name, setting, data_dir)
    model.eval()
    pet = model if isinstance(model, PET) else model.backbone
    data = Batch.from_data_list([atoms_to_data(a, dtype=torch.float64) for a in atoms])
    peak, seconds, (energy, _) = peak_and_median(lambda: energy_and_forces(model, data), repeats)
    return {"atoms": data.num_nodes, "peak_gb": peak, "seconds": seconds, "chunk_tokens": pet.chunk_tokens,
            "chunk_above": pet.chunk_above, "energy": float(energy.detach().sum())}


COLUMNS = ["case", "atoms", "chunk_tokens, chunk_above (published / auto)", "peak GB (published / auto)",
           "s (published / auto)", "published / auto"]


def _row(name: str, p: dict, a: dict) -> str:
    return (f"| {name} | {p['atoms']} | {p['chunk_tokens']}, {p['chunk_above']} / {a['chunk_tokens']}, "
            f"{a['chunk_above']} | {p['peak_gb']:.2f} / {a['peak_gb']:.2f} | {p['seconds']:.2f} / "
            f"{a['seconds']:.2f} | {p['seconds'] / a['seconds']:.2f} |")


def main(argv=None) -> None:
    run_comparison(__file__, __doc__, CASES, CASES, "SETTING", ROOT, worker, "float64", ("published", "auto"),
                   COLUMNS, _row, argv)


if __name__ == "__main__":
    main()
