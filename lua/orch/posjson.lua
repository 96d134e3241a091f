--- A JSON decoder that remembers where things are.
--
-- `decode(text)` returns `value, pos` where `pos[tbl]` (for every decoded
-- object or array) is `{line = N, keys = {name = line}}` for objects and
-- `{line = N, items = {line, ...}}` for arrays; lines are 1-based. On bad
-- input it returns `nil, {line = N, msg = "..."}`; it never raises and never
-- recurses deeper than `max_depth` (default 200). JSON `null` decodes to
-- `M.null`. Duplicate field names are an error.
--
-- `decode(text, opts)` bounds what the text may cost (opts.max_depth;
-- opts.max_items, the most items or fields in one list or object;
-- opts.max_values, the most values in all; each unbounded when absent)
-- and calls opts.check() every few thousand values, which may raise
-- {interrupted = NAME} to stop (returned as `nil, {interrupted = NAME}`).
local M = {}

local byte, sub, find, char = string.byte, string.sub, string.find, string.char
local concat = table.concat
local floor = math.floor

M.null = setmetatable({}, { __tostring = function() return 'null' end })

local function fail(st, msg, line)
  error({ line = line or st.line, msg = msg, json = true }, 0)
end

local function count_nl(s, i, j)
  local n = 0
  for k = i, j do
    if byte(s, k) == 10 then n = n + 1 end
  end
  return n
end

local function skip(st)
  local _, e = find(st.s, '^[ \t\r\n]*', st.i)
  if e >= st.i then st.line = st.line + count_nl(st.s, st.i, e) end
  st.i = e + 1
end

local function describe(st)
  local c = sub(st.s, st.i, st.i)
  if c == '' then return 'end of file' end
  if find(c, '^[%w%p ]$') then return "unexpected character '" .. c .. "'" end
  return ('unexpected byte 0x%02X'):format(byte(c))
end

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then
    return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
  end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64,
      0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
    0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local escapes = {
  ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
  r = '\r', t = '\t',
}

local function unicode_escape(st, j)
  local s = st.s
  local hex = sub(s, j + 2, j + 5)
  if not find(hex, '^%x%x%x%x$') then fail(st, 'bad \\u escape in string') end
  local cp, k = tonumber(hex, 16), j + 6
  if cp == 0 then fail(st, 'NUL character (\\u0000) in string') end
  if cp >= 0xD800 and cp <= 0xDBFF then
    local lo = sub(s, k, k + 5)
    if not find(lo, '^\\u[dD][c-fC-F]%x%x$') then
      fail(st, 'lone UTF-16 surrogate in string')
    end
    cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(sub(lo, 3), 16) - 0xDC00)
    k = k + 6
  elseif cp >= 0xDC00 and cp <= 0xDFFF then
    fail(st, 'lone UTF-16 surrogate in string')
  end
  return utf8(cp), k
end

-- Whether s is valid UTF-8 (no overlong forms, no surrogates).
local function valid_utf8(s)
  local i = 1
  while true do
    i = find(s, '[\128-\255]', i)
    if not i then return true end
    local c = byte(s, i)
    local need
    if c >= 0xC2 and c <= 0xDF then need = 1
    elseif c >= 0xE0 and c <= 0xEF then need = 2
    elseif c >= 0xF0 and c <= 0xF4 then need = 3
    else return false end
    for k = 1, need do
      local cc = byte(s, i + k)
      if not cc or cc < 0x80 or cc > 0xBF then return false end
    end
    local c2 = byte(s, i + 1)
    if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
       or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
      return false
    end
    i = i + need + 1
  end
end

local function checked(st, str)
  if not valid_utf8(str) then fail(st, 'string is not valid UTF-8') end
  return str
end

local function parse_string(st)
  local s, i, parts = st.s, st.i + 1, {}
  local j = find(s, '["\\%z\1-\31]', i)
  if j and byte(s, j) == 34 then -- the common case: no escapes
    st.i = j + 1
    return checked(st, sub(s, i, j - 1))
  end
  while true do
    j = find(s, '["\\%z\1-\31]', i)
    if not j then fail(st, 'unterminated string (the file ends inside it)') end
    local c = byte(s, j)
    parts[#parts + 1] = sub(s, i, j - 1)
    if c == 34 then
      st.i = j + 1
      return checked(st, concat(parts))
    elseif c == 92 then
      local e = sub(s, j + 1, j + 1)
      if e == 'u' then
        parts[#parts + 1], i = unicode_escape(st, j)
      elseif escapes[e] then
        parts[#parts + 1], i = escapes[e], j + 2
      else
        fail(st, "bad escape '\\" .. e .. "' in string")
      end
    elseif c == 10 then
      fail(st, 'unterminated string (newline inside a string)')
    else
      fail(st, 'control character in string')
    end
  end
end

local function parse_number(st)
  local s, i = st.s, st.i
  local _, e = find(s, '^-?0', i)
  if not e then _, e = find(s, '^-?[1-9]%d*', i) end
  if not e then fail(st, describe(st)) end
  local _, f = find(s, '^%.%d+', e + 1)
  e = f or e
  local _, x = find(s, '^[eE][-+]?%d+', e + 1)
  e = x or e
  st.i = e + 1
  return tonumber(sub(s, i, e))
end

local literals = { t = { 'true', true }, f = { 'false', false },
  n = { 'null', M.null } }

local parse_value

local function parse_object(st, depth)
  local obj, keys = {}, {}
  st.pos[obj] = { line = st.line, keys = keys }
  st.i = st.i + 1
  skip(st)
  if byte(st.s, st.i) == 125 then
    st.i = st.i + 1
    return obj
  end
  local nf = 0
  while true do
    nf = nf + 1
    if nf > st.max_items then
      fail(st, ('an object with more than %d fields'):format(st.max_items))
    end
    if byte(st.s, st.i) ~= 34 then
      fail(st, byte(st.s, st.i) == 125 and "trailing comma before '}'"
        or 'expected a field name in double quotes, got ' .. describe(st))
    end
    local kline = st.line
    local k = parse_string(st)
    if keys[k] then
      fail(st, "duplicate field '" .. k .. "' (first at line " .. keys[k] .. ')',
        kline)
    end
    keys[k] = kline
    skip(st)
    if byte(st.s, st.i) ~= 58 then fail(st, "expected ':', got " .. describe(st)) end
    st.i = st.i + 1
    skip(st)
    local vstart = st.i
    obj[k] = parse_value(st, depth + 1)
    if type(obj[k]) == 'number' then
      -- the number as written (env values keep their digits: 123456789012345)
      local raw = st.pos[obj].raw or {}
      st.pos[obj].raw = raw
      raw[k] = sub(st.s, vstart, st.i - 1)
    end
    skip(st)
    local c = byte(st.s, st.i)
    st.i = st.i + 1
    if c == 125 then return obj end
    if c ~= 44 then
      st.i = st.i - 1
      fail(st, "expected ',' or '}', got " .. describe(st))
    end
    skip(st)
  end
end

local function parse_array(st, depth)
  local arr, items = {}, {}
  st.pos[arr] = { line = st.line, items = items }
  st.i = st.i + 1
  skip(st)
  if byte(st.s, st.i) == 93 then
    st.i = st.i + 1
    return arr
  end
  local n = 0
  while true do
    if byte(st.s, st.i) == 93 then fail(st, "trailing comma before ']'") end
    n = n + 1
    if n > st.max_items then fail(st, ('a list of more than %d items'):format(st.max_items)) end
    items[n] = st.line
    arr[n] = parse_value(st, depth + 1)
    skip(st)
    local c = byte(st.s, st.i)
    st.i = st.i + 1
    if c == 93 then return arr end
    if c ~= 44 then
      st.i = st.i - 1
      fail(st, "expected ',' or ']', got " .. describe(st))
    end
    skip(st)
  end
end

parse_value = function(st, depth)
  if depth > st.max_depth then
    fail(st, 'nesting deeper than ' .. st.max_depth .. ' levels')
  end
  local nv = st.values + 1
  st.values = nv
  if nv > st.max_values then fail(st, ('more than %d values'):format(st.max_values)) end
  if nv % 4096 == 0 and st.check then st.check() end
  local c = byte(st.s, st.i)
  if c == 123 then return parse_object(st, depth) end
  if c == 91 then return parse_array(st, depth) end
  if c == 34 then return parse_string(st) end
  if c == 45 or (c and c >= 48 and c <= 57) then return parse_number(st) end
  local lit = c and literals[char(c)]
  if lit and sub(st.s, st.i, st.i + #lit[1] - 1) == lit[1] then
    st.i = st.i + #lit[1]
    return lit[2]
  end
  fail(st, describe(st))
end

--- Decodes text; returns value, pos or nil, {line=, msg=}.
function M.decode(text, opts)
  if type(opts) ~= 'table' then opts = { max_depth = opts } end
  local st = { s = text, i = 1, line = 1, pos = {}, max_depth = opts.max_depth or 200,
               max_items = opts.max_items or math.huge, max_values = opts.max_values or math.huge,
               values = 0, check = opts.check }
  local ok, res = pcall(function()
    skip(st)
    if st.i > #st.s then fail(st, 'empty file') end
    local v = parse_value(st, 1)
    skip(st)
    if st.i <= #st.s then fail(st, 'unexpected data after the JSON value: ' .. describe(st)) end
    return v
  end)
  if ok then return res, st.pos end
  if type(res) == 'table' and res.json then
    return nil, { line = res.line, msg = res.msg }
  end
  if type(res) == 'table' and res.interrupted then
    return nil, { line = 0, msg = 'interrupted (' .. tostring(res.interrupted) .. ')',
                  interrupted = res.interrupted }
  end
  return nil, { line = st.line, msg = tostring(res) }
end

return M
