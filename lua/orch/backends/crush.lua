-- The crush backend: Charm's Crush CLI, one `crush run` per turn (see
-- docs/backends.md).
--
--   crush run -q -v --cwd WORKTREE --data-dir DATA [-m MODEL] [--session ID] -- PROMPT
--
-- `crush run` prints only the final reply, so orch reads the conversation
-- back afterwards: `crush session last --json` (first turn) or `crush
-- session show ID --json`, and turns the new messages into events. The
-- session id also shows early on stderr with -v ("session_id=..."), so a
-- crash mid-turn can still continue the conversation. The provider, the
-- models, orch's MCP server and the tool set come from a crush.json orch
-- writes in the task's scratch ($CRUSH_GLOBAL_DATA, layered over the
-- user's own ~/.config/crush/crush.json); the data directory is per task,
-- outside the worktree.
local cli = require('orch.backends.cli')
local launcher = require('orch.launcher')

local M = { name = 'crush' }

M.ENV_VAR = 'ORCH_CRUSH_BIN'
M.INSTALL = 'install Crush from https://github.com/charmbracelet/crush ' ..
  '(brew install charmbracelet/tap/crush, or a release binary; orch is tested with v0.90.0)'
M.PROVIDER = 'orch'
M.ASK_TOOL = 'mcp_orch_ask_orchestrator'

-- Built-in tools a tool set takes away (crush run approves every tool
-- itself, so what must not happen is not offered).
M.DISABLED = {
  ['read-only'] = { 'bash', 'download', 'edit', 'multiedit', 'write', 'job_kill',
                    'job_output', 'lsp_rename', 'lsp_replace_symbol' },
  edit = { 'bash', 'job_kill', 'job_output' },
  full = {},
}

M.ALL_TOOLS = { 'agent', 'bash', 'crush_info', 'crush_logs', 'job_output', 'job_kill',
                'download', 'edit', 'multiedit', 'lsp_diagnostics', 'lsp_references',
                'lsp_restart', 'lsp_symbols', 'lsp_definition', 'lsp_call_hierarchy',
                'lsp_rename', 'lsp_replace_symbol', 'fetch', 'agentic_fetch', 'glob', 'grep',
                'ls', 'question', 'sourcegraph', 'todos', 'view', 'write' }

function M.disabled_tools(tools)
  if type(tools) == 'table' then
    local keep, out = {}, {}
    for _, t in ipairs(tools) do keep[t] = true end
    for _, t in ipairs(M.ALL_TOOLS) do if not keep[t] then out[#out + 1] = t end end
    return out
  end
  return M.DISABLED[tools] or M.DISABLED.edit
end

-- The provider: the role's endpoint, else OPENAI_BASE_URL, else none (the
-- user's own crush configuration decides).
function M.provider(ctx)
  local ep = (ctx.role or {}).endpoint
  if type(ep) == 'table' and ep.base_url then
    return { base_url = ep.base_url, env_key = ep.api_key_env or 'OPENAI_API_KEY' }
  end
  local base = cli.getenv(ctx, 'OPENAI_BASE_URL')
  if base and base ~= '' then return { base_url = base, env_key = 'OPENAI_API_KEY' } end
  return nil
end

-- Debian's lua-cjson 2.1.0 cannot write an empty JSON list: leave it out.
local function list_or_nil(t) if #t > 0 then return t end end

-- The crush.json table for a turn. The key is never in it: crush expands
-- "$NAME" in api_key from its environment.
function M.config(ctx)
  local role = ctx.role or {}
  local tools = ctx.tools or role.tools or 'edit'
  local model = ctx.model or role.model
  local cfg = {
    ['$schema'] = 'https://charm.land/crush.json',
    options = {
      disable_provider_auto_update = true,
      disable_metrics = true,
      disabled_tools = list_or_nil(M.disabled_tools(tools)),
      auto_lsp = false,
    },
  }
  local p = M.provider(ctx)
  if p then
    model = model or 'default'
    cfg.providers = { [M.PROVIDER] = {
      type = 'openai-compat', name = 'orch', base_url = p.base_url,
      api_key = '$' .. p.env_key,
      system_prompt_prefix = ctx.system_prompt or role.system_prompt,
      discover_models = false,
      models = { { id = model, name = model, context_window = 128000, default_max_tokens = 8192 } },
    } }
    cfg.models = {
      large = { model = model, provider = M.PROVIDER },
      small = { model = model, provider = M.PROVIDER },
    }
    cfg.options.disable_default_providers = true
  end
  if ctx.mcp and ctx.mcp.argv then
    local args = {}
    for i = 2, #ctx.mcp.argv do args[#args + 1] = ctx.mcp.argv[i] end
    local env = {}
    for k, v in pairs(ctx.mcp.env or {}) do if v then env[k] = tostring(v) end end
    cfg.mcp = { orch = { type = 'stdio', command = ctx.mcp.argv[1], args = list_or_nil(args),
                         env = next(env) and env or nil, timeout = 30 } }
  end
  return cfg
end

-- The arguments after the binary, and the prompt on stdin (or nil).
function M.build_args(ctx, data_dir, session_id)
  local a = { 'run', '-q', '-v', '--cwd', ctx.cwd, '--data-dir', data_dir }
  local model = ctx.model or (ctx.role or {}).model
  if model and model ~= '' and not M.provider(ctx) then a[#a + 1] = '-m' a[#a + 1] = model end
  if session_id then a[#a + 1] = '--session' a[#a + 1] = session_id end
  cli.add_extra(a, ctx.role)
  local prompt = ctx.prompt or ''
  local sp = ctx.system_prompt or (ctx.role or {}).system_prompt
  if not session_id and sp and sp ~= '' and not M.provider(ctx) then
    -- no provider of orch's to carry the role's prompt: it leads the first turn
    prompt = sp .. '\n\n' .. prompt
  end
  local pargs, input = cli.prompt_args(prompt)
  for _, v in ipairs(pargs) do a[#a + 1] = v end
  return a, input
end

function M.build_env(ctx, global_data, tmpdir)
  return cli.env(ctx.env, { CRUSH_GLOBAL_DATA = global_data, TMPDIR = tmpdir,
                            CRUSH_CLIENT_SERVER = false, CRUSH_DISABLE_METRICS = '1' })
end

-- ---------------------------------------------------------------- session JSON

local function input_table(s)
  if type(s) == 'table' then return s end
  if type(s) ~= 'string' or s == '' then return {} end
  local ok, v = pcall(cli.json.decode, s)
  if ok and type(v) == 'table' then return v end
  return { input = s }
end

-- The events of `crush session show --json` output from message index
-- `from` on (0-based count already seen). Returns events, info with
-- {id=, messages=N, prompt_tokens=, completion_tokens=, cost=, text=}.
function M.session_events(doc, from, disabled)
  local ev, info = {}, {}
  if type(doc) ~= 'table' then return ev, info end
  local meta = type(doc.meta) == 'table' and doc.meta or {}
  info.id = meta.uuid or meta.id
  info.prompt_tokens = tonumber(meta.prompt_tokens) or 0
  info.completion_tokens = tonumber(meta.completion_tokens) or 0
  info.cost = tonumber(meta.cost) or 0
  local msgs = type(doc.messages) == 'table' and doc.messages or {}
  info.messages = #msgs
  local off = {}
  for _, t in ipairs(disabled or {}) do off[t] = true end
  for i = (from or 0) + 1, #msgs do
    local m = msgs[i]
    local parts = type(m) == 'table' and type(m.parts) == 'table' and m.parts or {}
    for _, p in ipairs(parts) do
      if type(p) == 'table' then
        if p.type == 'text' and m.role == 'assistant' and type(p.text) == 'string' and p.text ~= '' then
          info.text = p.text
          ev[#ev + 1] = { type = 'text', text = cli.bound(p.text) }
        elseif p.type == 'tool_call' then
          local input = input_table(p.input)
          ev[#ev + 1] = { type = 'tool_call', tool = p.name, id = p.tool_call_id, input = input }
          if p.name == M.ASK_TOOL and type(input.question) == 'string' then
            ev[#ev + 1] = { type = 'question', question = cli.bound(input.question) }
          end
        elseif p.type == 'tool_result' then
          ev[#ev + 1] = { type = 'tool_result', id = p.tool_call_id,
                          output = cli.bound(p.content or ''), is_error = p.is_error == true }
          if p.is_error and off[p.name] then
            ev[#ev + 1] = { type = 'denied', tool = p.name,
                            message = 'the role does not offer ' .. tostring(p.name) .. ': ' ..
                              cli.bound(tostring(p.content or ''), 2000) }
          end
        end
      end
    end
  end
  return ev, info
end

-- The usage of this turn: crush keeps running totals on the session.
function M.turn_usage(info, prev)
  prev = prev or {}
  local function d(a, b) a, b = a or 0, b or 0 return a >= b and a - b or a end
  return {
    input_tokens = d(info.prompt_tokens, prev.prompt_tokens),
    output_tokens = d(info.completion_tokens, prev.completion_tokens),
    cache_read_tokens = 0, cache_write_tokens = 0,
  }, d(info.cost, prev.cost)
end

local RETRYABLE = { 'rate limit', 'too many requests', '429', 'overloaded', 'temporar',
                    'timeout', 'timed out', 'connection', 'internal server error',
                    'service unavailable', 'bad gateway', ' 50%d' }

function M.retryable(msg)
  if cli.fatal(msg) then return false end
  msg = tostring(msg or ''):lower()
  for _, p in ipairs(RETRYABLE) do if msg:find(p) then return true end end
  return false
end

-- ---------------------------------------------------------------- turns

local function bin_of(ctx)
  return cli.find_bin({ name = 'crush', env_var = M.ENV_VAR, command = (ctx.role or {}).command,
                        install = M.INSTALL, env = ctx.env })
end

-- Runs `crush session (last | show ID) --json` and hands the decoded JSON
-- (or nil, message) to cb.
function M.read_session(ctx, bin, data_dir, id, env, cb)
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs(id and { 'session', 'show', id, '--json' } or { 'session', 'last', '--json' }) do
    argv[#argv + 1] = v
  end
  argv[#argv + 1] = '--data-dir'
  argv[#argv + 1] = data_dir
  local out, errs = {}, {}
  local p, err = launcher.spawn({
    argv = argv, cwd = ctx.cwd, env = env,
    stdout = function(l) out[#out + 1] = l end,
    stderr = function(l) errs[#errs + 1] = l end,
    on_exit = function(code)
      local text = table.concat(out, '\n')
      local ok, doc = pcall(cli.json.decode, text)
      if code == 0 and ok and type(doc) == 'table' then return cb(doc) end
      cb(nil, ('crush session %s --json failed (status %s): %s'):format(
        id and 'show' or 'last', tostring(code), cli.bound(table.concat(errs, '\n'), 2000)))
    end,
  })
  if not p then cb(nil, err) end
end

local function run(ctx, session_id)
  local bin, berr = bin_of(ctx)
  if not bin then return nil, berr end
  local emit = ctx.emit or function() end
  local global = cli.state_dir(ctx, 'crush-global')
  -- a conversation lives in its data directory: a task that continues
  -- another's uses that one
  local sd = type(ctx.session and ctx.session.data) == 'table' and ctx.session.data.data_dir
  local data_dir = (type(sd) == 'string' and require('orch.core').readdir(sd)) and sd
    or cli.state_dir(ctx, 'crush-data')
  local ok, werr = cli.write_file(global .. '/crush.json', cli.json.encode(M.config(ctx)))
  if not ok then return nil, 'cannot write crush.json: ' .. tostring(werr) end
  local tmpdir = cli.turn_tmpdir(ctx)
  local env = M.build_env(ctx, global, tmpdir)
  local args, input = M.build_args(ctx, data_dir, session_id)
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs(args) do argv[#argv + 1] = v end
  local sdata = type(ctx.session and ctx.session.data) == 'table' and ctx.session.data or {}
  local st = { session_id = session_id, out = {}, bin = bin[1], prev = sdata }
  local disabled = M.disabled_tools(ctx.tools or (ctx.role or {}).tools or 'edit')
  local function set_session(id, data)
    st.session_id = id
    emit({ type = 'session', session_id = id, data = data })
  end
  return cli.turn(ctx, {
    name = 'crush', argv = argv, env = env, input = input, tmpdir = tmpdir, state = st,
    on_text = function(line) st.out[#st.out + 1] = line end,
    on_stderr = function(line)
      local id = not st.session_id and line:match('session_id=([%w%-]+)')
      if id then set_session(id, { data_dir = data_dir }) end
    end,
    finish = function(turn, code, sig)
      local text = table.concat(st.out, '\n'):gsub('%s+$', '')
      if code == 0 and not sig then return { ok = true, text = text } end
      local msg = turn:stderr_text()
      return { ok = false, error = msg ~= '' and cli.bound(msg, 8000)
                 or cli.exit_message(turn, code, sig, st.bin, M.INSTALL),
               retryable = M.retryable(msg) }
    end,
    finalize = function(_, res, done)
      M.read_session(ctx, bin, data_dir, st.session_id, env, function(doc, rerr)
        if not doc then
          if res.ok then res.ok, res.error = false, rerr end
          return done(res)
        end
        local from = st.session_id and sdata.messages or 0
        local evs, info = M.session_events(doc, from, disabled)
        if info.id and info.id ~= st.session_id then st.session_id = info.id end
        for _, e in ipairs(evs) do emit(e) end
        local usage, cost = M.turn_usage(info, sdata)
        emit({ type = 'usage', usage = usage, cost_usd = cost })
        set_session(st.session_id, { data_dir = data_dir, messages = info.messages,
          prompt_tokens = info.prompt_tokens, completion_tokens = info.completion_tokens,
          cost = info.cost })
        res.session_id, res.usage, res.cost_usd = st.session_id, usage, cost
        res.text = (res.text and res.text ~= '') and res.text or info.text
        if res.ok then
          emit({ type = 'result', text = cli.bound(res.text or '', 1024 * 1024), ok = true })
        else
          emit({ type = 'error', message = res.error, retryable = res.retryable })
        end
        done(res)
      end)
    end,
  })
end

cli.session_entry_points(M, run)

M.check = cli.doctor_check(bin_of, 'v?([%d%.]+)')

-- `crush --session ID` in the worktree, on the task's data directory.
function M.attach_argv(session, cwd, env)
  local bin, err = bin_of({ env = env })
  if not bin then return nil, err end
  local data = type(session.data) == 'table' and session.data.data_dir or nil
  if not data then return nil, 'the crush session has no data directory recorded' end
  if not cli.read_file(data .. '/crush.db') and not require('orch.core').readdir(data) then
    return nil, ('the crush session %s lived in %s, which is gone'):format(session.id, data)
  end
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs({ '--cwd', cwd, '--data-dir', data, '--session', session.id }) do
    argv[#argv + 1] = v
  end
  return argv, { CRUSH_GLOBAL_DATA = (data:gsub('/crush%-data$', '/crush-global')) }
end

return M
