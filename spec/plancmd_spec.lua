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
    '{"id":"a","role":"coder","prompt":"write a","files":["src/a.txt"]},' ..
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

  it('writes JSON too, readable (no escaped slashes)', function()
    local r = H.orch({ 'plan', '--goal', 'two files', '-o', dir .. '/plan.json', '--repo', dir }, { cwd = dir })
    assert.equal(0, r.code, r.err)
    local text = H.read(dir .. '/plan.json')
    assert.matches('"src/a.txt"', text, 1, true)
    assert.is_nil(text:find('\\/'))
    local c = H.orch({ 'plan', 'check', dir .. '/plan.json' })
    assert.equal(0, c.code, c.err)
  end)
end)

-- The orchestrator on Claude Code and on Codex: the plan comes from the
-- CLI's final reply, a bad one is sent back in the same session.
local T = require('orch.testing')
local agents = require('spec.cli_agents')
local bf = { describe = describe, it = it, pending = pending }
for _, cli in ipairs({ 'claude', 'codex' }) do
  agents.e2e(bf, cli, 'orch plan --goal with the orchestrator on ' .. cli, function(bin)
    it('plans through the real CLI', function()
      local repo = T.repo({ ['README.md'] = 'x\n' })
      local srv = T.server({ rules = {
        { when = { user = 'cannot be used' },
          reply = 'Fixed:\n```json\n{"tasks":[{"id":"a","role":"coder","prompt":"x","files":["src/a"]}]}\n```' },
        { when = { user = 'Plan this goal' },
          reply = '```json\n{"tasks":[{"id":"a","role":"coder","prompt":"x","deps":["a"]}]}\n```' },
      } })
      local home = H.tmpdir()
      H.sh('mkdir -p ' .. repo.dir .. '/.orch/roles')
      -- a model codex has no metadata for: plain tools, no JavaScript tool
      H.write(repo.dir .. '/.orch/roles/orchestrator.yaml', 'backend: ' .. cli .. '\nmodel: scripted-orch\n')
      local env = T.env_for(srv, { HOME = home, PATH = bin:match('^(.*)/') .. ':' .. os.getenv('PATH') })
      local r = T.spawn({ T.orch_bin(), 'plan', '--goal', 'x', '-o', repo.dir .. '/.git/p.json',
                          '--repo', repo.dir }, { cwd = repo.dir, env = env, timeout = 120000 })
      srv:stop()
      assert.equal(0, r.code, r.err)
      assert.matches('"src/a"', H.read(repo.dir .. '/.git/p.json'), 1, true)
      local reqs = srv:requests()
      assert.equal(2, #reqs)
      assert.matches('depends on itself', reqs[2].last_user)
      -- the second request carries the first turn: the same conversation
      assert.matches('Plan this goal', require('cjson').encode(reqs[2].body), 1, true)
      repo:rm()
      H.rm(home)
    end)
  end)
end
