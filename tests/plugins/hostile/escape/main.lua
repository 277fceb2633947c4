-- Each case tries to leave the sandbox; the host must refuse every one with
-- an error (reported as last_error). Reaching cs.emit("escape.escaped")
-- means the case got through.
local cases = {
  os_execute = function() return os.execute("touch /tmp/cs-escaped") end,
  io_open = function() return io.open("/etc/passwd") end,
  package = function() return package.loadlib("libc.so.6", "system") end,
  debug = function() return debug.getregistry() end,
  require_c = function() return require("socket.core") end,
  require_os = function() return require("os") end,
  require_rel = function() return require("../escape/main") end,
  require_abs = function() return require("/etc/passwd") end,
  dump = function() return string.dump(function() end) end,
  load_binary = function()
    local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86" .. string.rep("\0", 40))
    if not f then error(err) end
    return f()
  end,
  load_binary_b = function()
    local f, err = load("\27LuaT\0", "x", "b")
    if not f then error(err) end
    return f()
  end,
  dofile = function() return dofile("/etc/passwd") end,
  loadfile = function() return loadfile("/etc/passwd") end,
  gc = function() collectgarbage("stop") end,
  -- finalizers run with hooks off: a looping one could never be killed
  gc_finalizer = function() setmetatable({}, {__gc = function() while true do end end}) end,
  rawset_G = function() rawset(_G, "leak", 1) end,
  rawset_cs = function() rawset(cs, "leak", 1) end,
  rawset_cs_log = function() rawset(cs.log, "info", print) end,
  set_G = function() _G.leak = 1 end,
  set_global = function() load("leak = 1")() end,
  set_cs = function() cs.emit = nil end,
  set_cs_annot = function() cs.annot.create = nil end,
  set_string = function() string.upper = nil end,
  string_mt = function() getmetatable("").__index = {} end,
  setmetatable_G = function() setmetatable(_G, {}) end,
  setmetatable_cs = function() setmetatable(cs, {}) end,
  late_on = function() cs.on("x", function() end) end,
  emit_spoof = function() cs.emit("annotation.created", {}) end,
}

cs.on("escape.try", function(d)
  cases[d.case]()
  cs.emit("escape.escaped", {case = d.case})
end)

cs.on("escape.ping", function()
  cs.emit("escape.pong", {})
end)
