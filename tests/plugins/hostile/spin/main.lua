-- Handlers that never return; the host kills each within handler_ms.
cs.on("spin", function() while true do end end)
cs.on("spin_pcall", function()
  while true do
    pcall(function() while true do end end)
  end
end)
cs.on("spin_co", function()
  while true do
    coroutine.resume(coroutine.create(function() while true do end end))
  end
end)
cs.on("spin.ping", function() cs.emit("spin.pong", {}) end)
