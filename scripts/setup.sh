#!/usr/bin/env bash
# Set up DANNet Edge on a fresh Debian/Ubuntu machine: system packages, a virtual environment in
# .venv with every Python dependency of the CPU test suite, and the CMake build of the plugins.
# Idempotent: a second run only checks. Torch is pinned so that pip takes the CPU build where there
# is one on disk (and the default CUDA build from PyPI on GPU machines).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"
# GStreamer for the camera pipeline (PyGObject is built by pip against libgirepository1.0-dev/libcairo2-dev);
# libav decodes H.264, plugins-ugly encodes it (x264), the RTSP server serves rtsp:// outputs; python3-gst-1.0
# (gst-python's overrides, there wherever the OS PyGObject is) for the tests that read frames under them
APT_PACKAGES=(cmake g++ pkg-config
              gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
              gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
              python3-gst-1.0 libgirepository1.0-dev libcairo2-dev
              xvfb)  # a virtual screen: the tests show display:// output on it

missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.dannet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$0" -nt "$stamp" ]; then
    echo "==> pip install $TORCH_PIN and dannet-edge[dev]"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "$TORCH_PIN"
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
echo "==> setup complete (.venv)"
