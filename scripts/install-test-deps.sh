#!/usr/bin/env bash
# What the test suite needs on a fresh Debian or Ubuntu machine: a virtual display with
# Mesa OpenGL (napari draws with OpenGL), PyTorch (CPU build unless one is installed), and
# this package with its test extras.
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

# A bare 'torch' requirement would pull several GB of CUDA wheels: take the CPU build first.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[testing]"
