-- orch.worktrees: the git worktree workspace the run loop uses (the
-- interface of orch.workspace): every task works in its own worktree on its
-- own branch, and its work is merged into the run's integration branch by a
-- merge strategy (orch.merge). See docs/worktrees.md.
--
--   local ws = worktrees.new{repo = ROOT, run = RUN, merge = 'merge', keep = false}
--   ws:begin(run [, {resume = true}])   -> true | nil, err
--   ws:prepare(task, done_dep_ids)      -> {cwd=, branch=, worktree=} | nil, err
--   ws:finish(task, result)             -> {status = 'done'|'conflict'|'failed', message=, files=}
--   ws:complete(run, {yes = bool})      -> message
--   ws:close()                          (releases the libgit2 handle)
--   worktrees.clean(ROOT, RUN)          -> message | nil, err
--
-- Names (run R, task T): integration branch orch/R/integration, task branch
-- orch/R/T, worktree ROOT/.orch/worktrees/R/T, base commit refs/orch/R/base.
-- Every call is synchronous (libgit2 blocks): creating a worktree costs
-- about what `git worktree add` does (0.5-1 s for 20,000 files), a commit
-- and merge of a task a fraction of a second.
local core = require('orch.core')
local merge = require('orch.merge')

local M = {}

local WS = {}
WS.__index = WS

function M.integration_branch(run_id) return 'orch/' .. run_id .. '/integration' end
function M.task_branch(run_id, task_id) return 'orch/' .. run_id .. '/' .. task_id end
function M.base_ref(run_id) return 'refs/orch/' .. run_id .. '/base' end

local function run_id(run)
  return type(run) == 'table' and run.id or run
end

-- o: repo (a directory in the repository), run (table or id), merge (a
-- strategy name or function for every task), keep (keep worktrees of merged
-- tasks), yes (apply to the user's branch at the end), checkout ('auto',
-- 'fast', 'libgit2').
function M.new(o)
  return setmetatable({
    dir = o.repo or '.', run_id = o.run and run_id(o.run), strategy = o.merge,
    keep = o.keep or false, yes = o.yes or false, checkout = o.checkout,
    name = 'worktrees',
  }, WS)
end

function WS:open()
  if self.repo then return self.repo end
  local repo, err = core.git.open(self.dir)
  if not repo then return nil, err end
  self.repo = repo
  return repo
end

-- Run start (and resume): records the base commit (HEAD) in refs/orch/R/base
-- and creates the integration branch at it, unless they exist already.
function WS:begin(run, _opts)
  self.run_id = run_id(run) or self.run_id
  local repo, err = self:open()
  if not repo then return nil, err end
  self:drop_stale_lock(M.integration_branch(self.run_id), true)
  self:drop_stale_lock(M.base_ref(self.run_id), false)
  local ok, xerr = repo:exclude_orch()
  if not ok then return nil, xerr end
  local base = repo:resolve(M.base_ref(self.run_id))
  if not base then
    local head, herr = repo:head()
    if not head then return nil, herr end
    local ok2, uerr = repo:update_ref(M.base_ref(self.run_id), head, nil, 'orch: run base')
    if not ok2 then return nil, uerr end
    base = head
  end
  self.base = base
  local into = M.integration_branch(self.run_id)
  if not repo:resolve(into) then
    local ok3, ierr = repo:update_ref(into, base, nil, 'orch: integration branch')
    if not ok3 then return nil, ierr end
  end
  return true
end

-- A kill -9 while git updates one of the run's refs leaves REF.lock behind,
-- and every later update of that ref fails. Only this run's orch touches its
-- refs, and only synchronously, so a lock found when orch is about to update
-- the ref is stale.
function WS:drop_stale_lock(ref, is_branch)
  local repo = self:open()
  if not repo then return end
  local path = repo:gitdir() .. '/' .. (is_branch and ('refs/heads/' .. ref) or ref) .. '.lock'
  os.remove(path)
end

-- Task start: its worktree from the base merged with the branches of its
-- finished dependencies. An intact worktree from an earlier attempt is
-- reused as it is; a half-made one is made again.
function WS:prepare(task, deps)
  if not self.base then
    local ok, err = self:begin(self.run_id)
    if not ok then return nil, err end
  end
  self:drop_stale_lock(M.task_branch(self.run_id, task.id), true)
  local branches = {}
  for i, d in ipairs(deps or {}) do branches[i] = M.task_branch(self.run_id, d) end
  local wt, err, code, files = self.repo:worktree_create(self.run_id, task.id, self.base,
    branches, { checkout = self.checkout })
  if not wt then
    if code == 'ECONFLICT' then
      return nil, err .. ' (files: ' .. table.concat(files or {}, ', ') .. ')'
    end
    return nil, err
  end
  return { cwd = wt.path, branch = wt.branch, worktree = wt.path, reused = wt.reused }
end

-- Whether the worktree directory is there (its .git file may not be: a
-- task that deleted it gets it back in commit_task).
local function isdir(path)
  return core.realpath(path) ~= nil
end

-- Task end: commits what the agent left uncommitted, merges the branch with
-- the task's strategy (task.merge, else the workspace's, else 'merge'), and
-- removes the worktree unless kept. A conflict keeps branch and worktree.
function WS:finish(task, _result)
  local repo, err = self:open()
  if not repo then return { status = 'failed', message = err } end
  local names = repo:worktree_names(self.run_id, task.id)
  if not names then return { status = 'failed', message = 'bad task id ' .. tostring(task.id) } end
  local path = isdir(names.path) and names.path or nil
  local what = (task.title and task.title ~= task.id) and (task.id .. ': ' .. task.title) or task.id
  if path then
    local committed, cerr = repo:commit_task(self.run_id, task.id,
      ('orch %s/%s\n\nWork of task %s, committed by orch.\n'):format(self.run_id, task.id, what))
    if committed == nil then return { status = 'failed', message = cerr } end
  end
  local ctx = {
    repo = repo, run = self.run_id, task = task, worktree = path,
    into = M.integration_branch(self.run_id), from = names.branch,
    message = ('orch %s: merge task %s\n'):format(self.run_id, what),
  }
  local res = merge.run(task.merge or self.strategy, ctx)
  if res.failed then return { status = 'failed', message = res.message } end
  if res.conflict then
    return { status = 'conflict', message = res.message, files = res.files }
  end
  if path and not (self.keep or task.keep) then
    local removed, rerr = repo:worktree_remove(self.run_id, task.id)
    if not removed then return { status = 'done', message = 'merged; removing the worktree: ' .. rerr } end
  end
  return { status = 'done', tip = res.tip, merged = res.status }
end

-- Run end: with `yes`, brings the user's checked-out branch up to the
-- integration branch (fast-forward or merge commit; refused if the user has
-- uncommitted changes). Without it, says how to do it. Returns a message,
-- and false as a second value when approved work could not be applied.
function WS:complete(run, opts)
  local repo, err = self:open()
  if not repo then return nil, err end
  local id = run_id(run) or self.run_id
  local into = M.integration_branch(id)
  local yes = (opts and opts.yes) or self.yes
  if not yes then
    return ("the run's work is on branch %s; apply it to your branch with "
      .. "`git merge %s` (or run with --yes), then `orch clean %s`"):format(into, into, id)
  end
  local tip, how, code = repo:apply_to_head(into, { merge = true,
    message = ('orch: apply run %s\n'):format(id) })
  if not tip then
    if code == 'ECONFLICT' then
      return ("%s does not merge into your branch (%s); merge it by hand: git merge %s")
        :format(into, how, into), false
    end
    return ('not applied: %s'):format(how), false
  end
  local _, branch = repo:head()
  if how == 'uptodate' then return ('%s is already up to date with %s'):format(branch or 'HEAD', into) end
  return ('applied %s to %s (now at %s)'):format(into, branch or 'HEAD', tip:sub(1, 12))
end

-- Releases the repository handle (the workspace reopens it if used again).
function WS:close()
  if self.repo then self.repo:close() self.repo = nil end
end

-- Resume: which finished tasks lost their work (`orch clean --force` of an
-- unfinished run, branches deleted by hand). Only when the integration
-- branch is gone: then a finished task whose branch is still there is merged
-- again (remerge), and one whose branch is gone too runs again (rerun). With
-- the integration branch there, finished work is in it. ids: task ids.
function M.lost_work(root, run, ids)
  local rerun, remerge = {}, {}
  local repo = core.git.open(root)
  if not repo then return rerun, remerge end
  local id = run_id(run)
  if not repo:resolve(M.integration_branch(id)) then
    for _, t in ipairs(ids) do
      if repo:resolve(M.task_branch(id, t)) then remerge[t] = true else rerun[t] = true end
    end
  end
  repo:close()
  return rerun, remerge
end

-- `orch clean RUN`: removes the run's worktrees, branches and base ref.
function M.clean(root, run)
  local repo, err = core.git.open(root)
  if not repo then return nil, err end
  local n, kept = repo:prune(run_id(run))
  repo:close()
  if not n then return nil, kept end
  local msg = ('removed the worktrees of run %s and %d branch(es)'):format(run_id(run), n)
  if kept and kept > 0 then
    msg = msg .. ('; kept %d branch(es) checked out in a worktree (switch away, then clean again)')
      :format(kept)
  end
  return msg
end

return M
