-- orch.workspace: where a task runs and what happens to its work.
--
-- A workspace offers
--   ws:begin(run)                     -> true | nil, err  (run start)
--   ws:prepare(task, deps)            -> {cwd=, branch=, worktree=} | nil, err
--   ws:finish(task, result)           -> {status='done'|'conflict', message=}
--   ws:complete(run, opts)            -> message | nil, err  (run end)
-- The engine calls prepare, finish and complete inside a coroutine of its
-- own (orch.async), so they may suspend (async.wait on work done off the
-- loop) while timers, output and the control socket go on.
-- The in-place workspace below runs every task in the repository itself
-- (no isolation); orch.worktrees provides the git worktree one.
local M = {}

local InPlace = {}
InPlace.__index = InPlace

function M.in_place(repo)
  return setmetatable({ repo = repo, name = 'in-place', trivial_finish = true }, InPlace)
end

-- .orch/ stays out of `git status` here too (the same check git's
-- workspace makes at its start).
function InPlace:begin(_run)
  local repo, err = require('orch.core').git.open(self.repo)
  if not repo then return nil, err end
  local ok, xerr = repo:exclude_orch()
  repo:close()
  if not ok then return nil, xerr end
  return true
end

function InPlace:prepare(_task, _deps)
  return { cwd = self.repo }
end

function InPlace:finish(_task, _result)
  return { status = 'done' }
end

function InPlace:complete(_run, _opts) return nil end

return M
