-- Running the real claude and codex CLIs against the scripted model server,
-- for end-to-end tests: finding the binaries, and the environment and
-- configuration each needs to talk to a local server offline. The facts
-- behind these choices are in docs/testing.md ("What each CLI needs").
local M = {}

-- A file that opens (the CLIs' launchers are symlinks into npm packages).
local function executable(path)
  local f = io.open(path, 'rb')
  if not f then return false end
  f:close()
  return true
end

-- The bin directory scripts/install-agents.sh installs into.
function M.agents_bin()
  local prefix = os.getenv('ORCH_AGENTS_PREFIX')
  if prefix then return prefix .. '/bin' end
  local cache = os.getenv('XDG_CACHE_HOME') or ((os.getenv('HOME') or '') .. '/.cache')
  return cache .. '/orch/agents/bin'
end

-- The path of `name` (claude, codex, crush): on PATH first, then in the
-- agents' bin directory; nil and a message saying how to install it.
function M.find(name)
  for dir in (os.getenv('PATH') or ''):gmatch('[^:]+') do
    if executable(dir .. '/' .. name) then return dir .. '/' .. name end
  end
  local p = M.agents_bin() .. '/' .. name
  if executable(p) then return p end
  return nil, name .. ' not found on PATH nor in ' .. M.agents_bin() ..
              ' (run ./scripts/install-agents.sh)'
end

-- The environment for `claude -p` against srv, with home and tmp private
-- directories (TMPDIR: Claude Code leaves sockets and scratch there).
function M.claude_env(srv, home, tmp)
  return {
    HOME = home, TMPDIR = tmp, XDG_CONFIG_HOME = home .. '/.config',
    ANTHROPIC_BASE_URL = srv.url, ANTHROPIC_API_KEY = 'dummy',
    ANTHROPIC_AUTH_TOKEN = false, CLAUDE_CONFIG_DIR = false,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = '1', DISABLE_AUTOUPDATER = '1',
    CLAUDE_CODE_USE_BEDROCK = false, CLAUDE_CODE_USE_VERTEX = false,
  }
end

-- Writes CODEX_HOME/config.toml pointing codex at srv (the Responses wire
-- API) and returns the environment for `codex exec`. model defaults to
-- gpt-5.5, a model codex 0.171 knows (so it offers apply_patch, freeform);
-- an unknown model gets fallback metadata, a warning item and no
-- apply_patch.
function M.codex_env(srv, codex_home, home, tmp, model)
  assert(require('orch.core').mkdir_p(codex_home))
  local f = assert(io.open(codex_home .. '/config.toml', 'wb'))
  f:write(([[
model = "%s"
model_provider = "scripted"

[model_providers.scripted]
name = "scripted"
base_url = "%s/v1"
env_key = "ORCH_SCRIPTED_API_KEY"
wire_api = "responses"
]]):format(model or 'gpt-5.5', srv.url))
  f:close()
  return { HOME = home, TMPDIR = tmp, CODEX_HOME = codex_home,
           ORCH_SCRIPTED_API_KEY = 'dummy', OPENAI_API_KEY = false, OPENAI_BASE_URL = false }
end

return M
