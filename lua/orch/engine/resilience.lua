-- orch.engine.resilience: the engine's retries, circuit breakers, stall
-- detection and the run's budget (docs/resilience.md). Methods of
-- orch.engine's Engine, mixed in by orch.engine.
local core = require('orch.core')
local async = require('orch.async')
local retry = require('orch.retry')
local budget = require('orch.budget')

local M -- orch.engine (set when mixed in)
local Engine = {}

-- Retries, breakers, stalls and the run's budget (docs/resilience.md).

-- {kind='breaker', backend=, endpoint=, model=, state=, was=} on every change.
function Engine:breaker_event(b, old)
  self:record({ kind = 'breaker', backend = b.backend, endpoint = b.endpoint, model = b.model,
                state = b.state, was = old, failures = #b.fails,
                cooldown = b.state == 'open' and b.cfg.cooldown or nil })
end

-- Waits (a coroutine, without its slot) while the breaker of the task's backend is open, or
-- switches to the role's fallback_backend / fallback_model. Returns false
-- when the task ended meanwhile (cancelled, the run stopping).
function Engine:pass_breaker(id, rec)
  local role = rec.role
  if not role or role.backend == 'exec' then return true end
  local noted = false
  while true do
    local b = self.breakers:get(rec.role, rec.role.env)
    local ok, wait = self.breakers:allow(b)
    if ok then
      rec.breaker = b
      if noted then
        self:record({ kind = 'task', task = id, message = ('breaker %s: going on'):format(b.state) })
      end
      return true
    end
    if self:fall_back(id, rec) then noted = false
    else
      if not noted then
        noted = true
        self:record({ kind = 'task', task = id, message = ('waiting: the breaker of %s %s is open')
          :format(b.backend, b.endpoint) })
      end
      -- (its slot goes to another task meanwhile)
      self:without_slot(id, rec, function()
        async.wait(function(cb) local t t = core.timer(math.max(50, math.floor(wait * 1000)),
          function() t:close() cb() end) end)
      end)
    end
    if rec.cancelled or self.stopping or self.closed then
      if rec.cancelled and not rec.settled then self:settle(id, rec, { ok = false, error = 'cancelled' }) end
      return false
    end
  end
end

-- The role's fallback (another backend or model) when its own breaker is
-- open and the fallback's is not; true when rec now uses it.
function Engine:fall_back(id, rec)
  local role = rec.role
  if rec.fell_back or not (role.fallback_backend or role.fallback_model) then return false end
  local alt = M.copy(role)
  alt.backend = role.fallback_backend or role.backend
  alt.model = role.fallback_model or (role.fallback_backend and nil) or role.model
  alt.fallback_backend, alt.fallback_model = nil, nil
  -- a role's endpoint is its own backend's: the fallback uses the vendor's variables
  if alt.backend ~= role.backend then alt.endpoint = nil end
  local fb = self.breakers:get(alt, alt.env)
  if fb.state == 'open' then return false end
  local mod, merr = M.backend_module(alt.backend)
  if not mod then
    self:record({ kind = 'task', task = id, message = 'no fallback: ' .. tostring(merr) })
    rec.fell_back = true
    return false
  end
  rec.fell_back = true
  if alt.backend ~= role.backend then rec.session, rec.resume, rec.retrying = nil, false, false end
  rec.role, rec.backend = alt, mod
  self:record({ kind = 'task', task = id, backend = alt.backend, model = alt.model,
                message = ('falling back to %s%s: the breaker of %s is open'):format(alt.backend,
                  alt.model and (' ' .. alt.model) or '', role.backend) },
    function() self.store:set_task(self.run.id, id, { backend = alt.backend, model = alt.model }) end)
  return true
end

function Engine:breaker_verdict(rec, result)
  local b = rec.breaker
  if not b then return end
  rec.breaker = nil
  if result.ok then return self.breakers:success(b) end
  if result.cancelled or rec.cancelled then return self.breakers:release(b) end
  self.breakers:failure(b, result)
end

-- No event (an output line, an agent event) for the role's stall_timeout:
-- the agent's process group is cancelled and the turn ends as a retryable
-- failure (settle). Checked four times per period.
function Engine:watch_stall(_id, rec)
  local role = rec.role or {}
  if role.backend == 'exec' then return end
  local limit = tonumber(role.stall_timeout) or M.STALL_TIMEOUT
  if limit <= 0 then return end
  local ms = math.floor(math.min(limit, M.MAX_TIMEOUT_S) * 1000)
  local step = math.max(25, math.floor(ms / 4))
  local seen, since = -1, core.now()
  rec.stall_timer = core.timer(step, step, function()
    local beats = rec.beats or 0
    local now = core.now()
    if beats ~= seen then seen, since = beats, now return end
    if now - since >= ms and not rec.settled and rec.handle then
      rec.stalled = limit
      if rec.stall_timer then rec.stall_timer:close() rec.stall_timer = nil end
      if rec.paused and rec.handle.kill then rec.handle.kill('SIGCONT') end
      rec.handle.cancel(2000)
    end
  end)
end

local function short(s)
  s = tostring(s or 'an error'):gsub('%s+', ' ')
  if #s > 200 then s = s:sub(1, 200) .. '...' end
  return s
end

-- A retryable failure starts a new attempt after the retry policy's wait
-- (a timer). Returns true when it will; else result.error says why not.
function Engine:maybe_retry(id, rec, result)
  if not rec.attempt or result.cancelled or rec.cancelled or result.limit then return false end
  if retry.class(result) == 'auth' then
    result.error = ('%s (%s)'):format(tostring(result.error), retry.auth_hint(rec.role))
    return false
  end
  if not result.retryable then return false end
  local role = rec.role or {}
  local lim = role.limits or {}
  local cost = self:task_usage(id).cost
  if tonumber(lim.budget_usd) and cost and cost >= tonumber(lim.budget_usd) then
    result.limit = 'budget'
    result.error = ('%s; not retried: the task has spent its budget ($%.4f of $%.4f)')
      :format(tostring(result.error), cost, lim.budget_usd)
    return false
  end
  local tries = rec.tries or 1
  local f = { task = self.tasks[id], role = role, attempt = tries, retryable = true,
              class = retry.class(result), retry_after = tonumber(result.retry_after),
              error = result.error, http_status = result.http_status,
              elapsed = core.now() / 1000 - (rec.first_t or core.now() / 1000),
              limits = retry.limits(role) }
  local wait, why = retry.decide(f)
  if not wait then
    result.error = ('%s (%s)'):format(tostring(result.error or 'failed'), why)
    result.retries_exhausted = true
    return false
  end
  self:schedule_retry(id, rec, result, wait, f)
  return true
end

-- Gives the task's concurrency slot (and its file locks) back while wait()
-- runs (in a coroutine: a retry's backoff, an open breaker), so that other
-- ready tasks use it; then waits for a slot as any ready task does (handed
-- back by launch). Returns false when the task was cancelled or the run
-- stops meanwhile.
function Engine:without_slot(id, rec, wait)
  local function gone() return rec.cancelled or rec.settled or self.stopping or self.closed end
  if not pcall(self.sched.requeue, self.sched, id) then -- (not running there: keep it so)
    wait()
    return not gone()
  end
  self.sched:pause(id)
  self:pump()
  wait()
  if gone() then return false end
  self.sched:resume(id)
  async.wait(function(cb)
    self.slot_waiters[id] = cb
    self:pump()
  end)
  return not gone()
end

function Engine:schedule_retry(id, rec, result, wait, f)
  self:end_attempt(id, rec, { status = 'retried', exit_code = result.exit_code,
    signal = result.signal, error = result.error or 'failed' })
  local nrec = { id = id, place = rec.place, role = rec.role, backend = rec.backend,
                 tries = (rec.tries or 1) + 1, first_t = rec.first_t, waiting = true,
                 session = rec.session, resume = rec.resume, fell_back = rec.fell_back,
                 retry = { attempt = rec.attempt, error = result.error, reason = short(result.error),
                           class = f.class, replied = rec.replied or (rec.retry and rec.retry.replied) } }
  self.running[id] = nrec
  self:record({ kind = 'retry', task = id, attempt = rec.attempt, next = nrec.tries,
                wait = wait, retry_after = f.retry_after, class = f.class,
                reason = short(result.error) })
  -- the backoff gives the slot back (end_wait ends it early: budget, cancel)
  local function backoff()
    async.wait(function(cb)
      nrec.wait_timer = core.timer(math.floor(wait * 1000), function()
        if nrec.wait_timer then nrec.wait_timer:close() nrec.wait_timer = nil end
        cb()
      end)
    end)
  end
  async.run(function()
    local ok, err = xpcall(function()
      if not self:without_slot(id, nrec, backoff) then
        if nrec.cancelled and not nrec.settled then
          self:settle(id, nrec, { ok = false, error = 'cancelled' })
        end
        return
      end
      self:retry_start(id, nrec)
    end, debug.traceback)
    if not ok and not nrec.settled then
      self:settle(id, nrec, { ok = false, error = 'could not retry: ' .. tostring(err) })
    end
  end)
end

-- A task that was waiting to retry ends: cancelled, or back to pending
-- (the run's budget is spent: `orch resume` starts it again).
function Engine:end_wait(id, rec)
  if rec.wait_timer then rec.wait_timer:close() rec.wait_timer = nil end
  rec.waiting = false
  if rec.cancelled then return self:settle(id, rec, { ok = false, error = 'cancelled' }) end
  rec.settled = true
  if self.running[id] == rec then self.running[id] = nil end
  self:task_event(id, { status = 'pending', message = 'not retried now: the run\'s budget is spent' },
    function() self.store:set_task(self.run.id, id, { status = 'pending' }) end)
end

function Engine:retry_start(id, rec)
  rec.waiting = false
  if self.stopping or self.closed or rec.settled then return end
  if rec.cancelled then return self:settle(id, rec, { ok = false, error = 'cancelled' }) end
  if self.budget_spent then return self:end_wait(id, rec) end
  local task = self.tasks[id]
  -- the conversation goes on: the task's own session as stored by now
  local s = self.store:session(self.run.id, id)
  if s and s.session_id and (s.backend == nil or s.backend == rec.role.backend) then
    rec.session = { id = s.session_id, backend = s.backend, data = s.data }
    rec.resume, rec.retrying = true, true
  end
  local ev = { kind = 'task', task = id, status = 'running', role = rec.role.name,
               backend = rec.role.backend, model = rec.role.model, retry = true }
  self:record(ev, function()
    ev.attempt = self.store:start_attempt(self.run.id, id, {})
  end)
  rec.attempt, rec.started = ev.attempt, core.hrtime()
  return self:begin_backend(id, task, rec)
end

-- The orchestrator's turns (planning, answers) cost the run too:
-- {kind='orchestrator', type='usage', cost_usd=, usage=} committed, added
-- to what the run has spent, checked against its budget.
function Engine:orchestrator_cost(usd, usage)
  if type(usd) ~= 'number' or usd <= 0 then return end
  self.spent = self.spent + usd
  self:record({ kind = 'orchestrator', type = 'usage', cost_usd = usd, usage = usage }, function() end)
  self:check_budget()
end

-- After a usage event: is the run's budget spent?
function Engine:check_budget()
  if not self.budget or self.budget_spent or self.spent < self.budget then return end
  self.budget_spent = true
  self:record({ kind = 'budget', spent = self.spent, budget_usd = self.budget,
                message = ('the run\'s budget of %s is spent (%s): no new turn starts')
                  :format(budget.fmt(self.budget), budget.fmt(self.spent)) })
  for id, rec in pairs(self.running) do
    if rec.wait_timer then self:end_wait(id, rec) end
  end
  self:pump()
end

-- pump() once the budget is spent: nothing new starts; when nothing runs
-- any more, the run ends as a checkpoint (status 'budget', exit 4).
function Engine:budget_pump()
  if next(self.running) ~= nil or self.holds > 0 or self.ended then return end
  self.ended = true
  local msg = ('the run\'s budget of %s is spent (%s); `orch resume %s --budget USD` with '
    .. 'a larger amount carries on'):format(budget.fmt(self.budget), budget.fmt(self.spent), self.run.id)
  local c = self.sched:counts()
  self:record({ kind = 'run', status = 'budget', exit_code = M.EXIT_BUDGET, message = msg,
                spent = self.spent, budget_usd = self.budget,
                counts = { done = c.done, failed = c.failed, skipped = c.skipped,
                           blocked = c.blocked, cancelled = c.cancelled } },
    function()
      self.store:set_run(self.run.id, { status = 'budget', exit_code = M.EXIT_BUDGET,
        pid = require('orch.store').NULL })
    end)
  self.store:flush()
  self.recorded_end = true
  self.exit = M.EXIT_BUDGET
  if self.ws.close then self.ws:close() end
  self:close_timers()
  if self.on_end then self.on_end(M.EXIT_BUDGET) end
end

return function(engine_mod, into)
  M = engine_mod
  for k, v in pairs(Engine) do into[k] = v end
end
