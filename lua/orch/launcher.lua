-- orch.launcher: every agent and command orch starts goes through
-- launcher.spawn(spec), so that a replacement can run a task elsewhere (in
-- a container, as a cluster job) without the scheduler or the backends
-- knowing. spec is what orch.core.spawn takes (argv, cwd, env, stdout,
-- stderr, on_exit, input); the result must offer :pid(), :cancel(ms),
-- :kill(sig) like a core process. Replace it with launcher.set(fn).
local core = require('orch.core')

local M = {}

local function local_spawn(spec)
  return core.spawn(spec)
end

M.spawn_fn = local_spawn

function M.spawn(spec)
  return M.spawn_fn(spec)
end

-- Installs fn(spec) as the launcher; nil restores the local one.
function M.set(fn)
  M.spawn_fn = fn or local_spawn
end

return M
