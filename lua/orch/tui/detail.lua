-- orch.tui.detail: the Enter view of a task (its prompt, the diff of its
-- worktree so far, its questions and answers), or of the run when the
-- orchestrator pane has the focus. Full screen; q or Esc closes it.
local core = require('orch.core')
local view_mod = require('orch.tui.view')

local M = {}

M.DIFF_LINES = 5000

local function push_text(p, text, style)
  for line in (tostring(text) .. '\n'):gmatch('([^\n]*)\n') do p:push(line, style) end
end

local function run_detail(v, p)
  p:title(('run %s · every task'):format(tostring(v.src.run_id)))
  p:push(('goal: %s'):format(tostring(view_mod.val(v.run.goal) or '-')), 'text')
  p:push(v:counts_line(), 'meta')
  p:push('', 'normal')
  for _, id in ipairs(v.order) do
    local t = v.tasks[id]
    local st = view_mod.state_of(t)
    p:push(('%s %-20s %-10s attempt %s%s%s'):format((v:symbol(st)), id, t.status,
      tostring(t.attempt or '-'),
      #t.deps > 0 and ('  after ' .. table.concat(t.deps, ', ')) or '',
      t.error and ('  error: ' .. tostring(t.error)) or ''), 'normal')
  end
end

-- Runs git with args and pushes what it prints under a header; when the
-- output is empty and fallback is given, runs that instead.
local function git_section(v, p, header, argv, fallback)
  local n, got = 0, false
  p:push('── ' .. header, 'tool')
  local ok = core.spawn({
    argv = argv,
    stdout = function(line)
      if v.detail == nil or v.detail.pane ~= p then return end
      got = true
      n = n + 1
      if n <= M.DIFF_LINES then
        pcall(p.push, p, line, line:match('^%+') and 'text' or (line:match('^%-') and 'stderr' or 'normal'))
      elseif n == M.DIFF_LINES + 1 then
        pcall(p.push, p, ('… (cut at %d lines)'):format(M.DIFF_LINES), 'meta')
      end
    end,
    on_exit = function()
      if v.detail == nil or v.detail.pane ~= p then return end
      if not got then
        if fallback then return git_section(v, p, fallback.header, fallback.argv) end
        pcall(p.push, p, '(nothing)', 'meta')
      end
      pcall(p.top, p)
    end,
  })
  if not ok then p:push('(git could not start)', 'meta') end
end

function M.fill(v, p, t)
  if not t then return run_detail(v, p) end
  p:title(('detail · %s · q/Esc closes'):format(t.id))
  p:push(('task %s%s'):format(t.id, t.title and (': ' .. tostring(t.title)) or ''), 'text')
  p:push(('role %s · backend %s · model %s'):format(tostring(t.role or (t.cmd and 'cmd') or '-'),
    tostring(t.backend or (t.cmd and 'exec') or '-'), tostring(t.model or '-')), 'meta')
  p:push(('status %s%s · attempt %s%s%s'):format(t.status, t.paused and ' (paused)' or '',
    tostring(t.attempt or '-'),
    t.exit_code and (' · exit code ' .. tostring(t.exit_code)) or '',
    t.error and (' · error: ' .. tostring(t.error)) or ''), 'meta')
  if #t.deps > 0 then p:push('after: ' .. table.concat(t.deps, ', '), 'meta') end
  if t.branch then p:push('branch: ' .. tostring(t.branch), 'meta') end
  if t.worktree then p:push('worktree: ' .. tostring(t.worktree), 'meta') end
  p:push('── prompt', 'tool')
  if t.prompt then push_text(p, t.prompt, 'normal')
  elseif t.cmd then p:push('$ ' .. tostring(t.cmd), 'normal')
  else p:push('(none recorded)', 'meta') end
  p:push('── questions and answers', 'tool')
  if #t.qa == 0 then p:push('(none)', 'meta') end
  for _, qa in ipairs(t.qa) do
    push_text(p, 'Q: ' .. tostring(qa.q), 'question')
    push_text(p, 'A: ' .. (qa.a and (tostring(qa.a) .. (qa.by and (' (' .. tostring(qa.by) .. ')') or ''))
      or '(open)'), qa.a and 'text' or 'meta')
  end
  local wt = t.worktree
  local f = wt and io.open(wt .. '/.git', 'rb')
  if f then
    f:close()
    git_section(v, p, 'diff so far (uncommitted, git diff HEAD)',
      { 'git', '-C', wt, 'diff', '--stat', '--patch', 'HEAD' },
      t.branch and v.src.repo and { header = 'last commit of ' .. tostring(t.branch),
        argv = { 'git', '-C', v.src.repo, 'show', '--stat', '--patch', t.branch } } or nil)
  elseif t.branch and v.src.repo then
    git_section(v, p, 'last commit of ' .. tostring(t.branch),
      { 'git', '-C', v.src.repo, 'show', '--stat', '--patch', t.branch })
  else
    p:push('── diff so far', 'tool')
    p:push('(no worktree)', 'meta')
  end
  p:top()
end

return M
