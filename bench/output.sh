#!/bin/sh
# Task output through orch: lines/s and orch's memory (issue 19).
#
# One `orch run --plan` of 4 exec tasks (concurrency 4, state on), each
# printing LINES lines (`seq LINES`), against the same 4 commands without
# orch: `sh -c 'seq LINES | cat >/dev/null'` x4 in parallel (a plain pipe
# reader, the least any reader of the output can cost).
#
#   lines/s (run)     4*LINES / the whole run's wall time (orch's start,
#                     worktrees, merges included)
#   lines/s (output)  lines / (the run's time - the same run printing
#                     nothing, `true`): what the output itself costs (shown
#                     for the volumes below, where it is well above the
#                     noise of a shared machine)
#   Target: >= 1,000,000 lines/s in all, every line stored, in order
#   (checked: `orch logs` of each task against `seq LINES`).
#
# Then orch's max RSS (/usr/bin/time -v) at 50k, 200k and 1M lines a task.
#   Target: flat, under 40 MB whatever the volume.
#
#   bench/output.sh [ORCH_BIN]      env: LINES (50000) RUNS (5) VOLUMES ("50000 200000 1000000")
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
orch=${1:-${ORCH_BIN:-$here/build/bin/orch}}
. "$here/bench/lib.sh"
lines=${LINES:-50000}
runs=${RUNS:-5}
volumes=${VOLUMES:-"50000 200000 1000000"}

work=$(mktemp -d /tmp/orch-out-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

now() { date +%s%N; }

repo=$work/repo
bench_repo "$repo"

plan() { # CMD FILE: 4 exec tasks running CMD
  printf '{"tasks":[' > "$2"
  for k in 1 2 3 4; do
    [ "$k" = 1 ] || printf ',' >> "$2"
    printf '{"id":"t%s","cmd":"%s"}' "$k" "$1" >> "$2"
  done
  printf ']}\n' >> "$2"
}

run_orch() { # PLAN DB -> prints ns and max RSS (KB)
  rm -f "$2" "$2-wal" "$2-shm"
  rm -rf "$repo/.orch"
  git -C "$repo" worktree prune
  for b in $(git -C "$repo" for-each-ref --format='%(refname:short)' refs/heads/orch); do
    git -C "$repo" branch -qD "$b"
  done
  t0=$(now)
  ( cd "$repo" && /usr/bin/time -v "$orch" run --plan "$1" --db "$2" --yes --no-tui \
      --concurrency 4 --quiet ) > "$work/run.out" 2>&1 || { cat "$work/run.out" >&2; exit 1; }
  t=$(( $(now) - t0 ))
  echo "$t $(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/run.out")"
}

ref() { # 4 x seq | cat in parallel -> ns
  t0=$(now)
  for k in 1 2 3 4; do sh -c "seq $1 | cat >/dev/null" & done
  wait
  echo $(( $(now) - t0 ))
}

check_stored() { # DB N: every line of every task, in order
  want=$(seq "$2" | md5sum)
  run=$(sqlite3 "$1" 'SELECT id FROM runs LIMIT 1')
  for k in 1 2 3 4; do
    got=$(cd "$repo" && "$orch" logs "$run" "t$k" --db "$1" | md5sum)
    if [ "$got" != "$want" ]; then echo "FAIL: task t$k's stored output differs from seq $2" >&2; exit 1; fi
  done
}

plan "seq $lines" "$work/plan.json"
plan "true" "$work/empty.json"
total=$((4 * lines))
rate() { awk -v n="$total" -v ns="$1" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }

echo "output: 4 tasks x $lines lines (seq), concurrency 4, state on; $runs rounds"
printf '  %-5s %12s %9s %9s %14s %10s %8s\n' round ref_lines/s empty_ms run_ms run_lines/s run/ref rss_MB
i=1
best_run=0 met=0
while [ "$i" -le "$runs" ]; do
  t_ref=$(ref "$lines")
  set -- $(run_orch "$work/empty.json" "$work/e.db"); t_empty=$1
  set -- $(run_orch "$work/plan.json" "$work/o.db"); t_run=$1; rss=$2
  check_stored "$work/o.db" "$lines"
  r_ref=$(rate "$t_ref"); r_run=$(rate "$t_run")
  printf '  %-5s %12s %9s %9s %14s %10s %8s\n' "$i" "$r_ref" "$((t_empty / 1000000))" "$((t_run / 1000000))" \
    "$r_run" "$(awk -v a="$r_run" -v b="$r_ref" 'BEGIN { printf "%.3fx", a / b }')" "$((rss / 1024))"
  [ "$r_run" -gt "$best_run" ] && best_run=$r_run
  [ "$r_run" -ge 1000000 ] && met=$((met + 1))
  i=$((i + 1))
done
echo "  whole run: best $best_run lines/s; $met of $runs rounds >= 1000000 lines/s (the target); every line stored, in order"
echo "  (ref: the same 4 commands without orch, each through a plain pipe reader: seq | cat)"

echo "RSS by volume (lines a task, 4 tasks; target: flat, < 40 MB):"
for v in $volumes; do
  plan "seq $v" "$work/v.json"
  set -- $(run_orch "$work/empty.json" "$work/e.db"); t_empty=$1
  set -- $(run_orch "$work/v.json" "$work/v.db")
  check_stored "$work/v.db" "$v"
  d=$(($1 - t_empty))
  # the output's own rate only where it stands out of the noise of a run
  # that prints nothing (10 ms): else it says so instead of a figure
  if [ "$d" -ge 10000000 ]; then
    out="output $(awk -v n="$((4 * v))" -v ns="$d" 'BEGIN { printf "%.0f", n / (ns / 1e9) }') lines/s (target >= 1000000)"
  else
    out="output: within 10 ms of a run printing nothing, too little to measure its rate"
  fi
  echo "  $v lines x4: max RSS $(($2 / 1024)) MB (target < 40 MB); run $(awk -v n="$((4 * v))" -v ns="$1" 'BEGIN { printf "%.0f", n / (ns / 1e9) }') lines/s, $out; all stored in order"
done
