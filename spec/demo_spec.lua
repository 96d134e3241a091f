-- `orch demo`: the whole product offline with no API key: the plan, agents
-- in parallel, a question answered by the orchestrator, a review sent back
-- once, testers, the test gate, the result merged into main. Once with the
-- HTTP backends only, once with Claude Code and Codex taking part (they
-- must be installed under CI=true: scripts/install-agents.sh).
local H = require('spec.helpers')
local agents = require('spec.cli_agents')

local function demo(env)
  local dir = H.tmpdir()
  env.ANTHROPIC_API_KEY, env.OPENAI_API_KEY = '', ''
  local r = H.orch({ 'demo', '--no-tui', '--dir', dir .. '/repo' }, { env = env, timeout = 120000 })
  return r, dir
end

local function check(r, dir)
  assert.equal(0, r.code, r.out .. '\n' .. r.err)
  assert.matches('mul asks: Must calc_mul handle negative numbers', r.err)
  assert.matches('mul: answered %(orchestrator%)', r.err)
  assert.matches('add: the reviewer asks for changes %(round 1 of 2%)', r.err)
  assert.matches('add%.fix1: done', r.err)
  assert.matches('add%.review2: done', r.err)
  assert.matches('mul%.test1: done', r.err)
  assert.matches('gate%.test: done', r.err)
  assert.matches('applied orch/[%w-]+/integration to main', r.err)
  assert.matches('test%.sh: 3 test files passed', r.out)
  assert.equal('5', (H.sh('cd ' .. dir .. '/repo && sh calc.sh add 2 3'):gsub('%s+$', '')))
  assert.equal('-6', (H.sh('cd ' .. dir .. '/repo && sh calc.sh mul -2 3'):gsub('%s+$', '')))
  -- the dummy key was not stored (a bare "sk-" also matches "task-" bytes
  -- of the database file)
  local found = H.sh('grep -rl "' .. require('orch.testing').DUMMY_KEY .. '" ' .. dir
    .. '/repo/.orch/orch.db 2>/dev/null | head -1')
  assert.equal('', found)
end

describe('orch demo', function()
  it('runs to the end on the HTTP backends', function()
    local r, dir = demo({ ORCH_DEMO_CLI = '0' })
    check(r, dir)
    assert.is_nil(r.err:find('coders on claude', 1, true))
    H.rm(dir)
  end)

  agents.e2e({ describe = describe, it = it, pending = pending }, 'claude', 'with Claude Code', function(claude)
    agents.e2e({ describe = describe, it = it, pending = pending }, 'codex', 'and Codex', function(codex)
      it('runs to the end with them as coders', function()
        local path = claude:match('^(.*)/[^/]*$') .. ':' .. codex:match('^(.*)/[^/]*$') .. ':' ..
          os.getenv('PATH')
        local r, dir = demo({ PATH = path })
        check(r, dir)
        assert.matches('coders on claude and codex too', r.err)
        H.rm(dir)
      end)
    end)
  end)
end)
