-- Command-line option parsing for orch's subcommands.
--
-- A spec names each option and its kind: 'bool', 'string' or 'int';
-- `--name value`, `--name=value` and `--` (end of options) are understood.
-- Errors are returned, not raised: nil, "message".
local M = {}

-- The candidate closest to word, if it is close enough to be a likely
-- typo (orch.suggest, the one "did you mean"; up to 2 edits for short words).
function M.suggest(word, candidates)
  return require('orch.suggest').closest(word, candidates, 2)
end

local function option_names(spec)
  local names = {}
  for name in pairs(spec) do names[#names + 1] = '--' .. name end
  table.sort(names)
  return names
end

local function convert(name, kind, value)
  if kind == 'int' then
    local n = tonumber(value)
    if not n or n ~= math.floor(n) then
      return nil, ("option --%s needs a whole number, got '%s'"):format(name, value)
    end
    return n
  end
  return value
end

-- Parses args (a list) against spec; returns opts (with opts[1..n] the
-- positional arguments) or nil, message.
function M.parse(args, spec)
  local opts, i, only_positional = {}, 1, false
  while i <= #args do
    local a = args[i]
    if only_positional or a == '-' or a:sub(1, 1) ~= '-' then
      opts[#opts + 1] = a
    elseif a == '--' then
      only_positional = true
    else
      local name, value = a:match('^%-%-([^=]+)=(.*)$')
      name = name or a:match('^%-%-(.+)$') or a:match('^%-(.)$')
      local kind = name and spec[name]
      if not kind then
        local hint = M.suggest(a:match('^[^=]*'), option_names(spec))
        return nil, ("unknown option '%s'%s"):format(a,
          hint and (" (did you mean '" .. hint .. "'?)") or '')
      end
      if kind == 'bool' then
        if value then return nil, ("option --%s takes no value"):format(name) end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = args[i]
          if value == nil then return nil, ("option --%s needs a value"):format(name) end
        end
        local v, err = convert(name, kind, value)
        if v == nil then return nil, err end
        if kind == 'list' then
          -- repeatable: every value, in order
          opts[name] = opts[name] or {}
          table.insert(opts[name], v)
        else
          opts[name] = v
        end
      end
    end
    i = i + 1
  end
  return opts
end

return M
