-- orch.shellcmd: a task's `cmd` as the argv to run.
--
-- A cmd is run by `sh -c`, unless it is a simple command: words of plain
-- characters (letters, digits and _ . / , : + % @ ^ = -) separated by
-- blanks, naming a program that is not a shell keyword or builtin, and not
-- starting with an assignment. Such a command means the same with or
-- without the shell, so it is executed directly, as make does: that saves
-- the shell's own exec, which is most of the cost of a short task.
--
--   local argv, direct = shellcmd.argv('make test')   -- {'make', 'test'}, true
--   shellcmd.argv('make test > log')                   -- {'sh', '-c', ...}, false
local M = {}

-- false: every cmd through `sh -c` (a user's init.lua may set it)
M.direct = true

-- dash's keywords and builtins (a builtin may not behave like the program
-- of the same name: echo -e, test, kill -l); true and false alone are the
-- same either way
local SHELL = {}
for w in ([[! { } case do done elif else esac fi for function if in select then time until
  while : . [ alias bg break cd chdir command continue echo eval exec exit export false fc fg
  getopts hash jobs kill local printf pwd read readonly return set shift test times trap true
  type ulimit umask unalias unset wait]]):gmatch('%S+') do
  SHELL[w] = true
end

local function shell(cmd) return { 'sh', '-c', cmd }, false end

-- The argv for cmd, and whether it runs without the shell.
function M.argv(cmd)
  if not M.direct or cmd:find('[^%w_%./,:+%%@^=%- \t-]') then return shell(cmd) end
  local words = {}
  for w in cmd:gmatch('[^ \t]+') do words[#words + 1] = w end
  local prog = words[1]
  if not prog or prog:find('=', 1, true) then return shell(cmd) end
  if SHELL[prog] and not ((prog == 'true' or prog == 'false') and #words == 1) then
    return shell(cmd)
  end
  return words, true
end

return M
