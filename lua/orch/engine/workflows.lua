-- orch.engine.workflows: what workflows build on -- end hooks (and their
-- replay on resume), added and updated tasks -- and the run's questions and
-- gates. Methods of orch.engine's Engine, mixed in by orch.engine.
local async = require('orch.async')
local cjson = require('cjson')
local plan_mod = require('orch.plan')

local M -- orch.engine (set when mixed in)
local Engine = {}

-- fn(task, result) after each task ends (result: the backend's, with
-- status = the task's final status and text = the agent's final reply).
-- It runs in a coroutine and may wait (orch.async); the run does not end
-- until it returns, so it can add follow-up tasks with add_task.
function Engine:on_task_end(fn)
  self.end_hooks[#self.end_hooks + 1] = fn
end

-- Keeps the run from ending until the returned function is called.
function Engine:hold()
  self.holds = self.holds + 1
  local released = false
  return function()
    if released then return end
    released = true
    self.holds = self.holds - 1
    if self.holds == 0 then self:pump() end
  end
end

-- When every hook has returned, {kind='hooks', task=id} is recorded: a
-- run resumed after a crash in between runs the hooks of that task again
-- (replay_hooks), so a follow-up or a filled-in prompt is never lost.
function Engine:task_ended(id, result)
  local left = #self.end_hooks
  for _, fn in ipairs(self.end_hooks) do
    local release = self:hold()
    async.run(function()
      local ok, err = xpcall(fn, debug.traceback, self.tasks[id], result)
      if not ok then io.stderr:write('orch: on_task_end hook failed: ', tostring(err), '\n') end
      left = left - 1
      if left == 0 then self:record({ kind = 'hooks', task = id }, function() end) end
      release()
    end)
  end
end

-- (the statuses a task's end hooks run for: conclude's outcomes; engine.ENDED)
local HOOKED = { done = true, failed = true, ['failed-soft'] = true, skipped = true,
                 conflict = true }

-- Resume: the end hooks of tasks that ended but whose hooks had not all
-- returned when orch stopped run again, with the result as stored
-- (result.replayed = true; text: the agent's last reply).
function Engine:replay_hooks()
  if #self.end_hooks == 0 then return end
  local hooked = self.store:hooked(self.run.id)
  for _, t in ipairs(self.plan.tasks) do
    local st = self.status[t.id]
    if HOOKED[st] and not hooked[t.id] then
      self:task_ended(t.id, { ok = st == 'done', status = st, replayed = true,
                              text = self.store:last_reply(self.run.id, t.id) })
    end
  end
end

-- A task as a plan has it, checked by orch.plan's own rules (fields, types,
-- paths, ids), with deps that name tasks of this run. Returns task or nil, err.
local function check_task(raw, known)
  if type(raw) ~= 'table' then return nil, 'add_task: a task is a table' end
  local doc = {}
  for k, v in pairs(raw) do
    if k ~= 'deps' and k ~= 'continues' and not (type(v) == 'table' and next(v) == nil) then
      doc[k] = v
    end
  end
  local ok, text = pcall(cjson.encode, { tasks = { doc } })
  if not ok then return nil, 'add_task: ' .. tostring(text) end
  local plan, errs = plan_mod.parse(text, 'add_task', 'json')
  if not plan then
    local msgs = {}
    for _, e in ipairs(errs) do msgs[#msgs + 1] = e.msg end
    return nil, 'add_task: ' .. table.concat(msgs, '; ')
  end
  local t = plan.tasks[1]
  t.line = nil
  if known[t.id] then return nil, ('add_task: duplicate task id %q'):format(t.id) end
  local deps, seen = {}, {}
  if raw.deps ~= nil and type(raw.deps) ~= 'table' then
    return nil, ("add_task: task %q: 'deps' must be a list of task ids"):format(t.id)
  end
  for _, d in ipairs(raw.deps or {}) do
    if type(d) ~= 'string' then
      return nil, ("add_task: task %q: 'deps' must be a list of task ids"):format(t.id)
    elseif d == t.id then
      return nil, ('add_task: task %q depends on itself'):format(t.id)
    elseif not known[d] then
      return nil, ('add_task: task %q depends on unknown task %q'):format(t.id, d)
    elseif not seen[d] then
      seen[d] = true
      deps[#deps + 1] = d
    end
  end
  -- a continuation runs in the conversation (and worktree) of a task of
  -- this run, after it
  if raw.continues ~= nil then
    if type(raw.continues) ~= 'string' or not known[raw.continues] then
      return nil, ('add_task: task %q continues unknown task %s'):format(t.id, tostring(raw.continues))
    end
    t.continues = raw.continues
    if not seen[t.continues] then deps[#deps + 1] = t.continues end
  end
  t.deps = deps
  return t
end

-- Adds a task to the live run (a workflow's follow-up: a review, a fix).
-- Checked like a plan's task; its deps must be tasks of this run. It is
-- stored (and added to the run's plan, so resume knows it), recorded
-- ({kind='task', status='pending', added=true}) and handed out when ready.
-- Returns the task or nil, err.
function Engine:add_task(raw)
  if self.ended then return nil, 'add_task: the run has ended' end
  local task, err = check_task(raw, self.tasks)
  if not task then return nil, err end
  self.over = nil
  local ok, aerr, code = self.sched:add(task.id, { deps = task.deps, files = task.files,
                                                  weight = task.weight })
  if not ok then return nil, ('add_task: %s (%s)'):format(tostring(aerr), tostring(code)) end
  local cok, cerrs = self.sched:check()
  if not cok then
    local msgs = {}
    for _, e in ipairs(cerrs or {}) do msgs[#msgs + 1] = e.msg end
    error('add_task: the scheduler refused a checked task: ' .. table.concat(msgs, '; '))
  end
  self.plan.tasks[#self.plan.tasks + 1] = task
  if self.plan.by_id then self.plan.by_id[task.id] = task end
  self.tasks[task.id] = task
  if self.ws.know then self.ws:know(task) end
  if #task.files > 0 then self.has_files = true end
  self:task_event(task.id, { status = 'pending', added = true, title = task.title,
                             deps = task.deps }, function()
    self.store:add_tasks(self.run.id, { task })
    self.store:set_run(self.run.id, { plan_json = cjson.encode(self.plan) })
  end)
  if self.sched:state(task.id) == 'blocked' then self:blocked({ task.id }) end
  self:pump()
  return task
end

-- Changes fields of a task that has not started yet (a workflow fills in a
-- prompt once the tasks before it ended, or names the task a step
-- continues): the change is stored with the run's plan in the same
-- transaction as its event ({kind='task', updated={names}}), so a resumed
-- run sees it. Only fields that do not change the graph: prompt, title,
-- continues (a task of this run), backend, model. Returns the task, or nil,
-- err.
local UPDATABLE = { prompt = 'string', title = 'string', continues = 'string', backend = 'string',
                model = 'string' }

-- Whether task a is among b's deps, directly or through others.
function Engine:before(a, b)
  local seen, stack = {}, { b }
  while #stack > 0 do
    local t = self.tasks[table.remove(stack)]
    for _, d in ipairs(t and t.deps or {}) do
      if d == a then return true end
      if not seen[d] then seen[d] = true stack[#stack + 1] = d end
    end
  end
  return false
end

function Engine:update_task(id, fields)
  local task = self.tasks[id]
  if not task then return nil, ('update_task: no task %q in this run'):format(tostring(id)) end
  local st = self.status[id]
  if self.running[id] or (st ~= nil and st ~= 'pending' and st ~= 'blocked') then
    return nil, ('update_task: task %q has started (%s)'):format(id, tostring(st or 'running'))
  end
  local names, cols = {}, {}
  for k, v in pairs(fields) do
    local want = UPDATABLE[k]
    if not want then return nil, ('update_task: field %q cannot be changed'):format(tostring(k)) end
    if type(v) ~= want then return nil, ('update_task: %s must be a %s'):format(k, want) end
    if k == 'continues' and not self:before(v, id) then
      return nil, ('update_task: task %q cannot continue %q: it is not among its deps, directly '
        .. 'or through others'):format(id, v)
    end
    names[#names + 1] = k
    if k ~= 'continues' then cols[k] = v end
  end
  table.sort(names)
  for k, v in pairs(fields) do task[k] = v end
  self:task_event(id, { updated = names }, function()
    if next(cols) then self.store:set_task(self.run.id, id, cols) end
    self.store:set_run(self.run.id, { plan_json = cjson.encode(self.plan) })
  end)
  return task
end

-- ---------------------------------------------------------------- questions

-- An agent's question to the orchestrator (the control socket's `ask`, or
-- ctx.ask of an in-process backend). Records {kind='question', id=,
-- question=}, calls engine.answerer(task, question, reply) (a workflow sets
-- it), and on reply(answer, by) records the answer and calls cb(answer, id).
-- A person can answer any open question with answer_question(id, text);
-- the first answer wins. Returns the question's id, or nil, err.
function Engine:ask(task_id, question, cb)
  if type(question) ~= 'string' or question == '' then
    return nil, 'a question must be a non-empty string'
  end
  if task_id ~= nil and not self.tasks[task_id] then return nil, 'no task ' .. tostring(task_id) end
  self:flush_output()
  local id = self.seq + 1 -- the question event's own seq: unique in the run
  local answered = false
  local function reply(answer, by)
    if answered then return false end
    answered = true
    self.questions[id] = nil
    answer = tostring(answer)
    self:record({ kind = 'question', task = task_id, id = id, question = question,
                  answer = answer, by = by or 'orchestrator' })
    if cb then cb(answer, id) end
    return true
  end
  self.questions[id] = reply
  -- to: who is asked first; a UI asks the person only when it is them (an
  -- answerer that hands a question over records it again with to='person')
  self:record({ kind = 'question', task = task_id, id = id, question = question,
                to = self.answered_by or 'person' })
  local ok, err = xpcall(self.answerer, debug.traceback,
                         task_id and self.tasks[task_id], question, reply, id)
  if not ok then
    io.stderr:write('orch: the answerer failed: ', tostring(err), '\n')
    reply(M.NO_ANSWER, 'orch')
  end
  return id
end

-- The default answerer: a person at the terminal (or the TUI) answers the
-- open question event; with nobody there, the agent is told to go on.
function Engine:default_answer(_task, _question, reply)
  if self.interactive then return end
  reply(M.NO_ANSWER, 'orch')
end

-- A person's (or a UI's) answer to open question id.
function Engine:answer_question(id, text, by)
  local reply = self.questions[tonumber(id) or id]
  if not reply then return nil, 'no open question ' .. tostring(id) end
  reply(text, by or 'person')
  return true
end

-- The open questions: {id=, ...} list.
function Engine:open_questions()
  local out = {}
  for id in pairs(self.questions) do out[#out + 1] = id end
  table.sort(out)
  return out
end

-- ---------------------------------------------------------------- gates

-- A gate a person must pass ('apply': the run's work goes into the user's
-- branch; 'plan': a planned DAG runs). --yes passes every gate; with
-- nobody at a terminal (engine.interactive false) it stays shut. Otherwise
-- {kind='gate', gate=, status='open', message=} is recorded and the
-- calling coroutine waits for answer_gate(gate, true|false). Returns bool.
function Engine:gate(name, message)
  if self.yes then
    self:record({ kind = 'gate', gate = name, status = 'approved', by = '--yes', message = message })
    return true
  end
  if not self.interactive then return false end
  local yes = async.wait(function(cb)
    self.gates[name] = cb
    self:record({ kind = 'gate', gate = name, status = 'open', message = message })
  end)
  return yes
end

function Engine:answer_gate(name, yes)
  local cb = self.gates[name]
  if not cb then return nil, 'no open gate ' .. tostring(name) end
  self.gates[name] = nil
  self:record({ kind = 'gate', gate = name, status = yes and 'approved' or 'refused', by = 'person' })
  cb(yes and true or false)
  return true
end

return function(engine_mod, into)
  M = engine_mod
  M.check_task, M.UPDATABLE, M.ENDED = check_task, UPDATABLE, HOOKED
  for k, v in pairs(Engine) do into[k] = v end
end
