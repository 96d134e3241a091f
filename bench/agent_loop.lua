-- The HTTP backends' tool loop: one turn of STEPS model replies (each a
-- `list` tool call, then a final text) against the scripted model server in
-- this process, against the same number of bare requests of the same
-- bodies through orch.core.http to the same server. Prints both per-step
-- times and what the loop adds per step (target: under 5 ms).
--
--   orch -l bench/agent_loop.lua [BACKEND]   env: STEPS (200)
local core = require('orch.core')
local ms = require('orch.testing.modelserver')

local backend = arg and arg[1] or 'openai'
local steps = tonumber(os.getenv('STEPS')) or 200

local function wait(pred)
  while not pred() do core.run('once') end
end

local srv = assert(ms.start({ scenario = {
  { when = { fn = function(req) return #req.messages > steps * 2 end }, reply = 'done' },
  { reply = { tool_call = { name = 'list', input = { path = '.' } } } },
} }))
local dir = os.tmpname()
os.remove(dir)
assert(core.mkdir_p(dir))

local env = { OPENAI_BASE_URL = srv.url .. '/v1', ANTHROPIC_BASE_URL = srv.url,
              OPENAI_API_KEY = 'sk-bench', ANTHROPIC_API_KEY = 'sk-bench' }
local result, bodies = nil, {}
local t0 = core.hrtime()
local h = require('orch.backends.' .. backend).start({
  cwd = dir, tools = 'read-only', prompt = 'list', model = 'bench', env = env,
  role = { limits = { turns = steps + 5 } },
  emit = function() end, on_line = function() end,
  on_done = function(r) result = r end,
})
assert(h)
wait(function() return result ~= nil end)
local loop_ns = core.hrtime() - t0
assert(result.ok, result.error)
local n = #srv:requests()
for i, q in ipairs(srv:requests()) do bodies[i] = require('cjson').encode(q.body) end

-- the same requests, bare: POST, read the SSE body to its end
local url = backend == 'openai' and srv.url .. '/v1/chat/completions' or srv.url .. '/v1/messages'
t0 = core.hrtime()
for i = 1, n do
  local done = false
  local p = core.http.sse_parser(function() end)
  assert(core.http.request({ method = 'POST', url = url, body = bodies[i],
    headers = { ['Content-Type'] = 'application/json' }, sse = p,
    on_done = function() done = true end }))
  wait(function() return done end)
end
local bare_ns = core.hrtime() - t0
srv:stop()
os.execute("rm -rf '" .. dir .. "'")

local per_loop, per_bare = loop_ns / n / 1e6, bare_ns / n / 1e6
print(('%s: %d steps; tool loop %.2f ms/step, bare requests %.2f ms/request; '
  .. 'the loop adds %.2f ms/step (target < 5)'):format(backend, n, per_loop, per_bare, per_loop - per_bare))
