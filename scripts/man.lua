-- Writes orch's man pages: orch -l scripts/man.lua OUTDIR SRCDIR
--   OUTDIR/man1/orch.1, OUTDIR/man1/orch-CMD.1 (from orch.cli's table, the
--   text of `orch help CMD`), OUTDIR/man5/orch-plan.5 (SRCDIR/docs/plans.md),
--   OUTDIR/man5/orch-roles.5 (SRCDIR/docs/roles.md).
-- The build runs it (CMake target man); a page is rewritten only when its
-- text changed, so an unchanged page keeps its time.
local core = require('orch.core')
local man = require('orch.man')
local cli = require('orch.cli')

local out, src = arg[1], arg[2]
if not out or not src then
  io.stderr:write('usage: orch -l scripts/man.lua OUTDIR SRCDIR\n')
  os.exit(2)
end

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local function write(path, text)
  local f = io.open(path, 'rb')
  if f then
    local old = f:read('*a')
    f:close()
    if old == text then return end
  end
  f = assert(io.open(path .. '.tmp', 'wb'))
  f:write(text)
  f:close()
  assert(os.rename(path .. '.tmp', path))
end

local version = core.version
core.mkdir_p(out .. '/man1')
core.mkdir_p(out .. '/man5')
local pages = { ['orch.1'] = true }
write(out .. '/man1/orch.1', man.main_page(cli.man_info(), version))
for _, c in ipairs(cli.commands()) do
  pages['orch-' .. c.name .. '.1'] = true
  write(out .. '/man1/orch-' .. c.name .. '.1', man.command_page(c, version))
end
-- the page of a command that is gone goes too
for _, name in ipairs(core.readdir(out .. '/man1') or {}) do
  if name:match('^orch.*%.1$') and not pages[name] then os.remove(out .. '/man1/' .. name) end
end
write(out .. '/man5/orch-plan.5',
      man.markdown_page(read(src .. '/docs/plans.md'), 'orch-plan', '5',
                        'the plan format of orch (JSON or YAML)', version))
write(out .. '/man5/orch-roles.5',
      man.markdown_page(read(src .. '/docs/roles.md'), 'orch-roles', '5',
                        'role files of orch: how an agent works', version))
