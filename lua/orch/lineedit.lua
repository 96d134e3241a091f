-- orch.lineedit: a small line editor on the loop for `orch repl` (the
-- terminal in raw mode through orch.core.ctl.stdin; nothing blocks).
--
--   local ed = lineedit.new{prompt=, history=FILE, on_line=fn(line),
--                           on_cancel=fn(), on_eof=fn(), out=fn(s)}
--   ed:ready()   show the prompt and take keys     ed:pause()  hold keys
--   ed:print(text)  ed:set_prompt(p)  ed:close()  ed:feed(bytes) (keys in)
--
-- Keys: Left/Right, Home/End, Ctrl+A/E, Backspace, Delete, Ctrl+U/K/W,
-- Up/Down (history), Ctrl+L (clear), Ctrl+C (drop the line), Ctrl+D (leave
-- on an empty line, else delete). UTF-8 aware (one column per character).
local core = require('orch.core')

local M = {}

M.HISTORY_MAX = 1000

-- $XDG_STATE_HOME/orch/repl_history (default ~/.local/state/orch/): the
-- history is state, not data (orch.xdg). A history left in the old place,
-- $XDG_DATA_HOME/orch/repl_history, is moved there once.
function M.history_file()
  local xdg = require('orch.xdg')
  local path = xdg.state() .. '/repl_history'
  local old = xdg.data() .. '/repl_history'
  local f = io.open(path, 'r')
  if f then f:close() return path end
  f = io.open(old, 'r')
  if f then
    f:close()
    core.mkdir_p(xdg.state())
    os.rename(old, path)
  end
  return path
end

local Ed = {}
Ed.__index = Ed

local function chars(s)
  local t = {}
  for c in s:gmatch('[%z\1-\127\194-\244][\128-\191]*') do t[#t + 1] = c end
  return t
end

function M.new(o)
  local self = setmetatable({
    prompt = o.prompt or '> ', on_line = o.on_line, on_cancel = o.on_cancel,
    on_eof = o.on_eof, out = o.out, history_path = o.history,
    buf = {}, pos = 0, hist = {}, hpos = nil, inbuf = '', active = false,
  }, Ed)
  if not self.out then
    self.out = function(s) io.stdout:write(s) io.stdout:flush() end
    self.reader = core.ctl.stdin({
      raw = true,
      on_data = function(d) self:feed(d) end,
      on_eof = function() self:eof() end,
    })
    core.on_shutdown(function() self:close() end)
  end
  self:load_history()
  return self
end

function Ed:load_history()
  if not self.history_path then return end
  local f = io.open(self.history_path, 'r')
  if not f then return end
  for line in f:lines() do self.hist[#self.hist + 1] = line end
  f:close()
  while #self.hist > M.HISTORY_MAX do table.remove(self.hist, 1) end
end

function Ed:add_history(line)
  if line:match('^%s*$') or self.hist[#self.hist] == line then return end
  self.hist[#self.hist + 1] = line
  if not self.history_path then return end
  core.mkdir_p(self.history_path:match('^(.*)/[^/]*$') or '.')
  local f = io.open(self.history_path, 'a')
  if f then f:write(line, '\n') f:close() end
end

function Ed:refresh()
  local tail = #self.buf - self.pos
  self.out('\r' .. self.prompt .. table.concat(self.buf) .. '\27[K' ..
           (tail > 0 and ('\27[' .. tail .. 'D') or ''))
end

function Ed:set_prompt(p) self.prompt = p end

-- Prints text on its own lines (raw mode: \r\n).
function Ed:print(text)
  self.out((text:gsub('\r?\n', '\r\n')) .. '\r\n')
end

function Ed:ready()
  self.active = true
  self.buf, self.pos, self.hpos = {}, 0, nil
  self:refresh()
  if self.inbuf ~= '' then self:feed('') end
end

function Ed:pause() self.active = false end

function Ed:close()
  if self.reader then self.reader:close() self.reader = nil end
end

function Ed:eof()
  if self.on_eof then self.on_eof() end
end

function Ed:insert(c)
  table.insert(self.buf, self.pos + 1, c)
  self.pos = self.pos + 1
end

function Ed:submit()
  local line = table.concat(self.buf)
  self.out('\r\n')
  self:add_history(line)
  self.active = false
  self.on_line(line)
end

function Ed:history_move(d)
  if #self.hist == 0 then return end
  if not self.hpos then self.saved = table.concat(self.buf) self.hpos = #self.hist + 1 end
  local n = self.hpos + d
  if n < 1 or n > #self.hist + 1 then return end
  self.hpos = n
  self.buf = chars(n == #self.hist + 1 and self.saved or self.hist[n])
  self.pos = #self.buf
end

local KEYS = {}
KEYS['\1'] = function(ed) ed.pos = 0 end
KEYS['\5'] = function(ed) ed.pos = #ed.buf end
KEYS['\2'] = function(ed) ed.pos = math.max(0, ed.pos - 1) end
KEYS['\6'] = function(ed) ed.pos = math.min(#ed.buf, ed.pos + 1) end
KEYS['\127'] = function(ed)
  if ed.pos > 0 then table.remove(ed.buf, ed.pos) ed.pos = ed.pos - 1 end
end
KEYS['\8'] = KEYS['\127']
KEYS['\21'] = function(ed)
  for _ = 1, ed.pos do table.remove(ed.buf, 1) end
  ed.pos = 0
end
KEYS['\11'] = function(ed)
  for i = #ed.buf, ed.pos + 1, -1 do ed.buf[i] = nil end
end
KEYS['\23'] = function(ed)
  local p = ed.pos
  while p > 0 and ed.buf[p]:match('%s') do p = p - 1 end
  while p > 0 and not ed.buf[p]:match('%s') do p = p - 1 end
  for _ = p + 1, ed.pos do table.remove(ed.buf, p + 1) end
  ed.pos = p
end
KEYS['\12'] = function(ed) ed.out('\27[H\27[2J') end
KEYS['\3'] = function(ed)
  ed.out('^C\r\n')
  ed.buf, ed.pos, ed.hpos = {}, 0, nil
  if ed.on_cancel then ed.on_cancel() end
end
KEYS['\4'] = function(ed)
  if #ed.buf == 0 then
    ed.out('\r\n')
    ed.active = false
    return ed:eof()
  end
  if ed.pos < #ed.buf then table.remove(ed.buf, ed.pos + 1) end
end
KEYS['\27[A'] = function(ed) ed:history_move(-1) end
KEYS['\27[B'] = function(ed) ed:history_move(1) end
KEYS['\27[C'] = KEYS['\6']
KEYS['\27[D'] = KEYS['\2']
KEYS['\27[H'] = KEYS['\1']
KEYS['\27[F'] = KEYS['\5']
KEYS['\27OH'] = KEYS['\1']
KEYS['\27OF'] = KEYS['\5']
KEYS['\27[1~'] = KEYS['\1']
KEYS['\27[4~'] = KEYS['\5']
KEYS['\27[3~'] = function(ed)
  if ed.pos < #ed.buf then table.remove(ed.buf, ed.pos + 1) end
end
M.KEYS = KEYS

-- The next key in s: returns key, rest; or nil when s holds only part of one.
local function next_key(s)
  local b = s:byte(1)
  if b == 27 then
    if #s < 2 then return nil end
    local c = s:sub(2, 2)
    if c == '[' or c == 'O' then
      local fin = s:find('[\64-\126]', 3)
      if not fin then return nil end
      return s:sub(1, fin), s:sub(fin + 1)
    end
    return '\27', s:sub(2) -- a lone Escape (or Alt+key): ignored
  end
  local n = b < 0x80 and 1 or (b >= 0xf0 and 4 or (b >= 0xe0 and 3 or (b >= 0xc0 and 2 or 1)))
  if #s < n then return nil end
  return s:sub(1, n), s:sub(n + 1)
end

-- Keys in: edits the line, submits it on Enter. Keys that come while the
-- editor waits for a result are held until ready().
function Ed:feed(bytes)
  self.inbuf = self.inbuf .. bytes
  while self.active and self.inbuf ~= '' do
    local key, rest = next_key(self.inbuf)
    if not key then break end
    self.inbuf = rest
    if key == '\r' or key == '\n' then
      self:submit()
    else
      local fn = KEYS[key]
      if fn then
        fn(self)
      elseif key:byte(1) >= 32 and key ~= '\127' then
        self:insert(key)
      end
      if self.active then self:refresh() end
    end
  end
end

return M
