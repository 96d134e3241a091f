#!/bin/sh
# Builds the plain-C reference and runs bench/spawn.lua: spawn-and-reap cost
# against fork/exec/waitpid, and startup time against luajit.
#   bench/spawn.sh [build/bin/orch] [N]
set -eu
cd "$(dirname "$0")/.."
ORCH=${1:-build/bin/orch}
cc -O2 -o /tmp/orch-spawn-ref bench/spawn_ref.c
SPAWN_REF=/tmp/orch-spawn-ref ORCH_BIN=$(realpath "$ORCH") "$ORCH" -l bench/spawn.lua "${2:-2000}"
