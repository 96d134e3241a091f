-- orch.status: the one view of a run (M.view: what `orch status`, the
-- control socket's `status` and the REPL's orch.tasks() show), and what
-- `orch status [--json]` and `orch logs` print, as functions of an open
-- store (orch.store) that return strings.
local cjson = require('cjson')

local M = {}

local function seconds(d)
  if d < 60 then return string.format('%.1fs', d) end
  if d < 3600 then return string.format('%dm%02ds', math.floor(d / 60), math.floor(d % 60)) end
  return string.format('%dh%02dm', math.floor(d / 3600), math.floor(d % 3600 / 60))
end

-- Time taken by a task or run row: finished - started, or now - started
-- while it runs ("-" before it started).
function M.duration(row, now)
  local s, f = row.started_at, row.finished_at
  if type(s) ~= 'number' then return '-' end
  if type(f) ~= 'number' then
    if row.status ~= 'running' then return '-' end
    f = now
  end
  return seconds(math.max(0, f - s))
end

local function local_time(t)
  if type(t) ~= 'number' then return '-' end
  return os.date('!%Y-%m-%d %H:%M:%SZ', math.floor(t))
end

local function pad(s, w)
  s = tostring(s)
  return s .. string.rep(' ', w - #s)
end

-- A table of rows (arrays of strings) with columns padded to fit;
-- decorate(row, col, padded) may wrap a padded cell (in colour codes).
local function columns(rows, decorate)
  local widths = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #c) end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i < #r and pad(c, widths[i]) or c
      if decorate then cells[i] = decorate(#out + 1, i, cells[i]) end
    end
    out[#out + 1] = (table.concat(cells, '  '):gsub('%s+$', ''))
  end
  return out
end

local function counts(tasks)
  local by, order = {}, {}
  for _, t in ipairs(tasks) do
    if not by[t.status] then order[#order + 1] = t.status; by[t.status] = 0 end
    by[t.status] = by[t.status] + 1
  end
  local parts = {}
  for _, s in ipairs(order) do parts[#parts + 1] = by[s] .. ' ' .. s end
  return table.concat(parts, ', ')
end

-- Text from a plan or an error, safe to print on a terminal: control
-- characters (an escape sequence in a goal, say) are shown as \xNN.
local function printable(text)
  return (text:gsub('[%z\1-\31\127]', function(c) return ('\\x%02X'):format(c:byte()) end))
end

local function decode_json(s)
  if type(s) ~= 'string' then return nil end
  local ok, v = pcall(cjson.decode, s)
  return ok and type(v) == 'table' and v or nil
end

local function nonnull(v)
  if v == cjson.null then return nil end
  return v
end

-- The one view of a run (default: the latest): {run={id, status, goal,
-- repo, concurrency, pid, started_at, finished_at, exit_code, error},
-- tasks={{id, title, role, backend, model, status, attempts, branch,
-- worktree, session_id, started_at, finished_at, exit_code, error,
-- cost_usd, usage}, ...}} in plan order, times as unix seconds. live (a
-- live engine, optional) adds each task's paused, attempt and pid (see
-- Engine:live). Returns view or nil, err.
function M.view(st, run_id, live)
  local run
  if run_id then run = st:run(run_id) else run = st:latest_run() end
  if not run then return nil, run_id and ('no run ' .. run_id) or 'no run recorded yet' end
  local tasks = {}
  for _, t in ipairs(st:tasks(run.id)) do
    local row = {
      id = t.id, title = t.title, role = t.role, status = t.status, attempts = t.attempts,
      backend = t.backend or (t.cmd and 'exec') or nil, model = t.model,
      branch = t.branch, worktree = t.worktree, session_id = t.session_id,
      started_at = t.started_at, finished_at = t.finished_at, exit_code = t.exit_code,
      error = t.error, cost_usd = t.cost_usd, usage = decode_json(t.usage_json),
      cmd = t.cmd, deps = t.deps,
    }
    if live then
      local l = live:live(t.id)
      if l then row.paused, row.attempt, row.pid = l.paused, l.attempt, l.pid end
    end
    tasks[#tasks + 1] = row
  end
  return {
    run = { id = run.id, status = run.status, goal = run.goal, repo = run.repo,
            concurrency = run.concurrency, pid = nonnull(run.pid), started_at = run.started_at,
            finished_at = run.finished_at, exit_code = run.exit_code, error = run.error,
            workflow = run.workflow },
    tasks = tasks,
  }
end

-- What the run's resilience events say (docs/resilience.md): the last state
-- of each breaker {backend, endpoint, model, state}, the number of retries,
-- the run's budget (the last recorded) and what the orchestrator's turns
-- cost (orchestrator_cost), from the stored events.
function M.resilience(st, run_id)
  if not (st.h and st.h.rows) then return { breakers = {}, retries = 0, orchestrator_cost = 0 } end
  if not st.readonly and st.flush then st:flush() end
  local by_key, order, retries, budget, ocost = {}, {}, 0, nil, 0
  for row in st.h:rows([[SELECT kind, payload FROM events WHERE run_id = ? AND kind IN
                          ('breaker', 'retry', 'run', 'budget', 'orchestrator') ORDER BY seq]], run_id) do
    local ev = decode_json(row.payload)
    if type(ev) == 'table' then
      if row.kind == 'orchestrator' then
        if type(ev.cost_usd) == 'number' then ocost = ocost + ev.cost_usd end
      elseif row.kind == 'retry' then
        retries = retries + 1
      elseif row.kind == 'breaker' then
        local key = tostring(ev.backend) .. ' ' .. tostring(ev.endpoint) .. ' ' .. tostring(ev.model)
        if not by_key[key] then order[#order + 1] = key end
        by_key[key] = { backend = ev.backend, endpoint = ev.endpoint, model = nonnull(ev.model),
                        state = ev.state, t = ev.t }
      elseif tonumber(ev.budget_usd) then
        budget = tonumber(ev.budget_usd)
      end
    end
  end
  local breakers = {}
  for _, k in ipairs(order) do breakers[#breakers + 1] = by_key[k] end
  return { breakers = breakers, retries = retries, budget_usd = budget, orchestrator_cost = ocost }
end

-- The readable `orch status [RUN]`: a run header and one line per task.
-- opts.now overrides the clock (for running tasks); opts.color (boolean)
-- colours the statuses (orch.color). Returns text or nil, err.
function M.text(st, run_id, opts)
  opts = opts or {}
  local v, err = M.view(st, run_id)
  if not v then return nil, err end
  local run, tasks = v.run, v.tasks
  local now = opts.now or os.time()
  local function paint(status)
    if not opts.color then return status end
    return require('orch.color').status_sgr(status)
  end
  local lines = {
    string.format('run %s  %s  %s', run.id, paint(run.status), M.duration(run, now)),
  }
  if run.goal then lines[#lines + 1] = 'goal: ' .. printable((run.goal:gsub('\n.*', ' ...'))) end
  lines[#lines + 1] = string.format('started %s, %d task%s%s', local_time(run.started_at),
    #tasks, #tasks == 1 and '' or 's', #tasks > 0 and (': ' .. counts(tasks)) or '')
  if run.error then lines[#lines + 1] = 'error: ' .. printable(run.error) end
  if #tasks > 0 then
    local rows = {{'TASK', 'ROLE', 'STATUS', 'ATTEMPTS', 'TIME'}}
    local cost = 0
    for _, t in ipairs(tasks) do
      rows[#rows + 1] = {t.id, t.role or (t.cmd and 'exec') or '-', t.status,
                         tostring(t.attempts), M.duration(t, now)}
      cost = cost + (t.cost_usd or 0)
    end
    local res = M.resilience(st, run.id)
    local ocost = res.orchestrator_cost
    cost = cost + ocost
    lines[#lines + 1] = ''
    local function decorate(r, c, cell)
      if r == 1 or c ~= 3 then return cell end
      local status = rows[r][3]
      return paint(status) .. cell:sub(#status + 1)
    end
    for _, l in ipairs(columns(rows, decorate)) do lines[#lines + 1] = l end
    if cost > 0 or res.budget_usd then
      local fmt = require('orch.budget').fmt
      local sums, roles = require('orch.budget').by_role(tasks)
      if ocost > 0 then
        if not sums.orchestrator then roles[#roles + 1] = 'orchestrator' table.sort(roles) end
        sums.orchestrator = (sums.orchestrator or 0) + ocost
      end
      local parts = {}
      for _, r in ipairs(roles) do parts[#parts + 1] = r .. ' ' .. fmt(sums[r]) end
      lines[#lines + 1] = ('\ncost: $%.4f%s%s'):format(cost,
        res.budget_usd and (' of a budget of ' .. fmt(res.budget_usd)) or '',
        #parts > 1 and (' (' .. table.concat(parts, ', ') .. ')') or '')
    end
    if res.retries > 0 then lines[#lines + 1] = ('retries: %d'):format(res.retries) end
    for _, b in ipairs(res.breakers) do
      lines[#lines + 1] = ('breaker %s %s%s: %s'):format(tostring(b.backend), tostring(b.endpoint),
        b.model and (' ' .. tostring(b.model)) or '', paint(tostring(b.state)))
    end
  end
  local qs = st.questions and st:questions(run.id) or {}
  if #qs > 0 then
    lines[#lines + 1] = ''
    lines[#lines + 1] = ('questions: %d'):format(#qs)
    for i = math.max(1, #qs - 9), #qs do
      local q = qs[i]
      lines[#lines + 1] = ('  %s: %s'):format(tostring(q.task or 'run'), printable(tostring(q.question)))
      lines[#lines + 1] = q.answer and ('    -> (%s) %s'):format(tostring(q.by or '?'),
        printable(tostring(q.answer))) or '    -> (open)'
    end
  end
  return table.concat(lines, '\n') .. '\n'
end

-- Encodes v with cjson, keeping tables marked with store.array_mt (or
-- empty ones at the keys listed in arrays) as JSON arrays.
local function encode(v)
  if type(v) == 'table' and getmetatable(v) and getmetatable(v).__jsontype == 'array' then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = encode(x) end
    return '[' .. table.concat(parts, ',') .. ']'
  elseif type(v) == 'table' and next(v) ~= nil and v[1] == nil then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ':' .. encode(v[k]) end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  return cjson.encode(v)
end
M.encode = encode

local function null(v)
  if v == nil then return cjson.null end
  return v
end

-- "2026-11-25T19:35:12.123Z" for unix seconds t, cjson.null for nil.
function M.iso(t)
  if t == nil or t == cjson.null then return cjson.null end
  local ms = math.floor(t * 1000 + 0.5)
  local sec = math.floor(ms / 1000)
  return os.date('!%Y-%m-%dT%H:%M:%S', sec) .. string.format('.%03dZ', ms - sec * 1000)
end

M.array_mt = {__jsontype = 'array'} -- kept an array by M.encode

-- The `orch status --json` object (DESIGN.md's fields, plus backend,
-- model, cost_usd and usage per task) from M.view, or nil, err.

-- The run's cost: its tasks' and its orchestrator's turns (res: what
-- M.resilience read), nil when none is known.
local function run_cost(v, res)
  local c = require('orch.budget').of_tasks(v.tasks)
  if res.orchestrator_cost > 0 then c = (c or 0) + res.orchestrator_cost end
  return c
end

function M.object(st, run_id)
  local v, err = M.view(st, run_id)
  if not v then return nil, err end
  local tasks = setmetatable({}, M.array_mt)
  for _, t in ipairs(v.tasks) do
    tasks[#tasks + 1] = {
      id = t.id, role = null(t.role), status = t.status, attempts = t.attempts,
      branch = null(t.branch), worktree = null(t.worktree),
      session_id = null(t.session_id), started_at = M.iso(t.started_at),
      finished_at = M.iso(t.finished_at), backend = null(t.backend), model = null(t.model),
      cost_usd = null(t.cost_usd), usage = null(t.usage),
    }
  end
  local questions = setmetatable({}, M.array_mt)
  for _, q in ipairs(st.questions and st:questions(v.run.id) or {}) do
    questions[#questions + 1] = { task = null(q.task), question = q.question,
                                  answer = null(q.answer), by = null(q.by) }
  end
  local res = M.resilience(st, v.run.id)
  local breakers = setmetatable({}, M.array_mt)
  for i, b in ipairs(res.breakers) do
    breakers[i] = { backend = b.backend, endpoint = b.endpoint, model = null(b.model), state = b.state }
  end
  return { run = { id = v.run.id, status = v.run.status, goal = null(v.run.goal),
                   cost_usd = null(run_cost(v, res)),
                   budget_usd = null(res.budget_usd), retries = res.retries },
           tasks = tasks, questions = questions, breakers = breakers }
end

-- The shape version of what `orch status --json` prints (docs/json.md;
-- orch.jsonout.VERSION is the same number for every --json).
M.JSON_VERSION = 1

-- `orch status --json`: one JSON object (DESIGN.md's, with "version"), or
-- nil, err.
function M.json(st, run_id)
  local o, err = M.object(st, run_id)
  if not o then return nil, err end
  o.version = M.JSON_VERSION
  return encode(o) .. '\n'
end

local PLAIN = {stdout = true, text = true}

-- One event row as a log line: stdout (and agent text) as is, every other
-- stream prefixed with "[stream] ".
function M.log_line(ev)
  if ev.kind == 'question' then
    local ok, q = pcall(cjson.decode, ev.payload or '')
    if not ok or type(q) ~= 'table' then return '[question] ?' end
    if q.answer ~= nil and q.answer ~= cjson.null then
      return ('[answer] (%s) %s'):format(tostring(q.by or '?'), printable(tostring(q.answer)))
    end
    return '[question] ' .. printable(tostring(q.question or ''))
  end
  local data = ev.data or ''
  if PLAIN[ev.stream] then return data end
  return '[' .. ev.stream .. '] ' .. data
end

-- `orch logs RUN TASK`: the task's events after opts.after (an event id),
-- of opts.attempt only if given. Returns text, last event id (for
-- following a live run: call again with after = that id). When more than
-- one attempt shows, each begins with an "[orch] attempt N" line.
-- With opts.write (a function), each line is written as it is read and
-- the text returned is '': a long log is streamed, never held whole.
function M.logs(st, run_id, task_id, opts)
  opts = opts or {}
  local out, last, attempt = {}, opts.after, opts.last_attempt
  if opts.write then
    out = setmetatable({}, { __newindex = function(_, _, line) opts.write(line .. '\n') end })
  end
  local q = {after = opts.after, attempt = opts.attempt, limit = opts.limit, output = true,
             questions = true}
  for ev in st:events(run_id, task_id, q) do
    if ev.attempt and ev.attempt ~= attempt then
      if attempt or ev.attempt > 1 then
        out[#out + 1] = '[orch] attempt ' .. ev.attempt
      end
      attempt = ev.attempt
    end
    out[#out + 1] = M.log_line(ev)
    last = ev.id
  end
  local text = #out > 0 and (table.concat(out, '\n') .. '\n') or ''
  return text, last, attempt
end

-- `orch logs RUN TASK --json`: as M.logs, one JSON object a line (see
-- orch.jsonout.log_line) instead of text; no "[orch] attempt" lines (every
-- object has its attempt).
function M.logs_json(st, run_id, task_id, opts)
  opts = opts or {}
  local jsonout = require('orch.jsonout')
  local out, last = {}, opts.after
  if opts.write then -- streamed, as M.logs
    out = setmetatable({}, { __newindex = function(_, _, line) opts.write(line) end })
  end
  local q = {after = opts.after, attempt = opts.attempt, limit = opts.limit, output = true}
  for ev in st:events(run_id, task_id, q) do
    out[#out + 1] = jsonout.log_line(run_id, task_id, ev)
    last = ev.id
  end
  return table.concat(out), last, opts.last_attempt
end

return M
