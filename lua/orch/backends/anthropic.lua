-- The anthropic backend: the Anthropic Messages API, streamed in-process
-- through orch.core.http, with orch's own tool loop (orch.agent.loop).
--
-- Endpoint: the role's endpoint.base_url, else ANTHROPIC_BASE_URL, else
-- https://api.anthropic.com (without /v1, as for the vendor's SDK); POST
-- BASE/v1/messages. Key: the variable named by endpoint.api_key_env, else
-- ANTHROPIC_API_KEY; sent only as the x-api-key header.
local cjson = require('cjson')
local loop = require('orch.agent.loop')

local M = { name = 'anthropic' }

M.DEFAULT_URL = 'https://api.anthropic.com'
M.VERSION = '2023-06-01'
M.default_model = 'claude-sonnet-4-5'
M.MAX_TOKENS = 8192

local A = { name = 'anthropic', default_model = M.default_model }
M.adapter = A

function A.endpoint(ctx)
  local base, key, key_env = loop.endpoint(ctx, 'ANTHROPIC_BASE_URL', 'ANTHROPIC_API_KEY',
                                           M.DEFAULT_URL)
  if not key and base == M.DEFAULT_URL then
    return nil, ('anthropic: no API key: set %s'):format(key_env)
  end
  local headers = { ['Content-Type'] = 'application/json', Accept = 'text/event-stream',
                    ['anthropic-version'] = M.VERSION }
  if key then headers['x-api-key'] = key end
  local url = base:match('/v1$') and base .. '/messages' or base .. '/v1/messages'
  -- prompt caching on Anthropic's own API (a compatible server may refuse
  -- the cache_control fields)
  return { url = url, base = base, headers = headers, key = key, key_env = key_env,
           cache = base == M.DEFAULT_URL }
end

-- Content blocks of one neutral message.
local function blocks(m)
  local out = {}
  if m.role == 'tool' then
    for _, r in ipairs(m.results) do
      out[#out + 1] = { type = 'tool_result', tool_use_id = r.id,
                        content = r.output ~= '' and r.output or '(no output)',
                        is_error = r.is_error or nil }
    end
    return out
  end
  if m.content and m.content ~= '' then out[1] = { type = 'text', text = m.content } end
  for _, c in ipairs(m.tool_calls or {}) do
    local input = c.input
    if type(input) ~= 'table' then input = {} end
    out[#out + 1] = { type = 'tool_use', id = c.id, name = c.name, input = input }
  end
  return out
end

-- The neutral conversation as Messages turns: tool results are user
-- content, and turns of the same role in a row are merged into one.
function A.messages(list)
  local out = {}
  for _, m in ipairs(list) do
    local role = m.role == 'assistant' and 'assistant' or 'user'
    local b = blocks(m)
    if #b > 0 then
      local last = out[#out]
      if last and last.role == role then
        for _, x in ipairs(b) do last.content[#last.content + 1] = x end
      else
        out[#out + 1] = { role = role, content = b }
      end
    end
  end
  return out
end

function A.body(req)
  local body = {
    model = req.model, stream = true, max_tokens = req.max_tokens or M.MAX_TOKENS,
    messages = A.messages(req.messages),
  }
  if req.system and req.system ~= '' then body.system = req.system end
  if req.tools and #req.tools > 0 then
    body.tools = {}
    for i, s in ipairs(req.tools) do
      body.tools[i] = { name = s.name, description = s.description, input_schema = s.parameters }
    end
  end
  if req.cache then
    -- prompt caching: one breakpoint after the system prompt (tools and
    -- system), one on the conversation's last block, so each step reads
    -- the conversation so far from the cache
    if body.system then
      body.system = { { type = 'text', text = body.system, cache_control = { type = 'ephemeral' } } }
    end
    local last = body.messages[#body.messages]
    local block = last and last.content[#last.content]
    if block then block.cache_control = { type = 'ephemeral' } end
  end
  return cjson.encode(body)
end

local D = {}
D.__index = D

function A.decoder()
  return setmetatable({ text = {}, calls = {}, blocks = {} }, D)
end

local function field(t, k)
  local v = type(t) == 'table' and t[k] or nil
  if v == cjson.null then return nil end
  return v
end

local function usage_of(u, into)
  if type(u) ~= 'table' then return end
  for src, dst in pairs({ input_tokens = 'input_tokens', output_tokens = 'output_tokens',
                          cache_read_input_tokens = 'cache_read_tokens',
                          cache_creation_input_tokens = 'cache_write_tokens' }) do
    local v = tonumber(field(u, src))
    if v then into[dst] = v end
  end
end

local RETRYABLE = { overloaded_error = true, rate_limit_error = true, api_error = true,
                    timeout_error = true }

function D:event(ev)
  local ok, e = pcall(cjson.decode, ev.data)
  if not ok or type(e) ~= 'table' then return end
  local t = field(e, 'type') or ev.event
  if t == 'message_start' then
    self.usage = {}
    usage_of(field(field(e, 'message'), 'usage'), self.usage)
  elseif t == 'content_block_start' then
    local b = field(e, 'content_block') or {}
    local idx = tonumber(field(e, 'index')) or #self.blocks
    local blk = { type = field(b, 'type') }
    self.blocks[idx] = blk
    if blk.type == 'tool_use' then
      blk.call = { id = field(b, 'id'), name = field(b, 'name'), parts = {} }
      local input = field(b, 'input')
      if type(input) == 'table' and next(input) then blk.call.input = input end
      self.calls[#self.calls + 1] = blk.call
    elseif blk.type == 'text' then
      local text = field(b, 'text')
      if type(text) == 'string' and text ~= '' then self:add_text(text) end
    end
  elseif t == 'content_block_delta' then
    local blk = self.blocks[tonumber(field(e, 'index')) or -1]
    local d = field(e, 'delta') or {}
    local dt = field(d, 'type')
    if dt == 'text_delta' and type(field(d, 'text')) == 'string' then
      self:add_text(field(d, 'text'))
    elseif dt == 'input_json_delta' and blk and blk.call and type(field(d, 'partial_json')) == 'string' then
      blk.call.parts[#blk.call.parts + 1] = field(d, 'partial_json')
    end
  elseif t == 'content_block_stop' then
    local blk = self.blocks[tonumber(field(e, 'index')) or -1]
    if blk and blk.call then
      local args = table.concat(blk.call.parts)
      if args ~= '' then blk.call.input = nil end
      blk.call.args = args
      blk.call.closed = true
    end
  elseif t == 'message_delta' then
    self.usage = self.usage or {}
    usage_of(field(e, 'usage'), self.usage)
    self.stop_reason = field(field(e, 'delta'), 'stop_reason') or self.stop_reason
  elseif t == 'message_stop' then
    self.complete = true
    -- a tool call whose block never closed is not a complete call
    for _, c in ipairs(self.calls) do
      if not c.closed then
        self.complete = false
        self.error = { message = 'tool call ' .. tostring(c.name) .. ' was not closed', retryable = true }
      end
    end
  elseif t == 'error' then
    local err = field(e, 'error') or {}
    local et = tostring(field(err, 'type') or '')
    self.error = { message = ('anthropic stream error: %s: %s'):format(et, tostring(field(err, 'message'))),
                   retryable = RETRYABLE[et] or false }
  end
end

-- A whole (non-streamed) Messages reply.
function A.from_json(d, reply)
  if field(reply, 'type') == 'error' then
    return d:event({ data = cjson.encode(reply) })
  end
  d.usage = {}
  usage_of(field(reply, 'usage'), d.usage)
  local content = field(reply, 'content')
  for _, b in ipairs(type(content) == 'table' and content or {}) do
    local bt = field(b, 'type')
    if bt == 'text' and type(field(b, 'text')) == 'string' then
      d:add_text(field(b, 'text'))
    elseif bt == 'tool_use' then
      local input = field(b, 'input')
      d.calls[#d.calls + 1] = { id = field(b, 'id'), name = field(b, 'name'),
                                input = type(input) == 'table' and input or {} }
    end
  end
  d.stop_reason = field(reply, 'stop_reason')
  d.complete = true
end

function D:add_text(s)
  if s == '' then return end
  self.text[#self.text + 1] = s
  self.delta = (self.delta or '') .. s
end

function A.error_message(status, body)
  local ok, v = pcall(cjson.decode, body)
  if ok and type(v) == 'table' then
    local e = field(v, 'error')
    if type(e) == 'table' and field(e, 'message') then
      local et = field(e, 'type')
      return (et and (tostring(et) .. ': ') or '') .. tostring(field(e, 'message'))
    end
  end
  if body == '' then return 'status ' .. status end
  return (body:gsub('%s+$', ''))
end

function M.start(ctx)
  return loop.start(A, ctx)
end

-- `orch doctor` (see openai.check).
function M.check(env, cb)
  return loop.check(A, env, cb)
end

return M
