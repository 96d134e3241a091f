-- List prices (USD per million tokens) of well-known hosted models, to put
-- a cost on an HTTP backend's usage. A model that is not here (a local
-- model, a new one) has no cost (nil), never a guess. A role may give its
-- own `price = {input=, output=, cache_read=, cache_write=}` (per million).
-- Matched by the longest prefix of the model name, so dated snapshots
-- ("claude-sonnet-4-5-20250929") find their family.
local M = {}

M.TABLE = {
  -- Anthropic: cache reads 0.1x input, cache writes (5 min) 1.25x input
  ['claude-opus-4-5'] = { input = 5, output = 25 },
  ['claude-opus-4-1'] = { input = 15, output = 75 },
  ['claude-opus-4'] = { input = 15, output = 75 },
  ['claude-sonnet-4'] = { input = 3, output = 15 },
  ['claude-3-7-sonnet'] = { input = 3, output = 15 },
  ['claude-3-5-sonnet'] = { input = 3, output = 15 },
  ['claude-haiku-4-5'] = { input = 1, output = 5 },
  ['claude-3-5-haiku'] = { input = 0.8, output = 4 },
  ['claude-3-haiku'] = { input = 0.25, output = 1.25 },
  -- OpenAI: cached input as listed
  ['gpt-4o-mini'] = { input = 0.15, output = 0.6, cache_read = 0.075 },
  ['gpt-4o'] = { input = 2.5, output = 10, cache_read = 1.25 },
  ['gpt-4.1-nano'] = { input = 0.1, output = 0.4, cache_read = 0.025 },
  ['gpt-4.1-mini'] = { input = 0.4, output = 1.6, cache_read = 0.1 },
  ['gpt-4.1'] = { input = 2, output = 8, cache_read = 0.5 },
  ['o4-mini'] = { input = 1.1, output = 4.4, cache_read = 0.275 },
  ['o3-mini'] = { input = 1.1, output = 4.4, cache_read = 0.55 },
  ['o3'] = { input = 2, output = 8, cache_read = 0.5 },
}

local function lookup(model)
  if type(model) ~= 'string' then return nil end
  local best, len = nil, 0
  for prefix, p in pairs(M.TABLE) do
    if #prefix > len and model:sub(1, #prefix) == prefix then best, len = p, #prefix end
  end
  return best
end

-- The price of a model: the role's own, else the table's, else nil.
function M.of(model, own)
  if type(own) == 'table' and tonumber(own.input) and tonumber(own.output) then
    return own
  end
  return lookup(model)
end

-- usage = {input_tokens=, output_tokens=, cache_read_tokens=,
-- cache_write_tokens=} (input_tokens without the cached ones) -> USD or nil.
function M.cost(usage, price)
  if not price then return nil end
  local input = tonumber(price.input)
  local cr = tonumber(price.cache_read) or input * 0.1
  local cw = tonumber(price.cache_write) or input * 1.25
  return ((usage.input_tokens or 0) * input + (usage.output_tokens or 0) * tonumber(price.output)
          + (usage.cache_read_tokens or 0) * cr + (usage.cache_write_tokens or 0) * cw) / 1e6
end

return M
