-- The orchestrator's conversation: planning with bounded retries (a bad
-- plan is sent back with what is wrong), answers to questions, summaries
-- carried into the next turn, one session throughout. The backend here is
-- a small one of the spec's own that answers from a list, through the
-- real loop (replies arrive on a timer, as a process's would).
local core = require('orch.core')
local H = require('spec.helpers')
local orchestrator = require('orch.orchestrator')

local PLAN_CYCLE = '```json\n{"tasks":[{"id":"a","role":"coder","prompt":"x","deps":["b"]},' ..
  '{"id":"b","role":"coder","prompt":"y","deps":["a"]}]}\n```'
local PLAN_OK = '```json\n{"tasks":[{"id":"a","role":"coder","prompt":"x"},' ..
  '{"id":"b","role":"coder","prompt":"y"},{"id":"c","role":"coder","prompt":"z","deps":["a","b"]}]}\n```'

local function fake_backend(replies, seen)
  local n = 0
  local function turn(ctx)
    seen[#seen + 1] = { prompt = ctx.prompt, session = ctx.session and ctx.session.id,
                        system = ctx.system_prompt, tools = ctx.tools }
    local t
    t = core.timer(5, function()
      t:close()
      -- a conversation whose transcript is gone cannot go on
      if ctx.session and ctx.session.id == 'gone' then
        return ctx.on_done({ ok = false, error = 'No conversation found with session ID: gone' })
      end
      n = n + 1
      local text = replies[n] or 'no more replies'
      if not ctx.session then ctx.emit({ type = 'session', session_id = 'sess-1' }) end
      ctx.on_done({ ok = true, text = text, session_id = 'sess-1' })
    end)
    return { cancel = function() end }
  end
  return { name = 'fake', start = turn, send = turn }
end

describe('orchestrator', function()
  local seen
  before_each(function()
    seen = {}
    require('orch.roles').cache = {}
  end)
  after_each(function() package.loaded['orch.backends.fake'] = nil end)

  local function new(replies, session)
    package.loaded['orch.backends.fake'] = fake_backend(replies, seen)
    local role = assert(require('orch.roles').get('orchestrator'))
    role.backend = 'fake'
    return assert(orchestrator.new({ repo = H.SRC, role = role, session = session }))
  end

  it('continues a stored conversation, and keeps whoever asked told of its session', function()
    local o = new({ 'Use tabs.' }, { id = 'sess-1', backend = 'fake' })
    local kept = {}
    o:keep_session(function(sess) kept[#kept + 1] = sess.id end)
    assert.same({ 'sess-1' }, kept)
    local a
    o:answer({ id = 'b', role = 'coder' }, 'tabs or spaces?', function(x) a = x end)
    H.run_until(function() return a end, 5000)
    assert.equal('Use tabs.', a)
    assert.equal('sess-1', seen[1].session)
    -- a conversation of another backend is not continued
    assert.is_nil(new({}, { id = 'sess-1', backend = 'claude' }).session)
  end)

  it('runs the turn again in a new conversation when the stored one cannot go on', function()
    local o = new({ 'Use tabs.' }, { id = 'gone', backend = 'fake' })
    local kept, lost = {}, nil
    o.on_event = function(ev) if ev.type == 'session_lost' then lost = ev.message end end
    o:keep_session(function(sess) kept[#kept + 1] = sess.id end)
    o:tell('The goal: tidy up')
    o:tell('task a finished: added a.txt')
    local a
    o:answer({ id = 'b', role = 'coder' }, 'tabs or spaces?', function(x) a = x end)
    o:tell('task c finished: told while the first turn ran')
    H.run_until(function() return a end, 5000)
    assert.equal('Use tabs.', a)
    assert.equal(2, #seen)
    assert.matches('told while the first turn ran', seen[2].prompt)
    assert.equal('gone', seen[1].session)
    assert.is_nil(seen[2].session)
    assert.matches('No conversation found', lost)
    -- the new conversation is told what the stored one was told
    assert.matches('The goal: tidy up', seen[2].prompt)
    assert.matches('task a finished', seen[2].prompt)
    assert.matches('tabs or spaces%?', seen[2].prompt)
    assert.same({ 'gone', 'sess-1' }, kept)
  end)

  it('sends a cyclic plan back with the cycle and takes the corrected one', function()
    local o = new({ PLAN_CYCLE, PLAN_OK })
    local plan, err
    o:plan('build it', function(p, e) plan, err = p, e end)
    assert.is_true(H.run_until(function() return plan or err end, 5000) and true)
    assert.is_nil(err)
    assert.equal(3, #plan.tasks)
    assert.equal(2, #seen)
    assert.matches('Goal: build it', seen[1].prompt)
    assert.matches('cycle', seen[2].prompt)
    assert.is_nil(seen[1].session)
    assert.equal('sess-1', seen[2].session) -- the same conversation
    assert.equal('read-only', seen[1].tools)
    assert.matches('orchestrator', seen[1].system)
    o:close()
  end)

  it('gives up after the bounded tries with the last rejection', function()
    local o = new({ 'no', 'still no', 'nope' })
    local plan, err
    o:plan('g', function(p, e) plan, err = p, e end)
    H.run_until(function() return plan or err end, 5000)
    assert.is_nil(plan)
    assert.matches('no valid plan after 3 replies', err)
    o:close()
  end)

  it('answers questions in turn, carrying task summaries; ASK_PERSON goes to the person', function()
    local o = new({ 'Use tabs.', 'ASK_PERSON' })
    o:tell('task a finished: added a.txt')
    local a1, a2, person
    o:answer({ id = 'b', role = 'coder' }, 'tabs or spaces?', function(a) a1 = a end)
    o:answer({ id = 'c', role = 'coder' }, 'which licence?', function(a, p) a2, person = a, p end)
    H.run_until(function() return a1 and person ~= nil end, 5000)
    assert.equal('Use tabs.', a1)
    assert.is_nil(a2)
    assert.is_true(person)
    assert.matches('task a finished', seen[1].prompt)
    assert.matches('tabs or spaces%?', seen[1].prompt)
    assert.is_nil(seen[2].prompt:find('task a finished', 1, true))
    o:close()
  end)
end)
