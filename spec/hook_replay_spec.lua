-- A workflow's on_task_end hook whose orch is killed (-9) before the hook
-- returns: what it had done (a prompt filled in with w:update, a follow-up
-- added) is kept, `orch resume` runs the hook again for that task, and the
-- second run neither loses the update nor adds the follow-up twice.
local cjson = require('cjson')
local T = require('orch.testing')

local WORKFLOW = [[
local W = require('orch.workflow')
local core = require('orch.core')
return W.define({
  name = 'replay', test_cmd = false,
  on_task_end = function(w, task, result)
    if task.id ~= 'a' then return end
    if w.engine.status.b == 'pending' then
      w:update('b', { prompt = 'filled in by a', title = 'b, after a' })
    end
    w:add({ id = ('a.review%d'):format(w:next_round('a', 'review')), cmd = 'echo reviewed',
            deps = { 'a' } })
    local mark = os.getenv('KILL_MARK')
    local f = io.open(mark, 'r')
    if f then
      f:close()
      io.open(mark .. '.replayed', 'w'):write(tostring(result.replayed)):close()
      return
    end
    io.open(mark, 'w'):close()
    os.execute('kill -9 ' .. core.getpid())
  end,
})
]]

local PLAN = { tasks = {
  { id = 'a', cmd = 'echo a' },
  { id = 'b', cmd = 'echo b', deps = { 'a' } } } }

describe('end hooks on resume', function()
  local repo
  before_each(function() repo = T.repo({ ['README.md'] = 'x\n' }) end)
  after_each(function() repo:rm() end)

  it('runs a hook cut short by kill -9 again, keeping its update and adding nothing twice', function()
    local wf = repo.dir .. '/.git/replay_wf.lua'
    local f = assert(io.open(wf, 'w'))
    f:write(WORKFLOW)
    f:close()
    local mark = repo.dir .. '/.git/kill-mark'
    local r = T.run({ repo = repo, workflow = wf, plan = PLAN, env = { KILL_MARK = mark } })
    assert.is_not_nil(r.sig or (r.code ~= 0 and r.code) or nil, 'the first run was killed')

    local res = T.spawn({ T.orch_bin(), 'resume', '--repo', repo.dir, '--yes', '--no-tui' },
                        { cwd = repo.dir, env = { KILL_MARK = mark } })
    assert.equal(0, res.code, res.err)
    local rf = assert(io.open(mark .. '.replayed'))
    assert.equal('true', rf:read('*a'))
    rf:close()
    r:refresh()
    assert.equal('done', r:task('a').status)
    assert.equal('done', r:task('b').status)
    local reviews = {}
    for _, t in ipairs(r:tasks()) do
      if t.id:match('^a%.review') then reviews[#reviews + 1] = t.id end
    end
    assert.same({ 'a.review1' }, reviews)
    assert.equal('done', r:task('a.review1').status)
    assert.not_matches('could not', res.err)

    local st = assert(require('orch.store').open(repo.dir .. '/.orch/orch.db', { readonly = true }))
    local run = st:run(r.run_id)
    local plan = cjson.decode(run.plan_json)
    local b
    for _, t in ipairs(plan.tasks) do if t.id == 'b' then b = t end end
    assert.equal('filled in by a', b.prompt)
    assert.equal('filled in by a', st:task(r.run_id, 'b').prompt)
    assert.is_true(st:hooked(r.run_id).a)
    st:close()
  end)

  it('refuses to change a task that has started, or a field that shapes the graph', function()
    local wf = repo.dir .. '/.git/upd_wf.lua'
    local f = assert(io.open(wf, 'w'))
    f:write([[
local W = require('orch.workflow')
return W.define({
  name = 'upd', test_cmd = false,
  on_task_end = function(w, task)
    if task.id ~= 'b' then return end
    local ok1, e1 = w.engine:update_task('a', { prompt = 'late' })
    local ok2, e2 = w.engine:update_task('c', { deps = { 'a' } })
    local ok3, e3 = w.engine:update_task('c', { continues = 'nope' })
    local ok4 = w.engine:update_task('c', { prompt = 'fine' })
    io.open(os.getenv('OUT'), 'w'):write(table.concat({ tostring(ok1), e1 or '', tostring(ok2),
      e2 or '', tostring(ok3), e3 or '', tostring(ok4 ~= nil) }, '\n')):close()
  end,
})
]])
    f:close()
    local out = repo.dir .. '/.git/upd-out'
    local plan = { tasks = { { id = 'a', cmd = 'true' }, { id = 'b', cmd = 'true', deps = { 'a' } },
                             { id = 'c', cmd = 'true', deps = { 'b' } } } }
    local r = T.run({ repo = repo, workflow = wf, plan = plan, env = { OUT = out } })
    assert.equal(0, r.code, r.err)
    local lines = {}
    for l in io.open(out):lines() do lines[#lines + 1] = l end
    assert.equal('nil', lines[1])
    assert.matches('has started', lines[2])
    assert.equal('nil', lines[3])
    assert.matches('cannot be changed', lines[4])
    assert.equal('nil', lines[5])
    assert.matches('cannot continue', lines[6])
    assert.equal('true', lines[7])
  end)
end)
