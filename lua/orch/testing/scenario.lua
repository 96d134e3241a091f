-- Scenarios of the scripted model server: loading (a Lua table, a .lua file
-- returning one, or a .json file), matching a request against the rules
-- (first match wins, `times` bounds the uses of a rule) and templating.
-- The rule format is documented in docs/api/modelserver.md.
local json = require('orch.testing.json')

local M = {}

M.DEFAULT_TEXT = 'scripted model: no rule of the scenario matched this request'

local WHEN_KEYS = { protocol = true, model = true, user = true, system = true,
                    tool_result = true, tool_error = true, text = true, any = true,
                    tools = true, last = true, fn = true, path = true, stream = true }

local PROTOCOLS = { anthropic = true, chat = true, responses = true }

local function check_protocol(p, i)
  for _, name in ipairs(type(p) == 'table' and p or { p }) do
    if not PROTOCOLS[name] then
      return ("rule %d: unknown protocol '%s' (anthropic, chat or responses)"):format(i, tostring(name))
    end
  end
end

local function check_rule(rule, i)
  if type(rule) ~= 'table' then return ('rule %d: a table expected'):format(i) end
  local w = rule.when
  if w ~= nil and type(w) ~= 'table' and type(w) ~= 'function' then
    return ('rule %d: when must be a table or a function'):format(i)
  end
  if type(w) == 'table' then
    for k in pairs(w) do
      if not WHEN_KEYS[k] then return ('rule %d: unknown when.%s'):format(i, tostring(k)) end
    end
    if w.protocol ~= nil then
      local err = check_protocol(w.protocol, i)
      if err then return err end
    end
  end
  if rule.replies ~= nil then
    if type(rule.replies) ~= 'table' or rule.replies[1] == nil or rule.reply ~= nil then
      return ('rule %d: replies must be a non-empty list (and no reply beside it)'):format(i)
    end
  end
  local list = rule.replies or { rule.reply }
  if list[1] == nil then return ('rule %d: no reply'):format(i) end
  for _, r in ipairs(list) do
    if type(r) ~= 'table' and type(r) ~= 'string' and type(r) ~= 'function' then
      return ('rule %d: reply must be a table, a string or a function'):format(i)
    end
  end
  if rule.times ~= nil and (type(rule.times) ~= 'number' or rule.times < 0) then
    return ('rule %d: times must be a number >= 0'):format(i)
  end
end

local function read_file(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read('*a')
  f:close()
  return s
end

local function from_file(path)
  if path:match('%.json$') then
    local s, err = read_file(path)
    if not s then return nil, err end
    local t, jerr = json.decode(s)
    if not t then return nil, path .. ': ' .. jerr end
    return t
  end
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local ok, t = pcall(chunk)
  if not ok then return nil, path .. ': ' .. tostring(t) end
  if type(t) ~= 'table' then return nil, path .. ': the file must return a table' end
  return t
end

-- spec: a list of rules, a table {rules = {...}, default = reply}, or the
-- path of a .lua or .json file holding one. Returns a scenario or nil, err.
function M.load(spec)
  if spec == nil then spec = {} end
  if type(spec) == 'string' then
    local t, err = from_file(spec)
    if not t then return nil, err end
    spec = t
  end
  if type(spec) ~= 'table' then return nil, 'a scenario is a table or a file name' end
  local rules = spec.rules or spec
  if type(rules) ~= 'table' then return nil, 'rules must be a list' end
  local list = {}
  for i, rule in ipairs(rules) do
    local err = check_rule(rule, i)
    if err then return nil, err end
    list[i] = rule
  end
  return { rules = list, used = {}, default = spec.default or M.DEFAULT_TEXT }
end

-- ---------------------------------------------------------------- matching

local function one_of(v, want)
  if type(want) == 'table' then
    for _, w in ipairs(want) do if v == w then return true end end
    return false
  end
  return v == want
end

-- Matches pattern pat in s; returns true and the captures, or false.
local function find(s, pat)
  if pat == true then return s ~= nil and s ~= '' end
  if type(s) ~= 'string' then return false end
  local r = { s:find(pat) }
  if not r[1] then return false end
  return true, { select(3, unpack(r)) }
end

local function offers(req, want)
  local list = type(want) == 'table' and want or { want }
  for _, name in ipairs(list) do
    local found = false
    for _, t in ipairs(req.tools) do if t == name then found = true end end
    if not found then return false end
  end
  return true
end

local function results_text(req, errors_only)
  local parts = {}
  for _, r in ipairs(req.tool_results) do
    if not errors_only or r.is_error then parts[#parts + 1] = r.output or '' end
  end
  if #parts == 0 then return nil end
  return table.concat(parts, '\n')
end

-- Pattern matchers: request text each applies to.
local PATTERNS = {
  model = function(req) return req.model end,
  user = function(req) return req.last_user end,
  system = function(req) return req.system end,
  tool_result = function(req) return results_text(req) end,
  tool_error = function(req) return results_text(req, true) end,
  text = function(req) return req.all_text end,
  any = function(req) return req.all_text end,
  path = function(req) return req.path end,
}

-- Whether `when` matches req; returns true and the captures of the first
-- pattern that had some.
local function matches(when, req)
  if when == nil then return true, {} end
  if type(when) == 'function' then return when(req) and true or false, {} end
  local caps = {}
  if when.protocol and not one_of(req.protocol, when.protocol) then return false end
  if when.stream ~= nil and req.stream ~= when.stream then return false end
  if when.tools and not offers(req, when.tools) then return false end
  if when.last and req.last ~= when.last then return false end
  for _, k in ipairs({ 'model', 'user', 'system', 'tool_result', 'tool_error', 'text',
                       'any', 'path' }) do
    if when[k] ~= nil then
      local ok, c = find(PATTERNS[k](req), when[k])
      if not ok then return false end
      if #caps == 0 and c then caps = c end
    end
  end
  if when.fn and not when.fn(req) then return false end
  return true, caps
end

-- How many times a rule may answer (nil: without end). `replies` alone
-- answers once with each.
local function limit(rule)
  if rule.times ~= nil then return rule.times end
  if rule.replies then return #rule.replies end
end

-- The first rule that matches req and has uses left: rule, index,
-- captures, the reply of this use; nil when none does. Counts the use.
function M.match(sc, req)
  for i, rule in ipairs(sc.rules) do
    local used = sc.used[i] or 0
    local max = limit(rule)
    if max == nil or used < max then
      local ok, caps = matches(rule.when, req)
      if ok then
        sc.used[i] = used + 1
        local reply = rule.reply
        if rule.replies then reply = rule.replies[math.min(used + 1, #rule.replies)] end
        return rule, i, caps, reply
      end
    end
  end
end

-- ---------------------------------------------------------------- templates

-- Replaces {{cwd}}, {{model}}, {{user}}, {{n}} and {{1}}..{{9}} (the
-- captures) in every string of v.
function M.template(v, req, caps)
  if type(v) == 'string' then
    return (v:gsub('{{(%w+)}}', function(k)
      local n = tonumber(k)
      if n then return caps[n] or '' end
      local val = ({ cwd = req.cwd, model = req.model, user = req.last_user, n = req.n })[k]
      if val == nil then return nil end
      return tostring(val)
    end))
  end
  if type(v) ~= 'table' then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.template(x, req, caps) end
  return setmetatable(out, getmetatable(v))
end

return M
