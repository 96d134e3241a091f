-- orch.policy: the failure policy, which users replace from their config.
--
-- policy.classify(task, result) decides what a failed task means for the
-- run: 'hard' (its dependents are blocked; the run fails), 'soft' (its
-- dependents still run) or 'skip' (the task is dropped: it ends skipped and
-- its dependents run without it). result: {exit_code=, signal=, error=}.
-- The default honours the plan's `on_failure` (default 'hard').
local M = {}

local CLASSES = { hard = true, soft = true, skip = true }

local function default_classify(task, _result)
  return task.on_failure or 'hard'
end

M.classify_fn = default_classify

function M.classify(task, result)
  local ok, class = pcall(M.classify_fn, task, result)
  if not ok or not CLASSES[class] then
    io.stderr:write(('orch: failure policy %s for task %s; treating it as hard\n')
      :format(ok and ('returned ' .. tostring(class)) or ('failed: ' .. tostring(class)),
              task.id))
    return 'hard'
  end
  return class
end

-- Installs fn(task, result) -> 'hard'|'soft'|'skip'; nil restores the default.
function M.set(fn)
  M.classify_fn = fn or default_classify
end

return M
