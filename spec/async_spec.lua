-- orch.async: coroutines over the loop.
local core = require('orch.core')
local async = require('orch.async')
local H = require('spec.helpers')

describe('orch.async', function()
  it('sleeps and runs processes in straight-line code', function()
    local log, done = {}, false
    async.run(function()
      local t0 = core.now()
      async.sleep(30)
      log[#log + 1] = core.now() - t0 >= 29
      local r = async.spawn({ argv = { 'sh', '-c', 'echo out; echo err >&2; exit 5' } })
      log[#log + 1] = r
      local none, msg, code = async.spawn({ argv = { 'orch-no-such-program' } })
      log[#log + 1] = { none, code, msg ~= nil }
      done = true
    end)
    assert.is_false(done) -- suspended at the sleep
    assert.is_true(H.run_until(function() return done end))
    assert.is_true(log[1])
    assert.equal(5, log[2].code)
    assert.same({ 'out' }, log[2].stdout)
    assert.same({ 'err' }, log[2].stderr)
    assert.same({ nil, 'ENOENT', true }, { log[3][1], log[3][2], log[3][3] })
  end)

  it('returns at once when the callback comes synchronously', function()
    local got
    async.run(function()
      got = { async.wait(function(cb) cb(1, nil, 3) end) }
    end)
    assert.same({ 1, nil, 3 }, got)
  end)

  it('refuses to wait outside a coroutine, and reports errors with a traceback', function()
    assert.has_error(function() async.wait(function() end) end)
    local msg
    async.run_with(function(m) msg = m end, function()
      async.sleep(1)
      error('async boom')
    end)
    assert.is_true(H.run_until(function() return msg ~= nil end))
    assert.matches('async boom', msg)
    assert.matches('stack traceback', msg)
  end)
end)
