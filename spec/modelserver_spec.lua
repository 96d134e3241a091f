-- The scripted model server (lua/orch/testing/): its HTTP/1.1 server over
-- orch.core.tcp_listen, the three protocols, scenarios, recording and the
-- fault replies, driven by real clients on 127.0.0.1 (libcurl through
-- orch.core.http, raw sockets through orch.core.tcp_connect, and curl).
local core = require('orch.core')
local H = require('spec.helpers')
local json = require('orch.testing.json')
local ms = require('orch.testing.modelserver')
local http = core.http

-- POSTs (or GETs) and runs the loop until the response ended. Returns
-- {status, headers, body, err, code, events (SSE data, decoded)}.
local function request(url, opts)
  opts = opts or {}
  local r = { body = {}, events = {}, names = {} }
  local parser = http.sse_parser(function(ev)
    r.names[#r.names + 1] = ev.event
    r.events[#r.events + 1] = ev.data == '[DONE]' and '[DONE]' or json.decode(ev.data)
  end)
  local body = opts.body
  if type(body) == 'table' then body = json.encode(body) end
  r.req = assert(http.request({
    url = url, method = opts.method, body = body, idle_timeout = opts.idle_timeout,
    headers = opts.headers or { ['Content-Type'] = 'application/json',
                                ['x-api-key'] = 'sk-secret', Authorization = 'Bearer sk-secret' },
    on_headers = function(status, headers) r.status, r.headers = status, headers end,
    on_chunk = function(b)
      r.body[#r.body + 1] = b
      parser:feed(b)
    end,
    on_done = function(err, status, code)
      r.done, r.err, r.code = true, err, code
      r.status = r.status or status
    end,
  }))
  H.run_until(function() return r.done end, opts.timeout or 10000)
  r.body = table.concat(r.body)
  return r
end

-- A raw TCP client: sends bytes, collects what comes back until closed.
local function raw(port, data)
  local c = { got = {}, closed = false }
  c.conn = assert(core.tcp_connect({ port = port, on_connect = function(conn, err)
    assert(conn, err)
    c.connected = true
    conn:on_close(function() c.closed = true end)
    conn:on_data(function(d) c.got[#c.got + 1] = d end)
    if data then conn:write(data) end
  end }))
  function c.text() return table.concat(c.got) end
  return c
end

local function anthropic_body(text, extra)
  local b = { model = 'claude-test', stream = true, max_tokens = 100,
              system = { { type = 'text', text = 'You are a test. Primary working directory: /tmp/w' } },
              messages = { { role = 'user', content = text } },
              tools = { { name = 'Write', input_schema = { type = 'object', properties = {
                file_path = { type = 'string' }, content = { type = 'string' } } } },
                        { name = 'Bash', input_schema = { type = 'object', properties = {
                command = { type = 'string' } } } } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

local function deltas(events, field)
  local out = {}
  for _, e in ipairs(events) do
    if type(e) == 'table' and e.delta and e.delta[field] then out[#out + 1] = e.delta[field] end
  end
  return table.concat(out)
end

describe('scripted model server', function()
  local srv

  after_each(function()
    if srv then srv:stop() end
    srv = nil
  end)

  describe('Anthropic Messages', function()
    it('streams a text reply with fresh ids and usage', function()
      srv = assert(ms.start({ scenario = { { when = { user = 'hello' }, reply = 'Hi there, friend.' } } }))
      assert.matches('^http://127%.0%.0%.1:%d+$', srv.url)
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('hello') })
      assert.is_nil(r.err)
      assert.are.equal(200, r.status)
      assert.matches('text/event%-stream', r.headers['content-type'])
      assert.are.same({ 'message_start', 'ping', 'content_block_start' }, { unpack(r.names, 1, 3) })
      assert.are.equal('message_stop', r.names[#r.names])
      assert.are.equal('Hi there, friend.', deltas(r.events, 'text'))
      local start = r.events[1].message
      assert.matches('^msg_', start.id)
      assert.are.equal('claude-test', start.model)
      local md = r.events[#r.events - 1]
      assert.are.equal('end_turn', md.delta.stop_reason)
      assert.is_true(md.usage.input_tokens > 0 and md.usage.output_tokens > 0)
      local r2 = request(srv.url .. '/v1/messages', { body = anthropic_body('hello') })
      assert.are_not.equal(start.id, r2.events[1].message.id)
    end)

    it('answers a tool call in the JSON form when stream is false', function()
      srv = assert(ms.start({ scenario = {
        { reply = { text = 'Writing.', write = { path = 'a.txt', content = 'A\n' },
                    shell = 'ls', usage = { input_tokens = 7, output_tokens = 3 } } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('go', { stream = false }) })
      assert.are.equal(200, r.status)
      local m = json.decode(r.body)
      assert.are.equal('tool_use', m.stop_reason)
      assert.are.same({ type = 'text', text = 'Writing.' }, m.content[1])
      assert.are.equal('Write', m.content[2].name)
      -- Claude Code's Write wants an absolute path: the working directory
      -- comes from its system prompt
      assert.are.same({ file_path = '/tmp/w/a.txt', content = 'A\n' }, m.content[2].input)
      assert.are.equal('Bash', m.content[3].name)
      assert.are.equal('ls', m.content[3].input.command)
      assert.are_not.equal(m.content[2].id, m.content[3].id)
      assert.are.same({ input_tokens = 7, output_tokens = 3, cache_creation_input_tokens = 0,
                        cache_read_input_tokens = 0 }, m.usage)
    end)

    it('streams thinking before the text, with a signature', function()
      srv = assert(ms.start({ scenario = { { reply = { thinking = 'hmm', text = 'so' } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('go') })
      assert.are.equal('thinking', r.events[3].content_block.type)
      assert.are.equal('hmm', deltas(r.events, 'thinking'))
      assert.matches('^sig_', deltas(r.events, 'signature'))
      assert.are.equal('so', deltas(r.events, 'text'))
      r = request(srv.url .. '/v1/responses', { body = { model = 'm', input = 'x' } })
      local out = json.decode(r.body).output
      assert.are.equal('reasoning', out[1].type)
      assert.are.equal('hmm', out[1].summary[1].text)
      assert.are.equal('so', out[2].content[1].text)
    end)

    it('streams tool input as JSON deltas and answers count_tokens', function()
      srv = assert(ms.start({ scenario = { { reply = { write = { path = '/abs/b', content = 'B' } } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('go') })
      assert.are.equal('tool_use', r.events[3].content_block.type)
      assert.are.same({ file_path = '/abs/b', content = 'B' },
                      json.decode(deltas(r.events, 'partial_json')))
      local c = request(srv.url .. '/v1/messages/count_tokens', { body = anthropic_body('go') })
      assert.are.equal(200, c.status)
      assert.is_true(json.decode(c.body).input_tokens > 0)
    end)
  end)

  describe('OpenAI chat completions', function()
    it('streams text and several tool calls in deltas, with usage', function()
      srv = assert(ms.start({ scenario = { { reply = {
        text = 'ok', tool_calls = { { name = 'read', input = { path = 'x' } },
                                    { name = 'write', input = { path = 'y', content = 'z' } } } } } } }))
      local r = request(srv.url .. '/v1/chat/completions', { body = {
        model = 'local', stream = true, stream_options = { include_usage = true },
        messages = { { role = 'system', content = 'sys' }, { role = 'user', content = 'do it' } } } })
      assert.are.equal(200, r.status)
      assert.are.equal('[DONE]', r.events[#r.events])
      local text, args, ids, names, finish, usage = {}, { {}, {} }, {}, {}, nil, nil
      for _, e in ipairs(r.events) do
        if type(e) == 'table' then
          usage = usage or e.usage
          local ch = e.choices[1]
          if ch then
            finish = finish or (ch.finish_reason ~= json.null and ch.finish_reason or nil)
            text[#text + 1] = ch.delta.content
            for _, tc in ipairs(ch.delta.tool_calls or {}) do
              local i = tc.index + 1
              if tc.id then ids[i], names[i] = tc.id, tc['function'].name end
              args[i][#args[i] + 1] = tc['function'].arguments
            end
          end
        end
      end
      assert.are.equal('ok', table.concat(text))
      assert.are.same({ 'read', 'write' }, names)
      assert.are_not.equal(ids[1], ids[2])
      assert.are.same({ path = 'x' }, json.decode(table.concat(args[1])))
      assert.are.same({ path = 'y', content = 'z' }, json.decode(table.concat(args[2])))
      assert.are.equal('tool_calls', finish)
      assert.is_true(usage.prompt_tokens > 0 and usage.completion_tokens > 0)
    end)

    it("maps write, edit and shell to the offered tools' own parameter names", function()
      srv = assert(ms.start({ scenario = { { reply = {
        write = { path = 'w.txt', content = 'W' }, edit = { path = 'e.txt', old = 'a', new = 'b' },
        shell = 'make' } } } }))
      local function fn(name, props)
        local p = {}
        for _, k in ipairs(props) do p[k] = { type = 'string' } end
        return { type = 'function', ['function'] = { name = name, parameters = { properties = p } } }
      end
      local function calls(tools)
        local r = request(srv.url .. '/v1/chat/completions', { body = { model = 'm',
          messages = { { role = 'user', content = 'go' } }, tools = tools } })
        local out = {}
        for _, c in ipairs(json.decode(r.body).choices[1].message.tool_calls) do
          out[#out + 1] = { c['function'].name, json.decode(c['function'].arguments) }
        end
        return out
      end
      -- orch's own tools (lua/orch/agent/tools.lua)
      assert.are.same({ { 'write', { path = 'w.txt', content = 'W' } },
                        { 'edit', { path = 'e.txt', old_string = 'a', new_string = 'b' } },
                        { 'shell', { command = 'make' } } },
                      calls({ fn('write', { 'path', 'content' }), fn('edit', { 'path', 'old_string', 'new_string' }),
                              fn('shell', { 'command', 'timeout' }) }))
      -- Crush's
      assert.are.same({ { 'write', { file_path = 'w.txt', content = 'W' } },
                        { 'edit', { file_path = 'e.txt', old_string = 'a', new_string = 'b' } },
                        { 'bash', { command = 'make' } } },
                      calls({ fn('bash', { 'command' }), fn('edit', { 'file_path', 'old_string', 'new_string' }),
                              fn('write', { 'file_path', 'content' }) }))
    end)

    it('records tool results and answers the JSON form', function()
      srv = assert(ms.start({ scenario = {
        { when = { tool_result = 'written (%w+)' }, reply = 'saw {{1}}' } } }))
      local r = request(srv.url .. '/v1/chat/completions', { body = {
        model = 'local', messages = {
          { role = 'user', content = 'write it' },
          { role = 'assistant', content = json.null, tool_calls = {
            { id = 'c1', type = 'function', ['function'] = { name = 'write', arguments = '{"path":"f"}' } } } },
          { role = 'tool', tool_call_id = 'c1', content = 'written fine' } } } })
      local body = json.decode(r.body)
      assert.are.equal('saw fine', body.choices[1].message.content)
      assert.are.equal('stop', body.choices[1].finish_reason)
      local rec = srv:last()
      assert.are.equal('chat', rec.protocol)
      assert.are.equal('tool', rec.last)
      assert.are.same({ { id = 'c1', output = 'written fine', is_error = false } }, rec.tool_results)
      assert.are.same({ id = 'c1', name = 'write', input = { path = 'f' } }, rec.messages[2].tool_calls[1])
    end)
  end)

  describe('OpenAI Responses', function()
    local function responses_body(tools)
      return { model = 'gpt-5.5', stream = true, instructions = 'be brief',
               input = { { type = 'message', role = 'user', content = { { type = 'input_text',
                           text = '<environment_context>\n  <cwd>/tmp/cx</cwd>\n</environment_context>' } } },
                         { type = 'message', role = 'user',
                           content = { { type = 'input_text', text = 'make f.txt' } } } },
               tools = tools }
    end

    it('streams function calls and ends with response.completed and usage', function()
      srv = assert(ms.start({ scenario = { { reply = { text = 'running', shell = 'touch f.txt' } } } }))
      local r = request(srv.url .. '/v1/responses', { body = responses_body({
        { type = 'function', name = 'exec_command', parameters = { properties = { cmd = {} } } } }) })
      assert.are.equal(200, r.status)
      assert.are.equal('response.created', r.names[1])
      assert.are.equal('response.completed', r.names[#r.names])
      local done = {}
      for i, n in ipairs(r.names) do
        if n == 'response.output_item.done' then done[#done + 1] = r.events[i].item end
      end
      assert.are.equal('message', done[1].type)
      assert.are.equal('running', done[1].content[1].text)
      assert.are.equal('function_call', done[2].type)
      assert.are.equal('exec_command', done[2].name)
      assert.are.same({ cmd = 'touch f.txt' }, json.decode(done[2].arguments))
      assert.matches('^call_', done[2].call_id)
      local completed = r.events[#r.events].response
      assert.are.equal('completed', completed.status)
      assert.are.equal(2, #completed.output)
      assert.is_true(completed.usage.input_tokens > 0 and completed.usage.output_tokens > 0)
      local seqs = {}
      for i, e in ipairs(r.events) do seqs[i] = e.sequence_number end
      assert.are.equal(0, seqs[1])
      assert.are.equal(#r.events - 1, seqs[#seqs])
    end)

    it("writes through codex's freeform apply_patch and reads its output back", function()
      srv = assert(ms.start({ scenario = {
        { when = { tool_result = 'Success' }, reply = 'patched' },
        { when = { user = 'make (%S+)' }, reply = { write = { path = '{{1}}', content = 'one\ntwo\n' } } } } }))
      local r = request(srv.url .. '/v1/responses', { body = responses_body({
        { type = 'custom', name = 'apply_patch', format = { type = 'grammar' } },
        { type = 'function', name = 'exec_command', parameters = { properties = { cmd = {} } } } }) })
      local item
      for i, n in ipairs(r.names) do
        if n == 'response.output_item.done' then item = r.events[i].item end
      end
      assert.are.equal('custom_tool_call', item.type)
      assert.are.equal('apply_patch', item.name)
      assert.are.equal('*** Begin Patch\n*** Add File: f.txt\n+one\n+two\n*** End Patch\n', item.input)
      assert.are.equal('/tmp/cx', srv:last().cwd)
      local b = responses_body({})
      b.input[#b.input + 1] = { type = 'custom_tool_call', call_id = item.call_id, name = 'apply_patch',
                                input = item.input }
      b.input[#b.input + 1] = { type = 'custom_tool_call_output', call_id = item.call_id,
                                output = 'Success. Updated the following files:\nA f.txt\n' }
      b.stream = false
      local r2 = request(srv.url .. '/v1/responses', { body = b })
      assert.are.equal('patched', json.decode(r2.body).output[1].content[1].text)
      local rec = srv:last()
      assert.are.equal(1, rec.rule)
      assert.are.equal('tool', rec.last)
      assert.are.equal(item.call_id, rec.tool_results[1].id)
      assert.are.equal('make f.txt', rec.last_user)
      assert.matches('be brief', rec.system)
    end)
  end)

  describe('scenarios', function()
    it('takes the first rule that matches, counts times, falls back to the default', function()
      srv = assert(ms.start({ scenario = {
        { when = { protocol = 'chat' }, reply = 'chat only' },
        { name = 'once', when = { user = 'ping' }, reply = 'first pong', times = 1 },
        { when = { user = 'ping', model = '^claude' }, reply = 'later pong' },
        { when = function(req) return req.last_user == 'fn' end, reply = function(req)
          return { text = 'fn saw ' .. #req.messages .. ' message' }
        end },
      } }))
      local function text(prompt, model)
        local r = request(srv.url .. '/v1/messages', { body = anthropic_body(prompt, { model = model }) })
        return deltas(r.events, 'text')
      end
      assert.are.equal('first pong', text('ping'))
      assert.are.equal('later pong', text('ping'))
      assert.are.equal('fn saw 1 message', text('fn'))
      assert.are.equal(ms.DEFAULT_TEXT, text('ping', 'other-model'))
      local recs = srv:requests()
      assert.are.equal('once', recs[1].rule)
      assert.are.equal(3, recs[2].rule)
      assert.is_false(recs[2].default)
      assert.is_true(recs[4].default)
      assert.is_nil(recs[4].rule)
    end)

    it('answers a list of replies in turn', function()
      srv = assert(ms.start({ scenario = {
        { when = { user = 'go' }, replies = { 'one', { text = 'two' }, function() return 'three' end } },
        { when = { user = 'rep' }, replies = { 'a', 'b' }, times = 3 } } }))
      local got = {}
      for _ = 1, 4 do
        got[#got + 1] = deltas(request(srv.url .. '/v1/messages', { body = anthropic_body('go') }).events, 'text')
      end
      assert.are.same({ 'one', 'two', 'three', ms.DEFAULT_TEXT }, got)
      got = {}
      for _ = 1, 4 do
        got[#got + 1] = deltas(request(srv.url .. '/v1/messages', { body = anthropic_body('rep') }).events, 'text')
      end
      assert.are.same({ 'a', 'b', 'b', ms.DEFAULT_TEXT }, got)
      assert.is_nil((ms.start({ scenario = { { replies = {} } } })))
      assert.is_nil((ms.start({ scenario = { { replies = { 'x' }, reply = 'y' } } })))
    end)

    it('a reply function that fails answers 500 and is counted; odd replies still answer', function()
      srv = assert(ms.start({ scenario = {
        { when = { user = 'boom' }, reply = function() error('scenario bug') end },
        { when = { user = 'odd' }, reply = { text = 42, tool_calls = { { input = { a = 1 } } } } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('boom') })
      assert.are.equal(500, r.status)
      assert.are.equal(1, srv:errors())
      r = request(srv.url .. '/v1/messages', { body = anthropic_body('odd', { stream = false }) })
      assert.are.equal(200, r.status)
      assert.are.equal('42', json.decode(r.body).content[1].text)
      assert.are.equal(1, srv:errors())
    end)

    it('matches the system prompt, any text, offered tools and the last message', function()
      srv = assert(ms.start({ scenario = {
        { when = { tools = 'Nope' }, reply = 'no' },
        { when = { system = 'You are a test', text = 'SECRET%-WORD', last = 'user' }, reply = 'yes' },
      } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('the SECRET-WORD') })
      assert.are.equal('yes', deltas(r.events, 'text'))
      assert.is_false(srv:last().default)
    end)

    it('loads a JSON scenario file and refuses a bad one', function()
      local dir = H.tmpdir()
      H.write(dir .. '/s.json', '{"rules": [{"when": {"user": "json"}, "reply": {"text": "from json"}}],' ..
                                ' "default": "json default"}')
      srv = assert(ms.start({ scenario = dir .. '/s.json' }))
      assert.are.equal('from json', deltas(request(srv.url .. '/v1/messages',
        { body = anthropic_body('json please') }).events, 'text'))
      assert.are.equal('json default', deltas(request(srv.url .. '/v1/messages',
        { body = anthropic_body('other') }).events, 'text'))
      H.write(dir .. '/bad.lua', 'return { { when = { usr = "x" }, reply = "y" } }')
      local s, err = ms.start({ scenario = dir .. '/bad.lua' })
      assert.is_nil(s)
      assert.matches('unknown when.usr', err)
      assert.is_nil((ms.start({ scenario = { { when = { user = 'x' } } } })))
      s, err = ms.start({ scenario = { { when = { protocol = 'openai' }, reply = 'x' } } })
      assert.is_nil(s)
      assert.matches("unknown protocol 'openai'", err)
      H.rm(dir)
    end)

    it("strips Claude Code's system reminders from the user's text", function()
      srv = assert(ms.start({ scenario = { { when = { user = '^create (%S+)$' }, reply = 'made {{1}}' } } }))
      local b = anthropic_body(nil)
      b.messages[1].content = {
        { type = 'text', text = '<system-reminder>\nyou may create files\n</system-reminder>\n' },
        { type = 'text', text = 'create x.txt' } }
      assert.are.equal('made x.txt', deltas(request(srv.url .. '/v1/messages', { body = b }).events, 'text'))
      assert.are.equal('create x.txt', srv:last().last_user)
    end)
  end)

  describe('recording', function()
    it('keeps every request in order, without secrets, and writes JSON', function()
      local dir = H.tmpdir()
      srv = assert(ms.start({ scenario = { { reply = 'r' } }, log = dir .. '/log.jsonl' }))
      request(srv.url .. '/v1/messages', { body = anthropic_body('one') })
      request(srv.url .. '/v1/models')
      request(srv.url .. '/nowhere')
      request(srv.url .. '/v1/responses', { body = { model = 'm', input = 'two', stream = true } })
      local recs = srv:requests()
      assert.are.equal(2, #recs)
      assert.are.same({ 'anthropic', 'responses' }, { recs[1].protocol, recs[2].protocol })
      assert.are.equal('one', recs[1].last_user)
      assert.are.same({ 'Write', 'Bash' }, recs[1].tools)
      assert.are.equal('claude-test', recs[1].body.model)
      assert.is_nil(recs[1].headers['x-api-key'])
      assert.is_nil(recs[1].headers.authorization)
      assert.are.equal('application/json', recs[1].headers['content-type'])
      assert.are.equal(4, #srv:requests('all'))
      assert.are.equal('/nowhere', srv:requests('all')[3].path)
      local log = ms.read_log(dir .. '/log.jsonl')
      assert.are.equal(4, #log)
      assert.are.equal('two', log[4].last_user)
      assert.are.equal('r', log[4].reply.text)
      assert.is_true(srv:dump(dir .. '/all.json'))
      local all = json.decode(H.read(dir .. '/all.json'))
      assert.are.equal(4, #all)
      assert.is_nil(H.read(dir .. '/log.jsonl'):find('sk%-secret'))
      assert.is_nil(H.read(dir .. '/all.json'):find('sk%-secret'))
      H.rm(dir)
    end)

    it('refuses a port in use', function()
      srv = assert(ms.start({}))
      local other, err = ms.start({ port = srv.port })
      assert.is_nil(other)
      assert.matches('address already in use', err)
    end)

    it('lists models and answers unknown paths with 404', function()
      srv = assert(ms.start({ models = { 'a', 'b' } }))
      local r = request(srv.url .. '/v1/models')
      assert.are.equal(200, r.status)
      local ids = {}
      for i, m in ipairs(json.decode(r.body).data) do ids[i] = m.id end
      assert.are.same({ 'a', 'b' }, ids)
      assert.are.equal(404, request(srv.url .. '/v2/other', { body = '{}' }).status)
    end)
  end)

  describe('faults', function()
    it('429 carries retry-after; 529 is overloaded; 500 is an api error', function()
      srv = assert(ms.start({ scenario = {
        { when = { user = 'a' }, reply = { status = 429, retry_after = 3 } },
        { when = { user = 'b' }, reply = { status = 529 } },
        { when = { user = 'c' }, reply = { status = 500, message = 'boom' } },
      } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('a') })
      assert.are.equal(429, r.status)
      assert.are.equal('3', r.headers['retry-after'])
      assert.are.equal('rate_limit_error', json.decode(r.body).error.type)
      r = request(srv.url .. '/v1/messages', { body = anthropic_body('b') })
      assert.are.equal(529, r.status)
      assert.are.equal('overloaded_error', json.decode(r.body).error.type)
      r = request(srv.url .. '/v1/chat/completions', { body = { model = 'm',
        messages = { { role = 'user', content = 'c' } } } })
      assert.are.equal(500, r.status)
      assert.are.equal('boom', json.decode(r.body).error.message)
    end)

    it('hang keeps the connection open and sends no byte', function()
      srv = assert(ms.start({ scenario = { { reply = { hang = true } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('x'), idle_timeout = 500 })
      assert.are.equal('ETIMEDOUT', r.code)
      assert.are.equal('', r.body)
      assert.is_nil(r.headers)
      -- a raw client sees the connection stay open with nothing on it
      local body = json.encode(anthropic_body('x'))
      local c = raw(srv.port, 'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: ' .. #body ..
                              '\r\n\r\n' .. body)
      H.run_until(function() return #srv:requests() == 2 end, 5000)
      H.run_until(function() return c.closed end, 300)
      assert.is_false(c.closed)
      assert.are.equal('', c.text())
      srv:stop()
      srv = nil
      assert.is_true(H.run_until(function() return c.closed end, 5000))
    end)

    it('cut sends part of the stream and closes', function()
      srv = assert(ms.start({ scenario = { { reply = { text = 'a fairly long reply to cut', cut = true } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('x') })
      assert.are.equal(200, r.status)
      assert.is_not_nil(r.err) -- the chunked body never ended
      assert.are.equal('message_start', r.names[1])
      assert.is_nil(r.body:find('message_stop', 1, true))
      local c = request(srv.url .. '/v1/chat/completions', { body = { model = 'm', stream = true,
        messages = { { role = 'user', content = 'x' } } } })
      assert.is_not_nil(c.err)
      assert.is_nil(c.body:find('[DONE]', 1, true))
      assert.is_true(#c.events >= 1)
    end)

    it('stream_error ends a stream with the protocol error event', function()
      srv = assert(ms.start({ scenario = { { reply = { text = 'overloaded half way', stream_error = true } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('x') })
      assert.is_nil(r.err)
      assert.are.equal('error', r.names[#r.names])
      assert.are.equal('overloaded_error', r.events[#r.events].error.type)
      assert.is_nil(r.body:find('message_stop', 1, true))
      r = request(srv.url .. '/v1/responses', { body = { model = 'm', stream = true, input = 'x' } })
      assert.are.equal('response.failed', r.names[#r.names])
      assert.are.equal('server_is_overloaded', r.events[#r.events].response.error.code)
      r = request(srv.url .. '/v1/chat/completions', { body = { model = 'm', stream = true,
        messages = { { role = 'user', content = 'x' } } } })
      assert.is_not_nil(r.events[#r.events].error)
      r = request(srv.url .. '/v1/messages', { body = anthropic_body('x', { stream = false }) })
      assert.are.equal(529, r.status)
    end)

    it('cut of a JSON reply sends half the announced body', function()
      srv = assert(ms.start({ scenario = { { reply = { text = 'json to cut', cut = true } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('x', { stream = false }) })
      assert.is_not_nil(r.err)
      assert.is_nil(json.decode(r.body))
    end)

    it('delay answers later, and stop() drops what is pending', function()
      srv = assert(ms.start({ scenario = { { when = { user = 'late' },
                                             reply = { text = 'late', delay = 50, interval = 5 } },
                                           { reply = { text = 'never', delay = 60000 } } } }))
      local r = request(srv.url .. '/v1/messages', { body = anthropic_body('late') })
      assert.are.equal('late', deltas(r.events, 'text'))
      local pending = { done = false }
      assert(http.request({ url = srv.url .. '/v1/messages', body = json.encode(anthropic_body('x')),
                            on_done = function(err) pending.done, pending.err = true, err end }))
      H.run_until(function() return #srv:requests() == 2 end, 5000)
      srv:stop()
      srv = nil
      assert.is_true(H.run_until(function() return pending.done end, 5000))
      assert.is_not_nil(pending.err)
    end)
  end)

  describe('HTTP/1.1', function()
    it('keeps a connection alive for pipelined requests, chunked bodies and 100-continue', function()
      srv = assert(ms.start({ scenario = { { when = { user = '(%w+)' }, reply = { text = 'echo {{1}}' } } } }))
      local function post(prompt, chunked)
        local body = json.encode(anthropic_body(prompt, { stream = false }))
        if chunked then
          local half = math.floor(#body / 2)
          return 'POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n' ..
                 'Expect: 100-continue\r\n\r\n' ..
                 ('%x\r\n'):format(half) .. body:sub(1, half) .. '\r\n' ..
                 ('%x;ext=1\r\n'):format(#body - half) .. body:sub(half + 1) .. '\r\n0\r\n\r\n'
        end
        return 'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: ' .. #body .. '\r\n\r\n' .. body
      end
      local c = raw(srv.port, post('one') .. post('two', true) .. post('three'))
      H.run_until(function() return select(2, c.text():gsub('HTTP/1.1 200', '')) == 3 end, 5000)
      local t = c.text()
      assert.matches('HTTP/1.1 100 Continue', t)
      local a, b, d = t:find('echo one', 1, true), t:find('echo two', 1, true), t:find('echo three', 1, true)
      assert.is_true(a < b and b < d)
      assert.is_false(c.closed)
      c.conn:close()
    end)

    it('parses requests split anywhere across reads', function()
      srv = assert(ms.start({ scenario = { { when = { user = '(%w+)' }, reply = { text = 'echo {{1}}' } } } }))
      local body = json.encode(anthropic_body('split', { stream = false }))
      local half = math.floor(#body / 2)
      local bytes = 'POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
                    ('%x\r\n'):format(half) .. body:sub(1, half) .. '\r\n' ..
                    ('%x\r\n'):format(#body - half) .. body:sub(half + 1) .. '\r\n0\r\n\r\n' ..
                    'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: ' .. #body .. '\r\n\r\n' .. body
      math.randomseed(7)
      for _ = 1, 40 do
        local cut = math.random(1, #bytes - 1)
        local c = raw(srv.port)
        assert.is_true(H.run_until(function() return c.connected end, 5000))
        assert(c.conn:write(bytes:sub(1, cut)))
        H.run_until(function() return false end, 5)
        c.conn:write(bytes:sub(cut + 1))
        assert.is_true(H.run_until(function() return select(2, c.text():gsub('echo split', '')) == 2 end, 5000),
                       'split at ' .. cut)
        c.conn:close()
      end
      assert.are.equal(0, srv:errors())
    end)

    it('serves many streams at once, each whole', function()
      srv = assert(ms.start({ scenario = { { when = { user = 'n(%d+)' },
                                             reply = { text = 'reply {{1}} ' .. ('x'):rep(5000), interval = 1 } } } }))
      local results = {}
      for i = 1, 30 do
        local r = { chunks = {} }
        results[i] = r
        assert(http.request({ url = srv.url .. '/v1/messages', method = 'POST',
          body = json.encode(anthropic_body('n' .. i)),
          on_chunk = function(b) r.chunks[#r.chunks + 1] = b end,
          on_done = function(err) r.done, r.err = true, err end }))
      end
      assert.is_true(H.run_until(function()
        for _, r in ipairs(results) do if not r.done then return false end end
        return true
      end, 30000))
      for i, r in ipairs(results) do
        assert.is_nil(r.err)
        local body = table.concat(r.chunks)
        assert.matches('message_stop', body)
        local text = {}
        for data in body:gmatch('data: ([^\n]+)') do
          local e = json.decode(data)
          if e.delta and e.delta.text then text[#text + 1] = e.delta.text end
        end
        assert.are.equal('reply ' .. i .. ' ' .. ('x'):rep(5000), table.concat(text))
      end
      assert.are.equal(30, #srv:requests())
    end)

    it('refuses a malformed request and an oversized head', function()
      srv = assert(ms.start({}))
      local c = raw(srv.port, 'NOT HTTP\r\n\r\n')
      assert.is_true(H.run_until(function() return c.closed end, 5000))
      assert.matches('^HTTP/1.1 400', c.text())
      local big = raw(srv.port, 'GET / HTTP/1.1\r\nX: ' .. ('a'):rep(70000) .. '\r\n\r\n')
      assert.is_true(H.run_until(function() return big.closed end, 5000))
      assert.matches('^HTTP/1.1 431', big.text())
      -- the server still serves
      assert.are.equal(200, request(srv.url .. '/').status)
    end)

    it('closes after the response when asked to', function()
      srv = assert(ms.start({}))
      local c = raw(srv.port, 'GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n')
      assert.is_true(H.run_until(function() return c.closed end, 5000))
      assert.matches('Connection: close', c.text())
      assert.matches('"object":"list"', c.text())
    end)
  end)

  describe('orch model-server', function()
    it('prints its URL, serves the scenario, logs, and stops on SIGTERM', function()
      local dir = H.tmpdir()
      H.write(dir .. '/s.lua', "return { { when = { user = 'hi' }, reply = 'hello from the file' } }")
      local url, exited
      local p = assert(core.spawn({
        argv = { H.ORCH, 'model-server', dir .. '/s.lua', '--log', dir .. '/log.jsonl' },
        stdout = function(l) url = url or l end,
        on_exit = function(code) exited = code end,
      }))
      assert.is_true(H.run_until(function() return url ~= nil end, 10000))
      assert.matches('^http://127%.0%.0%.1:%d+$', url)
      local r = request(url .. '/v1/messages', { body = anthropic_body('hi') })
      assert.are.equal('hello from the file', deltas(r.events, 'text'))
      assert.are.equal('hi', ms.read_log(dir .. '/log.jsonl')[1].last_user)
      p:kill('SIGTERM')
      assert.is_true(H.run_until(function() return exited ~= nil end, 10000))
      local bad = H.orch({ 'model-server', dir .. '/missing.lua' })
      assert.are.equal(2, bad.code)
      assert.matches('missing.lua', bad.err)
      H.rm(dir)
    end)
  end)
end)

describe('scripted model server on malformed input', function()
  local VALUES = { 5, 'text', true, json.null, {}, { 1, 2 }, { a = { b = 'c' } }, { { type = 'text' } },
                   { { type = 'tool_use', input = 'x' } }, { { type = 'tool_result', content = 7 } } }

  -- Every path of tables in t (lists of keys).
  local function paths(t, prefix, out)
    out = out or {}
    for k, v in pairs(t) do
      local p = { unpack(prefix or {}) }
      p[#p + 1] = k
      out[#out + 1] = p
      if type(v) == 'table' then paths(v, p, out) end
    end
    return out
  end

  local function deep_copy(v)
    if type(v) ~= 'table' then return v end
    local c = {}
    for k, x in pairs(v) do c[k] = deep_copy(x) end
    return c
  end

  local function set(t, path, v)
    for i = 1, #path - 1 do t = t[path[i]] end
    t[path[#path]] = v
  end

  it('answers bodies with every field replaced by values of other types', function()
    local srv = assert(ms.start({ scenario = { { when = { user = 'x', tool_result = true, system = 'y' },
                                                 reply = 'never' } } }))
    local bodies = {
      ['/v1/messages'] = { model = 'm', stream = true, system = { { type = 'text', text = 's' } },
        messages = { { role = 'user', content = { { type = 'text', text = 'hi' } } },
                     { role = 'assistant', content = { { type = 'tool_use', id = 't', name = 'n', input = {} } } },
                     { role = 'user', content = { { type = 'tool_result', tool_use_id = 't',
                                                    content = { { type = 'text', text = 'r' } } } } } },
        tools = { { name = 'Write', input_schema = { properties = { file_path = {} } } } } },
      ['/v1/chat/completions'] = { model = 'm', stream = true, stream_options = { include_usage = true },
        messages = { { role = 'system', content = 's' },
                     { role = 'user', content = { { type = 'text', text = 'u' } } },
                     { role = 'assistant', tool_calls = {
                       { id = 'c', ['function'] = { name = 'n', arguments = '{}' } } } },
                     { role = 'tool', tool_call_id = 'c', content = 'r' } },
        tools = { { type = 'function', ['function'] = { name = 'write', parameters = { properties = {} } } } } },
      ['/v1/responses'] = { model = 'm', stream = true, instructions = 'i',
        input = { { type = 'message', role = 'user', content = { { type = 'input_text', text = 'u' } } },
                  { type = 'function_call', call_id = 'c', name = 'n', arguments = '{}' },
                  { type = 'function_call_output', call_id = 'c', output = 'o' },
                  { type = 'custom_tool_call_output', call_id = 'c', output = { content = 'x' } } },
        tools = { { type = 'custom', name = 'apply_patch' }, { type = 'function', name = 'exec_command',
                                                              parameters = { properties = { cmd = {} } } } } },
    }
    local sent = 0
    for path, body in pairs(bodies) do
      for _, p in ipairs(paths(body)) do
        for _, v in ipairs(VALUES) do
          local b = deep_copy(body)
          set(b, p, deep_copy(v))
          local r = request(srv.url .. path, { body = b })
          sent = sent + 1
          assert.is_true(r.status == 200 or r.status == 400, path .. ' ' .. table.concat(p, '.'))
        end
      end
      -- and bodies that are no JSON object at all
      for _, raw_body in ipairs({ '', '[]', '"s"', '{', '{"messages": [', ('x'):rep(1000) }) do
        assert.are.equal(400, request(srv.url .. path, { body = raw_body }).status)
      end
    end
    assert.is_true(sent > 300)
    assert.are.equal(0, srv:errors())
    srv:stop()
  end)

  it('survives random bytes and truncated requests, and keeps serving', function()
    local srv = assert(ms.start({}))
    local valid = 'POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
                  '5\r\n{"mod\r\n3\r\nel"\r\n0\r\n\r\n'
    math.randomseed(14)
    local conns = {}
    for i = 1, 200 do
      local s = valid
      local op = i % 3
      if op == 0 then
        s = s:sub(1, math.random(0, #s))
      elseif op == 1 then
        local pos = math.random(1, #s)
        s = s:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. s:sub(pos + 1)
      else
        local t = {}
        for j = 1, math.random(1, 300) do t[j] = string.char(math.random(0, 255)) end
        s = table.concat(t)
      end
      conns[#conns + 1] = raw(srv.port, s)
    end
    H.run_until(function() return false end, 300)
    for _, c in ipairs(conns) do
      if not c.conn:closed() then c.conn:close() end
    end
    assert.are.equal(200, request(srv.url .. '/').status)
    assert.are.equal(0, srv:errors())
    srv:stop()
  end)
end)

describe('scripted model server, changing course', function()
  it('takes a new scenario and forgets requests when asked; HEAD has no body', function()
    local srv = assert(ms.start({ scenario = { { reply = 'first' } } }))
    assert.are.equal('first', deltas(request(srv.url .. '/v1/messages', { body = anthropic_body('x') }).events, 'text'))
    assert.is_true(srv:set_scenario({ { reply = 'second' } }))
    assert.is_nil((srv:set_scenario({ { when = 5, reply = 'x' } })))
    local r = request(srv.url .. '/v1/messages', { body = anthropic_body('x') })
    assert.are.equal('second', deltas(r.events, 'text'))
    assert.are.equal(2, #srv:requests())
    srv:clear()
    assert.are.equal(0, #srv:requests())
    local c = raw(srv.port, 'HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n')
    assert.is_true(H.run_until(function() return c.closed end, 5000))
    assert.matches('^HTTP/1.1 200', c.text())
    assert.matches('\r\n\r\n$', c.text())
    srv:stop()
  end)
end)
