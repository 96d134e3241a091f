-- bench/store.lua: throughput of the SQLite state (run: orch -l bench/store.lua [N]).
--
-- Prints events/s through st:event + st:flush (batched), lines/s through
-- st:output in chunks (and read back by st:events), state changes/s
-- through st:set_task (each one committed), and two references measured
-- on the same machine in the same run: the same event INSERTs through
-- h:run in one transaction, and the sqlite3 CLI inserting the same rows.
local core = require('orch.core')
local db = core.db
local store = require('orch.store')

local N = tonumber(arg and arg[1]) or 200000
local CHANGES = math.floor(N / 10)

local function tmpdir()
  local p = io.popen('mktemp -d /tmp/orch-bench-store.XXXXXX')
  local d = p:read('*l')
  p:close()
  return d
end

local now = db.now
local dir = tmpdir()
local line = string.rep('x', 60)

local function report(what, n, dt, ref)
  local rate = n / dt
  io.write(string.format('%-44s %10.0f /s  %7.2f us each', what, rate, dt / n * 1e6))
  if ref then io.write(string.format('  (%.2fx the reference)', rate / ref)) end
  io.write('\n')
  return rate
end

-- reference 1: raw inserts through the binding, one transaction
local function raw_binding()
  local h = assert(db.open(dir .. '/raw.db'))
  h:exec(store.migrations[1])
  local t0 = now()
  h:transaction(function()
    for i = 1, N do
      h:run('INSERT INTO events (run_id, task_id, attempt, t, stream, data) VALUES (?, ?, ?, ?, ?, ?)',
            'r', 't', 1, t0, 'stdout', line .. i)
    end
  end)
  local dt = now() - t0
  h:close()
  return dt
end

-- reference 2: the sqlite3 CLI running the same inserts from a file
local function raw_cli()
  if os.execute('command -v sqlite3 >/dev/null 2>&1') ~= 0 and
     os.execute('command -v sqlite3 >/dev/null 2>&1') ~= true then
    return nil
  end
  local sql = dir .. '/ins.sql'
  local f = assert(io.open(sql, 'w'))
  f:write('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;\n', store.migrations[1], '\nBEGIN;\n')
  for i = 1, N do
    f:write("INSERT INTO events (run_id, task_id, attempt, t, stream, data) VALUES ('r', 't', 1, ",
            string.format('%.6f', now()), ", 'stdout', '", line, i, "');\n")
  end
  f:write('COMMIT;\n')
  f:close()
  local t0 = now()
  os.execute(string.format('sqlite3 %q < %q > /dev/null', dir .. '/cli.db', sql))
  return now() - t0
end

local function events(st)
  st:create_run{id = 'r'}
  st:add_tasks('r', {{id = 't', cmd = 'true'}})
  local t0 = now()
  for i = 1, N do st:event('r', 't', 1, 'stdout', line .. i) end
  st:flush()
  return now() - t0
end

-- the same N lines as output chunks of 256 lines (what the engine hands
-- the store for a process's output, schema 4), read back line by line
local function chunks(st)
  local t0 = now()
  local batch, seq = {}, 0
  for i = 1, N do
    batch[#batch + 1] = line .. i
    if #batch == 256 or i == N then
      seq = seq + 1
      st:output('r', 't', 2, 'stdout', table.concat(batch, '\n'), seq, #batch, #batch[#batch])
      batch = {}
    end
  end
  st:flush()
  local written = now() - t0
  t0 = now()
  local n = 0
  for _ in st:events('r', 't', {attempt = 2}) do n = n + 1 end
  assert(n == N, ('read back %d of %d lines'):format(n, N))
  return written, now() - t0
end

local function changes(st)
  local t0 = now()
  for i = 1, CHANGES do
    st:set_task('r', 't', {status = (i % 2 == 0) and 'running' or 'ready', exit_code = i})
  end
  return now() - t0
end

-- a mix: 10 output lines per state change, as a busy run would record
local function mixed(st)
  local t0 = now()
  local n = 0
  for i = 1, CHANGES do
    for _ = 1, 10 do st:event('r', 't', 1, 'stdout', line); n = n + 1 end
    st:set_task('r', 't', {exit_code = i})
  end
  return now() - t0, n + CHANGES
end

io.write(string.format('orch store benchmark: %d events, %d state changes, SQLite %s\n',
                       N, CHANGES, db.sqlite_version))
local ref = N / raw_binding()
report('reference: h:run INSERT, one transaction', N, N / ref)
local cli = raw_cli()
local cli_rate = cli and report('reference: sqlite3 CLI, same INSERTs', N, cli)
local st = assert(store.open(dir .. '/orch.db'))
local ev_rate = report('st:event + flush (batched)', N, events(st), ref)
if cli_rate then
  io.write(string.format('%-44s %10.2fx\n', 'events vs sqlite3 CLI', ev_rate / cli_rate))
end
local cw, cr = chunks(st)
report('st:output, chunks of 256 lines + flush', N, cw, ref)
report('st:events, the chunks read back as lines', N, cr)
report('st:set_task (each committed)', CHANGES, changes(st))
local dt, n = mixed(st)
report('10 events + 1 set_task, per row', n, dt)
st:close()
io.write(string.format('target: 80000 events/s sustained -> %s\n',
                       ev_rate >= 80000 and 'met' or 'NOT met'))
os.execute('rm -rf ' .. dir)
