-- Speedup of independent commands (issue 19): a plan of 4 independent
-- `sleep 2` tasks run by `orch run --plan` with --concurrency 4, and the same
-- plan with --concurrency 1 as the reference (in the same round, in a fresh
-- repository each). The speedup is the c1 wall time over the c4 one: the
-- work is 8 s of sleeping either way, so what separates it from 4.0x is what
-- orch adds before, between and after the tasks; the target is >= 3.8x in
-- every round. Each round prints both times, the speedup, and for the c4 run
-- the time from launching orch to its first task's start and to its last
-- one's (from the store's attempts.started_at); the last line, how many
-- rounds met the target.
--   orch -l bench/sleep_speedup.lua [ROUNDS] [SECONDS]
-- ROUNDS default 6; SECONDS (default 2) is each sleep. Set ORCH_BIN to time
-- another orch; BENCH_TRACE=DIR keeps each c4 run's `strace -f -tt` there.
local core = require('orch.core')
local T = require('orch.testing')

local ROUNDS = tonumber(arg and arg[1]) or 6
local SECS = tonumber(arg and arg[2]) or 2
local TARGET = 3.8
local TRACE = os.getenv('BENCH_TRACE')

local plan = { goal = 'sleep', tasks = {} }
for i = 1, 4 do
  plan.tasks[i] = { id = 's' .. i, cmd = ('sleep %s'):format(SECS) }
end

local function loadavg()
  local f = io.open('/proc/loadavg', 'r')
  local s = f and f:read('*l') or '?'
  if f then f:close() end
  return s:match('^(%S+ %S+ %S+)') or s
end

-- The starts of the run's attempts (wall clock), earliest first.
local function starts(dir)
  local st = assert(require('orch.store').open(dir .. '/.orch/orch.db', { readonly = true }))
  local out = {}
  for row in st.h:rows('SELECT started_at FROM attempts ORDER BY started_at') do
    out[#out + 1] = row.started_at
  end
  local run = st.h:first('SELECT created_at FROM runs')
  st:close()
  return out, run and run.created_at
end

-- One `orch run` of the plan; returns its wall time (s), the time from the
-- launch to the run's record, to the first and to the last task's start.
local function one(conc, round)
  local repo = T.repo({ ['README.md'] = 'bench\n' })
  local path = repo.dir .. '/.git/orch-bench-plan.json'
  T.write_file(path, require('cjson').encode(plan))
  local argv = { T.orch_bin(), 'run', '--plan', path, '--repo', repo.dir, '--no-tui',
                 '--yes', '--concurrency', tostring(conc) }
  if TRACE and conc > 1 then
    core.mkdir_p(TRACE)
    table.insert(argv, 1, 'strace')
    table.insert(argv, 2, '-f')
    table.insert(argv, 3, '-tt')
    table.insert(argv, 4, '-o')
    table.insert(argv, 5, ('%s/round%d.strace'):format(TRACE, round))
  end
  local wall0, t0 = core.time(), core.hrtime()
  local r = T.spawn(argv, { cwd = repo.dir, timeout = 600000 })
  local secs = (core.hrtime() - t0) / 1e9
  if r.code ~= 0 then
    error(('run failed (exit %s): %s'):format(tostring(r.code), r.err))
  end
  local s, created = starts(repo.dir)
  if #s ~= 4 then error(('%d attempts recorded, want 4'):format(#s)) end
  repo:rm()
  return secs, created - wall0, s[1] - wall0, s[#s] - wall0
end

io.stdout:write(('sleep_speedup: 4 independent `sleep %s` tasks, concurrency 4 against 1, '
  .. '%d round(s) (load %s)\n'):format(SECS, ROUNDS, loadavg()))
local met, ratios = 0, {}
for i = 1, ROUNDS do
  local c4, rec, first, last = one(4, i)
  local c1 = one(1, i)
  local ratio = c1 / c4
  ratios[i] = ratio
  if ratio >= TARGET then met = met + 1 end
  io.stdout:write(('round %d: concurrency 4 %.2fs (run recorded %.3fs, first task started '
    .. '%.3fs, last %.3fs after launch), concurrency 1 %.2fs, speedup %.2fx%s\n')
    :format(i, c4, rec, first, last, c1, ratio, ratio >= TARGET and '' or '  BELOW TARGET'))
end
table.sort(ratios)
io.stdout:write(('speedup: worst %.2fx, median %.2fx, best %.2fx; %d of %d rounds >= %.1fx '
  .. '(target: every round) (load %s)\n'):format(ratios[1], ratios[math.floor((#ratios + 1) / 2)],
  ratios[#ratios], met, ROUNDS, TARGET, loadavg()))
os.exit(0)
