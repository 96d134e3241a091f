-- The shell completions (completions/), driven in real shells: bash
-- (complete -p, the completion function on a command line), fish
-- (complete -C) and zsh (the function with compadd recorded), against a
-- repository with a recorded run, so run and task ids come from its state.
local H = require('spec.helpers')
local cjson = require('cjson')

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local cwd = require('orch.core').cwd()
local function abs(p) return p:sub(1, 1) == '/' and p or (cwd .. '/' .. p) end
local BIN = abs(H.ORCH:match('^(.*)/[^/]+$'))
local COMP = abs(H.SRC) .. '/completions'

local function has(cmd) return select(2, H.sh('command -v ' .. cmd .. ' >/dev/null')) == 0 end

-- The candidates bash offers for line (the cursor at its end), in cwd.
local function bash(line, in_dir)
  local script = ('cd %s && export PATH=%s:"$PATH" && source %s/orch.bash && ' ..
    'COMP_LINE=%s; COMP_POINT=${#COMP_LINE}; _orch; printf "%%s\\n" "${COMPREPLY[@]}"')
    :format(q(in_dir), q(BIN), q(COMP), q(line))
  local out, code = H.sh('bash -c ' .. q(script))
  assert.equal(0, code, out)
  local list = {}
  for l in out:gmatch('[^\n]+') do list[#list + 1] = l end
  return list
end

local function sorted(t) table.sort(t) return t end

describe('shell completion', function()
  local repo, run_id, other

  setup(function()
    repo = H.tmpdir()
    other = H.tmpdir()
    local out, code = H.sh(('cd %s && git init -q && git -c user.name=t -c user.email=t@t ' ..
      'commit -q --allow-empty -m i && touch ex.yaml && mkdir exdir'):format(repo))
    assert.equal(0, code, out)
    local r = H.orch({ 'run', '--plan', H.SRC .. '/examples/hello.yaml', '--repo', repo,
                       '--yes', '--no-tui', '--quiet' })
    assert.equal(0, r.code, r.err)
    r = H.orch({ 'status', '--repo', repo, '--json' })
    run_id = cjson.decode(r.out).run.id
  end)

  teardown(function()
    H.rm(repo)
    H.rm(other)
  end)

  describe('bash', function()
    it('registers itself for orch', function()
      local out = H.sh('bash -c ' .. q('source ' .. COMP .. '/orch.bash && complete -p orch'))
      assert.equal('complete -F _orch orch\n', out)
    end)

    it('completes orch st to status, and every command', function()
      assert.same({ 'status' }, bash('orch st', repo))
      local all = bash('orch ', repo)
      for _, c in ipairs({ 'run', 'resume', 'status', 'logs', 'plan', 'doctor', 'help' }) do
        assert.truthy(table.concat(all, ' '):find(c, 1, true), c)
      end
      for _, c in ipairs(all) do assert.is_nil(c:find('__', 1, true)) end
    end)

    it("completes orch logs RUN to that run's task ids", function()
      assert.same({ 'greet', 'shout', 'check', 'report' }, bash('orch logs ' .. run_id .. ' ', repo))
      assert.same({ 'shout' }, bash('orch logs ' .. run_id .. ' sh', repo))
    end)

    it('completes run ids from the repository the line names', function()
      assert.same({ run_id }, bash('orch status ', repo))
      assert.same({}, bash('orch status ', other))
      assert.same({ run_id }, bash('orch resume --repo ' .. repo .. ' ', other))
      assert.same({ 'greet', 'shout', 'check', 'report' },
                  bash('orch logs --repo ' .. repo .. ' ' .. run_id .. ' ', other))
    end)

    it('completes options and their values', function()
      local opts = bash('orch status --', repo)
      assert.same(sorted({ '--color=', '--db', '--help', '--json', '--repo' }), sorted(opts))
      assert.same({ 'always', 'auto' }, sorted(bash('orch status --color=a', repo)))
      assert.same({ 'squash' }, bash('orch run --merge sq', repo))
      assert.same({ '--no-tui' }, bash('orch run --no-t', repo))
    end)

    it('completes workflows by name and files', function()
      assert.same({ 'code_only', 'code_review_test' }, sorted(bash('orch run code_', repo)))
      assert.same({ 'ex.yaml', 'exdir' }, sorted(bash('orch plan check ex', repo)))
      assert.same({ 'check' }, bash('orch plan ch', repo))
      assert.same({ 'exdir' }, bash('orch run --repo ex', repo))
    end)
  end)

  describe('fish', function()
    it('completes commands and task ids', function()
      if not has('fish') then
        assert.is_nil(os.getenv('CI'), 'fish is missing (scripts/install-deps.sh installs it)')
        pending('fish is not installed')
        return
      end
      local function fish(line)
        local out, code = H.sh(('cd %s && PATH=%s:"$PATH" fish --no-config -c %s'):format(q(repo), q(BIN),
          q('source ' .. COMP .. '/orch.fish; complete -C ' .. q(line))))
        assert.equal(0, code, out)
        local list = {}
        for l in out:gmatch('[^\n]+') do list[#list + 1] = l:match('^[^\t]*') end
        return list
      end
      assert.same({ 'status' }, fish('orch st'))
      assert.same(sorted({ 'greet', 'shout', 'check', 'report' }), sorted(fish('orch logs ' .. run_id .. ' ')))
    end)
  end)

  describe('zsh', function()
    it('completes commands and task ids', function()
      if not has('zsh') then
        assert.is_nil(os.getenv('CI'), 'zsh is missing (scripts/install-deps.sh installs it)')
        pending('zsh is not installed')
        return
      end
      local out, code = H.sh('zsh -n ' .. q(COMP .. '/_orch'))
      assert.equal(0, code, out)
      -- the function with compadd and _files recorded (no completion system needed)
      local function zsh(...)
        local words = {}
        for i, w in ipairs({ ... }) do words[i] = q(w) end
        local script = ('cd %s; path=(%s $path); compadd() { while [[ $1 == -* && $1 != -- ]]; do ' ..
          '[[ $1 == -S ]] && shift; shift; done; shift; print -rl -- "$@"; }; ' ..
          '_files() { print -r -- FILES; }; source %s/_orch; words=(%s); CURRENT=${#words}; _orch')
          :format(q(repo), q(BIN), q(COMP), table.concat(words, ' '))
        local o, c = H.sh('zsh -f -c ' .. q(script))
        assert.equal(0, c, o)
        local list = {}
        for l in o:gmatch('[^\n]+') do list[#list + 1] = l end
        return list
      end
      assert.truthy(table.concat(zsh('orch', 'st'), ' '):find('status', 1, true))
      assert.same({ 'greet', 'shout', 'check', 'report' }, zsh('orch', 'logs', run_id, ''))
      assert.same({ 'FILES' }, zsh('orch', 'plan', 'check', ''))
    end)
  end)
end)
