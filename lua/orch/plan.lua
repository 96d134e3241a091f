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

local function distance(a, b)
  if #a > 64 or #b > 64 then return math.huge end
  -- optimal string alignment: edits plus swaps of two neighbours
  local before, prev = nil, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if before and i > 1 and j > 1 and a:byte(i) == b:byte(j - 1)
        and a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], before[j - 2] + 1)
      end
    end
    before, prev = prev, cur
  end
  return prev[#b]
end

--- The closest of `names` to `word`, if it is close enough to be a typo.
function M.suggest(word, names)
  local best, bestd = nil, math.huge
  for _, n in ipairs(names) do
    local d = distance(word:lower(), n:lower())
    if d < bestd then best, bestd = n, d end
  end
  if best and bestd <= math.max(1, math.floor(#best / 3)) then return best end
  return nil
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
  task.name = id and ("'" .. id .. "'") or tostring(index) -- a valid id needs no escaping
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

function Check:deps(tasks, metas, by_id)
  local names = {}
  for _, t in ipairs(tasks) do if t.id then names[#names + 1] = t.id end end
  for i, t in ipairs(tasks) do
    local raw, seen, kept = metas[i].raw, {}, {}
    for j, d in ipairs(t.deps) do
      local line = raw and type(raw.deps) == 'table' and self:item_line(raw.deps, j) or t.line
      if d == t.id then
        self:err(line, 'task %s depends on itself', show(t.id))
      elseif not by_id[d] then
        -- suggestions cost O(ids) each: only for the first few
        self.suggested = (self.suggested or 0) + 1
        self:err(line, 'task %s depends on unknown task %s%s', metas[i].name or show(t.id),
          show(d), self.suggested <= 20 and did_you_mean(d, names) or '')
      elseif not seen[d] then
        seen[d] = true
        kept[#kept + 1] = d
      end
    end
    t.deps = kept
  end
end

-- Kahn's algorithm, then a walk along deps among the tasks it left: each
-- cycle is reported once, in the order the tasks wait on each other.
function Check:cycles(tasks, by_id)
  local n, indeg, users, queue = #tasks, {}, {}, {}
  for i = 1, n do indeg[i], users[i] = 0, {} end
  for i, t in ipairs(tasks) do
    for _, d in ipairs(t.deps) do
      local di = by_id[d] and by_id[d].index
      if di and tasks[di] == by_id[d] then
        indeg[i] = indeg[i] + 1
        users[di][#users[di] + 1] = i
      end
    end
  end
  for i = 1, n do if indeg[i] == 0 then queue[#queue + 1] = i end end
  local head = 1
  while head <= #queue do
    local u = queue[head]
    head = head + 1
    for _, v in ipairs(users[u]) do
      indeg[v] = indeg[v] - 1
      if indeg[v] == 0 then queue[#queue + 1] = v end
    end
  end
  if #queue == n then return end
  -- What Kahn left: tasks on cycles and tasks that wait on one. One cycle
  -- is reported per strongly connected component (iterative Tarjan), so a
  -- second cycle is not hidden behind a first.
  local dep_idx = function(_, d)
    local di = by_id[d] and by_id[d].index
    if di and tasks[di] == by_id[d] and indeg[di] ~= 0 then return di end
  end
  for _, comp in ipairs(self:components(tasks, indeg, dep_idx)) do
    if #comp > 1 then self:cycle_in(tasks, comp, dep_idx) end
  end
end

-- Strongly connected components among the tasks with indeg ~= 0, along
-- deps; iterative Tarjan (no recursion: 10,000-task cycles are fine).
function Check:components(tasks, indeg, dep_idx)
  local index, low, on, stack, comps, counter = {}, {}, {}, {}, {}, 0
  for root = 1, #tasks do
    if indeg[root] ~= 0 and not index[root] then
      local frames = { { v = root, k = 0 } }
      counter = counter + 1
      index[root], low[root], on[root] = counter, counter, true
      stack[#stack + 1] = root
      while #frames > 0 do
        local f = frames[#frames]
        local deps = tasks[f.v].deps
        f.k = f.k + 1
        if f.k <= #deps then
          local w = dep_idx(tasks[f.v], deps[f.k])
          if w then
            if not index[w] then
              counter = counter + 1
              index[w], low[w], on[w] = counter, counter, true
              stack[#stack + 1] = w
              frames[#frames + 1] = { v = w, k = 0 }
            elseif on[w] and index[w] < low[f.v] then
              low[f.v] = index[w]
            end
          end
        else
          frames[#frames] = nil
          if low[f.v] == index[f.v] then
            local comp = {}
            repeat
              local w = table.remove(stack)
              on[w] = false
              comp[#comp + 1] = w
            until w == f.v
            comps[#comps + 1] = comp
          end
          local parent = frames[#frames]
          if parent and low[f.v] < low[parent.v] then low[parent.v] = low[f.v] end
        end
      end
    end
  end
  -- in file order of each component's first task (no unpack: components
  -- can hold more tasks than a call can take arguments)
  local first = {}
  for _, c in ipairs(comps) do
    local m = c[1]
    for _, i in ipairs(c) do if i < m then m = i end end
    first[c] = m
  end
  table.sort(comps, function(x, y) return first[x] < first[y] end)
  return comps
end

-- Reports one cycle of a component: from its first task, follow deps that
-- stay inside it until a task repeats.
function Check:cycle_in(tasks, comp, dep_idx)
  local inside, start = {}, comp[1]
  for _, i in ipairs(comp) do
    inside[i] = true
    if i < start then start = i end
  end
  local walk, pos, cur = {}, {}, start
  while not pos[cur] do
    walk[#walk + 1] = cur
    pos[cur] = #walk
    local nxt
    for _, d in ipairs(tasks[cur].deps) do
      local di = dep_idx(tasks[cur], d)
      if di and inside[di] then nxt = di break end
    end
    cur = nxt
  end
  self:cycle(tasks, walk, pos[cur])
end

function Check:cycle(tasks, walk, from)
  -- walk[k] depends on walk[k+1]: reverse it so each depends on the one
  -- before, starting at the task that comes first in the file
  local ring, first = {}, nil
  for k = #walk, from, -1 do
    ring[#ring + 1] = walk[k]
    if not first or walk[k] < ring[first] then first = #ring end
  end
  local ids = {}
  for k = 0, #ring - 1 do
    ids[#ids + 1] = tasks[ring[(first - 1 + k) % #ring + 1]].id
  end
  local shown = {}
  for k = 1, math.min(#ids, 20) do shown[k] = ids[k] end
  if #ids > 20 then shown[#shown + 1] = '... (' .. (#ids - 20) .. ' more)' end
  shown[#shown + 1] = ids[1]
  self:err(tasks[ring[first]].line, 'dependency cycle: %s', table.concat(shown, ' -> '))
  self.cycle_ids = self.cycle_ids or {}
  self.cycle_ids[#self.cycle_ids + 1] = ids
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
  local metas = {}
  for i, raw in ipairs(list) do
    local t, meta = self:task(raw, i, list)
    out.tasks[#out.tasks + 1] = t or { deps = {}, line = self:item_line(list, i) }
    metas[#out.tasks] = meta or {}
  end
  out.by_id = self:ids(out.tasks, metas)
  self:deps(out.tasks, metas, out.by_id)
  self:continues(out.tasks, metas, out.by_id)
  self:cycles(out.tasks, out.by_id)
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
function M.parse(text, name, format)
  name = name or '<plan>'
  if text:sub(1, 3) == '\239\187\191' then text = text:sub(4) end -- a UTF-8 BOM
  format = format or M.detect(name, text)
  local doc, pos = (format == 'json' and posjson or posyaml).decode(text)
  if doc == nil then
    return nil, { { file = name, line = pos.line, msg = pos.msg } }
  end
  local c = setmetatable({ file = name, pos = pos, errs = {} }, Check)
  local plan = c:plan(doc)
  if #c.errs > 0 then
    local errs = sort_errors(c.errs)
    errs.cycles = c.cycle_ids
    return nil, errs
  end
  plan.file, plan.format = name, format
  return plan
end

--- Loads and validates the plan file at path: plan, or nil and errors. The
-- single entry point for `orch plan check` and `orch run --plan`.
function M.load(path)
  local f, err = io.open(path, 'rb')
  if not f then
    return nil, { { file = path, line = 0, msg = 'cannot read the plan: ' .. tostring(err) } }
  end
  local text, rerr = f:read(M.MAX_BYTES + 1)
  f:close()
  if text == nil and rerr then
    return nil, { { file = path, line = 0, msg = 'cannot read the plan: ' .. tostring(rerr) } }
  end
  if text == nil then text = '' end
  if #text > M.MAX_BYTES then
    return nil, { { file = path, line = 0, msg = 'plan file larger than 64 MiB' } }
  end
  return M.parse(text, path)
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
