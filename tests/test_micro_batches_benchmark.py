"""Smoke test of ``benchmarks/micro_batches.py``: a tiny PET, a few seconds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

micro_batches = pytest.importorskip("micro_batches")


def test_tiny_run_prints_both_settings(capsys):
    rows = micro_batches.main(["--tiny", "--system", "emt", "--structures", "2", "--steps", "2",
                               "--settings", "none", "120"])
    printed = capsys.readouterr().out
    assert "| none |" in printed and "| 120 |" in printed
    assert [r["micro_batch_atoms"] for r in rows] == ["none", "120"]
    assert all(r["peak_mib"] > 0 and r["seconds_per_step"] > 0 for r in rows)
