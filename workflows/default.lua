-- The default workflow: runs the plan given with --plan, each task in its
-- own git worktree, merged back into the run's integration branch with the
-- `merge` strategy (--merge squash|rebase|merge to change it).
--
-- Copy this file to make your own: `orch run my-workflow.lua --plan FILE`.
-- It receives the command-line options as `...` and returns the exit code.
local opts = ...
local run = require('orch.run')

return run.execute(opts)
