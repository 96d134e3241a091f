-- orch.tui.keys: what the keys do in the split-pane view. A key arrives
-- by name from the C side ("j", "C-w", "Enter", "Up", "é"); the view is in
-- one of four modes: normal, after Ctrl-w, typing (a search, an answer),
-- or a dialog (its own keys).
local M = {}

-- A single character (typed text), as opposed to a key name like "Up".
local function is_char(k)
  return k == 'Space' or (#k <= 4 and k:match('^[%z\1-\127\194-\244][\128-\191]*$') ~= nil)
end
M.is_char = is_char

local function pane(v) return v:focused_pane() end

local function focus(dir)
  return function(v) v.scr:move_focus(dir) end
end

local function scroll(n) return function(v) pane(v):scroll(n) end end
local function half(d) return function(v) pane(v):half(d) end end

local function search_next(dir)
  return function(v)
    local p = pane(v)
    if not p:search(nil, dir) then v:flash('no match') end
  end
end

M.HELP = {
  'h l  ← →      focus the pane left / right',
  'Ctrl-w h/j/k/l  focus in any direction (Ctrl-w w: next)',
  'Tab  S-Tab    next / previous pane',
  '] [           more agents than tiles: turn which are tiled',
  'z             zoom the focused pane (again: tile)',
  'j k  ↓ ↑      scroll a line     Ctrl-d Ctrl-u  half a page',
  'g G           top / bottom (G follows new output)',
  '/ n N         search older lines, next, previous',
  'e             expand / condense agent events',
  'Enter         the task\'s detail: prompt, diff so far, Q&A',
  'p             pause / resume the task',
  'x             cancel the task (asks first)',
  'a             answer an open question',
  'Esc           close the detail / unzoom',
  'q             quit: stop the run, or detach and leave it running',
  '?             this help',
  '',
  'any key closes this help',
}

M.NORMAL = {
  h = focus('h'), l = focus('l'), Left = focus('h'), Right = focus('l'),
  ['C-w'] = function(v) v.mode = 'ctrlw' end,
  Tab = function(v) v.scr:cycle(1) end,
  ['S-Tab'] = function(v) v.scr:cycle(-1) end,
  z = function(v) v.scr:zoom(not v.scr:zoom()) end,
  j = scroll(-1), Down = scroll(-1), k = scroll(1), Up = scroll(1),
  g = function(v) pane(v):top() end, Home = function(v) pane(v):top() end,
  G = function(v) pane(v):bottom() end, End = function(v) pane(v):bottom() end,
  ['C-d'] = half(-1), ['C-u'] = half(1),
  PageDown = function(v) pane(v):half(-1) pane(v):half(-1) end,
  PageUp = function(v) pane(v):half(1) pane(v):half(1) end,
  ['/'] = function(v)
    v:start_input('/', function(text)
      if text == '' then return end
      if not pane(v):search(text, -1) then v:flash('not found: ' .. text) end
    end)
  end,
  n = search_next(-1), N = search_next(1),
  e = function(v) local p = pane(v) p:expand(not p:expand()) end,
  Enter = function(v) v:open_detail() end,
  p = function(v) v:toggle_pause() end,
  x = function(v) v:confirm_cancel() end,
  a = function(v) v:answer_next() end,
  ['?'] = function(v) v:dialog({ title = 'keys', lines = M.HELP, any = true }) end,
  q = function(v)
    if v.detail then return v:close_detail() end
    v:quit()
  end,
  ['C-c'] = function(v) v:interrupt() end,
  Esc = function(v)
    if v.detail then return v:close_detail() end
    if v.scr:zoom() then v.scr:zoom(false) end
  end,
  ['C-l'] = function(v) v.scr:redraw(true) end,
  [']'] = function(v) v.tile_offset = (v.tile_offset or 0) + 1 v:retile() end,
  ['['] = function(v) v.tile_offset = (v.tile_offset or 0) - 1 v:retile() end,
}

local CTRLW = {
  h = 'h', j = 'j', k = 'k', l = 'l', Left = 'h', Down = 'j', Up = 'k', Right = 'l',
  ['C-h'] = 'h', ['C-j'] = 'j', ['C-k'] = 'k', ['C-l'] = 'l',
}

local function on_ctrlw(v, key)
  v.mode = nil
  local d = CTRLW[key]
  if d then return v.scr:move_focus(d) end
  if key == 'w' or key == 'C-w' then return v.scr:cycle(1) end
  if key == 'W' then return v.scr:cycle(-1) end
end

-- Typing: printable characters go in; Enter ends; Esc drops it.
local function on_input(v, key)
  local inp = v.input
  if key == 'Enter' then
    v:end_input()
    return inp.done(inp.text)
  elseif key == 'Esc' or key == 'C-c' or key == 'C-g' then
    v:end_input()
    if inp.cancel then inp.cancel() end
    return
  elseif key == 'Backspace' or key == 'C-h' then
    inp.text = inp.text:gsub('[%z\1-\127\194-\244][\128-\191]*$', '')
  elseif key == 'C-u' then
    inp.text = ''
  elseif key == 'C-w' then
    inp.text = inp.text:gsub('%s*[^%s]*$', '')
  elseif is_char(key) then
    inp.text = inp.text .. (key == 'Space' and ' ' or key)
  end
  v:show_input()
end

local function on_dialog(v, key)
  local d = v.dlg
  local f = d.keys and d.keys[key]
  if f then
    v:close_dialog()
    return f(v)
  end
  if d.any or ((key == 'Esc' or key == 'C-c') and d.esc ~= false) then
    v:close_dialog()
    if d.on_close then d.on_close(v) end
  end
end

function M.handle(v, key)
  if key == 'Hangup' then return v:hangup() end
  if v.ended_hold and not v.dlg and not v.input then
    if key == 'q' or key == 'C-c' then
      v.left = true
      return
    end
  end
  if v.dlg then return on_dialog(v, key) end
  if v.input then return on_input(v, key) end
  if v.mode == 'ctrlw' then return on_ctrlw(v, key) end
  local f = M.NORMAL[key]
  if f then return f(v) end
end

return M
