-- OpenAI chat completions (POST /v1/chat/completions): request
-- normalisation, the SSE stream of chunks (tool calls in deltas), the JSON
-- reply, errors.
local json = require('orch.testing.json')
local util = require('orch.testing.util')

local M = { name = 'chat' }

local function parse_call(tc)
  local f = type(tc['function']) == 'table' and tc['function'] or {}
  local input = f.arguments
  if type(input) == 'string' then input = json.decode(input) or input end
  return { id = tc.id, name = f.name, input = input }
end

-- body (decoded) -> { model, stream, system, messages, tools, tool_specs }
function M.parse(body)
  local r = { model = body.model, stream = body.stream == true, messages = {},
              tools = {}, tool_specs = {} }
  local system = {}
  for _, m in ipairs(type(body.messages) == 'table' and body.messages or {}) do
    if type(m) ~= 'table' then goto continue end
    if m.role == 'system' or m.role == 'developer' then
      system[#system + 1] = util.text_of(m.content)
    elseif m.role == 'tool' then
      local last = r.messages[#r.messages]
      if not (last and last.role == 'tool') then
        last = { role = 'tool', text = '', tool_calls = {}, tool_results = {} }
        r.messages[#r.messages + 1] = last
      end
      last.tool_results[#last.tool_results + 1] = {
        id = m.tool_call_id, output = util.text_of(m.content), is_error = false }
    else
      local out = { role = m.role, text = util.text_of(m.content), tool_calls = {},
                    tool_results = {} }
      for _, tc in ipairs(util.list(m.tool_calls)) do
        if type(tc) == 'table' then out.tool_calls[#out.tool_calls + 1] = parse_call(tc) end
      end
      r.messages[#r.messages + 1] = out
    end
    ::continue::
  end
  r.system = table.concat(system, '\n')
  for _, t in ipairs(type(body.tools) == 'table' and body.tools or {}) do
    local f = type(t) == 'table' and t['function']
    if type(f) == 'table' and f.name then
      r.tools[#r.tools + 1] = f.name
      local props = type(f.parameters) == 'table' and f.parameters.properties
      r.tool_specs[f.name] = { kind = 'function', params = type(props) == 'table' and props or {} }
    end
  end
  r.include_usage = type(body.stream_options) == 'table' and body.stream_options.include_usage == true
  return r
end

local function usage_of(out)
  return { prompt_tokens = out.usage.input_tokens, completion_tokens = out.usage.output_tokens,
           total_tokens = out.usage.input_tokens + out.usage.output_tokens,
           prompt_tokens_details = { cached_tokens = out.usage.cache_read_tokens or 0 } }
end

local function finish_reason(out)
  return out.stop_reason or (#out.calls > 0 and 'tool_calls' or 'stop')
end

local function calls(out)
  local list = {}
  for i, c in ipairs(out.calls) do
    list[i] = { id = c.id or util.id('call_'), type = 'function',
                ['function'] = { name = c.name, arguments = util.args_json(c.input) } }
  end
  return list
end

function M.events(req, out)
  local id, created, model = util.id('chatcmpl-'), os.time(), req.model or 'scripted'
  local ev = {}
  local function chunk(delta, finish, usage)
    local c = { id = id, object = 'chat.completion.chunk', created = created, model = model,
                choices = json.array({ { index = 0, delta = delta,
                                         finish_reason = finish or json.null } }) }
    if usage then c.usage = usage end
    ev[#ev + 1] = util.sse(nil, c)
  end
  chunk({ role = 'assistant', content = '' })
  for _, piece in ipairs(util.pieces(out.text or '', 3)) do chunk({ content = piece }) end
  for i, c in ipairs(calls(out)) do
    chunk({ tool_calls = { { index = i - 1, id = c.id, type = 'function',
                             ['function'] = { name = c['function'].name, arguments = '' } } } })
    for _, piece in ipairs(util.pieces(c['function'].arguments, 2)) do
      chunk({ tool_calls = { { index = i - 1, ['function'] = { arguments = piece } } } })
    end
  end
  if req.include_usage then
    chunk(setmetatable({}, { __jsontype = 'object' }), finish_reason(out))
    ev[#ev + 1] = util.sse(nil, { id = id, object = 'chat.completion.chunk', created = created,
                                  model = model, choices = json.array(), usage = usage_of(out) })
  else
    chunk(setmetatable({}, { __jsontype = 'object' }), finish_reason(out), usage_of(out))
  end
  ev[#ev + 1] = 'data: [DONE]\n\n'
  return ev
end

function M.json(req, out)
  local msg = { role = 'assistant', content = out.text ~= '' and out.text or json.null }
  if #out.calls > 0 then msg.tool_calls = calls(out) end
  return { id = util.id('chatcmpl-'), object = 'chat.completion', created = os.time(),
           model = req.model or 'scripted',
           choices = json.array({ { index = 0, message = msg, finish_reason = finish_reason(out) } }),
           usage = usage_of(out) }
end

local ERROR_TYPES = { [400] = 'invalid_request_error', [401] = 'invalid_api_key',
                      [429] = 'rate_limit_exceeded', [500] = 'server_error',
                      [529] = 'server_error' }

function M.error(status, message, etype)
  return { error = { message = message, type = etype or ERROR_TYPES[status] or 'server_error',
                     code = ERROR_TYPES[status] or json.null, param = json.null } }
end

-- An error in the middle of a stream: a data line with an error object.
function M.stream_error(status, message, etype)
  return util.sse(nil, M.error(status, message, etype))
end

return M
