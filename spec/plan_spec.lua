-- orch.plan: loading plans from JSON and YAML, and every validation error
-- with the file and the line it names.
local plan = require('orch.plan')

local DIR = (os.getenv('ORCH_SRC') or '.') .. '/spec/fixtures/plans/'

local function tmpfile(name, text)
  local p = io.popen('mktemp -d /tmp/orch-plan-spec.XXXXXX')
  local d = p:read('*l')
  p:close()
  local path = d .. '/' .. name
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
  return path, d
end

local function load_text(name, text)
  local path, d = tmpfile(name, text)
  local p, errs = plan.load(path)
  os.execute("rm -rf '" .. d .. "'")
  return p, errs, path
end

-- The error whose message contains `needle`, or fails.
local function find_err(errs, needle)
  for _, e in ipairs(errs) do
    if e.msg:find(needle, 1, true) then return e end
  end
  error('no error containing "' .. needle .. '" in:\n' .. plan.format_errors(errs))
end

describe('plan.load', function()
  for _, name in ipairs({ 'valid.json', 'valid.yaml' }) do
    it('loads ' .. name .. ' with defaults filled in', function()
      local p, errs = plan.load(DIR .. name)
      assert.is_nil(errs)
      assert.equal('add a --json flag', p.goal)
      assert.equal(3, #p.tasks)
      local flag, docs, check = p.by_id.flag, p.by_id.docs, p.by_id.check
      assert.same({ 'src/cli.c' }, flag.files)
      assert.same({}, flag.deps)
      assert.equal('hard', flag.on_failure)
      assert.equal('Add the flag', flag.title)
      assert.equal('coder', flag.role)
      assert.same({ 'flag' }, docs.deps)
      assert.equal('soft', docs.on_failure)
      assert.same({ 'flag', 'docs' }, check.deps)
      assert.equal('check', check.title) -- title defaults to the id
      assert.equal('1', check.env.CI)
      assert.equal(DIR .. name, p.file)
      assert.equal(name:match('%.(%w+)$'), p.format)
    end)
  end

  it('gives each task the line it starts on', function()
    local p = assert(plan.load(DIR .. 'valid.yaml'))
    assert.equal(4, p.tasks[1].line)
    assert.equal(9, p.tasks[2].line)
    assert.equal(20, p.tasks[3].line)
    p = assert(plan.load(DIR .. 'valid.json'))
    assert.same({ 3, 5, 7 }, { p.tasks[1].line, p.tasks[2].line, p.tasks[3].line })
  end)

  it('keeps the text of plain YAML scalars in text fields', function()
    local p = assert(plan.load(DIR .. 'valid.yaml'))
    assert.equal('true', p.by_id.check.cmd) -- `cmd: true` is the command
    assert.equal('Document --json\nin the README.\n', p.by_id.docs.prompt)
    assert.equal('claude', p.by_id.docs.backend)
    assert.equal('sonnet', p.by_id.docs.model)
  end)

  it('reads timeout, env and weight', function()
    local p = assert(plan.parse('{"tasks": [{"id": "a", "cmd": "x", "timeout": 1.5, '
      .. '"weight": 3, "env": {"A_B": "c"}}]}', 'x.json'))
    assert.equal(1.5, p.tasks[1].timeout)
    assert.equal(3, p.tasks[1].weight)
    assert.same({ A_B = 'c' }, p.tasks[1].env)
  end)

  it('loads the shipped examples', function()
    local src = os.getenv('ORCH_SRC') or '.'
    for _, f in ipairs({ 'hello.yaml', 'diamond.json' }) do
      local p, errs = plan.load(src .. '/examples/' .. f)
      assert.is_nil(errs and plan.format_errors(errs))
      assert.equal(4, #p.tasks)
      local s = plan.scheduler(p)
      assert.equal(p.tasks[1].id, s:next())
      assert.is_nil(s:next())
    end
  end)

  it('detects the format from the content when the extension says nothing', function()
    assert.equal('json', plan.detect('plan', '  {"tasks": []}'))
    assert.equal('yaml', plan.detect('plan', 'tasks: []'))
    assert.equal('yaml', plan.detect('p.yml', '{"tasks": []}'))
    local p = assert(plan.parse('tasks:\n  - id: a\n    cmd: ls\n', 'PLAN'))
    assert.equal('yaml', p.format)
  end)
end)

describe('plan errors', function()
  local errs

  setup(function()
    local p
    p, errs = plan.load(DIR .. 'errors.json')
    assert.is_nil(p)
  end)

  local cases = {
    { 2, "unknown field 'taks' (did you mean 'tasks'?)" },
    { 7, "task 'b': 'deps' item 2 must be a string, got a number 3" },
    { 8, "task 'c': unknown field 'dpes' (did you mean 'deps'?)" },
    { 9, "duplicate task id 'a' (first at line 4)" },
    { 10, "task 'd' depends on itself" },
    { 11, "task 'e' depends on unknown task 'nope'" },
    { 12, "task 7: 'id' is empty" },
    { 13, "task 'f': needs a 'role'" },
    { 14, "'on_failure' must be one of hard, soft, skip, got 'sotf' (did you mean 'soft'?)" },
    { 15, "task 'h': 'files' must be a list of strings, got a string" },
  }
  for _, c in ipairs(cases) do
    it('line ' .. c[1] .. ': ' .. c[2], function()
      local e = find_err(errs, c[2])
      assert.equal(c[1], e.line)
      assert.equal(DIR .. 'errors.json', e.file)
    end)
  end

  it('reports every problem, sorted by line', function()
    assert.equal(#cases, #errs)
    for i = 2, #errs do assert.is_true(errs[i - 1].line <= errs[i].line) end
  end)

  it('formats errors as FILE:LINE: message', function()
    local text = plan.format_errors(errs)
    assert.truthy(text:find(DIR .. 'errors.json:10: task \'d\' depends on itself\n', 1, true))
    local n = select(2, text:gsub('\n', ''))
    assert.equal(#errs, n)
    assert.equal('f: no line\n', plan.format_errors({ { file = 'f', line = 0, msg = 'no line' } }))
  end)

  it('names the ids of a cycle in order, at the line of its first task', function()
    local p, e = plan.load(DIR .. 'cycle.yaml')
    assert.is_nil(p)
    assert.equal(1, #e)
    assert.equal(5, e[1].line)
    assert.equal('dependency cycle: a -> b -> c -> a', e[1].msg)
    assert.same({ { 'a', 'b', 'c' } }, e.cycles)
  end)

  it('rejects a dep that is a number (YAML), at its line', function()
    local _, e = plan.load(DIR .. 'dep_number.yaml')
    assert.equal(1, #e)
    assert.equal(7, e[1].line)
    assert.matches("task 'two': 'deps' item 1 must be a string, got a number 1", e[1].msg, 1, true)
  end)

  it('rejects a duplicate id (YAML) pointing at both lines', function()
    local _, e = plan.load(DIR .. 'dup.yaml')
    assert.equal(1, #e)
    assert.equal(7, e[1].line)
    assert.equal("duplicate task id 'build' (first at line 2)", e[1].msg)
  end)

  it('rejects a YAML tab with its line', function()
    local _, e = plan.load(DIR .. 'tab.yaml')
    assert.equal(1, #e)
    assert.equal(4, e[1].line)
    assert.matches('tab', e[1].msg)
  end)

  it('rejects truncated JSON at the line where it stops', function()
    local _, e = plan.load(DIR .. 'truncated.json')
    assert.equal(4, e[1].line)
    assert.matches('unterminated string', e[1].msg)
    local _, e2 = load_text('t.json', '{"tasks": [\n  {"id": "a"},\n')
    assert.equal(3, e2[1].line)
    assert.matches('end of file', e2[1].msg)
  end)

  it('points JSON syntax errors at the right line', function()
    local _, e = load_text('s.json', '{\n"tasks": [\n{"id": "a", "cmd": "x"},\n{"id": "b" "cmd": "y"}\n]}')
    assert.equal(4, e[1].line)
    assert.matches("expected ',' or '}'", e[1].msg)
    _, e = load_text('c.json', '{"tasks": [\n{"id": "a", "cmd": "x"},\n]}')
    assert.equal(3, e[1].line)
    assert.matches('trailing comma', e[1].msg)
    _, e = load_text('d.json', '{"tasks": [],\n\n"tasks": []}')
    assert.equal(3, e[1].line)
    assert.matches("duplicate field 'tasks'", e[1].msg)
  end)

  it('rejects files outside the repository and bad env entries', function()
    local _, e = load_text('f.yaml', table.concat({
      'tasks:',
      '  - id: a',
      '    cmd: x',
      '    files:',
      '      - /etc/passwd',
      '      - ../../x',
      '      - ./ok/../fine',
      '    env:',
      '      GOOD: yes',
      '      bad-name: x',
      '      NESTED: {a: 1}',
      '    timeout: -3',
    }, '\n'))
    assert.equal(5, find_err(e, "'/etc/passwd' must be relative").line)
    assert.equal(6, find_err(e, "'../../x' points outside").line)
    assert.equal(10, find_err(e, "env name 'bad-name'").line)
    assert.equal(11, find_err(e, "env 'NESTED' must be a string").line)
    assert.equal(12, find_err(e, "'timeout' must be a positive number").line)
    assert.equal(5, #e)
  end)

  it('rejects ids that cannot name a branch', function()
    local _, e = load_text('i.yaml', 'tasks:\n  - id: "a b"\n    cmd: x\n  - id: x..y\n    cmd: x\n')
    assert.equal(2, #e)
    assert.equal(2, e[1].line)
    assert.equal(4, e[2].line)
  end)

  it('rejects wrong shapes at the top', function()
    local cases2 = {
      { 'a.json', '[1, 2]', 1, 'a plan must be an object' },
      { 'b.yaml', 'just text', 1, 'a plan must be an object' },
      { 'c.yaml', 'goal: x\n', 1, "no 'tasks' list" },
      { 'd.yaml', 'goal: x\ntasks: 3\n', 2, "'tasks' must be a list" },
      { 'e.yaml', 'goal: [x]\ntasks: []\n', 1, "'goal' must be a string" },
      { 'f.yaml', 'tasks:\n  - 3\n', 2, 'task 1 must be an object' },
      { 'g.yaml', 'tasks:\n  - cmd: x\n', 2, "task 1 has no 'id'" },
    }
    for _, c in ipairs(cases2) do
      local p, e = load_text(c[1], c[2])
      assert.is_nil(p)
      assert.equal(c[3], find_err(e, c[4]).line)
    end
  end)
end)

describe('malformed plans', function()
  it('never crash or hang', function()
    local inputs = {
      { 'empty.json', '' }, { 'blank.yaml', '\n \n' }, { 'nul.json', '\0\0\0' },
      { 'bin.yaml', '\1\2\255\254garbage\0' }, { 'bin.json', '{\255\254}' },
      { 'deep.json', string.rep('[', 100000) },
      { 'deep.yaml', 'a: ' .. string.rep('[', 100000) },
      { 'deepmap.yaml', string.rep('{a: ', 5000) },
      { 'anchors.yaml', 'a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\ntasks: *c\n' },
      { 'multi.yaml', 'tasks: []\n---\ntasks: []\n' },
      { 'str.json', '"\\ud800"' }, { 'num.json', '-' }, { 'lit.json', 'nul' },
      { 'alias.yaml', 'tasks: *nope\n' },
    }
    for _, c in ipairs(inputs) do
      local p, e = load_text(c[1], c[2])
      assert.is_nil(p, c[1])
      assert.is_true(#e >= 1, c[1])
      assert.is_number(e[1].line, c[1])
      assert.is_string(e[1].msg, c[1])
    end
    for _, f in ipairs({ 'empty.json', 'blank.yaml', 'deep.json' }) do
      local p, e = plan.load(DIR .. f)
      assert.is_nil(p)
      assert.equal(1, e[1].line)
    end
  end)

  it('survive random mutations of valid plans', function()
    local seed = 1234
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n
    end
    local junk = { '{', '}', '[', ']', ',', ':', '"', '\\', '\t', '\n', '-', ' ', '\0',
      '\255', 'null', '1e999', '&a', '*a', '!!str', '? ', '|', '#', '\\u12' }
    for _, name in ipairs({ 'valid.json', 'valid.yaml', 'errors.json', 'cycle.yaml' }) do
      local f = assert(io.open(DIR .. name, 'rb'))
      local text = f:read('*a')
      f:close()
      for _ = 1, 300 do
        local t = text
        for _ = 1, 1 + rnd(4) do
          local at = 1 + rnd(#t)
          local op = rnd(3)
          if op == 0 then -- delete a run
            t = t:sub(1, at - 1) .. t:sub(at + 1 + rnd(8))
          elseif op == 1 then -- insert junk
            t = t:sub(1, at - 1) .. junk[1 + rnd(#junk)] .. t:sub(at)
          else -- truncate
            t = t:sub(1, at)
          end
        end
        local ok, p, e = pcall(plan.parse, t, name)
        assert(ok, p)
        if p == nil then
          assert.is_true(#e >= 1)
          for _, err in ipairs(e) do
            assert.is_number(err.line)
            assert.is_string(err.msg)
          end
        end
      end
    end
  end)

  it('reports a 10,000-task cycle once, quickly', function()
    local parts, N = {}, 10000
    for i = 0, N - 1 do
      parts[#parts + 1] = ('{"id": "t%d", "cmd": "true", "deps": ["t%d"]}'):format(i, (i + N - 1) % N)
    end
    local p, e = load_text('big.json', '{"tasks": [\n' .. table.concat(parts, ',\n') .. '\n]}')
    assert.is_nil(p)
    assert.equal(1, #e)
    assert.equal(2, e[1].line)
    assert.matches('^dependency cycle: t0 %-> t1 %-> ', e[1].msg)
    assert.equal(N, #e.cycles[1])
  end)

  it('reports a missing file without a line', function()
    local p, e = plan.load('/nonexistent/plan.yaml')
    assert.is_nil(p)
    assert.equal(0, e[1].line)
    assert.matches('cannot read the plan', plan.format_errors(e))
  end)
end)

describe('plan.scheduler', function()
  it('builds a checked orch.core.sched from a plan', function()
    local p = assert(plan.load(DIR .. 'valid.yaml'))
    local s = plan.scheduler(p, { concurrency = 2 })
    assert.equal('flag', s:next())
    assert.is_nil(s:next())
    s:finish('flag', 'done')
    assert.equal('docs', s:next())
    s:finish('docs', 'soft')
    assert.equal('check', s:next())
  end)

  it('skips what is already done (resume)', function()
    local p = assert(plan.load(DIR .. 'valid.json'))
    local s = plan.scheduler(p, { done = { flag = true, docs = true } })
    assert.equal('check', s:next())
    assert.is_nil(s:next())
  end)
end)

describe('plan.load on hard input (found by review)', function()
  it('reports every cycle, one per group of tasks that wait on each other', function()
    local _, errs = load_text('cyc2.yaml', table.concat({
      'tasks:',
      '  - {id: a, cmd: x, deps: [b]}',
      '  - {id: b, cmd: x, deps: [a]}',
      '  - {id: c, cmd: x, deps: [e, d]}',
      '  - {id: d, cmd: x, deps: [c]}',
      '  - {id: e, cmd: x, deps: [a]}', '' }, '\n'))
    assert.equal(2, find_err(errs, 'a -> b -> a').line)
    assert.equal(4, find_err(errs, 'c -> d -> c').line)
  end)

  it('keeps the digits of JSON numbers given as env values', function()
    local p = assert(load_text('env.json',
      '{"tasks":[{"id":"a","cmd":"x","env":{"A":123456789012345,"B":1e2,"C":1.10}}]}'))
    assert.same({ A = '123456789012345', B = '1e2', C = '1.10' }, p.tasks[1].env)
  end)

  it('refuses NUL characters instead of cutting strings at them', function()
    local _, errs = load_text('nul.yaml', 'tasks:\n  - id: a\n    cmd: "a\\0b"\n')
    assert.equal(3, find_err(errs, 'NUL character').line)
    _, errs = load_text('nul.json', '{"tasks":[{"id":"a","cmd":"a\\u0000b"}]}')
    find_err(errs, 'NUL character')
    -- an escaped backslash before 0 is text, and a plain scalar keeps it as is
    assert(load_text('ok.yaml', 'tasks:\n  - id: a\n    cmd: "x \\\\0"\n  - id: b\n    cmd: printf x\\0\n'))
  end)

  it('refuses JSON strings that are not UTF-8, and reads past a BOM', function()
    local _, errs = load_text('bin.json', '{"goal":"\255\254","tasks":[{"id":"a","cmd":"x"}]}')
    find_err(errs, 'not valid UTF-8')
    assert(load_text('bom.json', '\239\187\191{"tasks":[{"id":"a","cmd":"x"}]}'))
  end)

  it('names the type, not a table address, and says a directory cannot be read', function()
    local _, errs = load_text('t.json', '{"tasks":[{"id":"a","cmd":"x","on_failure":{"x":1}}]}')
    local e = find_err(errs, 'on_failure')
    assert.is_nil(e.msg:find('table: 0x', 1, true))
    _, errs = plan.load('/tmp')
    find_err(errs, 'cannot read the plan')
  end)
end)
