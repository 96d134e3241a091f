-- orch.backends.cli: what the CLI backends (claude, codex, crush) share:
-- finding the binary, the task's scratch directories, and one turn as a
-- process whose stdout is JSON lines, spawned through orch.launcher.
--
--   cli.find_bin{name=, env_var=, command=, install=, env=} -> argv prefix | nil, message
--   cli.turn(ctx, {argv=, env=, input=, on_json=fn(obj), finish=fn(turn, code, sig) -> result,
--                  tmpdir=, finalize=, on_text=}) -> handle | nil, err
--
-- A turn logs every line (bounded) through ctx.on_line, decodes the stdout
-- lines that are JSON objects and hands them to on_json; anything else
-- (invalid JSON, a huge line, invalid UTF-8) is counted and logged, never
-- fatal. When the process is gone, the turn's private TMPDIR is removed and
-- ctx.on_done gets finish()'s result, exactly once.
local core = require('orch.core')
local cjson = require('cjson')
local launcher = require('orch.launcher')

local M = {}

M.MAX_LOG_LINE = 1024 * 1024      -- a longer line is logged cut, with its size
M.MAX_JSON_LINE = 64 * 1024 * 1024 -- a longer line is not decoded
M.MAX_TEXT = 256 * 1024           -- text and tool output carried in events
M.STDERR_TAIL = 20                -- stderr lines kept for error messages
M.ARG_PROMPT_MAX = 100 * 1024     -- longer prompts go through stdin
M.CANCEL_GRACE_MS = 2000          -- SIGTERM, then SIGKILL this much later

local json = cjson.new()
json.decode_max_depth(256)
json.encode_sparse_array(true)
json.encode_invalid_numbers('null')
M.json = json

-- ---------------------------------------------------------------- small helpers

function M.bound(s, max)
  max = max or M.MAX_TEXT
  if type(s) ~= 'string' then return s end
  if #s <= max then return s end
  return s:sub(1, max) .. ('... [%d bytes cut]'):format(#s - max)
end

function M.getenv(ctx, name)
  local v = ctx and ctx.env and ctx.env[name]
  if v == false then return nil end
  if v ~= nil then return tostring(v) end
  return os.getenv(name)
end

local function is_file(path)
  local f = io.open(path, 'rb')
  if not f then return false end
  -- a directory opens too on Linux; reading it fails
  local ok = f:read(0) ~= nil or f:seek('end') ~= nil
  f:close()
  return ok
end

-- Where ./scripts/install-agents.sh puts the CLIs (env: the additions the
-- agent gets, consulted before orch's own environment).
function M.agents_bin(env)
  local c = { env = env }
  local cache = M.getenv(c, 'XDG_CACHE_HOME')
  if not cache or cache == '' then cache = (M.getenv(c, 'HOME') or '') .. '/.cache' end
  return cache .. '/orch/agents/bin'
end

-- Finds an executable on the PATH (PATH from env when given), then in
-- ~/.cache/orch/agents/bin (where scripts/install-agents.sh puts them).
function M.which(name, path_var, env)
  if name:find('/', 1, true) then return is_file(name) and name or nil end
  local path = path_var or os.getenv('PATH') or '/usr/local/bin:/usr/bin:/bin'
  for dir in (path .. ':' .. M.agents_bin(env)):gmatch('[^:]+') do
    local p = dir .. '/' .. name
    if is_file(p) then return p end
  end
  return nil
end

-- The argv prefix that runs a backend's binary: the role's `command` (a
-- string or a list), else $ORCH_<NAME>_BIN, else NAME on the PATH.
-- o = {name=, env_var=, command=, install=, env=ctx.env}
function M.find_bin(o)
  local cmd = o.command
  if type(cmd) == 'table' and #cmd > 0 then
    local argv = {}
    for i, a in ipairs(cmd) do argv[i] = tostring(a) end
    local found = M.which(argv[1], M.getenv({ env = o.env }, 'PATH'), o.env)
    if not found then
      return nil, ("%s: the role's command '%s' was not found"):format(o.name, argv[1])
    end
    argv[1] = found
    return argv
  end
  local bin = type(cmd) == 'string' and cmd ~= '' and cmd or nil
  local from = bin and "the role's command" or nil
  if not bin then
    bin = M.getenv({ env = o.env }, o.env_var)
    if bin == '' then bin = nil end
    from = bin and ('$' .. o.env_var) or nil
  end
  bin = bin or o.name
  local found = M.which(bin, M.getenv({ env = o.env }, 'PATH'), o.env)
  if not found then
    if from then
      return nil, ('%s: %s names %s, which does not exist or is not a file'):format(
        o.name, from, bin)
    end
    return nil, ('%s not found on PATH (nor in %s): %s; or set %s to its path'):format(
      o.name, M.agents_bin(o.env), o.install, o.env_var)
  end
  return { found }
end

-- 16 random bytes as a version-4 UUID.
function M.uuid()
  local f = io.open('/dev/urandom', 'rb')
  local b = f and f:read(16)
  if f then f:close() end
  if not b or #b < 16 then
    math.randomseed(core.hrtime() % 2147483647)
    local t = {}
    for i = 1, 16 do t[i] = string.char(math.random(0, 255)) end
    b = table.concat(t)
  end
  local bytes = { b:byte(1, 16) }
  bytes[7] = bit.bor(bit.band(bytes[7], 0x0f), 0x40)
  bytes[9] = bit.bor(bit.band(bytes[9], 0x3f), 0x80)
  local hex = {}
  for i = 1, 16 do hex[i] = ('%02x'):format(bytes[i]) end
  local h = table.concat(hex)
  return ('%s-%s-%s-%s-%s'):format(h:sub(1, 8), h:sub(9, 12), h:sub(13, 16),
                                   h:sub(17, 20), h:sub(21, 32))
end

-- The task's private directory outside the worktree (ctx.scratch, which
-- the engine removes when the run ends), created 0700.
function M.scratch(ctx)
  local dir = ctx.scratch
  if not dir then
    local base = os.getenv('TMPDIR')
    if not base or base == '' then base = '/tmp' end
    local run = ctx.run and ctx.run.id or 'run'
    local task = ctx.task and ctx.task.id or 'task'
    dir = ('%s/orch-scratch-%d/%s/%s'):format(base, core.getpid(), run, task)
  end
  core.mkdir_p(dir, tonumber('700', 8))
  return dir
end

-- A directory that outlives the run, for what a person may want after it
-- (a CLI's own record of the conversation, for `orch attach`):
-- REPO/.orch/agents/RUN/TASK/NAME, 0700; `orch clean RUN` removes it. In the
-- scratch instead when that would put it inside the agent's working
-- directory (an in-place run), where the agent could rewrite its own
-- configuration.
function M.state_dir(ctx, name)
  local run, task = ctx.run or {}, ctx.task or {}
  local ok_id = function(v) return type(v) == 'string' and v:match('^[%w][%w%._%-]*$') ~= nil end
  if type(run.repo) == 'string' and ok_id(run.id) and ok_id(task.id) then
    local d = ('%s/.orch/agents/%s/%s/%s'):format(run.repo, run.id, task.id, name)
    local cwd = ctx.cwd and (ctx.cwd:gsub('/+$', '') .. '/')
    if not (cwd and (d .. '/'):sub(1, #cwd) == cwd) then
      core.mkdir_p(run.repo .. '/.orch/agents', tonumber('700', 8))
      core.mkdir_p(d, tonumber('700', 8))
      return d
    end
  end
  return M.subdir(ctx, name)
end

-- A directory under the scratch, created 0700.
function M.subdir(ctx, name)
  local d = M.scratch(ctx) .. '/' .. name
  core.mkdir_p(d, tonumber('700', 8))
  return d
end

-- A fresh TMPDIR for one turn under the scratch, short (Claude Code makes
-- unix sockets under it, and a socket path is limited to 107 bytes).
function M.turn_tmpdir(ctx)
  local f = io.open('/dev/urandom', 'rb')
  local b = f and f:read(3) or tostring(core.hrtime()):sub(-3)
  if f then f:close() end
  return M.subdir(ctx, ('t%d-%02x%02x%02x'):format(ctx.attempt or 1, b:byte(1, 3)))
end

function M.write_file(path, text, mode)
  local tmp = path .. '.tmp'
  local f, err = io.open(tmp, 'wb')
  if not f then return nil, err end
  f:write(text)
  f:close()
  if mode then os.execute(("chmod %s '%s'"):format(mode, tmp:gsub("'", "'\\''"))) end
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp) return nil, rerr end
  return path
end

function M.read_file(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- The prompt as arguments (after `--`, so a prompt that starts with a dash
-- is not an option), or through stdin when it is too long for one argv
-- string (Linux limits one to 128 KB). Returns args, input.
function M.prompt_args(prompt, stdin_marker)
  prompt = prompt or ''
  if #prompt > M.ARG_PROMPT_MAX then
    return stdin_marker and { stdin_marker } or {}, prompt
  end
  return { '--', prompt }, nil
end

-- The role's extra_args appended to list a.
function M.add_extra(a, role)
  local extra = role and role.extra_args
  if type(extra) ~= 'table' then return a end
  for _, v in ipairs(extra) do a[#a + 1] = tostring(v) end
  return a
end

-- Copies a table of env additions and adds more.
function M.env(base, extra)
  local e = {}
  for k, v in pairs(base or {}) do e[k] = v end
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- Usage tables: normalised fields, summed.
function M.add_usage(a, b)
  if not b then return a end
  a = a or {}
  for _, k in ipairs({ 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens' }) do
    if b[k] then a[k] = (a[k] or 0) + b[k] end
  end
  return a
end

-- Whether a CLI's error message says the request itself is wrong (auth, a
-- bad request, a model that does not exist): never worth a retry, however
-- else it is worded (docs/resilience.md).
local FATAL = { 'unauthori[sz]ed', 'authenticat', 'invalid api key', 'invalid x%-api%-key',
                'api key', 'not logged in', 'please run /login', '%f[%d]401%f[%D]',
                '%f[%d]403%f[%D]', 'forbidden', 'invalid_request', 'model not found',
                'model_not_found', 'does not exist', '%f[%d]400%f[%D]', '%f[%d]404%f[%D]' }

function M.fatal(msg)
  msg = tostring(msg or ''):lower()
  for _, p in ipairs(FATAL) do if msg:find(p) then return true end end
  return false
end

-- ---------------------------------------------------------------- the turn

local Turn = {}
Turn.__index = Turn

function Turn:emit(ev)
  if self.ctx.emit then self.ctx.emit(ev) end
end

function Turn:log(stream, line)
  if not self.ctx.on_line then return end
  if #line > M.MAX_LOG_LINE then
    line = line:sub(1, M.MAX_LOG_LINE) .. ('... [line of %d bytes cut]'):format(#line)
  end
  self.ctx.on_line(stream, line)
end

function Turn:note(msg)
  self:log('stderr', 'orch: ' .. msg)
end

function Turn:stdout_line(line)
  self:log('stdout', line)
  self.lines = self.lines + 1
  if self.on_text then return self.on_text(line, self) end
  if line == '' then return end
  local obj
  if #line <= M.MAX_JSON_LINE and line:byte(1) == 123 then -- '{'
    local ok, v = pcall(json.decode, line)
    if ok and type(v) == 'table' then obj = v end
  end
  if not obj then
    self.garbage = self.garbage + 1
    if self.garbage <= 3 then
      self:note(('%s wrote a line that is not a JSON object (%d bytes); ignored'):format(
        self.name, #line))
    end
    return
  end
  self.json_lines = self.json_lines + 1
  local ok, err = xpcall(self.on_json, debug.traceback, obj, self)
  if not ok then
    self:note(('%s event could not be handled: %s'):format(self.name, tostring(err)))
  end
end

function Turn:stderr_line(line)
  self:log('stderr', line)
  if self.on_stderr then self.on_stderr(line, self) end
  local t = self.stderr_tail
  t[#t + 1] = M.bound(line, 2000)
  if #t > M.STDERR_TAIL then table.remove(t, 1) end
end

-- The stderr tail as one message (for a process that failed).
function Turn:stderr_text()
  local parts = {}
  for _, l in ipairs(self.stderr_tail) do
    if not l:match('^%s*$') then parts[#parts + 1] = l end
  end
  return table.concat(parts, '\n')
end

-- Removes a directory tree without following symlinks (a link is removed,
-- never what it points to). Synchronous: a turn's TMPDIR is small.
function M.remove_tree(path)
  local st = core.lstat(path)
  if not st then return end
  if st.type == 'dir' then
    for _, name in ipairs(core.readdir(path) or {}) do M.remove_tree(path .. '/' .. name) end
  end
  os.remove(path)
end

local function remove_tree(dir, cb)
  if dir and dir:find('^/.') then M.remove_tree(dir) end
  cb()
end

function Turn:exited(code, sig)
  if self.finished then return end
  self.finished = true
  if self.timer then self.timer:close() self.timer = nil end
  local ok, res = xpcall(self.finish, debug.traceback, self, code, sig)
  if not ok then
    res = { ok = false, exit_code = code, signal = sig, error = 'backend error: ' .. tostring(res) }
  end
  res.exit_code = res.exit_code or code
  res.signal = res.signal or sig
  if self.timed_out then
    res.ok, res.retryable, res.limit = false, false, 'time'
    res.error = ("%s stopped: the role's time limit of %g s was reached"):format(self.name, self.time_limit)
  elseif sig and not res.ok and not self.cancelled and not res.limit and not M.fatal(res.error) then
    -- killed by a signal orch did not send (the OOM killer, a crash): the
    -- turn is retried (docs/resilience.md)
    res.retryable = true
  end
  local completed = false
  local function complete(r)
    if completed then return end
    completed = true
    remove_tree(self.tmpdir, function() self.ctx.on_done(r) end)
  end
  if not self.finalize then return complete(res) end
  -- an asynchronous last step (crush reads its session back), then done
  local fok, ferr = xpcall(self.finalize, debug.traceback, self, res, complete)
  if not fok then
    res.ok, res.error = false, 'backend error: ' .. tostring(ferr)
    complete(res)
  end
end

-- Spawns one turn. o: name, argv, env (additions), input, on_json(obj, turn),
-- finish(turn, code, sig) -> result, tmpdir (removed afterwards),
-- finalize(turn, result, done) (optional: async, calls done(result) once),
-- on_text(line, turn) (stdout is plain text, not JSON), on_stderr(line, turn).
function M.turn(ctx, o)
  local self = setmetatable({
    ctx = ctx, name = o.name, on_json = o.on_json, finish = o.finish, tmpdir = o.tmpdir,
    finalize = o.finalize, on_text = o.on_text, on_stderr = o.on_stderr,
    lines = 0, json_lines = 0, garbage = 0, stderr_tail = {},
    state = o.state or {},
  }, Turn)
  local p, err = launcher.spawn({
    argv = o.argv, cwd = ctx.cwd, env = o.env, input = o.input,
    stdout = function(line) self:stdout_line(line) end,
    stderr = function(line) self:stderr_line(line) end,
    on_exit = function(code, sig) self:exited(code, sig) end,
  })
  if not p then
    return nil, ('%s: cannot start %s: %s'):format(o.name, tostring(o.argv[1]), tostring(err))
  end
  self.proc = p
  -- the role's limits.time: the CLIs have no such option of their own
  local limit = tonumber(((ctx.role or {}).limits or {}).time)
  if limit and limit > 0 then
    self.time_limit = limit
    self.timer = core.timer(math.floor(math.min(limit, 2147483) * 1000), function()
      self.timed_out = true
      p:cancel(M.CANCEL_GRACE_MS)
    end)
  end
  return {
    pid = p:pid(),
    cancel = function(grace) self.cancelled = true p:cancel(grace) end,
    kill = function(sig)
      if sig ~= 'SIGSTOP' and sig ~= 'SIGCONT' and sig ~= 'SIGTSTP' then self.cancelled = true end
      return p:kill(sig)
    end,
    reaped = function() if p.reaped then return p:reaped() end end,
    turn = self,
  }, nil, self
end

-- The entry points of a backend whose turns are run(ctx, session_id or
-- nil): start (a new conversation, or the stored one), send (the next turn
-- of ctx.session) and resume (a cut turn: the same as send).
function M.session_entry_points(mod, run)
  function mod.start(ctx)
    return run(ctx, ctx.session and ctx.session.id or nil)
  end
  mod.send, mod.resume = mod.start, mod.start
end

-- For `orch doctor`: a backend's check(env) from its bin_of(ctx) and the
-- pattern of the version its `--version` prints.
function M.doctor_check(bin_of, version_pattern)
  return function(env)
    local bin, err = bin_of({ env = env })
    if not bin then return { ok = false, message = err } end
    return { ok = true, path = bin[1], version_argv = { bin[1], '--version' },
             version_pattern = version_pattern }
  end
end

-- The message for a process that ended without the backend's own result
-- (install: what to do when the binary itself seems broken).
function M.exit_message(turn, code, sig, bin, install)
  local why = sig and ('was killed by ' .. sig) or ('exited with status ' .. tostring(code))
  local msg = ('%s (%s) %s'):format(turn.name, bin or turn.name, why)
  if turn.json_lines == 0 then msg = msg .. ' before writing any event' end
  local tail = turn:stderr_text()
  if tail ~= '' then msg = msg .. ': ' .. M.bound(tail, 4000) end
  if turn.json_lines == 0 and not sig and install then
    msg = msg .. ' (if this binary is broken or not the real one: ' .. install .. ')'
  end
  return msg
end

return M
