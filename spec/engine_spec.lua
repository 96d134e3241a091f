-- orch.engine on its own: a real store, the scheduler, and workspaces made
-- for the test (a workspace is an extension point: begin/prepare/finish/complete).
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')
local H = require('spec.helpers')

local function make(dir, n, ws)
  local tasks = {}
  for i = 1, n do tasks[i] = { id = 't' .. i, cmd = 'true', deps = {}, files = {}, env = {} } end
  local plan = { tasks = tasks }
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = 'r1', repo = dir, concurrency = 4 }
  st:create_run(run)
  st:add_tasks(run.id, tasks)
  local e = engine.new({ store = st, run = run, plan = plan, workspace = ws, quiet = true })
  return e, st
end

describe('orch.engine', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('settles thousands of tasks that fail at once without deep recursion', function()
    local ws = {
      begin = function() return true end,
      prepare = function() return nil, 'no room' end,
      finish = function() return { status = 'done' } end,
      complete = function() return nil end,
    }
    local e, st = make(dir, 5000, ws)
    local code
    e:start(function(c) code = c end)
    assert.equal(1, code) -- ended synchronously: nothing could start
    local failed = 0
    for _, t in ipairs(st:tasks('r1')) do
      if t.status == 'failed' then failed = failed + 1 end
    end
    assert.equal(5000, failed)
    st:close()
  end)

  it('hands finished work to the workspace and reports events to subscribers', function()
    local finished, events = {}, {}
    local ws = {
      begin = function() return true end,
      prepare = function(_, task) return { cwd = dir, branch = 'b/' .. task.id } end,
      finish = function(_, task) finished[#finished + 1] = task.id return { status = 'done' } end,
      complete = function() return 'completed' end,
    }
    local e, st = make(dir, 3, ws)
    e:subscribe(function(ev)
      if ev.kind == 'task' and ev.status then events[#events + 1] = ev.task .. ':' .. ev.status end
    end)
    local code
    e:start(function(c) code = c end)
    assert.is_true(H.run_until(function() return code ~= nil end))
    assert.equal(0, code)
    table.sort(finished)
    assert.same({ 't1', 't2', 't3' }, finished)
    local running, done = 0, 0
    for _, ev in ipairs(events) do
      if ev:match(':running$') then running = running + 1 end
      if ev:match(':done$') then done = done + 1 end
    end
    assert.equal(3, running)
    assert.equal(3, done)
    assert.equal('b/t1', st:task('r1', 't1').branch)
    st:close()
    assert.is_true(core.now() > 0)
  end)
end)
