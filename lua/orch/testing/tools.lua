-- Tool calls of the scripted model in the client's own tool names: a reply's
-- `write`, `edit` and `shell` become a call of whichever tool the request
-- offers for it (Claude Code's Write/Edit/Bash, Codex's apply_patch and
-- exec_command, Crush's write/edit/bash, orch's own write/edit/shell, any
-- chat function of those names), with that tool's parameter names.
local M = {}

local function has(req, name)
  return req.tool_specs[name] ~= nil
end

local function first_tool(req, names)
  for _, n in ipairs(names) do if has(req, n) then return n end end
end

local function key_of(spec, names, default)
  local params = spec and spec.params or {}
  for _, n in ipairs(names) do if params[n] ~= nil then return n end end
  return default
end

function M.abs(req, path)
  if path:sub(1, 1) == '/' or not req.cwd then return path end
  return (req.cwd:gsub('/$', '')) .. '/' .. path
end

function M.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function patch_add(path, content)
  local lines = { '*** Begin Patch', '*** Add File: ' .. path }
  for l in (content .. (content:sub(-1) == '\n' and '' or '\n')):gmatch('(.-)\n') do
    lines[#lines + 1] = '+' .. l
  end
  lines[#lines + 1] = '*** End Patch'
  return table.concat(lines, '\n') .. '\n'
end

local function patch_update(path, old, new)
  local lines = { '*** Begin Patch', '*** Update File: ' .. path, '@@' }
  for l in (old .. '\n'):gmatch('(.-)\n') do lines[#lines + 1] = '-' .. l end
  for l in (new .. '\n'):gmatch('(.-)\n') do lines[#lines + 1] = '+' .. l end
  lines[#lines + 1] = '*** End Patch'
  return table.concat(lines, '\n') .. '\n'
end

local function apply_patch_call(req, patch)
  local spec = req.tool_specs.apply_patch
  if spec.kind == 'custom' then
    return { name = 'apply_patch', input = patch, kind = 'custom' }
  end
  return { name = 'apply_patch', input = { [key_of(spec, { 'input', 'patch' }, 'input')] = patch } }
end

-- shell = 'command' (a string)
function M.shell(req, cmd)
  local name = first_tool(req, { 'Bash', 'exec_command', 'bash', 'shell' })
  if not name then return { name = 'shell', input = { command = cmd } } end
  local spec = req.tool_specs[name]
  if name == 'Bash' then
    return { name = name, input = { command = cmd, description = 'Run a command' } }
  end
  local k = key_of(spec, { 'cmd', 'command' }, name == 'exec_command' and 'cmd' or 'command')
  local p = spec.params[k]
  if type(p) == 'table' and p.type == 'array' then
    return { name = name, input = { [k] = { 'bash', '-lc', cmd } } }
  end
  return { name = name, input = { [k] = cmd } }
end

-- write = {path=, content=}
function M.write(req, w)
  local path, content = w.path or w.file_path, w.content or ''
  local name = first_tool(req, { 'Write', 'write', 'apply_patch' })
  if name == 'apply_patch' then return apply_patch_call(req, patch_add(path, content)) end
  if not name then
    if first_tool(req, { 'exec_command', 'Bash', 'bash', 'shell' }) then
      -- the file's directory first: a write tool makes it, a shell does not
      local dir = path:match('^(.*)/[^/]*$')
      local mk = dir and dir ~= '' and ('mkdir -p %s && '):format(M.shell_quote(dir)) or ''
      return M.shell(req, ('%sprintf %%s %s > %s'):format(mk, M.shell_quote(content),
                                                          M.shell_quote(path)))
    end
    name = 'write'
  end
  local spec = req.tool_specs[name]
  local pk = key_of(spec, { 'file_path', 'path', 'filename' }, name == 'Write' and 'file_path' or 'path')
  local ck = key_of(spec, { 'content', 'contents', 'text' }, 'content')
  return { name = name, input = { [pk] = name == 'Write' and M.abs(req, path) or path,
                                  [ck] = content } }
end

-- edit = {path=, old=, new=}
function M.edit(req, e)
  local path, old, new = e.path or e.file_path, e.old or e.old_string or '', e.new or e.new_string or ''
  local name = first_tool(req, { 'Edit', 'edit', 'apply_patch' })
  if name == 'apply_patch' then return apply_patch_call(req, patch_update(path, old, new)) end
  if not name and first_tool(req, { 'exec_command', 'Bash', 'bash', 'shell' }) then
    -- bash's ${v/"old"/"new"}: quoted, both sides are literal text
    return M.shell(req, ('f=%s; old=%s; new=%s; c=$(cat "$f"; printf x); c=${c%%x}; ' ..
                         'printf %%s "${c/"$old"/"$new"}" > "$f"')
                        :format(M.shell_quote(path), M.shell_quote(old), M.shell_quote(new)))
  end
  name = name or 'edit'
  local spec = req.tool_specs[name]
  local pk = key_of(spec, { 'file_path', 'path', 'filename' }, name == 'Edit' and 'file_path' or 'path')
  local ok = key_of(spec, { 'old_string', 'old', 'old_text', 'search' }, 'old_string')
  local nk = key_of(spec, { 'new_string', 'new', 'new_text', 'replace' }, 'new_string')
  return { name = name, input = { [pk] = name == 'Edit' and M.abs(req, path) or path,
                                  [ok] = old, [nk] = new } }
end

-- A list of one or several (w may be one table or a list of them).
local function each(v)
  if type(v) == 'table' and v[1] ~= nil then return v end
  return { v }
end

-- The tool calls of a reply: its tool_calls (tool_call), then write, edit
-- and shell intents turned into the client's tools.
function M.calls(req, reply)
  local out = {}
  for _, c in ipairs(each(reply.tool_calls or reply.tool_call)) do
    out[#out + 1] = { id = c.id, name = c.name, input = c.input or {},
                      kind = c.kind or (req.tool_specs[c.name or ''] or {}).kind }
  end
  if reply.write then for _, w in ipairs(each(reply.write)) do out[#out + 1] = M.write(req, w) end end
  if reply.edit then for _, e in ipairs(each(reply.edit)) do out[#out + 1] = M.edit(req, e) end end
  if reply.shell then
    for _, s in ipairs(each(reply.shell)) do out[#out + 1] = M.shell(req, s) end
  end
  return out
end

return M
