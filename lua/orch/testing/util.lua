-- Small helpers shared by the scripted model server's modules: fresh ids,
-- token estimates, SSE framing, text of content parts.
local core = require('orch.core')
local json = require('orch.testing.json')

local M = {}

local counter = 0
local seeded = false
local ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

-- A fresh id: prefix, a counter and random letters (never the same twice
-- in a process, and unlikely across processes).
function M.id(prefix)
  if not seeded then
    math.randomseed(core.hrtime() % 2147483647 + core.getpid())
    seeded = true
  end
  counter = counter + 1
  local r = {}
  for i = 1, 20 do
    local k = math.random(1, #ALNUM)
    r[i] = ALNUM:sub(k, k)
  end
  return ('%s%04d%s'):format(prefix, counter % 10000, table.concat(r))
end

-- Rough token count of a string (4 bytes a token, at least 1).
function M.tokens(s)
  return math.max(1, math.ceil(#(s or '') / 4))
end

-- One SSE event: `event: NAME` (if any) and one data line of JSON.
function M.sse(event, data)
  local body = type(data) == 'string' and data or json.encode(data)
  if event then return 'event: ' .. event .. '\ndata: ' .. body .. '\n\n' end
  return 'data: ' .. body .. '\n\n'
end

-- Text of a content value: a string, or a list of parts with `text`
-- (any type: text, input_text, output_text), joined by newlines.
function M.text_of(content)
  if type(content) == 'string' then return content end
  if type(content) ~= 'table' then return '' end
  local parts = {}
  for _, p in ipairs(content) do
    if type(p) == 'string' then
      parts[#parts + 1] = p
    elseif type(p) == 'table' and type(p.text) == 'string' then
      parts[#parts + 1] = p.text
    elseif type(p) == 'table' and p.type == 'tool_result' then
      parts[#parts + 1] = M.text_of(p.content)
    end
  end
  return table.concat(parts, '\n')
end

-- A JSON string for tool arguments (input may already be one).
function M.args_json(input)
  if type(input) == 'string' then return input end
  if input == nil or (type(input) == 'table' and next(input) == nil) then return '{}' end
  return json.encode(input)
end

-- v if it is a table, else an empty one (for bodies of any shape).
function M.list(v)
  return type(v) == 'table' and v or {}
end

-- Splits s into n roughly equal pieces (n >= 1; empty s gives {}).
function M.pieces(s, n)
  local out = {}
  if s == '' then return out end
  local size = math.max(1, math.ceil(#s / n))
  for i = 1, #s, size do out[#out + 1] = s:sub(i, i + size - 1) end
  return out
end

return M
