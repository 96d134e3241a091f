-- orch.engine: one live run. It feeds the scheduler's ready tasks to their
-- backends, records every step in the store before acting on it, turns
-- results into scheduler outcomes through the failure policy, hands finished
-- work to the workspace (worktrees and merges), and checkpoints on Ctrl+C.
--
--   local e = engine.new{store=, run=, plan=, workspace=, concurrency=, done=}
--   e:start(function(exit_code) ... end)
local core = require('orch.core')
local plan_mod = require('orch.plan')
local policy = require('orch.policy')
local progress = require('orch.progress')

local M = {}

local Engine = {}
Engine.__index = Engine

M.backends = { exec = 'orch.backends.exec' }

-- The backend module for a task: its `backend`, else exec for a `cmd`.
function M.backend_for(task)
  local name = task.backend or (task.cmd and 'exec') or nil
  if not name then return nil, 'task ' .. task.id .. ' names no backend and has no cmd' end
  local modname = M.backends[name]
  if not modname then
    return nil, ("task %s: backend '%s' is not available in this build yet " ..
      "(tasks with a cmd run with the exec backend)"):format(task.id, name)
  end
  return require(modname)
end

function M.new(o)
  local self = setmetatable({
    store = o.store, run = o.run, plan = o.plan, ws = o.workspace,
    concurrency = o.concurrency or 4, quiet = o.quiet,
    tasks = {}, running = {}, stopping = false, ended = false, pumping = false,
    sched_ns = 0, soft_failed = o.soft_failed or {},
  }, Engine)
  for _, t in ipairs(o.plan.tasks) do self.tasks[t.id] = t end
  self.sched = plan_mod.scheduler(o.plan, { concurrency = self.concurrency, done = o.done })
  return self
end

function Engine:say(fmt, ...)
  if not self.quiet then progress.say(fmt, ...) end
end

-- ---------------------------------------------------------------- events
-- Subscribers see every state change and output line of the run as tables:
--   {kind='task', task=, status=, ...fields}   {kind='output', task=,
--   attempt=, stream=, data=}   {kind='run', status=}
-- (the control socket and the TUI are fed from here).

function Engine:subscribe(fn)
  self.subscribers = self.subscribers or {}
  self.subscribers[fn] = true
  return function() self.subscribers[fn] = nil end
end

function Engine:emit(ev)
  if not self.subscribers then return end
  for fn in pairs(self.subscribers) do
    local ok, e = pcall(fn, ev)
    if not ok then
      self.subscribers[fn] = nil
      io.stderr:write('orch: event subscriber failed and was removed: ', tostring(e), '\n')
    end
  end
end

function Engine:set_task(id, fields)
  self.store:set_task(self.run.id, id, fields)
  if fields.status then
    local ev = { kind = 'task', task = id }
    for k, v in pairs(fields) do ev[k] = v end
    self:emit(ev)
  end
end

-- The ids of a task's deps that are done (their work is merged in).
function Engine:done_deps(task)
  local deps = {}
  for _, d in ipairs(task.deps or {}) do
    if self.sched:state(d) == 'done' then deps[#deps + 1] = d end
  end
  return deps
end

function Engine:task_env(task, attempt, place)
  local env = {}
  for k, v in pairs(task.env or {}) do env[k] = v end
  env.ORCH_RUN = self.run.id
  env.ORCH_TASK = task.id
  env.ORCH_ATTEMPT = tostring(attempt)
  env.ORCH_REPO = self.run.repo
  env.ORCH_WORKTREE = place.cwd
  return env
end

-- Starts one task the scheduler handed out.
function Engine:launch(id)
  local task = self.tasks[id]
  if self.exited and self.exited[id] then
    -- resume: the task's process had succeeded (or its merge conflicted and
    -- the user resolved it): its worktree is reused and only the merge redone
    self.exited[id] = nil
    local place, perr = self.ws:prepare(task, self:done_deps(task))
    if not place then
      return self:settle(id, nil, { ok = false, error = 'workspace: ' .. tostring(perr) })
    end
    self:say('%s: finished before; merging its work', id)
    return self:settle(id, nil, { ok = true, exit_code = 0 })
  end
  local place, err = self.ws:prepare(task, self:done_deps(task))
  if not place then
    return self:settle(id, nil, { ok = false, error = 'workspace: ' .. tostring(err) })
  end
  local backend, berr = M.backend_for(task)
  if not backend then
    return self:settle(id, nil, { ok = false, error = berr })
  end
  local attempt = self.store:start_attempt(self.run.id, id, {})
  local rec = { attempt = attempt, started = core.hrtime(), place = place }
  self.running[id] = rec
  -- from here on the task is recorded running: whatever raises (a user's
  -- launcher, a backend) must end it, or the run would wait for it forever
  local ok, err2 = xpcall(self.start_backend, debug.traceback, self, id, task, backend, rec)
  if not ok then
    if rec.handle and rec.handle.cancel then pcall(rec.handle.cancel, 0) end
    if self.running[id] == rec then
      self:settle(id, rec, { ok = false, error = 'could not start: ' .. tostring(err2) })
    end
  end
end

-- The longest timeout a timer can take (ms in a 32-bit int, ~24 days).
local MAX_TIMEOUT_S = 2147483

function Engine:start_backend(id, task, backend, rec)
  local place, attempt = rec.place, rec.attempt
  self:emit({ kind = 'task', task = id, status = 'running', attempt = attempt })
  if place.branch or place.worktree then
    self:set_task(id, { branch = place.branch, worktree = place.worktree })
  end
  local handle, serr = backend.start({
    task = task, cwd = place.cwd, env = self:task_env(task, attempt, place),
    run = self.run,
    on_line = function(stream, line)
      self.store:event(self.run.id, id, attempt, stream, line)
      if self.subscribers then
        self:emit({ kind = 'output', task = id, attempt = attempt, stream = stream, data = line })
      end
    end,
    on_done = function(result) self:settle(id, rec, result) end,
  })
  if not handle then
    return self:settle(id, rec, { ok = false, error = tostring(serr) })
  end
  rec.handle = handle
  if self.running[id] ~= rec then return end -- it ended already (a synchronous on_done)
  if task.timeout then
    local ms = math.floor(math.min(task.timeout, MAX_TIMEOUT_S) * 1000)
    rec.timer = core.timer(ms, function()
      rec.timed_out = true
      handle.cancel(2000)
    end)
  end
  if handle.pid then
    self.store:note_pid(self.run.id, id, attempt, handle.pid)
  end
  self:say('%s: started (attempt %d)%s', id, attempt,
    place.worktree and (' in ' .. place.worktree) or '')
end

-- Records a task's end and tells the scheduler; rec is nil when the task
-- never started (no attempt recorded).
function Engine:settle(id, rec, result)
  local task = self.tasks[id]
  if rec then
    if rec.settled then return end -- its process ended after a failed start
    rec.settled = true
    self.running[id] = nil
    if rec.timer then rec.timer:close() rec.timer = nil end
    if rec.timed_out then
      result = { ok = false, exit_code = result.exit_code, signal = result.signal,
                 error = ('timed out after %gs'):format(task.timeout) }
    end
  end
  if rec and rec.cancelled and not self.stopping then
    self:end_attempt(id, rec, { status = 'cancelled', exit_code = result.exit_code,
      signal = result.signal, error = 'cancelled', task_status = 'cancelled' })
    self:say('%s: cancelled', id)
    return self:pump()
  end
  if self.stopping then
    if rec then self:record_interrupted(id, rec, result) end
    return
  end
  local secs = rec and (core.hrtime() - rec.started) / 1e9 or 0
  if result.ok then
    self:complete_task(id, rec, result, secs)
  else
    self:fail_task(id, task, rec, result, secs)
  end
  self:pump()
end

-- Ends an attempt in the store (and tells subscribers of a status change).
function Engine:end_attempt(id, rec, fields)
  self.store:finish_attempt(self.run.id, id, rec.attempt, fields)
  if fields.task_status then
    self:emit({ kind = 'task', task = id, status = fields.task_status,
                attempt = rec.attempt, exit_code = fields.exit_code, error = fields.error })
  end
end

function Engine:complete_task(id, rec, result, secs)
  -- The exit is recorded first, so a crash during the merge never runs the
  -- task again: resume only redoes the merge. (Not needed when finishing is
  -- a no-op, as for the in-place workspace.)
  if rec and not self.ws.trivial_finish then
    self:end_attempt(id, rec, { status = 'exited', exit_code = result.exit_code })
  end
  local ok, out = pcall(self.ws.finish, self.ws, self.tasks[id], result)
  if not ok or not out then
    out = { status = 'failed', message = 'workspace: ' .. tostring(out) }
  end
  if out.status == 'done' then
    if rec then
      self:end_attempt(id, rec, { status = 'done', exit_code = result.exit_code,
                                  task_status = 'done' })
    else
      self:set_task(id, { status = 'done', finished_at = core.time() })
    end
    self:blocked(self:sched_finish(id, 'done'))
    self:say('%s: done in %.1fs', id, secs)
    return
  end
  -- A conflict (or a failed merge) fails the task hard: its branch stays.
  self:set_task(id, { status = out.status == 'conflict' and 'conflict' or 'failed',
                      error = out.message, finished_at = core.time() })
  self:say('%s: %s%s', id, out.status == 'conflict' and 'merge conflict' or 'failed',
    out.message and (': ' .. out.message) or '')
  self:blocked(self:sched_finish(id, 'failed'))
end

function Engine:fail_task(id, task, rec, result, secs)
  local class = policy.classify(task, result)
  local status = class == 'skip' and 'skipped' or 'failed'
  local why = result.error or 'failed'
  if rec then
    self:end_attempt(id, rec, {
      status = class == 'soft' and 'failed-soft' or 'failed', exit_code = result.exit_code,
      signal = result.signal, error = why, task_status = status })
  else
    self:set_task(id, { status = status, error = why, finished_at = core.time() })
  end
  local outcome = class == 'hard' and 'failed' or (class == 'soft' and 'soft' or 'skipped')
  if class == 'soft' then self.soft_failed[id] = true end
  self:say('%s: %s (%s, %s) after %.1fs', id, status, why, class, secs)
  self:blocked(self:sched_finish(id, outcome))
end

-- The scheduler's finish, timed (e.sched_ns: time spent in the scheduler).
function Engine:sched_finish(id, outcome)
  local t0 = core.hrtime()
  local blocked = self.sched:finish(id, outcome)
  self.sched_ns = self.sched_ns + (core.hrtime() - t0)
  return blocked
end

-- Records the tasks a hard failure blocked.
function Engine:blocked(ids)
  for _, b in ipairs(ids or {}) do
    self:set_task(b, { status = 'blocked' })
    self:say('%s: blocked', b)
  end
end

function Engine:counts()
  return self.sched:counts()
end

-- Hands out every task that can start now; ends the run when none is left.
function Engine:pump()
  -- a task that settles while being launched (it could not start, or only
  -- needed its merge) is picked up by the loop below, not by recursion
  if self.stopping or self.ended or self.pumping then return end
  self.pumping = true
  local ok, err = xpcall(self.pump_ready, debug.traceback, self)
  self.pumping = false
  if not ok then error(err, 0) end
  if self.ended then return end
  -- the run can only be over when nothing runs (counts() walks every task)
  if next(self.running) ~= nil then return end
  local c = self.sched:counts()
  if c.pending + c.ready + c.running + c.paused == 0 then
    self:finish_run()
  end
end

function Engine:pump_ready()
  while true do
    local t0 = core.hrtime()
    local id = self.sched:next()
    self.sched_ns = self.sched_ns + (core.hrtime() - t0)
    if not id then break end
    self:launch(id)
    if self.ended or self.stopping then return end
  end
end

function Engine:exit_code()
  local bad = 0
  for _, t in ipairs(self.store:tasks(self.run.id)) do
    if t.status == 'failed' and not self.soft_failed[t.id] then
      bad = bad + 1
    elseif t.status == 'blocked' or t.status == 'conflict' or t.status == 'cancelled' then
      bad = bad + 1
    end
  end
  return bad == 0 and 0 or 1
end

function Engine:finish_run()
  if self.ended then return end
  self.ended = true
  local code = self:exit_code()
  local msg
  if code == 0 then
    -- a workspace answers nil/message, and false as a second value when the
    -- approved work could not be applied (a dirty tree, a conflict): exit 1
    local ok, m, applied = pcall(self.ws.complete, self.ws, self.run, { yes = self:approve() })
    msg = ok and m or ('applying the result failed: ' .. tostring(m))
    if not ok or applied == false then code = 1 end
  end
  if self.ws.close then self.ws:close() end
  self.store:set_run(self.run.id, {
    status = code == 0 and 'done' or 'failed', finished_at = core.time(),
    exit_code = code, pid = require('orch.store').NULL })
  self.store:flush()
  self.recorded_end = true
  local c = self.sched:counts()
  self:say('run %s %s: %d done, %d failed, %d skipped, %d blocked', self.run.id,
    code == 0 and 'finished' or 'failed', c.done, c.failed, c.skipped, c.blocked)
  -- where the work went matters even with --quiet
  if msg then
    if self.quiet then io.stderr:write('orch: ', msg, '\n') else self:say('%s', msg) end
  end
  if self.on_end then self.on_end(code) end
end

-- The gate before the run's work goes into the user's branch: --yes, or a
-- "y" at the prompt when stdin is a terminal. Without either, nothing is
-- applied and the workspace says how to apply it by hand.
function Engine:approve()
  if self.yes then return true end
  if not (self.ws.name ~= 'in-place' and core.isatty(0) and core.isatty(2)) then return false end
  io.stderr:write(("orch: run %s finished; apply its work to your branch? [y/N] "):format(self.run.id))
  io.stderr:flush()
  -- read on the loop, so that Ctrl+C at the prompt still stops orch (130)
  local buf, answer = '', nil
  local reader = core.ctl.stdin({
    on_data = function(d)
      buf = buf .. d
      if buf:find('\n') then answer = buf end
    end,
    on_eof = function() answer = answer or buf end,
  })
  if not reader then return false end
  while answer == nil do core.run('once') end
  reader:close()
  return answer:lower():match('^%s*y') ~= nil
end

-- The end of an attempt cut short by Ctrl+C: the task goes back to pending
-- for resume; one whose process had already succeeded is recorded 'exited',
-- so that resume only merges its work instead of running it again.
function Engine:record_interrupted(id, rec, result)
  if rec.recorded then return end
  rec.recorded = true
  if rec.finished_before then
    self.store:finish_attempt(self.run.id, id, rec.attempt, {
      status = 'exited', exit_code = 0, task_status = 'pending' })
  else
    self.store:finish_attempt(self.run.id, id, rec.attempt, {
      status = 'interrupted', exit_code = result.exit_code, signal = result.signal,
      error = 'interrupted', task_status = 'pending' })
  end
end

-- Ctrl+C / SIGTERM: 'begin' checkpoints before orch kills the processes;
-- their exits are then recorded as interrupted; 'end' flushes and closes.
function Engine:on_shutdown(phase)
  if self.ended then
    -- interrupted at the approval prompt: every task is done, the run is not
    if phase == 'begin' and not self.recorded_end then
      self.store:set_run(self.run.id, { status = 'interrupted' })
      self.store:flush()
    end
    return
  end
  if phase == 'begin' then
    -- a task whose process had already exited 0 (orch was still reading
    -- what a background child kept writing) finished before the interrupt
    for _, rec in pairs(self.running) do
      local reaped = rec.handle and rec.handle.reaped
      if reaped and reaped() == 0 then rec.finished_before = true end
      -- a paused task gets going again, so the SIGTERM that follows reaches it
      if rec.paused and rec.handle.kill then rec.handle.kill('SIGCONT') end
    end
    self.stopping = true
    self.store:set_run(self.run.id, { status = 'interrupted' })
    self:say('interrupted: %d running task(s) stopped; `orch resume %s` carries on',
      self:running_count(), self.run.id)
  else
    for id, rec in pairs(self.running) do self:record_interrupted(id, rec, {}) end
    self.store:close()
  end
end

-- ---------------------------------------------------------------- control
-- What a person can do to a live run (through `orch repl` or the control
-- socket). Each returns true, or nil and a message.

function Engine:check_task(id)
  if not self.tasks[id] then return nil, 'no task ' .. tostring(id) end
  return self.tasks[id]
end

-- Pauses a task: a running one is stopped (SIGSTOP to its process group), a
-- waiting one is not handed out until resumed.
function Engine:pause(id)
  local ok, e = self:check_task(id)
  if not ok then return nil, e end
  local rec = self.running[id]
  if rec then
    if rec.paused then return true end
    if not (rec.handle and rec.handle.kill) then return nil, 'its backend cannot pause' end
    rec.handle.kill('SIGSTOP')
    rec.paused = true
  else
    local st = self.sched:state(id)
    if st ~= 'pending' and st ~= 'ready' and st ~= 'paused' then
      return nil, ('task %s is %s'):format(id, st)
    end
    self.sched:pause(id)
  end
  self:emit({ kind = 'task', task = id, paused = true })
  self:say('%s: paused', id)
  return true
end

function Engine:resume_task(id)
  local ok, e = self:check_task(id)
  if not ok then return nil, e end
  local rec = self.running[id]
  if rec then
    if rec.paused then rec.handle.kill('SIGCONT') rec.paused = false end
  else
    self.sched:resume(id)
  end
  self:emit({ kind = 'task', task = id, paused = false })
  self:say('%s: resumed', id)
  self:pump()
  return true
end

-- Cancels a task: a running one is killed (TERM, then KILL); either way it
-- ends cancelled and its dependents are blocked.
function Engine:cancel(id)
  local ok, e = self:check_task(id)
  if not ok then return nil, e end
  local st = self.sched:state(id)
  if st == 'done' or st == 'failed' or st == 'skipped' or st == 'blocked' or st == 'cancelled' then
    return nil, ('task %s already ended (%s)'):format(id, st)
  end
  local rec = self.running[id]
  local blocked = self.sched:cancel(id)
  if rec then
    rec.cancelled = true
    if rec.paused and rec.handle.kill then rec.handle.kill('SIGCONT') end
    if rec.handle then rec.handle.cancel(2000) end
  else
    self:set_task(id, { status = 'cancelled', finished_at = core.time() })
    self:say('%s: cancelled', id)
  end
  self:blocked(blocked)
  self:pump()
  return true
end

function Engine:set_concurrency(n)
  n = tonumber(n)
  if not n or n < 1 or n ~= math.floor(n) then return nil, 'concurrency must be a whole number >= 1' end
  self.sched:set_concurrency(n)
  self.concurrency = n
  self.store:set_run(self.run.id, { concurrency = n })
  self:say('concurrency set to %d', n)
  self:pump()
  return true
end

-- Every task's state, in plan order: {id=, status=, paused=, attempt=, pid=}.
function Engine:snapshot()
  local out = {}
  for _, t in ipairs(self.plan.tasks) do
    local rec = self.running[t.id]
    local st = self.sched:state(t.id)
    out[#out + 1] = {
      id = t.id, status = st == 'paused' and 'pending' or st,
      paused = (st == 'paused') or (rec and rec.paused) or false,
      attempt = rec and rec.attempt or nil,
      pid = rec and rec.handle and rec.handle.pid or nil,
    }
  end
  return out
end

function Engine:running_count()
  local n = 0
  for _ in pairs(self.running) do n = n + 1 end
  return n
end

function Engine:start(on_end)
  self.on_end = on_end
  self.store:set_run(self.run.id, { status = 'running', started_at = self.run.started_at
    or core.time(), pid = core.getpid() })
  core.on_shutdown(function(phase) self:on_shutdown(phase) end)
  self:pump()
end

return M
