-- orch.complete: `orch __complete WORDS...`, the one completion engine the
-- bash, zsh and fish scripts (completions/) call.
--
-- WORDS are the command line after `orch`, the last one the word being
-- completed (possibly empty). Prints one candidate a line, unfiltered (the
-- shell filters by the prefix), and two markers the shells turn into their
-- own completion: `:files` (file names) and `:dirs` (directories).
-- Run and task ids come from the repository's state (.orch/orch.db, or
-- --repo/--db on the line), opened read-only; any error prints nothing.
local M = {}

-- What each command's positional arguments are.
M.POSITIONAL = {
  run = { 'workflow' }, resume = { 'run' }, status = { 'run' }, logs = { 'run', 'task' },
  plan = { 'plan_sub', 'file' }, clean = { 'run' }, repl = { 'run' }, attach = { 'run', 'task' },
  test = { 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file' },
  ['model-server'] = { 'file' }, help = { 'command' },
}

-- Values of options, by "command.option" first, then by option.
M.VALUES = {
  color = { 'auto', 'always', 'never' },
  merge = { 'merge', 'squash', 'rebase' },
  repo = ':dirs', dir = ':dirs', db = ':files', plan = ':files', log = ':files',
  o = ':files', ['plan.output'] = ':files',
  ['test.output'] = { 'utfTerminal', 'plainTerminal', 'TAP', 'json', 'junit' },
}

local function list_of(v)
  if type(v) == 'string' then return { v } end
  return v or {}
end

-- The options a command takes, as the user types them.
function M.flags(c)
  local out = { '--help', '--color=' }
  local names = {}
  for name in pairs(c.options or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if name ~= 'color' then out[#out + 1] = (#name == 1 and '-' or '--') .. name end
  end
  return out
end

local function option_name(word)
  return word:match('^%-%-([^=]+)$') or word:match('^%-(%w)$')
end

-- The store of the repository the line names (or the current one), read-only.
local function open_store(o)
  local ok, run = pcall(require, 'orch.run')
  if not ok then return nil end
  local loc = run.locate(o)
  if not loc then return nil end
  local f = io.open(loc.db, 'rb')
  if not f then return nil end
  f:close()
  return require('orch.store').open(loc.db, { readonly = true })
end

local function run_ids(o)
  local st = open_store(o)
  if not st then return {} end
  local out = {}
  local runs = st:runs()
  for i = #runs, 1, -1 do out[#out + 1] = runs[i].id end -- latest first
  st:close()
  return out
end

local function task_ids(o, run_id)
  local st = open_store(o)
  if not st then return {} end
  local out = {}
  local rid = run_id
  if not rid then
    local r = st:latest_run()
    rid = r and r.id
  end
  if rid then
    for _, t in ipairs(st:tasks(rid)) do out[#out + 1] = t.id end
  end
  st:close()
  return out
end

-- The shipped workflows by name (orch run NAME), then file names.
local function workflows()
  local core = require('orch.core')
  local out = {}
  local names = core.readdir(core.runtime_dir() .. '/workflows') or {}
  table.sort(names)
  for _, name in ipairs(names) do
    local base = name:match('^(.-)%.lua$')
    if base then out[#out + 1] = base end
  end
  out[#out + 1] = ':files'
  return out
end

-- Candidates for the last of words (a list), given orch.cli's commands.
function M.candidates(words, commands, order)
  local n = #words
  local cur = words[n] or ''
  if n <= 1 then
    if cur:sub(1, 1) == '-' then return { '--help', '--version', '--color=' } end
    local out = {}
    for _, name in ipairs(order) do
      if not commands[name].hidden then out[#out + 1] = name end
    end
    return out
  end
  local c = commands[words[1]]
  if not c then return {} end
  local spec = c.options or {}
  -- --color=<TAB>, --merge=<TAB>
  local oname = cur:match('^%-%-([^=]+)=')
  if oname then
    local vals = M.VALUES[c.name .. '.' .. oname] or M.VALUES[oname]
    local out = {}
    for _, v in ipairs(list_of(vals)) do
      out[#out + 1] = v:sub(1, 1) == ':' and v or ('--' .. oname .. '=' .. v)
    end
    return out
  end
  -- the line so far: options (with their values) and positionals
  local o, pos, i = {}, {}, 2
  while i < n do
    local w = words[i]
    local name = option_name(w)
    local kind = name and spec[name]
    if kind and kind ~= 'bool' then
      o[name] = words[i + 1]
      i = i + 2
    elseif w:match('^%-%-[^=]+=') then
      local k, v = w:match('^%-%-([^=]+)=(.*)$')
      o[k] = v
      i = i + 1
    elseif w:sub(1, 1) == '-' then
      i = i + 1
    else
      pos[#pos + 1] = w
      i = i + 1
    end
  end
  if i > n then
    -- the current word is the value of the option before it
    local name = option_name(words[n - 1])
    local vals = M.VALUES[c.name .. '.' .. name] or M.VALUES[name]
    return list_of(vals)
  end
  if cur:sub(1, 1) == '-' then return M.flags(c) end
  local what = (M.POSITIONAL[c.name] or {})[#pos + 1]
  if what == 'run' then return run_ids(o) end
  if what == 'task' then return task_ids(o, pos[1]) end
  if what == 'workflow' then return workflows() end
  if what == 'file' then return { ':files' } end
  if what == 'plan_sub' then return { 'check' } end
  if what == 'command' then return M.candidates({ '' }, commands, order) end
  return {}
end

function M.cli(words, commands, order)
  local ok, out = pcall(M.candidates, words, commands, order)
  if ok then
    for _, w in ipairs(out) do io.stdout:write(w, '\n') end
  end
  return 0
end

return M
