#!/usr/bin/env bash
# The compatibility matrix: the test suite against the oldest napari the package claims and
# the newest one, and the core alone (no napari, no Qt: what `pip install napari-unsupseg`
# gives a batch worker). Not part of the default CI run: `.ci/run` calls it only when
# UNSUPSEG_MATRIX=1 (after the default run). Each environment is a fresh venv under
# $MATRIX_DIR; one summary line per environment is printed at the end.
#
# PyTorch: every environment takes 2.13.0, the version the README installs: what the
# configured indexes give (the CUDA build from the public index on Linux; the CPU build
# where pip has a local CPU wheel), or the build from TORCH_INDEX_URL when set (e.g.
# PyTorch's CPU wheel index, see scripts/install-test-deps.sh). The oldest PyTorch the package claims (2.6, the first with
# `torch.load(weights_only=True)` safe globals) is not run here: from the
# public index, torch 2.6.0 for Linux is the CUDA build: a 766.7 MB wheel
# (torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl) that pulls 13 nvidia-*-cu12 wheels and
# triton 3.2.0, about 3 GB in all. Its floor rests on the version check in
# core/models/safe_load.py (TORCH_FLOOR) and its test, not on this matrix.
set -uo pipefail
cd "$(dirname "$0")/.."
root=${MATRIX_DIR:-/tmp/unsupseg-matrix}
mkdir -p "$root"
floor=$(python -c 'import re, tomllib; d = tomllib.load(open("pyproject.toml", "rb"))
print(next(re.sub(r"^napari>=", "", s) for s in d["project"]["optional-dependencies"]["napari"] if s.startswith("napari>=")))')
newest=$(python -m pip index versions napari 2>/dev/null | sed -n 's/^napari (\(.*\))$/\1/p')
core_tests=(tests/core tests/models tests/cli tests/test_architecture.py tests/test_packaging.py)
summary=()

run_env() {  # name, pip requirements, xvfb (yes/no), tests...
  local name=$1 requirements=$2 display=$3; shift 3
  local venv="$root/$name" start=$SECONDS
  rm -rf "$venv" && python -m venv "$venv"
  # The same PyTorch build as scripts/install-test-deps.sh: TORCH_INDEX_URL when set.
  "$venv/bin/python" -m pip install -q "torch==2.13.0" \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} >/dev/null
  # shellcheck disable=SC2086
  if ! "$venv/bin/python" -m pip install -q $requirements >"$root/$name.install.log" 2>&1; then
    summary+=("$name: install failed (see $root/$name.install.log)")
    return
  fi
  local versions
  versions=$("$venv/bin/python" - <<'PY'
import importlib.metadata as m


def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "absent"


print(", ".join(f"{name} {version(name)}" for name in ("napari", "torch", "numpy")))
PY
)
  local runner=("$venv/bin/python" -m pytest -q -p no:cacheprovider "$@")
  [ "$display" = yes ] && runner=(xvfb-run -a "${runner[@]}")
  "${runner[@]}" >"$root/$name.tests.log" 2>&1
  local result
  result=$(grep -E "^[0-9]+ (passed|failed)|passed|failed|error" "$root/$name.tests.log" | tail -n 1)
  # A run killed from outside leaves no pytest summary: say so rather than print nothing.
  [ -n "$result" ] || result="no test summary (stopped? see $root/$name.tests.log)"
  summary+=("$name ($versions): $result, $((SECONDS - start)) s in all")
}

run_env core-only "-e . pytest>=7 hypothesis>=6 rasterio>=1.3 dask[distributed]>=2024.1 onnx>=1.15 onnxruntime>=1.17 onnxscript>=0.5 bioimageio.spec>=0.5.4 torchvision==0.28.0" no "${core_tests[@]}"
run_env "napari-$floor" "-e .[testing] napari==$floor" yes
run_env "napari-$newest" "-e .[testing] napari==$newest" yes

echo
echo "compatibility matrix:"
printf '  %s\n' "${summary[@]}"
