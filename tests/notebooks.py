"""Run a tutorial notebook in its fast CI setting (shared by the notebook tests)."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(path: Path, monkeypatch, **env: str) -> list[dict]:
    """Execute ``path`` with ``ECSE_FAST=1`` (plus ``env``) and return every code-cell output.

    Checks that the notebook is stored without outputs and that no cell raised. The
    kernel inherits this process's environment (and interpreter), with the repository
    on ``PYTHONPATH``, and so the suite's thread count (``OMP_NUM_THREADS``, set in
    conftest: two OpenMP threads on a busy 2-core machine pushed a cell past its timeout),
    and ``TMPDIR`` pointing at a scratch folder removed afterwards.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code")  # stored without outputs
    monkeypatch.setenv("ECSE_FAST", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pythonpath = [str(ROOT), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in pythonpath if p))
    scratch = tempfile.mkdtemp(prefix="ecse-notebook-")  # the notebooks' own temporary folders go here
    monkeypatch.setenv("TMPDIR", scratch)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    try:
        client.execute()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outputs = [out for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])]
    assert not any(out.get("output_type") == "error" for out in outputs)
    return outputs


def stream_text(outputs: list[dict]) -> str:
    """All printed text of the outputs."""
    return "\n".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
