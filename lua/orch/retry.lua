-- orch.retry: the retry policy, which users replace from their config the
-- way they replace orch.policy (docs/resilience.md).
--
--   retry.decide(f) -> wait_s | nil, why
--
-- f describes the failed attempt: {task=, role=, attempt= (how many tries
-- of this turn have failed, 1 after the first), class= (retry.class),
-- retryable=, retry_after= (s, when the server said), error=, http_status=,
-- elapsed= (s since the first try), limits= (retry.limits(role))}. The
-- answer is how long to wait before the next try, or nil and why not.
--
-- The default: no retry for a failure the backend calls not retryable;
-- else exponential backoff with full jitter (a uniform wait in [0,
-- min(ceiling, base * 2^(attempt-1))]), never less than retry-after, and
-- no try that would start after `total` seconds or beyond `attempts` tries.
local M = {}

M.DEFAULTS = { attempts = 5, base = 2, ceiling = 60, total = 900 }

-- The role's retries with the defaults filled in.
function M.limits(role)
  local r = type(role) == 'table' and type(role.retries) == 'table' and role.retries or {}
  local out = {}
  for k, v in pairs(M.DEFAULTS) do
    local n = tonumber(r[k])
    out[k] = (n and n >= 0) and n or v
  end
  return out
end

-- A 401 said as a status ("API Error: 401", "status 401", "HTTP 401"), not
-- a number that happens to hold it (a port, "after 2401 ms", "401 bytes").
local function said_401(msg)
  for _, p in ipairs({ 'error:? 401%f[%D]', 'status:? 401%f[%D]', 'http/?[%d.]* 401%f[%D]',
                       'code:? 401%f[%D]', '^401%f[%D]' }) do
    if msg:find(p) then return true end
  end
  return false
end

-- A failure's class, for policies, breakers and the docs' table:
-- 'rate_limit', 'overloaded', 'server', 'timeout', 'stall', 'connection',
-- 'cut', 'auth', 'bad_request', 'not_found', 'limit', 'cancelled', 'other'.
function M.class(result)
  if type(result) ~= 'table' then return 'other' end
  if result.cancelled then return 'cancelled' end
  if result.limit then return 'limit' end
  if result.stalled then return 'stall' end
  local st = tonumber(result.http_status)
  local msg = tostring(result.error or ''):lower()
  if st == 429 or msg:find('rate limit') or msg:find('too many requests') then return 'rate_limit' end
  if st == 529 or msg:find('overloaded') then return 'overloaded' end
  if st == 401 or st == 403 or msg:find('authenticat') or msg:find('api key')
      or msg:find('unauthori') or said_401(msg) then
    return 'auth'
  end
  if st == 404 or msg:find('model not found') or msg:find('not_found') then return 'not_found' end
  if st == 400 or st == 422 or msg:find('invalid_request') then return 'bad_request' end
  if (st and st >= 500) or msg:find('internal server error') or msg:find('service unavailable')
      or msg:find('bad gateway') then
    return 'server'
  end
  if msg:find('timed out') or msg:find('timeout') then return 'timeout' end
  if msg:find('cut off') or msg:find('ended before') or msg:find('stream disconnected')
      or msg:find('transfer closed') or msg:find('partial') then
    return 'cut'
  end
  if msg:find('connect') or msg:find('reset') or msg:find('refused') then return 'connection' end
  return 'other'
end

local KEY_VARS = { claude = 'ANTHROPIC_API_KEY', anthropic = 'ANTHROPIC_API_KEY',
                   openai = 'OPENAI_API_KEY', codex = 'OPENAI_API_KEY', crush = 'OPENAI_API_KEY' }
local LOGINS = { claude = ', or log in with `claude /login`', codex = ', or log in with `codex login`' }

-- What to fix for a failure of class 'auth' with role's backend.
function M.auth_hint(role)
  role = role or {}
  local ep = type(role.endpoint) == 'table' and role.endpoint or {}
  local var = ep.api_key_env or KEY_VARS[role.backend] or 'the API key variable'
  return ('not retried: the endpoint refused the credentials; set %s to a valid key ' ..
    '(the role\'s endpoint.api_key_env names the variable)%s'):format(var, LOGINS[role.backend] or '')
end

local function default_decide(f)
  if not f.retryable then return nil, 'not retryable' end
  local lim = f.limits or M.limits(f.role)
  local n = tonumber(f.attempt) or 1
  if n >= lim.attempts then
    return nil, ('gave up after %d attempt%s'):format(n, n == 1 and '' or 's')
  end
  local cap = math.min(lim.ceiling, lim.base * 2 ^ (n - 1))
  local wait = (f.random or math.random)() * cap
  local ra = tonumber(f.retry_after)
  if ra and ra > wait then wait = ra end
  if (tonumber(f.elapsed) or 0) + wait > lim.total then
    return nil, ('gave up: the next try would start after the %g s the role allows for retries')
      :format(lim.total)
  end
  return wait
end

M.decide_fn = default_decide
M.default = default_decide

-- The policy's answer, checked: a wait >= 0 (never below retry-after), or
-- nil and why. A policy that raises or answers nonsense gives up.
function M.decide(f)
  local ok, wait, why = pcall(M.decide_fn, f)
  if not ok then
    io.stderr:write(('orch: retry policy failed: %s; not retrying\n'):format(tostring(wait)))
    return nil, 'the retry policy failed'
  end
  if wait == nil or wait == false then return nil, why or 'the retry policy said no' end
  wait = tonumber(wait)
  if not wait or wait ~= wait or wait < 0 then return nil, 'the retry policy answered no wait' end
  local ra = tonumber(f.retry_after)
  if ra and wait < ra then wait = ra end
  return wait
end

-- Installs fn(f) -> wait | nil, why; nil restores the default.
function M.set(fn)
  M.decide_fn = fn or default_decide
end

return M
