-- orch.mcp: `orch mcp`, the MCP stdio server that gives a CLI agent (claude,
-- codex, crush) the tool ask_orchestrator(question).
--
-- The CLI starts it as a child and speaks newline-delimited JSON-RPC 2.0 on
-- its stdin/stdout. Each ask_orchestrator call is relayed to the live run's
-- control socket ($ORCH_CONTROL) as the control method `ask`
-- {task=$ORCH_TASK, question=} and answered with the reply's `answer` (a
-- deferred reply: the orchestrator or a person takes its time).
--
--   local s = mcp.new{ask = fn(question, cb(answer | nil, err)), write = fn(line)}
--   s:handle(line)          -- one JSON-RPC frame
--   mcp.cli(opts)           -- the command: stdin/stdout, relaying to ORCH_CONTROL
--
-- What the CLIs need (checked on claude 2.1.332, codex 0.171.0, crush
-- v0.90): unknown requests get -32601 at once (claude opens with
-- `server/discover`; crush waits 10 s for an answer and drops the server);
-- the tool declares readOnlyHint, or claude's plan mode refuses the call.
local core = require('orch.core')
local cjson = require('cjson')

local M = {}

M.PROTOCOL_VERSION = '2025-06-18'
M.TOOL_NAME = 'ask_orchestrator'
M.MAX_LINE = 16 * 1024 * 1024

local json = cjson.new()
json.encode_sparse_array(true)
json.decode_max_depth(64)
M.json = json

M.E = { PARSE = -32700, INVALID = -32600, METHOD = -32601, PARAMS = -32602, INTERNAL = -32603 }

M.TOOL = {
  name = M.TOOL_NAME,
  title = 'Ask the orchestrator',
  description = 'Ask the orchestrator of this run a question (about the plan, ' ..
    'the goal, another task, or a decision you cannot make alone). Blocks until ' ..
    'it answers; the answer comes back as text.',
  inputSchema = {
    type = 'object',
    properties = {
      question = { type = 'string', description = 'the question, self-contained' },
    },
    required = { 'question' },
  },
  -- without it claude's plan mode refuses the call
  annotations = { readOnlyHint = true, destructiveHint = false, openWorldHint = false },
}

local Server = {}
Server.__index = Server

-- o.ask(question, cb): relays a question; cb(answer) or cb(nil, message).
-- o.write(line): writes one frame (without the newline).
function M.new(o)
  return setmetatable({ ask = o.ask, write = o.write, pending = 0,
                        version = o.version or core.version }, Server)
end

function Server:send(t)
  local ok, s = pcall(json.encode, t)
  if not ok then
    s = json.encode({ jsonrpc = '2.0', id = t.id,
                      error = { code = M.E.INTERNAL, message = 'reply not encodable' } })
  end
  self.write(s)
end

function Server:reply(id, result)
  self:send({ jsonrpc = '2.0', id = id, result = result })
end

function Server:fail(id, code, message)
  self:send({ jsonrpc = '2.0', id = id == nil and cjson.null or id,
              error = { code = code, message = message } })
end

local function text_result(text, is_error)
  return { content = { { type = 'text', text = text } }, isError = is_error or false }
end

local METHODS = {}

function METHODS.initialize(self, p)
  local v = type(p.protocolVersion) == 'string' and p.protocolVersion or M.PROTOCOL_VERSION
  return {
    protocolVersion = v,
    capabilities = { tools = { listChanged = false } },
    serverInfo = { name = 'orch', title = 'orch', version = self.version },
    instructions = 'ask_orchestrator reaches the orchestrator of the run this task belongs to.',
  }
end

function METHODS.tools_list() return { tools = { M.TOOL } } end

-- tools/call answers later (the orchestrator takes its time): returns nil.
function METHODS.tools_call(self, p, id)
  if p.name ~= M.TOOL_NAME then
    return nil, M.E.PARAMS, 'unknown tool: ' .. tostring(p.name)
  end
  local args = type(p.arguments) == 'table' and p.arguments or {}
  local q = args.question
  if type(q) ~= 'string' or q:match('^%s*$') then
    self:reply(id, text_result('ask_orchestrator needs a non-empty "question" string', true))
    return
  end
  self.pending = self.pending + 1
  local answered = false
  self.ask(q, function(answer, err)
    if answered then return end
    answered = true
    self.pending = self.pending - 1
    if answer then
      self:reply(id, text_result(tostring(answer)))
    else
      self:reply(id, text_result('the orchestrator could not answer: ' .. tostring(err), true))
    end
  end)
end

local DISPATCH = {
  initialize = METHODS.initialize,
  ping = function() return {} end,
  ['tools/list'] = METHODS.tools_list,
  ['tools/call'] = METHODS.tools_call,
}

-- One frame from the client. Notifications (no id) and replies to requests
-- of ours (we send none) are ignored; unknown requests get -32601 at once.
function Server:handle(line)
  line = line:gsub('\r$', '')
  if line:match('^%s*$') then return end
  local ok, msg = pcall(json.decode, line)
  if not ok then return self:fail(nil, M.E.PARSE, 'parse error') end
  if type(msg) ~= 'table' or msg[1] ~= nil then
    return self:fail(nil, M.E.INVALID, 'not a request object (batches are not supported)')
  end
  local id = msg.id
  if id == cjson.null then id = nil end
  if msg.method == nil then return end -- a reply, or junk without a method
  if type(msg.method) ~= 'string' then
    if id == nil then return end
    return self:fail(id, M.E.INVALID, 'method must be a string')
  end
  if id == nil then return end -- a notification (notifications/initialized, cancelled, ...)
  if type(id) ~= 'number' and type(id) ~= 'string' then
    return self:fail(nil, M.E.INVALID, 'id must be a number or a string')
  end
  local fn = DISPATCH[msg.method]
  if not fn then return self:fail(id, M.E.METHOD, 'method not found: ' .. msg.method) end
  local p = msg.params
  if type(p) ~= 'table' then p = {} end
  local okc, res, code, emsg = pcall(fn, self, p, id)
  if not okc then return self:fail(id, M.E.INTERNAL, 'internal error: ' .. tostring(res)) end
  if res ~= nil then return self:reply(id, res) end
  if code then return self:fail(id, code, emsg) end
end

-- ================================================================ relay

-- An asker relaying to the control socket at path for task. One
-- connection, opened at the first question and again after it dropped;
-- questions outstanding when it drops are answered with an error.
function M.relay(path, task)
  local control = require('orch.control')
  local conn, waiting, next_id = nil, {}, 0
  local function drop(why)
    conn = nil
    local w = waiting
    waiting = {}
    for _, cb in pairs(w) do cb(nil, why) end
  end
  local function open()
    local c, err = core.ctl.connect(path)
    if not c then return nil, err end
    c:start(function(data)
      if not data then return end
      local ok, msg = pcall(json.decode, data)
      if not ok or type(msg) ~= 'table' or msg.id == nil then return end
      local cb = waiting[msg.id]
      if not cb then return end
      waiting[msg.id] = nil
      if type(msg.result) == 'table' and msg.result.answer ~= nil then
        return cb(msg.result.answer)
      end
      local e = type(msg.error) == 'table' and msg.error or {}
      cb(nil, e.message or 'no answer')
    end, function(e)
      if conn == c then drop('the run closed the connection' .. (e and (': ' .. e) or '')) end
    end)
    c:write(control.HELLO .. '\n')
    return c
  end
  return function(question, cb)
    if not path or path == '' then
      return cb(nil, 'ORCH_CONTROL is not set: orch mcp runs as a child of an agent orch started')
    end
    if not conn then
      local c, err = open()
      if not c then return cb(nil, 'cannot reach the run at ' .. path .. ': ' .. tostring(err)) end
      conn = c
    end
    next_id = next_id + 1
    waiting[next_id] = cb
    local ok, werr = conn:write(json.encode({ id = next_id, method = 'ask',
      params = { task = task, question = question } }) .. '\n')
    if not ok then
      waiting[next_id] = nil
      cb(nil, tostring(werr))
    end
  end
end

-- `orch mcp`: serves stdin/stdout until stdin closes (the CLI is done
-- with it; an answer still outstanding has nobody to read it).
function M.cli()
  local srv
  srv = M.new({
    ask = M.relay(os.getenv('ORCH_CONTROL'), os.getenv('ORCH_TASK')),
    write = function(s)
      io.stdout:write(s, '\n')
      io.stdout:flush()
    end,
  })
  local buf, eof = '', false
  local reader, err = core.ctl.stdin({
    on_data = function(d)
      buf = buf .. d
      while true do
        local nl = buf:find('\n', 1, true)
        if not nl then break end
        local line = buf:sub(1, nl - 1)
        buf = buf:sub(nl + 1)
        srv:handle(line)
      end
      if #buf > M.MAX_LINE then
        buf = ''
        srv:fail(nil, M.E.INVALID, 'frame over 16 MB dropped')
      end
    end,
    on_eof = function()
      if buf ~= '' then srv:handle(buf) buf = '' end
      eof = true
    end,
  })
  if not reader then
    io.stderr:write('orch mcp: cannot read stdin: ', tostring(err), '\n')
    return 1
  end
  while not eof do core.run('once') end
  reader:close()
  return 0
end

return M
