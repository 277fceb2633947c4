"""Thin-link bench: the viewer behind an emulated 4 Mbit/s, 50 ms RTT link.

Starts `consilium serve` on the big slide (40960x30720, made by
scripts/make-big-slide.sh if missing), cs-linkemu in front of it, and runs
`consilium-view --views` headless through the link on N seeded random
full-resolution 1920x1080 viewports. For each view it reports

  first paint   ms until something covers the view (target <= 300 ms)
  sharp         ms until every visible tile of the full-resolution level is drawn
  bound         visible full-resolution tiles' bytes / link rate + 2 RTT
  ratio         sharp / bound (target <= 1.5)

then the medians, and one JSON summary line (also written to --json).
A benchmark: it does not gate CI; the exit status is 0 when it ran, whether
or not the targets were met, 1 when something failed to run.

usage: /usr/bin/python3 bench/thinlink/run.py [--rate 4mbit] [--rtt 50ms]
       [--views 10] [--seed 1] [--slide build/data/big.tiff] [--json FILE]
Run from the source tree (paths default to build/dev) or through
`cmake --build build/dev --target bench-thinlink`.
"""
import argparse
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "bench", "linkemu"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

TARGET_FIRST_MS = 300.0
TARGET_RATIO = 1.5


def parse_rate(s):
    m = re.fullmatch(r"([0-9.]+)(bit|kbit|mbit|gbit)", s.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError("rate like 4mbit (bit, kbit, mbit, gbit)")
    return float(m.group(1)) * {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]


def parse_time(s):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", s.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError("time like 50ms (us, ms, s)")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def args_parse():
    ap = argparse.ArgumentParser(description="viewer on an emulated thin link")
    ap.add_argument("--rate", default="4mbit", help="link rate (default 4mbit)")
    ap.add_argument("--rtt", default="50ms", help="round-trip time (default 50ms)")
    ap.add_argument("--queue", default=None, help="bottleneck queue, cs-linkemu units "
                    "(default: the emulator's, max(64k, 1 BDP))")
    ap.add_argument("--views", type=int, default=10, help="random viewports (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="viewport seed (default 1)")
    ap.add_argument("--size", default="1920x1080", help="viewport (default 1920x1080)")
    ap.add_argument("--slide", default=os.path.join(SRC, "build", "data", "big.tiff"))
    ap.add_argument("--build", default=os.path.join(SRC, "build", "dev"),
                    help="build tree holding the binaries (default build/dev)")
    ap.add_argument("--bin", help="consilium (default BUILD/core/consilium)")
    ap.add_argument("--linkemu", help="cs-linkemu (default BUILD/bench/linkemu/cs-linkemu)")
    ap.add_argument("--view", help="consilium-view (default BUILD/viewer/consilium-view)")
    ap.add_argument("--viewer-arg", action="append", default=[],
                    help="extra consilium-view argument (repeatable), e.g. --viewer-arg=--ring=0")
    ap.add_argument("--timeout", type=float, default=120, help="per-view timeout, s")
    ap.add_argument("--json", help="also write the JSON summary here")
    a = ap.parse_args()
    try:
        a.rate_bps = parse_rate(a.rate)
        a.rtt_s = parse_time(a.rtt)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    m = re.fullmatch(r"(\d+)x(\d+)", a.size)
    if not m:
        ap.error("--size WxH")
    a.w, a.h = int(m.group(1)), int(m.group(2))
    if a.views < 1:
        ap.error("--views must be >= 1")
    a.bin = a.bin or os.path.join(a.build, "core", "consilium")
    a.linkemu = a.linkemu or os.path.join(a.build, "bench", "linkemu", "cs-linkemu")
    a.view = a.view or os.path.join(a.build, "viewer", "consilium-view")
    return a


def random_views(seed, n, slide_w, slide_h, w, h):
    """n seeded full-resolution (zoom 1) viewports inside the slide."""
    rng = random.Random(seed)
    return [(rng.randrange(0, max(1, slide_w - w + 1)),
             rng.randrange(0, max(1, slide_h - h + 1)), 1.0) for _ in range(n)]


def median(xs, nd=1):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), nd) if xs else None


def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


def main():
    a = args_parse()
    for path, what in ((a.bin, "consilium"), (a.linkemu, "cs-linkemu"),
                       (a.view, "consilium-view")):
        if not os.path.exists(path):
            print("thinlink: no %s at %s (build it: cmake --build build/dev -j2)" % (what, path),
                  file=sys.stderr)
            return 1
    if not os.path.exists(a.slide):
        os.makedirs(os.path.dirname(a.slide), exist_ok=True)
        print("thinlink: making %s (a few minutes, once)" % a.slide, flush=True)
        subprocess.run([os.path.join(SRC, "scripts", "make-big-slide.sh"), a.slide], check=True)

    work = os.path.join(a.build, "benchwork")
    os.makedirs(work, exist_ok=True)
    os.environ["CS_WORK"] = work
    import cshelp
    from linkemu import LinkEmu
    cshelp.BIN = a.bin
    cshelp.WORK = work

    # SIGTERM unwinds like Ctrl-C, so the context managers stop what they started.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    token = secrets.token_hex(16)
    viewer = None
    try:
        with cshelp.Server([a.slide], token=token) as srv:
            slides = srv.json("/slides")["slides"]
            s = slides[0]
            sid, sw, sh = s["id"], s["width"], s["height"]
            views = random_views(a.seed, a.views, sw, sh, a.w, a.h)
            vf = os.path.join(work, "thinlink-views-%d.txt" % os.getpid())
            with open(vf, "w") as f:
                f.write("# thinlink seed %d: X,Y,ZOOM\n" % a.seed)
                for x, y, z in views:
                    f.write("%d,%d,%g\n" % (x, y, z))
            with LinkEmu(srv.port, rate=a.rate, rtt=a.rtt, queue=a.queue, binary=a.linkemu,
                         workdir=work) as link:
                url = "http://127.0.0.1:%d/slides/%s.dzi" % (link.port, sid)
                cmd = [a.view, url, "--token", token, "--views", vf, "--size", a.size,
                       "--timeout", "%g" % a.timeout] + a.viewer_arg
                print("thinlink: %s %dx%d, link %s / %s RTT (queue %s), %d views, seed %d"
                      % (sid, sw, sh, a.rate, a.rtt, a.queue or "default", a.views, a.seed),
                      flush=True)
                env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
                t0 = time.monotonic()
                errf = tempfile.TemporaryFile(mode="w+", dir=work)
                viewer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True,
                                          env=env)
                lines = []
                for line in viewer.stdout:
                    line = line.strip()
                    if not line.startswith("{"):
                        continue
                    rec = json.loads(line)
                    lines.append(rec)
                    report_line(a, rec)
                rc = viewer.wait()
                errf.seek(0)
                err = errf.read()
                errf.close()
                viewer = None
                wall = time.monotonic() - t0
            linkstats = link.final
            os.unlink(vf)
    except KeyboardInterrupt:
        print("thinlink: interrupted", file=sys.stderr)
        return 1
    finally:
        if viewer is not None and viewer.poll() is None:
            viewer.kill()
            viewer.wait()

    if rc != 0:
        print("thinlink: consilium-view exited with %d:\n%s" % (rc, err.strip()), file=sys.stderr)
    summary = summarize(a, lines, linkstats, wall, rc)
    line = json.dumps(summary, sort_keys=True)
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    return 0 if rc == 0 and summary["views_done"] == a.views else 1


def bound_ms(a, nbytes):
    return nbytes * 8 / a.rate_bps * 1e3 + 2 * a.rtt_s * 1e3


def report_line(a, rec):
    if "startup_ms" in rec:
        print("startup %.1f ms, %d bytes prefetched (coarse levels)"
              % (rec["startup_ms"], rec["prefetch_bytes"]))
        print("%4s %7s %7s %9s %9s %9s %6s %6s %8s" % ("view", "x", "y", "first_ms", "sharp_ms",
                                                    "bound_ms", "ratio", "tiles", "KiB"))
        return
    b = bound_ms(a, rec["bytes"])
    sharp = rec.get("sharp_ms")
    ratio = sharp / b if sharp is not None else None
    print("%4d %7d %7d %9s %9s %9.1f %6s %6d %8.1f" % (
        rec["view"], rec["x"], rec["y"], fmt(rec.get("first_paint_ms")), fmt(sharp), b,
        fmt(ratio, "%.2f"), rec["tiles"], rec["bytes"] / 1024), flush=True)


def summarize(a, lines, linkstats, wall, rc):
    start = next((l for l in lines if "startup_ms" in l), {})
    per = []
    for rec in lines:
        if "view" not in rec:
            continue
        b = bound_ms(a, rec["bytes"])
        sharp = rec.get("sharp_ms")
        per.append({"view": rec["view"], "x": rec["x"], "y": rec["y"], "zoom": rec["zoom"],
                    "first_paint_ms": rec.get("first_paint_ms"), "sharp_ms": sharp,
                    "bound_ms": round(b, 1),
                    "ratio": round(sharp / b, 3) if sharp is not None else None,
                    "tiles": rec["tiles"], "bytes": rec["bytes"], "fetched": rec["fetched"]})
    med_first = median([p["first_paint_ms"] for p in per])
    med_ratio = median([p["ratio"] for p in per], 3)
    med = {"first_paint_ms": med_first, "sharp_ms": median([p["sharp_ms"] for p in per]),
           "bound_ms": median([p["bound_ms"] for p in per]), "ratio": med_ratio}
    worst_first = max((p["first_paint_ms"] for p in per if p["first_paint_ms"] is not None),
                      default=None)
    print("median: first paint %s ms (target <= %g), sharp %s ms, bound %s ms, ratio %s "
          "(target <= %g)" % (fmt(med_first), TARGET_FIRST_MS, fmt(med["sharp_ms"]),
                              fmt(med["bound_ms"]), fmt(med_ratio, "%.2f"), TARGET_RATIO))
    met_first = med_first is not None and med_first <= TARGET_FIRST_MS
    met_ratio = med_ratio is not None and med_ratio <= TARGET_RATIO
    print("targets: first paint %s, sharp/bound %s (medians)"
          % ("met" if met_first else "MISSED", "met" if met_ratio else "MISSED"))
    link = None
    if linkstats:
        link = {"down_bytes": linkstats["down"]["out_bytes"],
                "up_bytes": linkstats["up"]["out_bytes"],
                "conns": linkstats["conns_total"],
                "down_max_backlog": linkstats["down"]["max_backlog"],
                "queue_bytes": linkstats["queue_bytes"]}
        print("link: %.1f KiB down, %.1f KiB up, %d connections, busy %.0f%% of the run"
              % (link["down_bytes"] / 1024, link["up_bytes"] / 1024, link["conns"],
                 100 * link["down_bytes"] * 8 / a.rate_bps / wall if wall else 0))
    return {"bench": "thinlink", "rate_bps": a.rate_bps, "rtt_ms": a.rtt_s * 1e3,
            "size": a.size, "seed": a.seed, "views_asked": a.views, "views_done": len(per),
            "viewer_rc": rc, "startup_ms": start.get("startup_ms"),
            "prefetch_bytes": start.get("prefetch_bytes"), "views": per, "median": med,
            "worst_first_paint_ms": worst_first,
            "targets": {"first_paint_ms": TARGET_FIRST_MS, "ratio": TARGET_RATIO},
            "met": {"first_paint": met_first, "ratio": met_ratio}, "link": link,
            "wall_s": round(wall, 2)}


if __name__ == "__main__":
    sys.exit(main())
