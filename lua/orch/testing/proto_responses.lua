-- OpenAI Responses (POST /v1/responses), as codex uses it: request
-- normalisation (input items: messages, function_call, custom_tool_call and
-- their outputs), the SSE stream (response.created, output_item.added/done,
-- deltas, response.completed with usage), the JSON reply, errors.
local json = require('orch.testing.json')
local util = require('orch.testing.util')

local M = { name = 'responses' }

local function output_text(o)
  if type(o) == 'string' then return o end
  if type(o) == 'table' then
    if o.content ~= nil then return util.text_of(o.content) end
    return util.text_of(o)
  end
  return ''
end

local function new_msg(role)
  return { role = role, text = '', tool_calls = {}, tool_results = {} }
end

-- The message a call or result belongs to: the last one if it has that
-- role, else a new one.
local function msg_for(r, role)
  local last = r.messages[#r.messages]
  if not (last and last.role == role) then
    last = new_msg(role)
    r.messages[#r.messages + 1] = last
  end
  return last
end

local function parse_item(r, it, system)
  local t = it.type or (it.role and 'message')
  if t == 'message' then
    local text = util.text_of(it.content)
    if it.role == 'system' or it.role == 'developer' then
      system[#system + 1] = text
      r.messages[#r.messages + 1] = { role = it.role, text = text, tool_calls = {},
                                      tool_results = {} }
    else
      local m = new_msg(it.role)
      m.text = text
      r.messages[#r.messages + 1] = m
    end
  elseif t == 'function_call' or t == 'custom_tool_call' or t == 'local_shell_call' then
    local input = it.arguments or it.input or it.action
    if t == 'function_call' and type(input) == 'string' then input = json.decode(input) or input end
    local m = msg_for(r, 'assistant')
    m.tool_calls[#m.tool_calls + 1] = { id = it.call_id or it.id, name = it.name or t,
                                        input = input }
  elseif t == 'function_call_output' or t == 'custom_tool_call_output'
      or t == 'local_shell_call_output' then
    local m = msg_for(r, 'tool')
    m.tool_results[#m.tool_results + 1] = { id = it.call_id, output = output_text(it.output),
      is_error = type(it.output) == 'table' and it.output.success == false or false }
  end
end

-- body (decoded) -> { model, stream, system, messages, tools, tool_specs }
function M.parse(body)
  local r = { model = body.model, stream = body.stream == true, messages = {},
              tools = {}, tool_specs = {} }
  local system = { type(body.instructions) == 'string' and body.instructions or nil }
  if type(body.input) == 'string' then
    r.messages[1] = new_msg('user')
    r.messages[1].text = body.input
  else
    for _, it in ipairs(type(body.input) == 'table' and body.input or {}) do
      if type(it) == 'table' then parse_item(r, it, system) end
    end
  end
  r.system = table.concat(system, '\n')
  for _, t in ipairs(type(body.tools) == 'table' and body.tools or {}) do
    local name = type(t) == 'table' and (t.name or t.type)
    if name then
      r.tools[#r.tools + 1] = name
      local props = type(t.parameters) == 'table' and t.parameters.properties
      r.tool_specs[name] = { kind = t.type == 'custom' and 'custom' or 'function',
                             params = type(props) == 'table' and props or {} }
    end
  end
  return r
end

local function usage_of(out)
  return { input_tokens = out.usage.input_tokens,
           input_tokens_details = { cached_tokens = out.usage.cache_read_tokens or 0 },
           output_tokens = out.usage.output_tokens,
           output_tokens_details = { reasoning_tokens = 0 },
           total_tokens = out.usage.input_tokens + out.usage.output_tokens }
end

-- The output items of a reply, completed.
local function items(out)
  local list = {}
  if out.thinking and out.thinking ~= '' then
    list[#list + 1] = { id = util.id('rs_'), type = 'reasoning',
      summary = { { type = 'summary_text', text = out.thinking } } }
  end
  if out.text and out.text ~= '' then
    list[#list + 1] = { id = util.id('msg_'), type = 'message', status = 'completed',
      role = 'assistant', content = { { type = 'output_text', text = out.text,
                                        annotations = json.array() } } }
  end
  for _, c in ipairs(out.calls) do
    if c.kind == 'custom' then
      list[#list + 1] = { id = util.id('ctc_'), type = 'custom_tool_call', status = 'completed',
        call_id = c.id or util.id('call_'), name = c.name,
        input = type(c.input) == 'string' and c.input or util.args_json(c.input) }
    else
      -- codex offers MCP tools as a namespace: a call of mcp__SERVER__TOOL is
      -- the function TOOL in namespace mcp__SERVER
      local ns, fn = tostring(c.name):match('^(mcp__[%w%-]+)__(.+)$')
      list[#list + 1] = { id = util.id('fc_'), type = 'function_call', status = 'completed',
        call_id = c.id or util.id('call_'), name = fn or c.name, namespace = ns,
        arguments = util.args_json(c.input) }
    end
  end
  return list
end

local function response(req, id, status, output, usage)
  return { id = id, object = 'response', created_at = os.time(), status = status,
           model = req.model or 'scripted', output = json.array(output),
           usage = usage or json.null, error = json.null,
           incomplete_details = json.null }
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The in-progress form of an item, as output_item.added shows it.
local function added(item)
  local a = copy(item)
  a.status = 'in_progress'
  if a.type == 'message' then a.content = json.array() end
  if a.type == 'reasoning' then a.summary = json.array() end
  if a.type == 'function_call' then a.arguments = '' end
  if a.type == 'custom_tool_call' then a.input = '' end
  return a
end

local function item_events(emit, index, item)
  emit('response.output_item.added', { output_index = index, item = added(item) })
  if item.type == 'reasoning' then
    local text = item.summary[1].text
    emit('response.reasoning_summary_part.added', { item_id = item.id, output_index = index,
      summary_index = 0, part = { type = 'summary_text', text = '' } })
    emit('response.reasoning_summary_text.delta', { item_id = item.id, output_index = index,
                                                   summary_index = 0, delta = text })
    emit('response.reasoning_summary_text.done', { item_id = item.id, output_index = index,
                                                  summary_index = 0, text = text })
    emit('response.reasoning_summary_part.done', { item_id = item.id, output_index = index,
      summary_index = 0, part = item.summary[1] })
  elseif item.type == 'message' then
    local text = item.content[1].text
    local part = { type = 'output_text', text = '', annotations = json.array() }
    emit('response.content_part.added', { item_id = item.id, output_index = index,
                                          content_index = 0, part = part })
    for _, piece in ipairs(util.pieces(text, 3)) do
      emit('response.output_text.delta', { item_id = item.id, output_index = index,
                                           content_index = 0, delta = piece })
    end
    emit('response.output_text.done', { item_id = item.id, output_index = index,
                                        content_index = 0, text = text })
    emit('response.content_part.done', { item_id = item.id, output_index = index,
                                         content_index = 0, part = item.content[1] })
  elseif item.type == 'function_call' then
    for _, piece in ipairs(util.pieces(item.arguments, 2)) do
      emit('response.function_call_arguments.delta', { item_id = item.id,
                                                       output_index = index, delta = piece })
    end
    emit('response.function_call_arguments.done', { item_id = item.id, output_index = index,
                                                    arguments = item.arguments })
  elseif item.type == 'custom_tool_call' then
    for _, piece in ipairs(util.pieces(item.input, 2)) do
      emit('response.custom_tool_call_input.delta', { item_id = item.id,
                                                      output_index = index, delta = piece })
    end
    emit('response.custom_tool_call_input.done', { item_id = item.id, output_index = index,
                                                   input = item.input })
  end
  emit('response.output_item.done', { output_index = index, item = item })
end

function M.events(req, out)
  local id, ev, seq = util.id('resp_'), {}, 0
  local function emit(name, data)
    data.type, data.sequence_number = name, seq
    seq = seq + 1
    ev[#ev + 1] = util.sse(name, data)
  end
  emit('response.created', { response = response(req, id, 'in_progress', {}) })
  emit('response.in_progress', { response = response(req, id, 'in_progress', {}) })
  local list = items(out)
  for i, item in ipairs(list) do item_events(emit, i - 1, item) end
  emit('response.completed', { response = response(req, id, 'completed', list, usage_of(out)) })
  return ev
end

function M.json(req, out)
  return response(req, util.id('resp_'), 'completed', items(out), usage_of(out))
end

local CODES = { [429] = 'rate_limit_exceeded', [500] = 'server_error', [529] = 'server_is_overloaded' }

function M.error(status, message, etype)
  return { error = { message = message, type = etype or CODES[status] or 'server_error',
                     code = CODES[status] or json.null, param = json.null } }
end

-- An error in the middle of a stream: response.failed with the error.
function M.stream_error(status, message, etype)
  local e = M.error(status, message, etype).error
  return util.sse('response.failed', { type = 'response.failed', response = {
    id = util.id('resp_'), object = 'response', status = 'failed',
    error = { code = e.code ~= json.null and e.code or e.type, message = message },
    output = json.array() } })
end

return M
