-- A spec for the workflow code_review_test, written with orch.testing: the
-- example to copy for your own workflows (`orch test`, docs/testing.md).
-- Run it with: orch test workflows/spec   (or copy it into .orch/spec/)
--
-- A repository's own .orch/workflows/code_review_test.lua, when there is
-- one, is the workflow tested (T.run finds it first), so this spec also
-- guards a customised copy.
local T = require('orch.testing')

local CODER, REVIEWER = 'You are a coder', 'You are a code reviewer'

-- The scripted models: the orchestrator plans one task; the coder writes
-- the code without a test, and the test when sent back; the reviewer asks
-- for a test while the change has none.
local function scenario()
  return { rules = {
    { when = { system = 'You are the orchestrator', user = 'Plan this goal' },
      reply = '```json\n{"tasks":[{"id":"add","role":"coder","prompt":"write add.lua",' ..
        '"files":["add.lua","add_test.lua"]}]}\n```' },
    { when = { system = 'You are the orchestrator' }, reply = 'Noted.' },
    { when = { system = CODER, tool_result = true }, reply = 'Done.' },
    { when = { system = CODER, user = 'asks for changes' },
      reply = { write = { path = 'add_test.lua', content = 'assert(require("add")(2, 3) == 5)\n' } } },
    { when = { system = CODER, user = 'write add.lua' },
      reply = { write = { path = 'add.lua', content = 'return function(a, b) return a + b end\n' } } },
    { when = { system = REVIEWER, user = 'add_test%.lua' }, reply = 'Tested.\nVERDICT: approve' },
    { when = { system = REVIEWER }, reply = 'No test.\nVERDICT: changes: add add_test.lua' },
    { when = { system = 'You are a tester' }, reply = 'VERDICT: pass' },
  } }
end

describe('code_review_test', function()
  local repo, srv
  before_each(function()
    repo = T.repo({ ['README.md'] = '# add\n' })
    srv = T.server(scenario())
  end)
  after_each(function()
    srv:stop()
    repo:rm()
  end)

  it('sends the coder back once when the first diff lacks a test', function()
    local r = T.run({ repo = repo, server = srv, goal = 'an add function with a test',
                      args = { '--set', 'test_cmd=false' } })
    assert.are.equal(0, r.code, r.err)
    assert.is_table(r:task('add.fix1'),
      'the reviewer should have sent the coder back once (no task add.fix1 ran)')
    assert.is_nil(r:task('add.fix2'), 'the coder was sent back more than once')
    assert.are.equal('done', r:task('add.review2').status)
    -- the fix went back into the coder's own conversation
    assert.are.equal(r:task('add').session_id, r:task('add.fix1').session_id)
    -- the reviewer role's prompt reached the reviewer's requests
    local reviews = r:requests({ system = REVIEWER })
    assert.are.equal(2, #reviews)
    assert.matches('VERDICT: approve', reviews[1].system)
    -- and the work, with its test, is on the branch
    assert.is_string(repo:file('add_test.lua', 'main'))
  end)
end)
