-- The codex backend: arguments, the CODEX_HOME orch writes (the user's
-- config kept, orch's provider and MCP server merged in, their auth
-- linked), JSONL parsing on output recorded from codex 0.171.0, turns
-- through a fake codex, then end-to-end runs of the real codex.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')
local codex = require('orch.backends.codex')

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
      assert.truthy(t:find('[mcp_servers.docs]', 1, true))
      assert.is_nil(t:find('old-orch', 1, true))
      assert.is_nil(t:find('X = "1"', 1, true))
      local _, n = t:gsub('%[mcp_servers%.orch%]', '')
      assert.equals(1, n)
      -- no provider of orch's: theirs stays
      t = codex.config_toml({ user = user })
      assert.truthy(t:find('model_provider = "theirs"', 1, true))
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
      assert.same({ input_tokens = 200, output_tokens = 40, cache_read_tokens = 10,
                    cache_write_tokens = 0 }, of_type(evs, 'usage')[1].usage)
      -- the "model metadata not found" error item is a warning only
      assert.equals(0, #of_type(evs, 'error'))
      assert.equals(1, st.warnings)
      assert.is_true(st.completed)
      -- the running total goes with the session for the next turn
      assert.equals(200, s[#s].data.usage_total.input_tokens)
    end)

    it('counts only this turn\'s tokens on a resumed thread', function()
      local evs = parse_file('codex_resumed.jsonl', { started = {},
        thread_id = '01a230f2-4ac4-71f1-8341-cffb108a8250',
        prev = { input_tokens = 200, output_tokens = 40, cache_read_tokens = 10, cache_write_tokens = 0 } })
      assert.same({ input_tokens = 200, output_tokens = 40, cache_read_tokens = 10,
                    cache_write_tokens = 0 }, of_type(evs, 'usage')[1].usage)
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
      assert.equals(200, res.usage.input_tokens)
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
end)
