#!/bin/sh
# Builds the Debian package of orch: dist/orch_VERSION_ARCH.deb, and prints
# its path. BUILD_DIR (default build-pkg, a Release build configured here)
# may name an existing build directory instead (scripts/test.sh uses build/).
# Installs the build dependencies first (scripts/install-deps.sh).
#   ./scripts/package.sh && sudo apt-get install ./dist/orch_*.deb
set -eu
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-pkg}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    ./scripts/install-deps.sh >&2
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >&2
fi
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" >&2
rm -rf "$BUILD_DIR/dist"
(cd "$BUILD_DIR" && cpack -G DEB -B "$PWD/dist" >&2)
mkdir -p dist
deb=$(ls "$BUILD_DIR"/dist/orch_*.deb)
cp "$deb" dist/
echo "$PWD/dist/$(basename "$deb")"
