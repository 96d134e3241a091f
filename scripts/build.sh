#!/bin/sh
# Builds orch into BUILD_DIR (default: build/), installing what is missing
# first. Extra arguments go to cmake's configure step, e.g. -DORCH_SANITIZE=ON.
set -eu
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
./scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
