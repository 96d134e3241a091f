-- orch.progress: plain progress lines on stderr, for runs without the TUI
-- (no terminal, or --no-tui): a subscriber of the engine's events. One
-- line per event that matters: a task started, finished, failed; the run's
-- end. Replaceable: progress.sink = function(text) ... end, or a module
-- orch.progress of your own with attach(engine, opts) -> unsubscribe.
--
--   local unsub = progress.attach(engine, {quiet = false})
local core = require('orch.core')

local M = {}

M.t0 = core.hrtime()

function M.sink(text)
  io.stderr:write(text, '\n')
  io.stderr:flush()
end

function M.say(fmt, ...)
  local t = (core.hrtime() - M.t0) / 1e9
  M.sink(('[%7.1fs] '):format(t) .. fmt:format(...))
end

local function with(msg) return msg and (': ' .. msg) or '' end

local TASK = {}

function TASK.running(ev)
  if ev.exited or ev.interrupted or ev.paused ~= nil or not ev.attempt then return nil end
  return ('%s: started (attempt %d)%s'):format(ev.task, ev.attempt,
    ev.worktree and (' in ' .. ev.worktree) or '')
end

function TASK.done(ev) return ('%s: done in %.1fs'):format(ev.task, ev.duration or 0) end

local function failed(ev)
  if ev.failure then
    return ('%s: %s (%s, %s) after %.1fs'):format(ev.task, ev.status, ev.error or 'failed',
      ev.failure, ev.duration or 0)
  end
  return ('%s: %s%s'):format(ev.task, ev.status, with(ev.error))
end
TASK.failed, TASK.skipped = failed, failed

function TASK.conflict(ev) return ('%s: merge conflict%s'):format(ev.task, with(ev.error)) end
function TASK.blocked(ev) return ev.task .. ': blocked' end
function TASK.cancelled(ev) return ev.task .. ': cancelled' end

-- The progress lines for one event (a list, maybe empty).
function M.lines(ev)
  local k = ev.kind
  if k == 'task' then
    if ev.message then return { ev.task .. ': ' .. ev.message } end
    if ev.paused ~= nil then return { ev.task .. (ev.paused and ': paused' or ': resumed') } end
    if ev.added then return { ev.task .. ': added' } end
    if ev.updated then return {} end
    if ev.interrupted then return {} end
    local f = TASK[ev.status]
    local line = f and f(ev)
    return { line }
  elseif k == 'run' then
    if ev.concurrency and ev.status == 'running' and not ev.id then
      return { ('concurrency set to %d'):format(ev.concurrency) }
    elseif ev.status == 'interrupted' then
      return { ('interrupted: %d running task(s) stopped; `orch resume %s` carries on')
        :format(ev.running or 0, ev.run_id or M.run_id or '') }
    elseif ev.status == 'done' or ev.status == 'failed' or ev.status == 'waiting' then
      local c = ev.counts or {}
      local out = { ('run %s %s: %d done, %d failed, %d skipped, %d blocked'):format(
        M.run_id or '', ev.status == 'failed' and 'failed' or 'finished', c.done or 0,
        c.failed or 0, c.skipped or 0, c.blocked or 0) }
      if ev.message then out[2] = ev.message end
      return out
    elseif ev.status == 'budget' then
      return { tostring(ev.message) }
    end
  elseif k == 'retry' then
    return { ('%s: retrying in %.1fs (%s): %s'):format(ev.task, ev.wait or 0, ev.class or '?',
      ev.reason or '') }
  elseif k == 'breaker' then
    return { ('breaker %s %s%s: %s'):format(tostring(ev.backend), tostring(ev.endpoint),
      ev.model and (' ' .. tostring(ev.model)) or '', tostring(ev.state)) }
  elseif k == 'budget' then
    return { tostring(ev.message) }
  elseif k == 'lock' and ev.waiting then
    return { ('%s: waits for a lock on %s'):format(ev.task, table.concat(ev.files or {}, ', ')) }
  elseif k == 'question' then
    if ev.answer then
      return { ('%s: answered (%s): %s'):format(ev.task or 'run', ev.by or '?', ev.answer) }
    end
    return { ('%s asks: %s'):format(ev.task or 'run', ev.question) }
  elseif k == 'workflow' then
    return { (ev.warning and 'warning: ' or '') .. tostring(ev.message) }
  elseif k == 'agent' and ev.type == 'error' then
    return { ('%s: %s'):format(ev.task, ev.message or 'error') }
  end
  return {}
end

-- Prints progress lines for engine e's events. opts.quiet: only where the
-- run's work went (that matters even with --quiet). Returns unsubscribe.
function M.attach(e, opts)
  opts = opts or {}
  M.run_id = e.run.id
  return e:subscribe(function(ev)
    if opts.quiet then
      if ev.kind == 'run' and ev.message and (ev.status == 'done' or ev.status == 'failed'
          or ev.status == 'waiting' or ev.status == 'budget') then
        io.stderr:write('orch: ', ev.message, '\n')
      end
      return
    end
    for _, line in ipairs(M.lines(ev)) do M.say('%s', line) end
  end)
end

return M
