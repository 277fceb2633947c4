-- wrk script for bench/tiles: walks a list of tile paths, one connection per
-- wrk thread (run wrk with -tN -cN).
--
-- Configured through the environment (wrk's setup/done phases get no
-- arguments):
--   WALK_FILE     file with one request path per line
--   WALK_MODE     "hot":  every thread cycles over the whole list until -d ends
--                 "cold": each path is requested once, by whichever thread is
--                         free next; the run ends when the last response is in
--   WALK_THREADS  wrk -t (= -c)
--   WALK_AUTH     bearer token ("" for none)
--   WALK_DONEDIR  cold mode: an empty folder for "thread finished" markers
--   WALK_IDLE     cold mode: path of the idle request (e.g. the DZI)
--
-- Cold work queue: setup() writes the list's indices, 4 bytes each, into a
-- pipe; each thread read()s the next index from it (non-blocking; pipe reads
-- take distinct bytes), so all threads stay busy until the list is used up
-- and no path is requested twice.
--
-- Latency: wrk calls delay() before every request on a connection (once when
-- it opens, then once after each response), and request() right after the
-- delay. With one connection per thread, the time from request() to the next
-- delay() is one request's latency, measured here without wrk's coordinated-
-- omission correction (which, in a closed loop of a few connections, turns
-- one 30 ms stall among 20,000 tiles of 0.1 ms into a 30 ms p99). No
-- response() callback: wrk then never copies bodies into Lua.
--
-- End of a cold walk: a thread that finds the queue empty with its last
-- response in marks itself finished and, until every thread is, sends an
-- idle request (WALK_IDLE; not counted, no latency kept) every millisecond:
-- an idle open connection would pin a gunicorn sync worker in recv() while
-- other connections' tiles wait in its listen queue (wrk reconnects at once
-- after a "Connection: close"). The last thread to finish sends SIGINT to
-- wrk's main thread, which otherwise sleeps for the whole -d duration.
--
-- done() prints one line: "WALKJSON {...}".

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } walk_timespec;
int clock_gettime(int clk, walk_timespec *ts);
int getpid(void);
int tgkill(int tgid, int tid, int sig);
int pipe(int fds[2]);
int fcntl(int fd, int cmd, ...);
long write(int fd, const void *buf, unsigned long n);
long read(int fd, void *buf, unsigned long n);
int close(int fd);
]]
local F_SETFL, F_GETFL, O_NONBLOCK, F_SETPIPE_SZ = 4, 3, 2048, 1031

local ts = ffi.new("walk_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local mode = os.getenv("WALK_MODE") or "hot"
local nthreads = tonumber(os.getenv("WALK_THREADS") or "1")

local function read_list()
  local list = {}
  for line in io.lines(os.getenv("WALK_FILE")) do
    if line ~= "" then list[#list + 1] = line end
  end
  return list
end

-- setup/done phase (wrk's main Lua state) ----------------------------------

local threads = {}
local main_queue_fd = nil

local function make_queue()
  local n = #read_list()
  local fds = ffi.new("int[2]")
  assert(ffi.C.pipe(fds) == 0, "pipe failed")
  local bytes = 4 * n
  if bytes > 65536 then
    assert(ffi.C.fcntl(fds[1], F_SETPIPE_SZ, ffi.cast("int", bytes)) >= bytes,
      "pipe too small for the list (raise /proc/sys/fs/pipe-max-size)")
  end
  local buf = ffi.new("int32_t[?]", math.max(n, 1))
  for i = 0, n - 1 do buf[i] = i + 1 end
  assert(ffi.C.write(fds[1], buf, bytes) == bytes, "pipe write failed")
  ffi.C.close(fds[1]) -- empty queue then reads as EOF
  local fl = ffi.C.fcntl(fds[0], F_GETFL)
  ffi.C.fcntl(fds[0], F_SETFL, ffi.cast("int", bit.bor(fl, O_NONBLOCK)))
  return fds[0]
end

function setup(thread)
  if mode == "cold" and main_queue_fd == nil then main_queue_fd = make_queue() end
  thread:set("tid", #threads)
  thread:set("queue_fd", main_queue_fd or -1)
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
queue_fd = -1
t0, t1 = 0, 0
issued, completed, lost, idle = 0, 0, 0, 0
finished = false
hist = {}
local reqs, n, idx = {}, 0, nil
local started, sent_at, sent_idle = false, nil, false
local exhausted, stopped = false, false
local idle_req = nil
local qbuf = ffi.new("int32_t[1]")

local pre, post = nil, nil -- a request is pre .. path .. post

function init(args)
  -- Keep init cheap: wrk runs every thread's init() in its main thread
  -- before starting the next thread, so a slow one would let the first
  -- threads walk alone (and, were the walk over before wrk starts its
  -- clock, wrk's latency correction divides by zero and spins).
  local headers = {}
  local auth = os.getenv("WALK_AUTH") or ""
  if auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
  local tmpl = wrk.format("GET", "/@WALKPATH@", headers)
  local at = string.find(tmpl, "/@WALKPATH@", 1, true)
  pre, post = string.sub(tmpl, 1, at - 1), string.sub(tmpl, at + string.len("/@WALKPATH@"))
  idle_req = pre .. (os.getenv("WALK_IDLE") or "/") .. post
end

local function load_list()
  reqs = read_list() -- paths; requests are made as they are sent
  n = #reqs
  if mode == "hot" then
    idx = tid % math.max(n, 1)
    for i = 1, n do reqs[i] = pre .. reqs[i] .. post end
  end
end

local function next_index()
  if exhausted then return nil end
  local got = ffi.C.read(queue_fd, qbuf, 4)
  if got == 4 then return qbuf[0] end
  exhausted = true -- EOF (0) or EAGAIN (-1): the queue is empty
  return nil
end

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

local function stop_all()
  stopped = true
  wrk.thread:stop()
  local pid = ffi.C.getpid()
  ffi.C.tgkill(pid, pid, 2) -- SIGINT to wrk's main thread: end the run now
end

function delay()
  if not started then
    -- first call, as the connection opens: load the list here, in this
    -- thread, then hold the first request back 50 ms so that every thread
    -- is up and wrk's clock runs before the walk starts
    started = true
    load_list()
    return 50
  end
  local t = now()
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
  if mode == "hot" then return 0 end
  if stopped then return 1000000000 end -- park: the run is over
  if not exhausted then
    idx = next_index()
    if idx then return 0 end
  end
  -- the queue is empty and this thread's last response is in
  if not finished then mark_finished() end
  if all_finished() then
    stop_all()
    return 1000000000
  end
  return 1 -- wait for the others: an idle request each millisecond
end

function request()
  -- wrk calls request() once before the run to check it: use up no path
  if not started then return idle_req end
  if t0 == 0 then t0 = now() end
  if sent_at and not sent_idle then
    -- no delay() since the last request: the connection failed and wrk
    -- reconnected and asks again; that request got no response
    lost = lost + 1
    if mode == "cold" then idx = next_index() end
  end
  sent_at = now()
  if mode == "hot" then
    sent_idle = false
    idx = idx % n + 1
    issued = issued + 1
    return reqs[idx]
  end
  if idx == nil and not exhausted then idx = next_index() end -- first request
  if idx and not exhausted then
    sent_idle = false
    issued = issued + 1
    local r = pre .. reqs[idx] .. post
    idx = nil
    return r
  end
  sent_idle = true
  return idle_req
end
