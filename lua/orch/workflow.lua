-- orch.workflow: what a workflow script is made of (docs/workflows.md).
--
-- A workflow file returns W.define{...}: a table of settings and hooks.
-- `orch run FILE` runs it with W.run(def, opts); while the run is live an
-- edit of FILE is reloaded (load, validate, swap; a broken edit keeps the
-- old hooks and says why) and the new hooks are used from the next task on.
--
--   W.define{
--     name = 'my_flow',
--     plan = function(w) ... end,                 -- optional: the plan (default:
--                                                  -- --plan FILE, or the orchestrator
--                                                  -- plans --goal)
--     on_plan = function(w, plan) end,            -- optional: adjust the plan
--     on_task_end = function(w, task, result) end,-- add follow-ups with w:add(...)
--     on_idle = function(w) end,                  -- nothing left to run: add more, or not
--     test_cmd = 'make test',                     -- the test gate's command (or false)
--     review_rounds = 2, ...                      -- any settings the hooks read
--   }
--
-- The object `w` the hooks receive: w.def (the settings), w.opts (command
-- line), w.run (id, repo), w.engine, w.plan, w.orchestrator, and the
-- helpers below (w:add, w:kind, w:origin, w:round, w:verdict, w:diff,
-- w:say, w:warn).
local cjson = require('cjson')
local core = require('orch.core')
local verdict = require('orch.verdict')

local W = {}

W.EXIT_GATE = 3 -- stopped at a gate with nobody to answer it
W.DEBOUNCE_MS = 150 -- hot reload acts this long after the last change of a file

local Flow = {}
Flow.__index = Flow
W.Flow = Flow

W.HOOKS = { 'plan', 'on_plan', 'on_task_end', 'on_idle', 'on_start', 'on_end', 'bootstrap', 'policy' }

-- Checks a definition: def, or nil and a message.
function W.validate(def, file)
  if type(def) ~= 'table' then
    return nil, ('%s: a workflow returns orch.workflow.define{...}, got %s'):format(file or '?', type(def))
  end
  for _, h in ipairs(W.HOOKS) do
    if def[h] ~= nil and type(def[h]) ~= 'function' and not (h == 'bootstrap' and type(def[h]) == 'string') then
      return nil, ('%s: %s must be a function'):format(file or '?', h)
    end
  end
  return def
end

function W.define(def)
  def.is_workflow = true
  return def
end

-- Loads a workflow file: def, or nil and "FILE:LINE: message". A file that
-- returns something else (an older script that ran itself) gives the value.
function W.load(file, opts)
  local chunk, err = loadfile(file)
  if not chunk then return nil, err end
  local ok, def = xpcall(chunk, debug.traceback, opts)
  if not ok then return nil, tostring(def), nil, true end -- raised: exit 1, not 2
  if type(def) ~= 'table' or not def.is_workflow then return nil, nil, def end
  return W.validate(def, file)
end

-- ------------------------------------------------------------ task kinds
-- Follow-up ids name what they follow: ORIGIN.review1, ORIGIN.fix1,
-- ORIGIN.test1, ORIGIN.verdict1 (asked once more for a verdict). So a
-- resumed run knows where every task stands from the ids alone.

local KINDS = { review = true, fix = true, test = true, retest = true, ask = true }

function W.parse_id(id)
  local origin, kind, n = id:match('^(.-)%.(%a+)(%d+)$')
  if origin and origin ~= '' and KINDS[kind] then return origin, kind, tonumber(n) end
  return id, nil, 0
end

function Flow:origin(task) return (W.parse_id(task.id)) end

-- 'code' for a planned task, else the follow-up's kind.
function Flow:kind(task)
  if task.id == W.GATE_ID then return 'gate' end
  local _, kind = W.parse_id(task.id)
  if kind then return kind end
  if task.cmd and not task.role then return 'cmd' end
  return (task.role == 'reviewer' and 'review') or (task.role == 'tester' and 'test') or 'code'
end

function Flow:round(task)
  local _, _, n = W.parse_id(task.id)
  return n
end

-- The next free round number for origin's follow-ups of a kind. (In a
-- hook run again on resume: the round the hook's first run added, when
-- that follow-up waits on the task the hook is for.)
function Flow:next_round(origin, kind)
  local n = 1
  local tasks = self.engine.tasks
  while tasks[('%s.%s%d'):format(origin, kind, n)] do n = n + 1 end
  local ended = self.replays[coroutine.running() or false]
  local prev = n > 1 and tasks[('%s.%s%d'):format(origin, kind, n - 1)]
  if ended and prev then
    for _, d in ipairs(prev.deps or {}) do
      if d == ended then return n - 1 end
    end
  end
  return n
end

function Flow:task(id) return self.engine.tasks[id] end

-- ------------------------------------------------------------ helpers

-- The orchestrator's turns are billed to the run (engine:orchestrator_cost).
function Flow:bill(o)
  local e = self.engine
  o:bill_to(function(usd, usage) e:orchestrator_cost(usd, usage) end)
  self:keep_session(o, e.store, e.run.id)
end

-- The orchestrator's conversation is stored with the run (now and at every
-- change), so that `orch resume` continues it.
function Flow:keep_session(o, store, run_id)
  o:keep_session(function(session) store:set_orchestrator_session(run_id, session) end)
end

-- What planning cost, recorded with a run that stops before its engine
-- starts (waiting at the plan gate): a resume counts it, and continues the
-- conversation, stored with the run.
function Flow:bill_planning(s)
  local o = self.orchestrator
  if not o then return end
  self:keep_session(o, s.store, s.run.id)
  if not (o.unbilled and o.unbilled > 0) then return end
  s.store:record(s.run.id, { kind = 'orchestrator', type = 'usage', cost_usd = o.unbilled,
                             seq = s.store:last_seq(s.run.id) + 1, t = core.time() }, function() end)
  o.unbilled = nil
end

-- A line for the person: an event ({kind='workflow', message=}) that the
-- progress lines and the TUI show, and the store keeps.
function Flow:say(fmt, ...)
  self:note(fmt:format(...), false)
end

-- A warning is shown and stored, so the person sees it at the final gate.
function Flow:warn(fmt, ...)
  local msg = fmt:format(...)
  self.warnings[#self.warnings + 1] = msg
  self:note(msg, true)
end

function Flow:note(msg, warning)
  local e = self.engine
  if e and e.record and not e.closed then
    e:record({ kind = 'workflow', message = msg, warning = warning or nil })
  else
    io.stderr:write('orch: ', warning and 'warning: ' or '', msg, '\n')
  end
end

local function dep_set(task)
  local set = {}
  for _, d in ipairs(task.deps or {}) do set[d] = true end
  if task.continues then set[task.continues] = true end
  return set
end

local function same_deps(a, b)
  local sa, sb = dep_set(a), dep_set(b)
  for d in pairs(sa) do if not sb[d] then return false end end
  for d in pairs(sb) do if not sa[d] then return false end end
  return true
end

-- Adds a task to the live run (validated as a plan's task): true, or nil, err.
-- (A hook run again on resume finds its follow-up there already, with the
-- same deps: that task is returned.)
function Flow:add(task)
  local have = type(task) == 'table' and self.engine.tasks[task.id]
  if have and same_deps(have, task) then
    return have
  end
  local ok, err = self.engine:add_task(task)
  if not ok then self:warn('could not add task %s: %s', tostring(task.id), tostring(err)) end
  return ok, err
end

-- Changes fields of a task that has not started (prompt, title, continues,
-- backend, model), stored with the run's plan: true, or nil, err (warned).
function Flow:update(id, fields)
  local ok, err = self.engine:update_task(id, fields)
  if not ok then self:warn('could not update task %s: %s', tostring(id), tostring(err)) end
  return ok, err
end

-- The verdict in a result's reply: {verdict=, reason=} or nil.
function Flow:verdict(result, kind)
  return verdict.parse(result and result.text, kind)
end

local function git(repo, args)
  local q = "'" .. tostring(repo):gsub("'", "'\\''") .. "'"
  local f = io.popen(('git -C %s %s 2>/dev/null'):format(q, args), 'r')
  if not f then return '' end
  local out = f:read(W.MAX_DIFF + 1) or ''
  f:close()
  return out
end

W.MAX_DIFF = 48 * 1024

-- The change a task made: its branch against the run's base (bounded).
function Flow:diff(task_id)
  local t = self.engine.tasks[task_id]
  local branch = ('orch/%s/%s'):format(self.run.id, t and t.continues or task_id)
  local d = git(self.run.repo, ('diff --stat --patch refs/orch/%s/base %s'):format(self.run.id, branch))
  if #d > W.MAX_DIFF then d = d:sub(1, W.MAX_DIFF) .. '\n... (diff cut at 48 KiB)\n' end
  return d
end

-- ------------------------------------------------------------ hooks

function Flow:call(name, ...)
  local fn = self.def[name]
  if not fn then return true end
  local ok, err = xpcall(fn, debug.traceback, self, ...)
  if not ok then
    self:warn('workflow hook %s failed: %s', name, tostring(err))
    return nil, err
  end
  return true, err
end

-- Swaps in a new definition of the same workflow (hot reload).
function Flow:reload()
  local def, err = W.load(self.file, self.opts)
  if not def then
    self:warn('%s not reloaded, the old version stays: %s', self.file, tostring(err))
    return nil, err
  end
  W.apply_sets(def, self.opts.set) -- the command line's settings still win
  self.def = def
  self:say('%s reloaded', self.file)
  return true
end

function W.new(def, opts, file)
  return setmetatable({ def = def, opts = opts or {}, file = file, warnings = {}, replays = {} },
    Flow)
end

-- ------------------------------------------------------------ settings

-- --set NAME=VALUE (repeatable, or comma-free list in one): numbers and
-- booleans are converted; applied over the definition's own settings.
function W.apply_sets(def, sets)
  if sets == nil then return true end
  if type(sets) == 'string' then sets = { sets } end
  for _, item in ipairs(sets) do
    local k, v = item:match('^([%w_]+)=(.*)$')
    if not k then return nil, ("--set %s: expected NAME=VALUE"):format(item) end
    if W.HOOKS_SET[k] then return nil, ('--set %s: %s is a hook, not a setting'):format(item, k) end
    if v == 'true' then v = true elseif v == 'false' then v = false
    elseif tonumber(v) then v = tonumber(v) end
    def[k] = v
  end
  return true
end
W.HOOKS_SET = {}
for _, h in ipairs(W.HOOKS) do W.HOOKS_SET[h] = true end

-- ------------------------------------------------------------ the test gate

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

-- The repository's test command, guessed from what it holds; nil if none.
function W.detect_test_cmd(root)
  if not root then return nil end
  local mk = exists(root .. '/Makefile') and io.open(root .. '/Makefile', 'rb')
  if mk then
    local text = mk:read('*a')
    mk:close()
    if text:find('\ntest:') or text:find('^test:') then return 'make test' end
  end
  local pkg = io.open(root .. '/package.json', 'rb')
  if pkg then
    local text = pkg:read('*a')
    pkg:close()
    if text:find('"test"%s*:') then return 'npm test' end
  end
  if exists(root .. '/Cargo.toml') then return 'cargo test' end
  if exists(root .. '/go.mod') then return 'go test ./...' end
  if exists(root .. '/pytest.ini') or exists(root .. '/pyproject.toml') then return 'pytest' end
  if exists(root .. '/test.sh') then return 'sh test.sh' end
  return nil
end

W.GATE_ID = 'gate.test'

-- Adds the test gate: test_cmd on everything that was merged (a worktree
-- made from the base and every done task, i.e. the integration branch),
-- not merged back itself. Returns true when it was added.
function Flow:add_test_gate()
  if self.def.test_cmd == false or self.engine.tasks[W.GATE_ID] then return false end
  local cmd = self.def.test_cmd or W.detect_test_cmd(self.run.repo)
  if not cmd then
    self:say('no test command found for the test gate (set test_cmd); skipping it')
    return false
  end
  local deps = {}
  for _, t in ipairs(self.engine.plan.tasks) do
    if self.engine.sched:state(t.id) == 'done' and t.merge ~= false then deps[#deps + 1] = t.id end
  end
  self:say('test gate: %s on the integration branch', cmd)
  return self:add({ id = W.GATE_ID, title = 'test gate: ' .. cmd, cmd = cmd, deps = deps,
                    merge = false })
end

-- ------------------------------------------------------------ running

local function err(fmt, ...) io.stderr:write('orch: ', fmt:format(...), '\n') end

-- The plan: --plan FILE, or the orchestrator's for --goal, or the
-- definition's own plan hook. Returns plan or nil, exit code.
function Flow:make_plan(loc)
  if self.def.plan then
    local ok, plan = xpcall(self.def.plan, debug.traceback, self)
    if not ok then err('%s', tostring(plan)) return nil, 2 end
    return plan
  end
  local o = self.opts
  if o.plan then
    local plan_mod = require('orch.plan')
    return plan_mod.load_or_say(o.plan)
  end
  if not o.goal then err('nothing to run: give --goal TEXT or --plan FILE') return nil, 2 end
  local orch, oerr = require('orch.orchestrator').new({ repo = loc.root, env = o.env })
  if not orch then err('%s', oerr) return nil, 2 end
  self.orchestrator = orch
  io.stderr:write(('orch: planning "%s" with the orchestrator (%s)\n'):format(o.goal, orch.role.backend))
  local box = {}
  orch:plan(o.goal, function(plan, perr) box.plan, box.err, box.done = plan, perr, true end)
  while not box.done do
    if not core.run('once') and not box.done then break end
  end
  if not box.plan then err('planning failed: %s', tostring(box.err or 'interrupted')) return nil, 1 end
  box.plan.goal = box.plan.goal or o.goal
  return box.plan
end

-- Writes the plan where a person can read and edit it: .orch/plans/NAME.json.
local function save_plan(root, plan, name)
  local dir = root .. '/.orch/plans'
  core.mkdir_p(dir)
  local path = ('%s/%s.json'):format(dir, name)
  local tasks = {}
  for _, t in ipairs(plan.tasks) do
    local c = {}
    for k, v in pairs(t) do if k ~= 'line' and k ~= 'index' then c[k] = v end end
    tasks[#tasks + 1] = c
  end
  local f = assert(io.open(path, 'wb'))
  f:write(cjson.encode({ goal = plan.goal, tasks = tasks }), '\n')
  f:close()
  return path
end

-- The plan gate: true to go on, or false and the exit code.
function Flow:plan_gate(plan, path)
  local o = self.opts
  io.stderr:write('\n', require('orch.planner').describe(plan), '\n')
  if o.yes then return true end
  if not (core.isatty(0) and core.isatty(2)) then
    err('the plan is waiting for your approval: read or edit %s, then run ' ..
        '`orch resume %s --yes` (or `orch resume %s` at a terminal)', path, self.run.id, self.run.id)
    return false, W.EXIT_GATE
  end
  while true do
    io.stderr:write(('run this plan? [y]es, [e]dit %s first, [a]bort: '):format(path))
    local answer = W.read_line()
    if answer == nil or answer:match('^%s*a') or answer:match('^%s*n') then return false, 1 end
    if answer:match('^%s*y') then return true end
    if answer:match('^%s*e') then
      io.stderr:write(('edit %s, save it, then press Enter: '):format(path))
      W.read_line()
      return 'reload'
    end
  end
end

-- One line from the terminal, read on the loop (Ctrl+C still works); nil
-- at the end of input. o.whole: text ended by Ctrl+D with no newline is no
-- answer either (nil).
function W.read_line(o)
  local box, buf = {}, ''
  local reader = core.ctl.stdin({
    on_data = function(d) buf = buf .. d if buf:find('\n') then box.done = true end end,
    on_eof = function() box.done = true box.eof = buf == '' end,
  })
  if not reader then return nil end
  while not box.done do
    if not core.run('once') and not box.done then break end
  end
  reader:close()
  if box.eof then return nil end
  if o and o.whole then
    local line = buf:match('^([^\n]*)\n')
    return line and (line:gsub('\r$', '')) or nil
  end
  return buf:match('^([^\n]*)')
end

-- The orchestrator's conversation for this run (made on first use, e.g. on
-- a resumed run or one from a plan file). A resumed run continues the one
-- stored with it (the one that planned it, told every summary since).
function Flow:orchestrator_for()
  if self.orchestrator == false then return nil end
  if not self.orchestrator then
    local e = self.engine
    local stored = self.resumed and e and e.store:orchestrator_session(self.run.id) or nil
    local o, oerr = require('orch.orchestrator').new({ repo = self.run.repo, run = self.run,
                                                       env = self.opts.env, session = stored })
    if not o then
      self:warn('no orchestrator to answer questions: %s', tostring(oerr))
      self.orchestrator = false
      return nil
    end
    self.orchestrator = o
    o.on_event = function(ev)
      if ev.type == 'session_lost' then
        self:warn('the orchestrator\'s stored conversation could not go on (%s): a new one is told ' ..
                  'the plan and the tasks', tostring(ev.message):match('^[^\n]*'))
      end
    end
    if self.engine then self:bill(o) end
    if o.restored then o:tell('(orch was stopped and has resumed this run: the plan and the tasks now)') end
    if self.plan then o:tell(W.plan_context(self.plan)) end
    if self.resumed then self:tell_finished(o) end
  end
  return self.orchestrator
end

-- The goal and the plan as the orchestrator keeps them in mind: every task
-- with its role, deps and prompt (bounded).
function W.plan_context(plan)
  local out = { 'The goal: ' .. tostring(plan.goal or ''), 'The plan:' }
  for _, t in ipairs(plan.tasks) do
    local prompt = t.prompt or t.cmd or ''
    if #prompt > 400 then prompt = prompt:sub(1, 400) .. '...' end
    out[#out + 1] = ('- %s (%s%s): %s'):format(t.id, t.role or 'cmd',
      (t.deps and #t.deps > 0) and (', after ' .. table.concat(t.deps, ', ')) or '', prompt)
  end
  return table.concat(out, '\n')
end

-- Agents' questions go to the orchestrator; what it cannot answer goes to
-- the person (a terminal prompt or the TUI), or, with nobody there, the
-- agent is told to use its judgement.
function Flow:answerer()
  return function(task, question, reply, id)
    local orch = self:orchestrator_for()
    local e = self.engine
    local function to_person()
      if e.interactive then
        return e:record({ kind = 'question', task = task and task.id, id = id, question = question,
                          to = 'person' })
      end
      reply(require('orch.engine').NO_ANSWER, 'orch')
    end
    if not orch then return to_person() end
    orch:answer(task or { id = '?' }, question, function(answer)
      if answer then return reply(answer, 'orchestrator') end
      to_person()
    end)
  end
end

-- A short summary of a finished task for the orchestrator's conversation.
local function summary(task, result)
  local text = result.text or result.error or ''
  if #text > 600 then text = text:sub(1, 600) .. '...' end
  return ('- task %s (%s) %s: %s'):format(task.id, task.role or 'cmd',
    result.ok and 'finished' or ('failed: ' .. tostring(result.error or '')), text)
end

-- A resumed run's orchestrator is told what every task that ended before
-- did, as the first one was told (the endings end hooks run for:
-- engine.ENDED): a new conversation needs it, a continued one may have
-- missed the last.
function Flow:tell_finished(o)
  local e = self.engine
  if not e then return end
  local ended = require('orch.engine').ENDED
  for _, t in ipairs(e.plan.tasks) do
    local st = e.status[t.id]
    if ended[st] then
      local ok = st == 'done'
      local row = not ok and e.store:task(e.run.id, t.id) or nil
      o:tell(summary(t, { ok = ok, error = row and row.error or (not ok and st) or nil,
                          text = e.store:last_reply(e.run.id, t.id) }))
    end
  end
end

-- Hot reload: the workflow file and the role directories are watched;
-- an edit is loaded from the next task on (a broken one is reported and
-- the old version kept).
function Flow:watch()
  self.watchers, self.watching = {}, true
  local roles = require('orch.roles')
  local root = self.run.repo
  local function on_roles()
    local ok, err2 = roles.reload({ repo = root })
    if ok then self:say('roles reloaded') else self:warn('roles not reloaded, the old ones stay: %s', err2) end
  end
  -- an editor's save is a burst of events (truncate, write, rename):
  -- act once, DEBOUNCE_MS after the last. A file is watched through its
  -- directory, so a save that replaces the file (vim, sed -i) is seen too.
  -- watch(dir, only, fn): events in dir (of the entry `only`, if given)
  local function watch(dir, only, fn)
    local timer
    local ok, w = pcall(core.watch, dir, function(name)
      if only and name and name ~= only then return end
      if timer then timer:close() end
      timer = core.timer(W.DEBOUNCE_MS, function()
        timer:close()
        timer = nil
        if self.watching then fn() end
      end)
    end)
    if ok and w then self.watchers[#self.watchers + 1] = w end
  end
  local function add(path, fn)
    local dir, base = path:match('^(.*)/([^/]+)$')
    watch(dir or path, base, fn)
  end
  local function add_dir(path, fn) watch(path, nil, fn) end
  if self.file then add(self.file, function() self:reload() end) end
  -- the failure policy, launcher and other extension points set in init.lua
  local config = require('orch.config')
  for _, f in ipairs(config.files(root)) do
    add(f, function()
      local ok, cerr = config.reload_file(f)
      if ok then self:say('%s reloaded', f) else self:warn('%s not reloaded: %s', f, tostring(cerr)) end
    end)
  end
  for _, dir in ipairs(roles.dirs(root)) do
    if core.readdir(dir) then add_dir(dir, on_roles) end
  end
end

function Flow:unwatch()
  self.watching = false
  for _, w in ipairs(self.watchers or {}) do pcall(w.close, w) end
  self.watchers = {}
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Runs the started stages to the end: tasks and their follow-ups, the
-- idle hook, the test gate, the final gate. Returns the exit code.
function W.drive(w, s)
  local run_mod = require('orch.run')
  w.run, w.plan = s.run, s.plan
  -- the hooks are in place before the first task starts
  local function bootstrap(task, place, env)
    local fn = w.def.bootstrap
    if type(fn) == 'string' then return fn end
    if type(fn) == 'function' then return fn(w, task, place, env) end
  end
  local function on_end(task, result)
    local orch = w.orchestrator
    if orch and not result.replayed then orch:tell(summary(task, result)) end
    local co = coroutine.running() or false
    if result.replayed then w.replays[co] = task.id end
    w:call('on_task_end', task, result)
    w.replays[co] = nil
  end
  -- the definition's failure policy, for this run
  if type(w.def.policy) == 'function' then
    local policy = require('orch.policy')
    local before = policy.classify_fn -- the config's, or the default
    -- (the current definition's: a reloaded one without a policy falls back)
    policy.set(function(task, result)
      local fn = w.def.policy
      if type(fn) == 'function' then return fn(task, result) end
      return before(task, result)
    end)
  end
  w.engine = run_mod.make_engine(s)
  w.engine:on_bootstrap(bootstrap)
  w.engine:on_task_end(on_end)
  w:watch()
  local e, ecode = run_mod.start_engine(s, { answerer = w:answerer(), answered_by = 'orchestrator',
    apply_gate_waits = true })
  if not e then w:unwatch() run_mod.close(s) return ecode end
  -- the orchestrator's turns (its planning first) count against the budget
  if w.orchestrator then w:bill(w.orchestrator) end
  local code
  while true do
    code = run_mod.await_end(s)
    if s.code ~= nil or e.ended then break end
    local n = count(e.tasks)
    w:call('on_idle')
    if count(e.tasks) == n and code == 0 and w.def.test_cmd ~= false then w:add_test_gate() end
    if count(e.tasks) == n then break end
  end
  w:unwatch()
  if #w.warnings > 0 then
    io.stderr:write('orch: warnings for the final gate:\n')
    for _, m in ipairs(w.warnings) do io.stderr:write('  - ', m, '\n') end
  end
  code = run_mod.apply(s, code)
  if w.orchestrator then w.orchestrator:close() end
  return code
end

-- False (said on stderr) when a planned task takes an id kept for the
-- workflow's follow-ups.
local function reserved_ok(plan, file)
  local planner = require('orch.planner')
  for _, t in ipairs(plan.tasks) do
    if planner.reserved_id(t.id) then
      err("%s:%d: task %s: ids ending in .reviewN, .fixN, .testN or .askN are kept for the " ..
          "workflow's follow-ups; pick another", tostring(file or '<plan>'), t.line or 0, t.id)
      return false
    end
  end
  return true
end

-- A fresh run of a definition: plan, plan gate, then drive. Returns the
-- exit code.
local function start(w, def, opts, file)
  local run_mod = require('orch.run')
  local ok, serr = W.apply_sets(def, opts.set)
  if not ok then err('%s', serr) return 2 end
  local loc, lerr = run_mod.locate(opts)
  if not loc or not loc.root then err('%s', tostring(lerr or 'no git repository')) return 2 end
  local cok, cerr = require('orch.config').load(loc.root)
  if not cok then err('config: %s', cerr) return 2 end
  local rok, rerr = require('orch.roles').load({ repo = loc.root })
  if not rok then err('%s', rerr) return 2 end
  require('orch.repo').prepare_state_dir(loc.root)
  local plan, code = w:make_plan(loc)
  if not plan then return code end
  if not reserved_ok(plan, plan.file or opts.plan) then return 2 end
  if def.on_plan then
    local hok, res = xpcall(def.on_plan, debug.traceback, w, plan)
    if not hok then err('workflow on_plan failed: %s', tostring(res)) return 2 end
    plan = res or plan
  end
  -- (the plan file is named after the run it starts)
  local run_id = run_mod.new_run_id()
  local path = save_plan(loc.root, plan, run_id)
  -- the reshaped plan is checked as a plan file is
  local plan_mod = require('orch.plan')
  local checked, lcode = plan_mod.load_or_say(path)
  if not checked then return lcode end
  local interactive = not opts.yes and core.isatty(0) and core.isatty(2)
  if interactive then
    w.run = { id = '(new)' }
    while true do
      local go, gcode = w:plan_gate(checked, path)
      if go == 'reload' then
        checked, lcode = plan_mod.load_or_say(path)
        if not checked then return lcode end
      elseif not go then
        io.stderr:write('orch: plan refused; nothing ran\n')
        return gcode
      else
        break
      end
    end
  end
  local o2 = {}
  for k, v in pairs(opts) do o2[k] = v end
  o2.plan, o2.workflow, o2.run_id = path, file, run_id
  if o2.merge == nil and def.merge ~= nil then o2.merge = def.merge end -- the definition's strategy
  -- the command line's settings go with the plan, for orch resume
  checked.settings = { set = opts.set, merge = opts.merge }
  local s = { loc = loc, plan = checked, o = o2 }
  if not run_mod.check_backends(checked, path, { repo = loc.root }) then return 2 end
  if not run_mod.open_store(s) then return 2 end
  local run, rcode = run_mod.prepare_workspace(s)
  if not run then return rcode end
  if not opts.yes and not interactive then
    w.run = run
    s.store:set_run(run.id, { status = 'waiting', error = 'waiting at the plan gate' })
    w:bill_planning(s)
    w:plan_gate(checked, path)
    run_mod.close(s)
    return W.EXIT_GATE
  end
  return W.drive(w, s)
end

-- (the orchestrator's scratch directory goes whichever way the run ends:
-- refused, waiting at the plan gate, failed or done)
function W.run(def, opts, file)
  local w = W.new(def, opts, file)
  local code = start(w, def, opts, file)
  if w.orchestrator then w.orchestrator:close() end
  return code
end

-- Loads and runs a workflow file (`orch run FILE`). An older script that
-- does not return W.define{...} has already run: its value is the code.
function W.run_file(file, opts)
  local def, lerr, value, raised = W.load(file, opts)
  if not def and lerr then err('%s', lerr) return raised and 1 or 2 end
  if not def then
    core.run()
    return type(value) == 'number' and value or 0
  end
  return W.run(def, opts, file)
end

-- `orch resume` of a run made by a workflow: the same definition drives
-- it again (its follow-ups are in the stored plan). s: the stages' state
-- as cli_resume prepared it.
function W.resume(def, s, file)
  -- the settings the run was started with, unless given again
  local stored = type(s.plan.settings) == 'table' and s.plan.settings or {}
  if s.o.set == nil and type(stored.set) == 'table' then s.o.set = stored.set end
  local w = W.new(def, s.o, file)
  w.resumed = true
  local ok, serr = W.apply_sets(def, s.o.set)
  if not ok then err('%s', serr) return 2 end
  local at_plan_gate = s.run.status == 'waiting' and tostring(s.run.error or ''):find('plan gate', 1, true)
  if at_plan_gate then
    local code = W.resume_plan_gate(w, s)
    if code then require('orch.run').close(s) return code end
  end
  return W.drive(w, s)
end

-- The plan file of a run waiting at the plan gate, as the person left it:
-- read again, checked, and (when it changed) made the run's plan. Returns
-- nil, or an exit code.
function W.reread_plan(s)
  local path = s.run.plan_file
  local f = path and io.open(path, 'rb')
  if not f then return nil end -- gone: the stored plan stands
  local text = f:read('*a')
  f:close()
  if text == s.plan_text then return nil end
  local plan_mod = require('orch.plan')
  local plan, lcode = plan_mod.load_or_say(path)
  if not plan then return lcode end
  if not reserved_ok(plan, path) then return 2 end
  local run_mod = require('orch.run')
  if not run_mod.check_backends(plan, path, { repo = s.loc.root }) then return 2 end
  plan.settings, plan.goal = s.plan.settings, plan.goal or s.plan.goal
  s.store:replace_tasks(s.run.id, plan.tasks)
  s.store:set_run(s.run.id, { plan_json = cjson.encode(plan) })
  s.plan, s.plan_text = plan, text
  return nil
end

-- orch resume of a run waiting at the plan gate: the plan file read again
-- (edits are the point of the gate), then the gate again unless --yes.
-- Returns nil to go on, or the exit code.
function W.resume_plan_gate(w, s)
  w.run = s.run
  local path = s.run.plan_file or '(the stored plan)'
  while true do
    local code = W.reread_plan(s)
    if code then return code end
    if s.o.yes then return nil end
    local go, gcode = w:plan_gate(s.plan, path)
    if go == true then return nil end
    if go ~= 'reload' then
      if gcode ~= W.EXIT_GATE then io.stderr:write('orch: plan refused; nothing ran\n') end
      return gcode or 1
    end
  end
end
return W
