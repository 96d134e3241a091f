-- `orch plan --goal TEXT [-o FILE]`: the planning conversation with a
-- person. The orchestrator agent proposes a plan for the goal; the person
-- accepts it, or says in plain words what to change and gets a new one;
-- the accepted plan is written to FILE (default plan.json). Without a
-- terminal (or with --yes) the first valid plan is written.
local core = require('orch.core')
local cjson = require('cjson')

local M = {}

local function err(fmt, ...) io.stderr:write('orch: ', fmt:format(...), '\n') end

-- Runs the loop until box.done (top level only: never from a callback).
local function wait(box)
  while not box.done do
    if not core.run('once') and not box.done then return false end
  end
  return true
end

-- One answer from the terminal (orch.workflow's reader): nil at the end of
-- input (Ctrl+D), which quits.
local function read_line(prompt)
  io.stderr:write(prompt)
  io.stderr:flush()
  return require('orch.workflow').read_line({ whole = true })
end

-- The plan as file text in the format the file name asks for.
local function plan_text(plan, file)
  local tasks = {}
  for _, t in ipairs(plan.tasks) do
    tasks[#tasks + 1] = { id = t.id, title = t.title, role = t.role, prompt = t.prompt,
      files = t.files, deps = t.deps, cmd = t.cmd, on_failure = t.on_failure }
  end
  if file:match('%.ya?ml$') then
    local out = { 'goal: ' .. cjson.encode(plan.goal or ''), 'tasks:' }
    for _, t in ipairs(tasks) do
      out[#out + 1] = '  - id: ' .. cjson.encode(t.id)
      for _, k in ipairs({ 'title', 'role', 'cmd', 'on_failure', 'prompt' }) do
        if t[k] then out[#out + 1] = ('    %s: %s'):format(k, cjson.encode(t[k])) end
      end
      for _, k in ipairs({ 'files', 'deps' }) do
        if t[k] and #t[k] > 0 then out[#out + 1] = ('    %s: %s'):format(k, cjson.encode(t[k])) end
      end
    end
    return table.concat(out, '\n') .. '\n'
  end
  -- (Debian's cjson 2.1.0 escapes every '/'; a person reads this file)
  return (cjson.encode({ goal = plan.goal, tasks = tasks }):gsub('\\/', '/')) .. '\n'
end

local function write(file, text)
  local f, e = io.open(file, 'wb')
  if not f then return nil, e end
  f:write(text)
  f:close()
  return true
end

function M.cli(o)
  local goal = o.goal
  if not goal or goal == '' then err('usage: orch plan --goal TEXT [-o FILE]') return 2 end
  local root = require('orch.repo').find(o.repo or core.cwd())
  local cok, cerr = require('orch.config').load(root)
  if not cok then err('config: %s', cerr) return 2 end
  local orch, oerr = require('orch.orchestrator').new({ repo = root or core.cwd() })
  if not orch then err('%s', oerr) return 2 end
  local file = o.output or o.o or 'plan.json'
  local interactive = not o.yes and core.isatty(0) and core.isatty(2)
  local planner = require('orch.planner')
  local box = { done = false }
  local function on_plan(plan, perr) box.plan, box.err, box.done = plan, perr, true end
  io.stderr:write(('orch: planning with the orchestrator (%s)...\n'):format(orch.role.backend))
  orch:plan(goal, on_plan)
  while true do
    wait(box)
    if not box.plan then
      err('%s', tostring(box.err))
      orch:close()
      return 1
    end
    local plan = box.plan
    io.stderr:write('\n', planner.describe(plan), '\n')
    local answer = 'a'
    if interactive then
      answer = read_line('accept this plan (a), quit (q), or say what to change: ')
      if answer == nil then answer = 'q' end
      answer = answer:gsub('^%s+', ''):gsub('%s+$', '')
      local word = answer:lower()
      if word == 'a' or word == 'y' or word == 'yes' or word == 'accept' then answer = 'a'
      elseif word == 'q' or word == 'quit' or word == 'n' or word == 'no' then answer = 'q' end
    end
    if answer == 'a' or answer == '' then
      local ok, werr = write(file, plan_text(plan, file))
      orch:close()
      if not ok then err('cannot write %s: %s', file, tostring(werr)) return 1 end
      io.stderr:write(('orch: plan written to %s; run it with: orch run --plan %s\n'):format(file, file))
      return 0
    end
    if answer == 'q' or answer == 'quit' then
      orch:close()
      io.stderr:write('orch: no plan written\n')
      return 1
    end
    box = { done = false }
    orch:plan(goal, on_plan, { prompt = 'The person asks for changes to the plan: ' .. answer ..
      '\nReply with the whole revised plan as one ```json block.' })
  end
end

return M
