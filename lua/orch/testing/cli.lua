-- `orch model-server [SCENARIO] [--port N] [--host ADDR] [--log FILE]`: the
-- scripted model server on its own, until SIGINT or SIGTERM.
local core = require('orch.core')
local ms = require('orch.testing.modelserver')

local M = {}

function M.main(o)
  if o[2] then
    io.stderr:write('orch: model-server: one scenario at most\n')
    return 2
  end
  if o.port and (o.port < 0 or o.port > 65535) then
    io.stderr:write('orch: model-server: --port must be 0..65535\n')
    return 2
  end
  local srv, err = ms.start({ scenario = o[1], port = o.port, host = o.host, log = o.log })
  if not srv then
    io.stderr:write('orch: model-server: ', tostring(err), '\n')
    return 2
  end
  io.stdout:write(srv.url, '\n')
  io.stdout:flush()
  io.stderr:write(('orch model-server: listening; ANTHROPIC_BASE_URL=%s OPENAI_BASE_URL=%s/v1\n')
    :format(srv.url, srv.url))
  core.on_shutdown(function(phase)
    if phase == 'begin' then srv:stop() end
  end)
  core.run()
  return 0
end

return M
