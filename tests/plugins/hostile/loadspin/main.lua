-- runs forever at load: killed at load_ms
while true do end
