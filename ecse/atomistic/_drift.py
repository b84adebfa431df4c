"""Energy drift of a time series: slope, its standard error from blocks, and excursion.

The single home of these three definitions: :class:`~ecse.atomistic.md.MDResult` applies
them to a run's total energy, and replays (:func:`~ecse.atomistic.md.verlet_step_errors`
summed along a path) to their cumulative error.  Time in ps, energies in any unit (eV).
"""
from __future__ import annotations

import numpy as np

__all__ = ["energy_drift", "energy_drift_stderr", "energy_excursion"]


def _series(time_ps, energy):
    t = np.asarray(time_ps, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if t.ndim != 1 or t.shape != e.shape:
        raise ValueError(f"time_ps and energy must be 1-d arrays of one length, got shapes "
                         f"{t.shape} and {e.shape}")
    if not (np.isfinite(t).all() and np.isfinite(e).all()):
        raise ValueError("time_ps and energy must be finite")
    return t, e


def energy_drift(time_ps, energy) -> float:
    """Slope of the least-squares line through ``energy`` against ``time_ps`` (energy/ps).

    ``nan`` with fewer than two points.

    Example
    -------
    >>> round(energy_drift([0.0, 0.1, 0.2, 0.3], [1.0, 1.2, 1.4, 1.6]), 12)
    2.0
    """
    t, e = _series(time_ps, energy)
    if len(t) < 2:
        return float("nan")
    return float(np.polyfit(t, e, 1)[0])


def energy_drift_stderr(time_ps, energy, block_ps: float = 0.1) -> float:
    """Standard error of :func:`energy_drift` (energy/ps), from the means of ``block_ps`` blocks.

    Velocity Verlet's total energy oscillates at the system's vibrational frequencies
    (periods of tens of fs); blocks much longer than that average the oscillation out and
    keep the slow wander, whose scatter about a least-squares line through the block means
    gives the slope's standard error.  A drift within about two standard errors of zero is
    not resolved by the run, and a ratio of two such drifts says nothing.  ``nan`` with
    fewer than four whole blocks (a last, partial block is left out).  Blocks count from
    ``time_ps[0]``.
    """
    if not block_ps > 0:
        raise ValueError(f"block_ps must be positive, got {block_ps}")
    t, e = _series(time_ps, energy)
    if len(t) == 0:
        return float("nan")
    block = np.floor((t - t[0]) / block_ps + 1e-9).astype(int)
    whole = int(block.max())
    if whole < 4:
        return float("nan")
    keep = block < whole
    counts = np.bincount(block[keep], minlength=whole)
    tb = np.bincount(block[keep], t[keep], whole) / counts
    eb = np.bincount(block[keep], e[keep], whole) / counts
    slope, intercept = np.polyfit(tb, eb, 1)
    residual = eb - (slope * tb + intercept)
    variance = float(residual @ residual) / (whole - 2)
    return float(np.sqrt(variance / float(((tb - tb.mean()) ** 2).sum())))


def energy_excursion(energy) -> float:
    """Largest distance of ``energy`` from its first value, ``max_t |E(t) - E(0)|``.

    Example
    -------
    >>> energy_excursion([1.0, 1.5, 0.2, 1.1])
    0.8
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1 or len(e) == 0:
        raise ValueError(f"energy must be a non-empty 1-d array, got shape {e.shape}")
    return float(np.abs(e - e[0]).max())
