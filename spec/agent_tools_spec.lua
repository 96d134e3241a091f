-- orch's own agent tools (orch.agent.tools): paths confined to the worktree,
-- the tool sets of the roles, and the shell inside bubblewrap.
local core = require('orch.core')
local H = require('spec.helpers')
local tools = require('orch.agent.tools')
local sandbox = require('orch.agent.sandbox')

local base, wt, other, scratch, home

-- Runs a tool to its end on the loop: output, is_error, events.
local function run(box, name, input)
  local out, err, done
  box:run(name, input, function(o, e) out, err, done = o, e, true end)
  assert(H.run_until(function() return done end, 60000), name .. ' did not finish')
  return out, err
end

local function new_box(set, opts, extra)
  local events = {}
  local ctx = { cwd = wt, tools = set, scratch = scratch, run = { repo = base .. '/repo' },
                emit = function(ev) events[#events + 1] = ev end }
  for k, v in pairs(extra or {}) do ctx[k] = v end
  local box = assert(tools.new(ctx, opts))
  return box, events
end

describe('orch.agent.tools', function()
  setup(function()
    base = H.tmpdir()
    -- a repository with two task worktrees side by side, as orch lays them out
    wt = base .. '/repo/.orch/worktrees/r1/a'
    other = base .. '/repo/.orch/worktrees/r1/b'
    scratch = base .. '/scratch/a'
    home = os.getenv('HOME')
    assert(core.mkdir_p(wt .. '/src/sub'))
    assert(core.mkdir_p(other))
    assert(core.mkdir_p(scratch))
    H.write(wt .. '/src/a.lua', 'local x = 1\nreturn x\n')
    H.write(wt .. '/src/sub/b.c', 'int main(void) { return 0; }\n')
    H.write(wt .. '/README.md', '# hello\n')
    H.write(wt .. '/.git', 'gitdir: /nowhere\n')
    H.write(base .. '/secret.txt', 'outside\n')
    H.sh("ln -s /etc '" .. wt .. "/etc_link'")
    H.sh("ln -s ../../../../../secret.txt '" .. wt .. "/up_link'")
    H.sh("ln -s src '" .. wt .. "/src_link'")
  end)

  teardown(function() H.rm(base) end)

  describe('paths', function()
    local box, events
    before_each(function() box, events = new_box('edit') end)

    it('refuses ../../etc/passwd, and the model gets the refusal as a tool error', function()
      local out, err = run(box, 'read', { path = '../../etc/passwd' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      assert.is_nil(out:find('root:', 1, true))
      assert.equals('denied', events[#events].type)
      assert.equals('read', events[#events].tool)
    end)

    it('refuses an absolute path outside, and allows one inside', function()
      local out, err = run(box, 'read', { path = '/etc/passwd' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      out, err = run(box, 'write', { path = base .. '/new.txt', content = 'x' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      assert.is_nil(H.read(base .. '/new.txt'))
      out, err = run(box, 'read', { path = wt .. '/README.md' })
      assert.is_false(err)
      assert.matches('# hello', out)
    end)

    it('refuses symlinks that lead out, for reading and for writing through them', function()
      local out, err = run(box, 'read', { path = 'etc_link/passwd' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      out, err = run(box, 'read', { path = 'up_link' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      out, err = run(box, 'write', { path = 'up_link', content = 'overwritten' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      assert.equals('outside\n', H.read(base .. '/secret.txt'))
      out, err = run(box, 'write', { path = 'etc_link/orch-test', content = 'x' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      out, err = run(box, 'list', { path = 'etc_link' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      -- a missing directory, then .., then the link: the link is still seen
      out, err = run(box, 'read', { path = 'nope/../etc_link/passwd' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      out, err = run(box, 'write', { path = 'no/such/../../up_link', content = 'overwritten' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      assert.equals('outside\n', H.read(base .. '/secret.txt'))
    end)

    it('follows symlinks and .. that stay inside', function()
      local out, err = run(box, 'read', { path = 'src_link/a.lua' })
      assert.is_false(err)
      assert.matches('local x = 1', out)
      out, err = run(box, 'read', { path = 'src/sub/../a.lua' })
      assert.is_false(err)
      assert.matches('return x', out)
      out, err = run(box, 'write', { path = 'new/dir/../../made.txt', content = 'm' })
      assert.is_false(err, out)
      assert.equals('m', H.read(wt .. '/made.txt'))
      out, err = run(box, 'write', { path = 'new/../../../escape.txt', content = 'm' })
      assert.is_true(err)
      assert.matches('outside the worktree', out)
      assert.is_nil(H.read(wt .. '/../escape.txt'))
    end)

    it("keeps the agent out of the worktree's .git", function()
      local out, err = run(box, 'write', { path = '.git', content = 'gitdir: /elsewhere\n' })
      assert.is_true(err)
      assert.matches('.git', out, 1, true)
      assert.equals('gitdir: /nowhere\n', H.read(wt .. '/.git'))
    end)
  end)

  describe('files', function()
    local box
    before_each(function() box = new_box('edit') end)

    it('writes, reads with line numbers, edits exactly once', function()
      local out, err = run(box, 'write', { path = 'docs/new.md', content = 'one\ntwo\ntwo\n' })
      assert.is_false(err, out)
      assert.equals('one\ntwo\ntwo\n', H.read(wt .. '/docs/new.md'))
      out = run(box, 'read', { path = 'docs/new.md', offset = 2, limit = 1 })
      assert.equals('     2\ttwo', out)
      out, err = run(box, 'edit', { path = 'docs/new.md', old_string = 'two', new_string = '2' })
      assert.is_true(err)
      assert.matches('occurs 2 times', out)
      out, err = run(box, 'edit', { path = 'docs/new.md', old_string = 'one', new_string = '1' })
      assert.is_false(err, out)
      out, err = run(box, 'edit', { path = 'docs/new.md', old_string = 'two', new_string = '2',
                                    replace_all = true })
      assert.is_false(err, out)
      assert.equals('1\n2\n2\n', H.read(wt .. '/docs/new.md'))
      H.write(wt .. '/empty.txt', '')
      assert.equals('(empty.txt is empty)', (run(box, 'read', { path = 'empty.txt' })))
      out, err = run(box, 'edit', { path = 'docs/new.md', old_string = 'zzz', new_string = '' })
      assert.is_true(err)
      assert.matches('not found', out)
    end)

    it('lists, globs and greps inside the worktree only', function()
      local out = run(box, 'list', { path = '.' })
      assert.matches('src/', out, 1, true)
      assert.matches('etc_link@', out, 1, true)
      out = run(box, 'glob', { pattern = '**/*.{c,lua}' })
      assert.same({ 'src/a.lua', 'src/sub/b.c' }, (function()
        local t = {}
        for l in out:gmatch('[^\n]+') do t[#t + 1] = l end
        return t
      end)())
      out = run(box, 'glob', { pattern = '*.md' })
      assert.equals('README.md', out)
      assert.equals('src/a.lua', (run(box, 'glob', { pattern = './src/*.lua' })))
      assert.equals('src/a.lua', (run(box, 'glob', { pattern = wt .. '/src/*.lua' })))
      local err
      out, err = run(box, 'grep', { pattern = 'return [0-9]', path = 'src' })
      assert.is_false(err, out)
      assert.matches('src/sub/b.c:1:', out, 1, true)
      out = run(box, 'grep', { pattern = 'nothing-like-this' })
      assert.equals('no matches', out)
      out, err = run(box, 'grep', { pattern = 'root', path = '/etc' })
      assert.is_true(err)
    end)

    it('bounds what a tool returns', function()
      H.write(wt .. '/big.txt', string.rep('0123456789abcdef\n', 20000))
      local out = run(box, 'read', { path = 'big.txt' })
      assert.is_true(#out <= tools.LIMIT + 100)
      local s = tools.bound(string.rep('é', 20000), 101)
      assert.equals(s, tools.clean_utf8(s))
      assert.equals('a\239\191\189b', tools.clean_utf8('a\255b'))
    end)
  end)

  describe('tool sets', function()
    it('read-only has no write, edit or shell, and refuses them as tool errors', function()
      local box, events = new_box('read-only', { shell = 'sandbox' })
      local names = {}
      for _, s in ipairs(box.schemas) do names[#names + 1] = s.name end
      assert.same({ 'read', 'list', 'glob', 'grep' }, names)
      local out, err = run(box, 'write', { path = 'ro.txt', content = 'x' })
      assert.is_true(err)
      assert.matches('not available', out)
      assert.is_nil(H.read(wt .. '/ro.txt'))
      assert.equals('denied', events[#events].type)
      out, err = run(box, 'shell', { command = 'touch ro.txt' })
      assert.is_true(err)
      assert.matches('not available', out)
      assert.is_nil(H.read(wt .. '/ro.txt'))
    end)

    it('full has shell only when a shell mode is given; a list is taken as is', function()
      local box = new_box('full', { shell = false })
      for _, s in ipairs(box.schemas) do assert.not_equals('shell', s.name) end
      box = new_box({ 'read', 'write' })
      assert.equals(2, #box.schemas)
      assert.is_nil(tools.new({ cwd = wt, tools = { 'read', 'rm_rf' } }))
      assert.is_nil(tools.new({ cwd = wt, tools = 'everything' }))
    end)

    it('ask_orchestrator waits for the answer', function()
      local asked
      local box, events = new_box('read-only', nil, {
        ask = function(q, cb) asked = q core.timer(20, function() cb('use tabs') end) end })
      local out, err = run(box, 'ask_orchestrator', { question = 'tabs or spaces?' })
      assert.equals('tabs or spaces?', asked)
      assert.is_false(err)
      assert.equals('use tabs', out)
      assert.equals('question', events[1].type)
    end)
  end)

  describe('shell in the sandbox', function()
    local ok_sandbox
    setup(function()
      sandbox.reset()
      sandbox.probe(function(ok) ok_sandbox = ok end)
      H.run_until(function() return ok_sandbox ~= nil end, 20000)
      if os.getenv('CI') == 'true' then assert.is_true(ok_sandbox, 'bwrap must work under CI') end
    end)

    it('writes in the worktree, and fails to write in $HOME, /tmp or another worktree', function()
      if not ok_sandbox then pending('bwrap is not usable here') return end
      local box = new_box('full', { shell = 'sandbox' })
      local out, err = run(box, 'shell', { command = 'echo in > inside.txt && cat inside.txt' })
      assert.is_false(err, out)
      assert.matches('in\n%[exit status 0%]', out)
      assert.equals('in\n', H.read(wt .. '/inside.txt'))
      local probe = 'orch-sandbox-probe-' .. core.getpid()
      for _, target in ipairs({ home .. '/' .. probe, '/tmp/' .. probe, other .. '/' .. probe,
                                base .. '/' .. probe }) do
        out, err = run(box, 'shell', { command = "echo x > '" .. target .. "'" })
        assert.is_true(err, target .. ': ' .. out)
        assert.is_nil(H.read(target), target)
      end
      -- $TMPDIR is the task's own scratch, writable
      out, err = run(box, 'shell', { command = 'echo t > "$TMPDIR/t" && echo "$TMPDIR"' })
      assert.is_false(err, out)
      assert.equals('t\n', H.read(scratch .. '/tmp/t'))
    end)

    it('has no network and no secrets unless allowed', function()
      if not ok_sandbox then pending('bwrap is not usable here') return end
      local box = new_box('full', { shell = 'sandbox', secret_env = { 'MY_SECRET_VAR' } },
                          { env = { MY_SECRET_VAR = 'hush', SOME_API_KEY = 'k', PLAIN = 'p' } })
      local out = run(box, 'shell', { command = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '" })
      assert.equals('lo\n[exit status 0]', out)
      out = run(box, 'shell', { command = 'echo "[$MY_SECRET_VAR][$PLAIN]"' })
      assert.matches('[][p]', out, 1, true)
      box = new_box('full', { shell = 'sandbox', network = true })
      out = run(box, 'shell', { command = "tail -n +3 /proc/net/dev | wc -l" })
      local host = H.sh('tail -n +3 /proc/net/dev | wc -l')
      assert.equals(tonumber(host:match('%d+')), tonumber(out:match('^%s*(%d+)')))
    end)

    it("hides /run, orch's socket directory and orch's processes", function()
      if not ok_sandbox then pending('bwrap is not usable here') return end
      local sockdir = assert(core.ctl.socket_dir())
      local mark = sockdir .. '/orch-spec-probe-' .. core.getpid()
      H.write(mark, 'x')
      -- the run's control socket named in the environment, wherever it is
      local ctl = '/var/tmp/orch-spec-ctl-' .. core.getpid()
      assert(core.mkdir_p(ctl))
      H.write(ctl .. '/orch-spec-probe.sock', 'x')
      local box = new_box('full', { shell = 'sandbox' },
                          { env = { ORCH_CONTROL = ctl .. '/orch-spec-probe.sock' } })
      local out = run(box, 'shell', { command = "ls -A /run '" .. sockdir .. "' '" .. ctl
        .. "'; ls /proc | grep -c '^[0-9]'" })
      os.remove(mark)
      H.sh("rm -rf '" .. ctl .. "'")
      assert.is_nil(out:find('orch-spec-probe', 1, true), out)
      assert.is_nil(out:find('dbus', 1, true), out)
      -- the sandbox has its own pid namespace: orch's /proc/PID/environ
      -- (with the API key in it) is not there
      assert.is_true(tonumber(out:match('(%d+)\n%[exit')) < 10, out)
    end)

    it('kills a command at its timeout and bounds its output', function()
      if not ok_sandbox then pending('bwrap is not usable here') return end
      local box = new_box('full', { shell = 'sandbox' })
      local out, err = run(box, 'shell', { command = 'sleep 30', timeout = 1 })
      assert.is_true(err)
      assert.matches('killed after 1 s', out)
      out = run(box, 'shell', { command = 'yes | head -c 200000' })
      assert.matches('output cut', out)
      assert.is_true(#out < tools.LIMIT + 200)
    end)

    it('where bwrap cannot start, the probe says so', function()
      local saved = sandbox.BWRAP
      sandbox.BWRAP = '/nonexistent/bwrap'
      sandbox.reset()
      local ok, why
      sandbox.probe(function(o, w) ok, why = o, w end)
      H.run_until(function() return ok ~= nil end, 10000)
      sandbox.BWRAP = saved
      sandbox.reset()
      assert.is_false(ok)
      assert.matches('bubblewrap', why)
    end)
  end)
end)
