-- Whole turns of an HTTP backend (openai, anthropic) against the scripted
-- model server: the cases both backends must pass, registered by
-- spec/backend_openai_spec.lua and spec/backend_anthropic_spec.lua.
local core = require('orch.core')
local cjson = require('cjson')
local H = require('spec.helpers')
local sandbox = require('orch.agent.sandbox')
local assert = require('luassert')

local C = {}

C.KEY = 'sk-orch-spec-KEY-7f3a9c1e5b'

-- A turn of backend `name` with ctx fields o; runs the loop until on_done.
-- Returns {result=, events=, lines=, handle=, types={type=count}}.
function C.turn(name, srv, o)
  local b = require('orch.backends.' .. name)
  local t = { events = {}, lines = {}, types = {} }
  local env = { OPENAI_BASE_URL = srv.url .. '/v1', ANTHROPIC_BASE_URL = srv.url,
                OPENAI_API_KEY = C.KEY, ANTHROPIC_API_KEY = C.KEY }
  for k, v in pairs(o.env or {}) do env[k] = v end
  local ctx = {
    run = o.run, task = { id = 't1' }, attempt = 1, role = o.role or {}, prompt = o.prompt,
    model = o.model or 'scripted-model', tools = o.tools or 'edit', cwd = o.cwd, env = env,
    scratch = o.scratch, session = o.session, resume = o.resume, ask = o.ask,
    emit = function(ev)
      t.events[#t.events + 1] = ev
      t.types[ev.type] = (t.types[ev.type] or 0) + 1
      if ev.type == 'session' then t.session = { id = ev.session_id, backend = name, data = ev.data } end
      if o.on_event then o.on_event(ev, t) end
    end,
    on_line = function(stream, line) t.lines[#t.lines + 1] = stream .. ': ' .. line end,
    on_done = function(r)
      t.done_count = (t.done_count or 0) + 1
      t.result = r
    end,
  }
  local h, err = b.start(ctx)
  assert(h, err)
  t.handle = h
  assert(H.run_until(function() return t.result ~= nil end, o.timeout or 30000),
         'the turn did not end')
  -- nothing more arrives after on_done
  H.run_until(function() return false end, 50)
  assert.equals(1, t.done_count)
  return t
end

function C.of_type(t, ty)
  local out = {}
  for _, ev in ipairs(t.events) do if ev.type == ty then out[#out + 1] = ev end end
  return out
end

-- Everything a turn left that could be stored or shown, as one string.
function C.all_output(t)
  local parts = { cjson.encode(t.result) }
  for _, ev in ipairs(t.events) do parts[#parts + 1] = cjson.encode(ev) end
  for _, l in ipairs(t.lines) do parts[#parts + 1] = l end
  return table.concat(parts, '\n')
end

-- Registers the shared cases for backend `name`; B holds busted's
-- describe, it, before_each, after_each and pending (a spec file's own).
function C.cases(name, B)
  local describe, it, pending = B.describe, B.it, B.pending
  local before_each, after_each = B.before_each, B.after_each
  local ms = require('orch.testing.modelserver')
  local base, wt, srv

  local function start(scenario)
    if srv then srv:stop() end
    srv = assert(ms.start({ scenario = scenario }))
    return srv
  end

  local function turn(o)
    o.cwd = o.cwd or wt
    return C.turn(name, srv, o)
  end

  describe(name .. ' turns against the scripted model server', function()
    before_each(function()
      base = H.tmpdir()
      wt = base .. '/repo/.orch/worktrees/r1/t1'
      assert(core.mkdir_p(wt))
      assert(core.mkdir_p(base .. '/repo/.orch/worktrees/r1/t2'))
      H.write(wt .. '/README.md', '# project\n')
    end)

    after_each(function()
      if srv then srv:stop() srv = nil end
      H.rm(base)
    end)

    it('the scripted model makes the agent create a file through its write tool', function()
      start({
        { when = { tool_result = 'wrote' }, reply = { text = 'Done: hello.txt is written.',
          usage = { input_tokens = 1000, output_tokens = 100 } } },
        { when = { user = 'create (%S+)' }, reply = { text = 'Creating it.',
          write = { path = '{{1}}', content = 'hello from the model\n' },
          usage = { input_tokens = 2000, output_tokens = 50 } } },
      })
      local t = turn({ prompt = 'please create hello.txt', role = { system_prompt = 'You are a coder.',
                       price = { input = 3, output = 15 } }, model = 'scripted-model' })
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('Done: hello.txt is written.', t.result.text)
      assert.equals('hello from the model\n', H.read(wt .. '/hello.txt'))
      -- events in order: session first, then text, the call, its result, usage, result
      assert.equals('session', t.events[1].type)
      local calls = C.of_type(t, 'tool_call')
      assert.equals(1, #calls)
      assert.equals('write', calls[1].tool)
      assert.equals('hello.txt', calls[1].input.path)
      local results = C.of_type(t, 'tool_result')
      assert.equals(calls[1].id, results[1].id)
      assert.is_false(results[1].is_error)
      assert.equals('result', t.events[#t.events].type)
      assert.equals('usage', t.events[#t.events - 1].type)
      -- usage summed over the turn's two requests, cost from the role's price
      assert.same({ input_tokens = 3000, output_tokens = 150, cache_read_tokens = 0,
                    cache_write_tokens = 0 }, t.result.usage)
      assert.near((3000 * 3 + 150 * 15) / 1e6, t.result.cost_usd, 1e-9)
      assert.matches('^' .. name .. '%-', t.result.session_id)
      -- what the server saw: the system prompt, orch's tools, then the result
      local reqs = srv:requests()
      assert.equals(2, #reqs)
      assert.matches('You are a coder.', reqs[1].system, 1, true)
      -- orch's own instructions come first: where the worktree is, which tools
      assert.matches('git worktree at ' .. wt, reqs[1].system, 1, true)
      assert.is_true(reqs[1].system:find('git worktree') < reqs[1].system:find('You are a coder.'))
      assert.equals('scripted-model', reqs[1].model)
      local offered = table.concat(reqs[1].tools, ',')
      assert.matches('write', offered)
      assert.is_nil(offered:find('shell'))
      assert.equals('tool', reqs[2].last)
      assert.matches('wrote hello.txt', reqs[2].tool_results[1].output)
    end)

    it('a server that answers a whole JSON reply instead of a stream works too', function()
      -- the rule's fn makes the scripted server answer as to stream: false
      local function unstreamed(req) req.stream = false return true end
      start({
        { when = { tool_result = 'wrote', fn = unstreamed }, reply = 'Written.' },
        { when = { user = 'json', fn = unstreamed }, reply = { write = { path = 'j.txt', content = 'j\n' } } },
      })
      local t = turn({ prompt = 'json please' })
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('Written.', t.result.text)
      assert.equals('j\n', H.read(wt .. '/j.txt'))
    end)

    it('paths outside the worktree are refused and the model receives the refusal', function()
      H.write(base .. '/outside.txt', 'secret\n')
      H.sh("ln -s '" .. base .. "' '" .. wt .. "/link'")
      start({
        { when = { tool_result = '.' }, reply = 'Understood.' },
        { when = { user = 'escape' }, reply = { tool_calls = {
          { name = 'read', input = { path = '../../etc/passwd' } },
          { name = 'read', input = { path = '/etc/passwd' } },
          { name = 'read', input = { path = 'link/outside.txt' } },
          { name = 'write', input = { path = 'link/outside.txt', content = 'pwned' } },
          { name = 'write', input = { path = '../t2/planted.txt', content = 'pwned' } },
        } } },
      })
      local t = turn({ prompt = 'escape the worktree' })
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('secret\n', H.read(base .. '/outside.txt'))
      assert.is_nil(H.read(base .. '/repo/.orch/worktrees/r1/t2/planted.txt'))
      local results = srv:requests()[2].tool_results
      assert.equals(5, #results)
      for _, r in ipairs(results) do
        assert.matches('outside the worktree', r.output)
        assert.is_nil(r.output:find('root:', 1, true))
        assert.is_nil(r.output:find('secret', 1, true))
      end
      for _, ev in ipairs(C.of_type(t, 'tool_result')) do assert.is_true(ev.is_error) end
      assert.equals(5, #C.of_type(t, 'denied'))
    end)

    it('a shell call writes in the worktree but not in $HOME, /tmp or another worktree', function()
      local ok_sb
      sandbox.probe(function(ok) ok_sb = ok end)
      H.run_until(function() return ok_sb ~= nil end, 20000)
      if not ok_sb then
        if os.getenv('CI') == 'true' then error('bwrap must work under CI') end
        pending('bwrap is not usable here')
        return
      end
      local tag = 'orch-sb-' .. core.getpid()
      local targets = { os.getenv('HOME') .. '/' .. tag, '/tmp/' .. tag,
                        base .. '/repo/.orch/worktrees/r1/t2/' .. tag }
      local calls = { { name = 'shell', input = { command = 'echo ok > inside.txt' } } }
      for _, p in ipairs(targets) do
        calls[#calls + 1] = { name = 'shell', input = { command = "echo x > '" .. p .. "'" } }
      end
      start({
        { when = { tool_result = '.' }, reply = 'Tried.' },
        { when = { user = 'shell' }, reply = { tool_calls = calls } },
      })
      local t = turn({ prompt = 'use the shell', tools = 'full', scratch = base .. '/scratch/t1',
                       run = { id = 'r1', repo = base .. '/repo' } })
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('ok\n', H.read(wt .. '/inside.txt'))
      local results = srv:requests()[2].tool_results
      assert.matches('exit status 0', results[1].output)
      for i, p in ipairs(targets) do
        assert.is_nil(H.read(p), p)
        -- hidden: a read-only empty tmpfs, or not there at all
        local out = results[i + 1].output
        assert.is_truthy(out:find('Read-only file system', 1, true) or out:find('nonexistent', 1, true), out)
      end
    end)

    it('without a working bwrap, shell is off unless the role opts in to an unconfined one', function()
      start({
        { when = { tool_result = '.' }, reply = 'Ran.' },
        { when = { user = 'run' }, reply = { shell = 'echo unconfined > un.txt' } },
      })
      local saved = sandbox.BWRAP
      sandbox.BWRAP = '/nonexistent/bwrap'
      sandbox.reset()
      local ok, t = pcall(turn, { prompt = 'run it', tools = 'full' })
      local ok2, t2 = pcall(turn, { prompt = 'run it', tools = 'full', role = { unconfined_shell = true } })
      sandbox.BWRAP = saved
      sandbox.reset()
      assert(ok, t)
      assert(ok2, t2)
      local reqs = srv:requests()
      assert.is_nil(table.concat(reqs[1].tools, ','):find('shell'))
      local denied = C.of_type(t, 'denied')
      assert.equals('shell', denied[1].tool)
      assert.matches('bubblewrap', denied[1].message)
      assert.matches('shell', table.concat(reqs[3].tools, ','))
      assert.matches('unconfined', C.of_type(t2, 'notice')[1].message)
      assert.equals('unconfined\n', H.read(wt .. '/un.txt'))
    end)

    it('check (orch doctor) says whether the endpoint answers and a key is set, never the key', function()
      start({})
      local b = require('orch.backends.' .. name)
      local env = { OPENAI_BASE_URL = srv.url .. '/v1', ANTHROPIC_BASE_URL = srv.url,
                    OPENAI_API_KEY = C.KEY, ANTHROPIC_API_KEY = C.KEY }
      local r = b.check(env)
      assert.is_true(r.ok, r.message)
      assert.matches('is set', r.message)
      assert.is_nil(r.message:find(C.KEY, 1, true))
      local got
      b.check({ OPENAI_BASE_URL = 'http://127.0.0.1:1/v1', ANTHROPIC_BASE_URL = 'http://127.0.0.1:1',
                OPENAI_API_KEY = C.KEY, ANTHROPIC_API_KEY = C.KEY }, function(x) got = x end)
      assert.is_true(H.run_until(function() return got ~= nil end, 10000))
      assert.is_false(got.ok)
      assert.matches('unreachable', got.message)
      -- from an orch.async coroutine it waits on the loop
      local from_co
      require('orch.async').run(function() from_co = b.check(env) end)
      assert.is_true(H.run_until(function() return from_co ~= nil end, 10000))
      assert.is_true(from_co.ok, from_co.message)
    end)

    it('a read-only role cannot write: the model gets the refusal', function()
      start({
        { when = { tool_result = '.' }, reply = 'I see.' },
        { when = { user = 'write' }, reply = { write = { path = 'ro.txt', content = 'x' } } },
      })
      local t = turn({ prompt = 'write something', tools = 'read-only' })
      assert.is_true(t.result.ok, t.result.error)
      assert.is_nil(H.read(wt .. '/ro.txt'))
      local reqs = srv:requests()
      assert.is_nil(table.concat(reqs[1].tools, ','):find('write'))
      assert.matches('not available', reqs[2].tool_results[1].output)
    end)

    it('429 and 500 arrive as retryable errors with the server\'s message', function()
      start({ { when = { user = 'rate' }, reply = { status = 429, retry_after = 7,
                                                    message = 'slow down, scripted' } },
              { when = { user = 'boom' }, reply = { status = 500, message = 'scripted boom' } },
              { when = { user = 'overloaded' }, reply = { status = 529, message = 'scripted overload' } },
              { when = { user = 'bad' }, reply = { status = 400, message = 'scripted bad request' } } })
      local t = turn({ prompt = 'rate limit me' })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.equals(7, t.result.retry_after)
      assert.matches('slow down, scripted', t.result.error)
      assert.matches('429', t.result.error)
      local errs = C.of_type(t, 'error')
      assert.equals(1, #errs)
      assert.is_true(errs[1].retryable)
      t = turn({ prompt = 'boom' })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.matches('scripted boom', t.result.error)
      t = turn({ prompt = 'overloaded' })
      assert.is_true(t.result.retryable)
      assert.matches('529', t.result.error)
      t = turn({ prompt = 'bad' })
      assert.is_false(t.result.retryable)
      assert.matches('scripted bad request', t.result.error)
    end)

    it('a stream cut half way is an error, not a hang, and none of its tool calls ran', function()
      start({ { when = { user = 'cut' }, reply = { cut = true, text = 'Writing the file now, ' ..
                 'with a long enough preamble that the cut falls before the call.',
                 write = { path = 'cut.txt', content = 'half\n' } } } })
      local t = turn({ prompt = 'cut me off' })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.is_nil(H.read(wt .. '/cut.txt'))
      assert.equals(0, #C.of_type(t, 'tool_call'))
      start({ { when = { user = 'cut' }, reply = { cut = 'reset', write = { path = 'cut.txt', content = 'x' } } } })
      t = turn({ prompt = 'cut me off' })
      assert.is_true(t.result.retryable)
      assert.is_nil(H.read(wt .. '/cut.txt'))
    end)

    it('an error event half way through the stream is a retryable error; no call of it runs', function()
      start({ { when = { user = 'fail' }, reply = { stream_error = true, text = 'Starting the work now.',
                write = { path = 'err.txt', content = 'x' } } } })
      local t = turn({ prompt = 'fail half way' })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable, t.result.error)
      assert.matches('stream error', t.result.error)
      assert.is_nil(H.read(wt .. '/err.txt'))
      assert.equals(0, #C.of_type(t, 'tool_call'))
    end)

    it('a stream that stalls half way fails after request_timeout, its calls not run', function()
      start({ { when = { user = 'stall' }, reply = { stall = true, text = 'Writing the file now, slowly.',
                write = { path = 'stall.txt', content = 'x' } } } })
      local t = turn({ prompt = 'stall', role = { request_timeout = 1 } })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.matches('idle timeout', t.result.error)
      assert.is_nil(H.read(wt .. '/stall.txt'))
    end)

    it('a refused connection is a retryable error', function()
      start({})
      local t = turn({ prompt = 'anyone there?', role = { endpoint = {
        base_url = name == 'openai' and 'http://127.0.0.1:1/v1' or 'http://127.0.0.1:1' } } })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.matches('ECONNREFUSED', t.result.error)
    end)

    it('a request with no byte for request_timeout fails (retryable)', function()
      start({ { when = { user = 'hang' }, reply = { hang = true } } })
      local t = turn({ prompt = 'hang', role = { request_timeout = 1 } })
      assert.is_false(t.result.ok)
      assert.is_true(t.result.retryable)
      assert.matches('idle timeout', t.result.error)
    end)

    it('a follow-up continues the conversation; a resume after a crash too', function()
      start({
        { when = { tool_result = 'wrote' }, reply = 'First done.' },
        { when = { user = 'first' }, reply = { write = { path = 'one.txt', content = '1' } } },
        { when = { user = 'second' }, reply = 'Second done.' },
        { when = { user = 'carry on' }, reply = 'Resumed.' },
      })
      local t1 = turn({ prompt = 'first task' })
      assert.is_true(t1.result.ok, t1.result.error)
      local t2 = turn({ prompt = 'second task', session = t1.session })
      assert.is_true(t2.result.ok, t2.result.error)
      assert.equals('Second done.', t2.result.text)
      assert.equals(t1.result.session_id, t2.result.session_id)
      local req = srv:requests()[3]
      local texts = {}
      for _, m in ipairs(req.messages) do texts[#texts + 1] = m.role .. ':' .. (m.text or '') end
      local all = table.concat(texts, '|')
      assert.matches('first task', all, 1, true)
      assert.matches('First done.', all, 1, true)
      assert.matches('second task', all, 1, true)
      -- a crash after the prompt was stored, before any reply: the stored
      -- conversation ends with the unanswered prompt; resume carries on
      local stored
      start({ { when = { user = 'carry on' }, reply = 'Resumed.' },
              { when = { user = 'third' }, reply = { hang = true } } })
      local h = require('orch.backends.' .. name).start({
        cwd = wt, tools = 'edit', prompt = 'third task', session = t2.session, model = 'm',
        env = { OPENAI_BASE_URL = srv.url .. '/v1', ANTHROPIC_BASE_URL = srv.url,
                OPENAI_API_KEY = C.KEY, ANTHROPIC_API_KEY = C.KEY },
        emit = function(ev) if ev.type == 'session' then stored = ev end end,
        on_done = function() end })
      assert.is_true(H.run_until(function() return #srv:requests() == 1 end, 10000))
      h.cancel(0)
      H.run_until(function() return false end, 50)
      local t3 = turn({ prompt = 'you were interrupted, carry on', resume = true,
                        session = { id = stored.session_id, backend = name, data = stored.data } })
      assert.is_true(t3.result.ok, t3.result.error)
      assert.equals('Resumed.', t3.result.text)
      assert.equals(t1.result.session_id, t3.result.session_id)
      local last = srv:requests()[2]
      assert.matches('third task', last.last_user, 1, true)
      assert.matches('carry on', last.last_user, 1, true)
      assert.matches('second task', last.all_text, 1, true)
    end)

    it('the turn limit ends a turn that keeps calling tools', function()
      start({ { reply = { tool_call = { name = 'list', input = { path = '.' } } } } })
      local t = turn({ prompt = 'loop forever', role = { limits = { turns = 3 } } })
      assert.is_false(t.result.ok)
      assert.equals('turns', t.result.limit)
      assert.equals(3, #srv:requests())
    end)

    it('kill SIGSTOP pauses the turn between steps, SIGCONT continues it', function()
      start({
        { when = { tool_result = '.' }, reply = 'Listed.' },
        { when = { user = 'list' }, reply = { tool_call = { name = 'list', input = { path = '.' } } } },
      })
      local h
      local t = turn({ prompt = 'list the files', on_event = function(ev, tt)
        if ev.type == 'tool_call' then
          assert.is_true(tt.handle.kill('SIGSTOP'))
          h = tt.handle
          core.timer(300, function()
            tt.requests_while_paused = #srv:requests()
            h.kill('SIGCONT')
          end)
        end
      end })
      assert.truthy(h)
      assert.equals(1, t.requests_while_paused)
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('Listed.', t.result.text)
    end)

    it('ask_orchestrator suspends the turn until the answer comes', function()
      start({
        { when = { tool_result = 'tabs' }, reply = 'Using tabs.' },
        { when = { user = 'indent' }, reply = { tool_call = { name = 'ask_orchestrator',
          input = { question = 'tabs or spaces?' } } } },
      })
      local asked
      local t = turn({ prompt = 'indent the file', tools = 'read-only', ask = function(q, cb)
        asked = q
        core.timer(100, function() cb('tabs, always') end)
      end })
      assert.equals('tabs or spaces?', asked)
      assert.is_true(t.result.ok, t.result.error)
      assert.equals('Using tabs.', t.result.text)
      assert.equals(1, #C.of_type(t, 'question'))
    end)

    it('the API key is never in an event, a log line, a result or an error', function()
      start({
        { when = { user = 'leak' }, reply = { status = 401,
          message = 'invalid x-api-key ' .. C.KEY .. ' (scripted)' } },
        { when = { tool_result = '.' }, reply = 'ok' },
        { when = { user = 'env' }, reply = { tool_call = { name = 'read', input = { path = 'key.txt' } } } },
      })
      local t = turn({ prompt = 'leak it' })
      assert.is_false(t.result.ok)
      assert.is_false(t.result.retryable)
      assert.matches('scripted', t.result.error)
      local out = C.all_output(t)
      assert.is_nil(out:find(C.KEY, 1, true))
      H.write(wt .. '/key.txt', 'the key is ' .. C.KEY .. '\n')
      t = turn({ prompt = 'env please' })
      assert.is_nil(C.all_output(t):find(C.KEY, 1, true))
      local reqs = srv:requests()
      assert.matches('[api key]', reqs[#reqs].tool_results[1].output, 1, true)
    end)
  end)
end

-- A one-task `orch run --plan` whose model writes a file through backend
-- `name`: the file is in the task's branch and the integration branch;
-- session, usage and cost in `orch status --json`; no key in the db, the
-- logs or any file left under the repo. model: a model of the price table.
function C.run_case(name, model, B)
  local T = require('orch.testing')
  local it, after_each = B.it, B.after_each

  local repo, srv
  after_each(function()
    if srv then srv:stop() srv = nil end
    if repo then repo:rm() repo = nil end
  end)

  it('orch run --plan: the file lands in the task branch and the integration branch', function()
    srv = T.server({
      { when = { tool_result = 'wrote' }, reply = { text = 'Done.', usage = { input_tokens = 1000,
        output_tokens = 100 } } },
      { when = { user = 'create (%S+)' }, reply = { write = { path = '{{1}}', content = 'made by ' .. name .. '\n' },
        usage = { input_tokens = 2000, output_tokens = 50 } } },
    })
    repo = T.repo({ ['README.md'] = '# demo\n' })
    local r = T.run({ repo = repo, server = srv, backend = name, timeout = 120000,
      plan = { goal = 'a file', tasks = { { id = 'make', role = 'coder', backend = name, model = model,
        prompt = 'create made.txt' } } } })
    assert.equals(0, r.code, r.err)
    local task = r:task('make')
    assert.equals('done', task.status)
    assert.equals('made by ' .. name .. '\n', repo:file('made.txt', task.branch))
    assert.equals('made by ' .. name .. '\n', r:file('made.txt'))
    assert.matches('^' .. name .. '%-', task.session_id)
    assert.equals(3000, task.usage.input_tokens)
    assert.equals(150, task.usage.output_tokens)
    assert.is_true(type(task.cost_usd) == 'number' and task.cost_usd > 0, tostring(task.cost_usd))
    -- the dummy key reached the server's header only: not the db, logs or files
    local out = T.sh(('grep -rl %s %s'):format(T.quote(T.DUMMY_KEY), T.quote(repo.dir)))
    assert.equals('', out)
    assert.is_nil((r.out .. r.err):find(T.DUMMY_KEY, 1, true))
  end)

  it('orch killed -9 in the middle of a turn: orch resume continues the same conversation', function()
    srv = T.server({
      { when = { tool_result = 'wrote' }, reply = 'Done after the restart.' },
      { when = { user = 'carry on' }, reply = { write = { path = 'resumed.txt', content = 'after\n' } } },
      { when = { user = 'create' }, reply = { hang = true } },
    })
    repo = T.repo({ ['README.md'] = '# demo\n' })
    local plan = repo.dir .. '/.git/plan.json'
    local f = assert(io.open(plan, 'wb'))
    f:write(cjson.encode({ goal = 'g', tasks = { { id = 'make', role = 'coder', backend = name,
      model = model, prompt = 'create resumed.txt' } } }))
    f:close()
    local env = T.env_for(srv, { ORCH_BACKEND = name })
    local exited = false
    local p = assert(core.spawn({ argv = { T.orch_bin(), 'run', '--plan', plan, '--repo', repo.dir,
      '--no-tui', '--yes' }, cwd = repo.dir, env = env, on_exit = function() exited = true end }))
    assert.is_true(T.wait(function() return #srv:requests() >= 1 end, 60000), 'no request')
    p:kill('SIGKILL')
    assert.is_true(T.wait(function() return exited end, 10000))
    local first = srv:requests()[1]
    local r = T.spawn({ T.orch_bin(), 'resume', '--repo', repo.dir, '--no-tui', '--yes' },
                      { cwd = repo.dir, env = env, timeout = 120000 })
    assert.equals(0, r.code, r.err)
    local reqs = srv:requests()
    assert.matches('create resumed.txt', reqs[2].last_user, 1, true)
    assert.matches('carry on', reqs[2].last_user)
    assert.equals(first.model, reqs[2].model)
    local st = T.spawn({ T.orch_bin(), 'status', '--json', '--repo', repo.dir }, { cwd = repo.dir })
    local status = cjson.decode(st.out)
    local task = status.tasks[1]
    assert.equals('done', task.status)
    assert.equals('after\n', repo:file('resumed.txt', task.branch))
    -- the session id of the first (killed) turn is the one that finished
    assert.matches('^' .. name .. '%-', task.session_id)
    -- every session event of the task (both runs) names that one id
    local out = T.sh(('sqlite3 %s "SELECT payload FROM events WHERE kind = \'agent\'"')
      :format(T.quote(repo.dir .. '/.orch/orch.db')))
    local ids, n = {}, 0
    for sid in out:gmatch('"session_id":"(' .. name .. '%-%x+)"') do
      if not ids[sid] then n = n + 1 end
      ids[sid] = true
    end
    assert.is_true(ids[task.session_id])
    assert.equals(1, n)
  end)
end

return C
