-- The fault soak (issue 17, docs/resilience.md): TASKS coder tasks on the
-- in-process openai backend, 4 at a time, each taking 4 model replies
-- (three writes, then its summary), against the scripted model server with
-- a seeded mix of faults (429 with retry-after, 500, hung requests, cut
-- streams) on a share RATE of the requests; then the same run with no
-- faults. Prints, side by side: model requests (turns), faults injected,
-- retries, breaker openings, wasted seconds (backoff beyond what
-- retry-after required) and wall time.
--   orch -l bench/fault_soak.lua [TASKS] [RATE] [SEED]
-- spec/resilience_spec.lua runs the same soak (M.soak) and checks what must
-- hold: every task done or failed with a reason, nothing left running, the
-- database intact.
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')
local roles = require('orch.roles')
local ms = require('orch.testing.modelserver')

local M = {}

M.FAULTS = { 'rate_limit', 'server', 'hang', 'cut' }

local function rng(seed)
  -- a small LCG of our own: the same seed, the same faults, whatever math.random is
  local s = seed % 2147483647
  if s <= 0 then s = s + 2147483646 end
  return function()
    s = (s * 48271) % 2147483647
    return s / 2147483647
  end
end

local function tool_steps(req)
  local n = 0
  for _, m in ipairs(req.messages or {}) do if m.role == 'tool' then n = n + 1 end end
  return n
end

-- The scenario: a request is faulted with probability rate (seeded), else
-- answered by a little agent that writes three files, then sums up.
function M.scenario(rate, seed, counts)
  local r = rng(seed)
  local pick
  return { rules = {
    { name = 'fault', when = function() pick = r() < rate and M.FAULTS[math.floor(r() * 4) + 1] or nil
        return pick ~= nil end,
      reply = function()
        counts[pick] = (counts[pick] or 0) + 1
        counts.faults = counts.faults + 1
        if pick == 'rate_limit' then return { status = 429, retry_after = 1 } end
        if pick == 'server' then return { status = 500, message = 'injected' } end
        if pick == 'hang' then return { hang = true } end
        return { cut = true, text = 'half a reply', write = { path = 'cut.txt', content = 'x\n' } }
      end },
    { name = 'agent', reply = function(req)
        local n = tool_steps(req)
        if n < 3 then return { write = { path = ('f%d.txt'):format(n + 1), content = ('%d\n'):format(n + 1) } } end
        return 'Done.'
      end },
  } }
end

local workspace = require('orch.testing').plain_workspace

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read('*a')
  f:close()
  return (out:gsub('%s+$', ''))
end

-- One soak: o = {tasks=, rate=, seed=, dir= (kept when given), timeout= (ms)}.
-- Returns figures {turns, faults, by fault, retries, openings, wasted,
-- wall, code, tasks = {{id, status, error, attempts}}, running, integrity,
-- dir}.
function M.soak(o)
  local own = not o.dir
  local dir = o.dir or sh('mktemp -d /tmp/orch-soak.XXXXXX')
  local counts = { faults = 0 }
  local srv = assert(ms.start({ scenario = M.scenario(o.rate or 0.25, o.seed or 17, counts) }))
  core.mkdir_p(dir .. '/.orch/roles', tonumber('755', 8))
  local f = assert(io.open(dir .. '/.orch/roles/coder.yaml', 'wb'))
  f:write(([[
backend: openai
model: gpt-4o
tools: edit
request_timeout: 1
endpoint:
  base_url: %s/v1
retries:
  attempts: 8
  base: 0.2
  ceiling: 2
breaker:
  failures: 4
  window: 10
  cooldown: 1
]]):format(srv.url))
  f:close()
  roles.cache = {}
  local tasks = {}
  for i = 1, o.tasks or 12 do tasks[i] = { id = ('t%02d'):format(i), role = 'coder', prompt = 'write files',
                                          deps = {}, files = {}, env = {} } end
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = 'soak', repo = dir, concurrency = 4 }
  st:create_run(run)
  st:add_tasks(run.id, tasks)
  local e = engine.new({ store = st, run = run, plan = { tasks = tasks }, workspace = workspace(dir),
                         concurrency = 4 })
  local fig = { retries = 0, openings = 0, wasted = 0 }
  e:subscribe(function(ev)
    if ev.kind == 'retry' then
      fig.retries = fig.retries + 1
      fig.wasted = fig.wasted + math.max(0, (ev.wait or 0) - (ev.retry_after or 0))
    elseif ev.kind == 'breaker' and ev.state == 'open' then
      fig.openings = fig.openings + 1
    end
  end)
  local code
  local t0 = core.hrtime()
  e:start(function(c) code = c end)
  local deadline = core.now() + (o.timeout or 300000)
  local tick = core.timer(50, 50, function() end)
  while code == nil and core.now() < deadline do core.run('once') end
  tick:close()
  fig.wall = (core.hrtime() - t0) / 1e9
  fig.code = code
  fig.turns = #srv:requests()
  fig.faults = counts.faults
  for _, k in ipairs(M.FAULTS) do fig[k] = counts[k] or 0 end
  fig.running = e:running_count()
  fig.tasks = {}
  for _, t in ipairs(st:tasks(run.id)) do
    fig.tasks[#fig.tasks + 1] = { id = t.id, status = t.status, error = t.error, attempts = t.attempts }
  end
  srv:stop()
  st:close()
  local chk = assert(store.open(dir .. '/orch.db'))
  fig.integrity = chk.h:first('PRAGMA integrity_check').integrity_check
  chk:close()
  fig.dir = dir
  if own then os.execute("rm -rf '" .. dir .. "'") end
  return fig
end

if ... == 'bench.fault_soak' then return M end

-- ---------------------------------------------------------------- the bench

local TASKS = tonumber(arg and arg[1]) or 12
local RATE = tonumber(arg and arg[2]) or 0.25
local SEED = tonumber(arg and arg[3]) or 17

local clean = M.soak({ tasks = TASKS, rate = 0, seed = SEED })
local faulty = M.soak({ tasks = TASKS, rate = RATE, seed = SEED })

local function row(name, a, b, fmt)
  fmt = fmt or '%d'
  print(('%-34s %12s %12s'):format(name, fmt:format(a), fmt:format(b)))
end
local function done(fig)
  local n = 0
  for _, t in ipairs(fig.tasks) do if t.status == 'done' then n = n + 1 end end
  return n
end
print(('fault soak: %d tasks, 4 at a time, fault rate %.2f, seed %d'):format(TASKS, RATE, SEED))
print(('%-34s %12s %12s'):format('', 'no faults', 'faults'))
row('model requests (turns)', clean.turns, faulty.turns)
row('faults injected', clean.faults, faulty.faults)
row('  429 retry-after 1', clean.rate_limit, faulty.rate_limit)
row('  500', clean.server, faulty.server)
row('  hung (request_timeout 1 s)', clean.hang, faulty.hang)
row('  cut stream', clean.cut, faulty.cut)
row('retries', clean.retries, faulty.retries)
row('breaker openings', clean.openings, faulty.openings)
row('wasted s (backoff over retry-after)', clean.wasted, faulty.wasted, '%.2f')
row('tasks done', done(clean), done(faulty))
row('wall s', clean.wall, faulty.wall, '%.2f')
print(('wall time with faults: %.2fx the run without'):format(faulty.wall / math.max(clean.wall, 1e-9)))
print(('integrity_check: %s / %s; left running: %d / %d'):format(clean.integrity, faulty.integrity,
  clean.running, faulty.running))
