"""consilium-view annotations, headless, through --script.

(a) Local file: draws each of the seven shapes on CMU-1-Small-Region.svs
with --view 1000,800,0.5 (screen X,Y is level-0 1000 + X/0.5, 800 + Y/0.5),
moves the rectangle, drags a polygon vertex, relabels and classifies,
deletes the point, cancels a polygon with Esc; then checks the sidecar
GeoJSON (--annotations in the work dir, never next to the shared slide):
types, level-0 coordinates, QuPath layout, and the ruler's length in µm
against the distance x MPP (0.1 %). A second run loads the sidecar back.

(b) Server: `consilium serve` with users alice and bob. The viewer, as
alice, draws three shapes; the server's GET shows them with author alice.
While the viewer waits, bob POSTs an ellipse (magenta), PATCHes alice's
rectangle and DELETEs her ruler over REST; the viewer's dump shows all
three changes and its screenshot has the ellipse in magenta. A fresh viewer
then loads the list over REST.

Runs with SDL_VIDEODRIVER=dummy. Prints "N passed, N failed".
"""
import json
import math
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("CS_SRC", "."), "tests", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
import openslide  # noqa: E402
from PIL import Image  # noqa: E402

VIEW = os.environ.get("CS_VIEW", "build/dev/viewer/consilium-view")
CMU = os.path.join(cshelp.TESTDATA, "wsi", "CMU-1-Small-Region.svs")
OUT = os.path.join(cshelp.WORK, "viewer-annot")
os.makedirs(OUT, exist_ok=True)

ENV = dict(os.environ)
ENV["SDL_VIDEODRIVER"] = "dummy"
ENV.pop("DISPLAY", None)
ENV.pop("WAYLAND_DISPLAY", None)
ENV.pop("CONSILIUM_TOKEN", None)
ENV["USER"] = "tester"

VX, VY, Z = 1000.0, 800.0, 0.5
ck = cshelp.Checker()


def l0(x, y):
    return [VX + x / Z, VY + y / Z]


def close(a, b, eps=1e-6):
    return all(abs(p - q) <= eps for p, q in zip(np.ravel(a), np.ravel(b))) and \
        np.shape(a) == np.shape(b)


def script(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run(args, timeout=300):
    p = subprocess.run([VIEW] + args, env=ENV, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


DRAW = [
    "# the seven tools",
    "tool rect", "down 100 100", "move 150 150", "up 200 180",
    "tool ruler", "down 300 100", "move 350 150", "up 500 250",
    "tool point", "click 50 300",
    "tool ellipse", "down 300 300", "move 350 330", "up 400 360",
    "tool polygon", "click 500 330", "click 600 350", "click 560 430", "dblclick 520 410",
    "tool freehand", "down 100 400", "move 120 420", "move 150 430", "move 170 410",
    "up 160 390",
    "tool text", "click 650 500", "type Hello world", "key Return",
    "expect-annotations 7",
]


def local_mode(mpp_x, mpp_y):
    side = os.path.join(OUT, "cmu.annotations.geojson")
    if os.path.exists(side):
        os.unlink(side)
    dump = os.path.join(OUT, "local.json")
    png = os.path.join(OUT, "local.png")
    lines = DRAW + [
        "tool select",
        "# move the rectangle by (20, 10) screen px: drag its left edge",
        "down 100 140", "move 110 145", "up 120 150",
        "# drag the polygon's first vertex: select it, then its handle",
        "click 500 330", "down 500 330", "move 490 320", "up 480 310",
        "# relabel and classify the rectangle",
        "click 120 160", "key N", "type Tumour A", "key Return", "key C",
        "# delete the point",
        "click 50 300", "key Delete",
        "expect-annotations 6",
        "# a polygon cancelled with Esc leaves nothing",
        "tool polygon", "click 700 100", "click 750 100", "key Escape",
        "expect-annotations 6",
        "dump " + dump, "screenshot " + png,
    ]
    sc = script(os.path.join(OUT, "local.txt"), lines)
    rc, _, err = run([CMU, "--annotations", side, "--script", sc, "--size", "800x600",
                      "--view", "%g,%g,%g" % (VX, VY, Z)])
    if not ck.check(rc == 0, "local script: exit %d: %s" % (rc, err)):
        return
    ck.check(os.path.exists(png), "local screenshot written")
    fc = json.load(open(side))
    feats = fc.get("features", [])
    ck.check(fc.get("type") == "FeatureCollection" and len(feats) == 6,
             "sidecar: a FeatureCollection of 6 features (%d)" % len(feats))
    by = {}
    for f in feats:
        c = f["properties"]["consilium"]
        by[c["type"]] = f
        ck.check(f["type"] == "Feature" and len(f["id"]) == 16 and
                 f["properties"]["objectType"] == "annotation" and c["author"] == "tester",
                 "feature layout %s" % json.dumps(f)[:200])
    ck.check(sorted(by) == sorted(["rectangle", "line", "ellipse", "polygon", "freehand", "text"]),
             "sidecar types %s" % sorted(by))
    pts = lambda t: by[t]["properties"]["consilium"]["pts"] if t in by else None  # noqa: E731
    rect = by.get("rectangle")
    if ck.check(rect is not None, "rectangle kept"):
        want = [l0(120, 110), l0(220, 190)]  # moved by (20, 10) screen px
        ck.check(close(pts("rectangle"), want), "rectangle %s, want %s" % (pts("rectangle"), want))
        ring = rect["geometry"]["coordinates"][0]
        ck.check(rect["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1],
                 "rectangle geometry %s" % rect["geometry"])
        pr = rect["properties"]
        ck.check(pr.get("name") == "Tumour A" and
                 pr.get("classification", {}).get("name") == "Tumor" and
                 pr["classification"].get("color") == [200, 0, 0] and
                 pr["consilium"]["rev"] == 4,
                 "rectangle label/class/rev: %s" % json.dumps(pr)[:300])
    ck.check(close(pts("line"), [l0(300, 100), l0(500, 250)]), "ruler %s" % pts("line"))
    ck.check(by.get("line", {}).get("geometry", {}).get("type") == "LineString", "ruler geometry")
    ck.check(close(pts("ellipse"), [l0(300, 300), l0(400, 360)]), "ellipse %s" % pts("ellipse"))
    eg = by.get("ellipse", {}).get("geometry", {})
    ck.check(eg.get("type") == "Polygon" and len(eg["coordinates"][0]) == 65,
             "ellipse is a closed 64-vertex polygon")
    want = [l0(480, 310), l0(600, 350), l0(560, 430), l0(520, 410)]
    ck.check(close(pts("polygon"), want), "polygon %s, want %s" % (pts("polygon"), want))
    fh = pts("freehand")
    ck.check(fh is not None and len(fh) >= 4 and close(fh[0], l0(100, 400)),
             "freehand %s" % fh)
    t = by.get("text")
    ck.check(t is not None and t["properties"]["name"] == "Hello world" and
             close(pts("text"), [l0(650, 500)]) and t["geometry"]["type"] == "Point",
             "text %s" % (t and t["properties"]))

    # measurements: from the dump (computed in the viewer from the MPP)
    d = json.load(open(dump))
    dm = {a["type"]: a for a in d["annotations"]}
    ln = dm.get("line", {}).get("measure", {})
    dx, dy = 200 / Z, 150 / Z
    want_um = math.hypot(dx * mpp_x, dy * mpp_y)
    got = ln.get("length_um", -1)
    print("ruler: %.4f µm, expected %.4f µm (%.1f px x MPP %.4f, %.4f)" %
          (got, want_um, math.hypot(dx, dy), mpp_x, mpp_y))
    ck.check(abs(got - want_um) <= 0.001 * want_um, "ruler µm %.4f vs %.4f" % (got, want_um))
    ck.check(abs(ln.get("length_px", -1) - math.hypot(dx, dy)) < 1e-6, "ruler px")
    em = dm.get("ellipse", {}).get("measure", {})
    want_a = math.pi * (100 / Z / 2) * (60 / Z / 2) * mpp_x * mpp_y
    ck.check(abs(em.get("area_um2", -1) - want_a) <= 1e-3 * want_a,
             "ellipse area %.3f vs %.3f" % (em.get("area_um2", -1), want_a))
    rm = dm.get("rectangle", {}).get("measure", {})
    want_a = (100 / Z) * (80 / Z) * mpp_x * mpp_y
    ck.check(abs(rm.get("area_um2", -1) - want_a) <= 1e-3 * want_a, "rectangle area")
    pm = dm.get("polygon", {}).get("measure", {})
    p = np.array(want)
    shoelace = abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
    ck.check(abs(pm.get("area_um2", -1) - shoelace / 2 * mpp_x * mpp_y) <= 1e-6 * shoelace,
             "polygon area (shoelace)")

    # loaded back at the next start (same ids)
    sc2 = script(os.path.join(OUT, "local2.txt"),
                 ["expect-annotations 6", "dump " + os.path.join(OUT, "local2.json")])
    rc, _, err = run([CMU, "--annotations", side, "--script", sc2, "--size", "800x600"])
    if ck.check(rc == 0, "reload: exit %d %s" % (rc, err)):
        d2 = json.load(open(os.path.join(OUT, "local2.json")))
        ck.check(sorted(a["id"] for a in d2["annotations"]) ==
                 sorted(a["id"] for a in d["annotations"]), "reload keeps the ids")
    sc3 = script(os.path.join(OUT, "local3.txt"), ["expect-annotations 5"])
    rc, _, err = run([CMU, "--annotations", side, "--script", sc3, "--size", "800x600"])
    ck.check(rc == 4 and "expected 5" in err, "expect-annotations mismatch: exit %d %r" % (rc, err))


def rest(srv, method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.base + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"


def server_mode():
    users = ["--user", "alice:pathologist:" + ALICE, "--user", "bob:pathologist:" + BOB]
    with cshelp.Server([CMU], users) as srv:
        sid = srv.json("/slides")["slides"][0]["id"]
        st, _, body = srv.get("/slides/%s/annotations" % sid)
        if st == 404:
            print("SKIP: (b) server mode: GET /slides/{id}/annotations answers 404 (the server "
                  "has no annotation routes yet)")
            return
        url = "%s/slides/%s" % (srv.base, sid)
        dump = os.path.join(OUT, "server.json")
        png = os.path.join(OUT, "server.png")
        lines = [
            "tool rect", "down 100 100", "up 200 180",
            "tool ruler", "down 300 100", "up 500 250",
            "tool polygon", "click 500 330", "click 600 350", "click 560 430", "key Return",
            "tool select",
            "wait 6000",
            "dump " + dump, "screenshot " + png,
        ]
        sc = script(os.path.join(OUT, "server.txt"), lines)
        p = subprocess.Popen([VIEW, url, "--token", ALICE, "--script", sc, "--size", "800x600",
                              "--view", "%g,%g,%g" % (VX, VY, Z)], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # once alice's three shapes are on the server, bob changes things
        mine = []
        deadline = time.time() + 60
        while time.time() < deadline and len(mine) < 3 and p.poll() is None:
            mine = srv.json("/slides/%s/annotations" % sid)["annotations"]
            time.sleep(0.05)
        ck.check(len(mine) == 3 and all(a["author"] == "alice" for a in mine),
                 "the viewer's shapes on the server with author alice: %s" %
                 [(a["type"], a["author"]) for a in mine])
        ell = {"type": "ellipse", "pts": [l0(300, 300), l0(400, 380)], "label": "bob's",
               "color": "#ff00ff"}
        st, bobs = rest(srv, "POST", "/slides/%s/annotations" % sid, BOB, ell)
        ck.check(st == 201, "bob's POST: %s %s" % (st, bobs))
        by = {a["type"]: a for a in mine}
        if "rectangle" in by:
            st, r = rest(srv, "PATCH", "/slides/%s/annotations/%s" % (sid, by["rectangle"]["id"]),
                         BOB, {"rev": by["rectangle"]["rev"], "label": "checked by bob"})
            ck.check(st == 200, "bob's PATCH: %s %s" % (st, r))
        if "line" in by:
            st, r = rest(srv, "DELETE", "/slides/%s/annotations/%s" % (sid, by["line"]["id"]), BOB)
            ck.check(st == 200, "bob's DELETE: %s %s" % (st, r))
        out, err = p.communicate(timeout=300)
        if not ck.check(p.returncode == 0, "server script: exit %d: %s" % (p.returncode, err)):
            return
        d = json.load(open(dump))
        got = {a["type"]: a for a in d["annotations"]}
        print("viewer sees: %s" % [(a["type"], a["author"], a["label"], a["rev"])
                                   for a in d["annotations"]])
        e = got.get("ellipse")
        ck.check(e is not None and e["author"] == "bob" and e["color"] == "#ff00ff" and
                 e["id"] == (bobs or {}).get("id"), "bob's ellipse appears live: %s" % e)
        r = got.get("rectangle")
        ck.check(r is not None and r["label"] == "checked by bob" and r["rev"] == 2 and
                 r["author"] == "alice", "bob's PATCH appears live: %s" % r)
        ck.check("line" not in got, "bob's DELETE appears live")
        ck.check(d["count"] == 3, "3 annotations in the viewer (%d)" % d["count"])
        # the screenshot has the ellipse's outline in magenta
        img = np.asarray(Image.open(png).convert("RGB")).astype(int)
        mag = (np.abs(img - np.array([255, 0, 255])).sum(axis=2) < 30)
        band = mag[295:385, 295:405].sum()
        ck.check(band > 150 and mag.sum() - band < 50,
                 "magenta pixels on the ellipse: %d (elsewhere %d)" % (band, mag.sum() - band))
        # the server's view matches
        final = srv.json("/slides/%s/annotations" % sid)["annotations"]
        ck.check(sorted((a["type"], a["author"]) for a in final) ==
                 [("ellipse", "bob"), ("polygon", "alice"), ("rectangle", "alice")],
                 "server list %s" % [(a["type"], a["author"]) for a in final])
        poly = [a for a in final if a["type"] == "polygon"]
        ck.check(poly and close(poly[0]["pts"], [l0(500, 330), l0(600, 350), l0(560, 430)]),
                 "polygon on the server in level-0 pixels: %s" % (poly and poly[0]["pts"]))
        # a fresh viewer loads the list over REST
        dump2 = os.path.join(OUT, "server2.json")
        sc2 = script(os.path.join(OUT, "server2.txt"), ["expect-annotations 3", "dump " + dump2])
        p2 = subprocess.run([VIEW, url, "--token", BOB, "--script", sc2], env=ENV,
                            capture_output=True, text=True, timeout=120)
        ck.check(p2.returncode == 0, "fresh viewer: exit %d %s" % (p2.returncode, p2.stderr))


def main():
    ck.check(os.access(VIEW, os.X_OK), "no viewer at %s" % VIEW)
    slide = openslide.OpenSlide(CMU)
    mpp_x = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
    mpp_y = float(slide.properties[openslide.PROPERTY_NAME_MPP_Y])
    local_mode(mpp_x, mpp_y)
    server_mode()
    ck.finish()


if __name__ == "__main__":
    main()
