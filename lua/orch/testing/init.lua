-- orch.testing: what a spec needs to test a workflow, a role, a policy or
-- a merge strategy offline (docs/testing.md).
--
--   local T = require('orch.testing')
--   local repo = T.repo({ ['README.md'] = '# demo\n', ['src/a.lua'] = '...' })
--   local srv  = T.server(scenario)          -- the scripted model server
--   local r    = T.run({ repo = repo, server = srv, goal = '...',
--                        workflow = 'code_review_test', args = {...} })
--   r.code, r.status.tasks, r:task('a').status, r:file('a.txt'),
--   r:requests({ role = 'reviewer' }), r:events(), r:questions()
--   repo:rm(); srv:stop()
--
-- T.run starts the real `orch` binary as a child process, so the run has
-- its own loop and state exactly as a user's would; this process's loop
-- keeps serving the scripted model while it waits.
local core = require('orch.core')
local cjson = require('cjson')

local T = {}

T.DUMMY_KEY = 'sk-orch-testing-dummy-key'

-- ------------------------------------------------------------ processes

-- Runs the loop until pred() or timeout_ms; returns pred().
function T.wait(pred, timeout_ms)
  local deadline = core.now() + (timeout_ms or 60000)
  local tick = core.timer(10, 10, function() end)
  while not pred() and core.now() < deadline do core.run('once') end
  tick:close()
  return pred()
end

-- Runs argv to its end on the loop: {code=, sig=, out=, err=, stdout=
-- {lines}, stderr={lines}, pid=, timed_out=}. o: cwd, env, input, timeout
-- (ms, default 120 s; then it is killed), on_start(process).
function T.spawn(argv, o)
  o = o or {}
  local r, done = { stdout = {}, stderr = {} }, false
  local p, err = core.spawn({
    argv = argv, cwd = o.cwd, env = o.env, input = o.input,
    stdout = function(l) r.stdout[#r.stdout + 1] = l end,
    stderr = function(l) r.stderr[#r.stderr + 1] = l end,
    on_exit = function(code, sig) r.code, r.sig, done = code, sig, true end,
  })
  if not p then error(err, 2) end
  r.pid = p:pid()
  if o.on_start then o.on_start(p) end
  if not T.wait(function() return done end, o.timeout or 120000) then
    p:cancel(0)
    T.wait(function() return done end, 5000)
    r.timed_out = true
  end
  r.out = table.concat(r.stdout, '\n')
  r.err = table.concat(r.stderr, '\n')
  return r
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
T.quote = sh_quote

-- Runs a shell command (synchronously; for git and small things).
function T.sh(cmd)
  local f = assert(io.popen('{ ' .. cmd .. '\n} 2>&1; echo "__status=$?"', 'r'))
  local out = f:read('*a')
  f:close()
  local body, code = out:match('^(.-)__status=(%d+)%s*$')
  return body or out, tonumber(code) or -1
end

-- The orch binary to run: ORCH_BIN, else the one running this spec.
function T.orch_bin()
  local bin = os.getenv('ORCH_BIN')
  if bin and bin ~= '' then return bin end
  return core.realpath('/proc/self/exe') or (core.runtime_dir() .. '/../../bin/orch')
end

-- ------------------------------------------------------------ repositories

local Repo = {}
Repo.__index = Repo

-- Writes text to path, making its directory first.
function T.write_file(path, text)
  local dir = path:match('^(.*)/[^/]*$')
  if dir then core.mkdir_p(dir) end
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end
local write_file = T.write_file

-- A scratch git repository holding files (path -> text), committed on
-- branch main. o.dir: where (default: a new directory under TMPDIR).
function T.repo(files, o)
  o = o or {}
  local dir = o.dir
  if not dir then
    dir = (T.sh('mktemp -d "${TMPDIR:-/tmp}/orch-testing.XXXXXX"'):gsub('%s+$', ''))
  end
  local _, code = T.sh(('cd %s && git init -q -b main . && git config user.name "orch testing" ' ..
    '&& git config user.email testing@orch.invalid && git config commit.gpgsign false')
    :format(sh_quote(dir)))
  assert(code == 0, 'git init failed in ' .. dir)
  for path, text in pairs(files or {}) do write_file(dir .. '/' .. path, text) end
  local out
  out, code = T.sh(('cd %s && git add -A && git commit -q --allow-empty -m "initial"'):format(sh_quote(dir)))
  assert(code == 0, out)
  return setmetatable({ dir = dir }, Repo)
end

-- A file's text on a branch (default: the checked-out one), or nil.
function Repo:file(path, branch)
  local out, code = T.sh(('git -C %s show %s 2>/dev/null'):format(sh_quote(self.dir),
    sh_quote((branch or 'HEAD') .. ':' .. path)))
  if code ~= 0 then return nil end
  return out
end

function Repo:branches()
  local out = T.sh(('git -C %s for-each-ref --format="%%(refname:short)" refs/heads'):format(sh_quote(self.dir)))
  local list = {}
  for b in out:gmatch('[^\n]+') do list[#list + 1] = b end
  return list
end

function Repo:git(args)
  return T.sh(('git -C %s %s'):format(sh_quote(self.dir), args))
end

function Repo:rm()
  if self.dir and self.dir:match('orch%-testing%.') then
    T.sh('rm -rf ' .. sh_quote(self.dir))
  end
end

-- A workspace for an engine run in this process (orch.engine.new's
-- workspace) that gives each task the directory DIR/wt/TASK on a made-up
-- branch and merges nothing: every finish is done.
function T.plain_workspace(dir)
  return {
    begin = function() return true end,
    prepare = function(_, task)
      local cwd = dir .. '/wt/' .. task.id
      core.mkdir_p(cwd, tonumber('755', 8))
      return { cwd = cwd, branch = 'b/' .. task.id }
    end,
    finish = function() return { status = 'done' } end,
    complete = function() return 'completed' end,
  }
end

-- ------------------------------------------------------------ the model

-- Starts the scripted model server with a scenario (docs/testing.md).
function T.server(scenario, o)
  local ms = require('orch.testing.modelserver')
  o = o or {}
  o.scenario = scenario
  return assert(ms.start(o))
end

-- The environment that points every backend at the scripted server, with
-- dummy keys and no way to reach a real endpoint.
function T.env_for(srv, extra)
  local env = {
    ANTHROPIC_BASE_URL = srv.url, ANTHROPIC_API_KEY = T.DUMMY_KEY,
    OPENAI_BASE_URL = srv.url .. '/v1', OPENAI_API_KEY = T.DUMMY_KEY,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = '1', DISABLE_AUTOUPDATER = '1',
    ENABLE_TOOL_SEARCH = 'false', MCP_TIMEOUT = '10000',
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

-- ------------------------------------------------------------ runs

local Run = {}
Run.__index = Run

-- A workflow by name: the project's own .orch/workflows/NAME.lua (the
-- repository `orch test` runs in), else the shipped one.
local function workflow_file(name)
  if not name then return nil end
  if name:find('/') or name:match('%.lua$') then return name end
  local root = require('orch.repo').find(core.cwd())
  local own = root and (root .. '/.orch/workflows/' .. name .. '.lua')
  local f = own and io.open(own, 'rb')
  if f then f:close() return own end
  return core.runtime_dir() .. '/workflows/' .. name .. '.lua'
end

-- Runs a workflow (default: code_review_test with --goal, the default
-- workflow with --plan) to its end in a child orch. o: repo (T.repo or a
-- path), server, goal | plan (a file path or a plan table), workflow,
-- backend (ORCH_BACKEND for 'auto' roles; default 'openai' when a server
-- is given), args (more command-line arguments), env, timeout (ms).
function T.run(o)
  local dir = type(o.repo) == 'table' and o.repo.dir or o.repo
  local argv = { T.orch_bin(), 'run' }
  local wf = workflow_file(o.workflow or (o.goal and 'code_review_test'))
  if wf then argv[#argv + 1] = wf end
  if o.goal then argv[#argv + 1] = '--goal' argv[#argv + 1] = o.goal end
  if o.plan then
    local path = o.plan
    if type(path) == 'table' then
      path = dir .. '/.orch-testing-plan.json'
      write_file(path, cjson.encode(o.plan))
      T.sh(('grep -qx .orch-testing-plan.json %s/.git/info/exclude 2>/dev/null || ' ..
            'echo .orch-testing-plan.json >> %s/.git/info/exclude'):format(sh_quote(dir), sh_quote(dir)))
    end
    argv[#argv + 1] = '--plan' argv[#argv + 1] = path
  end
  for _, a in ipairs({ '--repo', dir, '--no-tui' }) do argv[#argv + 1] = a end
  if o.yes ~= false then argv[#argv + 1] = '--yes' end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  local env = o.server and T.env_for(o.server, o.env) or (o.env or {})
  if o.server and not env.ORCH_BACKEND then env.ORCH_BACKEND = o.backend or 'openai' end
  local r = T.spawn(argv, { cwd = dir, env = env, timeout = o.timeout })
  r.repo, r.server, r.dir = o.repo, o.server, dir
  setmetatable(r, Run)
  r:refresh()
  return r
end

-- Re-reads the run's status (`orch status --json`).
function Run:refresh()
  local s = T.spawn({ T.orch_bin(), 'status', '--json', '--repo', self.dir }, { cwd = self.dir })
  local ok, st = pcall(cjson.decode, s.out)
  self.status = ok and type(st) == 'table' and st or nil
  self.run_id = self.status and self.status.run and self.status.run.id
  return self.status
end

function Run:tasks() return self.status and self.status.tasks or {} end

function Run:task(id)
  for _, t in ipairs(self:tasks()) do if t.id == id then return t end end
  return nil
end

-- Tasks whose role is role (in plan order).
function Run:by_role(role)
  local out = {}
  for _, t in ipairs(self:tasks()) do if t.role == role then out[#out + 1] = t end end
  return out
end

-- A file's text on a branch: the run's integration branch by default.
function Run:file(path, branch)
  local repo = type(self.repo) == 'table' and self.repo or setmetatable({ dir = self.dir }, Repo)
  return repo:file(path, branch or ('orch/' .. tostring(self.run_id) .. '/integration'))
end

-- The requests the scripted model received, optionally filtered:
-- {role=} matches the role's system prompt marker, {model=}, {match=pattern
-- on the last user text}.
function Run:requests(filter)
  local all = self.server and self.server:requests() or {}
  if not filter then return all end
  local out = {}
  for _, q in ipairs(all) do
    local ok = true
    if filter.model and q.model ~= filter.model then ok = false end
    if filter.match and not (q.last_user or ''):find(filter.match) then ok = false end
    if filter.system and not (q.system or ''):find(filter.system) then ok = false end
    if ok then out[#out + 1] = q end
  end
  return out
end

local function open_store(self)
  local st = require('orch.store').open(self.dir .. '/.orch/orch.db', { readonly = true })
  return st
end

-- The run's recorded state events, in seq order (docs/api/events.md),
-- optionally only those of one task; output lines are left out (orch logs).
function Run:events(task)
  local st = open_store(self)
  if not st or not self.run_id then return {} end
  local out = {}
  for ev in st:recorded(self.run_id, 0) do
    if not task or ev.task == task then out[#out + 1] = ev end
  end
  st:close()
  return out
end

-- The questions agents asked, answered: {task=, question=, answer=, by=}.
function Run:questions()
  local out = {}
  for _, ev in ipairs(self:events()) do
    if ev.kind == 'question' and ev.answer then
      out[#out + 1] = { task = ev.task, question = ev.question, answer = ev.answer, by = ev.by }
    end
  end
  return out
end

return T
