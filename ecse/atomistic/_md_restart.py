"""The state of :func:`ecse.atomistic.md.run_nve`'s ``restart`` option: a ``.npz`` of the
positions, momenta, step and settings, written atomically, and beside it an append-only
``<restart>.rows`` file of the logged rows, so that each save writes only the rows logged
since the last one (a long run's saves cost time proportional to the run, not its square).
Read back with checks that name the file and what differs."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

__all__ = ["read_restart", "rows_path", "RestartWriter"]

#: the state's keys; the logged rows are ``rows_count`` rows of ``<restart>.rows`` (files
#: written before the rows file hold them as ``rows`` instead, and are still read)
_STATE_KEYS = ("positions", "momenta", "numbers", "step", "timestep_fs", "log_every", "wall_time_s")
#: numbers per logged row: time, potential, kinetic, temperature, momentum (3), angular momentum (3)
ROW_WIDTH = 10
_ROW_BYTES = 8 * ROW_WIDTH


def rows_path(path) -> str:
    """The rows file that goes with the state file ``path``."""
    return f"{os.fspath(path)}.rows"


def _read_rows(path, count: int) -> np.ndarray:
    rows_file = rows_path(path)
    size = os.path.getsize(rows_file) if os.path.exists(rows_file) else None
    if size is None or size < count * _ROW_BYTES:
        held = "is missing" if size is None else f"holds {size // _ROW_BYTES} rows"
        raise ValueError(f"run_nve: rows file {rows_file!r} {held}, its state file {os.fspath(path)!r} "
                         f"names {count} (keep the two files together)")
    return np.fromfile(rows_file, dtype="<f8", count=count * ROW_WIDTH).reshape(count, ROW_WIDTH)


def read_restart(path, atoms, timestep_fs: float, log_every: int, steps: int) -> Optional[dict]:
    """The stored state of :func:`run_nve`'s ``restart`` file, checked against this run; ``None`` if absent.

    ``state["rows"]`` holds the logged rows, ``state["saved_rows"]`` how many of them the
    rows file holds (for :class:`RestartWriter`)."""
    if path is None or not os.path.exists(path):
        return None
    with np.load(path) as stored:
        missing = [k for k in _STATE_KEYS if k not in stored.files]
        if "rows_count" not in stored.files and "rows" not in stored.files:
            missing.append("rows_count")
        if missing:
            raise ValueError(f"run_nve: restart file {os.fspath(path)!r} lacks {missing} (not written by run_nve?)")
        state = {k: stored[k] for k in _STATE_KEYS}
        if "rows_count" in stored.files:
            state["rows"] = _read_rows(path, int(stored["rows_count"]))
            state["saved_rows"] = len(state["rows"])
        else:  # the earlier format: every row inside the state file, none in a rows file yet
            state["rows"] = stored["rows"].reshape(-1, ROW_WIDTH)
            state["saved_rows"] = 0
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


class RestartWriter:
    """Saves a run's state to ``path`` and its logged rows to :func:`rows_path`.

    Each :meth:`save` first cuts the rows file back to the ``saved`` rows its state file
    names (a run killed between the two writes leaves rows the state does not name), appends
    the rows logged since, then replaces the state file atomically (a temporary file renamed
    over ``path``) with the new count.

    Args:
        path: the state file.
        saved: rows already in the rows file under the current state (``0`` for a new run or
            a state of the earlier format, whose rows are then written out at the first save).
    """

    def __init__(self, path, saved: int = 0):
        self.path = path
        self.saved = int(saved)
        self.step: Optional[int] = None  # the step of this writer's last save

    def save(self, atoms, step: int, rows: list, timestep_fs: float, log_every: int, wall: float) -> None:
        with open(rows_path(self.path), "ab") as out:  # appends after the cut, creates a missing file
            out.truncate(self.saved * _ROW_BYTES)
            out.write(np.asarray(rows[self.saved:], dtype="<f8").reshape(-1, ROW_WIDTH).tobytes())
        tmp = f"{os.fspath(self.path)}.tmp.npz"
        np.savez(tmp, positions=atoms.get_positions(), momenta=atoms.get_momenta(), numbers=atoms.numbers,
                 step=step, rows_count=len(rows), timestep_fs=timestep_fs, log_every=log_every, wall_time_s=wall)
        os.replace(tmp, self.path)
        self.saved = len(rows)
        self.step = int(step)
