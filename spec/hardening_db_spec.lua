-- The database: private files, and safe to open from two processes at once
-- (issue 12, items 7 and 14).
local H = require('spec.helpers')
local core = require('orch.core')
local store_mod = require('orch.store')

local function mode_of(path)
  return (H.sh("stat -c %a '" .. path .. "'"):gsub('%s+$', ''))
end

describe('the state database', function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it('is 0600 with its -wal and -shm, in a 0700 .orch/', function()
    H.sh("umask 022; mkdir -p '" .. dir .. "/.orch'; chmod 755 '" .. dir .. "/.orch'")
    local st = assert(store_mod.open(dir .. '/.orch/orch.db'))
    st:create_run({ id = 'r1', goal = 'secret env' })
    assert.equal('700', mode_of(dir .. '/.orch'))
    assert.equal('600', mode_of(dir .. '/.orch/orch.db'))
    assert.equal('600', mode_of(dir .. '/.orch/orch.db-wal'))
    assert.equal('600', mode_of(dir .. '/.orch/orch.db-shm'))
    st:close()
  end)

  it('tightens an existing database written 0644', function()
    H.sh("umask 022; mkdir -p '" .. dir .. "/d'")
    local st = assert(store_mod.open(dir .. '/d/orch.db'))
    st:create_run({ id = 'r1' })
    st:close()
    H.sh("chmod 644 '" .. dir .. "/d/orch.db'")
    st = assert(store_mod.open(dir .. '/d/orch.db'))
    assert.equal('600', mode_of(dir .. '/d/orch.db'))
    st:close()
  end)

  it('is opened and migrated by two processes racing on a new file', function()
    local script = dir .. '/open.lua'
    H.write(script, [[
local st, err = require('orch.store').open(arg[1])
if not st then io.stderr:write(err, '\n') os.exit(2) end
st:create_run({ id = arg[2] })
st:close()
]])
    for trial = 1, 12 do
      local db = ('%s/t%d/orch.db'):format(dir, trial)
      local left, codes, errs = 2, {}, {}
      for k = 1, 2 do
        assert(core.spawn({
          argv = { H.ORCH, '-l', script, db, 'run' .. k },
          stderr = function(l) errs[#errs + 1] = l end,
          on_exit = function(code) codes[k] = code left = left - 1 end,
        }))
      end
      H.run_until(function() return left == 0 end, 30000)
      assert.same({ 0, 0 }, codes, table.concat(errs, '\n'))
      local st = assert(store_mod.open(db, { readonly = true }))
      assert.equal(2, #st:runs())
      st:close()
    end
  end)
end)
