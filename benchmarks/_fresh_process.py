"""Peak resident memory of a call, and benchmarks that run each case in a fresh process.

``status_mib`` and ``reset_peak`` read the resident memory and reset its high-water mark
(Linux ``/proc/self/status`` and ``/proc/self/clear_refs``); every memory benchmark here
uses them.  ``benchmarks/pet_chunking.py``, ``benchmarks/trim_slack.py`` and
``benchmarks/chunk_budget.py`` also run each (case, setting) in its own process
(``run_comparison``: ``run_worker``, ``compare``) so that the peak of one does not hide
another's; inside it, ``peak_and_median`` makes one call for the peak growth (GB), then
``repeats`` more for the median time (s).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = ["status_mib", "reset_peak", "peak_and_median", "run_worker", "header", "parser", "compare",
           "run_comparison"]


def status_mib(key: str) -> Optional[float]:
    """``key`` of ``/proc/self/status`` (``"VmRSS"``, ``"VmHWM"``) in MiB; ``None`` where it
    cannot be read (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak(trim: bool) -> Optional[float]:
    """Reset the high-water mark to the resident memory; the resident memory now, in MiB
    (``None`` where it cannot be read).  ``trim``: first return the free heap to the
    operating system (every time, unlike chunked evaluation's trimming), so that what the
    set-up freed does not hide the next call's peak."""
    if trim:
        from ecse._memory import release_free_memory

        release_free_memory(slack=0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        pass
    return status_mib("VmRSS")


def peak_and_median(call: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """``(peak growth GB of the first call, median seconds of the next repeats, last result)``."""
    base = reset_peak(trim=False)
    result = call()
    peak = (status_mib("VmHWM") - base) / 1024
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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    return (f"commit {commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"load average {os.getloadavg()[0]:.2f}; {what}, 1 thread, median of {repeats}\n")


def parser(doc: str, cases: list, default_cases: list, setting: str, root: Path):
    """The command line of a fresh-process benchmark: ``--cases``, ``--repeats``, ``--data``
    and the hidden ``--worker CASE SETTING``."""
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


def run_comparison(script: str, doc: str, cases: list, default_cases: list, setting: str, root: Path,
                   worker: Callable[..., dict], what: str, settings: tuple[str, ...], columns: list[str],
                   row: Callable[..., str], argv=None) -> None:
    """The ``main`` of a fresh-process benchmark: run as ``--worker CASE SETTING``, print
    ``worker(CASE, SETTING, repeats, data)`` as JSON; else print the :func:`header`, a table
    of ``columns`` and, per case, ``row(case, *results, one per setting)``."""
    args = parser(doc, cases, default_cases, setting, root).parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.data)))
        return
    print(header(root, args.repeats, what))
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for name, rows in compare(script, args, settings):
        print(row(name, *rows), flush=True)
