-- orch.repl: `orch repl [RUN]`, a Lua prompt inside a live run, over the
-- run's control socket in JSON mode (see docs/control.md).
--
-- Interactive when stdin is a terminal (line editing and history, see
-- orch.lineedit); otherwise reads Lua from stdin line by line, prints each
-- result, and exits 0 (1 if any input raised an error).
local core = require('orch.core')
local control = require('orch.control')
local repo_mod = require('orch.repo')

local M = {}

local EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

local function err(fmt, ...)
  io.stderr:write('orch: ', fmt:format(...), '\n')
end

-- ================================================================ client

local Client = {}
Client.__index = Client

-- Connects to a live run's socket and says hello. Returns client or nil, err.
function M.connect(socket)
  local conn, cerr = core.ctl.connect(socket)
  if not conn then return nil, cerr end
  local self = setmetatable({ conn = conn, next_id = 0, waiting = {}, closed = false }, Client)
  conn:start(function(data, why) self:on_frame(data, why) end,
             function(e) self.closed = true self.close_err = e end)
  conn:write(control.HELLO .. '\n')
  if not self:wait(function() return self.hello end) then
    return nil, self.close_err or 'the run closed the connection'
  end
  return self
end

function Client:on_frame(data)
  if not data then return end
  local ok, msg = pcall(control.json.decode, data)
  if not ok or type(msg) ~= 'table' then return end
  if msg.hello then self.hello = msg.hello return end
  if msg.event and self.on_event then return self.on_event(msg.event) end
  local cb = msg.id and self.waiting[msg.id]
  if cb then
    self.waiting[msg.id] = nil
    cb(msg)
  end
end

-- Sends a request; cb(reply) gets {result=} or {error=}.
function Client:request(method, params, cb)
  self.next_id = self.next_id + 1
  local id = self.next_id
  self.waiting[id] = cb
  local ok, e = self.conn:write(control.json.encode({ id = id, method = method, params = params }) .. '\n')
  if not ok then
    self.waiting[id] = nil
    cb({ error = { code = -1, message = tostring(e) } })
  end
end

-- Runs the loop until pred() or the connection closes; returns pred().
function Client:wait(pred)
  while not pred() and not self.closed do core.run('once') end
  return pred()
end

-- A blocking call (for scripts and tests): returns the reply.
function Client:call(method, params)
  local reply
  self:request(method, params or {}, function(r) reply = r end)
  self:wait(function() return reply ~= nil end)
  return reply or { error = { code = -1, message = 'connection closed' } }
end

function Client:close()
  if not self.conn:closed() then self.conn:close() end
  self.closed = true
end

-- ================================================================ finding the run

-- The live run to attach to: o[1], else the repo's only live one.
-- Returns rec or nil, message, exit code.
function M.pick(root, id)
  if id then
    local rec, why = control.find(root, id)
    if not rec then
      return nil, ('run %s is not live (%s)'):format(id, why), EXIT_USAGE
    end
    return rec
  end
  local runs, unreachable = control.live_runs(root)
  if #runs == 0 then
    if #unreachable > 0 then
      local lines = {}
      for _, u in ipairs(unreachable) do
        lines[#lines + 1] = ('run %s cannot be reached: %s'):format(u.run, tostring(u.why))
      end
      return nil, table.concat(lines, '\n'), EXIT_USAGE
    end
    return nil, 'no live run in ' .. root, EXIT_USAGE
  end
  if #runs > 1 then
    local lines = { 'several live runs in ' .. root .. '; name one (orch repl RUN):' }
    for _, r in ipairs(runs) do lines[#lines + 1] = ('  %s  (pid %s)'):format(r.run, tostring(r.pid)) end
    return nil, table.concat(lines, '\n'), EXIT_USAGE
  end
  return runs[1]
end

-- ================================================================ evaluation

-- Sends one chunk; cb(kind, text) with kind 'ok', 'incomplete' or 'error'.
local function eval(client, code, cb)
  client:request('eval', { code = code }, function(r)
    if r.result then
      if r.result.incomplete then return cb('incomplete') end
      return cb('ok', r.result.output or '')
    end
    local e = r.error or {}
    local d = type(e.data) == 'table' and e.data or {}
    local text = (type(d.output) == 'string' and d.output ~= '' and (d.output .. '\n') or '')
      .. tostring(e.message)
    if type(d.traceback) == 'string' and d.traceback ~= '' then text = text .. '\n' .. d.traceback end
    cb('error', text)
  end)
end

-- Non-interactive: lines from stdin, evaluated one chunk at a time.
local function run_pipe(client)
  local lines, buf, eof, busy = {}, '', false, false
  local pending, failed, finished = nil, false, false
  local reader

  local function step()
    while not busy do
      if #lines == 0 then
        if eof then finished = true end
        return
      end
      local line = table.remove(lines, 1)
      local code = pending and (pending .. '\n' .. line) or line
      if code:match('^%s*$') then
        pending = nil
      else
        busy = true
        eval(client, code, function(kind, text)
          busy = false
          if kind == 'incomplete' then
            pending = code
          else
            pending = nil
            if kind == 'ok' then
              if text ~= '' then io.stdout:write(text, '\n') end
            else
              failed = true
              io.stdout:flush()
              io.stderr:write(text, '\n')
            end
          end
          step()
        end)
      end
    end
  end

  reader = core.ctl.stdin({
    on_data = function(data)
      buf = buf .. data
      for line in buf:gmatch('([^\n]*)\n') do lines[#lines + 1] = line end
      buf = buf:match('[^\n]*$')
      step()
    end,
    on_eof = function()
      if buf ~= '' then lines[#lines + 1] = buf buf = '' end
      eof = true
      step()
    end,
  })
  client:wait(function() return finished end)
  if reader then reader:close() end
  io.stdout:flush()
  if not finished then
    err('the run closed the connection')
    return EXIT_FAIL
  end
  if pending then
    err('unfinished chunk at the end of the input')
    return EXIT_FAIL
  end
  return failed and EXIT_FAIL or EXIT_OK
end

-- Interactive: the line editor, a prompt per chunk, history.
local function run_tty(client, run_id)
  local lineedit = require('orch.lineedit')
  local code = EXIT_OK
  local done = false
  local pending
  local ed
  ed = lineedit.new({
    prompt = 'orch ' .. run_id .. '> ',
    history = lineedit.history_file(),
    on_line = function(line)
      local chunk = pending and (pending .. '\n' .. line) or line
      if chunk:match('^%s*$') then pending = nil ed:set_prompt('orch ' .. run_id .. '> ') return ed:ready() end
      ed:pause()
      eval(client, chunk, function(kind, text)
        if kind == 'incomplete' then
          pending = chunk
          ed:set_prompt('>> ')
        else
          pending = nil
          ed:set_prompt('orch ' .. run_id .. '> ')
          if text ~= '' then ed:print(text) end
        end
        ed:ready()
      end)
    end,
    on_cancel = function()
      pending = nil
      ed:set_prompt('orch ' .. run_id .. '> ')
    end,
    on_eof = function() done = true end,
  })
  ed:print(('connected to run %s; orch.help() lists what you can do; Ctrl+D leaves'):format(run_id))
  ed:ready()
  client:wait(function() return done end)
  ed:close()
  if client.closed and not done then
    io.stderr:write('orch: the run ended; connection closed\n')
  end
  return code
end

function M.cli(o)
  local root, rerr = repo_mod.find(o.repo or core.cwd())
  if not root then err('%s', rerr) return EXIT_USAGE end
  if o[2] then err("repl: unexpected argument '%s'", o[2]) return EXIT_USAGE end
  local rec, perr, pcode = M.pick(root, o[1])
  if not rec then err('%s', perr) return pcode end
  local client, cerr = M.connect(rec.socket)
  if not client then
    -- pick() probed it a moment ago; find() cleans it only if it is stale
    control.find(root, rec.run)
    err('run %s is not reachable (%s)', rec.run, tostring(cerr))
    return EXIT_USAGE
  end
  local code
  if core.isatty(0) and core.isatty(1) then
    code = run_tty(client, rec.run)
  else
    code = run_pipe(client)
  end
  client:close()
  return code
end

return M
