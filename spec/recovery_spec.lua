-- Recovery after crashes, through the real binary on real repositories:
-- clean of an unfinished run, a kill -9 during the apply, the branch the
-- run applies to, re-runs of interrupted attempts, and the processes a task
-- leaves behind (issue 12).
local core = require('orch.core')
local cjson = require('cjson')
local H = require('spec.helpers')
local store = require('orch.store')

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(dir, cmd)
  local out, code = H.sh('cd ' .. q(dir) .. ' && ' .. cmd)
  return (out:gsub('%s+$', '')), code
end

local function git_repo(dir)
  H.sh(('cd %s && git init -q -b main && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(q(dir)))
end

local plan_file = H.plan_file

local function status_json(repo)
  local r = H.orch({ 'status', '--json', '--repo', repo })
  local s = cjson.decode(r.out)
  local by = {}
  for _, t in ipairs(s.tasks) do by[t.id] = t end
  return s, by
end

-- Runs orch with args and kills it -9 once until() is true; returns the run id.
local function run_and_kill(repo, args, until_fn)
  local r = H.orch(args, {
    cwd = repo, timeout = 60000,
    on_start = function(p)
      H.run_until(until_fn, 30000)
      p:kill('SIGKILL')
    end,
  })
  assert.equals('SIGKILL', r.sig, r.err)
  return (status_json(repo)).run.id
end

describe('recovery', function()
  local root, repo

  before_each(function()
    root = H.tmpdir()
    repo = root .. '/repo'
    H.sh('mkdir -p ' .. q(repo))
    git_repo(repo)
  end)

  after_each(function() H.rm(root) end)

  it('refuses to clean an unfinished run; after clean --force, resume runs the lost tasks again', function()
    local tasks = {}
    for i = 1, 4 do tasks[i] = { id = 'c' .. i, cmd = 'echo ' .. i .. ' > c' .. i .. '.txt', files = { 'c' .. i } } end
    -- c5 waits (until the flag file exists) so that orch is killed with c1-c4 done
    tasks[5] = { id = 'c5', deps = { 'c1', 'c2', 'c3', 'c4' }, files = { 'c5' },
                 cmd = 'if [ -e ' .. root .. '/go ]; then echo 5 > c5.txt; else touch ' .. root
                   .. '/started; sleep 60; fi' }
    tasks[6] = { id = 'c6', deps = { 'c5' }, cmd = 'echo 6 > c6.txt', files = { 'c6' } }
    local pf = plan_file(root, tasks)
    local run = run_and_kill(repo, { 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
      function() return H.read(root .. '/started') ~= nil end)
    local c = H.orch({ 'clean', run, '--repo', repo })
    assert.equals(2, c.code)
    assert.matches('not finished', c.err)
    assert.matches('orch resume ' .. run, c.err, 1, true)
    assert.matches('--force', c.err, 1, true)
    assert.equals('orch/' .. run .. '/c1', sh(repo, 'git branch --list orch/' .. run .. '/c1 | tr -d " "'))
    c = H.orch({ 'clean', '--force', run, '--repo', repo })
    assert.equals(0, c.code, c.err)
    assert.equals('', sh(repo, 'git branch --list "orch/*"'))
    H.write(root .. '/go', '')
    local r = H.orch({ 'resume', run, '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
    assert.equals(0, r.code, r.err)
    assert.matches('lost their branches', r.err)
    for i = 1, 6 do assert.equals(tostring(i) .. '\n', H.read(repo .. '/c' .. i .. '.txt'), 'c' .. i) end
  end)

  it('completes an apply killed -9 half-way, never touching the user\'s own changes', function()
    -- a task that writes 2,000 files and changes a tracked one
    local pf = plan_file(root, { { id = 'many', files = { 'gen' },
      cmd = 'mkdir gen && for i in $(seq 1 2000); do echo "$i" > gen/f$i; done; echo changed > README' } })
    H.write(repo .. '/mine.txt', 'untracked, the user\'s\n')
    sh(repo, 'echo notes > notes.txt && git add notes.txt && git commit -qm notes')
    local head = sh(repo, 'git rev-parse HEAD')
    local r = H.orch({ 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
      { cwd = repo, timeout = 60000, env = { ORCH_TEST_APPLY_KILL = '700' } })
    assert.equals('SIGKILL', r.sig, r.err)
    -- half-written: some files there, HEAD not moved
    local n = tonumber((sh(repo, 'ls gen 2>/dev/null | wc -l')))
    assert.is_true(n > 0 and n < 2000, 'files written before the kill: ' .. n)
    assert.equals(head, sh(repo, 'git rev-parse HEAD'))
    -- the user edits a tracked file in the meantime: refused, nothing touched
    sh(repo, 'echo edit >> notes.txt')
    r = H.orch({ 'resume', '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
    assert.equals(1, r.code, r.err)
    assert.matches('uncommitted changes (notes.txt) since', r.err, 1, true)
    assert.equals(n, tonumber((sh(repo, 'ls gen | wc -l'))))
    assert.equals('notes\nedit\n', H.read(repo .. '/notes.txt'))
    -- once the user's change is gone, resume completes the apply
    sh(repo, 'git checkout -q notes.txt')
    r = H.orch({ 'resume', '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
    assert.equals(0, r.code, r.err)
    assert.equals('2000', sh(repo, 'ls gen | wc -l'))
    assert.equals('changed\n', H.read(repo .. '/README'))
    assert.equals('?? mine.txt', sh(repo, 'git status --porcelain'))
    assert.equals("untracked, the user's\n", H.read(repo .. '/mine.txt'))
    assert.equals('', sh(repo, 'git for-each-ref refs/orch/*/apply-head refs/orch/*/apply-tip'))
  end)

  it('starts a re-run after kill -9 from a clean base, the interrupted attempt kept in a ref', function()
    local pf = plan_file(root, { { id = 'a', files = { 'log' },
      cmd = 'echo line >> log.txt; if [ ! -e ' .. root .. '/go ]; then touch ' .. root
        .. '/started; sleep 60; fi' } })
    local run = run_and_kill(repo, { 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
      function() return H.read(root .. '/started') ~= nil end)
    H.write(root .. '/go', '')
    local r = H.orch({ 'resume', run, '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
    assert.equals(0, r.code, r.err)
    assert.equals('line\n', H.read(repo .. '/log.txt'))    -- once, not twice
    local kept = 'refs/orch/' .. run .. '/attempts/a/attempt-1'
    assert.equals('line', sh(repo, 'git show ' .. kept .. ':log.txt'))
  end)

  it('after kill -9 mid-output the stored lines are a gapless prefix; resume runs the task again', function()
    -- output chunks (docs/state.md): a kill loses at most the last batch
    local pf = plan_file(root, { { id = 'out',
      cmd = 'if [ -e ' .. root .. '/go ]; then echo again; else seq 1 100000000; fi' } })
    local db = repo .. '/.orch/orch.db'
    local function stored()
      local st = store.open(db, { readonly = true })
      if not st then return 0 end
      local ok, r = pcall(st.h.first, st.h, [[SELECT sum(coalesce(lines, 1)) AS n FROM events
                                              WHERE kind = 'output']])
      st:close()
      return ok and r and r.n or 0
    end
    local run = run_and_kill(repo, { 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
      function() return stored() >= 100000 end)
    local st = assert(store.open(db, { readonly = true }))
    local n = 0
    for ev in st:events(run, 'out', { attempt = 1, output = true }) do
      n = n + 1
      if ev.data ~= tostring(n) then error(('stored line %d is %q'):format(n, tostring(ev.data))) end
    end
    st:close()
    assert.is_true(n >= 100000, 'lines stored before the kill: ' .. n)
    H.write(root .. '/go', '')
    local r = H.orch({ 'resume', run, '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
    assert.equals(0, r.code, r.err)
    local _, by = status_json(repo)
    assert.equals('done', by.out.status)
    st = assert(store.open(db, { readonly = true }))
    local again = {}
    for ev in st:events(run, 'out', { attempt = 2, output = true }) do again[#again + 1] = ev.data end
    st:close()
    assert.same({ 'again' }, again)
  end)

  -- processes whose command line is `sleep N` for the given Ns
  local function sleeping(...)
    local found = {}
    for _, n in ipairs({ ... }) do
      for _, p in ipairs(H.ps_matching('sleep ' .. n)) do
        if p.state ~= 'Z' then found[#found + 1] = n end
      end
    end
    return table.concat(found, ' ')
  end

  local function kill_sleeps()
    for n = 7501, 7520 do
      for _, p in ipairs(H.ps_matching('sleep ' .. n)) do core.kill(p.pid, 'SIGKILL') end
    end
  end

  it('ends what a task started when it ends: its group, its session, escapees', function()
    local pf = plan_file(root, {
      { id = 'bg', cmd = 'sleep 7501 & echo started', files = { 'bg' } },
      { id = 'esc', files = { 'esc' },
        cmd = 'setsid -f sleep 7502; env -i setsid -f sleep 7503; (setsid sh -c "sleep 7504 & wait" &); echo ok' },
      { id = 'slow', timeout = 1, on_failure = 'soft', files = { 'slow' }, cmd = 'sleep 7505 & sleep 60' },
      -- runs after the others ended, while orch is live
      { id = 'check', deps = { 'bg', 'esc', 'slow' }, files = { 'check' },
        cmd = "sleep 0.3; ps -eo args | grep -E '^sleep 750[1-5]' > " .. root .. '/left; true' },
    })
    local ok, err = pcall(function()
      local r = H.orch({ 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
      assert.equals(0, r.code, r.err)
      assert.equals('', H.read(root .. '/left'))
      assert.equals('', sleeping(7501, 7502, 7503, 7504, 7505))
    end)
    kill_sleeps()
    assert(ok, err)
  end)

  it('ends what a cancelled task started, while the run goes on', function()
    local sockdir = root .. '/sock'
    local pf = plan_file(root, {
      { id = 'c', files = { 'c' }, cmd = 'sleep 7506 & setsid -f sleep 7507; env -i setsid -f sleep 7508; '
        .. 'touch ' .. root .. '/started; sleep 60' },
      { id = 'w', files = { 'w' }, cmd = 'while [ ! -e ' .. root .. '/stop ]; do sleep 0.1; done' } })
    local ok, err = pcall(function()
      local r = {}
      local p = assert(core.spawn({
        argv = { H.ORCH, 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
        cwd = repo, env = { ORCH_SOCKET_DIR = sockdir },
        stderr = function(l) r.err = (r.err or '') .. l .. '\n' end,
        on_exit = function(code) r.code = code or -1 end }))
      assert.is_true(H.run_until(function() return H.read(root .. '/started') ~= nil end, 30000))
      -- (setsid -f's child may exec its sleep a little after the task went on)
      H.run_until(function() return sleeping(7506, 7507, 7508) == '7506 7507 7508' end, 10000)
      assert.equals('7506 7507 7508', sleeping(7506, 7507, 7508))
      local rr = H.orch({ 'repl', '--repo', repo },
        { input = "orch.cancel('c')\n", env = { ORCH_SOCKET_DIR = sockdir } })
      assert.equals(0, rr.code, rr.err .. rr.out)
      assert.is_true(H.run_until(function() return sleeping(7506, 7507, 7508) == '' end, 10000),
        'left: ' .. sleeping(7506, 7507, 7508))
      assert.is_nil(r.code)                                   -- the run went on
      H.write(root .. '/stop', '')
      assert.is_true(H.run_until(function() return r.code ~= nil end, 30000))
      assert.equals(1, r.code, r.err)                         -- a cancelled task fails the run
      if not r.code then p:kill('SIGKILL') end
    end)
    kill_sleeps()
    assert(ok, err)
  end)

  it('after kill -9, resume ends leftovers of every task, env -i setsid escapees too', function()
    local pf = plan_file(root, {
      { id = 'd', cmd = 'echo d > d.txt', files = { 'd' } },
      { id = 'a', deps = { 'd' }, files = { 'a' },
        cmd = 'if [ -e ' .. root .. '/go ]; then echo a > a.txt; exit 0; fi; env -i setsid -f sleep 7511; '
          .. 'setsid -f sleep 7512; touch ' .. root .. '/started; sleep 60' } })
    local ok, err = pcall(function()
      local run = run_and_kill(repo, { 'run', '--plan', pf, '--repo', repo, '--yes', '--no-tui' },
        function() return H.read(root .. '/started') ~= nil end)
      -- what a finished task left (as if orch had died before its sweep)
      H.sh('env ORCH_RUN=' .. run .. ' ORCH_TASK=d setsid -f sleep 7513 </dev/null >/dev/null 2>&1')
      assert.is_true(H.run_until(function() return sleeping(7511, 7512, 7513) == '7511 7512 7513' end, 5000))
      H.write(root .. '/go', '')
      local r = H.orch({ 'resume', run, '--repo', repo, '--yes', '--no-tui' }, { cwd = repo, timeout = 60000 })
      assert.equals(0, r.code, r.err)
      assert.matches('stopped %d+ left%-over task process', r.err)
      assert.is_true(H.run_until(function() return sleeping(7511, 7512, 7513) == '' end, 5000),
        'left: ' .. sleeping(7511, 7512, 7513))
      assert.equals('a\n', H.read(repo .. '/a.txt'))
    end)
    kill_sleeps()
    assert(ok, err)
  end)
end)
