-- orch.core.git, orch.merge and orch.worktrees on real repositories made
-- here (paths with spaces; the git CLI sets up and checks).
local core = require('orch.core')
local H = require('spec.helpers')
local cjson = require('cjson')
local merge = require('orch.merge')
local worktrees = require('orch.worktrees')

local git = core.git

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(dir, cmd)
  local out, code = H.sh('cd ' .. q(dir) .. ' && ' .. cmd)
  return (out:gsub('%s+$', '')), code
end

local function new_repo(root, name)
  local dir = root .. '/' .. name
  local _, code = H.sh('mkdir -p ' .. q(dir) .. ' && cd ' .. q(dir) .. ' && git init -q -b main . && '
    .. 'git config user.name Tester && git config user.email t@example.com && '
    .. "printf 'one\\ntwo\\nthree\\n' > shared.txt && git add -A && git commit -qm init")
  assert(code == 0)
  return dir
end

local opened = {}
local function new_ws(o)
  local ws = worktrees.new(o)
  opened[#opened + 1] = ws
  return ws
end

local function task(id, extra)
  local t = { id = id }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

describe('orch.worktrees', function()
  local root

  before_each(function()
    root = H.sh("mktemp -d '/tmp/orch-wt spec.XXXXXX'"):gsub('%s+$', '')
  end)

  after_each(function()
    for _, ws in ipairs(opened) do ws:close() end
    opened = {}
    H.rm(root)
  end)

  it('refuses a tree whose entries would write outside the worktree or over .git', function()
    local dir = new_repo(root, 'evil tree')
    local function hex2bin(h) return (h:gsub('%x%x', function(b) return string.char(tonumber(b, 16)) end)) end
    local blob = sh(dir, "printf 'PWNED\\n' | git hash-object -w --stdin")
    local gitfile = sh(dir, "printf 'gitdir: /tmp/elsewhere\\n' | git hash-object -w --stdin")
    local sub = sh(dir, ("printf '100644 blob %s\\tpwned.txt\\n' | git mktree"):format(blob))
    for _, bad in ipairs({ '..', '.git', '.GIT.' }) do
      local raw = (bad == '..' and ('40000 ..\0' .. hex2bin(sub)) or ('100644 ' .. bad .. '\0' .. hex2bin(gitfile)))
        .. '100644 a.txt\0' .. hex2bin(blob)
      H.write(root .. '/tree.bin', raw)
      local tree = sh(dir, "git hash-object -t tree --literally -w '" .. root .. "/tree.bin'")
      local commit = sh(dir, 'git commit-tree -m evil ' .. tree)
      sh(dir, 'git branch -f evil ' .. commit)
      local repo = assert(core.git.open(dir))
      for _, mode in ipairs({ 'auto', 'libgit2' }) do
        local wt, msg = repo:worktree_create('r1', 'evil-' .. mode, 'evil', {}, { checkout = mode })
        assert.is_nil(wt, bad .. ' ' .. mode)
        assert.is_string(msg)
        assert.is_nil(H.read(dir .. '/.orch/worktrees/r1/pwned.txt'))
        local g = H.read(dir .. '/.orch/worktrees/r1/evil-' .. mode .. '/.git')
        assert.is_true(g == nil or not g:find('/tmp/elsewhere', 1, true), bad .. ' ' .. mode)
      end
      repo:close()
    end
  end)

  it('refuses an empty repository with a clear message', function()
    local dir = root .. '/empty'
    H.sh('mkdir -p ' .. q(dir) .. ' && git -C ' .. q(dir) .. ' init -q')
    local r, msg, code = git.open(dir)
    assert.is_nil(r)
    assert.matches('needs a first commit', msg)
    assert.equals('EINVAL', code)
  end)

  it('gives four tasks four worktrees and merges all four files', function()
    local dir = new_repo(root, 'four tasks')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin({ id = 'r1' }))
    local places = {}
    for i = 1, 4 do
      local p = assert(ws:prepare(task('t' .. i), {}))
      H.write(p.cwd .. '/t' .. i .. '.txt', sh(p.cwd, 'pwd') .. '\n')
      places[i] = p
    end
    for i = 1, 4 do
      assert.are_not.equal(dir, places[i].cwd)
      assert.equals('orch/r1/t' .. i, places[i].branch)
      for k = 1, i - 1 do assert.are_not.equal(places[k].cwd, places[i].cwd) end
    end
    for i = 1, 4 do
      local res = ws:finish(task('t' .. i), { ok = true })
      assert.equals('done', res.status)
      assert.is_nil(io.open(places[i].cwd .. '/.git'))   -- removed once merged
    end
    local files = sh(dir, 'git ls-tree --name-only orch/r1/integration')
    for i = 1, 4 do
      assert.matches('t' .. i .. '%.txt', files)
      assert.equals(places[i].cwd, sh(dir, 'git show orch/r1/integration:t' .. i .. '.txt'))
    end
    assert.equals('', sh(dir, 'git status --porcelain'))
    assert.equals('1', sh(dir, "grep -c '^/.orch/$' .git/info/exclude"))
    assert.matches('and 5 branch', worktrees.clean(dir, 'r1'), 1, true)
    assert.equals('', sh(dir, "git branch --list 'orch/*'"))
  end)

  it("starts a task with its finished dependencies' work", function()
    local dir = new_repo(root, 'deps')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r2'))
    local a = assert(ws:prepare(task('a'), {}))
    H.write(a.cwd .. '/from_a.txt', 'a was here\n')
    assert.equals('done', ws:finish(task('a'), {}).status)
    local b = assert(ws:prepare(task('b'), { 'a' }))
    assert.equals('a was here\n', H.read(b.cwd .. '/from_a.txt'))
    assert.equals('', sh(b.cwd, 'git status --porcelain'))
  end)

  it('merges one of two tasks editing the same line; the other conflicts', function()
    local dir = new_repo(root, 'conflict')
    -- the user's uncommitted work, which must survive byte for byte
    H.write(dir .. '/shared.txt', 'one\nuser edit\nthree\n\1\255')
    H.write(dir .. '/notes.txt', 'untracked')
    sh(dir, 'echo staged > staged.txt && git add staged.txt')
    local before = sh(dir, 'cat shared.txt notes.txt staged.txt | sha1sum; git diff --cached | sha1sum')
    local head = sh(dir, 'git rev-parse main')
    local ws = new_ws({ repo = dir, merge = 'merge' })
    assert.is_true(ws:begin('r3'))
    local a = assert(ws:prepare(task('a', { files = { 'x' } }), {}))
    local b = assert(ws:prepare(task('b', { files = { 'y' } }), {}))
    H.write(a.cwd .. '/shared.txt', 'one\nA\nthree\n')
    H.write(b.cwd .. '/shared.txt', 'one\nB\nthree\n')
    assert.equals('done', ws:finish(task('a'), {}).status)
    local integ = sh(dir, 'git rev-parse orch/r3/integration')
    local res = ws:finish(task('b'), {})
    assert.equals('conflict', res.status)
    assert.same({ 'shared.txt' }, res.files)
    assert.matches('shared.txt', res.message)
    assert.matches('git merge orch/r3/integration', res.message, 1, true)
    assert.matches('orch resume r3', res.message, 1, true)
    assert.equals(integ, sh(dir, 'git rev-parse orch/r3/integration'))
    -- b's branch is intact, its commit reachable, its worktree kept
    assert.equals('B', sh(dir, 'git show orch/r3/b:shared.txt | sed -n 2p'))
    assert.is_not_nil(io.open(b.cwd .. '/.git'))
    assert.equals(head, sh(dir, 'git rev-parse main'))
    assert.equals(before, sh(dir, 'cat shared.txt notes.txt staged.txt | sha1sum; git diff --cached | sha1sum'))
    -- applying at the end is refused while the user's tree is dirty
    local msg = ws:complete('r3', { yes = true })
    assert.matches('uncommitted', msg)
    assert.equals(head, sh(dir, 'git rev-parse main'))
    assert.equals(before, sh(dir, 'cat shared.txt notes.txt staged.txt | sha1sum; git diff --cached | sha1sum'))
    -- the user resolves in the worktree as told; orch resume re-merges
    sh(b.cwd, 'git merge -q orch/r3/integration >/dev/null 2>&1; '
      .. "printf 'one\\nA+B\\nthree\\n' > shared.txt && git add shared.txt")
    local ws2 = new_ws({ repo = dir })
    assert.is_true(ws2:begin('r3', { resume = true }))
    local again = assert(ws2:prepare(task('b'), { }))
    assert.is_true(again.reused)
    assert.equals('done', ws2:finish(task('b'), {}).status)
    assert.equals('A+B', sh(dir, 'git show orch/r3/integration:shared.txt | sed -n 2p'))
    -- once the user's tree is clean, --yes applies it as a fast-forward
    sh(dir, 'git reset -q && git checkout -q -- shared.txt && rm staged.txt')
    assert.matches('applied', ws2:complete('r3', { yes = true }))
    assert.equals(sh(dir, 'git rev-parse orch/r3/integration'), sh(dir, 'git rev-parse main'))
    assert.equals('untracked', H.read(dir .. '/notes.txt'))
    assert.equals('?? notes.txt', sh(dir, 'git status --porcelain'))
  end)

  it('works on a detached HEAD', function()
    local dir = new_repo(root, 'detached')
    sh(dir, 'git checkout -q --detach')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r4'))
    local a = assert(ws:prepare(task('a'), {}))
    H.write(a.cwd .. '/a.txt', 'a\n')
    assert.equals('done', ws:finish(task('a'), {}).status)
    assert.matches('applied', ws:complete('r4', { yes = true }))
    assert.equals('a', sh(dir, 'cat a.txt'))
    assert.equals('', sh(dir, 'git symbolic-ref -q HEAD'))
  end)

  it('uses squash, rebase, and a user strategy built on the primitives', function()
    local dir = new_repo(root, 'strategies')
    local calls = 0
    local function mine(ctx)
      calls = calls + 1
      local r = ctx.repo
      local tip = assert(r:resolve(ctx.into))
      local tree, msg, code, files = r:merge_trees(tip, ctx.from)
      if not tree then
        assert(code == 'ECONFLICT', msg)
        return { conflict = true, files = files }
      end
      assert.is_table(r:diff_names(tip, tree))
      local c = assert(r:commit({ tree = tree, parents = { tip }, message = 'mine: ' .. ctx.task.id }))
      assert(r:update_ref(ctx.into, c, tip))
      return { status = 'merged', tip = c }
    end
    local ws = new_ws({ repo = dir, merge = 'squash' })
    assert.is_true(ws:begin('r5'))
    for _, t in ipairs({ task('s'), task('r', { merge = 'rebase' }), task('m', { merge = mine }) }) do
      local p = assert(ws:prepare(t, {}))
      H.write(p.cwd .. '/' .. t.id .. '.txt', t.id)
      sh(p.cwd, 'git add -A && git commit -qm "own commit ' .. t.id .. '"')
      H.write(p.cwd .. '/' .. t.id .. '2.txt', t.id)
      assert.equals('done', ws:finish(t, {}).status)
    end
    assert.equals(1, calls)
    local log = sh(dir, "git log --format='%s|%p' orch/r5/integration")
    assert.matches('^mine: m|', log)
    assert.matches('orch r5/r|', log, 1, true)         -- rebased: the task's commits
    assert.matches('own commit r|', log, 1, true)
    assert.matches('orch r5: merge task s|', log, 1, true)
    assert.is_nil(log:match('own commit s'))           -- squashed away
    assert.equals('6', sh(dir, 'git ls-tree --name-only orch/r5/integration | grep -vc shared'))
    -- a bad strategy fails the task, it does not raise
    local p = assert(ws:prepare(task('x'), {}))
    H.write(p.cwd .. '/x', 'x')
    local res = ws:finish(task('x', { merge = 'octopus' }), {})
    assert.equals('failed', res.status)
    assert.matches("unknown merge strategy 'octopus'", res.message)
    assert.matches('raised', ws:finish(task('x', { merge = function() error('raised') end }), {}).message)
  end)

  it('recovers half-made worktrees', function()
    local dir = new_repo(root, 'recover me')
    local repo = assert(git.open(dir))
    local base = assert(repo:head())
    local n = assert(repo:worktree_names('r6', 'a'))
    -- killed before git knew of it: a directory without admin entry
    sh(dir, 'mkdir -p ' .. q(n.path) .. ' && echo junk > ' .. q(n.path .. '/junk'))
    local wt = assert(repo:worktree_create('r6', 'a', base, {}))
    assert.is_false(wt.reused)
    assert.is_nil(H.read(wt.path .. '/junk'))
    assert.is_true(repo:worktree_intact('r6', 'a'))
    -- killed during initialisation: the "initializing" mark stayed
    H.write(repo:gitdir() .. '/worktrees/' .. n.name .. '/locked', 'orch: initializing\n')
    assert.is_false(repo:worktree_intact('r6', 'a'))
    wt = assert(repo:worktree_create('r6', 'a', base, {}))
    assert.is_false(wt.reused)
    assert.is_true(repo:worktree_intact('r6', 'a'))
    -- a stale index.lock is cleared when the worktree is reused
    H.write(repo:gitdir() .. '/worktrees/' .. n.name .. '/index.lock', '')
    wt = assert(repo:worktree_create('r6', 'a', base, {}))
    assert.is_true(wt.reused)
    H.write(wt.path .. '/new.txt', 'new\n')
    assert.is_true((repo:commit_all(wt.path, 'work')))
    -- the directory gone, the admin entry left
    sh(dir, 'rm -rf ' .. q(wt.path))
    wt = assert(repo:worktree_create('r6', 'a', base, {}))
    assert.equals('new\n', H.read(wt.path .. '/new.txt'))
    assert.equals('', sh(wt.path, 'git status --porcelain'))
    repo:close()
  end)

  it('recovers from kill -9 during worktree creation', function()
    local dir = new_repo(root, 'killed')
    sh(dir, 'for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p d$d; for f in $(seq 1 300); do '
      .. 'echo "$d $f" > d$d/f$f; done; done; git add -A && git commit -qm many')
    local script = root .. '/create.lua'
    H.write(script, ([[
      local repo = assert(require('orch.core').git.open(%q))
      local base = assert(repo:head())
      io.stdout:write('go\n') io.stdout:flush()
      while true do
        assert(repo:worktree_create('r7', 'a', base, {}))
        assert(repo:worktree_remove('r7', 'a'))
      end]]):format(dir))
    local p = assert(core.spawn({ argv = { H.ORCH, '-l', script }, stdout = function() end,
                                  on_exit = function() end }))
    H.run_until(function() return false end, 300)
    os.execute('kill -9 ' .. p:pid())
    H.run_until(function() return false end, 100)
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r7'))
    local a = assert(ws:prepare(task('a'), {}))
    assert.equals('', sh(a.cwd, 'git status --porcelain'))
    assert.equals('9 300', H.read(a.cwd .. '/d9/f300'):gsub('%s+$', ''))
    H.write(a.cwd .. '/done.txt', 'ok')
    assert.equals('done', ws:finish(task('a'), {}).status)
    assert.equals('', sh(dir, 'git worktree prune -n -v'))
  end)

  it('commits the work of a task that deleted .git or switched branches; a nested repo fails saying where', function()
    local dir = new_repo(root, 'git games')
    sh(dir, 'echo two > two.txt && git add two.txt && git commit -qm two')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r8'))
    -- deletes the worktree's .git file: repaired and committed
    local a = assert(ws:prepare(task('a'), {}))
    H.write(a.cwd .. '/a.txt', 'a\n')
    os.remove(a.cwd .. '/.git')
    assert.equals('done', ws:finish(task('a'), {}).status)
    assert.equals('a', sh(dir, 'git show orch/r8/integration:a.txt'))
    -- `git checkout -b X` and commits there: the task branch follows X
    local b = assert(ws:prepare(task('b'), {}))
    sh(b.cwd, 'git checkout -q -b side && echo b > b.txt && git add b.txt && git commit -qm b '
      .. '&& echo b2 > b2.txt')
    assert.equals('done', ws:finish(task('b'), {}).status)
    assert.equals('b', sh(dir, 'git show orch/r8/integration:b.txt'))
    assert.equals('b2', sh(dir, 'git show orch/r8/integration:b2.txt'))
    -- a detached HEAD with work on it: the same
    local c = assert(ws:prepare(task('c'), {}))
    sh(c.cwd, 'git checkout -q --detach && echo c > c.txt && git add c.txt && git commit -qm c')
    assert.equals('done', ws:finish(task('c'), {}).status)
    assert.equals('c', sh(dir, 'git show orch/r8/integration:c.txt'))
    -- a branch that does not contain the task's base: refused, the work is named
    local d = assert(ws:prepare(task('d'), {}))
    sh(d.cwd, 'git checkout -q -b old main~1 && echo d > d.txt && git add d.txt && git commit -qm d')
    local rd = ws:finish(task('d'), {})
    assert.equals('failed', rd.status)
    assert.matches('on old', rd.message, 1, true)
    assert.matches(d.cwd, rd.message, 1, true)
    assert.equals('d\n', H.read(d.cwd .. '/d.txt'))          -- kept
    -- `git init sub` inside the worktree: refused, the work is named and kept
    local e = assert(ws:prepare(task('e'), {}))
    sh(e.cwd, 'git init -q sub && echo s > sub/s.txt && echo e > e.txt')
    local re = ws:finish(task('e'), {})
    assert.equals('failed', re.status)
    assert.matches('sub/', re.message, 1, true)
    assert.matches(e.cwd, re.message, 1, true)
    assert.equals('s\n', H.read(e.cwd .. '/sub/s.txt'))
    -- the worktree's .git replaced by a repository: refused, named, kept
    local f = assert(ws:prepare(task('f'), {}))
    sh(f.cwd, 'rm .git && git init -q . && echo f > f.txt')
    local rf = ws:finish(task('f'), {})
    assert.equals('failed', rf.status)
    assert.matches(f.cwd, rf.message, 1, true)
    assert.equals('f\n', H.read(f.cwd .. '/f.txt'))
  end)

  it('commits in a repository with an uninitialised submodule without leaking (ASan)', function()
    local dir = new_repo(root, 'submodule')
    sh(dir, "printf '[submodule \"sub\"]\\n\\tpath = sub\\n\\turl = https://example.invalid/s.git\\n' > .gitmodules"
      .. ' && git add .gitmodules && git update-index --add --cacheinfo '
      .. '160000,1234567890123456789012345678901234567890,sub && git commit -qm sub')
    local script = root .. '/commit.lua'
    H.write(script, ([[
      local ws = require('orch.worktrees').new{repo = %q}
      assert(ws:begin('r9'))
      for i = 1, 3 do
        local p = assert(ws:prepare({id = 't' .. i}, {}))
        local f = assert(io.open(p.cwd .. '/f' .. i, 'w')) f:write(i) f:close()
        os.remove(p.cwd .. '/shared.txt')
        local r = ws:finish({id = 't' .. i}, {})
        assert(r.status == 'done', r.message)
      end
      ws:close()]]):format(dir))
    local r = H.spawn_wait({ H.ORCH, '-l', script })
    assert.equals(0, r.code, r.err)
    assert.is_nil(r.err:find('LeakSanitizer', 1, true), r.err)
    assert.equals('1', sh(dir, 'git show orch/r9/integration:f1'))
    assert.equals('', sh(dir, 'git ls-tree orch/r9/integration shared.txt'))
    assert.matches('^160000 commit 1234567890', sh(dir, 'git ls-tree orch/r9/integration sub'))
  end)

  it('applies to the branch the run started from, or refuses when another is checked out', function()
    local dir = new_repo(root, 'onto')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r10'))
    local a = assert(ws:prepare(task('a'), {}))
    H.write(a.cwd .. '/a.txt', 'a\n')
    assert.equals('done', ws:finish(task('a'), {}).status)
    sh(dir, 'git checkout -q -b other')
    local main, other = sh(dir, 'git rev-parse main'), sh(dir, 'git rev-parse other')
    local msg, applied = ws:complete('r10', { yes = true })
    assert.is_false(applied)
    assert.matches('started from branch main', msg, 1, true)
    assert.matches('git checkout main', msg, 1, true)
    assert.equals(main, sh(dir, 'git rev-parse main'))
    assert.equals(other, sh(dir, 'git rev-parse other'))
    assert.is_nil(H.read(dir .. '/a.txt'))
    sh(dir, 'git checkout -q main')
    assert.matches('applied', ws:complete('r10', { yes = true }))
    assert.equals('a', sh(dir, 'git show main:a.txt'))
    assert.equals(other, sh(dir, 'git rev-parse other'))
  end)

  it('runs a task that continues another in its worktree, on its branch', function()
    local dir = new_repo(root, 'continues')
    local ws = new_ws({ repo = dir })
    local plan = { tasks = { { id = 'a' }, { id = 'b', continues = 'a', deps = { 'a' } },
                             { id = 'c', continues = 'b', deps = { 'b' } }, { id = 'x' } } }
    assert.is_true(ws:begin({ id = 'r11', plan_json = cjson.encode(plan) }))
    local a = assert(ws:prepare(plan.tasks[1], {}))
    H.write(a.cwd .. '/a.txt', 'a\n')
    H.write(a.cwd .. '/scratch.txt', 'ignored by nobody\n')
    assert.equals('done', ws:finish(plan.tasks[1], {}).status)
    assert.is_not_nil(H.read(a.cwd .. '/a.txt'))             -- kept: b continues a
    local b = assert(ws:prepare(plan.tasks[2], { 'a' }))
    assert.equals(a.cwd, b.cwd)
    assert.equals('orch/r11/a', b.branch)
    assert.equals('a', b.continues)
    H.write(b.cwd .. '/b.txt', 'b\n')
    assert.equals('done', ws:finish(plan.tasks[2], {}).status)
    local c = assert(ws:prepare(plan.tasks[3], { 'b' }))     -- b continues a: so does c
    assert.equals(a.cwd, c.cwd)
    H.write(c.cwd .. '/c.txt', 'c\n')
    assert.equals('done', ws:finish(plan.tasks[3], {}).status)
    for _, f in ipairs({ 'a', 'b', 'c' }) do
      assert.equals(f, sh(dir, 'git show orch/r11/integration:' .. f .. '.txt'))
      assert.equals(f, sh(dir, 'git show orch/r11/a:' .. f .. '.txt'))
    end
    assert.equals('', sh(dir, 'git branch --list orch/r11/b'))
    assert.matches('continues a', sh(dir, 'git log --format=%B orch/r11/a'), 1, true)
    assert.matches('applied', ws:complete({ id = 'r11' }, { yes = true }))
    assert.is_nil(io.open(a.cwd .. '/a.txt'))                -- gone at the run's end
  end)

  it('plan check: continues must name a task among the deps, directly or through others', function()
    local plan = require('orch.plan')
    H.write(root .. '/p.json', cjson.encode({ tasks = {
      { id = 'a', cmd = 'true' }, { id = 'b', cmd = 'true', deps = { 'a' } },
      { id = 'c', cmd = 'true', deps = { 'b' }, continues = 'a' } } }))
    assert.is_table((plan.load(root .. '/p.json')))
    for _, bad in ipairs({ { 'zz', 'unknown task' }, { 'c2', 'continues itself' }, { 'b', 'not among its deps' } }) do
      H.write(root .. '/p.json', cjson.encode({ tasks = {
        { id = 'a', cmd = 'true' }, { id = 'b', cmd = 'true' },
        { id = 'c2', cmd = 'true', deps = { 'a' }, continues = bad[1] } } }))
      local p, errs = plan.load(root .. '/p.json')
      assert.is_nil(p)
      assert.matches(bad[2], plan.format_errors(errs), 1, true)
    end
  end)

  it('prepares and finishes on the thread pool, four at once, merges one after the other', function()
    local dir = new_repo(root, 'async')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r12'))
    local places, outs, np, no = {}, {}, 0, 0
    for i = 1, 4 do
      ws:prepare_async(task('t' .. i), {}, function(p, e) places[i], np = p or e, np + 1 end)
    end
    assert.is_true(H.run_until(function() return np == 4 end, 30000))
    for i = 1, 4 do
      assert.is_table(places[i], tostring(places[i]))
      H.write(places[i].cwd .. '/t' .. i .. '.txt', i .. '\n')
    end
    for i = 1, 4 do ws:finish_async(task('t' .. i), {}, function(o) outs[i], no = o, no + 1 end) end
    assert.is_true(H.run_until(function() return no == 4 end, 30000))
    for i = 1, 4 do
      assert.equals('done', outs[i].status, outs[i].message)
      assert.equals(tostring(i), sh(dir, 'git show orch/r12/integration:t' .. i .. '.txt'))
    end
    local msg
    ws:complete_async('r12', { yes = true }, function(m) msg = m end)
    assert.is_true(H.run_until(function() return msg ~= nil end, 30000))
    assert.matches('applied', msg)
    assert.equals('4', sh(dir, 'cat t4.txt'))
    -- a failure arrives as (nil, message), like the sync call's
    local perr
    ws:prepare_async(task('integration'), {}, function(p, e) perr = { p, e } end)
    assert.is_true(H.run_until(function() return perr ~= nil end, 10000))
    assert.is_nil(perr[1])
    assert.matches('reserved', perr[2])
  end)

  it('waits for the thread pool in prepare and finish called from a coroutine (as the engine calls them)', function()
    local async = require('orch.async')
    local dir = new_repo(root, 'waits')
    local ws = new_ws({ repo = dir })
    assert.is_true(ws:begin('r14'))
    local places, returned_at_once, n = {}, 0, 0
    for i = 1, 4 do
      local done = false
      async.run(function()
        places[i] = ws:prepare(task('t' .. i), {})
        done, n = true, n + 1
      end)
      if done then returned_at_once = returned_at_once + 1 end
    end
    -- none blocked the loop: all four wait for the pool side by side
    assert.equals(0, returned_at_once)
    assert.is_true(H.run_until(function() return n == 4 end, 30000))
    for i = 1, 4 do
      assert.is_table(places[i], tostring(places[i]))
      H.write(places[i].cwd .. '/w' .. i .. '.txt', i .. '\n')
    end
    local outs, m = {}, 0
    for i = 1, 4 do
      async.run(function()
        outs[i] = ws:finish(task('t' .. i), {})
        m = m + 1
      end)
    end
    assert.is_true(H.run_until(function() return m == 4 end, 30000))
    for i = 1, 4 do
      assert.equals('done', outs[i].status, outs[i].message)
      assert.equals(tostring(i), sh(dir, 'git show orch/r14/integration:w' .. i .. '.txt'))
    end
    -- outside a coroutine the same call returns with its result
    local p = ws:prepare(task('t5'), {})
    assert.is_table(p)
    assert.is_true(core.realpath(p.cwd) ~= nil)
  end)

  it('keeps timers and the control socket going while a 20,000-file worktree is created', function()
    local dir = root .. '/big'
    assert.equals(0, select(2, H.sh(('luajit %s/bench/gen_repo.lua %s 20000 64 && cd %s && git init -q -b main '
      .. '&& git add -A && git -c user.name=t -c user.email=t@t commit -qm big'):format(H.SRC, q(dir), q(dir)))))
    local repo = assert(git.open(dir))
    local base = assert(repo:head())
    -- a control socket in this process, answered by the loop
    local ctl_dir = root .. '/ctl'
    H.sh('mkdir -m 700 ' .. q(ctl_dir))
    local server = assert(core.ctl.listen(ctl_dir .. '/s', function(conn)
      conn:start(function(line) if line then conn:write('pong ' .. line .. '\n') end end, function() end)
    end))
    local ticks, ticks_at_done, answered_before = 0, nil, nil
    local timer = core.timer(5, 5, function() ticks = ticks + 1 end)
    local created
    assert.is_true(repo:worktree_create_async('r13', 'big', base, {}, {}, function(wt, e)
      created = wt or e
      ticks_at_done = ticks
    end))
    -- a client of the socket, asking now: answered before the worktree is there
    local client = assert(core.ctl.connect(ctl_dir .. '/s'))
    client:start(function(line)
      if line == 'pong ping' and answered_before == nil then answered_before = (created == nil) end
    end, function() end)
    client:write('ping\n')
    assert.is_true(H.run_until(function() return created ~= nil and answered_before ~= nil end, 120000))
    timer:close()
    client:close()
    server:close()
    assert.is_table(created, tostring(created))
    assert.equals('f19999', H.sh('ls ' .. q(created.path .. '/d19/s9') .. ' | tail -1'):match('f%d+'))
    assert.is_true(ticks_at_done >= 3, 'timer ticks before the worktree: ' .. tostring(ticks_at_done))
    assert.is_true(answered_before, 'the socket answered only after the worktree was made')
    repo:close()
  end)

  it('exposes merge.resolve and a conflict message naming the commands', function()
    assert.is_function(merge.resolve('rebase'))
    assert.is_nil((merge.resolve('nope')))
    local m = merge.conflict_message({ run = 'R', into = 'orch/R/integration', from = 'orch/R/T',
      task = { id = 'T' }, worktree = '/x y/wt' }, { 'a.c', 'b.c' })
    assert.matches("cd '/x y/wt'", m, 1, true)
    assert.matches('a.c, b.c', m, 1, true)
    assert.matches('orch resume R', m, 1, true)
  end)
end)

describe('orch run with worktrees (the real binary)', function()
  local root

  before_each(function()
    root = H.sh("mktemp -d '/tmp/orch-wt e2e.XXXXXX'"):gsub('%s+$', '')
  end)

  after_each(function() H.rm(root) end)

  local function orch_run(dir, plan)
    H.write(root .. '/plan.json', plan)   -- outside the repository
    return H.orch({ 'run', '--plan', root .. '/plan.json', '--repo', dir, '--no-tui' },
                  { cwd = dir, timeout = 120000 })
  end

  it('runs four tasks in four worktrees and keeps the user changes', function()
    local dir = new_repo(root, 'e2e four')
    H.write(dir .. '/shared.txt', 'uncommitted\0bytes\n')
    local before = sh(dir, 'sha1sum shared.txt; git diff | sha1sum')
    local r = orch_run(dir, [[{"tasks": [
      {"id": "a", "cmd": "pwd > a.txt", "files": ["a.txt"]},
      {"id": "b", "cmd": "pwd > b.txt", "files": ["b.txt"]},
      {"id": "c", "cmd": "pwd > c.txt", "files": ["c.txt"]},
      {"id": "d", "cmd": "pwd > d.txt; cat a.txt > d_saw_a.txt", "files": ["d.txt"], "deps": ["a"]}]}]])
    assert.equals(0, r.code, r.err)
    local into = sh(dir, "git for-each-ref --format='%(refname:short)' 'refs/heads/orch/*/integration'")
    assert.matches('^orch/.+/integration$', into)
    local seen = {}
    for _, t in ipairs({ 'a', 'b', 'c', 'd' }) do
      local p = sh(dir, 'git show ' .. into .. ':' .. t .. '.txt')
      assert.matches('/%.orch/worktrees/[^/]+/' .. t .. '$', p)
      assert.are_not.equal(dir, p)
      assert.is_nil(seen[p])
      seen[p] = true
    end
    assert.equals(sh(dir, 'git show ' .. into .. ':a.txt'), sh(dir, 'git show ' .. into .. ':d_saw_a.txt'))
    assert.equals(before, sh(dir, 'sha1sum shared.txt; git diff | sha1sum'))
  end)

  it('orch resume completes a run killed -9 while it created a worktree', function()
    local dir = new_repo(root, 'e2e killed')
    sh(dir, 'for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p d$d; for f in $(seq 1 300); do '
      .. 'echo "$d $f" > d$d/f$f; done; done; git add -A && git commit -qm many')
    H.write(root .. '/plan.json', [[{"tasks": [
      {"id": "a", "cmd": "cat d9/f300 > a.txt", "files": ["a.txt"]},
      {"id": "b", "cmd": "cat a.txt > b.txt", "files": ["b.txt"], "deps": ["a"]}]}]])
    local killed = false
    local r = H.orch({ 'run', '--plan', root .. '/plan.json', '--repo', dir, '--yes', '--no-tui' }, {
      cwd = dir, timeout = 60000,
      on_start = function(p)
        -- kill as soon as a task's worktree directory shows up
        H.run_until(function()
          local list = core.readdir(dir .. '/.orch/worktrees') or {}
          for _, run in ipairs(list) do
            if #(core.readdir(dir .. '/.orch/worktrees/' .. run) or {}) > 0 then return true end
          end
        end, 90000)
        killed = p:kill('SIGKILL')
      end,
    })
    assert.is_true(killed)
    assert.equals('SIGKILL', r.sig)
    local res = H.orch({ 'resume', '--repo', dir, '--yes', '--no-tui' }, { cwd = dir, timeout = 60000 })
    assert.equals(0, res.code, res.err)
    assert.equals('9 300', sh(dir, 'cat b.txt'))
    assert.equals('', sh(dir, 'git status --porcelain'))
    assert.equals('', sh(dir, 'git worktree prune -n -v'))
  end)

  it('orch clean keeps a branch the user has checked out', function()
    local dir = new_repo(root, 'e2e clean')
    local r = orch_run(dir, [[{"tasks": [{"id": "a", "cmd": "echo a > a.txt", "files": ["a.txt"]}]}]])
    assert.equals(0, r.code, r.err)
    local run = r.err:match('run (%d+%-%d+%-%x+)')
    sh(dir, 'git checkout -q orch/' .. run .. '/integration')
    local c = H.orch({ 'clean', run, '--repo', dir })
    assert.equals(0, c.code, c.err)
    assert.matches('kept 1 branch', c.out)
    assert.equals('orch/' .. run .. '/integration', sh(dir, 'git symbolic-ref --short HEAD'))
    assert.equals('', sh(dir, 'git status --porcelain'))
    assert.equals('', sh(dir, 'git branch --list "orch/' .. run .. '/a"'))
  end)

  it('ends one of two same-line edits in conflict, the user branch untouched', function()
    local dir = new_repo(root, 'e2e conflict')
    local head = sh(dir, 'git rev-parse HEAD')
    local r = orch_run(dir, [[{"tasks": [
      {"id": "x", "cmd": "printf 'one\\nX\\nthree\\n' > shared.txt", "files": ["x"]},
      {"id": "y", "cmd": "printf 'one\\nY\\nthree\\n' > shared.txt", "files": ["y"]}]}]])
    assert.equals(1, r.code)
    assert.matches('conflict', r.err)
    assert.equals(head, sh(dir, 'git rev-parse HEAD'))
    assert.equals('', sh(dir, 'git status --porcelain'))
    local run = sh(dir, "git for-each-ref --format='%(refname:short)' 'refs/heads/orch/*/integration'")
      :match('^orch/(.+)/integration$')
    local merged = sh(dir, 'git show orch/' .. run .. '/integration:shared.txt | sed -n 2p')
    assert.is_true(merged == 'X' or merged == 'Y')
    local loser = merged == 'X' and 'y' or 'x'
    assert.equals(loser:upper(), sh(dir, 'git show orch/' .. run .. '/' .. loser .. ':shared.txt | sed -n 2p'))
    assert.matches('orch resume ' .. run, r.err, 1, true)

    -- the user resolves as the message says, and orch resume carries on
    local wt = dir .. '/.orch/worktrees/' .. run .. '/' .. loser
    local _, mcode = sh(wt, 'git merge -q orch/' .. run .. '/integration 2>&1')
    assert.is_not.equal(0, mcode) -- the conflict, now in the worktree
    sh(wt, "printf 'one\\nXY\\nthree\\n' > shared.txt && git add shared.txt && git commit -qm resolved")
    local res = H.orch({ 'resume', '--repo', dir, '--yes', '--no-tui' }, { cwd = dir, timeout = 120000 })
    assert.equals(0, res.code, res.err)
    assert.equals('XY', sh(dir, 'git show orch/' .. run .. '/integration:shared.txt | sed -n 2p'))
    -- approved with --yes: the user's branch now has the resolved work
    assert.equals('XY', sh(dir, 'sed -n 2p shared.txt'))
    local st = cjson.decode(H.orch({ 'status', '--json', '--repo', dir }).out)
    for _, t in ipairs(st.tasks) do assert.equals('done', t.status, t.id) end
  end)
end)
