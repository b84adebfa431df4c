#!/usr/bin/env bash
# Create .venv (or $ECSE_VENV) with everything ecse, its backbones and its tests need.
# torch is pinned through constraints.txt; torch-cluster comes from ../shared/wheels when
# that folder exists, else it is compiled against the pinned torch (10-17 min on 2 cores).
# Set ECSE_NO_CLUSTER=1 to skip torch-cluster: ecse then uses its pure-torch neighbour search.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ECSE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c constraints.txt)
"${pip[@]}" torch setuptools wheel
if [ "${ECSE_NO_CLUSTER:-0}" != 1 ] && ! "$venv/bin/python" -c "import torch_cluster" 2>/dev/null; then
  if [ -d ../shared/wheels ]; then
    "${pip[@]}" --no-build-isolation --find-links ../shared/wheels torch-cluster
  else
    echo "setup: no ../shared/wheels; compiling torch-cluster from source (10-17 minutes)" >&2
    "${pip[@]}" --no-build-isolation torch-cluster
  fi
fi
"${pip[@]}" -e ".[test]"
