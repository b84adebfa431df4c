"""Data sets shipped inside the package, so the main job runs on a fresh machine.

``methane``: 800/100/100 random CH4 structures (energy, forces), MIT licence, from
lab-cosmo/pet; see ``methane/README.md``.

Example:
    >>> from ecse.atomistic.datasets import bundled_dataset
    >>> sorted(p.name for p in bundled_dataset("methane").values())
    ['methane_test.xyz', 'methane_train.xyz', 'methane_val.xyz']
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["bundled_dataset", "BUNDLED"]

_HERE = Path(__file__).resolve().parent
BUNDLED = ("methane", "emt_metals")


def bundled_dataset(name: str) -> dict[str, Path]:
    """Paths of the ``train``/``val``/``test`` files of a bundled data set."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled data set {name!r}; available: {', '.join(BUNDLED)}")
    folder = _HERE / name
    return {split: folder / f"{name}_{split}.xyz" for split in ("train", "val", "test")}
