#!/bin/sh
# The scheduler benchmark of issue 3:
# 1. the same random layered DAG of 10,000 `true` tasks (width ~50, fixed
#    seed) run by `orch run --plan` (SQLite state on) and by ninja from a
#    generated build.ninja, both with 4 at once; prints both wall times, the
#    ratio (target <= 2x), the time spent in the scheduler per task (target
#    < 50 us), and all of orch's own CPU time per task (scheduler, SQLite
#    state, Lua and spawning, without the child processes).
# 2. the makespan of a plan with random durations against its critical-path
#    lower bound max(critical path, total work / 4) (target <= 1.1x).
#   bench/dag.sh [build/bin/orch] [TASKS]
set -eu
cd "$(dirname "$0")/.."
ORCH=$(realpath "${1:-build/bin/orch}")
N=${2:-10000}
command -v ninja >/dev/null || { echo "dag.sh: needs ninja (apt-get install ninja-build)"; exit 2; }
W=$(mktemp -d /tmp/orch-bench-dag.XXXXXX)
trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }

mkdir -p "$W/big" "$W/ninja" "$W/repo" "$W/dur" "$W/repo2"
"$ORCH" -l bench/dag_gen.lua "$W/big" "$N" 50
cp "$W/big/build.ninja" "$W/ninja/"
for r in repo repo2; do
  git -C "$W/$r" init -q
  git -C "$W/$r" -c user.name=b -c user.email=b@b commit -q --allow-empty -m init
done

# two rounds, alternating; the best of each counts (the machine is shared)
best_n=999999; best_o=999999
for round in 1 2; do
  rm -f "$W/ninja/.ninja_log" "$W/ninja/.ninja_deps"
  t0=$(now); ninja -C "$W/ninja" -j 4 >/dev/null; t1=$(now)
  rm -rf "$W/repo/.orch"
  "$ORCH" run bench/dag_workflow.lua --plan "$W/big/plan.json" --repo "$W/repo" \
    --in-place --quiet --yes --concurrency 4 2>"$W/orch.err" || { cat "$W/orch.err"; exit 1; }
  t2=$(now)
  awk -v r="$round" -v a="$t0" -v b="$t1" -v c="$t2" \
    'BEGIN { printf "  round %d: ninja %.2f s, orch %.2f s\n", r, b - a, c - b }'
  best_n=$(awk -v a="$t0" -v b="$t1" -v m="$best_n" 'BEGIN { d = b - a; print (d < m ? d : m) }')
  best_o=$(awk -v a="$t1" -v b="$t2" -v m="$best_o" 'BEGIN { d = b - a; print (d < m ? d : m) }')
done
cpu=$(sed -n 's/^ORCH_CPU //p' "$W/orch.err")
sched=$(sed -n 's/^ORCH_SCHED //p' "$W/orch.err")
awk -v n="$N" -v ninja="$best_n" -v orch="$best_o" -v cpu="$cpu" -v sched="$sched" 'BEGIN {
  printf "DAG of %d tasks of true, 4 at once (best of 2 alternating rounds)\n", n
  printf "  ninja -j4                 %8.2f s\n", ninja
  printf "  orch run --plan -j4       %8.2f s   ratio %.2fx (target <= 2x)\n", orch, orch / ninja
  printf "  scheduler (next + finish) %8.3f s   %.1f us per task (target < 50 us)\n", sched, sched / n * 1e6
  printf "  all of orch, no children  %8.2f s   %.1f us per task (scheduler, SQLite, Lua, spawning)\n", cpu, cpu / n * 1e6
}'

"$ORCH" -l bench/dag_gen.lua "$W/dur" 60 8 durations
"$ORCH" run --plan "$W/dur/plan.json" --repo "$W/repo2" --in-place --quiet --yes \
  --concurrency 4 2>/dev/null
"$ORCH" -l bench/dag_makespan.lua "$W/repo2/.orch/orch.db" "$W/dur/bound"
