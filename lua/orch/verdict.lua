-- orch.verdict: a reviewer's or tester's verdict, read from the last
-- `VERDICT:` line of its reply.
--
--   verdict.parse(text, kind) -> {verdict=, reason=} | nil
--     kind 'review': approve | changes (reason: what must change)
--     kind 'test':   pass | fail (reason: what failed)
local M = {}

local WORDS = {
  review = { approve = 'approve', approved = 'approve', lgtm = 'approve',
             changes = 'changes', ['request changes'] = 'changes',
             ['changes requested'] = 'changes', reject = 'changes' },
  test = { pass = 'pass', passed = 'pass', fail = 'fail', failed = 'fail' },
}

function M.parse(text, kind)
  if type(text) ~= 'string' then return nil end
  local words = WORDS[kind or 'review'] or WORDS.review
  local found
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    local body = line:match('^[%s%*_>`#-]*[Vv][Ee][Rr][Dd][Ii][Cc][Tt][%*_`]*%s*:%s*(.-)%s*[%*_`]*%s*$')
    if body then
      local word, rest = body:match('^([%a%s]-)%s*[:%-–]%s*(.*)$')
      if not word then word, rest = body, '' end
      local v = words[word:lower():gsub('%s+', ' '):gsub('^%s', ''):gsub('%s$', '')]
      if v then found = { verdict = v, reason = rest ~= '' and rest or nil } end
    end
  end
  return found
end

return M
