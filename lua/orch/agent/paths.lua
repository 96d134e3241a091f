-- Path confinement for orch's own agent tools: every path a model names is
-- resolved component by component inside the task's worktree, following
-- symlinks by hand (lstat/readlink), and refused when the result lies
-- outside it. The tools then open the resolved path, which holds no symlink.
local core = require('orch.core')

local M = {}

local MAX_LINKS = 40

local function split(path, into)
  into = into or {}
  for part in path:gmatch('[^/]+') do into[#into + 1] = part end
  return into
end

local function join(stack)
  return '/' .. table.concat(stack, '/')
end

-- Is path (absolute, normalised) root itself or below it?
function M.inside(path, root)
  return path == root or path:sub(1, #root + 1) == root .. '/'
end

-- The real path of a worktree (symlinks in its own path resolved once).
function M.root(cwd)
  return core.realpath(cwd) or cwd
end

-- Resolves `path` (relative to root, or absolute) into an absolute path with
-- no symlink and no `.`/`..` component. Returns the path, or nil and why.
-- Components that do not exist yet are taken as they are (a file about to
-- be written), so a missing directory can never hide a symlink.
local function resolve(path, root)
  local queue = {}
  local stack
  if path:sub(1, 1) == '/' then
    stack = {}
    split(path, queue)
  else
    stack = split(root)
    split(path, queue)
  end
  local links, missing, i = 0, false, 1
  while i <= #queue do
    local c = queue[i]
    i = i + 1
    if c == '.' then -- luacheck: ignore 542
    elseif c == '..' then
      stack[#stack] = nil
      -- back in a directory that may exist: what follows is checked again
      -- (else `nope/../link/x` would skip the link)
      missing = false
    else
      stack[#stack + 1] = c
      if not missing then
        local st, _, code = core.lstat(join(stack))
        if st and st.type == 'link' then
          links = links + 1
          if links > MAX_LINKS then return nil, 'too many levels of symbolic links' end
          local target = core.readlink(join(stack))
          stack[#stack] = nil
          if not target then return nil, 'cannot read symbolic link' end
          if target:sub(1, 1) == '/' then stack = {} end
          -- the link's target, then the rest of the queue
          local rest = split(target)
          for j = i, #queue do rest[#rest + 1] = queue[j] end
          queue, i = rest, 1
        elseif not st then
          if code ~= 'ENOENT' and code ~= 'ENOTDIR' then
            return nil, 'cannot examine ' .. join(stack)
          end
          missing = true
        end
      end
    end
  end
  return join(stack)
end

-- Checks a path given by a model. opts.write refuses the worktree's .git.
-- Returns abs, rel (relative to the worktree, '.' for itself), or nil and
-- a refusal the model can read.
function M.confine(path, root, opts)
  if type(path) ~= 'string' or path == '' then
    return nil, 'a path is required'
  end
  if path:find('%z') then return nil, 'a path may not contain NUL' end
  local abs, err = resolve(path, root)
  if not abs then return nil, path .. ': ' .. err end
  if not M.inside(abs, root) then
    return nil, ('%s is outside the worktree: refused (only paths inside %s are allowed)')
      :format(path, root)
  end
  local rel = abs == root and '.' or abs:sub(#root + 2)
  if opts and opts.write and (rel == '.git' or rel:sub(1, 5) == '.git/') then
    return nil, path .. ": the worktree's .git is not writable by the agent"
  end
  return abs, rel
end

return M
