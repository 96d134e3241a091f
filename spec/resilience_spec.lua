-- Resilience in the engine (docs/resilience.md): retries with retry-after,
-- breakers per endpoint, stalls, hangs and cut streams, the run's budget,
-- against the scripted model server and the in-process HTTP backends.
local core = require('orch.core')
local engine = require('orch.engine')
local store = require('orch.store')
local roles = require('orch.roles')
local retry = require('orch.retry')
local breaker = require('orch.breaker')
local ms = require('orch.testing.modelserver')
local H = require('spec.helpers')

local plain_ws = require('orch.testing').plain_workspace

-- Role files in dir/.orch/roles: name -> YAML text.
local function write_roles(dir, files)
  core.mkdir_p(dir .. '/.orch/roles', tonumber('755', 8))
  for name, text in pairs(files) do H.write(dir .. '/.orch/roles/' .. name .. '.yaml', text) end
  roles.cache = {}
end

local function role_yaml(o)
  local lines = {
    'backend: ' .. o.backend, 'model: ' .. (o.model or 'gpt-4o'), 'tools: read-only',
    'endpoint:', '  base_url: ' .. o.url,
    'retries:', ('  base: %g'):format(o.base or 0.05), ('  attempts: %d'):format(o.attempts or 5),
  }
  for _, l in ipairs(o.extra or {}) do lines[#lines + 1] = l end
  return table.concat(lines, '\n') .. '\n'
end

local function new_engine(dir, tasks, o)
  o = o or {}
  for _, t in ipairs(tasks) do
    t.deps, t.files, t.env = t.deps or {}, t.files or {}, t.env or {}
  end
  local st = assert(store.open(dir .. '/orch.db'))
  local run = { id = o.run_id or 'r1', repo = dir, concurrency = o.concurrency or 4 }
  if not o.resume then
    st:create_run(run)
    st:add_tasks(run.id, tasks)
  end
  local e = engine.new({ store = st, run = run, plan = { tasks = tasks }, workspace = plain_ws(dir),
                         concurrency = run.concurrency, budget = o.budget, resume = o.resume,
                         done = o.done })
  return e, st
end

local function run_engine(e, timeout)
  local code
  e:start(function(c) code = c end)
  H.run_until(function() return code ~= nil end, timeout or 30000)
  return code
end

local function events(e, st, kind)
  local out = {}
  for ev in st:recorded(e.run.id, 0) do
    if not kind or ev.kind == kind then out[#out + 1] = ev end
  end
  return out
end

describe('orch.retry', function()
  after_each(function() retry.set(nil) end)

  it('waits at least retry-after, with full jitter under the ceiling, and gives up', function()
    local lim = { attempts = 4, base = 1, ceiling = 8, total = 100 }
    local w = retry.decide({ retryable = true, attempt = 1, retry_after = 3, limits = lim,
                             random = function() return 0 end })
    assert.equal(3, w)
    w = retry.decide({ retryable = true, attempt = 3, limits = lim, random = function() return 0.5 end })
    assert.equal(2, w) -- 0.5 * min(8, 1 * 2^2)
    w = retry.decide({ retryable = true, attempt = 9, limits = { attempts = 99, base = 1, ceiling = 8,
                       total = 100 }, random = function() return 1 end })
    assert.equal(8, w)
    local no, why = retry.decide({ retryable = true, attempt = 4, limits = lim })
    assert.is_nil(no)
    assert.matches('gave up after 4 attempts', why)
    no, why = retry.decide({ retryable = true, attempt = 1, elapsed = 99, retry_after = 5, limits = lim })
    assert.is_nil(no)
    assert.matches('100 s', why)
    assert.is_nil((retry.decide({ retryable = false, attempt = 1, limits = lim })))
  end)

  it('a user policy replaces the default, and never waits less than retry-after', function()
    retry.set(function() return 0 end)
    assert.equal(2, retry.decide({ retryable = true, attempt = 1, retry_after = 2 }))
    retry.set(function() error('boom') end)
    assert.is_nil((retry.decide({ retryable = true, attempt = 1 })))
  end)

  it('classifies failures', function()
    assert.equal('rate_limit', retry.class({ http_status = 429 }))
    assert.equal('overloaded', retry.class({ http_status = 529 }))
    assert.equal('server', retry.class({ http_status = 503 }))
    assert.equal('auth', retry.class({ error = 'Invalid API key · Fix external API key' }))
    assert.equal('cut', retry.class({ error = 'the reply stream ended before the reply was complete (cut off)' }))
    assert.equal('stall', retry.class({ stalled = 5 }))
    assert.equal('limit', retry.class({ limit = 'turns' }))
    -- a 401 said as a status is auth; a number that holds 401 is not
    assert.equal('auth', retry.class({ error = 'API Error: 401 {"type":"error"}' }))
    assert.equal('auth', retry.class({ error = 'unexpected status 401' }))
    assert.equal('auth', retry.class({ error = 'HTTP/1.1 401' }))
    assert.equal('timeout', retry.class({
      error = 'Operation timed out after 2401 milliseconds with 401 bytes received' }))
    assert.equal('connection', retry.class({ error = 'Failed to connect to 127.0.0.1 port 34011: Connection refused' }))
    assert.equal('cut', retry.class({ error = 'transfer closed with 4010 bytes remaining to read' }))
  end)
end)

describe('orch.breaker', function()
  it('opens after N counted failures in the window, half-opens with one probe, closes', function()
    local t, changes = 0, {}
    local reg = breaker.new({ now = function() return t end,
                              on_change = function(b) changes[#changes + 1] = b.state end })
    local role = { backend = 'openai', model = 'm', endpoint = { base_url = 'http://x/v1' },
                   breaker = { failures = 3, window = 10, cooldown = 5 } }
    local b = reg:get(role)
    assert.equal('openai http://x/v1 m', b.key)
    reg:failure(b, { http_status = 429 }) -- not counted
    for _ = 1, 2 do reg:failure(b, { http_status = 500 }) end
    assert.equal('closed', b.state)
    t = 11 -- the first two fall out of the window
    reg:failure(b, { http_status = 500 })
    assert.equal('closed', b.state)
    reg:failure(b, { http_status = 502 })
    reg:failure(b, { error = 'connection reset' })
    assert.equal('open', b.state)
    local ok, wait = reg:allow(b)
    assert.is_false(ok)
    assert.equal(5, wait)
    t = 16
    assert.is_true((reg:allow(b)))
    assert.equal('half-open', b.state)
    assert.is_false((reg:allow(b))) -- one probe at a time
    reg:failure(b, { http_status = 500 })
    assert.equal('open', b.state)
    t = 22
    assert.is_true((reg:allow(b)))
    reg:success(b)
    assert.equal('closed', b.state)
    assert.same({ 'open', 'half-open', 'open', 'half-open', 'closed' }, changes)
  end)
end)

describe('resilience in the engine', function()
  local dir, srv, srv2
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    if srv then srv:stop() srv = nil end
    if srv2 then srv2:stop() srv2 = nil end
    roles.cache = {}
    H.rm(dir)
  end)

  it('429 with retry-after 1 twice, then success: three attempts, >= 1 s apart', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'flaky' }, replies = { { status = 429, retry_after = 1 },
                                               { status = 429, retry_after = 1 }, 'Worked.' } },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1' }) })
    local e, st = new_engine(dir, { { id = 'a', role = 'coder', prompt = 'flaky' } })
    assert.equal(0, run_engine(e))
    assert.equal('done', st:task('r1', 'a').status)
    local att = st:attempts('r1', 'a')
    assert.equal(3, #att)
    assert.equal('retried', att[1].status)
    assert.matches('HTTP 429', att[1].error)
    assert.equal('retried', att[2].status)
    assert.equal('done', att[3].status)
    assert.is_true(att[2].started_at - att[1].started_at >= 1)
    assert.is_true(att[3].started_at - att[2].started_at >= 1)
    local rs = events(e, st, 'retry')
    assert.equal(2, #rs)
    assert.equal('a', rs[1].task)
    assert.is_true(rs[1].wait >= 1)
    assert.equal('rate_limit', rs[1].class)
    -- the retry sent the same conversation: one user message, no retry prompt
    local reqs = srv:requests()
    assert.equal(3, #reqs)
    assert.equal(reqs[1].all_text, reqs[3].all_text)
    st:close()
  end)

  it('a task waiting to retry gives its slot to another task meanwhile (concurrency 1)', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'flaky' }, replies = { { status = 429, retry_after = 1 }, 'Worked.' } },
      { reply = 'Quick.' },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1' }) })
    local e, st = new_engine(dir, { { id = 'a', role = 'coder', prompt = 'flaky' },
                                    { id = 'b', role = 'coder', prompt = 'other' } },
                             { concurrency = 1 })
    assert.equal(0, run_engine(e))
    local a, b = st:attempts('r1', 'a'), st:attempts('r1', 'b')
    assert.equal(2, #a)
    assert.equal(1, #b)
    -- b ran in a's backoff: it started after a's first attempt ended and
    -- ended before a's retry started (one slot, never two turns at once)
    assert.is_true(b[1].started_at >= a[1].finished_at)
    assert.is_true(b[1].finished_at <= a[2].started_at)
    st:close()
  end)

  it('a task cancelled while it waits for its slot back ends cancelled; the run goes on', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'flaky' }, replies = { { status = 429, retry_after = 0.2 }, 'Worked.' } },
      { reply = { text = 'Slow.', delay = 1500 } },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1' }) })
    local e, st = new_engine(dir, { { id = 'a', role = 'coder', prompt = 'flaky' },
                                    { id = 'b', role = 'coder', prompt = 'other' } },
                             { concurrency = 1 })
    local code
    e:start(function(c) code = c end)
    -- a's backoff ended while b holds the one slot: a waits for it
    assert.is_true(H.run_until(function() return e.slot_waiters.a ~= nil end, 10000))
    assert.is_false(e:live('a').paused) -- waiting, not paused by anyone
    assert.is_true(e:cancel('a'))
    H.run_until(function() return code ~= nil end, 20000)
    assert.equal(1, code) -- a cancelled task fails the run
    assert.equal('cancelled', st:task('r1', 'a').status)
    assert.equal('done', st:task('r1', 'b').status)
    assert.equal(1, #st:attempts('r1', 'a'))
    st:close()
  end)

  it('500 on one backend: its breaker opens, the other backend finishes, it half-opens and closes', function()
    srv = assert(ms.start({ scenario = { { reply = { status = 500, message = 'down' } } } }))
    srv2 = assert(ms.start({ scenario = { { reply = { text = 'fine', delay = 100 } } } }))
    write_roles(dir, {
      bad = role_yaml({ backend = 'openai', url = srv.url .. '/v1', attempts = 20,
        extra = { 'breaker:', '  failures: 3', '  window: 30', '  cooldown: 1' } }),
      good = role_yaml({ backend = 'anthropic', model = 'claude-sonnet-4', url = srv2.url }),
    })
    local tasks = { { id = 'b1', role = 'bad', prompt = 'x' }, { id = 'b2', role = 'bad', prompt = 'x' } }
    for i = 1, 4 do
      tasks[#tasks + 1] = { id = 'g' .. i, role = 'good', prompt = 'y', deps = i > 1 and { 'g' .. (i - 1) } or nil }
    end
    local e, st = new_engine(dir, tasks, { concurrency = 6 })
    local goods_done_while_open, opened, code = 0, false, nil
    local g4_done, recovered = false, false
    e:subscribe(function(ev)
      if ev.kind == 'breaker' and ev.backend == 'openai' and ev.state == 'open' then opened = true end
      if ev.kind == 'task' and ev.status == 'done' and ev.task:match('^g') and opened then
        goods_done_while_open = goods_done_while_open + 1
      end
      -- the server recovers once the breaker has opened and the good tasks are done
      if ev.kind == 'task' and ev.task == 'g4' and ev.status == 'done' then g4_done = true end
      if opened and g4_done and not recovered then
        recovered = true
        srv:set_scenario({ { reply = 'recovered' } })
      end
    end)
    e:start(function(c) code = c end)
    H.run_until(function() return code ~= nil end, 60000)
    assert.equal(0, code)
    for _, t in ipairs(st:tasks('r1')) do assert.equal('done', t.status, t.id) end
    local states = {}
    for _, ev in ipairs(events(e, st, 'breaker')) do
      if ev.backend == 'openai' then states[#states + 1] = ev.state end
    end
    assert.equal('open', states[1])
    assert.truthy(table.concat(states, ' '):find('half%-open closed$'), table.concat(states, ' '))
    assert.is_true(goods_done_while_open >= 1)
    -- while open, nothing hammered it: failures before the first opening are the configured 3
    local reqs_bad = #srv:requests()
    assert.is_true(reqs_bad < 20, 'requests to the broken server: ' .. reqs_bad)
    local b = events(e, st, 'breaker')[1]
    assert.equal(srv.url .. '/v1', b.endpoint)
    st:close()
  end)

  for _, proto in ipairs({ 'openai', 'anthropic' }) do
    it(proto .. ': a hung request and a cut stream become retries; nothing of the cut turn is applied', function()
      srv = assert(ms.start({ scenario = {
        { when = { tool_result = '.' }, reply = 'Done.' },
        { when = { user = 'hang' },
          replies = { { hang = true }, { text = 'ok', write = { path = 'h.txt', content = 'h\n' } } } },
        { when = { user = 'cut' },
          replies = { { cut = true, text = 'half', write = { path = 'c.txt', content = 'c\n' } },
                      { stall = true }, 'nothing written' } },
      } }))
      local yaml = role_yaml({ backend = proto, model = proto == 'openai' and 'gpt-4o' or 'claude-sonnet-4',
                               url = proto == 'openai' and srv.url .. '/v1' or srv.url,
                               extra = { 'request_timeout: 2', 'tools: edit' } })
      write_roles(dir, { coder = (yaml:gsub('tools: read%-only\n', '')) })
      local e, st = new_engine(dir, { { id = 'h', role = 'coder', prompt = 'hang' },
                                      { id = 'c', role = 'coder', prompt = 'cut' } })
      local code = run_engine(e)
      local ah, ac = st:attempts('r1', 'h'), st:attempts('r1', 'c')
      assert.equal(0, code, require('cjson').encode({ ah, ac }))
      assert.equal(2, #ah)
      assert.matches('[Tt]ime', ah[1].error)
      assert.equal(3, #ac)
      assert.is_truthy(ac[1].error:find('cut off') or ac[1].error:find('transfer closed'), ac[1].error)
      local classes = {}
      for _, ev in ipairs(events(e, st, 'retry')) do classes[ev.task] = classes[ev.task] or ev.class end
      assert.same({ h = 'timeout', c = 'cut' }, classes)
      assert.equal('h\n', H.read(dir .. '/wt/h/h.txt'))
      assert.is_nil(H.read(dir .. '/wt/c/c.txt'), 'the cut turn wrote its file')
      st:close()
    end)
  end

  it('a stalled agent is cancelled and retried', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'slow' }, replies = { { text = 'late', delay = 60000 }, 'Quick now.' } },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1',
                                           extra = { 'stall_timeout: 0.5' } }) })
    local e, st = new_engine(dir, { { id = 's', role = 'coder', prompt = 'slow' } })
    assert.equal(0, run_engine(e))
    local att = st:attempts('r1', 's')
    assert.equal(2, #att)
    assert.matches('stalled: no event', att[1].error)
    assert.equal('stall', events(e, st, 'retry')[1].class)
    st:close()
  end)

  it('a non-retryable failure (401) is not retried; another task is not affected', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'auth' }, reply = { status = 401, message = 'invalid x-api-key' } },
      { reply = 'fine' },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1' }) })
    local e, st = new_engine(dir, { { id = 'x', role = 'coder', prompt = 'auth' },
                                    { id = 'y', role = 'coder', prompt = 'other' } })
    assert.equal(1, run_engine(e))
    assert.equal(1, #st:attempts('r1', 'x'))
    assert.equal('failed', st:task('r1', 'x').status)
    assert.matches('401', st:task('r1', 'x').error)
    assert.equal('done', st:task('r1', 'y').status)
    st:close()
  end)

  it('exhausted retries fail the task with the reason; an unrelated task still finishes', function()
    srv = assert(ms.start({ scenario = {
      { when = { user = 'always' }, reply = { status = 503 } },
      { reply = 'fine' },
    } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1', attempts = 3 }) })
    local e, st = new_engine(dir, { { id = 'x', role = 'coder', prompt = 'always' },
                                    { id = 'y', role = 'coder', prompt = 'other' },
                                    { id = 'z', role = 'coder', prompt = 'dep', deps = { 'x' } } })
    assert.equal(1, run_engine(e))
    assert.equal(3, #st:attempts('r1', 'x'))
    assert.matches('gave up after 3 attempts', st:task('r1', 'x').error)
    assert.equal('done', st:task('r1', 'y').status)
    assert.equal('blocked', st:task('r1', 'z').status)
    st:close()
  end)

  it('a run budget smaller than the costs stops new turns and ends resumable; a larger one completes', function()
    srv = assert(ms.start({ scenario = {
      { reply = { text = 'costly', usage = { input_tokens = 100000, output_tokens = 10000 } } },
    } }))
    -- gpt-4o: 100k in * $2.5/M + 10k out * $10/M = $0.35 a reply
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1' }) })
    local tasks = { { id = 'p1', role = 'coder', prompt = 'one' },
                    { id = 'p2', role = 'coder', prompt = 'two', deps = { 'p1' } },
                    { id = 'p3', role = 'coder', prompt = 'three', deps = { 'p2' } } }
    local e, st = new_engine(dir, tasks, { budget = 0.5 })
    assert.equal(engine.EXIT_BUDGET, run_engine(e))
    assert.equal('budget', st:run('r1').status)
    assert.equal('done', st:task('r1', 'p2').status)
    assert.equal('pending', st:task('r1', 'p3').status)
    assert.equal(1, #events(e, st, 'budget'))
    st:close()
    -- resume with a larger budget
    local done = { p1 = true, p2 = true }
    local e2, st2 = new_engine(dir, tasks, { budget = 5, resume = true, done = done })
    assert.equal(0, run_engine(e2))
    assert.equal('done', st2:task('r1', 'p3').status)
    assert.is_true(require('orch.budget').run_cost(st2, 'r1') > 1)
    st2:close()
  end)

  it('falls back to the role\'s fallback_backend while its breaker is open', function()
    srv = assert(ms.start({ scenario = { { reply = { status = 500 } } } }))
    srv2 = assert(ms.start({ scenario = { { reply = 'from the fallback' } } }))
    write_roles(dir, { coder = role_yaml({ backend = 'openai', url = srv.url .. '/v1', attempts = 10,
      extra = { 'breaker:', '  failures: 2', '  cooldown: 60', 'fallback_backend: anthropic',
                'fallback_model: claude-sonnet-4' } }) })
    -- the fallback reaches the second server through the vendor variable
    local old = os.getenv('ANTHROPIC_BASE_URL')
    local ffi = require('ffi')
    ffi.cdef('int setenv(const char *, const char *, int); int unsetenv(const char *);')
    ffi.C.setenv('ANTHROPIC_BASE_URL', srv2.url, 1)
    local ok, err = pcall(function()
      local e, st = new_engine(dir, { { id = 'f', role = 'coder', prompt = 'go' } })
      assert.equal(0, run_engine(e))
      local t = st:task('r1', 'f')
      assert.equal('done', t.status)
      assert.equal('anthropic', t.backend)
      st:close()
    end)
    if old then ffi.C.setenv('ANTHROPIC_BASE_URL', old, 1) else ffi.C.unsetenv('ANTHROPIC_BASE_URL') end
    assert(ok, err)
  end)
end)

