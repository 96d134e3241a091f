-- orch.core.db: the SQLite binding, on real database files.
local db = require('orch.core').db

local function tmpdir()
  local p = io.popen('mktemp -d /tmp/orch-db-spec.XXXXXX')
  local d = p:read('*l')
  p:close()
  return d
end

describe('orch.core.db', function()
  local dir, h

  before_each(function()
    dir = tmpdir()
    h = assert(db.open(dir .. '/t.db'))
  end)

  after_each(function()
    if h then h:close() end
    os.execute('rm -rf ' .. dir)
  end)

  it('opens a writer in WAL mode with foreign keys on', function()
    assert.are.equal('wal', h:first('PRAGMA journal_mode').journal_mode)
    assert.are.equal(1, h:first('PRAGMA foreign_keys').foreign_keys)
    assert.are.equal(1, h:first('PRAGMA synchronous').synchronous) -- NORMAL
    assert.are.equal(5000, h:first('PRAGMA busy_timeout').timeout)
    assert.is_false(h:readonly())
  end)

  it('round-trips nil, booleans, integers, floats, strings and NULs', function()
    h:exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v)')
    local bin = 'a\0b\0\255c'
    local cases = {
      {1, nil}, {2, true}, {3, false}, {4, 42}, {5, -7}, {6, 2 ^ 53},
      {7, 1.5}, {8, -0.25}, {9, ''}, {10, 'h\195\169llo'}, {11, bin},
      {12, 1e300},
    }
    for _, c in ipairs(cases) do
      assert.are.equal(1, h:run('INSERT INTO t (k, v) VALUES (?, ?)', c[1], c[2]))
    end
    local want = {nil, 1, 0, 42, -7, 2 ^ 53, 1.5, -0.25, '', 'h\195\169llo', bin, 1e300}
    local n = 0
    for row in h:rows('SELECT k, v, typeof(v) AS ty FROM t ORDER BY k') do
      n = n + 1
      assert.are.equal(want[row.k], row.v)
    end
    assert.are.equal(#cases, n)
    assert.are.equal('integer', h:first('SELECT typeof(v) AS ty FROM t WHERE k = 4').ty)
    assert.are.equal('real', h:first('SELECT typeof(v) AS ty FROM t WHERE k = 7').ty)
    assert.are.equal('blob', h:first('SELECT typeof(v) AS ty FROM t WHERE k = 11').ty)
    assert.are.equal('text', h:first('SELECT typeof(v) AS ty FROM t WHERE k = 10').ty)
    assert.are.equal(#bin, h:first('SELECT length(v) AS n FROM t WHERE k = 11').n)
  end)

  it('returns changes, last_insert_id, first row or nil', function()
    h:exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t (v) VALUES (1), (2), (3)')
    assert.are.equal(3, h:last_insert_id())
    assert.are.equal(2, h:run('UPDATE t SET v = v * 10 WHERE id > ?', 1))
    assert.are.same({id = 2, v = 20}, h:first('SELECT * FROM t WHERE id = ?', 2))
    assert.is_nil(h:first('SELECT * FROM t WHERE id = ?', 99))
    assert.are.equal(0, h:run('DELETE FROM t WHERE id = ?', 99))
  end)

  it('raises errors that name the SQL', function()
    local ok, err = pcall(h.run, h, 'INSERT INTO missing VALUES (1)')
    assert.is_false(ok)
    assert.matches('no such table: missing', err, 1, true)
    assert.matches('in: INSERT INTO missing VALUES (1)', err, 1, true)
    h:exec('CREATE TABLE u (id TEXT PRIMARY KEY)')
    h:run('INSERT INTO u VALUES (?)', 'x')
    ok, err = pcall(h.run, h, 'INSERT INTO u VALUES (?)', 'x')
    assert.is_false(ok)
    assert.matches('UNIQUE constraint failed', err, 1, true)
    assert.matches('SQLITE_CONSTRAINT', err, 1, true)
    assert.matches('INSERT INTO u VALUES (?)', err, 1, true)
    ok, err = pcall(h.exec, h, 'CREATE TABLE v (a); SELEC 1')
    assert.is_false(ok)
    assert.matches('SELEC 1', err, 1, true)
    ok, err = pcall(h.run, h, 'SELECT ?', 1, 2)
    assert.is_false(ok)
    assert.matches('2 parameter(s) given, 1 expected', err, 1, true)
    ok, err = pcall(h.run, h, 'SELECT 1; SELECT 2')
    assert.is_false(ok)
    assert.matches('more than one statement', err, 1, true)
    assert.has_error(function() h:run('SELECT ?', {}) end)
    assert.has_error(function() h:run('SELECT ?', print) end)
  end)

  it('returns nil, msg, code when it cannot open', function()
    local x, msg, code = db.open(dir .. '/no/such/dir/x.db')
    assert.is_nil(x)
    assert.matches('x.db', msg, 1, true)
    assert.are.equal('SQLITE_CANTOPEN', code)
    x, msg, code = db.open(dir .. '/absent.db', {readonly = true})
    assert.is_nil(x)
    assert.matches('absent.db', msg, 1, true)
    assert.is_string(code)
  end)

  it('commits a transaction, rolls back on error and rethrows', function()
    h:exec('CREATE TABLE t (v)')
    local a, b = h:transaction(function()
      assert.is_true(h:in_transaction())
      h:run('INSERT INTO t VALUES (1)')
      return 'a', 'b'
    end)
    assert.are.same({'a', 'b'}, {a, b})
    assert.is_false(h:in_transaction())
    local marker = {}
    local ok, err = pcall(h.transaction, h, function()
      h:run('INSERT INTO t VALUES (2)')
      error(marker)
    end)
    assert.is_false(ok)
    assert.are.equal(marker, err) -- the error value itself
    assert.is_false(h:in_transaction())
    assert.are.equal(1, h:first('SELECT count(*) AS n FROM t').n)
    -- a nested transaction is a savepoint: its failure undoes only itself
    h:transaction(function()
      h:run('INSERT INTO t VALUES (3)')
      assert.is_false(pcall(h.transaction, h, function()
        h:run('INSERT INTO t VALUES (4)')
        error('inner')
      end))
      h:transaction(function() h:run('INSERT INTO t VALUES (5)') end)
    end)
    local got = {}
    for r in h:rows('SELECT v FROM t ORDER BY v') do got[#got + 1] = r.v end
    assert.are.same({1, 3, 5}, got)
    -- a failing statement inside rolls everything back
    assert.is_false(pcall(h.transaction, h, function()
      h:run('INSERT INTO t VALUES (6)')
      h:run('INSERT INTO nope VALUES (7)')
    end))
    assert.are.equal(3, h:first('SELECT count(*) AS n FROM t').n)
  end)

  it('caches prepared statements by SQL text', function()
    h:exec('CREATE TABLE t (v)')
    local base = h:cached()
    for i = 1, 100 do h:run('INSERT INTO t VALUES (?)', i) end
    assert.are.equal(base + 1, h:cached())
    for i = 1, 10 do assert.is_table(h:first('SELECT v FROM t WHERE v = ?', i)) end
    assert.are.equal(base + 2, h:cached())
    -- the same text nested inside its own iteration gets a private statement
    local pairs_seen = 0
    for a in h:rows('SELECT v FROM t WHERE v <= ?', 3) do
      for b in h:rows('SELECT v FROM t WHERE v <= ?', 3) do
        pairs_seen = pairs_seen + 1
        assert.is_number(a.v + b.v)
      end
    end
    assert.are.equal(9, pairs_seen)
    assert.are.equal(base + 3, h:cached())
    -- a cursor abandoned half way does not break later use of its text
    local it = h:rows('SELECT v FROM t ORDER BY v')
    assert.are.equal(1, it().v)
    local n = 0
    for _ in h:rows('SELECT v FROM t ORDER BY v') do n = n + 1 end
    assert.are.equal(100, n)
    it:close()
    assert.is_nil(it())
  end)

  it('raises on use of a closed handle, and close twice is fine', function()
    local it = h:rows('SELECT 1 AS one')
    h:close()
    assert.is_false(h:is_open())
    assert.has_error(function() h:run('SELECT 1') end, 'database handle is closed')
    assert.has_error(function() h:first('SELECT 1') end)
    assert.has_error(function() h:exec('SELECT 1') end)
    assert.has_error(function() it() end)
    h:close()
    h = nil
  end)

  it('lets one handle read while another writes (WAL)', function()
    h:exec('CREATE TABLE t (v)')
    h:run('INSERT INTO t VALUES (0)')
    local r = assert(db.open(dir .. '/t.db', {readonly = true}))
    assert.is_true(r:readonly())
    assert.has_error(function() r:run('INSERT INTO t VALUES (1)') end)
    h:transaction(function()
      for i = 1, 10 do h:run('INSERT INTO t VALUES (?)', i) end
      -- the reader is not blocked and sees only committed rows
      assert.are.equal(1, r:first('SELECT count(*) AS n FROM t').n)
    end)
    assert.are.equal(11, r:first('SELECT count(*) AS n FROM t').n)
    -- a reader in the middle of a query keeps its snapshot
    local it = r:rows('SELECT v FROM t ORDER BY rowid')
    assert.are.equal(0, it().v)
    h:run('INSERT INTO t VALUES (99)')
    local n = 1
    for _ in it do n = n + 1 end
    assert.are.equal(11, n)
    assert.are.equal(12, r:first('SELECT count(*) AS n FROM t').n)
    r:close()
  end)

  it('gives wall-clock time with sub-second digits', function()
    local t = db.now()
    assert.is_true(math.abs(t - os.time()) < 5)
    assert.is_string(db.sqlite_version)
  end)

  it('with background checkpoints, keeps the WAL at close; the next writer appends to it', function()
    local path = dir .. '/bg.db'
    local size = function(p)
      local f = io.open(p, 'rb')
      if not f then return nil end
      local n = f:seek('end')
      f:close()
      return n
    end
    local w = assert(db.open(path, { background_checkpoint = 100 }))
    w:exec('CREATE TABLE t (v)')
    w:run('INSERT INTO t VALUES (?)', 'first')
    w:close()
    -- no checkpoint at close: the WAL holds the rows, the database file not yet
    local wal = size(path .. '-wal')
    assert.is_true(wal ~= nil and wal > 0)
    local r = assert(db.open(path, { readonly = true }))
    assert.are.equal('first', r:first('SELECT v FROM t').v)
    r:close()
    local w2 = assert(db.open(path, { background_checkpoint = 100 }))
    w2:run('INSERT INTO t VALUES (?)', 'second')
    assert.is_true(size(path .. '-wal') >= wal) -- appended, not begun again
    -- past the threshold the background checkpoint copies the WAL back
    w2:transaction(function()
      for i = 1, 600 do w2:run('INSERT INTO t VALUES (?)', ('%d'):format(i) .. ('x'):rep(1000)) end
    end)
    local copied = require('spec.helpers').run_until(function()
      return (size(path) or 0) > 400 * 1024
    end, 20000)
    assert.is_true(copied)
    w2:close()
    local r2 = assert(db.open(path, { readonly = true }))
    assert.are.equal(602, r2:first('SELECT count(*) AS n FROM t').n)
    r2:close()
  end)

  it('closes through the garbage collector too', function()
    local x = assert(db.open(dir .. '/gc.db'))
    x:exec('CREATE TABLE t (v)')
    for _ in x:rows('SELECT * FROM t') do end
    local _ = x:rows('SELECT 1') -- an open cursor at collection time
    x = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local y = assert(db.open(dir .. '/gc.db'))
    assert.are.equal(0, y:first('SELECT count(*) AS n FROM t').n)
    y:close()
  end)
end)
