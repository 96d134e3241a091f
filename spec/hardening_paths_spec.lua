-- Nothing read back from .orch/ may name a path outside what orch owns: a
-- cloned repository can carry a crafted .orch/ (issue 12, item 1).
local cjson = require('cjson')
local H = require('spec.helpers')
local store_mod = require('orch.store')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

describe('a crafted .orch/', function()
  local top, dir, sockdir, victim, env
  before_each(function()
    top = H.tmpdir()
    dir = top .. '/repo'
    os.execute("mkdir -p '" .. dir .. "/.orch/live'")
    git_repo(dir)
    sockdir = top .. '/s'
    env = { ORCH_SOCKET_DIR = sockdir }
    victim = top .. '/victim.txt'
    H.write(victim, 'precious\n')
    -- .orch/live/../../../victim.txt is top/victim.txt
    H.write(dir .. '/.orch/live/evil', cjson.encode({
      run = '../../../victim.txt', socket = '/nonexistent.sock', pid = 999999 }))
  end)
  after_each(function() H.rm(top) end)

  local function intact()
    assert.equal('precious\n', H.read(victim))
  end

  it('a live record naming another run: repl leaves the victim file alone', function()
    local out = H.orch({ 'repl', '--repo', dir }, { input = 'return 1\n', env = env })
    assert.equal(2, out.code)
    intact()
    -- the broken record itself is cleaned (it is orch's own file)
    assert.is_nil(H.read(dir .. '/.orch/live/evil'))
  end)

  it('repl with a run id that is a path is refused', function()
    local out = H.orch({ 'repl', '../../../victim.txt', '--repo', dir }, { input = 'return 1\n', env = env })
    assert.equal(2, out.code)
    assert.matches('not a run id', out.err)
    intact()
  end)

  it('status, resume and clean of a crafted running run leave the victim alone', function()
    local st = assert(store_mod.open(dir .. '/.orch/orch.db'))
    st:create_run({ id = 'evil', status = 'running', repo = dir, pid = 999999,
                    plan_json = cjson.encode({ tasks = { { id = 'a', cmd = 'true' } } }) })
    st:add_tasks('evil', { { id = 'a', cmd = 'true' } })
    st:close()
    local out = H.orch({ 'status', '--repo', dir }, { env = env })
    assert.equal(0, out.code, out.err)
    intact()
    H.write(dir .. '/.orch/live/evil', cjson.encode({
      run = '../../../victim.txt', socket = '/nonexistent.sock', pid = 999999 }))
    H.orch({ 'clean', 'evil', '--repo', dir }, { env = env })
    intact()
    H.write(dir .. '/.orch/live/evil', cjson.encode({
      run = '../../../victim.txt', socket = '/nonexistent.sock', pid = 999999 }))
    H.orch({ 'resume', 'evil', '--repo', dir, '--yes', '--no-tui' }, { env = env })
    intact()
  end)

  it('a run id from the database that is a path is refused by resume', function()
    local bad = '../../../victim.txt'
    local st = assert(store_mod.open(dir .. '/.orch/orch.db'))
    st:create_run({ id = bad, status = 'running', repo = dir, pid = 999999,
                    plan_json = cjson.encode({ tasks = { { id = 'a', cmd = 'true' } } }) })
    st:add_tasks(bad, { { id = 'a', cmd = 'true' } })
    st:close()
    local out = H.orch({ 'resume', bad, '--repo', dir, '--yes', '--no-tui' }, { env = env })
    assert.equal(2, out.code)
    assert.matches('cannot be used', out.err)
    intact()
    H.orch({ 'status', bad, '--repo', dir }, { env = env })
    intact()
  end)

  it('a task id from the database that is a path is refused by resume', function()
    local st = assert(store_mod.open(dir .. '/.orch/orch.db'))
    local tasks = { { id = '../../../victim.txt', cmd = 'true' } }
    st:create_run({ id = 'r1', status = 'interrupted', repo = dir,
                    plan_json = cjson.encode({ tasks = tasks }) })
    st:add_tasks('r1', tasks)
    st:close()
    local out = H.orch({ 'resume', 'r1', '--repo', dir, '--yes', '--no-tui' }, { env = env })
    assert.equal(2, out.code)
    assert.matches('task whose id cannot be used', out.err)
    intact()
  end)
end)
