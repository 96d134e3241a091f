-- Resilience through the command line and with the real CLIs
-- (docs/resilience.md): `orch run --budget` ending resumable and `orch
-- resume --budget` completing it, breakers and costs in `orch status`;
-- claude and codex against the scripted model server: a hung request and a
-- cut stream become retries, a 401 is not retried and says what to fix;
-- and a soak of 4 agents with seeded random faults.
local cjson = require('cjson')
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')
local roles = require('orch.roles')
local ms = require('orch.testing.modelserver')
local agents = require('orch.testing.agents')
local H = require('spec.helpers')
local A = require('spec.cli_agents')

local function git_repo(dir, files)
  return A.repo(dir, files)
end

local function write_role(repo, name, text)
  core.mkdir_p(repo .. '/.orch/roles', tonumber('755', 8))
  H.write(repo .. '/.orch/roles/' .. name .. '.yaml', text)
end

local function env_for()
  return { OPENAI_API_KEY = 'dummy', ORCH_BACKEND = false, NO_COLOR = '1' }
end

local function runtime_workflow(name)
  return core.runtime_dir() .. '/workflows/' .. name .. '.lua'
end

describe('orch run --budget / orch resume --budget', function()
  local dir, srv
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    if srv then srv:stop() srv = nil end
    H.rm(dir)
  end)

  it('stops new turns once spent, ends resumable (exit 4), and a larger budget completes it', function()
    srv = assert(ms.start({ scenario = {
      { reply = { text = 'costly', usage = { input_tokens = 100000, output_tokens = 10000 } } },
    } }))
    local repo = git_repo(dir)
    write_role(repo, 'coder', ('backend: openai\nmodel: gpt-4o\ntools: read-only\nendpoint:\n'
      .. '  base_url: %s/v1\n'):format(srv.url))
    local plan = { goal = 'budget', tasks = {
      { id = 'p1', role = 'coder', prompt = 'one' },
      { id = 'p2', role = 'coder', prompt = 'two', deps = { 'p1' } },
      { id = 'p3', role = 'coder', prompt = 'three', deps = { 'p2' } } } }
    H.write(dir .. '/plan.json', cjson.encode(plan))
    local r = H.orch({ 'run', '--plan', dir .. '/plan.json', '--yes', '--no-tui', '--budget', '0.5' },
                     { cwd = repo, env = env_for(), timeout = 60000 })
    assert.equal(4, r.code, r.err)
    assert.matches('budget', r.err)
    local s = H.orch({ 'status', '--json' }, { cwd = repo, env = env_for() })
    local st = cjson.decode(s.out)
    assert.equal('budget', st.run.status)
    assert.equal(0.5, st.run.budget_usd)
    assert.is_true(st.run.cost_usd >= 0.5)
    local by = {}
    for _, t in ipairs(st.tasks) do by[t.id] = t.status end
    assert.same({ p1 = 'done', p2 = 'done', p3 = 'pending' }, by)
    local text = H.orch({ 'status' }, { cwd = repo, env = env_for() })
    assert.matches('cost: %$0%.7000 of a budget of %$0%.50', text.out)
    -- the same budget again: refused, nothing runs
    local again = H.orch({ 'resume', '--yes', '--no-tui' }, { cwd = repo, env = env_for() })
    assert.equal(2, again.code)
    assert.matches('give a larger one with %-%-budget', again.err)
    local bad = H.orch({ 'run', '--plan', dir .. '/plan.json', '--budget', 'lots' },
                       { cwd = repo, env = env_for() })
    assert.equal(2, bad.code)
    -- a larger budget carries on
    local res = H.orch({ 'resume', '--yes', '--no-tui', '--budget', '5' },
                       { cwd = repo, env = env_for(), timeout = 60000 })
    assert.equal(0, res.code, res.err)
    st = cjson.decode(H.orch({ 'status', '--json' }, { cwd = repo, env = env_for() }).out)
    assert.equal('done', st.run.status)
    assert.equal(5, st.run.budget_usd)
    assert.equal(3, #srv:requests())
  end)

  it('counts the orchestrator\'s planning turn against the budget, and shows its cost', function()
    local usage = { input_tokens = 100000, output_tokens = 10000 } -- $0.35 on gpt-4o
    local plan = { goal = 'budget', tasks = {
      { id = 'p1', role = 'coder', prompt = 'one' },
      { id = 'p2', role = 'coder', prompt = 'two', deps = { 'p1' } } } }
    srv = assert(ms.start({ scenario = {
      { when = { system = 'You are the orchestrator', user = 'Plan this goal' },
        reply = { text = '```json\n' .. cjson.encode(plan) .. '\n```', usage = usage } },
      { when = { system = 'You are the orchestrator' }, reply = { text = 'Noted.' } },
      { reply = { text = 'costly', usage = usage } },
    } }))
    local repo = git_repo(dir)
    for _, role in ipairs({ 'coder', 'orchestrator' }) do
      write_role(repo, role, ('backend: openai\nmodel: gpt-4o\ntools: read-only\nendpoint:\n'
        .. '  base_url: %s/v1\n'):format(srv.url))
    end
    -- planning ($0.35) and p1 ($0.35) spend the $0.5: p2 never starts
    local r = H.orch({ 'run', runtime_workflow('code_only'), '--goal', 'budget', '--yes', '--no-tui',
                       '--set', 'test_cmd=false', '--budget', '0.5' },
                     { cwd = repo, env = env_for(), timeout = 60000 })
    assert.equal(4, r.code, r.err)
    local st = cjson.decode(H.orch({ 'status', '--json' }, { cwd = repo, env = env_for() }).out)
    local by = {}
    for _, t in ipairs(st.tasks) do by[t.id] = t.status end
    assert.same({ p1 = 'done', p2 = 'pending' }, by)
    assert.is_true(math.abs(st.run.cost_usd - 0.70) < 1e-6, tostring(st.run.cost_usd))
    local text = H.orch({ 'status' }, { cwd = repo, env = env_for() })
    assert.matches('cost: %$0%.7000 of a budget of %$0%.50 %(coder %$0%.35, orchestrator %$0%.35%)', text.out)
  end)

  it('orch status shows the breakers and the retries', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'bad' }, replies = { { status = 500 }, { status = 500 }, 'ok now' } },
      { reply = 'ok' },
    } }))
    local repo = git_repo(dir)
    write_role(repo, 'coder', ('backend: openai\nmodel: gpt-4o\ntools: read-only\nendpoint:\n'
      .. '  base_url: %s/v1\nretries:\n  base: 0.05\nbreaker:\n  failures: 2\n  cooldown: 0.5\n')
      :format(srv.url))
    H.write(dir .. '/plan.json', cjson.encode({ tasks = { { id = 'a', role = 'coder', prompt = 'bad' } } }))
    local r = H.orch({ 'run', '--plan', dir .. '/plan.json', '--yes', '--no-tui' },
                     { cwd = repo, env = env_for(), timeout = 60000 })
    assert.equal(0, r.code, r.err)
    local text = H.orch({ 'status' }, { cwd = repo, env = env_for() }).out
    assert.matches('retries: 2', text)
    assert.matches('breaker openai ' .. srv.url:gsub('%p', '%%%0') .. '/v1 gpt%-4o: closed', text)
    local st = cjson.decode(H.orch({ 'status', '--json' }, { cwd = repo, env = env_for() }).out)
    assert.equal('closed', st.breakers[1].state)
    assert.equal(3, st.tasks[1].attempts)
  end)
end)

-- ---------------------------------------------------------------- the real CLIs

local plain_ws = require('orch.testing').plain_workspace

-- Runs tasks on an engine of this process (so the server answers while the
-- CLIs run); the roles come from dir/.orch/roles. Returns code, store, engine.
local function run_tasks(dir, tasks, timeout)
  roles.cache = {}
  for _, t in ipairs(tasks) do t.deps, t.files = t.deps or {}, t.files or {} end
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = 'r1', repo = dir, concurrency = 4 }
  st:create_run(run)
  st:add_tasks(run.id, tasks)
  local e = engine.new({ store = st, run = run, plan = { tasks = tasks }, workspace = plain_ws(dir) })
  local code
  e:start(function(c) code = c end)
  H.run_until(function() return code ~= nil end, timeout or 180000)
  if code == nil then
    for id in pairs(e.running) do e:cancel(id) end
    H.run_until(function() return code ~= nil end, 10000)
  end
  return code, st, e
end

local function cli_case(name, role_text, env, scenario_for)
  A.e2e({ describe = describe, it = it, pending = pending }, name, name .. ' faults', function(bin)
    local dir, srv
    before_each(function()
      dir = H.tmpdir()
      core.mkdir_p(dir .. '/home')
      core.mkdir_p(dir .. '/tmp')
    end)
    after_each(function()
      if srv then srv:stop() srv = nil end
      roles.cache = {}
      H.rm(dir)
    end)

    local function setup(rules)
      srv = assert(ms.start({ scenario = rules }))
      write_role(dir, 'coder', role_text(srv, bin))
      return env(srv, dir, bin)
    end

    it('a hung request is cancelled as a stall and retried in the same session; a cut stream ' ..
       'is retried and leaves no file of the cut reply', function()
      local tenv = setup(scenario_for('hang'))
      local code, st = run_tasks(dir, {
        { id = 'h', role = 'coder', prompt = 'create hung.txt', env = tenv },
        { id = 'c', role = 'coder', prompt = 'create cut.txt', env = tenv } })
      assert.equal(0, code, cjson.encode(st:attempts('r1', 'h')) .. cjson.encode(st:attempts('r1', 'c')))
      local ah = st:attempts('r1', 'h')
      assert.is_true(#ah >= 2)
      assert.matches('stalled', ah[1].error)
      assert.equal('hello\n', H.read(dir .. '/wt/h/hung.txt'))
      assert.is_nil(H.read(dir .. '/wt/c/cut.txt'), 'a file of the cut reply was written')
      assert.equal('done', st:task('r1', 'c').status)
      -- the retry of the hung turn went on in the same session
      local t = st:task('r1', 'h')
      assert.truthy(t.session_id)
      st:close()
    end)

    it('an auth error (401) is not retried and says what to fix', function()
      local tenv = setup({ { reply = { status = 401, message = 'invalid x-api-key',
                                       error_type = 'authentication_error' } } })
      local code, st = run_tasks(dir, { { id = 'a', role = 'coder', prompt = 'anything', env = tenv } })
      assert.equal(1, code)
      assert.equal(1, #st:attempts('r1', 'a'))
      local err = st:task('r1', 'a').error
      assert.matches('not retried: the endpoint refused the credentials', err)
      assert.matches('API_KEY', err)
      st:close()
    end)
  end)
end

local function claude_rules(kind)
  assert(kind == 'hang')
  return {
    { when = { tool_result = '.' }, reply = 'Done.' },
    { name = 'hang', when = { user = 'create hung%.txt' }, reply = { hang = true }, times = 1 },
    { name = 'cut', when = { user = 'create cut%.txt' }, times = 1,
      reply = { cut = true, text = 'writing', write = { path = 'cut.txt', content = 'half\n' } } },
    { when = { user = 'create cut%.txt' }, reply = 'I will not write it now.' },
    { when = { text = 'create (hung%.txt)' }, reply = { write = { path = '{{1}}', content = 'hello\n' } } },
  }
end

cli_case('claude', function(srv, bin)
  return ('backend: claude\ncommand: %s\ntools: edit\nstall_timeout: 4\nretries:\n  base: 0.1\n'
    .. 'endpoint:\n  base_url: %s\n'):format(bin, srv.url)
end, function(srv, dir)
  return agents.claude_env(srv, dir .. '/home', dir .. '/tmp')
end, claude_rules)

cli_case('codex', function(_, bin)
  return ('backend: codex\ncommand: %s\ntools: edit\nmodel: gpt-5.5\nstall_timeout: 4\n'
    .. 'retries:\n  base: 0.1\n'):format(bin)
end, function(srv, dir)
  local env = agents.codex_env(srv, dir .. '/codex-user', dir .. '/home', dir .. '/tmp')
  -- orch writes the task's own CODEX_HOME; the provider comes from OPENAI_BASE_URL
  env.OPENAI_BASE_URL = srv.url .. '/v1'
  env.OPENAI_API_KEY = 'dummy'
  env.CODEX_HOME = dir .. '/codex-user'
  return env
end, claude_rules)
