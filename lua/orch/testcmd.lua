-- `orch test [PATH...]`: runs busted specs inside the orch host, with the
-- real loop, git and SQLite, so users test their workflows, roles,
-- policies and merge strategies the way orch tests its own (orch.testing
-- gives them scratch repositories, the scripted model server and runs to
-- inspect). Default paths: REPO/.orch/spec, else REPO/spec.
local core = require('orch.core')

local M = {}

local function isdir(path)
  return core.readdir(path) ~= nil
end

-- The spec paths to run: the given ones, else the repository's.
function M.paths(o, root)
  local paths = {}
  for _, p in ipairs(o) do paths[#paths + 1] = p end
  if #paths > 0 then return paths end
  if root and isdir(root .. '/.orch/spec') then return { root .. '/.orch/spec' } end
  if root and isdir(root .. '/spec') then return { root .. '/spec' } end
  return nil, 'no specs found: give PATH, or put *_spec.lua files in .orch/spec/ or spec/'
end

local function output_handler(o)
  if o.output then return o.output end
  local nc = os.getenv('NO_COLOR')
  if core.isatty(1) and not (nc and nc ~= '') then return 'utfTerminal' end
  return 'plainTerminal'
end

function M.cli(o)
  local repo = require('orch.repo')
  local root = repo.find(o.repo or core.cwd())
  local paths, perr = M.paths(o, root)
  if not paths then
    io.stderr:write('orch: test: ', perr, '\n')
    return 2
  end
  for _, p in ipairs(paths) do
    local f = io.open(p, 'rb')
    if not f then
      io.stderr:write(('orch: test: %s does not exist\n'):format(p))
      return 2
    end
    f:close()
  end
  -- the user's modules first (their roles, workflows' helpers, lua/), then
  -- the repository itself, so a spec can require its own helpers
  require('orch.config').add_paths(root)
  if root then
    package.path = root .. '/?.lua;' .. root .. '/spec/?.lua;' .. root .. '/.orch/spec/?.lua;' ..
      package.path
  end
  local argv = { [0] = 'orch test', '--output=' .. output_handler(o) }
  if o.filter then argv[#argv + 1] = '--filter=' .. o.filter end
  for _, p in ipairs(paths) do argv[#argv + 1] = p end
  -- busted reads its command line from the global `arg`, as the lua
  -- interpreter sets it
  rawset(_G, 'arg', argv)
  local ok, err = pcall(require('busted.runner'), { standalone = false })
  io.stdout:flush()
  if not ok then
    -- busted signals failures under Lua 5.1 by raising a nil error
    if err ~= nil then io.stderr:write(tostring(err), '\n') end
    return 1
  end
  return 0
end

return M
