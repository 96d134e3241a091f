#!/bin/sh
# bench/worktree.sh [ROUNDS] - worktree creation: orch (libgit2, fast path)
# against `git worktree add`, in a generated repository of 20,000 files
# (~200 MB), cached in /tmp/orch-bench-repo. Rounds alternate the two;
# prints each time, the medians and the ratio orch/git (target <= 1.0), the
# other libgit2 variants for reference, and the time to commit and merge back
# a task that changed 100 files.
#
# The disk matters more than the code: on an ext4 mounted with `discard`
# (these VMs), deleting and writing 200 MB makes times swing 2-10x between
# rounds for both tools, hence the alternation, the settle pause and the
# medians. ORCH_BENCH_REPO=/dev/shm/orch-bench-repo measures on tmpfs.
#
# Env: ORCH_BUILD (default build, the build dir holding liborchgit.a),
# ORCH_BENCH_REPO (default /tmp/orch-bench-repo).
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
BUILD=${ORCH_BUILD:-$SRC/build}
REPO=${ORCH_BENCH_REPO:-/tmp/orch-bench-repo}
ROUNDS=${1:-5}
HELPER=/tmp/orch-wt-bench.$$
trap 'rm -f "$HELPER"' EXIT

if [ ! -d "$REPO/.git" ]; then
    echo "generating $REPO (20000 files, ~200 MB)..." >&2
    rm -rf "$REPO"
    luajit "$SRC/bench/gen_repo.lua" "$REPO" 20000 10000
    git -C "$REPO" init -q -b main
    git -C "$REPO" add -A
    git -C "$REPO" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost \
        commit -qm "bench: 20000 files"
    git -C "$REPO" gc -q
fi
cmake --build "$BUILD" --target orchgit orchcore >/dev/null
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -iquote "$SRC/core" -o "$HELPER" \
    "$SRC/bench/wt_bench.c" "$BUILD/liborchgit.a" "$BUILD/liborchcore.a" \
    $(pkg-config --cflags --libs libgit2) -lpthread

now() { date +%s.%N; }
clean() {
    rm -rf "$REPO/.orch" "$REPO/../orch-bench-git-wt"
    git -C "$REPO" worktree prune
    git -C "$REPO" for-each-ref --format='%(refname)' refs/heads/orch |
        while read -r r; do git -C "$REPO" update-ref -d "$r"; done
    git -C "$REPO" branch -q -D bench-git 2>/dev/null || true
    sync
    sleep "${ORCH_BENCH_SETTLE:-2}" # let the disk finish the deletes
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

clean
# warm the page cache for both (one untimed round each)
git -C "$REPO" worktree add -q -b bench-git "$REPO/../orch-bench-git-wt" HEAD
"$HELPER" create "$REPO" bench warm fast >/dev/null
clean

GIT_T="" ORCH_T=""
i=1
while [ "$i" -le "$ROUNDS" ]; do
    t0=$(now)
    git -C "$REPO" worktree add -q -b bench-git "$REPO/../orch-bench-git-wt" HEAD
    t1=$(now)
    g=$(echo "$t1 - $t0" | bc)
    clean
    o=$("$HELPER" create "$REPO" bench "r$i" fast)
    clean
    echo "round $i: git worktree add ${g}s   orch ${o}s"
    GIT_T="$GIT_T $g" ORCH_T="$ORCH_T $o"
    i=$((i + 1))
done
gm=$(echo "$GIT_T" | tr ' ' '\n' | grep . | median)
om=$(echo "$ORCH_T" | tr ' ' '\n' | grep . | median)
echo "median: git worktree add ${gm}s, orch ${om}s, ratio orch/git $(echo "scale=2; $om / $gm" | bc)x (target <= 1.0)"

for mode in fast1 libgit2 default; do
    t=$("$HELPER" create "$REPO" bench "v-$mode" "$mode")
    clean
    echo "variant $mode: ${t}s ($(echo "scale=2; $t / $gm" | bc)x git)"
done

m=$("$HELPER" merge "$REPO" benchm)
clean
echo "task changing 100 files: commit_all $(echo "$m" | cut -d' ' -f1)s, merge into integration $(echo "$m" | cut -d' ' -f2)s"
