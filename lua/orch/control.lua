-- orch.control: the control socket of a live run (see docs/control.md).
--
--   local srv, err = control.start(engine, repo_root)  -- listen, write the record
--   srv:stop()                                          -- close, remove both
--   control.live_runs(repo_root) -> { {run=, socket=, pid=}, ... }  (stale ones cleaned)
--   control.find(repo_root, run_id) -> rec | nil, why
--   control.eval(session, code) -> {output=, incomplete=} | nil, {message=, traceback=}
--   control.inspect(value, [depth]) -> string
--
-- One protocol serves people and programs: a connection starts in line mode
-- (each line is Lua evaluated in the run's own state, the output written
-- back followed by a prompt); a first line "\27json" switches it to
-- newline-delimited JSON requests and replies.
local core = require('orch.core')
local cjson = require('cjson')
local repo_mod = require('orch.repo')

local M = {}

M.HELLO = '\27json'
M.PROTOCOL = 'orch-control'
M.VERSION = 1
M.INSTRUCTION_LIMIT = 1e8 -- per evaluation, as redis's script time limit
M.HOOK_STEP = 1e5
M.EVENT_QUEUE_LIMIT = 8 * 1024 * 1024 -- bytes queued before events are dropped
M.LATER = setmetatable({}, { __tostring = function() return 'control.LATER' end })
M.EVENT_TOTAL_LIMIT = 64 * 1024 * 1024 -- ... on every connection together

-- JSON-RPC's codes, plus orch's own (positive).
M.E = {
  PARSE = -32700, INVALID = -32600, METHOD = -32601, PARAMS = -32602, INTERNAL = -32603,
  EVAL = 1, TASK = 2, TOO_BIG = 3,
}

local json = cjson.new()
json.encode_sparse_array(true)
json.encode_invalid_numbers('null')
json.decode_max_depth(64)
json.encode_max_depth(64)
M.json = json

-- ================================================================ printing

local function is_ident(k)
  return type(k) == 'string' and k:match('^[%a_][%w_]*$') ~= nil
end

local function sort_keys(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == 'number' or ta == 'string' then return a < b end
  return tostring(a) < tostring(b)
end

local MAX_ITEMS = 100
M.MAX_STRING = 64 * 1024 -- a string longer than this is shown cut

local function render_string(v)
  local extra = ''
  if #v > M.MAX_STRING then
    extra = (' .. (%d more bytes)'):format(#v - M.MAX_STRING)
    v = v:sub(1, M.MAX_STRING)
  end
  return ('%q'):format(v):gsub('\\\n', '\\n') .. extra
end

-- Reads tables raw (no __index, no __pairs): printing a value must not run
-- more of its code than tostring's __tostring (which runs under the
-- evaluation's instruction limit, see M.eval).
local function render(v, depth, seen, indent)
  local t = type(v)
  if t == 'string' then return render_string(v) end
  if t ~= 'table' then return tostring(v) end
  if seen[v] then return '<cycle>' end
  if depth <= 0 then return '{...}' end
  seen[v] = true
  local parts, n = {}, #v
  for i = 1, math.min(n, MAX_ITEMS) do
    parts[#parts + 1] = render(rawget(v, i), depth - 1, seen, indent .. '  ')
  end
  local keys = {}
  for k in next, v do
    if not (type(k) == 'number' and k >= 1 and k <= n and k == math.floor(k)) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, sort_keys)
  for i, k in ipairs(keys) do
    if #parts >= MAX_ITEMS then
      parts[#parts + 1] = ('... (%d more)'):format(#keys - i + 1)
      break
    end
    local ks = is_ident(k) and k or ('[' .. render(k, 1, seen, indent) .. ']')
    parts[#parts + 1] = ks .. ' = ' .. render(rawget(v, k), depth - 1, seen, indent .. '  ')
  end
  if n > MAX_ITEMS then parts[#parts + 1] = ('... (%d more)'):format(n - MAX_ITEMS) end
  seen[v] = nil
  if #parts == 0 then return '{}' end
  local flat = '{ ' .. table.concat(parts, ', ') .. ' }'
  if #flat + #indent <= 78 and not flat:find('\n') then return flat end
  local inner = indent .. '  '
  return '{\n' .. inner .. table.concat(parts, ',\n' .. inner) .. '\n' .. indent .. '}'
end

-- A readable rendering of any value: tables sorted, nested up to depth
-- (default 4), cycles shown as <cycle>.
function M.inspect(v, depth)
  return (render(v, depth or 4, {}, ''))
end

-- ================================================================ evaluation

-- Compiles an input the way the Lua REPL does: as an expression first
-- ("return <input>"), then as statements. Returns the function, or nil and
-- 'incomplete' when the input ends inside an open construct, or nil, err.
function M.compile(code, name)
  name = name or '=repl'
  local f = loadstring('return ' .. code, name)
  if f then return f end
  local err
  f, err = loadstring(code, name)
  if f then return f end
  if err:find("<eof>'?$") then return nil, 'incomplete' end
  return nil, err
end

-- Cuts the traceback at the evaluation's own frames.
-- (the frames only: the message is not repeated; '' when none is left).
local function trim_traceback(tb)
  local out = {}
  local frames = tb:match('\nstack traceback:\n(.*)$') or ''
  for line in frames:gmatch('[^\n]+') do
    if line:find("in function 'xpcall'", 1, true) or line:find('orch/control.lua', 1, true) then
      break
    end
    if not line:find('[builtin#', 1, true) then out[#out + 1] = line end
  end
  if #out == 0 then return '' end
  return 'stack traceback:\n' .. table.concat(out, '\n')
end

M.OUTPUT_LIMIT = 1024 * 1024 -- bytes an evaluation may print (and return)

local function limit_message(limit)
  return ('evaluation stopped: more than %d instructions (an endless loop?)'):format(limit)
end

-- Runs f(...) under an instruction limit and returns ok, value-or-error,
-- and why it stopped ('limit', 'interrupted' or nil). A count hook counts
-- VM instructions; the JIT compiler is off meanwhile (compiled code runs no
-- hooks), so code the input loads itself is counted too. Once the limit is
-- passed (or SIGINT/SIGTERM arrived) the hook fires at every instruction and
-- raises each time, so no pcall or xpcall in the input can catch the stop
-- and go on. The error handler is C (no Lua instruction runs in it before
-- the hook is removed); everything orch does with the values afterwards
-- (printing results and error values, which calls their __tostring) goes
-- through this function again.
local stopped = false -- the running evaluation passed its limit

-- xpcall as the input sees it: once the evaluation is stopped, the input's
-- own error handler is not called (LuaJIT runs an error handler with hooks
-- off when the error came from a hook, so a looping handler could not be
-- stopped).
local function input_xpcall(f, handler, ...)
  return xpcall(f, function(e)
    if stopped then return e end
    return handler(e)
  end, ...)
end
M.input_xpcall = input_xpcall

local function run_limited(limit, f, ...)
  local prev = { debug.gethook() }
  local jit_was_on = jit.status()
  local steps, max, stop, guarded = 0, math.ceil(limit / M.HOOK_STEP), nil, nil
  local function hook()
    if not stop then
      steps = steps + 1
      if core.interrupted() then stop = 'interrupted'
      elseif steps >= max then stop = 'limit' end
      if not stop then return end
      stopped = true
      debug.sethook(hook, '', 1)
    end
    -- the few instructions between xpcall's return and the hook's removal
    if debug.getinfo(2, 'f').func == guarded then return end
    if stop == 'limit' then error(limit_message(limit), 2) end
    error(('evaluation stopped: %s (orch is shutting down)'):format(tostring(core.interrupted())), 2)
  end
  guarded = function(...)
    local r = { xpcall(f, debug.traceback, ...) }
    debug.sethook()
    return r
  end
  jit.off()
  stopped = false
  debug.sethook(hook, '', M.HOOK_STEP)
  local r = guarded(...)
  stopped = false
  if prev[1] then debug.sethook(prev[1], prev[2], prev[3]) end
  if jit_was_on then jit.on() end
  return r, stop
end

-- Renders v with M.inspect under the instruction limit; returns the text,
-- or a note saying why it could not be printed.
local function cannot_print(what, err)
  local why = type(err) == 'string' and err:match('^[^\n]*') or 'error'
  return ('<%s that cannot be printed: %s>'):format(what, (why:gsub('^.-:%d+: ', '')))
end

local function limited_inspect(v, limit)
  if type(v) == 'string' and #v <= M.MAX_STRING then return render_string(v) end
  local r = run_limited(limit, M.inspect, v)
  if r[1] then return r[2] end
  return cannot_print(type(v) .. ' value', r[2])
end

-- The error of a failed run_limited as {message=, traceback=}.
local function eval_error(e, stop, limit)
  if stop == 'limit' then return { message = limit_message(limit), traceback = '' } end
  if type(e) == 'string' then
    -- debug.traceback appended the frames to a string error
    local msg = e:match('^(.-)\nstack traceback:\n') or e
    return { message = msg, traceback = trim_traceback(e) }
  end
  return { message = limited_inspect(e, limit), traceback = '' }
end

-- Evaluates code in the session's environment. Returns {output=} (printed
-- text and results), {incomplete=true}, or nil, {message=, traceback=, output=}.
function M.eval(sess, code)
  local f, cerr = M.compile(code)
  if not f then
    if cerr == 'incomplete' then return { incomplete = true } end
    return nil, { message = cerr, traceback = '', output = '' }
  end
  local out, size, cut = {}, 0, false
  local function emit(s)
    if cut then return end
    if size + #s > M.OUTPUT_LIMIT then
      cut = true
      s = s:sub(1, M.OUTPUT_LIMIT - size) ..
          ('\n... (output over %d bytes: the rest was dropped)'):format(M.OUTPUT_LIMIT)
    end
    size = size + #s + 1
    out[#out + 1] = s
  end
  sess.env.print = function(...)
    local n, parts = select('#', ...), {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    emit(table.concat(parts, '\t'))
  end
  setfenv(f, sess.env)
  local limit = sess.limit or M.INSTRUCTION_LIMIT
  local r, stop = run_limited(limit, f)
  if not r[1] then
    local e = eval_error(r[2], stop, limit)
    e.output = table.concat(out, '\n')
    return nil, e
  end
  local n = table.maxn(r)
  if n > 1 then
    -- one budget for all the results (each may run a __tostring)
    local rr = run_limited(limit, function()
      local vals = {}
      for i = 2, n do vals[#vals + 1] = M.inspect(r[i]) end
      return table.concat(vals, '\t')
    end)
    emit(rr[1] and rr[2] or cannot_print('result', rr[2]))
  end
  return { output = table.concat(out, '\n') }
end

-- ================================================================ the run's API

-- What `orch` is in the REPL: the run, its tasks, and the controls. The
-- controls raise on failure (a person reads the message).
local function orch_api(e)
  local function must(ok, msg)
    if not ok then error(msg, 3) end
    return true
  end
  local api = { run = e.run, engine = e, core = core }
  function api.tasks() return e:snapshot().tasks end
  function api.task(id)
    for _, t in ipairs(e:snapshot().tasks) do if t.id == id then return t end end
    error('no task ' .. tostring(id), 2)
  end
  function api.add_task(t) return must(e:add_task(t)) and t.id end
  function api.questions() return e:open_questions() end
  function api.answer(id, text) return must(e:answer_question(id, text)) end
  function api.approve(gate) return must(e:answer_gate(gate or 'apply', true)) end
  function api.refuse(gate) return must(e:answer_gate(gate or 'apply', false)) end
  function api.pause(id) return must(e:pause(id)) end
  function api.resume(id) return must(e:resume_task(id)) end
  function api.cancel(id) return must(e:cancel(id)) end
  function api.concurrency(n)
    if n ~= nil then must(e:set_concurrency(n)) end
    return e.concurrency
  end
  function api.counts() return e:counts() end
  function api.status() return M.status(e) end
  function api.inspect(v, depth) return M.inspect(v, depth) end
  function api.help()
    return table.concat({
      'orch.run            the run (id, goal, repo, ...)',
      'orch.tasks()        every task: id, status, paused, attempt, pid, branch, ...',
      'orch.task(ID)       one task',
      'orch.counts()       tasks by status',
      'orch.pause(ID)      stop a running task (SIGSTOP) or hold a waiting one',
      'orch.resume(ID)     carry on a paused task',
      'orch.cancel(ID)     kill a task; it ends cancelled',
      'orch.concurrency([N])  read or change the concurrency limit',
      'orch.add_task{...}  add a task (as in a plan) to the live run',
      'orch.questions()    open questions; orch.answer(ID, TEXT) answers one',
      'orch.approve([GATE]) / orch.refuse([GATE])  answer an open gate (default apply)',
      'orch.engine         the engine itself (see lua/orch/engine.lua)',
      'orch.inspect(v, [depth])  render a value',
    }, '\n')
  end
  return api
end

-- The run and its tasks, as the `status` method returns them: the
-- engine's snapshot (orch.status.view, the one view `orch status` prints
-- too, plus seq and the live fields).
function M.status(e)
  local snap = e:snapshot()
  snap.run.pid = core.getpid()
  snap.run.concurrency = e.concurrency
  return snap
end

-- ================================================================ sessions

local Session = {}
Session.__index = Session

function M.new_session(e, conn)
  local s = setmetatable({ engine = e, conn = conn, mode = 'line', first = true }, Session)
  s.env = setmetatable({ orch = orch_api(e), xpcall = input_xpcall }, { __index = _G })
  return s
end

function Session:send(s)
  if self.conn and not self.conn:closed() then self.conn:write(s) end
end

function Session:send_json(t)
  local ok, s = pcall(json.encode, t)
  if not ok then
    s = json.encode({ id = t.id, error = { code = M.E.INTERNAL,
                                           message = 'reply not encodable: ' .. tostring(s) } })
  end
  self:send(s .. '\n')
end

function Session:reply_error(id, code, message, data)
  self:send_json({ id = id == nil and cjson.null or id,
                   error = { code = code, message = message, data = data } })
end

-- ---------------------------------------------------------------- methods

local function want_task(p)
  if type(p.task) ~= 'string' then return nil, 'params.task must be a string (a task id)' end
  return p.task
end

local METHODS = {}

function METHODS.ping() return 'pong' end

function METHODS.status(sess) return M.status(sess.engine) end

function METHODS.eval(sess, p)
  if type(p.code) ~= 'string' then return nil, M.E.PARAMS, 'params.code must be a string' end
  local r, e = M.eval(sess, p.code)
  if not r then
    return nil, M.E.EVAL, e.message, { traceback = e.traceback, output = e.output }
  end
  return r
end

local function control(name, method)
  METHODS[name] = function(sess, p)
    local id, perr = want_task(p)
    if not id then return nil, M.E.PARAMS, perr end
    local ok, err = method(sess.engine, id)
    if not ok then return nil, M.E.TASK, tostring(err) end
    return { ok = true, task = id }
  end
end
control('pause', function(e, id) return e:pause(id) end)
control('resume', function(e, id) return e:resume_task(id) end)
control('cancel', function(e, id) return e:cancel(id) end)

function METHODS.set_concurrency(sess, p)
  local n = p.n or p.concurrency
  if type(n) ~= 'number' or n ~= math.floor(n) or n < 1 then
    return nil, M.E.PARAMS, 'params.n must be a whole number >= 1'
  end
  local ok, err = sess.engine:set_concurrency(n)
  if not ok then return nil, M.E.TASK, tostring(err) end
  return { concurrency = n }
end

-- subscribe: the snapshot (with the seq it is consistent with) in the
-- reply, then every later event, in seq order, each once. Again while
-- subscribed: a fresh snapshot (after a 'dropped' notice, say).
function METHODS.subscribe(sess)
  if not sess.unsub then
    sess.dropped = 0
    sess.unsub = sess.engine:subscribe(function(ev) sess:push_event(ev) end)
  end
  local snap = M.status(sess.engine)
  sess.dropped = 0
  return { subscribed = true, seq = snap.seq, snapshot = snap }
end

function METHODS.unsubscribe(sess)
  if sess.unsub then sess.unsub() sess.unsub = nil end
  return { subscribed = false }
end

-- ask {task=, question=}: an agent's question to the orchestrator (orch mcp
-- relays ask_orchestrator here). The reply waits for the answer (a
-- deferred reply): {answer=, id=}.
function METHODS.ask(sess, p, reply)
  if p.task ~= nil and type(p.task) ~= 'string' then
    return nil, M.E.PARAMS, 'params.task must be a string (a task id)'
  end
  if type(p.question) ~= 'string' or p.question == '' then
    return nil, M.E.PARAMS, 'params.question must be a non-empty string'
  end
  local id, err = sess.engine:ask(p.task, p.question, function(answer, qid)
    reply({ answer = answer, id = qid })
  end)
  if not id then return nil, M.E.TASK, tostring(err) end
  return M.LATER
end

-- answer {id=, answer=}: answers an open question (a person or a UI).
function METHODS.answer(sess, p)
  if p.id == nil or type(p.answer) ~= 'string' then
    return nil, M.E.PARAMS, 'params.id and params.answer (a string) are needed'
  end
  local ok, err = sess.engine:answer_question(p.id, p.answer, p.by or 'person')
  if not ok then return nil, M.E.TASK, tostring(err) end
  return { ok = true }
end

-- gate {gate=, approve=bool}: answers an open gate.
function METHODS.gate(sess, p)
  if type(p.gate) ~= 'string' or type(p.approve) ~= 'boolean' then
    return nil, M.E.PARAMS, 'params.gate (a string) and params.approve (a boolean) are needed'
  end
  local ok, err = sess.engine:answer_gate(p.gate, p.approve)
  if not ok then return nil, M.E.TASK, tostring(err) end
  return { ok = true }
end

-- add_task {task={...}}: adds a task to the live run.
function METHODS.add_task(sess, p)
  if type(p.task) ~= 'table' then return nil, M.E.PARAMS, 'params.task must be an object' end
  local t, err = sess.engine:add_task(p.task)
  if not t then return nil, M.E.TASK, tostring(err) end
  return { ok = true, task = t.id }
end

M.METHODS = METHODS

-- What the tasks' socket (a task's $ORCH_CONTROL) serves: an agent asks
-- the orchestrator; evaluating Lua in the run, pausing, answering gates
-- and the rest stay on the run's own socket (the person's).
M.TASK_METHODS = { ping = true, ask = true }

function M.task_methods_list()
  local names = {}
  for k in pairs(M.TASK_METHODS) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ', ')
end

-- Pushes an event; drops events while the client is not reading (counted,
-- and reported as a 'dropped' event once it catches up).
function Session:push_event(ev)
  local conn = self.conn
  if not conn or conn:closed() then return end
  if conn:queued() > M.EVENT_QUEUE_LIMIT or core.ctl.total_queued() > M.EVENT_TOTAL_LIMIT then
    self.dropped = self.dropped + 1
    return
  end
  if self.dropped > 0 then
    self:send_json({ event = { kind = 'dropped', count = self.dropped, before = ev.seq } })
    self.dropped = 0
  end
  self:send(M.event_frame(ev))
end

-- The frame of an event, encoded once for every subscriber.
local frames = setmetatable({}, { __mode = 'k' })
function M.event_frame(ev)
  local f = frames[ev]
  if not f then
    local e = ev
    if ev.kind == 'output' and ev.data then
      -- an output chunk goes out as its lines, as it always did
      e = { kind = ev.kind, seq = ev.seq, t = ev.t, task = ev.task, attempt = ev.attempt,
            stream = ev.stream, status = ev.status, lines = ev.lines }
    end
    local ok, s = pcall(json.encode, { event = e })
    if not ok then
      s = json.encode({ event = { kind = ev.kind, seq = ev.seq, task = ev.task,
                                  error = 'event not encodable: ' .. tostring(s) } })
    end
    f = s .. '\n'
    frames[ev] = f
  end
  return f
end

function Session:handle_json(data)
  local ok, req = pcall(json.decode, data)
  if not ok then
    return self:reply_error(nil, M.E.PARSE, 'parse error: ' .. tostring(req):gsub('^.-: ', ''))
  end
  if type(req) ~= 'table' then
    return self:reply_error(nil, M.E.INVALID, 'a request is a JSON object')
  end
  local id = req.id
  if id ~= nil and type(id) ~= 'number' and type(id) ~= 'string' then
    return self:reply_error(nil, M.E.INVALID, 'id must be a number or a string')
  end
  if type(req.method) ~= 'string' then
    return self:reply_error(id, M.E.INVALID, 'method must be a string')
  end
  local fn = METHODS[req.method]
  if fn and self.limited and not M.TASK_METHODS[req.method] then
    return self:reply_error(id, M.E.METHOD, ('method %s is not served on the tasks\' socket ' ..
      '(it serves %s)'):format(req.method, M.task_methods_list()))
  end
  if not fn then
    return self:reply_error(id, M.E.METHOD, 'unknown method: ' .. req.method)
  end
  local p = req.params
  if p == nil or p == cjson.null then p = {} end
  if type(p) ~= 'table' then
    return self:reply_error(id, M.E.PARAMS, 'params must be an object')
  end
  local rid = id == nil and cjson.null or id
  -- a method may answer later: it returns M.LATER and calls reply(result)
  -- or reply(nil, code, message, data) once (a closed connection drops it)
  local replied = false
  local function reply(r, c, m, d)
    if replied then return end
    replied = true
    if r == nil then return self:reply_error(rid, c, m, d) end
    self:send_json({ id = rid, result = r })
  end
  local okc, res, code, msg, edata = pcall(fn, self, p, reply)
  if not okc then
    return reply(nil, M.E.INTERNAL, 'internal error: ' .. tostring(res))
  end
  if res == M.LATER then return end
  reply(res, code, msg, edata)
end

-- Line mode: each line is Lua; an unfinished chunk waits for the next line.
function Session:handle_line(line)
  line = line:gsub('\r$', '')
  local code = self.pending and (self.pending .. '\n' .. line) or line
  if code:match('^%s*$') then self.pending = nil return self:send('> ') end
  local r, e = M.eval(self, code)
  if r and r.incomplete then
    self.pending = code
    return self:send('>> ')
  end
  self.pending = nil
  local text
  if r then
    text = r.output
  else
    text = (e.output ~= '' and (e.output .. '\n') or '') .. 'error: ' .. e.message ..
           (e.traceback ~= '' and ('\n' .. e.traceback) or '')
  end
  self:send((text ~= '' and (text .. '\n') or '') .. '> ')
end

function Session:on_frame(data, _, size)
  if data == nil then
    local msg = ('frame too large (%s bytes; the limit is %d): closing'):format(
      tostring(size), core.ctl.max_frame)
    if self.mode == 'json' then
      self:reply_error(nil, M.E.TOO_BIG, msg)
    else
      self:send('error: ' .. msg .. '\n')
    end
    return self:close()
  end
  if self.first then
    self.first = false
    if data:match('^\27%s*json%s*\r?$') then
      self.mode = 'json'
      return self:send_json({ hello = { protocol = M.PROTOCOL, version = M.VERSION,
                                        run = self.engine.run.id, pid = core.getpid() } })
    end
  end
  if self.mode == 'json' then
    self:handle_json(data)
  elseif self.limited then
    self:send(('error: the tasks\' socket serves only the JSON methods %s\n'):format(
      M.task_methods_list()))
    self:close()
  else
    self:handle_line(data)
  end
end

function Session:close()
  if self.unsub then self.unsub() self.unsub = nil end
  if self.conn then self.conn:close() end
  if self.server then self.server.sessions[self] = nil end
end

-- ================================================================ live records

function M.live_dir(root) return root .. '/.orch/live' end

local function read_file(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- A record's socket must be DIR/RUN.sock with an absolute DIR and no '..'
-- (what M.start writes): a record from a cloned repository must not make
-- orch probe, or remove, a socket somewhere else.
local function valid_socket(path, id)
  if type(path) ~= 'string' or path:sub(1, 1) ~= '/' or #path > 4096 then return false end
  if path:find('/%.%.?/') or path:find('%z') then return false end
  return path:sub(-(#id + 6)) == '/' .. id .. '.sock'
end

-- The record of run id in root, or nil. id is the record's file name in
-- .orch/live/, checked as a run id before it names a path; the record's
-- own "run" field must agree with it. A record that does not pass is
-- {run=id, broken=true} (or nil when id itself is not an id).
function M.read_record(root, id)
  if not repo_mod.valid_id(id) then return nil end
  local s = read_file(M.live_dir(root) .. '/' .. id)
  if not s then return nil end
  local ok, rec = pcall(json.decode, s)
  if not ok or type(rec) ~= 'table' or (rec.run ~= nil and rec.run ~= id)
     or not valid_socket(rec.socket, id) then
    return { run = id, broken = true }
  end
  rec.run = id
  if type(rec.pid) ~= 'number' then rec.pid = nil end
  return rec
end

-- Removes a record and its socket (only a socket nobody answers on: a
-- live one, or a path that is not a socket, is left alone). Only records
-- read_record returned: their run is a checked id, their socket checked.
function M.clean(root, rec)
  if not repo_mod.valid_id(rec.run) then return end
  os.remove(M.live_dir(root) .. '/' .. rec.run)
  if rec.socket and valid_socket(rec.socket, rec.run) then
    core.ctl.clear_stale(rec.socket)
    core.ctl.clear_stale((rec.socket:gsub('%.sock$', '.tasks.sock')))
  end
end

-- Whether a record names a live run: its socket answers. Returns true; or
-- false, why, stale -- stale only when the run is surely gone (its pid is
-- dead, its socket refused or missing, the record unreadable). Any other
-- failure (an unsafe socket directory, say) is reported, not cleaned.
function M.probe(rec)
  if rec.broken then return false, 'unreadable record', true end
  if type(rec.pid) == 'number' and rec.pid > 1 then
    local alive, _, code = core.kill(rec.pid, 0)
    if not alive and code ~= 'EPERM' then return false, 'process ' .. rec.pid .. ' is gone', true end
  end
  local c, err, code = core.ctl.connect(rec.socket)
  if not c then return false, err, code == 'ECONNREFUSED' or code == 'ENOENT' end
  c:close()
  return true
end

-- Finds run id's record; cleans it when stale. Returns rec or nil, why.
function M.find(root, id)
  local okid, iderr = repo_mod.valid_id(id)
  if not okid then return nil, 'not a run id: ' .. iderr end
  local rec = M.read_record(root, id)
  if not rec then return nil, 'no live record' end
  local ok, why, stale = M.probe(rec)
  if not ok then
    if stale then M.clean(root, rec) end
    return nil, why
  end
  return rec
end

-- Every live run of the repo (stale records are removed on the way), and
-- the runs that could not be reached for another reason: {run=, why=}.
function M.live_runs(root)
  local out, unreachable = {}, {}
  for _, name in ipairs(core.readdir(M.live_dir(root)) or {}) do
    if not name:find('^%.') then
      local rec, why = M.find(root, name)
      if rec then
        out[#out + 1] = rec
      elseif M.read_record(root, name) then -- still there: not stale
        unreachable[#unreachable + 1] = { run = name, why = why }
      end
    end
  end
  table.sort(out, function(a, b) return a.run < b.run end)
  return out, unreachable
end

local function write_record(root, rec)
  local dir = M.live_dir(root)
  core.mkdir_p(dir, tonumber('700', 8))
  local path = dir .. '/' .. rec.run
  local tmp = dir .. '/.' .. rec.run .. '.tmp'
  local f, err = io.open(tmp, 'wb')
  if not f then return nil, err end
  f:write(json.encode(rec), '\n')
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp) return nil, rerr end
  return path
end

-- ================================================================ server

local Server = {}
Server.__index = Server

-- Starts the control socket of engine e's run. root (the repo) may be nil:
-- then the socket is not findable from a repo. Returns server or nil, err.
function M.start(e, root)
  local dir, derr = core.ctl.socket_dir()
  if not dir then return nil, derr end
  core.interrupted() -- starts watching: an evaluation stops at SIGINT/SIGTERM
  local path = dir .. '/' .. e.run.id .. '.sock'
  local task_path = dir .. '/' .. e.run.id .. '.tasks.sock'
  local self = setmetatable({ engine = e, root = root, path = path, task_path = task_path,
                              sessions = {} }, Server)
  local srv, lerr = core.ctl.listen(path, function(conn) self:accept(conn) end)
  if not srv then return nil, lerr end
  self.srv = srv
  local tsrv, terr = core.ctl.listen(task_path, function(conn) self:accept(conn, true) end)
  if not tsrv then
    self:stop()
    return nil, terr
  end
  self.task_srv = tsrv
  if root then
    local rec = { run = e.run.id, socket = path, pid = core.getpid(), repo = root }
    local rp, werr = write_record(root, rec)
    if not rp then
      self:stop()
      return nil, 'cannot write the live record: ' .. tostring(werr)
    end
    self.record = rp
  end
  core.on_shutdown(function(phase)
    if phase == 'end' then self:stop() end
  end)
  e.control = self
  return self
end

-- limited: a connection to the tasks' socket (M.TASK_METHODS only).
function Server:accept(conn, limited)
  local sess = M.new_session(self.engine, conn)
  sess.server, sess.limited = self, limited or false
  self.sessions[sess] = true
  conn:start(function(data, why, size) sess:on_frame(data, why, size) end,
             function() sess.conn = nil sess:close() end)
end

-- The socket a task's processes get as $ORCH_CONTROL.
function Server:task_socket() return self.task_path end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if self.srv then self.srv:close() self.srv = nil end
  if self.task_srv then self.task_srv:close() self.task_srv = nil end
  for sess in pairs(self.sessions) do sess:close() end
  self.sessions = {}
  if self.record then os.remove(self.record) self.record = nil end
  if self.engine.control == self then self.engine.control = nil end
end

return M
