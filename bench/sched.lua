-- bench/sched.lua: the scheduler's own cost and the quality of its order
-- (run: orch -l bench/sched.lua [N] [WIDTH] [SLOTS]).
--
-- 1. Time per task of the whole scheduling work (add, check, next, finish)
--    through orch.core.sched on a random layered DAG (fixed seed), against
--    a reference measured in the same run: the same loop over a plain Lua
--    table doing nothing but bookkeeping (a lower bound for any binding).
-- 2. Makespan of a simulated run with random task durations (weights known
--    to the scheduler) against its lower bound max(critical path, work / N),
--    for critical-path priority with the durations as weights and, as a
--    reference, with every weight 1 (longest path in task counts).
local sched = require('orch.core').sched
local plan = require('orch.plan')

local N = tonumber(arg and arg[1]) or 10000
local W = tonumber(arg and arg[2]) or 50
local SLOTS = tonumber(arg and arg[3]) or 4

local function lcg(seed)
  return function(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return math.floor(seed / 65536) % n
  end
end

-- A layered DAG: N tasks in layers of W, each depending on up to 3 random
-- tasks of the layers above; random durations 1..20.
local function dag(seed)
  local rnd, tasks = lcg(seed), {}
  for i = 0, N - 1 do
    local layer, deps, seen = math.floor(i / W), {}, {}
    for _ = 1, 3 do
      if layer > 0 then
        local d = 't' .. ((layer - 1 - rnd(math.min(layer, 2))) * W + rnd(W))
        if not seen[d] then seen[d] = true deps[#deps + 1] = d end
      end
    end
    tasks[#tasks + 1] = { id = 't' .. i, deps = deps, weight = 1 + rnd(20),
      files = rnd(10) == 0 and { 'src/f' .. rnd(30) .. '.c' } or {} }
  end
  return tasks
end

local function clock() return os.clock() end

local function run_sched(tasks)
  local t0 = clock()
  local s = sched.new { concurrency = SLOTS }
  for _, t in ipairs(tasks) do s:add(t.id, t) end
  assert(s:check())
  local running, n = {}, 0
  repeat
    for id in function() return s:next() end do running[#running + 1] = id end
    local id = table.remove(running)
    if id then s:finish(id, 'done') n = n + 1 end
  until not id
  assert(n == #tasks)
  return clock() - t0
end

local function run_reference(tasks)
  local t0 = clock()
  local idx, users, left, ready = {}, {}, {}, {}
  for i, t in ipairs(tasks) do idx[t.id] = i users[i] = {} end
  for i, t in ipairs(tasks) do
    left[i] = #t.deps
    for _, d in ipairs(t.deps) do local u = users[idx[d]] u[#u + 1] = i end
    if left[i] == 0 then ready[#ready + 1] = i end
  end
  local n = 0
  while #ready > 0 do
    local i = table.remove(ready)
    n = n + 1
    for _, u in ipairs(users[i]) do
      left[u] = left[u] - 1
      if left[u] == 0 then ready[#ready + 1] = u end
    end
  end
  assert(n == #tasks)
  return clock() - t0
end

-- Discrete-event simulation: each started task ends weight time units later.
local function makespan(tasks, use_weights)
  local s = sched.new { concurrency = SLOTS }
  local w = {}
  for _, t in ipairs(tasks) do
    w[t.id] = t.weight
    -- without weights the priority is the longest path in task counts
    s:add(t.id, { deps = t.deps, files = t.files, weight = use_weights and t.weight or 1 })
  end
  assert(s:check())
  local now, ends = 0, {}
  local function start_all()
    for id in function() return s:next() end do ends[#ends + 1] = { now + w[id], id } end
    table.sort(ends, function(a, b) return a[1] > b[1] end)
  end
  start_all()
  while #ends > 0 do
    local e = table.remove(ends)
    now = e[1]
    s:finish(e[2], 'done')
    start_all()
  end
  return now
end

local function lower_bound(tasks)
  local cp, total = {}, 0
  for _, t in ipairs(tasks) do total = total + t.weight end
  for _, t in ipairs(tasks) do -- layers come in order: deps precede users
    local best = 0
    for _, d in ipairs(t.deps) do best = math.max(best, cp[d]) end
    cp[t.id] = best + t.weight
  end
  local longest = 0
  for _, v in pairs(cp) do longest = math.max(longest, v) end
  return math.max(longest, total / SLOTS), longest, total / SLOTS
end

local tasks = dag(42)
run_sched(tasks) -- warm up
local best, ref = math.huge, math.huge
for _ = 1, 5 do
  best = math.min(best, run_sched(tasks))
  ref = math.min(ref, run_reference(tasks))
end
print(('scheduler: %d tasks, width %d, %d slots: %.3f ms total, %.2f us/task '
  .. '(reference plain-Lua topological walk: %.2f us/task, ratio %.2f)')
  :format(N, W, SLOTS, best * 1e3, best / N * 1e6, ref / N * 1e6, best / ref))

for _, slots in ipairs({ SLOTS, 16, 64 }) do
  SLOTS = slots
  local lb, longest, work = lower_bound(tasks)
  local cpm, fifo = makespan(tasks, true), makespan(tasks, false)
  print(('makespan, %d slots: weighted %.0f, unweighted %.0f, lower bound %.0f '
    .. '(critical path %.0f, work/N %.0f): ratio %.3f (unweighted %.3f)')
    :format(slots, cpm, fifo, lb, longest, work, cpm / lb, fifo / lb))
end

-- plan loading cost for the same DAG as JSON
local parts = {}
for _, t in ipairs(tasks) do
  local deps = {}
  for _, d in ipairs(t.deps) do deps[#deps + 1] = '"' .. d .. '"' end
  parts[#parts + 1] = ('{"id": "%s", "cmd": "true", "deps": [%s]}'):format(t.id, table.concat(deps, ', '))
end
local text = '{"tasks": [\n' .. table.concat(parts, ',\n') .. '\n]}'
local t0 = clock()
assert(plan.parse(text, 'bench.json'))
print(('plan.parse: %d-task JSON plan (%d KiB) in %.1f ms'):format(N, math.floor(#text / 1024), (clock() - t0) * 1e3))
