-- The loop's largest stall: a 1 ms repeating timer records the longest gap
-- between two of its ticks (a) while 4 worktrees of the 20,000-file
-- repository are created at once on libuv's thread pool
-- (repo:worktree_create_async), and (b) while a run of 4 tasks streams
-- output (orch.run.execute in this process: exec backend, store, engine),
-- each task printing 200,000 lines. Target: under 20 ms for both. For
-- reference, (c) the same gap with one worktree created synchronously
-- (repo:worktree_create, the loop blocked: the gap is the creation's time).
--
--   orch -l bench/loop_stall.lua [ROUNDS]     (default 3; medians printed)
--
-- Env: ORCH_BENCH_REPO (default /tmp/orch-bench-repo, shared with
-- bench/worktree.sh; generated with bench/gen_repo.lua when missing).
local core = require('orch.core')

local ROUNDS = tonumber(arg and arg[1]) or 3
local REPO = os.getenv('ORCH_BENCH_REPO') or '/tmp/orch-bench-repo'
local SRC = os.getenv('ORCH_SRC') or '.'
local TARGET_MS = 20

local function sh(cmd)
  local f = assert(io.popen(cmd .. ' 2>&1', 'r'))
  local s = f:read('*a')
  f:close()
  return (s:gsub('%s+$', ''))
end

local function ensure_repo()
  if core.realpath(REPO .. '/.git') then return end
  io.stderr:write('generating ', REPO, ' (20000 files, ~200 MB)...\n')
  sh(("rm -rf '%s' && luajit '%s/bench/gen_repo.lua' '%s' 20000 10000 && cd '%s' && git init -q -b main"
    .. " && git add -A && git -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost"
    .. " commit -qm 'bench: 20000 files' && git gc -q"):format(REPO, SRC, REPO, REPO))
end

-- A 1 ms timer that records the largest gap between two of its ticks.
local function gap_timer()
  local last, gap = core.hrtime(), 0
  local t = core.timer(1, 1, function()
    local now = core.hrtime()
    if now - last > gap then gap = now - last end
    last = now
  end)
  local t0 = core.hrtime()
  return function()
    t:close()
    return gap / 1e6, (core.hrtime() - t0) / 1e6
  end
end

-- Runs fn(done) and the loop until done() was called; returns the largest
-- gap (ms) between ticks of a 1 ms timer meanwhile, and the elapsed ms.
local function max_gap(fn)
  local finished = false
  local stop = gap_timer()
  fn(function() finished = true end)
  while not finished do core.run('once') end
  return stop()
end

local function median(list)
  table.sort(list)
  return list[math.ceil(#list / 2)]
end

local function worktrees_at_once(repo, base, round)
  return max_gap(function(done)
    local left = 4
    for i = 1, 4 do
      assert(repo:worktree_create_async('bench-stall', ('r%d-t%d'):format(round, i), base, {}, {},
        function(wt, err)
          assert(wt, err)
          left = left - 1
          if left == 0 then done() end
        end))
    end
  end)
end

local function remove_all(repo, round)
  for i = 1, 4 do assert(repo:worktree_remove('bench-stall', ('r%d-t%d'):format(round, i))) end
end

local function one_sync(repo, base, round)
  return max_gap(function(done)
    -- a timer tick first, so that the blocked time counts as one gap
    core.timer(5, function()
      assert(repo:worktree_create('bench-stall', ('sync%d'):format(round), base, {}, {}))
      done()
    end)
  end)
end

-- A small repository and a plan of 4 tasks that each print 200,000 lines.
local function streaming_run(dir, round)
  local pdir = dir .. '/p' .. round
  sh(("mkdir -p '%s' && cd '%s' && git init -q -b main && echo x > f && git add f"
    .. " && git -c user.name=b -c user.email=b@b commit -qm init"):format(pdir, pdir))
  local tasks = {}
  for i = 1, 4 do
    tasks[i] = { id = 's' .. i, files = { 'o' .. i },
                 cmd = "yes 'a line of task output, about sixty bytes long, as agents write' | head -n 200000" }
  end
  local plan = dir .. '/plan' .. round .. '.json'
  local f = assert(io.open(plan, 'w'))
  f:write(require('cjson').encode({ goal = 'bench', tasks = tasks }))
  f:close()
  -- execute runs the loop itself (from the top, never from a callback)
  local stop = gap_timer()
  local code = require('orch.run').execute({ plan = plan, repo = pdir, yes = true, quiet = true,
                                             ['no-tui'] = true })
  local gap, elapsed = stop()
  assert(code == 0, 'the streaming run failed: exit ' .. tostring(code))
  return gap, elapsed
end

ensure_repo()
local repo = assert(core.git.open(REPO))
local base = assert(repo:head())
repo:prune('bench-stall') -- what an interrupted earlier run left
local tmp = sh('mktemp -d /tmp/orch-bench-stall.XXXXXX')
local a, b, c, ta, tb = {}, {}, {}, {}, {}
for round = 1, ROUNDS do
  a[round], ta[round] = worktrees_at_once(repo, base, round)
  io.stderr:write(('round %d: 4 worktrees at once: %.1f ms gap (took %.0f ms)\n'):format(round, a[round], ta[round]))
  remove_all(repo, round)
  c[round] = one_sync(repo, base, round)
  io.stderr:write(('round %d: 1 worktree, sync: %.1f ms gap\n'):format(round, c[round]))
  assert(repo:worktree_remove('bench-stall', 'sync' .. round))
  b[round], tb[round] = streaming_run(tmp, round)
  io.stderr:write(('round %d: 4 tasks streaming: %.1f ms gap (took %.0f ms)\n'):format(round, b[round], tb[round]))
end
repo:prune('bench-stall')
repo:close()
sh("rm -rf '" .. tmp .. "'")

local function line(what, gaps, times)
  local g = median(gaps)
  print(('%-44s %8.1f ms   target < %d ms   %s   (took %.0f ms)'):format(what, g, TARGET_MS,
    g < TARGET_MS and 'ok' or 'OVER', median(times)))
end
print(('largest timer gap, median of %d rounds:'):format(ROUNDS))
line('4 worktrees of 20,000 files created at once', a, ta)
line('4 tasks streaming 200,000 lines each', b, tb)
print(('%-44s %8.1f ms   (reference: the loop blocked)'):format('1 worktree created synchronously', median(c)))
