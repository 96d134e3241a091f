-- orch.prompt: the terminal's answers to a run's gates and questions, for
-- runs without the TUI. A subscriber of the engine's events: an open gate
-- ({kind='gate', status='open'}) or an open question ({kind='question'}
-- without an answer) is asked on stderr, one at a time, and the line read
-- from stdin (on the loop, so Ctrl+C still stops orch with 130) answers it
-- through engine:answer_gate / engine:answer_question.
--
--   local p = prompt.attach(engine)   -- sets engine.interactive
--   p:stop()
local core = require('orch.core')

local M = {}

local Prompt = {}
Prompt.__index = Prompt

function M.attach(e, opts)
  opts = opts or {}
  local self = setmetatable({ engine = e, queue = {}, out = opts.out or io.stderr }, Prompt)
  e.interactive = true
  self.unsub = e:subscribe(function(ev) self:on_event(ev) end)
  return self
end

local function key(ev)
  if ev.kind == 'gate' then return 'gate:' .. ev.gate end
  return 'q:' .. tostring(ev.id)
end

function Prompt:on_event(ev)
  if ev.kind == 'gate' then
    if ev.status == 'open' then self:enqueue(ev) else self:drop(key(ev)) end
  elseif ev.kind == 'question' and ev.id then
    if ev.answer ~= nil then self:drop(key(ev))
    elseif ev.to ~= 'orchestrator' then self:enqueue(ev) end
  end
end

function Prompt:enqueue(ev)
  self.queue[#self.queue + 1] = ev
  if not self.current then self:next() end
end

-- Answered elsewhere (the control socket, a workflow): forget it.
function Prompt:drop(k)
  for i, ev in ipairs(self.queue) do
    if key(ev) == k then table.remove(self.queue, i) break end
  end
  if self.current and key(self.current) == k then
    self.out:write('\n(answered elsewhere)\n')
    self:close_reader()
    self.current = nil
    self:next()
  end
end

function Prompt:text(ev)
  if ev.kind == 'gate' then
    return ('orch: %s [y/N] '):format(ev.message or ('pass the ' .. ev.gate .. ' gate?'))
  end
  return ('orch: %s asks: %s\nyour answer (empty: they use their judgement): ')
    :format(ev.task or 'an agent', ev.question)
end

function Prompt:next()
  local ev = table.remove(self.queue, 1)
  if not ev then return end
  self.current = ev
  self.out:write(self:text(ev))
  self.out:flush()
  local buf = ''
  self.reader = core.ctl.stdin({
    on_data = function(d)
      buf = buf .. d
      local line = buf:match('^([^\n]*)\n')
      if line then self:answer(ev, line) end
    end,
    on_eof = function() self:answer(ev, buf) end,
  })
  if not self.reader then self:answer(ev, '') end
end

function Prompt:close_reader()
  if self.reader then self.reader:close() self.reader = nil end
end

function Prompt:answer(ev, line)
  if self.current ~= ev then return end
  self:close_reader()
  self.current = nil
  local e = self.engine
  line = line:gsub('\r$', '')
  if ev.kind == 'gate' then
    e:answer_gate(ev.gate, line:lower():match('^%s*y') ~= nil)
  elseif line:match('^%s*$') then
    e:answer_question(ev.id, require('orch.engine').NO_ANSWER, 'person')
  else
    e:answer_question(ev.id, line, 'person')
  end
  self:next()
end

function Prompt:stop()
  if self.unsub then self.unsub() self.unsub = nil end
  self:close_reader()
  self.queue, self.current = {}, nil
end

return M
