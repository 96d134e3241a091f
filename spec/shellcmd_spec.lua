-- orch.shellcmd: a simple cmd runs without the shell (as make does); any
-- shell syntax, keyword, builtin or leading assignment keeps `sh -c`; the
-- exec backend falls back to the shell for a program it cannot start.
local core = require('orch.core')
local shellcmd = require('orch.shellcmd')
local exec = require('orch.backends.exec')
local H = require('spec.helpers')

describe('orch.shellcmd', function()
  it('splits a simple command into its words', function()
    assert.same({ { 'make', 'test' }, true }, { shellcmd.argv('make test') })
    assert.same({ { 'go', 'test', './...' }, true }, { shellcmd.argv('go  test\t./...') })
    assert.same({ { 'make', 'CC=clang', '-j4' }, true }, { shellcmd.argv('make CC=clang -j4') })
    assert.same({ { 'true' }, true }, { shellcmd.argv('true') })
  end)

  it('keeps the shell for syntax, keywords, builtins and assignments', function()
    for _, cmd in ipairs({ 'make test > log', 'a && b', 'echo $HOME', "grep 'x y' f", 'ls *.c',
                           'cd sub', 'echo -e hi', 'test -f x', 'FOO=1 make', 'true --help',
                           'if true', 'a\nb', 'ls ~', 'x;y', 'kill -l', '' }) do
      local argv, direct = shellcmd.argv(cmd)
      assert.is_false(direct, cmd)
      assert.same({ 'sh', '-c', cmd }, argv)
    end
  end)

  it('runs a simple command as the task\'s own process, and says why one cannot start', function()
    local dir = H.tmpdir()
    -- the program the task's process runs, once it has exec'd
    local function comm(pid)
      local c
      H.run_until(function()
        c = (H.read('/proc/' .. pid .. '/comm') or ''):gsub('%s+$', '')
        return c ~= 'orch' and c ~= ''
      end, 5000)
      return c
    end
    local function start(cmd)
      local r = { lines = {} }
      r.h = assert(exec.start({ task = { id = 't', cmd = cmd }, cwd = dir, env = {},
        on_line = function(_, l) r.lines[#r.lines + 1] = l end,
        on_done = function(res) r.res = res end }))
      return r
    end
    local r = start('sleep 5')
    assert.equal('sleep', comm(r.h.pid))
    r.h.cancel(0)
    H.run_until(function() return r.res ~= nil end, 5000)
    local s = start('sleep 5 ; true')
    assert.equal('sh', comm(s.h.pid))
    s.h.cancel(0)
    H.run_until(function() return s.res ~= nil end, 5000)
    local m = start('no-such-program-here x')
    H.run_until(function() return m.res ~= nil end, 5000)
    assert.equal(127, m.res.exit_code)
    assert.matches('not found', table.concat(m.lines, '\n'))
    shellcmd.direct = false
    local f = start('sleep 5')
    shellcmd.direct = true
    assert.equal('sh', comm(f.h.pid))
    f.h.cancel(0)
    H.run_until(function() return f.res ~= nil end, 5000)
    H.rm(dir)
    assert.is_true(core.now() > 0)
  end)
end)
