#!/usr/bin/python3
"""bench/tiles: DeepZoom tile serving, Consilium vs IIPImage vs openslide-python.

On one big slide, in one run, with wrk at 1 and 8 connections:
  (a) hot:  50 deepest-level tiles, round robin, after one warm-up pass
  (b) cold: every deepest-level tile once, shuffled, server freshly started
            (its caches empty; the OS page cache warm)
  (c) made: every tile once of the deepest DeepZoom level that matches no
            slide level, so each tile must be made from a finer level
Prints tiles/s, p50/p99 latency, server CPU ms per tile, peak RSS and the
Consilium/other ratios with the issue's targets; writes build/bench/tiles.json.

usage: /usr/bin/python3 bench/tiles/run.py [--quick] [options]   (see --help)
Needs Debian's python3 (openslide, numpy, PIL) and scripts/deps/bench.txt.
"""

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
IIPSRV = "/usr/lib/iipimage-server/iipsrv.fcgi"
TOKEN = "bench-tiles-token"
MiB = 1024 * 1024

# The issue's targets: (scenario, what, comparison, value)
TARGETS = {
    "b_vs_iipsrv": 6.0,  # (b) Consilium tiles/s >= 6x iipsrv
    "b_cpu_ms": 0.1,  # (b) Consilium server CPU <= 0.1 ms per tile
    "c_vs_iipsrv": 2.0,  # (c) >= 2x iipsrv
    "a_vs_openslide": 10.0,  # (a) >= 10x openslide-python
    "b_vs_openslide": 10.0,  # (b) >= 10x openslide-python
    "rss_over_cache_mib": 64,  # peak RSS <= cache size + 64 MiB
}

SCEN_LABEL = {"a": "(a) hot 50", "b": "(b) cold deepest", "c": "(c) cold made"}
SERVER_LABEL = {"consilium": "consilium", "iipsrv": "iipsrv", "openslide": "openslide-py"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------- /proc ------


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from 3 (state) on


def proc_tree(root):
    """root and all its descendants that are alive now."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(d)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(children.get(p, []))
    return out


def cpu_ms(pids):
    """utime+stime of these processes (all their threads), in ms."""
    total = 0
    for p in pids:
        try:
            f = _stat_fields(p)
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return total * 1000.0 / CLK_TCK


def thread_cpu_ms(pid):
    """{thread name: ms} over the threads of one process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
            fl = _stat_fields(f"{pid}/task/{t}")
            out[name] = out.get(name, 0.0) + (int(fl[11]) + int(fl[12])) * 1000.0 / CLK_TCK
        except (OSError, ValueError, IndexError):
            pass
    return out


def status_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, token=None, timeout=30):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers or {}), e.read()


def warm_page_cache(path):
    with open(path, "rb") as f:
        while f.read(8 * MiB):
            pass


# --------------------------------------------------------------- servers ----

LIVE = []  # servers running now, stopped on any exit


class Server:
    name = "?"
    token = ""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.logf = None

    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv, env=None):
        self.logf = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        LIVE.append(self)

    def _wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        url = self.base() + self.dzi_path()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.logf.name}")
            try:
                st, _, body = http_get(url, self.token, timeout=5)
                if st == 200 and b"<Image" in body:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.logf.name}")

    expected_procs = 1

    def _settle(self, timeout=30):
        """Wait for every worker to be forked and idle: the process count
        reached and the tree's CPU time still for 0.3 s."""
        deadline = time.time() + timeout
        last, still = None, 0.0
        while time.time() < deadline:
            pids = self.pids()
            c = cpu_ms(pids)
            if len(pids) >= self.expected_procs and c == last:
                still += 0.1
                if still >= 0.3:
                    return
            else:
                still = 0.0
            last = c
            time.sleep(0.1)
        log(f"bench/tiles: {self.name}: {len(self.pids())} of {self.expected_procs} processes, "
            f"not settled after {timeout}s")

    def pids(self):
        return proc_tree(self.proc.pid) if self.proc else []

    def stop(self):
        if not self.proc:
            return
        tree = self.pids()
        try:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        except ProcessLookupError:
            pass
        # backends that outlive their parent (FastCGI children, workers)
        for p in tree[1:]:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 3
        for p in tree[1:]:
            while os.path.exists(f"/proc/{p}") and time.time() < deadline:
                try:
                    with open(f"/proc/{p}/stat") as f:
                        if f.read().split(") ")[1].startswith("Z"):
                            break
                except OSError:
                    break
                time.sleep(0.02)
            try:
                if os.path.exists(f"/proc/{p}"):
                    os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # this process is their subreaper (see main): reap what ended
        for p in tree[1:]:
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        if self in LIVE:
            LIVE.remove(self)
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None


class Consilium(Server):
    name = "consilium"
    token = TOKEN

    def __init__(self, workdir, binary, slide, cache_mb, threads):
        super().__init__(workdir)
        self.binary, self.slide, self.cache_mb, self.threads = binary, slide, cache_mb, threads
        self.sid = os.path.splitext(os.path.basename(slide))[0]

    def start(self):
        pf = os.path.join(self.workdir, "consilium.port")
        if os.path.exists(pf):
            os.unlink(pf)
        self._spawn([self.binary, "serve", "--port", "0", "--port-file", pf, "--token", self.token,
                     "--cache-mb", str(self.cache_mb), "--threads", str(self.threads), self.slide])
        deadline = time.time() + 30
        while not (os.path.exists(pf) and open(pf).read().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"consilium did not start; see {self.logf.name}")
            time.sleep(0.02)
        self.port = int(open(pf).read().strip())
        self._wait_ready()
        self._settle()

    def dzi_path(self):
        return f"/slides/{self.sid}.dzi"

    def tile_path(self, geo, level, col, row):
        return f"/slides/{self.sid}_files/{level}/{col}_{row}.jpeg"


class IIPSrv(Server):
    """Debian's iipsrv behind lighttpd's mod_fastcgi (lighttpd spawns it)."""
    name = "iipsrv"

    def __init__(self, workdir, slide, cache_mb, procs):
        super().__init__(workdir)
        self.slide, self.cache_mb, self.procs = slide, cache_mb, procs
        self.expected_procs = 1 + procs

    def start(self):
        self.port = free_port()
        sock = os.path.join(self.workdir, "iipsrv.sock")
        conf = os.path.join(self.workdir, "lighttpd.conf")
        with open(conf, "w") as f:
            f.write(f"""server.modules = ("mod_fastcgi")
server.document-root = "{self.workdir}"
server.bind = "127.0.0.1"
server.port = {self.port}
server.pid-file = "{self.workdir}/lighttpd.pid"
server.errorlog = "{self.workdir}/lighttpd-error.log"
server.max-connections = 1024
fastcgi.server = ( "/fcgi-bin/iipsrv.fcgi" =>
  (( "socket" => "{sock}",
     "check-local" => "disable",
     "min-procs" => {self.procs},
     "max-procs" => {self.procs},
     "bin-path" => "{IIPSRV}",
     "bin-environment" => (
        "LOGFILE" => "{self.workdir}/iipsrv-log.txt",
        "VERBOSITY" => "0",
        "FILESYSTEM_PREFIX" => "",
        "MAX_IMAGE_CACHE_SIZE" => "{self.cache_mb}",
        "JPEG_QUALITY" => "75",
        "MAX_CVT" => "5000",
        "INTERPOLATION" => "1"
     )
  ))
)
""")
        self._spawn(["lighttpd", "-D", "-f", conf])
        self._wait_ready()
        self._settle()

    def dzi_path(self):
        return "/fcgi-bin/iipsrv.fcgi?DeepZoom=" + urllib.parse.quote(self.slide + ".dzi", safe="/")

    def tile_path(self, geo, level, col, row):
        ds = geo.downsample(level)
        if ds == 1:
            return ("/fcgi-bin/iipsrv.fcgi?DeepZoom="
                    + urllib.parse.quote(f"{self.slide}_files/{level}/{col}_{row}.jpg", safe="/"))
        # iipsrv 1.1's DeepZoom handler never resamples: it maps DeepZoom
        # levels onto TIFF directories as if each were half the one before.
        # Its IIIF handler does make tiles at any scale: ask it for the same
        # DeepZoom tile as a region of the full-resolution image.
        x, y, w, h, ow, oh = geo.region(level, col, row)
        return ("/fcgi-bin/iipsrv.fcgi?IIIF="
                + urllib.parse.quote(f"{self.slide}/{x},{y},{w},{h}/{ow},{oh}/0/default.jpg", safe="/,"))


class OpenSlidePy(Server):
    """openslide-python's DeepZoomGenerator in a WSGI app under gunicorn."""
    name = "openslide"

    def __init__(self, workdir, slide, workers):
        super().__init__(workdir)
        self.slide, self.workers = slide, workers
        self.expected_procs = 1 + workers

    def start(self):
        self.port = free_port()
        env = dict(os.environ, BENCH_SLIDE=self.slide, BENCH_TILE_SIZE="256", BENCH_OVERLAP="0",
                   BENCH_QUALITY="75", PYTHONDONTWRITEBYTECODE="1")
        self._spawn(["/usr/bin/python3", shutil.which("gunicorn") or "/usr/bin/gunicorn",
                     "--workers", str(self.workers), "--worker-class", "sync",
                     "--bind", f"127.0.0.1:{self.port}", "--chdir", HERE,
                     "--log-level", "warning", "--timeout", "120", "osapp:app"], env=env)
        self._wait_ready()
        self._settle()

    def dzi_path(self):
        return "/slide.dzi"

    def tile_path(self, geo, level, col, row):
        return f"/slide_files/{level}/{col}_{row}.jpeg"


# --------------------------------------------------------------- geometry ---


class Geometry:
    """DeepZoom geometry (tile 256, overlap 0, limit_bounds off) of the slide."""

    def __init__(self, slide_path, tile=256):
        import openslide
        s = openslide.OpenSlide(slide_path)
        self.width, self.height = s.dimensions
        self.level_downsamples = list(s.level_downsamples)
        self.level_dimensions = list(s.level_dimensions)
        s.close()
        self.tile = tile
        self.max_level = int(math.ceil(math.log2(max(self.width, self.height))))

    def downsample(self, level):
        return 2 ** (self.max_level - level)

    def dims(self, level):
        ds = self.downsample(level)
        return (max(1, math.ceil(self.width / ds)), max(1, math.ceil(self.height / ds)))

    def grid(self, level):
        w, h = self.dims(level)
        return math.ceil(w / self.tile), math.ceil(h / self.tile)

    def region(self, level, col, row):
        """level-0 region (x, y, w, h) and output size of a DeepZoom tile."""
        ds = self.downsample(level)
        lw, lh = self.dims(level)
        ox, oy = col * self.tile, row * self.tile
        ow, oh = min(self.tile, lw - ox), min(self.tile, lh - oy)
        x, y = ox * ds, oy * ds
        return x, y, min(ow * ds, self.width - x), min(oh * ds, self.height - y), ow, oh

    def made_level(self):
        """Deepest DeepZoom level whose downsample matches no slide level."""
        for level in range(self.max_level, -1, -1):
            ds = self.downsample(level)
            if all(abs(ds / d - 1) > 0.01 for d in self.level_downsamples):
                return level
        raise RuntimeError("every DeepZoom level matches a slide level")


def reference_tile(slide_path, geo, level, col, row):
    import numpy as np
    import openslide
    from PIL import Image
    x, y, w, h, ow, oh = geo.region(level, col, row)
    s = openslide.OpenSlide(slide_path)
    img = s.read_region((x, y), 0, (w, h)).convert("RGB")
    s.close()
    if (w, h) != (ow, oh):
        img = img.resize((ow, oh), Image.BOX)
    return np.asarray(img, dtype=np.int16)


def tile_diff(ref, jpeg_bytes):
    """Mean absolute difference (0-255) of a served tile from the reference."""
    import io
    import numpy as np
    from PIL import Image
    img = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB")
    a = np.asarray(img, dtype=np.int16)
    if a.shape != ref.shape:
        return None, f"size {a.shape[1]}x{a.shape[0]}, want {ref.shape[1]}x{ref.shape[0]}"
    return float(np.abs(a - ref).mean()), ""


# --------------------------------------------------------------- wrk --------


def run_wrk(server, paths, mode, conns, seconds, workdir):
    """One wrk run over paths. mode 'hot' cycles for `seconds`; 'cold' walks
    each path once (seconds is then only a cap). Returns a result dict."""
    threads = conns  # one connection per wrk thread: walk.lua times each request
    listf = os.path.join(workdir, "walk-urls.txt")
    with open(listf, "w") as f:
        f.write("\n".join(paths) + "\n")
    donedir = tempfile.mkdtemp(prefix="walkdone-", dir=workdir)
    env = dict(os.environ, WALK_FILE=listf, WALK_MODE=mode, WALK_THREADS=str(threads),
               WALK_AUTH=server.token, WALK_DONEDIR=donedir, WALK_IDLE=server.dzi_path())
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{int(math.ceil(seconds))}s", "--timeout", "30s",
            "-s", os.path.join(HERE, "walk.lua"), server.base() + "/"]
    pids = server.pids()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = cpu_ms(pids)
    thr0 = thread_cpu_ms(server.proc.pid) if server.name == "consilium" else {}
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        shutil.rmtree(donedir, ignore_errors=True)
        raise RuntimeError(f"wrk did not end within {seconds + 60:.0f} s")
    pids1 = server.pids()
    # processes born during the run (a respawned worker) count in full
    cpu1 = cpu_ms(pids) + cpu_ms([q for q in pids1 if q not in pids])
    thr1 = thread_cpu_ms(server.proc.pid) if server.name == "consilium" else {}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(donedir, ignore_errors=True)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("WALKJSON ")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}")
    w = json.loads(line[0][len("WALKJSON "):])
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"] + w["walk_lost"]
    served = w["walk_completed"] - w["err_status"]
    secs = w["walk_seconds"] or w["duration_us"] / 1e6
    complete = mode == "hot" or w["threads_finished"] == threads
    r = {
        "tiles": served,
        "requests": w["requests"],
        "idle_requests": w["walk_idle"],
        "seconds": round(secs, 4),
        "tiles_per_s": served / secs if secs > 0 else 0.0,
        "p50_ms": w["lat_p50_us"] / 1000.0,
        "p90_ms": w["lat_p90_us"] / 1000.0,
        "p99_ms": w["lat_p99_us"] / 1000.0,
        "max_ms": w["lat_max_us"] / 1000.0,
        "mean_ms": float(w["lat_mean_us"]) / 1000.0,
        "wrk_p99_ms_co_corrected": w["wrk_p99_us"] / 1000.0,
        # all server CPU in the run over the tiles served (idle requests
        # at the end of a cold walk are charged to the tiles)
        "cpu_ms_per_tile": (cpu1 - cpu0) / max(served, 1),
        "server_cpu_ms": cpu1 - cpu0,
        "client_cpu_ms_per_tile": ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
        * 1000.0 / max(served, 1),
        "bytes_per_tile": w["bytes"] / max(w["requests"], 1),
        "non_200": w["err_status"],
        "socket_errors": errors,
        "walk_complete": complete,
    }
    if thr0:
        r["server_thread_cpu_ms"] = {k: round(thr1.get(k, 0) - thr0.get(k, 0), 1) for k in thr1
                                     if thr1.get(k, 0) - thr0.get(k, 0) >= 1}
    return r


def median_run(runs):
    keys = ["tiles_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_ms_per_tile",
            "client_cpu_ms_per_tile", "bytes_per_tile", "mean_ms",
            "wrk_p99_ms_co_corrected"]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["tiles"] = sum(r["tiles"] for r in runs)
    out["non_200"] = sum(r["non_200"] for r in runs)
    out["socket_errors"] = sum(r["socket_errors"] for r in runs)
    out["walk_complete"] = all(r["walk_complete"] for r in runs)
    out["repeats"] = [{k: r[k] for k in ("tiles_per_s", "p50_ms", "p99_ms", "cpu_ms_per_tile")}
                      for r in runs]
    return out


# --------------------------------------------------------------- setup ------


def ensure_consilium(args):
    if args.consilium:
        return os.path.abspath(args.consilium)
    bdir = os.path.join(ROOT, "build", "bench", "release")
    # Own build folder, optimised. -Werror off: the bench measures, it does
    # not lint (gcc -O2 warns where the dev build does not).
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", bdir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                        "-DCS_WERROR=OFF"], check=True, stdout=subprocess.DEVNULL)
    p = subprocess.run(["cmake", "--build", bdir, "-j2", "--target", "consilium"],
                       capture_output=True, text=True)
    binary = os.path.join(bdir, "core", "consilium")
    if p.returncode != 0:
        # The tree may be mid-change elsewhere (others' unfinished files):
        # fall back to the last binary built rather than measure nothing.
        for b in (binary, os.path.join(ROOT, "build", "release", "core", "consilium")):
            if os.path.exists(b):
                log(f"bench/tiles: WARNING: building consilium failed; using the existing {b} "
                    f"(built {time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(b)))})\n"
                    + "\n".join((p.stdout + p.stderr).strip().splitlines()[-6:]))
                return b
        sys.exit("bench/tiles: building consilium failed:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    return binary


def single_resolution_copy(src, dst):
    """A copy of the TIFF whose first directory links to no other: the same
    full-resolution JPEG tiles, byte for byte, and no reduced levels.

    Debian's iipsrv 1.1 takes every TIFF directory as a level half the size of
    the one before; on a 1/4/16/64 pyramid it serves tiles of the wrong scale
    for every DeepZoom level but the deepest. With one level it is correct:
    it cuts the deepest level's tiles straight from the file and makes every
    other tile from full resolution, which is what scenario (c) needs anyway
    (no slide level lies between downsample 1 and 2)."""
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    log(f"bench/tiles: writing single-level copy for iipsrv: {dst}")
    tmp = dst + ".part"
    shutil.copyfile(src, tmp)
    with open(tmp, "r+b") as f:
        hdr = f.read(16)
        bo = "<" if hdr[:2] == b"II" else ">"
        magic = struct.unpack(bo + "H", hdr[2:4])[0]
        if magic == 43:  # BigTIFF
            off = struct.unpack(bo + "Q", hdr[8:16])[0]
            f.seek(off)
            n = struct.unpack(bo + "Q", f.read(8))[0]
            f.seek(off + 8 + 20 * n)
            f.write(struct.pack(bo + "Q", 0))
        elif magic == 42:
            off = struct.unpack(bo + "I", hdr[4:8])[0]
            f.seek(off)
            n = struct.unpack(bo + "H", f.read(2))[0]
            f.seek(off + 2 + 12 * n)
            f.write(struct.pack(bo + "I", 0))
        else:
            raise RuntimeError(f"{src}: not a TIFF")
    os.replace(tmp, dst)
    return dst


def check_tools(servers):
    need = {"wrk": shutil.which("wrk")}
    if "iipsrv" in servers:
        need["lighttpd"] = shutil.which("lighttpd")
        need[IIPSRV] = os.path.exists(IIPSRV)
    if "openslide" in servers:
        need["gunicorn"] = shutil.which("gunicorn") or os.path.exists("/usr/bin/gunicorn")
    missing = [k for k, v in need.items() if not v]
    if missing:
        sys.exit(f"bench/tiles: missing {', '.join(missing)}; run scripts/deps.sh scripts/deps/bench.txt")


# --------------------------------------------------------------- bench ------


def validate(server, geo, slide, samples, refs):
    """Fetch sample tiles of each scenario level; compare with OpenSlide's
    pixels. Returns {level: {diff, source, ok}}."""
    out = {}
    for level, tiles in samples.items():
        worst, srcs, note = 0.0, set(), ""
        for (c, r) in tiles:
            st, hdrs, body = http_get(server.base() + server.tile_path(geo, level, c, r), server.token)
            if st != 200 or not body.startswith(b"\xff\xd8"):
                note = f"HTTP {st} {body[:60]!r}"
                worst = None
                break
            d, why = tile_diff(refs[(level, c, r)], body)
            if d is None:
                note, worst = why, None
                break
            worst = max(worst, d)
            src = {k.lower(): v for k, v in hdrs.items()}.get("x-tile-source")
            if src:
                srcs.add(src)
        ok = worst is not None and worst <= 10.0
        out[level] = {"mean_abs_diff": None if worst is None else round(worst, 2),
                      "tile_source": sorted(srcs), "ok": ok, "note": note}
    return out


def bench_server(server, geo, args, plan, refs, results):
    name = server.name
    cap = args.walk_cap
    if "a" not in args.scenarios:
        server.start()
        try:
            results["validation"][name] = validate(server, geo, args.slide, plan["samples"], refs)
        finally:
            server.stop()
    # (a) hot
    if "a" in args.scenarios:
        server.start()
        try:
            v = validate(server, geo, args.slide, plan["samples"], refs)
            results["validation"][name] = v
            log(f"  {name}: validation " + ", ".join(
                f"L{lv}: diff {x['mean_abs_diff']} {'/'.join(x['tile_source'])}{'' if x['ok'] else ' BAD ' + x['note']}"
                for lv, x in v.items()))
            paths = [server.tile_path(geo, plan["deep"], c, r) for (c, r) in plan["hot"]]
            for _ in range(2):  # warm-up: every hot tile into the server's caches
                for pth in paths:
                    http_get(server.base() + pth, server.token)
            for conns in args.conns:
                try:
                    runs = [run_wrk(server, paths, "hot", conns, args.hot_seconds, args.workdir)
                            for _ in range(args.repeats)]
                except RuntimeError as e:
                    log(f"  {name} (a) c{conns}: FAILED: {e}")
                    results["errors"].append(f"{name} (a) c{conns}: {e}")
                    continue
                m = median_run(runs)
                m["rss_mib"] = status_kib(server.pids(), "VmHWM") / 1024.0
                results["runs"].append(dict(scenario="a", server=name, conns=conns, **m))
                log(f"  {name} (a) c{conns}: {m['tiles_per_s']:.0f} tiles/s p50 {m['p50_ms']:.2f} ms "
                    f"p99 {m['p99_ms']:.2f} ms cpu {m['cpu_ms_per_tile']:.3f} ms/tile")
        finally:
            server.stop()
    # (b), (c) cold walks: a fresh server for each run
    for scen, level, tiles in (("b", plan["deep"], plan["cold_b"]), ("c", plan["made"], plan["cold_c"])):
        if scen not in args.scenarios:
            continue
        v = results["validation"].get(name, {}).get(level)
        if v is not None and not v["ok"]:
            log(f"  {name} ({scen}): skipped, its level-{level} tiles do not match the slide")
            continue
        paths = [server.tile_path(geo, level, c, r) for (c, r) in tiles]
        for conns in args.conns:
            # a fresh server per walk; repeat (median) while walks are cheap
            runs, spent = [], 0.0
            while len(runs) < args.repeats and (not runs or spent < args.cold_repeat_budget):
                warm_page_cache(server_slide(server, args))
                server.start()
                try:
                    r = run_wrk(server, paths, "cold", conns, cap, args.workdir)
                    r["rss_mib"] = status_kib(server.pids(), "VmHWM") / 1024.0
                except RuntimeError as e:
                    log(f"  {name} ({scen}) c{conns}: FAILED: {e}")
                    results["errors"].append(f"{name} ({scen}) c{conns}: {e}")
                    break
                finally:
                    server.stop()
                runs.append(r)
                spent += r["seconds"]
            if not runs:
                continue
            m = median_run(runs)
            m["rss_mib"] = max(r["rss_mib"] for r in runs)
            m["seconds"] = statistics.median(r["seconds"] for r in runs)
            m["idle_requests"] = sum(r["idle_requests"] for r in runs)
            if "server_thread_cpu_ms" in runs[0]:
                m["server_thread_cpu_ms"] = runs[0]["server_thread_cpu_ms"]
            m["walk_tiles_listed"] = len(paths)
            results["runs"].append(dict(scenario=scen, server=name, conns=conns, level=level, **m))
            log(f"  {name} ({scen}) c{conns}: {len(paths)} tiles x {len(runs)}: "
                f"{m['tiles_per_s']:.0f} tiles/s p50 {m['p50_ms']:.2f} ms p99 {m['p99_ms']:.2f} ms "
                f"cpu {m['cpu_ms_per_tile']:.3f} ms/tile rss {m['rss_mib']:.0f} MiB"
                + ("" if m["walk_complete"] else "  (cut at the time cap)"))


def server_slide(server, args):
    return getattr(server, "slide", args.slide)


def perf_profile(server, geo, args, plan):
    """perf record the Consilium server during (b) and (c) at 8 connections."""
    if not shutil.which("perf"):
        log("bench/tiles: --perf: perf not found (apt-get install linux-perf)")
        return {}
    out = {}
    for scen, level, tiles in (("b", plan["deep"], plan["cold_b"]), ("c", plan["made"], plan["cold_c"])):
        if scen not in args.scenarios:
            continue
        paths = [server.tile_path(geo, level, c, r) for (c, r) in tiles]
        server.start()
        data = os.path.join(args.workdir, f"perf-{scen}.data")
        perf = None
        try:
            perf = subprocess.Popen(["perf", "record", "-F", "1999", "-p", str(server.proc.pid),
                                     "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            run_wrk(server, paths, "cold", 8, args.walk_cap, args.workdir)
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
        finally:
            if perf and perf.poll() is None:
                perf.kill()
                perf.wait()
            server.stop()
        lines = []
        for sort, limit in (("dso", "0.5"), ("dso,sym", "0.7")):
            rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                  "--sort", sort, "--percent-limit", limit],
                                 capture_output=True, text=True)
            lines += [ln.rstrip() for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
            lines.append("")
        txt = os.path.join(os.path.dirname(args.json), f"tiles-perf-{scen}.txt")
        with open(txt, "w") as f:
            f.write("\n".join(lines) + "\n")
        out[scen] = lines
        print(f"\nperf: Consilium during ({scen}) at 8 connections, share of its CPU by library, "
              f"then by symbol ({os.path.relpath(txt, ROOT)})")
        for ln in lines[:40]:
            print("  " + ln)
    return out


# --------------------------------------------------------------- report -----


def verdict(ok):
    return "PASS" if ok else "MISS"


def report(results, args):
    runs = results["runs"]

    def get(scen, server, conns):
        for r in runs:
            if r["scenario"] == scen and r["server"] == server and r["conns"] == conns:
                return r
        return None

    print()
    print(f"bench/tiles  slide {results['meta']['slide']} ({results['meta']['width']}x"
          f"{results['meta']['height']}), DeepZoom tile 256 overlap 0; "
          f"{'QUICK (smoke) run' if args.quick else 'full run'}")
    print(f"(a) {len(results['plan']['hot'])} hot tiles at level {results['plan']['deep']}, "
          f"median of {args.repeats} x {args.hot_seconds:g}s | (b) {results['plan']['n_b']} tiles, "
          f"level {results['plan']['deep']} | (c) {results['plan']['n_c']} tiles, level "
          f"{results['plan']['made']} (downsample {results['plan']['made_ds']}, made)")
    hdr = f"{'scenario':<18} {'server':<13} {'conns':>5} {'tiles/s':>9} {'p50 ms':>8} {'p99 ms':>8} " \
          f"{'CPU ms/tile':>11} {'peak RSS MiB':>12}  note"
    print(hdr)
    print("-" * len(hdr))
    for scen in "abc":
        for server in args.servers:
            for conns in args.conns:
                r = get(scen, server, conns)
                if not r:
                    continue
                note = []
                if r["non_200"]:
                    note.append(f"{r['non_200']} non-200")
                if r["socket_errors"]:
                    note.append(f"{r['socket_errors']} socket errors")
                if not r["walk_complete"]:
                    note.append(f"cut at {args.walk_cap:g}s cap")
                print(f"{SCEN_LABEL[scen]:<18} {SERVER_LABEL[server]:<13} {conns:>5} "
                      f"{r['tiles_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{r['cpu_ms_per_tile']:>11.3f} {r['rss_mib']:>12.0f}  {'; '.join(note)}")
    # ratios and targets
    print()
    hdr = f"{'scenario':<18} {'conns':>5}  {'consilium/iipsrv':>18}  {'target':<12} " \
          f"{'consilium/openslide-py':>22}  {'target':<12}"
    print(hdr)
    print("-" * len(hdr))
    targets = []

    def tgt(name, value, limit, op, where):
        ok = value is not None and (value >= limit if op == ">=" else value <= limit)
        targets.append({"target": name, "where": where, "value": value, "limit": limit, "op": op,
                        "result": verdict(ok) if value is not None else "n/a"})
        return f"{op}{limit:g} {verdict(ok)}" if value is not None else ""

    ratios = []
    for scen in "abc":
        for conns in args.conns:
            cs = get(scen, "consilium", conns)
            if not cs:
                continue
            row = {"scenario": scen, "conns": conns}
            cells = []
            for other, key in (("iipsrv", f"{scen}_vs_iipsrv"), ("openslide", f"{scen}_vs_openslide")):
                o = get(scen, other, conns)
                ratio = cs["tiles_per_s"] / o["tiles_per_s"] if o and o["tiles_per_s"] > 0 else None
                row[f"consilium_over_{other}"] = ratio
                t = tgt(key, ratio, TARGETS[key], ">=", f"({scen}) c{conns}") if key in TARGETS and ratio else ""
                cells.append(("-" if ratio is None else f"{ratio:.1f}x", t))
            ratios.append(row)
            print(f"{SCEN_LABEL[scen]:<18} {conns:>5}  {cells[0][0]:>18}  {cells[0][1]:<12} "
                  f"{cells[1][0]:>22}  {cells[1][1]:<12}")
    print()
    for conns in args.conns:
        cs = get("b", "consilium", conns)
        if cs:
            t = tgt("b_cpu_ms", cs["cpu_ms_per_tile"], TARGETS["b_cpu_ms"], "<=", f"(b) c{conns}")
            print(f"(b) Consilium server CPU per tile, c{conns}: {cs['cpu_ms_per_tile']:.3f} ms   target {t}")
    cs_runs = [r for r in runs if r["server"] == "consilium"]
    if cs_runs:
        peak = max(r["rss_mib"] for r in cs_runs)
        limit = args.cache_mb + TARGETS["rss_over_cache_mib"]
        t = tgt("rss", peak, limit, "<=", "all scenarios")
        print(f"Consilium peak RSS (VmHWM) over all runs: {peak:.0f} MiB   target (cache {args.cache_mb} "
              f"+ 64 MiB) {t}")
    for name, v in results["validation"].items():
        bad = {lv: x for lv, x in v.items() if not x["ok"]}
        if bad:
            print(f"WARNING {name}: tiles differ from OpenSlide's pixels at levels {sorted(bad)}: {bad}")
    print("\nnotes: p50/p99 are per request, without wrk's coordinated-omission correction; CPU is the"
          " server's whole process tree per tile served. iipsrv gets a single-level copy of the slide and"
          " makes (c)'s tiles through IIIF with bilinear scaling; Consilium and openslide-python use"
          " Lanczos-3. wrk shares the 2 cores with the servers.")
    results["ratios"] = ratios
    results["targets"] = targets
    for e in results["errors"]:
        print(f"ERROR {e}")
    passed = sum(t["result"] == "PASS" for t in targets)
    print(f"\ntargets: {passed}/{len(targets)} PASS"
          + (f"; MISS: {', '.join(t['target'] + ' ' + t['where'] for t in targets if t['result'] == 'MISS')}"
             if passed < len(targets) else ""))


# --------------------------------------------------------------- main -------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: short walks, one repeat")
    ap.add_argument("--slide", default=os.path.join(ROOT, "build", "data", "big.tiff"))
    ap.add_argument("--consilium", help="consilium binary (default: build an optimised one in build/bench/release)")
    ap.add_argument("--servers", default="consilium,iipsrv,openslide")
    ap.add_argument("--scenarios", default="abc")
    ap.add_argument("--conns", default="1,8", help="wrk connection counts (1 uses -t1, more -t2)")
    ap.add_argument("--cache-mb", type=int, default=128,
                    help="Consilium --cache-mb and iipsrv MAX_IMAGE_CACHE_SIZE (default 128)")
    ap.add_argument("--threads", type=int, default=4, help="Consilium --threads (default 4)")
    ap.add_argument("--iipsrv-procs", type=int, default=2, help="iipsrv FastCGI processes (default 2)")
    ap.add_argument("--gunicorn-workers", type=int, default=2)
    ap.add_argument("--hot-seconds", type=float, help="length of one hot run (default 5, quick 2)")
    ap.add_argument("--repeats", type=int, help="hot runs per point, and most cold walks per point while cheap; median taken (default 3, quick 1)")
    ap.add_argument("--cold-repeat-budget", type=float,
                    help="repeat a cold walk (fresh server, median) while walks so far took less (s; default 10, quick 2)")
    ap.add_argument("--walk-cap", type=float, help="longest cold walk in s (default 120, quick 30)")
    ap.add_argument("--max-tiles", type=int, help="cold walks: at most this many tiles (default all; quick 1500/400)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--perf", action="store_true", help="then perf-record Consilium during (b) and (c) at c8")
    ap.add_argument("--json", help="result file (default build/bench/tiles.json; quick: tiles-quick.json)")
    args = ap.parse_args()

    args.servers = [s for s in args.servers.split(",") if s]
    for s in args.servers:
        if s not in SERVER_LABEL:
            sys.exit(f"unknown server {s}")
    args.scenarios = set(args.scenarios)
    args.conns = [int(c) for c in args.conns.split(",")]
    args.hot_seconds = args.hot_seconds or (2.0 if args.quick else 5.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.cold_repeat_budget = args.cold_repeat_budget or (2.0 if args.quick else 10.0)
    args.walk_cap = args.walk_cap or (30.0 if args.quick else 120.0)
    args.json = args.json or os.path.join(ROOT, "build", "bench",
                                          "tiles-quick.json" if args.quick else "tiles.json")
    args.slide = os.path.abspath(args.slide)
    check_tools(args.servers)

    if not os.path.exists(args.slide):
        if args.slide == os.path.join(ROOT, "build", "data", "big.tiff"):
            subprocess.run([os.path.join(ROOT, "scripts", "make-big-slide.sh"), args.slide], check=True)
        else:
            sys.exit(f"no slide {args.slide}")
    outdir = os.path.join(ROOT, "build", "bench", "tiles")
    os.makedirs(outdir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)

    t_start = time.time()
    geo = Geometry(args.slide)
    deep, made = geo.max_level, geo.made_level()
    rng = random.Random(args.seed)
    cols, rows = geo.grid(deep)
    # (a): a 10 x 5 block of tiles at the slide's centre, as a viewer shows
    c0, r0 = cols // 2 - 5, rows // 2 - 2
    hot = [(c0 + i, r0 + j) for j in range(5) for i in range(10)]
    cold_b = [(c, r) for r in range(rows) for c in range(cols)]
    mc, mr = geo.grid(made)
    cold_c = [(c, r) for r in range(mr) for c in range(mc)]
    rng.shuffle(cold_b)
    rng.shuffle(cold_c)
    max_b = args.max_tiles or (1500 if args.quick else None)
    max_c = args.max_tiles or (400 if args.quick else None)
    cold_b, cold_c = cold_b[:max_b], cold_c[:max_c]
    samples = {deep: [hot[0], cold_b[0]], made: [cold_c[0], cold_c[1]]}
    refs = {(lv, c, r): reference_tile(args.slide, geo, lv, c, r) for lv, ts in samples.items() for (c, r) in ts}
    plan = {"deep": deep, "made": made, "made_ds": geo.downsample(made), "hot": hot, "cold_b": cold_b,
            "cold_c": cold_c, "samples": samples}

    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    results = {
        "meta": {"slide": os.path.relpath(args.slide, ROOT), "width": geo.width, "height": geo.height,
                 "slide_level_downsamples": geo.level_downsamples, "deepzoom_max_level": deep,
                 "quick": args.quick, "cache_mb": args.cache_mb, "consilium_threads": args.threads,
                 "iipsrv_procs": args.iipsrv_procs, "gunicorn_workers": args.gunicorn_workers,
                 "hot_seconds": args.hot_seconds, "repeats": args.repeats, "walk_cap_s": args.walk_cap,
                 "cpus": os.cpu_count(), "commit": commit, "loadavg_start": os.getloadavg(),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "plan": {"deep": deep, "made": made, "made_ds": geo.downsample(made), "hot": hot,
                 "n_b": len(cold_b), "n_c": len(cold_c)},
        "validation": {}, "runs": [], "errors": [],
    }

    # Orphaned server processes (FastCGI backends whose lighttpd has exited)
    # become our children, so stop() can reap them instead of leaving zombies.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    args.workdir = tempfile.mkdtemp(prefix="bench-tiles-")
    servers = []
    try:
        if "consilium" in args.servers:
            binary = ensure_consilium(args)
            results["meta"]["consilium_binary"] = os.path.relpath(binary, ROOT)
            results["meta"]["consilium_binary_built"] = time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(os.path.getmtime(binary)))
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "core", "codecs"],
                                   capture_output=True, text=True).stdout.strip()
            results["meta"]["consilium_sources_dirty"] = bool(dirty)
            servers.append(Consilium(args.workdir, binary, args.slide, args.cache_mb, args.threads))
        if "iipsrv" in args.servers:
            one = single_resolution_copy(args.slide, os.path.join(outdir, "big-1level.tiff"))
            servers.append(IIPSrv(args.workdir, one, args.cache_mb, args.iipsrv_procs))
        if "openslide" in args.servers:
            servers.append(OpenSlidePy(args.workdir, args.slide, args.gunicorn_workers))
        for s in servers:
            log(f"bench/tiles: {s.name}")
            bench_server(s, geo, args, plan, refs, results)
        results["meta"]["seconds"] = round(time.time() - t_start, 1)
        results["meta"]["loadavg_end"] = os.getloadavg()
        report(results, args)
        if args.perf and "consilium" in args.servers:
            results["perf"] = perf_profile(servers[0], geo, args, plan)
    finally:
        for s in list(LIVE):
            s.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {os.path.relpath(args.json, ROOT)} ({results['meta']['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
