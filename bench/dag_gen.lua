-- Generates a random layered DAG (fixed seed) as an orch plan (JSON) and as
-- a build.ninja with the same edges, for bench/dag.sh.
--   orch -l bench/dag_gen.lua OUTDIR TASKS WIDTH [durations]
-- With "durations", tasks sleep a random 0.05-0.4 s (weights = durations)
-- and the critical-path lower bound for 4 slots is written to OUTDIR/bound.
local cjson = require('cjson')

local out, n, width, durations = arg[1], tonumber(arg[2]) or 10000, tonumber(arg[3]) or 50,
  arg[4] == 'durations'
local slots = 4
math.randomseed(20261125)

local tasks, ninja = {}, { 'rule run', '  command = $cmd', '' }
local layer_prev, layer = {}, {}
local dur, finish = {}, {}
for i = 1, n do
  local id = 't' .. i
  local deps = {}
  if #layer_prev > 0 then
    local k = math.random(1, math.min(3, #layer_prev))
    local seen = {}
    for _ = 1, k do
      local d = layer_prev[math.random(1, #layer_prev)]
      if not seen[d] then seen[d] = true deps[#deps + 1] = d end
    end
  end
  local cmd = 'true'
  if durations then
    dur[id] = math.floor((0.05 + math.random() * 0.35) * 1000) / 1000
    cmd = 'sleep ' .. dur[id]
    local start = 0
    for _, d in ipairs(deps) do start = math.max(start, finish[d]) end
    finish[id] = start + dur[id]
  end
  tasks[#tasks + 1] = { id = id, cmd = cmd, deps = deps, weight = dur[id] }
  ninja[#ninja + 1] = ('build %s: run%s%s'):format(id, #deps > 0 and ' | ' or '', table.concat(deps, ' '))
  ninja[#ninja + 1] = '  cmd = ' .. cmd
  layer[#layer + 1] = id
  if #layer >= width then layer_prev, layer = layer, {} end
end
local f = assert(io.open(out .. '/plan.json', 'w'))
f:write(cjson.encode({ goal = 'bench', tasks = tasks }))
f:close()
f = assert(io.open(out .. '/build.ninja', 'w'))
f:write(table.concat(ninja, '\n'), '\n')
f:close()
if durations then
  local cp, total = 0, 0
  for id, t in pairs(finish) do cp = math.max(cp, t) total = total + dur[id] end
  f = assert(io.open(out .. '/bound', 'w'))
  f:write(('%.3f %.3f %.3f\n'):format(math.max(cp, total / slots), cp, total / slots))
  f:close()
end
