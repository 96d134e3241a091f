-- orch.xdg: the XDG base directories (XDG Base Directory Specification)
-- and orch's directory in each.
--
--   xdg.config()  $XDG_CONFIG_HOME/orch  (default ~/.config/orch): init.lua,
--                 lua/, roles/, workflows/ -- what the user writes
--   xdg.state()   $XDG_STATE_HOME/orch   (default ~/.local/state/orch):
--                 what orch keeps between runs outside a repository (the
--                 orch repl history)
--   xdg.cache()   $XDG_CACHE_HOME/orch   (default ~/.cache/orch): what can
--                 be fetched again (the agent CLIs the tests install)
--   xdg.data()    $XDG_DATA_HOME/orch    (default ~/.local/share/orch):
--                 nothing today (the repl history lived here before 0.1)
--
-- A variable that is unset, empty or not an absolute path is ignored, as the
-- specification asks. A run's own state never leaves its repository
-- (REPO/.orch/).
local M = {}

local DEFAULTS = {
  XDG_CONFIG_HOME = '/.config', XDG_STATE_HOME = '/.local/state',
  XDG_CACHE_HOME = '/.cache', XDG_DATA_HOME = '/.local/share',
}

-- The base directory of var (XDG_CONFIG_HOME...), env a table or os.getenv.
function M.base(var, env)
  local get = type(env) == 'table' and function(k) return env[k] end or os.getenv
  local v = get(var)
  if v and v:sub(1, 1) == '/' then return v end
  return (get('HOME') or '/tmp') .. DEFAULTS[var]
end

function M.config(env) return M.base('XDG_CONFIG_HOME', env) .. '/orch' end
function M.state(env) return M.base('XDG_STATE_HOME', env) .. '/orch' end
function M.cache(env) return M.base('XDG_CACHE_HOME', env) .. '/orch' end
function M.data(env) return M.base('XDG_DATA_HOME', env) .. '/orch' end

return M
