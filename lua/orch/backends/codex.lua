-- The codex backend: OpenAI's Codex CLI, one `codex exec --json` process per
-- turn (see docs/backends.md).
--
-- First turn `codex exec --json --skip-git-repo-check --sandbox MODE -- PROMPT`,
-- follow-ups `codex exec --json ... resume THREAD_ID -- PROMPT` (the flags
-- before `resume`; the sandbox is not inherited, so it is given every turn).
-- orch writes a CODEX_HOME of its own in the task's scratch directory: the
-- user's config.toml with orch's provider and MCP server merged in, and
-- their auth.json linked (never copied), so their login keeps working and
-- no key is ever written.
local cli = require('orch.backends.cli')

local M = { name = 'codex' }

M.ENV_VAR = 'ORCH_CODEX_BIN'
M.INSTALL = 'install the Codex CLI with `npm i -g @openai/codex` ' ..
  '(orch is tested with 0.171.0; ./scripts/install-agents.sh installs that version)'
M.PROVIDER = 'orch'
M.ASK_TOOL = 'ask_orchestrator'

-- ---------------------------------------------------------------- config.toml

-- A TOML basic string.
function M.toml_string(s)
  s = tostring(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == '\\' then return '\\\\'
    elseif c == '\n' then return '\\n' elseif c == '\t' then return '\\t'
    elseif c == '\r' then return '\\r' end
    return ('\\u%04x'):format(c:byte())
  end)
  return '"' .. s .. '"'
end

local function toml_array(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = M.toml_string(v) end
  return '[' .. table.concat(parts, ', ') .. ']'
end

local function header_name(line)
  return line:match('^%s*%[%[?%s*([^%]]-)%s*%]%]?%s*$') or line:match('^%s*%[%[?%s*([^%]]-)%s*%]')
end

local function strip_quotes(name)
  return (name:gsub('"', ''):gsub("'", ''):gsub('%s*%.%s*', '.'))
end

-- Whether a table header belongs to what orch writes itself.
local function ours(name, owned)
  name = strip_quotes(name)
  for _, prefix in ipairs(owned) do
    if name == prefix or name:sub(1, #prefix + 1) == prefix .. '.' then return true end
  end
  return false
end

-- A setting that may hold a credential (by its name or its value): never
-- copied into the CODEX_HOME orch writes (it could outlive a crash there).
local SECRET_KEY = { 'token', 'secret', 'password', 'passwd', 'api_key', 'apikey', 'bearer',
                     'authorization', 'credential', 'cookie' }
local SECRET_VALUE = { 'bearer ', 'sk%-', 'ghp_', 'xox[bp]%-' }

function M.secret_line(line)
  local key, value = line:match('^%s*([^=]-)%s*=(.*)$')
  if not key then return false end
  local k, v = key:lower(), value:lower()
  if k:find('env_key', 1, true) or k:find('env_var', 1, true) then return false end -- names only
  for _, w in ipairs(SECRET_KEY) do if k:find(w, 1, true) then return true end end
  for _, p in ipairs(SECRET_VALUE) do if v:find(p) then return true end end
  return false
end

-- The user's config.toml without what orch sets (the top-level keys in
-- drop_keys, the tables under the names in owned), without their MCP
-- servers (an agent of orch's gets orch's only, as with claude's
-- --strict-mcp-config) and without any line that may hold a credential.
-- Returns the top-level lines and the table lines.
function M.filter_user_config(text, drop_keys, owned)
  local top, tables = {}, {}
  local in_tables, skipping = false, false
  local skip_names = { 'mcp_servers' }
  for _, o in ipairs(owned) do skip_names[#skip_names + 1] = o end
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    local h = line:match('^%s*%[') and header_name(line)
    if h then
      in_tables = true
      skipping = ours(h, skip_names)
      if not skipping then tables[#tables + 1] = line end
    elseif M.secret_line(line) then -- luacheck: ignore 542
      -- left out
    elseif in_tables then
      if not skipping then tables[#tables + 1] = line end
    else
      local key = line:match('^%s*([%w_%-]+)%s*=')
      if not (key and (drop_keys[key] or key == 'mcp_servers')) then top[#top + 1] = line end
    end
  end
  while top[#top] == '' do top[#top] = nil end
  while tables[#tables] == '' do tables[#tables] = nil end
  return top, tables
end

-- The config.toml orch writes. o = {user= (text of the user's own, or nil),
-- provider={base_url=, env_key=} | nil, mcp={command=, args=, env_vars=} | nil,
-- instructions=}.
function M.config_toml(o)
  local drop, owned = {}, { 'mcp_servers.orch' }
  local head, tail = {}, {}
  head[#head + 1] = '# written by orch for one task; the user\'s own settings follow'
  if o.provider then
    drop.model_provider = true
    owned[#owned + 1] = 'model_providers.' .. M.PROVIDER
    head[#head + 1] = 'model_provider = ' .. M.toml_string(M.PROVIDER)
  end
  if o.instructions and o.instructions ~= '' then
    drop.developer_instructions = true
    head[#head + 1] = 'developer_instructions = ' .. M.toml_string(o.instructions)
  end
  local utop, utables = {}, {}
  if o.user and o.user ~= '' then utop, utables = M.filter_user_config(o.user, drop, owned) end
  if o.provider then
    tail[#tail + 1] = ''
    tail[#tail + 1] = '[model_providers.' .. M.PROVIDER .. ']'
    tail[#tail + 1] = 'name = ' .. M.toml_string('orch (' .. o.provider.base_url .. ')')
    tail[#tail + 1] = 'base_url = ' .. M.toml_string(o.provider.base_url)
    tail[#tail + 1] = 'env_key = ' .. M.toml_string(o.provider.env_key)
    tail[#tail + 1] = 'wire_api = "responses"'
    if o.provider.idle_ms then
      tail[#tail + 1] = 'stream_idle_timeout_ms = ' .. tostring(o.provider.idle_ms)
    end
  end
  if o.mcp then
    tail[#tail + 1] = ''
    tail[#tail + 1] = '[mcp_servers.orch]'
    tail[#tail + 1] = 'command = ' .. M.toml_string(o.mcp.command)
    tail[#tail + 1] = 'args = ' .. toml_array(o.mcp.args or {})
    -- codex hands the server only HOME, PATH and a few more
    tail[#tail + 1] = 'env_vars = ' .. toml_array(o.mcp.env_vars or {})
    tail[#tail + 1] = 'required = true'
    tail[#tail + 1] = 'startup_timeout_sec = 20'
    tail[#tail + 1] = 'tool_timeout_sec = 86400'
    -- exec never asks, so a tool that is not approved fails
    tail[#tail + 1] = 'default_tools_approval_mode = "approve"'
  end
  local out = {}
  for _, l in ipairs(head) do out[#out + 1] = l end
  for _, l in ipairs(utop) do out[#out + 1] = l end
  if #utables > 0 then
    out[#out + 1] = ''
    for _, l in ipairs(utables) do out[#out + 1] = l end
  end
  for _, l in ipairs(tail) do out[#out + 1] = l end
  return table.concat(out, '\n') .. '\n'
end

-- The user's own CODEX_HOME (where their config.toml and auth.json are).
function M.user_home(ctx)
  local h = cli.getenv(ctx, 'CODEX_HOME')
  if h and h ~= '' then return h end
  return (os.getenv('HOME') or '') .. '/.codex'
end

-- The provider: the role's endpoint, else OPENAI_BASE_URL, else none (the
-- user's own provider and login).
function M.provider(ctx)
  local role = ctx.role or {}
  local ep = role.endpoint
  -- the role's request_timeout: codex's own stream idle timeout (it then
  -- retries inside the turn itself; docs/resilience.md)
  local idle = tonumber(role.request_timeout) and math.floor(tonumber(role.request_timeout) * 1000)
  if type(ep) == 'table' and ep.base_url then
    return { base_url = ep.base_url, env_key = ep.api_key_env or 'OPENAI_API_KEY', idle_ms = idle }
  end
  local base = cli.getenv(ctx, 'OPENAI_BASE_URL')
  if base and base ~= '' then return { base_url = base, env_key = 'OPENAI_API_KEY', idle_ms = idle } end
  return nil
end

local function env_names(env)
  local names = {}
  for k, v in pairs(env or {}) do if v then names[#names + 1] = k end end
  table.sort(names)
  return names
end

-- The MCP server entry for ctx.mcp.
function M.mcp_entry(ctx)
  local mcp = ctx.mcp
  if not (mcp and mcp.argv) then return nil end
  local args = {}
  for i = 2, #mcp.argv do args[#args + 1] = mcp.argv[i] end
  local vars = env_names(mcp.env)
  if #vars == 0 then vars = { 'ORCH_CONTROL', 'ORCH_TASK' } end
  return { command = mcp.argv[1], args = args, env_vars = vars }
end

-- The CODEX_HOME of a turn: the one the conversation's thread lives in
-- (a task that continues another's conversation uses that task's), else
-- the task's own under REPO/.orch/agents/RUN/TASK/ (kept after the run, so
-- that `orch attach` can open the thread).
function M.home_for(ctx)
  local data = ctx.session and ctx.session.data
  local h = type(data) == 'table' and data.codex_home or nil
  if type(h) == 'string' and require('orch.core').readdir(h) then return h end
  return cli.state_dir(ctx, 'codex-home')
end

-- Writes CODEX_HOME for this turn; returns its path.
function M.write_home(ctx)
  local home = M.home_for(ctx)
  local uhome = M.user_home(ctx)
  local user = uhome ~= home and cli.read_file(uhome .. '/config.toml') or nil
  local text = M.config_toml({
    user = user, provider = M.provider(ctx), mcp = M.mcp_entry(ctx),
    instructions = ctx.system_prompt or (ctx.role or {}).system_prompt,
  })
  local ok, err = cli.write_file(home .. '/config.toml', text)
  if not ok then return nil, 'cannot write ' .. home .. '/config.toml: ' .. tostring(err) end
  -- the user's login: a link, so a token codex refreshes goes back to them
  local auth = uhome .. '/auth.json'
  if uhome ~= home and cli.read_file(auth) and not cli.read_file(home .. '/auth.json') then
    os.execute(("ln -sf '%s' '%s/auth.json'"):format(auth:gsub("'", "'\\''"), home:gsub("'", "'\\''")))
  end
  return home
end

-- ---------------------------------------------------------------- arguments

function M.sandbox(tools)
  if tools == 'read-only' then return 'read-only' end
  return 'workspace-write'
end

-- The arguments after the binary, and the prompt on stdin (or nil).
function M.build_args(ctx, thread_id)
  local role = ctx.role or {}
  local tools = ctx.tools or role.tools or 'edit'
  local a = { 'exec', '--json', '--skip-git-repo-check', '--sandbox', M.sandbox(tools) }
  local function add(...) for _, v in ipairs({ ... }) do a[#a + 1] = v end end
  if tools == 'full' then add('-c', 'sandbox_workspace_write.network_access=true') end
  local model = ctx.model or role.model
  if model and model ~= '' then add('-m', model) end
  cli.add_extra(a, role)
  if thread_id then add('resume') end
  local pargs, input = cli.prompt_args(ctx.prompt, '-')
  if thread_id then
    if input then add(thread_id, '-') else add('--', thread_id, ctx.prompt or '') end
  else
    add(unpack(pargs))
  end
  return a, input
end

function M.build_env(ctx, home, tmpdir)
  -- TMPDIR must not hold CODEX_HOME: codex refuses to set up its sandbox
  -- helper under a temporary directory ("bwrap: execvp codex-linux-sandbox")
  local env = cli.env(ctx.env, { CODEX_HOME = home, TMPDIR = tmpdir })
  -- what orch mcp needs reaches it through env_vars, from codex's own env
  for k, v in pairs(ctx.mcp and ctx.mcp.env or {}) do env[k] = v end
  return env
end

-- ---------------------------------------------------------------- events

local RETRYABLE = { 'rate limit', 'too many requests', '429', 'high demand', 'temporar',
                    'overloaded', 'stream disconnected', 'timed out', 'timeout', 'connection',
                    'internal server error', 'service unavailable', 'bad gateway', 'reconnecting',
                    ' 50%d', 'status 5%d%d' }

function M.retryable(msg)
  if cli.fatal(msg) then return false end
  msg = tostring(msg or ''):lower()
  for _, p in ipairs(RETRYABLE) do
    if msg:find(p) then return true end
  end
  return false
end

local DENIED = { 'read%-only file system', 'operation not permitted', 'permission denied' }

-- Normalised as everywhere in orch: input_tokens without the cached ones
-- (OpenAI counts cached input inside input_tokens).
local function usage_of(u)
  if type(u) ~= 'table' then return nil end
  local cached = tonumber(u.cached_input_tokens) or 0
  local input = tonumber(u.input_tokens) or 0
  return {
    input_tokens = input >= cached and input - cached or input,
    output_tokens = tonumber(u.output_tokens) or 0,
    cache_read_tokens = cached,
    cache_write_tokens = tonumber(u.cache_write_input_tokens) or 0,
  }
end

-- codex reports no cost: priced from the role's `price` or orch's table of
-- list prices when the model is known there; else none (never a guess).
function M.cost(usage, model, own_price)
  local ok, prices = pcall(require, 'orch.agent.prices')
  if not ok or not usage then return nil end
  return prices.cost(usage, prices.of(model, own_price))
end

-- codex reports the thread's running total on every turn: this turn is the
-- difference from the total stored with the session.
local function delta(total, prev)
  if not prev then return total end
  local d = {}
  for k, v in pairs(total) do
    local p = tonumber(prev[k]) or 0
    d[k] = v >= p and v - p or v
  end
  return d
end

local function item_call(item)
  local t = item.type
  if t == 'command_execution' then
    return 'shell', { command = item.command }
  elseif t == 'file_change' then
    return 'apply_patch', { changes = item.changes }
  elseif t == 'mcp_tool_call' then
    return 'mcp__' .. tostring(item.server) .. '__' .. tostring(item.tool),
           type(item.arguments) == 'table' and item.arguments or { arguments = item.arguments }
  elseif t == 'web_search' then
    return 'web_search', { query = item.query }
  end
end

local function item_output(item)
  if item.type == 'command_execution' then
    return item.aggregated_output or '', (item.exit_code ~= nil and item.exit_code ~= 0)
      or item.status == 'failed' or item.status == 'declined'
  elseif item.type == 'mcp_tool_call' then
    local r = item.result
    local text = ''
    if type(r) == 'table' and type(r.content) == 'table' then
      local parts = {}
      for _, c in ipairs(r.content) do
        if type(c) == 'table' and type(c.text) == 'string' then parts[#parts + 1] = c.text end
      end
      text = table.concat(parts, '\n')
    elseif type(item.error) == 'table' then
      text = tostring(item.error.message)
    end
    return text, item.status == 'failed' or item.error ~= nil and item.error ~= cli.json.null
  elseif item.type == 'file_change' then
    return item.status or '', item.status == 'failed'
  end
  return '', false
end

-- Turns one JSONL event into normalised events. st: {thread_id=, prev=,
-- sandbox=, started={}, usage=, error=, text=}.
function M.parse(obj, st, emit)
  local t = obj.type
  if t == 'thread.started' then
    if obj.thread_id and obj.thread_id ~= st.thread_id then
      st.thread_id = obj.thread_id
      emit({ type = 'session', session_id = obj.thread_id,
             data = { codex_home = st.home, usage_total = st.prev } })
    end
  elseif t == 'item.started' or t == 'item.completed' or t == 'item.updated' then
    local item = type(obj.item) == 'table' and obj.item or {}
    if item.type == 'agent_message' then
      if t == 'item.completed' and type(item.text) == 'string' then
        st.text = item.text
        emit({ type = 'text', text = cli.bound(item.text) })
      end
    elseif item.type == 'error' then
      -- warnings (unknown model metadata, ...): not a failure
      st.warnings = (st.warnings or 0) + 1
    else
      local tool, input = item_call(item)
      if tool and item.id and not st.started[item.id] and t ~= 'item.updated' then
        st.started[item.id] = true
        emit({ type = 'tool_call', tool = tool, id = item.id, input = input })
        if item.type == 'mcp_tool_call' and item.tool == M.ASK_TOOL and type(input.question) == 'string' then
          emit({ type = 'question', question = cli.bound(input.question) })
        end
      end
      if tool and t == 'item.completed' then
        local out, is_err = item_output(item)
        emit({ type = 'tool_result', id = item.id, output = cli.bound(out), is_error = is_err == true })
        if is_err and st.sandbox == 'read-only' then
          local low = tostring(out):lower()
          for _, p in ipairs(DENIED) do
            if low:find(p) then
              emit({ type = 'denied', tool = tool, message = cli.bound(out, 2000) })
              break
            end
          end
        end
      end
    end
  elseif t == 'turn.completed' then
    local total = usage_of(obj.usage)
    if total then
      local u = delta(total, st.prev)
      st.usage = cli.add_usage(st.usage, u)
      st.total = total
      local cost = M.cost(u, st.model, st.price)
      if cost then st.cost = (st.cost or 0) + cost end
      emit({ type = 'usage', usage = u, cost_usd = cost })
      -- the new running total goes with the session, for the next turn
      if st.thread_id then
        emit({ type = 'session', session_id = st.thread_id,
               data = { codex_home = st.home, usage_total = total } })
      end
      st.prev = total
    end
    st.completed = true
  elseif t == 'turn.failed' then
    local e = type(obj.error) == 'table' and obj.error.message or obj.error
    st.error = tostring(e or 'turn failed')
    emit({ type = 'error', message = cli.bound(st.error, 8000), retryable = M.retryable(st.error) })
  elseif t == 'error' then
    -- "Reconnecting... 1/5" and the like come as `error` too: only a
    -- turn.failed (or an exit without turn.completed) fails the turn
    st.last_error = tostring(obj.message or '')
  end
end

function M.finish(turn, code, sig)
  local st = turn.state
  local res = { exit_code = code, signal = sig, session_id = st.thread_id, usage = st.usage,
                text = st.text, cost_usd = st.cost }
  if st.completed and not st.error and code == 0 and not sig then
    res.ok = true
    if turn.ctx.emit then
      turn.ctx.emit({ type = 'result', text = cli.bound(st.text or '', 1024 * 1024), ok = true })
    end
  else
    res.ok = false
    res.error = st.error or st.last_error
    if res.error and res.error ~= '' then
      res.retryable = M.retryable(res.error)
    else
      res.error = cli.exit_message(turn, code, sig, st.bin, M.INSTALL)
      res.retryable = false
    end
  end
  return res
end

-- ---------------------------------------------------------------- turns

local function bin_of(ctx)
  return cli.find_bin({ name = 'codex', env_var = M.ENV_VAR, command = (ctx.role or {}).command,
                        install = M.INSTALL, env = ctx.env })
end

local function run(ctx, thread_id)
  local bin, berr = bin_of(ctx)
  if not bin then return nil, berr end
  local home, herr = M.write_home(ctx)
  if not home then return nil, herr end
  local emit = ctx.emit or function() end
  local tmpdir = cli.turn_tmpdir(ctx)
  local args, input = M.build_args(ctx, thread_id)
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs(args) do argv[#argv + 1] = v end
  local sdata = ctx.session and ctx.session.data or {}
  local st = { thread_id = thread_id, started = {}, home = home, bin = bin[1],
               prev = type(sdata) == 'table' and sdata.usage_total or nil,
               sandbox = M.sandbox(ctx.tools or (ctx.role or {}).tools or 'edit'),
               model = ctx.model or (ctx.role or {}).model, price = (ctx.role or {}).price }
  return cli.turn(ctx, {
    name = 'codex', argv = argv, env = M.build_env(ctx, home, tmpdir), input = input,
    tmpdir = tmpdir, state = st,
    on_json = function(obj) M.parse(obj, st, emit) end,
    finish = M.finish,
  })
end

cli.session_entry_points(M, run)

M.check = cli.doctor_check(bin_of, '([%d%.]+)')

-- `codex resume ID` with the CODEX_HOME the thread lives in. Returns argv, env.
function M.attach_argv(session, cwd, env)
  local bin, err = bin_of({ env = env })
  if not bin then return nil, err end
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs({ 'resume', '-C', cwd, session.id }) do argv[#argv + 1] = v end
  local home = type(session.data) == 'table' and session.data.codex_home or nil
  if home and not cli.read_file(home .. '/config.toml') then
    return nil, ('the codex thread %s lived in %s, which is gone (removed by orch clean, ' ..
      'or the run kept it in its scratch directory)'):format(session.id, home)
  end
  return argv, home and { CODEX_HOME = home } or {}
end

return M
