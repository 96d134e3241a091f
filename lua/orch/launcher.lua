-- orch.launcher: every agent and command orch starts goes through
-- launcher.spawn(spec), so that a replacement can run a task elsewhere (in
-- a container, as a cluster job) without the scheduler or the backends
-- knowing. spec is what orch.core.spawn takes (argv, cwd, env, stdout,
-- stderr, on_exit, input); the result must offer :pid(), :cancel(ms),
-- :kill(sig), :reaped() like a core process. Replace it with
-- launcher.set(fn).
--
-- When a task's process ends (it finished, timed out or was cancelled), the
-- local launcher ends everything it started with it, before on_exit:
-- launcher.reap_task(pid, spec) kills its process group and its session
-- (members that made groups of their own too), and the orphans orch adopted
-- (as a child subreaper) that carry the task's ORCH_RUN/ORCH_TASK
-- environment or work in its worktree (`env -i setsid -f ...` keeps the
-- directory, not the environment), with whatever descends from them. A
-- replacement launcher ends its own (a container's stop does).
local core = require('orch.core')

local M = {}

-- The marks of a task's processes from its spawn spec, or nil for a spawn
-- that is not a task's.
local function task_marks(spec)
  local env = type(spec.env) == 'table' and spec.env or {}
  if type(env.ORCH_RUN) ~= 'string' or type(env.ORCH_TASK) ~= 'string' then return nil end
  local wt = env.ORCH_WORKTREE
  return {
    env = { 'ORCH_RUN=' .. env.ORCH_RUN, 'ORCH_TASK=' .. env.ORCH_TASK },
    -- the directory marks only a worktree of the task's own, not the
    -- repository itself (--in-place), where every task works
    cwd = type(wt) == 'string' and wt ~= env.ORCH_REPO and wt or nil,
  }
end

-- Kills what is left of the task whose process pid ended. Returns how many
-- processes were killed.
function M.reap_task(pid, spec)
  return M.reap_marked(pid, task_marks(spec))
end

-- reap_task with the marks already read from the spec.
function M.reap_marked(pid, marks)
  if not marks or not pid then return 0 end
  -- Every process the task left is in its group or descends from an orphan
  -- orch adopted (a child subreaper): with an empty group and no child orch
  -- did not spawn, nothing is left, and the scan of /proc (about 1 ms a
  -- task, most of orch's own time for short tasks) is skipped.
  -- A process killed by a pass may have forked after the pass listed
  -- /proc (its child is then orch's, adopted): another pass, while the
  -- last one killed something and strays are left.
  local total = 0
  for _ = 1, M.SWEEP_PASSES do
    if not core.strays(pid) then break end
    local n = core.sweep_match({ ids = { pid }, env = marks.env, cwd = marks.cwd,
                                 adopted = true, no_tty = true, signal = 'SIGKILL' }) or 0
    total = total + n
    if n == 0 then break end
  end
  return total
end

M.SWEEP_PASSES = 4

local function local_spawn(spec)
  local marks = task_marks(spec)
  if not marks then return core.spawn(spec) end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  local pid
  s.on_exit = function(code, sig, proc)
    M.reap_marked(pid or (proc and proc:pid()), marks)
    if spec.on_exit then return spec.on_exit(code, sig, proc) end
  end
  local p, err, ecode = core.spawn(s)
  if p then pid = p:pid() end
  return p, err, ecode
end

M.spawn_fn = local_spawn

function M.spawn(spec)
  return M.spawn_fn(spec)
end

-- Installs fn(spec) as the launcher; nil restores the local one.
function M.set(fn)
  M.spawn_fn = fn or local_spawn
end

return M
