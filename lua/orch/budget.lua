-- orch.budget: what a run has cost, and its budget (docs/resilience.md).
--
-- Costs come from the backends' usage events (claude's total_cost_usd per
-- turn; token counts times orch.agent.prices or the role's `price` for the
-- others) and are summed per task into tasks.cost_usd by the engine. A
-- run's budget (`orch run --budget USD`, `orch resume --budget USD`) is
-- recorded in its `run` events (budget_usd), so a resume without
-- --budget keeps the last one.
local M = {}

-- The sum of the tasks' costs (nil when no task has one).
function M.of_tasks(tasks)
  local sum
  for _, t in ipairs(tasks or {}) do
    local c = tonumber(t.cost_usd)
    if c then sum = (sum or 0) + c end
  end
  return sum
end

-- What the run has cost so far, from the store: its tasks and its
-- orchestrator's turns.
function M.run_cost(store, run_id)
  return (M.of_tasks(store:tasks(run_id)) or 0) + store:orchestrator_cost(run_id)
end

-- {role = cost} over the tasks that have a cost, and the roles in order.
function M.by_role(tasks)
  local sums, order = {}, {}
  for _, t in ipairs(tasks or {}) do
    local c = tonumber(t.cost_usd)
    if c then
      local r = t.role or t.backend or '-'
      if not sums[r] then order[#order + 1] = r end
      sums[r] = (sums[r] or 0) + c
    end
  end
  table.sort(order)
  return sums, order
end

-- The last budget recorded for a run (a `run` event's budget_usd), or nil.
function M.recorded(store, run_id)
  local last
  for ev in store:recorded(run_id, 0) do
    if ev.kind == 'run' and tonumber(ev.budget_usd) then last = tonumber(ev.budget_usd) end
  end
  return last
end

function M.fmt(usd)
  usd = tonumber(usd)
  if not usd then return '-' end
  if usd ~= 0 and usd < 0.01 then return ('$%.4f'):format(usd) end
  return ('$%.2f'):format(usd)
end

-- A --budget value: a number >= 0, or nil and the message.
function M.parse(v)
  if v == nil then return nil end
  local n = tonumber((tostring(v):gsub('^%$', '')))
  if not n or n ~= n or n < 0 then
    return nil, ('--budget must be an amount in USD (e.g. 2.50), not %q'):format(tostring(v))
  end
  return n
end

return M
