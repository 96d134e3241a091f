-- orch.async: straight-line code over the loop's callbacks, with coroutines.
--
--   local async = require('orch.async')
--   async.run(function()
--     async.sleep(100)
--     local r = async.spawn{argv = {'git', 'status', '--short'}, cwd = dir}
--     print(r.code, #r.stdout)
--   end)
--
-- Inside a coroutine started by async.run, async.wait(fn) suspends until fn's
-- callback is called and returns the callback's arguments; async.sleep,
-- async.spawn and async.request are built on it. Outside one they raise.
-- An error in an async function is raised with its traceback (once it has
-- waited, into the loop's callback, which reports and counts it like any
-- callback error), unless it was started by run_with(on_error, fn).
local core = require('orch.core')

local M = {}

local handlers = setmetatable({}, { __mode = 'k' }) -- coroutine -> on_error
local started = setmetatable({}, { __mode = 'k' })  -- coroutines of run/run_with

-- Resumes co; an error goes to its handler, or is raised (with the
-- coroutine's traceback) into the loop's callback, which reports and counts it.
local function step(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    local msg = debug.traceback(co, tostring(err))
    local h = handlers[co]
    if h then h(msg) else error(msg, 0) end
  end
end

-- Starts fn(...) in a new coroutine; it runs until its first wait at once.
-- opts.on_error(msg) replaces the report of an error.
function M.run(fn, ...)
  local co = coroutine.create(fn)
  started[co] = true
  step(co, ...)
  return co
end

-- Like run, with an error handler.
function M.run_with(on_error, fn, ...)
  local co = coroutine.create(fn)
  handlers[co] = on_error
  started[co] = true
  step(co, ...)
  return co
end

-- Suspends the running coroutine until the callback given to start(cb) is
-- called; returns what the callback got. The callback may be called at once.
function M.wait(start)
  local co, main = coroutine.running()
  if not co or main then error('async.wait outside a coroutine started by async.run', 2) end
  local done, results, waiting = false, nil, false
  start(function(...)
    if done then return end
    done, results = true, { n = select('#', ...), ... }
    if waiting then step(co) end
  end)
  if not done then
    waiting = true
    coroutine.yield()
  end
  return unpack(results, 1, results.n)
end

-- Whether the running code may wait: it runs in a coroutine started by
-- async.run (for code that waits when it can and blocks otherwise).
function M.can_wait()
  local co, main = coroutine.running()
  return co ~= nil and not main and started[co] == true
end

function M.sleep(ms)
  M.wait(function(cb) core.timer(ms, cb) end)
end

-- Runs a process to its end: {code=, signal=, stdout={lines}, stderr={lines}}
-- or nil, err, code when it cannot start. spec as core.spawn, without the
-- callbacks.
function M.spawn(spec)
  local out, err = {}, {}
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.stdout = function(l) out[#out + 1] = l end
  s.stderr = function(l) err[#err + 1] = l end
  local failure
  local code, sig = M.wait(function(cb)
    s.on_exit = function(c, g) cb(c, g) end
    local p, msg, ecode = core.spawn(s)
    if not p then
      failure = { msg, ecode }
      cb()
    end
  end)
  if failure then return nil, failure[1], failure[2] end
  return { code = code, signal = sig, stdout = out, stderr = err }
end

-- An HTTP request to its end: {status=, headers=, body=} or nil, err, code.
-- opts as core.http.request, without the callbacks.
function M.request(opts)
  local chunks, status, headers = {}, nil, nil
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.on_headers = function(st, h) status, headers = st, h end
  o.on_chunk = function(c) chunks[#chunks + 1] = c end
  local failure
  local e, st, code = M.wait(function(cb)
    o.on_done = cb
    local req, msg, ecode = core.http.request(o)
    if not req then
      failure = { msg, ecode }
      cb()
    end
  end)
  if failure then return nil, failure[1], failure[2] end
  if e then return nil, e, code end
  return { status = st or status, headers = headers, body = table.concat(chunks) }
end

return M
