-- orch.tui: the split-pane terminal view of a run (see docs/tui.md).
--
--   local ui = require('orch.tui').start(engine, opts)  -- nil: no TUI here
--   ui.stop([code])        -- the run is over: hold the last screen, then close
--
-- `orch run` starts it when stdin and stderr are terminals (not with
-- --no-tui); `orch attach` (orch.attach) shows a run of another process
-- through its control socket with the same view. The renderer is C
-- (orch.core.tui, tui/*.c); this module and orch.tui.view/keys are the
-- policy: panes per task, the DAG, what each key does.
--
-- Settings (change them from ~/.config/orch/init.lua or .orch/init.lua):
--   require('orch.tui').config.max_tiles = 6
local core = require('orch.core')
local view_mod = require('orch.tui.view')
local keys = require('orch.tui.keys')

local M = {}

M.config = {
  scrollback = 10000, -- lines kept per pane
  max_tiles = 4,      -- agent panes tiled at once
  keep_panes = 8,     -- finished agents' panes kept (hidden) for Tab and Enter
  fps = 30,           -- most redraws per second
  hold = true,        -- at the end, keep the last screen until a key
  no_color = false,   -- as NO_COLOR=1
  raw_output = false, -- agent panes show the backend's raw stdout too (stream-json...)
}

local View = view_mod.View

local STATUS_KEYS = '? help  q quit  h/l focus  j/k scroll  z zoom  / search  ⏎ detail  p pause  x cancel'
local STATUS_KEYS_ASCII = '? help  q quit  h/l focus  j/k scroll  z zoom  / search  Enter detail  p pause  x cancel'

-- ---------------------------------------------------------------- sources
-- A source is what the view watches and acts on: the engine itself, or a
-- control-socket client (orch.attach). Actions take a callback cb(ok, err).

function M.engine_source(e)
  local src = { run_id = e.run.id, repo = e.run.repo, engine = e }
  function src.subscribe(_, fn) return e:subscribe(fn) end
  function src.snapshot()
    local s = e:snapshot()
    if s.tasks == nil then s = { tasks = s, run = e.run } end
    return s
  end
  function src.plan_tasks() return e.plan and e.plan.tasks or {} end
  local function act(name)
    return function(_, ...)
      local args = { ... }
      local cb = table.remove(args)
      if not e[name] then return cb(nil, 'this engine cannot ' .. name) end
      local ok, r, err = pcall(e[name], e, unpack(args))
      if not ok then return cb(nil, tostring(r)) end
      cb(r, err)
    end
  end
  src.pause, src.resume, src.cancel = act('pause'), act('resume_task'), act('cancel')
  src.answer_gate, src.answer_question = act('answer_gate'), act('answer_question')
  function src.stop(_, cb)
    core.kill(core.getpid(), 'SIGINT')
    cb(true)
  end
  function src.store() return e.store end
  return src
end

-- Where the run's stderr goes while the view draws, and after a detach.
function M.log_path(repo, run_id)
  local dir = repo and (repo .. '/.orch/logs') or ((os.getenv('TMPDIR') or '/tmp') .. '/orch-logs')
  core.mkdir_p(dir, tonumber('700', 8))
  return dir .. '/' .. tostring(run_id) .. '.log'
end

-- ---------------------------------------------------------------- the view

function M.settings(o)
  local cfg = {}
  for k, v in pairs(M.config) do cfg[k] = v end
  for k, v in pairs(type(o) == 'table' and type(o.tui) == 'table' and o.tui or {}) do cfg[k] = v end
  return cfg
end

-- Opens the screen for src. opts: log (a file to tail into the
-- orchestrator pane), attach (bool). Returns the view or nil, err.
function M.open(src, opts)
  local cfg = M.settings(opts)
  local v = view_mod.new(src, cfg)
  v.attach = opts.attach
  v.log_file = opts.log
  local scr, err = core.tui.open({
    on_key = function(k) keys.handle(v, k) end,
    on_frame = function() v:on_frame() end,
    on_resize = function() v.dag_dirty = true end,
    fps = cfg.fps, max_tiles = cfg.max_tiles, log = opts.log,
    no_color = cfg.no_color or require('orch.color').mode == 'never',
  })
  if not scr then return nil, err end
  v.scr = scr
  v.utf8 = scr:utf8()
  v.orch = scr:pane({ kind = 'orch', scrollback = cfg.scrollback })
  v.orch:title(('orchestrator · run %s%s'):format(tostring(src.run_id), opts.attach and ' (attached)' or ''))
  v.orch:symbol(v.utf8 and '◆' or '*', 'blue')
  scr:log_pane(v.orch)
  scr:focus(v.orch)
  v:set_status()
  return v
end

function View:set_status(left)
  self.status_left = left
  if self.scr then
    self.scr:status(left or self.flash_text or (self.utf8 and STATUS_KEYS or STATUS_KEYS_ASCII),
      self.status_right)
  end
end

function View:flash(text)
  self.flash_text = text
  self.flash_until = core.now() + 3000
  self:set_status(self.status_left)
end

-- Before each frame: the DAG (when something changed, or once a second
-- for the clock), the status line.
function View:on_frame()
  local now = core.now()
  local sec = math.floor(now / 1000)
  if self.dag_dirty or sec ~= self.last_sec then
    self.dag_dirty = false
    self.last_sec = sec
    self:refresh_head()
    if self.flash_until and now > self.flash_until then
      self.flash_text, self.flash_until = nil, nil
    end
    self:set_status(self.status_left)
  end
end

-- ---------------------------------------------------------------- typing, dialogs

function View:start_input(label, done, cancel)
  self.input = { label = label, text = '', done = done, cancel = cancel }
  self:show_input()
end

function View:show_input()
  if self.input then self.scr:prompt(self.input.label .. self.input.text) end
end

function View:end_input()
  self.input = nil
  self.scr:prompt(nil)
end

-- d = {title=, lines={...}, keys={y=fn(view), ...}, any=bool, esc=bool, on_close=fn}
function View:dialog(d)
  self.dlg = d
  self.scr:dialog(d.title or '', d.lines)
end

function View:close_dialog()
  self.dlg = nil
  self.scr:dialog(nil)
  -- something that waited behind this dialog comes next
  if self.pending_dialogs and #self.pending_dialogs > 0 then
    local nxt = table.remove(self.pending_dialogs, 1)
    nxt(self)
  end
end

-- A dialog now, or after the one showing.
function View:later(fn)
  if self.dlg or self.input then
    self.pending_dialogs = self.pending_dialogs or {}
    table.insert(self.pending_dialogs, fn)
  else
    fn(self)
  end
end

-- ---------------------------------------------------------------- actions

-- Runs a source action; failures flash on the status line.
function View:act(name, what, ...)
  local f = self.src[name]
  if not f then return self:flash(what .. ': not possible here') end
  local args = { ... }
  args[#args + 1] = function(ok, err)
    if not ok then self:flash(what .. ': ' .. tostring(err)) end
  end
  f(self.src, unpack(args))
end

function View:toggle_pause()
  local t = self:focused_task()
  if not t then return self:flash('focus a task pane first (h/l, Tab)') end
  if view_mod.FINISHED[t.status] then return self:flash(t.id .. ' has ended') end
  if t.paused then
    self:act('resume', 'resume ' .. t.id, t.id)
  else
    self:act('pause', 'pause ' .. t.id, t.id)
  end
end

function View:confirm_cancel()
  local t = self:focused_task()
  if not t then return self:flash('focus a task pane first (h/l, Tab)') end
  if view_mod.FINISHED[t.status] then return self:flash(t.id .. ' has ended') end
  self:dialog({
    title = 'cancel ' .. t.id .. '?',
    lines = { ('Cancel task %s? Its processes are killed and the tasks'):format(t.id),
              'that depend on it are blocked.', '',
              'y = cancel it      n / Esc = keep it running' },
    keys = { y = function(v) v:act('cancel', 'cancel ' .. t.id, t.id) end, n = function() end },
  })
end

function View:quit()
  local lines
  if self.attach then
    lines = { 's = stop the run (its tasks are interrupted; orch resume carries on)',
              'd = detach: leave this view, the run goes on', 'Esc = stay' }
  else
    lines = { 's = stop the run (its tasks are interrupted; orch resume carries on)',
              'd = detach: the run goes on headless in the background;',
              ('    orch attach %s shows it again'):format(tostring(self.src.run_id)),
              'Esc = stay' }
  end
  self:dialog({
    title = 'quit', lines = lines,
    keys = {
      s = function(v) v:act('stop', 'stop the run') end,
      d = function(v) v:detach() end,
      q = function() end,
    },
  })
end

-- The terminal is gone (its window closed): attached, leave; in the run's
-- own process, stop the run as SIGHUP does (it may come first).
function View:hangup()
  self.left = true
  if self.attach or self.detached then return end
  if core.shutdown then core.shutdown('SIGHUP') else core.kill(core.getpid(), 'SIGHUP') end
end

-- Ctrl-C: in the run's own process, the interrupt it always is (the run
-- stops and checkpoints); attached, the quit dialog.
function View:interrupt()
  if self.attach then return self:quit() end
  self:act('stop', 'stop the run')
end

-- ---------------------------------------------------------------- gates, questions

function View:show_gate(g)
  self:later(function(v)
    if not v.gates[g.gate] then return end
    local lines = {}
    for line in tostring(g.message or ('gate ' .. g.gate)):gmatch('[^\n]+') do lines[#lines + 1] = line end
    lines[#lines + 1] = ''
    lines[#lines + 1] = 'y = yes      n = no'
    v:dialog({
      title = g.gate == 'apply' and 'apply the work?' or (g.gate .. '?'), lines = lines, esc = false,
      keys = {
        y = function(w) w:act('answer_gate', 'gate ' .. g.gate, g.gate, true) end,
        n = function(w) w:act('answer_gate', 'gate ' .. g.gate, g.gate, false) end,
      },
    })
  end)
end

function View:ask_person(q)
  self:later(function(v)
    if not v.questions[q.id] then return end
    local lines = { ('%s asks:'):format(tostring(q.task or 'an agent')) }
    for line in tostring(q.question):gmatch('[^\n]+') do lines[#lines + 1] = '  ' .. line end
    lines[#lines + 1] = ''
    lines[#lines + 1] = 'Enter = type the answer      Esc = later (a answers it)'
    v:dialog({
      title = 'question', lines = lines,
      keys = { Enter = function(w)
        w:start_input('answer: ', function(text)
          w:act('answer_question', 'answer', q.id, text)
        end)
      end },
    })
  end)
end

function View:answer_next()
  local ids = {}
  for id in pairs(self.questions) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b) return tostring(a) < tostring(b) end)
  if #ids == 0 then return self:flash('no open question') end
  self:ask_person(self.questions[ids[1]])
end

function View:watch_dialogs()
  self.on_gate = function(g) self:show_gate(g) end
  self.on_question = function(q) self:ask_person(q) end
  local function close_if(pred)
    if self.dlg and pred(self.dlg) then self:close_dialog() end
  end
  self.on_gate_closed = function(g) close_if(function(d) return d.gate == g end) end
  self.on_question_closed = function(id) close_if(function(d) return d.question == id end) end
end

-- ---------------------------------------------------------------- detail

function View:open_detail()
  local t = self:focused_task()
  if self.detail then self:close_detail() end
  local p = self.scr:pane({ kind = 'detail', scrollback = 20000 })
  self.detail = { pane = p, task = t and t.id }
  require('orch.tui.detail').fill(self, p, t)
  self.scr:focus(p)
end

function View:close_detail()
  local d = self.detail
  if not d then return end
  self.detail = nil
  d.pane:close()
  local back = d.task and self.panes[d.task]
  self.scr:focus(back and back:visible() and back or self.orch)
end

-- ---------------------------------------------------------------- lifecycle

function View:begin(src)
  self:watch_dialogs()
  local ok, p = pcall(require, 'orch.progress')
  if self.attach and ok and p.lines then
    self.progress_lines = function(ev)
      local lok, lines = pcall(p.lines, ev)
      return lok and lines or {}
    end
  end
  self.unsub = src:subscribe(function(ev) self:on_event(ev) end)
  self:load(src:plan_tasks(), src:snapshot())
  -- gates and questions open before the view started
  for _, g in pairs(self.gates) do self:show_gate(g) end
end

-- Gives the terminal back (idempotent).
function View:close()
  if self.closed then return end
  self.closed = true
  if self.unsub then self.unsub() self.unsub = nil end
  local stats_file = os.getenv('ORCH_TUI_STATS')
  if self.scr and stats_file then
    local f = io.open(stats_file, 'a')
    if f then
      local st = self.scr:stats()
      f:write(('frames %d keys %d draw_ms_total %.1f draw_ms_max %.2f turns %d ' ..
        'turn_ms_max %.1f turns_over_frame %d\n'):format(st.frames, st.keys, st.draw_ms_total,
        st.draw_ms_max, st.turns, st.turn_ms_max, st.turns_over_frame))
      f:close()
    end
  end
  if self.scr then self.scr:close() self.scr = nil end
  if self.redirected then core.tui.restore() self.redirected = false end
end

-- The run is over: the last screen stays until a key (config.hold), then
-- the terminal is given back with a summary line.
function View:finish(code)
  if self.closed then return end
  code = code or self.run.exit_code
  if self.cfg.hold and self.scr and not self.detached then
    self.ended_hold = true
    if self.run.status == nil or self.run.status == 'running' then self.run.status = 'ended' end
    self.run.finished_at = self.run.finished_at or core.time() -- the clock stops
    self.dag_dirty = true
    self:set_status(self:end_text(code))
    self.scr:ref(true)
    self.scr:redraw(true)
    -- (nothing left on the loop: the terminal is gone, stop holding)
    while not self.left and not self.closed do
      if not core.run('once') then break end
    end
  end
  local summary = self:counts_line()
  self:close()
  io.stderr:write(('orch: run %s: %s (exit code %s)\n'):format(tostring(self.src.run_id),
    summary, tostring(code)))
end

function View:end_text(code)
  local id = tostring(self.src.run_id)
  if self.run.status == 'interrupted' then
    return ('run %s interrupted · orch resume %s carries on · q leaves'):format(id, id)
  end
  if code == nil then return ('run %s ended · q leaves'):format(id) end
  return ('run %s finished · exit code %s · q leaves'):format(id, tostring(code))
end

-- Detach: the view closes, the run goes on without a terminal (its
-- progress in the log file); from a job-control shell it moves itself to
-- the background, so the prompt comes back.
function View:detach()
  if self.attach then
    self.left = true
    return
  end
  local e = self.src.engine
  local fg = core.tui.foreground_leader(0)
  self:close()
  self.closed = false -- still watching nothing, but finish() must not print
  self.detached = true
  io.stderr:write(('orch: detached from run %s: it goes on in the background (pid %d),\n' ..
    'orch:   its progress in %s; `orch attach %s` shows it again\n'):format(
    tostring(self.src.run_id), core.getpid(), tostring(self.log_file), tostring(self.src.run_id)))
  io.stderr:flush()
  if e then e.interactive = false end -- nobody answers: questions get the default
  -- (orch stops on SIGHUP, as when its terminal closes; detached, it
  -- ignores it: core.tui.detach sets SIGHUP to SIG_IGN)
  if self.log_file then core.tui.detach(self.log_file) end
  if fg then M.background() end
end

-- Stops this process (the shell takes the terminal back, as after Ctrl+Z)
-- and has a helper continue it a moment later, in the background.
function M.background()
  local pid = core.getpid()
  local h = core.spawn({ argv = { '/bin/sh', '-c', ('sleep 0.2; kill -CONT %d'):format(pid) } })
  if h then core.kill(pid, 'SIGSTOP') end
end

-- ---------------------------------------------------------------- start

-- The TUI of the engine's own run. Returns {stop=fn, view=} or nil (no
-- terminal view possible here; the reason on stderr).
function M.start(engine, o)
  local src = engine.tui_source and engine or M.engine_source(engine)
  local log = M.log_path(src.repo, src.run_id)
  local f = io.open(log, 'ab') -- the screen tails it from its current end
  if f then f:close() end
  local v, err = M.open(src, { log = log, tui = o and o.tui })
  if not v then
    io.stderr:write('orch: no terminal view (', tostring(err), '): progress lines instead\n')
    return nil
  end
  -- stderr (and stdout on the terminal) to the log, which the
  -- orchestrator pane shows: nothing the run writes garbles the screen
  local ok, rerr = core.tui.redirect(log)
  if not ok then
    v:close()
    io.stderr:write('orch: no terminal view (', tostring(rerr), '): progress lines instead\n')
    return nil
  end
  v.redirected = true
  local progress = require('orch.progress')
  if progress.attach then v.unsub_progress = progress.attach(engine, {}) end
  if src.engine then src.engine.interactive = true end
  v:begin(src)
  core.on_shutdown(function(phase)
    if phase == 'begin' then v:close() end
  end)

  local ui = { view = v }
  -- ui.stop(code) and ui:stop(code) both work
  function ui.stop(a, b)
    local code = a
    if type(a) == 'table' then code = b end
    v:finish(code)
    if v.unsub_progress and not v.detached then v.unsub_progress() v.unsub_progress = nil end
  end
  return ui
end

return M
