-- `orch demo`: the whole product on a throwaway repository, offline, with
-- no API key. It creates a small shell project in a temporary git repo,
-- starts the scripted model server (orch.testing.modelserver) with the
-- scenario below, points the roles at it (the orchestrator and reviewers
-- on the anthropic backend, coders and testers on openai; one coder on
-- Claude Code and one on Codex when they are installed), and runs the
-- code_review_test workflow to the end: the plan, agents in parallel, a
-- question answered by the orchestrator, a review that sends a coder back
-- once, the testers, the test gate and the merged result.
local core = require('orch.core')
local cjson = require('cjson')

local M = {}

M.GOAL = 'Add add and mul commands to calc.sh, each with a test'

M.FILES = {
  ['README.md'] = '# calc\n\nA tiny calculator in POSIX shell: `sh calc.sh add 2 3`.\n' ..
    'Tests: `sh test.sh`.\n',
  ['calc.sh'] = '#!/bin/sh\n# calc.sh CMD A B\necho "calc: unknown command: $1" >&2\nexit 2\n',
  ['test.sh'] = '#!/bin/sh\n# Runs every tests/*_test.sh; fails if one fails.\nset -e\n' ..
    'cd "$(dirname "$0")"\nn=0\nfor t in tests/*_test.sh; do\n' ..
    '  [ -e "$t" ] || continue\n  sh "$t"\n  n=$((n + 1))\ndone\necho "test.sh: $n test files passed"\n',
}

local ADD = 'calc_add() { echo $(($1 + $2)); }\n'
local MUL = 'calc_mul() { echo $(($1 * $2)); }\n'
local ADD_TEST = '. ./lib/add.sh\n[ "$(calc_add 2 3)" = 5 ] || { echo "add: 2+3 is not 5" >&2; exit 1; }\n' ..
  '[ "$(calc_add -2 3)" = 1 ] || { echo "add: -2+3 is not 1" >&2; exit 1; }\n'
local MUL_TEST = '. ./lib/mul.sh\n[ "$(calc_mul 4 5)" = 20 ] || { echo "mul: 4*5 is not 20" >&2; exit 1; }\n' ..
  '[ "$(calc_mul -2 3)" = -6 ] || { echo "mul: -2*3 is not -6" >&2; exit 1; }\n'
local CALC = '#!/bin/sh\n# calc.sh CMD A B\ncd "$(dirname "$0")"\n. ./lib/add.sh\n. ./lib/mul.sh\n' ..
  'case "$1" in\n  add) calc_add "$2" "$3" ;;\n  mul) calc_mul "$2" "$3" ;;\n' ..
  '  *) echo "calc: unknown command: $1" >&2; exit 2 ;;\nesac\n'
local CALC_TEST = '[ "$(sh ./calc.sh add 2 3)" = 5 ] || { echo "calc add failed" >&2; exit 1; }\n' ..
  '[ "$(sh ./calc.sh mul 4 5)" = 20 ] || { echo "calc mul failed" >&2; exit 1; }\n'

-- The plan the scripted orchestrator proposes; backends per task (claude
-- and codex when installed, so the demo shows them too).
function M.plan(backends)
  return {
    goal = M.GOAL,
    tasks = {
      { id = 'add', title = 'calc_add in lib/add.sh', role = 'coder', files = { 'lib/add.sh', 'tests/add_test.sh' },
        prompt = 'Create lib/add.sh defining the shell function calc_add A B, which prints A+B.',
        backend = backends.add },
      { id = 'mul', title = 'calc_mul in lib/mul.sh', role = 'coder', files = { 'lib/mul.sh', 'tests/mul_test.sh' },
        prompt = 'Create lib/mul.sh defining the shell function calc_mul A B, which prints A*B, ' ..
          'and tests/mul_test.sh testing it.', backend = backends.mul },
      { id = 'cli', title = 'calc.sh dispatches add and mul', role = 'coder', deps = { 'add', 'mul' },
        files = { 'calc.sh', 'tests/calc_test.sh' },
        prompt = 'Make calc.sh dispatch "add" and "mul" to calc_add and calc_mul (sourcing lib/), ' ..
          'and add tests/calc_test.sh.', backend = backends.cli },
    },
  }
end

-- The name under which the request offers ask_orchestrator (orch's own
-- tool, Claude Code's mcp__orch__ask_orchestrator, ...).
function M.ask_tool(req)
  for _, name in ipairs(req.tools or {}) do
    if name:find('ask_orchestrator', 1, true) then return name end
  end
  for _, name in ipairs(req.tools or {}) do
    if name == 'mcp__orch' then return 'mcp__orch__ask_orchestrator' end
  end
  return 'ask_orchestrator'
end

-- The scripted model's rules: first match wins.
function M.scenario(backends)
  local plan_json = cjson.encode(M.plan(backends))
  local ORCH, CODER = 'You are the orchestrator', 'You are a coder'
  local REVIEWER, TESTER = 'You are a code reviewer', 'You are a tester'
  return {
    rules = {
      -- the orchestrator: answers the coder's question, plans the goal
      { name = 'orch-answer', when = { system = ORCH, user = 'asks:' },
        reply = 'Yes: calc_mul must handle negative numbers (shell arithmetic does); test -2 * 3.' },
      { name = 'orch-plan', when = { system = ORCH, user = 'Plan this goal' },
        reply = 'Here is the plan: add and mul in parallel, then the command line.\n```json\n' ..
          plan_json .. '\n```' },
      { name = 'orch-other', when = { system = ORCH }, reply = 'Noted.' },
      -- the coders
      { name = 'mul-write', when = { system = CODER, tool_result = 'negative numbers' },
        reply = { text = 'Writing calc_mul and its test.', write = {
          { path = 'lib/mul.sh', content = MUL }, { path = 'tests/mul_test.sh', content = MUL_TEST } } } },
      { name = 'coder-done', when = { system = CODER, tool_result = true },
        reply = 'Done: the files are written.' },
      { name = 'mul-ask', when = { system = CODER, user = 'lib/mul%.sh' }, times = 1,
        reply = function(req)
          return { text = 'One question first.', tool_calls = { { name = M.ask_tool(req),
            input = { question = 'Must calc_mul handle negative numbers?' } } } }
        end },
      { name = 'add-fix', when = { system = CODER, user = 'asks for changes' },
        reply = { text = 'Adding the test.', write = { path = 'tests/add_test.sh', content = ADD_TEST } } },
      { name = 'add-write', when = { system = CODER, user = 'lib/add%.sh' },
        reply = { text = 'Writing calc_add.', write = { path = 'lib/add.sh', content = ADD } } },
      { name = 'cli-write', when = { system = CODER, user = 'dispatch' },
        reply = { text = 'Wiring calc.sh.', write = {
          { path = 'calc.sh', content = CALC }, { path = 'tests/calc_test.sh', content = CALC_TEST } } } },
      -- the reviewer: the first review of add asks for a test
      { name = 'review-add-changes', times = 1,
        when = { system = REVIEWER, user = 'task add ' },
        reply = 'calc_add is right, but nothing tests it.\n' ..
          'VERDICT: changes: add tests/add_test.sh checking calc_add 2 3 and -2 3' },
      { name = 'review-approve', when = { system = REVIEWER },
        reply = 'The change does what the task asks and is tested.\nVERDICT: approve' },
      -- the tester
      { name = 'test-pass', when = { system = TESTER },
        reply = 'The tests for this change pass.\nVERDICT: pass' },
    },
    default = 'Nothing to do.',
  }
end

local function sh(cmd)
  local f = io.popen(cmd .. ' 2>&1', 'r')
  local out = f and f:read('*a') or ''
  if f then f:close() end
  return out
end

local function write_file(path, text) return require('orch.testing').write_file(path, text) end

-- Which coders run on the real CLIs: claude and codex when on PATH (and not
-- turned off with ORCH_DEMO_CLI=0).
function M.backends()
  local roles = require('orch.roles')
  local b = {}
  if os.getenv('ORCH_DEMO_CLI') ~= '0' then
    if roles.on_path('claude') then b.add = 'claude' end
    if roles.on_path('codex') then b.mul = 'codex' end
  end
  return b
end

-- Role overrides in the demo repository: every role on the scripted
-- server, through the environment its agents get (the in-process backends
-- read it as the CLIs do), with a private HOME for the CLIs' state.
local function write_roles(dir, env)
  local lines = { 'env:' }
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = ('  %s: %s'):format(k, cjson.encode(env[k])) end
  local block = table.concat(lines, '\n') .. '\n'
  for role, backend in pairs({ orchestrator = 'anthropic', reviewer = 'anthropic', coder = 'openai',
                               tester = 'openai' }) do
    write_file(('%s/.orch/roles/%s.yaml'):format(dir, role),
      ('backend: %s\nmodel: demo-%s\n'):format(backend, role) .. block)
  end
end

function M.make_repo(dir)
  for path, text in pairs(M.FILES) do write_file(dir .. '/' .. path, text) end
  sh(("cd '%s' && git init -q -b main . && git config user.name 'orch demo' && " ..
      "git config user.email demo@orch.invalid && git add -A && git commit -q -m 'calc: a start'"):format(dir))
end

function M.cli(o)
  local ms = require('orch.testing.modelserver')
  local base = os.getenv('TMPDIR')
  if not base or base == '' then base = '/tmp' end
  local dir = o.dir or (sh(("mktemp -d '%s/orch-demo.XXXXXX'"):format(base)):gsub('%s+$', ''))
  core.mkdir_p(dir)
  M.make_repo(dir)
  local backends = M.backends()
  core.mkdir_p(dir .. '/.orch')
  local srv, serr = ms.start({ scenario = M.scenario(backends), log = dir .. '/.orch/demo-requests.jsonl' })
  if not srv then
    io.stderr:write('orch: demo: the scripted model server did not start: ', tostring(serr), '\n')
    return 1
  end
  local env = require('orch.testing').env_for(srv, { HOME = dir .. '/.orch/demo-home',
    ANTHROPIC_API_KEY = 'orch-demo-no-key', OPENAI_API_KEY = 'orch-demo-no-key' })
  core.mkdir_p(env.HOME)
  write_roles(dir, env)
  io.stderr:write(('orch demo: a throwaway repository in %s, models scripted at %s (no API key, ' ..
    'no network)%s\n'):format(dir, srv.url,
    (backends.add or backends.mul) and ('; coders on ' .. table.concat({ backends.add or nil,
      backends.mul or nil }, ' and ') .. ' too') or ''))
  local W = require('orch.workflow')
  local file = core.runtime_dir() .. '/workflows/code_review_test.lua'
  local code = W.run_file(file, { goal = M.GOAL, repo = dir, yes = not o.gates,
    ['no-tui'] = o['no-tui'], concurrency = 4 })
  srv:stop()
  io.stderr:write('\n')
  if code == 0 then
    io.stdout:write(('orch demo: done. The result is on branch main of %s:\n'):format(dir))
    io.stdout:write(sh(("git -C '%s' log --oneline -n 12"):format(dir)))
    io.stdout:write(sh(("cd '%s' && sh test.sh && sh calc.sh add 2 3 && sh calc.sh mul -2 3"):format(dir)))
    local bin = core.realpath('/proc/self/exe') or 'orch'
    io.stdout:write(('Look around: cd %s && %s status (then %s logs RUN TASK, %s help)\n')
      :format(dir, bin, bin, bin))
  else
    io.stderr:write(('orch demo: the run ended with exit code %d; the repository is %s\n'):format(code, dir))
  end
  return code
end

return M
