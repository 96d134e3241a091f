-- The engine's event stream over the control socket of a real run: a
-- subscriber that joins mid-run gets a snapshot and then every later event
-- exactly once, in seq order, ending with the run's end; an agent's
-- question (the `ask` method, a deferred reply) is answered with nobody at
-- a terminal.
local core = require('orch.core')
local cjson = require('cjson')
local H = require('spec.helpers')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

local function start_run(dir, sockdir, tasks)
  local path = dir .. '/plan.json'
  H.write(path, cjson.encode({ goal = 'events', tasks = tasks }))
  local r = { stdout = {}, stderr = {} }
  r.proc = assert(core.spawn({
    argv = { H.ORCH, 'run', '--plan', path, '--repo', dir, '--concurrency', '1', '--yes', '--no-tui' },
    env = { ORCH_SOCKET_DIR = sockdir },
    stdout = function(l) r.stdout[#r.stdout + 1] = l end,
    stderr = function(l) r.stderr[#r.stderr + 1] = l end,
    on_exit = function(code) r.code = code or -1 end,
  }))
  H.run_until(function()
    local names = H.sh("ls '" .. dir .. "/.orch/live' 2>/dev/null")
    r.id = names:match('(%S+)')
    return r.id ~= nil or r.code ~= nil
  end, 20000)
  if r.id then r.record = cjson.decode(H.read(dir .. '/.orch/live/' .. r.id)) end
  return r
end

-- A JSON-mode client: call(method, params) -> reply; events in c.events.
local function client(path)
  local c = { frames = {}, events = {}, closed = false, replies = {} }
  c.conn = assert(core.ctl.connect(path))
  c.conn:start(function(d)
    if not d then return end
    local m = cjson.decode(d)
    if m.event then c.events[#c.events + 1] = m.event
    elseif m.id then c.replies[m.id] = m
    else c.frames[#c.frames + 1] = m end
  end, function() c.closed = true end)
  c.conn:write('\27json\n')
  H.run_until(function() return #c.frames > 0 or c.closed end, 20000)
  local id = 0
  function c.send(method, params)
    id = id + 1
    c.conn:write(cjson.encode({ id = id, method = method, params = params or {} }) .. '\n')
    return id
  end
  function c.call(method, params)
    local n = c.send(method, params)
    H.run_until(function() return c.replies[n] ~= nil or c.closed end, 20000)
    return c.replies[n]
  end
  return c
end

describe('the event stream of a live run', function()
  local dir, sockdir, r
  before_each(function()
    dir = H.tmpdir()
    git_repo(dir)
    sockdir = H.tmpdir() .. '/s'
  end)
  after_each(function()
    if r and r.code == nil then
      r.proc:kill('SIGTERM')
      if not H.run_until(function() return r.code ~= nil end, 10000) then r.proc:cancel(0) end
    end
    H.rm(dir)
    H.rm(sockdir:match('^(.*)/s$'))
  end)

  it('gives a late subscriber a snapshot, then every later event once, in order', function()
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = { id = 't' .. i, cmd = ('echo one-%d; echo two-%d >&2; sleep 0.3'):format(i, i),
                   deps = i > 1 and { 't' .. (i - 1) } or nil }
    end
    r = start_run(dir, sockdir, tasks)
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local c = client(r.record.socket)
    -- join once a task or two have ended
    assert.is_true(H.run_until(function()
      local s = c.call('status').result
      return s.tasks[2].status ~= 'pending'
    end, 20000))
    local sub = c.call('subscribe').result
    assert.truthy(sub.subscribed and sub.seq > 0)
    assert.equal(sub.seq, sub.snapshot.seq)
    assert.is_true(H.run_until(function()
      local last = c.events[#c.events]
      return last ~= nil and last.kind == 'run' and (last.status == 'done' or last.status == 'failed')
    end, 30000))
    H.run_until(function() return r.code ~= nil end, 20000)
    assert.equal(0, r.code, table.concat(r.stderr, '\n'))
    local status = {}
    for _, t in ipairs(sub.snapshot.tasks) do status[t.id] = t.status end
    local lines = {}
    for i, ev in ipairs(c.events) do
      assert.equal(sub.seq + i, ev.seq, 'gap or duplicate at event ' .. i)
      if ev.task then status[ev.task] = ev.status end
      if ev.kind == 'output' then
        for _, l in ipairs(ev.lines) do lines[l] = ev.stream end
      end
    end
    assert.equal('done', c.events[#c.events].status)
    assert.equal('stderr', lines['two-6'])
    assert.equal('stdout', lines['one-6'])
    -- what the events say is what the store says
    local js = H.orch({ 'status', r.id, '--repo', dir, '--json' })
    assert.equal(0, js.code, js.err)
    local s = cjson.decode(js.out)
    assert.equal('done', s.run.status)
    for _, t in ipairs(s.tasks) do
      assert.equal(t.status, status[t.id], t.id)
      assert.equal('exec', t.backend)
    end
  end)

  it('answers an agent question with a deferred reply when nobody is at a terminal', function()
    r = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 3' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local c = client(r.record.socket)
    local sub = c.call('subscribe').result
    assert.truthy(sub.subscribed)
    -- the task's worktree is made off the loop: the socket answers before
    -- the task runs, so wait for it to run (its status goes with the answer)
    local running = false
    for _, t in ipairs(sub.snapshot and sub.snapshot.tasks or {}) do
      if t.id == 'a' and t.status == 'running' then running = true end
    end
    assert.is_true(running or H.run_until(function()
      for _, ev in ipairs(c.events) do
        if ev.kind == 'task' and ev.task == 'a' and ev.status == 'running' then return true end
      end
      return false
    end, 20000))
    local reply = c.call('ask', { task = 'a', question = 'tabs or spaces?' })
    assert.truthy(reply.result, cjson.encode(reply))
    assert.matches('use your best judgement', reply.result.answer, 1, true)
    assert.equal(2, c.call('ask', { task = 'nope', question = 'x' }).error.code)
    assert.equal(-32602, c.call('ask', { task = 'a' }).error.code)
    H.run_until(function()
      local n = 0
      for _, ev in ipairs(c.events) do if ev.kind == 'question' then n = n + 1 end end
      return n >= 2
    end, 5000)
    local q = {}
    for _, ev in ipairs(c.events) do if ev.kind == 'question' then q[#q + 1] = ev end end
    assert.equal('tabs or spaces?', q[1].question)
    assert.is_nil(q[1].answer)
    assert.equal(reply.result.id, q[2].id)
    assert.equal('orch', q[2].by)
    assert.equal('running', q[2].status)
  end)

  it('answers later: other requests are answered meanwhile, the ask once a person answers', function()
    r = start_run(dir, sockdir, { { id = 'a', cmd = 'sleep 3' } })
    assert.truthy(r.id, table.concat(r.stderr, '\n'))
    local c = client(r.record.socket)
    -- as if a person sat at the terminal
    assert.truthy(c.call('eval', { code = 'orch.engine.interactive = true' }).result)
    local asked = c.send('ask', { task = 'a', question = 'which port?' })
    assert.equal('pong', c.call('ping').result)
    assert.is_nil(c.replies[asked])
    local qs = c.call('eval', { code = 'return orch.questions()[1]' }).result.output
    assert.truthy(tonumber(qs), qs)
    assert.truthy(c.call('answer', { id = tonumber(qs), answer = '8080' }).result)
    assert.is_true(H.run_until(function() return c.replies[asked] ~= nil end, 5000))
    assert.equal('8080', c.replies[asked].result.answer)
    assert.equal(2, c.call('answer', { id = tonumber(qs), answer = 'again' }).error.code)
    assert.truthy(c.call('eval', { code = 'orch.engine.interactive = false' }).result)
  end)
end)
