-- orch.store and orch.status on real SQLite files, with a second process.
local db = require('orch.core').db
local store = require('orch.store')
local status = require('orch.status')
local cjson = require('cjson')

local function tmpdir()
  local p = io.popen('mktemp -d /tmp/orch-store-spec.XXXXXX')
  local d = p:read('*l')
  p:close()
  return d
end

local function count(it)
  local n = 0
  for _ in it do n = n + 1 end
  return n
end

local function raw_count(path, sql, ...)
  local h = assert(db.open(path, {readonly = true}))
  local n = h:first(sql, ...).n
  h:close()
  return n
end

local PLAN = {
  {id = 'flag', title = 'Add the flag', role = 'coder', prompt = 'p1', files = {'src/cli.c'},
   deps = {}},
  {id = 'docs', role = 'coder', prompt = 'p2', files = {'README.md'}, deps = {'flag'},
   on_failure = 'soft'},
  {id = 'check', cmd = 'make test', deps = {'flag', 'docs'}},
}

describe('orch.store', function()
  local dir, path, st

  before_each(function()
    dir = tmpdir()
    path = dir .. '/sub/dir/orch.db'
    st = assert(store.open(path))
  end)

  after_each(function()
    if st then st:close() end
    os.execute('rm -rf ' .. dir)
  end)

  describe('schema', function()
    it('creates the parent directory and migrates an empty file', function()
      local h = assert(db.open(path, {readonly = true}))
      assert.are.equal(store.VERSION, h:first('PRAGMA user_version').user_version)
      for _, t in ipairs({'runs', 'tasks', 'deps', 'attempts', 'events', 'sessions'}) do
        assert.is_table(h:first("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", t))
      end
      assert.are.equal('wal', h:first('PRAGMA journal_mode').journal_mode)
      h:close()
      -- reopening applies nothing twice
      st:close()
      st = assert(store.open(path))
    end)

    it('applies later migrations in order, each in a transaction', function()
      st:close()
      local n = #store.migrations
      store.migrations[n + 1] = 'CREATE TABLE extra (x); INSERT INTO extra VALUES (1)'
      store.migrations[n + 2] = function(h) h:run('INSERT INTO extra VALUES (?)', 2) end
      local s2, err = store.open(path)
      store.migrations[n + 1], store.migrations[n + 2] = nil, nil
      assert.is_table(s2, err)
      assert.are.equal(n + 2, s2.h:first('PRAGMA user_version').user_version)
      assert.are.equal(3, s2.h:first('SELECT sum(x) AS n FROM extra').n)
      s2:close()
      -- a failing migration leaves the version and the schema as they were
      store.migrations[n + 3] = 'CREATE TABLE half (x); INSERT INTO nope VALUES (1)'
      store.migrations[n + 1] = 'SELECT 1'
      store.migrations[n + 2] = 'SELECT 1'
      local s3
      s3, err = store.open(path)
      for i = n + 1, n + 3 do store.migrations[i] = nil end
      assert.is_nil(s3)
      assert.matches('migration to schema version ' .. (n + 3), err, 1, true)
      assert.matches('no such table: nope', err, 1, true)
      assert.are.equal(n + 2, raw_count(path, 'SELECT max(user_version) AS n FROM pragma_user_version'))
      assert.are.equal(0, raw_count(path, "SELECT count(*) AS n FROM sqlite_master WHERE name = 'half'"))
      st = nil
    end)

    it('refuses a database from a newer orch, read-write and read-only', function()
      st:close()
      st = nil
      local h = assert(db.open(path))
      h:exec('PRAGMA user_version = ' .. (store.VERSION + 1))
      h:close()
      local s, err = store.open(path)
      assert.is_nil(s)
      assert.matches('newer orch', err, 1, true)
      assert.matches('schema version ' .. (store.VERSION + 1), err, 1, true)
      s, err = store.open(path, {readonly = true})
      assert.is_nil(s)
      assert.matches('newer orch', err, 1, true)
    end)

    it('opens read-only without creating anything', function()
      local s, err = store.open(dir .. '/absent/orch.db', {readonly = true})
      assert.is_nil(s)
      assert.is_string(err)
      local r = os.execute('test -e ' .. dir .. '/absent')
      assert.is_false(r == 0 or r == true)
      local ro = assert(store.open(path, {readonly = true}))
      assert.has_error(function() ro:create_run{id = 'x'} end)
      assert.has_error(function() ro:event('x', nil, nil, 'orch', 'hi') end)
      ro:close()
    end)
  end)

  describe('runs', function()
    it('creates, reads, lists and updates runs', function()
      st:create_run{id = 'r1', goal = 'g1', plan_file = 'plan.json', plan_json = '{}',
                    repo = '/repo', workflow = 'default', concurrency = 4,
                    base_commit = 'abc', created_at = 100}
      st:create_run{id = 'r2', goal = 'g2', created_at = 200}
      local r = st:run('r1')
      assert.are.equal('g1', r.goal)
      assert.are.equal('pending', r.status)
      assert.are.equal(4, r.concurrency)
      assert.are.equal('abc', r.base_commit)
      assert.are.equal(100, r.created_at)
      assert.is_nil(st:run('nope'))
      assert.are.equal('r2', st:latest_run().id)
      local all = st:runs()
      assert.are.same({'r1', 'r2'}, {all[1].id, all[2].id})
      assert.are.equal(1, st:set_run('r1', {status = 'running', started_at = 101.5, pid = 42}))
      assert.are.equal('running', raw_count(path, 'SELECT status AS n FROM runs WHERE id = ?', 'r1'))
      st:set_run('r1', {status = 'done', finished_at = 102, exit_code = 0, pid = store.NULL})
      r = st:run('r1')
      assert.are.equal('done', r.status)
      assert.are.equal(0, r.exit_code)
      assert.is_nil(r.pid)
      assert.has_error(function() st:set_run('r1', {bogus = 1}) end, 'unknown run field "bogus"')
      assert.has_error(function() st:create_run{id = 'r1'} end) -- duplicate id
    end)
  end)

  describe('tasks', function()
    before_each(function()
      st:create_run{id = 'r'}
      st:add_tasks('r', PLAN)
    end)

    it('keeps plan order, fields, files and deps', function()
      local ts = st:tasks('r')
      assert.are.same({'flag', 'docs', 'check'}, {ts[1].id, ts[2].id, ts[3].id})
      assert.are.equal('Add the flag', ts[1].title)
      assert.are.same({'src/cli.c'}, ts[1].files)
      assert.are.same({}, ts[1].deps)
      assert.are.same({'flag'}, ts[2].deps)
      assert.are.equal('soft', ts[2].on_failure)
      assert.are.equal('hard', ts[1].on_failure)
      assert.are.same({'flag', 'docs'}, ts[3].deps)
      assert.are.equal('make test', ts[3].cmd)
      assert.is_nil(ts[3].role)
      assert.are.same({}, ts[3].files)
      for _, t in ipairs(ts) do
        assert.are.equal('pending', t.status)
        assert.are.equal(0, t.attempts)
      end
      local t = st:task('r', 'check')
      assert.are.same({'flag', 'docs'}, t.deps)
      assert.is_nil(st:task('r', 'nope'))
    end)

    it('rejects an unknown dep without adding anything', function()
      st:create_run{id = 'bad'}
      assert.has_error(function()
        st:add_tasks('bad', {{id = 'a', deps = {'ghost'}}})
      end)
      assert.are.same({}, st:tasks('bad'))
    end)

    it('commits every task change before returning', function()
      assert.are.equal(1, st:set_task('r', 'flag', {status = 'ready', branch = 'orch/r/flag',
                                                     worktree = '/w/flag'}))
      -- another connection sees it at once
      assert.are.equal('ready', raw_count(path,
        'SELECT status AS n FROM tasks WHERE run_id = ? AND id = ?', 'r', 'flag'))
      assert.are.equal('orch/r/flag', st:task('r', 'flag').branch)
      assert.are.equal(0, st:set_task('r', 'ghost', {status = 'done'}))
      assert.has_error(function() st:set_task('r', 'flag', {nope = 1}) end)
      st:set_task('r', 'flag', {branch = store.NULL})
      assert.is_nil(st:task('r', 'flag').branch)
    end)

    it('records attempts', function()
      local n = st:start_attempt('r', 'flag', {pid = 111, started_at = 10})
      assert.are.equal(1, n)
      local t = st:task('r', 'flag')
      assert.are.equal('running', t.status)
      assert.are.equal(1, t.attempts)
      assert.are.equal(10, t.started_at)
      st:finish_attempt('r', 'flag', n, {status = 'failed', exit_code = 3, finished_at = 12,
                                         error = 'exit 3', task_status = 'ready'})
      t = st:task('r', 'flag')
      assert.are.equal('ready', t.status)
      assert.are.equal(3, t.exit_code)
      assert.are.equal(12, t.finished_at)
      n = st:start_attempt('r', 'flag', {pid = 112})
      assert.are.equal(2, n)
      t = st:task('r', 'flag')
      assert.is_nil(t.exit_code)
      assert.is_nil(t.finished_at)
      st:finish_attempt('r', 'flag', n, {exit_code = 0, signal = store.NULL, task_status = 'done'})
      local as = st:attempts('r', 'flag')
      assert.are.equal(2, #as)
      assert.are.same({1, 'failed', 3, 111, 'exit 3'},
                      {as[1].n, as[1].status, as[1].exit_code, as[1].pid, as[1].error})
      assert.are.same({2, 'done', 0, 112}, {as[2].n, as[2].status, as[2].exit_code, as[2].pid})
      assert.is_number(as[2].finished_at)
      assert.are.equal('done', st:task('r', 'flag').status)
      assert.has_error(function() st:start_attempt('r', 'ghost') end)
    end)

    it('records sessions', function()
      assert.is_nil(st:session('r', 'flag'))
      st:set_session('r', 'flag', 'claude', 'uuid-1', {cwd = '/w'})
      local s = st:session('r', 'flag')
      assert.are.same({'claude', 'uuid-1', '/w'}, {s.backend, s.session_id, s.data.cwd})
      assert.are.equal('uuid-1', st:task('r', 'flag').session_id)
      st:set_session('r', 'flag', 'claude', 'uuid-2')
      assert.are.equal('uuid-2', st:session('r', 'flag').session_id)
      assert.are.equal('uuid-2', st:task('r', 'flag').session_id)
    end)
  end)

  describe('events', function()
    local batch

    before_each(function()
      batch = store.BATCH
      st:create_run{id = 'r'}
      st:add_tasks('r', PLAN)
    end)

    after_each(function() store.BATCH = batch end)

    local function on_disk()
      return raw_count(path, 'SELECT count(*) AS n FROM events')
    end

    it('buffers, writes in batches and keeps order', function()
      store.BATCH = 10
      for i = 1, 25 do st:event('r', 'flag', 1, 'stdout', 'line ' .. i) end
      assert.are.equal(20, on_disk())
      st:flush()
      assert.are.equal(25, on_disk())
      local i = 0
      local last = 0
      for ev in st:events('r', 'flag') do
        i = i + 1
        assert.are.equal('line ' .. i, ev.data)
        assert.is_true(ev.id > last)
        last = ev.id
        assert.are.equal('stdout', ev.stream)
        assert.are.equal(1, ev.attempt)
        assert.is_true(ev.t > 1e9)
      end
      assert.are.equal(25, i)
    end)

    it('flushes before a state change, in the same commit', function()
      st:event('r', 'flag', 1, 'stderr', 'oops')
      st:event('r', nil, nil, 'orch', 'run-level note')
      assert.are.equal(0, on_disk())
      st:set_task('r', 'flag', {status = 'failed'})
      assert.are.equal(2, on_disk())
      st:event('r', 'flag', 1, 'stdout', 'x')
      st:start_attempt('r', 'docs')
      assert.are.equal(3, on_disk())
      st:event('r', 'flag', 1, 'stdout', 'y')
      st:close()
      st = nil
      assert.are.equal(4, on_disk())
    end)

    it('flushes on its own about FLUSH_MS after the first buffered event', function()
      local core = require('orch.core')
      if type(core.timer) ~= 'function' then
        pending('no orch.core.timer outside the orch host')
        return
      end
      local H = require('spec.helpers')
      for round = 1, 2 do
        st:event('r', 'flag', 1, 'stdout', 'tick ' .. round)
        assert.are.equal(round - 1, on_disk())
        assert.is_true(H.run_until(function() return st.nbuf == 0 end, 5000))
        assert.are.equal(round, on_disk())
        core.run() -- returns: a flushed store keeps nothing active on the loop
      end
    end)

    it('filters by task, after and attempt', function()
      for a = 1, 2 do
        for i = 1, 3 do
          st:event('r', 'flag', a, 'stdout', a .. ':' .. i)
          st:event('r', 'docs', a, 'text', 'd' .. i)
        end
      end
      assert.are.equal(12, count(st:events('r')))
      assert.are.equal(6, count(st:events('r', 'flag')))
      assert.are.equal(3, count(st:events('r', 'flag', {attempt = 2})))
      local ids = {}
      for ev in st:events('r', 'flag') do ids[#ids + 1] = ev.id end
      local rest = {}
      for ev in st:events('r', 'flag', {after = ids[4]}) do rest[#rest + 1] = ev.data end
      assert.are.same({'2:2', '2:3'}, rest)
      assert.are.equal(2, count(st:events('r', 'flag', {limit = 2})))
    end)

    it('stores an output batch as one chunk row and reads it back line by line, in order', function()
      local lines = {}
      for i = 1, 1000 do lines[i] = ('line %d'):format(i) end
      lines[500] = '' -- an empty line keeps its place
      st:output('r', 'flag', 1, 'stdout', table.concat(lines, '\n', 1, 600), 7, 600, 8)
      st:output('r', 'flag', 1, 'stderr', table.concat(lines, '\n', 601, 1000), 8, 400, 9)
      st:output('r', 'flag', 1, 'stdout', {'last', 'two'}, 9) -- a list of lines
      st:flush()
      assert.are.equal(3, on_disk())
      assert.are.equal(1002, raw_count(path,
        "SELECT sum(coalesce(lines, 1)) AS n FROM events WHERE kind = 'output'"))
      local got, streams, last = {}, {}, 0
      for ev in st:events('r', 'flag', {output = true}) do
        got[#got + 1] = ev.data
        streams[ev.stream] = (streams[ev.stream] or 0) + 1
        assert.is_true(ev.id >= last)
        last = ev.id
        assert.are.equal(1, ev.attempt)
      end
      lines[1001], lines[1002] = 'last', 'two'
      assert.are.same(lines, got)
      assert.are.same({stdout = 602, stderr = 400}, streams)
      -- a limit counts lines, not rows; after = a chunk's id goes past all its lines
      local first = {}
      for ev in st:events('r', 'flag', {limit = 3}) do first[#first + 1] = ev.data end
      assert.are.same({'line 1', 'line 2', 'line 3'}, first)
      local ids = {}
      for ev in st:events('r', 'flag') do ids[#ids + 1] = ev.id end
      local rest = {}
      for ev in st:events('r', 'flag', {after = ids[1]}) do rest[#rest + 1] = ev.data end
      assert.are.equal(402, #rest)
      assert.are.equal('line 601', rest[1])
    end)

    it('cuts a long line inside a chunk and stops an attempt at the output limit', function()
      local line, output = store.limits.line, store.limits.output
      finally(function() store.limits.line, store.limits.output = line, output end)
      store.limits.line, store.limits.output = 100, 1000
      local long = string.rep('y', 300)
      st:output('r', 'flag', 1, 'stdout', 'a\n' .. long .. '\nb', 1, 3, 300)
      local chunk = {}
      for i = 1, 20 do chunk[i] = string.rep(tostring(i % 10), 99) end
      st:output('r', 'flag', 1, 'stdout', table.concat(chunk, '\n'), 2, 20, 99)
      st:output('r', 'flag', 1, 'stdout', 'never', 3, 1, 5)
      local got = {}
      for ev in st:events('r', 'flag') do got[#got + 1] = ev end
      assert.are.equal('a', got[1].data)
      assert.is_truthy(got[2].data:find('[... orch cut', 1, true))
      assert.is_true(#got[2].data < 200)
      assert.are.equal('b', got[3].data)
      -- 1000 bytes: a + the cut line (~140) + b, then 8 lines of 99 fit
      local kept = 0
      for i = 4, #got do
        if got[i].stream == 'stdout' then kept = kept + 1; assert.are.equal(chunk[kept], got[i].data) end
      end
      assert.is_true(kept >= 5 and kept < 20, 'kept ' .. kept)
      assert.are.equal('orch', got[#got].stream)
      assert.is_truthy(got[#got].data:find('over the limit', 1, true))
    end)

    it('encodes an event as it is when nothing needs cutting, else a bounded copy', function()
      local ev = { kind = 'agent', type = 'text', text = 'short', n = 3, ok = true, sub = { 'a', 'b' } }
      assert.are.same(ev, cjson.decode(store.encode_event(ev, 16)))
      local long = { kind = 'agent', type = 'tool_result', content = string.rep('z', 100) }
      local got = cjson.decode(store.encode_event(long, 16))
      assert.are.equal(string.rep('z', 16) .. '...(cut)', got.content)
      assert.are.equal(string.rep('z', 100), long.content) -- the event itself is left as it was
      local odd = cjson.decode(store.encode_event({ kind = 'agent', fn = print, [true] = 1, x = 'y' }, 16))
      assert.are.same({ kind = 'agent', x = 'y' }, odd)
    end)

    it('keeps NULs and long lines', function()
      local long = string.rep('x', 2 ^ 20)
      st:event('r', 'flag', 1, 'stdout', 'a\0b')
      st:event('r', 'flag', 1, 'stdout', long)
      local got = {}
      for ev in st:events('r', 'flag') do got[#got + 1] = ev.data end
      assert.are.equal('a\0b', got[1])
      assert.are.equal(#long, #got[2])
    end)
  end)

  describe('status', function()
    it('has the DESIGN.md shape, with ISO times and nulls', function()
      st:create_run{id = 'r', goal = 'add a --json flag'}
      st:add_tasks('r', PLAN)
      st:start_attempt('r', 'flag', {started_at = 1795635312.123})
      st:finish_attempt('r', 'flag', 1, {finished_at = 1795635312.9996, task_status = 'done'})
      st:set_task('r', 'flag', {branch = 'orch/r/flag', worktree = '/w/flag'})
      local s = st:status('r')
      local keys = {}
      for k in pairs(s) do keys[#keys + 1] = k end
      table.sort(keys)
      -- DESIGN.md's two, the questions asked, the breakers (docs/resilience.md)
      assert.are.same({'breakers', 'questions', 'run', 'tasks'}, keys)
      assert.are.same({id = 'r', status = 'pending', goal = 'add a --json flag', retries = 0,
                       cost_usd = cjson.null, budget_usd = cjson.null}, s.run)
      assert.are.equal(3, #s.tasks)
      local t = s.tasks[1]
      local tk = {}
      for k in pairs(t) do tk[#tk + 1] = k end
      table.sort(tk)
      -- DESIGN.md's fields, plus what the agent backends add
      assert.are.same({'attempts', 'backend', 'branch', 'cost_usd', 'finished_at', 'id',
                       'model', 'role', 'session_id', 'started_at', 'status', 'usage',
                       'worktree'}, tk)
      assert.are.equal('2026-11-25T19:35:12.123Z', t.started_at)
      assert.are.equal('2026-11-25T19:35:13.000Z', t.finished_at)
      assert.are.equal('done', t.status)
      assert.are.equal(cjson.null, s.tasks[3].role)
      assert.are.equal(cjson.null, s.tasks[2].started_at)
      assert.are.equal(cjson.null, s.tasks[2].session_id)
      local j = cjson.decode(status.json(st, 'r'))
      assert.are.equal('flag', j.tasks[1].id)
      assert.are.equal('orch/r/flag', j.tasks[1].branch)
      assert.are.equal(cjson.null, j.tasks[2].branch)
      -- the latest run by default; unknown runs are an error
      assert.are.equal('r', st:status().run.id)
      local none, err = st:status('nope')
      assert.is_nil(none)
      assert.matches('nope', err, 1, true)
    end)

    it('encodes an empty task list as [] and a missing goal as null', function()
      st:create_run{id = 'e'}
      local text = status.json(st, 'e')
      assert.matches('"tasks":[]', text, 1, true)
      assert.matches('"goal":null', text, 1, true)
      local j = cjson.decode(text)
      assert.are.equal('e', j.run.id)
    end)

    it('renders a readable table and logs', function()
      st:create_run{id = 'r', goal = 'g'}
      st:add_tasks('r', PLAN)
      st:set_run('r', {status = 'running', started_at = 1000})
      local n = st:start_attempt('r', 'flag', {started_at = 1000})
      st:event('r', 'flag', n, 'stdout', 'compiling')
      st:event('r', 'flag', n, 'stderr', 'warning: x')
      st:finish_attempt('r', 'flag', n, {finished_at = 1012.5, exit_code = 1, task_status = 'ready'})
      n = st:start_attempt('r', 'flag', {started_at = 1013})
      st:event('r', 'flag', n, 'orch', 'retrying')
      st:event('r', 'flag', n, 'stdout', 'ok')
      local text = status.text(st, 'r', {now = 1020})
      assert.matches('run r', text, 1, true)
      assert.matches('goal: g', text, 1, true)
      assert.matches('TASK%s+ROLE%s+STATUS%s+ATTEMPTS%s+TIME', text)
      assert.matches('flag%s+coder%s+running%s+2%s+7.0s', text)
      assert.matches('check%s+exec%s+pending%s+0%s+%-', text)
      local logs, last = status.logs(st, 'r', 'flag')
      assert.are.equal(table.concat({'compiling', '[stderr] warning: x', '[orch] attempt 2',
                                     '[orch] retrying', 'ok', ''}, '\n'), logs)
      st:event('r', 'flag', n, 'stdout', 'more')
      local more, last2 = status.logs(st, 'r', 'flag', {after = last, last_attempt = 2})
      assert.are.equal('more\n', more)
      assert.is_true(last2 > last)
      local nothing, same = status.logs(st, 'r', 'flag', {after = last2})
      assert.are.equal('', nothing)
      assert.are.equal(last2, same)
      assert.is_nil(status.text(st, 'nope'))
    end)
  end)

  describe('another process', function()
    local function script(name, body)
      local f = assert(io.open(dir .. '/' .. name, 'w'))
      f:write(body)
      f:close()
      return dir .. '/' .. name
    end

    it('reads a live run while this store writes it, and vice versa', function()
      local bin = assert(os.getenv('ORCH_BIN'), 'ORCH_BIN is not set')
      st:create_run{id = 'r', goal = 'live'}
      st:add_tasks('r', {{id = 't', cmd = 'true'}})
      st:close()
      st = nil
      -- the child writes in commits and, last, holds a write transaction
      -- open until we have looked
      local writer = script('writer.lua', [[
        local store = require('orch.store')
        local st = assert(store.open(os.getenv('ORCH_TEST_DB')))
        local go = os.getenv('ORCH_TEST_GO')
        for b = 1, 5 do
          for i = 1, 100 do st:event('r', 't', 1, 'stdout', b .. '/' .. i) end
          st:set_task('r', 't', {exit_code = b})
          io.write('committed ', b, '\n')
          io.flush()
        end
        st.h:transaction(function()
          st.h:run("UPDATE tasks SET status = 'done' WHERE run_id = 'r'")
          io.write('open\n')
          io.flush()
          while not io.open(go) do os.execute('sleep 0.02') end
        end)
        st:close()
        io.write('closed\n')
      ]])
      local go = dir .. '/go'
      local p = assert(io.popen(string.format('ORCH_TEST_DB=%q ORCH_TEST_GO=%q %q -l %q',
                                              path, go, bin, writer)))
      local ro = assert(store.open(path, {readonly = true}))
      local seen = {}
      for line in p:lines() do
        seen[#seen + 1] = line
        local b = tonumber(line:match('^committed (%d+)$'))
        if b then
          assert.is_true(count(ro:events('r', 't')) >= b * 100)
          assert.is_true(ro:task('r', 't').exit_code >= b)
        elseif line == 'open' then
          -- not blocked by the writer, and only committed state shows
          local s = cjson.decode(status.json(ro, 'r'))
          assert.are.equal('pending', s.tasks[1].status)
          assert.are.equal(500, count(ro:events('r', 't')))
          assert(io.open(go, 'w')):close()
        end
      end
      assert.is_true(p:close() ~= false)
      assert.are.same({'committed 1', 'committed 2', 'committed 3', 'committed 4',
                       'committed 5', 'open', 'closed'}, seen)
      assert.are.equal('done', ro:task('r', 't').status)
      local logs = status.logs(ro, 'r', 't')
      assert.matches('^1/1\n1/2\n', logs)
      assert.matches('5/100\n$', logs)
      ro:close()
    end)
  end)
end)
