#!/bin/sh
# Claude Code stream-json through orch.
#
# 1. Throughput: MB megabytes (default 200) of recorded-shape stream-json
#    (bench/stream_json_gen.lua) replayed by a fake `claude` that cats it:
#    - `cat FILE > /dev/null` and `cat FILE | cat > /dev/null` (the pipe rate),
#    - the claude adapter alone (orch -l bench/stream_json.lua adapter),
#    - a whole `orch run --plan` of one claude task, store on (every line and
#      every event recorded in SQLite), with orch's max RSS (/usr/bin/time -v).
#    - the same run replaying 2 lines (init, result): orch's fixed cost,
#      taken off to show what the stream itself costs ("stream only").
#    Target: the store-on rate at least 0.5x the cat rate, RSS under 64 MB.
#    (Every byte is JSON-decoded by the adapter, whose rate alone bounds
#    the run's: the adapter line says how far that is from cat.)
# 2. Latency: a claude turn through the backend against `claude -p` run
#    directly, both on the scripted model server (needs claude; N turns
#    each, interleaved, median; default 7). Target: orch adds under 50 ms.
#
#   bench/stream_json.sh [ORCH_BIN]      env: MB (200) RUNS (3) N (7)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
orch=${1:-${ORCH_BIN:-$here/build/bin/orch}}
. "$here/bench/lib.sh"
mb=${MB:-200}
runs=${RUNS:-3}
n=${N:-7}
export PATH="${XDG_CACHE_HOME:-$HOME/.cache}/orch/agents/bin:$PATH"

work=$(mktemp -d /tmp/orch-sj-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
data=$work/stream.jsonl
bytes=$("$orch" -l "$here/bench/stream_json_gen.lua" "$data" "$mb")

now() { date +%s%N; }
best() { # command...: the best wall time of RUNS runs, in ns
  b=
  i=0
  while [ "$i" -lt "$runs" ]; do
    t0=$(now); "$@" >/dev/null 2>&1; t=$(( $(now) - t0 ))
    if [ -z "$b" ] || [ "$t" -lt "$b" ]; then b=$t; fi
    i=$((i + 1))
  done
  echo "$b"
}
rate() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }'; }

cat_to_null() { cat "$data" > /dev/null; }
cat_pipe() { cat "$data" | cat > /dev/null; }
t_cat=$(best cat_to_null)
t_pipe=$(best cat_pipe)

# the adapter alone (best of RUNS)
t_adapter= rss_adapter=
i=0
while [ "$i" -lt "$runs" ]; do
  set -- $("$orch" -l "$here/bench/stream_json.lua" adapter "$data")
  t=$(awk -v s="$1" 'BEGIN { printf "%d", s * 1e9 }')
  if [ -z "$t_adapter" ] || [ "$t" -lt "$t_adapter" ]; then t_adapter=$t; rss_adapter=$2; fi
  i=$((i + 1))
done

# a whole orch run, store on
repo=$work/repo
bench_repo "$repo"
printf '#!/bin/sh\nexec cat "%s"\n' "$data" > "$work/claude"
chmod +x "$work/claude"
printf '{"tasks":[{"id":"replay","role":"coder","backend":"claude","prompt":"p"}]}\n' > "$work/plan.json"
head -1 "$data" > "$work/small.jsonl"
tail -1 "$data" >> "$work/small.jsonl"
printf '#!/bin/sh\nexec cat "%s"\n' "$work/small.jsonl" > "$work/claude-small"
chmod +x "$work/claude-small"
one_run() { # CLAUDE -> ns; max RSS in $work/rss
  rm -rf "$repo/.orch"
  git -C "$repo" worktree prune
  for b in $(git -C "$repo" for-each-ref --format='%(refname:short)' refs/heads/orch); do
    git -C "$repo" branch -qD "$b"
  done
  t0=$(now)
  ( cd "$repo" && ORCH_CLAUDE_BIN=$1 TMPDIR=$work /usr/bin/time -v "$orch" run \
      --plan "$work/plan.json" --yes --quiet ) > "$work/run.out" 2>&1 || { cat "$work/run.out" >&2; exit 1; }
  echo $(( $(now) - t0 ))
  awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/run.out" > "$work/rss"
}
t_run= t_small= rss_run=0
i=0
while [ "$i" -lt "$runs" ]; do
  t=$(one_run "$work/claude-small")
  if [ -z "$t_small" ] || [ "$t" -lt "$t_small" ]; then t_small=$t; fi
  t=$(one_run "$work/claude")
  if [ -z "$t_run" ] || [ "$t" -lt "$t_run" ]; then t_run=$t; fi
  r=$(cat "$work/rss"); [ "$r" -gt "$rss_run" ] && rss_run=$r
  i=$((i + 1))
done
t_stream=$((t_run - t_small)); [ "$t_stream" -gt 0 ] || t_stream=1

r_cat=$(rate "$t_cat"); r_pipe=$(rate "$t_pipe"); r_ad=$(rate "$t_adapter"); r_run=$(rate "$t_run")
echo "stream-json replay: $bytes bytes"
echo "  cat > /dev/null            $r_cat MB/s"
echo "  cat | cat > /dev/null      $r_pipe MB/s"
echo "  claude adapter alone       $r_ad MB/s ($(awk -v a="$r_ad" -v c="$r_cat" 'BEGIN{printf "%.3f", a/c}')x cat), max RSS $((rss_adapter / 1024)) MB"
r_stream=$(rate "$t_stream")
echo "  orch run, store on         $r_run MB/s ($(awk -v a="$r_run" -v c="$r_cat" 'BEGIN{printf "%.3f", a/c}')x cat; target >= 0.5x), max RSS $((rss_run / 1024)) MB (target < 64 MB); best of $runs"
echo "    ... stream only          $r_stream MB/s ($(awk -v a="$r_stream" -v c="$r_cat" 'BEGIN{printf "%.3f", a/c}')x cat; the run less one replaying 2 lines, $((t_small / 1000000)) ms)"

if [ "$n" -eq 0 ]; then
  echo "latency: skipped (N=0)"
elif command -v claude >/dev/null 2>&1; then
  set -- $("$orch" -l "$here/bench/stream_json.lua" latency "$n" "$orch")
  echo "claude turn on the scripted server (median of $n, interleaved):"
  echo "  claude -p directly              $1 ms"
  echo "  through the claude backend      $2 ms ($(awk -v a="$2" -v b="$1" 'BEGIN{printf "%+.1f", a-b}') ms; target < 50 ms)"
  echo "  ... with orch mcp, as in a run  $3 ms ($(awk -v a="$3" -v b="$1" 'BEGIN{printf "%+.1f", a-b}') ms: claude starts the MCP server and waits for it)"
  echo "  orch's own time in a turn       $4 ms (start to spawn + exit to on_done; target < 50 ms)"
  echo "  (the wall-clock differences above carry the noise of a shared machine)"
else
  echo "latency: skipped (claude not installed: ./scripts/install-agents.sh)"
fi
