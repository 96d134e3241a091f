-- Helpers of bench/stream_json.sh, run inside orch (orch -l):
--   adapter FILE          one claude turn through the claude backend whose
--                         "claude" cats FILE; events and log lines dropped;
--                         prints seconds and orch's max RSS (KB)
--   latency N [ORCH]      N claude turns against the scripted model server,
--                         `claude -p` spawned directly vs through the claude
--                         backend (with orch mcp, as in a run, and without);
--                         prints the median of each in ms, and of orch's own
--                         time in a turn (start to spawn, exit to on_done)
local core = require('orch.core')
local claude = require('orch.backends.claude')

local mode = arg[1]

local function turn(ctx)
  local res
  ctx.emit = ctx.emit or function() end
  ctx.on_line = ctx.on_line or function() end
  ctx.on_done = function(r) res = r end
  local h, err = claude.start(ctx)
  if not h then error(err) end
  while not res do core.run('once') end
  return res
end

if mode == 'adapter' then
  local file = assert(arg[2], 'adapter FILE')
  local dir = os.tmpname()
  os.remove(dir)
  core.mkdir_p(dir, tonumber('700', 8))
  local fake = dir .. '/claude'
  local f = assert(io.open(fake, 'wb'))
  f:write('#!/bin/sh\nexec cat "' .. file .. '"\n')
  f:close()
  os.execute("chmod +x '" .. fake .. "'")
  local n = 0
  local t0 = core.hrtime()
  local res = turn({ task = { id = 't' }, attempt = 1, run = { id = 'r' }, role = {}, prompt = 'p',
                     cwd = dir, env = { ORCH_CLAUDE_BIN = fake }, scratch = dir .. '/scratch',
                     emit = function() n = n + 1 end })
  local secs = (core.hrtime() - t0) / 1e9
  assert(res.ok, res.error)
  os.execute("rm -rf '" .. dir .. "'")
  print(('%.3f %d %d'):format(secs, core.rusage().maxrss_kb, n))
  return
end

if mode == 'latency' then
  local n = tonumber(arg[2] or '5')
  local orch = arg[3] or core.realpath('/proc/self/exe')
  local bin = assert(require('orch.testing.agents').find('claude'))
  local ms = require('orch.testing.modelserver')
  local srv = assert(ms.start({ scenario = { { reply = 'ok' } } }))
  local dir = os.tmpname()
  os.remove(dir)
  core.mkdir_p(dir .. '/w', tonumber('700', 8))
  local env = require('orch.testing.agents').claude_env(srv, dir .. '/home', dir .. '/tmp')
  core.mkdir_p(dir .. '/tmp')
  env.ORCH_CLAUDE_BIN = bin
  local function direct()
    local t0, done = core.hrtime(), false
    assert(core.spawn({ argv = { bin, '-p', 'hello', '--output-format', 'stream-json', '--verbose',
                                 '--permission-mode', 'acceptEdits' },
                        cwd = dir .. '/w', env = env, stdout = function() end,
                        on_exit = function() done = true end }))
    while not done do core.run('once') end
    return (core.hrtime() - t0) / 1e6
  end
  -- orch's own share of a turn, measured where it happens: from start()
  -- to the spawn, and from the process's exit to on_done
  local launcher = require('orch.launcher')
  local marks = {}
  launcher.set(function(spec)
    marks.spawn = core.hrtime()
    local on_exit = spec.on_exit
    spec.on_exit = function(...)
      marks.exit = core.hrtime()
      return on_exit(...)
    end
    return core.spawn(spec)
  end)
  local own = {}
  local function through(with_mcp)
    local t0 = core.hrtime()
    local res = turn({ task = { id = 't' }, attempt = 1, run = { id = 'r' }, role = { tools = 'edit' },
                       prompt = 'hello', cwd = dir .. '/w', env = env, scratch = dir .. '/scratch',
                       mcp = with_mcp and { argv = { orch, 'mcp' }, env = { ORCH_TASK = 't' } } or nil })
    assert(res.ok, res.error)
    local t1 = core.hrtime()
    own[#own + 1] = ((marks.spawn - t0) + (t1 - marks.exit)) / 1e6
    return (t1 - t0) / 1e6
  end
  -- interleaved, so that load from elsewhere hits all three alike; the
  -- median of each (the machine is shared: means are dragged by outliers)
  local t = { direct = {}, orch = {}, orch_mcp = {} }
  direct() -- warm the caches
  for _ = 1, n do
    t.direct[#t.direct + 1] = direct()
    t.orch[#t.orch + 1] = through(false)
    t.orch_mcp[#t.orch_mcp + 1] = through(true)
  end
  srv:stop()
  os.execute("rm -rf '" .. dir .. "'")
  local function median(l)
    table.sort(l)
    local m = #l
    return m % 2 == 1 and l[(m + 1) / 2] or (l[m / 2] + l[m / 2 + 1]) / 2
  end
  print(('%.1f %.1f %.1f %.2f'):format(median(t.direct), median(t.orch), median(t.orch_mcp), median(own)))
  return
end

error('usage: orch -l bench/stream_json.lua adapter FILE | latency N [ORCH]')
