-- The plan gate and a question for the person, from a real terminal (tmux):
-- the plan is shown and can be edited before it runs; a question the
-- orchestrator hands over (ASK_PERSON) is asked at the prompt, and the
-- person's answer reaches the agent; one the orchestrator answers is not
-- asked; abort runs nothing.
local cjson = require('cjson')
local H = require('spec.helpers')
local T = require('orch.testing')

local tmux_mod = require('spec.tmux')
local TMUX = tmux_mod.BIN
local q = tmux_mod.quote

-- A tmux server of its own with one window running cmd in a shell.
local function tmux(sock) return tmux_mod.new(sock, { width = 160, height = 50 }) end

local ORCH, CODER = 'You are the orchestrator', 'You are a coder'

local PLAN = { tasks = {
  { id = 'a', role = 'coder', prompt = 'write a.txt', files = { 'a.txt' } },
  { id = 'b', role = 'coder', prompt = 'write b.txt', files = { 'b.txt' } } } }

local function scenario()
  return { rules = {
    { when = { system = ORCH, user = 'licence' }, reply = 'ASK_PERSON' },
    { when = { system = ORCH, user = 'asks:' }, reply = 'Tabs.' },
    { when = { system = ORCH, user = 'Plan this goal' }, reply = '```json\n' .. cjson.encode(PLAN) .. '\n```' },
    { when = { system = ORCH }, reply = 'Noted.' },
    { when = { system = CODER, tool_result = 'PERSON%-SAYS' },
      reply = { write = { path = 'b.txt', content = 'MIT\n' } } },
    { when = { system = CODER, tool_result = 'Tabs' }, reply = { write = { path = 'a.txt', content = 'a\n' } } },
    { when = { system = CODER, tool_result = true }, reply = 'Done.' },
    { when = { system = CODER, user = 'write b' },
      reply = { tool_calls = { { name = 'ask_orchestrator', input = { question = 'Which licence?' } } } } },
    { when = { system = CODER, user = 'write a' },
      reply = { tool_calls = { { name = 'ask_orchestrator', input = { question = 'Tabs or spaces?' } } } } },
  } }
end

describe('gates and questions at a terminal', function()
  local repo, srv, t
  before_each(function()
    repo = T.repo({ ['README.md'] = 'x\n' })
    srv = T.server(scenario())
    t = tmux(repo.dir .. '/.git/tmux.sock')
  end)
  after_each(function()
    t.kill()
    srv:stop()
    repo:rm()
  end)

  local function start()
    assert.truthy(TMUX ~= '', 'tmux is needed for this spec')
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. '=' .. q(v) end
    t.start(('trap : INT; cd %s && env %s %s run --goal %s --set test=false --set review=false ' ..
      '--set test_cmd=false --no-tui; echo "EXIT=$?"; sleep 60')
      :format(q(repo.dir), table.concat(parts, ' '), q(T.orch_bin()), q('two files')))
    assert.is_true(t.wait_for('run this plan?'), t.screen())
  end

  it('asks the person what the orchestrator hands over, and only that', function()
    start()
    assert.matches('plan: .*%(2 tasks%)', t.screen())
    t.keys('y Enter')
    assert.is_true(t.wait_for('b asks: Which licence?'), t.screen())
    assert.is_true(t.wait_for('your answer'), t.screen())
    t.keys(q('PERSON-SAYS MIT') .. ' Enter')
    assert.is_true(t.wait_for('apply its work to your branch?'), t.screen())
    t.keys('y Enter')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    local screen = t.screen()
    assert.matches('EXIT=0', screen)
    -- the orchestrator's own answer was not put to the person
    assert.is_nil(screen:find('Tabs or spaces?\nyour answer', 1, true))
    assert.matches('a: answered %(orchestrator%): Tabs', screen)
    assert.matches('b: answered %(person%): PERSON%-SAYS MIT', screen)
    assert.equal('MIT\n', repo:file('b.txt', 'main'))
    assert.equal('a\n', repo:file('a.txt', 'main'))
  end)

  it('runs the plan as edited at the gate, and abort runs nothing', function()
    start()
    local path = t.screen():match('%[e%]dit (%S+) first')
    assert.is_string(path, t.screen())
    t.keys('e Enter')
    assert.is_true(t.wait_for('then press Enter'), t.screen())
    local plan = cjson.decode(H.read(path))
    plan.tasks = { plan.tasks[1] }
    H.write(path, cjson.encode(plan))
    t.keys('Enter')
    assert.is_true(t.wait_for('(1 tasks)'), t.screen())
    t.keys('a Enter')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    assert.matches('plan refused; nothing ran', t.screen())
    assert.matches('EXIT=1', t.screen())
    assert.is_nil(repo:file('a.txt', 'main'))
  end)
end)

describe('orch plan --goal at a terminal', function()
  it('takes changes in plain words and writes the plan the person accepts', function()
    assert.truthy(TMUX ~= '', 'tmux is needed for this spec')
    local repo = T.repo({ ['README.md'] = 'x\n' })
    local srv = T.server({ rules = {
      { when = { user = 'person asks for changes.*docs' },
        reply = '```json\n{"tasks":[{"id":"code","role":"coder","prompt":"c"},' ..
          '{"id":"docs","role":"coder","prompt":"d","deps":["code"]}]}\n```' },
      { when = { user = 'Plan this goal' },
        reply = '```json\n{"tasks":[{"id":"code","role":"coder","prompt":"c"}]}\n```' },
    } })
    local t = tmux(repo.dir .. '/.git/tmux.sock')
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. '=' .. q(v) end
    t.start(('cd %s && env %s %s plan --goal %s -o plan.json; echo "EXIT=$?"; sleep 60')
      :format(q(repo.dir), table.concat(parts, ' '), q(T.orch_bin()), q('a feature')))
    assert.is_true(t.wait_for('say what to change'), t.screen())
    assert.matches('%(1 tasks%)', t.screen())
    t.keys(q('please add a docs task after it') .. ' Enter')
    assert.is_true(t.wait_for('(2 tasks)'), t.screen())
    t.keys('a Enter')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    assert.matches('EXIT=0', t.screen())
    local plan = cjson.decode(H.read(repo.dir .. '/plan.json'))
    assert.equal(2, #plan.tasks)
    assert.equal('docs', plan.tasks[2].id)
    t.kill()
    srv:stop()
    repo:rm()
  end)
end)
