"""Seeded EMT data for fcc metals: crystals, defects, surfaces, alloys and liquid.

ASE's :class:`~ase.calculators.emt.EMT` calculator (Al, Ni, Cu, Pd, Ag, Pt, Au) is
an empirical effective-medium model (Jacobsen, Stoltze & Nørskov, Surf. Sci. 366,
394 (1996)), **not DFT**: its energies, forces and stresses are physical in form
(smooth, many-body, conservative) and cost milliseconds, which makes it a good
reference for tests and benchmarks of energy models on solids.

:func:`emt_structures` builds ``n`` structures of one kind and attaches the EMT
energy (eV), forces (eV/Å) and stress (eV/Å^3, ASE's sign convention: Voigt order
``xx yy zz yz xz xy``, positive under tension) through a
:class:`~ase.calculators.singlepoint.SinglePointCalculator`.  EMT's energy zero is
the ideal crystal at equilibrium (not free atoms).  Kinds (``size=3``):

* ``"perfect"`` -- ideal fcc cells (``size**3`` conventional cells) at ``n``
  lattice constants evenly spread over ``a0 * (1 -+ strain)`` (zero forces);
* ``"thermal"`` -- Langevin NVT snapshots of the fcc bulk (108 atoms) at ``temperature``;
* ``"vacancy"`` -- the same with one atom removed (107 atoms);
* ``"surface"`` -- an fcc(111) slab, ``size + 1`` x ``size + 1`` surface cells and
  ``size + 2`` layers (80 atoms), with 7.5 Å of vacuum on each side; periodic in
  all three directions (the slabs' periodic images are 15 Å apart, so the stress
  is that of the whole cell);
* ``"strained"`` -- ``"thermal"`` snapshots deformed affinely by a random symmetric
  strain with entries uniform in ``[-strain, strain]``;
* ``"alloy"`` -- a random substitutional ``element``/``alloy_with`` alloy on fcc
  sites (``fraction`` of ``alloy_with``; Vegard's-law lattice constant), NVT;
* ``"liquid"`` -- the bulk cell expanded by 5 % in lattice constant (about 16 % in
  volume, near the density of liquid copper), melted for ``melt_steps`` at
  ``2 * temperature`` and equilibrated for ``steps`` at ``temperature`` (default
  2000 K) before sampling.

Every solid uses the EMT equilibrium lattice constant ``a0`` at 0 K
(:func:`emt_lattice_constant`), so thermal cells carry a small thermal pressure.
MD: Langevin, 4 fs time step, friction 0.02 / fs, Maxwell-Boltzmann start,
``steps`` steps of equilibration, then one frame every ``interval`` steps.  The
random numbers all come from ``numpy.random.default_rng(seed)``: the same call
gives the same structures on the same machine.

:func:`write_emt_dataset` writes a recipe of kinds to ``{name}_{train,val,test}.xyz``;
``python -m ecse.atomistic.emt FOLDER`` (or ``scripts/generate_emt_data.py``)
regenerates the set shipped in ``ecse/atomistic/datasets/emt_metals``.

Example
-------
>>> from ecse.atomistic.emt import emt_structures
>>> (atoms,) = emt_structures("perfect", "Cu", size=1)
>>> len(atoms), atoms.get_forces().shape, float(abs(atoms.get_forces()).max()) < 1e-12
(4, (4, 3), True)
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

__all__ = ["EMT_ELEMENTS", "KINDS", "DEFAULT_RECIPE", "emt_lattice_constant", "emt_structures",
           "write_emt_dataset", "main"]

EMT_ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
KINDS = ("perfect", "thermal", "vacancy", "surface", "strained", "alloy", "liquid")
_DEFAULT_T = {"perfect": 0.0, "liquid": 2000.0}  # every other kind: 300 K
_TIMESTEP_FS, _FRICTION_PER_FS = 4.0, 0.02
_LIQUID_EXPANSION = 1.05

#: The shipped ``emt_metals`` set: ``(kind, element, temperature, frames)``.
DEFAULT_RECIPE: tuple[tuple[str, str, float | None, int], ...] = (
    ("perfect", "Cu", None, 3),
    ("thermal", "Cu", 300.0, 4),
    ("thermal", "Cu", 1000.0, 4),
    ("vacancy", "Cu", 300.0, 3),
    ("surface", "Cu", 300.0, 3),
    ("strained", "Cu", 300.0, 3),
    ("alloy", "Cu", 300.0, 3),
    ("liquid", "Cu", 2000.0, 3),
)


@functools.lru_cache(maxsize=None)
def emt_lattice_constant(element: str) -> float:
    """EMT's equilibrium fcc lattice constant (Å) of ``element`` at 0 K (golden-section search).

    >>> round(emt_lattice_constant("Cu"), 3)
    3.59
    """
    _check_element(element)
    atoms = bulk(element, "fcc", a=4.0)
    atoms.calc = EMT()
    cell = atoms.cell.array / 4.0

    def energy(a: float) -> float:
        atoms.set_cell(cell * a, scale_atoms=True)
        return atoms.get_potential_energy()

    lo, hi, g = 3.0, 4.6, (np.sqrt(5.0) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = energy(c), energy(d)
    while hi - lo > 1e-6:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = energy(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = energy(d)
    return float((lo + hi) / 2)


def _check_element(element: str) -> None:
    if element not in EMT_ELEMENTS:
        raise ValueError(f"element {element!r} has no EMT parameters; expected one of {EMT_ELEMENTS}")


def _labelled(atoms: Atoms, kind: str, temperature: float) -> Atoms:
    """A copy of ``atoms`` with EMT energy, forces and stress frozen in a SinglePointCalculator."""
    atoms = atoms.copy()
    atoms.arrays.pop("momenta", None)  # velocities are not a label; keep the files small
    atoms.constraints = []
    atoms.info = {}
    atoms.calc = EMT()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    atoms.info.update(config_type=kind, temperature=float(temperature))
    return atoms


def _langevin(atoms: Atoms, temperature: float, rng: np.random.Generator) -> Langevin:
    return Langevin(atoms, _TIMESTEP_FS * units.fs, temperature_K=temperature,
                    friction=_FRICTION_PER_FS / units.fs, fixcm=False, rng=rng)


def _snapshots(atoms: Atoms, temperature: float, n: int, steps: int, interval: int,
               rng: np.random.Generator, melt_steps: int = 0) -> list[Atoms]:
    """Langevin NVT: optional melt at ``2 * temperature``, ``steps`` to equilibrate, ``n`` frames."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    atoms.set_constraint(FixCom())
    if melt_steps:
        MaxwellBoltzmannDistribution(atoms, temperature_K=2 * temperature, rng=rng, force_temp=True)
        _langevin(atoms, 2 * temperature, rng).run(melt_steps)
    else:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng, force_temp=True)
    dyn = _langevin(atoms, temperature, rng)
    dyn.run(steps)
    frames = []
    for _ in range(n):
        dyn.run(interval)
        frames.append(atoms.copy())
    return frames


def _symmetric_strain(rng: np.random.Generator, strain: float) -> np.ndarray:
    eps = rng.uniform(-strain, strain, size=(3, 3))
    return np.eye(3) + (eps + eps.T) / 2


def emt_structures(kind: str, element: str = "Cu", temperature: float | None = None, n: int = 1,
                   seed: int = 0, size: int = 3, *, alloy_with: str = "Au", fraction: float = 0.5,
                   strain: float = 0.03, steps: int = 100, interval: int = 20,
                   melt_steps: int = 300) -> list[Atoms]:
    """``n`` structures of one ``kind`` (see the module docstring) with EMT labels attached.

    Parameters
    ----------
    kind : one of ``KINDS``.
    element : an fcc metal of ``EMT_ELEMENTS``; the host of ``"alloy"``.
    temperature : Langevin temperature in K (default 300; ``"liquid"``: 2000; unused
        by ``"perfect"``).
    n : number of structures (MD kinds: snapshots ``interval`` steps apart).
    seed : seed of every random choice (velocities, Langevin noise, strains, alloy sites).
    size : bulk cells are ``size**3`` conventional cubic cells (108 atoms for 3).
    alloy_with, fraction : the second element of ``"alloy"`` and its share of the sites.
    strain : largest strain entry of ``"strained"``; relative half-width of the
        lattice-constant range of ``"perfect"``.
    steps, interval, melt_steps : MD equilibration steps, steps between frames, and
        steps of melting (``"liquid"`` only) at twice the temperature.

    Returns
    -------
    list of :class:`ase.Atoms`, each with ``info["config_type"] = kind`` and
    ``info["temperature"]``; ``get_potential_energy()``, ``get_forces()`` and
    ``get_stress()`` return the stored EMT values.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    _check_element(element)
    if n < 1 or size < 1:
        raise ValueError(f"need n >= 1 and size >= 1, got n={n}, size={size}")
    temperature = float(_DEFAULT_T.get(kind, 300.0) if temperature is None else temperature)
    if kind != "perfect" and temperature <= 0:
        raise ValueError(f"kind {kind!r} needs a positive temperature, got {temperature}")
    rng = np.random.default_rng(seed)
    a0 = emt_lattice_constant(element)

    if kind == "perfect":
        scales = np.linspace(1 - strain, 1 + strain, n) if n > 1 else [1.0]
        return [_labelled(bulk(element, "fcc", a=a0 * s, cubic=True).repeat(size), kind, 0.0) for s in scales]

    if kind == "surface":
        start = fcc111(element, size=(size + 1, size + 1, size + 2), a=a0, vacuum=7.5, periodic=True)
    elif kind == "alloy":
        _check_element(alloy_with)
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"alloy fraction must be in (0, 1), got {fraction}")
        a = (1 - fraction) * a0 + fraction * emt_lattice_constant(alloy_with)
        start = bulk(element, "fcc", a=a, cubic=True).repeat(size)
        symbols = np.array(start.get_chemical_symbols())
        symbols[rng.permutation(len(start))[:round(fraction * len(start))]] = alloy_with
        start.set_chemical_symbols(list(symbols))
    else:
        scale = _LIQUID_EXPANSION if kind == "liquid" else 1.0
        start = bulk(element, "fcc", a=a0 * scale, cubic=True).repeat(size)
        if kind == "vacancy":
            del start[0]
    frames = _snapshots(start, temperature, n, steps, interval, rng,
                        melt_steps=melt_steps if kind == "liquid" else 0)
    if kind == "strained":
        for atoms in frames:
            atoms.set_cell(atoms.cell.array @ _symmetric_strain(rng, strain), scale_atoms=True)
    return [_labelled(atoms, kind, temperature) for atoms in frames]


def write_emt_dataset(folder: str | Path, recipe=DEFAULT_RECIPE, seed: int = 0, size: int = 3,
                      name: str = "emt_metals", **kwargs) -> dict[str, Path]:
    """Write ``{name}_train/val/test.xyz`` (extxyz: ``energy``, ``forces``, ``stress``) to ``folder``.

    Each ``(kind, element, temperature, frames)`` entry of ``recipe`` runs
    :func:`emt_structures` with seed ``seed + index``; of its frames the last goes to
    ``test``, the one before to ``val`` (with at least 3 frames) and the rest to ``train``.
    ``kwargs`` are passed to :func:`emt_structures`.  Returns the paths by split.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[Atoms]] = {"train": [], "val": [], "test": []}
    for i, (kind, element, temperature, frames) in enumerate(recipe):
        structures = emt_structures(kind, element, temperature, frames, seed=seed + i, size=size, **kwargs)
        n_val = 1 if len(structures) >= 3 else 0
        n_train = max(len(structures) - 1 - n_val, 0)
        splits["train"] += structures[:n_train]
        splits["val"] += structures[n_train:n_train + n_val]
        splits["test"] += structures[n_train + n_val:]
    paths = {}
    for split, frames in splits.items():
        paths[split] = folder / f"{name}_{split}.xyz"
        write(paths[split], frames, format="extxyz")
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Command line: ``python -m ecse.atomistic.emt FOLDER [--seed S] [--size N]``."""
    parser = argparse.ArgumentParser(description="Write the EMT fcc-metal data set (DEFAULT_RECIPE).")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=3, help="conventional cells per edge of the bulk cells")
    args = parser.parse_args(argv)
    paths = write_emt_dataset(args.folder, seed=args.seed, size=args.size)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return paths


if __name__ == "__main__":  # pragma: no cover
    main()
