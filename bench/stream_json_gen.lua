-- Writes about MB megabytes of Claude Code stream-json to PATH: the event
-- mix of a working agent (assistant text, tool calls, tool results of a few
-- KB, now and then a big one), ids fresh per step, a result line last.
--   orch -l bench/stream_json_gen.lua PATH [MB]
local cjson = require('cjson')
local path, mb = arg[1], tonumber(arg[2] or '200')
assert(path, 'usage: stream_json_gen.lua PATH [MB]')
local f = assert(io.open(path, 'wb'))
local sid = '11111111-2222-4333-8444-555555555555'
local total, target, n = 0, mb * 1000 * 1000, 0
local function put(t)
  local s = cjson.encode(t) .. '\n'
  f:write(s)
  total = total + #s
end
put({ type = 'system', subtype = 'init', session_id = sid, cwd = '/w', model = 'claude-opus-5-5',
      tools = { 'Bash', 'Edit', 'Read', 'Write' }, permissionMode = 'acceptEdits' })
local words = ('the quick brown fox jumps over the lazy dog; '):rep(12)
local chunk = ('0123456789abcdef'):rep(256) -- 4 KB of tool output
local big = ('x'):rep(200 * 1024)
while total < target do
  n = n + 1
  local tid = ('toolu_%08d'):format(n)
  put({ type = 'assistant', session_id = sid, parent_tool_use_id = cjson.null,
        message = { id = ('msg_%08d'):format(n), role = 'assistant', model = 'claude-opus-5-5',
                    content = { { type = 'text', text = words } },
                    usage = { input_tokens = 100, output_tokens = 50 } } })
  put({ type = 'assistant', session_id = sid,
        message = { id = ('msg_%08d'):format(n), role = 'assistant',
                    content = { { type = 'tool_use', id = tid, name = 'Read',
                                  input = { file_path = '/w/src/file' .. n .. '.c' } } } } })
  put({ type = 'user', session_id = sid,
        message = { role = 'user', content = { { type = 'tool_result', tool_use_id = tid,
                    content = n % 50 == 0 and big or chunk } } },
        tool_use_result = { type = 'text' } })
end
put({ type = 'result', subtype = 'success', is_error = false, result = 'Done.', session_id = sid,
      total_cost_usd = 1.5, usage = { input_tokens = 1000, output_tokens = 500 },
      permission_denials = {}, num_turns = n })
f:close()
print(total)
