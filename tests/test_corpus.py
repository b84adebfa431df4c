"""The bad-input corpus (``tests/corpus/``): every case gets its expected outcome, a
finite result or a one-line error of the expected type naming the file, index, key or
element, and never NaN, a traceback or an unexpected exception type.

The cases, their inputs and actions are defined in ``tests/corpus/cases.py``;
``scripts/corpus_report.py`` writes the same runs to ``tests/corpus/REPORT.md``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("ase")
pytest.importorskip("yaml")

from .corpus.cases import CASES, CORPUS, FILES, check, make_context, run_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield make_context(tmp_path_factory.mktemp("corpus"))
    finally:
        torch.set_num_threads(threads)


def test_the_corpus_is_large_and_small_on_disk():
    files = [p for p in CORPUS.iterdir() if p.suffix in (".xyz", ".extxyz")]
    assert len(files) >= 50 and set(FILES) == {p.name for p in files}
    assert sum(p.stat().st_size for p in files) < 20_000  # big and binary inputs are generated
    assert len({c.name for c in CASES}) == len(CASES) and len({c.input for c in CASES}) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, ctx):
    outcome = run_case(case, ctx)
    problem = check(case, outcome)
    assert problem is None, f"{case.name} ({case.input}, {case.action}): {problem}"


def test_check_rejects_wrong_outcomes(ctx):
    # the checker itself can fail: a wrong class, a wrong message, two lines, NaN
    from .corpus.cases import Case, Outcome

    case = Case("x", "x.extxyz", "load", "ValueError", r"x\.extxyz\[0\]")
    assert check(case, Outcome("ValueError", "bad in x.extxyz[0]")) is None
    assert check(case, Outcome("KeyError", "bad in x.extxyz[0]")) is not None
    assert check(case, Outcome("ValueError", "bad somewhere")) is not None
    assert check(Case("y", "y", "eval", "result"), Outcome("FloatingPointError", "NaN or infinite output"))
    cli_case = Case("z", "z", "eval", "exit 2", "z")
    assert check(cli_case, Outcome("exit 2", "ecse: error: z", lines=1)) is None
    assert check(cli_case, Outcome("exit 2", "ecse: error: z", lines=3)) is not None
    assert check(cli_case, Outcome("exit 1", "ecse: internal error: z", lines=1)) is not None


def _subprocess(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ecse", *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_no_traceback_reaches_the_terminal(ctx, tmp_path):
    # one real process (the others run in-process through ecse.cli.main): stderr is one line
    proc = _subprocess("eval", ctx.checkpoint, CORPUS / "nan_position.extxyz", "--no-plot", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("ecse: error: NaN or infinite positions in ") and "nan_position.extxyz[0]" \
        in proc.stderr
