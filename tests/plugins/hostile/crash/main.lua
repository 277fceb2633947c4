-- Raises on every event: three strikes disable it.
cs.on("boom", function() error("boom") end)
