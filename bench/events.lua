-- bench/events.lua: the engine's event path (run: orch -l bench/events.lua [N]).
--
-- Prints output lines/s from a backend's on_line through the batching,
-- Engine:record, the store and one subscriber (what a TUI or the control
-- socket costs on top is its own), agent events/s through Engine:record
-- (each one committed with its row), and the reference: lines/s through
-- st:event alone. Target: 80,000 output lines/s (docs/state.md).
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')

local N = tonumber(arg and arg[1]) or 200000
local AGENT = math.floor(N / 20)
local CHUNK = 2000
local line = string.rep('x', 60)

local p = io.popen('mktemp -d /tmp/orch-bench-events.XXXXXX')
local dir = p:read('*l')
p:close()

-- a backend that writes N lines (CHUNK per loop turn), then AGENT events
package.loaded['orch.backends.benchb'] = {
  start = function(ctx)
    local sent, t
    sent = 0
    t = core.timer(0, 1, function()
      for _ = 1, CHUNK do ctx.on_line('stdout', line) end
      sent = sent + CHUNK
      if sent >= N then
        t:close()
        ctx.out_done = core.hrtime()
        for i = 1, AGENT do ctx.emit({ type = 'text', text = 'step ' .. i }) end
        ctx.agent_done = core.hrtime()
        ctx.on_done({ ok = true, exit_code = 0 })
      end
    end)
    ctx.started = core.hrtime()
    _G.BENCH_CTX = ctx
    return { cancel = function() t:close() end }
  end,
}

local ws = {
  begin = function() return true end,
  prepare = function() return { cwd = dir } end,
  finish = function() return { status = 'done' } end,
  complete = function() return nil end,
  trivial_finish = true,
}
local tasks = { { id = 'a', role = 'coder', backend = 'benchb', prompt = 'go', deps = {}, files = {}, env = {} } }
local st = assert(store.open(dir .. '/orch.db'))
st:create_run({ id = 'r' })
st:add_tasks('r', tasks)
local e = engine.new({ store = st, run = { id = 'r', repo = dir }, plan = { tasks = tasks }, workspace = ws })
local lines, events = 0, 0
e:subscribe(function(ev)
  events = events + 1
  if ev.kind == 'output' then lines = lines + #ev.lines end
end)
local code
e:start(function(c) code = c end)
while code == nil do core.run('once') end
local ctx = _G.BENCH_CTX
local out_s = (ctx.out_done - ctx.started) / 1e9
local agent_s = (ctx.agent_done - ctx.out_done) / 1e9
assert(lines == N, ('subscriber saw %d of %d lines'):format(lines, N))

local function report(what, n, dt, target)
  io.write(('%-52s %9.0f /s  %6.2f us each%s\n'):format(what, n / dt, dt / n * 1e6,
    target and ('   (target %d /s)'):format(target) or ''))
end
report('output lines: on_line -> batch -> record -> store', N, out_s, 80000)
io.write(('  (%d events for %d lines: %.0f lines per batch)\n'):format(events - AGENT, N,
  N / math.max(1, events - AGENT)))
report('agent text events: emit -> record (batched)', AGENT, agent_s)

-- reference: the same lines through st:event alone
local t0 = core.hrtime()
for _ = 1, N do st:event('r', 'a', 1, 'stdout', line) end
st:flush()
report('reference: st:event + flush', N, (core.hrtime() - t0) / 1e9)
st:close()
os.execute("rm -rf '" .. dir .. "'")
