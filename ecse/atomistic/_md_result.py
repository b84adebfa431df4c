"""The result of :func:`ecse.atomistic.md.run_nve`: energies and momenta along an NVE
trajectory, with its drift and excursion (units in :mod:`ecse.atomistic.md`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._drift import energy_drift, energy_drift_stderr, energy_excursion

__all__ = ["MDResult"]


@dataclass
class MDResult:
    """Energies and momenta along an NVE trajectory, one row per logged step.

    Attributes
    ----------
    time_ps : ndarray ``[T]``
        Simulation time of each logged step (ps); ``time_ps[0] = 0``.
    potential_energy, kinetic_energy, total_energy : ndarray ``[T]``
        Energies (eV) of the whole system.
    temperature_K : ndarray ``[T]``
        Instantaneous kinetic temperature (ASE's ``get_temperature``).
    momentum : ndarray ``[T, 3]``
        Total linear momentum (amu Å/fs).
    angular_momentum : ndarray ``[T, 3]``
        Total angular momentum about the centre of mass (amu Å²/fs).
    n_atoms, timestep_fs, steps : int, float, int
        System size, time step and number of integration steps.
    wall_time_s : float
        Wall-clock time of the integration (s).
    frames : list of ase.Atoms
        Copies (positions, momenta) of the logged steps when ``keep_frames=True``.
    """

    time_ps: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature_K: np.ndarray
    momentum: np.ndarray
    angular_momentum: np.ndarray
    n_atoms: int
    timestep_fs: float
    steps: int
    wall_time_s: float
    frames: list = field(default_factory=list, repr=False)

    @property
    def drift_per_atom_per_ps(self) -> float:
        """Slope of the least-squares line through total energy vs time, per atom (eV/atom/ps)."""
        return energy_drift(self.time_ps, self.total_energy) / self.n_atoms

    def drift_stderr_per_atom_per_ps(self, block_ps: float = 0.1) -> float:
        """Standard error of the drift (eV/atom/ps) from ``block_ps`` blocks of the total
        energy (:func:`energy_drift_stderr`); ``nan`` with fewer than four whole blocks."""
        return energy_drift_stderr(self.time_ps, self.total_energy, block_ps) / self.n_atoms

    @property
    def max_deviation_per_atom(self) -> float:
        """``max_t |E_tot(t) - E_tot(0)|`` per atom (eV/atom)."""
        return energy_excursion(self.total_energy) / self.n_atoms

    def summary(self) -> str:
        """One line: steps, simulated time, drift and maximum deviation per atom."""
        return (f"{self.steps} steps x {self.timestep_fs:g} fs = {self.steps * self.timestep_fs / 1000:g} ps: "
                f"drift {self.drift_per_atom_per_ps:+.3e} (+- {self.drift_stderr_per_atom_per_ps():.1e}) eV/atom/ps, "
                f"max |E_tot - E_tot(0)| {self.max_deviation_per_atom:.3e} eV/atom, "
                f"{self.wall_time_s:.1f} s")
