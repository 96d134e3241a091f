-- orch.tui.view: what the split-pane view shows, fed by the engine's
-- events (docs/api/events.md): one agent pane per task that runs, the
-- orchestrator pane with the DAG, the status line. The drawing is C
-- (orch.core.tui); this is the policy: which panes exist and are shown,
-- what a line of an agent event says, what the DAG looks like.
local core = require('orch.core')

local M = {}

local View = {}
View.__index = View
M.View = View

-- ---------------------------------------------------------------- symbols

-- status -> symbol (UTF-8 and plain), colour. The symbol is always there,
-- so a status reads without colour (NO_COLOR).
M.STATES = {
  running   = { '▶', '>', 'cyan' },
  lock      = { '⧗', '~', 'yellow' },
  question  = { '?', '?', 'magenta' },
  paused    = { '‖', '=', 'yellow' },
  failed    = { '✗', 'x', 'red' },
  conflict  = { '≠', '!', 'red' },
  blocked   = { '⊘', '#', 'red' },
  cancelled = { '⊗', 'X', 'red' },
  done      = { '✓', '+', 'green' },
  skipped   = { '↷', '-', 'dim' },
  ready     = { '○', 'o', 'default' },
  pending   = { '·', '.', 'dim' },
}

-- What a task's indicator says: its status, refined while it runs.
M.WORDS = { lock = 'waiting for a lock', question = 'asking a question', paused = 'paused' }

local FINISHED = { done = true, failed = true, skipped = true, blocked = true,
                   cancelled = true, conflict = true }
M.FINISHED = FINISHED

-- cjson.null (a light userdata) reads as nil
local function val(x)
  if type(x) == 'userdata' then return nil end
  return x
end
M.val = val

function M.state_of(t)
  if t.status == 'running' then
    if t.paused then return 'paused' end
    if t.question then return 'question' end
    if t.lock_wait then return 'lock' end
    return 'running'
  end
  if t.paused and not FINISHED[t.status] then return 'paused' end
  if t.lock_wait and not FINISHED[t.status] then return 'lock' end
  return M.STATES[t.status] and t.status or 'pending'
end

function View:symbol(state)
  local s = M.STATES[state] or M.STATES.pending
  return self.utf8 and s[1] or s[2], s[3]
end

-- ---------------------------------------------------------------- new

function M.new(src, cfg)
  local self = setmetatable({
    src = src, cfg = cfg, tasks = {}, order = {}, panes = {}, pane_list = {},
    task_of_pane = {}, seq = nil, cost = 0, started = core.time(),
    dag_dirty = true, run = {}, questions = {}, gates = {}, finished_seq = 0,
  }, View)
  return self
end

-- The task record (made on first sight).
function View:task(id)
  local t = self.tasks[id]
  if not t then
    t = { id = id, status = 'pending', deps = {}, qa = {} }
    self.tasks[id] = t
    self.order[#self.order + 1] = id
  end
  return t
end

local TASK_FIELDS = { 'status', 'attempt', 'role', 'backend', 'model', 'error', 'exit_code',
  'paused', 'branch', 'worktree', 'title', 'cmd', 'prompt', 'cost_usd', 'pid' }

local function copy_fields(t, src)
  for _, k in ipairs(TASK_FIELDS) do
    local v = val(src[k])
    if v ~= nil then t[k] = v end
  end
end

-- The plan's tasks (deps, roles, prompts) and a snapshot of their state.
function View:load(plan_tasks, snap)
  for _, p in ipairs(plan_tasks or {}) do
    local t = self:task(p.id)
    copy_fields(t, p)
    if type(p.deps) == 'table' then t.deps = p.deps end
  end
  snap = snap or {}
  if snap.run then
    self.run = snap.run
    local st = val(snap.run.started_at)
    if type(st) == 'number' then self.started = st end
  end
  for _, s in ipairs(snap.tasks or {}) do
    local t = self:task(s.id)
    copy_fields(t, s)
    if type(s.deps) == 'table' and #s.deps > 0 then t.deps = s.deps end
    if type(val(s.cost_usd)) == 'number' then t.cost = s.cost_usd end
    if t.status == 'running' then self:ensure_pane(t) end
    if t.status == 'running' then t.started_at = val(s.started_at) end
  end
  self.seq = val(snap.seq)
  self:recount_cost()
  self:retile()
end

function View:recount_cost()
  local c = 0
  for _, id in ipairs(self.order) do c = c + (self.tasks[id].cost or 0) end
  self.cost = c
end

-- ---------------------------------------------------------------- panes

function View:title_of(t)
  local parts = { t.id }
  local role = t.role or (t.cmd and 'exec') or '-'
  local b = t.backend or (t.cmd and 'exec') or '-'
  if t.model then b = b .. '/' .. t.model end
  parts[#parts + 1] = role
  if b ~= role then parts[#parts + 1] = b end -- an exec task: role and backend are one
  local st = M.state_of(t)
  parts[#parts + 1] = M.WORDS[st] or t.status
  if t.exit_code and FINISHED[t.status] then parts[#parts + 1] = 'exit ' .. tostring(t.exit_code) end
  return table.concat(parts, ' · ')
end

function View:update_pane(t)
  local p = self.panes[t.id]
  if not p then return end
  local sym, color = self:symbol(M.state_of(t))
  p:symbol(sym, color)
  p:title(self:title_of(t))
end

function View:ensure_pane(t)
  local p = self.panes[t.id]
  if p then return p end
  p = self.scr:pane({ kind = 'agent', scrollback = self.cfg.scrollback })
  self.panes[t.id] = p
  self.task_of_pane[p:id()] = t.id
  self.pane_list[#self.pane_list + 1] = t.id
  p:order(#self.pane_list)
  self:update_pane(t)
  return p
end

-- Which agent panes show: the running ones (in the order they started),
-- then the most recently finished, up to max_tiles; finished panes beyond
-- keep_panes are dropped (their output stays in the store: orch logs).
function View:retile()
  if not self.scr then return end
  local max = self.cfg.max_tiles
  local running, finished = {}, {}
  for _, id in ipairs(self.pane_list) do
    local t = self.tasks[id]
    if FINISHED[t.status] then finished[#finished + 1] = t else running[#running + 1] = t end
  end
  table.sort(finished, function(a, b) return (a.finished_seq or 0) > (b.finished_seq or 0) end)
  local shown = {}
  -- more running than tiles: ] and [ turn which of them are tiled
  local off = #running > max and (self.tile_offset or 0) % #running or 0
  for i = 1, math.min(#running, max) do
    shown[#shown + 1] = running[(off + i - 1) % #running + 1]
  end
  for _, t in ipairs(finished) do
    if #shown < max then shown[#shown + 1] = t end
  end
  local on = {}
  for _, t in ipairs(shown) do on[t.id] = true end
  for i = #finished, 1, -1 do
    local t = finished[i]
    if not on[t.id] and i > self.cfg.keep_panes then self:drop_pane(t.id) end
  end
  for _, id in ipairs(self.pane_list) do self.panes[id]:show(on[id] or false) end
  self.hidden_running = math.max(0, #running - max)
  -- the focus never rests on a hidden pane
  local f = self.scr:focus()
  local fid = self.task_of_pane[f]
  if fid and not on[fid] and not self.detail then self.scr:focus(self.orch) end
  self.dag_dirty = true
end

function View:drop_pane(id)
  local p = self.panes[id]
  if not p then return end
  self.task_of_pane[p:id()] = nil
  p:close()
  self.panes[id] = nil
  for i, x in ipairs(self.pane_list) do
    if x == id then table.remove(self.pane_list, i) break end
  end
end

-- The task of the focused pane (nil for the orchestrator pane).
function View:focused_task()
  local id = self.task_of_pane[self.scr:focus()]
  if id then return self.tasks[id] end
  if self.detail and self.detail.task then return self.tasks[self.detail.task] end
  return nil
end

function View:focused_pane()
  local f = self.scr:focus()
  if self.detail and self.detail.pane:id() == f then return self.detail.pane end
  local id = self.task_of_pane[f]
  if id then return self.panes[id] end
  return self.orch
end

-- ---------------------------------------------------------------- events

local H = {}

function H.task(self, ev)
  local t = self:task(ev.task)
  local was = t.status
  t.text_open = false
  copy_fields(t, ev)
  if ev.paused ~= nil then t.paused = val(ev.paused) or false end
  if t.status == 'running' and was ~= 'running' then
    t.started_at = val(ev.t) or core.time()
    t.finished_at, t.exit_code, t.error = nil, val(ev.exit_code), val(ev.error)
    t.lock_wait = nil
    local p = self:ensure_pane(t)
    if was and FINISHED[was] then p:push(('── attempt %s'):format(tostring(t.attempt or '?')), 'meta') end
  end
  if FINISHED[t.status] and not FINISHED[was or ''] then
    t.finished_at = val(ev.t) or core.time()
    self.finished_seq = self.finished_seq + 1
    t.finished_seq = self.finished_seq
    t.question, t.lock_wait, t.paused = nil, nil, false
    local p = self.panes[t.id]
    if p then
      local msg = t.status .. (t.exit_code and (' (exit code ' .. tostring(t.exit_code) .. ')') or '')
        .. (t.error and (': ' .. tostring(t.error)) or '')
      p:push('── ' .. msg, t.status == 'done' and 'meta' or 'error')
    end
  end
  self:update_pane(t)
  self:retile()
end

-- An agent's task (not a command): its stdout is the backend's raw stream
-- (stream-json, a transcript), shown through its agent events instead.
local function is_agent(t)
  local b = t.backend or (t.cmd and 'exec')
  return b ~= nil and b ~= 'exec'
end

function H.output(self, ev)
  local t = self:task(ev.task)
  if ev.stream == 'stdout' and is_agent(t) and not self.cfg.raw_output then return end
  local p = self.panes[t.id] or self:ensure_pane(t)
  t.text_open = false
  local style = ev.stream == 'stderr' and 'stderr' or 'normal'
  if ev.lines then
    p:push_lines(ev.lines, style)
  elseif ev.data then
    p:push(ev.data, style)
  end
end

-- One line per agent event, the whole of it kept for the expanded view.
local function first_line(s)
  s = tostring(s or '')
  return (s:match('^%s*([^\n]*)') or s)
end

local function brief(v)
  if type(v) ~= 'table' then return tostring(v or '') end
  for _, k in ipairs({ 'command', 'cmd', 'file_path', 'path', 'pattern', 'query', 'url', 'question' }) do
    if type(v[k]) == 'string' then return v[k] end
  end
  local ok, s = pcall(require('cjson').encode, v)
  return ok and s or ''
end

local function encode(v)
  if type(v) ~= 'table' then return tostring(v or '') end
  local ok, s = pcall(require('cjson').encode, v)
  return ok and s or tostring(v)
end

M.AGENT = {
  text = function(ev) return first_line(ev.text), 'text', ev.text end,
  tool_call = function(ev)
    return ('▸ %s %s'):format(tostring(ev.tool or '?'), first_line(brief(ev.input))), 'tool',
      ('%s %s'):format(tostring(ev.tool or '?'), encode(ev.input))
  end,
  tool_result = function(ev)
    return '  ↳ ' .. first_line(ev.output), ev.is_error and 'error' or 'result', ev.output
  end,
  question = function(ev) return '? ' .. first_line(ev.question), 'question', ev.question end,
  denied = function(ev)
    return ('✗ denied %s: %s'):format(tostring(ev.tool or '?'), first_line(ev.message)), 'error', ev.message
  end,
  usage = function(ev)
    local u = type(ev.usage) == 'table' and ev.usage or {}
    return ('· usage: %s in, %s out%s'):format(tostring(val(u.input_tokens) or 0),
      tostring(val(u.output_tokens) or 0),
      type(ev.cost_usd) == 'number' and (' · $%.4f'):format(ev.cost_usd) or ''), 'meta'
  end,
  session = function(ev) return '· session ' .. tostring(ev.session_id), 'meta' end,
  result = function(ev) return '= ' .. first_line(ev.text), ev.ok == false and 'error' or 'text', ev.text end,
  error = function(ev)
    return '! ' .. first_line(ev.message) .. (ev.retryable and ' (retryable)' or ''), 'error', ev.message
  end,
}

function M.condense(ev)
  local f = M.AGENT[ev.type]
  if not f then return '· ' .. tostring(ev.type), 'meta' end
  local text, style, full = f(ev)
  if full ~= nil then
    full = tostring(full)
    if full == text or not full:find('\n') and #full <= #text then full = nil end
  end
  return text, style, full
end

-- Streamed text (deltas) is joined: whole lines as they complete, the
-- line being written rewritten in place.
M.TEXT_LINE_MAX = 8192

local function stream_text(t, p, chunk)
  local buf = (t.text_open and t.text_buf or '') .. tostring(chunk or '')
  local open = t.text_open
  while true do
    local nl = buf:find('\n', 1, true)
    if not nl then break end
    local line = buf:sub(1, nl - 1)
    if open then p:replace_last(line, 'text') else p:push(line, 'text') end
    open = false
    buf = buf:sub(nl + 1)
  end
  if buf ~= '' then
    if open then p:replace_last(buf, 'text') else p:push(buf, 'text') end
    open = #buf < M.TEXT_LINE_MAX
  end
  t.text_open, t.text_buf = open, open and buf or nil
end

function H.agent(self, ev)
  local t = self:task(ev.task)
  local p = self.panes[t.id] or self:ensure_pane(t)
  if ev.type == 'text' then return stream_text(t, p, ev.text) end
  t.text_open = false
  local text, style, full = M.condense(ev)
  p:push(text, style, full)
  if ev.type == 'usage' and type(ev.cost_usd) == 'number' then
    t.cost = (t.cost or 0) + ev.cost_usd
    self.cost = self.cost + ev.cost_usd
    self.dag_dirty = true
  elseif ev.type == 'question' then
    t.qa[#t.qa + 1] = { q = ev.question }
  end
end

function H.lock(self, ev)
  local t = self:task(ev.task)
  t.lock_wait = val(ev.waiting) and true or nil
  self:update_pane(t)
  self.dag_dirty = true
end

function H.merge(self, ev)
  local r = val(ev.result) or val(ev.status)
  self:log(('merge %s: %s%s'):format(tostring(ev.task), tostring(r),
    val(ev.message) and (': ' .. tostring(ev.message)) or ''), r == 'merged' and 'meta' or 'error')
end

function H.question(self, ev)
  local t = ev.task and self:task(ev.task)
  if t then t.text_open = false end
  local id = val(ev.id)
  if val(ev.answer) ~= nil then
    self.questions[id] = nil
    if t then
      t.question = nil
      local qa = t.qa[#t.qa]
      if qa and qa.q == ev.question and not qa.a then
        qa.a, qa.by = ev.answer, val(ev.by)
      else
        t.qa[#t.qa + 1] = { q = ev.question, a = ev.answer, by = val(ev.by) }
      end
      local p = self.panes[t.id]
      if p then p:push(('  ↳ answer (%s): %s'):format(tostring(val(ev.by) or '?'),
        first_line(ev.answer)), 'question', ev.answer) end
      self:update_pane(t)
    end
    if self.on_question_closed then self.on_question_closed(id) end
  else
    self.questions[id] = { id = id, task = ev.task, question = ev.question }
    if t then
      t.question = id
      if not (t.qa[#t.qa] and t.qa[#t.qa].q == ev.question) then t.qa[#t.qa + 1] = { q = ev.question } end
      self:update_pane(t)
    end
    -- the person is asked once the question is theirs (not while the
    -- orchestrator is answering it)
    if self.on_question and ev.to ~= 'orchestrator' then self.on_question(self.questions[id]) end
  end
  self.dag_dirty = true
end

function H.gate(self, ev)
  local g = val(ev.gate)
  if ev.status == 'open' then
    self.gates[g] = { gate = g, message = val(ev.message) }
    if self.on_gate then self.on_gate(self.gates[g]) end
  else
    self.gates[g] = nil
    if self.on_gate_closed then self.on_gate_closed(g) end
    self:log(('gate %s: %s%s'):format(tostring(g), tostring(ev.status),
      val(ev.by) and (' (' .. tostring(ev.by) .. ')') or ''), 'meta')
  end
end

function H.run(self, ev)
  for k, v in pairs(ev) do
    if k ~= 'kind' and k ~= 'seq' then self.run[k] = val(v) end
  end
  self.dag_dirty = true
end

function H.dropped(self, ev)
  self:log(('(%s events dropped: the view fell behind)'):format(tostring(ev.count)), 'error')
end

function View:on_event(ev)
  local seq = val(ev.seq)
  if seq and self.seq and seq <= self.seq then return end
  if seq then self.seq = seq end
  local h = H[ev.kind]
  if h then h(self, ev) end
  if self.progress_lines then
    for _, line in ipairs(self.progress_lines(ev) or {}) do self:log(line, 'meta') end
  end
  if self.scr then self.scr:redraw() end
end

function View:log(text, style)
  if self.orch then self.orch:push(text, style or 'meta') end
end

-- ---------------------------------------------------------------- the DAG

-- The longest chain of unfinished tasks (by count), as a list of ids.
function View:critical_path()
  local memo, nxt = {}, {}
  local function len(id, depth)
    if memo[id] then return memo[id] end
    local t = self.tasks[id]
    if not t or FINISHED[t.status] or depth > 10000 then return 0 end
    memo[id] = 0 -- a cycle (never in a checked plan) ends here
    local best, via = 0, nil
    for _, d in ipairs(t.deps or {}) do
      local l = len(d, depth + 1)
      if l > best then best, via = l, d end
    end
    memo[id], nxt[id] = best + 1, via
    return best + 1
  end
  local top, start = 0, nil
  for _, id in ipairs(self.order) do
    local l = len(id, 0)
    if l > top then top, start = l, id end
  end
  local path = {}
  while start do
    table.insert(path, 1, start)
    start = nxt[start]
  end
  return path
end

local GROUP = { running = 1, ready = 2, pending = 3, failed = 4, conflict = 4, blocked = 4,
                cancelled = 4, done = 5, skipped = 6 }

local function fmt_secs(s)
  s = math.max(0, math.floor(s))
  if s < 60 then return s .. 's' end
  if s < 3600 then return ('%dm%02ds'):format(math.floor(s / 60), s % 60) end
  return ('%dh%02dm'):format(math.floor(s / 3600), math.floor(s % 3600 / 60))
end
M.fmt_secs = fmt_secs

function View:counts()
  local c = { running = 0, ready = 0, pending = 0, done = 0, failed = 0, skipped = 0,
              blocked = 0, cancelled = 0, conflict = 0 }
  for _, id in ipairs(self.order) do
    local s = self.tasks[id].status
    c[s] = (c[s] or 0) + 1
  end
  return c
end

function View:elapsed()
  local fin = val(self.run.finished_at)
  local now = type(fin) == 'number' and fin or core.time()
  return now - (self.started or now)
end

function View:counts_line()
  local c = self:counts()
  local parts = {}
  for _, k in ipairs({ 'running', 'ready', 'pending', 'done', 'failed', 'blocked', 'cancelled',
                       'conflict', 'skipped' }) do
    if c[k] > 0 or k == 'running' or k == 'done' then
      parts[#parts + 1] = ('%s %d %s'):format((self:symbol(k)), c[k], k)
    end
  end
  return table.concat(parts, '  ')
end

-- The orchestrator pane's head: the run, counts, the critical path, the
-- tasks grouped by status with their dependencies.
function View:dag_lines()
  local lines = {}
  local run_id = self.run.id or self.src.run_id or '?'
  local status = val(self.run.status)
  lines[1] = ('run %s%s · %d tasks · %s · $%.2f'):format(run_id,
    status and status ~= 'running' and (' ' .. status) or '', #self.order,
    fmt_secs(self:elapsed()), self.cost)
  lines[2] = self:counts_line()
  local path = self:critical_path()
  local on_path = {}
  for _, id in ipairs(path) do on_path[id] = true end
  if #path > 0 then
    lines[#lines + 1] = 'critical path: ' .. table.concat(path, ' → ') ..
      (' (%d left)'):format(#path)
  end
  if (self.hidden_running or 0) > 0 then
    lines[#lines + 1] = ('%d more running, not tiled: ] and [ turn the tiles (max_tiles = %d)'):format(
      self.hidden_running, self.cfg.max_tiles)
  end
  local ids = {}
  for i, id in ipairs(self.order) do ids[i] = id end
  local pos = {}
  for i, id in ipairs(self.order) do pos[id] = i end
  table.sort(ids, function(a, b)
    local ga = GROUP[self.tasks[a].status] or 3
    local gb = GROUP[self.tasks[b].status] or 3
    if ga ~= gb then return ga < gb end
    return pos[a] < pos[b]
  end)
  local w = 4
  for _, id in ipairs(ids) do w = math.max(w, math.min(#id, 24)) end
  for _, id in ipairs(ids) do
    local t = self.tasks[id]
    local st = M.state_of(t)
    local deps = #t.deps > 0 and ('  ← ' .. table.concat(t.deps, ', ')) or ''
    lines[#lines + 1] = ('%s %s%s %-' .. w .. 's %-9s%s'):format((self:symbol(st)),
      on_path[id] and '*' or ' ', '', id, M.WORDS[st] and st or t.status, deps)
  end
  return lines
end

function View:refresh_head()
  if not self.orch then return end
  self.orch:head(self:dag_lines())
  local c = self:counts()
  local right = ('%d running · %d done · %d left · %s'):format(c.running, c.done,
    c.pending + c.ready + c.running, fmt_secs(self:elapsed()))
  self.status_right = right
end

return M
