-- orch.planner: reads a plan out of the orchestrator agent's reply and
-- checks it, so that any backend can plan (no tool or JSON mode needed).
--
--   planner.extract(text)          -> plan text, format ('json'|'yaml') | nil, why
--   planner.check(text, o)         -> plan | nil, feedback (for the agent), errs
--   planner.feedback(errs)         -> the message sent back to the agent
--   planner.prompt(goal, o)        -> the planning request
--
-- A reply may hold the plan in a ```json or ```yaml fenced block, or be the
-- bare object. The plan is validated as a plan file is (orch.plan), and its
-- roles must exist (orch.roles).
local plan_mod = require('orch.plan')

local M = {}

M.MAX_TRIES = 3

local function trim(s) return (s:gsub('^%s+', ''):gsub('%s+$', '')) end

-- The plan text in a reply: the last fenced json/yaml block holding
-- "tasks", else any fenced block holding it, else the outermost {...}.
function M.extract(text)
  if type(text) ~= 'string' or text == '' then return nil, 'the reply was empty' end
  local found
  for lang, body in text:gmatch('```[ \t]*(%w*)[^\n]*\n(.-)```') do
    lang = lang:lower()
    if body:find('tasks', 1, true) then
      local fmt = (lang == 'yaml' or lang == 'yml') and 'yaml'
        or (lang == 'json' and 'json') or plan_mod.detect(nil, body)
      found = { trim(body), fmt }
    end
  end
  if found then return found[1], found[2] end
  local first = text:find('{', 1, true)
  if first then
    local last
    for i = #text, first, -1 do
      if text:sub(i, i) == '}' then last = i break end
    end
    if last then return text:sub(first, last), 'json' end
  end
  if text:find('^%s*goal:') or text:find('\ntasks:') or text:find('^%s*tasks:') then
    return trim(text), 'yaml'
  end
  return nil, 'no plan found in the reply (expected a ```json block with "tasks")'
end

-- Ids the workflows give their follow-ups (T.review1, T.fix2, ...): a
-- planned task may not take one (docs/workflows.md).
function M.reserved_id(id)
  local kind = type(id) == 'string' and id:match('%.(%a+)%d+$')
  return kind == 'review' or kind == 'fix' or kind == 'test' or kind == 'retest' or kind == 'ask'
end

-- Roles that the plan's tasks name must exist.
local function role_errors(plan, o)
  local errs = {}
  local roles = require('orch.roles')
  for _, t in ipairs(plan.tasks) do
    if M.reserved_id(t.id) then
      errs[#errs + 1] = { file = '<plan>', line = t.line or 0,
        msg = ('task %s: ids ending in .reviewN, .fixN, .testN or .askN are kept for the ' ..
               "workflow's follow-ups; pick another"):format(t.id) }
    end
    if t.role and not t.cmd then
      local ok, err = roles.get(t.role, o)
      if not ok then
        errs[#errs + 1] = { file = '<plan>', line = t.line or 0,
                            msg = ('task %s: %s'):format(t.id, err) }
      end
    end
  end
  return errs
end

function M.feedback(errs)
  local lines = { 'That plan cannot be used:' }
  for _, e in ipairs(errs) do
    lines[#lines + 1] = '- ' .. (e.line and e.line > 0 and ('line ' .. e.line .. ': ') or '') .. e.msg
  end
  lines[#lines + 1] = 'Reply with the whole corrected plan as one ```json block.'
  return table.concat(lines, '\n')
end

-- The plan in a reply, validated: plan, or nil, feedback, errs.
function M.check(text, o)
  local body, fmt = M.extract(text)
  if not body then
    local errs = { { line = 0, msg = fmt } }
    return nil, M.feedback(errs), errs
  end
  local plan, errs = plan_mod.parse(body, '<plan>', fmt)
  if not plan then return nil, M.feedback(errs), errs end
  if #plan.tasks == 0 then
    errs = { { line = 0, msg = 'the plan has no tasks' } }
    return nil, M.feedback(errs), errs
  end
  errs = role_errors(plan, o)
  if #errs > 0 then return nil, M.feedback(errs), errs end
  plan.text, plan.format = body, fmt
  return plan
end

function M.prompt(goal, o)
  o = o or {}
  local names = require('orch.roles').names(o)
  local parts = {
    'Plan this goal as tasks for the team.',
    '',
    'Goal: ' .. goal,
    '',
    'Roles you can use: ' .. table.concat(names, ', ') ..
      ' (reviews and tests are added by the workflow; plan the coder tasks).',
  }
  if o.files then
    parts[#parts + 1] = ''
    parts[#parts + 1] = 'Files in the repository: ' .. table.concat(o.files, ', ')
  end
  parts[#parts + 1] = ''
  parts[#parts + 1] = 'Reply with the plan as one ```json block.'
  return table.concat(parts, '\n')
end

-- A short text picture of a plan for a person at the plan gate.
function M.describe(plan)
  local out = { ('plan: %s (%d tasks)'):format(plan.goal or '', #plan.tasks) }
  for _, t in ipairs(plan.tasks) do
    local deps = (t.deps and #t.deps > 0) and ('  after ' .. table.concat(t.deps, ', ')) or ''
    out[#out + 1] = ('  %-16s %-10s %s%s'):format(t.id, t.role or (t.cmd and 'cmd') or '',
      t.title or (t.prompt or t.cmd or ''):sub(1, 60), deps)
  end
  return table.concat(out, '\n') .. '\n'
end

return M
