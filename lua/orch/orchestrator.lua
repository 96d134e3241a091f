-- orch.orchestrator: the orchestrator agent's conversation. It holds the
-- goal, the plan and every finished task's summary in one conversation on
-- the backend its role names, plans the goal, and answers the agents'
-- questions from that context.
--
--   local o = orchestrator.new({ repo=, run=, role=, scratch=, on_event= })
--   o:turn(prompt, function(text, err) end)   -- one turn, same conversation
--   o:plan(goal, function(plan, err) end)      -- planning, bounded retries
--   o:answer(task, question, function(answer) end)
--   o:tell(text)                                -- a summary, sent with the next turn
--   o:keep_session(fn)                          -- fn(session) whenever it changes
--
-- o.session (given to new: a stored one) continues a conversation: a run
-- resumed after a crash goes on with the one that planned it. If the
-- backend cannot continue it (its transcript is gone), the turn runs again
-- in a new conversation, told what the stored one was told since new().
--
-- Turns are queued: one at a time, in order (a conversation has one thread).
local core = require('orch.core')
local planner = require('orch.planner')

local M = {}

local O = {}
O.__index = O

M.ASK_PERSON = 'ASK_PERSON'

function M.new(o)
  local role = o.role
  if not role then
    local roles = require('orch.roles')
    local r, err = roles.for_task({ id = 'orchestrator', role = 'orchestrator' }, { repo = o.repo })
    if not r then return nil, err end
    role = r
  end
  local backend_ok, backend = pcall(require, 'orch.backends.' .. role.backend)
  if not backend_ok then
    return nil, ("orchestrator: backend '%s' is not available: %s"):format(role.backend,
      tostring(backend):match('^[^\n]*'))
  end
  -- a stored conversation continues only on the backend that holds it
  local session = o.session
  if session and session.backend ~= role.backend then session = nil end
  return setmetatable({
    repo = o.repo, run = o.run or { id = 'plan', repo = o.repo }, role = role,
    backend = backend, scratch = o.scratch, on_event = o.on_event,
    session = session, restored = session ~= nil,
    queue = {}, busy = false, notes = {}, turns = 0, plan_text = nil, env = o.env,
  }, O)
end

-- fn(session) now (when there is one) and at every change of it.
function O:keep_session(fn)
  self.on_session = fn
  if self.session then self:_session_changed() end
end

function O:_session_changed()
  if not self.on_session then return end
  local ok, e = pcall(self.on_session, self.session)
  if not ok then io.stderr:write('orch: storing the orchestrator\'s session failed: ', tostring(e), '\n') end
end

function O:tell(text)
  self.notes[#self.notes + 1] = text
end

local function scratch_dir(self)
  if self.scratch then return self.scratch end
  local base = os.getenv('TMPDIR')
  if not base or base == '' then base = '/tmp' end
  local dir = ('%s/orch-orchestrator-%d-%d'):format(base, core.getpid(), core.hrtime() % 1e9)
  core.mkdir_p(dir)
  self.scratch, self.own_scratch = dir, true
  return dir
end

function O:close()
  if self.own_scratch and self.scratch and self.scratch:match('/orch%-orchestrator%-') then
    os.execute("rm -rf '" .. self.scratch .. "'")
    self.scratch, self.own_scratch = nil, false
  end
end

-- What the orchestrator's turns cost: self.cost in all; on_cost(usd,
-- usage) is told each turn's (a run counts it against its budget), and
-- self.unbilled holds what no one was told yet (planning, before the run).
function O:_charge(ev)
  self.cost = (self.cost or 0) + ev.cost_usd
  if self.on_cost then
    local ok, e = pcall(self.on_cost, ev.cost_usd, ev.usage)
    if not ok then io.stderr:write('orch: orchestrator cost callback failed: ', tostring(e), '\n') end
  else
    self.unbilled = (self.unbilled or 0) + ev.cost_usd
  end
end

-- Bills the turns' cost to fn(usd, usage) from now on (what was unbilled first).
function O:bill_to(fn)
  self.on_cost = fn
  local u = self.unbilled
  self.unbilled = nil
  if u and u > 0 then fn(u, nil) end
end

-- The next queued turn, if none is running.
function O:_next()
  if self.busy or #self.queue == 0 then return end
  local job = table.remove(self.queue, 1)
  self.busy = true
  local prompt, told = job.prompt, self.notes
  self.notes = {}
  if #told > 0 then
    prompt = 'Since your last turn:\n' .. table.concat(told, '\n') .. '\n\n' .. prompt
  end
  local done = false
  local function finish(text, err)
    if done then return end
    done = true
    self.busy = false
    if not text and self.restored then
      -- the stored conversation cannot go on: the same turn in a new one,
      -- told what it was (this is the first turn since new(): the plan and
      -- the summaries the run told it are all in told)
      self.restored, self.session = false, nil
      for _, n in ipairs(self.notes) do told[#told + 1] = n end -- told meanwhile
      self.notes = told
      if self.on_event then
        pcall(self.on_event, { type = 'session_lost', message = tostring(err) })
      end
      table.insert(self.queue, 1, job)
      return self:_next()
    end
    self.restored = false
    local ok, e = pcall(job.cb, text, err)
    if not ok then io.stderr:write('orch: orchestrator callback failed: ', tostring(e), '\n') end
    self:_next()
  end
  local role = self.role
  local ctx = {
    run = self.run, task = { id = 'orchestrator', role = 'orchestrator', prompt = prompt },
    attempt = self.turns + 1, role = role, prompt = prompt,
    system_prompt = role.system_prompt, model = role.model, tools = 'read-only',
    cwd = self.repo, env = self.env or role.env or {}, session = self.session,
    scratch = scratch_dir(self),
    emit = function(ev)
      if ev.type == 'usage' and type(ev.cost_usd) == 'number' then self:_charge(ev) end
      if ev.type == 'session' and ev.session_id then
        self.session = { id = ev.session_id, backend = role.backend, data = ev.data }
        self:_session_changed()
      end
      if self.on_event then pcall(self.on_event, ev) end
    end,
    on_line = function() end,
    on_done = function(result)
      if result.session_id and not self.session then
        self.session = { id = result.session_id, backend = role.backend }
        self:_session_changed()
      end
      if result.ok then finish(result.text or '') else finish(nil, result.error or 'failed') end
    end,
  }
  self.turns = self.turns + 1
  local fn = (self.session and self.backend.send) or self.backend.start
  local ok, h, err = pcall(fn, ctx)
  if not ok then return finish(nil, tostring(h)) end
  if not h then return finish(nil, tostring(err)) end
end

-- One turn of the conversation: cb(text) or cb(nil, err).
function O:turn(prompt, cb)
  self.queue[#self.queue + 1] = { prompt = prompt, cb = cb }
  self:_next()
end

-- Plans the goal: cb(plan) or cb(nil, err). An invalid plan is sent back
-- with what is wrong, up to planner.MAX_TRIES replies in all.
function O:plan(goal, cb, o)
  o = o or {}
  local tries = 0
  local max = o.tries or planner.MAX_TRIES
  local function attempt(prompt)
    tries = tries + 1
    self:turn(prompt, function(text, err)
      if not text then return cb(nil, 'the orchestrator failed: ' .. tostring(err)) end
      local plan, feedback = planner.check(text, { repo = self.repo })
      if plan then
        plan.goal = plan.goal or goal
        self.plan_text = plan.text
        return cb(plan)
      end
      if self.on_event then pcall(self.on_event, { type = 'plan_rejected', message = feedback }) end
      if tries >= max then
        return cb(nil, ('no valid plan after %d replies; the last was rejected:\n%s'):format(tries, feedback))
      end
      attempt(feedback)
    end)
  end
  attempt(o.prompt or planner.prompt(goal, { repo = self.repo, files = o.files }))
end

-- Answers an agent's question from the plan context: cb(answer, to_person)
-- where to_person is true when the orchestrator could not answer.
function O:answer(task, question, cb)
  local prompt = ('Agent %s (task %s%s) asks:\n%s\n\nAnswer it briefly from the goal and the plan. ' ..
    'If only the person who set the goal can decide, reply with exactly %s.')
    :format(task.role or 'coder', task.id, task.title and (': ' .. task.title) or '', question,
            M.ASK_PERSON)
  self:turn(prompt, function(text, err)
    if not text then return cb('The orchestrator could not answer (' .. tostring(err) ..
      '); use your best judgement and say what you assumed.', false) end
    if text:find(M.ASK_PERSON, 1, true) then return cb(nil, true) end
    cb(text, false)
  end)
end

return M
