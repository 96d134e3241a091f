-- The claude backend: argument building from a role, stream-json parsing on
-- output recorded from claude 2.1.332, whole turns through fake claude
-- scripts (garbage output, a missing binary), then end-to-end runs of the
-- real claude against the scripted model server (see the e2e block).
local cjson = require('cjson')
local H = require('spec.helpers')
local claude = require('orch.backends.claude')
local cli = require('orch.backends.cli')
local A = require('spec.cli_agents')
local ms = require('orch.testing.modelserver')

local core = require('orch.core')
local FIX = core.realpath(H.SRC) .. '/spec/fixtures/backends/'

local function lines_of(path)
  local out = {}
  for l in assert(io.open(path, 'rb')):lines() do out[#out + 1] = l end
  return out
end

-- Parses a recorded stream; returns the events and the parser state.
local function parse_file(name, st)
  st = st or { session_id = 'x', denied = {} }
  local evs = {}
  for _, l in ipairs(lines_of(FIX .. name)) do
    claude.parse(cjson.decode(l), st, function(e) evs[#evs + 1] = e end)
  end
  return evs, st
end

local function of_type(evs, t)
  local out = {}
  for _, e in ipairs(evs) do if e.type == t then out[#out + 1] = e end end
  return out
end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
end

-- Runs one turn of the backend to its end: res, events, log lines.
local function drive(ctx)
  local evs, log, res = {}, {}, nil
  ctx.emit = function(e) evs[#evs + 1] = e end
  ctx.on_line = function(s, l) log[#log + 1] = { s, l } end
  ctx.on_done = function(r) res = r end
  local h, err = (ctx.fn or claude.start)(ctx)
  if not h then return nil, evs, log, err end
  assert(H.run_until(function() return res ~= nil end, 60000), 'the turn did not end')
  return res, evs, log
end

describe('claude backend', function()
  describe('arguments', function()
    local function args(ctx, mode)
      ctx.prompt = ctx.prompt or 'do it'
      return (claude.build_args(ctx, '11111111-2222-4333-8444-555555555555', mode or 'first'))
    end

    it('starts a session with --session-id and stream-json, the prompt after --', function()
      local a = args({ role = { tools = 'edit' }, prompt = '-starts with a dash' })
      assert.same({ '-p', '--output-format', 'stream-json', '--verbose' }, { unpack(a, 1, 4) })
      local i = index_of(a, '--session-id')
      assert.equals('11111111-2222-4333-8444-555555555555', a[i + 1])
      assert.is_nil(index_of(a, '--resume'))
      assert.equals('--', a[#a - 1])
      assert.equals('-starts with a dash', a[#a])
    end)

    it('continues with --resume', function()
      local a = args({ role = {} }, 'resume')
      assert.equals('11111111-2222-4333-8444-555555555555', a[index_of(a, '--resume') + 1])
      assert.is_nil(index_of(a, '--session-id'))
    end)

    it('maps the tool sets to permission modes', function()
      local a = args({ role = { tools = 'read-only' } })
      assert.equals('plan', a[index_of(a, '--permission-mode') + 1])
      assert.is_nil(index_of(a, '--allowedTools'))
      a = args({ role = { tools = 'edit' } })
      assert.equals('acceptEdits', a[index_of(a, '--permission-mode') + 1])
      a = args({ role = { tools = 'full' } })
      assert.equals('acceptEdits', a[index_of(a, '--permission-mode') + 1])
      assert.equals('Bash', a[index_of(a, '--allowedTools') + 1])
      a = args({ role = { tools = { 'Read', 'Grep' } } })
      assert.equals('Read,Grep', a[index_of(a, '--tools') + 1])
      -- the task's (ctx) tool set wins over the role's
      a = args({ role = { tools = 'full' }, tools = 'read-only' })
      assert.equals('plan', a[index_of(a, '--permission-mode') + 1])
    end)

    it('takes model, appended system prompt, turns and budget from the role', function()
      local a = args({ role = { model = 'sonnet', system_prompt = 'be a reviewer',
                                limits = { turns = 7, budget_usd = 0.5, time = 60 } } })
      assert.equals('sonnet', a[index_of(a, '--model') + 1])
      assert.equals('be a reviewer', a[index_of(a, '--append-system-prompt') + 1])
      assert.equals('7', a[index_of(a, '--max-turns') + 1])
      assert.equals('0.5', a[index_of(a, '--max-budget-usd') + 1])
      -- ctx.model (a task's override) wins
      a = args({ role = { model = 'sonnet' }, model = 'opus' })
      assert.equals('opus', a[index_of(a, '--model') + 1])
      -- the role's extra arguments come before the prompt
      a = args({ role = { extra_args = { '--effort', 'low' } } })
      assert.same({ '--effort', 'low', '--', 'do it' }, { unpack(a, #a - 3) })
    end)

    it('configures only orch\'s MCP server, with ask_orchestrator allowed', function()
      local a = args({ role = { tools = 'full' }, mcp = { argv = { '/bin/orch', 'mcp' },
        env = { ORCH_CONTROL = '/tmp/s.sock', ORCH_TASK = 't' } } })
      assert.truthy(index_of(a, '--strict-mcp-config'))
      local cfg = cjson.decode(a[index_of(a, '--mcp-config') + 1])
      local s = cfg.mcpServers.orch
      assert.equals('stdio', s.type)
      assert.equals('/bin/orch', s.command)
      assert.same({ 'mcp' }, s.args)
      assert.equals('/tmp/s.sock', s.env.ORCH_CONTROL)
      assert.equals('Bash,mcp__orch__ask_orchestrator', a[index_of(a, '--allowedTools') + 1])
      -- without ctx.mcp: still no servers from ~/.claude.json or .mcp.json
      a = args({ role = {} })
      assert.truthy(index_of(a, '--strict-mcp-config'))
      assert.is_nil(index_of(a, '--mcp-config'))
    end)

    it('passes a prompt too long for one argument on stdin', function()
      local big = ('x'):rep(cli.ARG_PROMPT_MAX + 1)
      local a, input = claude.build_args({ role = {}, prompt = big }, 'id', 'first')
      assert.equals(big, input)
      assert.is_nil(index_of(a, big))
      assert.is_nil(index_of(a, '--'))
    end)

    it('sets a private TMPDIR, no tool search, MCP timeouts; the key by name only', function()
      local env = claude.build_env({ env = { ORCH_TASK = 't', SECRET_NAME = 'sk-abc' },
        role = { endpoint = { base_url = 'http://127.0.0.1:9', api_key_env = 'SECRET_NAME' } } },
        '/scratch/tmp')
      assert.equals('/scratch/tmp', env.TMPDIR)
      assert.equals('false', env.ENABLE_TOOL_SEARCH)
      assert.equals('http://127.0.0.1:9', env.ANTHROPIC_BASE_URL)
      assert.equals('sk-abc', env.ANTHROPIC_API_KEY) -- in the child's environment only
      assert.equals('t', env.ORCH_TASK)
      assert.truthy(env.MCP_TIMEOUT)
      -- a user's own MCP_TIMEOUT is kept
      env = claude.build_env({ env = { MCP_TIMEOUT = '99' }, role = {} }, '/t')
      assert.equals('99', env.MCP_TIMEOUT)
    end)

    it('removes a turn\'s TMPDIR without following links out of it', function()
      local dir = H.tmpdir()
      core.mkdir_p(dir .. '/t/a/b')
      core.mkdir_p(dir .. '/outside')
      H.write(dir .. '/outside/keep', 'x')
      H.write(dir .. '/t/a/b/f', 'y')
      os.execute("ln -s '" .. dir .. "/outside' '" .. dir .. "/t/link'")
      os.execute("ln -s '" .. dir .. "/outside/keep' '" .. dir .. "/t/a/flink'")
      cli.remove_tree(dir .. '/t')
      assert.is_nil(core.lstat(dir .. '/t'))
      assert.equals('x', H.read(dir .. '/outside/keep'))
      H.rm(dir)
    end)

    it('makes version-4 UUIDs', function()
      local seen = {}
      for _ = 1, 50 do
        local u = cli.uuid()
        assert.truthy(u:match('^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x+$'), u)
        assert.equals(36, #u)
        assert.is_nil(seen[u])
        seen[u] = true
      end
    end)
  end)

  describe('stream-json (recorded from claude 2.1.332)', function()
    it('turns a turn that writes a file into normalised events', function()
      local evs, st = parse_file('claude_write.jsonl')
      local call = of_type(evs, 'tool_call')[1]
      assert.equals('Write', call.tool)
      assert.equals('toolu_1', call.id)
      assert.equals('hello\n', call.input.content)
      local tr = of_type(evs, 'tool_result')[1]
      assert.equals('toolu_1', tr.id)
      assert.is_false(tr.is_error)
      assert.truthy(tr.output:find('File created', 1, true))
      assert.equals('All done.', of_type(evs, 'text')[1].text)
      local u = of_type(evs, 'usage')[1]
      assert.same({ input_tokens = 200, output_tokens = 40, cache_read_tokens = 14,
                    cache_write_tokens = 6 }, u.usage)
      assert.is_true(u.cost_usd > 0)
      assert.same({ type = 'result', text = 'All done.', ok = true }, of_type(evs, 'result')[1])
      assert.equals(0, #of_type(evs, 'error'))
      -- the init event's id differs from the one the state started with
      assert.equals('11111111-2222-4333-8444-555555555555', st.session_id)
      assert.equals(st.session_id, of_type(evs, 'session')[1].session_id)
    end)

    it('reports plan mode\'s refusal once as denied, and the turn\'s own cost', function()
      local evs = parse_file('claude_plan_denied.jsonl',
        { session_id = '11111111-2222-4333-8444-555555555555', denied = {} })
      local d = of_type(evs, 'denied')
      assert.equals(1, #d) -- the system event and the result's list name the same call
      assert.equals('Write', d[1].tool)
      assert.truthy(d[1].message:find('plan mode', 1, true))
      assert.is_true(of_type(evs, 'tool_result')[1].is_error)
      assert.equals(0, #of_type(evs, 'session')) -- init names the same session: nothing new
      -- total_cost_usd covers the whole session; the usage event is this turn's
      local cost = of_type(evs, 'usage')[1].cost_usd
      assert.is_true(cost > 0.0016 and cost < 0.0017, tostring(cost))
    end)

    it('sees an ask_orchestrator call as a question', function()
      local evs = parse_file('claude_mcp_ask.jsonl')
      local q = of_type(evs, 'question')
      assert.equals(1, #q)
      assert.equals('what colour?', q[1].question)
      assert.equals('mcp__orch__ask_orchestrator', of_type(evs, 'tool_call')[1].tool)
    end)

    it('classifies API errors: 500 and 429 retryable, 400 not', function()
      local evs = parse_file('claude_api_500.jsonl')
      local e = of_type(evs, 'error')[1]
      assert.is_true(e.retryable)
      assert.truthy(e.message:find('500', 1, true))
      assert.equals(0, #of_type(evs, 'result'))
      e = of_type(parse_file('claude_api_400.jsonl'), 'error')[1]
      assert.is_false(e.retryable)
      assert.is_true(claude.retryable({ api_error_status = 429 }))
      assert.is_true(claude.retryable({ api_error_status = 529 }))
      assert.is_false(claude.retryable({ subtype = 'error_max_turns', is_error = true }))
      assert.is_false(claude.retryable({ subtype = 'error_max_budget_usd', is_error = true }))
    end)

    it('ignores what it does not know', function()
      local evs = {}
      local st = { session_id = 's', denied = {} }
      for _, o in ipairs({ { type = 'stream_event' }, { type = 'system', subtype = 'api_retry' },
                           { type = 'assistant', message = { content = 'not a list' } },
                           { type = 'user' }, { type = 'result', usage = 5 } }) do
        claude.parse(o, st, function(e) evs[#evs + 1] = e end)
      end
      assert.equals(1, #evs) -- the result, with no usage worth reporting
      assert.equals('result', evs[1].type)
    end)
  end)

  describe('turns through a fake claude', function()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() H.rm(dir) end)

    local function script(body)
      local path = dir .. '/claude'
      H.write(path, '#!/bin/sh\n' .. body .. '\n')
      os.execute("chmod +x '" .. path .. "'")
      return path
    end

    local function ctx(bin, extra)
      local c = { task = { id = 't1', prompt = 'go' }, attempt = 1, run = { id = 'r1' },
                  role = { tools = 'edit' }, prompt = 'go', cwd = dir,
                  env = { ORCH_CLAUDE_BIN = bin }, scratch = dir .. '/scratch' }
      for k, v in pairs(extra or {}) do c[k] = v end
      return c
    end

    it('reports the session before claude starts and gives the arguments it built', function()
      local bin = script('printf "%s\\n" "$@" > "$(dirname "$0")/argv"\n' ..
        'echo "TMPDIR=$TMPDIR" > "$(dirname "$0")/env"\n' ..
        'cat "' .. FIX .. 'claude_write.jsonl"')
      local res, evs = drive(ctx(bin))
      assert.is_true(res.ok, res.error)
      assert.equals('session', evs[1].type)
      local argv = H.read(dir .. '/argv')
      assert.truthy(argv:find('--session-id\n' .. evs[1].session_id, 1, true))
      assert.equals('All done.', res.text)
      assert.is_true(res.cost_usd > 0)
      assert.equals(200, res.usage.input_tokens)
      -- the private TMPDIR was under the scratch and is gone
      local tmp = H.read(dir .. '/env'):match('TMPDIR=(%S+)')
      assert.truthy(tmp:find(dir .. '/scratch/', 1, true))
      assert.is_nil(H.read(tmp .. '/.'))
      assert.equals('', (H.sh("ls -A '" .. dir .. "/scratch'")))
    end)

    it('survives garbage: invalid JSON, a 20 MB line, invalid UTF-8', function()
      local bin = script(
        'echo "not json at all"\n' ..
        'echo \'{"type": "assistant", "message": \'\n' ..
        'head -c 20000000 /dev/zero | tr "\\0" "x"; echo\n' ..
        'printf \'{"type":"assistant","message":{"content":[{"type":"text","text":"caf\\351 \\377"}]}}\\n\'\n' ..
        'printf \'\\377\\376\\375\\n\'\n' ..
        'printf \'[1,2,3]\\n\'\n' ..
        'tail -n 1 "' .. FIX .. 'claude_write.jsonl"')
      local res, evs, log = drive(ctx(bin))
      assert.is_true(res.ok, res.error)
      assert.equals('All done.', res.text)
      -- the invalid UTF-8 text still came through as an event
      local texts = of_type(evs, 'text')
      assert.truthy(texts[1].text:find('caf', 1, true))
      -- everything was logged, the long line cut to a bound
      local longest, notes = 0, 0
      for _, l in ipairs(log) do
        longest = math.max(longest, #l[2])
        if l[2]:find('not a JSON object', 1, true) then notes = notes + 1 end
      end
      assert.is_true(longest < cli.MAX_LOG_LINE + 100)
      assert.is_true(longest > 1000)
      assert.is_true(notes >= 1)
    end)

    it('fails a turn whose claude exits at once, with what it said', function()
      local bin = script('echo "claude: something is badly wrong" >&2; exit 3')
      local res = drive(ctx(bin))
      assert.is_false(res.ok)
      assert.equals(3, res.exit_code)
      assert.truthy(res.error:find('exited with status 3 before writing any event', 1, true), res.error)
      assert.truthy(res.error:find('badly wrong', 1, true))
      assert.truthy(res.error:find(bin, 1, true))
      assert.truthy(res.error:find('npm i -g @anthropic-ai/claude-code', 1, true))
    end)

    it('stops a turn at the role\'s time limit', function()
      local c = ctx(script('sleep 30'))
      c.role.limits = { time = 0.3 }
      local res = drive(c)
      assert.is_false(res.ok)
      assert.equals('time', res.limit)
      assert.is_false(res.retryable)
      assert.truthy(res.error:find("time limit of 0.3 s", 1, true), res.error)
    end)

    it('reports the role\'s turn and budget limits as such', function()
      local res = drive(ctx(script('echo \'{"type":"result","subtype":"error_max_turns","is_error":true,' ..
        '"errors":["Reached maximum number of turns (1)"]}\'; exit 1')))
      assert.is_false(res.ok)
      assert.equals('turns', res.limit)
      assert.truthy(res.error:find('limit of turns', 1, true))
    end)

    it('says which binary is missing and how to install it', function()
      local _, _, _, err = drive(ctx(nil, { env = { ORCH_CLAUDE_BIN = false,
        PATH = dir .. '/nothing-here', XDG_CACHE_HOME = dir } }))
      assert.truthy(err:find('claude not found', 1, true), err)
      assert.truthy(err:find('npm i -g @anthropic-ai/claude-code', 1, true))
      _, _, _, err = drive(ctx(dir .. '/no-such-claude'))
      assert.truthy(err:find('ORCH_CLAUDE_BIN names ' .. dir .. '/no-such-claude', 1, true), err)
    end)

    it('resume: a conversation claude never recorded starts afresh under the same id', function()
      local bin = script(
        'case "$*" in *--resume*) echo \'{"type":"result","subtype":"error_during_execution",' ..
        '"is_error":true,"errors":["No conversation found with session ID: S"]}\'; exit 1;; esac\n' ..
        'printf "%s\\n" "$@" > "$(dirname "$0")/argv"\n' ..
        'tail -n 1 "' .. FIX .. 'claude_write.jsonl"')
      local c = ctx(bin, { session = { id = 'aaaaaaaa-2222-4333-8444-555555555555' }, resume = true,
                           prompt = 'you were interrupted, carry on', fn = claude.resume })
      c.task.prompt = 'the task itself'
      local res = drive(c)
      assert.is_true(res.ok, res.error)
      local argv = H.read(dir .. '/argv')
      assert.truthy(argv:find('--session-id\naaaaaaaa-2222-4333-8444-555555555555', 1, true))
      assert.truthy(argv:find('the task itself', 1, true))
    end)
  end)

  A.e2e({ describe = describe, it = it, pending = pending }, 'claude',
        'end to end: the real claude against the scripted model server', function(bin)
    local dir, srv, repo, ctl
    local SCENARIO = {
      { when = { tool_error = '.' }, reply = 'Refused: {{1}}' },
      { when = { tool_result = '.' }, reply = 'Done: {{1}}' },
      { when = { user = 'ask the orchestrator' },
        reply = { tool_calls = { { name = 'mcp__orch__ask_orchestrator',
                                   input = { question = 'which colour?' } } } } },
      { when = { user = 'create (%S+)' }, reply = { write = { path = '{{1}}', content = 'hello\n' } } },
    }
    before_each(function()
      dir = H.tmpdir()
      repo = A.repo(dir, { ['keep.txt'] = 'original\n' })
      srv = assert(ms.start({ scenario = SCENARIO }))
      ctl = A.control_server(dir, function(p) return 'blue, for ' .. p.task end)
    end)
    after_each(function()
      srv:stop()
      ctl.stop()
      H.rm(dir)
    end)

    local function ctx(o)
      local env = require('orch.testing.agents').claude_env(srv, dir .. '/home', dir .. '/tmp')
      env.ANTHROPIC_API_KEY = A.KEY
      env.ORCH_CLAUDE_BIN = bin
      env.ORCH_TASK = 't1'
      local c = { task = { id = 't1', prompt = o.prompt }, attempt = 1, run = { id = 'r1', repo = repo },
                  role = { name = o.role or 'coder', tools = o.tools or 'edit' }, prompt = o.prompt,
                  cwd = repo, env = env, scratch = dir .. '/scratch', session = o.session,
                  mcp = { argv = { core.realpath(H.ORCH), 'mcp' },
                          env = { ORCH_CONTROL = ctl.path, ORCH_TASK = 't1' } } }
      return c
    end

    it('a turn writes a file through claude\'s Write; session, usage and cost come back', function()
      local res, evs = A.drive(claude.start, ctx({ prompt = 'create hello.txt' }))
      assert.is_true(res.ok, res.error)
      assert.equals('hello\n', H.read(repo .. '/hello.txt'))
      assert.equals('session', evs[1].type)
      assert.equals(evs[1].session_id, res.session_id)
      assert.truthy(res.session_id:match('^%x+%-%x+%-4%x+%-%x+%-%x+$'))
      assert.is_true(res.usage.input_tokens > 0)
      assert.is_true(res.cost_usd > 0)
      assert.equals('Write', A.of_type(evs, 'tool_call')[1].tool)
      assert.truthy(res.text:find('Done', 1, true))
      -- the per-turn TMPDIR is gone; nothing anywhere holds the key
      assert.equals('', (H.sh("ls -A '" .. dir .. "/scratch'"):gsub('%s+$', '')))
      assert.equals('', A.files_with(A.KEY, { dir }))
    end)

    it('a follow-up continues the conversation: the first turn is in the request, its write happens', function()
      local res1 = A.drive(claude.start, ctx({ prompt = 'create one.txt' }))
      assert.is_true(res1.ok, res1.error)
      local before = #srv:requests()
      local res2 = A.drive(claude.send, ctx({ prompt = 'now create two.txt',
                                              session = { id = res1.session_id } }))
      assert.is_true(res2.ok, res2.error)
      assert.equals(res1.session_id, res2.session_id)
      assert.equals('hello\n', H.read(repo .. '/two.txt'))
      local req = srv:requests()[before + 1]
      local saw_first = false
      for _, m in ipairs(req.messages) do
        for _, c in ipairs(m.tool_calls or {}) do
          if c.name == 'Write' and tostring(c.input.file_path):find('one.txt', 1, true) then saw_first = true end
        end
      end
      assert.is_true(saw_first, 'the second turn\'s request carries the first turn')
      assert.truthy(req.all_text:find('create one.txt', 1, true))
    end)

    it('a read-only reviewer cannot write: plan mode refuses it, the file is unchanged', function()
      local res, evs = A.drive(claude.start, ctx({ prompt = 'create keep.txt', tools = 'read-only',
                                                    role = 'reviewer' }))
      assert.is_true(res.ok, res.error)
      assert.equals('original\n', H.read(repo .. '/keep.txt'))
      local d = A.of_type(evs, 'denied')
      assert.equals(1, #d)
      assert.equals('Write', d[1].tool)
      local last = srv:last()
      assert.equals('tool', last.last)
      assert.is_true(last.tool_results[1].is_error)
    end)

    it('ask_orchestrator goes through orch mcp to the run and the answer to the model', function()
      local res, evs = A.drive(claude.start, ctx({ prompt = 'ask the orchestrator' }))
      assert.is_true(res.ok, res.error)
      assert.equals('which colour?', A.of_type(evs, 'question')[1].question)
      assert.same({ task = 't1', question = 'which colour?' }, ctl.asks[1])
      local last = srv:last()
      assert.equals('blue, for t1', last.tool_results[1].output)
      assert.is_false(last.tool_results[1].is_error)
    end)

    it('a read-only reviewer may still ask (the tool says it is read-only)', function()
      local res, evs = A.drive(claude.start, ctx({ prompt = 'ask the orchestrator', tools = 'read-only' }))
      assert.is_true(res.ok, res.error)
      assert.equals(0, #A.of_type(evs, 'denied'))
      assert.equals('blue, for t1', srv:last().tool_results[1].output)
    end)
  end)

  A.e2e({ describe = describe, it = it, pending = pending }, 'claude',
        'end to end: orch run --plan with the real claude', function(bin)
    local dir, srv, repo
    local SCENARIO = {
      { name = 'hang', when = { user = 'create slow%.txt' }, reply = { hang = true }, times = 1 },
      { when = { tool_error = '.' }, reply = 'Refused: {{1}}' },
      { when = { tool_result = '.' }, reply = 'Done: {{1}}' },
      { name = 'carry-on', when = { user = 'interrupted', text = 'create slow%.txt' },
        reply = { write = { path = 'slow.txt', content = 'after the crash\n' } } },
      { when = { user = 'ask the orchestrator' },
        reply = { tool_calls = { { name = 'mcp__orch__ask_orchestrator', input = { question = 'which colour?' } } } } },
      { when = { user = 'create (%S+)' }, reply = { write = { path = '{{1}}', content = 'hello\n' } } },
    }
    before_each(function()
      dir = H.tmpdir()
      repo = A.repo(dir, { ['keep.txt'] = 'original\n' })
      core.mkdir_p(dir .. '/tmp')
      srv = assert(ms.start({ scenario = SCENARIO }))
    end)
    after_each(function()
      srv:stop()
      H.rm(dir)
    end)

    local function env(extra)
      local e = require('orch.testing.agents').claude_env(srv, dir .. '/home', dir .. '/tmp')
      e.ANTHROPIC_API_KEY = A.KEY
      e.PATH = bin:match('^(.*)/[^/]+$') .. ':' .. (os.getenv('PATH') or '/usr/bin:/bin')
      e.XDG_RUNTIME_DIR, e.ORCH_SOCKET_DIR, e.ORCH_SCRATCH_DIR = false, false, false
      e.ORCH_CLAUDE_BIN = false
      for k, v in pairs(extra or {}) do e[k] = v end
      return e
    end

    local function plan(tasks)
      H.write(dir .. '/plan.json', cjson.encode({ goal = 'e2e', tasks = tasks }))
      return dir .. '/plan.json'
    end

    local function run(tasks, extra)
      return H.orch({ 'run', '--plan', plan(tasks), '--yes', '--no-tui' },
                    { cwd = repo, env = env(extra), timeout = 180000 })
    end

    local function status()
      local r = H.orch({ 'status', '--json' }, { cwd = repo, env = env() })
      assert.equals(0, r.code, r.err)
      return cjson.decode(r.out)
    end

    local function git(args)
      return (H.sh("git -C '" .. repo .. "' " .. args))
    end

    local function sql(q)
      return (H.sh("sqlite3 '" .. repo .. "/.orch/orch.db' \"" .. q .. "\""):gsub('%s+$', ''))
    end

    local function no_key_left()
      assert.equals('', A.files_with(A.KEY, { repo, dir .. '/tmp', dir .. '/home' }))
    end

    it('a coder task writes a file: in its branch and the integration branch; session, usage, cost recorded',
      function()
        local r = run({ { id = 'hello', role = 'coder', backend = 'claude', prompt = 'create hello.txt',
                          files = { 'hello.txt' } } })
        assert.equals(0, r.code, r.err)
        local st = status()
        local t = st.tasks[1]
        assert.equals('done', t.status)
        assert.equals('hello\n', git('show orch/' .. st.run.id .. '/hello:hello.txt'))
        assert.equals('hello\n', git('show orch/' .. st.run.id .. '/integration:hello.txt'))
        assert.truthy(t.session_id:match('^%x+%-%x+%-%x+%-%x+%-%x+$'), t.session_id)
        assert.is_true(t.cost_usd > 0)
        assert.is_true(t.usage.input_tokens > 0)
        -- the same in the database
        assert.equals(t.session_id, sql("SELECT session_id FROM sessions WHERE task_id='hello'"))
        assert.equals('claude', sql("SELECT backend FROM sessions WHERE task_id='hello'"))
        assert.is_true(tonumber(sql("SELECT cost_usd FROM tasks WHERE id='hello'")) > 0)
        -- the scratch (TMPDIR, configs) is gone with the run; no key anywhere
        assert.equals('', (H.sh("find '" .. dir .. "/tmp' -name '*.scratch'"):gsub('%s+$', '')))
        no_key_left()
        -- a person can take over: the session in the real CLI
        local a = H.orch({ 'attach', st.run.id, 'hello', '--cli', '--print' }, { cwd = repo, env = env() })
        assert.equals(0, a.code, a.err)
        assert.truthy(a.out:find(bin .. ' --resume ' .. t.session_id, 1, true), a.out)
        assert.truthy(a.out:find('^cd '), a.out)
        a = H.orch({ 'attach', st.run.id, 'hello' }, { cwd = repo, env = env() })
        assert.equals(2, a.code)
        assert.truthy(a.err:find('--cli', 1, true))
      end)

    it('a task that continues another carries on its conversation: the first turn is in the request', function()
      local r = run({
        { id = 'one', role = 'coder', backend = 'claude', prompt = 'create one.txt', files = { 'one.txt' } },
        { id = 'two', role = 'coder', backend = 'claude', prompt = 'now create two.txt', files = { 'two.txt' },
          deps = { 'one' }, continues = 'one' } })
      assert.equals(0, r.code, r.err)
      local st = status()
      local by = {}
      for _, t in ipairs(st.tasks) do by[t.id] = t end
      assert.equals('done', by.two.status)
      assert.equals(by.one.session_id, by.two.session_id)
      assert.equals('hello\n', git('show orch/' .. st.run.id .. '/integration:one.txt'))
      assert.equals('hello\n', git('show orch/' .. st.run.id .. '/integration:two.txt'))
      local second
      for _, q in ipairs(srv:requests()) do
        if q.last_user and q.last_user:find('now create two.txt', 1, true) then second = second or q end
      end
      assert.truthy(second, 'the second turn reached the model')
      assert.truthy(second.all_text:find('create one.txt', 1, true))
      local saw = false
      for _, m in ipairs(second.messages) do
        for _, c in ipairs(m.tool_calls or {}) do
          if c.name == 'Write' and tostring(c.input.file_path):find('one.txt', 1, true) then saw = true end
        end
      end
      assert.is_true(saw, 'the first turn\'s write is in the second turn\'s request')
    end)

    it('ask_orchestrator goes from claude through orch mcp and the run\'s control socket to the run', function()
      local r = run({ { id = 'asker', role = 'coder', backend = 'claude', prompt = 'ask the orchestrator' } })
      assert.equals(0, r.code, r.err)
      -- the run recorded the question and its answer
      local q = sql("SELECT payload FROM events WHERE kind='question' AND payload LIKE '%answer%'")
      assert.truthy(q:find('which colour?', 1, true), q)
      local answer = require('orch.engine').NO_ANSWER -- nobody at a terminal: the agent goes on
      -- and the answer came back to the model as the tool's result
      local got
      for _, req in ipairs(srv:requests()) do
        for _, tr in ipairs(req.tool_results or {}) do got = got or tr.output end
      end
      assert.equals(answer, got)
    end)

    it('a read-only reviewer cannot write: claude refuses, the file is unchanged', function()
      local r = run({ { id = 'review', role = 'reviewer', backend = 'claude', prompt = 'create keep.txt' } })
      assert.equals(0, r.code, r.err)
      local st = status()
      assert.equals('original\n', git('show orch/' .. st.run.id .. '/integration:keep.txt'))
      assert.equals('original\n', H.read(repo .. '/keep.txt'))
      local denied = sql("SELECT count(*) FROM events WHERE kind='agent' AND payload LIKE '%\"denied\"%'")
      assert.equals('1', denied)
      no_key_left()
    end)

    it('orch killed with SIGKILL mid-turn: orch resume continues the same session and finishes', function()
      local done = false
      local out = {}
      local p = assert(core.spawn({
        argv = { H.ORCH, 'run', '--plan', plan({ { id = 'slow', role = 'coder', backend = 'claude',
          prompt = 'create slow.txt', files = { 'slow.txt' } } }), '--yes', '--no-tui' },
        cwd = repo, env = env(),
        stderr = function(l) out[#out + 1] = l end,
        on_exit = function() done = true end,
      }))
      -- the agent's turn is under way: its model request hangs
      assert(H.run_until(function()
        for _, q in ipairs(srv:requests()) do if q.rule == 'hang' then return true end end
      end, 60000), 'claude never asked the model: ' .. table.concat(out, '\n'))
      local sid = status().tasks[1].session_id
      assert.truthy(sid, 'the session id is stored before the turn ends')
      -- mid-turn: claude has recorded the turn's start in its transcript
      -- (killed before that, there is no conversation to continue, and the
      -- backend starts it afresh under the same id: see the fake-claude test)
      assert(H.run_until(function()
        local f = H.sh("cat '" .. dir .. "'/home/.claude/projects/*/" .. sid .. ".jsonl 2>/dev/null")
        return f:find('create slow.txt', 1, true) ~= nil
      end, 30000), 'claude did not record the turn')
      core.kill(p:pid(), 'SIGKILL')
      assert(H.run_until(function() return done end, 10000))
      local before = #srv:requests()
      local r = H.orch({ 'resume', '--yes', '--no-tui' }, { cwd = repo, env = env(), timeout = 180000 })
      assert.equals(0, r.code, r.err)
      local st = status()
      assert.equals('done', st.tasks[1].status)
      assert.equals(sid, st.tasks[1].session_id)
      assert.equals('after the crash\n', git('show orch/' .. st.run.id .. '/integration:slow.txt'))
      -- the resumed request carried the first turn
      local resumed = srv:requests()[before + 1]
      assert.equals('carry-on', resumed.rule)
      assert.truthy(resumed.all_text:find('create slow.txt', 1, true))
      no_key_left()
    end)

    it('garbage on claude\'s stdout is logged and does not crash orch', function()
      local fake = dir .. '/fake-claude'
      H.write(fake, '#!/bin/sh\n' ..
        'echo "not json"; echo \'{"type": "assi\'; head -c 20000000 /dev/zero | tr "\\0" "x"; echo\n' ..
        'printf \'\\377\\376 bad utf-8\\n\'\n' ..
        'echo \'{"type":"result","subtype":"success","is_error":false,"result":"fine",' ..
        '"session_id":"x","total_cost_usd":0.01,"usage":{"input_tokens":1,"output_tokens":1}}\'\n')
      os.execute("chmod +x '" .. fake .. "'")
      local r = run({ { id = 'junk', role = 'coder', backend = 'claude', prompt = 'anything' } },
                    { ORCH_CLAUDE_BIN = fake })
      assert.equals(0, r.code, r.err)
      local st = status()
      assert.equals('done', st.tasks[1].status)
      local logs = H.orch({ 'logs', st.run.id, 'junk' }, { cwd = repo, env = env() })
      assert.equals(0, logs.code)
      assert.truthy(logs.out:find('not json', 1, true))
      assert.truthy(logs.out:find('line of 20000001 bytes cut', 1, true) or
                    logs.out:find('bytes cut', 1, true))
    end)

    it('a missing claude fails its task saying which binary and what to install', function()
      local r = run({ { id = 'nobin', role = 'coder', backend = 'claude', prompt = 'x' } },
                    { PATH = '/usr/bin:/bin', XDG_CACHE_HOME = dir .. '/no-cache', HOME = dir .. '/home' })
      assert.equals(1, r.code)
      local t = status().tasks[1]
      assert.equals('failed', t.status)
      local err = sql("SELECT error FROM tasks WHERE id='nobin'")
      assert.truthy(err:find('claude not found on PATH', 1, true), err)
      assert.truthy(err:find('npm i -g @anthropic-ai/claude-code', 1, true), err)
    end)
  end)
end)
