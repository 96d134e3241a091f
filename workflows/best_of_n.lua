-- best_of_n: every planned task is tried by N agents at once, each on its
-- own backend or model (`candidates`); a reviewer compares the attempts and
-- picks the winner, which alone is merged; the others' branches are kept
-- (orch/RUN/TASK.tryK) for you to look at.
--
--   orch run workflows/best_of_n.lua --goal "..." --set candidates=claude,codex
--   candidates: backend names, or backend:model (openai:gpt-5, anthropic:claude-x)
local W = require('orch.workflow')

local function candidates(w)
  local c = w.def.candidates
  if type(c) == 'string' then
    local list = {}
    for item in c:gmatch('[^,%s]+') do list[#list + 1] = item end
    c = list
  end
  local out = {}
  for _, item in ipairs(c) do
    local backend, model = item:match('^([^:]+):(.+)$')
    out[#out + 1] = { backend = backend or item, model = model }
  end
  return out
end

-- The planned task a try was made from (its first try keeps its fields).
local function planned(w, origin)
  return w:task(origin .. '.try1') or {}
end

local function pick_prompt(w, origin, tries)
  local p = planned(w, origin)
  local parts = { ('Several agents each tried task %s (%s):'):format(origin, p.title or ''),
    '', p.prompt or '', '' }
  for _, id in ipairs(tries) do
    parts[#parts + 1] = ('## %s (%s)'):format(id, w:task(id).backend or 'default')
    parts[#parts + 1] = '```diff'
    parts[#parts + 1] = w:diff(id)
    parts[#parts + 1] = '```'
  end
  parts[#parts + 1] = 'Pick the best one. End with exactly one line: WINNER: <id>'
  return table.concat(parts, '\n')
end

return W.define({
  name = 'best_of_n',
  candidates = { 'auto', 'auto' },

  -- each planned coder task becomes N tries and a pick; dependents of the
  -- task wait for its pick
  on_plan = function(w, plan)
    local out, cands = {}, candidates(w)
    for _, t in ipairs(plan.tasks) do
      if t.cmd then
        out[#out + 1] = t
      else
        local tries = {}
        for k, c in ipairs(cands) do
          local id = ('%s.try%d'):format(t.id, k)
          tries[#tries + 1] = id
          out[#out + 1] = { id = id, title = t.title, role = t.role, prompt = t.prompt,
            files = t.files, deps = t.deps, backend = c.backend ~= 'auto' and c.backend or nil,
            model = c.model, merge = false, on_failure = 'soft' }
        end
        -- the pick keeps the task's own id, so the plan's deps on it hold
        -- the pick reads the tries' diffs from its prompt: its worktree is
        -- the base (the tries may well conflict with each other)
        out[#out + 1] = { id = t.id .. '.pick', role = 'reviewer', title = 'pick ' .. t.id,
          deps = tries, prompt = '(filled in when the tries end)', on_failure = 'hard',
          merge = false, from = 'base' }
        -- the task of the plan's own id takes over the winner's branch
        -- (continues, set by the pick) and is merged
        out[#out + 1] = { id = t.id, title = (t.title or t.id) .. ' (the winner)', cmd = 'true',
          deps = { t.id .. '.pick' } }
      end
    end
    plan.tasks = out
    return plan
  end,

  on_task_end = function(w, task, result)
    -- a try ended: the pick's prompt shows the tries that succeeded (the
    -- hook runs before the pick can start)
    local tried = task.id:match('^(.-)%.try%d+$')
    if tried and w:task(tried .. '.pick') then
      local pick, tries = w:task(tried .. '.pick'), {}
      for _, d in ipairs(pick.deps) do
        if w.engine.status[d] == 'done' then tries[#tries + 1] = d end
      end
      -- (stored with the run: a resumed run's pick has it too)
      if w.engine.status[pick.id] == 'pending' or w.engine.status[pick.id] == nil then
        w:update(pick.id, { prompt = pick_prompt(w, tried, tries) })
      end
      return
    end
    local origin = task.id:match('^(.-)%.pick$')
    if not origin or not result.ok then return end
    local winner = result.text and result.text:match('WINNER:%s*([%w._-]+)')
    if not winner or not w:task(winner) then
      w:warn('the pick for %s named no winner; taking %s.try1', origin, origin)
      winner = origin .. '.try1'
    end
    w:say('%s: %s wins', origin, winner)
    -- the task with the plan's id takes over the winner's branch and is merged
    -- (a hook run again on resume finds it started, or done, already)
    if w.engine.status[origin] == 'pending' or w.engine.status[origin] == nil then
      w:update(origin, { continues = winner })
    end
  end,
})
