-- `local orch = require('orch')`: the entry for workflows and config files.
-- Submodules load on first use: orch.core, orch.launcher, orch.policy,
-- orch.merge, orch.run, orch.plan, orch.store, orch.engine ...
return setmetatable({}, {
  __index = function(t, k)
    local ok, mod = pcall(require, 'orch.' .. k)
    if not ok then
      if tostring(mod):find("module 'orch%." .. k .. "' not found", 1, false) then return nil end
      error(mod, 2)
    end
    rawset(t, k, mod)
    return mod
  end,
})
