-- code_review_test: the default workflow for `orch run --goal`.
--
--   plan (the orchestrator) -> plan gate -> coders in parallel ->
--   for each finished coder task a reviewer (read-only); "changes" sends
--   the work back into the coder's own conversation, at most
--   review_rounds times -> a tester -> merged into the integration branch
--   -> the test gate (test_cmd on the integration branch) -> final gate.
--
-- Copy it to .orch/workflows/ or anywhere and edit: `orch run my.lua --goal ...`.
-- Settings can also come from the command line: --set review_rounds=0.
local W = require('orch.workflow')

local function review_prompt(w, origin, round)
  local t = w:task(origin)
  return table.concat({
    ('Review the change made for task %s (%s).'):format(origin, t.title or ''),
    '', 'The task was:', t.prompt or '', '',
    round > 1 and 'The coder has revised it after your previous review.' or '',
    'The change (against the run\'s base):', '```diff', w:diff(origin), '```',
    'End with VERDICT: approve or VERDICT: changes: <what must change>.',
  }, '\n')
end

local function test_prompt(w, origin)
  local t = w:task(origin)
  return table.concat({
    ('Test the change made for task %s (%s).'):format(origin, t.title or ''),
    '', 'The task was:', t.prompt or '', '',
    'The change:', '```diff', w:diff(origin), '```',
    'End with VERDICT: pass or VERDICT: fail: <what failed>.',
  }, '\n')
end

-- A reviewer for origin's latest work (after `after`, the task that made it).
local function add_review(w, origin, after)
  local n = w:next_round(origin, 'review')
  return w:add({ id = ('%s.review%d'):format(origin, n), role = 'reviewer',
    title = 'review ' .. origin, deps = { after }, prompt = review_prompt(w, origin, n),
    on_failure = 'soft', merge = false })
end

local function add_test(w, origin, after)
  local n = w:next_round(origin, 'test')
  return w:add({ id = ('%s.test%d'):format(origin, n), role = 'tester',
    title = 'test ' .. origin, deps = { after }, prompt = test_prompt(w, origin),
    on_failure = 'soft' })
end

-- The work goes back into the coder's own conversation (same session,
-- same worktree and branch), then is reviewed again.
local function send_back(w, origin, after, why, kind)
  local n = w:next_round(origin, 'fix')
  return w:add({ id = ('%s.fix%d'):format(origin, n), role = w:task(origin).role or 'coder',
    title = 'revise ' .. origin, continues = origin, deps = { after },
    files = w:task(origin).files,
    prompt = ('The %s of your change asks for changes:\n%s\n\nMake them, then reply with a ' ..
      'short summary.'):format(kind, why or '(no details given)') })
end

local function on_review(w, task, result)
  local origin = w:origin(task)
  local v = w:verdict(result, 'review')
  if not v and not task.continues then
    -- asked once more, in the reviewer's own conversation
    return w:add({ id = ('%s.ask%d'):format(origin, w:next_round(origin, 'ask')), role = 'reviewer',
      continues = task.id, deps = { task.id }, on_failure = 'soft', merge = false,
      prompt = 'Your reply had no verdict. End with exactly one line: ' ..
        'VERDICT: approve or VERDICT: changes: <what must change>.' })
  end
  if not v then
    w:warn('the reviewer of %s gave no verdict; counted as approve (decide at the final gate)', origin)
    v = { verdict = 'approve' }
  end
  local reviews = w:next_round(origin, 'review') - 1
  if v.verdict == 'changes' then
    if reviews <= w.def.review_rounds then
      w:say('%s: the reviewer asks for changes (round %d of %d): %s', origin, reviews,
        w.def.review_rounds, v.reason or '')
      return send_back(w, origin, task.id, v.reason, 'review')
    end
    w:warn('%s: changes still requested after %d review rounds: %s', origin, w.def.review_rounds,
      v.reason or '')
  end
  if w.def.test then return add_test(w, origin, task.id) end
end

local function on_test(w, task, result)
  local origin = w:origin(task)
  local v = w:verdict(result, 'test')
  if not v and not task.continues then
    -- asked once more, in the tester's own conversation
    return w:add({ id = ('%s.ask%d'):format(origin, w:next_round(origin, 'ask')), role = 'tester',
      continues = task.id, deps = { task.id }, on_failure = 'soft',
      prompt = 'Your reply had no verdict. End with exactly one line: ' ..
        'VERDICT: pass or VERDICT: fail: <what failed>.' })
  end
  if not v then
    w:warn('the tester of %s gave no verdict; counted as pass (decide at the final gate)', origin)
    return
  end
  if v.verdict == 'fail' then
    local fixes = w:next_round(origin, 'fix') - 1
    if fixes < w.def.review_rounds + w.def.test_rounds then
      w:say('%s: tests fail: %s', origin, v.reason or '')
      return send_back(w, origin, task.id, v.reason, 'tester')
    end
    w:warn('%s: tests still fail: %s', origin, v.reason or '')
  end
end

return W.define({
  name = 'code_review_test',
  review = true,      -- a reviewer after each coder task
  review_rounds = 2,  -- how many times a reviewer may send the coder back
  test_rounds = 1,    -- how many times a failing tester may send it back
  test = true,        -- a tester after the review
  test_cmd = nil,     -- the test gate's command; nil: detected (docs/workflows.md)

  on_task_end = function(w, task, result)
    if not result.ok then return end
    local kind = w:kind(task)
    if kind == 'code' or kind == 'fix' then
      local origin = w:origin(task)
      if w.def.review then return add_review(w, origin, task.id) end
      if w.def.test then return add_test(w, origin, task.id) end
    elseif kind == 'review' or (kind == 'ask' and task.role ~= 'tester') then
      return on_review(w, task, result)
    elseif kind == 'ask' then
      return on_test(w, task, result)
    elseif kind == 'test' then
      return on_test(w, task, result)
    end
  end,
})
