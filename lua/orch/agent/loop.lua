-- orch's own agentic loop, shared by the in-process HTTP backends (openai,
-- anthropic). One orch turn:
--
--   append the prompt to the conversation, store it (a `session` event);
--   send the conversation, stream the reply (text -> `text` events, tool
--   calls assembled from their deltas);
--   when the reply's stream completed: run its tool calls one after the
--   other (`tool_call`, `tool_result`), append the reply and the results,
--   store the conversation, and send again;
--   end at a reply without tool calls (`usage`, then `result`), at the
--   role's turn, time or budget limit, or at an error (`error`, with
--   `retryable` for 429/5xx/529/connection errors/cut streams/timeouts).
--
-- The conversation is kept in a neutral form (below) that each backend's
-- adapter turns into its wire format, and stored whole as the `session`
-- event's data at every step where it is valid to send, so a follow-up
-- (ctx.session) or a resume after a crash continues it.
--
--   messages: {role='user', content=TEXT}
--             {role='assistant', content=TEXT, tool_calls={{id=, name=, input=}}}
--             {role='tool', results={{id=, name=, output=, is_error=}}}
--
-- An adapter: {name=, endpoint(ctx) -> ep | nil, err (ep = {url=,
-- headers=, key=}), body(req) -> JSON (req = {model=, system=, messages=,
-- tools=, max_tokens=}), decoder() -> d (d:event(sse_event); d.text,
-- d.calls = {{id=, name=, args=}}, d.usage, d.complete, d.error =
-- {message=, retryable=}), from_json(d, reply) (fills d from a whole
-- JSON reply, for a server that does not stream), error_message(status,
-- body) -> string, default_model}.
local core = require('orch.core')
local cjson = require('cjson')
local tools = require('orch.agent.tools')
local sandbox = require('orch.agent.sandbox')
local prices = require('orch.agent.prices')

local M = {}

M.REQUEST_TIMEOUT = 300   -- s without a byte before a request fails
M.CONNECT_TIMEOUT = 30    -- s
M.MAX_TURNS = 100         -- model replies per orch turn unless limits.turns
M.TEXT_FLUSH_MS = 250     -- text deltas are batched into events this often
M.ERROR_BODY = 4096       -- bytes of an error response kept
M.JSON_REPLY_MAX = 64 * 1024 * 1024 -- bytes of a whole (non-streamed) reply

-- orch's own instructions, before the role's system prompt: what a model
-- needs to know to work through orch's tools (the CLIs bring their own).
M.BASE_PROMPT = [[You are a software agent working in a git worktree at %s.
Use the tools to look at and change files: paths are relative to the
worktree, and nothing outside it can be read or written. Tools: %s.%s
Work step by step. When the task is done, give your final answer (in the
form the instructions below ask for, else a short summary of what you did)
in a reply that calls no tool.]]

local SHELL_NOTE = [[

The shell tool runs `sh -c` in the worktree inside a sandbox: only the
worktree and $TMPDIR are writable%s.]]

function M.system_prompt(root, names, shell_mode, network, role_prompt)
  local note = ''
  for _, n in ipairs(names) do
    if n == 'shell' then
      note = SHELL_NOTE:format(network and '' or ', there is no network')
      if shell_mode == 'unconfined' then note = '\n\nThe shell tool runs `sh -c` in the worktree.' end
    end
  end
  local base = M.BASE_PROMPT:format(root, table.concat(names, ', '), note)
  if role_prompt and role_prompt ~= '' then return base .. '\n\n' .. role_prompt end
  return base
end

local function gen_id(prefix)
  local f = io.open('/dev/urandom', 'rb')
  local bytes = f and f:read(12) or tostring(core.hrtime())
  if f then f:close() end
  return prefix .. bytes:gsub('.', function(c) return ('%02x'):format(c:byte()) end)
end
M.gen_id = gen_id

local function copy_messages(list)
  local out = {}
  for i, m in ipairs(list or {}) do out[i] = m end
  return out
end

-- The role's (or ctx's) setting, the role's fields taking second place to
-- what the engine resolved into ctx.
local function role_field(ctx, name)
  local role = ctx.role or {}
  return role[name]
end

local function limits(ctx)
  local l = role_field(ctx, 'limits') or {}
  return { turns = tonumber(l.turns) or M.MAX_TURNS, time = tonumber(l.time),
           budget = tonumber(l.budget_usd) }
end

-- Appends the turn's prompt: a user message, merged into a trailing user
-- message (a resumed turn whose prompt was stored but not answered).
local function append_prompt(messages, prompt)
  local last = messages[#messages]
  if last and last.role == 'user' then
    messages[#messages] = { role = 'user', content = tostring(last.content or '') .. '\n\n' .. prompt }
  else
    messages[#messages + 1] = { role = 'user', content = prompt }
  end
end

local Turn = {}
Turn.__index = Turn

function Turn:scrub(s)
  s = tostring(s)
  if self.key and #self.key >= 4 then
    local a, b = s:find(self.key, 1, true)
    while a do
      s = s:sub(1, a - 1) .. '[api key]' .. s:sub(b + 1)
      a, b = s:find(self.key, a + 9, true)
    end
  end
  return s
end

function Turn:emit(ev)
  if self.finished then return end
  if self.ctx.emit then self.ctx.emit(ev) end
end

function Turn:log(stream, line)
  if self.ctx.on_line then self.ctx.on_line(stream, self:scrub(line)) end
end

-- The conversation condensed for `orch logs` (stdout), a line an item.
local function one_line(s, n)
  s = tostring(s or ''):gsub('%s+', ' '):gsub('^ ', '')
  if #s > n then
    -- cut on a character boundary
    while n > 0 and s:byte(n + 1) and s:byte(n + 1) >= 0x80 and s:byte(n + 1) < 0xC0 do n = n - 1 end
    s = s:sub(1, n) .. '...'
  end
  return tools.clean_utf8(s)
end

function Turn:transcript(kind, text)
  self:log('stdout', kind .. ': ' .. one_line(text, 300))
end

function Turn:store()
  self:emit({ type = 'session', session_id = self.session_id,
              data = { backend = self.adapter.name, model = self.model,
                       messages = self.messages } })
end

function Turn:flush_text(force)
  if #self.pending == 0 then return end
  local now = core.now()
  if not force and now - self.flushed < M.TEXT_FLUSH_MS then return end
  self.flushed = now
  local text = self:scrub(table.concat(self.pending))
  self.pending = {}
  self:emit({ type = 'text', text = text })
end

function Turn:add_usage(u)
  if not u then return end
  local t = self.usage
  for _, k in ipairs({ 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens' }) do
    t[k] = (t[k] or 0) + (tonumber(u[k]) or 0)
  end
  self.cost = prices.cost(t, self.price)
end

function Turn:finish(res)
  if self.finished then return end
  self:flush_text(true)
  if self.timer then self.timer:close() self.timer = nil end
  if self.req then self.req:cancel() self.req = nil end
  local usage = next(self.usage) and self.usage or nil
  res.session_id = self.session_id
  res.usage, res.cost_usd = usage, self.cost
  res.text = res.text or self.last_text
  if res.text then res.text = self:scrub(res.text) end
  if usage then self:emit({ type = 'usage', usage = usage, cost_usd = self.cost }) end
  if res.ok then
    self:emit({ type = 'result', text = res.text, ok = true })
  else
    res.error = self:scrub(res.error or 'failed')
    self:emit({ type = 'error', message = res.error, retryable = res.retryable or false,
                retry_after = res.retry_after })
  end
  self.finished = true
  if self.ctx.on_done then self.ctx.on_done(res) end
end

local function retry_after(headers)
  local v = headers and headers['retry-after']
  local n = v and tonumber(v)
  if n then return n end
  return nil
end

local function retryable_status(status)
  return status == 408 or status == 409 or status == 429 or status >= 500
end

-- One request of the conversation; calls self:reply(d) when the reply's
-- stream completed, or finishes the turn with an error.
function Turn:request()
  local ep = self.ep
  local body = self.adapter.body({ model = self.model, system = self.system,
                                   messages = self.messages, tools = self.box.schemas,
                                   max_tokens = self.max_tokens, cache = ep.cache })
  local d = self.adapter.decoder()
  local status, headers, json_reply
  local errbody, errlen = {}, 0
  local parser = core.http.sse_parser(function(ev)
    local ok, perr = pcall(d.event, d, ev)
    if not ok and not d.error then
      d.error = { message = 'could not read the reply stream: ' .. tostring(perr), retryable = false }
    end
    if d.delta then
      self.pending[#self.pending + 1] = d.delta
      d.delta = nil
      self:flush_text(false)
    end
  end)
  self.requests = self.requests + 1
  self:log('stderr', ('orch: %s request %d: POST %s (model %s, %d messages)')
    :format(self.adapter.name, self.requests, ep.url, tostring(self.model), #self.messages))
  local req, err = core.http.request({
    method = 'POST', url = ep.url, headers = ep.headers, body = body,
    connect_timeout = M.CONNECT_TIMEOUT * 1000,
    idle_timeout = self.request_timeout * 1000,
    on_headers = function(s, h)
      status, headers = s, h
      -- a server that ignored stream: true answers with one JSON reply
      json_reply = s >= 200 and s < 300 and (h['content-type'] or ''):find('json') ~= nil
    end,
    on_chunk = function(bytes)
      if json_reply then
        if errlen < M.JSON_REPLY_MAX then errbody[#errbody + 1] = bytes end
        errlen = errlen + #bytes
      elseif status >= 200 and status < 300 then
        parser:feed(bytes)
      elseif errlen < M.ERROR_BODY then
        errbody[#errbody + 1] = bytes
        errlen = errlen + #bytes
      end
    end,
    on_done = function(e, st, code)
      self.req = nil
      if self.finished then return end
      status = status or st
      if e then
        return self:finish({ ok = false, retryable = true,
          error = ('%s: %s (%s)'):format(ep.url, e, tostring(code)) })
      end
      if json_reply then
        local ok, obj = pcall(cjson.decode, table.concat(errbody))
        if not ok or type(obj) ~= 'table' or errlen > M.JSON_REPLY_MAX then
          return self:finish({ ok = false, retryable = true,
            error = ('%s answered %d with a JSON body that could not be read'):format(ep.url, status) })
        end
        self.adapter.from_json(d, obj)
      elseif status < 200 or status >= 300 then
        local text = table.concat(errbody):sub(1, M.ERROR_BODY)
        local msg = self.adapter.error_message(status, text)
        self:log('stderr', ('orch: HTTP %d: %s'):format(status, text))
        return self:finish({ ok = false, retryable = retryable_status(status),
          retry_after = retry_after(headers), http_status = status,
          error = ('HTTP %d from %s: %s'):format(status, ep.url, msg) })
      end
      if d.finish then d:finish() end
      if d.error then
        return self:finish({ ok = false, retryable = d.error.retryable, error = d.error.message })
      end
      if not d.complete then
        return self:finish({ ok = false, retryable = true,
          error = 'the reply stream ended before the reply was complete (cut off); '
            .. 'its tool calls were not run' })
      end
      self:reply(d)
    end,
  })
  if not req then
    return self:finish({ ok = false, retryable = false, error = tostring(err) })
  end
  self.req = req
end

-- Decodes the arguments of the reply's tool calls.
local function decode_calls(calls)
  local out = {}
  for i, c in ipairs(calls) do
    local input, bad = nil, nil
    if type(c.input) == 'table' then
      input = c.input
    else
      local args = c.args or ''
      if args:match('^%s*$') then args = '{}' end
      local ok, v = pcall(cjson.decode, args)
      if ok and type(v) == 'table' then input = v else bad = 'the arguments are not a JSON object: '
        .. args:sub(1, 200) end
    end
    local id = (type(c.id) == 'string' and c.id ~= '') and c.id or gen_id('call_')
    out[i] = { id = id, name = type(c.name) == 'string' and c.name or '', input = input or {}, bad = bad }
  end
  return out
end

function Turn:reply(d)
  self:flush_text(true)
  self:add_usage(d.usage)
  local text = self:scrub(table.concat(d.text or {}))
  self.last_text = text
  local calls = decode_calls(d.calls or {})
  if text ~= '' then self:transcript('assistant', text) end
  local msg = { role = 'assistant', content = text }
  if #calls > 0 then
    msg.tool_calls = {}
    for i, c in ipairs(calls) do
      msg.tool_calls[i] = { id = c.id, name = c.name, input = c.input }
    end
  end
  if #calls == 0 then
    self.messages[#self.messages + 1] = msg
    self:store()
    return self:finish({ ok = true, text = text })
  end
  self:gate(function() self:run_calls(msg, calls, 1, {}) end)
end

function Turn:run_calls(msg, calls, i, results)
  if self.finished then return end
  local c = calls[i]
  if not c then
    self.messages[#self.messages + 1] = msg
    self.messages[#self.messages + 1] = { role = 'tool', results = results }
    self:store()
    return self:gate(function() self:next_step() end)
  end
  self:emit({ type = 'tool_call', tool = c.name, input = c.input, id = c.id })
  self:transcript('tool ' .. c.name, cjson.encode(c.input))
  local function done(output, is_error)
    if self.finished then return end
    output = self:scrub(tools.bound(tostring(output)))
    self:emit({ type = 'tool_result', id = c.id, output = output, is_error = is_error and true or false })
    self:transcript(is_error and '  error' or '  ok', output)
    results[#results + 1] = { id = c.id, name = c.name, output = output, is_error = is_error and true or false }
    -- the next call runs from the loop, not from inside this callback
    core.timer(0, function()
      self:gate(function() self:run_calls(msg, calls, i + 1, results) end)
    end)
  end
  if c.bad then return done(c.bad, true) end
  self.box:run(c.name, c.input, done)
end

-- Runs fn now, or when the turn is continued if it is paused: a paused
-- turn finishes the stream or tool it is in, then holds.
function Turn:gate(fn)
  if self.finished then return end
  if self.paused then self.held = fn return end
  fn()
end

-- handle.kill: SIGSTOP pauses (and stops a running shell command), SIGCONT
-- continues, SIGTERM/SIGINT/SIGKILL cancel.
function Turn:signal(sig)
  local proc = self.box and self.box.proc
  if sig == 'SIGSTOP' or sig == 'SIGTSTP' then
    self.paused = true
    if proc then proc:kill('SIGSTOP') end
  elseif sig == 'SIGCONT' then
    self.paused = false
    if proc then proc:kill('SIGCONT') end
    local fn = self.held
    self.held = nil
    if fn then core.timer(0, function() self:gate(fn) end) end
  elseif sig == 'SIGTERM' or sig == 'SIGINT' or sig == 'SIGKILL' or sig == 'SIGHUP' then
    self:cancel()
  else
    return nil, 'an in-process turn takes SIGSTOP, SIGCONT or a terminating signal'
  end
  return true
end

function Turn:next_step()
  local lim = self.limits
  if lim.budget and self.cost and self.cost >= lim.budget then
    return self:finish({ ok = false, retryable = false, limit = 'budget',
      error = ('budget limit reached: $%.4f of $%.4f'):format(self.cost, lim.budget) })
  end
  if self.steps >= lim.turns then
    return self:finish({ ok = false, retryable = false, limit = 'turns',
      error = ('turn limit reached: %d model replies'):format(self.steps) })
  end
  self.steps = self.steps + 1
  local ok, err = pcall(self.request, self)
  if not ok then
    self:finish({ ok = false, retryable = false, error = 'could not send the request: ' .. tostring(err) })
  end
end

function Turn:cancel()
  if self.finished then return end
  self.box:cancel()
  if self.req then self.req:cancel() self.req = nil end
  self.cancelled = true
  core.timer(0, function()
    self:finish({ ok = false, retryable = false, cancelled = true, error = 'cancelled' })
  end)
end

-- How the shell tool runs: 'sandbox', 'unconfined' or false; cb(mode).
local function shell_mode(turn, names, cb)
  local wants = false
  for _, n in ipairs(names) do if n == 'shell' then wants = true end end
  if not wants then return cb(false) end
  local role = turn.ctx.role or {}
  if role.sandbox == false then
    turn:emit({ type = 'notice', message = 'shell runs without a sandbox (the role sets sandbox: false)' })
    return cb('unconfined')
  end
  sandbox.probe(function(ok, why)
    if ok then return cb('sandbox') end
    if role.unconfined_shell then
      turn:emit({ type = 'notice', message = why .. '; shell runs unconfined (the role sets unconfined_shell)' })
      return cb('unconfined')
    end
    turn:emit({ type = 'denied', tool = 'shell',
                message = why .. '; the shell tool is off (set unconfined_shell: true to allow it unconfined)' })
    cb(false)
  end)
end

-- Starts a turn with adapter; returns a handle or nil, err.
function M.start(adapter, ctx)
  if type(ctx.cwd) ~= 'string' or not core.lstat(ctx.cwd) then
    return nil, adapter.name .. ': the worktree ' .. tostring(ctx.cwd) .. ' does not exist'
  end
  local names, nerr = tools.names(ctx.tools)
  if not names then return nil, adapter.name .. ': ' .. nerr end
  local ep, eerr = adapter.endpoint(ctx)
  if not ep then return nil, eerr end
  local session = ctx.session
  local data = session and type(session.data) == 'table' and session.data or {}
  local role = ctx.role or {}
  local self = setmetatable({
    ctx = ctx, adapter = adapter, ep = ep, key = ep.key,
    model = ctx.model or role.model or data.model or adapter.default_model,
    system = ctx.system_prompt or role.system_prompt,
    max_tokens = tonumber(role.max_tokens),
    messages = copy_messages(data.messages),
    session_id = session and session.id or gen_id(adapter.name .. '-'),
    request_timeout = tonumber(ctx.request_timeout or role.request_timeout) or M.REQUEST_TIMEOUT,
    limits = limits(ctx), usage = {}, steps = 0, requests = 0,
    pending = {}, flushed = 0,
  }, Turn)
  self.price = prices.of(self.model, role.price)
  -- a retry (orch's retry policy, docs/resilience.md) sends the failed
  -- request again: nothing of it was applied, so nothing is added
  local last = self.messages[#self.messages]
  if not (ctx.retry and last and (last.role == 'user' or last.role == 'tool')) then
    append_prompt(self.messages, ctx.prompt or '')
  end
  self.box = { cancel = function() end }
  -- everything from the loop, after start returned its handle
  core.timer(0, function()
    if self.finished then return end
    self:transcript(ctx.resume and 'resume' or 'user', ctx.prompt)
    self:store()
    if self.limits.time then
      self.timer = core.timer(self.limits.time * 1000, function()
        self.timer = nil
        self.box:cancel()
        self:finish({ ok = false, retryable = false, limit = 'time',
          error = ('time limit reached: %d s'):format(self.limits.time) })
      end)
    end
    shell_mode(self, names, function(mode)
      if self.finished or self.cancelled then return end
      local box, err = tools.new(ctx, { shell = mode, network = role.network == true,
                                        secret_env = ep.key_env and { ep.key_env } or nil })
      if not box then return self:finish({ ok = false, error = err }) end
      self.box = box
      self.system = M.system_prompt(box.root, box.names, mode, box.network, self.system)
      self:next_step()
    end)
  end)
  -- no pid: nothing to note or sweep; kill() maps signals onto the turn
  return { cancel = function() self:cancel() end, kill = function(sig) return self:signal(sig) end,
           turn = self }
end

-- `orch doctor`: is the endpoint reachable (GET its models list), is a key
-- set (never shown). env: the environment additions (as ctx.env), with an
-- optional role = {endpoint=}. cb(result) if given; else the result is
-- returned: inside an orch.async coroutine by waiting on the loop, in the
-- main chunk by running the loop until it is known.
function M.check(adapter, env, cb)
  if not cb then
    local co, main = coroutine.running()
    if co and not main then
      return require('orch.async').wait(function(done) M.check(adapter, env, done) end)
    end
  end
  local ctx = { env = env or {}, role = env and env.role or nil }
  local ep, err = adapter.endpoint(ctx)
  local result
  local function done(r)
    result = r
    if cb then cb(r) end
  end
  if not ep then
    done({ ok = false, message = err })
    return result
  end
  local keyinfo = ep.key and (ep.key_env .. ' is set') or ('no key (' .. ep.key_env .. ' unset)')
  local url = ep.base .. (adapter.name == 'anthropic' and not ep.base:match('/v1$') and '/v1/models' or '/models')
  local req = core.http.request({
    url = url, headers = ep.headers, connect_timeout = 5000, timeout = 10000,
    on_done = function(e, status)
      if e then
        return done({ ok = false, path = ep.base,
          message = ('%s unreachable: %s; %s'):format(ep.base, e, keyinfo) })
      end
      local bad = status == 401 or status == 403
      done({ ok = not bad, path = ep.base,
        message = ('%s answered %d%s; %s'):format(ep.base, status,
          bad and ' (the key was refused)' or '', keyinfo) })
    end,
  })
  if not req then
    done({ ok = false, message = 'bad endpoint ' .. ep.base })
    return result
  end
  if not cb then
    while result == nil do core.run('once') end
  end
  return result
end

-- The endpoint of a backend: the role's endpoint, else the vendor variables.
-- env_base, env_key: variable names; default_url. Returns base, key,
-- key_env (the name of the variable the key came from).
function M.endpoint(ctx, env_base, env_key, default_url)
  local e = (ctx.role and ctx.role.endpoint) or {}
  local env = ctx.env or {}
  local function get(name)
    local v = env[name]
    if v == false then return nil end -- removed from the agent's environment
    if v == nil then v = os.getenv(name) end
    if v == '' then v = nil end
    return v
  end
  local base = e.base_url or get(env_base) or default_url
  local key_env = e.api_key_env or env_key
  local key = get(key_env)
  return (base:gsub('/+$', '')), key, key_env
end

return M
