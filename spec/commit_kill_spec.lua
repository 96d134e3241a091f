-- Grouped commits (docs/state.md): the state changes of one turn of the loop
-- share one SQLite commit, and nothing acts on them before it. A kill -9 of
-- orch at any moment must show every task it reported done as done, and
-- every task whose process ran as started, and resume must carry on from
-- exactly there. The real binary, real processes, a real database.
local core = require('orch.core')
local H = require('spec.helpers')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && git commit -q --allow-empty -m init'):format(dir))
end

local plan_file = H.plan_file

-- {task id -> status} and {task id -> number of attempt rows} of the latest run.
local function state(db)
  local h = assert(core.db.open(db, { readonly = true }))
  local status, attempts, errors = {}, {}, {}
  local run = h:first('SELECT id FROM runs ORDER BY created_at DESC LIMIT 1').id
  for r in h:rows('SELECT id, status, error FROM tasks WHERE run_id = ?', run) do
    status[r.id], errors[r.id] = r.status, r.error
  end
  for r in h:rows('SELECT task_id, count(*) AS n FROM attempts WHERE run_id = ? GROUP BY task_id', run) do
    attempts[r.task_id] = r.n
  end
  h:close()
  return status, attempts, errors
end

-- The ids in a file of one id a line, with how often each came.
local function counts(path)
  local c = {}
  for line in (H.read(path) or ''):gmatch('[^\n]+') do c[line] = (c[line] or 0) + 1 end
  return c
end

describe('grouped commits and kill -9', function()
  local dir
  before_each(function() dir = H.tmpdir() git_repo(dir) end)
  after_each(function() H.rm(dir) end)

  it('a dependent starts only after its deps are committed done, and is committed running first', function()
    -- z depends on 30 quick tasks and kills orch the moment it runs
    local tasks, deps = {}, {}
    for i = 1, 30 do
      tasks[i] = { id = 'q' .. i, cmd = 'true' }
      deps[i] = 'q' .. i
    end
    tasks[#tasks + 1] = { id = 'z', cmd = 'kill -9 $PPID; sleep 5', deps = deps }
    local r = H.orch({ 'run', '--plan', plan_file(dir, tasks), '--repo', dir, '--in-place',
                       '--yes', '--quiet' })
    assert.equal('SIGKILL', r.sig, r.err)
    local status, attempts = state(dir .. '/.orch/orch.db')
    for i = 1, 30 do assert.equal('done', status['q' .. i], 'q' .. i) end
    assert.equal('running', status.z)
    assert.equal(1, attempts.z)
  end)

  it('every task reported done is done after kill -9, every one that ran is recorded, resume ends the rest', function()
    -- (with worktrees: `orch resume` of an --in-place run runs in worktrees)
    local marks = H.tmpdir()
    local out = marks .. '/ran'
    local tasks = {}
    for i = 1, 60 do
      tasks[i] = { id = ('t%03d'):format(i), cmd = 'echo $ORCH_TASK >> ' .. out,
                   deps = i > 4 and { ('t%03d'):format(i - 4) } or nil }
    end
    -- the killer runs beside them (first: its weight) once 15 of them ran,
    -- whatever they were doing then; after resume it only ends
    tasks[#tasks + 1] = { id = 'killer', weight = 1000, deps = { 't001', 't002', 't003', 't004' },
      cmd = 'test -e ' .. marks .. '/resumed && exit 0; '
        .. 'while [ "$(cat ' .. out .. ' 2>/dev/null | wc -l)" -lt 15 ]; do sleep 0.01; done; '
        .. 'kill -9 $PPID; sleep 5' }
    local r = H.orch({ 'run', '--plan', plan_file(marks, tasks), '--repo', dir, '--yes' })
    assert.equal('SIGKILL', r.sig, r.err)
    local status, attempts = state(dir .. '/.orch/orch.db')
    -- what the progress subscriber said was committed before it said it
    local reported = 0
    for id in r.err:gmatch('%] (t%d+): done in') do
      reported = reported + 1
      assert.equal('done', status[id], id)
    end
    assert.is_true(reported >= 4, 'reported ' .. reported) -- (its deps, at least)
    -- a task whose process ran was recorded running before it started
    local ran = counts(out)
    for id in pairs(ran) do assert.is_true((attempts[id] or 0) >= 1, id) end
    -- nothing is recorded done that did not run
    for id, st in pairs(status) do
      if st == 'done' and id ~= 'killer' then assert.equal(1, ran[id], id) end
    end
    local done_at_kill = {}
    for id, st in pairs(status) do if st == 'done' then done_at_kill[id] = true end end
    -- resume: the rest runs, nothing that was done runs again (the killer
    -- is told by its marker not to kill again)
    H.write(marks .. '/resumed', '')
    r = H.orch({ 'resume', '--repo', dir, '--yes' })
    local after, _, errors = state(dir .. '/.orch/orch.db')
    ran = counts(out)
    for i = 1, 60 do
      local id = ('t%03d'):format(i)
      assert.equal('done', after[id], id .. ': ' .. tostring(errors[id]) .. '\n' .. r.err)
      if done_at_kill[id] then assert.equal(1, ran[id], id) end
    end
    assert.equal(0, r.code, r.err)
    H.rm(marks)
  end)
end)
