-- The scripted model server's own cost, so that tests and the turn-latency
-- benchmark know what it adds:
-- 1. N streamed Anthropic requests, one after another on one keep-alive
--    connection (libcurl through orch.core.http, on the same loop): median
--    and p99 round trip; target median < 2 ms (an agent turn costs ~100 ms);
-- 2. one 16 MiB text reply streamed: MB/s (target > 50 MB/s);
-- 3. with claude installed: a `claude -p` text turn against the server,
--    median of 5 wall times (a reference, no target).
--   orch -l bench/modelserver.lua [N]
local core = require('orch.core')
local json = require('orch.testing.json')
local ms = require('orch.testing.modelserver')
local agents = require('orch.testing.agents')
local http = core.http

local N = tonumber(arg and arg[1]) or 2000

local function wait(pred)
  while not pred() do core.run('once') end
end

local function post(url, body)
  local done, bytes = false, 0
  assert(http.request({ url = url, method = 'POST', body = body,
    headers = { ['Content-Type'] = 'application/json' },
    on_chunk = function(b) bytes = bytes + #b end,
    on_done = function(err) assert(not err, err) done = true end }))
  wait(function() return done end)
  return bytes
end

local function median(t)
  table.sort(t)
  return t[math.max(1, math.floor(#t / 2))], t[math.max(1, math.floor(#t * 0.99))]
end

local big = ('0123456789abcdef'):rep(1024 * 1024)
local srv = assert(ms.start({ scenario = {
  { when = { user = 'big' }, reply = { text = big } },
  { reply = { text = 'a short reply', write = { path = 'x', content = 'y' } } } } }))
local body = json.encode({ model = 'm', stream = true, max_tokens = 10,
  messages = { { role = 'user', content = 'hello' } },
  tools = { { name = 'Write', input_schema = { properties = { file_path = {}, content = {} } } } } })

local times = {}
for i = 1, N do
  local t0 = core.hrtime()
  post(srv.url .. '/v1/messages', body)
  times[i] = (core.hrtime() - t0) / 1e6
end
local med, p99 = median(times)
print(('round trip of a streamed request: median %.3f ms, p99 %.3f ms over %d (target median < 2 ms)')
  :format(med, p99, N))

local bbody = json.encode({ model = 'm', stream = true, messages = { { role = 'user', content = 'big' } } })
local t0 = core.hrtime()
local bytes = post(srv.url .. '/v1/messages', bbody)
local secs = (core.hrtime() - t0) / 1e9
print(('16 MiB reply streamed: %.1f MB/s (%d bytes in %.3f s; target > 50 MB/s)')
  :format(bytes / secs / 1e6, bytes, secs))

local claude = agents.find('claude')
if claude then
  srv:set_scenario({ { reply = 'ok' } })
  local dir = os.tmpname()
  os.remove(dir)
  assert(core.mkdir_p(dir .. '/home') and core.mkdir_p(dir .. '/tmp'))
  local walls = {}
  for i = 1, 5 do
    local done = false
    local s = core.hrtime()
    assert(core.spawn({ argv = { 'sh', '-c', 'exec "$@" </dev/null >/dev/null 2>&1', 'sh', claude, '-p', 'hi',
                                 '--output-format', 'stream-json', '--verbose' },
                        cwd = dir, env = agents.claude_env(srv, dir .. '/home', dir .. '/tmp'),
                        on_exit = function() done = true end }))
    wait(function() return done end)
    walls[i] = (core.hrtime() - s) / 1e6
  end
  print(('claude -p text turn on the server: median %.0f ms of 5 (reference)'):format((median(walls))))
  os.execute("rm -rf '" .. dir .. "'")
else
  print('claude not found: no CLI turn measured')
end
srv:stop()
