-- A tmux server of the spec's own (a private socket) with one window
-- running a shell command: the real terminal for specs of orch's prompts.
--   local t = require('spec.tmux').new(sock, {width=, height=})
--   t.start(cmd); t.screen(); t.keys('y Enter'); t.wait_for(text, ms); t.kill()
local H = require('spec.helpers')

local M = {}

M.BIN = H.sh('command -v tmux'):gsub('%s+$', '')

function M.quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function M.new(sock, o)
  o = o or {}
  local q = M.quote
  local t = {}
  local function run(args) return H.sh(M.BIN .. ' -S ' .. q(sock) .. ' ' .. args) end
  function t.start(cmd)
    local _, code = run(('-f /dev/null new-session -d -x %d -y %d '):format(o.width or 120, o.height or 30)
      .. q('sh -c ' .. q(cmd)))
    assert(code == 0, 'tmux did not start')
  end
  function t.screen() return (run('capture-pane -p -J -S -' .. tostring(o.history or 300))) end
  function t.keys(k) run('send-keys ' .. k) end
  function t.wait_for(text, ms)
    return H.run_until(function() return t.screen():find(text, 1, true) ~= nil end, ms or 30000)
  end
  function t.kill() run('kill-server') end
  return t
end

return M
