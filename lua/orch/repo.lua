local core = require('orch.core')

-- orch.repo: finding the git repository a run works in, and its .orch/
-- state directory (database, worktrees, sockets), excluded from git.
local M = {}

local function exists(path)
  local f = io.open(path, 'r')
  if f then f:close() return true end
  return false
end

local function is_dir(path)
  return os.rename(path, path) and exists(path .. '/.') or false
end

function M.abspath(path)
  if path:sub(1, 1) == '/' then return path end
  local cwd = core.cwd() or os.getenv('PWD') or '.'
  return (cwd .. '/' .. path):gsub('/%./', '/'):gsub('/%.$', '')
end

-- The top of the work tree holding dir: the nearest ancestor with a .git
-- entry (a directory, or a file for a linked worktree). nil, err if none.
function M.find(dir)
  dir = M.abspath(dir or '.')
  if not is_dir(dir) then return nil, 'not a directory: ' .. dir end
  local d = dir:gsub('/+$', '')
  while true do
    if exists(d .. '/.git') then return d == '' and '/' or d end
    local parent = d:match('^(.*)/[^/]*$')
    if parent == nil or parent == d then break end
    d = parent
    if d == '' then
      if exists('/.git') then return '/' end
      break
    end
  end
  return nil, 'not in a git repository: ' .. dir .. ' (use --repo DIR)'
end

-- The .git directory of the main checkout (following a "gitdir:" file).
function M.git_dir(root)
  local f = io.open(root .. '/.git', 'r')
  if f then
    local first = f:read('*l')
    f:close()
    local gd = first and first:match('^gitdir:%s*(.-)%s*$')
    if gd then
      if gd:sub(1, 1) ~= '/' then gd = root .. '/' .. gd end
      local common = io.open(gd .. '/commondir', 'r')
      if common then
        local c = common:read('*l')
        common:close()
        if c and c:sub(1, 1) ~= '/' then c = gd .. '/' .. c end
        return c or gd
      end
      return gd
    end
  end
  return root .. '/.git'
end

function M.mkdir_p(dir)
  return core.mkdir_p(dir)
end

-- Makes REPO/.orch and adds it to .git/info/exclude once.
function M.prepare_state_dir(root)
  local state = root .. '/.orch'
  M.mkdir_p(state)
  local info = M.git_dir(root) .. '/info'
  M.mkdir_p(info)
  local path = info .. '/exclude'
  local f = io.open(path, 'r')
  local text = f and f:read('*a') or ''
  if f then f:close() end
  for line in text:gmatch('[^\n]+') do
    if line == '/.orch/' or line == '.orch/' or line == '/.orch' then return state end
  end
  f = io.open(path, 'a')
  if f then
    if #text > 0 and text:sub(-1) ~= '\n' then f:write('\n') end
    f:write('/.orch/\n')
    f:close()
  end
  return state
end

return M
