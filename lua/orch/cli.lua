-- orch's command line: `orch CMD ...` comes here from core/lua/main.c.
--
-- Each command is an entry of COMMANDS with its usage, a one-line summary,
-- its help text, its options (see orch.args) and a function that returns
-- the exit code (M.EXIT_CODES, the same in every command). The table is the
-- one source of `orch help CMD`, the man pages (orch.man, built by
-- scripts/man.lua) and the shell completions (orch.complete): a command's
-- options are documented in its help text as "  --name ARG   what it does"
-- lines (spec/man_spec.lua checks that every option is).
local args_mod = require('orch.args')

local M = {}

local function err(fmt, ...)
  io.stderr:write('orch: ', fmt:format(...), '\n')
end

local COMMON = [[
  --repo DIR         the git repository (default: the one holding the
                     current directory)
  --db FILE          the state database (default: REPO/.orch/orch.db)]]

local COMMANDS = {}
local ORDER = {}

-- Every command takes --color=auto|always|never (orch.color) and -h/--help.
local function command(name, def)
  def.name = name
  def.options.color = def.options.color or 'string'
  COMMANDS[name] = def
  ORDER[#ORDER + 1] = name
end

command('run', {
  usage = 'orch run [WORKFLOW] [--goal TEXT | --plan FILE] [options]',
  summary = 'plan a goal with agents, or run a plan, with a workflow',
  help = [[
With --goal TEXT, the orchestrator agent plans the goal, you approve the
plan (--yes skips), coders work in parallel in their own git worktrees,
each change is reviewed and tested, agents' questions are answered by the
orchestrator, and the result lands on your branch after a last approval.
That is the workflow code_review_test (workflows/code_review_test.lua);
WORKFLOW names another file or a shipped one (code_only, best_of_n,
default). See docs/workflows.md and docs/roles.md.

With --plan FILE and no workflow, runs the plan's tasks as they are: each
task in its own git worktree and branch, up to --concurrency at once,
dependencies first, merged into the run's integration branch
orch/RUN/integration, which is applied to your branch at the end after you
approve (or with --yes). State is recorded in SQLite as it happens: after
a crash or Ctrl+C, `orch resume` carries on.

Exit codes: 0 every task done; 1 a task failed or a merge conflicted; 2 bad
usage, config, role or plan; 3 stopped at the plan gate with no terminal
to ask (`orch resume --yes` carries on); 4 the run's budget (--budget) is
spent (`orch resume --budget USD` carries on); 130 interrupted (129 on
SIGHUP, 131 on SIGQUIT).

Options:
  --goal TEXT        what to do, planned by the orchestrator agent
  --plan FILE        the plan (JSON or YAML; see docs/plans.md)
  --set NAME=VALUE   a workflow setting (repeatable), e.g. review_rounds=0
  --concurrency N    tasks at once (default 4)
  --budget USD       stop starting agent turns once the run has cost this
                     much; the run ends resumable (exit 4, docs/resilience.md)
  --yes              approve every gate (the plan, applying the result)
  --merge NAME       merge strategy: merge (default), squash or rebase
  --keep             keep the worktrees of merged tasks
  --in-place         run every task in the repository itself: no worktrees,
                     no branches (for plans of commands that change nothing)
  --no-tui           plain progress lines on stderr
  --quiet            no progress lines
]] .. COMMON,
  options = { plan = 'string', goal = 'string', repo = 'string', db = 'string',
              concurrency = 'int', yes = 'bool', ['no-tui'] = 'bool', set = 'list',
              keep = 'bool', merge = 'string', ['in-place'] = 'bool', quiet = 'bool',
              budget = 'string' },
  run = function(o) return require('orch.run').cli_run(o) end,
})

command('resume', {
  usage = 'orch resume [RUN] [options]',
  summary = 'carry on an interrupted or crashed run',
  help = [[
Tasks that finished are never run again; tasks that were running are
started again; the rest carry on. With no RUN, the latest run of the repo.
Resuming a run that already finished says so and exits 0.

Options:
  --concurrency N    tasks at once (default: as the run was started)
  --budget USD       the run's budget from now on (default: as it was; a run
                     that spent its budget needs a larger one)
  --yes              approve every gate (the plan gate of a waiting run too)
  --set NAME=VALUE   a workflow setting (repeatable)
  --no-tui           plain progress lines on stderr
]] .. COMMON,
  options = { repo = 'string', db = 'string', concurrency = 'int', yes = 'bool', set = 'list',
              ['no-tui'] = 'bool', budget = 'string' },
  run = function(o) return require('orch.run').cli_resume(o) end,
})

command('status', {
  usage = 'orch status [RUN] [--json] [options]',
  summary = "show a run's tasks and their state",
  help = [[
With no RUN, the latest run. Works while the run is live in another process.

Options:
  --json             one JSON object: {"version": 1, "run": {...},
                     "tasks": [...]} (docs/json.md)
]] .. COMMON,
  options = { json = 'bool', repo = 'string', db = 'string' },
  run = function(o) return require('orch.run').cli_status(o) end,
})

command('logs', {
  usage = 'orch logs RUN TASK [options]',
  summary = "print a task's recorded output",
  help = [[
Prints every line the task wrote (stderr lines marked), across attempts.

Options:
  --follow           keep printing new lines while the run is live
  --json             one JSON object a line, for each line of output
                     (docs/json.md)
]] .. COMMON,
  options = { repo = 'string', db = 'string', follow = 'bool', json = 'bool' },
  run = function(o) return require('orch.run').cli_logs(o) end,
})

command('plan', {
  usage = 'orch plan check FILE | orch plan --goal TEXT [-o FILE] [options]',
  summary = 'validate a plan, or plan a goal with the orchestrator agent',
  help = [[
orch plan check FILE
  Checks a plan file (JSON or YAML): fields and their types, unique ids,
  dependencies that exist, no cycles. Prints FILE:LINE: message for each
  problem. Exit code 0 when the plan is valid, 2 when it is not.

orch plan --goal TEXT [-o FILE]
  Plans the goal with the orchestrator agent (its role names the backend;
  see docs/roles.md). You see the proposed plan and accept it, or say in
  plain words what to change and get a new one; the accepted plan is
  written to FILE (default plan.json; .yaml writes YAML). Without a
  terminal, or with --yes, the first valid plan is written.

Options:
  --goal TEXT        what the plan is for
  -o, --output FILE  where the plan goes (default plan.json)
  --yes              accept the first valid plan
  --json             with check: one JSON object, {"version": 1, "valid":
                     ..., "errors": [...]} (docs/json.md)
  --repo DIR         the git repository (default: the one holding the
                     current directory)
]],
  options = { goal = 'string', output = 'string', o = 'string', yes = 'bool', repo = 'string',
              json = 'bool' },
  run = function(o)
    if o.goal then return require('orch.plancmd').cli(o) end
    if o[1] ~= 'check' or not o[2] or o[3] then
      err('usage: orch plan check FILE | orch plan --goal TEXT [-o FILE]')
      return 2
    end
    local plan_mod = require('orch.plan')
    local plan, errs = plan_mod.load(o[2])
    if o.json then
      io.stdout:write(require('orch.jsonout').plan_check(o[2], plan, errs))
      return plan and 0 or plan_mod.exit_code(errs)
    end
    if not plan then
      io.stderr:write(plan_mod.format_errors(errs))
      return plan_mod.exit_code(errs) -- 2, or 130 when interrupted
    end
    io.stdout:write(('%s: ok (%d tasks)\n'):format(o[2], #plan.tasks))
    return 0
  end,
})

command('clean', {
  usage = 'orch clean RUN [--force] [options]',
  summary = "remove a run's worktrees and branches",
  help = [[
Removes the worktrees under .orch/worktrees/RUN and deletes the run's
branches: orch/RUN/integration and the task branches orch/RUN/TASK (merged
work stays in your branch if you applied it).
Refused while the run is live, and for a run that stopped before its end
(crashed, interrupted: `orch resume RUN` finishes it) unless --force.

Options:
  --force            clean a run that stopped before its end too
]] .. COMMON,
  options = { repo = 'string', db = 'string', force = 'bool' },
  run = function(o) return require('orch.run').cli_clean(o) end,
})

command('repl', {
  usage = 'orch repl [RUN] [options]',
  summary = "a Lua prompt inside a live run",
  help = [[
Connects to the live run's control socket and evaluates Lua in the run's own
state. With no RUN: the repo's only live run, or a list of the live ones.
Reads from a pipe too: echo 'return orch.run.id' | orch repl
See docs/control.md for what the prompt offers (orch.help() lists it).

Options:
  --repo DIR         the git repository (default: the one holding the
                     current directory)
]],
  options = { repo = 'string' },
  run = function(o) return require('orch.repl').cli(o) end,
})

command('demo', {
  usage = 'orch demo [options]',
  summary = 'see orch work: agents on a throwaway repo, scripted models, no API key',
  help = [[
Creates a throwaway git repository (a tiny shell calculator) in TMPDIR,
starts orch's scripted model server on 127.0.0.1 and runs the workflow
code_review_test on the goal "add add and mul commands, each with a test":
the orchestrator plans three tasks, two coders work in parallel, one asks
the orchestrator a question, a reviewer sends one change back once, testers
pass them, the test gate runs the repository's tests, and the result is
merged into its main branch. Coders run on Claude Code and Codex too when
they are installed (ORCH_DEMO_CLI=0 turns that off). Needs no API key and
no network; the repository is left for you to look at.

Options:
  --gates            stop at the plan and apply gates and ask (default: pass them)
  --no-tui           plain progress lines instead of the split-pane view
  --dir DIR          make the repository in DIR instead of a new temporary one
]],
  options = { gates = 'bool', ['no-tui'] = 'bool', dir = 'string' },
  run = function(o) return require('orch.demo').cli(o) end,
})

command('test', {
  usage = 'orch test [PATH...] [options]',
  summary = "run busted specs of your workflows and roles inside orch",
  help = [[
Runs busted specs (files named *_spec.lua) inside the orch host, with the
real loop, real git and real SQLite, and prints busted's summary. With no
PATH: the repository's .orch/spec/, else its spec/. Specs use the module
orch.testing (scratch repositories, the scripted model server, runs to
inspect): see docs/testing.md. Exit code 0 when every spec passes, 1 when
one fails, 2 for bad usage.

Options:
  --filter PATTERN   only the tests whose names match
  --output NAME      busted output handler (utfTerminal, plainTerminal,
                     TAP, json, junit; default: utfTerminal on a terminal)
  --repo DIR         the git repository (default: the one holding the
                     current directory)
]],
  options = { filter = 'string', output = 'string', repo = 'string' },
  run = function(o) return require('orch.testcmd').cli(o) end,
})

command('model-server', {
  usage = 'orch model-server [SCENARIO.lua|SCENARIO.json] [--port N] [--log FILE]',
  summary = 'run the scripted model server (for tests and demos)',
  help = [[
Serves Anthropic Messages, OpenAI chat completions and OpenAI Responses on
127.0.0.1, answering from the scenario (see docs/testing.md); with no
scenario every request gets a short default text reply. Prints its URL on
stdout (point ANTHROPIC_BASE_URL at it, OPENAI_BASE_URL at URL/v1) and runs
until interrupted.

Options:
  --port N           the port (default: a free one)
  --host ADDR        the address to listen on (default 127.0.0.1)
  --log FILE         append every request to FILE as a JSON line
]],
  options = { port = 'int', host = 'string', log = 'string' },
  run = function(o) return require('orch.testing.cli').main(o) end,
})

command('mcp', {
  usage = 'orch mcp',
  summary = 'the MCP server that gives CLI agents ask_orchestrator (started by them)',
  help = [[
An MCP stdio server (newline-delimited JSON-RPC 2.0 on stdin/stdout) with one
tool, ask_orchestrator(question). orch configures claude, codex and crush to
start it; each call is relayed to the live run's control socket
($ORCH_CONTROL) for task $ORCH_TASK, and the orchestrator's answer is the
tool's result. Not meant to be run by hand (see docs/backends.md).
]],
  options = {},
  run = function() return require('orch.mcp').cli() end,
})

command('doctor', {
  usage = 'orch doctor [--json]',
  summary = 'which agent backends are usable here, and what to do for the others',
  help = [[
For each backend (claude, codex, crush, openai, anthropic): the binary (where
it was found, its version), the endpoint it would talk to and whether it
answers, whether a key or a login is present (named, never printed), and
what to do for each that is not usable; then which backend each role would
use. Exit code 0 when at least one backend is usable, 1 when none is.

Options:
  --json             one JSON object: {"backends": [...], "roles": [...]}
  --repo DIR         the git repository (for its roles)
]],
  options = { json = 'bool', repo = 'string' },
  run = function(o) return require('orch.doctor').cli(o) end,
})

command('attach', {
  usage = 'orch attach [RUN] [options]  |  orch attach RUN TASK --cli [--print] [options]',
  summary = "show a live run's split-pane view, or take over a task's agent",
  help = [[
orch attach [RUN] shows the terminal view of a run that goes on in another
orch process (one you detached from with q then d, or started with
--no-tui), through the run's control socket: the same panes and keys as
`orch run` on a terminal (see docs/tui.md). q then d leaves it running; q
then s stops it. With no RUN: the repo's only live run, or a list of the
live ones.

orch attach RUN TASK --cli opens the task's stored agent session
interactively in the agent's own CLI, in the task's worktree: claude
--resume ID, codex resume ID (with the CODEX_HOME orch kept for it), crush
--session ID. Best done once the run ended or the task was paused (orch
repl: orch.pause(TASK)), so that you and the agent do not both write the
worktree.

Options:
  --cli              open the session in the CLI (with RUN TASK)
  --print            print the command instead of running it (with --cli)
]] .. COMMON,
  options = { cli = 'bool', print = 'bool', repo = 'string', db = 'string' },
  run = function(o)
    if o.cli or o[2] then return require('orch.attach').cli(o) end
    return require('orch.tui.attach').cli(o)
  end,
})

command('help', {
  usage = 'orch help [--man] [CMD]',
  summary = 'show help for orch or a command',
  help = [[
Prints what `orch CMD --help` prints: the usage, a summary and the options.
The man pages (orch(1), orch-CMD(1)) are made from the same text.

Options:
  --man              print the man page (roff) instead, as the build makes it
]],
  options = { man = 'bool' },
  run = function(o)
    if o.man then return M.man(o[1]) end
    return M.help(o[1])
  end,
})

command('version', {
  usage = 'orch version',
  summary = "print orch's version",
  help = '',
  options = {},
  run = function()
    print('orch ' .. require('orch.core').version)
    return 0
  end,
})

command('__complete', {
  usage = 'orch __complete WORDS...',
  summary = 'candidates for shell completion (used by completions/)',
  help = '',
  hidden = true,
  options = {},
  run = function() return 0 end,
})

M.EXIT_CODES = {
  { 0, 'success: every task done (soft failures included), or the command did what it says' },
  { 1, 'a task failed (hard), was blocked or cancelled, a merge conflicted; ' ..
       'orch doctor: no backend usable; orch test: a spec failed' },
  { 2, 'bad usage, config, role or plan (nothing ran)' },
  { 3, 'waiting at a gate (the plan, or applying the result) with no terminal to ask (orch resume --yes carries on)' },
  { 4, "the run's budget (--budget) is spent (orch resume --budget USD carries on)" },
  { 129, 'hung up (SIGHUP): shut down as for an interrupt' },
  { 130, 'interrupted (Ctrl+C, SIGINT, SIGTERM)' },
  { 131, 'SIGQUIT: shut down as for an interrupt' },
}

-- The commands in order (hidden ones left out unless all), and by name.
function M.commands(all)
  local list = {}
  for _, name in ipairs(ORDER) do
    if all or not COMMANDS[name].hidden then list[#list + 1] = COMMANDS[name] end
  end
  return list, COMMANDS
end

-- What orch(1) says besides the commands.
function M.man_info()
  return {
    commands = M.commands(),
    intro = table.concat({
      'orch runs a plan of tasks (a DAG) in parallel, each in its own git worktree and branch, ' ..
      'dependencies first, never two tasks writing the same file at once, merging finished work ' ..
      "into the run's integration branch and, once you approve, into your branch. Every step is " ..
      'recorded in SQLite, so a crash or Ctrl+C loses nothing and orch resume carries on.',
      'Given a goal instead of a plan, the orchestrator agent plans it; coders (Claude Code, ' ..
      'Codex, Crush, or an OpenAI-compatible or Anthropic endpoint) work in parallel, reviewers ' ..
      "and testers check the work, and agents' questions are answered by the orchestrator.",
      'Each command has its own page, orch-CMD(1), and the same text as orch help CMD.',
    }, '\n\n'),
    exit_codes = M.EXIT_CODES,
    environment = {
      { 'NO_COLOR', 'set to anything but the empty string: no colour (unless --color=always)' },
      { 'XDG_CONFIG_HOME', "the user's configuration: $XDG_CONFIG_HOME/orch/ (default " ..
        '~/.config/orch/): init.lua, lua/, roles/, workflows/' },
      { 'XDG_STATE_HOME', 'what orch keeps outside a repository: the orch repl history ' ..
        '(default ~/.local/state/orch/)' },
      { 'XDG_CACHE_HOME', 'caches: the agent CLIs the tests install (default ~/.cache/orch/)' },
      { 'ORCH_BACKEND', 'the backend roles with backend auto use' },
      { 'ORCH_RUNTIME', "where orch's Lua modules, roles and workflows are " ..
        '(default: ../share/orch beside the executable)' },
      { 'ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, OPENAI_BASE_URL, OPENAI_API_KEY',
        'the HTTP backends\' endpoints and keys, as the vendors\' SDKs read them' },
    },
    files = {
      { 'REPO/.orch/orch.db', 'the state of the runs (SQLite; docs/state.md)' },
      { 'REPO/.orch/worktrees/RUN/TASK', "each task's git worktree" },
      { 'REPO/.orch/roles/, REPO/.orch/workflows/, REPO/.orch/lua/',
        "the repository's own roles, workflows and modules" },
      { '~/.config/orch/', "the user's (XDG_CONFIG_HOME)" },
      { '/usr/share/orch/', 'the shipped Lua modules, roles, workflows and examples' },
    },
  }
end

-- `orch help --man [CMD]`: the roff source of orch(1) or orch-CMD(1).
function M.man(name)
  local man = require('orch.man')
  local version = require('orch.core').version
  if not name then
    io.stdout:write(man.main_page(M.man_info(), version))
    return 0
  end
  local c = COMMANDS[name]
  if not c or c.hidden then return M.unknown(name) end
  io.stdout:write(man.command_page(c, version))
  return 0
end

function M.usage()
  local lines = {
    'usage: orch CMD [ARGS...]', '',
    'orch runs a plan of tasks in parallel, each in its own git worktree,',
    'records every step in SQLite, and carries on after a crash.', '',
    'Commands:',
  }
  for _, c in ipairs(M.commands()) do
    lines[#lines + 1] = ('  %-13s %s'):format(c.name, c.summary)
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = "'orch help CMD' explains a command (also 'orch CMD --help', 'man orch-CMD')."
  lines[#lines + 1] = 'Every command takes --color=auto|always|never. orch --version prints the version.'
  return table.concat(lines, '\n') .. '\n'
end

function M.help(name)
  if not name then
    io.stdout:write(M.usage())
    return 0
  end
  local c = COMMANDS[name]
  if not c or c.hidden then
    return M.unknown(name)
  end
  io.stdout:write('usage: ', c.usage, '\n\n', c.summary, '\n\n', c.help)
  return 0
end

function M.unknown(name)
  local hint = args_mod.suggest(name, ORDER)
  err("unknown command '%s'%s (see 'orch help')", name,
      hint and ("; did you mean '" .. hint .. "'?") or '')
  return 2
end

-- --color=WHEN / --color WHEN before the command name (orch --color=never
-- status): taken off argv. Returns argv, or nil after reporting an error.
local function global_color(argv)
  local a = argv[1]
  local when
  if a == '--color' then
    when = argv[2]
    argv = { select(3, unpack(argv)) }
  elseif a and a:match('^%-%-color=') then
    when = a:match('^%-%-color=(.*)$')
    argv = { select(2, unpack(argv)) }
  else
    return argv
  end
  local ok, msg = require('orch.color').set(when)
  if not ok then err('%s', msg) return nil end
  return argv
end

function M.main(argv)
  if argv[1] == '__complete' then
    return require('orch.complete').cli({ select(2, unpack(argv)) }, COMMANDS, ORDER)
  end
  argv = global_color(argv)
  if not argv then return 2 end
  local name = argv[1]
  if name == nil then
    io.stderr:write(M.usage())
    return 2
  end
  if name == '--help' or name == '-h' then return M.help() end
  if name == '--version' then return COMMANDS.version.run({}) end
  local c = COMMANDS[name]
  if not c or c.hidden then
    if name:sub(1, 1) == '-' then
      err("unknown option '%s' (see 'orch help')", name)
      return 2
    end
    return M.unknown(name)
  end
  local rest = {}
  for i = 2, #argv do
    if argv[i] == '--help' or argv[i] == '-h' then return M.help(name) end
    rest[#rest + 1] = argv[i]
  end
  local opts, msg = args_mod.parse(rest, c.options)
  if not opts then
    err('%s: %s\nusage: %s', name, msg, c.usage)
    return 2
  end
  if opts.color then
    local ok, cmsg = require('orch.color').set(opts.color)
    if not ok then err('%s: %s', name, cmsg) return 2 end
    opts.color = nil
  end
  if name == 'run' or name == 'resume' then
    -- users' modules shadow orch's own: their directories go first on the
    -- path before the run modules are loaded
    local root = require('orch.repo').find(opts.repo or require('orch.core').cwd())
    require('orch.config').add_paths(root)
  end
  return c.run(opts)
end

return M
