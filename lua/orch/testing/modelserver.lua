-- The scripted model server: Anthropic Messages (SSE and JSON), OpenAI chat
-- completions (SSE and JSON) and OpenAI Responses (SSE and JSON) on
-- 127.0.0.1, answering from a scenario and recording every request.
--
--   local ms = require('orch.testing.modelserver')
--   local srv = assert(ms.start{ scenario = S, port = 0, log = 'FILE' })
--   srv.url          -- 'http://127.0.0.1:PORT' (ANTHROPIC_BASE_URL; OPENAI_BASE_URL = srv.url .. '/v1')
--   srv:requests()   -- the model requests so far, in order ('all': every request)
--   srv:dump(path)   -- writes them all as a JSON array
--   srv:set_scenario(S)  srv:clear()   -- a new scenario; forget the requests
--   srv:stop()
--
-- Scenarios and records are described in docs/api/modelserver.md.
local core = require('orch.core')
local http_server = require('orch.testing.http_server')
local json = require('orch.testing.json')
local scenario = require('orch.testing.scenario')
local tools = require('orch.testing.tools')
local util = require('orch.testing.util')

local M = {}

M.DEFAULT_TEXT = scenario.DEFAULT_TEXT

local PROTOCOLS = {
  anthropic = require('orch.testing.proto_anthropic'),
  chat = require('orch.testing.proto_chat'),
  responses = require('orch.testing.proto_responses'),
}

-- path -> protocol (with or without the /v1 prefix)
local ROUTES = {
  ['/v1/messages'] = 'anthropic', ['/messages'] = 'anthropic',
  ['/v1/chat/completions'] = 'chat', ['/chat/completions'] = 'chat',
  ['/v1/responses'] = 'responses', ['/responses'] = 'responses',
}

local SECRET_HEADER = { 'auth', 'key', 'token', 'cookie', 'secret' }

local function clean_headers(h)
  local out = {}
  for k, v in pairs(h) do
    local secret = false
    for _, w in ipairs(SECRET_HEADER) do
      if k:find(w, 1, true) then secret = true end
    end
    if not secret then out[k] = v end
  end
  return out
end

-- ---------------------------------------------------------------- requests

local function all_text(r)
  local parts = { r.system or '' }
  for _, m in ipairs(r.messages) do
    parts[#parts + 1] = m.text or ''
    for _, c in ipairs(m.tool_calls) do parts[#parts + 1] = util.args_json(c.input) end
    for _, t in ipairs(m.tool_results) do parts[#parts + 1] = t.output or '' end
  end
  return table.concat(parts, '\n')
end

local function find_cwd(text)
  return text:match('<cwd>([^<]+)</cwd>')
      or text:match('[Pp]rimary working directory: (/[^\n]*)')
      or text:match('[Ww]orking directory: (/[^\n]*)')
end

-- The user's own words: without the <system-reminder> blocks Claude Code
-- adds to a user message, trimmed.
local function strip_reminders(text)
  text = (text or ''):gsub('<system%-reminder>.-</system%-reminder>', '')
  return (text:gsub('^%s+', ''):gsub('%s+$', ''))
end

-- Fills the fields every protocol shares: last_user, tool_results (just
-- returned), last ('user' or 'tool'), all_text, cwd.
local function complete(r)
  r.tool_results = {}
  for i = #r.messages, 1, -1 do
    local m = r.messages[i]
    local text = m.role == 'user' and strip_reminders(m.text) or ''
    if text ~= '' and not r.last_user then r.last_user = text end
  end
  local last = r.messages[#r.messages]
  if last and #last.tool_results > 0 then
    r.tool_results, r.last = last.tool_results, 'tool'
  elseif last then
    r.last = last.role
  end
  r.all_text = all_text(r)
  r.cwd = find_cwd(r.all_text)
  -- lists stay JSON arrays in the log, even when empty
  json.array(r.messages)
  json.array(r.tools)
  json.array(r.tool_results)
  for _, m in ipairs(r.messages) do
    json.array(m.tool_calls)
    json.array(m.tool_results)
  end
end

-- ---------------------------------------------------------------- replies

local FAULT_KEYS = { 'status', 'retry_after', 'message', 'error_type', 'hang', 'stall', 'cut',
                     'stream_error', 'delay', 'interval', 'headers', 'stop_reason' }

-- The reply of a rule, templated and turned into {text, calls, usage, ...}.
local function expand(reply, req, caps, raw)
  if type(reply) == 'function' then reply = reply(req) end
  if type(reply) == 'string' then reply = { text = reply } end
  if type(reply) ~= 'table' then reply = { text = tostring(reply) } end
  reply = scenario.template(reply, req, caps)
  local out = { text = reply.text and tostring(reply.text) or '',
                thinking = reply.thinking and tostring(reply.thinking), calls = tools.calls(req, reply) }
  for _, k in ipairs(FAULT_KEYS) do out[k] = reply[k] end
  for _, c in ipairs(out.calls) do
    if c.kind == nil and req.tool_specs[c.name] then c.kind = req.tool_specs[c.name].kind end
  end
  local u = reply.usage or {}
  local produced = out.text .. (out.thinking or '')
  for _, c in ipairs(out.calls) do produced = produced .. tostring(c.name) .. util.args_json(c.input) end
  out.usage = { input_tokens = u.input_tokens or util.tokens(raw),
                output_tokens = u.output_tokens or util.tokens(produced),
                cache_read_tokens = u.cache_read_tokens, cache_write_tokens = u.cache_write_tokens }
  return out
end

local function summary(out)
  local calls = json.array()
  for i, c in ipairs(out.calls) do calls[i] = { name = c.name, input = c.input } end
  return { text = out.text, tool_calls = calls, usage = out.usage, status = out.status,
           hang = out.hang, stall = out.stall, cut = out.cut, delay = out.delay,
           stream_error = out.stream_error }
end

-- ---------------------------------------------------------------- server

local Server = {}
Server.__index = Server

function Server:record(rec)
  rec.n = #self.log + 1
  self.log[#self.log + 1] = rec
  if self.log_path then
    local f = io.open(self.log_path, 'ab')
    if f then
      f:write(json.encode(rec), '\n')
      f:close()
    end
  end
end

function Server:after(ms, fn)
  if not ms or ms <= 0 then return fn() end
  local t
  t = core.timer(ms, function()
    self.timers[t] = nil
    t:close()
    fn()
  end)
  self.timers[t] = true
end

local function send_json(res, status, body, headers)
  headers = headers or {}
  headers['Content-Type'] = 'application/json'
  res:send(status, headers, json.encode(body))
end

-- Writes the events one after another (interval ms apart), cutting or
-- stalling half way when asked.
function Server:stream(res, out, events, proto)
  local stop_at = #events
  if out.cut or out.stall or out.stream_error then stop_at = math.max(1, math.floor(#events / 2)) end
  local headers = { ['Content-Type'] = 'text/event-stream', ['Cache-Control'] = 'no-cache',
                    ['request-id'] = util.id('req_') }
  for k, v in pairs(out.headers or {}) do headers[k] = v end
  res:start(200, headers)
  local i = 0
  local function step()
    if res.done or self.stopped then return end
    i = i + 1
    if i > stop_at then
      if out.cut == 'reset' then res:abort()
      elseif out.cut then res:cut()
      elseif out.stall then res:hang()
      else
        if out.stream_error then
          local status = type(out.stream_error) == 'number' and out.stream_error or 529
          res:write(proto.stream_error(status, out.message or 'Overloaded', out.error_type))
        end
        res:finish()
      end
      return
    end
    res:write(events[i])
    self:after(out.interval, step)
  end
  step()
end

function Server:answer(res, proto, req, out)
  if out.hang then return res:hang() end
  if out.stream_error and not req.stream then
    out.status = type(out.stream_error) == 'number' and out.stream_error or 529
  end
  if out.status and out.status >= 400 then
    local headers = {}
    if out.retry_after then headers['retry-after'] = tostring(out.retry_after) end
    for k, v in pairs(out.headers or {}) do headers[k] = v end
    local msg = out.message or ('scripted error %d'):format(out.status)
    return send_json(res, out.status, proto.error(out.status, msg, out.error_type), headers)
  end
  if req.stream then return self:stream(res, out, proto.events(req, out), proto) end
  local body = json.encode(proto.json(req, out))
  if out.cut or out.stall then
    res:send_head(200, { ['Content-Type'] = 'application/json' }, #body)
    res:write(body:sub(1, math.floor(#body / 2)))
    if out.stall then return res:hang() end
    return out.cut == 'reset' and res:abort() or res:cut()
  end
  res:send(200, { ['Content-Type'] = 'application/json' }, body)
end

function Server:model_request(req, res, pname)
  local proto = PROTOCOLS[pname]
  local body, jerr = json.decode(req.body)
  if type(body) ~= 'table' or not req.body:match('^%s*{') then
    self:record({ kind = 'model', protocol = pname, method = req.method, path = req.path,
                  headers = clean_headers(req.headers), error = 'bad JSON: ' .. tostring(jerr) })
    return send_json(res, 400, proto.error(400, 'request body is not a JSON object'))
  end
  local r = proto.parse(body)
  r.protocol, r.method, r.path, r.kind = pname, req.method, req.path, 'model'
  r.query = req.query ~= '' and req.query or nil
  r.headers, r.body, r.n = clean_headers(req.headers), body, #self.log + 1
  complete(r)
  local rule, index, caps, reply = scenario.match(self.scenario, r)
  if not rule then reply = self.scenario.default end
  r.rule = rule and (rule.name or index) or nil
  r.default = rule == nil
  local out = expand(reply, r, caps or {}, req.body)
  r.reply = summary(out)
  local specs = r.tool_specs
  r.tool_specs = nil
  self:record(r)
  r.tool_specs = specs
  self:after(out.delay, function()
    if not self.stopped then self:answer(res, proto, r, out) end
  end)
end

local function models_body(self)
  local data = {}
  for i, id in ipairs(self.models) do
    data[i] = { id = id, object = 'model', type = 'model', created = 0, owned_by = 'orch',
                display_name = id, created_at = '2025-01-01T00:00:00Z' }
  end
  return { object = 'list', data = json.array(data), has_more = false,
           first_id = data[1] and data[1].id or json.null,
           last_id = data[#data] and data[#data].id or json.null }
end

function Server:other_request(req, res)
  local path = req.path
  local rec = { kind = 'other', method = req.method, path = path,
                query = req.query ~= '' and req.query or nil,
                headers = clean_headers(req.headers), body = json.decode(req.body) or req.body }
  self:record(rec)
  if path:match('/messages/count_tokens$') then
    return send_json(res, 200, PROTOCOLS.anthropic.count_tokens(req.body))
  end
  if path:match('^/v1/models') or path:match('^/models') then
    return send_json(res, 200, models_body(self))
  end
  if path == '/' or path == '/health' then
    return res:send(200, { ['Content-Type'] = 'text/plain' }, 'orch scripted model server\n')
  end
  send_json(res, 404, { type = 'error', error = { type = 'not_found_error',
                        message = 'the scripted model server does not serve ' .. path } })
end

function Server:handle(req, res)
  if self.stopped then return res:cut() end
  local pname = ROUTES[req.path]
  if pname and req.method == 'POST' then return self:model_request(req, res, pname) end
  self:other_request(req, res)
end

-- The requests so far, in order: model requests only (the ones a scenario
-- answers), or every request with 'all'.
function Server:requests(which)
  local out = {}
  for _, r in ipairs(self.log) do
    if which == 'all' or r.kind == 'model' then out[#out + 1] = r end
  end
  return out
end

-- The last model request (nil if none).
function Server:last()
  local list = self:requests()
  return list[#list]
end

function Server:dump(path)
  local f, err = io.open(path, 'wb')
  if not f then return nil, err end
  f:write(json.encode(json.array(self.log)), '\n')
  f:close()
  return true
end

-- Replaces the scenario (rules, uses counted afresh); nil, err if bad.
function Server:set_scenario(spec)
  local sc, err = scenario.load(spec)
  if not sc then return nil, err end
  self.scenario = sc
  return true
end

-- Forgets the requests recorded so far (the log file is left alone).
function Server:clear()
  self.log = {}
end

-- Errors raised while answering (each answered 500 or cut); 0 normally.
function Server:errors()
  return self.http.errors
end

-- Connections open now (hung ones included).
function Server:connections()
  return self.http:connections()
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  for t in pairs(self.timers) do t:close() end
  self.timers = {}
  self.http:close()
end

-- opts: scenario (table or file), host, port (0 = free), log (JSONL file,
-- one line per request as it comes), models (ids for GET /v1/models).
function M.start(opts)
  opts = opts or {}
  local sc, err = scenario.load(opts.scenario)
  if not sc then return nil, err end
  local self = setmetatable({ scenario = sc, log = {}, timers = {}, log_path = opts.log,
                              models = opts.models or { 'claude-sonnet-4-5', 'gpt-5', 'scripted' } },
                            Server)
  local hs, herr = http_server.listen({
    host = opts.host or '127.0.0.1', port = opts.port or 0,
    handler = function(req, res) self:handle(req, res) end,
  })
  if not hs then return nil, herr end
  self.http, self.port = hs, hs.port
  self.url = ('http://%s:%d'):format(opts.host or '127.0.0.1', hs.port)
  return self
end

-- Reads a log written with `log` (JSON lines) back: a list of records.
function M.read_log(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local list = {}
  for line in f:lines() do
    if line ~= '' then list[#list + 1] = json.decode(line) end
  end
  f:close()
  return list
end

return M
