-- The orchestrator's plan read from its reply, and verdicts from reviewers.
local planner = require('orch.planner')
local verdict = require('orch.verdict')

local PLAN = [[{"goal": "g", "tasks": [
  {"id": "a", "role": "coder", "prompt": "do a", "files": ["a.txt"]},
  {"id": "b", "role": "coder", "prompt": "do b", "files": ["b.txt"]},
  {"id": "c", "role": "coder", "prompt": "do c", "deps": ["a", "b"]}]}]]

describe('planner', function()
  it('reads a fenced json block, a yaml block and a bare object', function()
    local p = assert(planner.check('Here is the plan:\n```json\n' .. PLAN .. '\n```\nDone.'))
    assert.equal(3, #p.tasks)
    assert.same({ 'a', 'b' }, p.tasks[3].deps)
    p = assert(planner.check('Plan:\n' .. PLAN .. '\nthanks'))
    assert.equal('c', p.tasks[3].id)
    p = assert(planner.check('```yaml\ngoal: g\ntasks:\n  - id: x\n    role: coder\n    prompt: hi\n```'))
    assert.equal('x', p.tasks[1].id)
  end)

  it('sends back a cycle with the ids on it, an unknown role and no plan at all', function()
    local cyc = PLAN:gsub('"prompt": "do a"', '"prompt": "do a", "deps": ["c"]')
    local p, fb = planner.check('```json\n' .. cyc .. '\n```')
    assert.is_nil(p)
    assert.matches('cannot be used', fb)
    assert.matches('cycle', fb)
    assert.matches('a', fb)
    local bad = PLAN:gsub('"role": "coder", "prompt": "do b"', '"role": "poet", "prompt": "do b"')
    p, fb = planner.check(bad)
    assert.is_nil(p)
    assert.matches("no role 'poet'", fb)
    p, fb = planner.check('I think we should just do it.')
    assert.is_nil(p)
    assert.matches('no plan found', fb)
  end)

  it('describes a plan for the gate', function()
    local text = planner.describe(assert(planner.check(PLAN)))
    assert.matches('3 tasks', text)
    assert.matches('after a, b', text)
  end)
end)

describe('verdict', function()
  it('reads the last VERDICT line', function()
    assert.same({ verdict = 'approve' }, verdict.parse('Looks fine.\nVERDICT: approve'))
    assert.same({ verdict = 'changes', reason = 'add a test for b' },
      verdict.parse('VERDICT: approve\nHmm, no.\n**VERDICT: changes: add a test for b**'))
    assert.same({ verdict = 'fail', reason = 'test_b fails' },
      verdict.parse('ran it\nVERDICT: fail: test_b fails\n', 'test'))
    assert.same({ verdict = 'pass' }, verdict.parse('VERDICT: PASS', 'test'))
    assert.is_nil(verdict.parse('I approve of this'))
    assert.is_nil(verdict.parse('VERDICT: maybe'))
  end)
end)

describe('verdict styles', function()
  it('reads markup, a word before, trailing punctuation', function()
    assert.same({ verdict = 'approve' }, verdict.parse('**VERDICT:** approve'))
    assert.same({ verdict = 'approve' }, verdict.parse('VERDICT: approve.'))
    assert.same({ verdict = 'approve' }, verdict.parse('Final VERDICT: approve'))
    assert.same({ verdict = 'fail', reason = 'x breaks' }, verdict.parse('**VERDICT:** fail: x breaks', 'test'))
    assert.same({ verdict = 'changes', reason = 'rename it' }, verdict.parse('> `VERDICT: changes - rename it`'))
    assert.is_nil(verdict.parse('the verdict is unclear'))
  end)
end)
