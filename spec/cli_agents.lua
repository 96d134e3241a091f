-- What the CLI backends' specs share (spec/backend_{claude,codex,crush}_spec.lua,
-- spec/mcp_spec.lua): driving one turn of a backend to its end, a scratch git
-- repository, a control socket that answers `ask`, the real binaries (and
-- what to do when one is missing: fail under CI=true, else skip), and a
-- search for a key in everything left behind.
local cjson = require('cjson')
local core = require('orch.core')
local H = require('spec.helpers')

local A = {}

A.KEY = 'sk-orch-e2e-dummy-key-4f1c9a'

-- The real binary, or nil and why. Under CI a missing one is a failure.
function A.binary(name)
  local agents = require('orch.testing.agents')
  local bin, why = agents.find(name)
  return bin, why
end

-- Declares the e2e block (bf: busted's {describe=, it=, pending=}, which
-- live in the spec's environment): runs body(bin) if the binary is there;
-- else a failing test under CI=true, a pending (skipped) one otherwise.
function A.e2e(bf, name, title, body)
  local bin, why = A.binary(name)
  if bin then return bf.describe(title, function() body(bin) end) end
  if os.getenv('CI') == 'true' then
    return bf.describe(title, function()
      bf.it('needs ' .. name, function() error(name .. ' is required under CI: ' .. tostring(why)) end)
    end)
  end
  io.stderr:write(('SKIPPED: %s (%s)\n'):format(title, why))
  return bf.describe(title, function() bf.pending(name .. ' is not installed: ' .. tostring(why)) end)
end

-- Runs one turn of fn(ctx) (backend.start/send/resume) to its end:
-- res, events, log lines (or nil, events, log, err when it did not start).
function A.drive(fn, ctx, timeout)
  local evs, log, res = {}, {}, nil
  ctx.emit = function(e) evs[#evs + 1] = e end
  ctx.on_line = function(s, l) log[#log + 1] = { s, l } end
  ctx.on_done = function(r) res = r end
  local h, err = fn(ctx)
  if not h then return nil, evs, log, err end
  if not H.run_until(function() return res ~= nil end, timeout or 120000) then
    h.cancel(0)
    H.run_until(function() return res ~= nil end, 10000)
    error('the turn did not end; last lines: ' .. cjson.encode({ log[#log - 1], log[#log] }))
  end
  return res, evs, log
end

function A.of_type(evs, t)
  local out = {}
  for _, e in ipairs(evs) do if e.type == t then out[#out + 1] = e end end
  return out
end

-- A git repository with one commit, in dir/repo.
function A.repo(dir, files)
  local repo = dir .. '/repo'
  core.mkdir_p(repo)
  for path, text in pairs(files or { ['README.md'] = '# demo\n' }) do
    local d = path:match('^(.*)/[^/]+$')
    if d then core.mkdir_p(repo .. '/' .. d) end
    H.write(repo .. '/' .. path, text)
  end
  local out, code = H.sh(("cd '%s' && git init -q -b main . && git add -A && " ..
    "git -c user.email=t@t -c user.name=t commit -qm init"):format(repo))
  assert(code == 0, out)
  return repo
end

-- A control socket (in a 0700 directory) that answers `ask` with
-- answer_for(params) after a short while, as the run's orchestrator would.
function A.control_server(dir, answer_for)
  local s = { asks = {}, conns = {} }
  core.mkdir_p(dir .. '/ctl', tonumber('700', 8))
  s.path = dir .. '/ctl/run.sock'
  s.srv = assert(core.ctl.listen(s.path, function(conn)
    s.conns[#s.conns + 1] = conn
    local first = true
    conn:start(function(data)
      if not data then return end
      if first then
        first = false
        if data:match('^\27%s*json') then
          conn:write(cjson.encode({ hello = { protocol = 'orch-control', version = 1, run = 'r' } }) .. '\n')
          return
        end
      end
      local req = cjson.decode(data)
      if req.method == 'ask' then
        s.asks[#s.asks + 1] = req.params
        local a = answer_for(req.params, conn)
        if a then
          core.timer(50, function()
            if not conn:closed() then
              conn:write(cjson.encode({ id = req.id, result = { answer = a } }) .. '\n')
            end
          end)
        end
      else
        conn:write(cjson.encode({ id = req.id, error = { code = -32601, message = 'unknown' } }) .. '\n')
      end
    end, function() end)
  end))
  function s.stop() s.srv:close() end
  return s
end

-- The files under the dirs that contain key (grep -rl), as one string.
function A.files_with(key, dirs)
  local q = {}
  for _, d in ipairs(dirs) do q[#q + 1] = "'" .. d .. "'" end
  local out = H.sh('grep -rlaF -- ' .. "'" .. key .. "' " .. table.concat(q, ' ') .. ' 2>/dev/null || true')
  return (out:gsub('%s+$', ''))
end

return A
