-- Recovery after crashes, through the real binary on real repositories:
-- clean of an unfinished run, a kill -9 during the apply, the branch the
-- run applies to, re-runs of interrupted attempts, and the processes a task
-- leaves behind (issue 12).
local cjson = require('cjson')
local H = require('spec.helpers')

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(dir, cmd)
  local out, code = H.sh('cd ' .. q(dir) .. ' && ' .. cmd)
  return (out:gsub('%s+$', '')), code
end

local function git_repo(dir)
  H.sh(('cd %s && git init -q -b main && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(q(dir)))
end

local function plan_file(dir, tasks)
  local path = dir .. '/plan.json'
  H.write(path, cjson.encode({ goal = 'spec', tasks = tasks }))
  return path
end

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
end)
