-- The CPU side of bench/sse_throughput.sh without the network: the same
-- 200 MB of 1 KiB events fed to an http.sse_parser from Lua in 64 KiB pieces
-- (as the HTTP backends feed theirs from on_chunk), one Lua call per event.
-- Prints the process CPU time per event and per MB (os.clock), best of RUNS.
--   orch -l bench/sse_throughput_cpu.lua [RUNS] [EVENT_BYTES] [MB]
local http = require('orch.core').http

local RUNS = tonumber(arg and arg[1]) or 5
local EVENT = tonumber(arg and arg[2]) or 1024
local MB = tonumber(arg and arg[3]) or 200

local ev = 'data: ' .. ('x'):rep(math.max(EVENT - 8, 1)) .. '\n\n'
local chunk = ev:rep(math.max(1, math.floor(65536 / #ev)))
local feeds = math.floor(MB * 1e6 / #chunk)
local best
for _ = 1, RUNS do
  local n, last = 0, nil
  local p = http.sse_parser(function(e) n = n + 1 last = e.data end)
  local t0 = os.clock()
  for _ = 1, feeds do p:feed(chunk) end
  local t = os.clock() - t0
  assert(last and n == feeds * math.floor(#chunk / #ev))
  if not best or t < best.t then best = { t = t, n = n } end
end
io.stdout:write(('sse_throughput_cpu: %d events of %d bytes (%.0f MB) in %d-byte feeds: '
  .. '%.3f s CPU, %.0f ns/event, %.0f MB/s (best of %d)\n')
  :format(best.n, #ev, feeds * #chunk / 1e6, #chunk, best.t, best.t / best.n * 1e9,
          feeds * #chunk / 1e6 / best.t, RUNS))
