-- The control socket of a live run and `orch repl`, through the real binary:
-- a run with a long task, a REPL in another process, the JSON protocol,
-- socket modes, kill -9, malformed frames.
local core = require('orch.core')
local cjson = require('cjson')
local H = require('spec.helpers')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

local plan_file = H.plan_file

local function mode_of(path)
  return (H.sh("stat -c %a '" .. path .. "'"):gsub('%s+$', ''))
end

-- Starts `orch run --plan` in the background; returns a handle with
-- .code once it exited, and the live record once the socket is up.
-- Runs started by a test; after_each stops what a failed test left running
-- (a task paused by a test that failed before resuming it would wait forever).
local started = {}

local function start_run(dir, sockdir, tasks, extra)
  local r = { stdout = {}, stderr = {} }
  local argv = { H.ORCH, 'run', '--plan', plan_file(dir, tasks), '--repo', dir,
                 '--concurrency', '1', '--yes', '--no-tui' }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  r.proc = assert(core.spawn({
    argv = argv, env = { ORCH_SOCKET_DIR = sockdir },
    stdout = function(l) r.stdout[#r.stdout + 1] = l end,
    stderr = function(l) r.stderr[#r.stderr + 1] = l end,
    on_exit = function(code, sig) r.code, r.sig = code or -1, sig end,
  }))
  r.pid = r.proc:pid()
  started[#started + 1] = r
  H.run_until(function()
    local live = dir .. '/.orch/live'
    local names = H.sh("test -d '" .. live .. "' && ls '" .. live .. "'")
    r.id = names:match('(%S+)')
    return r.id ~= nil or r.code ~= nil
  end, 20000)
  if r.id then r.record = cjson.decode(H.read(dir .. '/.orch/live/' .. r.id)) end
  return r
end

local function wait_exit(r)
  H.run_until(function() return r.code ~= nil end, 60000)
  return r.code
end

local function repl(dir, input, args)
  local a = { 'repl', '--repo', dir }
  for _, x in ipairs(args or {}) do a[#a + 1] = x end
  return H.orch(a, { input = input })
end

local function proc_state(pid)
  local stat = H.read('/proc/' .. pid .. '/stat')
  return stat and stat:match('^.*%)%s+(%S+)')
end

-- A JSON-mode client on the loop: call(method, params) -> reply.
local function json_client(path)
  local c = { frames = {}, closed = false }
  c.conn = assert(core.ctl.connect(path))
  c.conn:start(function(d) if d then c.frames[#c.frames + 1] = d end end,
               function() c.closed = true end)
  function c.send(s) c.conn:write(s) end
  function c.wait_frames(n)
    H.run_until(function() return #c.frames >= n or c.closed end, 20000)
    return #c.frames >= n
  end
  c.send('\27json\n')
  assert(c.wait_frames(1))
  c.hello = cjson.decode(c.frames[1]).hello
  c.frames = {}
  local id = 0
  function c.call(method, params)
    id = id + 1
    c.send(cjson.encode({ id = id, method = method, params = params or {} }) .. '\n')
    local reply
    H.run_until(function()
      for _, f in ipairs(c.frames) do
        local m = cjson.decode(f)
        if m.id == id then reply = m return true end
      end
      return c.closed
    end, 20000)
    return reply
  end
  return c
end

describe('the control socket', function()
  local dir, sockdir
  before_each(function()
    dir = H.tmpdir()
    git_repo(dir)
    sockdir = H.tmpdir() .. '/s'
  end)
  after_each(function()
    for _, r in ipairs(started) do
      if r.code == nil then
        r.proc:kill('SIGTERM') -- orch stops its tasks (paused ones too) and exits
        if not H.run_until(function() return r.code ~= nil end, 10000) then r.proc:cancel(0) end
      end
    end
    started = {}
    H.rm(dir)
    H.rm(sockdir:match('^(.*)/s$'))
  end)

  it('lets orch repl read, pause and resume a task of a live run', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 5' }, { id = 'after', cmd = 'true' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    -- the socket: in a 0700 directory, itself 0600; the record points at it
    assert.equal('700', mode_of(sockdir))
    assert.equal(sockdir .. '/' .. r.id .. '.sock', r.record.socket)
    assert.equal('600', mode_of(r.record.socket))
    assert.equal(r.pid, r.record.pid)

    local out = repl(dir, 'return orch.run.id\n')
    assert.equal(0, out.code, out.err)
    assert.equal('"' .. r.id .. '"', out.out)

    local t
    H.run_until(function()
      local s = repl(dir, 'local t = orch.task("long") return t.status, t.pid\n')
      t = s.out
      return t:match('^"running"%s+%d+')
    end, 10000)
    local pid = tonumber(t:match('(%d+)$'))
    assert.truthy(pid, t)

    out = repl(dir, 'return orch.pause("long")\nreturn orch.task("long").paused\n')
    assert.equal(0, out.code, out.err)
    assert.equal('true\ntrue', out.out)
    -- SIGSTOP is asynchronous: the state shows it a moment later
    assert.is_true(H.run_until(function() return proc_state(pid) == 'T' end, 5000))
    out = repl(dir, 'orch.resume("long")\nreturn 1+1\n')
    assert.equal(0, out.code, out.err)
    assert.equal('true\n2', out.out)
    assert.is_true(H.run_until(function() return proc_state(pid) ~= 'T' end, 5000))

    -- an error prints its message and the run goes on
    out = repl(dir, 'error("x")\nreturn "still here"\n')
    assert.equal(1, out.code)
    assert.matches('x', out.err)
    assert.equal('"still here"', out.out)
    -- an unfinished chunk continues on the next lines
    out = repl(dir, 'function f()\nreturn 1 end\nreturn f()\nlocal s = [[a\nb]] return s\n')
    assert.equal(0, out.code, out.err)
    assert.equal('1\n"a\\nb"', out.out)
    -- tables print readably; print() output comes back
    out = repl(dir, 'return {1, {x = 2}, y = "z"}\nprint("p", 3)\n')
    assert.equal('{ 1, { x = 2 }, y = "z" }\np\t3', out.out)
    -- concurrency
    out = repl(dir, 'return orch.concurrency(3)\nreturn orch.engine.concurrency\n')
    assert.equal('3\n3', out.out)
    -- an endless loop is stopped, the run goes on
    out = repl(dir, 'while true do end\nreturn "alive"\n')
    assert.matches('more than %d+ instructions', out.err)
    assert.equal('"alive"', out.out)
    -- ... even one that catches the stop with pcall and loops on
    out = repl(dir, 'for i = 1, 3 do pcall(function() while true do end end) end\nreturn "alive"\n')
    assert.equal('"alive"', out.out)

    assert.equal(0, wait_exit(r), table.concat(r.stderr, '\n'))
    -- gone with the run: the socket and the record
    assert.is_nil(H.read(dir .. '/.orch/live/' .. r.id))
    assert.is_nil(io.open(r.record.socket, 'r'))
    out = repl(dir, 'return 1\n')
    assert.equal(2, out.code)
    assert.matches('no live run in', out.err)
  end)

  it('speaks framed JSON: status, eval, pause, cancel, concurrency, subscribe', function()
    local r = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 2; echo from-a' },
                                        { id = 'z', cmd = 'sleep 30' } })
    assert.truthy(r.id)
    local c = json_client(r.record.socket)
    assert.equal(r.id, c.hello.run)
    local st = c.call('status')
    assert.equal(r.id, st.result.run.id)
    assert.equal(2, #st.result.tasks)
    local ev = c.call('eval', { code = 'return 1+1' })
    assert.equal('2', (ev.result or {}).output, cjson.encode(ev))
    local e = c.call('eval', { code = 'error("boom")' })
    assert.equal(1, e.error.code)
    assert.matches('boom', e.error.message)
    assert.truthy(c.call('eval', { code = 'function g()' }).result.incomplete)
    assert.equal(2, c.call('pause', { task = 'nope' }).error.code)
    assert.equal(-32602, c.call('pause', { task = 5 }).error.code)
    assert.equal(-32602, c.call('set_concurrency', { n = 'x' }).error.code)
    assert.equal(-32601, c.call('frobnicate').error.code)
    assert.truthy(c.call('subscribe').result.subscribed)
    -- concurrency 1 -> 2: both tasks run; z is cancelled, a finishes
    assert.equal(2, c.call('set_concurrency', { n = 2 }).result.concurrency)
    H.run_until(function()
      local s2 = c.call('status').result
      return s2.tasks[1].status == 'running' and s2.tasks[2].status == 'running'
    end, 10000)
    assert.truthy(c.call('cancel', { task = 'z' }).result.ok)
    local saw = {}
    H.run_until(function()
      for _, f in ipairs(c.frames) do
        local m = cjson.decode(f)
        local x = m.event or {}
        if x.kind == 'output' and x.task == 'a' then saw.output = x.lines[1] end
        if x.kind == 'task' and x.task == 'a' and x.status == 'done' then saw.a = true end
        if x.kind == 'task' and x.task == 'z' and x.status == 'cancelled' then saw.z = true end
      end
      return saw.a and saw.z and saw.output
    end, 20000)
    assert.equal('from-a', saw.output, table.concat(c.frames, '\n'))
    assert.truthy(saw.a and saw.z)
    assert.equal(1, wait_exit(r)) -- a cancelled task fails the run
    assert.truthy(c.closed or H.run_until(function() return c.closed end, 5000))
  end)

  it('gives tasks a socket that serves ask and ping only', function()
    local r = start_run(dir, sockdir, { { id = 'a', cmd = 'echo "$ORCH_CONTROL" > ctl.txt; sleep 30' } })
    assert.truthy(r.id)
    local ctl_txt = r.record.repo .. '/.orch/worktrees/' .. r.id .. '/a/ctl.txt'
    H.run_until(function() return (H.read(ctl_txt) or '') ~= '' end, 10000)
    local task_path = (H.read(ctl_txt) or ''):gsub('%s+$', '')
    assert.equal(r.record.socket:gsub('%.sock$', '.tasks.sock'), task_path)
    local c = json_client(task_path)
    assert.equal(r.id, c.hello.run)
    assert.equal('pong', c.call('ping').result)
    for _, m in ipairs({ 'eval', 'status', 'pause', 'cancel', 'add_task', 'gate', 'answer', 'subscribe' }) do
      local e = c.call(m, { code = 'return 1', task = 'a' })
      assert.equal(-32601, e.error and e.error.code, m)
      assert.matches('not served on the tasks', e.error.message)
    end
    assert.equal('running', json_client(r.record.socket).call('status').result.tasks[1].status)
    -- line mode (the REPL's Lua) is refused outright
    local raw = { frames = {}, closed = false }
    raw.conn = assert(core.ctl.connect(task_path))
    raw.conn:start(function(d) if d then raw.frames[#raw.frames + 1] = d end end,
                   function() raw.closed = true end)
    raw.conn:write('os.exit(1)\n')
    H.run_until(function() return raw.closed end, 10000)
    assert.is_true(raw.closed)
    assert.matches('serves only', table.concat(raw.frames, '\n'))
    assert.is_nil(r.code) -- the run went on
  end)

  it('answers 100 malformed frames of every kind with errors; the run finishes', function()
    local r = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 5' } })
    assert.truthy(r.id)
    local c = json_client(r.record.socket)
    local bad = {
      '{"id":1,"method":"status"', '{"id":', '[1,2', 'not json', '{}', '[]', '"str"', '42',
      '{"id":2}', '{"id":3,"method":"nope"}', '{"id":4,"method":7}', '{"id":{},"method":"status"}',
      '{"id":5,"method":"eval","params":"x"}', '{"id":6,"method":"eval","params":{"code":5}}',
      '{"id":7,"method":"eval","params":{"code":"return )"}}', '{"id":8,"method":"set_concurrency"}',
      '{"id":9,"method":"resume","params":{"task":[]}}', '\0\1\2\255\254', '\27[A\27[B',
      string.rep('[', 5000), '{"id":10,"method":"cancel","params":{"task":"nope"}}',
    }
    local n = 0
    for i = 1, 100 do
      c.send(bad[(i - 1) % #bad + 1] .. '\n')
      n = n + 1
    end
    assert.truthy(c.wait_frames(n))
    for _, f in ipairs(c.frames) do
      local m = cjson.decode(f)
      assert.truthy(m.error, f)
      assert.equal('number', type(m.error.code))
    end
    -- still answering
    c.frames = {}
    assert.equal(r.id, c.call('status').result.run.id)
    -- a frame over 16 MB: an error, then the connection is closed
    local big = string.rep('x', 17 * 1024 * 1024)
    c.frames = {}
    c.send(big)
    H.run_until(function() return c.closed end, 30000)
    assert.truthy(c.closed)
    assert.equal(3, cjson.decode(c.frames[1]).error.code)
    -- line mode: junk and a truncated chunk at end of stream
    local l = { frames = {} }
    local lc = assert(core.ctl.connect(r.record.socket))
    lc:start(function(d) if d then l.frames[#l.frames + 1] = d end end, function() l.closed = true end)
    lc:write('\0\255junk(\nreturn 40+2\nreturn (')
    lc:close()
    assert.equal(0, wait_exit(r), table.concat(r.stderr, '\n'))
  end)

  -- issue 12, item 2: each of these hung a live run beyond Ctrl+C
  local HOSTILE = {
    'while true do pcall(function() while true do end end) end',
    'while true do xpcall(function() while true do end end, function() while true do end end) end',
    'local u = newproxy(true) getmetatable(u).__tostring = function() while true do end end return u',
    'local k = setmetatable({}, { __tostring = function() while true do end end }) return { [k] = 1, [{}] = 2 }',
    'local u = newproxy(true) getmetatable(u).__tostring = function() while true do end end error(u)',
    'loadstring("while true do end")()',
  }

  it('stops every hostile evaluation; the run records output and stops on SIGTERM', function()
    local talk = 'i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.05; done'
    local r = start_run(dir, sockdir, { { id = 'talk', cmd = talk } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    for _, code in ipairs(HOSTILE) do
      local out = repl(dir, code .. '\nreturn "alive"\n')
      assert.equal('"alive"', out.out:match('"alive"$'), code .. '\n' .. out.out .. out.err)
      assert.matches('evaluation stopped: more than %d+ instructions', out.out .. out.err)
    end
    -- output recording went on meanwhile
    local logs = H.orch({ 'logs', r.id, 'talk', '--repo', dir })
    assert.matches('tick5', logs.out)
    r.proc:kill('SIGTERM')
    assert.equal(130, wait_exit(r))
  end)

  it('SIGINT and SIGTERM stop a run in the middle of a hostile evaluation', function()
    for _, sig in ipairs({ 'SIGINT', 'SIGTERM' }) do
      local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 30' } })
      assert.truthy(r.id, table.concat(r.stderr, '\n'))
      local c = json_client(r.record.socket)
      c.send(cjson.encode({ id = 1, method = 'eval', params = { code = HOSTILE[1] } }) .. '\n')
      H.run_until(function() return false end, 100) -- the evaluation has begun
      r.proc:kill(sig)
      assert.equal(130, wait_exit(r), sig)
      c.conn:close()
    end
  end)

  it('bounds what an evaluation prints and returns', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 30' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local c = json_client(r.record.socket)
    local reply = c.call('eval', { code = 'for i = 1, 3e4 do print(("x"):rep(100)) end' })
    local output = reply.result.output
    assert.is_true(#output < 1100 * 1024, #output)
    assert.matches('the rest was dropped', output)
    reply = c.call('eval', { code = 'return ("y"):rep(5e6)' })
    assert.is_true(#reply.result.output < 100 * 1024)
    assert.matches('more bytes', reply.result.output)
    c.conn:close()
    r.proc:kill('SIGTERM')
    assert.equal(130, wait_exit(r))
  end)

  -- issue 12, item 15: what a client can make the run hold
  local function rss_kb(pid)
    return tonumber((H.read('/proc/' .. pid .. '/status') or ''):match('VmRSS:%s*(%d+)'))
  end

  it('drops a partial line at the end of a connection instead of running it', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 30' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local c = assert(core.ctl.connect(r.record.socket))
    c:start(function() end, function() end)
    c:write('orch.pause("long")') -- no newline
    c:close()
    local out = repl(dir, 'return orch.task("long").paused\n')
    assert.equal('false', out.out)
    r.proc:kill('SIGTERM')
    assert.equal(130, wait_exit(r))
  end)

  it('does not buffer unread eval replies without bound', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 30' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local base = rss_kb(r.pid)
    -- a client that sends 300 evals of 1 MB replies and reads none
    local a = assert(core.ctl.connect(r.record.socket))
    a:start(function() end, function() end)
    a:write('\27json\n')
    for i = 1, 300 do
      a:write(cjson.encode({ id = i, method = 'eval', params = { code = 'print(("x"):rep(1e6))' } }) .. '\n')
    end
    H.run_until(function() return a:queued() == 0 end, 10000)
    -- another client is still answered, and the run holds a few MB, not 300
    local b = json_client(r.record.socket)
    assert.equal('pong', b.call('ping').result)
    local grown = rss_kb(r.pid) - base
    assert.is_true(grown < 64 * 1024, ('grew by %d kB'):format(grown))
    a:close()
    b.conn:close()
    r.proc:kill('SIGTERM')
    assert.equal(130, wait_exit(r))
  end)

  it('bounds the frames buffered over every connection together', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 30' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local base = rss_kb(r.pid)
    local conns, refused = {}, 0
    local chunk = ('x'):rep(1024 * 1024)
    for i = 1, 20 do
      local c = assert(core.ctl.connect(r.record.socket))
      local me = { conn = c }
      c:start(function(d)
        if d and d:find('frame too large', 1, true) then me.refused = true end
      end, function() me.closed = true end)
      for _ = 1, 8 do c:write(chunk) end -- 8 MB, no newline: under the 16 MB frame limit
      conns[i] = me
    end
    H.run_until(function()
      for _, me in ipairs(conns) do
        if me.conn:queued() > 0 and not me.closed then return false end
      end
      return true
    end, 60000)
    local b = json_client(r.record.socket)
    assert.equal('pong', b.call('ping').result)
    for _, me in ipairs(conns) do if me.refused or me.closed then refused = refused + 1 end end
    assert.is_true(refused >= 10, refused .. ' refused')
    local grown = rss_kb(r.pid) - base
    -- (under ASan freed memory sits in its quarantine: RSS says nothing there)
    if os.getenv('ORCH_SANITIZE') ~= 'ON' then
      assert.is_true(grown < 100 * 1024, ('grew by %d kB'):format(grown))
    end
    for _, me in ipairs(conns) do me.conn:close() end
    b.conn:close()
    r.proc:kill('SIGTERM')
    assert.equal(130, wait_exit(r))
  end)

  it('refuses a socket directory open to others', function()
    core.mkdir_p(sockdir)
    H.sh("chmod 755 '" .. sockdir .. "'")
    local out = H.orch({ 'run', '--plan', plan_file(dir, { { id = 'a', cmd = 'true' } }), '--repo', dir,
                         '--yes', '--no-tui' }, { env = { ORCH_SOCKET_DIR = sockdir } })
    assert.equal(2, out.code)
    assert.matches('unsafe permissions 755', out.err)
    assert.matches('chmod 700', out.err)
  end)

  it('does not take an unsafe socket directory for a dead run', function()
    local r = start_run(dir, sockdir, { { id = 'long', cmd = 'sleep 3' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    H.sh("chmod 755 '" .. sockdir .. "'")
    local out = repl(dir, 'return 1\n')
    assert.equal(2, out.code)
    assert.matches('unsafe permissions', out.err)
    -- the live run's socket and record are still there
    assert.is_not_nil(H.read(dir .. '/.orch/live/' .. r.id))
    assert.equal('600', mode_of(r.record.socket))
    H.sh("chmod 700 '" .. sockdir .. "'")
    out = repl(dir, 'return 1+1\n')
    assert.equal('2', out.out)
    assert.equal(0, wait_exit(r), table.concat(r.stderr, '\n'))
  end)

  it('after kill -9 says the run is not live, cleans up, and resume works', function()
    local r = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 5' }, { id = 'b', cmd = 'true' } })
    assert.truthy(r.id)
    core.kill(r.pid, 'SIGKILL')
    wait_exit(r)
    assert.truthy(H.read(dir .. '/.orch/live/' .. r.id)) -- left behind
    local out = repl(dir, 'return 1\n', { r.id })
    assert.equal(2, out.code)
    assert.truthy(out.err:find('run ' .. r.id .. ' is not live', 1, true), out.err)
    assert.is_nil(H.read(dir .. '/.orch/live/' .. r.id))
    assert.is_nil(io.open(r.record.socket, 'r'))
    out = repl(dir, 'return 1\n')
    assert.equal(2, out.code)
    assert.matches('no live run', out.err)
    out = H.orch({ 'resume', r.id, '--repo', dir, '--yes', '--no-tui' }, { env = { ORCH_SOCKET_DIR = sockdir } })
    assert.equal(0, out.code, out.err)
  end)

  it('lists the live runs when there are several', function()
    local r1 = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 5' } })
    H.sh("mv '" .. dir .. "/.orch/live/" .. r1.id .. "' '" .. dir .. "/.orch/held'")
    local r2 = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 5' } })
    H.sh("mv '" .. dir .. "/.orch/held' '" .. dir .. "/.orch/live/" .. r1.id .. "'")
    local out = repl(dir, 'return 1\n')
    assert.equal(2, out.code)
    assert.matches('several live runs', out.err)
    assert.matches(r1.id, out.err, 1, true)
    assert.matches(r2.id, out.err, 1, true)
    out = repl(dir, 'return orch.run.id\n', { r2.id })
    assert.equal('"' .. r2.id .. '"', out.out)
    r1.proc:kill('SIGTERM')
    r2.proc:kill('SIGTERM')
    wait_exit(r1)
    wait_exit(r2)
  end)
end)
