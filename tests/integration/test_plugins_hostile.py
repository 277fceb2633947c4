"""Hostile plugins on the real server.

Loaded beside the real plugins/ folder (the annotations plugin):
- loop:   spins forever on every event, inside its own pcall too;
- hog:    allocates without bound;
- crash:  errors on every event;
- escape: tries os.execute, io.open, require of a C module and of a path
          outside its folder, load of bytecode, debug, string.dump,
          collectgarbage("stop"), rewriting _G, cs, cs.annot, the string
          metatable, forging another family's events, and reports what
          happened through cs.emit.
Each is contained and reported (GET /plugins: strikes, state, last error);
after repeated strikes it is disabled. While they are attacked (events
every 50 ms, the disabled ones reloaded as soon as they fall), the tile
server's p99 latency under the same wrk load stays within 2x (or 1 ms) of its
baseline, and the annotations plugin keeps labelling new annotations.
Run with Debian's /usr/bin/python3.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import wsclient  # noqa: E402
from cshelp import SRC, TESTDATA, WORK, Checker, Server  # noqa: E402

SLIDE = os.path.join(TESTDATA, "wsi", "CMU-1-Small-Region.svs")
SID = "CMU-1-Small-Region"
c = Checker()

MANIFEST = """return {name = "%s", version = "0.0.1", api = 1, needs = {"annot.write"},
        events = {"annotation.created"}}
"""

LOOP = """
cs.on("annotation.created", function()
  for _ = 1, 1e15 do pcall(function() while true do end end) end
end)
"""

HOG = """
-- 24 MiB more on every event, kept, then 1 MiB more at a time until the
-- 64 MiB cap refuses. Strings built from 4 KiB pages reach the cap in a few
-- milliseconds even under ASan, so what stops the hog is the memory cap, not
-- the 20 ms deadline (a byte-by-byte string.rep took longer than that there).
local page = string.rep("x", 4096)
local keep = {}
cs.on("annotation.created", function()
  for _ = 1, 3 do keep[#keep + 1] = string.rep(page, 2048) .. #keep end
  pcall(function() while true do keep[#keep + 1] = string.rep(page, 256) .. #keep end end)
end)
"""

CRASH = """
cs.on("annotation.created", function(ev) error("crash plugin: boom on " .. tostring(ev.id)) end)
"""

ESCAPE = r"""
local function try(what, fn)
  local ok, err = pcall(fn)
  cs.emit("escape.result", {what = what, escaped = ok and true or false,
                            err = tostring(err)})
end
local PWN = "@PWN@"
cs.on("annotation.created", function()
  try("os.execute", function() return os.execute("touch " .. PWN) end)
  try("io.open", function() return assert(io.open("/etc/passwd")):read("a") end)
  try("require C module", function() return require("socket.core") end)
  try("require outside", function() return require("../../../../etc/passwd") end)
  try("package.loadlib", function() return package.loadlib("libc.so.6", "system") end)
  try("load bytecode", function()
    return assert(load("\27LuaT\0\25\147\13\10\26\10\4\8\8xV\0\0\0\0\0\0\0\0\0\0\0(w@", "x", "b"))
  end)
  try("load binary as text", function() return assert(load("\27Lua junk")) end)
  try("string.dump", function() return string.dump(function() end) end)
  try("debug", function() return debug.getregistry() end)
  try("dofile", function() return dofile("/etc/passwd") end)
  try("collectgarbage stop", function() return collectgarbage("stop") end)
  try("rewrite _G", function() _G.cs = nil; assert(cs == nil) end)
  try("rawset _G", function() rawset(_G, "print", nil); assert(print == nil) end)
  try("rewrite cs", function() cs.annot = nil; assert(cs.annot == nil) end)
  try("rewrite cs.annot", function() cs.annot.create = nil; assert(cs.annot.create == nil) end)
  try("setmetatable _G", function() setmetatable(_G, nil) end)
  try("string metatable", function() getmetatable("").__index = {} end)
  try("forge annotation event", function() cs.emit("annotation.deleted", {id = "x"}) end)
end)
"""


def make_plugins(root):
    shutil.rmtree(root, ignore_errors=True)
    pwn = os.path.join(root, "PWNED")
    for name, main in (("loop", LOOP), ("hog", HOG), ("crash", CRASH),
                       ("escape", ESCAPE.replace("@PWN@", pwn))):
        d = os.path.join(root, name)
        os.makedirs(d)
        open(os.path.join(d, "manifest.lua"), "w").write(MANIFEST % name)
        open(os.path.join(d, "main.lua"), "w").write(main)
    return pwn


def call(srv, method, path, body=None):
    req = urllib.request.Request(srv.base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + srv.token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def plugins(srv):
    return {p["name"]: p for p in call(srv, "GET", "/plugins")[1]}


def tile_paths(srv):
    dzi = srv.get("/slides/%s.dzi" % SID)[2].decode()
    w, h = (int(v) for v in re.search(r'Width="(\d+)" Height="(\d+)"', dzi).groups())
    ts = int(re.search(r'TileSize="(\d+)"', dzi).group(1))
    top = max((max(w, h) - 1).bit_length(), 0)
    out = []
    for lv in (top, top - 1, top - 2):
        sw, sh = -(-w // 2 ** (top - lv)), -(-h // 2 ** (top - lv))
        for r in range(-(-sh // ts)):
            for col in range(-(-sw // ts)):
                out.append("/slides/%s_files/%d/%d_%d.jpeg" % (SID, lv, col, r))
    return out


def wrk_p99(srv, paths, seconds=4):
    """One wrk run: (p99 ms, requests, {error kind: count}).

    wrk's own "timeout" count compares gettimeofday() readings, so a step
    of the wall clock turns every request in flight into a timeout; walk.lua
    times each request with CLOCK_MONOTONIC, and a request over wrk's 10 s
    --timeout there is what counts. When anything fails, the server's lines
    from this run (error responses and microhttpd's own messages, logged
    with CS_LOG net=v) come back under "server" to say why.
    """
    listf = os.path.join(WORK, "hostile-walk-%d.txt" % os.getpid())
    open(listf, "w").write("\n".join(paths) + "\n")
    env = dict(os.environ, WALK_FILE=listf, WALK_MODE="hot", WALK_THREADS="2",
               WALK_AUTH=srv.token, WALK_DONEDIR=WORK, WALK_IDLE="/slides/%s.dzi" % SID)
    mark = os.path.getsize(srv.log.name)
    p = subprocess.run(["wrk", "-t2", "-c2", "-d%ds" % seconds, "--timeout", "10s", "-s",
                        os.path.join(SRC, "bench", "tiles", "walk.lua"), srv.base + "/"],
                       env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("WALKJSON ")]
    assert p.returncode == 0 and line, (p.stdout[-1000:], p.stderr[-1000:])
    w = json.loads(line[0][len("WALKJSON "):])
    errors = {k[4:]: w[k] for k in ("err_connect", "err_read", "err_write", "err_status") if w[k]}
    if w["lat_max_us"] > 10e6:
        errors["timeout"] = "max %.1f s" % (w["lat_max_us"] / 1e6)
    if errors:
        with open(srv.log.name, "rb") as f:
            f.seek(mark)
            errors["server"] = f.read().decode(errors="replace").splitlines()[-8:]
    return w["lat_p99_us"] / 1000.0, w["requests"], errors


class Attack:
    """Creates an annotation every 50 ms and reloads hostile plugins that fall."""

    def __init__(self, srv):
        self.srv = srv
        self.stop = threading.Event()
        self.made = []
        self.reloads = 0
        self.t = threading.Thread(target=self.run)

    def run(self):
        i = 0
        while not self.stop.is_set():
            st, a = call(self.srv, "POST", "/slides/%s/annotations" % SID,
                         {"type": "point", "pts": [[10 + i, 20]], "class": "Tumor"})
            if st == 201:
                self.made.append(a["id"])
            if i % 5 == 0:
                for name, p in plugins(self.srv).items():
                    if name in ("loop", "hog", "crash") and p["state"] == "disabled":
                        if call(self.srv, "POST", "/plugins/%s/reload" % name)[0] == 200:
                            self.reloads += 1
            i += 1
            self.stop.wait(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


def main():
    root = os.path.join(WORK, "hostile-plugins-%d" % os.getpid())
    pwn = make_plugins(root)
    db = os.path.join(WORK, "hostile-%d.db" % os.getpid())
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(db + ext):
            os.unlink(db + ext)
    # consilium plugins check|list: the CLI view of the same folders.
    bin_ = os.environ.get("CS_BIN", "build/dev/core/consilium")
    p = subprocess.run([bin_, "plugins", "check", root, os.path.join(SRC, "plugins")],
                       capture_output=True, text=True, timeout=60)
    c.check(p.returncode == 0 and p.stdout.count(" OK") == 5,
            "plugins check: the five load (%d: %s)" % (p.returncode, p.stdout.strip()))
    bad = os.path.join(SRC, "tests", "plugins", "hostile")
    p = subprocess.run([bin_, "plugins", "check", bad], capture_output=True, text=True,
                       timeout=60)
    c.check(p.returncode == 1 and "FAILED: manifest: api level 2" in p.stdout,
            "plugins check names a plugin that cannot load, exit 1")
    p = subprocess.run([bin_, "plugins", "list", os.path.join(SRC, "plugins")],
                       capture_output=True, text=True, timeout=60)
    c.check(p.returncode == 0 and re.search(r"annotations\s+\S+\s+running\s+0", p.stdout),
            "plugins list shows state and strikes: %s" % p.stdout.strip()[-120:])
    args = ["--db", db, "--plugins", os.path.join(SRC, "plugins"), "--plugins", root]
    # net=v: error responses and microhttpd's messages reach the server log,
    # which wrk_p99 quotes when a run has errors.
    with Server([SLIDE], args, env={"CS_LOG": "info,net=v"}) as s:
        ps = plugins(s)
        c.check({"annotations", "loop", "hog", "crash", "escape"} <= set(ps),
                "all plugins listed: %s" % sorted(ps))
        c.check(all(p["state"] == "running" for p in ps.values()), "all start running")
        ws = wsclient.connect("ws://127.0.0.1:%d/ws" % s.port, s.token)
        ws.recv_json()
        ws.send_json({"op": "subscribe", "slides": [SID]})

        # One event: each hostile plugin misbehaves once.
        st, first = call(s, "POST", "/slides/%s/annotations" % SID,
                         {"type": "rectangle", "pts": [[0, 0], [50, 50]], "class": "Stroma"})
        results = ws.collect(lambda m: m.get("event") == "escape.result", count=18, timeout=10)
        escaped = [r["data"]["what"] for r in results if r["data"]["escaped"]]
        c.check(len(results) == 18, "escape plugin reported 18 attempts (%d)" % len(results))
        c.check(not escaped, "no sandbox escape succeeded: %s" % escaped)
        for r in results:
            c.check(r["data"]["err"] not in ("", "nil"),
                    "%s refused with a reason: %s" % (r["data"]["what"], r["data"]["err"][:90]))
        c.check(not os.path.exists(pwn), "os.execute left no file")
        forged = ws.collect(lambda m: m.get("event") == "annotation.deleted", timeout=0.5)
        c.check(not forged, "no forged annotation event reached clients")
        for i in range(2):
            call(s, "POST", "/slides/%s/annotations" % SID,
                 {"type": "point", "pts": [[5 + i, 5]]})
        time.sleep(1.0)
        ps = plugins(s)
        for name, word in (("loop", "time"), ("hog", "memory"), ("crash", "boom")):
            p = ps[name]
            c.check(p["strikes"] >= 1 and word in (p["last_error"] or "").lower(),
                    "%s: a strike, reported (%s)" % (name, (p["last_error"] or "")[:100]))
        c.check(ps["hog"]["memory"] <= 64 << 20, "hog held under its 64 MiB cap (%d)"
                % ps["hog"]["memory"])
        c.check(ps["annotations"]["strikes"] == 0 and ps["escape"]["strikes"] == 0,
                "well-behaved plugins have no strikes")
        # More events: three strikes disable the offenders.
        for i in range(10):
            ps = plugins(s)
            if all(ps[n]["state"] == "disabled" for n in ("loop", "hog", "crash")):
                break
            call(s, "POST", "/slides/%s/annotations" % SID,
                 {"type": "point", "pts": [[9 + i, 5]]})
            time.sleep(0.3)
        for n in ("loop", "hog", "crash"):
            c.check(ps[n]["state"] == "disabled", "%s disabled after 3 strikes (%s, %d)"
                    % (n, ps[n]["state"], ps[n]["strikes"]))
        dis = ws.collect(lambda m: m.get("event") == "plugin.disabled", timeout=1)
        c.check({m["data"]["name"] for m in dis} >= {"loop", "hog", "crash"},
                "plugin.disabled reached the clients")
        ws.close()
        c.check(ps["annotations"]["state"] == "running", "the annotations plugin runs on")

        # Tile latency: baseline vs under attack, interleaved, medians.
        paths = tile_paths(s)
        for p in paths[:50]:
            s.get(p)
        base, attack, labelled, total, reloads = [], [], 0, 0, 0
        for rnd in range(5):
            p99, n, err = wrk_p99(s, paths)
            base.append(p99)
            c.check(not err, "baseline round %d: no errors %s" % (rnd, err))
            with Attack(s) as a:
                p99, n, err = wrk_p99(s, paths)
            attack.append(p99)
            reloads += a.reloads
            c.check(not err, "attack round %d: no errors %s" % (rnd, err))
            time.sleep(1.0)
            for aid in a.made:
                st, ann = call(s, "GET", "/slides/%s/annotations/%s" % (SID, aid))
                total += 1
                labelled += bool(st == 200 and re.fullmatch(r"Tumor \d+", ann["label"]))
        mb, ma = statistics.median(base), statistics.median(attack)
        print("tile p99: baseline %s ms (median %.2f), under attack %s ms (median %.2f), "
              "ratio %.2f; %d hostile reloads; %d/%d annotations labelled by the plugin"
              % ([round(x, 2) for x in base], mb, [round(x, 2) for x in attack], ma, ma / mb,
                 reloads, labelled, total))
        c.check(reloads >= 3, "the attack kept the hostile plugins coming back (%d)" % reloads)
        if os.environ.get("CS_SANITIZE") == "1":
            # ASan/UBSan slow the plugin threads' Lua several times over:
            # the figure is printed, the 2x bound holds only for real builds.
            print("SKIP the 2x p99 bound: sanitizer build (ratio %.2f printed only)" % (ma / mb))
        else:
            # Cached tiles answer in ~0.1 ms here: at that scale 2x is one
            # scheduler tick, not the node. The bound is 2x or 1 ms more,
            # whichever is larger (a tile over the 50 ms RTT link cannot
            # show 1 ms); a plugin that starved the tile threads would cost
            # far more than either.
            c.check(ma <= max(2 * mb, mb + 1.0),
                    "p99 under attack within max(2x, +1 ms) of baseline (%.2f vs %.2f ms)"
                    % (ma, mb))
        c.check(total > 20 and labelled == total,
                "the annotations plugin labelled every annotation made during the attack "
                "(%d/%d)" % (labelled, total))
        ps = plugins(s)
        c.check(ps["annotations"]["state"] == "running" and ps["annotations"]["strikes"] == 0,
                "annotations plugin still running, no strikes")
        st, h = call(s, "GET", "/health")
        c.check(st == 200, "the node still answers")
    shutil.rmtree(root, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
