-- The scripted model server against the real CLIs (claude, codex), run
-- directly: the scripted model makes each create a file with its own tool
-- and then answer in text; a second turn (--resume / exec resume) shows the
-- server the first one. Under CI=true a missing binary fails the test;
-- elsewhere the test is reported pending with the reason.
local core = require('orch.core')
local H = require('spec.helpers')
local agents = require('orch.testing.agents')
local json = require('orch.testing.json')
local ms = require('orch.testing.modelserver')

local CI = os.getenv('CI') == 'true'

local function need(name)
  local path, err = agents.find(name)
  if not path then
    if CI then error(err) end
    pending(err)
  end
  return path
end

-- Runs argv in cwd with env, stdin /dev/null; returns the result of
-- H.spawn_wait plus the decoded JSON lines of stdout.
local function run(argv, cwd, env)
  local r = H.spawn_wait({ 'sh', '-c', 'exec "$@" < /dev/null', 'sh', unpack(argv) },
                         { cwd = cwd, env = env, timeout = 120000 })
  r.events = {}
  for _, l in ipairs(r.stdout) do
    local ev = json.decode(l)
    if type(ev) == 'table' then r.events[#r.events + 1] = ev end
  end
  return r
end

local function find_event(events, pred)
  for _, ev in ipairs(events) do if pred(ev) then return ev end end
end

local function has_tool_result(req, pattern)
  for _, m in ipairs(req.messages) do
    for _, t in ipairs(m.tool_results) do
      if (t.output or ''):find(pattern) then return true end
    end
  end
  return false
end

local function has_call(req, name)
  for _, m in ipairs(req.messages) do
    for _, c in ipairs(m.tool_calls) do if c.name == name then return true end end
  end
  return false
end

-- The scenario both CLIs share: a tool result gets a text answer; a prompt
-- "create NAME" writes NAME through the client's own tool.
local SCENARIO = {
  { when = { tool_result = '.' }, reply = 'Done: the file is written.' },
  { when = { user = 'create (%S+)' },
    reply = { write = { path = '{{1}}', content = 'written by the scripted model\n' } } },
}

describe('scripted model server with the real CLIs', function()
  local dir, srv

  before_each(function()
    dir = H.tmpdir()
    for _, d in ipairs({ 'home', 'tmp', 'work' }) do assert(core.mkdir_p(dir .. '/' .. d)) end
    srv = assert(ms.start({ scenario = SCENARIO }))
  end)

  after_each(function()
    if srv then srv:stop() end
    H.rm(dir)
  end)

  it('claude -p writes a file with Write, then resumes the session', function()
    local claude = need('claude')
    local env = agents.claude_env(srv, dir .. '/home', dir .. '/tmp')
    local sid = 'a1b2c3d4-0000-4000-8000-' .. ('%012d'):format(core.getpid())
    local base = { claude, '--output-format', 'stream-json', '--verbose',
                   '--permission-mode', 'acceptEdits' }
    local argv = { unpack(base) }
    for _, a in ipairs({ '--session-id', sid, '-p', 'please create first.txt' }) do argv[#argv + 1] = a end
    local r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('written by the scripted model\n', H.read(dir .. '/work/first.txt'))
    local result = find_event(r.events, function(ev) return ev.type == 'result' end)
    assert.is_false(result.is_error)
    assert.are.equal(sid, result.session_id)
    assert.are.equal('Done: the file is written.', result.result)
    assert.is_true(result.usage.input_tokens > 0 and result.usage.output_tokens > 0)
    assert.is_true(result.total_cost_usd > 0)
    local reqs = srv:requests()
    assert.are.equal(2, #reqs)
    assert.are.equal('please create first.txt', reqs[1].last_user)
    assert.are.equal(dir .. '/work', reqs[1].cwd)
    assert.are.equal('tool', reqs[2].last)
    assert.matches('first%.txt', reqs[2].tool_results[1].output)
    assert.is_false(reqs[2].tool_results[1].is_error)

    argv = { unpack(base) }
    for _, a in ipairs({ '--resume', sid, '-p', 'now create second.txt' }) do argv[#argv + 1] = a end
    r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('written by the scripted model\n', H.read(dir .. '/work/second.txt'))
    reqs = srv:requests()
    assert.are.equal(4, #reqs)
    -- the resumed request carries the whole first turn: its prompt, the
    -- Write call, its result and the final answer (kept apart: fresh ids)
    local turn2 = reqs[3]
    assert.are.equal('now create second.txt', turn2.last_user)
    assert.matches('please create first%.txt', turn2.all_text)
    assert.is_true(has_call(turn2, 'Write'))
    assert.is_true(has_tool_result(turn2, 'first%.txt'))
    assert.matches('Done: the file is written%.', turn2.all_text)
    assert.is_true(has_tool_result(reqs[4], 'second%.txt'))
  end)

  it('codex exec writes a file with apply_patch, then exec resume continues the thread', function()
    local codex = need('codex')
    local env = agents.codex_env(srv, dir .. '/codex', dir .. '/home', dir .. '/tmp')
    local base = { codex, 'exec', '--json', '--skip-git-repo-check', '--sandbox', 'workspace-write' }
    local argv = { unpack(base) }
    argv[#argv + 1] = 'please create first.txt'
    local r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('written by the scripted model\n', H.read(dir .. '/work/first.txt'))
    local started = find_event(r.events, function(ev) return ev.type == 'thread.started' end)
    local completed = find_event(r.events, function(ev) return ev.type == 'turn.completed' end)
    assert.is_true(completed.usage.input_tokens > 0 and completed.usage.output_tokens > 0)
    local msg = find_event(r.events, function(ev)
      return ev.type == 'item.completed' and ev.item.type == 'agent_message'
    end)
    assert.are.equal('Done: the file is written.', msg.item.text)
    assert.is_not_nil(find_event(r.events, function(ev)
      return ev.type == 'item.completed' and ev.item.type == 'file_change'
    end))
    local reqs = srv:requests()
    assert.are.equal(2, #reqs)
    assert.are.equal('responses', reqs[1].protocol)
    assert.are.equal('please create first.txt', reqs[1].last_user)
    assert.are.equal(dir .. '/work', reqs[1].cwd)
    assert.are.equal('apply_patch', reqs[1].reply.tool_calls[1].name)
    assert.are.equal('tool', reqs[2].last)
    assert.matches('first%.txt', reqs[2].tool_results[1].output)

    argv = { unpack(base) }
    for _, a in ipairs({ 'resume', started.thread_id, 'now create second.txt' }) do argv[#argv + 1] = a end
    r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('written by the scripted model\n', H.read(dir .. '/work/second.txt'))
    reqs = srv:requests()
    assert.are.equal(4, #reqs)
    local turn2 = reqs[3]
    assert.are.equal('now create second.txt', turn2.last_user)
    assert.matches('please create first%.txt', turn2.all_text)
    assert.is_true(has_call(turn2, 'apply_patch'))
    assert.is_true(has_tool_result(turn2, 'first%.txt'))
    assert.is_true(has_tool_result(reqs[4], 'second%.txt'))
  end)

  it('codex with a model it does not know writes and edits through exec_command', function()
    local codex = need('codex')
    srv:stop()
    srv = assert(ms.start({ scenario = {
      { when = { tool_result = '.', user = 'create' }, reply = 'created' },
      { when = { tool_result = '.', user = 'change' }, reply = 'changed' },
      { when = { user = 'create (%S+)' }, reply = { write = { path = 'sub/{{1}}', content = 'one & two\n' } } },
      { when = { user = 'change (%S+)' }, reply = { edit = { path = 'sub/{{1}}', old = '& two', new = "& 'three'" } } },
    } }))
    local env = agents.codex_env(srv, dir .. '/codex', dir .. '/home', dir .. '/tmp', 'gpt-5-codex')
    local base = { codex, 'exec', '--json', '--skip-git-repo-check', '--sandbox', 'workspace-write' }
    local argv = { unpack(base) }
    argv[#argv + 1] = 'create f.txt'
    local r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('one & two\n', H.read(dir .. '/work/sub/f.txt'))
    local reqs = srv:requests()
    local offered = table.concat(reqs[1].tools, ',')
    assert.is_nil(offered:find('apply_patch'))
    assert.are.equal('exec_command', reqs[1].reply.tool_calls[1].name)
    assert.is_not_nil(find_event(r.events, function(ev)
      return ev.type == 'item.completed' and ev.item.type == 'command_execution' and ev.item.exit_code == 0
    end))
    argv = { unpack(base) }
    argv[#argv + 1] = 'change f.txt'
    r = run(argv, dir .. '/work', env)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("one & 'three'\n", H.read(dir .. '/work/sub/f.txt'))
  end)

  describe('faults', function()
    local function fault_server(fault, times)
      srv:stop()
      srv = assert(ms.start({ scenario = {
        { when = { user = 'hello' }, reply = fault, times = times },
        { reply = 'fine after the fault' } } }))
    end

    it('claude retries a 429 that carries retry-after, and reports a cut stream as an API error', function()
      local claude = need('claude')
      fault_server({ status = 429, retry_after = 1 }, 1)
      local argv = { claude, '-p', 'hello', '--output-format', 'stream-json', '--verbose' }
      local r = run(argv, dir .. '/work', agents.claude_env(srv, dir .. '/home', dir .. '/tmp'))
      assert.are.equal(0, r.code, r.err)
      local retry = find_event(r.events, function(ev) return ev.subtype == 'api_retry' end)
      assert.are.equal(429, retry.error_status)
      assert.are.equal('rate_limit', retry.error)
      local result = find_event(r.events, function(ev) return ev.type == 'result' end)
      assert.are.equal('fine after the fault', result.result)
      assert.are.equal(2, #srv:requests())

      fault_server({ text = 'a reply that is cut half way through', cut = true }, 1000)
      local env = agents.claude_env(srv, dir .. '/home', dir .. '/tmp')
      env.CLAUDE_CODE_MAX_RETRIES = '0'
      r = run(argv, dir .. '/work', env)
      assert.are.equal(1, r.code)
      result = find_event(r.events, function(ev) return ev.type == 'result' end)
      assert.is_true(result.is_error)
      assert.are.equal('api_error', result.terminal_reason)
      assert.matches('Connection to the API was lost', result.result)
    end)

    it('codex reconnects after a 429, and fails the turn on a cut stream', function()
      local codex = need('codex')
      fault_server({ status = 429, retry_after = 1 }, 1)
      local env = agents.codex_env(srv, dir .. '/codex', dir .. '/home', dir .. '/tmp')
      local argv = { codex, 'exec', '--json', '--skip-git-repo-check', 'hello' }
      local r = run(argv, dir .. '/work', env)
      assert.are.equal(0, r.code, r.err)
      local e = find_event(r.events, function(ev) return ev.type == 'error' end)
      assert.matches('429', e.message)
      local msg = find_event(r.events, function(ev)
        return ev.type == 'item.completed' and ev.item.type == 'agent_message'
      end)
      assert.are.equal('fine after the fault', msg.item.text)

      fault_server({ text = 'a reply that is cut half way through', cut = true }, 1000)
      env = agents.codex_env(srv, dir .. '/codex', dir .. '/home', dir .. '/tmp')
      local f = assert(io.open(dir .. '/codex/config.toml', 'a'))
      f:write('request_max_retries = 0\nstream_max_retries = 0\n')
      f:close()
      r = run(argv, dir .. '/work', env)
      assert.are.equal(1, r.code)
      local failed = find_event(r.events, function(ev) return ev.type == 'turn.failed' end)
      assert.matches('stream disconnected before completion', failed.error.message)
      assert.are.equal(1, #srv:requests())
    end)
  end)
end)
