-- `cmake --install` gives a working orch: Lua modules, workflows and the
-- git/http modules are found relative to the installed binary, and no path
-- of the build tree is baked in.
local H = require('spec.helpers')

describe('an installed orch', function()
  it('finds its modules and runs a plan from the install prefix', function()
    local build = os.getenv('ORCH_BUILD')
    if not build then pending('ORCH_BUILD is not set') return end
    local prefix = H.tmpdir()
    local out, code = H.sh(('cmake --install %s --prefix %s'):format(build, prefix))
    assert.equal(0, code, out)
    local orch = prefix .. '/bin/orch'
    -- the binary's data knows no build or source path (debug info aside;
    -- sanitizer builds carry source paths for their reports)
    if os.getenv('ORCH_SANITIZE') ~= 'ON' then
      local ro = prefix .. '/rodata'
      assert.equal(0, select(2, H.sh(('objcopy -O binary --only-section=.rodata %s %s'):format(orch, ro))))
      local data = H.read(ro)
      assert.is_nil(data:find(build, 1, true))
      assert.is_nil(data:find(H.SRC, 1, true))
    end
    local script = prefix .. '/probe.lua'
    H.write(script, [[
      local core = require('orch.core')
      print(core.runtime_dir())
      print(package.searchpath('orch.plan', package.path))
      print(type(core.git.open), type(core.http.request))
    ]])
    local r = H.spawn_wait({ orch, '-l', script }, { cwd = '/' })
    assert.equal(0, r.code, r.err)
    assert.matches('^' .. prefix:gsub('%p', '%%%0'), r.stdout[1])
    assert.matches('^' .. prefix:gsub('%p', '%%%0') .. '.*/lua/orch/plan%.lua$', r.stdout[2])
    assert.equal('function\tfunction', r.stdout[3])
    local repo = H.tmpdir()
    H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i'):format(repo))
    r = H.spawn_wait({ orch, 'run', '--plan', prefix .. '/share/orch/examples/hello.yaml',
                       '--repo', repo, '--yes' }, { cwd = '/' })
    assert.equal(0, r.code, r.err)
    assert.equal('HELLO, ORCH', (H.read(repo .. '/hello/shout.txt') or ''):gsub('%s+$', ''))
    H.rm(repo)
    H.rm(prefix)
  end)
end)
