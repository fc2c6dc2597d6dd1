#!/usr/bin/env bash
# What the test suite needs on a fresh Debian or Ubuntu machine: a virtual display with
# Mesa OpenGL (napari draws with OpenGL), PyTorch 2.13.0 (unless one is installed), and
# this package with its test extras.
#
# Which PyTorch build: a plain `pip install torch==2.13.0` takes what the configured
# indexes offer. From the public index on Linux that is the CUDA build (a wheel of about
# 530 MB plus the NVIDIA libraries it pulls). Where pip is set up with a local CPU wheel
# (a find-links folder holding torch-2.13.0+cpu), it is that CPU build. For the CPU build
# from anywhere, point TORCH_INDEX_URL at PyTorch's own CPU wheel index:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/install-test-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  xvfb libgl1-mesa-dri libglx-mesa0 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon0
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PyTorch before the package, so that the package's bare 'torch' requirement is already met
# by the build chosen here (see the top of this file).
if ! python -c "import torch" 2>/dev/null; then
  torch_index=()
  [ -n "${TORCH_INDEX_URL:-}" ] && torch_index=(--index-url "$TORCH_INDEX_URL")
  python -m pip install -q "torch==2.13.0" "${torch_index[@]}"
fi
python -m pip install -q -e ".[testing]"
