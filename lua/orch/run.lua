-- orch.run: the commands that start, resume and inspect runs (`orch run`,
-- `orch resume`, `orch status`, `orch logs`, `orch clean`), and
-- run.execute(opts), which a workflow script calls to run a plan.
local core = require('orch.core')
local cjson = require('cjson')
local engine = require('orch.engine')
local plan_mod = require('orch.plan')
local repo_mod = require('orch.repo')
local store_mod = require('orch.store')
local workspace = require('orch.workspace')

local M = {}

local EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

local function err(fmt, ...)
  io.stderr:write('orch: ', fmt:format(...), '\n')
end

-- Repo root and database path from --repo / --db.
function M.locate(o)
  local root, rerr = repo_mod.find(o.repo or core.cwd())
  if not root and not o.db then return nil, rerr end
  local db = o.db or (root .. '/.orch/orch.db')
  return { root = root, db = repo_mod.abspath(db) }
end

function M.new_run_id()
  math.randomseed(core.hrtime() % 2147483647)
  return os.date('!%Y%m%d-%H%M%S') .. '-' .. ('%04x'):format(math.random(0, 0xffff))
end

-- The workspace for a run: git worktrees, or the repository itself with
-- --in-place. (A broken orch.worktrees raises: it must never fall back to
-- running tasks in the user's checkout unasked.)
function M.workspace_for(loc, run, o)
  if o.worktrees ~= false and not o['in-place'] then
    return require('orch.worktrees').new({ repo = loc.root, run = run, merge = o.merge,
                                           keep = o.keep, yes = o.yes })
  end
  return workspace.in_place(loc.root)
end

local function open_store(loc)
  local st, serr = store_mod.open(loc.db)
  if not st then err('%s', serr) return nil end
  return st
end

-- Every task must have a backend this build can run; otherwise nothing
-- runs (exit 2), with the plan's file and line.
function M.check_backends(plan, file, run)
  local ok = true
  for _, t in ipairs(plan.tasks) do
    local b, berr = engine.backend_for(t, run)
    if not b then
      io.stderr:write(('%s:%d: %s\n'):format(file, t.line or 0, berr))
      ok = false
    end
  end
  return ok
end

-- ================================================================ stages
-- run.execute is these steps in order; a workflow script can call them
-- itself and do more between them (docs/api/core.md, "Workflows"). Each
-- returns its result, or nil and the exit code to return (the error said).

-- 1. The repository, the config and the plan (checked, backends too).
-- Returns {loc=, plan=, o=} or nil, code.
function M.load_plan(o)
  local loc, lerr = M.locate(o)
  if not loc then err('%s', lerr) return nil, EXIT_USAGE end
  local plan, pcode = plan_mod.load_or_say(o.plan)
  if not plan then return nil, pcode end
  local cok, cerr = require('orch.config').load(loc.root)
  if not cok then err('config: %s', cerr) return nil, EXIT_USAGE end
  if not M.check_backends(plan, o.plan, { repo = loc.root }) then return nil, EXIT_USAGE end
  return { loc = loc, plan = plan, o = o }
end

-- 2. The store (REPO/.orch/orch.db unless --db). Sets s.store.
function M.open_store(s)
  if s.loc.root then repo_mod.prepare_state_dir(s.loc.root) end
  local st = open_store(s.loc)
  if not st then return nil, EXIT_USAGE end
  s.store = st
  return st
end

-- 3. The run record and its workspace (worktrees, or --in-place). Sets
-- s.run and s.ws.
function M.prepare_workspace(s)
  local o, plan, loc, st = s.o, s.plan, s.loc, s.store
  local run = { id = o.run_id or M.new_run_id(), goal = plan.goal, plan_file = repo_mod.abspath(o.plan),
                plan_json = cjson.encode(plan), repo = loc.root,
                workflow = o.workflow or 'default', concurrency = o.concurrency or 4 }
  local ws = M.workspace_for(loc, run, o)
  local ok, berr = ws:begin(run)
  if not ok then err('%s', tostring(berr)) st:close() return nil, EXIT_USAGE end
  -- one transaction: a crash leaves no run without its tasks
  st.h:transaction(function()
    st:create_run(run)
    st:add_tasks(run.id, plan.tasks)
  end)
  io.stderr:write(('orch: run %s: %d tasks, concurrency %d, state in %s\n')
    :format(run.id, #plan.tasks, run.concurrency, loc.db))
  s.run, s.ws = run, ws
  return run
end

-- The UI of a run: the TUI when stderr and stdin are terminals (and not
-- --no-tui, and orch.tui loads), else progress lines on stderr and, on a
-- terminal, the prompt that answers gates and questions. Returns an object
-- with :stop().
function M.attach_ui(e, o)
  local tty = core.isatty(0) and core.isatty(2)
  if tty and not o['no-tui'] and not o.quiet then
    local ok, tui = pcall(require, 'orch.tui')
    if ok and type(tui) == 'table' and tui.start then
      local ui = tui.start(e, o)
      if ui then return ui end
    elseif not ok and not tostring(tui):find("module 'orch.tui' not found", 1, true) then
      err('the TUI does not load (%s): progress lines instead', tostring(tui))
    end
  end
  local unsub = require('orch.progress').attach(e, { quiet = o.quiet })
  local p = tty and require('orch.prompt').attach(e) or nil
  return { stop = function(_)
    unsub()
    if p then p:stop() end
  end }
end

-- 4a. The engine, made but not started (a workflow sets its hooks on it
-- first, so that none misses the first task). Sets s.engine.
function M.make_engine(s)
  if s.engine then return s.engine end
  s.engine = engine.new({ store = s.store, run = s.run, plan = s.plan,
    workspace = s.ws, concurrency = s.run.concurrency, done = s.done, exited = s.exited,
    resume = s.resume, yes = s.o.yes, budget = s.budget or s.o.budget })
  return s.engine
end

-- 4. The engine, its control socket (orch repl, orch mcp) and its UI, and
-- the run started. Returns the engine or nil, code. opts (default s.o):
-- yes, quiet, no-tui. The engine ends its tasks, then waits at
-- e.on_tasks_over for the workflow (await_end and apply below).
function M.start_engine(s, extra)
  local o = s.o
  local e = M.make_engine(s)
  for k, v in pairs(extra or {}) do e[k] = v end
  s.engine = e
  M.last_engine = e
  -- the control socket: refused in an unsafe place
  local ctl, cerr = require('orch.control').start(e, s.run.repo)
  if not ctl then err('control socket: %s', tostring(cerr)) return nil, EXIT_USAGE end
  s.control = ctl
  s.ui = M.attach_ui(e, o)
  e.on_tasks_over = function() end -- held: await_end, then apply
  e:start(function(code) s.code = code end)
  return e
end

-- Runs the loop until pred() or the run's end; says so when nothing is left
-- that could ever wake the run.
local function loop_until(s, pred)
  while not pred() and s.code == nil do
    if not core.run('once') and not pred() and s.code == nil then
      -- nothing is left on the loop (not even the control socket) and the
      -- run is not over: nothing can wake it, so say so instead of spinning
      err('run %s cannot go on: nothing is running and nothing can resume it', s.run.id)
      s.code = EXIT_FAIL
    end
  end
end

-- 5. Runs the loop until every task has ended (tasks added meanwhile
-- included). Returns the exit code the tasks give (0, or 1). Call it again
-- after adding tasks (e:add_task) to wait for those.
function M.await_end(s)
  local e = s.engine
  if e.ended then return s.code end
  loop_until(s, function() return e.over ~= nil end)
  return e.over or s.code
end

-- 6. The last stage: the apply gate and the workspace's complete (when
-- code is 0), the run's end recorded, the socket and UI stopped, the store
-- closed. Returns the run's exit code.
function M.apply(s, code)
  local e = s.engine
  if not e.ended then e:finish(code) end
  loop_until(s, function() return s.code ~= nil end)
  M.close(s)
  return s.code
end

function M.close(s)
  if s.ui then s.ui:stop() s.ui = nil end
  if s.control then s.control:stop() s.control = nil end
  if s.store then s.store:close() end
end

-- Runs a plan: o = {plan=FILE, repo=, db=, concurrency=, yes=, merge=, keep=,
-- quiet=, no-tui=}. Returns the exit code.
function M.execute(o)
  local s, code = M.load_plan(o)
  if not s then return code end
  if not M.open_store(s) then return EXIT_USAGE end
  local run, rcode = M.prepare_workspace(s)
  if not run then return rcode end
  local e, ecode = M.start_engine(s)
  if not e then M.close(s) return ecode end
  return M.apply(s, M.await_end(s))
end

-- ---------------------------------------------------------------- resume

-- Whether pid is a live orch process.
function M.pid_is_orch(pid)
  if type(pid) ~= 'number' or pid <= 1 then return false end
  local f = io.open('/proc/' .. pid .. '/cmdline', 'rb')
  if not f then return false end
  local cmd = f:read('*a') or ''
  f:close()
  local exe = cmd:match('^[^%z]*') or ''
  return exe:match('orch$') ~= nil
end

-- Whether run is live in an orch process: its control socket answers (a
-- stale record left by a killed run is cleaned on the way), or, without a
-- repository or before the socket is up, its recorded pid is an orch.
function M.is_live(root, run)
  if not run or run.status ~= 'running' then return false end
  if root and require('orch.control').find(root, run.id) then return true end
  return M.pid_is_orch(run.pid) and run.pid ~= core.getpid()
end

-- Whether the process pid is gone or one of this run's (its environment
-- says so): only then may its id stand for the run's session or group.
local function free_or_ours(pid, run_id)
  local f = io.open('/proc/' .. pid .. '/environ', 'rb')
  if not f then return core.realpath('/proc/' .. pid) == nil end
  local env = '\0' .. (f:read('*a') or '')
  f:close()
  return env:find('\0ORCH_RUN=' .. run_id .. '\0', 1, true) ~= nil
end

-- Task processes left running by a crashed orch (they run in their own
-- sessions, so a kill -9 of orch does not end them), of every task, done
-- ones too: processes whose environment names this run (ORCH_RUN), members
-- of the sessions and groups of the run's recorded task processes, and —
-- for `env -i setsid -f` escapees, which have neither — processes without
-- a terminal working in one of the run's worktrees; and what descends from
-- them. Never a process older than the run. Kills them; returns how many.
local function reclaim_leftovers(st, run, root)
  local ids = {}
  for _, t in ipairs(st:tasks(run.id)) do
    for _, a in ipairs(st:attempts(run.id, t.id)) do
      if type(a.pid) == 'number' and a.pid > 1 and free_or_ours(a.pid, run.id) then
        ids[#ids + 1] = a.pid
      end
    end
  end
  local n = core.sweep_match({ ids = ids, env = { 'ORCH_RUN=' .. run.id },
    cwd = root and (root .. '/.orch/worktrees/' .. run.id) or nil, no_tty = true,
    since = run.created_at, signal = 'SIGKILL' })
  return n or 0
end

local function decode_plan(run)
  -- ids read back from the database name paths and refs: a database in a
  -- cloned repository may have been crafted
  local okid, iderr = repo_mod.valid_id(run.id)
  if not okid then return nil, ('the database holds a run whose id cannot be used (%s)'):format(iderr) end
  local ok, plan = pcall(cjson.decode, run.plan_json or '')
  if not ok or type(plan) ~= 'table' or type(plan.tasks) ~= 'table' then
    return nil, 'run ' .. run.id .. ' has no readable plan in the database'
  end
  for _, t in ipairs(plan.tasks) do
    local okt, terr = repo_mod.valid_id(type(t) == 'table' and t.id)
    if not okt then
      return nil, ('run %s: the database holds a task whose id cannot be used (%s)'):format(run.id, terr)
    end
  end
  for k, v in pairs(plan) do if v == cjson.null then plan[k] = nil end end
  for _, t in ipairs(plan.tasks) do
    for k, v in pairs(t) do if v == cjson.null then t[k] = nil end end
  end
  return plan
end

local RESOLVED = { done = true, skipped = true }

-- Sorts the run's tasks into: done (never run again), exited (the process
-- succeeded but its merge did not finish: only the merge is redone), and
-- the rest, which go back to pending; of those, fresh: the ones that run
-- again (their next attempt starts from a clean base, see worktrees.md).
local function resume_sets(st, run, plan, root)
  local done, exited, soft, fresh = {}, {}, {}, {}
  local declared_soft = {}
  for _, t in ipairs(plan.tasks) do declared_soft[t.id] = t.on_failure == 'soft' end
  local reclaimed = reclaim_leftovers(st, run, root)
  for _, t in ipairs(st:tasks(run.id)) do
    local attempts = st:attempts(run.id, t.id)
    local last = attempts[#attempts]
    -- soft failures are resolved: by the policy's verdict on the attempt,
    -- or by the plan (a task that failed before any attempt started)
    if t.status == 'failed' and ((last and last.status == 'failed-soft')
        or (not last and declared_soft[t.id])) then
      done[t.id], soft[t.id] = true, true
    elseif RESOLVED[t.status] then
      done[t.id] = true
    else
      -- (no exit code: an in-process backend's turn that ended well)
      if last and (last.status == 'exited' or t.status == 'conflict') and (last.exit_code or 0) == 0 then
        exited[t.id] = true
      end
      if last and last.status == 'running' then
        st:set_attempt(run.id, t.id, last.n, { status = 'interrupted',
          finished_at = core.time(), error = 'orch stopped' })
      end
      st:set_task(run.id, t.id, { status = 'pending' })
      fresh[t.id] = not exited[t.id] or nil
    end
  end
  return done, exited, soft, reclaimed, fresh
end

-- Finished tasks whose work is gone (the run was cleaned with --force, its
-- branches deleted): never counted done with the work lost. A task whose
-- branch survived is only merged again; one without runs again. Returns how
-- many were affected.
local function lost_work(st, loc, run, o, done, exited, fresh)
  if o.worktrees == false or o['in-place'] or not loc.root then return 0 end
  local ids = {}
  for _, t in ipairs(st:tasks(run.id)) do
    if t.status == 'done' and done[t.id] then ids[#ids + 1] = t.id end
  end
  local rerun, remerge = require('orch.worktrees').lost_work(loc.root, run.id, ids)
  local n = 0
  for _, id in ipairs(ids) do
    if rerun[id] or remerge[id] then
      n = n + 1
      done[id] = nil
      exited[id] = remerge[id] or nil
      fresh[id] = rerun[id] or nil
      st:set_task(run.id, id, { status = 'pending' })
    end
  end
  if n > 0 then
    io.stderr:write(('orch: %d finished task(s) of run %s lost their branches: '
      .. 'merging or running them again\n'):format(n, run.id))
  end
  return n
end

-- The workflow definition a run was made by (its file is recorded), or
-- nil for the default workflow or a plain script.
function M.workflow_of(run, o)
  local file = run.workflow
  if type(file) ~= 'string' or not file:find('/') then return nil end
  local def, lerr = require('orch.workflow').load(file, o)
  if not def and lerr then
    err('the workflow %s does not load (%s); resuming with the default workflow', file, lerr)
  end
  return def, file
end

function M.cli_resume(o)
  local loc, lerr = M.locate(o)
  if not loc then err('%s', lerr) return EXIT_USAGE end
  local st = open_store(loc)
  if not st then return EXIT_USAGE end
  local run = o[1] and st:run(o[1]) or (not o[1] and st:latest_run())
  if not run then
    err(o[1] and ('no run %s in %s'):format(o[1], loc.db) or ('no run recorded in %s'):format(loc.db))
    st:close()
    return EXIT_USAGE
  end
  if run.status == 'done' then
    io.stdout:write(('run %s already finished: nothing to resume\n'):format(run.id))
    st:close()
    return EXIT_OK
  end
  if M.is_live(loc.root, run) then
    err('run %s is live (orch pid %d); use orch status or orch repl', run.id, run.pid)
    st:close()
    return EXIT_USAGE
  end
  local plan, perr = decode_plan(run)
  if not plan then err('%s', perr) st:close() return EXIT_USAGE end
  -- the run's budget: --budget, else the one it had (docs/resilience.md)
  local budget_mod = require('orch.budget')
  local budget, berr0 = budget_mod.parse(o.budget)
  if o.budget ~= nil and not budget then err('%s', berr0) st:close() return EXIT_USAGE end
  budget = budget or budget_mod.recorded(st, run.id)
  if budget and budget_mod.run_cost(st, run.id) >= budget then
    err('run %s has spent %s of its budget of %s: give a larger one with --budget USD', run.id,
      budget_mod.fmt(budget_mod.run_cost(st, run.id)), budget_mod.fmt(budget))
    st:close()
    return EXIT_USAGE
  end
  local cok, cerr = require('orch.config').load(loc.root)
  if not cok then err('config: %s', cerr) st:close() return EXIT_USAGE end
  local done, exited, _, reclaimed, fresh = resume_sets(st, run, plan, loc.root)
  lost_work(st, loc, run, o, done, exited, fresh)
  local ndone = 0
  for _ in pairs(done) do ndone = ndone + 1 end
  io.stderr:write(('orch: resuming run %s: %d of %d tasks already done%s\n'):format(
    run.id, ndone, #plan.tasks,
    reclaimed > 0 and (', stopped ' .. reclaimed .. ' left-over task process(es)') or ''))
  run.concurrency = o.concurrency or run.concurrency or 4
  local wdef, wfile = M.workflow_of(run, o)
  -- the merge strategy the run was started with (--merge), else the workflow's
  local stored = type(plan.settings) == 'table' and plan.settings or {}
  if o.merge == nil and type(stored.merge) == 'string' then o.merge = stored.merge end
  if wdef and wdef.merge ~= nil and o.merge == nil then o.merge = wdef.merge end
  local ws = M.workspace_for(loc, run, o)
  if ws.fresh then ws.fresh = fresh end
  local ok, berr = ws:begin(run, { resume = true })
  if not ok then err('%s', tostring(berr)) st:close() return EXIT_USAGE end
  local s = { o = o, loc = loc, plan = plan, store = st, run = run, ws = ws, done = done,
              exited = exited, resume = true, budget = budget }
  if wdef then return require('orch.workflow').resume(wdef, s, wfile) end
  local e, ecode = M.start_engine(s)
  if not e then M.close(s) return ecode end
  return M.apply(s, M.await_end(s))
end

-- ---------------------------------------------------------------- reading

local function open_readonly(o)
  local loc, lerr = M.locate(o)
  if not loc then err('%s', lerr) return nil end
  local f = io.open(loc.db, 'rb')
  if not f then
    err('no runs recorded yet (%s does not exist)', loc.db)
    return nil
  end
  f:close()
  -- a database of an older orch is migrated forward first (what any
  -- writing command would do), so orch status works after an upgrade; when
  -- that cannot be done (no write access), the read-only open says why
  local fv = store_mod.file_version(loc.db)
  if fv and fv > 0 and fv < store_mod.VERSION then
    local w = store_mod.open(loc.db)
    if w then w:close() end
  end
  local st, serr = store_mod.open(loc.db, { readonly = true })
  if not st then err('%s', serr) return nil end
  return st, loc
end

function M.cli_status(o)
  local status = require('orch.status')
  local st, loc = open_readonly(o)
  if not st then return EXIT_USAGE end
  local text, serr
  local run = o[1] and st:run(o[1]) or st:latest_run()
  if o.json then
    local id = o[1] or (st:latest_run() or {}).id
    if id then text, serr = status.json(st, id) else serr = 'no run recorded yet' end
  else
    text, serr = status.text(st, o[1], { color = require('orch.color').enabled(1) })
  end
  st:close()
  if not text then err('%s', serr) return EXIT_USAGE end
  io.stdout:write(text)
  if not o.json and run and run.status == 'running' then
    if M.is_live(loc.root, run) then
      io.stdout:write(('\nlive in orch pid %s: `orch repl %s` reaches it\n'):format(tostring(run.pid), run.id))
    else
      io.stdout:write(('\nnot live: the orch that ran it stopped; `orch resume %s` carries on\n')
        :format(run.id))
    end
  end
  return EXIT_OK
end

function M.cli_logs(o)
  local status = require('orch.status')
  if not o[1] or not o[2] then
    err('usage: orch logs RUN TASK')
    return EXIT_USAGE
  end
  local st, loc = open_readonly(o)
  if not st then return EXIT_USAGE end
  local loc_root = loc.root
  if not st:task(o[1], o[2]) then
    err('no task %s in run %s', o[2], o[1])
    st:close()
    return EXIT_USAGE
  end
  local logs = o.json and status.logs_json or status.logs
  -- streamed row by row: a 200 MB log is never held whole
  local write = function(s) io.stdout:write(s) end
  local text, last, attempt = logs(st, o[1], o[2], { write = write })
  io.stdout:write(text)
  if o.follow then
    local live = true
    local t = core.timer(200, 200, function()
      -- liveness first: the read after the run ended gets its last lines
      local run = st:run(o[1])
      live = run and run.status == 'running' and M.is_live(loc_root, run)
      local more
      more, last, attempt = logs(st, o[1], o[2], { after = last, last_attempt = attempt,
                                                    write = write })
      io.stdout:write(more)
      io.stdout:flush()
    end)
    while live do core.run('once') end
    t:close()
  end
  st:close()
  return EXIT_OK
end

-- Run statuses of a run that stopped before its end (see cli_clean).
local UNFINISHED = { pending = true, running = true, interrupted = true, budget = true }

function M.cli_clean(o)
  if not o[1] then err('usage: orch clean RUN') return EXIT_USAGE end
  local loc, lerr = M.locate(o)
  if not loc or not loc.root then err('%s', lerr or 'no repository') return EXIT_USAGE end
  local wt = require('orch.worktrees')
  local st = open_store(loc)
  if not st then return EXIT_USAGE end
  local run = st:run(o[1])
  if M.is_live(loc.root, run) then
    err('run %s is live (orch pid %d): stop it first', run.id, run.pid)
    st:close()
    return EXIT_USAGE
  end
  st:close()
  -- A run that stopped before its end (a crash, Ctrl+C) still has work that
  -- only its branches hold: cleaning it would leave resume nothing to merge.
  if run and UNFINISHED[run.status] and not o.force then
    err('run %s is not finished (%s): `orch resume %s` finishes it; '
      .. '`orch clean --force %s` removes its work anyway', run.id, run.status, run.id, run.id)
    return EXIT_USAGE
  end
  local msg, cerr = wt.clean(loc.root, o[1])
  if not msg then err('%s', tostring(cerr)) return EXIT_FAIL end
  -- the CLIs' own records of the run's conversations (orch.backends.cli.state_dir)
  if o[1]:match('^[%w][%w%._%-]*$') then
    os.execute("rm -rf '" .. loc.root .. "/.orch/agents/" .. o[1] .. "'")
  end
  io.stdout:write(msg, '\n')
  return EXIT_OK
end

-- ---------------------------------------------------------------- run

-- `orch run [WORKFLOW.lua] [--plan FILE | --goal TEXT] ...`: a workflow
-- file (orch.workflow); --goal alone runs code_review_test, --plan alone
-- the default workflow.
function M.cli_run(o)
  local file = o[1]
  if o.budget ~= nil then
    local b, berr = require('orch.budget').parse(o.budget)
    if not b then err('run: %s', berr) return EXIT_USAGE end
    o.budget = b
  end
  if o[2] then err("run: unexpected argument '%s'", o[2]) return EXIT_USAGE end
  if o.goal and o.plan then err('run: give --goal or --plan, not both') return EXIT_USAGE end
  if not file then
    if not o.plan and not o.goal then
      err('nothing to run: give a WORKFLOW.lua, --goal TEXT or --plan FILE (see orch help run)')
      return EXIT_USAGE
    end
    file = core.runtime_dir() .. '/workflows/' .. (o.goal and 'code_review_test' or 'default') .. '.lua'
  elseif not file:find('/') and not file:match('%.lua$') then
    -- a shipped workflow by name: `orch run code_only --goal ...`
    file = core.runtime_dir() .. '/workflows/' .. file .. '.lua'
  end
  local f = io.open(file, 'rb')
  if not f then err('no workflow file %s', file) return EXIT_USAGE end
  f:close()
  return require('orch.workflow').run_file(repo_mod.abspath(file), o)
end

return M
