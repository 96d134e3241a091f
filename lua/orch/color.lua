-- orch.color: whether orch colours what it prints, and the colours.
--
-- One setting for the whole process, from the global option
-- --color=auto|always|never (orch.cli sets M.mode) and the NO_COLOR
-- convention (https://no-color.org): with auto (the default), colour only
-- on a terminal, not when NO_COLOR is set to anything but the empty
-- string, not when TERM is dumb. --color=always wins over NO_COLOR (an
-- explicit option beats the environment); --color=never wins over all.
--
--   color.enabled(fd)            -> boolean (fd 1 by default)
--   color.paint(style, text, fd) -> text, wrapped in SGR codes when enabled
--   color.sgr(style, text)       -> text wrapped in SGR codes, always
--   color.status(status, fd)     -> a task or run status, coloured by kind
local core = require('orch.core')

local M = {}

M.MODES = { auto = true, always = true, never = true }
M.mode = 'auto'

-- Sets the mode; returns true, or nil and a message for a bad value.
function M.set(mode)
  if not M.MODES[mode] then
    return nil, ("--color takes auto, always or never, not '%s'"):format(tostring(mode))
  end
  M.mode = mode
  return true
end

local function env_no_color()
  local v = os.getenv('NO_COLOR')
  return v ~= nil and v ~= ''
end

function M.enabled(fd)
  if M.mode == 'never' then return false end
  if M.mode == 'always' then return true end
  if env_no_color() then return false end
  if os.getenv('TERM') == 'dumb' then return false end
  return core.isatty(fd or 1)
end

M.STYLES = {
  bold = '1', dim = '2', red = '31', green = '32', yellow = '33', blue = '34',
  magenta = '35', cyan = '36',
}

-- text in style's SGR codes, whatever the mode (a caller that decided).
function M.sgr(style, text)
  local code = M.STYLES[style]
  if not code then return text end
  return '\27[' .. code .. 'm' .. text .. '\27[0m'
end

function M.paint(style, text, fd)
  if not M.enabled(fd) then return text end
  return M.sgr(style, text)
end

-- The colour of each task (and run) status.
M.STATUS = {
  done = 'green', running = 'yellow', ready = 'cyan', failed = 'red', conflict = 'red',
  blocked = 'magenta', cancelled = 'dim', skipped = 'dim', interrupted = 'yellow',
}

function M.status_sgr(status)
  return M.sgr(M.STATUS[status] or '', status)
end

function M.status(status, fd)
  if not M.enabled(fd) then return status end
  return M.status_sgr(status)
end

return M
