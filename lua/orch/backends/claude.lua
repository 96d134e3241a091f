-- The claude backend: Claude Code's CLI, one `claude -p` process per turn
-- with --output-format stream-json (see docs/backends.md).
--
-- First turn: `--session-id UUID` (orch picks the id and reports it before
-- the process starts, so a crash at any point can resume the same
-- conversation); later turns and resume: `--resume UUID`. The role's tools
-- map to claude's own permission system (read-only -> plan mode, which
-- refuses writes and lists them as denials); MCP: only orch's server
-- (--strict-mcp-config) with ask_orchestrator pre-approved.
local cli = require('orch.backends.cli')

local M = { name = 'claude' }

M.ENV_VAR = 'ORCH_CLAUDE_BIN'
M.INSTALL = 'install Claude Code with `npm i -g @anthropic-ai/claude-code` ' ..
  '(orch is tested with 2.1.332; ./scripts/install-agents.sh installs that version)'
M.ASK_TOOL = 'mcp__orch__ask_orchestrator'
M.MCP_TIMEOUT_MS = '10000'
M.MCP_TOOL_TIMEOUT_MS = '86400000' -- a question may wait for a person

-- --permission-mode and the tools allowed without asking, per tool set.
function M.permission_args(tools)
  if tools == 'read-only' then
    return { '--permission-mode', 'plan' }, {}
  elseif tools == 'full' then
    return { '--permission-mode', 'acceptEdits' }, { 'Bash' }
  elseif type(tools) == 'table' then
    local names = {}
    for i, t in ipairs(tools) do names[i] = tostring(t) end
    return { '--permission-mode', 'acceptEdits', '--tools', table.concat(names, ',') }, names
  end
  return { '--permission-mode', 'acceptEdits' }, {} -- 'edit', the default
end

-- The --mcp-config JSON for ctx.mcp = {argv=, env=}.
function M.mcp_config(mcp)
  local args = {}
  for i = 2, #mcp.argv do args[#args + 1] = mcp.argv[i] end
  return cli.json.encode({ mcpServers = { orch = {
    type = 'stdio', command = mcp.argv[1], args = #args > 0 and args or nil,
    env = next(mcp.env or {}) and mcp.env or nil,
  } } })
end

local function role_of(ctx) return ctx.role or {} end

-- The arguments after the binary, and the prompt on stdin (or nil).
-- mode: 'first' (--session-id) or 'resume' (--resume).
function M.build_args(ctx, session_id, mode)
  local role = role_of(ctx)
  local a = { '-p', '--output-format', 'stream-json', '--verbose' }
  local function add(...) for _, v in ipairs({ ... }) do a[#a + 1] = v end end
  if mode == 'resume' then add('--resume', session_id) else add('--session-id', session_id) end
  local model = ctx.model or role.model
  if model and model ~= '' then add('--model', model) end
  local sp = ctx.system_prompt or role.system_prompt
  if sp and sp ~= '' then add('--append-system-prompt', sp) end
  local limits = role.limits or {}
  if limits.turns then add('--max-turns', tostring(math.floor(limits.turns))) end
  if limits.budget_usd then add('--max-budget-usd', tostring(limits.budget_usd)) end
  local perm, allowed = M.permission_args(ctx.tools or role.tools or 'edit')
  add(unpack(perm))
  local allow = {}
  for _, t in ipairs(allowed) do allow[#allow + 1] = t end
  if ctx.mcp and ctx.mcp.argv then
    add('--mcp-config', M.mcp_config(ctx.mcp))
    allow[#allow + 1] = M.ASK_TOOL
  end
  add('--strict-mcp-config')
  if #allow > 0 then add('--allowedTools', table.concat(allow, ',')) end
  cli.add_extra(a, role)
  local pargs, input = cli.prompt_args(ctx.prompt)
  add(unpack(pargs))
  return a, input
end

-- The environment additions: a private TMPDIR, the endpoint, MCP settings.
function M.build_env(ctx, tmpdir)
  local role = role_of(ctx)
  local env = cli.env(ctx.env, {
    TMPDIR = tmpdir,
    ENABLE_TOOL_SEARCH = 'false', -- else MCP tools hide behind ToolSearch
  })
  local function default(k, v) if cli.getenv(ctx, k) == nil then env[k] = v end end
  default('MCP_TIMEOUT', M.MCP_TIMEOUT_MS)
  default('MCP_TOOL_TIMEOUT', M.MCP_TOOL_TIMEOUT_MS)
  default('DISABLE_AUTOUPDATER', '1')
  -- the role's request_timeout: claude's own per-request timeout (it then
  -- retries inside the turn itself; docs/resilience.md)
  if tonumber(role.request_timeout) then
    env.API_TIMEOUT_MS = tostring(math.floor(tonumber(role.request_timeout) * 1000))
  end
  local ep = role.endpoint
  if type(ep) == 'table' then
    if ep.base_url then env.ANTHROPIC_BASE_URL = ep.base_url end
    if ep.api_key_env and ep.api_key_env ~= 'ANTHROPIC_API_KEY' then
      -- the key goes from one variable to the other, never into a file
      env.ANTHROPIC_API_KEY = cli.getenv(ctx, ep.api_key_env) or false
    end
  end
  return env
end

-- ---------------------------------------------------------------- events

local function usage_of(u)
  if type(u) ~= 'table' then return nil end
  return {
    input_tokens = tonumber(u.input_tokens) or 0,
    output_tokens = tonumber(u.output_tokens) or 0,
    cache_read_tokens = tonumber(u.cache_read_input_tokens) or 0,
    cache_write_tokens = tonumber(u.cache_creation_input_tokens) or 0,
  }
end

-- This turn's cost: 2.1.3xx reports total_cost_usd for the whole session
-- (it grows across --resume) and model_usage_since_last_result per turn.
local function turn_cost(r)
  local since = r.model_usage_since_last_result
  if type(since) == 'table' and next(since) then
    local sum = 0
    for _, m in pairs(since) do sum = sum + (tonumber(type(m) == 'table' and m.costUSD) or 0) end
    return sum
  end
  return tonumber(r.total_cost_usd)
end

local function content_text(c)
  if type(c) == 'string' then return c end
  if type(c) ~= 'table' then return '' end
  local parts = {}
  for _, p in ipairs(c) do
    if type(p) == 'table' and p.type == 'text' and type(p.text) == 'string' then
      parts[#parts + 1] = p.text
    end
  end
  return table.concat(parts, '\n')
end

local RETRYABLE_STATUS = { [408] = true, [409] = true, [429] = true, [500] = true, [502] = true,
                           [503] = true, [504] = true, [529] = true }

-- Statuses claude retries that no retry can fix.
local FATAL_STATUS = { [400] = true, [401] = true, [403] = true, [404] = true }

-- Whether a failed result is worth another attempt.
function M.retryable(r)
  local st = tonumber(r.api_error_status)
  if st then return RETRYABLE_STATUS[st] == true or st >= 500 end
  if r.subtype == 'error_max_turns' or r.subtype == 'error_max_budget_usd' then return false end
  if r.terminal_reason == 'api_error' then return true end -- no status: the connection
  return false
end

local function result_error(r)
  if r.subtype == 'error_max_turns' then
    return 'claude stopped: the role\'s limit of turns was reached (error_max_turns)'
  elseif r.subtype == 'error_max_budget_usd' then
    return 'claude stopped: the role\'s budget was spent (error_max_budget_usd)'
  end
  if type(r.errors) == 'table' and #r.errors > 0 then
    local e = {}
    for i, v in ipairs(r.errors) do e[i] = tostring(v) end
    return table.concat(e, '; ')
  end
  if type(r.result) == 'string' and r.result ~= '' then return r.result end
  return 'claude reported an error (' .. tostring(r.subtype) .. ')'
end

-- Turns one stream-json object into normalised events. st is the turn's
-- state: {session_id=, denied={tool_use_id=true}, result=}.
function M.parse(obj, st, emit)
  local t = obj.type
  if t == 'system' then
    if obj.subtype == 'init' then
      st.init = true
      if obj.session_id and obj.session_id ~= st.session_id then
        st.session_id = obj.session_id
        emit({ type = 'session', session_id = obj.session_id })
      end
    elseif obj.subtype == 'api_retry' then
      -- claude retries even a refused key (401) ten times over minutes: a
      -- status that no retry can fix ends the turn now (docs/resilience.md)
      local status = tonumber(obj.error_status)
      if status and FATAL_STATUS[status] and not st.fatal then
        st.fatal = { status = status, error = tostring(obj.error or '') }
      end
    elseif obj.subtype == 'permission_denied' then
      if obj.tool_use_id then st.denied[obj.tool_use_id] = true end
      emit({ type = 'denied', tool = obj.tool_name, message = cli.bound(obj.message) })
    end
  elseif t == 'assistant' and type(obj.message) == 'table' then
    for _, c in ipairs(type(obj.message.content) == 'table' and obj.message.content or {}) do
      if c.type == 'text' and type(c.text) == 'string' and c.text ~= '' then
        st.last_text = c.text
        emit({ type = 'text', text = cli.bound(c.text) })
      elseif c.type == 'tool_use' then
        local input = type(c.input) == 'table' and c.input or {}
        emit({ type = 'tool_call', tool = c.name, id = c.id, input = input })
        if c.name == M.ASK_TOOL and type(input.question) == 'string' then
          emit({ type = 'question', question = cli.bound(input.question) })
        end
      end
    end
  elseif t == 'user' and type(obj.message) == 'table' then
    for _, c in ipairs(type(obj.message.content) == 'table' and obj.message.content or {}) do
      if type(c) == 'table' and c.type == 'tool_result' then
        emit({ type = 'tool_result', id = c.tool_use_id, output = cli.bound(content_text(c.content)),
               is_error = c.is_error == true })
      end
    end
  elseif t == 'result' then
    st.result = obj
    for _, d in ipairs(type(obj.permission_denials) == 'table' and obj.permission_denials or {}) do
      if type(d) == 'table' and not (d.tool_use_id and st.denied[d.tool_use_id]) then
        emit({ type = 'denied', tool = d.tool_name,
               message = 'refused by claude\'s permission mode' })
      end
    end
    local usage = usage_of(obj.usage)
    local cost = turn_cost(obj)
    if usage or cost then emit({ type = 'usage', usage = usage, cost_usd = cost }) end
    if obj.is_error then
      emit({ type = 'error', message = cli.bound(result_error(obj), 8000), retryable = M.retryable(obj) })
    else
      emit({ type = 'result', text = cli.bound(obj.result or '', 1024 * 1024), ok = true })
    end
  end
end

-- The turn's result for on_done.
function M.finish(turn, code, sig)
  local st = turn.state
  local r = st.result
  local res = { exit_code = code, signal = sig, session_id = st.session_id }
  if st.fatal and not (r and not r.is_error) then
    res.ok, res.retryable, res.http_status = false, false, st.fatal.status
    res.error = ('claude: the API answered %d (%s); stopped instead of letting claude retry it')
      :format(st.fatal.status, st.fatal.error)
    return res
  end
  if r then
    res.usage = usage_of(r.usage)
    res.cost_usd = turn_cost(r)
    res.text = type(r.result) == 'string' and r.result or st.last_text
    if r.is_error then
      res.ok, res.error, res.retryable = false, result_error(r), M.retryable(r)
      res.limit = (r.subtype == 'error_max_turns' and 'turns')
        or (r.subtype == 'error_max_budget_usd' and 'budget') or nil
      res.no_conversation = type(r.errors) == 'table' and
        tostring(r.errors[1] or ''):find('No conversation found', 1, true) ~= nil
    elseif sig or code ~= 0 then
      res.ok, res.error = false, cli.exit_message(turn, code, sig, st.bin, M.INSTALL)
    else
      res.ok = true
    end
  else
    res.ok = false
    res.error = cli.exit_message(turn, code, sig, st.bin, M.INSTALL)
    res.retryable = false
    if turn.garbage > 0 then
      res.error = res.error .. (' (%d line(s) of its output were not stream-json)'):format(turn.garbage)
    end
  end
  return res
end

-- ---------------------------------------------------------------- turns

local function bin_of(ctx)
  local role = role_of(ctx)
  return cli.find_bin({ name = 'claude', env_var = M.ENV_VAR, command = role.command,
                        install = M.INSTALL, env = ctx.env })
end

local function run(ctx, session_id, mode)
  local bin, berr = bin_of(ctx)
  if not bin then return nil, berr end
  local emit = ctx.emit or function() end
  -- stored before claude starts: a crash from here on resumes this id (and
  -- a task that continues another's conversation records it as its own)
  emit({ type = 'session', session_id = session_id })
  local tmpdir = cli.turn_tmpdir(ctx)
  local args, input = M.build_args(ctx, session_id, mode)
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  for _, v in ipairs(args) do argv[#argv + 1] = v end
  local st = { session_id = session_id, denied = {}, bin = bin[1] }
  return cli.turn(ctx, {
    name = 'claude', argv = argv, env = M.build_env(ctx, tmpdir), input = input,
    tmpdir = tmpdir, state = st,
    on_json = function(obj, turn)
      M.parse(obj, st, emit)
      if st.fatal and not st.stopped then
        st.stopped = true
        turn.cancelled = true -- (orch's own signal: not a crash)
        turn.proc:cancel(cli.CANCEL_GRACE_MS or 2000)
      end
    end,
    finish = M.finish,
  })
end

function M.start(ctx)
  if ctx.session and ctx.session.id then return M.send(ctx) end
  return run(ctx, cli.uuid(), 'first')
end

function M.send(ctx)
  if not (ctx.session and ctx.session.id) then return M.start(ctx) end
  return run(ctx, ctx.session.id, 'resume')
end

-- After a crash: --resume the same session. If claude never recorded the
-- conversation (orch died before claude's first write), start it afresh
-- under the same id with the task's own prompt.
function M.resume(ctx)
  if not (ctx.session and ctx.session.id) then return M.start(ctx) end
  local id = ctx.session.id
  local handle
  local outer_done = ctx.on_done
  local inner = setmetatable({}, { __index = ctx })
  inner.on_done = function(res)
    if res.no_conversation then
      local fresh = setmetatable({}, { __index = ctx })
      fresh.prompt = (ctx.task and ctx.task.prompt) or ctx.prompt
      fresh.emit = function(ev) if ev.type ~= 'session' and ctx.emit then ctx.emit(ev) end end
      local h, err = run(fresh, id, 'first')
      if h then
        handle.pid = h.pid
        handle.current = h
        return
      end
      res.error = err
    end
    outer_done(res)
  end
  local h, err = run(inner, id, 'resume')
  if not h then return nil, err end
  handle = {
    pid = h.pid, current = h,
    cancel = function(g) handle.current.cancel(g) end,
    kill = function(sig) return handle.current.kill(sig) end,
    reaped = function() return handle.current.reaped() end,
  }
  return handle
end

-- For `orch doctor`.
M.check = cli.doctor_check(bin_of, '([%d%.]+)')

-- For `orch attach RUN TASK --cli`: the session, interactive, in the worktree.
function M.attach_argv(session, _cwd, env)
  local bin, err = bin_of({ env = env })
  if not bin then return nil, err end
  local argv = {}
  for _, v in ipairs(bin) do argv[#argv + 1] = v end
  argv[#argv + 1] = '--resume'
  argv[#argv + 1] = session.id
  return argv
end

return M
