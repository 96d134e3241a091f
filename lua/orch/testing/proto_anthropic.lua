-- Anthropic Messages (POST /v1/messages): request normalisation, the SSE
-- stream (stream = true) and the JSON reply, errors.
local json = require('orch.testing.json')
local util = require('orch.testing.util')

local M = { name = 'anthropic' }

local function parse_message(m)
  local out = { role = m.role, tool_calls = {}, tool_results = {} }
  local texts = {}
  if type(m.content) == 'string' then
    texts[1] = m.content
  elseif type(m.content) == 'table' then
    for _, item in ipairs(m.content) do
      local b = type(item) == 'table' and item or {}
      if b.type == 'text' and type(b.text) == 'string' then
        texts[#texts + 1] = b.text
      elseif b.type == 'tool_use' then
        out.tool_calls[#out.tool_calls + 1] = { id = b.id, name = b.name, input = b.input }
      elseif b.type == 'tool_result' then
        out.tool_results[#out.tool_results + 1] = {
          id = b.tool_use_id, output = util.text_of(b.content),
          is_error = b.is_error == true }
      end
    end
  end
  out.text = table.concat(texts, '\n')
  return out
end

-- body (decoded) -> { model, stream, system, messages, tools, tool_specs }
function M.parse(body)
  local r = { model = body.model, stream = body.stream == true, messages = {},
              tools = {}, tool_specs = {} }
  local system = { util.text_of(body.system) }
  for _, m in ipairs(type(body.messages) == 'table' and body.messages or {}) do
    if type(m) == 'table' then
      r.messages[#r.messages + 1] = parse_message(m)
      -- Claude Code 2.1.3xx sends its environment as a role "system" message
      if m.role == 'system' then system[#system + 1] = r.messages[#r.messages].text end
    end
  end
  r.system = table.concat(system, '\n')
  for _, t in ipairs(type(body.tools) == 'table' and body.tools or {}) do
    if type(t) == 'table' and t.name then
      r.tools[#r.tools + 1] = t.name
      local props = type(t.input_schema) == 'table' and t.input_schema.properties
      r.tool_specs[t.name] = { kind = 'function', params = type(props) == 'table' and props or {} }
    end
  end
  return r
end

local function usage_of(out)
  return { input_tokens = out.usage.input_tokens, output_tokens = out.usage.output_tokens,
           cache_creation_input_tokens = out.usage.cache_write_tokens or 0,
           cache_read_input_tokens = out.usage.cache_read_tokens or 0 }
end

local function blocks(out)
  local list = {}
  if out.thinking and out.thinking ~= '' then
    list[#list + 1] = { type = 'thinking', thinking = out.thinking,
                        signature = util.id('sig_') }
  end
  if out.text and out.text ~= '' then
    list[#list + 1] = { type = 'text', text = out.text }
  end
  for _, c in ipairs(out.calls) do
    list[#list + 1] = { type = 'tool_use', id = c.id or util.id('toolu_'), name = c.name,
                        input = type(c.input) == 'table' and c.input or {} }
  end
  return list
end

local function stop_reason(out)
  return out.stop_reason or (#out.calls > 0 and 'tool_use' or 'end_turn')
end

-- The SSE events (strings) of a reply.
function M.events(req, out)
  local id = util.id('msg_')
  local ev = {}
  local start_usage = usage_of(out)
  start_usage.output_tokens = 1
  ev[#ev + 1] = util.sse('message_start', { type = 'message_start', message = {
    id = id, type = 'message', role = 'assistant', model = req.model or 'scripted',
    content = json.array(), stop_reason = json.null, stop_sequence = json.null,
    usage = start_usage } })
  ev[#ev + 1] = util.sse('ping', { type = 'ping' })
  for i, b in ipairs(blocks(out)) do
    local index = i - 1
    if b.type == 'thinking' then
      ev[#ev + 1] = util.sse('content_block_start', { type = 'content_block_start', index = index,
        content_block = { type = 'thinking', thinking = '', signature = '' } })
      ev[#ev + 1] = util.sse('content_block_delta', { type = 'content_block_delta', index = index,
        delta = { type = 'thinking_delta', thinking = b.thinking } })
      ev[#ev + 1] = util.sse('content_block_delta', { type = 'content_block_delta', index = index,
        delta = { type = 'signature_delta', signature = b.signature } })
    elseif b.type == 'text' then
      ev[#ev + 1] = util.sse('content_block_start', { type = 'content_block_start', index = index,
        content_block = { type = 'text', text = '' } })
      for _, piece in ipairs(util.pieces(b.text, 3)) do
        ev[#ev + 1] = util.sse('content_block_delta', { type = 'content_block_delta', index = index,
          delta = { type = 'text_delta', text = piece } })
      end
    else
      ev[#ev + 1] = util.sse('content_block_start', { type = 'content_block_start', index = index,
        content_block = { type = 'tool_use', id = b.id, name = b.name,
                          input = setmetatable({}, { __jsontype = 'object' }) } })
      for _, piece in ipairs(util.pieces(util.args_json(b.input), 2)) do
        ev[#ev + 1] = util.sse('content_block_delta', { type = 'content_block_delta', index = index,
          delta = { type = 'input_json_delta', partial_json = piece } })
      end
    end
    ev[#ev + 1] = util.sse('content_block_stop', { type = 'content_block_stop', index = index })
  end
  ev[#ev + 1] = util.sse('message_delta', { type = 'message_delta',
    delta = { stop_reason = stop_reason(out), stop_sequence = json.null },
    usage = usage_of(out) })
  ev[#ev + 1] = util.sse('message_stop', { type = 'message_stop' })
  return ev
end

-- The JSON reply (stream = false).
function M.json(req, out)
  return { id = util.id('msg_'), type = 'message', role = 'assistant',
           model = req.model or 'scripted', content = json.array(blocks(out)),
           stop_reason = stop_reason(out), stop_sequence = json.null,
           usage = usage_of(out) }
end

local ERROR_TYPES = {
  [400] = 'invalid_request_error', [401] = 'authentication_error',
  [403] = 'permission_error', [404] = 'not_found_error', [413] = 'request_too_large',
  [429] = 'rate_limit_error', [500] = 'api_error', [529] = 'overloaded_error',
}

function M.error(status, message, etype)
  return { type = 'error', error = { type = etype or ERROR_TYPES[status] or 'api_error',
                                     message = message } }
end

-- The SSE event of an error in the middle of a stream (e.g. overloaded).
function M.stream_error(status, message, etype)
  return util.sse('error', M.error(status, message, etype))
end

-- /v1/messages/count_tokens
function M.count_tokens(raw)
  return { input_tokens = util.tokens(raw) }
end

return M
