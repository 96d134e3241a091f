-- Spawn-and-reap cost and startup time (issue 2's benchmark).
--   orch -l bench/spawn.lua [N]        (bench/spawn.sh builds the reference)
-- 1. N runs of `true` through orch.core.spawn, one at a time, against the
--    same N through a plain C fork/exec/waitpid loop (bench/spawn_ref.c).
--    Target: orch within 1.3x of the plain loop.
-- 2. `orch --version` wall time against `luajit -e ''`. Target: within 2x.
local core = require('orch.core')

local N = tonumber(arg[1]) or 2000
local REF = os.getenv('SPAWN_REF') or '/tmp/orch-spawn-ref'
local ORCH = os.getenv('ORCH_BIN') or arg[-1] or 'orch'

local function now() return core.hrtime() / 1e9 end

-- Runs argv to completion on the loop; returns collected stdout lines.
local function run(argv, want_lines)
  local done, lines = false, {}
  assert(core.spawn({ argv = argv,
    stdout = want_lines and function(l) lines[#lines + 1] = l end or nil,
    on_exit = function() done = true end }))
  while not done do core.run('once') end
  return lines
end

local function orch_spawns(n, pipes)
  local t0 = now()
  for _ = 1, n do run({ 'true' }, pipes) end
  return now() - t0
end

local function ref_spawns(n)
  local lines = run({ REF, tostring(n), 'true' }, true)
  return tonumber(lines[1])
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local function startup(argv, n)
  local t0 = now()
  for _ = 1, n do run(argv, false) end
  return (now() - t0) / n
end

-- Warm up, then alternate rounds so both see the same machine load.
orch_spawns(100, false)
ref_spawns(100)
local o, o_pipes, r = {}, {}, {}
for round = 1, 3 do
  r[round] = ref_spawns(N)
  o[round] = orch_spawns(N, false)
  o_pipes[round] = orch_spawns(N, true)
end
local mo, mp, mr = median(o), median(o_pipes), median(r)
print(('spawn+reap of %d x true (median of 3 rounds)'):format(N))
print(('  plain C fork/exec/waitpid   %8.3f s  %6.1f us/process'):format(mr, mr / N * 1e6))
print(('  orch.core.spawn             %8.3f s  %6.1f us/process  ratio %.2fx (target <= 1.3x)')
  :format(mo, mo / N * 1e6, mo / mr))
print(('  orch.core.spawn, stdout to Lua %5.3f s  %6.1f us/process  ratio %.2fx')
  :format(mp, mp / N * 1e6, mp / mr))

local S = 200
local so, sl = {}, {}
for round = 1, 3 do
  sl[round] = startup({ 'luajit', '-e', '' }, S)
  so[round] = startup({ ORCH, '--version' }, S)
end
local mso, msl = median(so), median(sl)
print(('startup, mean of %d runs (median of 3 rounds)'):format(S))
print(("  luajit -e ''                %8.3f ms"):format(msl * 1e3))
print(('  orch --version              %8.3f ms  ratio %.2fx (target <= 2x)'):format(mso * 1e3, mso / msl))
local sh = startup({ ORCH, 'help' }, S)
print(('  orch help (Lua CLI loaded)  %8.3f ms  ratio %.2fx'):format(sh * 1e3, sh / msl))
