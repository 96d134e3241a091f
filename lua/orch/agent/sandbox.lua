-- The OS sandbox for the agent's `shell` tool: bubblewrap (bwrap). A path
-- check cannot confine a shell command, so the command runs in a mount
-- namespace where the worktree is the only writable place orch's user owns:
--
--   the whole system read-only (--ro-bind / /), a fresh /dev and /proc;
--   $HOME, /tmp, /run, $XDG_RUNTIME_DIR, orch's socket directory, the
--   worktree's siblings (other tasks' worktrees), the repository's .orch/
--   (the database) and the other tasks' scratch directories hidden under
--   empty read-only tmpfs mounts;
--   the worktree bound read-write, the task's scratch/tmp read-write as
--   $TMPDIR, the repository's .git read-only (git log/diff work);
--   every namespace unshared (no network unless allowed), a new session,
--   killed with orch.
local core = require('orch.core')

local M = {}

M.BWRAP = 'bwrap'

local probe -- nil: not probed; else {ok=, message=}
local waiting = {}

local function exists_dir(path)
  local st = path and core.lstat(path)
  return st and st.type == 'dir'
end

local function dirname(path)
  return path:match('^(.*)/[^/]+$') or '/'
end

local function inside(path, root)
  return path == root or path:sub(1, #root + 1) == root .. '/'
end

-- The bwrap arguments for running argv with opts = {cwd=, home=, scratch=,
-- repo=, control= (the run's control socket), network=bool}. All paths
-- absolute and real.
function M.argv(argv, opts)
  local cwd = opts.cwd
  local a = { M.BWRAP, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc',
              '--unshare-all', '--die-with-parent', '--new-session' }
  if opts.network then a[#a + 1] = '--share-net' end
  local hide = {}
  local function add_hidden(p)
    if p and p ~= '/' and not hide[p] and exists_dir(p) then
      hide[p] = true
      hide[#hide + 1] = p
    end
  end
  add_hidden('/tmp')
  -- sockets: a read-only mount does not stop connect(), so every place a
  -- unix socket may live is hidden: /run (docker, dbus, systemd),
  -- $XDG_RUNTIME_DIR, orch's own socket directory (the control socket
  -- would let a command drive orch, outside the sandbox)
  add_hidden('/run')
  add_hidden(os.getenv('XDG_RUNTIME_DIR'))
  local ok_ctl, sockdir = pcall(function() return core.ctl.socket_dir() end)
  if ok_ctl and type(sockdir) == 'string' then add_hidden(core.realpath(sockdir) or sockdir) end
  if type(opts.control) == 'string' then add_hidden(dirname(core.realpath(opts.control) or opts.control)) end
  add_hidden(opts.home)
  add_hidden(dirname(cwd))
  if opts.repo then add_hidden(opts.repo .. '/.orch') end
  if opts.scratch then add_hidden(dirname(opts.scratch)) end
  -- a hidden place holding the worktree is fine (the worktree is bound
  -- back on top); one inside the worktree is not hidden
  local kept = {}
  for _, p in ipairs(hide) do
    if not inside(p, cwd) then kept[#kept + 1] = p end
  end
  table.sort(kept, function(x, y) return #x < #y end)
  for _, p in ipairs(kept) do
    a[#a + 1] = '--tmpfs'; a[#a + 1] = p
  end
  if opts.repo and exists_dir(opts.repo .. '/.git') then
    a[#a + 1] = '--ro-bind'; a[#a + 1] = opts.repo .. '/.git'; a[#a + 1] = opts.repo .. '/.git'
  end
  if opts.network then
    -- name resolution through a resolv.conf that points into /run
    local resolv = core.realpath('/etc/resolv.conf')
    if resolv and resolv ~= '/etc/resolv.conf' then
      a[#a + 1] = '--ro-bind'; a[#a + 1] = resolv; a[#a + 1] = resolv
    end
  end
  a[#a + 1] = '--bind'; a[#a + 1] = cwd; a[#a + 1] = cwd
  local tmp = opts.scratch and opts.scratch .. '/tmp'
  if tmp then
    core.mkdir_p(tmp, 448)
    a[#a + 1] = '--bind'; a[#a + 1] = tmp; a[#a + 1] = tmp
    a[#a + 1] = '--setenv'; a[#a + 1] = 'TMPDIR'; a[#a + 1] = tmp
  end
  for _, p in ipairs(kept) do
    a[#a + 1] = '--remount-ro'; a[#a + 1] = p
  end
  a[#a + 1] = '--chdir'; a[#a + 1] = cwd
  a[#a + 1] = '--'
  for _, x in ipairs(argv) do a[#a + 1] = x end
  return a
end

local function finish_probe(ok, message)
  probe = { ok = ok, message = message }
  local list = waiting
  waiting = {}
  for _, cb in ipairs(list) do cb(probe.ok, probe.message) end
end

-- cb(ok, message): whether bwrap can start a sandbox here (probed once per
-- process, with the same namespaces a real command gets).
function M.probe(cb)
  if probe then return cb(probe.ok, probe.message) end
  waiting[#waiting + 1] = cb
  if #waiting > 1 then return end
  local err_lines = {}
  local p, err = core.spawn({
    argv = { M.BWRAP, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc',
             '--unshare-all', '--die-with-parent', '--new-session', '--', 'true' },
    stderr = function(l) if #err_lines < 5 then err_lines[#err_lines + 1] = l end end,
    on_exit = function(code)
      if code == 0 then
        finish_probe(true, nil)
      else
        finish_probe(false, 'bwrap failed to start a sandbox: '
          .. (table.concat(err_lines, '; '):sub(1, 300)))
      end
    end,
  })
  if not p then
    finish_probe(false, 'bwrap not found (' .. tostring(err)
      .. '): install bubblewrap (apt-get install bubblewrap)')
  end
end

-- For specs: forget the probe (after changing M.BWRAP).
function M.reset()
  probe = nil
end

return M
