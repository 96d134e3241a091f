-- User configuration (orch.config) and the extension points it replaces.
local cjson = require('cjson')
local H = require('spec.helpers')

describe('configuration', function()
  local dir, xdg
  before_each(function()
    dir = H.tmpdir()
    xdg = H.tmpdir()
    H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i'):format(dir))
    H.write(dir .. '/plan.json', cjson.encode({ tasks = {
      { id = 'bad', cmd = 'exit 4' },
      { id = 'after', cmd = 'true', deps = { 'bad' } } } }))
  end)
  after_each(function() H.rm(dir) H.rm(xdg) end)

  local function run()
    return H.orch({ 'run', '--plan', dir .. '/plan.json', '--repo', dir, '--yes', '--in-place' },
      { env = { XDG_CONFIG_HOME = xdg } })
  end

  it('a repository init.lua replaces the failure policy', function()
    H.sh('mkdir -p ' .. dir .. '/.orch')
    H.write(dir .. '/.orch/init.lua', [[
      require('orch.policy').set(function(task, result)
        assert(result.exit_code == 4)
        return task.id == 'bad' and 'soft' or 'hard'
      end)
    ]])
    local r = run()
    assert.equal(0, r.code, r.err)
    assert.matches('after: done', r.err)
    assert.matches('bad: failed %(exit status 4, soft%)', r.err)
  end)

  it('a user init.lua replaces the launcher, and the repository one runs after it', function()
    H.sh('mkdir -p ' .. xdg .. '/orch ' .. dir .. '/.orch')
    H.write(xdg .. '/orch/init.lua', [[
      local launcher = require('orch.launcher')
      local core = require('orch.core')
      launcher.set(function(spec)
        spec.env = spec.env or {}
        spec.env.LAUNCHED_BY = 'user-config'
        return core.spawn(spec)
      end)
    ]])
    H.write(dir .. '/.orch/init.lua', "require('orch.policy').set(function() return 'skip' end)")
    H.write(dir .. '/plan.json', cjson.encode({ tasks = {
      { id = 'env', cmd = 'test "$LAUNCHED_BY" = user-config' },
      { id = 'bad', cmd = 'exit 1' } } }))
    local r = run()
    assert.equal(0, r.code, r.err)
    assert.matches('env: done', r.err)
    assert.matches('bad: skipped', r.err)
  end)

  it('a launcher that raises fails that task; the run ends instead of hanging', function()
    H.sh('mkdir -p ' .. dir .. '/.orch')
    H.write(dir .. '/.orch/init.lua', [[
      local core = require('orch.core')
      require('orch.launcher').set(function(spec)
        if spec.env.ORCH_TASK == 'after' then error('launcher exploded') end
        return core.spawn(spec)
      end)
    ]])
    H.write(dir .. '/plan.json', cjson.encode({ tasks = {
      { id = 'first', cmd = 'true' }, { id = 'after', cmd = 'true', deps = { 'first' } } } }))
    local r = H.orch({ 'run', '--plan', dir .. '/plan.json', '--repo', dir, '--yes', '--in-place' },
      { env = { XDG_CONFIG_HOME = xdg }, timeout = 20000 })
    assert.is_nil(r.timed_out)
    assert.equal(1, r.code)
    assert.matches('after: failed %(could not start: .*launcher exploded', r.err)
  end)

  it("a module under REPO/.orch/lua shadows orch's own", function()
    H.sh('mkdir -p ' .. dir .. '/.orch/lua/orch')
    H.write(dir .. '/.orch/lua/orch/progress.lua', [[
      local M = {}
      function M.attach(e)
        return e:subscribe(function(ev)
          if ev.kind == 'task' and ev.status == 'failed' then
            io.stderr:write('CUSTOM ', ev.task, ': failed\n')
          end
        end)
      end
      return M
    ]])
    local r = run()
    assert.equal(1, r.code)
    assert.matches('CUSTOM bad: failed', r.err)
  end)

  it('a config that does not load stops the run with its file and line', function()
    H.sh('mkdir -p ' .. dir .. '/.orch')
    H.write(dir .. '/.orch/init.lua', 'local x = 1\nthis is not lua\n')
    local r = run()
    assert.equal(2, r.code)
    assert.matches('init%.lua:2:', r.err)
    H.write(dir .. '/.orch/init.lua', 'error("refused by config")\n')
    r = run()
    assert.equal(2, r.code)
    assert.matches('init%.lua:1: refused by config', r.err)
  end)
end)
