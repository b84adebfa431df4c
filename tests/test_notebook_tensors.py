"""Notebook 03 (tensor properties) runs end to end in fast mode (``ECSE_FAST=1``)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_tensor_properties.ipynb"


@pytest.mark.slow
def test_tensor_notebook_runs(monkeypatch, shared_data):
    from .notebooks import run_notebook, stream_text

    pytest.importorskip("ase")
    outputs = run_notebook(NOTEBOOK, monkeypatch, ECSE_DATA=str(shared_data))
    text = stream_text(outputs)
    # the wrapped models rotate their predictions exactly, the bare ones do not
    errors = {(key, name): float(err) for key, name, err in
              re.findall(r"(mu|alpha)\s+(bare|ECSE): relative error of the rotated prediction (\S+)", text)}
    assert set(errors) == {(k, n) for k in ("mu", "alpha") for n in ("bare", "ECSE")}
    assert errors["mu", "ECSE"] < 1e-10 and errors["alpha", "ECSE"] < 1e-10
    assert errors["mu", "bare"] > 1e-6 and errors["alpha", "bare"] > 1e-6
    assert "l=0" in text and "l=2" in text and "ECSE(PET)" in text
    # the calculator: rotating the molecule rotates dipole and polarizability
    found = re.search(r"\|mu' - R mu\| = (\S+), \|alpha' - R alpha R\^T\| = (\S+)", text)
    assert found and float(found.group(1)) < 1e-9 and float(found.group(2)) < 1e-9
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 3  # parity plots of mu and alpha, learning curve
