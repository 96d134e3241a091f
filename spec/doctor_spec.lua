-- `orch doctor`: the real binary, with fake agent CLIs on a private PATH and
-- a real local HTTP server as the endpoint.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')

local SECRET = 'sk-doctor-dummy-7f3a9c'

local function start_server()
  local port
  local p = assert(core.spawn({
    argv = { 'python3', H.SRC .. '/tests/server/sse_server.py', '--exit-on-eof' },
    stdin = 'pipe',
    stdout = function(l) port = port or tonumber(l) end,
  }))
  assert(H.run_until(function() return port ~= nil end, 20000), 'server did not start')
  return p, 'http://127.0.0.1:' .. port
end

local function by_name(report)
  local t = {}
  for _, b in ipairs(report.backends) do t[b.name] = b end
  return t
end

describe('orch doctor', function()
  local dir, srv, url
  setup(function() srv, url = start_server() end)
  teardown(function() srv:close_stdin() srv:cancel(1000) end)
  before_each(function()
    dir = H.tmpdir()
    core.mkdir_p(dir .. '/bin')
    core.mkdir_p(dir .. '/home')
    H.write(dir .. '/bin/claude', '#!/bin/sh\necho "2.1.332 (Claude Code)"\n')
    os.execute("chmod +x '" .. dir .. "/bin/claude'")
  end)
  after_each(function() H.rm(dir) end)

  -- orch doctor with only dir/bin and the system's tools on PATH.
  local function doctor(args, env)
    local e = { PATH = dir .. '/bin:/usr/bin:/bin', HOME = dir .. '/home', XDG_CACHE_HOME = dir .. '/cache',
                XDG_CONFIG_HOME = dir .. '/config', XDG_DATA_HOME = dir .. '/data',
                ANTHROPIC_API_KEY = false, OPENAI_API_KEY = false, ANTHROPIC_BASE_URL = false,
                OPENAI_BASE_URL = false, CODEX_HOME = false, ORCH_BACKEND = false,
                ORCH_CLAUDE_BIN = false, ORCH_CODEX_BIN = false, ORCH_CRUSH_BIN = false,
                CLAUDE_CODE_OAUTH_TOKEN = false, ANTHROPIC_AUTH_TOKEN = false }
    for k, v in pairs(env or {}) do e[k] = v end
    local argv = { 'doctor' }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return H.orch(argv, { env = e, cwd = dir, timeout = 60000 })
  end

  it('finds a usable claude: binary, version, endpoint answering, key named not shown', function()
    local r = doctor({ '--json' }, { ANTHROPIC_API_KEY = SECRET, ANTHROPIC_BASE_URL = url })
    assert.equals(0, r.code, r.err)
    assert.is_nil(r.out:find(SECRET, 1, true))
    assert.is_nil(r.err:find(SECRET, 1, true))
    local b = by_name(cjson.decode(r.out))
    assert.is_true(b.claude.usable)
    assert.is_true(b.claude.binary.found)
    assert.equals(dir .. '/bin/claude', b.claude.binary.path)
    assert.equals('2.1.332', b.claude.binary.version)
    assert.equals(url, b.claude.endpoint.url)
    assert.is_true(b.claude.endpoint.reachable)
    assert.equals('ANTHROPIC_API_KEY', b.claude.key)
    -- the roles with backend auto would take it
    local report = cjson.decode(r.out)
    for _, role in ipairs(report.roles) do
      if role.configured == 'auto' then assert.equals('claude', role.backend) end
    end
  end)

  it('says what to do for each backend that is not usable', function()
    local r = doctor({}, { ANTHROPIC_BASE_URL = 'http://127.0.0.1:9' })
    assert.equals(1, r.code) -- nothing usable
    assert.truthy(r.out:find('claude%s+not ready'))
    assert.truthy(r.out:find('set ANTHROPIC_API_KEY', 1, true))
    assert.truthy(r.out:find('http://127.0.0.1:9 does not answer', 1, true))
    assert.truthy(r.out:find('codex not found on PATH', 1, true))
    assert.truthy(r.out:find('npm i -g @openai/codex', 1, true))
    assert.truthy(r.out:find('crush not found', 1, true))
  end)

  it('counts a login file as a key, and a local endpoint as needing none', function()
    core.mkdir_p(dir .. '/home/.codex')
    H.write(dir .. '/home/.codex/auth.json', '{"OPENAI_API_KEY":"' .. SECRET .. '"}')
    H.write(dir .. '/bin/codex', '#!/bin/sh\necho "codex-cli 0.171.0"\n')
    os.execute("chmod +x '" .. dir .. "/bin/codex'")
    local r = doctor({ '--json' }, { OPENAI_BASE_URL = url .. '/v1' })
    assert.is_nil(r.out:find(SECRET, 1, true))
    local b = by_name(cjson.decode(r.out))
    assert.is_true(b.codex.usable, table.concat(b.codex.todo, '; '))
    assert.equals('0.171.0', b.codex.binary.version)
    assert.truthy(b.codex.key:find('auth.json', 1, true))
    assert.is_true(b.openai.usable, table.concat(b.openai.todo, '; '))
  end)

  it('reports a CLI that does not answer --version', function()
    H.write(dir .. '/bin/claude', '#!/bin/sh\nexit 1\n')
    local r = doctor({ '--json' }, { ANTHROPIC_API_KEY = SECRET, ANTHROPIC_BASE_URL = url })
    local b = by_name(cjson.decode(r.out))
    assert.is_false(b.claude.usable)
    assert.truthy(table.concat(b.claude.todo, '\n'):find('--version did not answer', 1, true))
  end)
end)
