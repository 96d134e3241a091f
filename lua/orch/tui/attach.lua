-- orch.tui.attach: `orch attach [RUN]`, the split-pane view of a run that goes
-- on in another orch process (detached, or started with --no-tui), through
-- its control socket (docs/control.md): the snapshot and the events that
-- follow it, and the same keys acting through control methods.
local core = require('orch.core')
local control = require('orch.control')
local repl = require('orch.repl')
local repo_mod = require('orch.repo')
local tui = require('orch.tui')

local M = {}

local EXIT_OK, EXIT_USAGE = 0, 2

-- How much of each task's recorded output the view starts with.
M.BACKFILL = 2000

local function err(fmt, ...)
  io.stderr:write('orch: ', fmt:format(...), '\n')
end

-- Waits ms on the loop (only outside callbacks: it runs the loop).
local function sleep(ms)
  local done = false
  local t = core.timer(ms, function() done = true end)
  while not done do core.run('once') end
  t:close()
end

-- The run's database, read-only (for the plan and the output so far).
local function open_store(root, db)
  local path = db or (root .. '/.orch/orch.db')
  local f = io.open(path, 'rb')
  if not f then return nil, 'no database at ' .. path end
  f:close()
  local why
  for _ = 1, 5 do -- the run's own writes can keep it busy for a moment
    local ok, st, e = pcall(require('orch.store').open, path, { readonly = true })
    if ok and st then return st end
    why = ok and e or st
    sleep(50)
  end
  return nil, tostring(why)
end

local function plan_of(st, run_id)
  if not st then return {} end
  local run = st:run(run_id)
  local ok, plan = pcall(control.json.decode, run and run.plan_json or '')
  if not ok or type(plan) ~= 'table' or type(plan.tasks) ~= 'table' then return {} end
  return plan.tasks
end

-- A source over the control client: the view's actions become requests
-- (never a blocking call: they run inside the loop's callbacks).
function M.source(client, rec, root, st)
  local src = { run_id = rec.run, repo = root, client = client }
  -- events that come before the view subscribes wait here
  local early = {}
  client.on_event = function(ev) early[#early + 1] = ev end
  local function request(method, params, cb)
    client:request(method, params, function(r)
      if r.error then return cb(nil, r.error.message) end
      cb(r.result or true)
    end)
  end
  function src.subscribe(_, fn)
    client.on_event = fn
    for _, ev in ipairs(early) do fn(ev) end
    early = {}
    return function() client.on_event = nil end
  end
  function src.snapshot() return src.snap or {} end
  function src.plan_tasks() return plan_of(st, rec.run) end
  function src.pause(_, id, cb) request('pause', { task = id }, cb) end
  function src.resume(_, id, cb) request('resume', { task = id }, cb) end
  function src.cancel(_, id, cb) request('cancel', { task = id }, cb) end
  function src.answer_gate(_, gate, yes, cb) request('gate', { gate = gate, approve = yes }, cb) end
  function src.answer_question(_, id, text, cb) request('answer', { id = id, answer = text }, cb) end
  function src.stop(_, cb)
    -- the run's own Ctrl+C: its tasks are interrupted and checkpointed
    request('eval', { code = "orch.core.kill(orch.core.getpid(), 'SIGINT')" }, cb)
  end
  function src.store() return st end
  return src
end

-- The snapshot: the subscribe reply's (seq-consistent), or `status`.
local function snapshot(client)
  local r = client:call('subscribe', {})
  if r.error then return nil, r.error.message end
  local res = r.result or {}
  if type(res.snapshot) == 'table' then return res.snapshot end
  local s = client:call('status', {})
  if s.error then return nil, s.error.message end
  return s.result
end

-- The last lines each task already wrote, so the panes do not start empty.
local function backfill(v, st, run_id)
  if not st then return end
  local status = require('orch.status')
  for _, id in ipairs(v.order) do
    local t = v.tasks[id]
    if t.status ~= 'pending' and t.status ~= 'ready' and v.panes[id] then
      local ok, text = pcall(status.logs, st, run_id, id, {})
      if ok and type(text) == 'string' and text ~= '' then
        local lines = {}
        for line in text:gmatch('([^\n]*)\n') do lines[#lines + 1] = line end
        local from = math.max(1, #lines - M.BACKFILL + 1)
        local p = v.panes[id]
        for i = from, #lines do p:push(lines[i], 'normal') end
      end
    end
  end
end

-- The run's final state from the store, once its socket closed.
local function final_state(v, st, run_id)
  if not st then return end
  local ok, rows = pcall(st.tasks, st, run_id)
  if ok and type(rows) == 'table' then
    for _, row in ipairs(rows) do
      v:on_event({ kind = 'task', task = row.id, status = row.status, exit_code = row.exit_code,
                   error = row.error })
    end
  end
  local rok, run = pcall(st.run, st, run_id)
  if rok and run then
    v.run.status, v.run.exit_code = run.status, run.exit_code
    v.run.finished_at = run.finished_at
  end
end

function M.cli(o)
  local root, rerr = repo_mod.find(o.repo or core.cwd())
  if not root then err('%s', rerr) return EXIT_USAGE end
  if o[2] then err("attach: unexpected argument '%s'", o[2]) return EXIT_USAGE end
  if not (core.isatty(0) and core.isatty(1)) then
    err('attach shows a terminal view: run it in a terminal (orch status and orch logs --follow work anywhere)')
    return EXIT_USAGE
  end
  local rec, perr, pcode = repl.pick(root, o[1])
  if not rec then err('%s', (perr:gsub('orch repl RUN', 'orch attach RUN'))) return pcode end
  local client, cerr = repl.connect(rec.socket)
  if not client then
    control.find(root, rec.run)
    err('run %s is not reachable (%s)', rec.run, tostring(cerr))
    return EXIT_USAGE
  end
  -- what the run buffered goes to its database first, for the backfill
  client:call('eval', { code = 'orch.engine.store:flush()' })
  local st, sterr = open_store(root, o.db)
  local src = M.source(client, rec, root, st)
  local snap, serr = snapshot(client)
  if not snap then
    client:close()
    err('run %s: %s', rec.run, tostring(serr))
    return EXIT_USAGE
  end
  src.snap = snap
  local log = tui.log_path(root, rec.run .. '.attach')
  local f = io.open(log, 'ab')
  if f then f:close() end
  local v, verr = tui.open(src, { log = log, attach = true })
  if not v then
    client:close()
    err('no terminal view: %s', tostring(verr))
    return EXIT_USAGE
  end
  if core.tui.redirect(log) then v.redirected = true end
  v:begin(src)
  if not st then v:log('no output so far: ' .. tostring(sterr), 'error') end
  backfill(v, st, rec.run)
  v.scr:ref(true)
  client:wait(function() return v.left or v.closed end)
  if client.closed and not v.left and not v.closed then
    -- the run ended (or its orch went away): its last state, then hold
    final_state(v, st, rec.run)
    v:log('the run\'s control socket closed', 'meta')
    v:finish(v.run.exit_code)
  else
    v:close()
  end
  client:close()
  if st then st:close() end
  return EXIT_OK
end

return M
