-- JSON for the scripted model server: cjson decodes; encoding is done here
-- so that empty arrays stay arrays (Debian's lua-cjson 2.1.0 has no
-- empty_array and writes every empty table as {}), which the clients'
-- strict parsers (codex's serde, the SDKs' schemas) need.
local cjson = require('cjson')

local M = {}

local ARRAY = { __jsontype = 'array' }
M.null = cjson.null

-- Marks t (default a new table) as a JSON array, even when empty.
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype == 'array' then return true end
  if mt and mt.__jsontype == 'object' then return false end
  return t[1] ~= nil or false
end

local encode

local function encode_array(t, out)
  out[#out + 1] = '['
  for i = 1, #t do
    if i > 1 then out[#out + 1] = ',' end
    encode(t[i], out)
  end
  out[#out + 1] = ']'
end

local function encode_object(t, out)
  local keys = {}
  for k in pairs(t) do
    if type(k) == 'string' then keys[#keys + 1] = k end
  end
  table.sort(keys)
  out[#out + 1] = '{'
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = ',' end
    out[#out + 1] = cjson.encode(k)
    out[#out + 1] = ':'
    encode(t[k], out)
  end
  out[#out + 1] = '}'
end

encode = function(v, out)
  local tv = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = 'null'
  elseif tv == 'table' then
    if is_array(v) then encode_array(v, out) else encode_object(v, out) end
  elseif tv == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = 'null'
    elseif v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      out[#out + 1] = ('%d'):format(v)
    else
      out[#out + 1] = ('%.17g'):format(v)
    end
  elseif tv == 'boolean' or tv == 'string' then
    out[#out + 1] = cjson.encode(v)
  else
    out[#out + 1] = cjson.encode(tostring(v))
  end
end

-- Encodes v (tables with string keys as objects, sequences and tables
-- marked with M.array as arrays; functions and other values as strings).
function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

-- Decodes s; nil, message on bad JSON.
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

return M
