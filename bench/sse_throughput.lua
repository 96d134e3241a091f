-- Reads one SSE stream through orch's HTTP path (libcurl multi on the loop)
-- into a Lua callback per event: orch -l bench/sse_throughput.lua URL
-- Prints "bytes events" on stdout when the stream ends.
local http = require('orch.core').http

local url = assert(arg[1], 'usage: sse_throughput.lua URL')
local events, last = 0, nil
local parser = http.sse_parser(function(ev)
  events = events + 1
  last = ev.data
end)
-- the body goes to the parser in C (sse = parser); SSE_VIA_LUA=1 feeds it
-- from an on_chunk callback instead (every chunk a Lua string)
local via_lua = os.getenv('SSE_VIA_LUA') ~= nil
local req
req = http.request({
  url = url,
  idle_timeout = 30000,
  sse = not via_lua and parser or nil,
  on_chunk = via_lua and function(c) parser:feed(c) end or nil,
  on_headers = function() end,
  on_done = function(err, status)
    if err or status ~= 200 or last ~= '[DONE]' then
      io.stderr:write('sse_throughput: failed: ', tostring(err), ' ', status, '\n')
      os.exit(1)
    end
    print(req:received(), events)
  end,
})
