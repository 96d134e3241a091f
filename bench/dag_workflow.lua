-- A workflow for bench/dag.sh: runs the plan like the default workflow, then
-- prints orch's own CPU time (not its children's), the scheduler's time and
-- how many tasks ended done, on stderr.
local opts = ...
local core = require('orch.core')
local run = require('orch.run')
-- DAG_SHELL=1: every cmd through `sh -c`, as ninja runs its commands
if os.getenv('DAG_SHELL') == '1' then require('orch.shellcmd').direct = false end
local code = run.execute(opts)
local ru = core.rusage()
local e = run.last_engine
io.stderr:write(('ORCH_CPU %.6f\n'):format(ru.utime + ru.stime))
io.stderr:write(('ORCH_SCHED %.6f\n'):format(e.sched_ns / 1e9))
io.stderr:write(('ORCH_DONE %d\n'):format(e.sched:counts().done))
return code
