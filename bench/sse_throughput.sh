#!/bin/sh
# SSE throughput: one local stream of 200 MB (tests/server/sse_server.py,
# events of EVENT bytes) read by orch's HTTP path into a Lua callback per event
# (bench/sse_throughput.lua: libcurl multi on the libuv loop, the C SSE parser,
# one Lua call per event), against `curl -sN URL > /dev/null` of the same
# stream. Each side runs RUNS times, alternating; the best run counts. Prints both rates in
# MB/s and the ratio orch / curl (target: at least 0.7).
#
#   bench/sse_throughput.sh [ORCH_BIN]   env: BYTES (200000000) EVENT (1024) RUNS (3)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
orch=${1:-${ORCH_BIN:-$here/build/bin/orch}}
bytes=${BYTES:-200000000}
event=${EVENT:-1024}
runs=${RUNS:-5}

fifo=$(mktemp -u /tmp/orch-sse-bench.XXXXXX)
mkfifo "$fifo"
python3 "$here/tests/server/sse_server.py" >"$fifo" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$fifo"' EXIT INT TERM
read -r port <"$fifo"
url="http://127.0.0.1:$port/stream?bytes=$bytes&event=$event"
export no_proxy=127.0.0.1

now() { date +%s%N; }

run_curl() { curl -sN "$url" >/dev/null; }
run_orch() { "$orch" -l "$here/bench/sse_throughput.lua" "$url" >"$out"; }
elapsed() { t0=$(now); "$@"; echo $(( $(now) - t0 )); }

out=$(mktemp /tmp/orch-sse-bench.out.XXXXXX)
trap 'kill $server 2>/dev/null; rm -f "$fifo" "$out"' EXIT INT TERM
size=$(curl -sN "$url" | wc -c)
# Alternate the two so that a burst of load elsewhere hits both alike; keep
# the best run of each.
t_curl= t_orch=
i=0
while [ "$i" -lt "$runs" ]; do
  t=$(elapsed run_curl)
  if [ -z "$t_curl" ] || [ "$t" -lt "$t_curl" ]; then t_curl=$t; fi
  t=$(elapsed run_orch)
  if [ -z "$t_orch" ] || [ "$t" -lt "$t_orch" ]; then t_orch=$t; fi
  i=$((i + 1))
done
read -r got events <"$out"
if [ "$got" != "$size" ]; then
  echo "orch read $got bytes, curl $size" >&2
  exit 1
fi

awk -v s="$size" -v c="$t_curl" -v o="$t_orch" -v e="$events" -v ev="$event" 'BEGIN {
  mc = s / 1e6 / (c / 1e9); mo = s / 1e6 / (o / 1e9)
  printf "stream: %.1f MB, %d events of %d bytes\n", s / 1e6, e, ev
  printf "curl -sN > /dev/null: %8.1f MB/s (%.3f s)\n", mc, c / 1e9
  printf "orch http + sse + lua: %7.1f MB/s (%.3f s)\n", mo, o / 1e9
  printf "ratio orch/curl: %.2f (target >= 0.70)\n", mo / mc
}'
