"""Smoke test of ``benchmarks/training_step.py``: tiny settings, a few seconds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

training_step = pytest.importorskip("training_step")


def test_quick_run_prints_a_row_per_system(capsys):
    rows = training_step.main(["--quick", "--systems", "methane", "cu32", "--repeats", "1",
                               "--plain-systems", "cu32", "--layers-systems", "methane"])
    printed = capsys.readouterr().out
    assert "| methane | 5 |" in printed and "| cu32 | 32 |" in printed
    methane, cu = rows
    assert set(methane) >= {"bare", "tokens", "layers"} and "tokens, plain" not in methane
    assert set(cu) >= {"bare", "tokens", "tokens, plain"} and "layers" not in cu
    assert cu["local_mean"] > 50  # a thermal fcc cell: about a hundred frames per atom
    assert all(r[k]["seconds"] > 0 and r[k]["ratio"] > 0 for r in rows for k in ("bare", "tokens"))


def test_plain_second_derivatives_are_swapped_in_and_restored():
    from ecse.backbones import _token_average as T

    chunked = T._FrameAveragedSiLUGrad
    with training_step.plain_second_derivatives():
        assert T._FrameAveragedSiLUGrad is not chunked
    assert T._FrameAveragedSiLUGrad is chunked
