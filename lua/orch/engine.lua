-- orch.engine: one live run. It feeds the scheduler's ready tasks to their
-- backends, turns results into scheduler outcomes through the failure
-- policy, hands finished work to the workspace (worktrees and merges), and
-- checkpoints on Ctrl+C.
--
--   local e = engine.new{store=, run=, plan=, workspace=, concurrency=, done=}
--   e:subscribe(fn(ev))          -- every event, in seq order (docs/api/events.md)
--   e:start(function(exit_code) ... end)
--
-- Every state change goes through one path, Engine:record(ev, change):
-- change() writes the store (one transaction with the event's own row),
-- then the subscribers are told. Nothing here prints: progress lines, the
-- terminal prompt and the TUI are subscribers (orch.progress, orch.prompt,
-- orch.tui). Every wait (a workspace step, a gate, a question) is a
-- suspension of a coroutine (orch.async), never a nested run of the loop.
local core = require('orch.core')
local async = require('orch.async')
local cjson = require('cjson')
local plan_mod = require('orch.plan')
local policy = require('orch.policy')
local launcher = require('orch.launcher')
-- resilience (docs/resilience.md): retries, breakers, stalls, budgets
local breaker = require('orch.breaker')
local budget = require('orch.budget')

local M = {}

local Engine = {}
Engine.__index = Engine
M.Engine = Engine

M.OUTPUT_MS = 20      -- output lines wait at most this long to become an event
M.OUTPUT_BATCH = 256  -- or until this many are buffered for one task
M.EXIT_GATE = 3 -- a run that waits at a gate with nobody to ask
M.NO_ANSWER = 'No one can answer now; use your best judgement and say what you assumed.'
M.RESUME_PROMPT = 'You were interrupted; carry on with the task where you left off.'
M.RETRY_PROMPT = 'The last turn failed (%s); carry on with the task where you left off.'
M.STALL_TIMEOUT = 900 -- s without an event from an agent (role stall_timeout)
M.EXIT_BUDGET = 4     -- the run's budget is spent: a checkpoint (orch resume --budget)

-- ---------------------------------------------------------------- roles and backends

local roles_missing = false

-- orch.roles, or nil when this build has none (a module that fails to load
-- raises: a broken roles file must not be skipped silently).
local function roles_module()
  if roles_missing then return nil end
  local ok, mod = pcall(require, 'orch.roles')
  if ok then return mod end
  if tostring(mod):find("module 'orch.roles' not found", 1, true) then
    roles_missing = true
    return nil
  end
  error(mod, 0)
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end
M.copy = copy

-- The role a task runs as: {name=, backend=, model=, tools=, system_prompt=,
-- env=, ...}, or nil, err. A task with a cmd and no backend runs it (exec);
-- otherwise orch.roles decides (the task's backend and model override the
-- role's); without orch.roles, the task's own backend and model.
function M.role_for(task, run)
  if task.cmd and not task.backend then
    return { name = task.role or 'exec', backend = 'exec', tools = 'full' }
  end
  local roles = roles_module()
  local role
  if roles then
    local r, err = roles.for_task(task, { repo = run and run.repo })
    if not r then return nil, tostring(err) end
    role = copy(r)
  else
    role = { name = task.role, tools = 'edit' }
  end
  role.backend = task.backend or role.backend
  role.model = task.model or role.model
  if not role.backend then
    return nil, ("its role %s names no backend"):format(tostring(task.role))
  end
  return role
end

-- The backend module orch.backends.NAME, or nil, err.
local backend_names = {} -- name -> module name (no string built per task)

function M.backend_module(name)
  local modname = backend_names[name]
  if not modname then
    modname = 'orch.backends.' .. name
    backend_names[name] = modname
  end
  local loaded = package.loaded[modname] -- (what require would return)
  if type(loaded) == 'table' and type(loaded.start) == 'function' then return loaded end
  local ok, mod = pcall(require, modname)
  if not ok then
    if tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      return nil, ("backend '%s' is not available (no module %s; a backend is a " ..
        "file lua/orch/backends/%s.lua, see docs/api/backends.md)"):format(name, modname, name)
    end
    return nil, ("backend '%s' does not load: %s"):format(name, tostring(mod))
  end
  if type(mod) ~= 'table' or type(mod.start) ~= 'function' then
    return nil, ("backend '%s': %s has no start(ctx)"):format(name, modname)
  end
  return mod
end

-- The backend module and role for a task, or nil, err.
function M.backend_for(task, run)
  local role, err = M.role_for(task, run)
  if not role then
    err = tostring(err)
    local head = err:sub(1, #task.id + 6)
    if head == 'task ' .. task.id .. ' ' or head == 'task ' .. task.id .. ':' then return nil, err end
    return nil, ('task %s: %s'):format(task.id, err)
  end
  local b, berr = M.backend_module(role.backend)
  if not b then return nil, ('task %s: %s'):format(task.id, berr) end
  return b, role
end

-- ---------------------------------------------------------------- new

function M.new(o)
  local self = setmetatable({
    store = o.store, run = o.run, plan = o.plan, ws = o.workspace,
    concurrency = o.concurrency or 4, yes = o.yes or false,
    tasks = {}, running = {}, status = {}, stopping = false, ended = false,
    pumping = false, sched_ns = 0, holds = 0,
    subscribers = {}, outq = {}, notifying = false,
    end_hooks = {}, gates = {}, questions = {}, usage = {},
    out_dirty = {}, out_armed = false, waiting_lock = {}, slot_waiters = {},
    interactive = false, resuming = o.resume or false, resume_checked = {},
    exited = o.exited or {}, scratch = {},
  }, Engine)
  -- resilience: the run's budget and what it has cost; the breakers
  self.budget = tonumber(o.budget)
  self.spent = budget.run_cost(self.store, self.run.id)
  self.breakers = breaker.new({ now = function() return core.now() / 1000 end,
    on_change = function(b, old) self:breaker_event(b, old) end })
  self.seq = self.store:last_seq(self.run.id)
  for _, t in ipairs(o.plan.tasks) do
    self.tasks[t.id] = t
    if t.files and #t.files > 0 then self.has_files = true end
  end
  for _, t in ipairs(self.store:tasks(self.run.id)) do self.status[t.id] = t.status end
  self.sched = plan_mod.scheduler(o.plan, { concurrency = self.concurrency, done = o.done })
  self.answerer = function(task, question, reply) return self:default_answer(task, question, reply) end
  return self
end

-- ---------------------------------------------------------------- events

-- fn(ev) gets every event recorded from now on, in seq order, each once.
-- Returns the function that unsubscribes. A subscriber that raises is
-- removed (and said so on stderr).
function Engine:subscribe(fn)
  self:commit() -- what was recorded before is delivered before it subscribes
  local sub = { fn = fn, after = self.seq }
  local list = {}
  for i, s in ipairs(self.subscribers) do list[i] = s end
  list[#list + 1] = sub
  self.subscribers = list -- copied on change: a delivery in progress keeps its list
  return function() self:unsubscribe(sub) end
end

function Engine:unsubscribe(sub)
  local list = {}
  for _, s in ipairs(self.subscribers) do
    if s ~= sub then list[#list + 1] = s end
  end
  sub.gone = true
  self.subscribers = list
end

local function deliver(self, sub, ev)
  if sub.gone or ev.seq <= sub.after then return end
  local ok, err = pcall(sub.fn, ev)
  if not ok then
    self:unsubscribe(sub)
    io.stderr:write('orch: event subscriber failed and was removed: ', tostring(err), '\n')
  end
end

-- Tells subscribers, in seq order even when one of them records an event
-- while being told (it is queued and delivered after the current one).
function Engine:notify(ev)
  local q = self.outq
  q[#q + 1] = ev
  if self.notifying then return end
  self.notifying = true
  while #self.outq > 0 do
    local batch = self.outq
    self.outq = {}
    for _, e in ipairs(batch) do
      local subs = self.subscribers
      for i = 1, #subs do deliver(self, subs[i], e) end
    end
  end
  self.notifying = false
end

-- The one path of every state change: ev gets the next seq (and, when it
-- names a task, that task's status); change() writes the state it describes
-- to the store in the same transaction as the event row; then the
-- subscribers are told. Buffered output is recorded first, so that events
-- keep the order things happened in. buffered: ev changes no state (an
-- agent's text, a tool call): its row is written with the output, by the
-- store's next flush or state change, not committed on its own. grouped:
-- the change joins the turn's group (see Engine:group) and is committed at
-- the end of the turn, with the others; its subscribers are told after that
-- commit. Any other state change commits at once (an open group with it), so
-- that whatever its caller does next happens after the commit. Returns ev.
function Engine:record(ev, change, buffered, grouped)
  -- (a late line or event after the store closed has nowhere to go)
  if self.closed or not self.store.h:is_open() then return ev end
  -- output before a state event is recorded first; a buffered event (an
  -- agent's text, say) may come before the output batch it arrived with
  if ev.kind ~= 'output' and not (buffered and not change) then self:flush_output() end
  ev.seq = self.seq + 1
  ev.t = core.time()
  if ev.task and ev.status == nil then ev.status = self.status[ev.task] end
  -- (outside a loop callback there is no turn to group with: whoever runs
  -- the loop next may wait for what the change leads to, so it commits now)
  if grouped and not core.in_callback() then grouped = false end
  if grouped then self:group() end
  if ev.kind == 'output' then
    self.store:output(self.run.id, ev.task, ev.attempt, ev.stream, ev.data, ev.seq, ev.n,
                      ev.longest)
  elseif buffered and not change then
    self.store:buffer_event(self.run.id, ev)
  else
    self.store:record(self.run.id, ev, change)
  end
  self.seq = ev.seq
  if ev.kind == 'task' and ev.status then self.status[ev.task] = ev.status end
  local g = self.pending
  if not g then
    self:notify(ev)
  else
    -- subscribers get events in seq order: this one after the group's
    g.events[#g.events + 1] = ev
    if not grouped and ev.kind ~= 'output' and not (buffered and not change) then self:commit() end
  end
  return ev
end

-- ---------------------------------------------------------------- grouped commits
-- The hot path of a run (a task's end, the starts it allows) records its
-- state changes into one group per turn of the loop: one SQLite commit for
-- all of them instead of one each. Nothing acts on a grouped change before
-- the group is committed: its subscribers are told after the commit, and a
-- task recorded running is spawned after it (Engine:committed); so a kill -9
-- before the commit loses the whole group, which nobody saw and nothing
-- acted on, and resume finds the state as it was before it (docs/state.md).

-- The open group ({events=, waiters=}), opened if none is: its commit runs
-- at the start of the loop's next turn (a 0 ms timer), or earlier when a
-- state change outside the group, a snapshot or the end of the run needs it.
function Engine:group()
  local g = self.pending
  if g then return g end
  self.store:begin_group()
  g = { events = {}, waiters = {} }
  self.pending = g
  if self.commit_timer then
    self.commit_timer:start(0)
  else
    self.commit_timer = core.timer(0, function() self:commit() end)
  end
  return g
end

-- Commits the open group, then tells the subscribers its events and lets
-- its waiters go on (each waiter's error is raised after all went on).
function Engine:commit()
  local g = self.pending
  if not g then return end
  self.pending = nil
  if self.commit_timer then self.commit_timer:stop() end
  if self.store.h:is_open() then self.store:commit_group() end
  for _, ev in ipairs(g.events) do self:notify(ev) end
  local first
  for _, go_on in ipairs(g.waiters) do
    local ok, err = pcall(go_on)
    if not ok and not first then first = err end
  end
  if first then error(first, 0) end
end

-- Waits (a coroutine) until what was recorded so far is committed: before
-- acting on it (spawning a task recorded running, telling a hook a task
-- ended). Returns at once when no group is open.
function Engine:committed()
  local g = self.pending
  if not g then return end
  async.wait(function(cb) g.waiters[#g.waiters + 1] = cb end)
end

-- A task event that changes the task's status (status in fields).
function Engine:task_event(id, fields, change)
  local ev = { kind = 'task', task = id }
  for k, v in pairs(fields) do ev[k] = v end
  return self:record(ev, change)
end

-- The state of the run after the last event: {seq=, run=, tasks=} (see
-- orch.status.view; tasks carry paused, attempt and pid while live).
-- Subscribing and taking a snapshot in the same turn of the loop gives
-- every later event exactly once.
function Engine:snapshot()
  self:commit() -- a snapshot shows only committed state
  local v = require('orch.status').view(self.store, self.run.id, self)
  v.seq = self.seq
  v.counts = self:counts()
  return v
end

-- What only the live engine knows of a task: {paused=, attempt=, pid=}.
function Engine:live(id)
  local rec = self.running[id]
  -- (a live task's own state: one waiting without its slot is paused in
  -- the scheduler, not by anyone)
  local paused
  if rec then paused = rec.paused else paused = self.sched:state(id) == 'paused' end
  return { paused = paused or false, attempt = rec and rec.attempt or nil,
           pid = rec and rec.handle and rec.handle.pid or nil }
end

-- ---------------------------------------------------------------- output

-- An output event's lines, split from its data when a subscriber first
-- asks for ev.lines (most never do: the store keeps the chunk as it is).
local OUTPUT_MT = { __index = function(ev, k)
  if k ~= 'lines' then return nil end
  local lines = ev.data and require('orch.store').split_lines(ev.data) or {}
  rawset(ev, 'lines', lines)
  return lines
end }
M.OUTPUT_MT = OUTPUT_MT

-- Output is garbage soon after it arrives (a chunk is stored and
-- dropped), but LuaJIT's collector only starts a cycle once the heap has
-- doubled since the last: at millions of lines a second that is tens of MB
-- of dead chunks. Every GC_OUTPUT_BYTES of output the collector takes a
-- step of as much again, so orch's memory stays flat however much a task
-- prints (bench/output.sh).
M.GC_OUTPUT_BYTES = 1024 * 1024
local gc_debt = 0
local function collect_output(bytes)
  gc_debt = gc_debt + bytes
  if gc_debt >= M.GC_OUTPUT_BYTES then
    collectgarbage('step', math.floor(gc_debt / 1024))
    gc_debt = 0
  end
end

-- A task's output is buffered per stream and becomes one {kind='output',
-- data=, n=, longest=} event (data: n lines joined with "\n"; ev.lines
-- splits it on demand) every OUTPUT_MS (or OUTPUT_BATCH lines). Returns
-- two sinks: sink(stream, line) for one line (a backend that parses its
-- lines), chunk(stream, data, n, longest) for n lines at once (a process
-- read with chunks = true): per-call work is a table insert.
function Engine:output_sink(rec)
  local bufs, order = {}, {}
  rec.out, rec.out_order, rec.nout = bufs, order, 0
  local function add(stream, data, n, longest)
    local b = bufs[stream]
    if not b then
      b = { parts = {}, n = 0, longest = 0 }
      bufs[stream] = b
      order[#order + 1] = stream
    end
    local parts = b.parts
    parts[#parts + 1] = data
    b.n = b.n + n
    if longest > b.longest then b.longest = longest end
    rec.beats = (rec.beats or 0) + 1 -- resilience: not stalled
    collect_output(#data)
    local total = rec.nout + n
    rec.nout = total
    if total == n then self.out_dirty[rec] = true end
    if total >= M.OUTPUT_BATCH then
      self:flush_rec(rec)
    elseif not self.out_armed then
      self:arm_output()
    end
  end
  local function sink(stream, line) add(stream, line, 1, #line) end
  local function chunk(stream, data, n, longest)
    n = tonumber(n) or 1 -- (a launcher that gives lines one by one)
    if n < 1 then return end
    add(stream, data, n, tonumber(longest) or #data)
  end
  return sink, chunk
end

function Engine:arm_output()
  self.out_armed = true
  if self.out_timer then
    self.out_timer:start(M.OUTPUT_MS)
  else
    self.out_timer = core.timer(M.OUTPUT_MS, function()
      self.out_armed = false
      self:flush_output()
    end)
  end
end

function Engine:flush_rec(rec)
  if rec.nout == 0 then return end
  self.out_dirty[rec] = nil
  rec.nout = 0
  -- the sink keeps its tables: the lines are handed over, the tables emptied
  local bufs, order = rec.out, rec.out_order
  for i, stream in ipairs(order) do
    local b = bufs[stream]
    bufs[stream], order[i] = nil, nil
    local parts = b.parts
    local data = #parts == 1 and parts[1] or table.concat(parts, '\n')
    self:record(setmetatable({ kind = 'output', task = rec.id, attempt = rec.attempt,
      stream = stream, data = data, n = b.n, longest = b.longest }, OUTPUT_MT))
  end
end

function Engine:flush_output()
  if next(self.out_dirty) == nil then return end
  for rec in pairs(self.out_dirty) do self:flush_rec(rec) end
end

-- ---------------------------------------------------------------- tasks

-- The ids of a task's deps that are done (their work is merged in).
function Engine:done_deps(task)
  local deps = {}
  for _, d in ipairs(task.deps or {}) do
    if self.sched:state(d) == 'done' then deps[#deps + 1] = d end
  end
  return deps
end

local orch_exe
local function orch_binary()
  if not orch_exe then orch_exe = core.realpath('/proc/self/exe') or 'orch' end
  return orch_exe
end

function Engine:task_env(task, attempt, place, role)
  local env = {}
  for k, v in pairs(role and role.env or {}) do env[k] = v end
  for k, v in pairs(task.env or {}) do env[k] = v end
  env.ORCH_RUN = self.run.id
  env.ORCH_TASK = task.id
  env.ORCH_ATTEMPT = tostring(attempt)
  env.ORCH_REPO = self.run.repo
  env.ORCH_WORKTREE = place.cwd
  if self.control and self.control.path then env.ORCH_CONTROL = self.control:task_socket() end
  env.ORCH_PORT = self:task_port(task.id)
  return env
end

-- A free TCP port on 127.0.0.1 for the task (ORCH_PORT), the same for all
-- its attempts: tasks that start servers in parallel do not collide.
function Engine:task_port(id)
  self.ports = self.ports or {}
  if self.ports[id] then return self.ports[id] end
  local port = core.tcp_free_port('127.0.0.1')
  port = port and tostring(port) or nil
  self.ports[id] = port
  return port
end

-- The worktree bootstrap: the role's `bootstrap` command and the
-- workflow's bootstrap hooks (fn(task, place, env) -> a command or nil),
-- run in the new worktree before the agent starts (copy .env files,
-- install dependencies); their output is the task's. Waits (a coroutine).
-- Returns true, or nil and why.
function Engine:bootstrap(task, rec)
  local hooks = self.bootstrap_hooks
  local own = rec.role and type(rec.role.bootstrap) == 'string' and rec.role.bootstrap ~= ''
  if not own and not hooks then return true end
  local cmds = {}
  local env = self:task_env(task, rec.attempt, rec.place, rec.role)
  if own then cmds[#cmds + 1] = rec.role.bootstrap end
  for _, fn in ipairs(hooks or {}) do
    local c = fn(task, rec.place, env)
    if type(c) == 'string' and c ~= '' then cmds[#cmds + 1] = c end
  end
  if #cmds == 0 then return true end
  local sink, chunk = self:output_sink(rec)
  for _, cmd in ipairs(cmds) do
    sink('stderr', 'orch: bootstrap: ' .. cmd)
    local code, sig = async.wait(function(cb)
      local p, err = launcher.spawn({ argv = { 'sh', '-c', cmd }, cwd = rec.place.cwd, env = env,
        chunks = true, stdout = function(d, n, l) chunk('stdout', d, n, l) end,
        stderr = function(d, n, l) chunk('stderr', d, n, l) end,
        on_exit = function(c, g) cb(c, g) end })
      if not p then cb(nil, err) end
    end)
    -- (the agent's output gets a sink of its own: this one's lines go first)
    if rec.nout and rec.nout > 0 then self:flush_rec(rec) end
    if code ~= 0 then
      return nil, ('bootstrap `%s` failed: %s'):format(cmd,
        code == nil and tostring(sig) or (sig and ('killed by ' .. sig) or ('exit status ' .. code)))
    end
  end
  return true
end

-- fn(task, place, env) -> a shell command to run in each new worktree
-- before its agent starts (or nil): a workflow's bootstrap.
function Engine:on_bootstrap(fn)
  self.bootstrap_hooks = self.bootstrap_hooks or {}
  self.bootstrap_hooks[#self.bootstrap_hooks + 1] = fn
end

-- How a CLI backend starts the ask_orchestrator MCP server for a task.
function Engine:mcp_spec(id)
  return {
    argv = { orch_binary(), 'mcp' },
    env = { ORCH_CONTROL = self.control and self.control:task_socket() or nil,
            ORCH_RUN = self.run.id, ORCH_TASK = id },
  }
end

-- A private directory for a task outside its worktree (removed at the
-- run's end), under the per-user socket directory so that paths stay
-- short (Claude Code makes unix sockets under its TMPDIR).
function Engine:scratch_dir(id)
  if self.scratch[id] then return self.scratch[id] end
  local base = os.getenv('ORCH_SCRATCH_DIR')
  if not base then
    local dir, err = core.ctl.socket_dir()
    if not dir then return nil, err end
    base = dir
  end
  local path = ('%s/%s.scratch/%s'):format(base, self.run.id, id)
  local ok, err = core.mkdir_p(path, tonumber('700', 8))
  if not ok then return nil, err end
  self.scratch[id] = path
  self.scratch_root = ('%s/%s.scratch'):format(base, self.run.id)
  return path
end

local function remove_tree(path)
  if os.remove(path) then return end
  for _, name in ipairs(core.readdir(path) or {}) do remove_tree(path .. '/' .. name) end
  os.remove(path)
end

function Engine:remove_scratch()
  if self.scratch_root then remove_tree(self.scratch_root) end
  self.scratch, self.scratch_root = {}, nil
end

-- The session a task's turn continues, and whether it resumes a turn an
-- orch crash (or Ctrl+C) cut short: {id=, backend=, data=}, resume.
function Engine:session_for(task, role)
  local function load(tid)
    local s = self.store:session(self.run.id, tid)
    if s and s.session_id and (s.backend == nil or s.backend == role.backend) then
      return { id = s.session_id, backend = s.backend, data = s.data }
    end
  end
  if self.resuming and not self.resume_checked[task.id] then
    self.resume_checked[task.id] = true
    local attempts = self.store:attempts(self.run.id, task.id)
    local last = attempts[#attempts]
    if last and last.status == 'interrupted' then
      local own = load(task.id)
      if own then return own, true end
    end
  end
  if task.continues then return load(task.continues), false end
  return nil, false
end

-- Starts one task the scheduler handed out, in a coroutine of its own (a
-- workspace step may suspend it).
function Engine:launch(id)
  -- a task that gave its slot back while it waited (orch.engine.resilience)
  local waiter = self.slot_waiters[id]
  if waiter then
    self.slot_waiters[id] = nil
    return waiter()
  end
  local rec = { id = id }
  self.running[id] = rec
  if self.waiting_lock[id] then
    self.waiting_lock[id] = nil
    self:record({ kind = 'lock', task = id, waiting = false, files = self.tasks[id].files })
  end
  async.run(function()
    local ok, err = xpcall(self.run_task, debug.traceback, self, id, rec)
    if not ok and not rec.settled then
      if rec.handle and rec.handle.cancel then pcall(rec.handle.cancel, 0) end
      self:settle(id, rec, { ok = false, error = 'could not start: ' .. tostring(err) })
    end
  end)
end

function Engine:run_task(id, rec)
  local task = self.tasks[id]
  if self.exited[id] then
    -- resume: the task's process had succeeded (or its merge conflicted and
    -- the user resolved it): its worktree is reused and only the merge redone
    self.exited[id] = nil
    local place, perr = self.ws:prepare(task, self:done_deps(task))
    if not place then
      return self:settle(id, rec, { ok = false, error = 'workspace: ' .. tostring(perr) })
    end
    self:record({ kind = 'task', task = id, message = 'finished before; merging its work' })
    -- (the hooks get the agent's reply as stored)
    return self:settle(id, rec, { ok = true, exit_code = 0,
                                  text = self.store:last_reply(self.run.id, id) })
  end
  local place, err = self.ws:prepare(task, self:done_deps(task))
  if not place then
    return self:settle(id, rec, { ok = false, error = 'workspace: ' .. tostring(err) })
  end
  if self.stopping or rec.settled then return end
  if rec.cancelled then return self:settle(id, rec, { ok = false, error = 'cancelled' }) end
  -- a continuation talks to the same agent: the backend (and model) of the
  -- task it continues, unless it names its own
  if task.continues and not task.backend then
    local prev = self.store:task(self.run.id, task.continues)
    if prev and prev.backend then
      task.backend, task.model = prev.backend, task.model or prev.model
    end
  end
  local backend, role = M.backend_for(task, self.run)
  if not backend then return self:settle(id, rec, { ok = false, error = role }) end
  rec.place, rec.role, rec.backend = place, role, backend
  -- (before this attempt is recorded: the last one tells whether to resume)
  rec.session, rec.resume = self:session_for(task, role)
  local ev = { kind = 'task', task = id, status = 'running', role = role.name,
               backend = role.backend, model = role.model, branch = place.branch,
               worktree = place.worktree }
  self:record(ev, function()
    ev.attempt = self.store:start_attempt(self.run.id, id, { branch = place.branch,
      worktree = place.worktree, backend = role.backend, model = role.model })
  end, false, true)
  rec.attempt = ev.attempt
  rec.tries, rec.first_t = 1, core.now() / 1000
  -- (its process starts once "running" is committed, with the turn's group)
  self:committed()
  rec.started = core.hrtime()
  if self.stopping or rec.settled then return end
  if rec.cancelled then return self:settle(id, rec, { ok = false, error = 'cancelled' }) end
  if not place.reused and not place.continues then
    local bok, berr = self:bootstrap(task, rec)
    if not bok then return self:settle(id, rec, { ok = false, error = berr }) end
    if self.stopping or rec.settled then return end
  end
  return self:begin_backend(id, task, rec)
end

-- From here on the task is recorded running: whatever raises (a user's
-- launcher, a backend) must end it, or the run would wait for it forever.
function Engine:begin_backend(id, task, rec)
  local ok, err2 = xpcall(self.start_backend, debug.traceback, self, id, task, rec)
  if not ok then
    if rec.handle and rec.handle.cancel then pcall(rec.handle.cancel, 0) end
    if not rec.settled then
      self:settle(id, rec, { ok = false, error = 'could not start: ' .. tostring(err2) })
    end
  end
end

-- The longest timeout a timer can take (ms in a 32-bit int, ~24 days).
local MAX_TIMEOUT_S = 2147483
M.MAX_TIMEOUT_S = MAX_TIMEOUT_S

-- What a backend gets for one turn (docs/api/backends.md).
function Engine:context(id, task, rec)
  local role, place = rec.role, rec.place
  local session, resume = rec.session, rec.resume
  local scratch
  if role.backend ~= 'exec' then
    local serr
    scratch, serr = self:scratch_dir(id)
    if not scratch then error('scratch directory: ' .. tostring(serr), 0) end
  end
  local prompt = resume and M.RESUME_PROMPT or (task.prompt or task.title)
  local on_line, on_chunk = self:output_sink(rec)
  if rec.retrying then
    prompt = M.RETRY_PROMPT:format(rec.retry.reason)
    -- killed before any reply: the agent may never have seen the task
    if not rec.retry.replied then prompt = prompt .. '\n\nThe task:\n' .. (task.prompt or task.title or '') end
  end
  return {
    run = { id = self.run.id, repo = self.run.repo }, task = task, attempt = rec.attempt,
    role = role, prompt = prompt, retry = rec.retrying and rec.retry or nil,
    system_prompt = role.system_prompt, model = role.model, tools = role.tools or 'edit',
    cwd = place.cwd, env = self:task_env(task, rec.attempt, place, role),
    session = session, resume = resume, scratch = scratch,
    mcp = role.backend ~= 'exec' and self:mcp_spec(id) or nil,
    emit = function(ev) self:agent_event(id, rec, ev) end,
    on_line = on_line, on_chunk = on_chunk,
    on_done = function(result) self:settle(id, rec, result) end,
    ask = function(question, cb) return self:ask(id, question, cb) end,
  }
end

function Engine:start_backend(id, task, rec)
  -- resilience: an open breaker waits (or falls back) before the turn
  if not self:pass_breaker(id, rec) then return end
  local backend = rec.backend
  local ctx = self:context(id, task, rec)
  rec.ctx = ctx
  local start = backend.start
  if ctx.resume then
    start = backend.resume or backend.send or backend.start
  elseif ctx.session then
    start = backend.send or backend.start
  end
  local handle, serr = start(ctx)
  if not handle then
    if not rec.settled then self:settle(id, rec, { ok = false, error = tostring(serr) }) end
    return
  end
  rec.handle = handle
  if rec.settled then return end -- it ended already (a synchronous on_done)
  if task.timeout then
    local ms = math.floor(math.min(task.timeout, MAX_TIMEOUT_S) * 1000)
    rec.timer = core.timer(ms, function()
      rec.timed_out = true
      handle.cancel(2000)
    end)
  end
  if handle.pid then
    self.store:note_pid(self.run.id, id, rec.attempt, handle.pid)
  end
  self:watch_stall(id, rec)
end

local function add_usage(sum, u)
  for k, v in pairs(u or {}) do
    if type(v) == 'number' then sum[k] = (sum[k] or 0) + v end
  end
end

-- The usage and cost summed over every turn of a task (loaded once from
-- the store, so a resumed run goes on counting).
function Engine:task_usage(id)
  local u = self.usage[id]
  if not u then
    local t = self.store:task(self.run.id, id) or {}
    local ok, usage = pcall(cjson.decode, t.usage_json or '{}')
    u = { cost = t.cost_usd, usage = ok and type(usage) == 'table' and usage or {} }
    self.usage[id] = u
  end
  return u
end

local COMMITTED = { session = true, usage = true, result = true, error = true }
local REPLIED = { text = true, tool_call = true, tool_result = true, result = true }

-- A backend's normalised event becomes {kind='agent', type=...}; a session
-- is stored (sessions row and tasks.session_id) in the event's transaction,
-- before anything acts on it; usage is summed into the task's columns.
function Engine:agent_event(id, rec, bev)
  if type(bev) ~= 'table' or type(bev.type) ~= 'string' then return end
  rec.beats = (rec.beats or 0) + 1 -- resilience: not stalled
  if REPLIED[bev.type] then rec.replied = true end
  local ev = { kind = 'agent', task = id, attempt = rec.attempt }
  for k, v in pairs(bev) do
    if k ~= 'kind' and k ~= 'task' and k ~= 'attempt' and k ~= 'seq' and k ~= 'status' then ev[k] = v end
  end
  -- a session's data (for the HTTP backends the whole conversation, sent
  -- again at every step) lives in its sessions row, not in every event
  if bev.type == 'session' then ev.data = nil end
  local change
  if bev.type == 'session' and bev.session_id then
    rec.session_id = bev.session_id
    change = function()
      self.store:set_session(self.run.id, id, rec.role and rec.role.backend, bev.session_id, bev.data)
    end
  elseif bev.type == 'usage' then
    local u = self:task_usage(id)
    add_usage(u.usage, bev.usage)
    if type(bev.cost_usd) == 'number' then u.cost = (u.cost or 0) + bev.cost_usd end
    local fields = { usage_json = cjson.encode(u.usage) }
    if u.cost then fields.cost_usd = u.cost end
    change = function() self.store:set_task(self.run.id, id, fields) end
    if type(bev.cost_usd) == 'number' then self.spent = self.spent + bev.cost_usd end
  elseif bev.type == 'result' then
    rec.text = bev.text
  end
  -- what changes no state is written with the output (batched), the rest
  -- (session, usage, the result, an error) committed at once
  self:record(ev, change, not COMMITTED[bev.type])
  if bev.type == 'usage' then self:check_budget() end
end

-- Records a task's end (settle may be called from a process callback: the
-- rest runs in a coroutine, as a workspace's merge may suspend).
function Engine:settle(id, rec, result)
  if rec.settled then return end -- its process ended after a failed start
  rec.settled = true
  if self.running[id] == rec then self.running[id] = nil end
  if rec.timer then rec.timer:close() rec.timer = nil end
  if rec.stall_timer then rec.stall_timer:close() rec.stall_timer = nil end
  if rec.nout and rec.nout > 0 then self:flush_rec(rec) end
  result = result or {}
  if rec.timed_out then
    result = { ok = false, exit_code = result.exit_code, signal = result.signal,
               error = ('timed out after %gs'):format(self.tasks[id].timeout) }
  elseif rec.stalled then
    result = { ok = false, exit_code = result.exit_code, signal = result.signal, retryable = true,
               stalled = true, error = ('stalled: no event from the agent for %g s; its processes '
                 .. 'were stopped'):format(rec.stalled) }
  end
  result.text = result.text or rec.text
  result.session_id = result.session_id or rec.session_id
  async.run(function() self:conclude(id, rec, result) end)
end

function Engine:conclude(id, rec, result)
  if rec.cancelled and not self.stopping then
    if rec.attempt then
      self:end_attempt(id, rec, { status = 'cancelled', exit_code = result.exit_code,
        signal = result.signal, error = 'cancelled', task_status = 'cancelled' })
    else
      self:task_event(id, { status = 'cancelled' }, function()
        self.store:set_task(self.run.id, id, { status = 'cancelled', finished_at = core.time() })
      end)
    end
    return self:pump()
  end
  if self.stopping then
    if rec.attempt then self:record_interrupted(id, rec, result) end
    return
  end
  local secs = rec.started and (core.hrtime() - rec.started) / 1e9 or 0
  -- resilience: the breaker's verdict, then a retry of a retryable failure
  self:breaker_verdict(rec, result)
  if not result.ok and self:maybe_retry(id, rec, result) then return self:pump() end
  if result.ok then
    self:complete_task(id, rec, result, secs)
  else
    self:fail_task(id, rec, result, secs)
  end
  result.status = self.status[id]
  -- a turn that succeeded but whose work did not merge (a conflict) did not
  -- end well: the hooks see ok = false (no review of unmerged work)
  if result.ok and result.status ~= 'done' then result.ok = false end
  if #self.end_hooks > 0 then
    -- the hooks see the end committed, and run before the starts it allows
    -- (a workflow's hook may change them: best_of_n fills in a pick's prompt)
    self:commit()
    self:task_ended(id, result)
  end
  -- (without hooks the starts it allows join the end's commit)
  self:pump()
end

-- Ends an attempt in the store; a task event when the task's status changes.
-- grouped: the change joins the turn's group (Engine:record).
function Engine:end_attempt(id, rec, fields, extra, grouped)
  local function change()
    self.store:finish_attempt(self.run.id, id, rec.attempt, fields)
  end
  local ev = { kind = 'task', task = id, attempt = rec.attempt, exit_code = fields.exit_code,
               error = fields.error, status = fields.task_status }
  for k, v in pairs(extra or {}) do ev[k] = v end
  self:record(ev, change, false, grouped)
end

function Engine:complete_task(id, rec, result, secs)
  local task = self.tasks[id]
  -- The exit is recorded first, so a crash during the merge never runs the
  -- task again: resume only redoes the merge. (Not needed when finishing is
  -- a no-op, as for the in-place workspace.)
  if rec.attempt and not self.ws.trivial_finish then
    -- (an in-process backend has no exit code: its success is 0 here, so
    -- that resume knows the turn finished and only the merge is left)
    self:end_attempt(id, rec, { status = 'exited', exit_code = result.exit_code or 0 },
                     { exited = true })
  end
  local ok, out = pcall(self.ws.finish, self.ws, task, result)
  if not ok or not out then
    out = { status = 'failed', message = 'workspace: ' .. tostring(out) }
  end
  if not self.ws.trivial_finish then
    local merged = out.merged == 'kept' and 'kept' or 'merged' -- kept: merge = false
    self:record({ kind = 'merge', task = id, result = out.status == 'done' and merged or out.status,
                  message = out.message, files = out.files })
  end
  if out.status == 'done' then
    if rec.attempt then
      self:end_attempt(id, rec, { status = 'done', exit_code = result.exit_code,
                                  task_status = 'done' }, { duration = secs }, true)
    else
      self:task_event(id, { status = 'done', duration = secs }, function()
        self.store:set_task(self.run.id, id, { status = 'done', finished_at = core.time() })
      end)
    end
    self:blocked(self:sched_finish(id, 'done'))
    return
  end
  -- A conflict (or a failed merge) fails the task hard: its branch stays.
  local status = out.status == 'conflict' and 'conflict' or 'failed'
  self:task_event(id, { status = status, error = out.message, duration = secs }, function()
    self.store:set_task(self.run.id, id, { status = status, error = out.message,
                                           finished_at = core.time() })
  end)
  self:blocked(self:sched_finish(id, 'failed'))
end

function Engine:fail_task(id, rec, result, secs)
  local class = policy.classify(self.tasks[id], result)
  local status = class == 'skip' and 'skipped' or 'failed'
  local why = result.error or 'failed'
  if rec.attempt then
    self:end_attempt(id, rec, {
      status = class == 'soft' and 'failed-soft' or 'failed', exit_code = result.exit_code,
      signal = result.signal, error = why, task_status = status },
      { failure = class, duration = secs }, true)
  else
    self:task_event(id, { status = status, error = why, failure = class, duration = secs },
      function()
        self.store:set_task(self.run.id, id, { status = status, error = why,
                                               finished_at = core.time() })
      end)
  end
  local outcome = class == 'hard' and 'failed' or (class == 'soft' and 'soft' or 'skipped')
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
    self:task_event(b, { status = 'blocked' }, function()
      self.store:set_task(self.run.id, b, { status = 'blocked' })
    end)
  end
end

function Engine:counts()
  return self.sched:counts()
end

-- ---------------------------------------------------------------- the run

-- Hands out every task that can start now; ends the run when none is left.
function Engine:pump()
  -- a task that settles while being launched (it could not start, or only
  -- needed its merge) is picked up by the loop below, not by recursion
  if self.stopping or self.ended or self.pumping then return end
  if self.budget_spent then return self:budget_pump() end
  self.pumping = true
  local ok, err = xpcall(self.pump_ready, debug.traceback, self)
  self.pumping = false
  if not ok then error(err, 0) end
  if self.ended or self.stopping then return end
  if self.has_files then self:note_lock_waits() end
  -- the run can only be over when nothing runs (counts() walks every task)
  if next(self.running) ~= nil or self.holds > 0 then return end
  local c = self.sched:counts()
  if c.pending + c.ready + c.running + c.paused == 0 then
    self:tasks_over()
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

-- Ready tasks that wait for another task's files: one lock event each
-- when the wait begins (and one when it ends, at launch).
function Engine:note_lock_waits()
  for _, id in ipairs(self.sched:tasks('ready')) do
    if not self.waiting_lock[id] then
      local info = self.sched:info(id)
      if info and info.waiting then
        self.waiting_lock[id] = true
        self:record({ kind = 'lock', task = id, waiting = true, files = self.tasks[id].files })
      end
    end
  end
end

-- The run's exit code from the scheduler's own account: 1 when a task
-- failed hard (a conflict counts), was blocked or was cancelled.
function Engine:exit_code()
  local c = self.sched:counts()
  local hard = c.failed - (c.soft or 0) + c.blocked + c.cancelled
  return hard == 0 and 0 or 1
end

-- Every task has ended (e.over is the exit code they give, until a task is
-- added): the run applies its work and ends (finish), unless a workflow
-- holds that stage (engine.on_tasks_over = fn(code): it calls finish(code)
-- itself, after adding tasks or not).
function Engine:tasks_over()
  local code = self:exit_code()
  self.over = code -- until a task is added
  if self.on_tasks_over then
    local fn = self.on_tasks_over
    return fn(code)
  end
  return self:finish(code)
end

-- The run's last stage: the apply gate and the workspace's complete (only
-- when every task succeeded), then the run's end event and on_end(code).
function Engine:finish(code)
  if self.ended then return end
  self.ended = true
  code = code or self:exit_code()
  async.run(function()
    local ok, err = xpcall(self.finish_steps, debug.traceback, self, code)
    if not ok then
      io.stderr:write('orch: finishing the run failed: ', tostring(err), '\n')
      if not self.recorded_end and not self.closed and not self.stopping then
        self:end_run(1, 'finishing the run failed')
      end
    end
  end)
end

function Engine:finish_steps(code)
  local msg
  if code == 0 then
    local yes = false
    if not self.ws.trivial_finish then
      yes = self:gate('apply', ('run %s finished; apply its work to your branch?'):format(self.run.id))
    end
    if self.stopping or self.closed then return end -- interrupted at the gate
    -- a workflow's run with nobody to ask waits at the gate (exit 3):
    -- `orch resume --yes` applies its work
    if not yes and self.apply_gate_waits and not self.interactive and not self.ws.trivial_finish then
      local into = ('orch/%s/integration'):format(self.run.id)
      self:record({ kind = 'gate', gate = 'apply', status = 'waiting' })
      return self:end_run(M.EXIT_GATE, ('run %s is done and waits for your approval: its work is on %s; ' ..
        '`orch resume %s --yes` applies it to your branch (or merge it yourself: git merge %s)')
        :format(self.run.id, into, self.run.id, into), 'waiting')
    end
    -- a workspace answers nil/message, and false as a second value when the
    -- approved work could not be applied (a dirty tree, a conflict): exit 1
    local ok, m, applied = pcall(self.ws.complete, self.ws, self.run, { yes = yes })
    if ok then msg = m else msg = 'applying the result failed: ' .. tostring(m) end
    if not ok or applied == false then code = 1 end
  end
  if self.stopping or self.closed then return end
  self:end_run(code, msg)
end

function Engine:end_run(code, msg, status)
  if self.ws.close then self.ws:close() end
  local c = self.sched:counts()
  status = status or (code == 0 and 'done' or 'failed')
  self:record({ kind = 'run', status = status, exit_code = code,
                message = msg, counts = { done = c.done, failed = c.failed, skipped = c.skipped,
                                          blocked = c.blocked, cancelled = c.cancelled } },
    function()
      self.store:set_run(self.run.id, { status = status, error = status == 'waiting' and
        'waiting at the apply gate' or nil, finished_at = core.time(), exit_code = code,
        pid = require('orch.store').NULL })
    end)
  self.store:flush()
  self.recorded_end = true
  self.exit = code
  self:close_timers()
  self:remove_scratch()
  if self.on_end then self.on_end(code) end
end

function Engine:close_timers()
  if self.commit_timer then
    self:commit()
    self.commit_timer:close()
    self.commit_timer = nil
  end
  if self.out_timer then self.out_timer:close() self.out_timer = nil end
  self.out_armed = false
end

-- The end of an attempt cut short by Ctrl+C: the task goes back to pending
-- for resume; one whose process had already succeeded is recorded 'exited',
-- so that resume only merges its work instead of running it again.
function Engine:record_interrupted(id, rec, result)
  if rec.recorded then return end
  rec.recorded = true
  if rec.finished_before then
    self:end_attempt(id, rec, { status = 'exited', exit_code = 0, task_status = 'pending' },
                     { interrupted = true })
  else
    self:end_attempt(id, rec, { status = 'interrupted', exit_code = result.exit_code,
      signal = result.signal, error = 'interrupted', task_status = 'pending' },
      { interrupted = true })
  end
end

-- Ctrl+C / SIGTERM: 'begin' checkpoints before orch kills the processes;
-- their exits are then recorded as interrupted; 'end' flushes and closes.
function Engine:on_shutdown(phase, signame)
  if self.closed then return end
  if self.recorded_end then return end
  if self.ended then
    -- interrupted at the approval prompt: every task is done, the run is not
    if phase == 'begin' then
      self.stopping = true
      self:record({ kind = 'run', status = 'interrupted', signal = signame, running = 0 },
        function() self.store:set_run(self.run.id, { status = 'interrupted' }) end)
      self.store:flush()
    else
      self:close()
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
    self:record({ kind = 'run', status = 'interrupted', signal = signame,
                  running = self:running_count() },
      function() self.store:set_run(self.run.id, { status = 'interrupted' }) end)
  else
    for id, rec in pairs(self.running) do
      if rec.attempt then self:record_interrupted(id, rec, {}) end
    end
    self:close()
  end
end

-- (The scratch directories stay: an interrupted run is resumed, and a
-- backend's session may live there, as codex's CODEX_HOME does.)
function Engine:close()
  if self.closed then return end
  self:commit()
  self:flush_output()
  self:close_timers()
  self.closed = true
  self.store:close()
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
  self:record({ kind = 'task', task = id, paused = true })
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
  self:record({ kind = 'task', task = id, paused = false })
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
    -- a task still being prepared ends cancelled once its workspace step returns
    rec.cancelled = true
    if rec.paused and rec.handle and rec.handle.kill then rec.handle.kill('SIGCONT') end
    if rec.handle then rec.handle.cancel(2000) end
    if rec.wait_timer then self:end_wait(id, rec) end -- resilience: waiting to retry
    local waiter = self.slot_waiters[id] -- waiting for a slot again: it ends itself
    if waiter then
      self.slot_waiters[id] = nil
      waiter()
    end
  else
    self:task_event(id, { status = 'cancelled' }, function()
      self.store:set_task(self.run.id, id, { status = 'cancelled', finished_at = core.time() })
    end)
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
  self:record({ kind = 'run', status = 'running', concurrency = n }, function()
    self.store:set_run(self.run.id, { concurrency = n })
  end)
  self:pump()
  return true
end

function Engine:running_count()
  local n = 0
  for _ in pairs(self.running) do n = n + 1 end
  return n
end

-- Starts the run: records {kind='run', status='running'} and hands out the
-- first tasks. on_end(exit_code) is called once the run has ended.
function Engine:start(on_end)
  self.on_end = on_end
  if self.ws.know then
    for _, t in ipairs(self.plan.tasks) do self.ws:know(t) end
  end
  self:record({ kind = 'run', status = 'running', id = self.run.id, goal = self.run.goal,
                concurrency = self.concurrency, budget_usd = self.budget, spent = self.spent },
    function()
    self.store:set_run(self.run.id, { status = 'running', started_at = self.run.started_at
      or core.time(), pid = core.getpid() })
  end)
  core.on_shutdown(function(phase, signame) self:on_shutdown(phase, signame) end)
  if self.resuming then self:replay_hooks() end
  self:pump()
end

-- retries, breakers, stalls, the budget; hooks, added tasks, questions, gates
require('orch.engine.resilience')(M, Engine)
require('orch.engine.workflows')(M, Engine)

return M
