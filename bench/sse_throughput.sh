#!/bin/sh
# SSE throughput: one local stream of 200 MB (tests/server/sse_server.py,
# events of EVENT bytes) read by orch's HTTP path into a Lua callback per event
# (bench/sse_throughput.lua: libcurl multi on the libuv loop, the C SSE parser,
# one Lua call per event), against `curl -sN URL > /dev/null` of the same
# stream. A round is one curl run then one orch run (back to back, so that a
# burst of load elsewhere hits both alike); each round prints both rates in
# MB/s and the ratio orch / curl. Target: a ratio of at least 0.7 in at least
# 4 of 5 rounds; the last line says how many rounds met it.
#
#   bench/sse_throughput.sh [ORCH_BIN]   env: BYTES (200000000) EVENT (1024) RUNS (5)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
orch=${1:-${ORCH_BIN:-$here/build/bin/orch}}
bytes=${BYTES:-200000000}
event=${EVENT:-1024}
runs=${RUNS:-5}
target=0.70

fifo=$(mktemp -u /tmp/orch-sse-bench.XXXXXX)
mkfifo "$fifo"
python3 "$here/tests/server/sse_server.py" >"$fifo" &
server=$!
out=$(mktemp /tmp/orch-sse-bench.out.XXXXXX)
trap 'kill $server 2>/dev/null; rm -f "$fifo" "$out"' EXIT INT TERM
read -r port <"$fifo"
url="http://127.0.0.1:$port/stream?bytes=$bytes&event=$event"
export no_proxy=127.0.0.1

now() { date +%s%N; }
run_curl() { curl -sN "$url" >/dev/null; }
run_orch() { "$orch" -l "$here/bench/sse_throughput.lua" "$url" >"$out"; }
elapsed() { t0=$(now); "$@"; echo $(( $(now) - t0 )); }

size=$(curl -sN "$url" | wc -c)
echo "stream: $size bytes, events of $event bytes, $runs rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
met=0
i=1
while [ "$i" -le "$runs" ]; do
  tc=$(elapsed run_curl)
  to=$(elapsed run_orch)
  read -r got events <"$out"
  if [ "$got" != "$size" ]; then
    echo "round $i: orch read $got bytes, curl $size" >&2
    exit 1
  fi
  awk -v s="$size" -v c="$tc" -v o="$to" -v i="$i" -v t="$target" -v e="$events" 'BEGIN {
    mc = s / 1e6 / (c / 1e9); mo = s / 1e6 / (o / 1e9); r = mo / mc
    printf "round %d: curl %7.1f MB/s (%.3f s)  orch %7.1f MB/s (%.3f s, %d events)  ratio %.2f%s\n",
      i, mc, c / 1e9, mo, o / 1e9, e, r, (r >= t ? "" : "  below target")
  }'
  if awk -v c="$tc" -v o="$to" -v t="$target" 'BEGIN { exit !(c / o >= t) }'; then
    met=$((met + 1))
  fi
  i=$((i + 1))
done
echo "rounds with ratio orch/curl >= $target: $met of $runs (target: at least 4 of 5)"
