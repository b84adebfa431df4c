"""Run every case of the bad-input corpus (``tests/corpus/cases.py``) and write
``tests/corpus/REPORT.md``: a table of case, input, what was done, expected and actual
outcome (result, exit status, or the one-line error message) and time.

Usage: ``python scripts/corpus_report.py [--output tests/corpus/REPORT.md]`` (about half a
minute on one CPU core).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.corpus.cases import CASES, check, make_context, run_case  # noqa: E402


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "tests" / "corpus" / "REPORT.md"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as folder:
        ctx = make_context(folder)
        for case in CASES:
            start = time.perf_counter()
            outcome = run_case(case, ctx)
            seconds = time.perf_counter() - start
            problem = check(case, outcome)
            failures += problem is not None
            shown = outcome.kind + (f": {outcome.message}" if outcome.message else "")
            shown = shown.replace(folder, "$TMP").replace(str(ROOT) + "/", "")
            verdict = "ok" if problem is None else f"UNEXPECTED: {_cell(problem, 120)}"
            rows.append(f"| {case.name} | {_cell(case.input, 80)} | {_cell(case.action, 80)} | {case.expect} | "
                        f"{_cell(shown)} | {seconds:.2f} | {verdict} |")
    elapsed = time.perf_counter() - t0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    header = [
        "# Bad-input corpus report",
        "",
        "Written by `python scripts/corpus_report.py`; the cases are defined in `tests/corpus/cases.py` and",
        "checked by `tests/test_corpus.py`. Outcome: `result` (finite numbers), `exit N` (CLI exit status,",
        "with its last stderr line) or the exception raised, with its message. `$TMP` is the scratch folder.",
        "",
        f"{len(CASES)} cases, {len(CASES) - failures} as expected, {failures} unexpected; this run took "
        f"{elapsed:.0f} s on one CPU thread, peak memory (RSS) {peak:.0f} MB.",
        "",
        "| case | input | action | expected | outcome | seconds | check |",
        "|---|---|---|---|---|---|---|",
    ]
    Path(args.output).write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    print(f"{len(CASES)} cases, {failures} unexpected, {elapsed:.1f} s; wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
