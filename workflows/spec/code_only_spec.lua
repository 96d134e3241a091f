-- A spec for the workflow code_only (orch.testing): coders only, then the
-- test gate on the integration branch, whose failure applies nothing.
local T = require('orch.testing')

local PLAN = '```json\n{"tasks":[{"id":"one","role":"coder","prompt":"write one.txt","files":["one.txt"]},' ..
  '{"id":"two","role":"coder","prompt":"write two.txt","files":["two.txt"]}]}\n```'

local function scenario(two)
  return { rules = {
    { when = { system = 'You are the orchestrator', user = 'Plan this goal' }, reply = PLAN },
    { when = { system = 'You are the orchestrator' }, reply = 'Noted.' },
    { when = { system = 'You are a coder', tool_result = true }, reply = 'Done.' },
    { when = { system = 'You are a coder', user = 'write (%a+)%.txt' },
      reply = { write = { path = '{{1}}.txt', content = '{{1}}\n' } } },
    { when = { system = 'You are a coder' }, reply = two },
  } }
end

describe('code_only', function()
  local repo
  before_each(function()
    repo = T.repo({ ['check.sh'] = 'test "$(cat one.txt two.txt)" = "one\ntwo"\n' })
  end)
  after_each(function() repo:rm() end)

  it('runs the coders in parallel and no one else, then the test gate', function()
    local srv = T.server(scenario('x'))
    local r = T.run({ repo = repo, server = srv, goal = 'two files', workflow = 'code_only',
                      args = { '--set', 'test_cmd=sh check.sh' } })
    srv:stop()
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(3, #r:tasks()) -- one, two and the gate
    assert.are.equal('done', r:task('gate.test').status)
    assert.are.equal('two\n', repo:file('two.txt', 'main'))
  end)

  it('applies nothing when the test gate fails', function()
    local srv = T.server(scenario('x'))
    local r = T.run({ repo = repo, server = srv, goal = 'two files', workflow = 'code_only',
                args = { '--set', 'test_cmd=sh -c "exit 3"' } })
    srv:stop()
    assert.are.equal(1, r.code, r.err)
    assert.are.equal('failed', r:task('gate.test').status)
    assert.is_nil(repo:file('one.txt', 'main'))
  end)
end)
