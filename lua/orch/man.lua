-- orch.man: man pages from the same source as `orch help CMD`.
--
-- orch(1) and orch-CMD(1) are made from orch.cli's table of commands (usage,
-- summary, help text, options), so a man page and `orch help CMD` cannot
-- disagree; orch-plan(5) and orch-roles(5) from docs/plans.md and
-- docs/roles.md (a small Markdown subset: headings, paragraphs, lists,
-- code blocks, tables, inline code, emphasis, links). The build runs
-- scripts/man.lua (`orch -l scripts/man.lua OUTDIR SRCDIR`), which writes
-- OUTDIR/man1/*.1 and OUTDIR/man5/*.5.
--
--   man.parse_help(text) -> blocks: {kind='para'|'item'|'options', ...}
--   man.options(text)    -> { {flags='--goal TEXT', desc='...'}, ... }
--   man.command_page(cmd, version) -> roff text of orch-CMD(1)
--   man.main_page(commands, version) -> roff text of orch(1)
--   man.markdown_page(md, name, section, summary, version) -> roff text
local M = {}

-- ---------------------------------------------------------------- roff text

-- Plain text made safe for roff: backslashes, minus signs (so options can be
-- searched for and copied), and a line that would start with a control
-- character.
function M.escape(s)
  s = s:gsub('\\', '\\e'):gsub('%-', '\\-')
  return s
end

local function line_safe(s)
  if s:match("^[%.']") then return '\\&' .. s end
  return s
end

-- ---------------------------------------------------------------- help text

local function indent(l) return #l:match('^( *)') end

-- An option line: "  --goal TEXT        what to do" (the flags, two or
-- more spaces, the description) or "  --json" alone.
local function option_line(l)
  local flags, desc = l:match('^  (%-%S.-)%s%s+(%S.*)$')
  if flags then return flags, desc end
  flags = l:match('^  (%-%S.-)%s*$')
  if flags then return flags, '' end
  return nil
end

local function option_block(lines, i)
  local items = {}
  while lines[i] and lines[i] ~= '' do
    local l = lines[i]
    local flags, desc = option_line(l)
    if flags then
      items[#items + 1] = { flags = flags, desc = desc }
    elseif #items > 0 and indent(l) > 2 then
      local it = items[#items]
      it.desc = (it.desc == '' and '' or (it.desc .. ' ')) .. l:gsub('^%s+', '')
    else
      break
    end
    i = i + 1
  end
  return items, i
end

-- The help text as blocks: paragraphs, headed items ("orch plan check FILE"
-- over an indented paragraph) and option lists (after "Options:", or lines
-- that start with "  -").
function M.parse_help(text)
  local lines = {}
  for l in (text .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = l end
  local blocks, i = {}, 1
  while i <= #lines do
    local l = lines[i]
    if l == '' then
      i = i + 1
    elseif l:match('^%S.*:$') and lines[i + 1] and option_line(lines[i + 1]) then
      local items
      items, i = option_block(lines, i + 1)
      blocks[#blocks + 1] = { kind = 'options', title = l:sub(1, -2), items = items }
    elseif option_line(l) then
      local items
      items, i = option_block(lines, i)
      blocks[#blocks + 1] = { kind = 'options', items = items }
    elseif indent(l) == 0 and lines[i + 1] and indent(lines[i + 1]) > 0 and lines[i + 1] ~= ''
        and not option_line(lines[i + 1]) then
      local body = {}
      i = i + 1
      while lines[i] and lines[i] ~= '' and indent(lines[i]) > 0 do
        body[#body + 1] = lines[i]:gsub('^%s+', '')
        i = i + 1
      end
      blocks[#blocks + 1] = { kind = 'item', head = l, lines = body }
    else
      local body = {}
      while lines[i] and lines[i] ~= '' and not option_line(lines[i]) do
        body[#body + 1] = lines[i]
        i = i + 1
      end
      blocks[#blocks + 1] = { kind = 'para', lines = body }
    end
  end
  return blocks
end

-- Every option a help text documents, in order.
function M.options(text)
  local out = {}
  for _, b in ipairs(M.parse_help(text)) do
    if b.kind == 'options' then
      for _, it in ipairs(b.items) do out[#out + 1] = it end
    end
  end
  return out
end

-- "--goal TEXT" -> \fB\-\-goal\fR \fITEXT\fR ("-o, --output FILE" too).
local function roff_flags(flags)
  local parts = {}
  for word, sep in flags:gmatch('([^%s,]+)([%s,]*)') do
    if word:match('^%-') then
      local name, val = word:match('^(%-[^=]+)=(.*)$')
      if name then
        parts[#parts + 1] = '\\fB' .. M.escape(name) .. '\\fR=\\fI' .. M.escape(val) .. '\\fR'
      else
        parts[#parts + 1] = '\\fB' .. M.escape(word) .. '\\fR'
      end
    else
      parts[#parts + 1] = '\\fI' .. M.escape(word) .. '\\fR'
    end
    parts[#parts + 1] = sep
  end
  return table.concat(parts)
end

-- Help text to roff: escaped, `code` in bold.
local function help_text(s)
  local parts, pos = {}, 1
  for a, code, b in s:gmatch('()`([^`]*)`()') do
    parts[#parts + 1] = M.escape(s:sub(pos, a - 1))
    parts[#parts + 1] = '\\fB' .. M.escape(code) .. '\\fR'
    pos = b
  end
  parts[#parts + 1] = M.escape(s:sub(pos))
  return line_safe(table.concat(parts))
end

local function roff_options(out, items)
  for _, it in ipairs(items) do
    out[#out + 1] = '.TP'
    out[#out + 1] = roff_flags(it.flags)
    out[#out + 1] = help_text(it.desc)
  end
end

local function roff_para(out, lines)
  out[#out + 1] = '.PP'
  for _, l in ipairs(lines) do out[#out + 1] = help_text((l:gsub('^%s+', ''))) end
end

local function header(out, name, section, version, title)
  out[#out + 1] = ('.TH "%s" "%s" "" "orch %s" "%s"'):format(name:upper(), section,
    M.escape(version or ''), title or 'orch manual')
  -- no hyphenation, ragged right: option names and paths stay whole
  out[#out + 1] = '.nh'
  out[#out + 1] = '.ad l'
end

-- The options every command takes (orch.cli adds them).
M.GLOBAL_OPTIONS = {
  { flags = '-h, --help', desc = 'show this help and exit' },
  { flags = '--color WHEN', desc = 'colour the output: auto (the default: on a terminal, ' ..
      'unless NO_COLOR is set), always or never; also --color=WHEN' },
}

function M.command_page(c, version)
  local name = 'orch-' .. c.name
  local out = {}
  header(out, name, '1', version)
  out[#out + 1] = '.SH NAME'
  out[#out + 1] = M.escape(name) .. ' \\- ' .. M.escape(c.summary)
  out[#out + 1] = '.SH SYNOPSIS'
  out[#out + 1] = '.nf'
  -- "orch plan check FILE | orch plan --goal TEXT": one line each
  for u in (c.usage:gsub('%s+|%s+orch ', '\norch ')):gmatch('[^\n]+') do
    out[#out + 1] = line_safe(M.escape(u))
  end
  out[#out + 1] = '.fi'
  local blocks = M.parse_help(c.help or '')
  local opts = {}
  out[#out + 1] = '.SH DESCRIPTION'
  out[#out + 1] = line_safe(M.escape(c.summary:sub(1, 1):upper() .. c.summary:sub(2))) .. '.'
  for _, b in ipairs(blocks) do
    if b.kind == 'para' then
      roff_para(out, b.lines)
    elseif b.kind == 'item' then
      out[#out + 1] = '.TP'
      out[#out + 1] = '.B ' .. M.escape(b.head)
      for _, l in ipairs(b.lines) do out[#out + 1] = help_text(l) end
    else
      for _, it in ipairs(b.items) do opts[#opts + 1] = it end
    end
  end
  out[#out + 1] = '.SH OPTIONS'
  roff_options(out, opts)
  roff_options(out, M.GLOBAL_OPTIONS)
  out[#out + 1] = '.SH EXIT STATUS'
  out[#out + 1] = 'The same in every command: see'
  out[#out + 1] = '.BR orch (1).'
  out[#out + 1] = '.SH SEE ALSO'
  out[#out + 1] = '.BR orch (1),'
  out[#out + 1] = '.BR orch\\-plan (5),'
  out[#out + 1] = '.BR orch\\-roles (5)'
  return table.concat(out, '\n') .. '\n'
end

-- ---------------------------------------------------------------- orch(1)

local function tp(out, head, text)
  out[#out + 1] = '.TP'
  out[#out + 1] = head
  out[#out + 1] = line_safe(M.escape(text))
end

-- orch(1). info: {commands = {cmd...}, exit_codes = {{code, text}},
-- environment = {{name, text}}, files = {{path, text}}, intro = text}.
function M.main_page(info, version)
  local out = {}
  header(out, 'orch', '1', version)
  out[#out + 1] = '.SH NAME'
  out[#out + 1] = 'orch \\- run a plan of tasks with AI agents in parallel git worktrees'
  out[#out + 1] = '.SH SYNOPSIS'
  out[#out + 1] = '.nf'
  out[#out + 1] = '\\fBorch\\fR \\fICOMMAND\\fR [\\fIARGS\\fR...]'
  out[#out + 1] = '\\fBorch\\fR \\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR'
  out[#out + 1] = '\\fBorch \\-l\\fR \\fIFILE.lua\\fR [\\fIARGS\\fR...]'
  out[#out + 1] = '.fi'
  out[#out + 1] = '.SH DESCRIPTION'
  for para in (info.intro .. '\n\n'):gmatch('(.-)\n\n') do
    if para ~= '' then roff_para(out, { para }) end
  end
  out[#out + 1] = '.SH COMMANDS'
  for _, c in ipairs(info.commands) do
    tp(out, '.BR "orch\\-' .. M.escape(c.name) .. '" (1)', c.summary)
  end
  out[#out + 1] = '.SH OPTIONS'
  out[#out + 1] = 'Every command takes these:'
  roff_options(out, M.GLOBAL_OPTIONS)
  roff_options(out, {
    { flags = '--version', desc = "print orch's version and exit" },
    { flags = '-l FILE', desc = 'run a Lua file inside the orch host (its loop, orch.core); ' ..
        'the way busted specs and scripts/man.lua run' },
  })
  out[#out + 1] = '.SH EXIT STATUS'
  for _, e in ipairs(info.exit_codes) do tp(out, '.B ' .. e[1], e[2]) end
  out[#out + 1] = '.SH ENVIRONMENT'
  for _, e in ipairs(info.environment) do tp(out, '.B ' .. M.escape(e[1]), e[2]) end
  out[#out + 1] = '.SH FILES'
  for _, e in ipairs(info.files) do tp(out, '.I ' .. M.escape(e[1]), e[2]) end
  out[#out + 1] = '.SH SEE ALSO'
  local see = {}
  for _, c in ipairs(info.commands) do see[#see + 1] = '.BR orch\\-' .. M.escape(c.name) .. ' (1),' end
  see[#see + 1] = '.BR orch\\-plan (5),'
  see[#see + 1] = '.BR orch\\-roles (5),'
  see[#see + 1] = '.BR git (1)'
  for _, l in ipairs(see) do out[#out + 1] = l end
  out[#out + 1] = '.PP'
  out[#out + 1] = 'The user guide: /usr/share/doc/orch/ (or docs/ in the source tree).'
  return table.concat(out, '\n') .. '\n'
end

-- ---------------------------------------------------------------- Markdown

-- Inline Markdown to roff: `code` bold, **strong** bold, *em* italic,
-- [text](url) as text. Code spans are escaped but not otherwise read.
function M.inline(s)
  local parts = {}
  local pos = 1
  while true do
    local a, b, code = s:find('`([^`]*)`', pos)
    local text = s:sub(pos, (a or 0) - 1)
    if not a then text = s:sub(pos) end
    text = text:gsub('%[([^%]]*)%]%(([^%)]*)%)', '%1')
    text = M.escape(text)
    text = text:gsub('%*%*(.-)%*%*', '\\fB%1\\fR'):gsub('%*([^%*%s][^%*]-)%*', '\\fI%1\\fR')
    parts[#parts + 1] = text
    if not a then break end
    parts[#parts + 1] = '\\fB' .. M.escape(code) .. '\\fR'
    pos = b + 1
  end
  return table.concat(parts)
end

local function table_row(l)
  local cells = {}
  local body = l:gsub('^%s*|', ''):gsub('|%s*$', '')
  -- a | inside `code` is not a separator
  local cur, in_code = {}, false
  for ch in body:gmatch('.') do
    if ch == '`' then in_code = not in_code end
    if ch == '|' and not in_code then
      cells[#cells + 1] = table.concat(cur):gsub('^%s+', ''):gsub('%s+$', '')
      cur = {}
    else
      cur[#cur + 1] = ch
    end
  end
  cells[#cells + 1] = table.concat(cur):gsub('^%s+', ''):gsub('%s+$', '')
  return cells
end

-- A table as a list (tables do not fit a terminal page): each row's first
-- cell as the tag, its "meaning" cell (else the second) as the text, the
-- others as "header: cell".
local function md_table(out, rows)
  local head = rows[1]
  local main = 2
  for k, h in ipairs(head) do if h:lower() == 'meaning' then main = k end end
  for r = 2, #rows do
    local cells = rows[r]
    out[#out + 1] = '.TP'
    out[#out + 1] = line_safe(M.inline(cells[1] or ''))
    out[#out + 1] = line_safe(M.inline(cells[main] or ''))
    for k = 2, #cells do
      local c = cells[k]
      if k ~= main and c ~= '' and c ~= '—' and c ~= '-' then
        out[#out + 1] = '.br'
        local h = head[k] or ''
        out[#out + 1] = line_safe((h ~= '' and (M.inline(h) .. ': ') or '') .. M.inline(c))
      end
    end
  end
end

-- A Markdown document as a man page NAME(SECTION). The first "# " heading is
-- dropped (the NAME line says it); "## " are sections, "### " subsections.
function M.markdown_page(md, name, section, summary, version)
  local out = {}
  header(out, name, section, version)
  out[#out + 1] = '.SH NAME'
  out[#out + 1] = M.escape(name) .. ' \\- ' .. M.escape(summary)
  local lines = {}
  for l in (md .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = l end
  local i, seen_section = 1, false
  local function para_start()
    if not seen_section then
      out[#out + 1] = '.SH DESCRIPTION'
      seen_section = true
    end
  end
  while i <= #lines do
    local l = lines[i]
    if l:match('^# ') then
      i = i + 1
    elseif l:match('^## ') then
      out[#out + 1] = '.SH "' .. M.escape((l:sub(4):gsub('[`"*]', '')):upper()) .. '"'
      seen_section = true
      i = i + 1
    elseif l:match('^###+ ') then
      para_start()
      out[#out + 1] = '.SS "' .. M.escape((l:gsub('^#+ ', ''):gsub('[`"*]', ''))) .. '"'
      i = i + 1
    elseif l:match('^```') then
      para_start()
      out[#out + 1] = '.PP'
      out[#out + 1] = '.RS 4'
      out[#out + 1] = '.nf'
      i = i + 1
      while lines[i] and not lines[i]:match('^```') do
        out[#out + 1] = line_safe(M.escape(lines[i]))
        i = i + 1
      end
      out[#out + 1] = '.fi'
      out[#out + 1] = '.RE'
      i = i + 1
    elseif l:match('^%s*|') then
      para_start()
      local rows = {}
      while lines[i] and lines[i]:match('^%s*|') do
        if not lines[i]:match('^%s*|[%s%-:|]+|%s*$') then rows[#rows + 1] = table_row(lines[i]) end
        i = i + 1
      end
      if #rows > 0 then md_table(out, rows) end
    elseif l:match('^%s*[-*] ') or l:match('^%s*%d+%. ') then
      para_start()
      local bullet = l:match('^%s*(%d+)%. ')
      out[#out + 1] = bullet and ('.IP ' .. bullet .. '. 4') or '.IP \\(bu 2'
      local text = { (l:gsub('^%s*[-*] ', ''):gsub('^%s*%d+%. ', '')) }
      i = i + 1
      while lines[i] and lines[i] ~= '' and lines[i]:match('^%s+%S')
          and not lines[i]:match('^%s*[-*] ') and not lines[i]:match('^%s*%d+%. ') do
        text[#text + 1] = (lines[i]:gsub('^%s+', ''))
        i = i + 1
      end
      out[#out + 1] = line_safe(M.inline(table.concat(text, ' ')))
    elseif l:match('^%s*$') then
      i = i + 1
    else
      para_start()
      out[#out + 1] = '.PP'
      local text = {}
      while lines[i] and not lines[i]:match('^%s*$') and not lines[i]:match('^#')
          and not lines[i]:match('^```') and not lines[i]:match('^%s*|')
          and not lines[i]:match('^%s*[-*] ') do
        text[#text + 1] = (lines[i]:gsub('^%s+', ''))
        i = i + 1
      end
      out[#out + 1] = line_safe(M.inline(table.concat(text, ' ')))
    end
  end
  return table.concat(out, '\n') .. '\n'
end

return M
