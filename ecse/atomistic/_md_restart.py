"""The state file of :func:`ecse.atomistic.md.run_nve`'s ``restart`` option: written
atomically, read back with checks that name the file and what differs."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

__all__ = ["read_restart", "write_restart"]

_RESTART_KEYS = ("positions", "momenta", "numbers", "step", "rows", "timestep_fs", "log_every", "wall_time_s")


def read_restart(path, atoms, timestep_fs: float, log_every: int, steps: int) -> Optional[dict]:
    """The stored state of :func:`run_nve`'s ``restart`` file, checked against this run; ``None`` if absent."""
    if path is None or not os.path.exists(path):
        return None
    with np.load(path) as stored:
        missing = [k for k in _RESTART_KEYS if k not in stored.files]
        if missing:
            raise ValueError(f"run_nve: restart file {os.fspath(path)!r} lacks {missing} (not written by run_nve?)")
        state = {k: stored[k] for k in _RESTART_KEYS}
    if not np.array_equal(state["numbers"], atoms.numbers):
        raise ValueError(f"run_nve: restart file {os.fspath(path)!r} holds {len(state['numbers'])} atoms of other "
                         f"elements or order than the {len(atoms)} given")
    for key, value in (("timestep_fs", timestep_fs), ("log_every", log_every)):
        if float(state[key]) != float(value):
            raise ValueError(f"run_nve: restart file {os.fspath(path)!r} was written with {key}={state[key]:g}, "
                             f"this run has {value:g}")
    if int(state["step"]) > steps:
        raise ValueError(f"run_nve: restart file {os.fspath(path)!r} is at step {int(state['step'])}, "
                         f"beyond steps={steps}")
    return state


def write_restart(path, atoms, step: int, rows: list, timestep_fs: float, log_every: int, wall: float) -> None:
    """Write the state atomically (a temporary file renamed over ``path``)."""
    tmp = f"{os.fspath(path)}.tmp.npz"
    np.savez(tmp, positions=atoms.get_positions(), momenta=atoms.get_momenta(), numbers=atoms.numbers,
             step=step, rows=np.asarray(rows, dtype=np.float64).reshape(len(rows), 10), timestep_fs=timestep_fs,
             log_every=log_every, wall_time_s=wall)
    os.replace(tmp, path)
