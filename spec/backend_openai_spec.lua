-- The openai backend (OpenAI-compatible chat completions, in-process):
-- request building and stream decoding on their own, then whole turns of
-- orch's tool loop against the scripted model server.
local core = require('orch.core')
local cjson = require('cjson')
local openai = require('orch.backends.openai')

local A = openai.adapter

-- Feeds an SSE text (split into small pieces) through the core's parser
-- into a fresh decoder; returns the decoder.
local function decode(sse)
  local d = A.decoder()
  local p = core.http.sse_parser(function(ev) d:event(ev) end)
  for i = 1, #sse, 7 do p:feed(sse:sub(i, i + 6)) end
  if d.finish then d:finish() end
  return d
end

local function chunk(delta, finish)
  return 'data: ' .. cjson.encode({ choices = { { index = 0, delta = delta,
    finish_reason = finish or cjson.null } } }) .. '\n\n'
end

describe('openai backend', function()
  describe('requests', function()
    it('sends the system prompt, the tools as functions and the conversation', function()
      local body = cjson.decode(A.body({
        model = 'qwen2.5-coder', system = 'be brief',
        tools = { { name = 'write', description = 'w', parameters = { type = 'object',
                    properties = { path = { type = 'string' } } } } },
        messages = {
          { role = 'user', content = 'make a.txt' },
          { role = 'assistant', content = '', tool_calls = { { id = 'c1', name = 'write',
            input = { path = 'a.txt' } } } },
          { role = 'tool', results = { { id = 'c1', output = 'refused', is_error = true } } },
        },
      }))
      assert.equals('qwen2.5-coder', body.model)
      assert.is_true(body.stream)
      assert.is_true(body.stream_options.include_usage)
      assert.same({ role = 'system', content = 'be brief' }, body.messages[1])
      assert.equals('make a.txt', body.messages[2].content)
      local call = body.messages[3].tool_calls[1]
      assert.equals('c1', call.id)
      assert.same({ path = 'a.txt' }, cjson.decode(call['function'].arguments))
      assert.equals(cjson.null, body.messages[3].content)
      assert.same({ role = 'tool', tool_call_id = 'c1', content = 'error: refused' }, body.messages[4])
      assert.equals('write', body.tools[1]['function'].name)
      assert.is_nil(body.max_tokens)
      assert.equals(100, cjson.decode(A.body({ model = 'llama3', messages = {}, max_tokens = 100 })).max_tokens)
      local o = cjson.decode(A.body({ model = 'o4-mini', messages = {}, max_tokens = 100 }))
      assert.equals(100, o.max_completion_tokens)
      assert.is_nil(o.max_tokens)
    end)

    it('takes the endpoint from the role, else OPENAI_BASE_URL; the key only in the header', function()
      local ep = assert(A.endpoint({ role = { endpoint = { base_url = 'http://127.0.0.1:9/v1/',
        api_key_env = 'MY_KEY' } }, env = { MY_KEY = 'sk-distinctive-1234' } }))
      assert.equals('http://127.0.0.1:9/v1/chat/completions', ep.url)
      assert.equals('Bearer sk-distinctive-1234', ep.headers.Authorization)
      ep = assert(A.endpoint({ env = { OPENAI_BASE_URL = 'http://localhost:11434/v1' } }))
      assert.equals('http://localhost:11434/v1/chat/completions', ep.url)
      -- a local server without a key: no Authorization header at all
      if not os.getenv('OPENAI_API_KEY') then
        assert.is_nil(ep.headers.Authorization)
        local none, err = A.endpoint({ env = { OPENAI_BASE_URL = false } })
        assert.is_nil(none)
        assert.matches('OPENAI_API_KEY', err)
      end
    end)
  end)

  describe('stream decoding', function()
    it('malformed events do not raise', function()
      for _, sse in ipairs({
        'data: {"choices": 5}\n\n',
        'data: {"choices": [7, {"delta": "x"}, {"delta": {"content": 3, "tool_calls": [1, {"index": "a",' ..
          '"function": 4}]}}]}\n\n',
        'data: {"usage": "many"}\n\n',
        'data: not json\n\n',
        'data: [1,2]\n\n',
        'data: null\n\n',
        'data: {"error": 5}\n\n',
        'data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": [], "function": {"name": {},' ..
          '"arguments": 5}}]}}]}\n\n',
      }) do
        local ok, err = pcall(decode, sse)
        assert.is_true(ok, err)
      end
    end)

    it('assembles text and tool calls from their deltas', function()
      local d = decode(chunk({ role = 'assistant', content = '' })
        .. chunk({ content = 'I will ' }) .. chunk({ content = 'write it.' })
        .. chunk({ tool_calls = { { index = 0, id = 'call_a', type = 'function',
                                     ['function'] = { name = 'write', arguments = '' } } } })
        .. chunk({ tool_calls = { { index = 0, ['function'] = { arguments = '{"path": "a' } } } })
        .. chunk({ tool_calls = { { index = 1, id = 'call_b', ['function'] = { name = 'read',
                                     arguments = '{"path":"b"}' } } } })
        .. chunk({ tool_calls = { { index = 0, ['function'] = { arguments = '.txt"}' } } } })
        .. chunk({}, 'tool_calls')
        .. 'data: ' .. cjson.encode({ choices = {}, usage = { prompt_tokens = 120,
             completion_tokens = 30, prompt_tokens_details = { cached_tokens = 100 } } }) .. '\n\n'
        .. 'data: [DONE]\n\n')
      assert.is_true(d.complete)
      assert.equals('I will write it.', table.concat(d.text))
      assert.equals(2, #d.calls)
      assert.equals('call_a', d.calls[1].id)
      assert.equals('write', d.calls[1].name)
      assert.equals('{"path": "a.txt"}', d.calls[1].args)
      assert.equals('read', d.calls[2].name)
      assert.same({ input_tokens = 20, output_tokens = 30, cache_read_tokens = 100,
                    cache_write_tokens = 0 }, d.usage)
    end)

    it('reads a whole JSON reply from a server that does not stream', function()
      local d = A.decoder()
      A.from_json(d, cjson.decode([[{"choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": "Writing.", "tool_calls": [{"id": "c9",
        "type": "function", "function": {"name": "write", "arguments": "{\"path\": \"x\"}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}}]]))
      assert.is_true(d.complete)
      assert.equals('Writing.', table.concat(d.text))
      assert.equals('c9', d.calls[1].id)
      assert.equals('{"path": "x"}', d.calls[1].args)
      assert.equals(3, d.usage.output_tokens)
    end)

    it('a stream cut before the reply finished is not complete', function()
      local d = decode(chunk({ content = 'half' })
        .. chunk({ tool_calls = { { index = 0, id = 'c', ['function'] = { name = 'write',
                                     arguments = '{"path":' } } } }))
      assert.is_not_true(d.complete)
    end)

    it('an error in the stream is reported with the server\'s words', function()
      local d = decode('data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n')
      assert.matches('model overloaded', d.error.message)
      assert.is_true(d.error.retryable)
      assert.equals('Invalid model', A.error_message(400, '{"error":{"message":"Invalid model"}}'))
      assert.equals('plain words', A.error_message(500, 'plain words\n'))
    end)
  end)
end)

require('spec.backend_common').cases('openai', { describe = describe, it = it, pending = pending,
  before_each = before_each, after_each = after_each })

describe('openai in a run', function()
  require('spec.backend_common').run_case('openai', 'gpt-4o-mini', { it = it, after_each = after_each })
end)
