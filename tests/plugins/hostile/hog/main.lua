-- Allocates without bound; the allocator refuses past mem_limit.
local function hog()
  local t = {}
  local i = 0
  while true do
    i = i + 1
    t[i] = string.rep("x", 4096) .. i
  end
end
cs.on("hog", hog)
cs.on("hog_pcall", function()
  local ok, err = pcall(hog)
  cs.emit("hog.caught", {ok = ok, err = tostring(err)})
end)
cs.on("hog.ping", function() cs.emit("hog.pong", {}) end)
