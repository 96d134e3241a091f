-- The Debian package, built by CPack from this build directory: its name,
-- its declared dependencies (every library the binaries link, and what orch
-- loads at run time), its contents (binary, modules, Lua, roles, workflows,
-- examples, man pages for every command, completions, docs), and the
-- unpacked copy runs from outside the source tree. Installing it with
-- apt-get is scripts/test-package.sh (needs root; CI runs it).
local H = require('spec.helpers')
local core = require('orch.core')
local cli = require('orch.cli')

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh_ok(cmd)
  local out, code = H.sh(cmd)
  assert.equal(0, code, cmd .. '\n' .. out)
  return out
end

local function lines(s)
  local t = {}
  for l in s:gmatch('[^\n]+') do t[#t + 1] = l end
  return t
end

describe('the Debian package', function()
  local build = os.getenv('ORCH_BUILD')
  local dir, deb, root, depends

  setup(function()
    if not build then return end
    dir = H.tmpdir()
    sh_ok(('cd %s && cpack -G DEB -B %s >/dev/null'):format(q(build), q(dir)))
    deb = (sh_ok('ls ' .. q(dir) .. '/orch_*.deb')):gsub('%s+$', '')
    root = dir .. '/root'
    sh_ok(('dpkg-deb -x %s %s'):format(q(deb), q(root)))
    depends = {}
    for d in sh_ok('dpkg-deb -f ' .. q(deb) .. ' Depends'):gmatch('[^,]+') do
      depends[d:match('^%s*([%w%.%+%-]+)')] = true
    end
  end)

  teardown(function() H.rm(dir) end)

  local function need_build()
    if not build then pending('ORCH_BUILD is not set') return false end
    return true
  end

  it('is orch_VERSION_ARCH.deb, of package orch, section devel', function()
    if not need_build() then return end
    local arch = sh_ok('dpkg --print-architecture'):gsub('%s+$', '')
    assert.equal(dir .. '/orch_' .. core.version .. '_' .. arch .. '.deb', deb)
    assert.equal('orch\n', sh_ok('dpkg-deb -f ' .. q(deb) .. ' Package'))
    assert.equal(core.version .. '\n', sh_ok('dpkg-deb -f ' .. q(deb) .. ' Version'))
    assert.truthy(sh_ok('dpkg-deb -f ' .. q(deb) .. ' Recommends'):find('bubblewrap', 1, true))
  end)

  it('depends on the package of every library its binaries link, and on what orch loads', function()
    if not need_build() then return end
    local bins = { root .. '/usr/bin/orch' }
    for _, m in ipairs(core.readdir(root .. '/usr/lib/orch')) do bins[#bins + 1] = root .. '/usr/lib/orch/' .. m end
    assert.equal(3, #bins)
    local checked = 0
    for _, b in ipairs(bins) do
      for _, lib in ipairs(lines(sh_ok('objdump -p ' .. q(b) .. " | awk '/NEEDED/ {print $2}'"))) do
        -- a sanitizer build's runtimes (such a package is for testing, not a release)
        if os.getenv('ORCH_SANITIZE') == 'ON' and lib:match('^lib%a*san%.') then goto next_lib end
        -- the package that holds it here (usr-merged paths: try both)
        local path = sh_ok('/sbin/ldconfig -p | awk -v l=' .. q(lib) .. " '$1 == l {print $NF; exit}'")
          :gsub('%s+$', '')
        assert.truthy(path ~= '', lib)
        local out, code = H.sh('dpkg -S ' .. q(path) .. ' 2>/dev/null || dpkg -S ' ..
                               q((path:gsub('^/usr', ''))) .. ' 2>/dev/null || dpkg -S /usr' .. q(path))
        assert.equal(0, code, lib .. ': ' .. out)
        local pkg = out:match('^([^:]+)')
        assert.is_true(depends[pkg] == true, ('%s links %s (package %s), which Depends does not name')
                       :format(b, lib, pkg))
        checked = checked + 1
        ::next_lib::
      end
    end
    assert.truthy(checked >= 8)
    -- loaded at run time: cjson, lyaml; orch test runs busted; git for worktrees
    for _, p in ipairs({ 'lua-cjson', 'lua-yaml', 'lua-busted', 'git' }) do
      assert.is_true(depends[p] == true, p)
    end
    -- and every one of them exists in the archive this machine uses
    for p in pairs(depends) do
      local out, code = H.sh('apt-cache show --no-all-versions ' .. q(p) .. ' >/dev/null')
      assert.equal(0, code, p .. ': ' .. out)
    end
  end)

  it('holds the binary, its modules, the shipped files, man pages, completions and docs', function()
    if not need_build() then return end
    local want = {
      '/usr/bin/orch', '/usr/lib/orch/git.so', '/usr/lib/orch/http.so',
      '/usr/share/orch/lua/orch/cli.lua', '/usr/share/orch/lua/orch/testing/modelserver.lua',
      '/usr/share/orch/roles/coder.yaml', '/usr/share/orch/workflows/code_review_test.lua',
      '/usr/share/orch/examples/hello.yaml', '/usr/share/man/man1/orch.1',
      '/usr/share/man/man5/orch-plan.5', '/usr/share/man/man5/orch-roles.5',
      '/usr/share/bash-completion/completions/orch', '/usr/share/zsh/vendor-completions/_orch',
      '/usr/share/fish/vendor_completions.d/orch.fish', '/usr/share/doc/orch/json.md',
      '/usr/share/doc/orch/copyright', '/usr/share/doc/orch/README.md',
    }
    for _, c in ipairs(cli.commands()) do want[#want + 1] = '/usr/share/man/man1/orch-' .. c.name .. '.1' end
    for _, f in ipairs(want) do
      assert.is_true(H.read(root .. f) ~= nil, f .. ' is not in the package')
    end
    -- nothing of the build or the source tree is in it, and nothing outside /usr
    local listing = sh_ok('dpkg-deb -c ' .. q(deb))
    assert.is_nil(listing:find('CMakeFiles', 1, true))
    for l in listing:gmatch('[^\n]+') do
      local p = l:match('%s(%./%S*)$')
      assert.truthy(p == './' or p:match('^%./usr/'), l)
    end
    -- the binaries are stripped
    assert.is_nil(sh_ok('file ' .. q(root .. '/usr/bin/orch')):find('not stripped', 1, true))
  end)

  it('runs unpacked, from outside the source tree', function()
    if not need_build() then return end
    local orch = root .. '/usr/bin/orch'
    local env = { ORCH_RUNTIME = false, ORCH_LIBDIR = false, ORCH_LUA_PATH = false }
    local r = H.spawn_wait({ orch, '--version' }, { cwd = '/', env = env })
    assert.equal('orch ' .. core.version, r.out)
    r = H.spawn_wait({ orch, 'plan', 'check', root .. '/usr/share/orch/examples/hello.yaml' },
                     { cwd = '/', env = env })
    assert.equal(0, r.code, r.err)
    -- its man pages are what its own help makes
    r = H.spawn_wait({ orch, 'help', '--man', 'run' }, { cwd = '/', env = env })
    assert.equal(H.read(root .. '/usr/share/man/man1/orch-run.1'), r.out .. '\n')
    local repo = H.tmpdir()
    sh_ok(('cd %s && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m i')
          :format(q(repo)))
    r = H.spawn_wait({ orch, 'run', '--plan', root .. '/usr/share/orch/examples/hello.yaml',
                       '--repo', repo, '--yes', '--no-tui' }, { cwd = '/', env = env })
    assert.equal(0, r.code, r.err)
    assert.equal('HELLO, ORCH', (H.read(repo .. '/hello/shout.txt') or ''):gsub('%s+$', ''))
    H.rm(repo)
  end)

  it('the Homebrew formula builds with the package\'s CMake options and the same dependencies', function()
    local rb = assert(H.read(H.SRC .. '/packaging/homebrew/orch.rb'))
    local pkg = assert(H.read(H.SRC .. '/scripts/package.sh'))
    assert.truthy(pkg:find('-DCMAKE_BUILD_TYPE=Release', 1, true))
    assert.truthy(rb:find('-DCMAKE_BUILD_TYPE=Release', 1, true))
    assert.truthy(pkg:find('-G Ninja', 1, true))
    assert.truthy(rb:find('-G Ninja', 1, true))
    -- a Homebrew formula for each library the Debian package depends on
    for _, f in ipairs({ 'luajit', 'libuv', 'sqlite', 'libgit2', 'curl', 'ncurses', 'git', 'libyaml' }) do
      assert.truthy(rb:find('depends_on "' .. f .. '"', 1, true), f)
    end
    assert.truthy(rb:find('resource "lua-cjson"', 1, true))
    assert.truthy(rb:find('resource "lyaml"', 1, true))
    local out, code = H.sh('command -v ruby >/dev/null && ruby -c ' .. q(H.SRC .. '/packaging/homebrew/orch.rb'))
    if code == 0 then assert.truthy(out:find('Syntax OK', 1, true)) end
  end)
end)
