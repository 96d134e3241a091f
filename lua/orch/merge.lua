-- orch.merge: merge strategies, the policy that brings a finished task's
-- branch into the run's integration branch (see docs/api/git.md).
--
-- A strategy is a function(ctx) -> result. ctx has
--   repo      the run's orch.core.git repository (the primitives)
--   run, task the run id and the task table (task.id, task.title, ...)
--   into      the integration branch, e.g. "orch/RUN/integration"
--   from      the task branch, e.g. "orch/RUN/T"
--   worktree  the task's worktree path (it may be gone on a resume)
--   message   a default commit message naming the run and task
--   git       git(name, ...) calls a repository method: on libuv's thread
--             pool (waiting in a coroutine) when the workspace finishes
--             asynchronously, directly otherwise; e.g. ctx.git('merge', ...)
-- and returns {status = 'merged' | 'uptodate', tip = OID} or
-- {conflict = true, files = {...}, message = '...'} (message optional: a
-- default one saying how to resolve is filled in). Raising an error, or
-- returning nil, msg, fails the task with that message.
--
-- The shipped ones are merge (a merge commit), squash (one commit) and
-- rebase (each task commit replayed); a workflow picks one by name for all
-- its tasks (`merge = 'squash'`), a task by its own `merge` field, and either
-- may give a function instead.
local M = {}

-- Turns a failed repo:merge() into a strategy result.
local function from_merge(tip, how, code, files)
  if tip then return { status = how, tip = tip } end
  if code == 'ECONFLICT' then return { conflict = true, files = files } end
  return nil, how
end

-- ctx.git(name, ...) calls a repository method (on the thread pool when
-- the workspace finishes asynchronously); without it, ctx.repo directly.
local function builtin(kind)
  return function(ctx)
    local tip, how, code, files
    if ctx.git then
      tip, how, code, files = ctx.git('merge', ctx.into, ctx.from, kind, ctx.message)
    else
      tip, how, code, files = ctx.repo:merge(ctx.into, ctx.from, kind, ctx.message)
    end
    return from_merge(tip, how, code, files)
  end
end

M.strategies = {
  merge = builtin('merge'),
  squash = builtin('squash'),
  rebase = builtin('rebase'),
}

-- The strategy function for a name or function; nil, err if unknown.
function M.resolve(s)
  if s == nil then s = 'merge' end
  if type(s) == 'function' then return s end
  local f = M.strategies[s]
  if not f then
    local names = {}
    for k in pairs(M.strategies) do names[#names + 1] = k end
    table.sort(names)
    return nil, ("unknown merge strategy '%s' (one of: %s, or a function)")
      :format(tostring(s), table.concat(names, ', '))
  end
  return f
end

-- Quotes a path for a shell command in a message.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The message of a conflict: the files and the commands that resolve it.
function M.conflict_message(ctx, files)
  local list = table.concat(files or {}, ', ')
  local where = ctx.worktree and ('cd ' .. q(ctx.worktree))
    or ('git worktree add .orch/worktrees/' .. ctx.run .. '/' .. ctx.task.id .. ' ' .. ctx.from
        .. ' && cd .orch/worktrees/' .. ctx.run .. '/' .. ctx.task.id)
  return ("task %s conflicts with %s in: %s. To resolve: %s; git merge %s; "
    .. "fix the files and git add them (git commit is optional); then orch resume %s")
    :format(ctx.task.id, ctx.into, list ~= '' and list or '(unknown files)', where,
            ctx.into, ctx.run)
end

-- Runs strategy `s` (name or function) on ctx; always returns a table:
-- {status = 'merged'|'uptodate', tip=} or {conflict = true, files=, message=}
-- or {failed = true, message=}.
function M.run(s, ctx)
  local f, err = M.resolve(s)
  if not f then return { failed = true, message = err } end
  local ok, res, msg = pcall(f, ctx)
  if not ok then return { failed = true, message = 'merge strategy: ' .. tostring(res) } end
  if type(res) ~= 'table' then
    return { failed = true, message = 'merge strategy: ' .. tostring(msg or 'returned nothing') }
  end
  if res.conflict then
    res.files = res.files or {}
    res.message = res.message or M.conflict_message(ctx, res.files)
  elseif res.status ~= 'merged' and res.status ~= 'uptodate' then
    return { failed = true, message = 'merge strategy: bad result status ' .. tostring(res.status) }
  end
  return res
end

return M
