-- The anthropic backend (Messages API, in-process): request building and
-- stream decoding on their own, then whole turns of orch's tool loop
-- against the scripted model server.
local core = require('orch.core')
local cjson = require('cjson')
local anthropic = require('orch.backends.anthropic')

local A = anthropic.adapter

local function decode(sse)
  local d = A.decoder()
  local p = core.http.sse_parser(function(ev) d:event(ev) end)
  for i = 1, #sse, 5 do p:feed(sse:sub(i, i + 4)) end
  if d.finish then d:finish() end
  return d
end

local function ev(t, o)
  o.type = t
  return 'event: ' .. t .. '\ndata: ' .. cjson.encode(o) .. '\n\n'
end

describe('anthropic backend', function()
  describe('requests', function()
    it('sends system, tools with input_schema, tool results as user content', function()
      local body = cjson.decode(A.body({
        model = 'claude-sonnet-4-5', system = 'be brief',
        tools = { { name = 'read', description = 'r', parameters = { type = 'object',
                    properties = { path = { type = 'string' } } } } },
        messages = {
          { role = 'user', content = 'look' },
          { role = 'assistant', content = '', tool_calls = { { id = 'tu1', name = 'list', input = {} } } },
          { role = 'tool', results = { { id = 'tu1', output = 'a.txt', is_error = false } } },
          { role = 'user', content = 'you were interrupted, carry on' },
        },
      }))
      assert.equals('be brief', body.system)
      assert.equals(8192, body.max_tokens)
      assert.is_true(body.stream)
      assert.equals('read', body.tools[1].name)
      assert.equals('object', body.tools[1].input_schema.type)
      assert.equals(3, #body.messages)
      -- an empty text block is never sent; the input is an object
      assert.same({ { type = 'tool_use', id = 'tu1', name = 'list', input = {} } }, body.messages[2].content)
      assert.matches('"input":{}', A.body({ messages = { { role = 'assistant', content = '',
        tool_calls = { { id = 'x', name = 'list', input = {} } } } } }), 1, true)
      -- the tool result and the next prompt are one user turn
      assert.equals('user', body.messages[3].role)
      assert.equals('tool_result', body.messages[3].content[1].type)
      assert.equals('tu1', body.messages[3].content[1].tool_use_id)
      assert.equals('text', body.messages[3].content[2].type)
    end)

    it("marks cache breakpoints on Anthropic's own API only", function()
      local req = { model = 'm', system = 'sys', messages = {
        { role = 'user', content = 'one' }, { role = 'assistant', content = 'two' },
        { role = 'user', content = 'three' } } }
      local plain = cjson.decode(A.body(req))
      assert.equals('sys', plain.system)
      assert.is_nil(plain.messages[3].content[1].cache_control)
      req.cache = true
      local cached = cjson.decode(A.body(req))
      assert.same({ { type = 'text', text = 'sys', cache_control = { type = 'ephemeral' } } }, cached.system)
      assert.same({ type = 'ephemeral' }, cached.messages[3].content[1].cache_control)
      assert.is_nil(cached.messages[1].content[1].cache_control)
      assert.is_true(A.endpoint({ env = { ANTHROPIC_BASE_URL = false, ANTHROPIC_API_KEY = 'k' } }).cache)
      local local_ep = A.endpoint({ env = { ANTHROPIC_BASE_URL = 'http://127.0.0.1:9', ANTHROPIC_API_KEY = 'k' } })
      assert.is_false(local_ep.cache)
    end)

    it('takes the endpoint from the role, else ANTHROPIC_BASE_URL; the key only in x-api-key', function()
      local ep = assert(A.endpoint({ role = { endpoint = { base_url = 'http://127.0.0.1:9',
        api_key_env = 'MY_KEY' } }, env = { MY_KEY = 'sk-ant-distinctive' } }))
      assert.equals('http://127.0.0.1:9/v1/messages', ep.url)
      assert.equals('sk-ant-distinctive', ep.headers['x-api-key'])
      assert.equals('2023-06-01', ep.headers['anthropic-version'])
      assert.is_nil(ep.headers.Authorization)
      ep = assert(A.endpoint({ env = { ANTHROPIC_BASE_URL = 'http://127.0.0.1:8/v1', ANTHROPIC_API_KEY = 'k' } }))
      assert.equals('http://127.0.0.1:8/v1/messages', ep.url)
    end)
  end)

  describe('stream decoding', function()
    it('malformed events do not raise', function()
      for _, sse in ipairs({
        'event: message_start\ndata: {"type": "message_start", "message": 5}\n\n',
        'data: {"type": "content_block_start", "index": "x", "content_block": "y"}\n\n',
        'data: {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": 1,' ..
          '"name": {}}}\n\n',
        'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta",' ..
          '"partial_json": {}}}\n\n',
        'data: {"type": "content_block_delta", "index": 9, "delta": {"type": "text_delta", "text": []}}\n\n',
        'data: {"type": "content_block_stop", "index": 0}\n\n',
        'data: {"type": "message_delta", "usage": 3, "delta": 4}\n\n',
        'data: {"type": "error", "error": "x"}\n\n',
        'data: garbage\n\n',
        'data: {"type": "message_stop"}\n\n',
      }) do
        local ok, err = pcall(decode, sse)
        assert.is_true(ok, err)
      end
    end)

    it('assembles text and tool_use blocks, and the usage of the reply', function()
      local d = decode(
        ev('message_start', { message = { id = 'msg_1', usage = { input_tokens = 50,
          cache_read_input_tokens = 1000, cache_creation_input_tokens = 20, output_tokens = 1 } } })
        .. ev('ping', {})
        .. ev('content_block_start', { index = 0, content_block = { type = 'text', text = '' } })
        .. ev('content_block_delta', { index = 0, delta = { type = 'text_delta', text = 'Writing ' } })
        .. ev('content_block_delta', { index = 0, delta = { type = 'text_delta', text = 'it.' } })
        .. ev('content_block_stop', { index = 0 })
        .. ev('content_block_start', { index = 1, content_block = { type = 'tool_use', id = 'toolu_1',
             name = 'write', input = {} } })
        .. ev('content_block_delta', { index = 1, delta = { type = 'input_json_delta', partial_json = '{"path":' } })
        .. ev('content_block_delta', { index = 1, delta = { type = 'input_json_delta', partial_json = ' "a.txt"}' } })
        .. ev('content_block_stop', { index = 1 })
        .. ev('message_delta', { delta = { stop_reason = 'tool_use' }, usage = { output_tokens = 42 } })
        .. ev('message_stop', {}))
      assert.is_true(d.complete)
      assert.is_nil(d.error)
      assert.equals('Writing it.', table.concat(d.text))
      assert.equals(1, #d.calls)
      assert.equals('toolu_1', d.calls[1].id)
      assert.equals('{"path": "a.txt"}', d.calls[1].args)
      assert.same({ input_tokens = 50, output_tokens = 42, cache_read_tokens = 1000,
                    cache_write_tokens = 20 }, d.usage)
    end)

    it('reads a whole JSON reply from a server that does not stream', function()
      local d = A.decoder()
      A.from_json(d, cjson.decode([[{"id": "msg_1", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": "Writing."}, {"type": "tool_use", "id": "toolu_9",
        "name": "write", "input": {"path": "x"}}], "stop_reason": "tool_use",
        "usage": {"input_tokens": 7, "output_tokens": 3}}]]))
      assert.is_true(d.complete)
      assert.equals('Writing.', table.concat(d.text))
      assert.equals('toolu_9', d.calls[1].id)
      assert.same({ path = 'x' }, d.calls[1].input)
      assert.equals(3, d.usage.output_tokens)
    end)

    it('a stream cut before message_stop is not complete', function()
      local d = decode(ev('message_start', { message = { usage = {} } })
        .. ev('content_block_start', { index = 0, content_block = { type = 'tool_use', id = 't', name = 'write' } })
        .. ev('content_block_delta', { index = 0, delta = { type = 'input_json_delta', partial_json = '{"pa' } }))
      assert.is_not_true(d.complete)
    end)

    it('overloaded_error is a retryable error; invalid_request_error is not', function()
      local d = decode(ev('error', { error = { type = 'overloaded_error', message = 'Overloaded' } }))
      assert.is_true(d.error.retryable)
      assert.matches('Overloaded', d.error.message)
      d = decode(ev('error', { error = { type = 'invalid_request_error', message = 'bad' } }))
      assert.is_false(d.error.retryable)
      assert.equals('rate_limit_error: slow down',
        A.error_message(429, '{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'))
    end)
  end)
end)

require('spec.backend_common').cases('anthropic', { describe = describe, it = it, pending = pending,
  before_each = before_each, after_each = after_each })

describe('anthropic in a run', function()
  require('spec.backend_common').run_case('anthropic', 'claude-haiku-4-5', { it = it, after_each = after_each })
end)
