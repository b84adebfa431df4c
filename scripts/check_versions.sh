#!/usr/bin/env bash
# Check the oldest and the newest supported torch-geometric, each in a throw-away venv.
#
#   bash scripts/check_versions.sh            # fast subset (-m "not slow"), 5-10 min per version
#   bash scripts/check_versions.sh --slow     # also the notebooks and the CLI demos
#   ECSE_PYG_VERSIONS="2.6.1 2.8.1" bash scripts/check_versions.sh   # other versions
#   ECSE_CHECK_TESTS="tests/test_md.py" bash scripts/check_versions.sh --slow   # other tests
#
# Every other package keeps its pin from constraints.txt (torch 2.13.0 CPU among them): a
# temporary copy of the constraints swaps only the torch-geometric line. Each version runs
# twice: first without torch-cluster (ecse's own neighbour search; torch-geometric 2.8 has
# no other, since pyg-lib is not on PyPI), then, where ../shared/wheels holds a
# torch-cluster wheel, with it (the point_ops and backbone tests then run both backends).
# The venvs live in a temporary folder that is removed at the end. Exit status 0 means
# every run passed.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=(${ECSE_PYG_VERSIONS:-2.5.0 2.8.1})
# backbones, global and local ECSE, output types, point_ops, PET, the PyG layer adapters
# (ecse.pyg, with PyG's own EdgeConv/DynamicEdgeConv/PointNetConv/...), the atomistic stack
tests=(tests/test_backbones.py tests/test_point_ops.py tests/test_ensemble.py tests/test_local.py
       tests/test_covariant.py tests/test_atomistic.py tests/test_pet.py tests/test_shapes.py
       tests/test_local_pyg.py)
marker="not slow"
if [ "${1:-}" = "--slow" ]; then  # + the notebooks, the CLI demos and MD
  marker=""
  tests+=(tests/test_demo.py tests/test_md.py tests/test_notebook_tensors.py)
fi
if [ -n "${ECSE_CHECK_TESTS:-}" ]; then
  tests=(${ECSE_CHECK_TESTS})
fi
cluster_tests=(tests/test_point_ops.py tests/test_backbones.py tests/test_local_pyg.py)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=()
for v in "${versions[@]}"; do
  venv="$tmp/pyg-$v"
  grep -v '^torch-geometric' constraints.txt > "$tmp/constraints-$v.txt"
  echo "torch-geometric==$v" >> "$tmp/constraints-$v.txt"
  echo "== torch-geometric $v: installing into $venv" >&2
  python3 -m venv "$venv"
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$tmp/constraints-$v.txt")
  "${pip[@]}" torch setuptools wheel
  "${pip[@]}" -e ".[test]"
  "$venv/bin/python" -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'torch-geometric', g.__version__)"
  run() {  # label, pytest args...
    local label=$1; shift
    echo "== torch-geometric $v, $label" >&2
    if OMP_NUM_THREADS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "$marker" "$@"; then
      echo "== torch-geometric $v, $label: passed" >&2
    else
      failed+=("$v ($label)")
    fi
  }
  run "without torch-cluster" "${tests[@]}"
  if ls ../shared/wheels/torch_cluster-*.whl >/dev/null 2>&1; then
    "${pip[@]}" --no-build-isolation --find-links ../shared/wheels torch-cluster
    run "with torch-cluster" "${cluster_tests[@]}"
  else
    echo "== no ../shared/wheels: skipping the torch-cluster run (compiling it takes 10-17 min)" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "check_versions: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "check_versions: all passed for torch-geometric ${versions[*]}" >&2
