-- The exec backend: a task with `cmd` runs it with `sh -c` in the task's
-- directory (a simple command without the shell: orch.shellcmd); output
-- lines are streamed; success is exit status 0.
--
-- backend.start(ctx) with ctx = {task=, cwd=, env=, on_line=fn(stream, line),
-- on_chunk=fn(stream, data, n, longest) (optional: n lines joined with "\n"),
-- on_done=fn(result)} returns a handle {pid=, cancel=fn(grace_ms)} or nil,
-- err (with kill=fn(sig) to signal its process group, and reaped=fn() ->
-- exit code, signal once the process is gone, even while orch still reads
-- output a background child keeps writing). result = {ok=,
-- exit_code=, signal=, error=}.
local launcher = require('orch.launcher')
local shellcmd = require('orch.shellcmd')

local M = { name = 'exec' }

function M.start(ctx)
  local task = ctx.task
  if type(task.cmd) ~= 'string' or task.cmd == '' then
    return nil, 'task ' .. task.id .. ' has no cmd'
  end
  -- the lines of each read at once when the caller takes chunks
  -- (ctx.on_chunk(stream, data, n, longest)), else one by one
  local chunk, stdout, stderr = ctx.on_chunk
  if chunk then
    stdout = function(d, n, l) chunk('stdout', d, n, l) end
    stderr = function(d, n, l) chunk('stderr', d, n, l) end
  else
    stdout = function(line) ctx.on_line('stdout', line) end
    stderr = function(line) ctx.on_line('stderr', line) end
  end
  local argv, direct = shellcmd.argv(task.cmd)
  local spec = {
    argv = argv,
    cwd = ctx.cwd,
    env = ctx.env,
    stdout = stdout, stderr = stderr, chunks = chunk ~= nil,
    on_exit = function(code, sig)
      ctx.on_done({ ok = code == 0, exit_code = code, signal = sig,
                    error = sig and ('killed by ' .. sig)
                          or (code ~= 0 and ('exit status ' .. code) or nil) })
    end,
  }
  local p, err = launcher.spawn(spec)
  if not p and direct then
    -- (a program orch cannot start: the shell says why, as it would have)
    spec.argv = { 'sh', '-c', task.cmd }
    p, err = launcher.spawn(spec)
  end
  if not p then return nil, err end
  return {
    pid = p:pid(),
    cancel = function(grace) p:cancel(grace) end,
    kill = function(sig) return p:kill(sig) end,
    reaped = function() return p:reaped() end,
  }
end

return M
