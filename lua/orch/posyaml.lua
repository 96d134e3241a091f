--- A YAML loader that remembers where things are, on lyaml's event parser.
--
-- `decode(text)` returns `value, pos` with the same `pos` shape as
-- orch.posjson (`pos[tbl] = {line=, keys={k=line}}` or `{line=, items={}}`),
-- or `nil, {line=, msg=}`. A mapping's `pos.raw[k]` keeps the source text of
-- a plain scalar value that did not decode to a string (`cmd: true`).
-- One document; plain scalars follow the YAML 1.2 core schema
-- (null/~/empty, true/false, numbers), quoted ones are strings;
-- null decodes to `posjson.null`. Anchors and aliases work (an alias is the
-- same Lua table). Containers are built with an explicit stack, so deep
-- nesting is an error (max_depth, default 200), never a C stack overflow.
-- `decode(text, opts)` takes the same bounds as orch.posjson (max_depth,
-- max_items, max_values, check); an alias counts as the values it stands
-- for (an alias bomb is refused while it is read).
local M = {}

local null = require('orch.posjson').null

local STR_TAG = 'tag:yaml.org,2002:str'

local function scalar_value(ev)
  local v = ev.value
  if ev.style ~= 'PLAIN' or ev.tag == STR_TAG then return v end
  if v == '' or v == '~' or v == 'null' or v == 'Null' or v == 'NULL' then
    return null
  end
  if v == 'true' or v == 'True' or v == 'TRUE' then return true end
  if v == 'false' or v == 'False' or v == 'FALSE' then return false end
  if v:find('^[-+]?%d+$') or v:find('^[-+]?%d*%.%d+$')
    or v:find('^[-+]?%d+%.%d*$') or v:find('^[-+]?%d*%.?%d+[eE][-+]?%d+$')
    or v:find('^0x%x+$') or v:find('^0o[0-7]+$') then
    return tonumber(v) or tonumber((v:gsub('^0o', '')), 8) or v
  end
  if v:find('^[-+]?%.[iI][nN][fF]$') then
    return v:sub(1, 1) == '-' and -math.huge or math.huge
  end
  if v == '.nan' or v == '.NaN' or v == '.NAN' then return 0 / 0 end
  return v
end

-- "found a tab ... at document: 1, line: 2, column: 1\nwhile scanning ..."
local function parse_error(e)
  e = tostring(e)
  local first = e:match('^[^\n]*')
  local line = tonumber(first:match('line: (%d+)')) or tonumber(e:match('line: (%d+)'))
  local col = first:match('column: (%d+)')
  local msg = first:gsub(' at document: %d+.*$', ''):gsub(' at line: %d+,.*$', '')
  msg = msg:gsub('^[^:]*yaml[^:]*: ', '')
  if col then msg = msg .. ' (column ' .. col .. ')' end
  return { line = line or 1, msg = 'YAML: ' .. msg }
end

local function fail(line, msg)
  error({ line = line, msg = msg, yaml = true }, 0)
end

local Builder = {}
Builder.__index = Builder

-- Counts n more values (an alias: every value it repeats).
function Builder:count(n, line)
  local v = self.values + n
  self.values = v
  if v > self.max_values then
    fail(line, ('more than %d values (YAML aliases count as what they repeat)'):format(self.max_values))
  end
end

function Builder:add(value, line, raw)
  local top = self.stack[#self.stack]
  if not top then
    if self.have_root then fail(line, 'more than one YAML document') end
    self.root, self.have_root = value, true
    return
  end
  if top.items then
    local n = #top.items + 1
    if n > self.max_items then fail(line, ('a list of more than %d items'):format(self.max_items)) end
    top.items[n] = line
    top.value[n] = value
    return
  end
  if top.key == nil then
    if type(value) == 'table' and value ~= null then
      fail(line, 'a mapping key must be a plain value')
    end
    local k = value == null and 'null' or tostring(value)
    if top.keys[k] then
      fail(line, "duplicate field '" .. k .. "' (first at line " .. top.keys[k] .. ')')
    end
    top.key = k
    top.keys[k] = line
    top.nkeys = (top.nkeys or 0) + 1
    if top.nkeys > self.max_items then
      fail(line, ('an object with more than %d fields'):format(self.max_items))
    end
    return
  end
  top.value[top.key] = value
  if raw ~= nil and type(value) ~= 'string' then
    local p = self.pos[top.value]
    p.raw = p.raw or {}
    p.raw[top.key] = raw
  end
  top.key = nil
end

function Builder:open(ev, seq)
  local line = ev.start_mark.line + 1
  if #self.stack >= self.max_depth then
    fail(line, 'nesting deeper than ' .. self.max_depth .. ' levels')
  end
  local t = {}
  local p = seq and { line = line, items = {} } or { line = line, keys = {} }
  self.pos[t] = p
  if ev.anchor then self.anchors[ev.anchor] = t end
  self:count(1, line)
  self:add(t, line)
  self.stack[#self.stack + 1] = { value = t, items = p.items, keys = p.keys,
                                  anchor = ev.anchor, start = self.values }
end

function Builder:event(ev)
  local ty, line = ev.type, ev.start_mark and ev.start_mark.line + 1 or 1
  if ty == 'SCALAR' then
    if ev.style == 'DOUBLE_QUOTED' and self.text and ev.start_mark and ev.end_mark then
      -- libyaml ends a string at an escaped NUL: refuse it rather than cut it
      local src = self.text:sub(ev.start_mark.index + 1, ev.end_mark.index)
      if src:find('\\0') or src:find('\\x00') or src:find('\\u0000')
         or src:find('\\U00000000') then
        -- a backslash-zero may itself be escaped (\\0): count backslashes
        for pre in src:gmatch('(\\+)0') do
          if #pre % 2 == 1 then fail(line, 'NUL character (an escaped \\0) in a string') end
        end
        for pre in src:gmatch('(\\+)x00') do
          if #pre % 2 == 1 then fail(line, 'NUL character (\\x00) in a string') end
        end
        for pre in src:gmatch('(\\+)u0000') do
          if #pre % 2 == 1 then fail(line, 'NUL character (\\u0000) in a string') end
        end
        for pre in src:gmatch('(\\+)U00000000') do
          if #pre % 2 == 1 then fail(line, 'NUL character (\\U00000000) in a string') end
        end
      end
    end
    local v = scalar_value(ev)
    self:count(1, line)
    if ev.anchor then self.anchors[ev.anchor] = v self.weight[ev.anchor] = 1 end
    self:add(v, line, ev.value)
  elseif ty == 'MAPPING_START' then
    self:open(ev, false)
  elseif ty == 'SEQUENCE_START' then
    self:open(ev, true)
  elseif ty == 'MAPPING_END' or ty == 'SEQUENCE_END' then
    local top = self.stack[#self.stack]
    if top and top.anchor then self.weight[top.anchor] = self.values - top.start + 1 end
    self.stack[#self.stack] = nil
  elseif ty == 'ALIAS' then
    local v = self.anchors[ev.anchor]
    if v == nil then fail(line, "unknown alias '*" .. tostring(ev.anchor) .. "'") end
    self:count(self.weight[ev.anchor] or 1, line)
    self:add(v, line)
  elseif ty == 'DOCUMENT_START' then
    self.docs = self.docs + 1
    if self.docs > 1 then fail(line, 'more than one YAML document') end
  end
end

--- Decodes text; returns value, pos or nil, {line=, msg=}.
function M.decode(text, opts)
  if type(opts) ~= 'table' then opts = { max_depth = opts } end
  local ok, yaml = pcall(require, 'yaml')
  if not ok then return nil, { line = 1, msg = 'YAML support needs lyaml' } end
  local b = setmetatable({ stack = {}, pos = {}, anchors = {}, weight = {}, docs = 0,
    max_depth = opts.max_depth or 200, max_items = opts.max_items or math.huge,
    max_values = opts.max_values or math.huge, values = 0, text = text }, Builder)
  local check, nev = opts.check, 0
  local okp, res = pcall(function()
    local next_event = yaml.parser(text)
    while true do
      local okn, ev = pcall(next_event)
      if not okn then error(parse_error(ev), 0) end
      if not ev or ev.type == 'STREAM_END' then break end
      nev = nev + 1
      if check and nev % 4096 == 0 then check() end
      b:event(ev)
    end
  end)
  if not okp then
    if type(res) == 'table' and res.interrupted then
      return nil, { line = 0, msg = 'interrupted (' .. tostring(res.interrupted) .. ')',
                    interrupted = res.interrupted }
    end
    if type(res) == 'table' then return nil, { line = res.line, msg = res.msg } end
    return nil, { line = 1, msg = 'YAML: ' .. tostring(res) }
  end
  if not b.have_root or b.root == null then
    return nil, { line = 1, msg = 'empty file' }
  end
  return b.root, b.pos
end

return M
