-- luacheck for plugins: the sandbox's Lua 5.4 with `cs` read-only.
std = "lua54"
read_globals = {"cs"}
-- lifecycle callbacks are the only globals a plugin defines
globals = {"on_start", "on_stop", "on_save", "on_config"}
max_line_length = 100
files["**/*_spec.lua"] = {std = "+busted", read_globals = {"h"}}
