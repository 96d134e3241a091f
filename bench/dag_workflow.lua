-- A workflow for bench/dag.sh: runs the plan like the default workflow, then
-- prints orch's own CPU time (not its children's) on stderr.
local opts = ...
local core = require('orch.core')
local code = require('orch.run').execute(opts)
local ru = core.rusage()
io.stderr:write(('ORCH_CPU %.6f\n'):format(ru.utime + ru.stime))
io.stderr:write(('ORCH_SCHED %.6f\n'):format(require('orch.run').last_engine.sched_ns / 1e9))
return code
