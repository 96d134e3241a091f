-- Parallel speedup of agents (issue 15): 4 independent coder tasks on the
-- scripted model with DELAY ms of latency per reply (each task takes three
-- replies: two writes, then its summary), run with --concurrency 4 and with
-- --concurrency 1 (the reference, in the same run); prints both wall
-- times and their ratio beside the target (>= 3.8x in every round), and
-- for the c4 run the time from launching orch to its first and its last
-- task's start (the store's attempts.started_at). ROUNDS rounds (default 3),
-- alternating, each printed; then the worst, median and best ratio and how
-- many rounds met the target.
--   orch -l bench/parallel_speedup.lua [ROUNDS] [DELAY_MS]
local core = require('orch.core')
local T = require('orch.testing')

local ROUNDS = tonumber(arg and arg[1]) or 3
local DELAY = tonumber(arg and arg[2]) or 2000
local TARGET = 3.8

local plan = { tasks = {} }
for i = 1, 4 do
  plan.tasks[i] = { id = 't' .. i, role = 'coder', prompt = ('write f%d.txt'):format(i),
                    files = { ('f%d.txt'):format(i), ('f%db.txt'):format(i) } }
end

local function scenario()
  return { rules = {
    { when = { tool_result = 'wrote (f%d)%.txt' },
      reply = { write = { path = '{{1}}b.txt', content = 'b\n' }, delay = DELAY } },
    { when = { tool_result = true }, reply = { text = 'Done.', delay = DELAY } },
    { when = { user = 'write (f%d)%.txt' },
      reply = { write = { path = '{{1}}.txt', content = '{{1}}\n' }, delay = DELAY } },
  } }
end

local function one(conc)
  local repo = T.repo({ ['README.md'] = 'bench\n' })
  local srv = T.server(scenario())
  -- the run alone is timed (T.run also reads its status afterwards)
  local spawn, t0, t1, wall0 = T.spawn, nil, nil, nil
  T.spawn = function(argv, o)
    if argv[2] ~= 'run' then return spawn(argv, o) end
    wall0, t0 = core.time(), core.hrtime()
    local res = spawn(argv, o)
    t1 = core.hrtime()
    return res
  end
  local r = T.run({ repo = repo, server = srv, plan = plan, workflow = 'default',
                    args = { '--concurrency', tostring(conc) }, timeout = 600000 })
  T.spawn = spawn
  local secs = (t1 - t0) / 1e9
  local st = assert(require('orch.store').open(repo.dir .. '/.orch/orch.db', { readonly = true }))
  local first = st.h:first('SELECT min(started_at) AS a, max(started_at) AS b FROM attempts')
  st:close()
  local nreq = #srv:requests()
  srv:stop()
  repo:rm()
  if r.code ~= 0 then error(('run failed (exit %s): %s'):format(tostring(r.code), r.err)) end
  if nreq ~= 12 then
    io.stdout:write(('parallel_speedup: the load was not produced (%d model requests, want 12)\n'):format(nreq))
    os.exit(1)
  end
  return secs, first.a - wall0, first.b - wall0
end

io.stdout:write(('parallel_speedup: 4 coder tasks x 3 replies, %d ms a reply, %d round(s)\n')
  :format(DELAY, ROUNDS))
local ratios, met = {}, 0
for i = 1, ROUNDS do
  local c4, first, last = one(4)
  local c1 = one(1)
  ratios[i] = c1 / c4
  if ratios[i] >= TARGET then met = met + 1 end
  io.stdout:write(('round %d: concurrency 4 %.2fs (tasks started %.3fs to %.3fs after launch), '
    .. 'concurrency 1 %.2fs, speedup %.2fx (target >= %.1fx)%s\n')
    :format(i, c4, first, last, c1, ratios[i], TARGET, ratios[i] >= TARGET and '' or '  BELOW'))
end
table.sort(ratios)
io.stdout:write(('speedup: best %.2fx, median %.2fx, worst %.2fx; %d of %d rounds >= %.1fx (target: every round)\n')
  :format(ratios[#ratios], ratios[math.floor((#ratios + 1) / 2)], ratios[1], met, ROUNDS, TARGET))
os.exit(0)
