"""Browser interoperability: OpenSeadragon in Debian's headless Chromium opens
a slide served by `consilium serve`, once through the DeepZoom descriptor and
once through the IIIF Image API 3 info.json, and draws it.

The page (page.html) is served from a second origin (a static server on
another 127.0.0.1 port), so every request to consilium is cross-origin and
goes through CORS, with a preflight for the Authorization header. shot.js
drives Chromium with playwright-core (never a downloaded browser), waits until
OpenSeadragon reports the image fully loaded and screenshots the viewer.

Cases: each slide (CMU-1-Small-Region, JPEG; TCGA-CR-7395, JPEG 2000) through
its .dzi and its IIIF info.json, with the token in an Authorization header
(loadTilesWithAjax + ajaxHeaders), drawn by OpenSeadragon's canvas drawer and
by its default ("auto", WebGL here); the CMU DZI once more with
?access_token= and plain <img> tiles; three negative cases.

Checks per positive case: OpenSeadragon opened the source, loaded tiles with
no tile-load-failed event, every answer of the server was a success; the
screenshot is not blank; it resembles the slide as OpenSlide renders it,
scaled and letterboxed to the rectangle where OpenSeadragon drew the image
(normalized correlation and luma PSNR, as they are and forgiving one-pixel
local shifts) and is not the slide upside down. Negative cases: a wrong
token makes OpenSeadragon fail (open-failed, or tile-load-failed for every
tile), and their screenshots are judged blank by the same check.

Every case runs in a browser context of its own: tiles are sent with
"Cache-Control: private, max-age=86400", so in a shared context Chromium
serves the tiles of an earlier case from its cache to a request carrying a
wrong token.

Exit 0 when all passed, 1 on failure, 77 (SKIP) when Chromium or Node.js/npm
is not installed (outside CI: under CI=true that is a failure, since
scripts/deps/osd.txt installs them). Screenshots: $CS_WORK/osd/*.png.
"""
import hashlib
import http.server
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse


def _terminated(signum, _frame):
    # ctest's timeout or a person's ^C: unwind so every finally block ends
    # the server, the static server and the browser.
    raise SystemExit("FAIL: stopped by signal %d" % signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SKIP = 77
CHROMIUM = os.environ.get("CS_CHROMIUM", "/usr/bin/chromium")
OUT = os.path.join(cshelp.WORK, "osd")
NPM_DIR = os.path.join(OUT, "npm")
TOKEN = "osd-token-%d" % os.getpid()
SLIDES = {
    "CMU-1-Small-Region": "wsi/CMU-1-Small-Region.svs",             # JPEG tiles
    "TCGA-CR-7395-01A-01-TS1": "wsi/TCGA-CR-7395-01A-01-TS1.svs",   # JPEG 2000
}
BACKGROUND = (32, 32, 32)   # #viewer background in page.html
MIN_CORR = 0.90             # screenshot vs oracle, as they are
MIN_PSNR = 20.0
MIN_CORR_REG = 0.95         # the same, forgiving one-pixel local shifts
MIN_PSNR_REG = 23.0
MIN_STD = 8.0               # luma standard deviation of the drawn image
MAX_ONE_COLOUR = 0.9        # share of the most common (coarse) colour
MAX_WHITE = 0.97            # share of near-white pixels
MAX_COLOUR_DIFF = 20.0      # mean |R|,|G|,|B| difference to the oracle
NODE_TIMEOUT = 150


def log(msg):
    print(msg, flush=True)


def skip(reason):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        log("FAIL: %s (under CI scripts/deps/osd.txt must have installed it)" % reason)
        print("0 passed, 1 failed")
        sys.exit(1)
    log("SKIP: " + reason)
    sys.exit(SKIP)


def tool_versions():
    if not os.access(CHROMIUM, os.X_OK):
        skip("%s not installed (Debian package chromium)" % CHROMIUM)
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        skip("node/npm not installed (Node.js with npm)")
    ver = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(ver.lstrip("v").split(".")[0] or 0)
    if major < 20:
        skip("node %s is too old for playwright-core (needs >= 20)" % ver)
    return node, npm, ver


def npm_install(npm):
    """npm ci of package-lock.json into $CS_WORK/osd/npm, reused while the
    lock file is unchanged."""
    os.makedirs(NPM_DIR, exist_ok=True)
    h = hashlib.sha256()
    for f in ("package.json", "package-lock.json"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    stamp = os.path.join(NPM_DIR, "node_modules", ".consilium-stamp")
    want = h.hexdigest()
    if os.path.exists(stamp) and open(stamp).read().strip() == want:
        return
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, f), os.path.join(NPM_DIR, f))
    log("npm ci in %s" % NPM_DIR)
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=NPM_DIR, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("npm ci failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    with open(stamp, "w") as fh:
        fh.write(want + "\n")


class StaticServer:
    """The page's origin: serves page.html and OpenSeadragon's build."""

    def __init__(self):
        osd_dir = os.path.join(NPM_DIR, "node_modules", "openseadragon", "build",
                               "openseadragon")
        page = os.path.join(HERE, "page.html")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                p = urllib.parse.urlparse(self.path).path
                if p in ("/", "/page.html"):
                    f, ctype = page, "text/html; charset=utf-8"
                elif p.startswith("/osd/") and ".." not in p:
                    f = os.path.join(osd_dir, p[len("/osd/"):])
                    ctype = ("application/javascript" if f.endswith(".js")
                             else "image/png" if f.endswith(".png")
                             else "application/octet-stream")
                else:
                    f = None
                if not f or not os.path.isfile(f):
                    self.send_error(404)
                    return
                with open(f, "rb") as fh:
                    body = fh.read()
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def pids_with_arg(arg):
    """Processes whose command line has arg (exactly) among its arguments."""
    pids = []
    want = arg.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as fh:
                if want in fh.read().split(b"\0"):
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def run_browser(node, cases, server_origin):
    """Runs shot.js on the cases; returns its result document."""
    # A switch Chromium ignores, unique to this run: it names the browser
    # processes this run started, to end them should the driver die first.
    marker = "--consilium-osd-run=%d-%d" % (os.getpid(), time.time_ns())
    job = {"nodeModules": os.path.join(NPM_DIR, "node_modules"), "chromium": CHROMIUM,
           "serverOrigin": server_origin, "cases": cases, "extraArgs": [marker]}
    job_path = os.path.join(OUT, "job.json")
    res_path = os.path.join(OUT, "result.json")
    with open(job_path, "w") as fh:
        json.dump(job, fh, indent=1)
    if os.path.exists(res_path):
        os.unlink(res_path)
    proc = subprocess.Popen([node, os.path.join(HERE, "shot.js"), job_path, res_path],
                            start_new_session=True)
    try:
        proc.wait(NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        log("FAIL: shot.js still running after %d s: killed" % NODE_TIMEOUT)
    finally:
        # The node driver and every Chromium process it started share a
        # process group: end that group whatever happened.
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait()
        # playwright starts Chromium in a process group of its own and ends
        # it when the driver exits normally or on SIGTERM; after a SIGKILL
        # end it here: the group of each process carrying this run's marker.
        for pid in pids_with_arg(marker):
            log("ending Chromium left behind: pid %d" % pid)
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    if not os.path.exists(res_path):
        return {"ok": False, "error": "shot.js wrote no result (exit %s)" % proc.returncode,
                "cases": []}
    with open(res_path) as fh:
        return json.load(fh)


# --- image checks -----------------------------------------------------------

_full = {}


def oracle(slide_id, rect, viewer, level_scale):
    """The slide as OpenSlide renders it, placed in the viewer the way
    OpenSeadragon placed it: the whole image scaled into rect (viewer-element
    pixels, fractional), the rest the viewer's background. Like OpenSeadragon,
    which draws the tiles of one pyramid level scaled by the canvas, it is
    first reduced (area average) to that level's resolution, then resampled
    bilinearly into the viewer."""
    import openslide
    if slide_id not in _full:
        with openslide.OpenSlide(os.path.join(cshelp.TESTDATA, SLIDES[slide_id])) as s:
            _full[slide_id] = s.read_region((0, 0), 0, s.dimensions).convert("RGB")
    full = _full[slide_id]
    W, H = full.size
    if not level_scale or level_scale <= 0 or level_scale > 1:
        level_scale = min(1.0, 2 * rect["w"] / W)
    t = full.resize((max(1, round(W * level_scale)), max(1, round(H * level_scale))),
                    Image.BOX)
    sx, sy = t.width / rect["w"], t.height / rect["h"]   # level px per viewer px
    # PIL maps output pixel centre X+0.5 to input coordinate sx*(X+0.5) - x*sx.
    out = t.transform((viewer["w"], viewer["h"]), Image.AFFINE,
                      (sx, 0, -rect["x"] * sx, 0, sy, -rect["y"] * sy),
                      resample=Image.BILINEAR, fillcolor=BACKGROUND)
    return np.asarray(out, dtype=np.float64)


def registered(a, b, block=48):
    """b, with each block x block piece moved by the one-pixel shift (or none)
    that best matches a. OpenSeadragon's canvas drawer draws every tile of a
    source without overlap (IIIF; DZI with Overlap="0") one pixel wider and
    taller than its place to hide seams, so the picture is locally off by up
    to a pixel; this measure forgives that, and nothing more."""
    la, lb = cshelp.luma(a), cshelp.luma(b)
    h, w = la.shape
    out = b.copy()
    for y in range(1, h - block, block):
        for x in range(1, w - block, block):
            A = la[y:y + block, x:x + block]
            best = None
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    e = float(np.mean((A - lb[y + dy:y + dy + block, x + dx:x + dx + block]) ** 2))
                    if best is None or e < best[0]:
                        best = (e, dx, dy)
            _, dx, dy = best
            out[y:y + block, x:x + block] = b[y + dy:y + dy + block, x + dx:x + dx + block]
    return out


def inner_box(rect, viewer):
    """Viewer pixels fully covered by the image, less one pixel each side."""
    x0 = max(0, math.ceil(rect["x"]) + 1)
    y0 = max(0, math.ceil(rect["y"]) + 1)
    x1 = min(viewer["w"], math.floor(rect["x"] + rect["w"]) - 1)
    y1 = min(viewer["h"], math.floor(rect["y"] + rect["h"]) - 1)
    return x0, y0, x1, y1


def blank_stats(a):
    """(luma std dev, share of the most common coarse colour, share of near
    white) of an RGB array."""
    lum = cshelp.luma(a)
    q = (a.astype(np.int64) // 16).reshape(-1, 3)
    codes = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
    top = np.bincount(codes).max() / float(len(codes))
    white = float(np.mean(np.all(a > 230, axis=-1)))
    return float(lum.std()), float(top), white


def not_blank(a):
    std, top, white = blank_stats(a)
    return std > MIN_STD and top < MAX_ONE_COLOUR and white < MAX_WHITE, (std, top, white)


def ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    d = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / d if d > 0 else 0.0


def load_png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def main():
    node, npm, node_ver = tool_versions()
    os.makedirs(OUT, exist_ok=True)
    npm_install(npm)
    c = cshelp.Checker()
    paths = [os.path.join(cshelp.TESTDATA, p) for p in SLIDES.values()]
    for p in paths:
        if not os.path.exists(p):
            skip("test slide missing: " + p)
    t_start = time.time()
    with cshelp.Server(paths, token=TOKEN) as srv, StaticServer() as web:
        origin = srv.base
        log("consilium at %s, page at %s (cross-origin), node %s" % (origin, web.base, node_ver))
        c.check(origin != web.base, "page and server share an origin")

        def page(source, auth="header", token=TOKEN, drawer="canvas", **extra):
            q = {"source": source, "auth": auth, "token": token, "drawer": drawer}
            q.update(extra)
            return web.base + "/page.html?" + urllib.parse.urlencode(q)

        def dzi(sid):
            return "%s/slides/%s.dzi" % (origin, sid)

        def info(sid):
            return "%s/iiif/3/%s/info.json" % (origin, sid)

        cases = []
        positives = []
        # Each source with OpenSeadragon's canvas drawer, and with its default
        # ("auto": WebGL where it works, here Chromium's software WebGL).
        for sid in SLIDES:
            short = sid.split("-")[0].lower()
            for kind, url in (("dzi", dzi(sid)), ("iiif", info(sid))):
                for drawer, suffix in (("canvas", ""), ("auto", "-auto")):
                    name = "%s-%s%s" % (short, kind, suffix)
                    cases.append({"name": name, "url": page(url, drawer=drawer),
                                  "expect": "load", "png": os.path.join(OUT, name + ".png"),
                                  "timeoutMs": 40000})
                    positives.append((name, sid))
        # The token in the query string instead of a header: plain <img>
        # tiles (crossOrigin anonymous); OpenSeadragon carries the DZI's
        # query string over to the tile URLs.
        sid = "CMU-1-Small-Region"
        cases.append({"name": "cmu-dzi-query",
                      "url": page(dzi(sid) + "?access_token=" + TOKEN, auth="query", token=""),
                      "expect": "load", "png": os.path.join(OUT, "cmu-dzi-query.png"),
                      "timeoutMs": 40000})
        positives.append(("cmu-dzi-query", sid))
        negatives = [
            ("neg-dzi-wrong-token", page(dzi(sid), token="wrong"), "open"),
            ("neg-iiif-wrong-token", page(info(sid), token="wrong"), "open"),
            # info.json fetched with the right token, tiles with a wrong one.
            ("neg-iiif-tiles-wrong-token",
             page(info(sid), auth="prefetch-iiif", token="wrong", descToken=TOKEN), "tiles"),
        ]
        for name, url, _ in negatives:
            cases.append({"name": name, "url": url, "expect": "fail",
                          "png": os.path.join(OUT, name + ".png"), "timeoutMs": 20000})

        res = run_browser(node, cases, origin)
        c.check(srv.alive(), "consilium still running after the browser cases")

    if res.get("error"):
        log("browser: " + res["error"])
    c.check(not res.get("error"), "shot.js ran: %s" % res.get("error"))
    log("browser: %s" % res.get("browser"))
    by_name = {r["name"]: r for r in res.get("cases", [])}
    figures = {}

    for name, sid in positives:
        r = by_name.get(name)
        if not c.check(r is not None, "%s: no result from the browser" % name):
            continue
        st = r.get("state") or {}
        if not c.check(r["ok"], "%s: %s" % (name, r.get("error"))):
            for line in r.get("console", [])[:10] + r.get("requestFailed", [])[:10]:
                log("    " + line)
            continue
        c.check(st.get("opened"), "%s: OpenSeadragon did not open the source" % name)
        c.check(st.get("fullyLoaded"), "%s: not fully loaded" % name)
        c.check(st.get("tileLoaded", 0) > 0, "%s: no tile-loaded event" % name)
        c.check(st.get("tileFailed", 0) == 0, "%s: %d tile-load-failed: %s"
                % (name, st.get("tileFailed", 0), st.get("tileFailures")))
        if not name.endswith("-auto"):
            c.check(st.get("drawer") == "canvas", "%s: drawer %s" % (name, st.get("drawer")))
        resp = r.get("responses", {})
        bad = {k: v for k, v in resp.items() if not k.split()[1].startswith("2")}
        c.check(not bad, "%s: server answered with errors: %s" % (name, bad))
        gets = resp.get("GET 200", 0)
        # One descriptor + every tile.
        c.check(gets >= st.get("tileLoaded", 0) + 1,
                "%s: %d GET 200 for %d tiles" % (name, gets, st.get("tileLoaded", 0)))
        # How the token travelled. (Chromium does not show CORS preflights
        # to playwright; a cross-origin XHR with Authorization that succeeded
        # went through one.)
        urls = [u.split(" ", 2)[2] for u in r.get("urls", [])]
        with_q = [u for u in urls if "access_token=" in u]
        if name.endswith("query"):
            c.check(urls and len(with_q) == len(urls),
                    "%s: requests without ?access_token=: %s"
                    % (name, [u for u in urls if u not in with_q][:3]))
        else:
            c.check(urls and not with_q, "%s: token in the URL: %s" % (name, with_q[:3]))
        img_size = st.get("imageSize") or {}
        c.check(img_size == {"w": OPENSLIDE_DIMS[sid][0], "h": OPENSLIDE_DIMS[sid][1]},
                "%s: OpenSeadragon's image size %s" % (name, img_size))
        rect, viewer = st.get("rect"), st.get("viewerSize")
        if not c.check(rect and viewer, "%s: no image rectangle from the page" % name):
            continue
        # Letterboxed fit: one side fills the viewer, the other is centred.
        fills = (abs(rect["w"] - viewer["w"]) < 1.0 and rect["h"] <= viewer["h"] + 1) or \
                (abs(rect["h"] - viewer["h"]) < 1.0 and rect["w"] <= viewer["w"] + 1)
        c.check(fills, "%s: image not fitted into the viewer: %s in %s" % (name, rect, viewer))
        shot = load_png(r_png(cases, name))
        if not c.check(shot.shape[:2] == (viewer["h"], viewer["w"]),
                       "%s: screenshot %s, viewer %s" % (name, shot.shape, viewer)):
            continue
        x0, y0, x1, y1 = inner_box(rect, viewer)
        crop = shot[y0:y1, x0:x1]
        ok, (std, top, white) = not_blank(crop)
        c.check(ok, "%s: screenshot looks blank: std %.1f, one colour %.2f, white %.2f"
                % (name, std, top, white))
        ref = oracle(sid, rect, viewer, st.get("topLevelScale"))
        ref_crop = ref[y0:y1, x0:x1]
        ok_ref, _ = not_blank(ref_crop)
        c.check(ok_ref, "%s: the oracle itself looks blank (test bug)" % name)
        lc, lr = cshelp.luma(crop), cshelp.luma(ref_crop)
        corr, p = ncc(lc, lr), cshelp.psnr(crop, ref_crop)
        reg = registered(crop, ref_crop)
        corr_reg, p_reg = ncc(lc, cshelp.luma(reg)), cshelp.psnr(crop, reg)
        cdiff = np.abs(crop.mean(axis=(0, 1)) - ref_crop.mean(axis=(0, 1)))
        # The same measures against the slide upside down must fail, or the
        # resemblance check proves nothing.
        flip = registered(crop, ref_crop[::-1, ::-1].copy())
        corr_flip = ncc(lc, cshelp.luma(flip))
        figures[name] = (st.get("drawer"), corr, p, corr_reg, p_reg)
        log("%-14s %s drawer, tiles %3d (levels %s, scale %s) rect %.1f,%.1f %.1fx%.1f  "
            "corr %.4f psnr %.2f dB | registered corr %.4f psnr %.2f dB | "
            "colour diff %s | flipped corr %.3f | std %.1f | %d ms"
            % (name, st.get("drawer"), st.get("tileLoaded", 0), st.get("levels"),
               st.get("topLevelScale"),
               rect["x"], rect["y"], rect["w"], rect["h"], corr, p, corr_reg, p_reg,
               np.round(cdiff, 1).tolist(), corr_flip, std, r.get("ms", 0)))
        c.check(corr >= MIN_CORR, "%s: correlation %.4f < %.2f" % (name, corr, MIN_CORR))
        c.check(p >= MIN_PSNR, "%s: luma PSNR %.2f dB < %.1f" % (name, p, MIN_PSNR))
        c.check(corr_reg >= MIN_CORR_REG, "%s: registered correlation %.4f < %.2f"
                % (name, corr_reg, MIN_CORR_REG))
        c.check(p_reg >= MIN_PSNR_REG, "%s: registered luma PSNR %.2f dB < %.1f"
                % (name, p_reg, MIN_PSNR_REG))
        c.check(float(cdiff.max()) <= MAX_COLOUR_DIFF,
                "%s: mean colour differs by %s" % (name, cdiff.tolist()))
        c.check(corr_flip < 0.5, "%s: flipped slide correlates %.3f" % (name, corr_flip))
        Image.fromarray(ref.astype(np.uint8)).save(os.path.join(OUT, name + "-oracle.png"))

    for name, _, how in negatives:
        r = by_name.get(name)
        if not c.check(r is not None, "%s: no result from the browser" % name):
            continue
        st = r.get("state") or {}
        c.check(r["ok"], "%s: %s" % (name, r.get("error")))
        if how == "open":
            c.check(bool(st.get("openFailed")), "%s: no open-failed event" % name)
            c.check(st.get("tileLoaded", 0) == 0, "%s: tiles loaded" % name)
            c.check(r.get("responses", {}).get("GET 401", 0) >= 1,
                    "%s: server did not answer 401: %s" % (name, r.get("responses")))
        else:
            c.check(st.get("opened"), "%s: info.json not opened" % name)
            c.check(st.get("tileFailed", 0) > 0 and st.get("tileLoaded", 0) == 0,
                    "%s: tiles loaded %d, failed %d" % (name, st.get("tileLoaded", 0),
                                                          st.get("tileFailed", 0)))
            c.check(r.get("responses", {}).get("GET 401", 0) == st.get("tileFailed"),
                    "%s: %d tile-load-failed for %s" % (name, st.get("tileFailed", 0),
                                                        r.get("responses")))
        log("%-26s open-failed %r, tile-loaded %d, tile-load-failed %d, fully-loaded %s, "
            "responses %s" % (name, st.get("openFailed"), st.get("tileLoaded", 0),
                              st.get("tileFailed", 0), st.get("fullyLoaded"),
                              r.get("responses")))
        png = r_png(cases, name)
        if os.path.exists(png):
            ok, stats = not_blank(load_png(png))
            c.check(not ok, "%s: the failed viewer is not judged blank: %s" % (name, stats))
    log("resemblance (screenshot vs OpenSlide, luma): name, drawer, corr, PSNR dB, "
        "registered corr, registered PSNR dB")
    for name, f in figures.items():
        log("  %-19s %-6s %.4f %6.2f  %.4f %6.2f" % ((name,) + f))
    log("screenshots in %s (%.1f s)" % (OUT, time.time() - t_start))
    c.finish()


def r_png(cases, name):
    return next(x["png"] for x in cases if x["name"] == name)


def _dims():
    import openslide
    d = {}
    for sid, rel in SLIDES.items():
        p = os.path.join(cshelp.TESTDATA, rel)
        if os.path.exists(p):
            with openslide.OpenSlide(p) as s:
                d[sid] = s.dimensions
    return d


OPENSLIDE_DIMS = {}

if __name__ == "__main__":
    try:
        OPENSLIDE_DIMS.update(_dims())
        main()
    except SystemExit:
        raise
    except Exception as e:  # a broken setup is a failure with a reason
        import traceback
        traceback.print_exc()
        log("FAIL: %s: %s" % (type(e).__name__, e))
        print("0 passed, 1 failed")
        sys.exit(1)
