-- Prints the makespan of the latest run in DB (first start to last finish)
-- against the lower bound written by dag_gen.lua.
local core = require('orch.core')
local h = assert(core.db.open(arg[1], { readonly = true }))
local row = h:first([[SELECT min(started_at) AS s, max(finished_at) AS f FROM attempts
                      WHERE run_id = (SELECT id FROM runs ORDER BY created_at DESC LIMIT 1)]])
h:close()
local f = assert(io.open(arg[2]))
local bound, cp, work = f:read('*n', '*n', '*n')
f:close()
local span = row.f - row.s
print(('makespan of 60 tasks with random durations, 4 at once'))
print(('  lower bound max(critical path %.2f s, work/4 %.2f s) = %.2f s'):format(cp, work, bound))
print(('  orch                      %8.2f s   ratio %.3fx (target <= 1.1x)'):format(span, span / bound))
