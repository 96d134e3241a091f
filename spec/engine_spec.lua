-- orch.engine on its own: a real store, the scheduler, and workspaces made
-- for the test (a workspace is an extension point: begin/prepare/finish/complete).
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')
local H = require('spec.helpers')

local function make(dir, n, ws)
  local tasks = {}
  for i = 1, n do tasks[i] = { id = 't' .. i, cmd = 'true', deps = {}, files = {}, env = {} } end
  local plan = { tasks = tasks }
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = 'r1', repo = dir, concurrency = 4 }
  st:create_run(run)
  st:add_tasks(run.id, tasks)
  local e = engine.new({ store = st, run = run, plan = plan, workspace = ws, quiet = true })
  return e, st
end

describe('orch.engine', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('settles thousands of tasks that fail at once without deep recursion', function()
    local ws = {
      begin = function() return true end,
      prepare = function() return nil, 'no room' end,
      finish = function() return { status = 'done' } end,
      complete = function() return nil end,
    }
    local e, st = make(dir, 5000, ws)
    local code
    e:start(function(c) code = c end)
    assert.equal(1, code) -- ended synchronously: nothing could start
    local failed = 0
    for _, t in ipairs(st:tasks('r1')) do
      if t.status == 'failed' then failed = failed + 1 end
    end
    assert.equal(5000, failed)
    st:close()
  end)

  it('hands finished work to the workspace and reports events to subscribers', function()
    local finished, events = {}, {}
    local ws = {
      begin = function() return true end,
      prepare = function(_, task) return { cwd = dir, branch = 'b/' .. task.id } end,
      finish = function(_, task) finished[#finished + 1] = task.id return { status = 'done' } end,
      complete = function() return 'completed' end,
    }
    local e, st = make(dir, 3, ws)
    e:subscribe(function(ev)
      if ev.kind == 'task' and ev.status and not ev.exited then events[#events + 1] = ev.task .. ':' .. ev.status end
    end)
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    table.sort(finished)
    assert.same({ 't1', 't2', 't3' }, finished)
    local running, done = 0, 0
    for _, ev in ipairs(events) do
      if ev:match(':running$') then running = running + 1 end
      if ev:match(':done$') then done = done + 1 end
    end
    assert.equal(3, running)
    assert.equal(3, done)
    assert.equal('b/t1', st:task('r1', 't1').branch)
    st:close()
    assert.is_true(core.now() > 0)
  end)
end)

-- A workspace made for the tests: every task runs in dir.
local function plain_ws(dir, finished)
  return {
    begin = function() return true end,
    prepare = function(_, task) return { cwd = dir, branch = 'b/' .. task.id } end,
    finish = function(_, task)
      if finished then finished[#finished + 1] = task.id end
      return { status = 'done' }
    end,
    complete = function() return 'completed' end,
  }
end

local function new_engine(dir, tasks, o)
  o = o or {}
  for _, t in ipairs(tasks) do
    t.deps, t.files, t.env = t.deps or {}, t.files or {}, t.env or {}
  end
  local plan = { tasks = tasks }
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = o.run_id or 'r1', repo = dir, concurrency = o.concurrency or 4 }
  st:create_run(run)
  st:add_tasks(run.id, tasks)
  local e = engine.new({ store = st, run = run, plan = plan, quiet = true,
                         workspace = o.ws or plain_ws(dir), concurrency = run.concurrency })
  return e, st
end

describe('orch.engine events', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('a subscriber that joins mid-run after a snapshot sees every later event once, in order', function()
    local tasks = {}
    for i = 1, 8 do
      tasks[i] = { id = 'k' .. i, cmd = ('for i in 1 2 3; do echo %d-$i; done; sleep 0.05'):format(i),
                   deps = i > 2 and { 'k' .. (i - 2) } or {} }
    end
    local e, st = new_engine(dir, tasks, { concurrency = 2 })
    local snap, got, code = nil, {}, nil
    -- join once the first task is done, from inside an event (the hardest case)
    e:subscribe(function(ev)
      if not snap and ev.kind == 'task' and ev.status == 'done' then
        snap = e:snapshot()
        e:subscribe(function(ev2) got[#got + 1] = ev2 end)
      end
    end)
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end, 30000))
    assert.equal(0, code)
    assert.truthy(snap and #got > 0)
    -- no gap, no duplicate
    for i, ev in ipairs(got) do assert.equal(snap.seq + i, ev.seq) end
    -- the run's end arrives, last
    assert.same({ 'run', 'done' }, { got[#got].kind, got[#got].status })
    -- the snapshot plus the events give what the store holds
    local status = {}
    for _, t in ipairs(snap.tasks) do status[t.id] = t.status end
    local lines = 0
    for _, ev in ipairs(got) do
      if ev.task then
        assert.truthy(ev.status, 'event without its task status: ' .. ev.kind)
        status[ev.task] = ev.status
      end
      if ev.kind == 'output' then lines = lines + #ev.lines end
    end
    for _, t in ipairs(st:tasks('r1')) do assert.equal(t.status, status[t.id], t.id) end
    assert.is_true(lines > 0)
    -- and every event is stored, with its seq
    local stored = 0
    for ev in st:recorded('r1', snap.seq) do
      stored = stored + 1
      assert.truthy(ev.seq > snap.seq)
    end
    local state_events = 0
    for _, ev in ipairs(got) do if ev.kind ~= 'output' then state_events = state_events + 1 end end
    assert.equal(state_events, stored)
    assert.equal(e.seq, st:last_seq('r1'))
    st:close()
  end)

  it('records a lock wait when a ready task waits for files another one holds', function()
    local e, st = new_engine(dir, { { id = 'a', cmd = 'sleep 0.2', files = { 'x.c' } },
                                    { id = 'b', cmd = 'true', files = { 'x.c' } } })
    local locks = {}
    e:subscribe(function(ev)
      if ev.kind == 'lock' then locks[#locks + 1] = ev.task .. ':' .. tostring(ev.waiting) .. ':' .. ev.status end
    end)
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    assert.same({ 'b:true:pending', 'b:false:pending' }, locks)
    st:close()
  end)

  it('core.run from inside a callback raises, naming the misuse', function()
    local ok, err
    core.timer(0, function() ok, err = pcall(core.run, 'once') end)
    assert.is_true(H.run_until(function() return ok ~= nil end))
    assert.is_false(ok)
    assert.matches('core.run called from inside a loop callback', err, 1, true)
  end)

  it('takes the exit code from the scheduler: soft failures pass, hard ones fail', function()
    local e, st = new_engine(dir, { { id = 's', cmd = 'exit 3', on_failure = 'soft' },
                                    { id = 'after', cmd = 'true', deps = { 's' } } })
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    assert.equal('done', st:task('r1', 'after').status)
    st:close()
    H.rm(dir)
    dir = H.tmpdir()
    local e2, st2 = new_engine(dir, { { id = 'h', cmd = 'exit 3' },
                                      { id = 'after', cmd = 'true', deps = { 'h' } } })
    code = nil
    e2:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(1, code)
    assert.equal('blocked', st2:task('r1', 'after').status)
    st2:close()
  end)

  it('waits at the apply gate without running the loop inside a callback', function()
    local e, st = new_engine(dir, { { id = 'a', cmd = 'true' } })
    e.interactive = true
    local applied, code
    e.ws.complete = function(_, _, opts) applied = opts.yes return 'applied' end
    e:subscribe(function(ev)
      -- a UI answers a little later, from a timer
      if ev.kind == 'gate' and ev.status == 'open' then
        assert.equal('apply', ev.gate)
        core.timer(10, function() assert(e:answer_gate('apply', true)) end)
      end
    end)
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    assert.is_true(applied)
    assert.equal('done', st:run('r1').status)
    st:close()
  end)

  it('adds follow-up tasks from on_task_end before the run can end', function()
    local e, st = new_engine(dir, { { id = 'build', cmd = 'echo built' } })
    local ends = {}
    e:on_task_end(function(task, result)
      ends[#ends + 1] = task.id .. ':' .. result.status
      if task.id == 'build' then
        -- a hook may wait: the run does not end meanwhile
        require('orch.async').sleep(20)
        assert(e:add_task({ id = 'review', cmd = 'echo reviewed', deps = { 'build' } }))
      end
    end)
    local bad, berr = e:add_task({ id = 'x', cmd = 'true', deps = { 'nope' } })
    assert.is_nil(bad)
    assert.matches('unknown task "nope"', berr, 1, true)
    assert.is_nil((e:add_task({ id = 'y', cmd = 'true', colour = 'red' })))
    assert.is_nil((e:add_task({ id = 'build', cmd = 'true' })))
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    assert.same({ 'build:done', 'review:done' }, ends)
    assert.equal('done', st:task('r1', 'review').status)
    -- resume would know it: the stored plan has it
    assert.matches('"review"', st:run('r1').plan_json, 1, true)
    st:close()
  end)

  it('answers a question with nobody there, and lets a person answer otherwise', function()
    local e, st = new_engine(dir, { { id = 'a', cmd = 'sleep 0.2' } })
    local answers, seen = {}, {}
    e:subscribe(function(ev) if ev.kind == 'question' then seen[#seen + 1] = ev end end)
    local code
    e:start(function(c) code = c end)
    assert.truthy(e:ask('a', 'which file?', function(a) answers[1] = a end))
    assert.equal(engine.NO_ANSWER, answers[1])
    e.interactive = true
    local qid = e:ask('a', 'which branch?', function(a) answers[2] = a end)
    assert.is_nil(answers[2])
    assert.same({ qid }, e:open_questions())
    assert(e:answer_question(qid, 'main'))
    assert.equal('main', answers[2])
    assert.is_nil((e:answer_question(qid, 'again')))
    e.interactive = false -- nobody to pass the apply gate
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(4, #seen)
    assert.same({ 'which branch?', 'main', 'person', 'running' },
      { seen[4].question, seen[4].answer, seen[4].by, seen[4].status })
    st:close()
  end)
end)

describe('orch.engine backends', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    package.loaded['orch.backends.spectest'] = nil
    H.rm(dir)
  end)

  -- A tiny in-process backend: reports a session, usage twice, some text,
  -- then ends from a timer with the final reply.
  local function test_backend(log)
    local B = { name = 'spectest' }
    local function turn(kind, ctx)
      log[#log + 1] = { kind = kind, ctx = ctx }
      ctx.emit({ type = 'session', session_id = 'sess-' .. ctx.task.id, data = { n = 1 } })
      ctx.emit({ type = 'text', text = 'thinking' })
      ctx.emit({ type = 'usage', usage = { input_tokens = 10, output_tokens = 2 }, cost_usd = 0.25 })
      ctx.emit({ type = 'usage', usage = { input_tokens = 5, output_tokens = 1 }, cost_usd = 0.5 })
      ctx.on_line('stdout', 'raw line')
      local t
      t = core.timer(5, function()
        t:close()
        ctx.emit({ type = 'result', text = 'VERDICT: ok', ok = true })
        ctx.on_done({ ok = true, exit_code = 0 })
      end)
      return { cancel = function() end }
    end
    function B.start(ctx) return turn('start', ctx) end
    function B.resume(ctx) return turn('resume', ctx) end
    package.loaded['orch.backends.spectest'] = B
    return B
  end

  it('gives a backend its ctx and stores its session, usage and final reply', function()
    local log = {}
    test_backend(log)
    local e, st = new_engine(dir, { { id = 'a', role = 'coder', backend = 'spectest', prompt = 'do it',
                                      env = { FOO = 'bar' } } })
    local results, agent = {}, {}
    e:on_task_end(function(task, result) results[task.id] = result end)
    e:subscribe(function(ev)
      if ev.kind == 'agent' then agent[#agent + 1] = ev.type .. ':' .. ev.status end
    end)
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    local ctx = log[1].ctx
    assert.equal('start', log[1].kind)
    assert.equal('do it', ctx.prompt)
    assert.equal('bar', ctx.env.FOO)
    assert.equal('a', ctx.env.ORCH_TASK)
    assert.equal('r1', ctx.mcp.env.ORCH_RUN)
    assert.equal('mcp', ctx.mcp.argv[2])
    assert.is_false(ctx.resume)
    assert.is_nil(ctx.session)
    assert.equal('function', type(ctx.ask))
    -- the scratch directory existed during the turn and is gone after the run
    assert.truthy(ctx.scratch)
    assert.is_nil(H.read(ctx.scratch .. '/.'))
    assert.same({ 'session:running', 'text:running', 'usage:running', 'usage:running',
                  'result:running' }, agent)
    assert.equal('VERDICT: ok', results.a.text)
    local t = st:task('r1', 'a')
    assert.equal('sess-a', t.session_id)
    assert.equal('sess-a', st:session('r1', 'a').session_id)
    assert.equal(0.75, t.cost_usd)
    local s = require('orch.status').object(st, 'r1')
    assert.same({ 0.75, 15, 3, 'spectest' }, { s.tasks[1].cost_usd, s.tasks[1].usage.input_tokens,
                                            s.tasks[1].usage.output_tokens, s.tasks[1].backend })
    st:close()
  end)

  it('resumes a turn cut short mid-way with its session and the carry-on prompt', function()
    local log = {}
    test_backend(log)
    local tasks = { { id = 'a', role = 'coder', backend = 'spectest', prompt = 'do it',
                      deps = {}, files = {}, env = {} } }
    local st = assert(store.open(dir .. '/orch.db'))
    local run = { id = 'r1', repo = dir, concurrency = 1 }
    st:create_run(run)
    st:add_tasks('r1', tasks)
    -- what an orch killed mid-turn left: a session, an interrupted attempt
    st:start_attempt('r1', 'a', {})
    st:set_session('r1', 'a', 'spectest', 'sess-old', { n = 7 })
    st:finish_attempt('r1', 'a', 1, { status = 'interrupted', task_status = 'pending' })
    local e = engine.new({ store = st, run = run, plan = { tasks = tasks }, workspace = plain_ws(dir),
                           resume = true, concurrency = 1 })
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    assert.equal('resume', log[1].kind)
    assert.is_true(log[1].ctx.resume)
    assert.equal('sess-old', log[1].ctx.session.id)
    assert.equal(7, log[1].ctx.session.data.n)
    assert.equal(engine.RESUME_PROMPT, log[1].ctx.prompt)
    st:close()
  end)

  it('fails a task whose backend module does not exist, saying which', function()
    local e, st = new_engine(dir, { { id = 'a', role = 'coder', backend = 'nosuchbackend', prompt = 'x' } })
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(1, code)
    assert.matches("backend 'nosuchbackend' is not available", st:task('r1', 'a').error, 1, true)
    st:close()
  end)
end)
