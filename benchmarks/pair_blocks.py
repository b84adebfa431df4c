"""The adaptive inner cutoff's pairs of neighbours in blocks of centres against all at once
(printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/pair_blocks.py [--repeats 3] [--cases cloud20000 ...]

``ecse.cutoff.adaptive_inner_cutoff`` evaluates every pair of a centre's neighbours within
the outer cutoff: ``k (k - 1) / 2`` pairs for ``k`` neighbours, each held as about a dozen
numbers.  It now runs centres in blocks of about ``ecse.cutoff.PAIR_BLOCK`` pairs,
each block checkpointed when gradients are needed ("blocks"); before, all pairs at once
("one pass", ``PAIR_BLOCK`` set to 2**40 here).  Each (case, setting) runs in a fresh
process, float64, one thread: :func:`ecse.local_frames` (cutoff 5 Å) and the backward
pass of its weights and rotations (what forces need), one call for the peak growth of the
resident memory, then ``--repeats`` calls for the median time.  The ratio is "one pass /
blocks" of the two medians, measured in the same run; the two settings' sums of the
weights must agree to 1e-9.

Cases (every system class; perfect crystals keep every frame of every atom):

* ``cloud20000``: 20000 uniform random points at a liquid's density (0.1 per Å^3, about
  50 neighbours within 5 Å), a generic point cloud;
* ``water1536``: ``water_bulk_64`` frame 0 replicated 2x2x2 (1536 atoms), a liquid;
* ``cu2048``: fcc Cu, 2048 atoms, displaced by 0.05 Å (Gaussian, seed 0), a thermal metal;
* ``cu2048-perfect``: the same crystal without displacements;
* ``c1728``: perfect diamond carbon, 1728 atoms (86 neighbours within 5 Å), the densest.
"""
from __future__ import annotations

from pathlib import Path

from _fresh_process import peak_and_median, run_comparison

ROOT = Path(__file__).resolve().parents[1]
CASES = ["cloud20000", "water1536", "cu2048", "cu2048-perfect", "c1728"]
SETTINGS = ("one-pass", "blocks")


def structure(name: str, data_dir: Path):
    """``(pos, cell, pbc)`` of a case in float64 (``cell``, ``pbc``: ``None`` when open)."""
    import torch
    from ase.build import bulk
    from ase.io import read

    from ecse.atomistic import atoms_to_data

    if name == "cloud20000":
        g = torch.Generator().manual_seed(0)
        return torch.rand(20000, 3, generator=g, dtype=torch.float64) * (20000 / 0.1) ** (1 / 3), None, None
    if name == "water1536":
        atoms = read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=0).repeat(2)
    elif name.startswith("cu2048"):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(8)
        if name == "cu2048":
            atoms.rattle(0.05, seed=0)
    else:
        atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat(6)
    data = atoms_to_data(atoms, dtype=torch.float64)
    return data.pos, data.cell, data.pbc


def worker(name: str, setting: str, repeats: int, data_dir: Path) -> dict:
    import torch

    import ecse.cutoff
    from ecse import local_frames

    torch.set_num_threads(1)
    if setting == "one-pass":
        ecse.cutoff.PAIR_BLOCK = 1 << 40
    pos, cell, pbc = structure(name, data_dir)

    def call():
        x = pos.clone().requires_grad_()
        lf = local_frames(x, 5.0, cell=cell, pbc=pbc)
        (lf.weight.sum() + lf.rotation.sum()).backward()
        return lf

    peak, seconds, lf = peak_and_median(call, repeats)
    return {"atoms": pos.shape[0], "peak_gb": peak, "seconds": seconds,
            "copies_per_atom": lf.weight.numel() / pos.shape[0], "energy": float(lf.weight.detach().sum())}


COLUMNS = ["case", "atoms", "frame copies per atom", "peak GB (one pass / blocks)", "s (one pass / blocks)",
           "one pass / blocks (time)"]


def _row(name: str, one: dict, blocks: dict) -> str:
    return (f"| {name} | {one['atoms']} | {blocks['copies_per_atom']:.1f} | {one['peak_gb']:.2f} / "
            f"{blocks['peak_gb']:.2f} | {one['seconds']:.2f} / {blocks['seconds']:.2f} | "
            f"{one['seconds'] / blocks['seconds']:.2f} |")


def main(argv=None) -> None:
    run_comparison(__file__, __doc__, CASES, CASES, "SETTING", ROOT, worker,
                   "local_frames + backward, float64", SETTINGS, COLUMNS, _row, argv)


if __name__ == "__main__":
    main()
