-- The crush backend. No crush binary can be installed here (no registry
-- reachable has it), so: the generated crush.json, the arguments and the
-- parsing of `crush session show --json` (samples written from crush
-- v0.90.0's source) always run, and so do whole turns through a fake crush;
-- the end-to-end runs need a real `crush` on PATH and say they were skipped
-- otherwise.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')
local crush = require('orch.backends.crush')
local A = require('spec.cli_agents')
local ms = require('orch.testing.modelserver')

local FIX = core.realpath(H.SRC) .. '/spec/fixtures/backends/'

local function of_type(evs, t)
  local out = {}
  for _, e in ipairs(evs) do if e.type == t then out[#out + 1] = e end end
  return out
end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
end

local function doc(name) return cjson.decode(H.read(FIX .. name)) end

describe('crush backend', function()
  describe('crush.json', function()
    it('has an openai-compat provider for the endpoint, its models, offline options', function()
      local cfg = crush.config({ role = { model = 'qwen', endpoint = { base_url = 'http://127.0.0.1:9/v1',
        api_key_env = 'MY_KEY' }, system_prompt = 'be brief' }, tools = 'edit' })
      local p = cfg.providers.orch
      assert.equals('openai-compat', p.type)
      assert.equals('http://127.0.0.1:9/v1', p.base_url)
      assert.equals('$MY_KEY', p.api_key) -- crush expands it: the key is never written
      assert.equals('qwen', p.models[1].id)
      assert.equals('be brief', p.system_prompt_prefix)
      assert.same({ model = 'qwen', provider = 'orch' }, cfg.models.large)
      assert.same({ model = 'qwen', provider = 'orch' }, cfg.models.small)
      assert.is_true(cfg.options.disable_provider_auto_update)
      assert.is_true(cfg.options.disable_default_providers)
      assert.is_true(cfg.options.disable_metrics)
      assert.same({ 'bash', 'job_kill', 'job_output' }, cfg.options.disabled_tools)
    end)

    it('takes writing tools away from a read-only role, none from a full one', function()
      local ro = crush.config({ role = { tools = 'read-only' } }).options.disabled_tools
      for _, t in ipairs({ 'bash', 'edit', 'multiedit', 'write', 'download' }) do
        assert.truthy(index_of(ro, t), t)
      end
      assert.is_nil(index_of(ro, 'view'))
      -- nothing taken away: no list at all (an empty one would encode as {})
      assert.is_nil(crush.config({ role = { tools = 'full' } }).options.disabled_tools)
      local list = crush.config({ role = { tools = { 'view', 'grep' } } }).options.disabled_tools
      assert.truthy(index_of(list, 'write'))
      assert.is_nil(index_of(list, 'grep'))
    end)

    it('launches orch mcp as a stdio server with the socket in its env', function()
      local cfg = crush.config({ role = {}, mcp = { argv = { '/bin/orch', 'mcp' },
        env = { ORCH_CONTROL = '/s.sock', ORCH_TASK = 't' } } })
      assert.same({ type = 'stdio', command = '/bin/orch', args = { 'mcp' },
                    env = { ORCH_CONTROL = '/s.sock', ORCH_TASK = 't' }, timeout = 30 }, cfg.mcp.orch)
    end)

    it('uses OPENAI_BASE_URL without an endpoint, and the user\'s config without either', function()
      local cfg = crush.config({ role = {}, env = { OPENAI_BASE_URL = 'http://b/v1' } })
      assert.equals('http://b/v1', cfg.providers.orch.base_url)
      assert.equals('$OPENAI_API_KEY', cfg.providers.orch.api_key)
      cfg = crush.config({ role = { model = 'm' }, env = { OPENAI_BASE_URL = false } })
      assert.is_nil(cfg.providers)
      assert.is_nil(cfg.options.disable_default_providers)
    end)
  end)

  describe('arguments', function()
    it('runs crush run quietly in the worktree on the task\'s data directory', function()
      local a = crush.build_args({ cwd = '/w', role = {}, prompt = 'go', env = { OPENAI_BASE_URL = false } },
        '/s/data')
      assert.same({ 'run', '-q', '-v', '--cwd', '/w', '--data-dir', '/s/data', '--', 'go' }, a)
      a = crush.build_args({ cwd = '/w', role = { model = 'm' }, prompt = 'again',
                             env = { OPENAI_BASE_URL = false } }, '/s/data', 'SID')
      assert.equals('SID', a[index_of(a, '--session') + 1])
      assert.equals('m', a[index_of(a, '-m') + 1]) -- no provider of orch's: pick the user's model
    end)

    it('leads the first turn with the role\'s prompt when it has no provider to carry it', function()
      local a = crush.build_args({ cwd = '/w', role = { system_prompt = 'RULES' }, prompt = 'go',
                                   env = { OPENAI_BASE_URL = false } }, '/d')
      assert.equals('RULES\n\ngo', a[#a])
      a = crush.build_args({ cwd = '/w', role = { system_prompt = 'RULES' }, prompt = 'go',
                             env = { OPENAI_BASE_URL = false } }, '/d', 'SID')
      assert.equals('go', a[#a])
    end)

    it('gives crush its own global data dir and TMPDIR, not the client/server mode', function()
      local env = crush.build_env({ env = { X = '1' } }, '/s/g', '/s/t')
      assert.equals('/s/g', env.CRUSH_GLOBAL_DATA)
      assert.equals('/s/t', env.TMPDIR)
      assert.is_false(env.CRUSH_CLIENT_SERVER)
      assert.equals('1', env.X)
    end)
  end)

  describe('session JSON (the shape of crush v0.90.0 session show --json)', function()
    it('turns the messages into events and reads the totals', function()
      local evs, info = crush.session_events(doc('crush_session.json'), 0, {})
      assert.equals('0f8b2a64-3c1e-4d7a-9b52-7e0c4f1d2a93', info.id)
      assert.equals(6, info.messages)
      local calls = of_type(evs, 'tool_call')
      assert.equals('write', calls[1].tool)
      assert.equals('call_1', calls[1].id)
      assert.same({ file_path = 'hello.txt', content = 'hello\n' }, calls[1].input)
      assert.equals('which colour?', of_type(evs, 'question')[1].question)
      local results = of_type(evs, 'tool_result')
      assert.equals('File successfully written: hello.txt', results[1].output)
      assert.equals('blue', results[2].output)
      local texts = of_type(evs, 'text')
      assert.equals('Done: hello.txt written.', texts[#texts].text)
      assert.equals('Done: hello.txt written.', info.text)
      -- the user's own prompt is not an assistant text
      for _, t in ipairs(texts) do assert.is_nil(t.text:find('write hello.txt', 1, true)) end
      local u, cost = crush.turn_usage(info, {})
      assert.same({ input_tokens = 1200, output_tokens = 80, cache_read_tokens = 0,
                    cache_write_tokens = 0 }, u)
      assert.equals(0.0042, cost)
    end)

    it('reports only the messages of this turn, and this turn\'s share of the totals', function()
      local evs, info = crush.session_events(doc('crush_session.json'), 3, {})
      assert.equals(0, #of_type(evs, 'tool_result') - 1) -- only the answer to the question
      assert.equals('call_2', of_type(evs, 'tool_call')[1].id)
      local u, cost = crush.turn_usage(info, { prompt_tokens = 1000, completion_tokens = 50, cost = 0.004 })
      assert.equals(200, u.input_tokens)
      assert.equals(30, u.output_tokens)
      assert.is_true(math.abs(cost - 0.0002) < 1e-12)
    end)

    it('reports a tool the read-only role does not offer as denied', function()
      local evs = crush.session_events(doc('crush_readonly_session.json'), 0,
        crush.disabled_tools('read-only'))
      local d = of_type(evs, 'denied')
      assert.equals(1, #d)
      assert.equals('write', d[1].tool)
      assert.truthy(d[1].message:find('tool not found', 1, true))
    end)

    it('does not trip over odd JSON', function()
      for _, d in ipairs({ {}, { messages = 'x' }, { meta = 5, messages = { 5, { parts = 'y' },
                           { parts = { 7, { type = 'tool_call', input = '{not json' } } } } } }) do
        local evs, info = crush.session_events(d, 0, {})
        assert.is_table(evs)
        assert.is_table(info)
      end
      local evs = crush.session_events({ messages = { { role = 'assistant', parts = {
        { type = 'tool_call', name = 'bash', input = '{not json' } } } } }, 0, {})
      assert.same({ input = '{not json' }, evs[1].input)
    end)
  end)

  describe('turns through a fake crush', function()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() H.rm(dir) end)

    -- A fake crush: `run` prints a reply (and the session id on stderr, as
    -- -v does); `session last|show --json` prints the recorded session.
    local function fake(session_file, run_body)
      local path = dir .. '/crush'
      H.write(path, table.concat({
        '#!/bin/sh',
        'd=$(dirname "$0")',
        'case "$1" in',
        '  run) printf "%s\\n" "$@" > "$d/argv.$$"; cat "$d/argv.$$" >> "$d/argv"',
        '       echo "CRUSH_GLOBAL_DATA=$CRUSH_GLOBAL_DATA" > "$d/env"',
        '       cp "$CRUSH_GLOBAL_DATA/crush.json" "$d/crush.json"',
        '       ' .. (run_body or 'echo "INFO Created session for non-interactive run ' ..
          'session_id=0f8b2a64-3c1e-4d7a-9b52-7e0c4f1d2a93" >&2; echo "Done: hello.txt written."'),
        '       ;;',
        '  session) echo "$*" >> "$d/session-calls"; cat "' .. FIX .. session_file .. '" ;;',
        'esac',
      }, '\n') .. '\n')
      os.execute("chmod +x '" .. path .. "'")
      return path
    end

    local function drive(ctx)
      local evs, res = {}, nil
      ctx.emit = function(e) evs[#evs + 1] = e end
      ctx.on_line = function() end
      ctx.on_done = function(r) res = r end
      local h, err = crush.start(ctx)
      if not h then return nil, evs, err end
      assert(H.run_until(function() return res ~= nil end, 30000), 'the turn did not end')
      return res, evs
    end

    local function ctx(bin, extra)
      local c = { task = { id = 't1' }, attempt = 1, run = { id = 'r1' }, role = { tools = 'edit',
        model = 'scripted', endpoint = { base_url = 'http://127.0.0.1:9/v1', api_key_env = 'ORCH_K' } },
        prompt = 'go', cwd = dir, env = { ORCH_CRUSH_BIN = bin, ORCH_K = 'sk-crush-dummy-5555' },
        scratch = dir .. '/scratch' }
      for k, v in pairs(extra or {}) do c[k] = v end
      return c
    end

    it('runs a turn and reads the conversation back', function()
      local res, evs = drive(ctx(fake('crush_session.json')))
      assert.is_true(res.ok, res.error)
      assert.equals('0f8b2a64-3c1e-4d7a-9b52-7e0c4f1d2a93', res.session_id)
      assert.equals('Done: hello.txt written.', res.text)
      assert.equals(1200, res.usage.input_tokens)
      assert.equals(0.0042, res.cost_usd)
      -- the session came first (from stderr), then again with the totals
      local s = of_type(evs, 'session')
      assert.equals('session', evs[1].type)
      assert.equals(6, s[#s].data.messages)
      assert.equals(dir .. '/scratch/crush-data', s[#s].data.data_dir)
      assert.equals('write', of_type(evs, 'tool_call')[1].tool)
      assert.equals('result', evs[#evs].type)
      -- the session was read with show (its id was known from stderr)
      assert.truthy(H.read(dir .. '/session-calls'):find('session show 0f8b2a64', 1, true))
      -- the config orch wrote names the key's variable, never the key
      local cfg = H.read(dir .. '/crush.json')
      assert.truthy(cfg:find('"$ORCH_K"', 1, true))
      assert.is_nil(cfg:find('sk-crush-dummy-5555', 1, true))
      -- data and config live in the scratch, outside the worktree
      local argv = H.read(dir .. '/argv')
      assert.truthy(argv:find('--data-dir\n' .. dir .. '/scratch/crush-data', 1, true))
    end)

    it('a follow-up continues with --session and reports only the new messages', function()
      local c = ctx(fake('crush_session.json'), { session = { id = '0f8b2a64-3c1e-4d7a-9b52-7e0c4f1d2a93',
        data = { messages = 3, prompt_tokens = 1000, completion_tokens = 50, cost = 0.004,
                 data_dir = dir .. '/scratch/crush-data' } } })
      local res, evs = drive(c)
      assert.is_true(res.ok, res.error)
      assert.truthy(H.read(dir .. '/argv'):find('--session\n0f8b2a64', 1, true))
      assert.equals(1, #of_type(evs, 'tool_call'))
      assert.equals(200, res.usage.input_tokens)
    end)

    it('without -v output, finds the session with session last', function()
      local res = drive(ctx(fake('crush_session.json', 'echo "Done."')))
      assert.is_true(res.ok, res.error)
      assert.equals('0f8b2a64-3c1e-4d7a-9b52-7e0c4f1d2a93', res.session_id)
      assert.truthy(H.read(dir .. '/session-calls'):find('session last --json', 1, true))
    end)

    it('fails with crush\'s own words', function()
      local res, evs = drive(ctx(fake('crush_session.json',
        'echo "Error: POST http://127.0.0.1:9/v1/chat/completions: 429 Too Many Requests" >&2; exit 1')))
      assert.is_false(res.ok)
      assert.truthy(res.error:find('429 Too Many Requests', 1, true), res.error)
      assert.is_true(res.retryable)
      assert.equals('error', evs[#evs].type)
    end)

    it('says which binary is missing and how to install it', function()
      local _, _, err = drive(ctx(nil, { env = { ORCH_CRUSH_BIN = false, PATH = dir .. '/nothing',
        XDG_CACHE_HOME = dir } }))
      assert.truthy(err:find('crush not found', 1, true), err)
      assert.truthy(err:find('github.com/charmbracelet/crush', 1, true))
    end)
  end)

  -- Only where a crush is installed (none can be here): then the same
  -- checks as for claude and codex, against the scripted model server.
  local bin = A.binary('crush')
  if not bin then
    io.stderr:write('SKIPPED: crush end to end (no crush on PATH; no registry reachable here has ' ..
      'it, so CI cannot install it)\n')
    pending('crush end to end: no crush on PATH (no registry reachable here has it)')
    return
  end
  describe('end to end: the real crush against the scripted model server', function()
    local dir, srv, repo, ctl
    local SCENARIO = {
      { when = { tool_error = '.' }, reply = 'Refused: {{1}}' },
      { when = { tool_result = '.' }, reply = 'Done: {{1}}' },
      { when = { user = 'ask the orchestrator' },
        reply = { tool_calls = { { name = 'mcp_orch_ask_orchestrator', input = { question = 'which colour?' } } } } },
      { when = { user = 'create (%S+)' }, reply = { write = { path = '{{1}}', content = 'hello\n' } } },
    }
    before_each(function()
      dir = H.tmpdir()
      repo = A.repo(dir, { ['keep.txt'] = 'original\n' })
      srv = assert(ms.start({ scenario = SCENARIO }))
      ctl = A.control_server(dir, function(p) return 'blue, for ' .. p.task end)
    end)
    after_each(function() srv:stop() ctl.stop() H.rm(dir) end)

    local function ctx(o)
      core.mkdir_p(dir .. '/home')
      return { task = { id = 't1', prompt = o.prompt }, attempt = 1, run = { id = 'r1', repo = repo },
               role = { name = 'coder', tools = o.tools or 'edit', model = 'scripted',
                        endpoint = { base_url = srv.url .. '/v1', api_key_env = 'ORCH_E2E_KEY' } },
               prompt = o.prompt, cwd = repo, session = o.session, scratch = dir .. '/scratch',
               env = { HOME = dir .. '/home', XDG_CONFIG_HOME = dir .. '/home/.config',
                       XDG_DATA_HOME = dir .. '/home/.local/share', ORCH_CRUSH_BIN = bin,
                       ORCH_E2E_KEY = A.KEY, ORCH_TASK = 't1' },
               mcp = { argv = { core.realpath(H.ORCH), 'mcp' },
                       env = { ORCH_CONTROL = ctl.path, ORCH_TASK = 't1' } } }
    end

    it('writes a file, continues the session, and a read-only turn cannot write', function()
      local res1, evs1 = A.drive(crush.start, ctx({ prompt = 'create one.txt' }))
      assert.is_true(res1.ok, res1.error)
      assert.equals('hello\n', H.read(repo .. '/one.txt'))
      local s = A.of_type(evs1, 'session')
      local before = #srv:requests()
      local res2 = A.drive(crush.send, ctx({ prompt = 'now create two.txt',
        session = { id = res1.session_id, data = s[#s].data } }))
      assert.is_true(res2.ok, res2.error)
      assert.equals('hello\n', H.read(repo .. '/two.txt'))
      assert.truthy(srv:requests()[before + 1].all_text:find('create one.txt', 1, true))
      local res3 = A.drive(crush.start, ctx({ prompt = 'create keep.txt', tools = 'read-only' }))
      assert.is_true(res3.ok, res3.error)
      assert.equals('original\n', H.read(repo .. '/keep.txt'))
      assert.equals('', A.files_with(A.KEY, { dir }))
    end)

    it('ask_orchestrator goes through orch mcp', function()
      local res, evs = A.drive(crush.start, ctx({ prompt = 'ask the orchestrator' }))
      assert.is_true(res.ok, res.error)
      assert.equals('which colour?', A.of_type(evs, 'question')[1].question)
      assert.same({ task = 't1', question = 'which colour?' }, ctl.asks[1])
    end)
  end)
end)
