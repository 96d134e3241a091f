-- orch.roles: agent roles (coder, reviewer, tester, orchestrator, ...).
--
-- A role is one file, NAME.yaml (or .yml) or NAME.lua (returning a table),
-- read from three places in order; a later file overrides an earlier one of
-- the same name field by field (tables such as env and limits key by key):
--
--   <orch>/roles/                 shipped defaults
--   $XDG_CONFIG_HOME/orch/roles/  the user's (default ~/.config/orch/roles/)
--   <repo>/.orch/roles/           the repository's
--
--   roles.load({repo=})            -> set {name=role} | nil, "FILE:LINE: msg"
--   roles.get(name, {repo=})       -> role | nil, err
--   roles.for_task(task, {repo=})  -> role | nil, err  (task overrides applied,
--                                    backend 'auto' resolved)
--   roles.reload({repo=})          -> true | nil, err (a broken edit keeps the
--                                    roles already loaded)
--   roles.names({repo=})           -> sorted list of role names
--
-- Fields (docs/roles.md): description, backend, model, tools, system_prompt,
-- env, limits {turns, time, budget_usd}, endpoint {base_url, api_key_env},
-- bootstrap, retries, request_timeout, stall_timeout, breaker,
-- fallback_backend, fallback_model, sandbox, network, unconfined_shell,
-- command, extra_args.
local core = require('orch.core')
local posyaml = require('orch.posyaml')
local posjson = require('orch.posjson')

local M = {}

M.BACKENDS = { 'auto', 'exec', 'claude', 'codex', 'crush', 'openai', 'anthropic' }
M.TOOLSETS = { 'read-only', 'edit', 'full' }

-- field -> kind: 'string', 'number', 'bool', 'map' (string -> string or
-- number), 'table' (any table), 'tools', 'backend'
M.FIELDS = {
  description = 'string', backend = 'backend', model = 'string', tools = 'tools',
  system_prompt = 'string', env = 'map', limits = 'table', endpoint = 'table',
  bootstrap = 'string', retries = 'table', request_timeout = 'number',
  stall_timeout = 'number', breaker = 'table', fallback_backend = 'backend',
  fallback_model = 'string', sandbox = 'bool', network = 'bool',
  unconfined_shell = 'bool', command = 'string', extra_args = 'table',
  verdict = 'string', name = 'string', max_tokens = 'number', price = 'table',
}
M.SUBFIELDS = {
  limits = { turns = 'number', time = 'number', budget_usd = 'number' },
  endpoint = { base_url = 'string', api_key_env = 'string' },
  retries = { attempts = 'number', base = 'number', ceiling = 'number', total = 'number' },
  breaker = { failures = 'number', window = 'number', cooldown = 'number' },
  price = { input = 'number', output = 'number', cache_read = 'number', cache_write = 'number' },
}

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local function read(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read('*a')
  f:close()
  return s
end

function M.dirs(repo)
  local dirs = { core.runtime_dir() .. '/roles' }
  local user = require('orch.config').user_dir()
  if user then dirs[#dirs + 1] = user .. '/roles' end
  if repo then dirs[#dirs + 1] = repo .. '/.orch/roles' end
  return dirs
end

local function is_in(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- ------------------------------------------------------------ validation

local function line_of(pos, tbl, key)
  local p = pos and pos[tbl]
  if not p then return 0 end
  if key ~= nil and p.keys and p.keys[key] then return p.keys[key] end
  return p.line or 0
end

local function check_value(kind, v)
  if v == posjson.null then return true end
  if kind == 'string' then return type(v) == 'string', 'a string' end
  if kind == 'number' then return type(v) == 'number' and v >= 0, 'a number >= 0' end
  if kind == 'bool' then return type(v) == 'boolean', 'true or false' end
  if kind == 'backend' then
    -- shipped ones, or a user's module orch.backends.NAME
    return type(v) == 'string' and v:find('^[%w_]+$') ~= nil,
      'a backend name (' .. table.concat(M.BACKENDS, ', ') .. ', or your own module)'
  end
  if kind == 'tools' then
    if type(v) == 'string' then
      return is_in(M.TOOLSETS, v), 'read-only, edit, full, or a list of tool names'
    end
    if type(v) ~= 'table' then return false, 'read-only, edit, full, or a list of tool names' end
    for _, x in pairs(v) do
      if type(x) ~= 'string' then return false, 'a list of tool names (strings)' end
    end
    return true
  end
  if kind == 'map' then
    if type(v) ~= 'table' then return false, 'a mapping of names to strings' end
    for k, x in pairs(v) do
      if type(k) ~= 'string' or (type(x) ~= 'string' and type(x) ~= 'number') then
        return false, 'a mapping of names to strings'
      end
    end
    return true
  end
  if kind == 'table' then return type(v) == 'table', 'a mapping' end
  return false, 'unknown'
end

-- Returns the role table cleaned (nulls dropped, numbers in env made
-- strings), or nil and "FILE:LINE: message".
local function validate(file, doc, pos)
  if type(doc) ~= 'table' then
    return nil, ('%s:%d: a role is a mapping of fields (backend, model, tools, ...)')
      :format(file, line_of(pos, doc))
  end
  local out = {}
  for k, v in pairs(doc) do
    local kind = M.FIELDS[k]
    if not kind then
      local hint = require('orch.plan').suggest(tostring(k), (function()
        local ks = {}
        for f in pairs(M.FIELDS) do ks[#ks + 1] = f end
        table.sort(ks)
        return ks
      end)())
      return nil, ("%s:%d: unknown role field '%s'%s"):format(file, line_of(pos, doc, k),
        tostring(k), hint and ("; did you mean '" .. hint .. "'?") or '')
    end
    local ok, want = check_value(kind, v)
    if not ok then
      return nil, ('%s:%d: %s must be %s'):format(file, line_of(pos, doc, k), k, want)
    end
    local sub = M.SUBFIELDS[k]
    if sub and v ~= posjson.null then
      for sk, sv in pairs(v) do
        local skind = sub[sk]
        if not skind then
          return nil, ("%s:%d: unknown field '%s.%s'"):format(file, line_of(pos, v, sk), k, tostring(sk))
        end
        local sok, swant = check_value(skind, sv)
        if not sok then
          return nil, ('%s:%d: %s.%s must be %s'):format(file, line_of(pos, v, sk), k, sk, swant)
        end
      end
    end
    if v ~= posjson.null then
      if kind == 'map' then
        local m = {}
        for mk, mv in pairs(v) do m[mk] = tostring(mv) end
        v = m
      end
      out[k] = v
    end
  end
  return out
end

-- Decodes one role file: role table, or nil and "FILE:LINE: message".
function M.parse_file(path)
  local text, rerr = read(path)
  if not text then return nil, ('%s: cannot read: %s'):format(path, tostring(rerr)) end
  if path:match('%.lua$') then
    local chunk, lerr = load(text, '@' .. path, 't', {})
    if not chunk then return nil, lerr end
    local ok, v = pcall(chunk)
    if not ok then return nil, tostring(v) end
    return validate(path, v, nil)
  end
  local doc, pos = posyaml.decode(text)
  if doc == nil then
    return nil, ('%s:%d: %s'):format(path, pos.line or 0, pos.msg or 'invalid YAML')
  end
  return validate(path, doc, pos)
end

-- ------------------------------------------------------------ loading

local function copy(v)
  if type(v) ~= 'table' then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

-- b's fields over a's; tables of SUBFIELDS and env merged key by key.
local function overlay(a, b)
  local out = copy(a)
  for k, v in pairs(b) do
    if (M.SUBFIELDS[k] or k == 'env') and type(out[k]) == 'table' and type(v) == 'table' then
      for sk, sv in pairs(v) do out[k][sk] = copy(sv) end
    else
      out[k] = copy(v)
    end
  end
  return out
end

local function role_files(dir)
  local names = core.readdir(dir)
  if not names then return {} end
  table.sort(names)
  local files = {}
  for _, n in ipairs(names) do
    local base, ext = n:match('^([%w_%-%.]+)%.(%a+)$')
    if base and (ext == 'yaml' or ext == 'yml' or ext == 'lua') then
      files[#files + 1] = { name = base, path = dir .. '/' .. n }
    end
  end
  return files
end

-- Reads every role: set of name -> role (with .name and .files), or nil, err.
function M.read_all(repo)
  local set = {}
  for _, dir in ipairs(M.dirs(repo)) do
    for _, f in ipairs(role_files(dir)) do
      local r, err = M.parse_file(f.path)
      if not r then return nil, err end
      local prev = set[f.name]
      local merged = prev and overlay(prev, r) or r
      merged.name = f.name
      merged.files = prev and copy(prev.files) or {}
      merged.files[#merged.files + 1] = f.path
      set[f.name] = merged
    end
  end
  return set
end

M.cache = {} -- repo (or '') -> set

function M.load(o)
  local key = (o and o.repo) or ''
  if M.cache[key] then return M.cache[key] end
  local set, err = M.read_all(o and o.repo)
  if not set then return nil, err end
  M.cache[key] = set
  return set
end

-- Re-reads the role files; on an error the roles already loaded stay.
function M.reload(o)
  local key = (o and o.repo) or ''
  local set, err = M.read_all(o and o.repo)
  if not set then return nil, err end
  M.cache[key] = set
  return true
end

function M.names(o)
  local set = M.load(o) or {}
  local out = {}
  for n in pairs(set) do out[#out + 1] = n end
  table.sort(out)
  return out
end

function M.get(name, o)
  local set, err = M.load(o)
  if not set then return nil, err end
  local r = set[name]
  if not r then
    local hint = require('orch.plan').suggest(name, M.names(o))
    return nil, ("no role '%s' (roles: %s)%s"):format(name, table.concat(M.names(o), ', '),
      hint and ("; did you mean '" .. hint .. "'?") or '')
  end
  return copy(r)
end

-- ------------------------------------------------------------ backend 'auto'

local function on_path(bin)
  local path = os.getenv('PATH') or ''
  for dir in path:gmatch('[^:]+') do
    if exists(dir .. '/' .. bin) then return dir .. '/' .. bin end
  end
  return nil
end
M.on_path = on_path

local function set_env(name)
  local v = os.getenv(name)
  return v ~= nil and v ~= ''
end

-- What 'auto' means on this machine: ORCH_BACKEND if set; else claude, else
-- codex on PATH; else an HTTP endpoint named by the environment.
function M.auto_backend()
  local forced = os.getenv('ORCH_BACKEND')
  if forced and forced ~= '' and forced ~= 'auto' then return forced end
  if on_path('claude') then return 'claude' end
  if on_path('codex') then return 'codex' end
  if set_env('ANTHROPIC_BASE_URL') or set_env('ANTHROPIC_API_KEY') then return 'anthropic' end
  if set_env('OPENAI_BASE_URL') or set_env('OPENAI_API_KEY') then return 'openai' end
  return nil, 'no agent backend found: install Claude Code (npm i -g @anthropic-ai/claude-code) ' ..
    'or Codex (npm i -g @openai/codex), or set ANTHROPIC_API_KEY / OPENAI_BASE_URL ' ..
    '(orch doctor says what is usable here)'
end

-- The role a plan task runs as, with the task's backend and model applied.
-- A task with a cmd and no role is the exec backend.
function M.for_task(task, o)
  if task.cmd and not task.role then
    return { name = 'exec', backend = 'exec', tools = 'full' }
  end
  local r, err = M.get(task.role or 'coder', o)
  if not r then return nil, ('task %s: %s'):format(task.id or '?', err) end
  if task.backend then r.backend = task.backend end
  if task.model then r.model = task.model end
  if task.cmd and not task.backend then r.backend = 'exec' end
  if r.backend == nil or r.backend == 'auto' then
    local b, berr = M.auto_backend()
    if not b then return nil, ('task %s (role %s): %s'):format(task.id or '?', r.name, berr) end
    r.backend = b
  end
  r.tools = r.tools or 'edit'
  return r
end

return M
