-- The openai backend: any OpenAI-compatible chat-completions server
-- (OpenAI, Ollama, LM Studio, llama.cpp server, vLLM), streamed in-process
-- through orch.core.http, with orch's own tool loop (orch.agent.loop).
--
-- Endpoint: the role's endpoint.base_url, else OPENAI_BASE_URL, else
-- https://api.openai.com/v1 (a base URL includes the /v1, as for the
-- vendor's SDK); POST BASE/chat/completions. Key: the variable named by
-- endpoint.api_key_env, else OPENAI_API_KEY; sent only as the
-- Authorization header, and only when set (local servers need none).
local cjson = require('cjson')
local loop = require('orch.agent.loop')

local M = { name = 'openai' }

M.DEFAULT_URL = 'https://api.openai.com/v1'
M.default_model = 'gpt-4.1-mini'

local A = { name = 'openai', default_model = M.default_model }
M.adapter = A

function A.endpoint(ctx)
  local base, key, key_env = loop.endpoint(ctx, 'OPENAI_BASE_URL', 'OPENAI_API_KEY', M.DEFAULT_URL)
  if not key and base == M.DEFAULT_URL then
    return nil, ('openai: no API key: set %s (or endpoint.base_url for a local server)')
      :format(key_env)
  end
  local headers = { ['Content-Type'] = 'application/json', Accept = 'text/event-stream' }
  if key then headers.Authorization = 'Bearer ' .. key end
  return { url = base .. '/chat/completions', base = base, headers = headers,
           key = key, key_env = key_env }
end

-- The neutral conversation (orch.agent.loop) as chat-completions messages.
function A.messages(system, list)
  local out = {}
  if system and system ~= '' then out[1] = { role = 'system', content = system } end
  for _, m in ipairs(list) do
    if m.role == 'user' then
      out[#out + 1] = { role = 'user', content = m.content }
    elseif m.role == 'assistant' then
      local msg = { role = 'assistant', content = m.content or '' }
      if m.tool_calls and #m.tool_calls > 0 then
        msg.tool_calls = {}
        for i, c in ipairs(m.tool_calls) do
          msg.tool_calls[i] = { id = c.id, type = 'function',
            ['function'] = { name = c.name, arguments = cjson.encode(c.input or {}) } }
        end
        if msg.content == '' then msg.content = cjson.null end
      end
      out[#out + 1] = msg
    elseif m.role == 'tool' then
      for _, r in ipairs(m.results) do
        out[#out + 1] = { role = 'tool', tool_call_id = r.id,
                          content = r.is_error and ('error: ' .. r.output) or r.output }
      end
    end
  end
  return out
end

local function encode_tools(schemas)
  local out = {}
  for i, s in ipairs(schemas) do
    out[i] = { type = 'function',
               ['function'] = { name = s.name, description = s.description, parameters = s.parameters } }
  end
  return out
end

function A.body(req)
  local body = {
    model = req.model, stream = true, stream_options = { include_usage = true },
    messages = A.messages(req.system, req.messages),
  }
  if req.tools and #req.tools > 0 then body.tools = encode_tools(req.tools) end
  if req.max_tokens then
    -- OpenAI's reasoning models take max_completion_tokens only
    local m = tostring(req.model or '')
    if m:match('^o%d') or m:match('^gpt%-5') then
      body.max_completion_tokens = req.max_tokens
    else
      body.max_tokens = req.max_tokens
    end
  end
  return cjson.encode(body)
end

-- Streamed chunks -> text deltas, tool calls (by index), usage.
local D = {}
D.__index = D

function A.decoder()
  return setmetatable({ text = {}, calls = {}, by_index = {} }, D)
end

local function field(t, k)
  local v = type(t) == 'table' and t[k] or nil
  if v == cjson.null then return nil end
  return v
end

function D:tool_delta(tc, pos)
  local idx = tonumber(field(tc, 'index')) or pos - 1
  local c = self.by_index[idx]
  if not c then
    c = { args = {} }
    self.by_index[idx] = c
    self.calls[#self.calls + 1] = c
  end
  c.id = field(tc, 'id') or c.id
  local fn = field(tc, 'function')
  if fn then
    c.name = field(fn, 'name') or c.name
    local a = field(fn, 'arguments')
    if type(a) == 'string' then c.args[#c.args + 1] = a
    elseif type(a) == 'table' then c.input = a end -- some servers send an object
  end
end

function D:event(ev)
  if ev.data == '[DONE]' then
    self.done = true
    self.complete = true
    self:close_calls()
    return
  end
  local ok, chunk = pcall(cjson.decode, ev.data)
  if not ok or type(chunk) ~= 'table' then return end
  self:chunk(chunk)
end

-- A whole (non-streamed) reply: its message read as one delta.
function A.from_json(d, reply)
  d:chunk(reply)
  d:close_calls()
  if not d.error then d.complete = true end
end

function D:chunk(chunk)
  local err = field(chunk, 'error')
  if err then
    local msg = type(err) == 'table' and (field(err, 'message') or cjson.encode(err)) or tostring(err)
    local t = type(err) == 'table' and tostring(field(err, 'type') or field(err, 'code') or '') or ''
    self.error = { message = 'openai stream error: ' .. tostring(msg),
                   retryable = t:find('rate') ~= nil or t:find('server') ~= nil
                     or t:find('overload') ~= nil or t == '' }
    return
  end
  local usage = field(chunk, 'usage')
  if type(usage) == 'table' then
    local cached = field(field(usage, 'prompt_tokens_details'), 'cached_tokens') or 0
    self.usage = { input_tokens = (tonumber(field(usage, 'prompt_tokens')) or 0) - cached,
                   output_tokens = tonumber(field(usage, 'completion_tokens')) or 0,
                   cache_read_tokens = cached, cache_write_tokens = 0 }
  end
  local choices = field(chunk, 'choices')
  if type(choices) ~= 'table' then return end
  for _, ch in ipairs(choices) do
    local delta = field(ch, 'delta') or field(ch, 'message')
    local content = field(delta, 'content')
    if type(content) == 'string' and content ~= '' then
      self.text[#self.text + 1] = content
      self.delta = (self.delta or '') .. content
    end
    local tcs = field(delta, 'tool_calls')
    if type(tcs) == 'table' then
      for pos, tc in ipairs(tcs) do self:tool_delta(tc, pos) end
    end
    if field(ch, 'finish_reason') then self.finish_reason = field(ch, 'finish_reason') end
  end
end

-- The body ended without a transport error: a reply whose choice said why
-- it finished is whole even if the server sent no [DONE].
function D:finish()
  self:close_calls()
  if self.finish_reason then self.complete = true end
end

function D:close_calls()
  for _, c in ipairs(self.calls) do
    if type(c.args) == 'table' then c.args = table.concat(c.args) end
    if c.args ~= '' then c.input = nil end
  end
end

function A.error_message(status, body)
  local ok, v = pcall(cjson.decode, body)
  if ok and type(v) == 'table' then
    local e = field(v, 'error')
    if type(e) == 'table' and field(e, 'message') then return tostring(field(e, 'message')) end
    if type(e) == 'string' then return e end
    if field(v, 'message') then return tostring(field(v, 'message')) end
  end
  if body == '' then return 'status ' .. status end
  return (body:gsub('%s+$', ''))
end

function M.start(ctx)
  return loop.start(A, ctx)
end

-- `orch doctor`: the endpoint answers GET BASE/models; whether a key is set
-- (never the key). cb(result) when given, else the result comes from a
-- nested run of the loop (doctor is a command of its own).
function M.check(env, cb)
  return loop.check(A, env, cb)
end

return M
