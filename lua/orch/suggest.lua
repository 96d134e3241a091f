-- orch.suggest: the one "did you mean" of orch (commands, options, plan
-- fields, enum values, role names).
--
--   suggest.distance(a, b)               -> edits (optimal string alignment)
--   suggest.closest(word, names, [min])  -> the closest name, if it is
--                                           close enough to be a typo
local M = {}

-- Optimal string alignment distance: insertions, deletions, substitutions
-- and swaps of two neighbours, each one edit. Words over 64 bytes are
-- never close (the table would cost O(#a * #b)).
function M.distance(a, b)
  if #a > 64 or #b > 64 then return math.huge end
  local before, prev = nil, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if before and i > 1 and j > 1 and a:byte(i) == b:byte(j - 1)
        and a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], before[j - 2] + 1)
      end
    end
    before, prev = prev, cur
  end
  return prev[#b]
end

-- The name closest to word (case ignored), if at most max(min, a third of
-- its length) edits away; min defaults to 1.
function M.closest(word, names, min)
  local best, bestd = nil, math.huge
  local w = word:lower()
  for _, n in ipairs(names) do
    local d = M.distance(w, n:lower())
    if d < bestd then best, bestd = n, d end
  end
  if best and bestd <= math.max(min or 1, math.floor(#best / 3)) then return best end
  return nil
end

return M
