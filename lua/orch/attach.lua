-- orch.attach: `orch attach RUN TASK --cli`, a person takes over an agent:
-- the task's stored session opens in the real CLI, interactively, in the
-- task's worktree (claude --resume ID, codex resume ID, crush --session ID).
--
-- The CLI runs in the foreground of the terminal (through the shell, like
-- system(3): same session and process group, so Ctrl+C and job control
-- reach it), not through the launcher, which puts agents in sessions of
-- their own.
local core = require('orch.core')

local M = {}

local function err(fmt, ...)
  io.stderr:write('orch: ', fmt:format(...), '\n')
end

function M.quote(s)
  s = tostring(s)
  if s:match('^[%w%./_%-=:,@+]+$') then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The shell command that opens session (a store row: backend, session_id,
-- data) in cwd. Returns cmd, argv, env | nil, message.
function M.command(sess, cwd)
  local ok, mod = pcall(require, 'orch.backends.' .. tostring(sess.backend))
  if not ok or type(mod) ~= 'table' or not mod.attach_argv then
    return nil, ("backend %s cannot open its sessions interactively"):format(tostring(sess.backend))
  end
  local argv, env = mod.attach_argv({ id = sess.session_id, data = sess.data }, cwd)
  if not argv then return nil, env end
  local parts = { 'cd', M.quote(cwd), '&&' }
  local keys = {}
  for k in pairs(env or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  if #keys > 0 then
    parts[#parts + 1] = 'env'
    for _, k in ipairs(keys) do parts[#parts + 1] = M.quote(k .. '=' .. tostring(env[k])) end
  end
  for _, a in ipairs(argv) do parts[#parts + 1] = M.quote(a) end
  return table.concat(parts, ' '), argv, env or {}
end

function M.cli(o)
  if not o[1] or not o[2] then
    err('usage: orch attach RUN TASK --cli')
    return 2
  end
  if not o.cli then
    err('attach: --cli is the only way to attach so far (it opens the task\'s session in the agent\'s own CLI)')
    return 2
  end
  local run_mod = require('orch.run')
  local loc, lerr = run_mod.locate(o)
  if not loc then err('%s', lerr) return 2 end
  local st, serr = require('orch.store').open(loc.db, { readonly = true })
  if not st then err('%s', serr) return 2 end
  local task = st:task(o[1], o[2])
  local sess = task and st:session(o[1], o[2])
  st:close()
  if not task then err('no task %s in run %s', o[2], o[1]) return 2 end
  if not sess or not sess.session_id then
    err('task %s of run %s has no agent session (it ran no agent yet, or a command)', o[2], o[1])
    return 2
  end
  local cwd = task.worktree
  if not cwd or cwd == '' or not core.readdir(cwd) then
    cwd = loc.root
    io.stderr:write(('orch: the worktree of task %s is gone; opening the session in %s\n'):format(o[2], cwd))
  end
  local cmd, cerr = M.command(sess, cwd)
  if not cmd then err('%s', cerr) return 1 end
  if o.print then
    io.stdout:write(cmd, '\n')
    return 0
  end
  io.stderr:write(('orch: %s session %s of task %s, in %s\n'):format(sess.backend, sess.session_id, o[2], cwd))
  io.stderr:flush()
  local ok, how, code = os.execute(cmd)
  if type(ok) == 'number' then return ok == 0 and 0 or 1 end -- Lua 5.1: the status
  if how == 'exit' then return code end
  return ok and 0 or 1
end

return M
