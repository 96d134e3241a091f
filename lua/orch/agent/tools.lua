-- orch's own agent tools for the HTTP backends: read, write, edit, list,
-- glob, grep, shell and ask_orchestrator. Every path is confined to the
-- task's worktree (orch.agent.paths); shell runs inside bubblewrap
-- (orch.agent.sandbox). A refusal goes back to the model as a tool error.
--
--   local box = tools.new(ctx, {shell = 'sandbox' | 'unconfined' | false})
--   box.schemas          -- {{name=, description=, parameters=}, ...}
--   box:run(name, input, function(output, is_error) end)
--   box:cancel()         -- stops a running shell command or question
local core = require('orch.core')
local paths = require('orch.agent.paths')
local sandbox = require('orch.agent.sandbox')

local M = {}

M.LIMIT = 30000          -- bytes of output a tool returns
M.LIST_LIMIT = 1000      -- entries of list / glob
M.SHELL_TIMEOUT = 120    -- s, default for a shell command
M.SHELL_MAX_TIMEOUT = 1800

local READ = { 'read', 'list', 'glob', 'grep', 'ask_orchestrator' }
M.SETS = {
  ['read-only'] = READ,
  edit = { 'read', 'list', 'glob', 'grep', 'ask_orchestrator', 'write', 'edit' },
  full = { 'read', 'list', 'glob', 'grep', 'ask_orchestrator', 'write', 'edit', 'shell' },
}

local function obj(props, required)
  return { type = 'object', properties = props, required = required }
end

local str = function(d) return { type = 'string', description = d } end
local int = function(d) return { type = 'integer', description = d } end

M.SCHEMAS = {
  read = { description = 'Read a text file of the worktree. Lines are numbered.',
    parameters = obj({ path = str('file path, relative to the worktree'),
                       offset = int('first line to read (1-based)'),
                       limit = int('how many lines (default 2000)') }, { 'path' }) },
  write = { description = 'Create or overwrite a file with the given content.',
    parameters = obj({ path = str('file path, relative to the worktree'),
                       content = str('the whole new content') }, { 'path', 'content' }) },
  edit = { description = 'Replace old_string by new_string in a file. old_string must '
      .. 'occur exactly once unless replace_all is true.',
    parameters = obj({ path = str('file path, relative to the worktree'),
                       old_string = str('exact text to replace'),
                       new_string = str('replacement text'),
                       replace_all = { type = 'boolean', description = 'replace every occurrence' } },
                     { 'path', 'old_string', 'new_string' }) },
  list = { description = 'List a directory (directories end with /).',
    parameters = obj({ path = str('directory, relative to the worktree (default .)') }) },
  glob = { description = 'Find files whose path matches a glob (*, ?, **, {a,b}).',
    parameters = obj({ pattern = str('glob, e.g. src/**/*.c'),
                       path = str('directory to search (default .)') }, { 'pattern' }) },
  grep = { description = 'Search file contents with an extended regular expression; '
      .. 'prints path:line:text.',
    parameters = obj({ pattern = str('extended regular expression'),
                       path = str('file or directory (default .)'),
                       glob = str('only files whose name matches, e.g. *.lua'),
                       ignore_case = { type = 'boolean', description = 'case-insensitive' } },
                     { 'pattern' }) },
  shell = { description = 'Run a shell command (sh -c) in the worktree, inside a sandbox: '
      .. 'only the worktree and $TMPDIR are writable, no network unless allowed.',
    parameters = obj({ command = str('the command line'),
                       timeout = int('seconds before it is killed (default 120)') }, { 'command' }) },
  ask_orchestrator = { description = 'Ask the orchestrator (who planned the work) a question '
      .. 'and wait for the answer. Use it when the task is unclear.',
    parameters = obj({ question = str('the question') }, { 'question' }) },
}

-- Valid UTF-8 only (an invalid byte becomes U+FFFD), so the JSON stays valid.
function M.clean_utf8(s)
  if not s:find('[\128-\255]') then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2
      or (c >= 0xE0 and c <= 0xEF) and 3 or (c >= 0xF0 and c <= 0xF4) and 4 or 0
    local ok = len > 0 and i + len - 1 <= n
    for j = i + 1, i + len - 1 do
      if not ok then break end
      local b = s:byte(j)
      ok = b >= 0x80 and b <= 0xBF
    end
    if ok and len == 3 then
      local b = s:byte(i + 1)
      ok = not (c == 0xE0 and b < 0xA0) and not (c == 0xED and b > 0x9F)
    elseif ok and len == 4 then
      local b = s:byte(i + 1)
      ok = not (c == 0xF0 and b < 0x90) and not (c == 0xF4 and b > 0x8F)
    end
    if ok then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = '\239\191\189'
      i = i + 1
    end
  end
  return table.concat(out)
end

-- s cut to limit bytes (on a character boundary), saying how much was cut.
function M.bound(s, limit)
  limit = limit or M.LIMIT
  if #s <= limit then return M.clean_utf8(s) end
  local cut = limit
  while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return M.clean_utf8(s:sub(1, cut)) .. ('\n[output cut: %d more bytes]'):format(#s - cut)
end

M.READ_MAX = 16 * 1024 * 1024 -- bytes of a file read or edited at most

local function read_all(path, max)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read(max or '*a')
  f:close()
  if not s then return nil, 'cannot read (a directory?)' end
  return s
end

local function write_all(path, s)
  local f, err = io.open(path, 'wb')
  if not f then return nil, err end
  local ok, werr = f:write(s)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, werr or cerr end
  return true
end

-- Tool implementations: fn(box, input, cb). cb(output, is_error).
local impl = {}

function impl.read(box, input, cb)
  local abs, rel = box:path(input.path)
  if not abs then return cb(rel, true) end
  local st = core.lstat(abs)
  if not st then return cb(input.path .. ': no such file', true) end
  if st.type == 'dir' then return cb(input.path .. ' is a directory (use list)', true) end
  local s, err = read_all(abs, M.READ_MAX)
  if not s then
    if st.size == 0 then s = '' else return cb(input.path .. ': ' .. tostring(err), true) end
  end
  if s:sub(1, 8192):find('%z') then
    return cb(('%s: binary file, %d bytes'):format(rel, #s), false)
  end
  if s == '' then return cb(('(%s is empty)'):format(rel), false) end
  local offset = math.max(1, tonumber(input.offset) or 1)
  local limit = math.max(1, tonumber(input.limit) or 2000)
  local out, n, bytes = {}, 0, 0
  for line in (s .. (s:sub(-1) == '\n' and '' or '\n')):gmatch('([^\n]*)\n') do
    n = n + 1
    if n >= offset and n < offset + limit then
      out[#out + 1] = ('%6d\t%s'):format(n, line)
      bytes = bytes + #line + 8
      if bytes > M.LIMIT then break end
    end
  end
  if #out == 0 then
    return cb(('%s has %d lines; nothing at line %d'):format(rel, n, offset), false)
  end
  local text = M.bound(table.concat(out, '\n'))
  if st.size > M.READ_MAX then
    text = text .. ('\n[%s is %d bytes; only its first %d were read]'):format(rel, st.size, M.READ_MAX)
  end
  cb(text, false)
end

function impl.write(box, input, cb)
  if type(input.content) ~= 'string' then return cb('content (a string) is required', true) end
  local abs, rel = box:path(input.path, true)
  if not abs then return cb(rel, true) end
  local st = core.lstat(abs)
  if st and st.type == 'dir' then return cb(input.path .. ' is a directory', true) end
  local dir = abs:match('^(.*)/[^/]+$')
  if dir and dir ~= '' then
    local ok, err = core.mkdir_p(dir)
    if not ok then return cb(('%s: cannot create its directory: %s'):format(rel, err), true) end
  end
  local ok, err = write_all(abs, input.content)
  if not ok then return cb(rel .. ': ' .. tostring(err), true) end
  cb(('wrote %s (%d bytes)'):format(rel, #input.content), false)
end

local function plain_count(s, sub)
  local n, i = 0, 1
  while true do
    local a, b = s:find(sub, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function plain_replace(s, old, new, all)
  local out, i = {}, 1
  while true do
    local a, b = s:find(old, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = new
    i = b + 1
    if not all then break end
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

function impl.edit(box, input, cb)
  local old, new = input.old_string, input.new_string
  if type(old) ~= 'string' or old == '' then return cb('old_string (non-empty) is required', true) end
  if type(new) ~= 'string' then return cb('new_string (a string) is required', true) end
  local abs, rel = box:path(input.path, true)
  if not abs then return cb(rel, true) end
  local st = core.lstat(abs)
  if st and st.size > M.READ_MAX then
    return cb(('%s is %d bytes: too large to edit (use shell)'):format(rel, st.size), true)
  end
  local s, err = read_all(abs)
  if not s then return cb(input.path .. ': ' .. tostring(err), true) end
  local n = plain_count(s, old)
  if n == 0 then return cb(rel .. ': old_string not found', true) end
  if n > 1 and not input.replace_all then
    return cb(('%s: old_string occurs %d times; give more context or replace_all'):format(rel, n), true)
  end
  local ok, werr = write_all(abs, plain_replace(s, old, new, input.replace_all))
  if not ok then return cb(rel .. ': ' .. tostring(werr), true) end
  cb(('edited %s (%d replacement%s)'):format(rel, input.replace_all and n or 1,
    (input.replace_all and n > 1) and 's' or ''), false)
end

function impl.list(box, input, cb)
  local abs, rel = box:path(input.path or '.')
  if not abs then return cb(rel, true) end
  local names, err = core.readdir(abs)
  if not names then return cb((input.path or '.') .. ': ' .. tostring(err), true) end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    if #out >= M.LIST_LIMIT then
      out[#out + 1] = ('[%d more entries]'):format(#names - M.LIST_LIMIT)
      break
    end
    local st = core.lstat(abs .. '/' .. name)
    local kind = st and st.type
    out[#out + 1] = name .. (kind == 'dir' and '/' or kind == 'link' and '@' or '')
  end
  cb(#out == 0 and ('(' .. rel .. ' is empty)') or M.bound(table.concat(out, '\n')), false)
end

-- glob -> list of Lua patterns (braces expanded).
local function expand_braces(g, into)
  local a, b, inner = g:find('{([^{}]*)}')
  if not a then
    into[#into + 1] = g
    return into
  end
  for alt in (inner .. ','):gmatch('([^,]*),') do
    expand_braces(g:sub(1, a - 1) .. alt .. g:sub(b + 1), into)
  end
  return into
end

local function glob_to_pattern(g)
  local out, i = { '^' }, 1
  while i <= #g do
    local c = g:sub(i, i)
    if g:sub(i, i + 2) == '**/' then
      out[#out + 1] = '\1' -- any number of directories
      i = i + 3
    elseif g:sub(i, i + 1) == '**' then
      out[#out + 1] = '.*'
      i = i + 2
    elseif c == '*' then
      out[#out + 1] = '[^/]*'
      i = i + 1
    elseif c == '?' then
      out[#out + 1] = '[^/]'
      i = i + 1
    elseif c == '[' and g:find(']', i + 1, true) then
      local j = g:find(']', i + 1, true)
      local set = g:sub(i + 1, j - 1):gsub('^!', '^'):gsub('%%', '%%%%')
      out[#out + 1] = '[' .. set .. ']'
      i = j + 1
    else
      out[#out + 1] = c:gsub('[%^%$%(%)%%%.%[%]%*%+%-%?]', '%%%0')
      i = i + 1
    end
  end
  out[#out + 1] = '$'
  return table.concat(out)
end

-- Lua patterns have no optional group: a pattern with \1 markers is tried
-- with each marker as '' or '.*/'.
local function glob_matcher(g)
  local pats = {}
  for _, e in ipairs(expand_braces(g, {})) do
    local p = glob_to_pattern(e)
    local variants = { p }
    while variants[1]:find('\1', 1, true) do
      local nextv = {}
      for _, v in ipairs(variants) do
        nextv[#nextv + 1] = v:gsub('\1', '', 1)
        nextv[#nextv + 1] = v:gsub('\1', '.*/', 1)
      end
      variants = nextv
      if #variants > 64 then break end
    end
    for _, v in ipairs(variants) do pats[#pats + 1] = (v:gsub('\1', '.*/')) end
  end
  return function(path)
    for _, p in ipairs(pats) do
      if path:find(p) then return true end
    end
    return false
  end
end
M.glob_matcher = glob_matcher

local function walk(dir, prefix, fn, state)
  local names = core.readdir(dir)
  if not names then return end
  table.sort(names)
  for _, name in ipairs(names) do
    if state.stop then return end
    if name ~= '.git' then
      local rel = prefix == '' and name or prefix .. '/' .. name
      local st = core.lstat(dir .. '/' .. name)
      state.seen = state.seen + 1
      if state.seen > 200000 then state.stop = true return end
      fn(rel, st and st.type)
      if st and st.type == 'dir' then walk(dir .. '/' .. name, rel, fn, state) end
    end
  end
end

function impl.glob(box, input, cb)
  if type(input.pattern) ~= 'string' or input.pattern == '' then
    return cb('pattern is required', true)
  end
  local abs, rel = box:path(input.path or '.')
  if not abs then return cb(rel, true) end
  -- a pattern may start with ./ or with the directory's absolute path
  local pattern = input.pattern
  if pattern:sub(1, #abs + 1) == abs .. '/' then pattern = pattern:sub(#abs + 2) end
  pattern = pattern:gsub('^%./', '')
  local match = glob_matcher(pattern)
  local found, state = {}, { seen = 0 }
  walk(abs, '', function(p, kind)
    if kind ~= 'dir' and match(p) then
      if #found >= M.LIST_LIMIT then state.stop = true return end
      found[#found + 1] = rel == '.' and p or rel .. '/' .. p
    end
  end, state)
  if #found == 0 then return cb('no files match ' .. input.pattern, false) end
  if state.stop then found[#found + 1] = '[more matches not shown]' end
  cb(M.bound(table.concat(found, '\n')), false)
end

function impl.grep(box, input, cb)
  if type(input.pattern) ~= 'string' or input.pattern == '' then
    return cb('pattern is required', true)
  end
  local abs, rel = box:path(input.path or '.')
  if not abs then return cb(rel, true) end
  local argv = { 'grep', '-rnIE', '--exclude-dir=.git', '--color=never' }
  if input.ignore_case then argv[#argv + 1] = '-i' end
  if type(input.glob) == 'string' and input.glob ~= '' then
    argv[#argv + 1] = '--include=' .. input.glob
  end
  argv[#argv + 1] = '-e'
  argv[#argv + 1] = input.pattern
  argv[#argv + 1] = '--'
  argv[#argv + 1] = rel
  box:spawn(argv, 60, function(out, code)
    if code == 1 then return cb('no matches', false) end
    if code ~= 0 then return cb('grep: ' .. out, true) end
    cb(out, false)
  end)
end

function impl.shell(box, input, cb)
  if type(input.command) ~= 'string' or input.command == '' then
    return cb('command is required', true)
  end
  local timeout = math.min(tonumber(input.timeout) or M.SHELL_TIMEOUT, M.SHELL_MAX_TIMEOUT)
  local argv = { 'sh', '-c', input.command }
  if box.shell_mode == 'sandbox' then
    argv = sandbox.argv(argv, { cwd = box.root, home = box.home, scratch = box.scratch,
                                repo = box.repo, network = box.network,
                                control = box.env.ORCH_CONTROL or os.getenv('ORCH_CONTROL') })
  end
  box:spawn(argv, timeout, function(out, code, sig, timed_out)
    local tail
    if timed_out then
      tail = ('[killed after %d s]'):format(timeout)
    elseif sig then
      tail = '[killed by ' .. sig .. ']'
    else
      tail = '[exit status ' .. tostring(code) .. ']'
    end
    cb((out ~= '' and out .. '\n' or '') .. tail, code ~= 0 or sig ~= nil)
  end)
end

function impl.ask_orchestrator(box, input, cb)
  if type(input.question) ~= 'string' or input.question == '' then
    return cb('question is required', true)
  end
  box.emit({ type = 'question', question = input.question })
  local done = false
  box.asking = function() done = true end
  box.ask(input.question, function(answer, err)
    if done then return end
    done, box.asking = true, nil
    if answer == nil then return cb('no answer: ' .. tostring(err or 'unknown'), true) end
    cb(M.bound(tostring(answer)), false)
  end)
end

local Box = {}
Box.__index = Box

-- Confines a path; on refusal also reports a `denied` event.
function Box:path(p, write)
  local abs, rel = paths.confine(p, self.root, { write = write })
  if not abs then
    self.emit({ type = 'denied', tool = self.current, message = rel })
    return nil, rel
  end
  return abs, rel
end

-- Runs argv in the worktree, output (stdout and stderr, in arrival order)
-- bounded; cb(out, code, sig, timed_out).
function Box:spawn(argv, timeout_s, cb)
  local buf, size, dropped = {}, 0, 0
  local function add(line)
    if size + #line + 1 <= M.LIMIT then
      buf[#buf + 1] = line
      size = size + #line + 1
    else
      dropped = dropped + #line + 1
    end
  end
  local timed_out = false
  local timer
  local p, err = core.spawn({
    argv = argv, cwd = self.root, env = self.env,
    stdout = add, stderr = add,
    on_exit = function(code, sig)
      if timer then timer:close() end
      self.proc = nil
      local out = table.concat(buf, '\n')
      if dropped > 0 then out = out .. ('\n[output cut: %d more bytes]'):format(dropped) end
      if self.cancelled then return end
      cb(M.clean_utf8(out), code, sig, timed_out)
    end,
  })
  if not p then return cb(tostring(err), 127, nil, false) end
  self.proc = p
  timer = core.timer(timeout_s * 1000, function()
    timed_out = true
    p:cancel(2000)
  end)
end

function Box:run(name, input, cb)
  local fn = self.allowed[name] and impl[name]
  if not fn then
    local msg = ('tool %s is not available to this role (tools: %s)')
      :format(tostring(name), table.concat(self.names, ', '))
    if M.SCHEMAS[name] then self.emit({ type = 'denied', tool = name, message = msg }) end
    return cb(msg, true)
  end
  if type(input) ~= 'table' then return cb('the input must be a JSON object', true) end
  self.current = name
  local ok, err = pcall(fn, self, input, cb)
  if not ok then cb('tool failed: ' .. tostring(err), true) end
end

function Box:cancel()
  self.cancelled = true
  if self.proc then self.proc:cancel(1000) end
  if self.asking then self.asking() end
end

-- The tool names of a role's `tools` (a set name or a list).
function M.names(tools)
  if tools == nil then tools = 'edit' end
  if type(tools) == 'string' then
    local set = M.SETS[tools]
    if not set then return nil, ('unknown tool set %q (read-only, edit, full or a list)'):format(tools) end
    return set
  end
  if type(tools) ~= 'table' then return nil, 'tools must be a set name or a list' end
  for _, n in ipairs(tools) do
    if not M.SCHEMAS[n] then return nil, ('unknown tool %q'):format(tostring(n)) end
  end
  return tools
end

-- Secrets are not passed to the shell: every variable of orch's environment
-- whose name says key/token/secret/password is removed.
local function scrubbed_env(extra, also)
  local env = {}
  local ok, ffi = pcall(require, 'ffi')
  if ok then
    pcall(ffi.cdef, 'extern char **environ;')
    local e = ffi.C.environ
    local i = 0
    while e[i] ~= nil do
      local name = ffi.string(e[i]):match('^([^=]+)=')
      local up = name and name:upper()
      if up and (up:find('KEY') or up:find('TOKEN') or up:find('SECRET')
                 or up:find('PASSWORD') or up:find('CREDENTIAL')) then
        env[name] = false
      end
      i = i + 1
    end
  end
  for k, v in pairs(extra or {}) do env[k] = v end
  for _, name in ipairs(also or {}) do env[name] = false end
  return env
end

-- opts: shell = 'sandbox' | 'unconfined' | false, network = bool,
-- secret_env = {names} (also removed from the shell's environment).
function M.new(ctx, opts)
  opts = opts or {}
  local names, err = M.names(ctx.tools)
  if not names then return nil, err end
  local box = setmetatable({
    root = paths.root(ctx.cwd), home = os.getenv('HOME'), scratch = ctx.scratch,
    repo = ctx.run and ctx.run.repo, network = opts.network,
    shell_mode = opts.shell, emit = ctx.emit or function() end, ask = ctx.ask,
    allowed = {}, names = {}, schemas = {},
  }, Box)
  box.env = scrubbed_env(ctx.env, opts.secret_env)
  for _, n in ipairs(names) do
    local on = true
    if n == 'shell' and not opts.shell then on = false end
    if n == 'ask_orchestrator' and not ctx.ask then on = false end
    if on and not box.allowed[n] then
      box.allowed[n] = true
      box.names[#box.names + 1] = n
      local s = M.SCHEMAS[n]
      box.schemas[#box.schemas + 1] = { name = n, description = s.description,
                                        parameters = s.parameters }
    end
  end
  return box
end

return M
