#!/bin/sh
# Builds orch and runs every test (C unit tests, fuzz replays, busted specs
# inside the orch host, luacheck) twice: a normal build, then an
# AddressSanitizer + UndefinedBehaviorSanitizer build. Between the two, the
# Debian package is built, installed and tried (scripts/test-package.sh).
# ORCH_TEST_QUICK=1 skips the sanitizer build.
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
BUILD_DIR=build ./scripts/build.sh
# the pinned Claude Code and Codex CLIs the end-to-end tests drive
AGENTS_BIN=$(./scripts/install-agents.sh)
PATH="$AGENTS_BIN:$PATH"
export PATH
ctest --test-dir build -j "$JOBS" --output-on-failure
# the Debian package: built, installed with apt-get, run from outside the tree
# (skipped, saying so, without root or sudo)
BUILD_DIR=build ./scripts/test-package.sh
if [ "${ORCH_TEST_QUICK:-0}" != 1 ]; then
    BUILD_DIR=build-asan ./scripts/build.sh -DORCH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    ctest --test-dir build-asan -j "$JOBS" --output-on-failure
fi
echo "test.sh: all tests passed"
