-- orch.verdict: a reviewer's or tester's verdict, read from the last
-- `VERDICT:` line of its reply.
--
--   verdict.parse(text, kind) -> {verdict=, reason=} | nil
--     kind 'review': approve | changes (reason: what must change)
--     kind 'test':   pass | fail (reason: what failed)
--
-- Markdown around the word or the colon (`**VERDICT:** approve`,
-- `> VERDICT: approve`), a word before it (`Final verdict: ...`), case and
-- trailing punctuation (`approve.`) are all accepted.
local M = {}

local WORDS = {
  review = { approve = 'approve', approved = 'approve', lgtm = 'approve', accept = 'approve',
             changes = 'changes', ['request changes'] = 'changes', ['changes requested'] = 'changes',
             ['needs changes'] = 'changes', reject = 'changes', rejected = 'changes' },
  test = { pass = 'pass', passed = 'pass', passes = 'pass', fail = 'fail', failed = 'fail',
           fails = 'fail' },
}

local function clean(s)
  return (s:gsub('[%*`]', ''):gsub('^%s+', ''):gsub('%s+$', ''))
end

-- The verdict of one line, or nil.
local function of_line(line, words)
  local plain = clean(line)
  local body = plain:match('^[>%-#%s]*%a*%s*[Vv][Ee][Rr][Dd][Ii][Cc][Tt]%s*:%s*(.-)$')
  if not body then return nil end
  local word, rest = body:match('^([%a%s]-)%s*[:%-–—]%s*(.*)$')
  if not word then word, rest = body, '' end
  word = word:lower():gsub('[%.!,;]+$', ''):gsub('%s+', ' '):gsub('^%s', ''):gsub('%s$', '')
  local v = words[word]
  if not v then return nil end
  rest = rest:gsub('%s+$', '')
  return { verdict = v, reason = rest ~= '' and rest or nil }
end

function M.parse(text, kind)
  if type(text) ~= 'string' then return nil end
  local words = WORDS[kind or 'review'] or WORDS.review
  local found
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    found = of_line(line, words) or found
  end
  return found
end

return M
