-- A spec for the workflow best_of_n (orch.testing): two tries of one task
-- on two models, a reviewer picks one, the winner alone is merged, the
-- other try's branch is kept.
local T = require('orch.testing')

local function scenario()
  return { rules = {
    { when = { system = 'You are the orchestrator', user = 'Plan this goal' },
      reply = '```json\n{"tasks":[{"id":"greet","role":"coder","prompt":"write greet.txt",' ..
        '"files":["greet.txt"]}]}\n```' },
    { when = { system = 'You are the orchestrator' }, reply = 'Noted.' },
    { when = { system = 'You are a coder', tool_result = true }, reply = 'Done.' },
    { when = { system = 'You are a coder', model = 'model%-b' },
      reply = { write = { path = 'greet.txt', content = 'hello from b\n' } } },
    { when = { system = 'You are a coder' },
      reply = { write = { path = 'greet.txt', content = 'hello from a\n' } } },
    { when = { system = 'You are a code reviewer', user = 'hello from b' },
      reply = 'The second is friendlier.\nWINNER: greet.try2' },
  } }
end

describe('best_of_n', function()
  it('merges the winner only and keeps the other try', function()
    local repo = T.repo({ ['README.md'] = 'x\n' })
    local srv = T.server(scenario())
    local r = T.run({ repo = repo, server = srv, goal = 'a greeting', workflow = 'best_of_n',
      args = { '--set', 'candidates=openai:model-a,openai:model-b', '--set', 'test_cmd=false' } })
    srv:stop()
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('done', r:task('greet.try1').status)
    assert.are.equal('done', r:task('greet.try2').status)
    assert.are.equal('done', r:task('greet').status)
    assert.are.equal('hello from b\n', repo:file('greet.txt', 'main'))
    assert.are.equal('hello from a\n', repo:file('greet.txt', 'orch/' .. r.run_id .. '/greet.try1'))
    repo:rm()
  end)
end)
