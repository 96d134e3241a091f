-- Output cannot grow orch's memory or database without bound (issue 12,
-- item 5): long lines are cut (head and tail kept), an attempt's output
-- past the limit is not stored, `orch logs` streams.
local cjson = require('cjson')
local H = require('spec.helpers')
local store_mod = require('orch.store')

local function git_repo(dir)
  H.sh(('cd %s && git init -q && git config user.email t@t && git config user.name t' ..
        ' && echo x > README && git add README && git commit -qm init'):format(dir))
end

-- Runs an orch command under GNU time; returns output, exit code, max RSS (kB).
local function timed(args)
  local out, code = H.sh('/usr/bin/time -f "maxrss=%M" ' .. H.ORCH .. ' ' .. args)
  return out, code, tonumber(out:match('maxrss=(%d+)'))
end

describe('task output', function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    git_repo(dir)
  end)
  after_each(function() H.rm(dir) end)

  local function run_plan(tasks)
    local plan = dir .. '/plan.json'
    H.write(plan, cjson.encode({ tasks = tasks }))
    return timed(("run --plan '%s' --repo '%s' --yes --no-tui --in-place 2>&1"):format(plan, dir))
  end

  local function logs(id, task)
    return H.sh(("%s logs %s %s --repo '%s'"):format(H.ORCH, id, task, dir))
  end

  local function run_id()
    local st = assert(store_mod.open(dir .. '/.orch/orch.db', { readonly = true }))
    local id = st:latest_run().id
    st:close()
    return id
  end

  it('a 100 MB line, and 100 MB with no newline, keep their head and tail', function()
    local out, code, rss = run_plan({
      { id = 'long', cmd = "printf HEAD; head -c 100000000 /dev/zero | tr '\\0' x; printf 'TAIL\\nafter\\n'" },
      { id = 'open', cmd = "printf BEGIN; head -c 100000000 /dev/zero | tr '\\0' y; printf END" },
    })
    assert.equal(0, code, out)
    -- (under ASan freed memory sits in its quarantine: RSS says nothing there)
    if os.getenv('ORCH_SANITIZE') ~= 'ON' then
      assert.is_true(rss < 120 * 1024, ('max RSS %d kB'):format(rss))
    end
    local id = run_id()
    local text = logs(id, 'long')
    local first = text:match('^[^\n]*')
    assert.matches('^HEADxxx', first)
    assert.matches('xxxTAIL$', first)
    assert.matches('%[%.%.%. orch cut %d+ bytes %.%.%.%]', first)
    assert.is_true(#first <= store_mod.limits.line + 64, #first)
    assert.matches('\nafter\n', text, 1, true)
    text = logs(id, 'open')
    assert.matches('^BEGINyyy', text)
    assert.matches('yyyEND\n$', text)
    assert.matches('orch cut', text)
  end)

  it('past the per-attempt limit is not stored, and says so', function()
    os.execute("mkdir -p '" .. dir .. "/.orch'")
    H.write(dir .. '/.orch/init.lua', "require('orch.store').limits.output = 100000\n")
    local out, code = run_plan({
      { id = 'chatty', cmd = 'i=0; while [ $i -lt 5000 ]; do echo "line $i $(printf %080d 0)"; i=$((i+1)); done' },
    })
    assert.equal(0, code, out)
    local text = logs(run_id(), 'chatty')
    assert.matches('line 0 ', text, 1, true)
    assert.is_nil(text:find('line 4999 ', 1, true))
    assert.matches('[orch] output over the limit of 100000 bytes', text, 1, true)
    assert.matches('bytes in %d+ lines of output were not stored', text)
    assert.is_true(#text < 120000, #text)
  end)

  it('orch logs streams a 100 MB log', function()
    local st = assert(store_mod.open(dir .. '/.orch/orch.db'))
    st:create_run({ id = 'r1', status = 'done' })
    st:add_tasks('r1', { { id = 'big', cmd = 'true' } })
    local n = st:start_attempt('r1', 'big', {})
    local line = ('z'):rep(1024 * 1024 - 1)
    local limit = store_mod.limits.output
    store_mod.limits.output = 1e12
    for _ = 1, 100 do st:event('r1', 'big', n, 'stdout', line) end
    store_mod.limits.output = limit
    st:close()
    local out, code, rss = timed(("logs r1 big --repo '%s' | wc -c"):format(dir))
    assert.equal(0, code, out)
    assert.matches('104857600', out)
    assert.is_true(rss < 64 * 1024, ('max RSS %d kB'):format(rss))
  end)
end)
