-- orch's manners, the same in every command: colour (NO_COLOR,
-- --color=auto|always|never, on a real terminal), --json output checked
-- against the shapes docs/json.md documents (read from that file), -h/--help
-- and the usage exit code everywhere, and a database from a newer orch
-- refused with both versions named and left as it was.
local H = require('spec.helpers')
local cjson = require('cjson')
local core = require('orch.core')
local cli = require('orch.cli')
local store = require('orch.store')

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local cwd = core.cwd()
local function abs(p) return p:sub(1, 1) == '/' and p or (cwd .. '/' .. p) end
local ORCH = abs(H.ORCH)

-- ---------------------------------------------------------------- shapes

-- The shapes in docs/json.md: a ```json block after <!-- shape: NAME -->.
local function shapes()
  local md = assert(H.read(H.SRC .. '/docs/json.md'))
  local out = {}
  for name, body in md:gmatch('<!%-%- shape: ([%w_]+) %-%->%s*```json\n(.-)\n```') do
    out[name] = cjson.decode(body)
  end
  return out
end

local TYPES = {
  string = function(v) return type(v) == 'string' end,
  integer = function(v) return type(v) == 'number' and v == math.floor(v) end,
  number = function(v) return type(v) == 'number' end,
  boolean = function(v) return type(v) == 'boolean' end,
  null = function(v) return v == cjson.null end,
  any = function() return true end,
}

local function show(v)
  if type(v) == 'string' then return ('%q'):format(v) end
  if v == cjson.null then return 'null' end
  return tostring(v)
end

-- Checks v against shape (docs/json.md's notation); returns a list of errors.
local function check(shape, v, path, errs)
  errs = errs or {}
  path = path or '$'
  if type(shape) == 'string' then
    for alt in shape:gmatch('[^|]+') do
      if TYPES[alt] and TYPES[alt](v) then return errs end
      if not TYPES[alt] and v == alt then return errs end
    end
    errs[#errs + 1] = ('%s: %s is not %s'):format(path, show(v), shape)
  elseif type(shape) == 'number' then
    if v ~= shape then errs[#errs + 1] = ('%s: %s is not %s'):format(path, show(v), shape) end
  elseif shape[1] ~= nil then
    if type(v) ~= 'table' or (next(v) ~= nil and v[1] == nil) then
      errs[#errs + 1] = path .. ': not a list'
    else
      for i, x in ipairs(v) do check(shape[1], x, ('%s[%d]'):format(path, i), errs) end
    end
  else
    if v == cjson.null and shape['$or_null'] then return errs end
    if type(v) ~= 'table' or v[1] ~= nil then
      errs[#errs + 1] = path .. ': not an object'
      return errs
    end
    for k, s in pairs(shape) do
      if k ~= '$or_null' then
        if v[k] == nil then errs[#errs + 1] = ('%s.%s: missing'):format(path, k)
        else check(s, v[k], path .. '.' .. k, errs) end
      end
    end
    for k in pairs(v) do
      if shape[k] == nil then
        errs[#errs + 1] = ('%s.%s: not documented in docs/json.md'):format(path, k)
      end
    end
  end
  return errs
end

local function valid(name, text)
  local sh = assert(shapes()[name], 'no shape ' .. name .. ' in docs/json.md')
  local ok, v = pcall(cjson.decode, text)
  assert.is_true(ok, text)
  local errs = check(sh, v)
  assert.same({}, errs, text)
  return v
end

-- ---------------------------------------------------------------- helpers

local function git_repo()
  local dir = H.tmpdir()
  local out, code = H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t ' ..
                          'commit -q --allow-empty -m i'):format(dir))
  assert.equal(0, code, out)
  return dir
end

local PLAN = [[
goal: speak
tasks:
  - id: say
    cmd: echo hello; echo oops >&2
  - id: after
    cmd: echo "é and \033[31mred"
    deps: [say]
  - id: bad
    cmd: exit 3
    on_failure: soft
]]

-- orch on a terminal (script(1) gives it a pty): stdout and stderr together.
local function on_tty(args, env)
  local cmd = ORCH
  for _, a in ipairs(args) do cmd = cmd .. ' ' .. q(a) end
  local e = ''
  for k, v in pairs(env or {}) do e = e .. k .. '=' .. q(v) .. ' ' end
  return H.sh(('env -u NO_COLOR %s TERM=xterm script -qec %s /dev/null </dev/null'):format(e, q(cmd)))
end

describe('conventions', function()
  local repo, run_id

  setup(function()
    repo = git_repo()
    H.write(repo .. '/plan.yaml', PLAN)
    local r = H.orch({ 'run', '--plan', repo .. '/plan.yaml', '--repo', repo, '--yes', '--no-tui',
                       '--quiet' })
    assert.equal(0, r.code, r.err)
    run_id = cjson.decode(H.orch({ 'status', '--repo', repo, '--json' }).out).run.id
  end)

  teardown(function() H.rm(repo) end)

  describe('colour', function()
    it('orch status on a terminal is coloured, and NO_COLOR=1 takes every escape out', function()
      local out, code = on_tty({ 'status', '--repo', repo })
      assert.equal(0, code, out)
      assert.truthy(out:find('\27[32mdone\27[0m', 1, true), out)
      out, code = on_tty({ 'status', '--repo', repo }, { NO_COLOR = '1' })
      assert.equal(0, code, out)
      assert.matches('say%s+exec%s+done', out)
      assert.is_nil(out:find('\27', 1, true), out)
      -- an empty NO_COLOR does not count (no-color.org)
      out = on_tty({ 'status', '--repo', repo }, { NO_COLOR = '' })
      assert.truthy(out:find('\27[', 1, true))
    end)

    it('--color=never and --color never on a terminal, --color=always in a pipe and over NO_COLOR', function()
      local out = on_tty({ 'status', '--repo', repo, '--color=never' })
      assert.is_nil(out:find('\27', 1, true), out)
      out = on_tty({ '--color', 'never', 'status', '--repo', repo })
      assert.is_nil(out:find('\27', 1, true), out)
      local r = H.orch({ 'status', '--repo', repo })
      assert.is_nil(r.out:find('\27', 1, true))
      r = H.orch({ 'status', '--repo', repo, '--color=always' }, { env = { NO_COLOR = '1' } })
      assert.truthy(r.out:find('\27[32mdone', 1, true), r.out)
      r = H.orch({ '--color=always', 'status', '--repo', repo })
      assert.truthy(r.out:find('\27[', 1, true))
      -- the colour codes do not break the columns
      local plain = r.out:gsub('\27%[[%d;]*m', '')
      assert.equal(H.orch({ 'status', '--repo', repo }).out, plain)
    end)

    it('a bad --color value is bad usage', function()
      local r = H.orch({ 'status', '--repo', repo, '--color=sometimes' })
      assert.equal(2, r.code)
      assert.matches('auto, always or never', r.err)
      r = H.orch({ '--color=sometimes', 'status' })
      assert.equal(2, r.code)
    end)

    it('text from a task is printed as it was recorded (escapes and all), only with --json as JSON', function()
      local r = H.orch({ 'logs', run_id, 'after', '--repo', repo }, { env = { NO_COLOR = '1' } })
      assert.equal(0, r.code, r.err)
      assert.truthy(r.out:find('é and \27[31mred', 1, true))
    end)
  end)

  describe('--json', function()
    it('orch status --json has the documented shape', function()
      local r = H.orch({ 'status', '--repo', repo, '--json' })
      assert.equal(0, r.code, r.err)
      local v = valid('status', r.out)
      assert.equal(1, v.version)
      assert.equal(3, #v.tasks)
      assert.equal('failed', v.tasks[3].status)
    end)

    it('orch logs --json: one documented object a line', function()
      local r = H.orch({ 'logs', run_id, 'say', '--repo', repo, '--json' })
      assert.equal(0, r.code, r.err)
      local streams = {}
      for _, line in ipairs(r.stdout) do
        local v = valid('logs', line)
        assert.equal(run_id, v.run)
        assert.equal('say', v.task)
        streams[v.stream] = v.text
      end
      assert.equal('hello', streams.stdout)
      assert.equal('oops', streams.stderr)
      r = H.orch({ 'logs', run_id, 'after', '--repo', repo, '--json' })
      local v = valid('logs', r.stdout[1])
      assert.equal('é and \27[31mred', v.text)
      assert.is_nil(r.out:find('\27', 1, true)) -- escaped inside the JSON string
    end)

    it('orch plan check --json has the documented shape, valid or not, with the same exit codes', function()
      local r = H.orch({ 'plan', 'check', repo .. '/plan.yaml', '--json' })
      assert.equal(0, r.code, r.err)
      local v = valid('plan_check', r.out)
      assert.is_true(v.valid)
      assert.same({ 'say', 'after', 'bad' }, v.tasks)
      H.write(repo .. '/bad.yaml', 'tasks:\n  - id: a\n    deps: [nope]\n    cmd: x\n')
      r = H.orch({ 'plan', 'check', repo .. '/bad.yaml', '--json' })
      assert.equal(2, r.code)
      v = valid('plan_check', r.out)
      assert.is_false(v.valid)
      assert.equal(3, v.errors[1].line)
      assert.matches('nope', v.errors[1].message)
    end)

    it('orch doctor --json has the documented shape', function()
      local home = H.tmpdir()
      local r = H.orch({ 'doctor', '--json' }, { cwd = home, timeout = 60000, env = {
        PATH = '/usr/bin:/bin', HOME = home, XDG_CONFIG_HOME = home .. '/c', XDG_DATA_HOME = home .. '/d',
        XDG_CACHE_HOME = home .. '/k', ANTHROPIC_BASE_URL = 'http://127.0.0.1:9',
        OPENAI_BASE_URL = 'http://127.0.0.1:9/v1', ANTHROPIC_API_KEY = false, OPENAI_API_KEY = false,
        CODEX_HOME = false, ORCH_BACKEND = false, ORCH_CLAUDE_BIN = false, ORCH_CODEX_BIN = false,
        ORCH_CRUSH_BIN = false, CLAUDE_CODE_OAUTH_TOKEN = false, ANTHROPIC_AUTH_TOKEN = false } })
      H.rm(home)
      assert.is_true(r.code == 0 or r.code == 1, r.err)
      local v = valid('doctor', r.out)
      assert.equal(5, #v.backends)
      assert.is_nil(r.out:find('"todo":{}', 1, true))
      assert.truthy(#v.roles >= 4)
    end)

    it('the shape checker itself catches a missing, an extra and a mistyped field', function()
      local sh = shapes().plan_check
      local good = { version = 1, file = 'f', valid = true, goal = cjson.null, tasks = {}, errors = {} }
      assert.same({}, check(sh, good))
      local bad = { version = 2, file = 1, valid = true, tasks = {}, errors = {}, extra = 1 }
      local errs = table.concat(check(sh, bad), '\n')
      assert.matches('%$%.version: 2 is not 1', errs)
      assert.matches('%$%.file: 1 is not string', errs)
      assert.matches('%$%.goal: missing', errs)
      assert.matches('%$%.extra: not documented', errs)
      assert.same({}, check('done|failed', 'done'))
      assert.equal(1, #check('done|failed', 'running'))
    end)
  end)

  describe('XDG directories', function()
    it('keeps the repl history under XDG_STATE_HOME, moving one from XDG_DATA_HOME there', function()
      local home = H.tmpdir()
      local script = home .. '/probe.lua'
      H.write(script, "print(require('orch.lineedit').history_file())\n")
      core.mkdir_p(home .. '/data/orch')
      H.write(home .. '/data/orch/repl_history', 'return 1\n')
      local env = { HOME = home, XDG_STATE_HOME = home .. '/state', XDG_DATA_HOME = home .. '/data' }
      local r = H.orch({ '-l', script }, { env = env })
      assert.equal(0, r.code, r.err)
      assert.equal(home .. '/state/orch/repl_history', r.out)
      assert.equal('return 1\n', H.read(home .. '/state/orch/repl_history'))
      assert.is_nil(H.read(home .. '/data/orch/repl_history'))
      -- unset, empty or relative: the default under HOME
      r = H.orch({ '-l', script },
                 { env = { HOME = home, XDG_STATE_HOME = 'rel', XDG_DATA_HOME = '' } })
      assert.equal(home .. '/.local/state/orch/repl_history', r.out)
      H.rm(home)
    end)
  end)

  describe('every command', function()
    it('answers -h and --help with its usage, exit 0', function()
      for _, c in ipairs(cli.commands()) do
        for _, flag in ipairs({ '-h', '--help' }) do
          local r = H.orch({ c.name, flag })
          assert.equal(0, r.code, c.name .. ' ' .. flag)
          assert.equal('usage: ' .. c.usage, r.stdout[1], c.name)
        end
      end
      local r = H.orch({ '--help' })
      assert.equal(0, r.code)
    end)

    it('exits 2 with its usage on stderr for an unknown option', function()
      for _, c in ipairs(cli.commands()) do
        local r = H.orch({ c.name, '--no-such-option' }, { cwd = repo })
        assert.equal(2, r.code, c.name)
        assert.matches("unknown option '%-%-no%-such%-option'", r.err, nil, c.name)
        assert.truthy(r.err:find('usage: ' .. c.usage, 1, true), c.name)
        assert.equal('', r.out, c.name)
      end
      local r = H.orch({ 'no-such-command' })
      assert.equal(2, r.code)
    end)
  end)

  describe('the state database', function()
    it('from a newer orch is refused by every command, naming both versions, left as it was', function()
      local dir = git_repo()
      local r = H.orch({ 'run', '--plan', H.SRC .. '/examples/hello.yaml', '--repo', dir, '--yes',
                         '--no-tui', '--quiet' })
      assert.equal(0, r.code, r.err)
      local path = dir .. '/.orch/orch.db'
      local h = assert(core.db.open(path))
      h:exec('PRAGMA user_version = ' .. (store.VERSION + 1))
      h:run("UPDATE meta SET value = '9.9.9' WHERE key = 'orch_version'")
      h:close()
      local before = H.read(path)
      local mode = H.sh('stat -c %a ' .. q(path))
      assert.equal(store.VERSION + 1, store.file_version(path))
      for _, args in ipairs({ { 'status' }, { 'status', '--json' }, { 'resume', '--no-tui' },
                              { 'run', '--plan', H.SRC .. '/examples/hello.yaml', '--no-tui' },
                              { 'logs', 'x', 'y' }, { 'clean', 'x' } }) do
        local argv = { unpack(args) }
        argv[#argv + 1] = '--repo'
        argv[#argv + 1] = dir
        r = H.orch(argv)
        local what = table.concat(args, ' ')
        assert.equal(2, r.code, what .. ': ' .. r.err)
        assert.truthy(r.err:find('newer orch 9.9.9 (schema version ' .. (store.VERSION + 1) .. ')', 1, true),
                      what .. ': ' .. r.err)
        assert.truthy(r.err:find('this is orch ' .. core.version .. ', which knows schema versions up to '
                                 .. store.VERSION, 1, true), what .. ': ' .. r.err)
        assert.equal(before, H.read(path), what)
      end
      assert.equal(mode, H.sh('stat -c %a ' .. q(path)))
      local st, err = store.open(path)
      assert.is_nil(st)
      assert.matches('upgrade orch', err)
      assert.equal(before, H.read(path))
      H.rm(dir)
    end)

    it('of an older orch is migrated forward by orch status, a read-only command', function()
      local dir = git_repo()
      local r = H.orch({ 'run', '--plan', H.SRC .. '/examples/hello.yaml', '--repo', dir, '--yes',
                         '--no-tui', '--quiet' })
      assert.equal(0, r.code, r.err)
      local path = dir .. '/.orch/orch.db'
      -- back to schema 2: what orch before the meta table wrote
      local h = assert(core.db.open(path))
      h:exec('DROP TABLE meta; PRAGMA user_version = 2')
      h:close()
      r = H.orch({ 'status', '--repo', dir })
      assert.equal(0, r.code, r.err)
      assert.matches('4 done', r.out)
      assert.equal(store.VERSION, store.file_version(path))
      local st = assert(store.open(path, { readonly = true }))
      assert.equal(core.version, st.h:first("SELECT value FROM meta WHERE key = 'orch_version'").value)
      st:close()
      H.rm(dir)
    end)

    it('records the orch that migrated it', function()
      local dir = H.tmpdir()
      local st = assert(store.open(dir .. '/orch.db'))
      assert.equal(core.version, st.h:first("SELECT value FROM meta WHERE key = 'orch_version'").value)
      st:close()
      assert.equal(store.VERSION, store.file_version(dir .. '/orch.db'))
      assert.is_nil(store.file_version(dir .. '/absent.db'))
      H.write(dir .. '/text', 'not a database at all, but longer than one hundred bytes of header: ' ..
              string.rep('x', 100))
      assert.is_nil(store.file_version(dir .. '/text'))
      H.rm(dir)
    end)
  end)
end)
