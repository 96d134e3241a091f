-- code_only: plan (the orchestrator, or --plan FILE) -> plan gate -> the
-- coders in parallel, each merged into the integration branch as it
-- finishes -> the test gate -> the final gate. No reviewers, no testers.
local W = require('orch.workflow')

return W.define({
  name = 'code_only',
  test_cmd = nil, -- the test gate's command; nil: detected (docs/workflows.md)
})
