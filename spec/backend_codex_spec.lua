-- The codex backend: arguments, the CODEX_HOME orch writes (the user's
-- config kept, orch's provider and MCP server merged in, their auth
-- linked), JSONL parsing on output recorded from codex 0.171.0, turns
-- through a fake codex, then end-to-end runs of the real codex.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')
local codex = require('orch.backends.codex')
local A = require('spec.cli_agents')
local ms = require('orch.testing.modelserver')

local FIX = core.realpath(H.SRC) .. '/spec/fixtures/backends/'

local function lines_of(path)
  local out = {}
  for l in assert(io.open(path, 'rb')):lines() do out[#out + 1] = l end
  return out
end

local function parse_file(name, st)
  st = st or { started = {} }
  local evs = {}
  for _, l in ipairs(lines_of(FIX .. name)) do
    codex.parse(cjson.decode(l), st, function(e) evs[#evs + 1] = e end)
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

local function drive(ctx)
  local evs, log, res = {}, {}, nil
  ctx.emit = function(e) evs[#evs + 1] = e end
  ctx.on_line = function(s, l) log[#log + 1] = { s, l } end
  ctx.on_done = function(r) res = r end
  local h, err = codex.start(ctx)
  if not h then return nil, evs, log, err end
  assert(H.run_until(function() return res ~= nil end, 60000), 'the turn did not end')
  return res, evs, log
end

describe('codex backend', function()
  describe('arguments', function()
    it('runs exec --json with the sandbox of the role, the prompt after --', function()
      local a = codex.build_args({ role = { tools = 'edit', model = 'gpt-5' }, prompt = '-x' })
      assert.same({ 'exec', '--json', '--skip-git-repo-check', '--sandbox', 'workspace-write' },
                  { unpack(a, 1, 5) })
      assert.equals('gpt-5', a[index_of(a, '-m') + 1])
      assert.same({ '--', '-x' }, { a[#a - 1], a[#a] })
      a = codex.build_args({ role = { tools = 'read-only' }, prompt = 'p' })
      assert.equals('read-only', a[index_of(a, '--sandbox') + 1])
      a = codex.build_args({ role = { tools = 'full' }, prompt = 'p' })
      assert.equals('sandbox_workspace_write.network_access=true', a[index_of(a, '-c') + 1])
    end)

    it('resumes a thread with the flags before resume and the sandbox again', function()
      local a = codex.build_args({ role = { tools = 'read-only' }, prompt = 'again' }, 'T-1')
      local r = index_of(a, 'resume')
      assert.truthy(r)
      assert.is_true(index_of(a, '--sandbox') < r)
      assert.equals('read-only', a[index_of(a, '--sandbox') + 1])
      assert.same({ 'resume', '--', 'T-1', 'again' }, { unpack(a, r, r + 3) })
    end)

    it('resumes a thread in the CODEX_HOME it lives in', function()
      local dir = H.tmpdir()
      core.mkdir_p(dir .. '/other/codex-home')
      assert.equals(dir .. '/other/codex-home', codex.home_for({ scratch = dir .. '/mine',
        session = { id = 'T', data = { codex_home = dir .. '/other/codex-home' } } }))
      -- gone (the run that had it ended): a new one
      assert.equals(dir .. '/mine/codex-home', codex.home_for({ scratch = dir .. '/mine',
        session = { id = 'T', data = { codex_home = dir .. '/gone' } } }))
      H.rm(dir)
    end)

    it('keeps the thread under REPO/.orch/agents, except in the agent\'s own directory', function()
      local dir = H.tmpdir()
      local c = { scratch = dir .. '/scratch', run = { id = 'r1', repo = dir .. '/repo' }, task = { id = 't1' },
                  cwd = dir .. '/repo/.orch/worktrees/r1/t1' }
      assert.equals(dir .. '/repo/.orch/agents/r1/t1/codex-home', codex.home_for(c))
      assert.truthy(core.readdir(dir .. '/repo/.orch/agents/r1/t1/codex-home'))
      -- an in-place run works in the repo itself: the agent could rewrite its config there
      c.cwd = dir .. '/repo'
      assert.equals(dir .. '/scratch/codex-home', codex.home_for(c))
      -- an id that could name another path is not used in one
      c.cwd, c.task = dir .. '/w', { id = '../x' }
      assert.equals(dir .. '/scratch/codex-home', codex.home_for(c))
      H.rm(dir)
    end)

    it('keeps CODEX_HOME out of TMPDIR (codex will not set up its sandbox there)', function()
      local env = codex.build_env({ env = { ORCH_TASK = 't' } }, '/s/codex-home', '/s/tmp-1')
      assert.equals('/s/codex-home', env.CODEX_HOME)
      assert.equals('/s/tmp-1', env.TMPDIR)
      assert.is_nil(env.CODEX_HOME:find(env.TMPDIR, 1, true))
      -- codex hands orch mcp only the variables env_vars names, from its own env
      env = codex.build_env({ env = {}, mcp = { argv = { 'orch', 'mcp' },
        env = { ORCH_CONTROL = '/s.sock', ORCH_TASK = 't' } } }, '/h', '/t')
      assert.equals('/s.sock', env.ORCH_CONTROL)
    end)
  end)

  describe('config.toml', function()
    it('writes the provider and the MCP server, no key', function()
      local t = codex.config_toml({
        provider = { base_url = 'http://127.0.0.1:9/v1', env_key = 'MY_KEY' },
        mcp = { command = '/bin/orch', args = { 'mcp' }, env_vars = { 'ORCH_CONTROL', 'ORCH_TASK' } },
        instructions = 'be "careful"\nplease',
      })
      assert.truthy(t:find('model_provider = "orch"', 1, true))
      assert.truthy(t:find('[model_providers.orch]', 1, true))
      assert.truthy(t:find('base_url = "http://127.0.0.1:9/v1"', 1, true))
      assert.truthy(t:find('env_key = "MY_KEY"', 1, true))
      assert.truthy(t:find('wire_api = "responses"', 1, true))
      assert.truthy(t:find('[mcp_servers.orch]', 1, true))
      assert.truthy(t:find('env_vars = ["ORCH_CONTROL", "ORCH_TASK"]', 1, true))
      assert.truthy(t:find('default_tools_approval_mode = "approve"', 1, true))
      assert.truthy(t:find('required = true', 1, true))
      assert.truthy(t:find('developer_instructions = "be \\"careful\\"\\nplease"', 1, true))
      -- top-level keys come before every table
      assert.is_true(t:find('developer_instructions', 1, true) < t:find('[', 1, true))
    end)

    it('keeps the user\'s own settings and drops only what orch sets', function()
      local user = table.concat({
        'model = "o3"',
        'model_provider = "theirs"',
        'approval_policy = "never"',
        '',
        '[model_providers.theirs]',
        'base_url = "https://example.invalid/v1"',
        '',
        '[mcp_servers.orch]',
        'command = "old-orch"',
        '[mcp_servers.orch.env]',
        'X = "1"',
        '',
        '[mcp_servers.docs]',
        'command = "docs-server"',
      }, '\n')
      local t = codex.config_toml({ user = user,
        provider = { base_url = 'http://h/v1', env_key = 'K' },
        mcp = { command = '/bin/orch', args = { 'mcp' }, env_vars = { 'ORCH_CONTROL' } } })
      assert.truthy(t:find('model = "o3"', 1, true))
      assert.truthy(t:find('approval_policy = "never"', 1, true))
      assert.is_nil(t:find('model_provider = "theirs"', 1, true))
      assert.truthy(t:find('[model_providers.theirs]', 1, true))
      -- their own MCP servers are not offered to orch's agents
      assert.is_nil(t:find('[mcp_servers.docs]', 1, true))
      assert.is_nil(t:find('docs-server', 1, true))
      assert.is_nil(t:find('old-orch', 1, true))
      assert.is_nil(t:find('X = "1"', 1, true))
      local _, n = t:gsub('%[mcp_servers%.orch%]', '')
      assert.equals(1, n)
      -- no provider of orch's: theirs stays
      t = codex.config_toml({ user = user })
      assert.truthy(t:find('model_provider = "theirs"', 1, true))
    end)

    it('never copies a setting that may hold a credential', function()
      local user = table.concat({
        'model = "o3"',
        'experimental_bearer_token = "abc123"',
        '[model_providers.corp]',
        'base_url = "https://corp.invalid/v1"',
        'env_key = "CORP_KEY"',
        'http_headers = { "X-Org" = "Bearer sk-live-555" }',
        'api_key = "sk-live-666"',
        '[profiles.fast]',
        'model = "o4-mini"',
      }, '\n')
      local t = codex.config_toml({ user = user })
      assert.is_nil(t:find('abc123', 1, true))
      assert.is_nil(t:find('sk-live', 1, true))
      assert.truthy(t:find('env_key = "CORP_KEY"', 1, true)) -- a name, not a key
      assert.truthy(t:find('base_url = "https://corp.invalid/v1"', 1, true))
      assert.truthy(t:find('[profiles.fast]', 1, true))
      assert.truthy(t:find('model = "o4-mini"', 1, true))
    end)

    it('takes the provider from the role, else OPENAI_BASE_URL, else none', function()
      assert.same({ base_url = 'http://a/v1', env_key = 'K' },
        codex.provider({ role = { endpoint = { base_url = 'http://a/v1', api_key_env = 'K' } } }))
      assert.same({ base_url = 'http://b/v1', env_key = 'OPENAI_API_KEY' },
        codex.provider({ role = {}, env = { OPENAI_BASE_URL = 'http://b/v1' } }))
      assert.is_nil(codex.provider({ role = {}, env = { OPENAI_BASE_URL = false } }))
    end)

    it('writes CODEX_HOME in the scratch with the user\'s config and a link to their auth', function()
      local dir = H.tmpdir()
      local uhome = dir .. '/user-codex'
      core.mkdir_p(uhome)
      H.write(uhome .. '/config.toml', 'model = "o3"\n')
      H.write(uhome .. '/auth.json', '{"OPENAI_API_KEY":"sk-user-secret-9876"}')
      local home = assert(codex.write_home({ scratch = dir .. '/scratch', role = {},
        env = { CODEX_HOME = uhome, OPENAI_BASE_URL = 'http://127.0.0.1:9/v1' },
        mcp = { argv = { '/bin/orch', 'mcp' }, env = { ORCH_CONTROL = '/s', ORCH_TASK = 't' } } }))
      assert.equals(dir .. '/scratch/codex-home', home)
      local cfg = H.read(home .. '/config.toml')
      assert.truthy(cfg:find('model = "o3"', 1, true))
      assert.truthy(cfg:find('env_vars = ["ORCH_CONTROL", "ORCH_TASK"]', 1, true))
      -- auth.json is the user's own file through a link, not a copy
      assert.equals(uhome .. '/auth.json', (H.sh("readlink '" .. home .. "/auth.json'"):gsub('%s+$', '')))
      assert.equals('', (H.sh("grep -rl sk-user-secret-9876 '" .. dir .. "/scratch' || true")))
      H.rm(dir)
    end)
  end)

  describe('JSONL (recorded from codex 0.171.0)', function()
    it('turns a turn that writes a file into normalised events', function()
      local evs, st = parse_file('codex_write.jsonl', { started = {}, home = '/h' })
      local s = of_type(evs, 'session')
      assert.equals('01a230f2-4ac4-71f1-8341-cffb108a8250', s[1].session_id)
      assert.equals('/h', s[1].data.codex_home)
      local call = of_type(evs, 'tool_call')[1]
      assert.equals('shell', call.tool)
      assert.truthy(call.input.command:find('printf hello > hello.txt', 1, true))
      assert.equals(1, #of_type(evs, 'tool_call')) -- started and completed: one call
      assert.is_false(of_type(evs, 'tool_result')[1].is_error)
      assert.equals('All done.', of_type(evs, 'text')[1].text)
      -- input without the cached tokens, as everywhere in orch
      assert.same({ input_tokens = 190, output_tokens = 40, cache_read_tokens = 10,
                    cache_write_tokens = 0 }, of_type(evs, 'usage')[1].usage)
      -- the "model metadata not found" error item is a warning only
      assert.equals(0, #of_type(evs, 'error'))
      assert.equals(1, st.warnings)
      assert.is_true(st.completed)
      -- the running total goes with the session for the next turn
      assert.equals(190, s[#s].data.usage_total.input_tokens)
    end)

    it('counts only this turn\'s tokens on a resumed thread', function()
      local evs = parse_file('codex_resumed.jsonl', { started = {},
        thread_id = '01a230f2-4ac4-71f1-8341-cffb108a8250',
        prev = { input_tokens = 190, output_tokens = 40, cache_read_tokens = 10, cache_write_tokens = 0 } })
      assert.same({ input_tokens = 190, output_tokens = 40, cache_read_tokens = 10,
                    cache_write_tokens = 0 }, of_type(evs, 'usage')[1].usage)
    end)

    it('puts a price on the usage when the role gives one (codex reports none)', function()
      local evs = parse_file('codex_write.jsonl', { started = {}, model = 'local-model',
        price = { input = 1, output = 2 } })
      local u = of_type(evs, 'usage')[1]
      assert.is_true(math.abs(u.cost_usd - (190 * 1 + 40 * 2 + 10 * 0.1) / 1e6) < 1e-12)
      evs = parse_file('codex_write.jsonl', { started = {}, model = 'unknown-model' })
      assert.is_nil(of_type(evs, 'usage')[1].cost_usd)
    end)

    it('sees an MCP ask_orchestrator call as a question', function()
      local evs = parse_file('codex_mcp_ask.jsonl')
      assert.equals('what colour?', of_type(evs, 'question')[1].question)
      assert.equals('mcp__orch__ask_orchestrator', of_type(evs, 'tool_call')[1].tool)
      assert.is_true(of_type(evs, 'tool_result')[1].is_error)
    end)

    it('fails on turn.failed, retryable for a server error; Reconnecting is no failure', function()
      local evs, st = parse_file('codex_failed_500.jsonl')
      local e = of_type(evs, 'error')
      assert.equals(1, #e) -- "Reconnecting... 1/1" is not one
      assert.is_true(e[1].retryable)
      assert.truthy(st.error)
      assert.is_false(codex.retryable('{"error": {"type": "invalid_request_error", "message": "bad"}}'))
      assert.is_true(codex.retryable('stream disconnected before completion'))
      assert.is_true(codex.retryable('exceeded retry limit, last status: 429 Too Many Requests'))
    end)
  end)

  describe('turns through a fake codex', function()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() H.rm(dir) end)

    local function script(body)
      local path = dir .. '/codex'
      H.write(path, '#!/bin/sh\n' .. body .. '\n')
      os.execute("chmod +x '" .. path .. "'")
      return path
    end

    local function ctx(bin, extra)
      local c = { task = { id = 't1', prompt = 'go' }, attempt = 1, run = { id = 'r1' },
                  role = { tools = 'edit' }, prompt = 'go', cwd = dir,
                  env = { ORCH_CODEX_BIN = bin, CODEX_HOME = dir .. '/no-user-home' },
                  scratch = dir .. '/scratch' }
      for k, v in pairs(extra or {}) do c[k] = v end
      return c
    end

    it('runs a turn: session, usage, the text; TMPDIR removed, CODEX_HOME kept', function()
      local bin = script('echo "TMPDIR=$TMPDIR CODEX_HOME=$CODEX_HOME" > "$(dirname "$0")/env"\n' ..
        'cat "' .. FIX .. 'codex_write.jsonl"')
      local res, evs = drive(ctx(bin))
      assert.is_true(res.ok, res.error)
      assert.equals('01a230f2-4ac4-71f1-8341-cffb108a8250', res.session_id)
      assert.equals('All done.', res.text)
      assert.equals(190, res.usage.input_tokens)
      assert.equals('result', evs[#evs].type)
      local env = H.read(dir .. '/env')
      local tmp, home = env:match('TMPDIR=(%S+) CODEX_HOME=(%S+)')
      assert.is_nil(H.read(tmp .. '/.'))
      assert.truthy(H.read(home .. '/config.toml'))
    end)

    it('survives garbage and reports the failed turn in codex\'s words', function()
      local bin = script('echo "{garbage"; printf "\\377\\376\\n"; head -c 20000000 /dev/zero | tr "\\0" "{"; echo\n' ..
        'cat "' .. FIX .. 'codex_failed_500.jsonl"; exit 1')
      local res = drive(ctx(bin))
      assert.is_false(res.ok)
      assert.is_true(res.retryable)
      assert.truthy(res.error:find('high demand', 1, true), res.error)
    end)

    it('says which binary is missing and how to install it', function()
      local _, _, _, err = drive(ctx(nil, { env = { ORCH_CODEX_BIN = false,
        PATH = dir .. '/nothing-here', XDG_CACHE_HOME = dir } }))
      assert.truthy(err:find('codex not found', 1, true), err)
      assert.truthy(err:find('npm i -g @openai/codex', 1, true))
    end)
  end)

  A.e2e({ describe = describe, it = it, pending = pending }, 'codex',
        'end to end: the real codex against the scripted model server', function(bin)
    local dir, srv, repo, ctl
    local SCENARIO = {
      { when = { tool_error = '.' }, reply = 'Refused: {{1}}' },
      { when = { tool_result = '.' }, reply = 'Done: {{1}}' },
      { when = { user = 'ask the orchestrator' },
        reply = { tool_calls = { { name = 'mcp__orch__ask_orchestrator',
                                   input = { question = 'which colour?' } } } } },
      { when = { user = 'shell (.+)' }, reply = { shell = '{{1}}' } },
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
      core.mkdir_p(dir .. '/home')
      local env = { HOME = dir .. '/home', CODEX_HOME = dir .. '/home/.codex', ORCH_CODEX_BIN = bin,
                    ORCH_TASK = 't1', ORCH_E2E_KEY = A.KEY, OPENAI_API_KEY = false, OPENAI_BASE_URL = false }
      return { task = { id = 't1', prompt = o.prompt }, attempt = 1, run = { id = 'r1', repo = repo },
               role = { name = o.role or 'coder', tools = o.tools or 'edit', model = o.model or 'gpt-5.5',
                        endpoint = { base_url = srv.url .. '/v1', api_key_env = 'ORCH_E2E_KEY' } },
               prompt = o.prompt, cwd = repo, env = env, scratch = dir .. '/scratch', session = o.session,
               mcp = { argv = { core.realpath(H.ORCH), 'mcp' },
                       env = { ORCH_CONTROL = ctl.path, ORCH_TASK = 't1' } } }
    end

    it('a turn writes a file through apply_patch; the thread and its usage come back', function()
      local res, evs = A.drive(codex.start, ctx({ prompt = 'create hello.txt' }))
      assert.is_true(res.ok, res.error)
      assert.equals('hello\n', H.read(repo .. '/hello.txt'))
      assert.equals(A.of_type(evs, 'session')[1].session_id, res.session_id)
      assert.is_true(res.usage.input_tokens > 0)
      assert.equals('apply_patch', A.of_type(evs, 'tool_call')[1].tool)
      -- the key went as a bearer token only; nothing left behind holds it
      assert.equals('', A.files_with(A.KEY, { dir }))
    end)

    it('a follow-up resumes the thread: the first turn is in the request, its write happens', function()
      local res1, evs1 = A.drive(codex.start, ctx({ prompt = 'create one.txt' }))
      assert.is_true(res1.ok, res1.error)
      local s1 = A.of_type(evs1, 'session')
      local data = s1[#s1].data -- as the engine stores it: the latest
      local before = #srv:requests()
      local res2, evs2 = A.drive(codex.send, ctx({ prompt = 'now create two.txt',
        session = { id = res1.session_id, data = data } }))
      assert.is_true(res2.ok, res2.error)
      assert.equals(res1.session_id, res2.session_id)
      assert.equals('hello\n', H.read(repo .. '/two.txt'))
      local req = srv:requests()[before + 1]
      assert.truthy(req.all_text:find('create one.txt', 1, true))
      assert.truthy(req.all_text:find('Add File: one.txt', 1, true))
      -- this turn's usage, not the thread's running total
      local u = A.of_type(evs2, 'usage')[1].usage
      assert.is_true(u.input_tokens > 0 and u.input_tokens < data.usage_total.input_tokens * 2)
    end)

    it('a read-only reviewer cannot write: the sandbox refuses, the file is unchanged', function()
      local res = A.drive(codex.start, ctx({ prompt = 'shell printf x > keep.txt', tools = 'read-only',
                                             role = 'reviewer' }))
      assert.is_true(res.ok, res.error)
      assert.equals('original\n', H.read(repo .. '/keep.txt'))
      local out = srv:last().tool_results[1].output
      assert.truthy(out:find('Read%-only file system'), out)
    end)

    it('ask_orchestrator goes through orch mcp to the run and the answer to the model', function()
      local res, evs = A.drive(codex.start, ctx({ prompt = 'ask the orchestrator' }))
      assert.is_true(res.ok, res.error)
      assert.equals('which colour?', A.of_type(evs, 'question')[1].question)
      assert.same({ task = 't1', question = 'which colour?' }, ctl.asks[1])
      assert.truthy(srv:last().tool_results[1].output:find('blue, for t1', 1, true))
    end)
  end)

  A.e2e({ describe = describe, it = it, pending = pending }, 'codex',
        'end to end: orch run --plan with the real codex', function(bin)
    local dir, srv, repo
    local SCENARIO = {
      { when = { tool_error = '.' }, reply = 'Refused: {{1}}' },
      { when = { tool_result = '.' }, reply = 'Done: {{1}}' },
      { when = { user = 'shell (.+)' }, reply = { shell = '{{1}}' } },
      { when = { user = 'create (%S+)' }, reply = { write = { path = '{{1}}', content = 'hello\n' } } },
    }
    before_each(function()
      dir = H.tmpdir()
      repo = A.repo(dir, { ['keep.txt'] = 'original\n',
        ['.orch/roles/coder.yaml'] = 'model: gpt-5.5\nprice:\n  input: 1\n  output: 2\n',
        ['.orch/roles/reviewer.yaml'] = 'model: gpt-5.5\n' })
      core.mkdir_p(dir .. '/tmp')
      core.mkdir_p(dir .. '/home')
      srv = assert(ms.start({ scenario = SCENARIO }))
    end)
    after_each(function()
      srv:stop()
      H.rm(dir)
    end)

    local function env()
      return { HOME = dir .. '/home', TMPDIR = dir .. '/tmp', CODEX_HOME = false,
               OPENAI_BASE_URL = srv.url .. '/v1', OPENAI_API_KEY = A.KEY,
               PATH = bin:match('^(.*)/[^/]+$') .. ':' .. (os.getenv('PATH') or '/usr/bin:/bin'),
               XDG_RUNTIME_DIR = false, ORCH_SOCKET_DIR = false, ORCH_SCRATCH_DIR = false,
               ORCH_CODEX_BIN = false }
    end

    local function run(tasks)
      H.write(dir .. '/plan.json', cjson.encode({ goal = 'e2e', tasks = tasks }))
      return H.orch({ 'run', '--plan', dir .. '/plan.json', '--yes', '--no-tui' },
                    { cwd = repo, env = env(), timeout = 180000 })
    end

    local function status()
      local r = H.orch({ 'status', '--json' }, { cwd = repo, env = env() })
      assert.equals(0, r.code, r.err)
      return cjson.decode(r.out)
    end

    local function git(args) return (H.sh("git -C '" .. repo .. "' " .. args)) end

    it('a coder task writes a file: in both branches; thread, usage and cost recorded; no key left', function()
      local r = run({ { id = 'hello', role = 'coder', backend = 'codex', prompt = 'create hello.txt',
                        files = { 'hello.txt' } } })
      assert.equals(0, r.code, r.err)
      local st = status()
      local t = st.tasks[1]
      assert.equals('done', t.status)
      assert.equals('hello\n', git('show orch/' .. st.run.id .. '/hello:hello.txt'))
      assert.equals('hello\n', git('show orch/' .. st.run.id .. '/integration:hello.txt'))
      assert.truthy(t.session_id and #t.session_id > 10)
      assert.is_true(t.usage.input_tokens > 0)
      assert.is_true(t.cost_usd > 0) -- from the role's price
      local db = repo .. '/.orch/orch.db'
      assert.equals(t.session_id, (H.sh("sqlite3 '" .. db .. "' \"SELECT session_id FROM sessions\""):gsub('%s+$', '')))
      assert.equals('', A.files_with(A.KEY, { repo, dir .. '/tmp', dir .. '/home' }))
      -- the thread outlives the run (REPO/.orch/agents/RUN/TASK/codex-home): a
      -- person can open it in codex, until orch clean
      local a = H.orch({ 'attach', st.run.id, 'hello', '--cli', '--print' }, { cwd = repo, env = env() })
      assert.equals(0, a.code, a.err)
      local home = repo .. '/.orch/agents/' .. st.run.id .. '/hello/codex-home'
      assert.truthy(a.out:find('CODEX_HOME=' .. home, 1, true), a.out)
      assert.truthy(a.out:find('resume -C ', 1, true), a.out)
      assert.truthy(a.out:find(t.session_id, 1, true), a.out)
      local c = H.orch({ 'clean', st.run.id }, { cwd = repo, env = env() })
      assert.equals(0, c.code, c.err)
      assert.is_nil(H.read(home .. '/config.toml'))
      a = H.orch({ 'attach', st.run.id, 'hello', '--cli', '--print' }, { cwd = repo, env = env() })
      assert.equals(1, a.code)
      assert.truthy(a.err:find('which is gone', 1, true), a.err)
    end)

    it('a task that continues another resumes its thread (in that task\'s CODEX_HOME)', function()
      local r = run({
        { id = 'one', role = 'coder', backend = 'codex', prompt = 'create one.txt', files = { 'one.txt' } },
        { id = 'two', role = 'coder', backend = 'codex', prompt = 'now create two.txt', files = { 'two.txt' },
          deps = { 'one' }, continues = 'one' } })
      assert.equals(0, r.code, r.err)
      local st = status()
      local by = {}
      for _, t in ipairs(st.tasks) do by[t.id] = t end
      assert.equals('done', by.two.status, r.err)
      assert.equals(by.one.session_id, by.two.session_id)
      assert.equals('hello\n', git('show orch/' .. st.run.id .. '/integration:two.txt'))
      local second
      for _, q in ipairs(srv:requests()) do
        if q.last_user and q.last_user:find('now create two.txt', 1, true) then second = second or q end
      end
      assert.truthy(second.all_text:find('Add File: one.txt', 1, true))
    end)

    it('a read-only reviewer cannot write: codex\'s sandbox refuses, the file is unchanged', function()
      local r = run({ { id = 'review', role = 'reviewer', backend = 'codex',
                        prompt = 'shell printf x > keep.txt' } })
      assert.equals(0, r.code, r.err)
      local st = status()
      assert.equals('original\n', git('show orch/' .. st.run.id .. '/integration:keep.txt'))
      assert.equals('original\n', H.read(repo .. '/keep.txt'))
      assert.truthy(srv:last().tool_results[1].output:find('Read%-only file system'))
    end)
  end)
end)
