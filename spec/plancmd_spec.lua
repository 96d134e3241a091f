-- `orch plan --goal`: the orchestrator plans on a backend the repository
-- adds in one file (.orch/lua/orch/backends/NAME.lua, named by the
-- orchestrator role); a bad first plan is sent back; the plan is written.
local H = require('spec.helpers')

local BACKEND = [[
local core = require('orch.core')
local M = { name = 'scripted' }
local replies = {
  '```json\n{"tasks":[{"id":"a","role":"coder","prompt":"x","deps":["b"]},' ..
    '{"id":"b","role":"coder","prompt":"y","deps":["a"]}]}\n```',
  'Fixed:\n```json\n{"goal":"two files","tasks":[' ..
    '{"id":"a","role":"coder","prompt":"write a","files":["a.txt"]},' ..
    '{"id":"b","role":"coder","prompt":"write b","deps":["a"]}]}\n```',
}
local n = 0
function M.start(ctx)
  n = n + 1
  local log = io.open(ctx.cwd .. '/.orch/prompts.log', 'ab')
  log:write('--- turn ', n, ' session=', tostring(ctx.session and ctx.session.id), '\n', ctx.prompt, '\n')
  log:close()
  local t
  t = core.timer(1, function()
    t:close()
    ctx.emit({ type = 'session', session_id = 'scripted-1' })
    ctx.on_done({ ok = true, text = replies[n] or 'nothing', session_id = 'scripted-1' })
  end)
  return { cancel = function() end }
end
M.send = M.start
return M
]]

describe('orch plan --goal', function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i'):format(dir))
    H.sh(('mkdir -p %s/.orch/lua/orch/backends %s/.orch/roles'):format(dir, dir))
    H.write(dir .. '/.orch/lua/orch/backends/scripted.lua', BACKEND)
    H.write(dir .. '/.orch/roles/orchestrator.yaml', 'backend: scripted\n')
  end)
  after_each(function() H.rm(dir) end)

  it('sends the cyclic plan back and writes the valid one', function()
    local r = H.orch({ 'plan', '--goal', 'two files', '-o', dir .. '/plan.yaml', '--repo', dir }, { cwd = dir })
    assert.equal(0, r.code, r.err)
    assert.matches('plan written to', r.err)
    local log = H.read(dir .. '/.orch/prompts.log')
    assert.matches('Goal: two files', log)
    assert.matches('turn 2 session=scripted%-1', log)
    assert.matches('cycle', log)
    local c = H.orch({ 'plan', 'check', dir .. '/plan.yaml' })
    assert.equal(0, c.code, c.err)
    assert.matches('ok %(2 tasks%)', c.out)
  end)
end)
