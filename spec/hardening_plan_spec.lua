-- What a plan may cost is bounded and checked up front; checking one can be
-- interrupted (issue 12, items 6, 9 and 12; issue 13: the graph is checked
-- once, by the C scheduler).
local core = require('orch.core')
local H = require('spec.helpers')
local plan = require('orch.plan')

local function find_err(errs, pat)
  for _, e in ipairs(errs or {}) do
    if e.msg:find(pat, 1, true) then return e end
  end
  error('no error matching ' .. pat .. ' in:\n' .. plan.format_errors(errs))
end

-- "many.json": n small tasks in a chain, about 125 bytes each.
local function many_tasks(n)
  local parts = {}
  for i = 0, n - 1 do
    parts[#parts + 1] = ('{"id": "t%d", "cmd": "echo %d", "deps": [%s], "files": ["src/f%d.c"]}')
      :format(i, i, i > 0 and ('"t' .. (i - 1) .. '"') or '', i)
  end
  return '{"goal": "many", "tasks": [\n' .. table.concat(parts, ',\n') .. '\n]}\n'
end

describe('plan limits', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('refuses a YAML alias bomb at check time', function()
    -- one 100 KB string reused as the cmd and prompt of 3,000 tasks
    local lines = { 'x: &s ' .. ('y'):rep(100 * 1024), 'tasks:' }
    for i = 1, 3000 do lines[#lines + 1] = ('  - {id: t%d, cmd: *s, prompt: *s}'):format(i) end
    local text = table.concat(lines, '\n') .. '\n'
    local p, errs = plan.parse(text, 'bomb.yaml')
    assert.is_nil(p)
    find_err(errs, 'MB of text (YAML aliases expanded), more than the limit of 67 MB')
    -- the same through the command: exit 2
    H.write(dir .. '/bomb.yaml', text)
    local out = H.orch({ 'plan', 'check', dir .. '/bomb.yaml' })
    assert.equal(2, out.code)
    assert.matches('aliases expanded', out.err)
  end)

  it('refuses nested aliases (billion laughs) while reading', function()
    local lines = { 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]' }
    for i = 1, 9 do
      local refs = {}
      for _ = 1, 10 do refs[#refs + 1] = '*a' .. (i - 1) end
      lines[#lines + 1] = ('a%d: &a%d [%s]'):format(i, i, table.concat(refs, ', '))
    end
    lines[#lines + 1] = 'tasks: [{id: a, cmd: x}]'
    local p, errs = plan.parse(table.concat(lines, '\n') .. '\n', 'laughs.yaml')
    assert.is_nil(p)
    find_err(errs, 'more than 1000000 values')
  end)

  it('refuses more tasks than the limit, and fields that are too long', function()
    local p, errs = plan.parse(many_tasks(plan.LIMITS.tasks + 1), 'many.json')
    assert.is_nil(p)
    find_err(errs, 'a list of more than 10000 items')
    p, errs = plan.parse(('{"tasks": [{"id": "a", "cmd": "x", "prompt": "%s", "title": "%s"}]}')
      :format(('p'):rep(2 * 1024 * 1024), ('t'):rep(5000)), 'long.json')
    assert.is_nil(p)
    assert.equal(1, find_err(errs, "'prompt' is 2097152 bytes, at most 1048576").line)
    find_err(errs, "'title' is 5000 bytes, at most 4096")
  end)

  it('checks a 50 MB plan in memory a small multiple of the file', function()
    local text = many_tasks(400000)
    H.write(dir .. '/many.json', text)
    local out, code = H.sh(('/usr/bin/time -f "maxrss=%%M" %s plan check %s/many.json'):format(H.ORCH, dir))
    assert.equal(2, code, out)
    assert.matches('a list of more than 10000 items', out)
    local rss = tonumber(out:match('maxrss=(%d+)'))
    assert.is_true(rss * 1024 < 4 * #text, ('max RSS %d kB for a %d-byte plan'):format(rss, #text))
  end)
end)

describe('plan ids', function()
  it('are refused at check time over the real limit, with the limit', function()
    local id = ('a'):rep(plan.LIMITS.id + 1)
    local p, errs = plan.parse(('{"tasks": [{"id": "%s", "cmd": "x"}]}'):format(id), 'long.json')
    assert.is_nil(p)
    find_err(errs, 'an id is at most 200 bytes')
    assert(plan.parse(('{"tasks": [{"id": "%s", "cmd": "x"}]}'):format(('a'):rep(200)), 'ok.json'))
  end)

  it('a 10,000-character id is cut in every message about it', function()
    local id = ('b'):rep(10000)
    local _, errs = plan.parse(('{"tasks": [{"id": "%s", "cmd": "x", "deps": ["nope"], "frob": 1}]}')
      :format(id), 'long.json')
    assert.is_true(#errs >= 2)
    for _, e in ipairs(errs) do assert.is_true(#e.msg < 300, #e.msg) end
  end)
end)

describe('plan graph errors come from the C scheduler', function()
  it('reports a cycle that another cycle used to hide', function()
    -- c waits on e first, e waits on the a-b cycle: a walk from c ends
    -- there, yet c and d wait on each other
    local s = core.sched.new({ concurrency = 1 })
    s:add('a', { deps = { 'b' } })
    s:add('b', { deps = { 'a' } })
    s:add('c', { deps = { 'e', 'd' } })
    s:add('d', { deps = { 'c' } })
    s:add('e', { deps = { 'a' } })
    local ok, errs = s:check()
    s:close()
    assert.is_nil(ok)
    local cycles = {}
    for _, e in ipairs(errs) do if e.kind == 'cycle' then cycles[#cycles + 1] = table.concat(e.ids, ' ') end end
    assert.same({ 'a b', 'c d' }, cycles)
  end)

  it('maps unknown and self deps to the line of the dep', function()
    local _, errs = plan.parse(table.concat({
      '{"tasks": [',
      '  {"id": "a", "cmd": "x",',
      '   "deps": ["b",',
      '            "bb"]},',
      '  {"id": "b", "cmd": "x", "deps": [',
      '     "b"]}', ']}' }, '\n'), 'deps.json')
    assert.equal(4, find_err(errs, "task 'a' depends on unknown task 'bb' (did you mean 'b'?)").line)
    assert.equal(6, find_err(errs, "task 'b' depends on itself").line)
  end)
end)

describe('plan check and signals', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  local function check_killed(path, sig, after_ms)
    local r, done = {}, false
    core.update_time() -- the loop's clock, stale after building a big plan
    local p = assert(core.spawn({ argv = { H.ORCH, 'plan', 'check', path },
      stderr = function(l) r[#r + 1] = l end,
      on_exit = function(code, s) r.code, r.sig, done = code, s, true end }))
    H.run_until(function() return done end, after_ms)
    p:kill(sig)
    if not H.run_until(function() return done end, 20000) then
      p:kill('SIGKILL')
      H.run_until(function() return done end, 5000)
      return nil
    end
    return r
  end

  it('a FIFO nobody writes to honours SIGTERM and SIGINT (exit 130)', function()
    H.sh("mkfifo '" .. dir .. "/plan.yaml'")
    for _, sig in ipairs({ 'SIGTERM', 'SIGINT' }) do
      local r = check_killed(dir .. '/plan.yaml', sig, 300)
      assert.is_not_nil(r, sig .. ' did not stop orch plan check')
      assert.equal(130, r.code, sig)
    end
  end)

  it('SIGINT stops the check of a 50 MB plan (exit 130)', function()
    -- 10,000 tasks with 5 KB prompts in YAML: about a second of work
    local lines = { 'tasks:' }
    local prompt = ('p'):rep(5000)
    for i = 0, 9999 do
      lines[#lines + 1] = ('  - id: t%d\n    cmd: echo %d\n    prompt: %s\n    deps: [%s]')
        :format(i, i, prompt, i > 0 and ('t' .. (i - 1)) or '')
    end
    H.write(dir .. '/big.yaml', table.concat(lines, '\n') .. '\n')
    local r = check_killed(dir .. '/big.yaml', 'SIGINT', 150)
    assert.is_not_nil(r)
    assert.equal(130, r.code, table.concat(r, '\n'))
    assert.matches('interrupted', table.concat(r, '\n'))
  end)
end)
