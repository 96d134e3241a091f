-- `orch mcp`: the MCP stdio server CLI agents launch for ask_orchestrator.
-- The real binary over a real pipe (the protocol), relaying to a real
-- control socket.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')
local mcp = require('orch.mcp')

-- Starts `orch mcp` with env; returns a client {send=, wait_reply=, lines=, proc=}.
local function start(env)
  local c = { lines = {}, replies = {}, exited = false }
  c.proc = assert(core.spawn({
    argv = { H.ORCH, 'mcp' }, env = env, stdin = 'pipe',
    stdout = function(l)
      c.lines[#c.lines + 1] = l
      local ok, msg = pcall(cjson.decode, l)
      if ok and type(msg) == 'table' and msg.id ~= nil then
        c.replies[tostring(msg.id)] = msg
      elseif ok and type(msg) == 'table' then
        c.replies['null#' .. #c.lines] = msg
      end
    end,
    stderr = function(l) io.stderr:write('orch mcp: ', l, '\n') end,
    on_exit = function(code) c.exited, c.code = true, code end,
  }))
  function c.send(t)
    c.proc:write((type(t) == 'string' and t or cjson.encode(t)) .. '\n')
  end
  function c.request(id, method, params)
    c.send({ jsonrpc = '2.0', id = id, method = method, params = params })
    assert(H.run_until(function() return c.replies[tostring(id)] ~= nil end, 20000),
      'no reply to ' .. method)
    return c.replies[tostring(id)]
  end
  function c.close()
    c.proc:close_stdin()
    assert(H.run_until(function() return c.exited end, 10000), 'orch mcp did not exit at EOF')
  end
  return c
end

local control_server = require('spec.cli_agents').control_server

describe('orch mcp', function()
  describe('the protocol over a pipe', function()
    local c
    before_each(function() c = start({ ORCH_CONTROL = false, ORCH_TASK = false }) end)
    after_each(function() if not c.exited then c.close() end end)

    it('answers server/discover with -32601 at once, then initializes', function()
      local r = c.request(0, 'server/discover', {})
      assert.equals(-32601, r.error.code)
      r = c.request(1, 'initialize', { protocolVersion = '2025-06-18', capabilities = {},
                                        clientInfo = { name = 'spec', version = '1' } })
      assert.equals('2.0', r.jsonrpc)
      assert.equals('2025-06-18', r.result.protocolVersion)
      assert.equals('orch', r.result.serverInfo.name)
      assert.is_table(r.result.capabilities.tools)
    end)

    it('lists ask_orchestrator, read-only (claude\'s plan mode needs the hint)', function()
      local r = c.request('a', 'tools/list', {})
      assert.equals(1, #r.result.tools)
      local t = r.result.tools[1]
      assert.equals('ask_orchestrator', t.name)
      assert.is_true(t.annotations.readOnlyHint)
      assert.equals('object', t.inputSchema.type)
      assert.same({ 'question' }, t.inputSchema.required)
    end)

    it('answers ping; ignores notifications; refuses junk and unknown tools', function()
      c.send({ jsonrpc = '2.0', method = 'notifications/initialized' })
      c.send({ jsonrpc = '2.0', method = 'notifications/cancelled', params = { requestId = 9 } })
      assert.same({}, c.request(2, 'ping').result)
      c.send('this is not json')
      c.send('[1,2]')
      local r = c.request(3, 'resources/list', {})
      assert.equals(-32601, r.error.code)
      r = c.request(4, 'tools/call', { name = 'rm_rf', arguments = {} })
      assert.equals(-32602, r.error.code)
      r = c.request(5, 'tools/call', { name = 'ask_orchestrator', arguments = { question = '' } })
      assert.is_true(r.result.isError)
      -- the notifications got no reply; the junk got parse/invalid errors
      local errors, others = 0, 0
      for _, l in ipairs(c.lines) do
        local m = cjson.decode(l)
        if m.id == cjson.null then errors = errors + 1 else others = others + 1 end
      end
      assert.equals(2, errors)
      assert.equals(4, others)
    end)

    it('says why it cannot answer without a run, and exits at end of input', function()
      local r = c.request(6, 'tools/call', { name = 'ask_orchestrator',
                                             arguments = { question = 'which file?' } })
      assert.is_true(r.result.isError)
      assert.truthy(r.result.content[1].text:find('ORCH_CONTROL is not set', 1, true))
      c.close()
      assert.equals(0, c.code)
    end)
  end)

  describe('relaying to the run\'s control socket', function()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() H.rm(dir) end)

    it('asks the run for the task and returns its answer', function()
      local s = control_server(dir, function(p) return 'use ' .. p.question:upper() end)
      local c = start({ ORCH_CONTROL = s.path, ORCH_TASK = 'flag' })
      c.request(1, 'initialize', {})
      local r = c.request(2, 'tools/call', { name = 'ask_orchestrator', arguments = { question = 'tabs?' } })
      assert.is_false(r.result.isError)
      assert.equals('use TABS?', r.result.content[1].text)
      -- two at once, answered in any order, on one connection
      c.send({ jsonrpc = '2.0', id = 3, method = 'tools/call',
               params = { name = 'ask_orchestrator', arguments = { question = 'a' } } })
      c.send({ jsonrpc = '2.0', id = 4, method = 'tools/call',
               params = { name = 'ask_orchestrator', arguments = { question = 'b' } } })
      -- a ping is answered while the questions wait
      assert.same({}, c.request(5, 'ping').result)
      assert(H.run_until(function() return c.replies['3'] and c.replies['4'] end, 10000))
      assert.equals('use A', c.replies['3'].result.content[1].text)
      assert.equals('use B', c.replies['4'].result.content[1].text)
      assert.same({ task = 'flag', question = 'tabs?' }, s.asks[1])
      assert.equals(1, #s.conns)
      c.close()
      s.stop()
    end)

    it('a run that goes away mid-question gives an error result, not a hang', function()
      local s = control_server(dir, function(_, conn)
        core.timer(50, function() conn:close() end)
        return nil
      end)
      local c = start({ ORCH_CONTROL = s.path, ORCH_TASK = 't' })
      local r = c.request(1, 'tools/call', { name = 'ask_orchestrator', arguments = { question = 'q' } })
      assert.is_true(r.result.isError)
      assert.truthy(r.result.content[1].text:find('closed the connection', 1, true), r.result.content[1].text)
      s.stop()
      -- and a socket that is not there at all
      r = c.request(2, 'tools/call', { name = 'ask_orchestrator', arguments = { question = 'q' } })
      assert.is_true(r.result.isError)
      assert.truthy(r.result.content[1].text:find('cannot reach the run', 1, true))
      c.close()
    end)
  end)

  describe('the server object', function()
    it('replies once per call even if the asker answers twice', function()
      local out = {}
      local s = mcp.new({ write = function(l) out[#out + 1] = cjson.decode(l) end,
                          ask = function(_, cb) cb('one') cb('two') end })
      s:handle(cjson.encode({ jsonrpc = '2.0', id = 1, method = 'tools/call',
        params = { name = 'ask_orchestrator', arguments = { question = 'q' } } }))
      assert.equals(1, #out)
      assert.equals('one', out[1].result.content[1].text)
      s:handle('')
      s:handle('{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}')
      assert.equals(-32600, out[2].error.code)
    end)
  end)
end)
