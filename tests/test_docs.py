"""The documentation builds without warnings, and the user guide's examples run.

``sphinx-build -W --keep-going -b html`` on ``docs/`` (a fresh build into a temporary
folder, so every docstring is parsed again): any RST error in a docstring, a broken
toctree or a missing module fails the test. The guide's ``>>>`` examples run as doctests
(the docstrings' own examples run through ``--doctest-modules``).
"""
import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = sorted((DOCS / "guide").glob("*.md"))

pytestmark = pytest.mark.docs


def test_guide_pages_exist():
    names = {p.stem for p in GUIDE}
    assert {"installation", "quickstart", "outputs", "modes", "solids", "atomistic", "testing"} <= names


@pytest.mark.parametrize("page", GUIDE, ids=[p.stem for p in GUIDE])
def test_guide_examples(page):
    pytest.importorskip("ase")
    result = doctest.testfile(str(page), module_relative=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page.name}"


def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    html = tmp_path / "html"
    for page in ("index.html", "guide/quickstart.html", "api/ecse.html", "api/ecse.backbones.html",
                 "tutorials/02_pet_methane_md.html"):
        assert (html / page).is_file(), page
    # autodoc really ran: the API pages carry the docstrings
    assert "Equivariant Coordinate System Ensemble" in (html / "api/ecse.html").read_text()
