-- gen_repo.lua DIR [NFILES] [BYTES_PER_FILE]: writes NFILES text files of about
-- BYTES_PER_FILE bytes each under DIR (20 x 10 directories, pseudo-random lines)
-- for bench/worktree.sh. Deterministic (fixed seed), so reruns give the same tree.
local dir = assert(arg[1], "usage: gen_repo.lua DIR [NFILES] [BYTES]")
local nfiles = tonumber(arg[2]) or 20000
local bytes = tonumber(arg[3]) or 10000
local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _"
local chars = {}
for i = 1, #alphabet do chars[i] = alphabet:sub(i, i) end
math.randomseed(42)
local random, concat = math.random, table.concat
local function line(buf)
  for i = 1, 63 do buf[i] = chars[random(64)] end
  buf[64] = "\n"
  return concat(buf)
end
local buf, lines = {}, {}
local nlines = math.floor(bytes / 64)
for f = 0, nfiles - 1 do
  local sub = string.format("%s/d%02d/s%d", dir, f % 20, math.floor(f / 20) % 10)
  if f < 200 then os.execute("mkdir -p '" .. sub .. "'") end
  local fh = assert(io.open(string.format("%s/f%05d.txt", sub, f), "wb"))
  lines[1] = string.format("file %d\n", f)
  for i = 2, nlines do lines[i] = line(buf) end
  fh:write(concat(lines, "", 1, nlines))
  fh:close()
end
