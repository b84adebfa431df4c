#!/usr/bin/env python
"""Regenerate the bundled EMT fcc-metal data set (``ecse/atomistic/datasets/emt_metals``).

Usage (from the repository root, about a minute on one core)::

    OMP_NUM_THREADS=1 python scripts/generate_emt_data.py            # the shipped set
    python scripts/generate_emt_data.py --folder /tmp/emt --seed 1     # another draw

It runs :func:`ecse.atomistic.emt.write_emt_dataset` with ``DEFAULT_RECIPE``; see
that module for the kinds of structures, the MD protocol and the units.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ecse.atomistic.emt import write_emt_dataset

BUNDLED = Path(__file__).resolve().parents[1] / "ecse" / "atomistic" / "datasets" / "emt_metals"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=BUNDLED)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=3, help="conventional cells per edge of the bulk cells")
    args = parser.parse_args()
    for split, path in write_emt_dataset(args.folder, seed=args.seed, size=args.size).items():
        print(f"{split}: {path}")
