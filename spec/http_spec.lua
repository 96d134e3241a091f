-- orch.core.http: streamed requests on the real loop against the real local
-- SSE server (tests/server/sse_server.py), and the SSE parser.
local core = require('orch.core')
local H = require('spec.helpers')
local http = core.http

local server, base

local function start_server()
  local port
  local p = assert(core.spawn({
    argv = { 'python3', H.SRC .. '/tests/server/sse_server.py', '--exit-on-eof' },
    stdin = 'pipe',
    stdout = function(l) port = port or tonumber(l) end,
    stderr = function(l) io.stderr:write('sse_server: ', l, '\n') end,
  }))
  assert(H.run_until(function() return port ~= nil end, 20000), 'server did not start')
  return p, 'http://127.0.0.1:' .. port
end

-- Starts a GET of path whose body goes through an SSE parser; returns a
-- record that fills in as the stream goes.
local function stream(path, opts)
  opts = opts or {}
  local s = { events = {}, chunks = 0, done = false }
  s.parser = http.sse_parser(function(ev)
    s.events[#s.events + 1] = ev
    if opts.on_event then opts.on_event(s, ev) end
  end)
  s.req = assert(http.request({
    url = base .. path,
    idle_timeout = opts.idle_timeout or 20000,
    connect_timeout = 5000,
    -- opts.direct: the body goes to the parser in C (sse = parser)
    sse = opts.direct and s.parser or nil,
    on_headers = function(status, headers) s.status, s.headers = status, headers end,
    on_chunk = function(c)
      s.chunks = s.chunks + 1
      if s.cancelled then s.after_cancel = true end
      if not opts.direct then s.parser:feed(c) end
    end,
    on_done = function(err, status, code)
      if s.cancelled then s.after_cancel = true end
      s.done, s.err, s.code, s.status = true, err, code, status
    end,
  }))
  return s
end

local function in_order(s, n)
  if #s.events ~= n then return false, 'got ' .. #s.events .. ' events' end
  for i, ev in ipairs(s.events) do
    local k = tonumber(ev.data:match('^{"i": (%d+)'))
    if ev.event ~= 'tick' or k ~= i - 1 or ev.id ~= tostring(i - 1) then
      return false, 'event ' .. i .. ' is ' .. ev.data:sub(1, 40)
    end
  end
  return true
end

describe('orch.core.http', function()
  setup(function()
    server, base = start_server()
  end)

  teardown(function()
    if server then
      server:close_stdin()
      server:kill('SIGTERM')
      H.run_until(function() return not server:alive() end, 5000)
    end
  end)

  it('streams 50 concurrent SSE streams, each whole and in order', function()
    local streams = {}
    for i = 1, 50 do
      -- every third stream feeds its parser in C (sse = parser)
      streams[i] = stream(('/events?n=300&size=%d&crlf=%d&delay_ms=%d')
        :format(i * 5, i % 2, i % 7 == 0 and 1 or 0), { direct = i % 3 == 0 })
    end
    assert.are.equal(50, http.active())
    assert.is_true(H.run_until(function()
      for _, s in ipairs(streams) do
        if not s.done then return false end
      end
      return true
    end, 60000))
    for _, s in ipairs(streams) do
      assert.is_nil(s.err)
      assert.are.equal(200, s.status)
      assert.are.equal('text/event-stream', s.headers['content-type'])
      assert(in_order(s, 300))
    end
    assert.are.equal(0, http.active())
  end)

  it('fails a stalled stream with an idle timeout', function()
    local s = stream('/hang?n=2', { idle_timeout = 300 })
    assert.is_true(H.run_until(function() return s.done end, 20000))
    assert.matches('idle timeout', s.err, 1, true)
    assert.are.equal('ETIMEDOUT', s.code)
    assert.are.equal(2, #s.events)
    assert.is_false(s.req:active())
  end)

  it('cancels mid-stream from inside a callback; nothing runs after', function()
    local s
    s = stream('/events?n=100000&delay_ms=1', {
      on_event = function(st, _)
        if #st.events == 5 then
          st.cancelled = true
          assert.is_true(st.req:cancel())
          assert.is_false(st.req:cancel())
        end
      end,
    })
    assert.is_true(H.run_until(function() return s.cancelled end, 20000))
    -- Let the loop turn a while: no callback may come.
    local t = false
    core.timer(200, function() t = true end)
    H.run_until(function() return t end, 5000)
    assert.is_false(s.done)
    assert.is_nil(s.after_cancel)
    assert.is_false(s.req:active())
    assert.are.equal(0, http.active())
  end)

  it('feeds an sse= parser in C: a 10 MB event whole, and a cancel from an event', function()
    local s = stream('/big?mb=10', { direct = true })
    assert.is_true(H.run_until(function() return s.done end, 60000))
    assert.is_nil(s.err)
    assert.are.equal(2, #s.events)
    assert.are.equal(10 * 1024 * 1024, #s.events[1].data)
    local c
    c = stream('/events?n=100000&delay_ms=1', {
      direct = true,
      on_event = function(st)
        if #st.events == 3 then st.cancelled = true assert.is_true(st.req:cancel()) end
      end,
    })
    assert.is_true(H.run_until(function() return c.cancelled end, 20000))
    local t = false
    core.timer(200, function() t = true end)
    H.run_until(function() return t end, 5000)
    assert.are.equal(3, #c.events)
    assert.is_false(c.done)
    assert.is_nil(c.after_cancel)
    assert.are.equal(0, http.active())
  end)

  it('feeds many events per chunk to an sse= parser whole and in order', function()
    -- thousands of small events without pauses: each chunk carries many of
    -- them, delivered in batches whose ends fall anywhere in the stream
    local s = stream('/events?n=5000&size=37', { direct = true })
    assert.is_true(H.run_until(function() return s.done end, 20000))
    assert.is_nil(s.err)
    assert(in_order(s, 5000))
    for _, ev in ipairs(s.events) do
      assert.are.equal(18 + 37 + #ev.id, #ev.data)
    end
  end)

  it('cancels from outside a callback, and right after the start', function()
    local a = stream('/hang?n=3')
    local b = stream('/events?n=10')
    b.cancelled = true
    assert.is_true(b.req:cancel())
    assert.is_true(H.run_until(function() return #a.events == 3 end, 20000))
    a.cancelled = true
    assert.is_true(a.req:cancel())
    local t = false
    core.timer(100, function() t = true end)
    H.run_until(function() return t end, 5000)
    assert.is_false(a.done or b.done)
    assert.are.equal(0, b.chunks)
    assert.are.equal(0, http.active())
  end)

  it('delivers a 10 MB event whole', function()
    local s = stream('/big?mb=10')
    assert.is_true(H.run_until(function() return s.done end, 60000))
    assert.is_nil(s.err)
    assert.are.equal(2, #s.events)
    local big = s.events[1]
    assert.are.equal('big', big.event)
    assert.are.equal(10 * 1024 * 1024, #big.data)
    assert.are.equal(string.rep('0123456789abcdef', 65536 * 10), big.data)
    assert.are.equal('end', s.events[2].data)
  end)

  it('sends method, headers and body; reports HTTP errors and refusals', function()
    local out, st
    local r = assert(http.request({
      url = base .. '/echo', method = 'PUT',
      headers = { ['X-Orch'] = 'yes', 'X-Line: 1' }, body = 'a\0b',
      on_chunk = function(c) out = (out or '') .. c end,
      on_done = function(err, status) st = { err = err, status = status } end,
    }))
    assert.is_true(H.run_until(function() return st ~= nil end, 20000))
    assert.is_nil(st.err)
    assert.are.equal(200, st.status)
    assert.matches('"method": "PUT"', out, 1, true)
    assert.matches('"x-orch": "yes"', out, 1, true)
    assert.matches('"x-line": "1"', out, 1, true)
    assert.matches('"body": "a\\u0000b"', out, 1, true)
    assert.is_false(r:active())

    local e
    http.request({ url = base .. '/status?code=503',
      on_done = function(err, status) e = { err = err, status = status } end })
    assert.is_true(H.run_until(function() return e ~= nil end, 20000))
    assert.is_nil(e.err)
    assert.are.equal(503, e.status)

    -- A port nobody listens on (the server's port + a random offset is not
    -- guaranteed free, so use port 1, which needs root to listen on).
    local f
    http.request({ url = 'http://127.0.0.1:1/', connect_timeout = 5000,
      on_done = function(err, status, code) f = { err = err, status = status, code = code } end })
    assert.is_true(H.run_until(function() return f ~= nil end, 20000))
    assert.is_string(f.err)
    assert.are.equal('ECONNREFUSED', f.code)
    assert.are.equal(0, f.status)
  end)

  it('survives a request cancelled and collected from one of its sse= events', function()
    local events, after, others_done = 0, 0, 0
    local req
    local parser = http.sse_parser(function()
      events = events + 1
      if events > 1 then after = after + 1 return end
      req:cancel()
      req = nil
      collectgarbage()
      collectgarbage()
      -- new requests reuse the memory a freed request would leave
      for _ = 1, 50 do
        http.request({ url = base .. '/events?n=3', on_chunk = function() end,
                       on_done = function() others_done = others_done + 1 end })
      end
    end)
    -- many small events per chunk: the rest of the chunk follows the cancel
    req = http.request({ url = base .. '/stream?bytes=400000&event=64', sse = parser })
    parser = nil -- luacheck: ignore 311
    assert.is_true(H.run_until(function() return others_done == 50 end, 20000))
    assert.equal(1, events)
    assert.equal(0, after)
  end)

  it('keeps no reference to refused requests or dropped parsers', function()
    local function held()
      collectgarbage()
      collectgarbage()
      local n = 0
      for _, v in pairs(debug.getregistry()) do
        if type(v) == 'function' or type(v) == 'userdata' then n = n + 1 end
      end
      return n
    end
    local p = http.sse_parser(function() end)
    local before = held()
    for _ = 1, 300 do
      assert.is_false(pcall(http.request, { url = base .. '/events?n=1', sse = p,
        on_headers = function() end, on_chunk = function() end, on_done = 42 }))
      local q = http.sse_parser(function() end)
      q:feed('data: x\n\n')
    end
    assert.is_true(held() <= before + 3)
  end)

  it('raises on misuse', function()
    assert.has_error(function() http.request({}) end)
    assert.has_error(function() http.request({ url = base, on_done = 1 }) end)
    assert.has_error(function() http.request({ url = base, idle_timeout = -1 }) end)
    assert.has_error(function() http.sse_parser() end)
  end)
end)

describe('orch.core.http.sse_parser', function()
  local function parse(pieces)
    local evs = {}
    local p = http.sse_parser(function(ev) evs[#evs + 1] = ev end)
    for _, c in ipairs(pieces) do assert(p:feed(c)) end
    p:close()
    return evs
  end

  local text = '\239\187\191: hi\r\nevent: a\r\ndata: 1\r\ndata:2\r\nid: 9\r\n'
    .. 'retry: 50\r\n\r\ndata: x\rdata: y\r\rfield\n\n\ndata\n\n'
  local want = {
    { event = 'a', data = '1\n2', id = '9', retry = 50 },
    { event = 'message', data = 'x\ny', id = '9' },
    { event = 'message', data = '', id = '9' },
  }

  it('parses fields, comments, CRLF, CR, BOM and multi-line data', function()
    assert.are.same(want, parse({ text }))
  end)

  it('gives the same events for a split at every byte offset', function()
    for i = 0, #text do
      assert.are.same(want, parse({ text:sub(1, i), text:sub(i + 1) }))
    end
    local bytes = {}
    for i = 1, #text do bytes[i] = text:sub(i, i) end
    assert.are.same(want, parse(bytes))
  end)

  it('delivers every event of a large feed, in order, each in its own table', function()
    -- more events in one feed than one batch holds, of every shape
    local parts, evs = {}, {}
    for i = 1, 1000 do
      local ev = { event = i % 3 == 0 and 'tick' or 'message', data = ('d%d'):format(i),
                   id = i % 2 == 0 and tostring(i) or nil, retry = i % 5 == 0 and i or nil }
      parts[#parts + 1] = (ev.event ~= 'message' and 'event: tick\n' or '')
        .. (ev.id and ('id: ' .. ev.id .. '\n') or '')
        .. (ev.retry and ('retry: ' .. i .. '\n') or '')
        .. 'data: ' .. ev.data .. '\n\n'
      evs[i] = ev
    end
    local last_id = nil
    for i = 1, 1000 do
      last_id = evs[i].id or last_id
      evs[i].id = last_id
    end
    local got = parse({ table.concat(parts) })
    assert.are.same(evs, got)
    local seen = {}
    for _, ev in ipairs(got) do
      assert.is_nil(seen[ev])
      seen[ev] = true
    end
  end)

  it('goes on after an error in its callback; a close stops at once', function()
    local marker = 'sse spec: error in event 7'
    local reported = 0
    core.on_error(function(msg)
      if msg:find(marker, 1, true) then reported = reported + 1 end
    end)
    local chunk = ('data: x\n\n'):rep(600)
    local n = 0
    local p = http.sse_parser(function()
      n = n + 1
      if n == 7 then error(marker) end
    end)
    assert(p:feed(chunk))
    assert.are.equal(600, n)
    assert.are.equal(1, reported)
    -- closed from its callback in the middle of a batch: nothing after it
    local m = 0
    local q
    q = http.sse_parser(function()
      m = m + 1
      if m == 300 then q:close() end
    end)
    assert(q:feed(chunk))
    assert.are.equal(300, m)
    -- an event's data is the same whether it arrived whole or in pieces
    local whole, pieces = {}, {}
    local a = http.sse_parser(function(ev) whole[#whole + 1] = ev.data end)
    local b = http.sse_parser(function(ev) pieces[#pieces + 1] = ev.data end)
    local stream_text = 'data: ' .. ('y'):rep(5000) .. '\n\ndata: 1\ndata: 2\n\ndata: z\n\n'
    assert(a:feed(stream_text))
    for i = 1, #stream_text, 777 do assert(b:feed(stream_text:sub(i, i + 776))) end
    assert.are.same(whole, pieces)
    assert.are.same({ ('y'):rep(5000), '1\n2', 'z' }, whole)
  end)

  it('remembers the last id, resets, and may be closed from its callback', function()
    local n = 0
    local p
    p = http.sse_parser(function()
      n = n + 1
      p:close()
    end)
    assert(p:feed('id: 3\ndata: a\n\ndata: b\n\n'))
    assert.are.equal(1, n)
    assert.has_error(function() p:feed('data: c\n\n') end)
    local q = http.sse_parser(function() end)
    q:feed('id: 4\ndata: a\n\n')
    assert.are.equal('4', q:last_id())
    q:reset()
    assert.are.equal('', q:last_id())
  end)
end)
