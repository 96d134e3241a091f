-- orch.worktrees: the git worktree workspace the run loop uses (the
-- interface of orch.workspace): every task works in its own worktree on its
-- own branch, and its work is merged into the run's integration branch by a
-- merge strategy (orch.merge). See docs/worktrees.md.
--
--   local ws = worktrees.new{repo = ROOT, run = RUN, merge = 'merge', keep = false}
--   ws:begin(run [, {resume = true}])   -> true | nil, err
--   ws:prepare(task, done_dep_ids)      -> {cwd=, branch=, worktree=} | nil, err
--   ws:finish(task, result)             -> {status = 'done'|'conflict'|'failed', message=, files=}
--   ws:complete(run, {yes = bool})      -> message [, false when not applied]
--   ws:prepare_async(task, deps, cb)    cb(place | nil, err)       (git on
--   ws:finish_async(task, result, cb)   cb(outcome)                 the thread
--   ws:complete_async(run, opts, cb)    cb(message [, false])       pool)
--   ws:close()                          (releases the libgit2 handle)
--   worktrees.clean(ROOT, RUN)          -> message | nil, err
--
-- Names (run R, task T): integration branch orch/R/integration, task branch
-- orch/R/T, worktree ROOT/.orch/worktrees/R/T, base commit refs/orch/R/base,
-- the branch the run started from refs/orch/R/onto (a symbolic ref), the
-- apply's journal refs/orch/R/apply-head and -tip, kept attempts
-- refs/orch/R/attempts/T/attempt-N.
--
-- prepare, finish and complete called from a coroutine of orch.async (as
-- the engine calls them) wait for libgit2 on libuv's thread pool, so the
-- loop goes on meanwhile and the worktrees of tasks that start together are
-- created side by side; called from anywhere else they block the loop while
-- libgit2 works (creating a worktree costs about what `git worktree add`
-- does: 0.5-1 s for 20,000 files). The _async ones take a callback instead.
-- All run one body (below: `git(name, ...)` is a direct call or a wait on
-- the thread pool), so they cannot drift apart.
local core = require('orch.core')
local async = require('orch.async')
local merge = require('orch.merge')

local M = {}

local WS = {}
WS.__index = WS

function M.integration_branch(run_id) return 'orch/' .. run_id .. '/integration' end
function M.task_branch(run_id, task_id) return 'orch/' .. run_id .. '/' .. task_id end
function M.base_ref(run_id) return 'refs/orch/' .. run_id .. '/base' end
function M.onto_ref(run_id) return 'refs/orch/' .. run_id .. '/onto' end
function M.journal_ref(run_id) return 'refs/orch/' .. run_id .. '/apply' end
function M.attempt_ref(run_id, task_id, n)
  return ('refs/orch/%s/attempts/%s/attempt-%d'):format(run_id, task_id, n)
end

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
    fresh = {},        -- task id -> true: its next prepare starts from a clean base
    tasks = {},        -- task id -> task table (the plan's, and every task prepared)
    occupied = {},     -- owner task id -> the task working in its worktree now
    merge_queue = {},  -- async finishes waiting for the integration branch
  }, WS)
end

function WS:open()
  if self.repo then return self.repo end
  local repo, err = core.git.open(self.dir)
  if not repo then return nil, err end
  self.repo = repo
  return repo
end

-- ---------------------------------------------------------------- calls
-- `git(name, ...)` of a body: the repository method itself (sync), or its
-- _async twin waited for in the coroutine the body runs in.

local function sync_git(self)
  return function(name, ...) return self.repo[name](self.repo, ...) end
end

local function async_git(self)
  return function(name, ...)
    local n, args = select('#', ...), { ... }
    local method = self.repo[name .. '_async']
    if not method then return self.repo[name](self.repo, ...) end
    return async.wait(function(k)
      args[n + 1] = k
      local queued, err, code = method(self.repo, unpack(args, 1, n + 1))
      if not queued then k(nil, err, code) end
    end)
  end
end

-- The git of a call made now: on the thread pool when the caller can wait.
local function caller_git(self)
  if async.can_wait() then return async_git(self), false end
  return sync_git(self), true
end

local function pack(...) return { n = select('#', ...), ... } end

-- Runs body(git) in a coroutine with git on the thread pool; cb gets what
-- body returns, or (nil, err) if it raised.
local function in_pool(self, body, cb)
  async.run(function()
    local out
    local ok, err = xpcall(function()
      local ok_open, oerr = self:open()
      if not ok_open then out = pack(nil, oerr) return end
      out = pack(body(async_git(self)))
    end, debug.traceback)
    if not ok then return cb(nil, 'workspace: ' .. tostring(err)) end
    cb(unpack(out, 1, out.n))
  end)
end

-- ---------------------------------------------------------------- begin

-- The plan's tasks as the run recorded them (continues needs them).
local function plan_tasks(run)
  if type(run) ~= 'table' or type(run.plan_json) ~= 'string' then return {} end
  local ok, plan = pcall(require('cjson').decode, run.plan_json)
  if not ok or type(plan) ~= 'table' or type(plan.tasks) ~= 'table' then return {} end
  return plan.tasks
end

-- Run start (and resume): records the base commit (HEAD) in refs/orch/R/base
-- and the branch checked out in refs/orch/R/onto (the branch the run is
-- applied to at its end), and creates the integration branch at the base,
-- unless they exist already.
function WS:begin(run, _opts)
  self.run_id = run_id(run) or self.run_id
  for _, t in ipairs(plan_tasks(run)) do
    if type(t) == 'table' and type(t.id) == 'string' then self.tasks[t.id] = t end
  end
  local repo, err = self:open()
  if not repo then return nil, err end
  self:drop_stale_lock(M.integration_branch(self.run_id), true)
  self:drop_stale_lock(M.base_ref(self.run_id), false)
  local ok, xerr = repo:exclude_orch()
  if not ok then return nil, xerr end
  local base = repo:resolve(M.base_ref(self.run_id))
  if not base then
    local head, branch = repo:head()
    if not head then return nil, branch end
    local ok2, uerr = repo:update_ref(M.base_ref(self.run_id), head, nil, 'orch: run base')
    if not ok2 then return nil, uerr end
    if branch then repo:symref(M.onto_ref(self.run_id), 'refs/heads/' .. branch) end
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

-- The branch the run started from (nil: a detached HEAD, or a run made
-- before orch recorded it).
function WS:start_branch(id)
  local repo = self:open()
  local target = repo and repo:symref(M.onto_ref(id or self.run_id))
  return target and target:match('^refs/heads/(.+)$') or nil
end

-- ---------------------------------------------------------------- continues

-- The task whose worktree and branch `task` works in: itself, or for a task
-- that continues another's agent conversation, the first of that chain.
-- Tells the workspace of a task of the run (the engine does, for every
-- task), so that continuations are known before they are prepared.
function WS:know(task)
  self.tasks[task.id] = self.tasks[task.id] or task
end

function WS:owner_of(task)
  local seen, t = {}, task
  while type(t.continues) == 'string' and not seen[t.continues] do
    seen[t.continues] = true
    local other = self.tasks[t.continues]
    if not other then return t.continues end
    t = other
  end
  return t.id
end

-- Whether some task of the run continues in owner's worktree (it is then
-- kept until the run ends).
function WS:continued(owner)
  for _, t in pairs(self.tasks) do
    if t.continues and t.id ~= owner and self:owner_of(t) == owner then return true end
  end
  return false
end

-- ---------------------------------------------------------------- prepare

-- The first free attempt-N ref of a task.
local function next_attempt_ref(repo, run, task)
  local n = 1
  while repo:resolve(M.attempt_ref(run, task, n)) do n = n + 1 end
  return M.attempt_ref(run, task, n)
end

-- A new attempt of a task that ran before (interrupted by a crash or Ctrl+C,
-- or failed): what the earlier attempt left (its commits and whatever it
-- left uncommitted in the worktree) is kept in refs/orch/R/attempts/T/
-- attempt-N, then branch and worktree go, so the new attempt starts from the
-- task's clean base. nil, err if the work could not be kept (then nothing
-- is removed).
function WS:keep_attempt(git, task)
  local repo, run = self.repo, self.run_id
  local branch = M.task_branch(run, task.id)
  local head = repo:resolve(branch)
  if not head then return true end
  local names = assert(repo:worktree_names(run, task.id))
  -- (a worktree orch was still making holds no work: only its branch counts)
  local half = io.open(repo:gitdir() .. '/worktrees/' .. names.name .. '/locked', 'r')
  if half then half:close() end
  if core.realpath(names.path) and not half then
    local committed, tip = git('commit_task', run, task.id,
      ('orch %s/%s: interrupted attempt\n\nWhat an attempt of task %s left in its worktree, '
       .. 'kept by orch before a new attempt.\n'):format(run, task.id, task.id))
    if committed == nil then
      return nil, ('the earlier attempt of task %s left work that orch could not keep: %s')
        :format(task.id, tip)
    end
    head = repo:resolve(branch) or head
  end
  local ref = next_attempt_ref(repo, run, task.id)
  local ok, err = repo:update_ref(ref, head, nil, 'orch: earlier attempt')
  if not ok then return nil, err end
  local removed, rerr = git('worktree_remove', run, task.id)
  if not removed then return nil, rerr end
  repo:delete_ref(branch)
  self.kept_attempts = self.kept_attempts or {}
  self.kept_attempts[task.id] = ref
  return true
end

-- The body of prepare: the task's worktree from the base merged with the
-- branches of its finished dependencies; for a task that continues another,
-- that task's worktree (kept, or made again from its branch).
function WS:do_prepare(git, task, deps, opts)
  if not self.base then
    local ok, err = self:begin(self.run_id)
    if not ok then return nil, err end
  end
  self.tasks[task.id] = self.tasks[task.id] or task
  local owner = self:owner_of(task)
  if owner ~= task.id then
    local busy = self.occupied[owner]
    if busy and busy ~= task.id then
      return nil, ('task %s continues %s, whose worktree task %s is working in: make one '
        .. 'depend on the other'):format(task.id, owner, busy)
    end
  elseif self.fresh[task.id] and not (opts and opts.resume_session) then
    self.fresh[task.id] = nil
    local ok, kerr = self:keep_attempt(git, task)
    if not ok then return nil, kerr end
  end
  self:drop_stale_lock(M.task_branch(self.run_id, owner), true)
  local branches = {}
  -- from = 'base': the run's base alone (the deps only order the task)
  if owner == task.id and task.from ~= 'base' then
    -- a dep that continued another task left its work on that task's branch
    local seen = {}
    for _, d in ipairs(deps or {}) do
      local b = M.task_branch(self.run_id, self:owner_of(self.tasks[d] or { id = d }))
      if not seen[b] then seen[b] = true branches[#branches + 1] = b end
    end
  end
  local wt, err, code, files = git('worktree_create', self.run_id, owner, self.base,
    branches, { checkout = self.checkout })
  if not wt then
    if code == 'ECONFLICT' then
      return nil, err .. ' (files: ' .. table.concat(files or {}, ', ') .. ')'
    end
    return nil, err
  end
  self.occupied[owner] = task.id
  return { cwd = wt.path, branch = wt.branch, worktree = wt.path, reused = wt.reused,
           continues = owner ~= task.id and owner or nil,
           kept_attempt = self.kept_attempts and self.kept_attempts[task.id] or nil }
end

-- opts.resume_session: the task's backend resumes the agent session of its
-- earlier attempt, which expects its worktree as it left it (kept).
function WS:prepare(task, deps, opts)
  local repo, err = self:open()
  if not repo then return nil, err end
  local git, sync = caller_git(self)
  if sync then return self:do_prepare(git, task, deps, opts) end
  -- Worktrees are made side by side, but handed back in the order they were
  -- asked for, each one loop turn after the one before: the tasks start (and
  -- say so) in the order the scheduler gave them, whichever was made first.
  local ticket = self.prep_next or 1
  self.prep_next = ticket + 1
  self.prep_turn = self.prep_turn or 1
  self.prep_waiting = self.prep_waiting or {}
  local out = pack(pcall(self.do_prepare, self, git, task, deps, opts))
  if self.prep_turn ~= ticket then
    async.wait(function(k) self.prep_waiting[ticket] = k end)
  end
  self.prep_turn = ticket + 1
  local nextk = self.prep_waiting[ticket + 1]
  if nextk then
    self.prep_waiting[ticket + 1] = nil
    core.timer(0, nextk)
  end
  if not out[1] then error(out[2], 0) end
  return unpack(out, 2, out.n)
end

-- prepare on the thread pool: cb(place) or cb(nil, err); opts or cb third.
function WS:prepare_async(task, deps, opts, cb)
  if cb == nil then opts, cb = nil, opts end
  in_pool(self, function(git) return self:do_prepare(git, task, deps, opts) end, cb)
end

-- ---------------------------------------------------------------- finish

-- Whether the worktree directory is there (its .git file may not be: a
-- task that deleted it gets it back in commit_task).
local function isdir(path)
  return core.realpath(path) ~= nil
end

-- One merge into the integration branch at a time (async finishes run
-- concurrently; the branch moves by compare-and-swap). Sync calls never
-- overlap, so only the async path queues.
function WS:merge_lock(sync)
  if sync then return end
  if self.merging then
    async.wait(function(k) table.insert(self.merge_queue, k) end)
  end
  self.merging = true
end

function WS:merge_unlock(sync)
  if sync then return end
  self.merging = false
  local k = table.remove(self.merge_queue, 1)
  if k then k() end
end

-- The body of finish: commits what the agent left uncommitted, merges the
-- branch with the task's strategy (task.merge, else the workspace's, else
-- 'merge'), and removes the worktree unless kept. A conflict keeps branch
-- and worktree. A task that continues another commits onto that task's
-- branch, and that branch is merged again.
function WS:do_finish(git, task, sync)
  local repo = self.repo
  local owner = self:owner_of(task)
  if self.occupied[owner] == task.id then self.occupied[owner] = nil end
  local names = repo:worktree_names(self.run_id, owner)
  if not names then return { status = 'failed', message = 'bad task id ' .. tostring(task.id) } end
  local path = isdir(names.path) and names.path or nil
  local what = (task.title and task.title ~= task.id) and (task.id .. ': ' .. task.title) or task.id
  if owner ~= task.id then what = what .. ' (continues ' .. owner .. ')' end
  if path then
    local committed, cerr = git('commit_task', self.run_id, owner,
      ('orch %s/%s\n\nWork of task %s, committed by orch.\n'):format(self.run_id, task.id, what))
    if committed == nil then return { status = 'failed', message = cerr } end
  end
  -- merge = false (a test gate, one of best_of_n's tries): the work stays
  -- on the task's branch, and the worktree for a task that may continue it
  if task.merge == false then
    return { status = 'done', merged = 'kept', message = 'kept on ' .. names.branch .. ', not merged' }
  end
  local ctx = {
    repo = repo, run = self.run_id, task = task, worktree = path,
    into = M.integration_branch(self.run_id), from = names.branch,
    message = ('orch %s: merge task %s\n'):format(self.run_id, what),
    git = git,
  }
  self:merge_lock(sync)
  local ok, res = pcall(merge.run, task.merge or self.strategy, ctx)
  self:merge_unlock(sync)
  if not ok then return { status = 'failed', message = 'merge: ' .. tostring(res) } end
  if res.failed then return { status = 'failed', message = res.message } end
  if res.conflict then
    return { status = 'conflict', message = res.message, files = res.files }
  end
  if path and not (self.keep or task.keep or self:continued(owner)) then
    local removed, rerr = git('worktree_remove', self.run_id, owner)
    if not removed then return { status = 'done', message = 'merged; removing the worktree: ' .. rerr } end
  end
  return { status = 'done', tip = res.tip, merged = res.status }
end

function WS:finish(task, _result)
  local repo, err = self:open()
  if not repo then return { status = 'failed', message = err } end
  local git, sync = caller_git(self)
  return self:do_finish(git, task, sync)
end

function WS:finish_async(task, _result, cb)
  in_pool(self, function(git) return self:do_finish(git, task, false) end, function(out, err)
    cb(out or { status = 'failed', message = tostring(err) })
  end)
end

-- ---------------------------------------------------------------- complete

-- Worktrees kept for tasks that continue in them go at the run's end.
function WS:remove_continued(git)
  for id in pairs(self.tasks) do
    if not self.keep and self:continued(id) then git('worktree_remove', self.run_id, id) end
  end
end

-- The body of complete: with `yes`, brings the user's branch (the one the
-- run started from) up to the integration branch (fast-forward or merge
-- commit; refused if the user has uncommitted changes or is on another
-- branch). Without it, says how to do it. Returns a message, and false as a
-- second value when approved work could not be applied.
function WS:do_complete(git, run, opts)
  local repo = self.repo
  local id = run_id(run) or self.run_id
  local into = M.integration_branch(id)
  local yes = (opts and opts.yes) or self.yes
  self:remove_continued(git)
  if not yes then
    return ("the run's work is on branch %s; apply it to your branch with "
      .. "`git merge %s` (or run with --yes), then `orch clean %s`"):format(into, into, id)
  end
  local branch = self:start_branch(id)
  if branch and repo:resolve(M.journal_ref(id) .. '-head') then
    self:drop_stale_lock(branch, true) -- killed while git moved the branch
  end
  local tip, how, code = git('apply_to_head', into, { merge = true, branch = branch,
    journal = M.journal_ref(id), message = ('orch: apply run %s\n'):format(id) })
  if not tip then
    if code == 'ECONFLICT' then
      return ("%s does not merge into your branch (%s); merge it by hand: git merge %s")
        :format(into, how, into), false
    end
    if code == 'EXDEV' then
      return ('not applied: %s; then `orch resume %s` (or `git merge %s` yourself)')
        :format(how, id, into), false
    end
    return ('not applied: %s'):format(how), false
  end
  local _, head_branch = repo:head()
  if how == 'uptodate' then return ('%s is already up to date with %s'):format(head_branch or 'HEAD', into) end
  return ('applied %s to %s (now at %s)'):format(into, head_branch or 'HEAD', tip:sub(1, 12))
end

function WS:complete(run, opts)
  local repo, err = self:open()
  if not repo then return nil, err end
  return self:do_complete(caller_git(self), run, opts)
end

function WS:complete_async(run, opts, cb)
  in_pool(self, function(git) return self:do_complete(git, run, opts) end, cb)
end

-- Releases the repository handle (the workspace reopens it if used again).
function WS:close()
  if self.repo then self.repo:close() self.repo = nil end
end

-- ---------------------------------------------------------------- resume

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
