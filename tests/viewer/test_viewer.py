"""consilium-view, headless, against OpenSlide's own rendering.

Starts the real server (cshelp.Server) on CMU-1-Small-Region.svs, asks the
viewer for --screenshot of several regions (zoom 1 inside a tile and across
tile boundaries, zoom 0.5 at odd coordinates, zoom 0.25) and compares each
with OpenSlide read_region at level 0, box-resized with PIL for zoom < 1:
luma PSNR >= 30 dB, no one-pixel shift matching better, and no seams (the
error along the screen columns/rows where tile boundaries fall is at most
1.5x the error elsewhere). The same in FILE mode (no server), plus a JPEG
2000 slide whose tiles have a 1-pixel overlap. Then bad input (wrong token,
unknown slide, missing file, unreachable server), the URL forms, overlays,
and the --views timing output the thin-link bench reads.

Runs with SDL_VIDEODRIVER=dummy and no DISPLAY. Prints "N passed, N failed".
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("CS_SRC", "."), "tests", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
import openslide  # noqa: E402
from PIL import Image  # noqa: E402

VIEW = os.environ.get("CS_VIEW", "build/dev/viewer/consilium-view")
CMU = os.path.join(cshelp.TESTDATA, "wsi", "CMU-1-Small-Region.svs")
TCGA = os.path.join(cshelp.TESTDATA, "wsi", "TCGA-CR-7395-01A-01-TS1.svs")
OUT = os.path.join(cshelp.WORK, "viewer")
os.makedirs(OUT, exist_ok=True)

ENV = dict(os.environ)
ENV["SDL_VIDEODRIVER"] = "dummy"
ENV.pop("DISPLAY", None)
ENV.pop("WAYLAND_DISPLAY", None)
ENV.pop("CONSILIUM_TOKEN", None)

# (name, x, y, zoom, w, h): level-0 top-left, zoom, screenshot size
# (odd positions put the view half a level pixel off the level's grid)
REGIONS = [
    ("z1-interior", 965, 1450, 1.0, 200, 150),  # inside one 240-px tile
    ("z1-boundaries", 300, 400, 1.0, 800, 600),
    ("z0.5", 500, 734, 0.5, 800, 600),
    ("z0.5-odd", 501, 733, 0.5, 800, 600),
    ("z0.25", 20, 40, 0.25, 540, 720),
    ("z0.25-odd", 23, 43, 0.25, 540, 720),
]

ck = cshelp.Checker()


def run(args, timeout=300):
    t = time.time()
    p = subprocess.run([VIEW] + args, env=ENV, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t


def oracle(slide, x, y, zoom, w, h, flt=Image.BILINEAR):
    """OpenSlide's level-0 pixels of the region, resized with PIL to the zoom.
    BILINEAR (a triangle filter when shrinking) is the area counterpart of
    the linear filtering a tiled viewer does; BOX is printed alongside."""
    sw, sh = int(round(w / zoom)), int(round(h / zoom))
    img = slide.read_region((x, y), 0, (sw, sh)).convert("RGB")
    if (sw, sh) != (w, h):
        img = img.resize((w, h), flt)
    return np.asarray(img, dtype=np.float64)


def boundaries(x, zoom, n, tile, overlap, nlevels, full):
    """For each tile boundary of the DZI level the viewer draws at this zoom
    (the smallest whose scale >= zoom), the screen column b such that the
    boundary falls between columns b-1 and b."""
    z = nlevels - 1
    for lv in range(nlevels):
        if 2.0 ** -(nlevels - 1 - lv) >= zoom * (1 - 1e-9):
            z = lv
            break
    ds = 2.0 ** (nlevels - 1 - z)
    out = []
    c = 1
    while c * tile * ds < full:
        s = (c * tile * ds - x) * zoom
        if 1 <= s < n - 1:
            out.append(int(np.ceil(s)) if s != int(s) else int(s))
        c += 1
    return out


def nlevels_of(w, h):
    n = 1
    while w > 1 or h > 1:
        w, h = (w + 1) // 2, (h + 1) // 2
        n += 1
    return n


def seam_ratio(ours, ref, x, y, zoom, tile, overlap, full_w, full_h):
    """Mean error on the lines either side of each tile boundary, against
    the mean on the lines 2-8 px away from it (a seam is a local step; the
    neighbourhood keeps tissue-rich areas from hiding or faking one)."""
    d = np.abs(cshelp.luma(ours) - cshelp.luma(ref))
    nl = nlevels_of(full_w, full_h)
    out = []
    for axis, pos, full in ((1, x, full_w), (0, y, full_h)):
        n = d.shape[axis]
        prof = d.mean(axis=1 - axis)
        idx = boundaries(pos, zoom, n, tile, overlap, nl, full)
        at, near = [], []
        for b in idx:  # b-1, b straddle the boundary
            if b - 9 < 0 or b + 9 > n:
                continue
            at += [prof[b - 1], prof[b]]
            near += list(prof[b - 9:b - 2]) + list(prof[b + 2:b + 9])
        if at:
            out.append((float(np.mean(at)), float(np.mean(near)), len(at) // 2))
    return out


def compare(label, png, slide, x, y, zoom, w, h, tile, overlap, min_psnr=30.0):
    if not ck.check(os.path.exists(png), "%s: no screenshot written" % label):
        return
    ours = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    if not ck.check(ours.shape == (h, w, 3), "%s: size %s, want %dx%d" % (label, ours.shape, w, h)):
        return
    ref = oracle(slide, x, y, zoom, w, h)
    p = cshelp.psnr(ours, ref)
    pbox = cshelp.psnr(ours, oracle(slide, x, y, zoom, w, h, Image.BOX)) if zoom != 1 else p
    shift, sp, base = cshelp.best_shift(ours, ref)
    seams = seam_ratio(ours, ref, x, y, zoom, tile, overlap, *slide.dimensions)
    seam_txt = ", ".join("%.2f vs %.2f near (%d)" % s for s in seams) or "no boundary on screen"
    print("%-30s PSNR %6.2f dB (box %5.2f)  best shift %s (%.2f)  seam error: %s" %
          (label, p, pbox, shift, sp, seam_txt), flush=True)
    ck.check(p >= min_psnr, "%s: PSNR %.2f < %.1f" % (label, p, min_psnr))
    ck.check(shift == (0, 0) or sp <= base + 0.01,  # a tie is no shift
             "%s: shifted by %s matches better (%.2f > %.2f)" % (label, shift, sp, base))
    for at, rest, _ in seams:
        ck.check(at <= 1.5 * rest + 0.05,
                 "%s: seam: error on tile boundaries %.3f > 1.5 x %.3f" % (label, at, rest))


def screenshots(label, target, extra, slide, tile, overlap, regions):
    for name, x, y, zoom, w, h in regions:
        png = os.path.join(OUT, "%s-%s.png" % (label, name))
        if os.path.exists(png):
            os.unlink(png)
        rc, _, err, secs = run([target, "--screenshot", png, "--view", "%d,%d,%g" % (x, y, zoom),
                                "--size", "%dx%d" % (w, h)] + extra)
        if not ck.check(rc == 0, "%s %s: exit %d: %s" % (label, name, rc, err.strip())):
            continue
        compare("%s %s (%.1fs)" % (label, name, secs), png, slide, x, y, zoom, w, h, tile, overlap)


def main():
    ck.check(os.access(VIEW, os.X_OK), "no viewer at %s" % VIEW)
    rc, out, _, _ = run(["--help"])
    ck.check(rc == 0 and "--screenshot" in out and "--views" in out, "--help")
    cmu = openslide.OpenSlide(CMU)

    with cshelp.Server([CMU]) as srv:
        sid = srv.json("/slides")["slides"][0]["id"]
        meta = srv.json("/slides/" + sid)
        tile = meta["tile_formats"]["dzi"]["tile_size"]
        ov = meta["tile_formats"]["dzi"]["overlap"]
        dzi = "%s/slides/%s.dzi" % (srv.base, sid)
        tok = ["--token", srv.token]
        screenshots("url", dzi, tok, cmu, tile, ov, REGIONS)

        # the other URL forms open the same slide; the env var carries the token
        ref = os.path.join(OUT, "url-z1-boundaries.png")
        for form in ("%s/slides/%s" % (srv.base, sid), srv.base):
            png = os.path.join(OUT, "form.png")
            rc, _, err, _ = run([form, "--token", srv.token, "--screenshot", png, "--view",
                                 "300,400,1", "--size", "800x600"])
            same = rc == 0 and os.path.exists(ref) and np.array_equal(
                np.asarray(Image.open(png)), np.asarray(Image.open(ref)))
            ck.check(same, "URL form %s: exit %d, same image: %s %s" % (form, rc, same, err))
        env_tok = dict(ENV, CONSILIUM_TOKEN=srv.token)
        p = subprocess.run([VIEW, dzi, "--screenshot=" + os.path.join(OUT, "env.png"),
                            "--size=64x64"], env=env_tok, capture_output=True, text=True,
                           timeout=120)
        ck.check(p.returncode == 0, "token from CONSILIUM_TOKEN: exit %d %s" % (p.returncode,
                                                                                p.stderr))

        # overlays draw on top (scale bar, name, status) and keep the size
        png = os.path.join(OUT, "overlays.png")
        rc, _, err, _ = run([dzi, "--screenshot", png, "--view", "300,400,1", "--size", "800x600",
                             "--overlays"] + tok)
        if ck.check(rc == 0, "--overlays: exit %d %s" % (rc, err)):
            a = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
            b = np.asarray(Image.open(ref).convert("RGB"), dtype=np.float64)
            changed = float(np.mean(np.abs(a - b).sum(axis=2) > 0))
            ck.check(a.shape == b.shape and 0.001 < changed < 0.2,
                     "--overlays changes %.4f of the pixels" % changed)

        # bad input: wrong token, unknown slide, unreachable server
        rc, _, err, _ = run([dzi, "--token", "wrong-token", "--screenshot",
                             os.path.join(OUT, "bad.png")])
        print("wrong token: exit %d: %s" % (rc, err.strip()))
        ck.check(rc != 0 and ("token" in err.lower() or "401" in err),
                 "wrong token: exit %d, message %r" % (rc, err))
        rc, _, err, _ = run([dzi, "--screenshot", os.path.join(OUT, "bad.png")])
        ck.check(rc != 0 and "token" in err.lower(), "no token: exit %d %r" % (rc, err))
        rc, _, err, _ = run(["%s/slides/no-such-slide.dzi" % srv.base, "--screenshot",
                             os.path.join(OUT, "bad.png")] + tok)
        print("unknown slide: exit %d: %s" % (rc, err.strip()))
        ck.check(rc != 0 and "no-such-slide" in err and "404" in err,
                 "unknown slide: exit %d %r" % (rc, err))

        # --views: the thin-link bench's interface
        vf = os.path.join(OUT, "views.txt")
        views = [(300, 400, 1.0), (1000, 1200, 0.5), (300, 400, 1.0), (0, 0, 0.25)]
        with open(vf, "w") as f:
            f.write("# x,y,zoom\n" + "".join("%g,%g,%g\n" % v for v in views))
        # (--ring 0: nothing is left in flight after a view is sharp)
        rc, out, err, _ = run([dzi, "--views", vf, "--size", "800x600", "--timing", "--ring", "0"]
                              + tok)
        lines = [json.loads(s) for s in out.splitlines() if s.strip()]
        print("--views: " + " | ".join(json.dumps(s, separators=(",", ":")) for s in lines))
        ok = rc == 0 and len(lines) == len(views) + 1 and "startup_ms" in lines[0] and \
            lines[0]["prefetch_bytes"] > 0
        keys = {"view", "x", "y", "zoom", "first_paint_ms", "sharp_ms", "tiles", "bytes",
                "fetched"}
        for i, v in enumerate(lines[1:]):
            ok = ok and set(v) == keys and v["view"] == i and v["tiles"] > 0 and \
                v["bytes"] > 0 and 0 <= v["first_paint_ms"] <= v["sharp_ms"]
        # the third view repeats the first: everything is cached, nothing fetched
        ok = ok and lines[3]["fetched"] == 0 and lines[3]["tiles"] == lines[1]["tiles"] and \
            lines[3]["bytes"] == lines[1]["bytes"]
        ck.check(ok, "--views output: exit %d %r %r" % (rc, out, err))

    # unreachable server (the one above is stopped now)
    rc, _, err, _ = run([dzi, "--screenshot", os.path.join(OUT, "bad.png")] + tok)
    print("unreachable: exit %d: %s" % (rc, err.strip()))
    ck.check(rc != 0 and "reach" in err, "unreachable server: exit %d %r" % (rc, err))

    # FILE mode: the same tiles made in-process
    screenshots("file", CMU, [], cmu, tile, ov, REGIONS)
    # JPEG 2000 slide: tiles made by OpenSlide, 254 px with a 1-pixel overlap
    tcga = openslide.OpenSlide(TCGA)
    screenshots("file-jp2", TCGA, [], tcga, 254, 1,
                [("z1-boundaries", 1200, 900, 1.0, 640, 480),
                 ("z0.5", 1001, 777, 0.5, 640, 480)])

    rc, _, err, _ = run([os.path.join(OUT, "missing.svs"), "--screenshot",
                         os.path.join(OUT, "bad.png")])
    print("missing file: exit %d: %s" % (rc, err.strip()))
    ck.check(rc != 0 and "missing.svs" in err and "No such file" in err,
             "missing file: exit %d %r" % (rc, err))
    rc, _, err, _ = run(["/etc/hostname", "--screenshot", os.path.join(OUT, "bad.png")])
    ck.check(rc != 0 and "slide" in err, "not a slide: exit %d %r" % (rc, err))
    rc, _, err, _ = run([CMU, "--view", "1,2", "--screenshot", os.path.join(OUT, "bad.png")])
    ck.check(rc == 2 and "--view" in err, "bad --view: exit %d %r" % (rc, err))
    ck.finish()


if __name__ == "__main__":
    main()
