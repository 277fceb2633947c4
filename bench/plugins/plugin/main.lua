-- The plugin of bench/plugins: counts events; reports post->handler latency.
local n = 0
cs.on("bench.tick", function() n = n + 1 end)
cs.on("bench.lat", function()
  -- ns since the event was posted, taken at handler entry (private API)
  cs.emit("bench.lat", {ns = cs._x.since_post_ns()})
end)
cs.on("bench.count", function() cs.emit("bench.count", {n = n}) end)
