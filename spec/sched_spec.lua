-- orch.core.sched: the C DAG scheduler through its Lua binding.
local sched = require('orch.core').sched

-- Drains the scheduler the way a run loop does: start what next() gives,
-- finish the oldest running task with outcome(id), repeat. Returns the
-- start order and the largest number of tasks running at once.
local function drive(s, outcome)
  local order, running, most = {}, {}, 0
  repeat
    for id in function() return s:next() end do
      order[#order + 1] = id
      running[#running + 1] = id
    end
    most = math.max(most, #running)
    local id = table.remove(running, 1)
    if id then s:finish(id, outcome and outcome(id) or 'done') end
  until not id
  return order, most
end

local function diamond(conc)
  local s = sched.new { concurrency = conc or 4 }
  assert(s:add('top'))
  assert(s:add('left', { deps = { 'top' }, weight = 5 }))
  assert(s:add('right', { deps = { 'top' } }))
  assert(s:add('bottom', { deps = { 'left', 'right' } }))
  return s
end

describe('orch.core.sched', function()
  it('runs a diamond in a valid order, critical path first', function()
    local s = diamond(1)
    assert.is_true(s:check())
    local order = drive(s)
    assert.same({ 'top', 'left', 'right', 'bottom' }, order)
    assert.same({ 'done' }, { s:state('bottom') })
    local c = s:counts()
    assert.equal(4, c.done)
    assert.equal(0, c.active)
    assert.equal(4, c.total)
  end)

  it('checks before next() and says what is wrong', function()
    local s = sched.new()
    s:add('a', { deps = { 'c' } })
    s:add('b', { deps = { 'a' } })
    s:add('c', { deps = { 'b' } })
    s:add('d', { deps = { 'ghost' } })
    s:add('e', { deps = { 'e' } })
    local nilv, msg, code = s:add('a')
    assert.is_nil(nilv)
    assert.matches('duplicate', msg)
    assert.equal('EEXIST', code)
    local ok, errs = s:check()
    assert.is_nil(ok)
    local by = {}
    for _, e in ipairs(errs) do by[e.kind] = e end
    assert.same({ 'a', 'b', 'c' }, by.cycle.ids)
    assert.equal('dependency cycle: a -> b -> c -> a', by.cycle.msg)
    assert.same({ 'd', 'ghost' }, by.unknown_dep.ids)
    assert.same({ 'e' }, by.self_dep.ids)
    assert.same({ 'a' }, by.duplicate.ids)
    assert.has_error(function() s:next() end)
  end)

  it('never runs more than the concurrency, settable while running', function()
    local s = sched.new { concurrency = 3 }
    for i = 1, 10 do s:add('t' .. i) end
    assert.is_true(s:check())
    local got = {}
    for id in function() return s:next() end do got[#got + 1] = id end
    assert.equal(3, #got)
    s:set_concurrency(5)
    assert.equal(5, s:concurrency())
    assert.truthy(s:next())
    assert.truthy(s:next())
    assert.is_nil(s:next())
    assert.equal(5, s:counts().running)
    assert.same({ 't1', 't2', 't3', 't4', 't5' }, s:tasks('running'))
  end)

  it('keeps tasks with overlapping files apart', function()
    local s = sched.new { concurrency = 4 }
    s:add('a', { files = { 'src/a.c' } })
    s:add('b', { files = { './src//a.c' } })
    s:add('c', { files = { 'src/' } })
    s:add('d', { files = { 'docs/x.md' } })
    assert.is_true(s:check())
    assert.equal('a', s:next())
    assert.equal('d', s:next()) -- b and c wait for a without a slot
    assert.is_nil(s:next())
    assert.is_true(s:info('b').waiting)
    assert.equal('ready', s:state('b'))
    s:finish('a', 'done')
    assert.equal('b', s:next())
    assert.is_nil(s:next())
    s:finish('b', 'done')
    assert.equal('c', s:next())
  end)

  it('blocks the dependents of a hard failure and reports them', function()
    local s = diamond()
    s:add('other')
    assert.is_true(s:check())
    local order = drive(s, function(id) return id == 'left' and 'failed' or 'done' end)
    assert.same({ 'blocked' }, { s:state('bottom') })
    assert.equal('failed', s:state('left'))
    assert.equal('done', s:state('other'))
    assert.is_nil((function() for _, id in ipairs(order) do if id == 'bottom' then return id end end end)())

    s = diamond()
    assert.is_true(s:check())
    assert.equal('top', s:next())
    local blocked = s:finish('top', 'hard')
    table.sort(blocked)
    assert.same({ 'bottom', 'left', 'right' }, blocked)
    assert.equal(3, s:counts().blocked)
  end)

  it('lets dependents of soft and skipped tasks run', function()
    for _, out in ipairs({ 'soft', 'skipped', 'skip' }) do
      local s = diamond()
      assert.is_true(s:check())
      local order = drive(s, function(id) return id == 'left' and out or 'done' end)
      assert.equal(4, #order)
      assert.equal('done', s:state('bottom'))
      assert.equal(out == 'soft' and 'failed' or 'skipped', s:state('left'))
      assert.equal(out == 'soft', s:info('left').soft)
    end
  end)

  it('resumes: done tasks are not handed out again', function()
    local s = diamond()
    s:mark_done('top')
    s:mark_done('left')
    assert.is_true(s:check())
    assert.same({ 'right', 'bottom' }, (drive(s)))
  end)

  it('pauses, resumes, requeues and cancels', function()
    local s = diamond()
    assert.is_true(s:check())
    s:pause('top')
    assert.equal('paused', s:state('top'))
    assert.is_nil(s:next())
    s:resume('top')
    assert.equal('top', s:next())
    s:requeue('top') -- a crash: back to ready
    assert.equal('ready', s:state('top'))
    assert.equal('top', s:next())
    s:finish('top', 'done')
    assert.same({ 'bottom' }, s:cancel('left'))
    assert.equal('cancelled', s:state('left'))
    assert.equal('right', s:next())
    assert.has_error(function() s:finish('left', 'done') end)
    assert.has_error(function() s:finish('nope', 'done') end)
    assert.has_error(function() s:finish('right', 'bogus') end)
    s:finish('right', 'done')
    assert.equal(0, s:active())
  end)

  it('takes follow-up tasks while running', function()
    local s = sched.new { concurrency = 2 }
    s:add('code')
    assert.is_true(s:check())
    assert.equal('code', s:next())
    s:add('review', { deps = { 'code' } })
    assert.is_true(s:check())
    assert.is_nil(s:next())
    s:finish('code', 'done')
    assert.equal('review', s:next())
  end)

  it('lists tasks with their states and priorities', function()
    local s = diamond()
    assert.is_true(s:check())
    local t = s:tasks()
    assert.equal(4, #t)
    assert.same({ id = 'top', state = 'ready' }, t[1])
    assert.equal(7, s:info('top').priority) -- 1 + 5 + 1
    assert.is_nil(s:state('nope'))
    assert.matches('4 tasks', tostring(s))
  end)

  it('refuses bad arguments', function()
    local s = sched.new()
    assert.has_error(function() s:add('a', { deps = { 1 } }) end)
    assert.has_error(function() s:add('a', { files = 'x' }) end)
    assert.has_error(function() s:add('a', { weight = 'x' }) end)
    assert.has_error(function() s:set_concurrency(-1) end)
    assert.has_error(function() sched.new { concurrency = -2 } end)
    local nilv, msg = s:add('')
    assert.is_nil(nilv)
    assert.matches('empty', msg)
    s:close()
    assert.has_error(function() s:next() end)
  end)

  it('schedules a 10,000-task random DAG to the end', function()
    local s = sched.new { concurrency = 8 }
    local seed, W, N = 7, 50, 10000
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    for i = 0, N - 1 do
      local deps, layer = {}, math.floor(i / W)
      if layer > 0 then
        for _ = 1, 2 do deps[#deps + 1] = 't' .. ((layer - 1) * W + rnd(W)) end
      end
      s:add('t' .. i, { deps = deps, files = rnd(5) == 0 and { 'f' .. rnd(10) } or nil,
        weight = 1 + rnd(5) })
    end
    assert.is_true(s:check())
    local order = drive(s)
    assert.equal(N, #order)
    assert.equal(N, s:counts().done)
  end)
end)
