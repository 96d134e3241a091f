-- luacheck configuration for orch's Lua (lua/, spec/, bench/, tests/).
std = 'luajit'
self = false -- methods of the default implementations may ignore self
max_line_length = 120
files['spec'] = { std = '+busted' }
files['spec/runner.lua'] = { globals = { 'arg' } }
files['bench'] = { globals = { 'arg' } }
