-- Reads one SSE stream through orch's HTTP path (libcurl multi on the loop)
-- into a Lua callback per event: orch -l bench/sse_throughput.lua URL
-- Prints "bytes events" on stdout when the stream ends.
local http = require('orch.core').http

local url = assert(arg[1], 'usage: sse_throughput.lua URL')
local bytes, events, last = 0, 0, nil
local parser = http.sse_parser(function(ev)
  events = events + 1
  last = ev.data
end)
http.request({
  url = url,
  idle_timeout = 30000,
  on_chunk = function(c)
    bytes = bytes + #c
    parser:feed(c)
  end,
  on_done = function(err, status)
    if err or status ~= 200 or last ~= '[DONE]' then
      io.stderr:write('sse_throughput: failed: ', tostring(err), ' ', status, '\n')
      os.exit(1)
    end
    print(bytes, events)
  end,
})
