-- `orch test`: a user's busted specs run inside the orch host with
-- orch.testing, from a fresh repository.
local H = require('spec.helpers')

describe('orch test', function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i'):format(dir))
    H.sh('mkdir -p ' .. dir .. '/.orch/spec')
  end)
  after_each(function() H.rm(dir) end)

  it('runs a passing spec that drives a real run with orch.testing', function()
    H.write(dir .. '/.orch/spec/run_spec.lua', [[
      local T = require('orch.testing')
      describe('my plan', function()
        it('writes both files and merges them', function()
          local repo = T.repo({ ['README.md'] = 'hi\n' })
          local r = T.run({ repo = repo, plan = { tasks = {
            { id = 'a', cmd = 'echo A > a.txt', files = { 'a.txt' } },
            { id = 'b', cmd = 'echo B > b.txt', files = { 'b.txt' }, deps = { 'a' } } } } })
          assert.equal(0, r.code, r.err)
          assert.equal('done', r:task('a').status)
          assert.equal('done', r:task('b').status)
          assert.equal('A\n', r:file('a.txt'))
          assert.equal('B\n', repo:file('b.txt'))   -- applied to main (--yes)
          repo:rm()
        end)
      end)
    ]])
    local r = H.orch({ 'test', '--repo', dir }, { cwd = dir, timeout = 120000 })
    assert.equal(0, r.code, r.out .. r.err)
    assert.matches('1 success', r.out)
    assert.matches('0 failures', r.out)
  end)

  it('a failing spec exits 1 with busted\'s message; no specs is exit 2', function()
    H.write(dir .. '/.orch/spec/bad_spec.lua', [[
      describe('x', function() it('fails', function() assert.equal(1, 2, 'one is not two') end) end)
    ]])
    local r = H.orch({ 'test', '--repo', dir }, { cwd = dir })
    assert.equal(1, r.code, r.out .. r.err)
    assert.matches('1 failure', r.out)
    assert.matches('one is not two', r.out)
    H.sh('rm -rf ' .. dir .. '/.orch/spec')
    r = H.orch({ 'test', '--repo', dir }, { cwd = dir })
    assert.equal(2, r.code)
    assert.matches('no specs found', r.err)
  end)
end)

-- The shipped example spec, copied into a fresh repository with the
-- user's own copy of the workflow: it passes, the same way twice; with
-- the copy's review rounds set to 0 it fails, saying what did not happen.
describe('orch test on a copy of the shipped workflow', function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i'):format(dir))
    H.sh(('mkdir -p %s/.orch/spec %s/.orch/workflows'):format(dir, dir))
    H.sh(('cp %s/workflows/spec/code_review_test_spec.lua %s/.orch/spec/'):format(H.SRC, dir))
    H.sh(('cp %s/workflows/code_review_test.lua %s/.orch/workflows/'):format(H.SRC, dir))
  end)
  after_each(function() H.rm(dir) end)

  local function summary(out)
    return (out:match('(%d+ success%a* / %d+ failures? / %d+ errors? / %d+ pending)'))
  end

  it('passes twice alike, and fails readably with review_rounds = 0', function()
    local r1 = H.orch({ 'test', '--repo', dir }, { cwd = dir, timeout = 120000 })
    assert.equal(0, r1.code, r1.out .. r1.err)
    local r2 = H.orch({ 'test', '--repo', dir }, { cwd = dir, timeout = 120000 })
    assert.equal(0, r2.code, r2.out .. r2.err)
    assert.equal('1 success / 0 failures / 0 errors / 0 pending', summary(r1.out))
    assert.equal(summary(r1.out), summary(r2.out))
    local wf = dir .. '/.orch/workflows/code_review_test.lua'
    local text = H.read(wf):gsub('review_rounds = 2', 'review_rounds = 0')
    H.write(wf, text)
    local r3 = H.orch({ 'test', '--repo', dir }, { cwd = dir, timeout = 120000 })
    assert.equal(1, r3.code, r3.out)
    assert.matches('the reviewer should have sent the coder back once', r3.out)
  end)
end)
