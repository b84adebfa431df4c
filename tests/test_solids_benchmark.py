"""Smoke test of ``benchmarks/solids.py`` (issue 17's table): tiny settings, a few seconds."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

solids = pytest.importorskip("solids")


def test_perfect_crystals_have_their_symmetry_counts():
    """Frames per atom at exactly symmetric sites: every atom the same; as many as the
    published rules tie there (fcc 24; diamond 12, its site group), and with ecse's
    defaults (no pruning) every ordered first-shell pair of fcc (12 x 10 non-collinear
    partners) and the same 12 on diamond."""
    from ecse import FrameParams

    for name, params, expected in (("fcc", FrameParams.published(), 24), ("diamond", FrameParams.published(), 12),
                                   ("fcc", FrameParams(), 120), ("diamond", FrameParams(), 12)):
        data = solids.to_batch(solids.structures(name, ROOT)[0])
        counts = solids.frame_counts(data, params)
        assert counts["local_mean"] == counts["local_max"] == expected, (name, params, counts)
        assert counts["global_per_structure"] >= expected


def test_quick_run_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "solids.json"
    result = solids.main(["--quick", "--systems", "methane", "diamond", "--sweep-systems", "diamond",
                          "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| methane | 5 (x2) |" in printed and "| diamond | 8 |" in printed
    assert json.loads(out.read_text())["rows"][0]["system"] == "methane"
    rows = {r["system"]: r for r in result["rows"]}
    assert 5.0 <= rows["methane"]["local_mean"] <= 7.0  # about six frames per CH4 atom (published: about two)
    assert rows["methane"]["global_per_structure"] <= 32 and "global_ratio" in rows["methane"]
    assert "global_ratio" not in rows["diamond"]  # 96 passes: frame count only
    for r in rows.values():  # exact for ECSE(PET), visibly not for the bare PET
        assert r["rot_err_energy"] < 1e-10 and r["rot_err_forces_max"] < 1e-9
        assert r["bare_rot_err_energy"] > 1e-6
        assert r["local_ratio"] > 0 and r["curvature_ratio"] > 0
    assert [s["setting"] for s in result["sweep"]] == [label for label, _ in solids.SWEEP]
    sweep = {s["setting"]: s for s in result["sweep"]}  # the published pruning keeps fewer frames
    assert sweep["published (0.9, 4 rounds, rw 0.15)"]["local_mean"] <= sweep["defaults"]["local_mean"]


def test_pet_has_orientation_dependent_random_heads():
    pet = solids.make_pet("small", 32768)
    assert pet.training is False and next(pet.parameters()).dtype == torch.float64
    assert any(bool(layer.head[-1].weight.abs().sum() > 0) for layer in pet.gnn_layers)
