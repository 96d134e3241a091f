-- orch.breaker: circuit breakers per backend endpoint and model
-- (docs/resilience.md).
--
--   local reg = breaker.new{now = fn() -> s, on_change = fn(b, old_state)}
--   local b = reg:get(role, env)   -- the breaker of the role's backend, endpoint, model
--   reg:allow(b)                   -- true | false, wait_s (how long until it may be tried)
--   reg:success(b); reg:failure(b, result); reg:release(b)
--
-- closed: turns go. `failures` counted failures within `window` seconds
-- open it: no turn goes for `cooldown` seconds. Then it is half-open: one
-- turn (the probe) goes; its success closes the breaker, its failure opens
-- it again. Counted are the failures that say the endpoint is in trouble
-- (5xx, overloaded, timeouts, stalls, connection errors, cut streams), not
-- rate limits (retry-after says when to come back) nor failures of the
-- request itself (auth, a bad request, a limit).
local retry = require('orch.retry')

local M = {}

M.DEFAULTS = { failures = 5, window = 60, cooldown = 30 }

M.COUNTED = { server = true, overloaded = true, timeout = true, stall = true,
              connection = true, cut = true }

local ENDPOINT_VARS = { claude = 'ANTHROPIC_BASE_URL', anthropic = 'ANTHROPIC_BASE_URL',
                        openai = 'OPENAI_BASE_URL', codex = 'OPENAI_BASE_URL',
                        crush = 'OPENAI_BASE_URL' }

-- The role's breaker settings with the defaults filled in.
function M.settings(role)
  local r = type(role) == 'table' and type(role.breaker) == 'table' and role.breaker or {}
  local out = {}
  for k, v in pairs(M.DEFAULTS) do
    local n = tonumber(r[k])
    out[k] = (n and n > 0) and n or v
  end
  return out
end

-- Where a role's backend sends its requests: the role's endpoint, else the
-- vendor variable (env: the agent's additions, then orch's environment),
-- else 'default' (the vendor's own).
function M.endpoint(role, env)
  local ep = type(role.endpoint) == 'table' and role.endpoint.base_url
  if type(ep) == 'string' and ep ~= '' then return (ep:gsub('/+$', '')) end
  local var = ENDPOINT_VARS[role.backend]
  local v = var and ((env and env[var]) or os.getenv(var))
  if type(v) == 'string' and v ~= '' then return (v:gsub('/+$', '')) end
  return 'default'
end

local Reg = {}
Reg.__index = Reg

function M.new(o)
  o = o or {}
  return setmetatable({ list = {}, now = o.now or os.time, on_change = o.on_change }, Reg)
end

-- The breaker of role's backend, endpoint and model (made closed on first use).
function Reg:get(role, env)
  local endpoint = M.endpoint(role, env)
  local model = role.model or ''
  local key = ('%s %s %s'):format(tostring(role.backend), endpoint, model)
  local b = self.list[key]
  if not b then
    b = { key = key, backend = role.backend, endpoint = endpoint,
          model = role.model, state = 'closed', fails = {}, opened = 0 }
    self.list[key] = b
  end
  -- the latest role's settings (a role file edited mid-run)
  b.cfg = M.settings(role)
  return b
end

function Reg:set_state(b, state)
  if b.state == state then return end
  local old = b.state
  b.state = state
  if self.on_change then self.on_change(b, old) end
end

-- Whether a turn may go now; else false and the seconds to wait.
function Reg:allow(b)
  if b.state == 'closed' then return true end
  local now = self.now()
  if b.state == 'open' then
    local left = b.opened + b.cfg.cooldown - now
    if left > 0 then return false, left end
    self:set_state(b, 'half-open')
  end
  if b.probing then return false, math.min(1, b.cfg.cooldown) end
  b.probing = true
  return true
end

function Reg:success(b)
  b.probing = false
  b.fails = {}
  self:set_state(b, 'closed')
end

-- A failed turn; only counted classes (M.COUNTED) count.
function Reg:failure(b, result)
  local class = retry.class(result)
  if not M.COUNTED[class] then return self:release(b) end
  local now = self.now()
  local fails, keep = b.fails, {}
  for _, t in ipairs(fails) do
    if now - t < b.cfg.window then keep[#keep + 1] = t end
  end
  keep[#keep + 1] = now
  b.fails = keep
  local was_probe = b.probing
  b.probing = false
  if b.state == 'half-open' or (was_probe and b.state ~= 'closed') or #keep >= b.cfg.failures then
    b.opened = now
    if b.state == 'open' then return end
    self:set_state(b, 'open')
  end
end

-- A probe that ended with neither verdict (rate limited, cancelled).
function Reg:release(b)
  b.probing = false
end

-- Every breaker: {key, backend, endpoint, model, state, failures}.
function Reg:states()
  local out = {}
  for _, b in pairs(self.list) do
    out[#out + 1] = { key = b.key, backend = b.backend, endpoint = b.endpoint, model = b.model,
                      state = b.state, failures = #b.fails }
  end
  table.sort(out, function(a, c) return a.key < c.key end)
  return out
end

return M
