-- The exec backend: a task with `cmd` runs it with `sh -c` in the task's
-- directory; output lines are streamed; success is exit status 0.
--
-- backend.start(ctx) with ctx = {task=, cwd=, env=, on_line=fn(stream, line),
-- on_done=fn(result)} returns a handle {pid=, cancel=fn(grace_ms)} or nil,
-- err (with kill=fn(sig) to signal its process group, and reaped=fn() ->
-- exit code, signal once the process is gone, even while orch still reads
-- output a background child keeps writing). result = {ok=,
-- exit_code=, signal=, error=}.
local launcher = require('orch.launcher')

local M = { name = 'exec' }

function M.start(ctx)
  local task = ctx.task
  if type(task.cmd) ~= 'string' or task.cmd == '' then
    return nil, 'task ' .. task.id .. ' has no cmd'
  end
  local p, err = launcher.spawn({
    argv = { 'sh', '-c', task.cmd },
    cwd = ctx.cwd,
    env = ctx.env,
    stdout = function(line) ctx.on_line('stdout', line) end,
    stderr = function(line) ctx.on_line('stderr', line) end,
    on_exit = function(code, sig)
      ctx.on_done({ ok = code == 0, exit_code = code, signal = sig,
                    error = sig and ('killed by ' .. sig)
                          or (code ~= 0 and ('exit status ' .. code) or nil) })
    end,
  })
  if not p then return nil, err end
  return {
    pid = p:pid(),
    cancel = function(grace) p:cancel(grace) end,
    kill = function(sig) return p:kill(sig) end,
    reaped = function() return p:reaped() end,
  }
end

return M
