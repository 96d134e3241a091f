-- A run waiting at the plan gate (no terminal, no --yes: exit 3) reads its
-- plan file again on `orch resume`: the person's edits are what runs; an
-- edit that does not check is refused with FILE:LINE and the run keeps
-- waiting; the plan file is named after the run.
local cjson = require('cjson')
local T = require('orch.testing')

local function write(path, doc)
  local f = assert(io.open(path, 'wb'))
  f:write(cjson.encode(doc))
  f:close()
end

describe('the plan gate on resume', function()
  local repo
  before_each(function() repo = T.repo({ ['README.md'] = 'x\n' }) end)
  after_each(function() repo:rm() end)

  local function resume()
    return T.spawn({ T.orch_bin(), 'resume', '--repo', repo.dir, '--yes', '--no-tui' },
                   { cwd = repo.dir })
  end

  it('runs the plan as edited while the run waited', function()
    local r = T.run({ repo = repo, workflow = 'code_only', yes = false,
                      plan = { tasks = { { id = 'a', cmd = 'echo first > a.txt', files = { 'a.txt' } } } } })
    assert.equal(3, r.code, r.err)
    assert.equal('waiting', r.status.run.status)
    local path = ('%s/.orch/plans/%s.json'):format(repo.dir, r.run_id)
    assert.truthy(io.open(path, 'rb'), 'the plan file is named after the run: ' .. path)
    assert.matches(path, r.err, 1, true)

    write(path, { tasks = { { id = 'a', cmd = 'echo edited > a.txt', files = { 'a.txt' } },
                            { id = 'b', cmd = 'echo b > b.txt', files = { 'b.txt' }, deps = { 'zz' } } } })
    local bad = resume()
    assert.equal(2, bad.code, bad.err)
    assert.truthy(bad.err:find(path .. ':1: ', 1, true), bad.err)
    assert.matches('unknown task', bad.err)
    r:refresh()
    assert.equal('waiting', r.status.run.status)

    write(path, { tasks = { { id = 'a', cmd = 'echo edited > a.txt', files = { 'a.txt' } },
                            { id = 'b', cmd = 'echo b > b.txt', files = { 'b.txt' }, deps = { 'a' } } } })
    local ok = resume()
    assert.equal(0, ok.code, ok.err)
    r:refresh()
    assert.equal('done', r.status.run.status)
    assert.equal('done', r:task('b').status)
    assert.equal('edited\n', r:file('a.txt'))
    assert.equal('b\n', r:file('b.txt'))
  end)
end)
