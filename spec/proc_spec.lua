-- orch.core processes, timers and signals, on the real loop.
local core = require('orch.core')
local H = require('spec.helpers')

describe('core.strays', function()
  -- (first in the file: no other spec's orphans are around yet)
  it('is false once a task left nothing, true while its group or an adopted orphan lives', function()
    local r = H.spawn_wait({ 'sh', '-c', 'true' })
    assert.equal(0, r.code)
    assert.is_false(core.strays(r.pid))
    -- a member of its group outlives it
    r = H.spawn_wait({ 'sh', '-c', 'sleep 7531 >/dev/null 2>&1 & echo $!' })
    local bg = tonumber(r.stdout[1])
    assert.is_true(core.strays(r.pid))
    core.kill(bg, 'SIGKILL')
    -- an escapee in a session of its own, adopted by orch (a child subreaper)
    r = H.spawn_wait({ 'sh', '-c', 'setsid -f sleep 7532 </dev/null >/dev/null 2>&1' })
    assert.is_true(core.strays(r.pid))
    -- (setsid's child may not have become sleep yet)
    local left = {}
    H.run_until(function() left = H.ps_matching('sleep 7532') return #left > 0 end, 5000)
    for _, p in ipairs(left) do core.kill(p.pid, 'SIGKILL') end
    -- once the orphan is reaped, nothing is left again
    assert.is_true(H.run_until(function() return not core.strays(r.pid) end, 5000))
  end)
end)

describe('core.spawn and PATH', function()
  it('finds a program in PATH, and again when the one it found is gone', function()
    local dir = H.tmpdir()
    H.sh(('mkdir %s/a %s/b && printf "#!/bin/sh\necho a\n" > %s/a/orchprog && '
      .. 'printf "#!/bin/sh\necho b\n" > %s/b/orchprog && chmod +x %s/a/orchprog %s/b/orchprog')
      :format(dir, dir, dir, dir, dir, dir))
    H.write(dir .. '/t.lua', ([[
      local T = require('orch.testing')
      io.write(T.spawn({ 'orchprog' }).stdout[1], ' ')
      io.write(T.spawn({ 'orchprog' }).stdout[1], ' ')
      os.remove('%s/a/orchprog')
      io.write(T.spawn({ 'orchprog' }).stdout[1], '\n')
    ]]):format(dir))
    local r = H.orch({ '-l', dir .. '/t.lua' },
      { env = { PATH = dir .. '/a:' .. dir .. '/b:' .. os.getenv('PATH') } })
    assert.equal(0, r.code, r.err)
    assert.equal('a a b', (r.out:gsub('%s+$', '')))
    H.rm(dir)
  end)
end)

describe('core.tcp_free_port', function()
  it('gives a port that is free: a server can listen on it', function()
    local port = core.tcp_free_port('127.0.0.1')
    assert.is_true(port > 0 and port < 65536)
    local srv = assert(core.tcp_listen({ host = '127.0.0.1', port = port,
                                         on_connection = function(c) c:close() end }))
    assert.equal(port, srv:port())
    srv:close()
    local p, msg, code = core.tcp_free_port('not an address')
    assert.is_nil(p)
    assert.equal('EINVAL', code)
    assert.matches('not an address', msg)
  end)
end)

describe('core.spawn', function()
  it('delivers stdout and stderr lines and the exit code', function()
    local r = H.spawn_wait({ 'sh', '-c', 'echo one; echo two >&2; printf three; exit 3' })
    assert.same({ 'one', 'three' }, r.stdout)
    assert.same({ 'two' }, r.stderr)
    assert.equal(3, r.code)
    assert.is_nil(r.sig)
  end)

  it('hands a read\'s lines over as one chunk with chunks = true, every line in order', function()
    local out, err, calls, ended = {}, {}, 0, false
    local function into(t)
      return function(data, n, longest)
        calls = calls + 1
        local got, maxlen = 0, 0
        for l in (data .. '\n'):gmatch('([^\n]*)\n') do
          t[#t + 1] = l
          got = got + 1
          if #l > maxlen then maxlen = #l end
        end
        assert.equal(n, got)
        assert.equal(longest, maxlen)
      end
    end
    -- 200,000 lines (many reads), an empty line, stderr, no newline at the end
    local p = core.spawn({ argv = { 'sh', '-c', 'seq 200000; echo; echo e1 >&2; printf tail' },
      chunks = true, stdout = into(out), stderr = into(err),
      on_exit = function() ended = true end })
    assert.truthy(p)
    assert.is_true(H.run_until(function() return ended end, 60000))
    assert.equal(200002, #out)
    for i = 1, 200000 do
      if out[i] ~= tostring(i) then error(('line %d is %q'):format(i, out[i])) end
    end
    assert.equal('', out[200001])
    assert.equal('tail', out[200002])
    assert.same({ 'e1' }, err)
    assert.is_true(calls < 2000, 'one call per read, not per line: ' .. calls)
  end)

  it('reports a signal death by name', function()
    local r = H.spawn_wait({ 'sh', '-c', 'kill -KILL $$' })
    assert.is_nil(r.code)
    assert.equal('SIGKILL', r.sig)
  end)

  it('runs cmd through sh -c, in cwd, with env changes', function()
    local dir = H.tmpdir()
    local r = H.spawn_wait({ 'sh', '-c', 'pwd; echo "$ORCH_T1/${HOME:-unset}"' },
      { cwd = dir, env = { ORCH_T1 = 'set', HOME = false } })
    assert.same({ dir, 'set/unset' }, r.stdout)
    H.rm(dir)
  end)

  it('returns nil, message, code for a missing program or directory', function()
    local p, msg, code = core.spawn({ argv = { 'orch-no-such-program' } })
    assert.is_nil(p)
    assert.equal('ENOENT', code)
    assert.matches('orch%-no%-such%-program', msg)
    p, msg, code = core.spawn({ argv = { 'true' }, cwd = '/no/such/dir' })
    assert.is_nil(p)
    assert.equal('ENOENT', code)
    assert.matches('/no/such/dir', msg)
  end)

  it('passes numbers in argv intact, even when the GC runs during the spawn', function()
    collectgarbage('setpause', 0)
    collectgarbage('setstepmul', 100000)
    local env = {}
    for i = 1, 50 do env['ORCH_SPEC_V' .. i] = 'v' .. i end
    local r = H.spawn_wait({ 'echo', 12345.5, 67890.25, 7 }, { env = env })
    collectgarbage('setpause', 200)
    collectgarbage('setstepmul', 200)
    assert.same({ '12345.5 67890.25 7' }, r.stdout)
  end)

  it('keeps no reference to the callbacks of a refused spawn', function()
    local function count()
      collectgarbage()
      collectgarbage()
      -- functions held in the registry (freed references stay as numbers)
      local n = 0
      for _, v in pairs(debug.getregistry()) do
        if type(v) == 'function' then n = n + 1 end
      end
      return n
    end
    local before = count()
    for _ = 1, 200 do
      assert.is_false(pcall(core.spawn, { cmd = 'true', stdout = print, stderr = print, on_exit = 42 }))
    end
    assert.is_true(count() <= before + 5)
  end)

  it('raises on misuse', function()
    assert.has_error(function() core.spawn({}) end)
    assert.has_error(function() core.spawn({ argv = {} }) end)
    assert.has_error(function() core.spawn({ argv = { 'true' }, stdout = 42 }) end)
  end)

  it('writes to stdin and closes it', function()
    local r = H.spawn_wait({ 'cat' }, { input = 'a\nb\n' })
    assert.same({ 'a', 'b' }, r.stdout)
    local lines, done = {}, false
    local p = core.spawn({ argv = { 'cat' }, stdin = 'pipe',
      stdout = function(l) lines[#lines + 1] = l end,
      on_exit = function() done = true end })
    assert.is_true(p:write('x\n'))
    p:write('y\n')
    p:close_stdin()
    assert.is_true(H.run_until(function() return done end))
    assert.same({ 'x', 'y' }, lines)
    local ok, _, code = p:write('z')
    assert.is_nil(ok)
    assert.equal('EPIPE', code)
  end)

  it('delivers 8 MB on stdout and 8 MB on stderr interleaved, in order', function()
    -- each stream gets numbered lines of varying length, alternating
    local script = [[
      local rep = string.rep
      local n, total = 0, 0
      while total < 8 * 1024 * 1024 do
        local pad = rep('x', (n * 37) % 3000)
        io.stdout:write('o', n, ' ', pad, '\n')
        io.stderr:write('e', n, ' ', pad, '\n')
        total = total + #pad + #tostring(n) + 3
        n = n + 1
      end
      io.stdout:write('END ', n, '\n')
      io.stderr:write('END ', n, '\n')
    ]]
    local outn, errn, bad = 0, 0, 0
    local outbytes, errbytes, outend, errend = 0, 0, nil, nil
    local done = false
    core.spawn({ argv = { 'luajit', '-e', script },
      stdout = function(l)
        outbytes = outbytes + #l + 1
        if l:sub(1, 3) == 'END' then outend = tonumber(l:sub(5)) return end
        local k, pad = l:match('^o(%d+) (x*)$')
        if tonumber(k) ~= outn or #pad ~= (outn * 37) % 3000 then bad = bad + 1 end
        outn = outn + 1
      end,
      stderr = function(l)
        errbytes = errbytes + #l + 1
        if l:sub(1, 3) == 'END' then errend = tonumber(l:sub(5)) return end
        local k, pad = l:match('^e(%d+) (x*)$')
        if tonumber(k) ~= errn or #pad ~= (errn * 37) % 3000 then bad = bad + 1 end
        errn = errn + 1
      end,
      on_exit = function() done = true end })
    assert.is_true(H.run_until(function() return done end, 60000))
    assert.equal(0, bad)
    assert.equal(outn, outend)
    assert.equal(errn, errend)
    assert.is_true(outbytes >= 8 * 1024 * 1024)
    assert.is_true(errbytes >= 8 * 1024 * 1024)
  end)

  it('delivers a single 16 MB line whole, with or without a final newline', function()
    for _, nl in ipairs({ '\\n', '' }) do
      local got = {}
      local done = false
      core.spawn({ argv = { 'luajit', '-e',
          "io.write(string.rep('ab', 8 * 1024 * 1024), '" .. nl .. "')" },
        stdout = function(l) got[#got + 1] = l end,
        on_exit = function() done = true end })
      assert.is_true(H.run_until(function() return done end, 60000))
      assert.equal(1, #got)
      assert.equal(16 * 1024 * 1024, #got[1])
      assert.equal(string.rep('ab', 8), got[1]:sub(1, 16))
    end
  end)

  it('cancel kills the whole group: TERM, then KILL after the grace period', function()
    local marker = 'orchspec' .. core.getpid()
    local done, code, sig = false, nil, nil
    -- the shell ignores TERM, so only the KILL after the grace ends it
    local p = core.spawn({ argv = { 'sh', '-c',
        "trap '' TERM; sleep 300 & : " .. marker .. "; wait; wait" },
      on_exit = function(c, s) done, code, sig = true, c, s end })
    local pgid = p:pid()
    assert.is_true(H.run_until(function()
      for _, q in ipairs(H.ps()) do
        if q.pgrp == pgid and q.cmd:match('^sleep') then return true end
      end
    end))
    p:cancel(300)
    assert.is_true(H.run_until(function() return done end, 10000))
    assert.is_nil(code)
    assert.equal('SIGKILL', sig)
    assert.is_true(H.run_until(function()
      for _, q in ipairs(H.ps()) do
        if q.pgrp == pgid and q.state ~= 'Z' then return false end
      end
      return true
    end, 5000))
  end)

  it('starts children with no ignored or blocked signals (orch itself ignores SIGPIPE)', function()
    local r = H.spawn_wait({ 'sh', '-c', 'grep -E "^Sig(Ign|Blk)" /proc/$$/status' })
    -- signals 1-31 (posix_spawn, where orch cannot clone, keeps glibc's 32
    -- and 33 ignored)
    for _, l in ipairs(r.stdout) do
      local low = tonumber(l:match('(%x%x%x%x%x%x%x%x)$'), 16)
      assert.equal(0, low % 0x80000000, l)
    end
    assert.equal(2, #r.stdout)
  end)

  it('says on stderr why a program it found could not be exec\'d, and exits 127', function()
    local dir = H.tmpdir()
    H.write(dir .. '/noshebang', 'echo hi\n')
    H.write(dir .. '/badinterp', '#!/no/such/interpreter\n')
    H.sh(('chmod +x %s/noshebang %s/badinterp'):format(dir, dir))
    local r = H.spawn_wait({ dir .. '/noshebang' })
    assert.equal(127, r.code)
    assert.matches('cannot start .*noshebang: exec: Exec format error', r.stderr[1])
    r = H.spawn_wait({ dir .. '/badinterp' })
    assert.equal(127, r.code)
    assert.matches('cannot start .*badinterp: exec: No such file', r.stderr[1])
    H.rm(dir)
  end)

  it('kills a child signalled at once, before it has a process group of its own', function()
    for _ = 1, 20 do
      local done, sig
      local p = assert(core.spawn({ argv = { 'sleep', '300' },
        on_exit = function(_, s) done, sig = true, s end }))
      assert.is_true(p:kill('KILL'))
      assert.is_true(H.run_until(function() return done end, 10000))
      assert.equal('SIGKILL', sig)
    end
  end)

  it('gives a child no descriptor of orch but 0-2 and those orch holds without close-on-exec', function()
    local open = {}
    for fd in H.sh('ls /proc/' .. core.getpid() .. '/fd'):gmatch('%d+') do
      local info = H.read('/proc/' .. core.getpid() .. '/fdinfo/' .. fd)
      local flags = info and tonumber(info:match('flags:%s*(%d+)'), 8)
      -- O_CLOEXEC is 02000000
      if flags and math.floor(flags / 0x80000) % 2 == 0 then open[fd] = true end
    end
    local r = H.spawn_wait({ 'sh', '-c', 'ls /proc/$$/fd' })
    for fd in table.concat(r.stdout, ' '):gmatch('%d+') do
      assert.is_true(tonumber(fd) <= 2 or open[fd] == true, 'descriptor ' .. fd .. ' leaked')
    end
  end)

  it('puts each child in its own session and process group', function()
    local r = H.spawn_wait({ 'sh', '-c', 'cat /proc/$$/stat' })
    local rest = r.stdout[1]:match('^.*%)%s+(.*)$')
    local _, _, pgrp, sid = rest:match('^(%S+)%s+(%d+)%s+(%d+)%s+(%d+)')
    assert.equal(r.pid, tonumber(pgrp))
    assert.equal(r.pid, tonumber(sid))
  end)

  it('keeps the loop alive after a callback raises', function()
    local errors_before = core.errors()
    local lines = 0
    local r_done = false
    core.spawn({ argv = { 'sh', '-c', 'echo a; echo b; echo c' },
      stdout = function(l)
        lines = lines + 1
        if l == 'b' then error('boom in callback') end
      end,
      on_exit = function() r_done = true end })
    assert.is_true(H.run_until(function() return r_done end))
    assert.equal(3, lines)
    assert.equal(errors_before + 1, core.errors())
  end)
end)

describe('core.timer', function()
  it('fires once, repeats, stops, and fires when the handle is dropped', function()
    local once, rep, dropped = 0, 0, 0
    local t1 = core.timer(5, function() once = once + 1 end)
    local t2
    t2 = core.timer(1, 2, function()
      rep = rep + 1
      if rep == 3 then t2:stop() end
    end)
    core.timer(5, function() dropped = dropped + 1 end)
    collectgarbage()
    assert.is_true(H.run_until(function() return once == 1 and rep == 3 and dropped == 1 end))
    assert.is_false(t1:active())
    assert.is_false(t2:active())
    t1:close()
    assert.has_error(function() t1:start(1, function() end) end)
  end)
end)

describe('core.watch', function()
  it('reports changes to a directory entry and to a file, until closed', function()
    local dir = H.tmpdir()
    local seen = {}
    local w = assert(core.watch(dir, function(name, change) seen[#seen + 1] = { name, change } end))
    H.write(dir .. '/role.lua', 'return 1')
    assert.is_true(H.run_until(function() return #seen > 0 end, 5000))
    assert.equal('role.lua', seen[1][1])
    local file_seen = 0
    local fw = assert(core.watch(dir .. '/role.lua', function() file_seen = file_seen + 1 end))
    H.write(dir .. '/role.lua', 'return 2')
    assert.is_true(H.run_until(function() return file_seen > 0 end, 5000))
    w:close()
    fw:close()
    local before = #seen
    H.write(dir .. '/other.lua', 'x')
    H.run_until(function() return false end, 100)
    assert.equal(before, #seen)
    local none, _, code = core.watch(dir .. '/missing', function() end)
    assert.is_nil(none)
    assert.equal('ENOENT', code)
    H.rm(dir)
  end)
end)

describe('core.signal', function()
  it('calls back on a signal and refuses the ones orch owns', function()
    local got
    local s = core.signal('SIGUSR1', function(name) got = name end)
    os.execute('kill -USR1 ' .. core.getpid())
    assert.is_true(H.run_until(function() return got ~= nil end))
    assert.equal('SIGUSR1', got)
    s:close()
    assert.has_error(function() core.signal('SIGINT', function() end) end)
    assert.equal(15, core.signum('TERM'))
    assert.equal('SIGKILL', core.signame(9))
  end)
end)
