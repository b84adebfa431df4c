"""Constant-energy (NVE) molecular dynamics with ASE's velocity Verlet, and energy drift.

:func:`run_nve` integrates Newton's equations for any ASE calculator (e.g.
:class:`~ecse.atomistic.ECSECalculator` around a bare or ECSE-wrapped PET) and returns an
:class:`MDResult` with the energies along the trajectory and the drift of the total energy,
the usual check that the forces are the exact, smooth gradient of the energy.
:func:`verlet_step_errors` replays a stored trajectory on any calculator: the energy each
step would gain on that calculator's surface along the same positions, which compares two
models' integration error without the divergence of two independent runs.
:func:`energy_drift`, :func:`energy_drift_stderr` and :func:`energy_excursion` measure a
total energy (or a replay's cumulative error) against time.

Units: time in ps (the time step in fs), energies in eV, temperature in K, linear momentum
in amu Å/fs and angular momentum (about the centre of mass) in amu Å²/fs; positions in Å.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Union

import numpy as np
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from ._drift import energy_drift, energy_drift_stderr, energy_excursion
from ._md_restart import RestartWriter, read_restart
from ._md_result import MDResult

__all__ = ["MDResult", "energy_drift", "energy_drift_stderr", "energy_excursion", "run_nve",
           "verlet_step_errors"]


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm  # text bar (tqdm.auto needs ipywidgets in notebooks)
    except ImportError:  # tqdm is optional
        return None
    return tqdm(total=total, desc=desc, unit="step", mininterval=0.5)


def _log_line(step: int, row: tuple) -> str:
    """One line of ``run_nve``'s ``logfile`` from a logged row ``(time_ps, potential, kinetic, T, ...)``."""
    t, ep, ek, temp = row[:4]
    return f"{step} {t:.6f} {ep:.12f} {ek:.12f} {ep + ek:.12f} {temp:.3f}\n"


def run_nve(atoms, calculator, timestep_fs: float = 0.5, steps: int = 4000,
            temperature_K: Optional[float] = 300.0, seed: int = 0, log_every: int = 1,
            progress: bool = False, keep_frames: bool = False, desc: str = "NVE",
            logfile: Union[str, os.PathLike, None] = None, restart: Union[str, os.PathLike, None] = None,
            restart_every: int = 100) -> MDResult:
    """Velocity-Verlet NVE dynamics of a copy of ``atoms`` with ``calculator``.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure; it is copied, never modified.
    calculator : ase.calculators.calculator.Calculator
        Gives energies (eV) and forces (eV/Å), e.g. ``ECSECalculator(model)``.
    timestep_fs : float
        Integration time step (fs).
    steps : int
        Number of time steps (``steps * timestep_fs / 1000`` ps in all).
    temperature_K : float or None
        Initial velocities from a Maxwell-Boltzmann distribution at this temperature
        (random generator seeded with ``seed``), then the total linear momentum and, for
        non-periodic systems, the angular momentum removed (ASE's ``Stationary`` and
        ``ZeroRotation``, which rescale back to the drawn temperature). ``None`` keeps
        the momenta of ``atoms``.
    seed : int
        Seed of the initial velocities: the same structure and seed give the same run.
    log_every : int
        Record energies and momenta every this many steps (and at step 0).
    progress : bool
        Show a progress bar (needs ``tqdm``; silently none without it).
    keep_frames : bool
        Also keep a copy of the structure (positions and momenta) at every logged step.
    desc : str
        Label of the progress bar.
    logfile : str or path-like, optional
        Also write every logged step to this text file as it happens (created or
        overwritten, flushed line by line, so that a long run can be watched and its
        finished part survives an interruption): a ``#`` header, then ``step time_ps
        potential_eV kinetic_eV total_eV temperature_K`` per line (``numpy.loadtxt`` reads
        it).
    restart : str or path-like, optional
        A ``.npz`` file that holds the run's state (positions, momenta, step and
        settings), rewritten every ``restart_every`` steps and at the end, with the logged
        rows appended to ``<restart>.rows`` beside it (keep the two together).  If it
        exists when the call starts, the run continues from it: ``temperature_K`` and
        ``seed`` are not used, the remaining steps up to ``steps`` in all are run, and
        ``logfile`` is rewritten with the stored rows first.  Velocity Verlet recomputes the
        forces at the stored positions, so an interrupted and continued run gives the same
        numbers as an uninterrupted one with a calculator that keeps nothing between calls
        (``ECSECalculator``), and the same up to rounding with one that keeps a neighbour
        list (ASE's EMT: the order of its sums changes with when the list was built)
        (``keep_frames`` keeps only the steps this call runs; ``wall_time_s`` adds up
        every call's).  A file from another system, time step
        or ``log_every`` is refused.
    restart_every : int
        Steps between two writes of ``restart``.

    Returns
    -------
    MDResult
        With ``drift_per_atom_per_ps`` and ``max_deviation_per_atom``.

    Raises
    ------
    FloatingPointError
        The energy became NaN or infinite (the step is named).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> res = run_nve(bulk("Cu", cubic=True), EMT(), timestep_fs=2.0, steps=20, seed=1)
    >>> res.total_energy.shape, float(res.time_ps[-1])
    ((21,), 0.04)
    >>> abs(res.drift_per_atom_per_ps) < 1e-3
    True
    """
    if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not (isinstance(log_every, (int, np.integer)) and not isinstance(log_every, bool) and log_every >= 1):
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs!r}")
    if not (isinstance(restart_every, (int, np.integer)) and not isinstance(restart_every, bool)
            and restart_every >= 1):
        raise ValueError(f"restart_every must be a positive integer, got {restart_every!r}")
    if len(atoms) == 0:
        raise ValueError("run_nve needs at least one atom")
    atoms = atoms.copy()
    atoms.calc = calculator
    state = read_restart(restart, atoms, timestep_fs, log_every, steps)
    if state is not None:
        atoms.set_positions(state["positions"])
        atoms.set_momenta(state["momenta"])
    elif temperature_K is not None:
        if temperature_K < 0:
            raise ValueError(f"temperature_K must be >= 0, got {temperature_K!r}")
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
        Stationary(atoms)
        if not atoms.pbc.any():  # a periodic system has no conserved angular momentum
            ZeroRotation(atoms)

    rows: list = [] if state is None else [tuple(r) for r in state["rows"]]
    frames: list = []
    log = None
    done = 0 if state is None else int(state["step"])
    earlier_wall = 0.0 if state is None else float(state["wall_time_s"])

    def record() -> None:
        epot = float(atoms.get_potential_energy())
        if not np.isfinite(epot):
            raise FloatingPointError(f"run_nve: non-finite potential energy {epot} at step {dyn.nsteps}")
        ekin = float(atoms.get_kinetic_energy())
        rows.append((dyn.nsteps * timestep_fs / 1000.0, epot, ekin, float(atoms.get_temperature()),
                     *(atoms.get_momenta().sum(axis=0) * units.fs), *(atoms.get_angular_momentum() * units.fs)))
        if log is not None:
            log.write(_log_line(dyn.nsteps, rows[-1]))
            log.flush()
        if keep_frames:
            frame = atoms.copy()
            frame.calc = None
            frames.append(frame)

    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dyn.nsteps = done  # irun records step 0 only on a fresh start
    dyn.attach(record, interval=log_every)
    start = time.perf_counter()
    if restart is not None:
        writer = RestartWriter(restart, 0 if state is None else int(state["saved_rows"]))

        def save() -> None:
            writer.save(atoms, dyn.nsteps, rows, timestep_fs, log_every, earlier_wall + time.perf_counter() - start)
        dyn.attach(save, interval=restart_every)
    if logfile is not None:
        log = open(logfile, "w")
        log.write(f"# {desc}: {len(atoms)} atoms, {timestep_fs:g} fs\n"
                  "# step time_ps potential_eV kinetic_eV total_eV temperature_K\n")
        log.writelines(_log_line(round(row[0] * 1000.0 / timestep_fs), row) for row in rows)
    bar = _progress_bar(progress, steps - done, desc)
    try:
        for i, _ in enumerate(dyn.irun(steps - done)):
            if bar is not None and i > 0:
                bar.update(1)
        if restart is not None and writer.step != dyn.nsteps:  # unless the last step was just saved
            save()
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    wall = earlier_wall + time.perf_counter() - start
    table = np.asarray(rows, dtype=np.float64)
    epot, ekin = table[:, 1], table[:, 2]
    return MDResult(time_ps=table[:, 0], potential_energy=epot, kinetic_energy=ekin, total_energy=epot + ekin,
                    temperature_K=table[:, 3], momentum=table[:, 4:7], angular_momentum=table[:, 7:10],
                    n_atoms=len(atoms), timestep_fs=float(timestep_fs), steps=int(steps), wall_time_s=wall,
                    frames=frames)


def verlet_step_errors(frames, calculator, timestep_fs: float) -> np.ndarray:
    r"""Total-energy change of each velocity-Verlet step along given positions, on ``calculator``'s surface.

    For consecutive positions :math:`x_n` of a velocity-Verlet run with time step
    :math:`\Delta t`, step :math:`n` changes the total energy by exactly

    .. math::
        e_n = U(x_{n+1}) - U(x_n) + \tfrac12 (F_n + F_{n+1}) \cdot (x_{n+1} - x_n)
              + \frac{\Delta t^2}{8} \sum_a \frac{|F_{n+1,a}|^2 - |F_{n,a}|^2}{m_a},

    the trapezoid rule's error on the work plus a term that telescopes.  Evaluated with the
    calculator that made the run, ``errors.sum()`` is the run's total-energy change;
    evaluated with another calculator along the same positions, it is the error that model's
    surface makes along that path.  Two models run from the same start soon follow
    different paths (the dynamics is chaotic) and their drifts then differ as much as runs
    from different velocities do; along one path the difference is the surfaces' alone.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Consecutive steps of one run (``run_nve(..., keep_frames=True).frames``, or an
        extxyz trajectory written every step): same atoms and masses; periodic
        displacements are taken at their minimum image.
    calculator : ase.calculators.calculator.Calculator
        Gives energies (eV) and forces (eV/Å).
    timestep_fs : float
        The run's time step (fs).

    Returns
    -------
    numpy.ndarray
        ``[len(frames) - 1]`` energy change of each step (eV, whole system).

    Example
    -------
    >>> from ase.build import molecule
    >>> from ase.calculators.emt import EMT
    >>> run = run_nve(molecule("H2O"), EMT(), timestep_fs=0.5, steps=20, keep_frames=True)
    >>> errors = verlet_step_errors(run.frames, EMT(), timestep_fs=0.5)
    >>> bool(abs(errors.sum() - (run.total_energy[-1] - run.total_energy[0])) < 1e-9)
    True
    """
    from ase.geometry import find_mic

    frames = list(frames)
    if len(frames) < 2:
        raise ValueError(f"verlet_step_errors needs at least 2 frames, got {len(frames)}")
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be > 0, got {timestep_fs!r}")
    first = frames[0]
    for i, f in enumerate(frames):
        if len(f) != len(first) or not np.array_equal(f.numbers, first.numbers):
            raise ValueError(f"verlet_step_errors: frame {i} has other atoms than frame 0 "
                             f"({f.get_chemical_formula()} against {first.get_chemical_formula()})")
    masses = first.get_masses()[:, None]
    energies, forces = [], []
    for f in frames:
        atoms = f.copy()
        atoms.calc = calculator
        energies.append(float(atoms.get_potential_energy()))
        forces.append(np.asarray(atoms.get_forces(), dtype=np.float64))
    energy, force = np.asarray(energies), np.stack(forces)
    positions = np.stack([f.positions for f in frames])
    step = positions[1:] - positions[:-1]
    if first.pbc.any():
        step = find_mic(step.reshape(-1, 3), first.cell, first.pbc)[0].reshape(step.shape)
    dt = timestep_fs * units.fs
    work = 0.5 * ((force[1:] + force[:-1]) * step).sum(axis=(1, 2))
    kick = dt ** 2 / 8 * ((force[1:] ** 2 - force[:-1] ** 2) / masses).sum(axis=(1, 2))
    return energy[1:] - energy[:-1] + work + kick
