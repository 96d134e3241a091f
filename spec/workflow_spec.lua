-- The shipped workflow code_review_test end to end: the orchestrator plans
-- (a cyclic first plan is sent back), coders run in parallel on the HTTP
-- backends against the scripted model server, a question is answered by
-- the orchestrator from the plan, a review sends the coder back once into
-- the same conversation, testers pass, the test gate runs, the result is
-- merged; the plan gate without a terminal stops with exit 3 and
-- `orch resume --yes` finishes; a role edited during the run is used by
-- the next review, and a broken edit keeps the old one.
local core = require('orch.core')
local cjson = require('cjson')
local T = require('orch.testing')
local H = require('spec.helpers')

local ORCH, CODER = 'You are the orchestrator', 'You are a coder'
local REVIEWER, TESTER = 'You are a code reviewer', 'You are a tester'

local PLAN = { goal = 'three files', tasks = {
  { id = 'a', role = 'coder', prompt = 'write a.txt', files = { 'a.txt', 'a_test.txt' } },
  { id = 'b', role = 'coder', prompt = 'write b.txt', files = { 'b.txt' } },
  { id = 'c', role = 'coder', prompt = 'write c.txt', deps = { 'a', 'b' }, files = { 'c.txt' } } } }

local function cyclic()
  local p = cjson.decode(cjson.encode(PLAN))
  p.tasks[1].deps = { 'c' }
  return p
end

local function scenario(o)
  o = o or {}
  local rules = {
    { when = { system = ORCH, user = 'asks:' }, reply = 'Use UTF-8 and end with a newline.' },
    { when = { system = ORCH, user = 'Plan this goal' }, times = 1,
      reply = '```json\n' .. cjson.encode(cyclic()) .. '\n```' },
    { when = { system = ORCH, user = 'cannot be used' },
      reply = 'Fixed:\n```json\n' .. cjson.encode(PLAN) .. '\n```' },
    { when = { system = ORCH }, reply = 'Noted.' },
    { when = { system = CODER, tool_result = 'UTF%-8' },
      reply = { write = { path = 'b.txt', content = 'B\n' }, delay = o.coder_delay } },
    { when = { system = CODER, tool_result = true }, reply = 'Done.' },
    { when = { system = CODER, user = 'write b.txt' }, times = 1,
      reply = { tool_calls = { { name = 'ask_orchestrator', input = { question = 'Which encoding for b.txt?' } } } } },
    { when = { system = CODER, user = 'asks for changes' },
      reply = { write = { path = 'a_test.txt', content = 'tests a\n' } } },
    { when = { system = CODER, user = 'write (%a)%.txt' },
      reply = { write = { path = '{{1}}.txt', content = 'from {{1}}\n' }, delay = o.coder_delay } },
    { when = { system = REVIEWER, user = 'task a ' }, times = o.review_changes == false and 0 or 1,
      reply = 'No test.\nVERDICT: changes: add a_test.txt' },
    { when = { system = REVIEWER }, reply = 'Fine.\nVERDICT: approve' },
    { when = { system = TESTER }, reply = 'VERDICT: pass' },
  }
  return { rules = rules }
end

local function requests(srv, sys_pat, user_pat)
  local out = {}
  for _, q in ipairs(srv:requests()) do
    if (q.system or ''):find(sys_pat, 1, true) and (not user_pat or (q.last_user or ''):find(user_pat)) then
      out[#out + 1] = q
    end
  end
  return out
end

local function all_text(q)
  local parts = {}
  for _, m in ipairs(q.messages or {}) do
    parts[#parts + 1] = m.text or ''
    for _, r in ipairs(m.tool_results or {}) do parts[#parts + 1] = r.output or '' end
  end
  return table.concat(parts, '\n')
end

describe('code_review_test', function()
  local repo, srv
  before_each(function()
    repo = T.repo({ ['README.md'] = 'x\n', ['test.sh'] = 'test -f a.txt && test -f b.txt && test -f c.txt\n' })
  end)
  after_each(function()
    if srv then srv:stop() srv = nil end
    repo:rm()
  end)

  it('plans, codes in parallel, answers, reviews once back, tests, gates and merges', function()
    srv = T.server(scenario())
    local r = T.run({ repo = repo, server = srv, goal = 'three files', timeout = 120000 })
    assert.equal(0, r.code, r.err)
    -- the cyclic plan went back with the cycle named
    local orch = requests(srv, ORCH)
    assert.is_true(#orch >= 2)
    assert.matches('cycle', orch[2].last_user)
    -- every task and follow-up, with its role
    local want = { a = 'coder', b = 'coder', c = 'coder', ['a.review1'] = 'reviewer',
      ['a.fix1'] = 'coder', ['a.review2'] = 'reviewer', ['b.review1'] = 'reviewer',
      ['c.review1'] = 'reviewer', ['a.test1'] = 'tester', ['b.test1'] = 'tester',
      ['c.test1'] = 'tester' }
    for id, role in pairs(want) do
      local t = r:task(id)
      assert.is_table(t, id)
      assert.equal('done', t.status, id)
      assert.equal(role, t.role, id)
    end
    assert.equal('done', r:task('gate.test').status)
    -- the fix continued the coder's own conversation
    assert.equal(r:task('a').session_id, r:task('a.fix1').session_id)
    local fix = requests(srv, CODER, 'asks for changes')[1]
    assert.matches('write a%.txt', all_text(fix))
    -- the question went to the orchestrator with the plan in context; the
    -- coder's next request has the answer
    local asked = requests(srv, ORCH, 'asks:')[1]
    assert.matches('Which encoding', asked.last_user)
    assert.matches('write c%.txt', all_text(asked))
    local b_next = requests(srv, CODER, 'write b%.txt')
    assert.matches('Use UTF%-8', all_text(b_next[#b_next]))
    -- all three changes are on the integration branch and on main
    for _, f in ipairs({ 'a.txt', 'b.txt', 'c.txt', 'a_test.txt' }) do
      assert.is_string(r:file(f), f)
      assert.is_string(repo:file(f, 'main'), f)
    end
    -- questions and answers are stored
    local qs = r:questions()
    assert.equal(1, #qs)
    assert.equal('b', qs[1].task)
    assert.equal('orchestrator', qs[1].by)
    assert.matches('UTF%-8', qs[1].answer)
    -- shown in orch logs and orch status (text and --json)
    local logs = T.spawn({ T.orch_bin(), 'logs', r.run_id, 'b', '--repo', repo.dir }).out
    assert.matches('%[question%] Which encoding for b%.txt%?', logs)
    assert.matches('%[answer%] %(orchestrator%) Use UTF%-8', logs)
    local st = T.spawn({ T.orch_bin(), 'status', '--repo', repo.dir }).out
    assert.matches('questions: 1', st)
    assert.equal('Which encoding for b.txt?', r.status.questions[1].question)
  end)

  it('with review_rounds=0 nobody is sent back', function()
    srv = T.server(scenario())
    local r = T.run({ repo = repo, server = srv, goal = 'three files', args = { '--set', 'review_rounds=0' } })
    assert.equal(0, r.code, r.err)
    assert.is_nil(r:task('a.fix1'))
    assert.matches('changes still requested', r.err)
  end)

  it('stops at the plan gate without a terminal (exit 3); resume --yes finishes', function()
    srv = T.server(scenario())
    local tmp = repo.dir .. '/.git/tmp'
    T.sh('mkdir -p ' .. tmp)
    local r = T.run({ repo = repo, server = srv, goal = 'three files', yes = false,
                      env = { TMPDIR = tmp } })
    assert.equal(3, r.code, r.err)
    -- the orchestrator's scratch directory went with the orch that planned
    assert.equal('', T.sh('ls -A ' .. tmp))
    assert.matches('waiting for your approval', r.err)
    assert.matches('orch resume', r.err)
    assert.is_nil(repo:file('a.txt', 'main'))
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    local again = T.spawn({ T.orch_bin(), 'resume', '--yes', '--repo', repo.dir, '--no-tui' },
      { cwd = repo.dir, env = env, timeout = 120000 })
    assert.equal(0, again.code, again.err)
    assert.equal('from a\n', repo:file('a.txt', 'main'))
    assert.is_string(repo:file('a_test.txt', 'main')) -- the workflow's follow-ups ran too
  end)

  it('waits at the apply gate without a terminal (exit 3); resume --yes applies', function()
    srv = T.server(scenario())
    local r = T.run({ repo = repo, server = srv, plan = PLAN, workflow = 'code_only', yes = false,
                      args = { '--set', 'test_cmd=false' } })
    -- no terminal: the plan gate stops first
    assert.equal(3, r.code, r.err)
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    -- past the plan gate (--yes would pass both): a resume without --yes
    -- from a terminal-less shell asks again, so approve the plan by hand
    local st = require('orch.store').open(repo.dir .. '/.orch/orch.db')
    st:set_run(r.run_id, { status = 'pending', error = require('orch.store').NULL })
    st:close()
    local again = T.spawn({ T.orch_bin(), 'resume', '--repo', repo.dir, '--no-tui' },
      { cwd = repo.dir, env = env, timeout = 120000 })
    assert.equal(3, again.code, again.err)
    assert.matches('waits for your approval: its work is on orch/', again.err)
    assert.is_nil(repo:file('a.txt', 'main'))
    assert.is_string(repo:file('a.txt', 'orch/' .. r.run_id .. '/integration'))
    r:refresh()
    assert.equal('waiting', r.status.run.status)
    local last = T.spawn({ T.orch_bin(), 'resume', '--yes', '--repo', repo.dir, '--no-tui' },
      { cwd = repo.dir, env = env, timeout = 120000 })
    assert.equal(0, last.code, last.err)
    assert.equal('from a\n', repo:file('a.txt', 'main'))
  end)

  it('a reviewer role edited during the run is used next; a broken edit keeps it', function()
    srv = T.server(scenario({ coder_delay = 1500, review_changes = false }))
    core.mkdir_p(repo.dir .. '/.orch/roles')
    H.write(repo.dir .. '/.orch/roles/reviewer.yaml', 'system_prompt: |\n  You are a code reviewer. FIRST\n')
    local plan = { tasks = {
      { id = 'a', role = 'coder', prompt = 'write a.txt', files = { 'a.txt' } },
      { id = 'b', role = 'coder', prompt = 'write b.txt', files = { 'b.txt' }, deps = { 'a.review1' } } } }
    -- b waits on a's review only through the plan: a.review1 exists once a ends,
    -- so plan it as a follow-up-free chain instead: b after a
    plan.tasks[2].deps = { 'a' }
    local path = repo.dir .. '/.orch-plan.json'
    H.write(path, cjson.encode(plan))
    local env = T.env_for(srv, { ORCH_BACKEND = 'openai' })
    local done, res = false, {}
    local p = assert(core.spawn({ argv = { T.orch_bin(), 'run', 'code_review_test', '--plan', path,
      '--repo', repo.dir, '--yes', '--no-tui', '--set', 'test=false', '--set', 'test_cmd=false' },
      cwd = repo.dir, env = env,
      stderr = function(l) res[#res + 1] = l end, stdout = function() end,
      on_exit = function(c) res.code, done = c, true end }))
    assert(p)
    -- while a's coder is at work: a new prompt
    assert.is_true(H.run_until(function() return #requests(srv, CODER, 'write a') > 0 end, 30000))
    H.write(repo.dir .. '/.orch/roles/reviewer.yaml', 'system_prompt: |\n  You are a code reviewer. SECOND\n')
    -- while b's coder is at work: a broken one
    assert.is_true(H.run_until(function() return #requests(srv, CODER, 'write b') > 0 end, 30000))
    H.write(repo.dir .. '/.orch/roles/reviewer.yaml', 'system_prompt: [broken\n')
    assert.is_true(H.run_until(function() return done end, 60000))
    local err = table.concat(res, '\n')
    assert.equal(0, res.code, err)
    local reviews = requests(srv, REVIEWER)
    assert.equal(2, #reviews)
    assert.matches('SECOND', reviews[1].system)
    assert.matches('SECOND', reviews[2].system)
    assert.matches('roles not reloaded, the old ones stay: .*reviewer.yaml:%d', err)
  end)
end)

-- Questions from a coder on Claude Code, one on Codex and one on the HTTP
-- backend, each through ask_orchestrator (orch mcp for the CLIs).
local agents = require('spec.cli_agents')
local bf = { describe = describe, it = it, pending = pending }
agents.e2e(bf, 'claude', 'questions from Claude Code', function(claude)
  agents.e2e(bf, 'codex', 'Codex and an HTTP coder', function(codex)
    it('reach the orchestrator with the plan, and each answer reaches its coder', function()
      local repo = T.repo({ ['README.md'] = 'x\n' })
      local plan = { goal = 'ask', tasks = {
        { id = 'qa', role = 'coder', backend = 'claude', prompt = 'qa: write qa.txt', files = { 'qa.txt' } },
        -- a model codex has no metadata for: it then offers plain function
        -- tools (for its own models it nests them in a JavaScript tool)
        { id = 'qb', role = 'coder', backend = 'codex', model = 'scripted-coder', prompt = 'qb: write qb.txt',
          files = { 'qb.txt' } },
        { id = 'qc', role = 'coder', backend = 'openai', prompt = 'qc: write qc.txt', files = { 'qc.txt' } } } }
      local function ask_tool(req)
        for _, n in ipairs(req.tools or {}) do if n:find('ask_orchestrator', 1, true) then return n end end
        for _, n in ipairs(req.tools or {}) do if n == 'mcp__orch' then return 'mcp__orch__ask_orchestrator' end end
        return 'ask_orchestrator'
      end
      local srv = T.server({ rules = {
        { when = { system = ORCH, user = 'Agent .* asks:.*(q%a)%.txt' },
          reply = 'ANSWER-{{1}}: yes, one line.' },
        { when = { system = ORCH }, reply = 'Noted.' },
        { when = { system = CODER, tool_result = 'ANSWER%-(q%a)' },
          reply = { write = { path = '{{1}}.txt', content = 'answered\n' } } },
        { when = { system = CODER, tool_result = true }, reply = 'Done.' },
        { when = { system = CODER, user = '(q%a): write' },
          reply = function(req)
            local id = req.last_user:match('(q%a): write')
            return { tool_calls = { { name = ask_tool(req),
              input = { question = 'Should ' .. id .. '.txt be one line?' } } } }
          end },
        { when = { system = REVIEWER }, reply = 'VERDICT: approve' },
        { when = { system = TESTER }, reply = 'VERDICT: pass' },
      } })
      local path = claude:match('^(.*)/') .. ':' .. codex:match('^(.*)/') .. ':' .. os.getenv('PATH')
      local home = H.tmpdir() -- the CLIs' own state stays out of the user's HOME
      local r = T.run({ repo = repo, server = srv, plan = plan, workflow = 'code_review_test',
        env = { PATH = path, HOME = home }, args = { '--set', 'test=false', '--set', 'test_cmd=false' } })
      srv:stop()
      assert.equal(0, r.code, r.err)
      for _, id in ipairs({ 'qa', 'qb', 'qc' }) do
        local asked = requests(srv, ORCH, 'Should ' .. id .. '%.txt')
        assert.equal(1, #asked, id)
        assert.matches('qa: write qa%.txt', all_text(asked[1]), nil, id) -- the plan is in context
        local next_req
        for _, q in ipairs(requests(srv, CODER)) do
          if all_text(q):find('ANSWER%-' .. id) then next_req = q end
        end
        assert.is_table(next_req, id .. ': the answer reached the coder')
        assert.equal('answered\n', r:file(id .. '.txt'), id)
      end
      assert.equal(3, #r:questions())
      repo:rm()
      H.rm(home)
    end)
  end)
end)

describe('worktree bootstrap', function()
  it('runs the role and workflow hooks in each new worktree before the agent, with ORCH_PORT', function()
    local repo = T.repo({ ['.gitignore'] = '.env\n', ['README.md'] = 'x\n' })
    H.write(repo.dir .. '/.env', 'SECRET=abc\n')
    core.mkdir_p(repo.dir .. '/.orch/roles')
    H.write(repo.dir .. '/.orch/roles/coder.yaml',
      'bootstrap: cp "$ORCH_REPO/.env" . && echo "port $ORCH_PORT" > port.txt\n')
    local wf = repo.dir .. '/.orch/flow.lua'
    H.write(wf, [[
      local W = require('orch.workflow')
      return W.define({ test_cmd = false,
        bootstrap = function(w, task) if task.id == 'bad' then return 'exit 7' end end })
    ]])
    local srv = T.server({ rules = {
      { when = { tool_result = 'SECRET' }, reply = { write = { path = 'saw.txt', content = 'saw it\n' } } },
      { when = { tool_result = true }, reply = 'Done.' },
      { when = { user = 'look' }, reply = { tool_calls = { { name = 'read', input = { path = '.env' } } } } },
    } })
    local r = T.run({ repo = repo, server = srv, workflow = wf, plan = { tasks = {
      { id = 'good', role = 'coder', prompt = 'look at .env', files = { 'saw.txt', 'port.txt' } },
      { id = 'bad', role = 'coder', prompt = 'look', on_failure = 'soft' } } } })
    srv:stop()
    assert.equal(0, r.code, r.err)
    assert.equal('done', r:task('good').status)
    assert.equal('saw it\n', r:file('saw.txt'))
    assert.matches('^port %d+\n$', r:file('port.txt'))
    assert.is_nil(r:file('.env')) -- ignored: never committed
    assert.equal('failed', r:task('bad').status)
    assert.matches('bootstrap `exit 7` failed: exit status 7', r.err)
    repo:rm()
  end)
end)

describe('a workflow definition', function()
  it('is reloaded when edited during the run; a broken edit keeps the old hooks', function()
    local repo = T.repo({ ['README.md'] = 'x\n' })
    local wf = repo.dir .. '/.orch/flow.lua'
    core.mkdir_p(repo.dir .. '/.orch')
    local function version(v)
      return ([[
        local W = require('orch.workflow')
        return W.define({ test_cmd = false,
          on_task_end = function(w, task)
            if not task.id:find('.', 1, true) then
              w:add({ id = task.id .. '.after', cmd = 'echo VERSION > ' .. task.id .. '.v',
                      deps = { task.id }, files = { task.id .. '.v' } })
            end
          end })
      ]]):gsub('VERSION', v)
    end
    H.write(wf, version('v1'))
    local flag = repo.dir .. '/.git/flag'
    local plan = { tasks = {
      { id = 'a', cmd = ('while [ ! -e %s1 ]; do sleep 0.05; done'):format(flag) },
      { id = 'b', cmd = ('while [ ! -e %s2 ]; do sleep 0.05; done'):format(flag), deps = { 'a' } } } }
    H.write(repo.dir .. '/.git/plan.json', cjson.encode(plan))
    local done, res = false, {}
    assert(core.spawn({ argv = { T.orch_bin(), 'run', wf, '--plan', repo.dir .. '/.git/plan.json',
      '--repo', repo.dir, '--yes', '--no-tui' }, cwd = repo.dir,
      stderr = function(l) res[#res + 1] = l end, stdout = function() end,
      on_exit = function(c) res.code, done = c, true end }))
    local function seen(pat)
      return H.run_until(function() return table.concat(res, '\n'):find(pat) ~= nil end, 30000)
    end
    assert.is_true(seen('a: started'), table.concat(res, '\n'))
    H.write(wf, version('v2'))
    assert.is_true(seen('flow%.lua reloaded'), table.concat(res, '\n'))
    H.write(flag .. '1', '')
    assert.is_true(seen('b: started'))
    H.write(wf, 'return W.define({ oops')
    assert.is_true(seen('not reloaded, the old version stays'), table.concat(res, '\n'))
    H.write(flag .. '2', '')
    assert.is_true(H.run_until(function() return done end, 30000))
    assert.equal(0, res.code, table.concat(res, '\n'))
    assert.equal('v2\n', repo:file('a.v', 'main'))
    assert.equal('v2\n', repo:file('b.v', 'main'))
    repo:rm()
  end)

  it('sets the run\'s failure policy and merge strategy', function()
    local repo = T.repo({ ['README.md'] = 'x\n' })
    local wf = repo.dir .. '/.orch/flow.lua'
    core.mkdir_p(repo.dir .. '/.orch')
    H.write(wf, [[
      local W = require('orch.workflow')
      return W.define({ test_cmd = false, merge = 'squash',
        policy = function(task) return task.id == 'flaky' and 'soft' or 'hard' end })
    ]])
    local r = T.run({ repo = repo, workflow = wf, plan = { tasks = {
      { id = 'flaky', cmd = 'exit 3' },
      { id = 'w', cmd = 'echo w > w.txt; echo more > m.txt', files = { 'w.txt', 'm.txt' } } } } })
    assert.equal(0, r.code, r.err)
    assert.equal('failed', r:task('flaky').status)
    assert.equal('w\n', repo:file('w.txt', 'main'))
    -- squashed: no merge commit on the integration branch
    assert.equal('', (repo:git('log --merges --format=%H orch/' .. r.run_id .. '/integration')))
    repo:rm()
  end)
end)

describe('a conflict resolved by hand', function()
  it('is merged on resume without running the agent again (HTTP backend)', function()
    local repo = T.repo({ ['README.md'] = 'x\n' })
    local srv = T.server({ rules = {
      { when = { tool_result = true }, reply = 'Done.' },
      { when = { user = 'write f as (%a)' }, reply = { write = { path = 'f.txt', content = '{{1}}\n' } } },
    } })
    local plan = { tasks = { { id = 'a', role = 'coder', prompt = 'write f as a' },
                             { id = 'b', role = 'coder', prompt = 'write f as b', deps = {} } } }
    local r = T.run({ repo = repo, server = srv, plan = plan, args = { '--concurrency', '1' } })
    assert.equal(1, r.code, r.err)
    local conflicted = r:task('a').status == 'conflict' and 'a' or 'b'
    assert.equal('conflict', r:task(conflicted).status)
    local n = #srv:requests()
    local wt = r:task(conflicted).worktree
    local _, code = T.sh(('cd %s && git merge -q orch/%s/integration; printf "a\\nb\\n" > f.txt && ' ..
      'git add f.txt && git -c user.name=t -c user.email=t@t commit -qm resolved'):format(T.quote(wt), r.run_id))
    assert.equal(0, code)
    local again = T.spawn({ T.orch_bin(), 'resume', '--yes', '--repo', repo.dir, '--no-tui' },
      { cwd = repo.dir, env = T.env_for(srv, { ORCH_BACKEND = 'openai' }) })
    srv:stop()
    assert.equal(0, again.code, again.err)
    assert.equal(n, #srv:requests()) -- the agent was not asked again
    assert.equal('a\nb\n', repo:file('f.txt', 'main'))
    repo:rm()
  end)
end)
