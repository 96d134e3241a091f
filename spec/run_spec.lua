-- `orch run --plan`, `orch resume`, `orch status`: the scheduler, the
-- store and the exec backend through the real binary on real repositories.
local core = require('orch.core')
local cjson = require('cjson')
local H = require('spec.helpers')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

-- Writes a JSON plan and returns its path.
local function plan_file(dir, tasks, name)
  local path = dir .. '/' .. (name or 'plan.json')
  H.write(path, cjson.encode({ goal = 'spec', tasks = tasks }))
  return path
end

-- Attempt rows of the latest run, by task id: {started_at, finished_at, n}.
local function attempts(db)
  local h = assert(core.db.open(db, { readonly = true }))
  local by = {}
  for r in h:rows([[SELECT * FROM attempts WHERE run_id =
                     (SELECT id FROM runs ORDER BY created_at DESC LIMIT 1) ORDER BY started_at]]) do
    by[r.task_id] = by[r.task_id] or {}
    table.insert(by[r.task_id], r)
  end
  h:close()
  return by
end

local function status_json(dir)
  local r = H.orch({ 'status', '--json', '--repo', dir })
  assert.equal(0, r.code, r.err)
  local s = cjson.decode(r.out)
  local by = {}
  for _, t in ipairs(s.tasks) do by[t.id] = t end
  return s, by
end

local function max_overlap(list)
  local ev = {}
  for _, a in ipairs(list) do
    ev[#ev + 1] = { a.started_at, 1 }
    ev[#ev + 1] = { a.finished_at, -1 }
  end
  table.sort(ev, function(x, y)
    if x[1] == y[1] then return x[2] < y[2] end
    return x[1] < y[1]
  end)
  local cur, max = 0, 0
  for _, e in ipairs(ev) do
    cur = cur + e[2]
    if cur > max then max = cur end
  end
  return max
end

local function overlaps(a, b)
  return a.started_at < b.finished_at and b.started_at < a.finished_at
end

describe('orch run --plan', function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    git_repo(dir)
  end)
  after_each(function() H.rm(dir) end)

  it('never runs more than --concurrency tasks at once, and reaches it', function()
    local tasks = {}
    for i = 1, 8 do tasks[i] = { id = 't' .. i, cmd = 'sleep 1' } end
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir,
                       '--concurrency', '4', '--yes', '--no-tui' })
    assert.equal(0, r.code, r.err)
    local all = {}
    for _, list in pairs(attempts(dir .. '/.orch/orch.db')) do
      assert.equal(1, #list)
      all[#all + 1] = list[1]
    end
    assert.equal(8, #all)
    assert.equal(4, max_overlap(all))
  end)

  for _, shape in ipairs({ 'diamond', 'chain', 'fanout' }) do
    it('starts no task before its deps finished: ' .. shape, function()
      local tasks
      if shape == 'diamond' then
        tasks = { { id = 'a', cmd = 'sleep 0.1' }, { id = 'b', cmd = 'sleep 0.2', deps = { 'a' } },
                  { id = 'c', cmd = 'sleep 0.1', deps = { 'a' } },
                  { id = 'd', cmd = 'true', deps = { 'b', 'c' } } }
      elseif shape == 'chain' then
        tasks = {}
        for i = 1, 6 do
          tasks[i] = { id = 'c' .. i, cmd = 'sleep 0.05', deps = i > 1 and { 'c' .. (i - 1) } or nil }
        end
      else
        tasks = { { id = 'root', cmd = 'sleep 0.1' } }
        for i = 1, 12 do tasks[#tasks + 1] = { id = 'f' .. i, cmd = 'sleep 0.05', deps = { 'root' } } end
        local all = {}
        for i = 1, 12 do all[i] = 'f' .. i end
        tasks[#tasks + 1] = { id = 'join', cmd = 'true', deps = all }
      end
      local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
      assert.equal(0, r.code, r.err)
      local at = attempts(dir .. '/.orch/orch.db')
      for _, t in ipairs(tasks) do
        assert.is_not_nil(at[t.id], t.id)
        for _, d in ipairs(t.deps or {}) do
          assert.is_true(at[t.id][1].started_at >= at[d][1].finished_at, t.id .. ' after ' .. d)
        end
      end
    end)
  end

  it('never overlaps two tasks whose files overlap; disjoint ones do overlap', function()
    local tasks = {
      { id = 'a', cmd = 'sleep 0.5', files = { 'src/x.c', 'README' } },
      { id = 'b', cmd = 'sleep 0.5', files = { './src//x.c' } },
      { id = 'c', cmd = 'sleep 0.5', files = { 'src/y.c' } },
      { id = 'd', cmd = 'sleep 0.5', files = { 'src/' } },
    }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    local at = attempts(dir .. '/.orch/orch.db')
    local a, b, c, d = at.a[1], at.b[1], at.c[1], at.d[1]
    assert.is_false(overlaps(a, b))
    assert.is_false(overlaps(a, d)) -- src/ covers src/x.c
    assert.is_false(overlaps(c, d))
    assert.is_true(overlaps(a, c) or overlaps(b, c))
  end)

  it('hard failure blocks dependents, unrelated tasks finish, exit 1', function()
    local tasks = {
      { id = 'bad', cmd = 'exit 7' },
      { id = 'dep', cmd = 'true', deps = { 'bad' } },
      { id = 'dep2', cmd = 'true', deps = { 'dep' } },
      { id = 'other', cmd = 'sleep 0.2' },
    }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
    assert.equal(1, r.code)
    local s, by = status_json(dir)
    assert.equal('failed', s.run.status)
    assert.equal('failed', by.bad.status)
    assert.equal('blocked', by.dep.status)
    assert.equal('blocked', by.dep2.status)
    assert.equal(0, by.dep.attempts)
    assert.equal('done', by.other.status)
  end)

  it('soft failure lets dependents run; skip ends skipped and dependents run', function()
    local tasks = {
      { id = 'soft', cmd = 'exit 1', on_failure = 'soft' },
      { id = 'after_soft', cmd = 'true', deps = { 'soft' } },
      { id = 'skip', cmd = 'exit 1', on_failure = 'skip' },
      { id = 'after_skip', cmd = 'true', deps = { 'skip' } },
    }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    local _, by = status_json(dir)
    assert.equal('failed', by.soft.status)
    assert.equal('done', by.after_soft.status)
    assert.equal('skipped', by.skip.status)
    assert.equal('done', by.after_skip.status)
  end)

  it('fails a task that runs past its timeout, and passes env to it', function()
    local tasks = {
      { id = 'slow', cmd = 'sleep 30', timeout = 0.3 },
      { id = 'env', cmd = 'test "$GREETING" = hi && test "$ORCH_TASK" = env', env = { GREETING = 'hi' } },
    }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
    assert.equal(1, r.code)
    local _, by = status_json(dir)
    assert.equal('failed', by.slow.status)
    assert.equal('done', by.env.status)
    assert.matches('slow: failed %(timed out after 0.3s', r.err)
  end)

  it('keeps its state in --db when given, and reads a named run back', function()
    local state = H.tmpdir()
    local db = state .. '/elsewhere.db'
    local pf = plan_file(dir, { { id = 'one', cmd = 'true' } })
    local r1 = H.orch({ 'run', '--plan', pf, '--repo', dir, '--db', db, '--yes' })
    assert.equal(0, r1.code, r1.err)
    local r2 = H.orch({ 'run', '--plan', pf, '--repo', dir, '--db', db, '--yes' })
    assert.equal(0, r2.code, r2.err)
    assert.is_nil(H.read(dir .. '/.orch/orch.db'))
    local first = r1.err:match('run (%d+%-%d+%-%x+)')
    local s = H.orch({ 'status', first, '--db', db, '--json' })
    assert.equal(0, s.code, s.err)
    assert.equal(first, cjson.decode(s.out).run.id)
    local latest = cjson.decode(H.orch({ 'status', '--db', db, '--json' }).out).run.id
    assert.is_not.equal(first, latest)
    local none = H.orch({ 'status', 'no-such-run', '--db', db })
    assert.equal(2, none.code)
    assert.matches('no run no%-such%-run', none.err)
    H.rm(state)
  end)

  it('rejects a cycle, naming its ids, and runs nothing', function()
    local tasks = {
      { id = 'a', cmd = 'touch ' .. dir .. '/ran', deps = { 'c' } },
      { id = 'b', cmd = 'true', deps = { 'a' } },
      { id = 'c', cmd = 'true', deps = { 'b' } },
    }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' })
    assert.equal(2, r.code)
    assert.matches('cycle', r.err)
    for _, id in ipairs({ 'a', 'b', 'c' }) do assert.matches(id, r.err) end
    assert.is_nil(H.read(dir .. '/ran'))
    assert.is_nil(H.read(dir .. '/.orch/orch.db'))
  end)

  it('refuses, before running anything, a task whose backend this build lacks', function()
    local path = dir .. '/agents.yaml'
    H.sh('mkdir -p ' .. dir .. '/.orch/roles')
    H.write(dir .. '/.orch/roles/ghost.yaml', 'backend: nosuchbackend\n')
    H.write(path, 'tasks:\n  - id: a\n    cmd: touch ' .. dir .. '/ran\n' ..
      '  - id: b\n    role: ghost\n    prompt: hi\n')
    local r = H.orch({ 'run', '--plan', path, '--repo', dir, '--yes' })
    assert.equal(2, r.code, r.err)
    assert.matches("agents%.yaml:4: task b: backend 'nosuchbackend' is not available", r.err)
    assert.is_nil(H.read(dir .. '/ran'))
  end)

  it('gives an error, never a crash or hang, for malformed plans', function()
    local cases = {
      ['trunc.json'] = '{"tasks": [{"id": "a", "cmd": "true"',
      ['tab.yaml'] = 'tasks:\n\t- id: a\n',
      ['numdep.json'] = '{"tasks": [{"id": "a", "cmd": "true", "deps": [1]}]}',
      ['empty.json'] = '',
      ['timeout.yaml'] = 'tasks:\n  - id: a\n    cmd: "true"\n    timeout: 1e300\n',
      ['garbage.json'] = '\0\1\2\255\254',
    }
    local big = {}
    for i = 1, 10000 do
      big[i] = { id = 'n' .. i, cmd = 'true', deps = { 'n' .. (i % 10000 + 1) } }
    end
    cases['cycle10k.json'] = cjson.encode({ tasks = big })
    for name, text in pairs(cases) do
      H.write(dir .. '/' .. name, text)
      local r = H.orch({ 'plan', 'check', dir .. '/' .. name }, { timeout = 60000 })
      assert.is_nil(r.timed_out, name)
      assert.equal(2, r.code, name .. ': ' .. r.err)
      assert.matches(name, r.err, 1, true)
      r = H.orch({ 'run', '--plan', dir .. '/' .. name, '--repo', dir }, { timeout = 60000 })
      assert.equal(2, r.code, name)
    end
  end)

  it('records output for orch logs, and status works while the run is live', function()
    local tasks = {
      { id = 'talk', cmd = 'echo out1; echo err1 >&2; echo out2' },
      { id = 'long', cmd = 'sleep 2', deps = { 'talk' } },
    }
    local live_status, live_text
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' }, {
      on_start = function()
        H.run_until(function()
          local f = H.read(dir .. '/.orch/orch.db')
          if not f then return false end
          local s = H.orch({ 'status', '--json', '--repo', dir })
          if s.code ~= 0 then return false end
          local ok, j = pcall(cjson.decode, s.out)
          for _, t in ipairs(ok and j.tasks or {}) do
            if t.id == 'long' and t.status == 'running' then
              live_status = j
              live_text = H.orch({ 'status', '--repo', dir }).out
              return true
            end
          end
        end, 10000)
      end,
    })
    assert.equal(0, r.code, r.err)
    assert.is_not_nil(live_status)
    assert.equal('running', live_status.run.status)
    assert.matches('live in orch pid %d+', live_text)
    local s = status_json(dir)
    local l = H.orch({ 'logs', s.run.id, 'talk', '--repo', dir })
    local missing = H.orch({ 'logs', s.run.id, 'nope', '--repo', dir })
    assert.equal(2, missing.code)
    assert.matches('no task nope', missing.err)
    assert.equal(0, l.code)
    -- each stream keeps its order; the two pipes are read independently
    local outs, errs = {}, {}
    for _, line in ipairs(l.stdout) do
      if line:match('^%[stderr%]') then errs[#errs + 1] = line else outs[#outs + 1] = line end
    end
    assert.same({ 'out1', 'out2' }, outs)
    assert.same({ '[stderr] err1' }, errs)
  end)

  it('orch logs --follow prints lines as a live run writes them, then stops', function()
    local tasks = { { id = 'tick', cmd = 'for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done' } }
    local follow
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--yes' }, {
      on_start = function()
        local id
        H.run_until(function()
          local s = H.orch({ 'status', '--json', '--repo', dir })
          local ok, j = pcall(cjson.decode, s.out)
          if ok and j.tasks[1] and j.tasks[1].status == 'running' then id = j.run.id return true end
        end, 10000)
        follow = H.orch({ 'logs', id, 'tick', '--repo', dir, '--follow' }, { timeout = 20000 })
      end,
    })
    assert.equal(0, r.code, r.err)
    assert.is_nil(follow.timed_out)
    assert.equal(0, follow.code)
    assert.same({ 'tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5' }, follow.stdout)
  end)

  it('Ctrl+C checkpoints: exit 130, nothing left running, resume finishes the run', function()
    local out = H.tmpdir()
    local marker = '30.' .. core.getpid()
    local tasks = {
      { id = 'quick', cmd = 'echo quick >> ' .. out .. '/lines' },
      -- slow until OUT/fast exists (the resumed attempts run with the plan
      -- recorded in the database, so the commands cannot change)
      { id = 'slow1', cmd = ('test -e %s/fast || sleep %s; echo slow1 >> %s/lines'):format(out, marker, out),
        deps = { 'quick' } },
      { id = 'slow2', cmd = ('test -e %s/fast || sleep %s; echo slow2 >> %s/lines'):format(out, marker, out),
        deps = { 'quick' } },
      { id = 'last', cmd = 'echo last >> ' .. out .. '/lines', deps = { 'slow1', 'slow2' } },
    }
    local pf = plan_file(dir, tasks)
    local r = H.orch({ 'run', '--plan', pf, '--repo', dir, '--yes' }, {
      timeout = 30000,
      on_start = function(p)
        assert.is_true(H.run_until(function() return #H.ps_matching('sleep ' .. marker) == 2 end, 15000))
        p:kill('SIGINT')
      end,
    })
    assert.equal(130, r.code, r.err)
    assert.same({}, H.ps_matching('sleep ' .. marker))
    local s, by = status_json(dir)
    assert.equal('interrupted', s.run.status)
    assert.equal('done', by.quick.status)
    assert.equal('pending', by.slow1.status)
    assert.equal('pending', by.last.status)
    local at = attempts(dir .. '/.orch/orch.db')
    assert.equal('interrupted', at.slow1[1].status)
    H.write(out .. '/fast', '')
    r = H.orch({ 'resume', '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    local _, by2 = status_json(dir)
    for _, t in ipairs(tasks) do assert.equal('done', by2[t.id].status, t.id) end
    local count = {}
    for line in H.read(out .. '/lines'):gmatch('[^\n]+') do count[line] = (count[line] or 0) + 1 end
    assert.same({ quick = 1, slow1 = 1, slow2 = 1, last = 1 }, count)
    H.rm(out)
  end)

  it('a task that exited 0 before Ctrl+C is not run again by resume', function()
    local out = H.tmpdir()
    local marker = '7.' .. core.getpid()
    -- the shell exits at once; a background child keeps its stdout open, so
    -- orch is still reading when the interrupt comes
    local tasks = { { id = 'bg', cmd = ('echo ran >> %s/runs; sleep %s & exit 0'):format(out, marker) } }
    local pf = plan_file(dir, tasks)
    local r = H.orch({ 'run', '--plan', pf, '--repo', dir, '--yes' }, {
      timeout = 30000,
      on_start = function(p)
        assert.is_true(H.run_until(function() return #H.ps_matching('sleep ' .. marker) == 1 end, 15000))
        H.run_until(function() return false end, 300)
        p:kill('SIGINT')
      end,
    })
    assert.equal(130, r.code, r.err)
    assert.equal('exited', attempts(dir .. '/.orch/orch.db').bg[1].status)
    r = H.orch({ 'resume', '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    assert.equal('ran\n', H.read(out .. '/runs'))
    assert.matches('bg: finished before; merging its work', r.err)
    H.rm(out)
  end)

  it('says so, and exits 1, when approved work cannot be applied to a dirty tree', function()
    H.write(dir .. '/README', 'changed by the user\n')
    local pf = plan_file(dir, { { id = 'w', cmd = 'echo w > w.txt', files = { 'w.txt' } } })
    local r = H.orch({ 'run', '--plan', pf, '--repo', dir, '--yes' })
    assert.equal(1, r.code)
    assert.matches('not applied', r.err)
    assert.equal('changed by the user\n', H.read(dir .. '/README'))
    assert.is_nil(H.read(dir .. '/w.txt'))
  end)

  it('resume after kill -9 copes with the ref locks git left behind', function()
    local tasks = { { id = 'a', cmd = 'sleep 2; echo a > a.txt', files = { 'a.txt' } },
                    { id = 'b', cmd = 'echo b > b.txt', deps = { 'a' }, files = { 'b.txt' } } }
    local pf = plan_file(dir, tasks)
    local run_id
    local r = H.orch({ 'run', '--plan', pf, '--repo', dir, '--yes' }, {
      on_start = function(p)
        H.run_until(function()
          local s = H.orch({ 'status', '--json', '--repo', dir })
          local ok, j = pcall(cjson.decode, s.out)
          if ok and j.tasks[1] and j.tasks[1].status == 'running' then run_id = j.run.id return true end
        end, 10000)
        p:kill('SIGKILL')
      end,
    })
    assert.equal('SIGKILL', r.sig)
    assert.is_not_nil(run_id)
    local st = H.orch({ 'status', '--repo', dir })
    assert.matches('not live: the orch that ran it stopped', st.out)
    -- as if orch died inside git's ref updates
    local heads = dir .. '/.git/refs/heads/orch/' .. run_id
    H.sh('mkdir -p ' .. heads)
    for _, name in ipairs({ 'a', 'b', 'integration' }) do H.write(heads .. '/' .. name .. '.lock', '') end
    r = H.orch({ 'resume', '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    assert.equal('a\n', H.read(dir .. '/a.txt'))
    assert.equal('b\n', H.read(dir .. '/b.txt'))
  end)

  it('resume after kill -9: every task ends done, none that finished runs twice', function()
    local out = H.tmpdir()
    local tasks = {}
    for i = 1, 20 do
      tasks[i] = { id = ('t%02d'):format(i),
                   cmd = 'echo $ORCH_TASK >> ' .. out .. '/lines; sleep 0.2',
                   deps = i > 4 and { ('t%02d'):format(i - 4) } or nil }
    end
    local pf = plan_file(dir, tasks)
    local db = dir .. '/.orch/orch.db'
    local done_at_kill = {}
    local r = H.orch({ 'run', '--plan', pf, '--repo', dir, '--concurrency', '2', '--yes' }, {
      on_start = function(p)
        H.run_until(function()
          if not H.read(db) then return false end
          local h = core.db.open(db, { readonly = true })
          if not h then return false end
          local ok, row = pcall(h.first, h, "SELECT count(*) AS n FROM tasks WHERE status = 'done'")
          h:close()
          return ok and row and row.n >= 8
        end, 30000)
        p:kill('SIGKILL')
      end,
    })
    assert.equal('SIGKILL', r.sig)
    local h = assert(core.db.open(db, { readonly = true }))
    for row in h:rows("SELECT id FROM tasks WHERE status = 'done'") do done_at_kill[row.id] = true end
    h:close()
    local n = 0
    for _ in pairs(done_at_kill) do n = n + 1 end
    assert.is_true(n >= 8 and n < 20)
    r = H.orch({ 'resume', '--repo', dir, '--yes' })
    assert.equal(0, r.code, r.err)
    local _, by = status_json(dir)
    for _, t in ipairs(tasks) do assert.equal('done', by[t.id].status, t.id) end
    local count = {}
    for line in (H.read(out .. '/lines') or ''):gmatch('[^\n]+') do
      count[line] = (count[line] or 0) + 1
    end
    for id in pairs(done_at_kill) do assert.equal(1, count[id], id) end
    for _, t in ipairs(tasks) do assert.is_true((count[t.id] or 0) >= 1, t.id) end
    -- resuming the finished run says so
    r = H.orch({ 'resume', '--repo', dir })
    assert.equal(0, r.code)
    assert.matches('already finished', r.out)
    H.rm(out)
  end)
end)
