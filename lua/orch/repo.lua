local core = require('orch.core')

-- orch.repo: finding the git repository a run works in, and its .orch/
-- state directory (database, worktrees, sockets).
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

function M.mkdir_p(dir)
  return core.mkdir_p(dir)
end

-- Makes REPO/.orch. (Its line in .git/info/exclude is the workspace's
-- business: orch_git_exclude_orch, through repo:exclude_orch().)
function M.prepare_state_dir(root)
  local state = root .. '/.orch'
  M.mkdir_p(state)
  return state
end

return M
