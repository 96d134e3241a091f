-- Runs busted inside the orch host, so specs use the real loop and C core:
--   orch -l spec/runner.lua spec/NAME_spec.lua [busted options]
-- (ctest runs one such command per spec file; see CMakeLists.txt.)
local src = os.getenv('ORCH_SRC') or '.'
package.path = src .. '/?.lua;' .. src .. '/?/init.lua;' .. package.path
if #arg == 0 then
  arg[1] = src .. '/spec'
end
table.insert(arg, 1, '--output=TAP')
-- busted signals failures under Lua 5.1 by raising a nil error: turn that
-- into exit code 1 instead of an "error object is a nil value" report.
local ok, err = pcall(require('busted.runner'), { standalone = false })
if not ok then
  if err ~= nil then io.stderr:write(tostring(err), '\n') end
  os.exit(1, true)
end
-- Success: exit 0 even though specs provoked (and counted) callback errors.
os.exit(0, true)
