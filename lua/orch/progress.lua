-- orch.progress: plain progress lines on stderr, for runs without the TUI
-- (no terminal, or --no-tui). One line per event that matters: a task
-- started, finished, failed; the run's end. Replaceable: progress.sink =
-- function(text) ... end.
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

return M
