-- Shared helpers for the specs: run the loop until something happens, temp
-- dirs, running the real orch binary, reading the process table.

local H = {}

H.ORCH = os.getenv('ORCH_BIN') or './build/bin/orch'
H.SRC = os.getenv('ORCH_SRC') or '.'

-- Runs the loop until pred() is true or timeout_ms (default 10 s) passed;
-- returns pred(). (orch.testing's, which users' specs get too.)
function H.run_until(pred, timeout_ms)
  return require('orch.testing').wait(pred, timeout_ms or 10000)
end

-- Runs a shell command synchronously; returns its output (stdout and
-- stderr), exit status. (LuaJIT's popen close does not give the status, so
-- the shell prints it last.)
function H.sh(cmd)
  local f = assert(io.popen('{ ' .. cmd .. '\n} 2>&1; echo "__status=$?"', 'r'))
  local out = f:read('*a')
  f:close()
  local body, code = out:match('^(.-)__status=(%d+)%s*$')
  return body or out, tonumber(code) or -1
end

function H.tmpdir()
  local d = H.sh('mktemp -d /tmp/orch-spec.XXXXXX'):gsub('%s+$', '')
  return d
end

function H.rm(dir)
  if dir and dir:match('^/tmp/orch%-') then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

function H.write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end

-- Writes DIR/plan.json with the tasks (goal 'spec'); returns its path.
function H.plan_file(dir, tasks)
  local path = dir .. '/plan.json'
  H.write(path, require('cjson').encode({ goal = 'spec', tasks = tasks }))
  return path
end

function H.read(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- Spawns a command and runs the loop until it exits. opts: cwd, env, input,
-- timeout (ms, default 60 s), on_start(p). Returns {code=, sig=,
-- stdout={lines}, stderr={lines}, out=, err=, pid=, timed_out=}.
function H.spawn_wait(argv, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.timeout = opts.timeout or 60000
  return require('orch.testing').spawn(argv, o)
end

-- Runs the real orch binary with args (a list).
function H.orch(args, opts)
  local argv = { H.ORCH }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.spawn_wait(argv, opts)
end

-- The process table: list of {pid=, ppid=, pgrp=, sid=, state=, cmd=}.
function H.ps()
  local list = {}
  local out = H.sh('ls /proc')
  for pid in out:gmatch('%d+') do
    local stat = H.read('/proc/' .. pid .. '/stat')
    local cmd = H.read('/proc/' .. pid .. '/cmdline')
    if stat then
      local rest = stat:match('^.*%)%s+(.*)$')
      local state, ppid, pgrp, sid = rest:match('^(%S+)%s+(%d+)%s+(%d+)%s+(%d+)')
      list[#list + 1] = {
        pid = tonumber(pid), ppid = tonumber(ppid), pgrp = tonumber(pgrp),
        sid = tonumber(sid), state = state, cmd = (cmd or ''):gsub('%z', ' '),
      }
    end
  end
  return list
end

-- Processes whose command line starts with the plain string prefix.
function H.ps_matching(prefix)
  local found = {}
  for _, p in ipairs(H.ps()) do
    if p.cmd:sub(1, #prefix) == prefix then found[#found + 1] = p end
  end
  return found
end

return H
