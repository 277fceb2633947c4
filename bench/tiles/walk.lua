-- wrk script for bench/tiles: walks a list of tile paths, one connection per
-- wrk thread (run wrk with -tN -cN).
--
-- Configured through the environment (wrk's setup/done phases get no
-- arguments):
--   WALK_FILE     file with one request path per line
--   WALK_MODE     "hot":  every thread cycles over the whole list until -d ends
--                 "cold": thread k of N requests paths k, k+N, k+2N, ... once
--                         each and stops when its last response is in; no path
--                         is requested twice
--   WALK_THREADS  wrk -t (= -c)
--   WALK_AUTH     bearer token ("" for none)
--   WALK_DONEDIR  cold mode: an empty folder for "thread finished" markers
--
-- Latency: wrk calls delay() before every request on a connection (once when
-- it opens, then once after each response), and request() right after the
-- delay. With one connection per thread, the time from request() to the next
-- delay() is one request's latency, measured here without wrk's coordinated-
-- omission correction (which, in a closed loop of a few connections, turns
-- one 30 ms stall among 20,000 tiles of 0.1 ms into a 30 ms p99). No
-- response() callback: wrk then never copies bodies into Lua.
--
-- A cold thread that has its last response marks itself finished and, until
-- every thread is, keeps its connection busy with WALK_IDLE requests (cheap,
-- not counted as tiles, no latency recorded): an idle open connection would
-- pin a gunicorn sync worker in recv() while other connections' tiles wait
-- in its listen queue (wrk reconnects at once after a "Connection: close").
-- The last thread to finish sends SIGINT to wrk's main thread, which
-- otherwise sleeps for the whole -d duration.
--   WALK_IDLE     cold mode: path of the idle request (e.g. the DZI)
--
-- done() prints one line: "WALKJSON {...}".

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } walk_timespec;
int clock_gettime(int clk, walk_timespec *ts);
int getpid(void);
int tgkill(int tgid, int tid, int sig);
]]

local ts = ffi.new("walk_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local mode = os.getenv("WALK_MODE") or "hot"
local nthreads = tonumber(os.getenv("WALK_THREADS") or "1")

-- setup/done phase (wrk's main Lua state) ----------------------------------

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local t0, t1 = nil, nil
  local completed, issued, lost, finished, idle = 0, 0, 0, 0, 0
  local hist, keys, count, sum = {}, {}, 0, 0
  for _, th in ipairs(threads) do
    local a, b = th:get("t0"), th:get("t1")
    if a and a > 0 and (t0 == nil or a < t0) then t0 = a end
    if b and b > 0 and (t1 == nil or b > t1) then t1 = b end
    completed = completed + (th:get("completed") or 0)
    issued = issued + (th:get("issued") or 0)
    lost = lost + (th:get("lost") or 0)
    idle = idle + (th:get("idle") or 0)
    if th:get("finished") then finished = finished + 1 end
    for us, c in pairs(th:get("hist") or {}) do
      if hist[us] == nil then
        hist[us] = 0
        keys[#keys + 1] = us
      end
      hist[us] = hist[us] + c
      count = count + c
      sum = sum + us * c
    end
  end
  table.sort(keys)
  local function pct(p)
    local rank = math.max(1, math.ceil(p / 100 * count))
    local acc = 0
    for _, us in ipairs(keys) do
      acc = acc + hist[us]
      if acc >= rank then return us end
    end
    return 0
  end
  local e = summary.errors
  local f = {
    mode = '"' .. mode .. '"',
    requests = summary.requests,
    duration_us = summary.duration,
    bytes = summary.bytes,
    err_connect = e.connect, err_read = e.read, err_write = e.write,
    err_status = e.status, err_timeout = e.timeout,
    walk_completed = completed, walk_issued = issued, walk_lost = lost, walk_idle = idle,
    threads_finished = finished,
    walk_seconds = (t0 and t1) and string.format("%.6f", t1 - t0) or "null",
    lat_samples = count,
    lat_p50_us = pct(50), lat_p90_us = pct(90), lat_p99_us = pct(99),
    lat_max_us = keys[#keys] or 0,
    lat_mean_us = string.format("%.1f", count > 0 and sum / count or 0),
    wrk_p50_us = latency:percentile(50), wrk_p99_us = latency:percentile(99),
  }
  local parts = {}
  for k, v in pairs(f) do parts[#parts + 1] = '"' .. k .. '":' .. tostring(v) end
  io.write("WALKJSON {" .. table.concat(parts, ",") .. "}\n")
end

-- running phase (one Lua state per wrk thread) ------------------------------

tid = 0
t0, t1 = 0, 0
issued, completed, lost = 0, 0, 0
finished = false
hist = {}
local reqs, n, idx = {}, 0, 0
local started, sent_at = false, nil

function init(args)
  local headers = {}
  local auth = os.getenv("WALK_AUTH") or ""
  if auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
  local i = 0
  for line in io.lines(os.getenv("WALK_FILE")) do
    if line ~= "" then
      if mode == "hot" or i % nthreads == tid then
        reqs[#reqs + 1] = wrk.format("GET", line, headers)
      end
      i = i + 1
    end
  end
  n = #reqs
  if mode == "hot" then idx = tid % math.max(n, 1) end
end

local idle_req = nil
local sent_idle = false
idle = 0

local function all_finished()
  local dir = os.getenv("WALK_DONEDIR")
  for k = 0, nthreads - 1 do
    local g = io.open(dir .. "/" .. k, "r")
    if not g then return false end
    g:close()
  end
  return true
end

local function mark_finished()
  finished = true
  local f = io.open(os.getenv("WALK_DONEDIR") .. "/" .. tid, "w")
  if f then f:write("1\n"); f:close() end
end

local stopped = false
local function stop_all()
  stopped = true
  wrk.thread:stop()
  local pid = ffi.C.getpid()
  ffi.C.tgkill(pid, pid, 2) -- SIGINT to wrk's main thread: end the run now
end

function delay()
  local t = now()
  if not started then
    started = true
    t0 = t
  end
  if sent_at then
    if sent_idle then
      idle = idle + 1
    else
      local us = math.floor((t - sent_at) * 1e6 + 0.5)
      hist[us] = (hist[us] or 0) + 1
      completed = completed + 1
      t1 = t
    end
    sent_at = nil
  end
  if mode == "hot" or idx < n then return 0 end
  if stopped then return 1000000000 end
  if not finished and completed + lost >= n then mark_finished() end
  if finished and all_finished() then
    stop_all()
    return 1000000000 -- park: the run is over
  end
  return 0 -- still walking, or waiting for the others: next is an idle request
end

function request()
  -- wrk calls request() once before the run to check it: use up no path
  if not started then return reqs[1] end
  if sent_at and not sent_idle then
    -- no delay() since the last request: the connection failed and wrk
    -- reconnected and asks again; that request got no response
    lost = lost + 1
  end
  sent_idle = false
  if mode == "hot" then
    idx = idx % n + 1
  elseif idx < n then
    idx = idx + 1
  else
    -- cold and walked: an idle request while the other threads finish
    if idle_req == nil then
      local headers = {}
      local auth = os.getenv("WALK_AUTH") or ""
      if auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
      idle_req = wrk.format("GET", os.getenv("WALK_IDLE") or "/", headers)
    end
    sent_idle = true
    sent_at = now()
    return idle_req
  end
  issued = issued + 1
  sent_at = now()
  return reqs[idx]
end
