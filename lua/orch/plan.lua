--- Plans: loading and validating a DAG of tasks from JSON or YAML.
--
--   local plan = require 'orch.plan'
--   local p, errs = plan.load('plan.yaml')
--   if not p then io.stderr:write(plan.format_errors(errs)) os.exit(2) end
--
-- A loaded plan is `{file=, format=, goal=, tasks={...}, by_id={...}}`; each
-- task has every field of docs/plans.md with defaults filled in (`files`,
-- `deps` and `env` are tables, `on_failure` is 'hard') plus `line`, the line
-- where it starts. Errors are `{file=, line=, msg=}`, sorted by line; every
-- problem is reported, not only the first.
local M = {}

local posjson = require 'orch.posjson'
local posyaml = require 'orch.posyaml'

local null = posjson.null

M.MAX_BYTES = 64 * 1024 * 1024
M.MAX_TIMEOUT = 2147483 -- seconds: the longest a loop timer can wait

-- What a plan may cost once read (docs/plans.md, "Limits"): checked while
-- the file is decoded (items, values: a YAML alias counts as what it
-- repeats) and after (tasks, field lengths, the size of every task's text
-- together after aliases are expanded), so that `plan check` refuses what
-- `orch run` could not hold.
M.LIMITS = {
  tasks = 10000,
  items = 10000,          -- in one list or object (deps, files, env, ...)
  values = 1000000,       -- in the whole file
  expanded = 64 * 1024 * 1024, -- bytes of text over every task, after aliases
  id = require('orch.repo').MAX_ID,
  field = {               -- bytes of one field
    goal = 64 * 1024, title = 4096, role = 256, model = 256, backend = 64,
    prompt = 1024 * 1024, cmd = 1024 * 1024,
    file = 4096,          -- one item of files
    env = 128 * 1024,     -- one env value (the kernel's limit for one variable)
  },
}

M.PLAN_FIELDS = { goal = 'string', tasks = 'list' }

M.TASK_FIELDS = {
  id = 'string', title = 'string', role = 'string', prompt = 'string',
  files = 'strings', deps = 'strings', on_failure = 'enum', cmd = 'string',
  backend = 'enum', model = 'string', timeout = 'number', env = 'env',
  weight = 'number', continues = 'string', merge = 'merge', from = 'enum',
}

M.ENUMS = {
  on_failure = { 'hard', 'soft', 'skip' },
  backend = { 'exec', 'claude', 'codex', 'crush', 'openai', 'anthropic' },
  from = { 'deps', 'base' },
}

-- ------------------------------------------------------------ helpers

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

--- The closest of `names` to `word`, if it is close enough to be a typo
-- (orch.suggest).
function M.suggest(word, names)
  return require('orch.suggest').closest(word, names)
end

local function did_you_mean(word, names)
  local s = type(word) == 'string' and M.suggest(word, names)
  return s and (" (did you mean '" .. s .. "'?)") or ''
end

local function show(v)
  if type(v) == 'string' then
    if #v <= 60 and not v:find('[%c\128-\255]') then return "'" .. v .. "'" end
    local s = v:gsub('[%c\128-\255]', function(c) return ('\\x%02X'):format(c:byte()) end)
    if #s > 60 then s = s:sub(1, 57) .. '...' end
    return "'" .. s .. "'"
  end
  if v == null then return 'null' end
  if type(v) == 'table' then return next(v) == nil and 'an empty list or object' or 'a list or object' end
  return tostring(v)
end

local function type_name(v)
  if v == null then return 'null' end
  local t = type(v)
  if t == 'table' then return next(v) == nil and 'an empty list or object' or 'a list or object' end
  if t == 'number' then return 'a number' end
  if t == 'boolean' then return 'a boolean' end
  if t == 'string' then return 'a string' end
  return t
end

-- "a number 3", "a boolean true", "a list or object"
local function described(v)
  if type(v) == 'table' then return type_name(v) end
  return type_name(v) .. ' ' .. show(v)
end

local function is_list(v, pos)
  return type(v) == 'table' and v ~= null and (pos[v] == nil or pos[v].items ~= nil
    or next(v) == nil)
end

local function is_map(v, pos)
  return type(v) == 'table' and v ~= null and pos[v] ~= nil and pos[v].keys ~= nil
end

-- Raises {interrupted = NAME} once SIGINT/SIGTERM/SIGHUP/SIGQUIT arrived
-- (core.interrupted): checking a big plan is long synchronous work, which
-- the loop's own signal handling cannot stop.
local function check_interrupt()
  local sig = require('orch.core').interrupted()
  if sig then error({ interrupted = sig }, 0) end
end

-- ------------------------------------------------------------ validation

local Check = {}
Check.__index = Check

function Check:err(line, fmt, ...)
  self.errs[#self.errs + 1] = { file = self.file, line = line or 1,
    msg = select('#', ...) > 0 and fmt:format(...) or fmt }
end

function Check:key_line(tbl, key)
  local p = self.pos[tbl]
  return p and p.keys and p.keys[key] or (p and p.line) or 1
end

function Check:item_line(tbl, i)
  local p = self.pos[tbl]
  return p and p.items and p.items[i] or (p and p.line) or 1
end

function Check:strings(task, field, v, out)
  local line = self:key_line(task.raw, field)
  if not is_list(v, self.pos) then
    self:err(line, "task %s: '%s' must be a list of strings, got %s",
      task.name, field, type_name(v))
    return
  end
  for i, item in ipairs(v) do
    if type(item) ~= 'string' then
      self:err(self:item_line(v, i), "task %s: '%s' item %d must be a string, got %s",
        task.name, field, i, described(item))
    elseif item == '' then
      self:err(self:item_line(v, i), "task %s: '%s' item %d is empty", task.name, field, i)
    else
      out[#out + 1] = item
    end
  end
end

function Check:file_path(task, list, i, path)
  local line = self:item_line(list, i)
  if path:sub(1, 1) == '/' then
    self:err(line, "task %s: file %s must be relative to the repository",
      task.name, show(path))
    return false
  end
  if not path:find('..', 1, true) then return true end
  local depth = 0
  for seg in path:gmatch('[^/]+') do
    if seg == '..' then depth = depth - 1 elseif seg ~= '.' then depth = depth + 1 end
    if depth < 0 then
      self:err(line, "task %s: file %s points outside the repository", task.name, show(path))
      return false
    end
  end
  return true
end

function Check:env(task, v)
  local line = self:key_line(task.raw, 'env')
  if not is_map(v, self.pos) and not (type(v) == 'table' and next(v) == nil and v ~= null) then
    self:err(line, "task %s: 'env' must be an object of strings, got %s", task.name, type_name(v))
    return
  end
  local raw = self.pos[v] and self.pos[v].raw or {}
  for _, k in ipairs(sorted_keys(v)) do
    local val = v[k]
    if type(val) ~= 'string' and raw[k] then val = raw[k] end -- YAML `A: 1`
    if type(val) == 'number' then val = tostring(val) end
    if type(val) ~= 'string' then
      self:err(self:key_line(v, k), "task %s: env %s must be a string, got %s",
        task.name, show(k), type_name(v[k]))
    elseif not k:find('^[%a_][%w_]*$') then
      self:err(self:key_line(v, k), "task %s: env name %s is not a valid variable name",
        task.name, show(k))
    else
      task.out.env[k] = val
    end
  end
end

-- Text fields written as a plain YAML scalar that is not a string
-- (`cmd: true`, `model: 1.5`) keep their source text.
M.TEXT_FIELDS = { goal = true, title = true, prompt = true, cmd = true, model = true }

function Check:text(tbl, k, v)
  local p = self.pos[tbl]
  if M.TEXT_FIELDS[k] and type(v) ~= 'string' and p and p.raw and p.raw[k] then
    return p.raw[k]
  end
  return v
end

function Check:field(task, k, v)
  local kind, line, out = M.TASK_FIELDS[k], self:key_line(task.raw, k), task.out
  if v == null then return end -- an empty field is an absent one
  v = self:text(task.raw, k, v)
  if kind == 'string' then
    if type(v) ~= 'string' then
      self:err(line, "task %s: '%s' must be a string, got %s", task.name, k, type_name(v))
    else
      out[k] = v
    end
  elseif kind == 'number' then
    if type(v) ~= 'number' or v ~= v or v <= 0 or v == math.huge then
      self:err(line, "task %s: '%s' must be a positive number, got %s", task.name, k, show(v))
    elseif k == 'timeout' and v > M.MAX_TIMEOUT then
      self:err(line, "task %s: 'timeout' is at most %d seconds (24 days), got %s", task.name,
        M.MAX_TIMEOUT, show(v))
    else
      out[k] = v
    end
  elseif kind == 'enum' then
    local allowed = M.ENUMS[k]
    local okv = false
    for _, a in ipairs(allowed) do okv = okv or a == v end
    if not okv then
      self:err(line, "task %s: '%s' must be one of %s, got %s%s", task.name, k,
        table.concat(allowed, ', '), show(v), did_you_mean(v, allowed))
    else
      out[k] = v
    end
  elseif kind == 'merge' then
    -- false: the work stays on its branch; a name: the merge strategy
    if v ~= false and type(v) ~= 'string' then
      self:err(line, "task %s: 'merge' must be false or a merge strategy name (merge, squash, " ..
        "rebase), got %s", task.name, show(v))
    else
      out[k] = v
    end
  elseif kind == 'strings' then
    self:strings(task, k, v, out[k])
  elseif kind == 'env' then
    self:env(task, v)
  end
end

local ID_PATTERN = '^[%w][%w._-]*$'

function Check:task_id(task, raw)
  local id, line = raw.id, self:key_line(raw, 'id')
  if id == nil or id == null then
    self:err(self.pos[raw].line, "task %d has no 'id'", task.index)
  elseif type(id) ~= 'string' then
    self:err(line, "task %d: 'id' must be a string, got %s", task.index, described(id))
  elseif id == '' then
    self:err(line, "task %d: 'id' is empty", task.index)
  elseif #id > M.LIMITS.id then
    -- the id names the branch orch/RUN/ID and the worktree's directory
    -- .git/worktrees/orch-RUN-ID, within the 255-byte file-name limit
    self:err(line, "task %s: an id is at most %d bytes (it names the task's branch and "
      .. "worktree), this one has %d", show(id), M.LIMITS.id, #id)
  elseif not id:find(ID_PATTERN) or id:find('%.%.') or id:find('%.lock$') or id:find('%.$') then
    self:err(line, "task %s: an id may only use letters, digits, '.', '_' and '-' "
      .. "and must start with a letter or digit", show(id))
  elseif id == 'integration' or id == 'base' then
    -- orch/RUN/integration is the run's branch and refs/orch/RUN/base its base
    self:err(line, "task %s: this id is reserved by orch (branch orch/RUN/%s); pick another",
      show(id), id)
  else
    return id
  end
  return nil
end

function Check:task(raw, index, list)
  local line = self:item_line(list, index)
  if not is_map(raw, self.pos) then
    self:err(line, 'task %d must be an object, got %s', index, type_name(raw))
    return
  end
  local out = { files = {}, deps = {}, env = {}, on_failure = 'hard', line = self.pos[raw].line }
  local task = { raw = raw, out = out, index = index }
  local id = self:task_id(task, raw)
  task.name = id and show(id) or tostring(index) -- cut when long
  out.id = id
  for _, k in ipairs(sorted_keys(raw)) do
    if M.TASK_FIELDS[k] then
      if k ~= 'id' then self:field(task, k, raw[k]) end
    else
      self:err(self:key_line(raw, k), "task %s: unknown field %s%s", task.name, show(k),
        did_you_mean(k, sorted_keys(M.TASK_FIELDS)))
    end
  end
  if not out.role and not out.cmd then
    self:err(out.line, "task %s: needs a 'role' (an agent does it) or a 'cmd' (a command runs)",
      task.name)
  end
  if type(raw.files) == 'table' then
    for i, f in ipairs(out.files) do self:file_path(task, raw.files, i, f) end
  end
  out.title = out.title or id
  return out, task
end

function Check:ids(tasks, metas)
  local by_id = {}
  for i, t in ipairs(tasks) do
    if t.id then
      local first = by_id[t.id]
      if first then
        self:err(metas[i].raw and self:key_line(metas[i].raw, 'id') or t.line,
          "duplicate task id %s (first at line %d)", show(t.id),
          self:key_line(metas[first.index].raw, 'id'))
      else
        by_id[t.id] = t
        t.index = i
      end
    end
  end
  return by_id
end

-- `continues`: the task carries on another task's agent conversation, in
-- its worktree (docs/worktrees.md), so that task must exist and finish
-- before it: it must be among its deps, directly or through others.
function Check:continues(tasks, metas, by_id)
  for i, t in ipairs(tasks) do
    local c = t.continues
    if c ~= nil then
      local line = metas[i].raw and self:key_line(metas[i].raw, 'continues') or t.line
      if c == t.id then
        self:err(line, 'task %s continues itself', show(t.id))
      elseif not by_id[c] then
        self:err(line, 'task %s continues unknown task %s', show(t.id), show(c))
      else
        local seen, stack, found = { [t.id] = true }, { t }, false
        while #stack > 0 and not found do
          for _, d in ipairs(table.remove(stack).deps or {}) do
            if d == c then found = true break end
            if not seen[d] and by_id[d] then seen[d] = true stack[#stack + 1] = by_id[d] end
          end
        end
        if not found then
          self:err(line, 'task %s continues %s, which is not among its deps (add %s to deps)',
            show(t.id), show(c), show(c))
        end
      end
    end
  end
end

-- The graph is checked once, by the C scheduler (orch.core.sched, the one
-- that runs the plan): its structured errors (unknown deps, self deps,
-- cycles with their ids) are mapped back to lines of the file here.
function Check:dep_line(t, meta, dep)
  local raw = meta.raw
  if raw and type(raw.deps) == 'table' then
    for j, d in ipairs(raw.deps) do
      if d == dep then return self:item_line(raw.deps, j) end
    end
  end
  return t.line
end

function Check:graph(tasks, metas, by_id)
  local sched = require('orch.core').sched.new({ concurrency = 1 })
  local index = {}
  for i, t in ipairs(tasks) do
    if t.id and by_id[t.id] == t then
      local seen, kept = {}, {}
      for _, d in ipairs(t.deps) do
        if not seen[d] then seen[d] = true kept[#kept + 1] = d end
      end
      t.deps = kept
      index[t.id] = i
      sched:add(t.id, { deps = kept })
    else
      t.deps = {}
    end
  end
  local ok, errs = sched:check()
  sched:close()
  if ok then return end
  local names = {}
  for _, t in ipairs(tasks) do if t.id then names[#names + 1] = t.id end end
  local suggested = 0
  for _, e in ipairs(errs) do
    local i = index[e.ids[1]]
    local t, meta = tasks[i], metas[i] or {}
    if e.kind == 'self_dep' then
      self:err(self:dep_line(t, meta, t.id), 'task %s depends on itself', show(t.id))
    elseif e.kind == 'unknown_dep' then
      -- suggestions cost O(ids) each: only for the first few
      suggested = suggested + 1
      self:err(self:dep_line(t, meta, e.ids[2]), 'task %s depends on unknown task %s%s',
        meta.name or show(t.id), show(e.ids[2]), suggested <= 20 and did_you_mean(e.ids[2], names) or '')
    elseif e.kind == 'cycle' then
      self:cycle(tasks, index, e.ids)
    else
      self:err(t and t.line or 1, '%s', e.msg)
    end
  end
  for _, t in ipairs(tasks) do
    -- a task keeps only its known deps (the plan is refused anyway)
    local kept = {}
    for _, d in ipairs(t.deps) do if by_id[d] and d ~= t.id then kept[#kept + 1] = d end end
    t.deps = kept
  end
end

-- A cycle's ids come in the order the tasks wait on each other, from the
-- task first in the file; it is reported at that task's line.
function Check:cycle(tasks, index, ids)
  local shown = {}
  for k = 1, math.min(#ids, 20) do shown[k] = show(ids[k]):sub(2, -2) end
  if #ids > 20 then shown[#shown + 1] = '... (' .. (#ids - 20) .. ' more)' end
  shown[#shown + 1] = show(ids[1]):sub(2, -2)
  self:err(tasks[index[ids[1]]].line, 'dependency cycle: %s', table.concat(shown, ' -> '))
  self.cycle_ids = self.cycle_ids or {}
  local copy = {}
  for k = 1, #ids do copy[k] = ids[k] end
  self.cycle_ids[#self.cycle_ids + 1] = copy
end

-- The bytes of text a task holds (what the store and the backends get).
local function task_text(t)
  local n = #(t.id or '') + #(t.title or '') + #(t.prompt or '') + #(t.cmd or '')
    + #(t.role or '') + #(t.model or '')
  for _, f in ipairs(t.files or {}) do n = n + #f end
  for _, d in ipairs(t.deps or {}) do n = n + #d end
  for k, v in pairs(t.env or {}) do n = n + #k + #v end
  return n
end

-- Field lengths, and the plan's whole text after aliases.
function Check:sizes(tasks, metas)
  local total, L = 0, M.LIMITS
  for i, t in ipairs(tasks) do
    local raw, name = metas[i].raw, metas[i].name or tostring(i)
    if raw and t.files then
      for _, k in ipairs({ 'title', 'role', 'model', 'prompt', 'cmd', 'backend' }) do
        local v = t[k]
        if type(v) == 'string' and #v > L.field[k] then
          self:err(self:key_line(raw, k), "task %s: '%s' is %d bytes, at most %d", name, k, #v, L.field[k])
        end
      end
      for j, f in ipairs(t.files) do
        if #f > L.field.file then
          self:err(self:item_line(raw.files, j), "task %s: file %d is %d bytes long, at most %d", name, j,
            #f, L.field.file)
        end
      end
      for k, v in pairs(t.env) do
        if #v > L.field.env then
          self:err(self:key_line(raw.env, k), 'task %s: env %s is %d bytes, at most %d', name, show(k),
            #v, L.field.env)
        end
      end
    end
    total = total + task_text(t)
  end
  if total > L.expanded then
    self:err(1, 'the tasks hold %d MB of text (YAML aliases expanded), more than the limit of %d MB',
      math.ceil(total / 1e6), math.floor(L.expanded / 1e6))
  end
end


function Check:plan(doc)
  if not is_map(doc, self.pos) then
    self:err(1, 'a plan must be an object with a "tasks" list, got %s', type_name(doc))
    return nil
  end
  local out = { tasks = {}, by_id = {} }
  for _, k in ipairs(sorted_keys(doc)) do
    local v, line = self:text(doc, k, doc[k]), self:key_line(doc, k)
    if not M.PLAN_FIELDS[k] then
      self:err(line, 'unknown field %s%s', show(k), did_you_mean(k, sorted_keys(M.PLAN_FIELDS)))
    elseif k == 'goal' and v ~= null then
      if type(v) ~= 'string' then
        self:err(line, "'goal' must be a string, got %s", type_name(v))
      else
        out.goal = v
      end
    end
  end
  local list = doc.tasks
  if list == nil or list == null then
    self:err(self.pos[doc].line, "the plan has no 'tasks' list")
    return out
  end
  if not is_list(list, self.pos) then
    self:err(self:key_line(doc, 'tasks'), "'tasks' must be a list, got %s", type_name(list))
    return out
  end
  if #list == 0 then
    self:err(self:key_line(doc, 'tasks'), "'tasks' is empty")
  end
  if #list > M.LIMITS.tasks then
    self:err(self:key_line(doc, 'tasks'), "'tasks' has %d tasks, at most %d", #list, M.LIMITS.tasks)
    return out
  end
  local metas = {}
  for i, raw in ipairs(list) do
    if i % 1024 == 0 then check_interrupt() end
    local t, meta = self:task(raw, i, list)
    out.tasks[#out.tasks + 1] = t or { deps = {}, line = self:item_line(list, i) }
    metas[#out.tasks] = meta or {}
  end
  out.by_id = self:ids(out.tasks, metas)
  self:graph(out.tasks, metas, out.by_id)
  self:continues(out.tasks, metas, out.by_id)
  self:sizes(out.tasks, metas)
  if out.goal and #out.goal > M.LIMITS.field.goal then
    self:err(self:key_line(doc, 'goal'), "'goal' is %d bytes, at most %d", #out.goal, M.LIMITS.field.goal)
  end
  return out
end

-- ------------------------------------------------------------ entry points

--- The format of a file: by extension, else by its first character.
function M.detect(path, text)
  local ext = (path or ''):lower():match('%.(%w+)$')
  if ext == 'json' then return 'json' end
  if ext == 'yaml' or ext == 'yml' then return 'yaml' end
  return (text or ''):find('^%s*[%[{]') and 'json' or 'yaml'
end

local function sort_errors(errs)
  for i, e in ipairs(errs) do e.seq = i end
  table.sort(errs, function(a, b)
    if a.line ~= b.line then return a.line < b.line end
    return a.seq < b.seq
  end)
  for _, e in ipairs(errs) do e.seq = nil end
  return errs
end

--- Parses and validates plan text. name is the file name used in errors;
-- format 'json' or 'yaml' (default: detected). Returns plan or nil, errors.
local function interrupted(name, sig)
  return nil, { { file = name, line = 0, msg = 'interrupted (' .. tostring(sig) .. ')' },
                interrupted = sig }
end

local parse

function M.parse(text, name, format)
  local core = require('orch.core')
  core.interruptible(true)
  local r = { pcall(parse, text, name, format) }
  core.interruptible(false)
  if not r[1] then error(r[2], 0) end
  return r[2], r[3]
end

parse = function(text, name, format)
  name = name or '<plan>'
  if text:sub(1, 3) == '\239\187\191' then text = text:sub(4) end -- a UTF-8 BOM
  format = format or M.detect(name, text)
  require('orch.core').interrupted() -- from here on a signal is seen
  local doc, pos = (format == 'json' and posjson or posyaml).decode(text, {
    max_items = M.LIMITS.items, max_values = M.LIMITS.values, check = check_interrupt })
  if doc == nil then
    if pos.interrupted then return interrupted(name, pos.interrupted) end
    return nil, { { file = name, line = pos.line, msg = pos.msg } }
  end
  local c = setmetatable({ file = name, pos = pos, errs = {} }, Check)
  local okc, plan = pcall(c.plan, c, doc)
  if not okc then
    if type(plan) == 'table' and plan.interrupted then return interrupted(name, plan.interrupted) end
    error(plan, 0)
  end
  if #c.errs > 0 then
    local errs = sort_errors(c.errs)
    errs.cycles = c.cycle_ids
    return nil, errs
  end
  plan.file, plan.format = name, format
  return plan
end

--- Loads and validates the plan file at path: plan, or nil and errors
-- (errors.interrupted is the signal's name when a signal stopped it: exit
-- 130). The single entry point for `orch plan check` and `orch run --plan`.
-- A FIFO nobody writes to, or a slow pipe, does not hold off Ctrl+C or
-- SIGTERM: the blocking open and read are interruptible.
function M.load(path)
  local core = require('orch.core')
  core.interruptible(true)
  local r = { pcall(M.read_and_parse, path) }
  core.interruptible(false)
  if not r[1] then error(r[2], 0) end
  return r[2], r[3]
end

function M.read_and_parse(path)
  local core = require('orch.core')
  core.interrupted()
  local f, err = io.open(path, 'rb')
  local text, rerr
  if f then
    text, rerr = f:read(M.MAX_BYTES + 1)
    f:close()
  end
  local sig = core.interrupted()
  if sig then return interrupted(path, sig) end
  if not f then
    return nil, { { file = path, line = 0, msg = 'cannot read the plan: ' .. tostring(err) } }
  end
  if text == nil and rerr then
    return nil, { { file = path, line = 0, msg = 'cannot read the plan: ' .. tostring(rerr) } }
  end
  if text == nil then text = '' end
  if #text > M.MAX_BYTES then
    return nil, { { file = path, line = 0, msg = 'plan file larger than 64 MiB' } }
  end
  return M.parse(text, path)
end

--- The exit code for a failed load: 130 (129 for SIGHUP, 131 for SIGQUIT)
-- when a signal stopped it, else 2.
function M.exit_code(errs)
  local sig = errs and errs.interrupted
  if not sig then return 2 end
  return sig == 'SIGHUP' and 129 or sig == 'SIGQUIT' and 131 or 130
end

--- M.load for a command: the plan, or nil and the exit code, with the
-- errors said on stderr (FILE:LINE: message).
function M.load_or_say(path)
  local plan, errs = M.load(path)
  if not plan then
    io.stderr:write(M.format_errors(errs))
    return nil, M.exit_code(errs)
  end
  return plan
end

--- "FILE:LINE: message" lines (LINE left out when 0), newline-terminated.
function M.format_errors(errs)
  local out = {}
  for _, e in ipairs(errs or {}) do
    if e.line and e.line > 0 then
      out[#out + 1] = ('%s:%d: %s'):format(e.file or '<plan>', e.line, e.msg)
    else
      out[#out + 1] = ('%s: %s'):format(e.file or '<plan>', e.msg)
    end
  end
  return #out > 0 and table.concat(out, '\n') .. '\n' or ''
end

--- A scheduler (orch.core.sched) holding the plan's tasks, checked. opts:
-- concurrency (default 4), done (a set of task ids already done: resume).
function M.scheduler(plan, opts)
  opts = opts or {}
  local core = require 'orch.core'
  local s = core.sched.new { concurrency = opts.concurrency or 4 }
  for _, t in ipairs(plan.tasks) do
    assert(s:add(t.id, { deps = t.deps, files = t.files, weight = t.weight }))
  end
  for id in pairs(opts.done or {}) do
    if s:state(id) then s:mark_done(id) end
  end
  local ok, errs = s:check()
  if not ok then
    local msgs = {}
    for _, e in ipairs(errs) do msgs[#msgs + 1] = e.msg end
    error('plan: ' .. table.concat(msgs, '; '), 2)
  end
  return s
end

return M
