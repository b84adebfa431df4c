"""Peak memory and time of one energy + forces call on a crystal (printed, never asserted).

    OMP_NUM_THREADS=1 python benchmarks/peak_memory.py MODE SYMBOL LATTICE A NX,NY,NZ [RATTLE]

``MODE`` is ``bare`` (``PET()``), ``local`` or ``global`` (``ECSE(PET(), cutoff=5.0, mode=MODE)``),
all with default arguments, float64; the structure is ``ase.build.bulk(SYMBOL, LATTICE, a=A,
cubic=True).repeat((NX, NY, NZ))``, optionally rattled by ``RATTLE`` Å (seed 0).  Run one case
per process: the peak is the growth of the resident memory above the memory before the call
(Linux ``/proc/self/status`` VmHWM after resetting it through ``/proc/self/clear_refs``).
Example, the densest 2000-atom case of issue 17 (about 3 GB, a quarter of an hour here)::

    python benchmarks/peak_memory.py local C diamond 3.567 6,6,7
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from ase.build import bulk

from ecse import ECSE
from ecse.atomistic.data import atoms_to_data
from ecse.atomistic.derivatives import energy_and_forces
from ecse.backbones import PET

from _fresh_process import reset_peak, status_mib


def main(argv: list[str]) -> None:
    if len(argv) not in (5, 6) or argv[0] not in ("bare", "local", "global"):
        raise SystemExit(__doc__)
    mode, symbol, lattice, a, repeat = argv[0], argv[1], argv[2], float(argv[3]), tuple(map(int, argv[4].split(",")))
    torch.set_num_threads(1)
    atoms = bulk(symbol, lattice, a=a, cubic=True).repeat(repeat)
    if len(argv) == 6:
        atoms.rattle(float(argv[5]), seed=0)
    data = atoms_to_data(atoms, dtype=torch.float64)
    torch.manual_seed(0)
    pet = PET().double()
    model = pet if mode == "bare" else ECSE(pet, cutoff=5.0, mode=mode).double()
    base, start = reset_peak(trim=False), time.perf_counter()
    energy_and_forces(model, data)
    print(f"{mode} {symbol} {lattice} {len(atoms)} atoms: peak growth {(status_mib('VmHWM') - base) / 1024:.2f} GB, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
