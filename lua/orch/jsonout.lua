-- orch.jsonout: what the --json options print, in the shapes docs/json.md
-- documents. Every object carries "version" (M.VERSION): a field may be
-- added within a version; removing or changing one bumps it.
--
--   jsonout.plan_check(file, plan, errs) -> text (one object and a newline)
--   jsonout.log_line(run, task, ev)      -> text (one object and a newline)
--   jsonout.doctor(report)               -> text
--   jsonout.encode(v)                    -> JSON (sorted keys; see below)
local cjson = require('cjson')

local M = {}

local status = require('orch.status')

M.VERSION = status.JSON_VERSION

M.array_mt = status.array_mt

-- JSON with sorted keys; tables with M.array_mt stay arrays when empty.
function M.encode(v) return status.encode(v) end

local function array(t)
  return setmetatable(t or {}, M.array_mt)
end

local function null(v)
  if v == nil then return cjson.null end
  return v
end

-- `orch plan check FILE --json`.
function M.plan_check(file, plan, errs)
  local out = { version = M.VERSION, file = file, valid = plan ~= nil, errors = array(),
                tasks = array(), goal = cjson.null }
  if plan then
    out.goal = null(plan.goal)
    for _, t in ipairs(plan.tasks) do out.tasks[#out.tasks + 1] = t.id end
  else
    for _, e in ipairs(errs or {}) do
      out.errors[#out.errors + 1] = {
        file = e.file or file, line = (e.line and e.line > 0) and e.line or cjson.null,
        message = e.msg or tostring(e),
      }
    end
  end
  return M.encode(out) .. '\n'
end

-- One line of `orch logs RUN TASK --json`: an event row of the store.
function M.log_line(run_id, task_id, ev)
  return M.encode({
    version = M.VERSION, run = run_id, task = task_id, id = ev.id,
    attempt = null(ev.attempt), t = status.iso(ev.t), stream = ev.stream,
    text = ev.data or '',
  }) .. '\n'
end

-- `orch doctor --json`: the report of orch.doctor.collect with its roles,
-- lists kept lists when empty.
function M.doctor(report)
  local backends = array()
  for i, e in ipairs(report.backends or {}) do
    local b = {
      name = e.name, usable = e.usable == true, todo = array(e.todo),
      key = null(e.key), http = e.http == true, message = null(e.message),
      endpoint = {
        url = null(e.endpoint and e.endpoint.url),
        reachable = null(e.endpoint and e.endpoint.reachable),
        answer = null(e.endpoint and e.endpoint.answer),
        error = null(e.endpoint and e.endpoint.error),
      },
      binary = cjson.null,
    }
    if e.binary then
      b.binary = { found = e.binary.found == true, path = null(e.binary.path),
                   version = null(e.binary.version), note = null(e.binary.note) }
    end
    backends[i] = b
  end
  local roles = array()
  for i, r in ipairs(report.roles or {}) do
    roles[i] = { name = r.name, backend = r.backend, configured = r.configured }
  end
  return M.encode({ version = M.VERSION, backends = backends, roles = roles }) .. '\n'
end

return M
