-- A small HTTP/1.1 server over orch.core.tcp_listen, for the scripted model
-- server: keep-alive, Content-Length and chunked request bodies,
-- `Expect: 100-continue`, one request at a time per connection (pipelined
-- requests wait their turn), bounded heads and bodies.
--
--   local hs = require('orch.testing.http_server')
--   local s = assert(hs.listen{ host = '127.0.0.1', port = 0,
--                               handler = function(req, res) end })
--   s.port   s:close()   -- closes the listener and every connection
--   s.errors                -- handler errors so far (each answered 500 or cut)
--
-- req: { method, target, path, query (string), version ('1.1'),
--        headers (lower-case names; repeats joined by ', '), body }
-- res: res:send(status, headers, body)      -- a whole response
--      res:start(status, headers)           -- a chunked stream ...
--      res:write(data)  res:finish()        -- ... its chunks, its end
--      res:cut()        -- close now (FIN), whatever was sent so far
--      res:abort()      -- reset the connection now (RST)
--      res:hang()       -- answer nothing, keep the connection open
--      res.done         -- true once the response ended one way or another
local core = require('orch.core')

local M = {}

M.MAX_HEAD = 64 * 1024
M.MAX_BODY = 64 * 1024 * 1024

local REASONS = {
  [100] = 'Continue', [200] = 'OK', [204] = 'No Content', [400] = 'Bad Request',
  [401] = 'Unauthorized', [404] = 'Not Found', [405] = 'Method Not Allowed',
  [413] = 'Payload Too Large', [429] = 'Too Many Requests',
  [431] = 'Request Header Fields Too Large', [500] = 'Internal Server Error',
  [501] = 'Not Implemented', [502] = 'Bad Gateway', [503] = 'Service Unavailable',
  [529] = 'Overloaded',
}

local function head_lines(status, headers, extra)
  local lines = { ('HTTP/1.1 %d %s'):format(status, REASONS[status] or 'Status') }
  local names = {}
  for k in pairs(headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ': ' .. tostring(headers[k]) end
  for _, l in ipairs(extra) do lines[#lines + 1] = l end
  return table.concat(lines, '\r\n') .. '\r\n\r\n'
end

-- ---------------------------------------------------------------- parsing

-- Parses the head (request line and headers) in s; returns req or nil, status.
local function parse_head(s)
  local line, rest = s:match('^([^\r\n]*)\r?\n(.*)$')
  if not line then return nil, 400 end
  local method, target, version = line:match('^(%u+) (%S+) HTTP/(%d%.%d)$')
  if not method then return nil, 400 end
  local headers = {}
  for l in rest:gmatch('([^\r\n]+)') do
    local k, v = l:match('^([^:%s]+):%s*(.-)%s*$')
    if not k then return nil, 400 end
    k = k:lower()
    headers[k] = headers[k] and (headers[k] .. ', ' .. v) or v
  end
  local path, query = target:match('^([^?]*)%??(.*)$')
  path = path:gsub('^https?://[^/]+', '')
  if path == '' then path = '/' end
  return { method = method, target = target, path = path, query = query,
           version = version, headers = headers }
end

-- Reads a chunked body from buf at pos; returns body, next pos; false if
-- more bytes are needed; nil, status on a malformed or oversized body.
local function parse_chunked(buf, pos, max)
  local parts, total = {}, 0
  while true do
    local e = buf:find('\n', pos, true)
    if not e then return false end
    local size = tonumber((buf:sub(pos, e - 1):match('^%s*(%x+)')) or '', 16)
    if not size then return nil, 400 end
    pos = e + 1
    if size == 0 then
      -- trailers, up to an empty line
      while true do
        local te = buf:find('\n', pos, true)
        if not te then return false end
        local tl = buf:sub(pos, te - 1)
        pos = te + 1
        if tl == '' or tl == '\r' then return table.concat(parts), pos end
      end
    end
    total = total + size
    if total > max then return nil, 413 end
    if #buf < pos + size then return false end
    parts[#parts + 1] = buf:sub(pos, pos + size - 1)
    pos = pos + size
    local crlf = buf:match('^\r?\n', pos)
    if not crlf then
      if #buf < pos + 2 then return false end
      return nil, 400
    end
    pos = pos + #crlf
  end
end

-- ---------------------------------------------------------------- connections

local Conn = {}
Conn.__index = Conn

local Res = {}
Res.__index = Res

function Res:_write(data)
  if self.conn.tcp:closed() then return nil, 'connection is closed' end
  return self.conn.tcp:write(data)
end

function Res:send(status, headers, body)
  if self.done or self.started then error('response already sent', 2) end
  body = body or ''
  self.done = true
  local extra = { 'Content-Length: ' .. #body }
  if not self.keep then extra[#extra + 1] = 'Connection: close' end
  if self.req.method == 'HEAD' then body = '' end
  self:_write(head_lines(status, headers, extra) .. body)
  self.conn:response_done(self)
end

-- Sends the head only, with a Content-Length, so that a body can follow
-- (or be cut short).
function Res:send_head(status, headers, length)
  if self.done or self.started then error('response already sent', 2) end
  self.started = true
  local extra = { 'Content-Length: ' .. length }
  if not self.keep then extra[#extra + 1] = 'Connection: close' end
  self:_write(head_lines(status, headers, extra))
end

function Res:start(status, headers)
  if self.done or self.started then error('response already sent', 2) end
  self.started, self.chunked = true, true
  local extra = { 'Transfer-Encoding: chunked' }
  if not self.keep then extra[#extra + 1] = 'Connection: close' end
  self:_write(head_lines(status, headers, extra))
end

function Res:write(data)
  if self.done then return nil, 'response ended' end
  if not self.chunked then return self:_write(data) end
  if #data == 0 then return true end
  if #data < 65536 then return self:_write(('%x\r\n'):format(#data) .. data .. '\r\n') end
  -- a big chunk goes out as it is, without a copy into a framed string
  self:_write(('%x\r\n'):format(#data))
  self:_write(data)
  return self:_write('\r\n')
end

function Res:finish()
  if self.done then return end
  self.done = true
  if self.chunked then self:_write('0\r\n\r\n') end
  self.conn:response_done(self)
end

function Res:cut()
  if self.done then return end
  self.done = true
  self.conn:close()
end

function Res:abort()
  if self.done then return end
  self.done = true
  self.conn:close(true)
end

function Res:hang()
  self.done, self.hung = true, true
  self.conn.hung = true
end

function Conn:close(abort)
  if self.closed then return end
  self.closed = true
  self.server.conns[self] = nil
  if not self.tcp:closed() then
    if abort then self.tcp:abort() else self.tcp:close() end
  end
end

function Conn:fail(status)
  self.busy = true
  self:write_raw(head_lines(status, {}, { 'Content-Length: 0', 'Connection: close' }))
  self:close()
end

function Conn:write_raw(s)
  if not self.tcp:closed() then self.tcp:write(s) end
end

function Conn:response_done(res)
  if res.keep and not self.closed then
    self.busy = false
    self:parse()
  else
    self:close()
  end
end

-- Takes the next complete request out of the buffer, if there is one.
function Conn:parse()
  if self.busy or self.closed or self.hung then return end
  if self.need and self.have < self.need then return end
  self.need = nil
  local buf = table.concat(self.parts)
  self.parts = { buf }
  if not self.req then
    local e = buf:find('\r?\n\r?\n')
    if not e then
      if #buf > M.MAX_HEAD then self:fail(431) end
      return
    end
    if e > M.MAX_HEAD then return self:fail(431) end
    local sep = buf:match('^\r?\n\r?\n', e)
    local req, status = parse_head(buf:sub(1, e - 1))
    if not req then return self:fail(status) end
    buf = buf:sub(e + #sep)
    self.req, self.parts, self.have = req, { buf }, #buf
    if (req.headers.expect or ''):lower() == '100-continue' then
      self:write_raw('HTTP/1.1 100 Continue\r\n\r\n')
    end
  end
  local req = self.req
  local te = (req.headers['transfer-encoding'] or ''):lower()
  local body, pos
  if te:find('chunked', 1, true) then
    body, pos = parse_chunked(buf, 1, M.MAX_BODY)
    if body == nil then return self:fail(pos) end
    if body == false then
      self.need = self.have + 1
      return
    end
  else
    local n = tonumber(req.headers['content-length'] or '0')
    if not n or n < 0 then return self:fail(400) end
    if n > M.MAX_BODY then return self:fail(413) end
    if #buf < n then
      self.need = n
      return
    end
    body, pos = buf:sub(1, n), n + 1
  end
  buf = buf:sub(pos)
  self.parts, self.have, self.req = { buf }, #buf, nil
  req.body = body
  self:dispatch(req)
end

function Conn:dispatch(req)
  local conn_hdr = (req.headers.connection or ''):lower()
  local keep
  if req.version == '1.0' then keep = conn_hdr:find('keep-alive', 1, true) ~= nil
  else keep = not conn_hdr:find('close', 1, true) end
  local res = setmetatable({ conn = self, keep = keep, req = req }, Res)
  self.busy = true
  local ok, err = xpcall(self.server.handler, debug.traceback, req, res)
  if not ok then
    self.server.errors = self.server.errors + 1
    io.stderr:write('orch model server: handler error: ', tostring(err), '\n')
    if not res.done and not res.started then
      res.keep = false
      res:send(500, { ['Content-Type'] = 'text/plain' }, 'handler error\n')
    elseif not res.done then
      res:cut()
    end
  end
end

function Conn:on_data(data)
  if self.closed then return end
  if self.have + #data > M.MAX_HEAD + M.MAX_BODY + 65536 then
    return self:fail(413)
  end
  self.parts[#self.parts + 1] = data
  self.have = self.have + #data
  self:parse()
end

-- ---------------------------------------------------------------- server

local Server = {}
Server.__index = Server

function Server:close()
  if self.closed then return end
  self.closed = true
  self.tcp:close()
  local list = {}
  for c in pairs(self.conns) do list[#list + 1] = c end
  for _, c in ipairs(list) do c:close() end
end

-- The connections open now (hung ones included).
function Server:connections()
  local n = 0
  for _ in pairs(self.conns) do n = n + 1 end
  return n
end

function M.listen(opts)
  assert(type(opts.handler) == 'function', 'handler must be a function')
  local self = setmetatable({ handler = opts.handler, conns = {}, errors = 0 }, Server)
  local tcp, err, code = core.tcp_listen({
    host = opts.host or '127.0.0.1', port = opts.port or 0,
    on_connection = function(tcp)
      local c = setmetatable({ tcp = tcp, server = self, parts = {}, have = 0 }, Conn)
      self.conns[c] = true
      tcp:on_close(function()
        c.closed = true
        self.conns[c] = nil
      end)
      tcp:on_data(function(data) c:on_data(data) end)
    end,
  })
  if not tcp then return nil, err, code end
  self.tcp, self.port = tcp, tcp:port()
  return self
end

return M
