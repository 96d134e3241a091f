-- The fault soak (bench/fault_soak.lua, which also times it): 4 agents on
-- the in-process openai backend over ~50 model requests with a seeded mix
-- of 429s, 500s, hung requests and cut streams. What must hold: every task
-- ends done, or failed with a reported reason; nothing is left running; no
-- file of a cut reply exists; the database passes PRAGMA integrity_check.
local soak = require('bench.fault_soak')
local H = require('spec.helpers')

describe('the fault soak', function()
  for _, seed in ipairs({ 17, 4242 }) do
    it('seed ' .. seed .. ': every task ends done or with its reason, nothing left running, db intact', function()
      local dir = H.tmpdir()
      local fig = soak.soak({ tasks = 12, rate = 0.25, seed = seed, dir = dir, timeout = 240000 })
      assert.is_not_nil(fig.code, 'the run did not end')
      assert.is_true(fig.faults > 0, 'no fault was injected')
      assert.is_true(fig.turns >= 48)
      assert.equal(0, fig.running)
      for _, t in ipairs(fig.tasks) do
        assert.is_true(t.status == 'done' or (t.status == 'failed' and t.error ~= nil and t.error ~= ''),
          t.id .. ': ' .. tostring(t.status) .. ' ' .. tostring(t.error))
        assert.is_nil(H.read(dir .. '/wt/' .. t.id .. '/cut.txt'), t.id .. ': a cut reply was applied')
        if t.status == 'done' then
          for i = 1, 3 do assert.equal(i .. '\n', H.read(('%s/wt/%s/f%d.txt'):format(dir, t.id, i))) end
        end
      end
      local all_done = true
      for _, t in ipairs(fig.tasks) do all_done = all_done and t.status == 'done' end
      -- each fault ends one turn, which is retried
      if all_done then assert.equal(fig.faults, fig.retries) else assert.is_true(fig.retries > 0) end
      assert.equal('ok', fig.integrity)
      H.rm(dir)
    end)
  end
end)
