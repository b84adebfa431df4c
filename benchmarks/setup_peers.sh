#!/usr/bin/env bash
# Create .venv-mace (or $ECSE_MACE_VENV) for the MACE peer model of benchmarks/accuracy.py
# and benchmarks/pet.py. mace-torch 0.3.16 pins e3nn 0.4.4 while ecse uses e3nn 0.5.9, so
# MACE lives in its own venv and the benchmarks call it through benchmarks/mace_worker.py.
# torch comes first, pinned through constraints.txt (2.13.0 CPU, installs from a local
# wheel); mace-torch is then installed against that torch without the constraints (they
# pin e3nn 0.5.9, which mace-torch refuses).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ECSE_MACE_VENV:-.venv-mace}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" -c constraints.txt torch==2.13.0 setuptools wheel
# Keep the installed torch: a range that 2.13.0 satisfies installs nothing more.
"${pip[@]}" mace-torch==0.3.16 "torch==$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
"$venv/bin/python" -W ignore - <<'PY'
import mace  # noqa: F401  (before e3nn: sets the torch.load flag e3nn 0.4.4 needs)
import e3nn
import torch
from mace.modules import ScaleShiftMACE  # noqa: F401

print(f"setup_peers: mace-torch ok (torch {torch.__version__}, e3nn {e3nn.__version__})")
PY
