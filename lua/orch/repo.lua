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

-- The longest run or task id: core/worktree.c's valid_id() allows 200
-- bytes, so that the worktree's admin directory .git/worktrees/orch-RUN-ID
-- and the ref lock refs/heads/orch/RUN/ID.lock stay within the 255-byte
-- file-name limit.
M.MAX_ID = 200

-- Whether s can be a run or task id: one path component and one ref
-- component (letters, digits, '.', '_', '-', not starting with '.' or
-- '-', no '..', not ending in '.' or '.lock', at most MAX_ID bytes). Ids
-- read back from .orch/ (live records, the database) are checked with it
-- before they name a path: a cloned repository may carry a crafted .orch/.
-- Returns true, or nil and why.
function M.valid_id(s)
  if type(s) ~= 'string' or s == '' then return nil, 'not a non-empty string' end
  if #s > M.MAX_ID then
    return nil, ('%d bytes long; at most %d'):format(#s, M.MAX_ID)
  end
  if not s:find('^[%w][%w._-]*$') or s:find('..', 1, true) or s:find('%.$')
     or s:find('%.lock$') then
    return nil, "only letters, digits, '.', '_' and '-', starting with a letter or digit"
  end
  return true
end

-- The one mkdir -p (core/lua/lsys.c): mode defaults to 0755.
function M.mkdir_p(dir, mode)
  return core.mkdir_p(dir, mode)
end

-- Makes REPO/.orch, mode 0700 (it holds the database: plan env values and
-- all task output), and tightens an existing one. (Its line in
-- .git/info/exclude is the workspace's business: orch_git_exclude_orch,
-- through repo:exclude_orch().)
function M.prepare_state_dir(root)
  local state = root .. '/.orch'
  M.mkdir_p(state, tonumber('700', 8))
  core.chmod(state, tonumber('700', 8))
  return state
end

return M
