-- orch.doctor: `orch doctor [--json]`, which agent backends are usable on
-- this machine and what to do about each that is not.
--
--   doctor.collect(env, cb(report))  -- report = {backends={...}, roles={...}}
--   doctor.cli(opts)                 -- the command; exit 0 when one backend is usable
--
-- Per backend: the binary (CLI backends: found where, its version), the
-- endpoint it would talk to and whether it answers, whether a key (or a
-- login) is present -- named, never printed -- and what to do.
local core = require('orch.core')
local cli = require('orch.backends.cli')

local M = {}

M.BACKENDS = { 'claude', 'codex', 'crush', 'openai', 'anthropic' }
M.PROBE_TIMEOUT_MS = 4000

local function getenv(env, k)
  return cli.getenv({ env = env }, k)
end

local function set(env, k)
  local v = getenv(env, k)
  return v ~= nil and v ~= ''
end

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local function home(env) return getenv(env, 'HOME') or '' end

-- Where each backend's credentials may come from, in order: an environment
-- variable (its name is reported) or a file the CLI's own login wrote.
local KEYS = {
  claude = function(env)
    for _, k in ipairs({ 'ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_OAUTH_TOKEN' }) do
      if set(env, k) then return k end
    end
    local cfg = getenv(env, 'CLAUDE_CONFIG_DIR') or (home(env) .. '/.claude')
    if exists(cfg .. '/.credentials.json') then return cfg .. '/.credentials.json (claude login)' end
  end,
  codex = function(env)
    if set(env, 'OPENAI_API_KEY') then return 'OPENAI_API_KEY' end
    local h = getenv(env, 'CODEX_HOME') or (home(env) .. '/.codex')
    if exists(h .. '/auth.json') then return h .. '/auth.json (codex login)' end
  end,
  crush = function(env)
    if set(env, 'OPENAI_API_KEY') then return 'OPENAI_API_KEY' end
    local cfg = (getenv(env, 'XDG_CONFIG_HOME') or (home(env) .. '/.config')) .. '/crush/crush.json'
    local data = (getenv(env, 'XDG_DATA_HOME') or (home(env) .. '/.local/share')) .. '/crush/crush.json'
    if exists(cfg) then return cfg .. ' (its providers)' end
    if exists(data) then return data .. ' (its providers)' end
  end,
  openai = function(env) if set(env, 'OPENAI_API_KEY') then return 'OPENAI_API_KEY' end end,
  anthropic = function(env) if set(env, 'ANTHROPIC_API_KEY') then return 'ANTHROPIC_API_KEY' end end,
}

local ENDPOINTS = {
  claude = function(env) return getenv(env, 'ANTHROPIC_BASE_URL') or 'https://api.anthropic.com' end,
  anthropic = function(env) return getenv(env, 'ANTHROPIC_BASE_URL') or 'https://api.anthropic.com' end,
  codex = function(env) return getenv(env, 'OPENAI_BASE_URL') or 'https://api.openai.com/v1' end,
  openai = function(env) return getenv(env, 'OPENAI_BASE_URL') or 'https://api.openai.com/v1' end,
  crush = function(env) return getenv(env, 'OPENAI_BASE_URL') end, -- else its own config decides
}

local KEY_HINT = {
  claude = 'set ANTHROPIC_API_KEY, or run `claude` once and log in',
  codex = 'set OPENAI_API_KEY, or run `codex login`',
  crush = 'set OPENAI_API_KEY (with OPENAI_BASE_URL), or configure a provider in ~/.config/crush/crush.json',
  openai = 'set OPENAI_API_KEY (a local server such as Ollama needs none: set OPENAI_BASE_URL)',
  anthropic = 'set ANTHROPIC_API_KEY',
}

-- The version a binary prints (blocking; doctor is a command of its own).
function M.version(argv, pattern)
  local q = {}
  for i, a in ipairs(argv) do q[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
  local f = io.popen('timeout 20 ' .. table.concat(q, ' ') .. ' </dev/null 2>&1')
  if not f then return nil end
  local out = f:read('*a') or ''
  f:close()
  return out:match(pattern or '([%d%.]+)'), out
end

-- Whether a URL answers at all (any HTTP status counts: a 404 or 401 still
-- means the server is there). cb(ok, why).
function M.probe(url, cb)
  if not url then return cb(nil, 'not checked') end
  local done = false
  local req, err = core.http.request({
    url = url, method = 'HEAD', connect_timeout = M.PROBE_TIMEOUT_MS, timeout = M.PROBE_TIMEOUT_MS,
    on_done = function(e, status)
      if done then return end
      done = true
      if status and status > 0 then return cb(true, 'HTTP ' .. status) end
      cb(false, e or 'no answer')
    end,
  })
  if not req then done = true cb(false, err) end
end

local function backend_module(name)
  local ok, mod = pcall(require, 'orch.backends.' .. name)
  return ok and mod or nil
end

-- One backend's entry, except the endpoint probe.
function M.check_backend(name, env)
  local e = { name = name, todo = {} }
  local mod = backend_module(name)
  if mod and mod.check then
    local c = mod.check(env) or {}
    e.binary = { found = c.ok == true, path = c.path }
    if c.ok then
      local dir = c.path:match('^(.*)/[^/]+$')
      if dir and not (':' .. (getenv(env, 'PATH') or '') .. ':'):find(':' .. dir .. ':', 1, true) then
        e.binary.note = ('not on PATH (found in %s): roles with backend auto will not pick it; ' ..
          'add that directory to PATH'):format(dir)
      end
      if c.version_argv then
        e.binary.version = M.version(c.version_argv, c.version_pattern)
        if not e.binary.version then
          e.todo[#e.todo + 1] = c.path .. ' --version did not answer: reinstall it'
        end
      else
        e.binary.version = c.version
      end
    else
      e.todo[#e.todo + 1] = c.message
    end
  end
  e.key = KEYS[name](env)
  local url = ENDPOINTS[name](env)
  e.endpoint = { url = url }
  -- the CLIs want a key even for a local server (any value will do there)
  if not e.key then e.todo[#e.todo + 1] = KEY_HINT[name] end
  return e
end

local HTTP = { openai = true, anthropic = true }

-- An in-process backend: its own check (endpoint and key in one).
local function check_http(name, env, cb)
  local e = { name = name, todo = {}, key = KEYS[name](env), endpoint = { url = ENDPOINTS[name](env) } }
  local mod = backend_module(name)
  if not (mod and mod.check) then
    e.todo[#e.todo + 1] = 'orch.backends.' .. name .. ' is missing from this build'
    return cb(e)
  end
  local ok, err = pcall(mod.check, env or {}, function(r)
    r = r or {}
    e.endpoint.url = r.path or e.endpoint.url
    e.endpoint.reachable = r.ok == true or (r.message or ''):find('answered', 1, true) ~= nil
    e.message = r.message
    if not r.ok then e.todo[#e.todo + 1] = r.message or 'not usable' end
    cb(e)
  end)
  if not ok then
    e.todo[#e.todo + 1] = 'check failed: ' .. tostring(err)
    cb(e)
  end
end

-- Every backend, endpoints probed concurrently. cb(report).
function M.collect(env, cb)
  local report = { backends = {} }
  local pending = #M.BACKENDS + 1
  local function finish_one()
    pending = pending - 1
    if pending > 0 then return end
    for _, e in ipairs(report.backends) do
      if not e.http and e.endpoint.url and e.endpoint.reachable == false then
        e.todo[#e.todo + 1] = ('%s does not answer (%s): check the URL, the network or the server')
          :format(e.endpoint.url, e.endpoint.error or '?')
      end
      e.usable = #e.todo == 0
    end
    cb(report)
  end
  for i, name in ipairs(M.BACKENDS) do
    if HTTP[name] then
      check_http(name, env, function(e)
        e.http = true
        report.backends[i] = e
        finish_one()
      end)
    else
      local e = M.check_backend(name, env)
      report.backends[i] = e
      M.probe(e.endpoint.url, function(ok, why)
        e.endpoint.reachable = ok
        if ok then e.endpoint.answer = why elseif ok == false then e.endpoint.error = why end
        finish_one()
      end)
    end
  end
  finish_one()
end

-- The shipped and configured roles, with the backend each would use.
function M.roles(repo)
  local ok, roles = pcall(require, 'orch.roles')
  if not ok then return {} end
  local out = {}
  local names = roles.names({ repo = repo }) or {}
  for _, n in ipairs(names) do
    local r = roles.get(n, { repo = repo })
    if r then
      local b = r.backend
      if b == nil or b == 'auto' then b = roles.auto_backend() end
      out[#out + 1] = { name = n, backend = b or 'none', configured = r.backend or 'auto' }
    end
  end
  return out
end

-- The readable report; opts.color (boolean) colours usable / not ready.
function M.format(report, opts)
  local lines = {}
  for _, e in ipairs(report.backends) do
    local bits = {}
    if e.binary then
      bits[#bits + 1] = e.binary.found and (e.binary.path .. ' ' .. (e.binary.version or '?'))
        or 'not installed'
    else
      bits[#bits + 1] = 'built in'
    end
    if e.http and e.message and #e.todo == 0 then
      bits[#bits + 1] = e.message
    elseif e.endpoint.url and not e.http then
      bits[#bits + 1] = e.endpoint.url .. (e.endpoint.reachable and ' answers' or ' does not answer')
    end
    if not e.http then bits[#bits + 1] = e.key and ('key: ' .. e.key) or 'no key' end
    local word = e.usable and 'usable' or 'not ready'
    local label = word .. (' '):rep(9 - #word)
    if opts and opts.color then
      label = require('orch.color').sgr(e.usable and 'green' or 'yellow', word) .. (' '):rep(9 - #word)
    end
    lines[#lines + 1] = ('%-10s %s %s'):format(e.name, label, table.concat(bits, '; '))
    if e.binary and e.binary.note then lines[#lines + 1] = ('%-10s   (%s)'):format('', e.binary.note) end
    for _, t in ipairs(e.todo) do lines[#lines + 1] = ('%-10s   -> %s'):format('', t) end
  end
  if report.roles and #report.roles > 0 then
    lines[#lines + 1] = ''
    for _, r in ipairs(report.roles) do
      lines[#lines + 1] = ('role %-14s -> %s%s'):format(r.name, r.backend,
        r.configured == 'auto' and ' (auto)' or '')
    end
  end
  return table.concat(lines, '\n') .. '\n'
end

function M.cli(o)
  local report
  M.collect(nil, function(r) report = r end)
  while not report do core.run('once') end
  local root = require('orch.repo').find(o.repo or core.cwd())
  report.roles = M.roles(root)
  if o.json then
    io.stdout:write(require('orch.jsonout').doctor(report))
  else
    io.stdout:write(M.format(report, { color = require('orch.color').enabled(1) }))
  end
  for _, e in ipairs(report.backends) do if e.usable then return 0 end end
  return 1
end

return M
