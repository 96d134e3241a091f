-- The approval prompt from a real terminal (tmux): orch run waits at the
-- apply gate without running the loop inside a callback, a "y" applies the
-- run's work, and Ctrl+C at the prompt still ends orch with 130.
local cjson = require('cjson')
local H = require('spec.helpers')

local tmux_mod = require('spec.tmux')
local TMUX = tmux_mod.BIN
local sh_quote = tmux_mod.quote

-- A tmux server of its own with one window running cmd in a shell.
local function tmux(sock) return tmux_mod.new(sock, { width = 120, height = 30 }) end

describe('the approval prompt on a terminal', function()
  local dir, t
  before_each(function()
    dir = H.tmpdir()
    H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
          ' && echo x > README && git add README && git commit -qm init'):format(dir))
    H.write(dir .. '/plan.json', cjson.encode({ tasks = {
      { id = 'w', cmd = 'echo work > made.txt' } } }))
    t = tmux(dir .. '/tmux.sock')
  end)
  after_each(function()
    if t then t.kill() end
    H.rm(dir)
  end)

  local function start()
    local bin = H.sh('cd ' .. sh_quote(H.SRC) .. ' && realpath ' .. sh_quote(H.ORCH)):gsub('%s+$', '')
    -- the shell keeps going after Ctrl+C (a trap, which orch does not inherit)
    t.start(("trap : INT; cd %s && ORCH_SOCKET_DIR=%s/s %s run --plan plan.json --no-tui; echo \"EXIT=$?\"; sleep 30")
      :format(sh_quote(dir), sh_quote(dir), sh_quote(bin)))
    assert.is_true(t.wait_for('apply its work to your branch? [y/N]'), t.screen())
  end

  it('applies the work on "y"', function()
    assert.truthy(TMUX ~= '', 'tmux is needed for this spec')
    start()
    t.keys('y Enter')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    assert.matches('EXIT=0', t.screen())
    assert.matches('applied orch/', t.screen())
    assert.equal('work\n', H.read(dir .. '/made.txt'))
  end)

  it('leaves the work on its branch on "n"', function()
    start()
    t.keys('n Enter')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    assert.matches('EXIT=0', t.screen())
    assert.matches('git merge orch/', t.screen())
    assert.is_nil(H.read(dir .. '/made.txt'))
  end)

  it('still ends with 130 on Ctrl+C at the prompt, and the run is resumable', function()
    start()
    t.keys('C-c')
    assert.is_true(t.wait_for('EXIT='), t.screen())
    assert.matches('EXIT=130', t.screen())
    local st = H.orch({ 'status', '--repo', dir, '--json' })
    assert.equal('interrupted', cjson.decode(st.out).run.status)
  end)

  it('reads the terminal raw and reports its size changes (SIGWINCH)', function()
    local bin = H.sh('cd ' .. sh_quote(H.SRC) .. ' && realpath ' .. sh_quote(H.ORCH)):gsub('%s+$', '')
    H.write(dir .. '/term.lua', [[
      local core = require('orch.core')
      local r
      r = core.ctl.stdin({ raw = true,
        on_data = function(d)
          io.stdout:write('got ', ('%q'):format(d), ' raw=', tostring(r.raw), '\r\n') io.stdout:flush()
          if d:find('q', 1, true) then r:close() end
        end,
        on_resize = function(c, rows) io.stdout:write('size ', c, 'x', rows, '\r\n') io.stdout:flush() end,
      })
      print('ready ' .. table.concat({ core.ctl.tty_size() }, 'x'))
    ]])
    t.start(('%s run %s; echo "EXIT=$?"; sleep 30'):format(sh_quote(bin), sh_quote(dir .. '/term.lua')))
    assert.is_true(t.wait_for('ready 120x30'), t.screen())
    t.keys('a')
    assert.is_true(t.wait_for('got "a" raw=true'), t.screen())
    H.sh(TMUX .. ' -S ' .. sh_quote(dir .. '/tmux.sock') .. ' resize-window -x 100 -y 20')
    assert.is_true(t.wait_for('size 100x20'), t.screen())
    t.keys('q')
    assert.is_true(t.wait_for('EXIT=0'), t.screen())
  end)
end)
