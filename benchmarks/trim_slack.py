"""Trimming the C heap between chunks: on every chunk against once per 128 MiB of growth
(printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/trim_slack.py [--repeats 3] [--cases cu4-small cu4 ...]

Chunked, checkpointed evaluation (PET's groups of ``chunk_tokens``, ECSE's global chunks)
calls ``ecse._memory.release_free_memory`` before every chunk.  Until this benchmark it
called ``malloc_trim(0)`` every time ("every chunk"); it now trims only when the resident
memory has grown by more than ``ecse._memory.TRIM_SLACK_BYTES`` (128 MiB) since the last
trim ("slack").  Each (case, setting) runs in a fresh process, float64, energy + forces by
autograd, one thread: one call gives the peak growth of the resident memory
(``/proc/self/status`` VmHWM after a reset), then ``--repeats`` more calls the median time.
The ratio is "every chunk / slack" of the two medians, measured in the same run; the
energies of the two settings must agree to 1e-9.

Cases (random weights, seed 0; ``small`` is ``benchmarks/scaling.py``'s PET, d_model 32;
the others ``PET()``; EMT Cu at 300 K from ``ecse.atomistic.emt``):

* ``cu4-small``, ``cu4``: ``ECSE(PET, 5.0, mode="local")``, per-copy layers, 4 atoms (130
  frames per atom, so the layers are split into checkpointed groups; the small PET with the
  published size's budgets, ``chunk_tokens=4096, chunk_above=12288``: its own ``"auto"``
  budgets run this cell in one call per layer);
* ``cu32``: the same with ``PET()`` on 32 atoms (about three minutes a call here);
* ``water192``: bare ``PET()`` on ``water_bulk_64`` frame 0 (above ``chunk_above``: five groups);
* ``si8-global``: ``ECSE(PET(), 5.0)`` (global mode) on perfect diamond Si, 8 atoms (96
  backbone passes in chunks).
"""
from __future__ import annotations

from pathlib import Path

from _fresh_process import peak_and_median, run_comparison
from scaling import SMALL

ROOT = Path(__file__).resolve().parents[1]
CASES = ["cu4-small", "cu4", "water192", "si8-global", "cu32"]
DEFAULT_CASES = ["cu4-small", "cu4", "water192", "si8-global"]


def build(name: str, data_dir: Path):
    """``(model, list of ase.Atoms)`` of a case."""
    import torch
    from ase.build import bulk
    from ase.io import read

    from ecse import ECSE
    from ecse.atomistic.emt import emt_structures
    from ecse.backbones import PET
    from ecse.backbones._pet_groups import PUBLISHED_BUDGETS

    torch.manual_seed(0)
    if name in ("cu4-small", "cu4", "cu32"):
        small = dict(SMALL, **PUBLISHED_BUDGETS)
        pet = PET(**(small if name == "cu4-small" else {})).double()
        atoms = emt_structures("thermal", "Cu", temperature=300.0, n=1, size=2 if name == "cu32" else 1, seed=101)
        return ECSE(pet, cutoff=5.0, mode="local").double(), list(atoms)
    if name == "water192":
        return PET().double(), [read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0)]
    return ECSE(PET(), cutoff=5.0).double(), [bulk("Si", "diamond", a=5.43, cubic=True)]


def worker(name: str, setting: str, repeats: int, data_dir: Path) -> dict:
    import warnings

    import torch
    from torch_geometric.data import Batch

    import ecse._memory
    from ecse.atomistic import atoms_to_data
    from ecse.atomistic.derivatives import energy_and_forces

    torch.set_num_threads(1)
    if setting == "every":
        ecse._memory.TRIM_SLACK_BYTES = 0
    model, atoms = build(name, data_dir)
    model.eval()
    data = Batch.from_data_list([atoms_to_data(a, dtype=torch.float64) for a in atoms])

    trims = []
    original = ecse._memory._TRIM
    if original is not None:
        ecse._memory._TRIM = lambda pad: trims.append(1) or original(pad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # global mode's cost warning
        peak, seconds, (energy, _) = peak_and_median(lambda: energy_and_forces(model, data), repeats)
    return {"atoms": data.num_nodes, "peak_gb": peak, "seconds": seconds,
            "trims_per_call": len(trims) / (repeats + 1), "energy": float(energy.detach().sum())}


COLUMNS = ["case", "atoms", "trims per call (every chunk / slack)", "peak GB (every chunk / slack)",
           "s (every chunk / slack)", "every chunk / slack"]


def _row(name: str, e: dict, s: dict) -> str:
    return (f"| {name} | {e['atoms']} | {e['trims_per_call']:.0f} / {s['trims_per_call']:.1f} | "
            f"{e['peak_gb']:.2f} / {s['peak_gb']:.2f} | {e['seconds']:.2f} / {s['seconds']:.2f} | "
            f"{e['seconds'] / s['seconds']:.2f} |")


def main(argv=None) -> None:
    run_comparison(__file__, __doc__, CASES, DEFAULT_CASES, "SETTING", ROOT, worker, "float64", ("every", "slack"),
                   COLUMNS, _row, argv)


if __name__ == "__main__":
    main()
