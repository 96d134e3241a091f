-- The orchestrator of a resumed run continues the conversation that planned
-- the run (stored with it), and is told the plan and what every task that
-- ended before the crash did, so that it answers a question after
-- `orch resume` knowing that work.
local core = require('orch.core')
local cjson = require('cjson')
local T = require('orch.testing')

local ORCH, CODER = 'You are the orchestrator', 'You are a coder'

local PLAN = { goal = 'two files', tasks = {
  { id = 'a', role = 'coder', prompt = 'write a.txt', files = { 'a.txt' } },
  { id = 'b', role = 'coder', prompt = 'write b.txt', files = { 'b.txt' }, deps = { 'a' } } } }

local function scenario()
  return { rules = {
    { when = { system = ORCH, user = 'asks:' }, reply = 'Use UTF-8.' },
    { when = { system = ORCH, user = 'Plan this goal' }, reply = '```json\n' .. cjson.encode(PLAN) .. '\n```' },
    { when = { system = ORCH }, reply = 'Noted.' },
    { when = { system = 'You are a code reviewer' }, reply = 'Fine.\nVERDICT: approve' },
    { when = { system = 'You are a tester' }, reply = 'VERDICT: pass' },
    { when = { system = CODER, tool_result = 'UTF%-8' }, reply = { write = { path = 'b.txt', content = 'B\n' } } },
    { when = { system = CODER, tool_result = true }, reply = 'Wrote a.txt with the letter A.' },
    -- b asks first, slowly: the first orch is killed while it waits
    { when = { system = CODER, user = 'write b.txt' },
      reply = { tool_calls = { { name = 'ask_orchestrator', input = { question = 'Which encoding?' } } },
                delay = 1500 } },
    { when = { system = CODER, user = 'write a.txt' }, reply = { write = { path = 'a.txt', content = 'A\n' } } },
  } }
end

local function all_text(q)
  local parts = { q.system or '' }
  for _, m in ipairs(q.messages or {}) do parts[#parts + 1] = m.text or '' end
  return table.concat(parts, '\n')
end

describe('a resumed run\'s orchestrator', function()
  local repo, srv
  before_each(function() repo = T.repo({ ['README.md'] = 'x\n' }) end)
  after_each(function()
    if srv then srv:stop() srv = nil end
    repo:rm()
  end)

  it('continues the planning conversation, told what the tasks that ended before did', function()
    srv = T.server(scenario())
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    local db = repo.dir .. '/.orch/orch.db'
    local killed = false
    local first = T.spawn({ T.orch_bin(), 'run', '--goal', 'two files', '--yes', '--no-tui',
                            '--set', 'test_cmd=false', '--repo', repo.dir },
      { cwd = repo.dir, env = env, timeout = 60000, on_start = function(p)
        local tick
        tick = core.timer(50, 50, function()
          local st = require('orch.store').open(db, { readonly = true })
          if not st then return end
          local run = st:latest_run()
          local a = run and st:task(run.id, 'a')
          local b = run and st:task(run.id, 'b')
          st:close()
          if a and a.status == 'done' and b and b.status == 'running' then
            tick:close()
            killed = true
            p:kill('SIGKILL')
          end
        end)
      end })
    assert.is_true(killed, first.err)
    assert.equal('SIGKILL', first.sig)

    local again = T.spawn({ T.orch_bin(), 'resume', '--yes', '--no-tui', '--repo', repo.dir },
                          { cwd = repo.dir, env = env, timeout = 60000 })
    assert.equal(0, again.code, again.err)
    local answering
    for _, q in ipairs(srv:requests()) do
      if (q.system or ''):find(ORCH, 1, true) and (q.last_user or ''):find('asks:', 1, true) then
        answering = q
      end
    end
    assert.is_not_nil(answering, 'the question reached the orchestrator')
    local text = all_text(answering)
    assert.matches('task a %(coder%) finished: Wrote a%.txt with the letter A%.', text)
    assert.matches('write b%.txt', text) -- and the plan
    -- the same conversation as the planning one, which the first orch had
    assert.matches('Plan this goal', text)
    local st = require('orch.store').open(db, { readonly = true })
    local sess = st:orchestrator_session(st:latest_run().id)
    st:close()
    assert.equal('openai', sess.backend)
    assert.not_matches('no rule of the scenario', text)
  end)
end)
