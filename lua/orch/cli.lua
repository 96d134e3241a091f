-- The command line: `orch CMD ...` dispatches here (see core/lua/main.c).
local M = {}
function M.main(args)
  io.stderr:write("orch: cli not yet\n")
  return 2
end
return M
