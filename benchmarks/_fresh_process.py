"""Measure one energy + forces call per fresh process: peak memory growth, then median time.

Shared by ``benchmarks/pet_chunking.py`` and ``benchmarks/trim_slack.py``: each (case,
setting) runs in its own process (``run_worker``) so that the peak resident memory of one
does not hide another's; inside it, ``peak_and_median`` resets the high-water mark
(Linux ``/proc/self/clear_refs``), makes one call for the peak growth (GB), then
``repeats`` more for the median time (s).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

__all__ = ["peak_and_median", "run_worker", "header", "parser", "compare"]


def _status_gb(key: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1]) / 2**20


def peak_and_median(call: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """``(peak growth GB of the first call, median seconds of the next repeats, last result)``."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    base = _status_gb("VmRSS")
    result = call()
    peak = _status_gb("VmHWM") - base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return peak, statistics.median(times), result


def run_worker(script: str, *args: str) -> dict:
    """Run ``python script --worker ...`` in a fresh process; its last stdout line as JSON."""
    out = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def header(root: Path, repeats: int, what: str) -> str:
    """The first line of a benchmark's output: commit, date, load average, settings."""
    import os

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    return (f"commit {commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"load average {os.getloadavg()[0]:.2f}; {what}, 1 thread, median of {repeats}\n")


def parser(doc: str, cases: list, default_cases: list, setting: str, root: Path):
    """The command line of a fresh-process benchmark: ``--cases``, ``--repeats``, ``--data``
    and the hidden ``--worker CASE SETTING``."""
    import argparse

    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    out.add_argument("--cases", nargs="+", default=default_cases, choices=cases)
    out.add_argument("--repeats", type=int, default=3)
    out.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    out.add_argument("--worker", nargs=2, metavar=("CASE", setting), help=argparse.SUPPRESS)
    return out


def compare(script: str, args, settings: tuple[str, ...]):
    """For each of ``args.cases``: ``(case, [worker result per setting])``, each in a fresh
    process; the settings' energies must agree to 1e-9 (relative)."""
    for name in args.cases:
        rows = [run_worker(script, name, setting, "--repeats", str(args.repeats), "--data", str(args.data))
                for setting in settings]
        for row in rows[1:]:
            assert abs(row["energy"] - rows[0]["energy"]) <= 1e-9 * max(1.0, abs(rows[0]["energy"])), rows
        yield name, rows
