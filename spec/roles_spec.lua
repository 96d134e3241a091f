-- Roles (orch.roles): shipped, user (XDG) and repository files, merged
-- field by field; errors name the file and line; 'auto' backends.
local H = require('spec.helpers')
local roles = require('orch.roles')

describe('roles', function()
  local repo, xdg, old_xdg
  before_each(function()
    repo, xdg = H.tmpdir(), H.tmpdir()
    old_xdg = os.getenv('XDG_CONFIG_HOME')
    H.sh(('mkdir -p %s/.orch/roles %s/orch/roles'):format(repo, xdg))
    require('orch.config').user_dir = function() return xdg .. '/orch' end
    roles.cache = {}
  end)
  after_each(function()
    H.rm(repo) H.rm(xdg)
    package.loaded['orch.config'] = nil
    roles.cache = {}
    assert(old_xdg == os.getenv('XDG_CONFIG_HOME'))
  end)

  it('ships orchestrator, coder, reviewer and tester', function()
    local names = roles.names({ repo = repo })
    for _, n in ipairs({ 'coder', 'orchestrator', 'reviewer', 'tester' }) do
      assert.is_true(table.concat(names, ' '):find(n, 1, true) ~= nil, n)
    end
    assert.equal('read-only', roles.get('reviewer', { repo = repo }).tools)
    assert.equal('edit', roles.get('coder', { repo = repo }).tools)
    assert.matches('VERDICT: approve', roles.get('reviewer', { repo = repo }).system_prompt)
  end)

  it('user then repository files override field by field', function()
    H.write(xdg .. '/orch/roles/coder.yaml', 'model: user-model\nlimits:\n  turns: 7\nenv:\n  A: "1"\n')
    H.write(repo .. '/.orch/roles/coder.yaml', 'backend: codex\nenv:\n  B: 2\n')
    local r = assert(roles.get('coder', { repo = repo }))
    assert.equal('codex', r.backend)
    assert.equal('user-model', r.model)
    assert.equal(7, r.limits.turns)
    assert.equal(1800, r.limits.time) -- the shipped value, kept
    assert.same({ A = '1', B = '2' }, r.env)
    assert.equal('edit', r.tools)
    assert.equal(3, #r.files)
  end)

  it('a Lua role file works and a new role can be added', function()
    H.write(repo .. '/.orch/roles/docs.lua',
      "return { backend = 'openai', tools = { 'read', 'write' }, system_prompt = 'docs' }")
    local r = assert(roles.get('docs', { repo = repo }))
    assert.same({ 'read', 'write' }, r.tools)
    assert.equal('openai', r.backend)
  end)

  it('names the file and line of a bad field', function()
    H.write(repo .. '/.orch/roles/coder.yaml', 'model: m\n\ntools: everything\n')
    local r, err = roles.get('coder', { repo = repo })
    assert.is_nil(r)
    assert.matches('coder.yaml:3: tools must be read%-only, edit, full', err)
    roles.cache = {}
    H.write(repo .. '/.orch/roles/coder.yaml', 'model: m\nsytem_prompt: x\n')
    r, err = roles.get('coder', { repo = repo })
    assert.is_nil(r)
    assert.matches("coder.yaml:2: unknown role field 'sytem_prompt'; did you mean 'system_prompt'", err)
    roles.cache = {}
    H.write(repo .. '/.orch/roles/coder.yaml', 'model: [unclosed\n')
    r, err = roles.get('coder', { repo = repo })
    assert.is_nil(r)
    assert.matches('coder.yaml:%d+:', err)
    roles.cache = {}
    H.write(repo .. '/.orch/roles/coder.yaml', 'limits:\n  turns: many\n')
    r, err = roles.get('coder', { repo = repo })
    assert.is_nil(r)
    assert.matches('coder.yaml:2: limits.turns must be a number', err)
  end)

  it('reload keeps the old roles when an edit is broken', function()
    H.write(repo .. '/.orch/roles/reviewer.yaml', 'system_prompt: first\n')
    assert.equal('first', roles.get('reviewer', { repo = repo }).system_prompt)
    H.write(repo .. '/.orch/roles/reviewer.yaml', 'system_prompt: second\n')
    assert.is_true(roles.reload({ repo = repo }))
    assert.equal('second', roles.get('reviewer', { repo = repo }).system_prompt)
    H.write(repo .. '/.orch/roles/reviewer.yaml', 'system_prompt: [broken\n')
    local ok, err = roles.reload({ repo = repo })
    assert.is_nil(ok)
    assert.matches('reviewer.yaml:', err)
    assert.equal('second', roles.get('reviewer', { repo = repo }).system_prompt)
  end)

  it('for_task applies the task overrides; cmd tasks are exec; unknown roles are named', function()
    local r = assert(roles.for_task({ id = 't', role = 'reviewer', backend = 'codex', model = 'x' },
      { repo = repo }))
    assert.equal('codex', r.backend)
    assert.equal('x', r.model)
    assert.equal('read-only', r.tools)
    assert.equal('exec', roles.for_task({ id = 'c', cmd = 'true' }, { repo = repo }).backend)
    local none, err = roles.for_task({ id = 'u', role = 'revewer' }, { repo = repo })
    assert.is_nil(none)
    assert.matches("task u: no role 'revewer'.*did you mean 'reviewer'", err)
  end)

  it("'auto' follows ORCH_BACKEND, then what is installed", function()
    H.write(repo .. '/.orch/roles/coder.yaml', 'backend: auto\n')
    local getenv = os.getenv
    -- luacheck: push ignore 122
    os.getenv = function(k) if k == 'ORCH_BACKEND' then return 'openai' end return getenv(k) end
    local ok, role = pcall(roles.for_task, { id = 'a', role = 'coder' }, { repo = repo })
    os.getenv = getenv
    -- luacheck: pop
    assert.is_true(ok)
    assert.equal('openai', role.backend)
  end)
end)
