-- The split-pane TUI, driven through the real binary in tmux (send-keys,
-- capture-pane): a plan of four parallel exec tasks that print numbered
-- lines and then wait for a file the test creates, so every check happens
-- while the tasks are alive, and the run ends when the test says so.
-- No timing assertions: every wait polls capture-pane up to a deadline.
local cjson = require('cjson')
local H = require('spec.helpers')

local NAMES = { 'alpha', 'beta', 'gamma', 'delta' }
local DEADLINE = 30 -- seconds for anything to show up

local function have_tmux()
  local _, code = H.sh('command -v tmux')
  return code == 0
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- ------------------------------------------------------------------ tmux

local Tmux = {}
Tmux.__index = Tmux

local function tmux_new(dir, w, h, cmd)
  local self = setmetatable({ sock = 'orch-tui-' .. tostring(math.random(1e9)), dir = dir }, Tmux)
  local out, code = self:run(('-f /dev/null new-session -d -s main -x %d -y %d %s'):format(w, h, q(cmd)))
  assert(code == 0, out)
  self:run('set-option -g remain-on-exit on')
  return self
end

function Tmux:run(args)
  return H.sh('tmux -L ' .. self.sock .. ' ' .. args)
end

function Tmux:keys(target, ...)
  local parts = {}
  for _, k in ipairs({ ... }) do parts[#parts + 1] = q(k) end
  self:run('send-keys -t ' .. target .. ' ' .. table.concat(parts, ' '))
end

function Tmux:capture(target, escapes)
  return (self:run('capture-pane -p ' .. (escapes and '-e ' or '') .. '-t ' .. target))
end

-- Polls the window until pred(text) is true; returns the text (or fails
-- with the last screen).
function Tmux:wait(target, pred, what)
  local text
  for _ = 1, DEADLINE * 10 do
    text = self:capture(target)
    if pred(text) then return text end
    H.sh('sleep 0.1')
  end
  error(('timed out waiting for %s; the screen was:\n%s'):format(what, text), 2)
end

function Tmux:wait_for(target, plain, what)
  return self:wait(target, function(t) return t:find(plain, 1, true) ~= nil end, what or plain)
end

function Tmux:kill()
  self:run('kill-server')
end

-- ------------------------------------------------------------------ the run

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

-- Four tasks: N numbered lines, then wait for DIR/go.
local function plan(dir, n)
  local tasks = {}
  for _, name in ipairs(NAMES) do
    tasks[#tasks + 1] = { id = name, cmd = ('i=1; while [ $i -le %d ]; do echo "%s line $i"; ' ..
      'i=$((i+1)); done; while [ ! -e %s/go ]; do sleep 0.05; done; echo "%s end"'):format(
      n, name, dir, name) }
  end
  local path = dir .. '/plan.json'
  H.write(path, cjson.encode({ goal = 'tui spec', tasks = tasks }))
  return path
end

local function env_prefix(sockdir, extra)
  return ('env LANG=C.UTF-8 LC_ALL= ORCH_SOCKET_DIR=%s %s'):format(q(sockdir), extra or '')
end

-- `orch run` in the first window; the shell then prints its exit code.
local function start(t, dir, sockdir, lines, w, h, extra)
  local cmd = ('cd %s && %s %s run --plan %s --yes; echo "EXIT=$?"; sleep 600'):format(
    q(dir), env_prefix(sockdir, extra), q(H.ORCH), q(plan(dir, lines)))
  local tm = tmux_new(dir, w or 160, h or 45, cmd)
  t.tmux = tm
  return tm
end

local function all_running(text)
  for _, n in ipairs(NAMES) do
    if not text:find(n .. ' · exec · running', 1, true) then return false end
  end
  return true
end

local function all_printed(n)
  return function(text)
    if not all_running(text) then return false end
    for _, name in ipairs(NAMES) do
      if not text:find(name .. ' line ' .. n, 1, true) then return false end
    end
    return true
  end
end

-- The line of the screen holding the focus marker.
-- (plain finds: a byte class like [^│] would cut at any of its bytes)
local function split_cells(line)
  local cells, i = {}, 1
  while true do
    local a = line:find('│', i, true)
    if not a then cells[#cells + 1] = line:sub(i) return cells end
    cells[#cells + 1] = line:sub(i, a - 1)
    i = a + #'│'
  end
end

local function focused_title(text)
  for line in text:gmatch('[^\n]+') do
    local s = line:find('»', 1, true)
    if s then return split_cells(line:sub(s))[1] end
  end
end

-- The processes of a task of the test's run (found by their environment).
local the_dir
local function task_pids(name)
  local pids = {}
  for _, p in ipairs(H.ps()) do
    local env = '\0' .. (H.read('/proc/' .. p.pid .. '/environ') or '')
    if env:find('\0ORCH_TASK=' .. name .. '\0', 1, true)
        and env:find('\0ORCH_REPO=' .. the_dir .. '\0', 1, true) then
      pids[#pids + 1] = p
    end
  end
  return pids
end

local function states(name)
  local out = {}
  for _, p in ipairs(task_pids(name)) do out[#out + 1] = p.state end
  return table.concat(out)
end

-- Stopped: every process of the task stopped (T) but those that had just
-- exited (Z, their parent being stopped too).
local function stopped(name)
  local s = states(name)
  return s:find('T') ~= nil and s:match('^[TZ]+$') ~= nil
end

local function wait_until(pred, what)
  for _ = 1, DEADLINE * 10 do
    if pred() then return true end
    H.sh('sleep 0.1')
  end
  error('timed out waiting for ' .. what, 2)
end

-- Checks that a screen is a clean tiling: w columns by h rows, one
-- orchestrator title, four agent titles, the status line last, and every
-- agent row made only of "NAME line N" text, blanks and separators.
local function assert_clean(text, w, h)
  local lines = {}
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = line end
  while #lines > h and lines[#lines] == '' do lines[#lines] = nil end
  assert.equal(h, #lines, text)
  local titles, orch = 0, 0
  for _, line in ipairs(lines) do
    local _, n = line:gsub('[^\128-\191]', '')
    assert.is_true(n <= w, 'a line wider than the window: ' .. line)
    if line:find('orchestrator · run', 1, true) then orch = orch + 1 end
    for _, name in ipairs(NAMES) do
      if line:find(name .. ' · exec', 1, true) then titles = titles + 1 end
    end
  end
  assert.equal(1, orch, text)
  assert.equal(4, titles, text)
  assert.truthy(lines[h]:find('q quit', 1, true), 'status line last:\n' .. text)
  -- agent rows: cut at the separators, each cell is a title, blank or a line
  for i, line in ipairs(lines) do
    if i < h and line:find('line %d') then
      for _, cell in ipairs(split_cells(line)) do
        local ok = cell:match('^%s*$') or cell:find('·', 1, true) or cell:find('─', 1, true)
          or cell:match('^%a+ line %d+%s*$') or cell:match('^[^%w]*%S')
        assert.truthy(ok, ('garbage in row %d: [%s]\n%s'):format(i, cell, text))
        if cell:find(' line %d') and not cell:find('·', 1, true) then
          assert.truthy(cell:match('^%a+ line %d+%s*$'), ('garbage in row %d: [%s]\n%s'):format(i, cell, text))
        end
      end
    end
  end
end

-- ------------------------------------------------------------------ specs

describe('the TUI', function()
  local dir, sockdir, ctx

  setup(function()
    math.randomseed(os.time() + tonumber(tostring({}):match('0x(%x+)'), 16) % 1000)
  end)

  before_each(function()
    assert.is_true(have_tmux(), 'tmux is needed (scripts/install-deps.sh installs it)')
    dir = H.tmpdir()
    the_dir = dir
    git_repo(dir)
    sockdir = H.tmpdir()
    H.sh('chmod 700 ' .. q(sockdir))
    ctx = {}
  end)

  after_each(function()
    H.write(dir .. '/go', '') -- lets any task still waiting end
    -- whatever the test left: the run's orch (detached ones too) stops its
    -- tasks (paused ones too) on SIGTERM
    local left = {}
    for _, p in ipairs(H.ps()) do
      if p.cmd:sub(1, #H.ORCH) == H.ORCH and p.cmd:find(dir .. '/plan', 1, true) then
        H.sh('kill -TERM ' .. p.pid)
        left[#left + 1] = p.pid
      end
    end
    for _, pid in ipairs(left) do
      wait_until(function() return H.read('/proc/' .. pid .. '/stat') == nil end, 'orch ' .. pid .. ' to stop')
    end
    if ctx.tmux then ctx.tmux:kill() end
    if os.getenv('TUI_SPEC_KEEP') then print('# kept ' .. dir) else H.rm(dir) end
    H.rm(sockdir)
  end)

  it('shows four agent panes and the orchestrator pane; at the end every pane is done, exit 0', function()
    local t = start(ctx, dir, sockdir, 20)
    local text = t:wait('main:0', all_printed(20), 'four running panes')
    assert.truthy(text:find('◆ orchestrator · run', 1, true), text)
    for _, n in ipairs(NAMES) do
      assert.truthy(text:find('▶ ' .. n .. ' · exec · running', 1, true), text)
      -- the DAG lists each task with its status
      assert.truthy(text:match('▶ [ *] ' .. n .. '%s+running'), text)
    end
    assert.truthy(text:find('4 running', 1, true), text)
    -- in colour (the NO_COLOR case below has none)
    local raw = t:capture('main:0', true)
    assert.truthy(raw:find('\27%[[0-9;]*3[1-7]m') or raw:find('\27%[[0-9;]*38;'), raw)
    H.write(dir .. '/go', '')
    text = t:wait('main:0', function(s) return s:find('finished · exit code', 1, true) end, 'the end')
    for _, n in ipairs(NAMES) do
      assert.truthy(text:find('✓ ' .. n .. ' · exec · done', 1, true), text)
      assert.truthy(text:find(n .. ' end', 1, true), text)
    end
    assert.truthy(text:find('exit code 0', 1, true), text)
    t:keys('main:0', 'q')
    t:wait_for('main:0', 'EXIT=0', 'the exit code')
  end)

  it('moves the focus with l and h, zooms with z, scrolls with g and G, finds with /', function()
    local t = start(ctx, dir, sockdir, 400)
    t:wait('main:0', all_printed(400), 'four panes with 400 lines')
    assert.truthy(focused_title(t:capture('main:0')):find('orchestrator', 1, true))
    t:keys('main:0', 'l')
    t:wait('main:0', function(s) return (focused_title(s) or ''):find('alpha', 1, true) end, 'focus on alpha')
    t:keys('main:0', 'l')
    t:wait('main:0', function(s) return (focused_title(s) or ''):find('beta', 1, true) end, 'focus on beta')
    t:keys('main:0', 'h')
    t:wait('main:0', function(s) return (focused_title(s) or ''):find('alpha', 1, true) end, 'focus back on alpha')
    -- zoom: alpha alone on the screen, its title on the first row
    t:keys('main:0', 'z')
    local text = t:wait('main:0', function(s)
      return s:match('^» ▶ alpha') and not s:find('beta · exec', 1, true)
    end, 'alpha zoomed')
    assert.falsy(text:find('orchestrator', 1, true), text)
    -- g: the top (line 1 in view); G: the bottom again
    t:keys('main:0', 'g')
    t:wait('main:0', function(s) return s:find('\nalpha line 1\n', 1, true) end, 'the top of alpha')
    t:keys('main:0', 'G')
    text = t:wait('main:0', function(s)
      return s:find('alpha line 400', 1, true) and not s:find('\nalpha line 1\n', 1, true)
    end, 'the bottom of alpha')
    -- /: a line far above the view
    assert.falsy(text:find('\nalpha line 123\n', 1, true), text)
    t:keys('main:0', '/', 'line 123', 'Enter')
    t:wait('main:0', function(s) return s:find('\nalpha line 123\n', 1, true) end, 'the line found')
    -- z again: the tiles are back
    t:keys('main:0', 'z')
    t:wait('main:0', function(s) return all_running(s) and s:find('orchestrator', 1, true) end, 'tiles')
  end)

  it('pauses a task with p (its processes are stopped) and resumes it with p', function()
    local t = start(ctx, dir, sockdir, 5)
    t:wait('main:0', all_printed(5), 'four running panes')
    wait_until(function() return #task_pids('gamma') > 0 end, 'gamma processes')
    -- Tab walks the panes (orchestrator, alpha, beta, gamma, delta)
    for _ = 1, 6 do
      if (focused_title(t:capture('main:0')) or ''):find('gamma', 1, true) then break end
      t:keys('main:0', 'Tab')
      H.sh('sleep 0.1')
    end
    assert.truthy((focused_title(t:capture('main:0')) or ''):find('gamma', 1, true))
    t:keys('main:0', 'p')
    t:wait_for('main:0', 'gamma · exec · paused', 'gamma paused')
    wait_until(function() return stopped('gamma') end, 'gamma stopped (state T)')
    assert.is_nil(states('alpha'):find('T'), 'alpha is not stopped')
    t:keys('main:0', 'p')
    t:wait_for('main:0', 'gamma · exec · running', 'gamma running again')
    wait_until(function() return not states('gamma'):find('T') end, 'gamma continued')
    -- x cancels, after a confirmation
    t:keys('main:0', 'x')
    t:wait_for('main:0', 'Cancel task gamma?', 'the cancel dialog')
    t:keys('main:0', 'n')
    t:wait('main:0', function(s) return not s:find('Cancel task gamma?', 1, true) end, 'the dialog closed')
    assert.truthy(t:capture('main:0'):find('gamma · exec · running', 1, true))
    t:keys('main:0', 'x')
    t:wait_for('main:0', 'Cancel task gamma?', 'the cancel dialog again')
    t:keys('main:0', 'y')
    t:wait_for('main:0', 'gamma · exec · cancelled', 'gamma cancelled')
    wait_until(function() return #task_pids('gamma') == 0 end, 'gamma\'s processes gone')
    assert.truthy(#task_pids('alpha') > 0, 'the others go on')
  end)

  it('shows an agent\'s question, the task detail and the apply gate as dialogs', function()
    local tasks = {
      { id = 'alpha', cmd = ('echo %s | %s repl --repo %s; while [ ! -e %s/answer ]; do sleep 0.05; done; ' ..
        'echo "answer: $(cat %s/answer)"'):format(
        q('orch.engine:ask("alpha", "which colour?", function(a) local f = io.open("' .. dir ..
          '/answer", "w") f:write(a) f:close() end)'), q(H.ORCH), q(dir), q(dir), q(dir)) },
      { id = 'gamma', cmd = 'echo painted > gamma.txt; echo "gamma wrote"', files = { 'gamma.txt' } },
    }
    local path = dir .. '/plan2.json'
    H.write(path, cjson.encode({ goal = 'dialogs', tasks = tasks }))
    local cmd = ('cd %s && %s %s run --plan %s; echo "EXIT=$?"; sleep 600'):format(
      q(dir), env_prefix(sockdir), q(H.ORCH), q(path))
    local t = tmux_new(dir, 160, 45, cmd)
    ctx.tmux = t
    local text = t:wait_for('main:0', 'which colour?', 'the question dialog')
    assert.truthy(text:find('alpha asks:', 1, true), text)
    t:keys('main:0', 'Enter')
    t:wait_for('main:0', '\nanswer:', 'the answer prompt')
    t:keys('main:0', 'blue', 'Enter')
    t:wait_for('main:0', 'answer: blue', 'the task got the answer')
    -- the apply gate, once every task is done
    t:wait_for('main:0', 'apply its work to your branch?', 'the apply gate')
    t:keys('main:0', 'y')
    t:wait_for('main:0', 'finished · exit code 0', 'the end')
    -- the detail of gamma: its command, its state, its work
    for _ = 1, 6 do
      if (focused_title(t:capture('main:0')) or ''):find('gamma', 1, true) then break end
      t:keys('main:0', 'Tab')
      H.sh('sleep 0.1')
    end
    assert.truthy((focused_title(t:capture('main:0')) or ''):find('gamma', 1, true))
    t:keys('main:0', 'Enter')
    text = t:wait('main:0', function(s) return s:find('── prompt', 1, true) and s:find('+painted', 1, true) end,
      'the detail view with the diff')
    assert.truthy(text:find('$ echo painted > gamma.txt', 1, true), text)
    assert.truthy(text:find('status done', 1, true), text)
    t:keys('main:0', 'Escape')
    t:wait('main:0', function(s) return not s:find('── prompt', 1, true) end, 'the detail closed')
    t:keys('main:0', 'q')
    t:wait_for('main:0', 'EXIT=0', 'the exit code')
    -- the gate let the work into the branch
    assert.equal('painted\n', H.read(dir .. '/gamma.txt'))
    assert.equal('blue', H.read(dir .. '/answer'))
  end)

  it('q offers stop or detach; after detach orch attach shows the run and it finishes', function()
    local t = start(ctx, dir, sockdir, 30)
    t:wait('main:0', all_printed(30), 'four running panes')
    t:keys('main:0', 'q')
    local text = t:wait_for('main:0', 'd = detach', 'the quit dialog')
    assert.truthy(text:find('s = stop the run', 1, true), text)
    t:keys('main:0', 'd')
    t:wait_for('main:0', 'detached from run', 'the detach message')
    -- the run goes on: its orch is alive, its tasks too
    assert.truthy(#task_pids('alpha') > 0)
    t:run(('new-window -t main -n att %s'):format(q(('cd %s && %s %s attach; echo "ATTACH=$?"; sleep 600')
      :format(q(dir), env_prefix(sockdir), q(H.ORCH)))))
    text = t:wait('main:att', all_printed(30), 'the attached view')
    assert.truthy(text:find('(attached)', 1, true) or text:find('orchestrator · run', 1, true), text)
    -- the same keys act through the control socket: pause and resume
    t:keys('main:att', 'l')
    t:wait('main:att', function(s) return (focused_title(s) or ''):find('alpha', 1, true) end, 'focus on alpha')
    t:keys('main:att', 'p')
    t:wait_for('main:att', 'alpha · exec · paused', 'alpha paused through the socket')
    wait_until(function() return stopped('alpha') end, 'alpha stopped')
    t:keys('main:att', 'p')
    t:wait_for('main:att', 'alpha · exec · running', 'alpha running again')
    H.write(dir .. '/go', '')
    text = t:wait('main:att', function(s) return s:find('finished · exit code', 1, true) end, 'the end, attached')
    for _, n in ipairs(NAMES) do
      assert.truthy(text:find('✓ ' .. n .. ' · exec · done', 1, true), text)
    end
    t:wait_for('main:0', 'EXIT=0', 'the detached run exits 0')
    t:keys('main:att', 'q')
    t:wait_for('main:att', 'ATTACH=0', 'attach leaves')
  end)

  it('attaches to a run started with --no-tui; q then s stops it from the attached view', function()
    local cmd = ('cd %s && %s %s run --plan %s --yes --no-tui; echo "EXIT=$?"; sleep 600'):format(
      q(dir), env_prefix(sockdir), q(H.ORCH), q(plan(dir, 12)))
    local t = tmux_new(dir, 160, 45, cmd)
    ctx.tmux = t
    t:wait_for('main:0', 'delta: started', 'the plain progress lines')
    t:run(('new-window -t main -n att %s'):format(q(('cd %s && %s %s attach; echo "ATTACH=$?"; sleep 600')
      :format(q(dir), env_prefix(sockdir), q(H.ORCH)))))
    -- the panes start with what the tasks wrote before the view came
    t:wait('main:att', all_printed(12), 'the attached view with the output so far')
    t:keys('main:att', 'q')
    t:wait_for('main:att', 's = stop the run', 'the quit dialog')
    t:keys('main:att', 's')
    t:wait_for('main:0', 'EXIT=130', 'the run stopped (interrupted)')
    t:wait_for('main:att', 'interrupted · orch resume', 'the attached view holds the last state')
    t:keys('main:att', 'q')
    t:wait_for('main:att', 'ATTACH=0', 'attach leaves')
    wait_until(function() return #task_pids('alpha') == 0 end, 'no task process left')
  end)

  it('re-tiles without garbage at 80x24 and 250x70', function()
    local t = start(ctx, dir, sockdir, 100)
    t:wait('main:0', all_printed(100), 'four running panes')
    t:run('resize-window -t main -x 80 -y 24')
    local text = t:wait('main:0', function(s)
      local n = 0
      for _ in s:gmatch('[^\n]*\n') do n = n + 1 end
      return n <= 25 and all_running(s) and s:find('q quit', 1, true)
    end, 'the 80x24 layout')
    assert_clean(text, 80, 24)
    t:run('resize-window -t main -x 250 -y 70')
    text = t:wait('main:0', function(s)
      local n = 0
      for _ in s:gmatch('[^\n]*\n') do n = n + 1 end
      -- redrawn for the new size: the orchestrator column beside the agents
      return n >= 70 and all_running(s) and s:match('^[^\n]*orchestrator[^\n]*alpha · exec') ~= nil
        and s:match('\n[^\n]*q quit[^\n]*\n*$') ~= nil
    end, 'the 250x70 layout')
    assert_clean(text, 250, 70)
    -- wide: the orchestrator pane is a column left of the agents
    assert.truthy(text:match('^[^\n]*orchestrator[^\n]*alpha · exec'), text)
  end)

  it('shows the statuses as symbols under NO_COLOR=1, with no colour codes', function()
    local t = start(ctx, dir, sockdir, 5, 160, 45, 'NO_COLOR=1')
    local text = t:wait('main:0', all_printed(5), 'four running panes')
    for _, n in ipairs(NAMES) do
      assert.truthy(text:find('▶ ' .. n .. ' · exec', 1, true), text)
    end
    local raw = t:capture('main:0', true)
    assert.falsy(raw:find('\27%[[0-9;]*3[1-7]m') or raw:find('\27%[[0-9;]*38;'), 'colour codes: ' .. raw)
    H.write(dir .. '/go', '')
    text = t:wait('main:0', function(s) return s:find('finished · exit code', 1, true) end, 'the end')
    for _, n in ipairs(NAMES) do
      assert.truthy(text:find('✓ ' .. n .. ' · exec · done', 1, true), text)
    end
  end)
end)

-- What an agent pane says of each normalised backend event (one line each,
-- the whole kept for the expanded view), without a terminal.
describe('the TUI agent events', function()
  local view = require('orch.tui.view')

  it('condenses each event type to one line, keeping the whole of a long one', function()
    local text, style, full = view.condense({ type = 'text', text = 'first line\nsecond line' })
    assert.equal('first line', text)
    assert.equal('text', style)
    assert.equal('first line\nsecond line', full)
    text, style, full = view.condense({ type = 'tool_call', tool = 'Bash', input = { command = 'make test' } })
    assert.equal('▸ Bash make test', text)
    assert.equal('tool', style)
    assert.truthy(full:find('"command":"make test"', 1, true))
    text, style = view.condense({ type = 'tool_result', output = 'ok\n41 tests', is_error = false })
    assert.equal('  ↳ ok', text)
    assert.equal('result', style)
    local _, st2 = view.condense({ type = 'tool_result', output = 'boom', is_error = true })
    style = st2
    assert.equal('error', style)
    text, style = view.condense({ type = 'question', question = 'json or yaml?' })
    assert.equal('? json or yaml?', text)
    assert.equal('question', style)
    text = view.condense({ type = 'denied', tool = 'Write', message = 'read-only role' })
    assert.equal('✗ denied Write: read-only role', text)
    text = view.condense({ type = 'usage', usage = { input_tokens = 10, output_tokens = 5 }, cost_usd = 0.0123 })
    assert.equal('· usage: 10 in, 5 out · $0.0123', text)
    text = view.condense({ type = 'session', session_id = 'abc' })
    assert.equal('· session abc', text)
    text, style = view.condense({ type = 'result', text = 'done', ok = true })
    assert.equal('= done', text)
    assert.equal('text', style)
    text, style = view.condense({ type = 'error', message = 'rate limited', retryable = true })
    assert.equal('! rate limited (retryable)', text)
    assert.equal('error', style)
    text = view.condense({ type = 'something_new' })
    assert.equal('· something_new', text)
    -- a short one-line event keeps no separate whole
    local _, _, whole = view.condense({ type = 'text', text = 'short' })
    assert.is_nil(whole)
  end)

  -- a screen that records what its panes are told
  local function fake_screen()
    local scr = { panes = {}, n = 0 }
    function scr:pane()
      self.n = self.n + 1
      local p = { lines = {}, n = self.n }
      function p.id() return p.n end
      function p.push(_, text, style) p.lines[#p.lines + 1] = { text, style } end
      function p.replace_last(_, text, style) p.lines[#p.lines] = { text, style } end
      function p.push_lines(_, list, style) for _, l in ipairs(list) do p:push(l, style) end end
      function p.symbol() end
      function p.title(_, t) p.title_text = t end
      function p.order() end
      function p.show(_, on) p.shown = on end
      self.panes[#self.panes + 1] = p
      return p
    end
    function scr.focus() return 0 end
    function scr.redraw() end
    return scr
  end

  it('joins streamed text into lines and keeps an agent\'s raw stdout out', function()
    local v = view.new({ run_id = 'r' }, { max_tiles = 4, keep_panes = 8, scrollback = 10 })
    v.scr = fake_screen()
    v:load({ { id = 'a', role = 'coder' } }, { tasks = {} })
    v:on_event({ kind = 'task', task = 'a', status = 'running', attempt = 1, backend = 'openai', model = 'm' })
    v:on_event({ kind = 'output', task = 'a', stream = 'stdout', lines = { '{"raw":"stream-json"}' } })
    v:on_event({ kind = 'output', task = 'a', stream = 'stderr', lines = { 'a warning' } })
    v:on_event({ kind = 'agent', task = 'a', type = 'text', text = 'Hel' })
    v:on_event({ kind = 'agent', task = 'a', type = 'text', text = 'lo\nwor' })
    v:on_event({ kind = 'agent', task = 'a', type = 'text', text = 'ld' })
    v:on_event({ kind = 'agent', task = 'a', type = 'tool_call', tool = 'read', input = { path = 'x.c' } })
    v:on_event({ kind = 'agent', task = 'a', type = 'text', text = 'after' })
    local p = v.panes.a
    local texts = {}
    for i, l in ipairs(p.lines) do texts[i] = l[1] end
    assert.same({ 'a warning', 'Hello', 'world', '▸ read x.c', 'after' }, texts)
    assert.equal('stderr', p.lines[1][2])
    assert.equal('a · coder · openai/m · running', p.title_text)
    -- a command's stdout is its pane
    v:load({ { id = 'c', cmd = 'make' } }, { tasks = {} })
    v:on_event({ kind = 'task', task = 'c', status = 'running', attempt = 1 })
    v:on_event({ kind = 'output', task = 'c', stream = 'stdout', lines = { 'cc -c x.c' } })
    assert.same({ 'cc -c x.c', 'normal' }, v.panes.c.lines[1])
    assert.equal('c · exec · running', v.panes.c.title_text)
  end)

  it('tiles max_tiles of the running agents; ] turns which', function()
    local v = view.new({ run_id = 'r' }, { max_tiles = 4, keep_panes = 8, scrollback = 10 })
    v.scr = fake_screen()
    local six = {}
    for i = 1, 6 do six[i] = { id = 't' .. i, cmd = 'true' } end
    v:load(six, { tasks = {} })
    for i = 1, 6 do v:on_event({ kind = 'task', task = 't' .. i, status = 'running', attempt = 1 }) end
    local function shown()
      local out = {}
      for i = 1, 6 do if v.panes['t' .. i].shown then out[#out + 1] = i end end
      return table.concat(out, ',')
    end
    assert.equal('1,2,3,4', shown())
    assert.truthy(table.concat(v:dag_lines(), '\n'):find('2 more running', 1, true))
    v.tile_offset = 1
    v:retile()
    assert.equal('2,3,4,5', shown())
    -- a finished agent makes room
    v:on_event({ kind = 'task', task = 't3', status = 'done', exit_code = 0 })
    v.tile_offset = 0
    v:retile()
    assert.equal('1,2,4,5', shown())
  end)

  it('finds the critical path among the unfinished tasks', function()
    local v = view.new({ run_id = 'r' }, { max_tiles = 4, keep_panes = 8, scrollback = 10 })
    v:load({ { id = 'a' }, { id = 'b', deps = { 'a' } }, { id = 'c', deps = { 'b' } },
             { id = 'd', deps = { 'a' } } }, { tasks = {} })
    assert.same({ 'a', 'b', 'c' }, v:critical_path())
    v.tasks.a.status = 'done'
    assert.same({ 'b', 'c' }, v:critical_path())
    local lines = v:dag_lines()
    assert.truthy(lines[1]:find('run r', 1, true))
    assert.truthy(table.concat(lines, '\n'):find('critical path: b → c', 1, true))
  end)
end)
