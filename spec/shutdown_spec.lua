-- The orch binary itself: exit codes for bad scripts and usage, and the
-- shutdown on SIGINT that leaves no process of the trees orch started.
local core = require('orch.core')
local H = require('spec.helpers')

describe('orch run SCRIPT.lua', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('exits 2 with file and line for a script that does not load', function()
    H.write(dir .. '/bad.lua', 'local x = 1\nlocal y = = 2\n')
    local r = H.orch({ 'run', dir .. '/bad.lua' })
    assert.equal(2, r.code)
    assert.matches('bad%.lua:2:', r.err)
  end)

  it('exits 1 with file, line and traceback for a runtime error', function()
    H.write(dir .. '/boom.lua', 'local function f()\n  error("kaboom")\nend\nf()\n')
    local r = H.orch({ 'run', dir .. '/boom.lua' })
    assert.equal(1, r.code)
    assert.matches('boom%.lua:2: kaboom', r.err)
    assert.matches('stack traceback', r.err)
  end)

  it('exits 1 after an error in a callback, which does not stop the loop', function()
    H.write(dir .. '/cb.lua', [[
      local core = require('orch.core')
      core.timer(1, function() error('in timer') end)
      core.timer(20, function() print('still running') end)
    ]])
    local r = H.orch({ 'run', dir .. '/cb.lua' })
    assert.equal(1, r.code)
    assert.matches('in timer', r.err)
    assert.matches('stack traceback', r.err)
    assert.same({ 'still running' }, r.stdout)
  end)

  it('says so for an unknown command or option', function()
    local r = H.orch({ 'frobnicate' })
    assert.equal(2, r.code)
    assert.matches("unknown command 'frobnicate'", r.err)
    r = H.orch({ 'run', '--frobnicate' })
    assert.equal(2, r.code)
    assert.matches("unknown option '%-%-frobnicate'", r.err)
    r = H.orch({ '--version' })
    assert.equal(0, r.code)
    assert.matches('^orch %d+%.%d+', r.out)
    r = H.orch({ 'help', 'run' })
    assert.equal(0, r.code)
    assert.matches('usage: orch run', r.out)
  end)

  it('on SIGINT kills every process of the trees it started and exits 130', function()
    local marker = '300.' .. core.getpid()
    H.write(dir .. '/tree.lua', ([[
      local core = require('orch.core')
      core.spawn({ argv = { 'sh', '-c',
        'sleep %s & sleep %s & setsid sleep %s & wait' } })
      print('started')
      io.stdout:flush()
    ]]):format(marker, marker, marker))
    local r = H.orch({ 'run', dir .. '/tree.lua' }, {
      timeout = 20000,
      on_start = function(p)
        -- all three sleeps exist (one of them in a session of its own)
        assert.is_true(H.run_until(function()
          return #H.ps_matching('sleep ' .. marker) == 3
        end, 10000))
        local sids = {}
        for _, q in ipairs(H.ps_matching('sleep ' .. marker)) do sids[q.sid] = true end
        local n = 0
        for _ in pairs(sids) do n = n + 1 end
        assert.equal(2, n) -- the setsid one left the shell's session
        p:kill('SIGINT')
      end,
    })
    assert.is_nil(r.timed_out)
    assert.equal(130, r.code)
    -- nothing of the tree is left, not even a zombie, once orch has exited
    assert.same({}, H.ps_matching('sleep ' .. marker))
  end)

  it('a second SIGINT forces the exit at once', function()
    H.write(dir .. '/stubborn.lua', [[
      local core = require('orch.core')
      core.spawn({ argv = { 'sh', '-c', "trap '' TERM; sleep 300.7; wait" } })
      core.on_shutdown(function(phase) io.stdout:write('hook ', phase, '\n') io.stdout:flush() end)
      print('started')
      io.stdout:flush()
    ]])
    local r = H.orch({ 'run', dir .. '/stubborn.lua' }, {
      timeout = 20000,
      on_start = function(p)
        assert.is_true(H.run_until(function() return #H.ps_matching('sleep 300.7') == 1 end))
        p:kill('SIGINT')
        H.run_until(function() return false end, 100)
        p:kill('SIGINT')
      end,
    })
    assert.equal(130, r.code)
    assert.same({}, H.ps_matching('sleep 300.7'))
    assert.matches('hook begin', r.out)
  end)

  -- SIGHUP (the terminal went away) and SIGQUIT get the same graceful
  -- shutdown as SIGINT and SIGTERM, each with its own exit code
  for _, case in ipairs({ { 'SIGHUP', 129 }, { 'SIGQUIT', 131 }, { 'SIGTERM', 130 } }) do
    it(('on %s checkpoints, kills the tree and exits %d'):format(case[1], case[2]), function()
      local marker = '301.' .. case[2] .. core.getpid()
      H.write(dir .. '/hup.lua', ([[
        local core = require('orch.core')
        core.spawn({ argv = { 'sh', '-c', 'sleep %s & wait' } })
        core.on_shutdown(function(phase, sig)
          io.stdout:write('hook ', phase, ' ', sig, '\n') io.stdout:flush()
        end)
        print('started')
        io.stdout:flush()
      ]]):format(marker))
      local r = H.orch({ 'run', dir .. '/hup.lua' }, {
        timeout = 20000,
        on_start = function(p)
          assert.is_true(H.run_until(function() return #H.ps_matching('sleep ' .. marker) == 1 end))
          p:kill(case[1])
        end,
      })
      assert.is_nil(r.timed_out)
      assert.equal(case[2], r.code, r.err)
      assert.matches('hook begin ' .. case[1], r.out)
      assert.matches('hook end ' .. case[1], r.out)
      assert.same({}, H.ps_matching('sleep ' .. marker))
    end)
  end

  it('core.shutdown() begins the same sequence from Lua (a TUI quit key)', function()
    H.write(dir .. '/quit.lua', [[
      local core = require('orch.core')
      core.on_shutdown(function(phase) io.stdout:write('hook ', phase, '\n') io.stdout:flush() end)
      core.timer(10, function() core.shutdown('SIGHUP') end)
      core.timer(60000, function() end)
    ]])
    local r = H.orch({ 'run', dir .. '/quit.lua' }, { timeout = 20000 })
    assert.equal(129, r.code, r.err)
    assert.matches('hook begin', r.out)
    assert.matches('hook end', r.out)
  end)

  it('refuses a watcher of the signals that belong to the shutdown', function()
    for _, sig in ipairs({ 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT' }) do
      assert.has_error(function() core.signal(sig, function() end) end)
    end
  end)
end)
