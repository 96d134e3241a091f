-- The man pages are made from the same source as `orch help CMD`
-- (lua/orch/cli.lua's table): what `man orch-CMD` shows, rendered by man
-- itself, has the options `orch help CMD` prints; every option a command
-- takes is documented in its help; orch(1) lists every command;
-- orch-plan(5) and orch-roles(5) carry docs/plans.md and docs/roles.md.
local H = require('spec.helpers')
local man = require('orch.man')
local cli = require('orch.cli')

-- Option names ("--goal", "-o") in lines of `orch help CMD`: "  --goal TEXT   what".
local function help_flags(text)
  local names = {}
  for _, it in ipairs(man.options(text)) do
    for name in it.flags:gmatch('(%-%-?[%w][%w%-]*)') do names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- The OPTIONS section of a page as man renders it: the tag lines, indented
-- 7 columns, begin with '-'; a tag is its leading flags and ARGS (a
-- description may follow on the same line after a short tag).
local function man_flags(rendered)
  local names, in_opts = {}, false
  for line in (rendered .. '\n'):gmatch('([^\n]*)\n') do
    if line:match('^%u[%u ]*$') then in_opts = (line == 'OPTIONS') end
    if in_opts and line:match('^       %-') then
      for tok in line:gmatch('%S+') do
        local name = tok:gsub(',$', ''):match('^(%-%-?[%w][%w%-]*)')
        if name then
          names[#names + 1] = name
        elseif not tok:match('^[%u_=]+,?$') then
          break
        end
      end
    end
  end
  table.sort(names)
  return names
end

local function without(list, drop)
  local out = {}
  for _, v in ipairs(list) do if not drop[v] then out[#out + 1] = v end end
  return out
end

local GLOBAL = { ['-h'] = true, ['--help'] = true, ['--color'] = true }

describe('man pages', function()
  local dir

  setup(function()
    dir = H.tmpdir()
    -- generated as the build does, from this tree (a Lua edit needs no rebuild)
    local r = H.orch({ '-l', H.SRC .. '/scripts/man.lua', dir, H.SRC })
    assert.equal(0, r.code, r.err)
  end)

  teardown(function() H.rm(dir) end)

  local function render(args)
    local out, code = H.sh('MANWIDTH=120 MANPAGER=cat PAGER=cat MANPATH=' .. dir ..
      ' man ' .. args .. ' 2>' .. dir .. '/stderr')
    return out, code, H.read(dir .. '/stderr')
  end

  it('man orch-run shows the options orch help run prints', function()
    local r = H.orch({ 'help', 'run' })
    assert.equal(0, r.code)
    local want = help_flags(r.out)
    assert.truthy(#want >= 10, r.out)
    local page, code, warn = render('orch-run')
    assert.equal(0, code, page)
    assert.equal('', warn)
    assert.matches('ORCH%-RUN%(1%)', page)
    assert.same(want, without(man_flags(page), GLOBAL))
    -- and the global ones
    for g in pairs(GLOBAL) do assert.truthy(page:find('\n       ' .. g, 1, true) or
                                            page:find(', ' .. g, 1, true), g) end
  end)

  it('every command: its page has its help options, rendered without a warning', function()
    for _, c in ipairs(cli.commands()) do
      local r = H.orch({ 'help', c.name })
      assert.equal(0, r.code, c.name)
      local page, code, warn = render('-l ' .. dir .. '/man1/orch-' .. c.name .. '.1')
      assert.equal(0, code, c.name)
      assert.equal('', warn, c.name)
      assert.same(help_flags(r.out), without(man_flags(page), GLOBAL), c.name)
      -- the summary is the NAME line
      assert.truthy(page:find(c.summary:sub(1, 30), 1, true), c.name)
    end
  end)

  it("every option a command takes is in its help, and every option there is one it takes", function()
    for _, c in ipairs(cli.commands()) do
      local documented = {}
      for _, f in ipairs(help_flags(c.help)) do documented[f:gsub('^%-+', '')] = true end
      for name in pairs(c.options) do
        if name ~= 'color' then
          assert.is_true(documented[name] == true,
            ("orch %s takes --%s but its help text (lua/orch/cli.lua) does not say so: add a line " ..
             "'  --%s ARG   what it does' under Options:"):format(c.name, name, name))
        end
      end
      for name in pairs(documented) do
        assert.truthy(c.options[name], ('orch %s documents --%s, which it does not take'):format(c.name, name))
      end
    end
  end)

  it('orch(1) lists every command, the exit codes and the environment', function()
    local page, code, warn = render('orch')
    assert.equal(0, code)
    assert.equal('', warn)
    for _, c in ipairs(cli.commands()) do
      assert.truthy(page:find('orch-' .. c.name .. '(1)', 1, true), c.name)
    end
    for _, e in ipairs(cli.EXIT_CODES) do
      assert.truthy(page:find('\n       ' .. e[1] .. ' ', 1, true), tostring(e[1]))
    end
    for _, v in ipairs({ 'NO_COLOR', 'XDG_CONFIG_HOME', 'XDG_STATE_HOME', '--color' }) do
      assert.truthy(page:find(v, 1, true), v)
    end
    -- hidden helpers have no page
    assert.is_nil(H.read(dir .. '/man1/orch-__complete.1'))
  end)

  it('orch-plan(5) and orch-roles(5) carry every field of docs/plans.md and docs/roles.md', function()
    for _, p in ipairs({ { '5 orch-plan', 'plans.md' }, { '5 orch-roles', 'roles.md' } }) do
      local page, code, warn = render(p[1])
      assert.equal(0, code, p[1])
      assert.equal('', warn, p[1])
      local md = H.read(H.SRC .. '/docs/' .. p[2])
      local n = 0
      for field in md:gmatch('\n| `([%w_]+)`') do
        n = n + 1
        assert.truthy(page:find('\n       ' .. field, 1, true), p[1] .. ': ' .. field)
      end
      assert.truthy(n >= 8, p[2])
      for heading in md:gmatch('\n## ([^\n]+)') do
        local plain = heading:gsub('`', ''):upper()
        assert.truthy(page:find('\n' .. plain, 1, true), p[1] .. ': ' .. plain)
      end
    end
  end)

  it('orch help --man prints the roff page the build installs', function()
    local r = H.orch({ 'help', '--man', 'status' })
    assert.equal(0, r.code)
    assert.equal(H.read(dir .. '/man1/orch-status.1'), r.out .. '\n')
    assert.matches('^%.TH "ORCH%-STATUS" "1"', r.out)
    r = H.orch({ 'help', '--man', 'nope' })
    assert.equal(2, r.code)
  end)

  it('escapes what roff would read as its own', function()
    assert.equal('\\-\\-x a\\eb', man.escape('--x a\\b'))
    local page = man.command_page({ name = 'x', usage = 'orch x', summary = 's',
      help = "'quoted\n.dot\nOptions:\n  --a B      c\n", options = {} }, '1')
    assert.truthy(page:find("\n\\&'quoted\n\\&.dot\n", 1, true), page)
  end)
end)
