-- orch.config: the user's configuration, loaded before a run starts.
--
--   $XDG_CONFIG_HOME/orch/init.lua  (default ~/.config/orch/init.lua)
--   REPO/.orch/init.lua
--
-- Each is plain Lua run in order (the repository's last, so it wins); it
-- can replace extension points, e.g.
--   require('orch.policy').set(function(task, result) return 'soft' end)
--   require('orch.launcher').set(function(spec) ... end)
-- Modules in $XDG_CONFIG_HOME/orch/lua/ and REPO/.orch/lua/ shadow orch's
-- own (`lua/orch/merge.lua` there replaces orch.merge).
-- A file that does not load or raises stops the run with exit code 2.
local M = {}

function M.user_dir()
  local xdg = os.getenv('XDG_CONFIG_HOME')
  if xdg and xdg ~= '' then return xdg .. '/orch' end
  local home = os.getenv('HOME')
  return home and (home .. '/.config/orch') or nil
end

local function exists(path)
  local f = io.open(path, 'r')
  if f then f:close() return true end
  return false
end

M.loaded = {}

local function add_path(dir)
  local entry = dir .. '/lua/?.lua;' .. dir .. '/lua/?/init.lua;'
  if not package.path:find(entry, 1, true) then
    package.path = entry .. package.path
  end
end

local function dirs_for(root)
  local dirs = { M.user_dir() }
  if root then dirs[#dirs + 1] = root .. '/.orch' end
  return dirs
end

-- Puts the users' module directories first on package.path. The command
-- line does this before it loads the run modules, so that a user's
-- lua/orch/engine.lua (say) is the one loaded.
function M.add_paths(root)
  for _, dir in ipairs(dirs_for(root)) do add_path(dir) end
end

-- Loads the config files for a run in repo root (nil: user config only).
-- Returns true, or nil and "FILE:LINE: message".
function M.load(root)
  local dirs = dirs_for(root)
  M.add_paths(root)
  for _, dir in ipairs(dirs) do
    local file = dir .. '/init.lua'
    if exists(file) and not M.loaded[file] then
      local chunk, err = loadfile(file)
      if not chunk then return nil, err end
      local ok, rerr = xpcall(chunk, debug.traceback)
      if not ok then return nil, tostring(rerr) end
      M.loaded[file] = true
    end
  end
  return true
end

-- The config files of a run in repo root that exist (for watching).
function M.files(root)
  local out = {}
  for _, dir in ipairs(dirs_for(root)) do
    if exists(dir .. '/init.lua') then out[#out + 1] = dir .. '/init.lua' end
  end
  return out
end

-- Runs one config file again (hot reload: what it sets with policy.set,
-- launcher.set, ... replaces what the earlier version set). A file that
-- does not load changes nothing; one that raises half way keeps what it
-- set before the error. Returns true, or nil and "FILE:LINE: message".
function M.reload_file(file)
  local chunk, err = loadfile(file)
  if not chunk then return nil, err end
  local ok, rerr = xpcall(chunk, debug.traceback)
  if not ok then return nil, tostring(rerr) end
  M.loaded[file] = true
  return true
end

return M
