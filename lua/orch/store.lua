-- orch.store: the SQLite state of runs (see docs/state.md).
--
-- Every call that changes state commits before it returns, and flushes the
-- buffered output events first, so the database never shows a state change
-- without the output that led to it. Times are REAL unix seconds.
local cjson = require('cjson')

local M = {}

M.NULL = cjson.null -- a field value that sets a column to NULL
M.BATCH = 200 -- events buffered before a flush (a flush blocks the loop: keep it short)
M.FLUSH_MS = 200 -- and at most this long (when orch.core.timer exists)
-- WAL checkpoints (which fsync) run off the loop thread once the WAL holds
-- this many pages (see core/dbckpt.h)
M.CHECKPOINT_PAGES = 1000

-- What one task may make the database hold (see docs/state.md, "Output
-- limits"); a user's init.lua may change them:
--   require('orch.store').limits.output = 256 * 1024 * 1024
M.limits = {
  -- one stored line (event data): a longer one keeps its first and last
  -- line/2 bytes around "[... orch cut N bytes ...]"
  line = 1024 * 1024,
  -- the output of one attempt of a task: past it the rest is not stored
  -- (a marker line says so, and the attempt's end says how much was dropped)
  output = 64 * 1024 * 1024,
}

local core = require('orch.core')
local db = core.db

M.now = db.now

local function mib(n)
  if n % (1024 * 1024) == 0 then return ('%d MiB'):format(n / (1024 * 1024)) end
  return ('%d bytes'):format(n)
end

-- ---------------------------------------------------------------- schema

-- ALTER TABLE ADD COLUMN unless the table has the column (a file set back
-- to an older version by hand has it already).
local function add_column(h, tbl, col, decl)
  for c in h:rows('PRAGMA table_info(' .. tbl .. ')') do
    if c.name == col then return end
  end
  h:exec(('ALTER TABLE %s ADD COLUMN %s %s'):format(tbl, col, decl))
end

-- Ordered migrations: migrations[i] (SQL text, or a function given the
-- db handle) brings a database from user_version i-1 to i, in one
-- transaction with the version bump. Append only; never edit a released one.
M.migrations = {
  [[
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    goal TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    plan_file TEXT,
    plan_json TEXT,
    repo TEXT,
    workflow TEXT,
    concurrency INTEGER,
    base_commit TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    pid INTEGER,
    exit_code INTEGER,
    error TEXT
  );
  CREATE INDEX runs_created ON runs(created_at);
  CREATE TABLE tasks (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    title TEXT,
    role TEXT,
    backend TEXT,
    model TEXT,
    cmd TEXT,
    prompt TEXT,
    files_json TEXT NOT NULL DEFAULT '[]',
    on_failure TEXT NOT NULL DEFAULT 'hard',
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    branch TEXT,
    worktree TEXT,
    session_id TEXT,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, id)
  ) WITHOUT ROWID;
  CREATE INDEX tasks_seq ON tasks(run_id, seq);
  CREATE TABLE deps (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    dep_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, task_id, dep_id),
    FOREIGN KEY (run_id, task_id) REFERENCES tasks(run_id, id) ON DELETE CASCADE,
    FOREIGN KEY (run_id, dep_id) REFERENCES tasks(run_id, id) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX deps_dep ON deps(run_id, dep_id);
  CREATE TABLE attempts (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL,
    status TEXT NOT NULL DEFAULT 'running',
    exit_code INTEGER,
    signal INTEGER,
    pid INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, task_id, n),
    FOREIGN KEY (run_id, task_id) REFERENCES tasks(run_id, id) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    task_id TEXT,
    attempt INTEGER,
    t REAL NOT NULL,
    stream TEXT NOT NULL,
    data TEXT
  );
  CREATE INDEX events_task ON events(run_id, task_id, id);
  CREATE TABLE sessions (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    backend TEXT,
    session_id TEXT,
    created_at REAL NOT NULL,
    data_json TEXT,
    PRIMARY KEY (run_id, task_id),
    FOREIGN KEY (run_id, task_id) REFERENCES tasks(run_id, id) ON DELETE CASCADE
  ) WITHOUT ROWID;
  ]],
  -- 2: the engine's event stream (docs/api/events.md). Every event has a
  -- run-wide seq; state events keep their JSON in payload; an output batch
  -- is one row per line (kind 'output', or NULL in rows written before),
  -- all rows of a batch sharing its seq, so `orch logs` still reads lines.
  -- Tasks gain what their agents cost.
  [[
  ALTER TABLE events ADD COLUMN kind TEXT;
  ALTER TABLE events ADD COLUMN seq INTEGER;
  ALTER TABLE events ADD COLUMN payload TEXT;
  CREATE INDEX events_seq ON events(run_id, seq);
  ALTER TABLE tasks ADD COLUMN cost_usd REAL;
  ALTER TABLE tasks ADD COLUMN usage_json TEXT;
  ]],
  -- 3: facts about the database itself: orch_version, the orch that last
  -- migrated it (named when an older orch refuses the file). Every later
  -- orch keeps this table and that key.
  [[
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
  ]],
  -- 4: an output row holds a chunk of lines (one batch of one stream of a
  -- task, joined with "\n"; a line never holds one) and how many: one row
  -- per batch, not per line (docs/state.md, "Output chunks"). NULL is one
  -- line (every output row written before). (A file set back to an older
  -- version by hand may have the column already.)
  function(h) add_column(h, 'events', 'lines', 'INTEGER') end,
  -- 5: the orchestrator's conversation ({backend, id, data} as JSON: what
  -- its backend needs to continue it), so that `orch resume` goes on with
  -- the conversation that planned the run (docs/state.md). (The column may
  -- be there already, as for 4.)
  function(h) add_column(h, 'runs', 'orchestrator_json', 'TEXT') end,
}

M.VERSION = #M.migrations

local RUN_FIELDS = {
  goal = true, status = true, plan_file = true, plan_json = true, repo = true,
  workflow = true, concurrency = true, base_commit = true, created_at = true,
  started_at = true, finished_at = true, pid = true, exit_code = true,
  error = true, orchestrator_json = true,
}
local TASK_FIELDS = {
  title = true, role = true, backend = true, model = true, cmd = true,
  prompt = true, files_json = true, on_failure = true, status = true,
  attempts = true, branch = true, worktree = true, session_id = true,
  started_at = true, finished_at = true, exit_code = true, error = true,
  cost_usd = true, usage_json = true,
}
local ATTEMPT_FIELDS = {
  started_at = true, finished_at = true, status = true, exit_code = true,
  signal = true, pid = true, error = true,
}

M.TASK_STATUSES = {
  'pending', 'ready', 'running', 'done', 'failed', 'skipped', 'blocked',
  'conflict', 'cancelled',
}

-- ---------------------------------------------------------------- helpers

local function dirname(path)
  return path:match('^(.*)/[^/]*$')
end

local function value(v)
  if v == cjson.null then return nil end
  return v
end

-- "SET a = ?, b = ?" over the sorted keys of fields (so equal key sets give
-- equal SQL text, which the statement cache reuses) and their values.
local function assignments(fields, allowed, what)
  local keys = {}
  for k in pairs(fields) do
    if not allowed[k] then
      error(string.format('unknown %s field %q', what, tostring(k)), 3)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local sets, vals = {}, {}
  for i, k in ipairs(keys) do
    sets[i] = k .. ' = ?'
    vals[i] = value(fields[k])
  end
  return table.concat(sets, ', '), vals, #keys
end

local function files_json(files)
  if files == nil or files == cjson.null or next(files) == nil then return '[]' end
  return cjson.encode(files)
end

local function decode_task(st, row)
  if not row then return nil end
  local ok, files = pcall(cjson.decode, row.files_json or '[]')
  row.files = ok and type(files) == 'table' and files or {}
  row.deps = {}
  for d in st.h:rows([[SELECT dep_id FROM deps WHERE run_id = ? AND task_id = ?
                       ORDER BY seq]], row.run_id, row.id) do
    row.deps[#row.deps + 1] = d.dep_id
  end
  return row
end

-- ---------------------------------------------------------------- store

local Store = {}
Store.__index = Store

-- The schema version in a database file's header (a big-endian integer at
-- byte 60), read without opening it for writing; nil when path is not a
-- database (absent, empty, not SQLite).
function M.file_version(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local head = f:read(100)
  f:close()
  if not head or #head < 100 or head:sub(1, 16) ~= 'SQLite format 3\0' then return nil end
  local a, b, c, d = head:byte(61, 64)
  local v = ((a * 256 + b) * 256 + c) * 256 + d
  -- the header lags behind a WAL not yet checkpointed (orch's writer leaves
  -- it at close, core/dbckpt.h): then a read-only open reads the version
  local w = io.open(path .. '-wal', 'rb')
  local wal = w and w:seek('end') or 0
  if w then w:close() end
  if wal > 32 then
    local h = db.open(path, { readonly = true })
    if h then
      local ok, row = pcall(h.first, h, 'PRAGMA user_version')
      h:close()
      if ok and row then return row.user_version end
    end
  end
  return v
end

-- The message for a database of schema version v, newer than this orch
-- knows: both orch versions (the writer's from its meta table, when it can
-- be read) and both schema versions.
local function newer_message(path, v, h)
  local writer
  local function read(handle)
    local ok, row = pcall(handle.first, handle,
      "SELECT value FROM meta WHERE key = 'orch_version'")
    if ok and row then writer = row.value end
  end
  if h then
    read(h)
  else
    local ro = db.open(path, {readonly = true})
    if ro then read(ro); ro:close() end
  end
  return string.format('%s was written by a newer orch%s (schema version %d); this is ' ..
    'orch %s, which knows schema versions up to %d: upgrade orch to use it ' ..
    '(the file was left as it is)', path, writer and (' ' .. writer) or '', v,
    core.version, #M.migrations)
end
M.newer_message = newer_message

local function migrate(h, path)
  local v = h:first('PRAGMA user_version').user_version
  if v > #M.migrations then return nil, newer_message(path, v, h) end
  for i = v + 1, #M.migrations do
    local ok, err = pcall(h.transaction, h, function()
      -- another process may have migrated while we waited for the lock
      if h:first('PRAGMA user_version').user_version >= i then return end
      local m = M.migrations[i]
      if type(m) == 'function' then m(h) else h:exec(m) end
      h:exec('PRAGMA user_version = ' .. i)
    end)
    if not ok then
      return nil, string.format('%s: migration to schema version %d failed: %s',
                                path, i, tostring(err))
    end
  end
  if v < #M.migrations then
    h:run("INSERT OR REPLACE INTO meta (key, value) VALUES ('orch_version', ?)", core.version)
  end
  return true
end

-- store.open(path, {readonly = bool}) -> st or nil, err
function M.open(path, opts)
  opts = opts or {}
  -- a database from a newer orch is refused before SQLite opens it for
  -- writing (which would set its journal mode, its permissions)
  local fv = M.file_version(path)
  if fv and fv > #M.migrations then return nil, newer_message(path, fv) end
  local dir = dirname(path)
  -- the state directory is private (0700): the database holds plan env
  -- values and all task output; the database files are 0600 (core/db.c)
  if not opts.readonly and dir and dir ~= '' then
    core.mkdir_p(dir, tonumber('700', 8))
    if dir:match('/%.orch$') then core.chmod(dir, tonumber('700', 8)) end
  end
  local h, err = db.open(path, {readonly = opts.readonly,
                                background_checkpoint = M.CHECKPOINT_PAGES})
  if not h then return nil, err end
  if opts.readonly then
    local v = h:first('PRAGMA user_version').user_version
    local msg
    if v == 0 then
      msg = path .. ': not an orch database (or no run was recorded yet)'
    elseif v > #M.migrations then
      msg = newer_message(path, v, h)
    elseif v < #M.migrations then
      msg = string.format('%s has schema version %d and needs a migration to %d:' ..
        ' run orch on it with write access first', path, v, #M.migrations)
    end
    if msg then h:close(); return nil, msg end
  else
    local ok, merr = migrate(h, path)
    if not ok then h:close(); return nil, merr end
  end
  local st = setmetatable({
    h = h, path = path, readonly = opts.readonly or false,
    buf = {}, nbuf = 0, ebuf = {}, nbytes = 0, timer = nil, outcount = {},
  }, Store)
  return st
end

function Store:close()
  if not self.h:is_open() then return end
  if not self.readonly then self:flush() end
  self:commit_group()
  self:_stop_timer()
  self.h:close()
end

function Store:_writable()
  if self.readonly then error('store is open read-only: ' .. self.path, 3) end
end

-- A group: the state changes from begin_group() to commit_group() share
-- one transaction (each call inside it is a savepoint of its own, rolled
-- back alone when it raises). The engine groups the changes of one turn of
-- the loop this way and acts on none of them before commit_group()
-- returned (docs/state.md, "Grouped commits").
-- (BEGIN, COMMIT and the savepoints go through h:run, whose prepared
-- statements are cached: h:exec and h:transaction parse theirs each time.)
function Store:begin_group()
  self:_writable()
  if self.grouped then return end
  self.h:run('BEGIN IMMEDIATE')
  self.grouped = true
end

-- Commits the open group (nothing when none is open). On failure it is
-- rolled back and the error raised: none of its changes happened.
function Store:commit_group()
  if not self.grouped then return end
  self.grouped = false
  local lost = self.group_lost
  if lost then
    self.group_lost = nil
    error('the changes of this turn were rolled back: ' .. lost, 0)
  end
  local ok, err = pcall(self.h.run, self.h, 'COMMIT')
  if not ok then
    if self.h:in_transaction() then pcall(self.h.run, self.h, 'ROLLBACK') end
    error(err, 0)
  end
end

local function pack(...) return { n = select('#', ...), ... } end

-- fn() in a savepoint of the open group: rolled back alone when it raises.
-- A call inside another's savepoint (record's change calling finish_attempt)
-- is part of that one: its error rolls back the outer call too.
function Store:_in_group(fn)
  if self.sp_depth then return fn() end
  local h = self.h
  h:run('SAVEPOINT orch_g')
  self.sp_depth = true
  local r = pack(pcall(fn))
  self.sp_depth = nil
  if r[1] then
    h:run('RELEASE orch_g')
    return unpack(r, 2, r.n)
  end
  if h:in_transaction() then
    pcall(h.run, h, 'ROLLBACK TO orch_g')
    pcall(h.run, h, 'RELEASE orch_g')
  else
    -- the error ended the whole transaction (SQLITE_FULL, ...): the group
    -- is gone, and its commit must say so
    self.group_lost = tostring(r[2])
  end
  error(r[2], 0)
end

function Store:in_group()
  return self.grouped == true
end

-- Runs fn in one transaction after flushing the buffered events into it.
function Store:_change(fn)
  self:_writable()
  local body = function()
    self:_write_events()
    return fn()
  end
  if self.grouped then return self:_in_group(body) end
  return self.h:transaction(body)
end

-- ---------------------------------------------------------------- runs

function Store:create_run(run)
  assert(type(run) == 'table' and type(run.id) == 'string', 'run.id expected')
  self:_change(function()
    self.h:run([[INSERT INTO runs (id, goal, status, plan_file, plan_json, repo,
                   workflow, concurrency, base_commit, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
      run.id, value(run.goal), value(run.status) or 'pending',
      value(run.plan_file), value(run.plan_json), value(run.repo),
      value(run.workflow), value(run.concurrency), value(run.base_commit),
      value(run.created_at) or M.now())
  end)
  return run.id
end

function Store:run(id)
  self:flush()
  return self.h:first('SELECT * FROM runs WHERE id = ?', id)
end

function Store:latest_run()
  self:flush()
  return self.h:first('SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1')
end

function Store:runs()
  self:flush()
  local out = {}
  for r in self.h:rows('SELECT * FROM runs ORDER BY created_at, rowid') do
    out[#out + 1] = r
  end
  return out
end

function Store:set_run(run_id, fields)
  local sets, vals, n = assignments(fields, RUN_FIELDS, 'run')
  return self:_change(function()
    if n == 0 then return 0 end
    vals[n + 1] = run_id
    return self.h:run('UPDATE runs SET ' .. sets .. ' WHERE id = ?',
                      unpack(vals, 1, n + 1))
  end)
end

-- The orchestrator's conversation of a run: session = {backend=, id=,
-- data=} (data: what an HTTP backend sends again at every turn).
function Store:set_orchestrator_session(run_id, session)
  return self:set_run(run_id, { orchestrator_json = cjson.encode({
    backend = session.backend, id = session.id, data = session.data }) })
end

-- The session stored by set_orchestrator_session, or nil.
function Store:orchestrator_session(run_id)
  local run = self:run(run_id)
  local ok, sess = pcall(cjson.decode, run and run.orchestrator_json or 'null')
  if ok and type(sess) == 'table' and type(sess.id) == 'string' then
    if sess.data == cjson.null then sess.data = nil end
    return sess
  end
end

-- ---------------------------------------------------------------- tasks

-- Adds plan tasks (id, title, role, backend, model, cmd, prompt, files,
-- deps, on_failure) in plan order, with their deps, in one transaction.
function Store:add_tasks(run_id, tasks)
  self:_change(function()
    local h = self.h
    local base = h:first('SELECT coalesce(max(seq), 0) AS s FROM tasks WHERE run_id = ?',
                         run_id).s
    for i, t in ipairs(tasks) do
      h:run([[INSERT INTO tasks (run_id, id, seq, title, role, backend, model, cmd,
                prompt, files_json, on_failure)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)]],
        run_id, t.id, base + i, value(t.title), value(t.role), value(t.backend),
        value(t.model), value(t.cmd), value(t.prompt),
        files_json(t.files),
        value(t.on_failure) or 'hard')
    end
    for _, t in ipairs(tasks) do
      for j, d in ipairs(t.deps or {}) do
        h:run('INSERT INTO deps (run_id, task_id, dep_id, seq) VALUES (?, ?, ?, ?)',
              run_id, t.id, d, j)
      end
    end
  end)
end

-- Replaces every task of a run that has not started any (a plan edited
-- at the plan gate): the tasks and their deps, in one transaction.
function Store:replace_tasks(run_id, tasks)
  self:_change(function()
    local h = self.h
    local started = h:first('SELECT count(*) AS n FROM attempts WHERE run_id = ?', run_id).n
    if started > 0 then error(('run %s has started tasks: its plan cannot be replaced'):format(run_id), 0) end
    h:run('DELETE FROM deps WHERE run_id = ?', run_id)
    h:run('DELETE FROM tasks WHERE run_id = ?', run_id)
    self:add_tasks(run_id, tasks)
  end)
end

function Store:tasks(run_id)
  self:flush()
  local out, by = {}, {}
  for r in self.h:rows('SELECT * FROM tasks WHERE run_id = ? ORDER BY seq', run_id) do
    local ok, files = pcall(cjson.decode, r.files_json or '[]')
    r.files = ok and type(files) == 'table' and files or {}
    r.deps = {}
    out[#out + 1] = r
    by[r.id] = r
  end
  for d in self.h:rows('SELECT task_id, dep_id FROM deps WHERE run_id = ? ORDER BY seq',
                       run_id) do
    local t = by[d.task_id]
    t.deps[#t.deps + 1] = d.dep_id
  end
  return out
end

function Store:task(run_id, id)
  self:flush()
  return decode_task(self, self.h:first(
    'SELECT * FROM tasks WHERE run_id = ? AND id = ?', run_id, id))
end

-- Updates task columns; committed before it returns. Returns the number of
-- rows changed (0: no such task).
function Store:set_task(run_id, id, fields)
  local sets, vals, n = assignments(fields, TASK_FIELDS, 'task')
  return self:_change(function()
    if n == 0 then return 0 end
    vals[n + 1], vals[n + 2] = run_id, id
    return self.h:run('UPDATE tasks SET ' .. sets .. ' WHERE run_id = ? AND id = ?',
                      unpack(vals, 1, n + 2))
  end)
end

-- ---------------------------------------------------------------- attempts

-- Starts attempt n = tasks.attempts + 1: the task becomes running (its
-- started_at set, finished_at/exit_code/error cleared) and the attempt row
-- is written, all in one transaction. fields: the attempt's started_at and
-- pid; any other key is a task field set in the same UPDATE (branch,
-- worktree, backend, model, ...). Returns n.
function Store:start_attempt(run_id, task_id, fields)
  fields = fields or {}
  local t = value(fields.started_at) or M.now()
  local extra = {}
  for k, v in pairs(fields) do
    if k ~= 'started_at' and k ~= 'pid' then extra[k] = v end
  end
  local sets, vals, c = assignments(extra, TASK_FIELDS, 'task')
  local sql = [[UPDATE tasks SET attempts = attempts + 1, status = 'running',
                  started_at = ?, finished_at = NULL, exit_code = NULL, error = NULL]]
    .. (c > 0 and (', ' .. sets) or '') .. ' WHERE run_id = ? AND id = ? RETURNING attempts'
  return self:_change(function()
    local h = self.h
    vals[c + 1], vals[c + 2] = run_id, task_id
    local row = h:first(sql, t, unpack(vals, 1, c + 2))
    if not row then
      error(string.format('no task %s in run %s', task_id, run_id), 0)
    end
    local n = row.attempts
    h:run([[INSERT INTO attempts (run_id, task_id, n, started_at, status, pid)
            VALUES (?, ?, ?, ?, 'running', ?)]],
          run_id, task_id, n, t, value(fields.pid))
    return n
  end)
end

-- Ends attempt n (fields: status, exit_code, signal, error, finished_at,
-- pid). The task's finished_at, exit_code and error follow; its status
-- changes too when fields.task_status is given, in the same transaction.
function Store:finish_attempt(run_id, task_id, n, fields)
  fields = fields or {}
  local key = run_id .. '\0' .. task_id .. '\0' .. tostring(n or 0)
  local count = self.outcount[key]
  if count then
    self.outcount[key] = nil
    if count.dropped > 0 then
      self:_append(run_id, task_id, n, M.now(), 'orch', ('%d bytes in %d lines of output were not stored ' ..
        '(over the limit of %s)'):format(count.dropped, count.lines, mib(M.limits.output)))
    end
  end
  local f = {}
  for k, v in pairs(fields) do
    if k ~= 'task_status' then f[k] = v end
  end
  if f.finished_at == nil then f.finished_at = M.now() end
  if f.status == nil then f.status = 'done' end
  -- a pid noted for this attempt and not written yet goes in this UPDATE
  local d = self.deferred
  if d and f.pid == nil then
    for i = #d, 1, -1 do
      local u = d[i]
      if u.pid_of and u[3] == run_id and u[4] == task_id and u[5] == n then
        f.pid = u[2]
        table.remove(d, i)
        if #d == 0 then self.deferred = nil end
        break
      end
    end
  end
  local sets, vals, c = assignments(f, ATTEMPT_FIELDS, 'attempt')
  return self:_change(function()
    local h = self.h
    vals[c + 1], vals[c + 2], vals[c + 3] = run_id, task_id, n
    h:run('UPDATE attempts SET ' .. sets .. ' WHERE run_id = ? AND task_id = ? AND n = ?',
          unpack(vals, 1, c + 3))
    local tf = {finished_at = f.finished_at, exit_code = f.exit_code or M.NULL,
                error = f.error or M.NULL, status = fields.task_status}
    local tsets, tvals, tc = assignments(tf, TASK_FIELDS, 'task')
    tvals[tc + 1], tvals[tc + 2] = run_id, task_id
    h:run('UPDATE tasks SET ' .. tsets .. ' WHERE run_id = ? AND id = ?',
          unpack(tvals, 1, tc + 2))
  end)
end

-- Updates fields (pid, status, ...) of attempt n without touching the task.
function Store:set_attempt(run_id, task_id, n, fields)
  local sets, vals, c = assignments(fields, ATTEMPT_FIELDS, 'attempt')
  return self:_change(function()
    if c == 0 then return 0 end
    vals[c + 1], vals[c + 2], vals[c + 3] = run_id, task_id, n
    return self.h:run('UPDATE attempts SET ' .. sets .. ' WHERE run_id = ? AND task_id = ? AND n = ?',
                      unpack(vals, 1, c + 3))
  end)
end

function Store:attempts(run_id, task_id)
  self:flush()
  local out = {}
  for r in self.h:rows('SELECT * FROM attempts WHERE run_id = ? AND task_id = ? ORDER BY n',
                       run_id, task_id) do
    out[#out + 1] = r
  end
  return out
end

-- ---------------------------------------------------------------- events

function Store:_stop_timer()
  if self.timer then
    pcall(self.timer.stop, self.timer)
    pcall(self.timer.close, self.timer)
    self.timer = nil
  end
end

-- Arms a one-shot flush in FLUSH_MS when orch.core.timer exists (the
-- store works without it: then only BATCH, flush() and state changes write).
function Store:_arm_timer()
  if self.timer == false then return end
  if self.timer then
    if not pcall(self.timer.start, self.timer, M.FLUSH_MS) then
      self:_stop_timer()
      self.timer = false
    end
    return
  end
  if type(core.timer) ~= 'function' then self.timer = false; return end
  local ok, t = pcall(core.timer, M.FLUSH_MS, function()
    if self.h:is_open() and (self.nbuf > 0 or #self.ebuf > 0 or self.deferred) then self:flush() end
  end)
  self.timer = ok and t or false
end

local STRIDE = 8 -- buffered row: run, task, attempt, t, stream, data, seq, lines

-- data cut to limits.line: its head and tail around a marker.
function M.cut_line(data, max)
  max = max or M.limits.line
  if #data <= max then return data end
  local head = math.floor(max / 2)
  local tail = max - head
  return data:sub(1, head) .. (' [... orch cut %d bytes ...] '):format(#data - head - tail)
    .. data:sub(-tail)
end

-- Appends one row to the buffer (no flush): nlines lines (default 1)
-- joined with "\n" in data.
function Store:_append(run_id, task_id, attempt, t, stream, data, seq, nlines)
  local b, n = self.buf, self.nbuf
  b[n + 1], b[n + 2], b[n + 3] = run_id, task_id or false, attempt or false
  b[n + 4], b[n + 5], b[n + 6], b[n + 7] = t, stream, data or false, seq or false
  b[n + 8] = nlines and nlines > 1 and nlines or false
  self.nbuf = n + STRIDE
  if data then self.nbytes = self.nbytes + #data end
end

-- Counts an attempt's output against limits.output. Returns true when the
-- line is to be stored (the first line over the limit is replaced by a
-- marker).
function Store:_out_counter(run_id, task_id, attempt)
  local key = run_id .. '\0' .. task_id .. '\0' .. tostring(attempt or 0)
  local c = self.outcount[key]
  if not c then c = { bytes = 0, dropped = 0, lines = 0 } self.outcount[key] = c end
  return c
end

function Store:_count_output(run_id, task_id, attempt, data, seq, c)
  c = c or self:_out_counter(run_id, task_id, attempt)
  if c.dropped == 0 and c.bytes + #data <= M.limits.output then
    c.bytes = c.bytes + #data
    return true
  end
  if c.dropped == 0 then
    self:_append(run_id, task_id, attempt, M.now(), 'orch', ('output over the limit of %s for one attempt ' ..
      "(orch.store.limits.output): the rest of it is not stored"):format(mib(M.limits.output)), seq)
  end
  c.dropped, c.lines = c.dropped + #data, c.lines + 1
  return false
end

-- Buffers one output line; written by the next flush. seq: the engine's
-- event number of the batch it belongs to (nil for a line outside one).
-- A line is cut to limits.line; an attempt's output past limits.output is
-- counted, not stored.
function Store:event(run_id, task_id, attempt, stream, data, seq)
  self:_writable()
  local was = self.nbuf + #self.ebuf
  if type(data) == 'string' then
    if #data > M.limits.line then data = M.cut_line(data) end
    if task_id and not self:_count_output(run_id, task_id, attempt, data, seq) then
      return self:_after_buffer(was)
    end
  end
  self:_append(run_id, task_id, attempt, M.now(), stream, data, seq)
  self:_after_buffer(was)
end

-- The lines of data (joined with "\n"), as a list.
local function split_lines(data)
  local out, pos, n = {}, 1, 0
  while true do
    local s = data:find('\n', pos, true)
    n = n + 1
    if not s then out[n] = data:sub(pos); return out end
    out[n] = data:sub(pos, s - 1)
    pos = s + 1
  end
end
M.split_lines = split_lines

-- A chunk's lines one by one (its longest is over limits.line or the
-- attempt reaches limits.output): each line cut and counted as by event(),
-- those kept joined again into one row.
function Store:_output_slow(run_id, task_id, attempt, t, stream, data, seq, n)
  local kept, maxline = {}, M.limits.line
  local c = task_id and self:_out_counter(run_id, task_id, attempt)
  -- (one line, however long, is not copied by a split: a task's long lines
  -- come one to a chunk, core/linechunk.h)
  local lines = n == 1 and { data } or split_lines(data)
  for i = 1, #lines do
    local l = lines[i]
    if #l > maxline then l = M.cut_line(l, maxline) end
    if c and c.dropped == 0 and c.bytes + #l > M.limits.output and #kept > 0 then
      -- what was kept goes before the marker the next line writes
      self:_append(run_id, task_id, attempt, t, stream, table.concat(kept, '\n'), seq, #kept)
      kept = {}
    end
    if not c or self:_count_output(run_id, task_id, attempt, l, seq, c) then kept[#kept + 1] = l end
  end
  if #kept > 0 then
    self:_append(run_id, task_id, attempt, t, stream, table.concat(kept, '\n'), seq, #kept)
  end
end

-- Buffers an output batch (the engine's {kind='output'} event) as one row:
-- data is n lines joined with "\n" (or a list of lines), the longest
-- `longest` bytes (default #data), all with the batch's seq; each line cut
-- and counted as by event(). Written by the next flush, or with the next
-- state change, whichever comes first.
function Store:output(run_id, task_id, attempt, stream, data, seq, n, longest)
  self:_writable()
  if type(data) == 'table' then
    n, longest = #data, 0
    for i = 1, n do if #data[i] > longest then longest = #data[i] end end
    data = table.concat(data, '\n')
  end
  n = n or 1
  if n < 1 then return end
  local t, was = M.now(), self.nbuf + #self.ebuf
  local c = task_id and self:_out_counter(run_id, task_id, attempt)
  local bytes = #data - (n - 1) -- without the separators, as event() counts
  if (longest or #data) > M.limits.line
      or (c and (c.dropped > 0 or c.bytes + bytes > M.limits.output)) then
    self:_output_slow(run_id, task_id, attempt, t, stream, data, seq, n)
  else
    if c then c.bytes = c.bytes + bytes end
    self:_append(run_id, task_id, attempt, t, stream, data, seq, n)
  end
  self:_after_buffer(was)
end

M.BATCH_BYTES = 4 * 1024 * 1024 -- buffered bytes before a flush (memory stays bounded)

-- Flushes a full buffer; arms the timer for the first buffered row.
function Store:_after_buffer(was)
  if self.nbuf >= M.BATCH * STRIDE or #self.ebuf >= M.BATCH or self.nbytes >= M.BATCH_BYTES then
    self:flush()
  elseif was == 0 then
    self:_arm_timer()
  end
end

-- Buffers an event that changes no state (an agent's text, tool call,
-- tool result, ...): written like output, by the next flush or state
-- change, with its kind, seq and payload.
function Store:buffer_event(run_id, ev)
  self:_writable()
  local was = self.nbuf + #self.ebuf
  local payload = M.encode_event(ev, M.MAX_BUFFERED_STRING)
  local e = self.ebuf
  e[#e + 1] = { run_id, ev.task or false, ev.attempt or false, ev.t or M.now(), ev.kind,
                ev.seq or false, payload }
  self.nbytes = self.nbytes + #payload
  self:_after_buffer(was)
end

-- Writes the buffer inside the caller's transaction.
function Store:_write_events()
  local d = self.deferred
  if d then
    self.deferred = nil
    for _, u in ipairs(d) do self.h:run(u[1], unpack(u, 2, u.n)) end
  end
  local n, eb = self.nbuf, self.ebuf
  if n == 0 and #eb == 0 then return end
  local b, h = self.buf, self.h
  local sql = [[INSERT INTO events (run_id, task_id, attempt, t, stream, data, kind, seq, lines)
                VALUES (?, ?, ?, ?, ?, ?, 'output', ?, ?)]]
  for i = 1, n, STRIDE do
    local task, att, data, seq, nl = b[i + 1], b[i + 2], b[i + 5], b[i + 6], b[i + 7]
    h:run(sql, b[i], task or nil, att or nil, b[i + 3], b[i + 4], data or nil, seq or nil,
          nl or nil)
  end
  if #eb > 0 then
    local esql = [[INSERT INTO events (run_id, task_id, attempt, t, stream, data, kind, seq, payload)
                   VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)]]
    for _, r in ipairs(eb) do
      h:run(esql, r[1], r[2] or nil, r[3] or nil, r[4], r[5], r[5], r[6] or nil, r[7])
    end
  end
  self.buf, self.nbuf, self.ebuf, self.nbytes = {}, 0, {}, 0
  if self.timer then pcall(self.timer.stop, self.timer) end
end

M.MAX_PAYLOAD = 1024 * 1024 -- bytes of an event's JSON kept in the store

-- the longest string kept in a buffered event's payload: an agent's tool
-- output is in the task's output rows already, whole
M.MAX_BUFFERED_STRING = 16 * 1024

-- A copy of ev with strings longer than cap cut (cjson must never see a
-- huge string, see DESIGN.md's pitfalls), nested at most a few levels.
local function bounded(v, depth, cap)
  local t = type(v)
  if t == 'string' then
    if #v > cap then return v:sub(1, cap) .. '...(cut)' end
    return v
  end
  if t == 'number' or t == 'boolean' or v == cjson.null then return v end
  if t ~= 'table' or depth > 6 then return nil end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == 'string' or type(k) == 'number' then out[k] = bounded(x, depth + 1, cap) end
  end
  return out
end
M.bounded = bounded

-- Whether v needs no cutting (what bounded would return equal to v): then
-- the event is encoded as it is, without a copy.
local function fits(v, depth, cap)
  local t = type(v)
  if t == 'string' then return #v <= cap end
  if t == 'number' or t == 'boolean' or v == cjson.null then return true end
  if t ~= 'table' or depth > 6 or getmetatable(v) ~= nil then return false end
  for k, x in pairs(v) do
    local kt = type(k)
    if (kt ~= 'string' and kt ~= 'number') or not fits(x, depth + 1, cap) then return false end
  end
  return true
end

local ejson = cjson.new()
ejson.encode_sparse_array(true)
ejson.encode_invalid_numbers('null')
ejson.encode_max_depth(16)

-- The JSON of an event as stored (strings longer than cap, default a
-- quarter of MAX_PAYLOAD, cut; '{}' when it cannot be encoded).
function M.encode_event(ev, cap)
  cap = cap or M.MAX_PAYLOAD / 4
  local ok, s = false, nil
  if fits(ev, 0, cap) then ok, s = pcall(ejson.encode, ev) end
  if not ok then ok, s = pcall(ejson.encode, bounded(ev, 0, cap)) end
  if not ok then return '{}' end
  if #s > M.MAX_PAYLOAD then
    s = ejson.encode({ kind = ev.kind, seq = ev.seq, task = ev.task, cut = true })
  end
  return s
end

-- Records one state event of the engine: in one transaction, the buffered
-- output first, then change() (the state the event describes: set_task,
-- finish_attempt, ... as nested calls), then the event row itself (kind,
-- seq, the event as JSON). Returns change's results. ev must have kind and
-- seq; its task and attempt go in their columns too.
function Store:record(run_id, ev, change)
  return self:_change(function()
    local r = change and pack(change()) or { n = 0 }
    self.h:run([[INSERT INTO events (run_id, task_id, attempt, t, stream, data, kind, seq, payload)
                 VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)]],
      run_id, ev.task, ev.attempt, ev.t or M.now(), ev.kind, ev.kind, ev.seq,
      M.encode_event(ev))
    return unpack(r, 1, r.n)
  end)
end

-- The payloads (decoded; tables only) of the event rows a query selects,
-- in its order. (Read to the end: a cursor left open holds a read
-- transaction until collected.)
function Store:_payloads(sql, ...)
  if not self.readonly then self:flush() end
  local out = {}
  for row in self.h:rows(sql, ...) do
    local ok, ev = pcall(cjson.decode, row.payload or '')
    if ok and type(ev) == 'table' then out[#out + 1] = ev end
  end
  return out
end

-- The run's questions, in the order asked: {id=, task=, question=,
-- answer=, by=} (answer nil while open).
function Store:questions(run_id)
  local by_id, order = {}, {}
  for _, q in ipairs(self:_payloads([[SELECT payload FROM events WHERE run_id = ?
                                       AND kind = 'question' ORDER BY seq]], run_id)) do
    if q.id ~= nil then
      local cur = by_id[q.id]
      if not cur then
        cur = { id = q.id, task = q.task, question = q.question }
        by_id[q.id] = cur
        order[#order + 1] = cur
      end
      if q.answer ~= nil and q.answer ~= cjson.null then cur.answer, cur.by = q.answer, q.by end
    end
  end
  return order
end

-- The tasks of a run whose end hooks all returned ({kind='hooks'} events):
-- a set {task_id = true}.
function Store:hooked(run_id)
  if not self.readonly then self:flush() end
  local set = {}
  for row in self.h:rows([[SELECT task_id FROM events WHERE run_id = ? AND kind = 'hooks']],
                         run_id) do
    if row.task_id then set[row.task_id] = true end
  end
  return set
end

-- The agent's last reply in a task (its latest {type='result'} event's
-- text), or nil.
function Store:last_reply(run_id, task_id)
  for _, ev in ipairs(self:_payloads([[SELECT payload FROM events WHERE run_id = ? AND task_id = ?
                                        AND kind = 'agent' AND payload LIKE '%"type":"result"%'
                                        ORDER BY seq DESC LIMIT 5]], run_id, task_id)) do
    if ev.type == 'result' and type(ev.text) == 'string' then return ev.text end
  end
  return nil
end

-- What a run's orchestrator turns cost ({kind='orchestrator'} events), 0
-- when none.
function Store:orchestrator_cost(run_id)
  local sum = 0
  for _, ev in ipairs(self:_payloads([[SELECT payload FROM events WHERE run_id = ?
                                        AND kind = 'orchestrator']], run_id)) do
    if type(ev.cost_usd) == 'number' then sum = sum + ev.cost_usd end
  end
  return sum
end

-- The highest seq stored for a run (0 when none): where its engine goes on.
function Store:last_seq(run_id)
  self:flush()
  local r = self.h:first('SELECT max(seq) AS s FROM events WHERE run_id = ?', run_id)
  return r and r.s or 0
end

-- Iterator over a run's stored state events (not output lines) after seq
-- `after`, in order, decoded: the record of what subscribers were told.
function Store:recorded(run_id, after)
  self:flush()
  local it = self.h:rows([[SELECT payload FROM events WHERE run_id = ? AND seq > ?
                             AND payload IS NOT NULL ORDER BY seq]], run_id, after or 0)
  return function()
    local row = it()
    if not row then return nil end
    local ok, ev = pcall(cjson.decode, row.payload)
    return ok and ev or { cut = true }
  end
end

-- Records attempt n's pid with the next write (not a state change of its
-- own: a crash before it only loses the pid, which resume uses to stop a
-- task process that outlived orch).
function Store:note_pid(run_id, task_id, n, pid)
  self.deferred = self.deferred or {}
  table.insert(self.deferred, { 'UPDATE attempts SET pid = ? WHERE run_id = ? AND task_id = ? AND n = ?',
    pid, run_id, task_id, n, n = 5, pid_of = true })
  if self.nbuf == 0 and #self.ebuf == 0 then self:_arm_timer() end
end

-- Writes the buffered events (and noted pids) in one transaction.
function Store:flush()
  if self.nbuf == 0 and #self.ebuf == 0 and not self.deferred then return end
  self.h:transaction(function() self:_write_events() end)
end

-- Iterator over event rows in order: opts.after (an event id: only later
-- ones), opts.attempt, opts.limit, opts.output (only output lines, as `orch
-- logs` shows them). task_id nil: every event of the run.
function Store:events(run_id, task_id, opts)
  if not self.readonly then self:flush() end
  opts = opts or {}
  local where, args = {'run_id = ?'}, {run_id}
  if task_id ~= nil then where[#where + 1] = 'task_id = ?'; args[#args + 1] = task_id end
  if opts.after then where[#where + 1] = 'id > ?'; args[#args + 1] = opts.after end
  if opts.attempt then where[#where + 1] = 'attempt = ?'; args[#args + 1] = opts.attempt end
  if opts.output and opts.questions then
    -- output lines and the task's questions and answers, in order
    where[#where + 1] = "(kind IS NULL OR kind = 'output' OR kind = 'question')"
  elseif opts.output then
    where[#where + 1] = "(kind IS NULL OR kind = 'output')"
  end
  local sql = 'SELECT id, run_id, task_id, attempt, t, stream, data, kind, seq, payload, lines FROM events WHERE '
    .. table.concat(where, ' AND ') .. ' ORDER BY id'
  local limit = opts.limit and math.floor(tonumber(opts.limit))
  -- (a row holds at least one line: limit rows hold at least limit lines)
  if limit then sql = sql .. ' LIMIT ' .. limit end
  return M.line_rows(self.h:rows(sql, unpack(args, 1, #args)), limit)
end

-- The rows of an events cursor with every chunk row (lines > 1) split into
-- rows of one line each (the same id, seq, t, ...), at most limit of them.
function M.line_rows(it, limit)
  local row, data, pos, left = nil, nil, nil, limit or math.huge
  local function line_of(l)
    return { id = row.id, run_id = row.run_id, task_id = row.task_id, attempt = row.attempt,
             t = row.t, stream = row.stream, data = l, kind = row.kind, seq = row.seq }
  end
  return function()
    if left <= 0 then
      if it then while it() do end it = nil end -- (the cursor ends, its statement freed)
      return nil
    end
    left = left - 1
    if data then
      local s = data:find('\n', pos, true)
      if s then
        local l = data:sub(pos, s - 1)
        pos = s + 1
        return line_of(l)
      end
      local l = data:sub(pos)
      data = nil
      return line_of(l)
    end
    row = it and it()
    if not row then it = nil; return nil end
    if row.lines and row.lines > 1 and row.data then
      local s = row.data:find('\n', 1, true)
      if s then
        data, pos = row.data, s + 1
        return line_of(data:sub(1, s - 1))
      end
    end
    row.lines = nil
    return row
  end
end

-- ---------------------------------------------------------------- sessions

-- Records the backend session of a task (and tasks.session_id).
function Store:set_session(run_id, task_id, backend, session_id, data)
  local json = data ~= nil and cjson.encode(data) or nil
  self:_change(function()
    self.h:run([[INSERT INTO sessions (run_id, task_id, backend, session_id, created_at, data_json)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (run_id, task_id) DO UPDATE SET backend = excluded.backend,
                   session_id = excluded.session_id, data_json = excluded.data_json]],
               run_id, task_id, backend, session_id, M.now(), json)
    self.h:run('UPDATE tasks SET session_id = ? WHERE run_id = ? AND id = ?',
               session_id, run_id, task_id)
  end)
end

function Store:session(run_id, task_id)
  self:flush()
  local r = self.h:first('SELECT * FROM sessions WHERE run_id = ? AND task_id = ?',
                         run_id, task_id)
  if r and r.data_json then
    local ok, d = pcall(cjson.decode, r.data_json)
    if ok then r.data = d end
  end
  return r
end

-- ---------------------------------------------------------------- status

-- "2026-11-25T19:35:12.123Z" for unix seconds t, cjson.null for nil.
function M.iso(t) return require('orch.status').iso(t) end

M.array_mt = require('orch.status').array_mt

-- The `orch status --json` object of DESIGN.md for run_id (default: the
-- latest run), or nil, err: orch.status.object, the one view.
function Store:status(run_id)
  return require('orch.status').object(self, run_id)
end

return M
