"""Annotations over REST on the real server (core/net/PROTOCOL.md).

Create / read / update / delete each of the seven shapes; roles; errors
that name the field; optimistic concurrency (409 with the current version);
measurements against OpenSlide's MPP and the shoelace formula; GeoJSON
export checked against RFC 7946's structure and QuPath's fields, then
imported back to reproduce every annotation; the audit table and op log in
the database. Run with Debian's /usr/bin/python3.
"""
import json
import math
import os
import sqlite3
import sys
import urllib.error
import urllib.request

import openslide

sys.path.insert(0, os.path.dirname(__file__))
from cshelp import TESTDATA, WORK, Checker, Server  # noqa: E402

SLIDE = os.path.join(TESTDATA, "wsi", "CMU-1-Small-Region.svs")
SID = "CMU-1-Small-Region"
VIEWER = "vera:viewer:viewer-token-0123456789"
PATHO = "paula:pathologist:patho-token-0123456789"

c = Checker()


def call(srv, method, path, body=None, token=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(srv.base + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + (token or srv.token),
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text), dict(e.headers)
        except ValueError:
            return e.code, text, dict(e.headers)


SHAPES = [
    {"type": "point", "pts": [[100, 120]], "label": "mitosis", "class": "Tumor"},
    {"type": "line", "pts": [[10, 10], [1010, 10]], "label": "ruler"},
    {"type": "rectangle", "pts": [[200, 200], [500, 400]], "class": "Stroma"},
    {"type": "ellipse", "pts": [[600, 600], [1000, 800]], "comment": "check margin"},
    {"type": "polygon", "pts": [[0, 0], [400, 0], [400, 300], [100, 500]], "class": "Necrosis"},
    {"type": "freehand", "pts": [[50, 50], [80, 40], [120, 60], [110, 120], [60, 110]],
     "color": "#12ab34"},
    {"type": "text", "pts": [[700, 100]], "label": "Invasive front"},
]


def shoelace(pts):
    s = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        s += x0 * y1 - x1 * y0
    return abs(s) / 2


def validate_geojson(fc):
    """RFC 7946 structure (section 3) plus QuPath's annotation fields."""
    ok = fc.get("type") == "FeatureCollection" and isinstance(fc.get("features"), list)
    for f in fc.get("features", []):
        g = f.get("geometry") or {}
        props = f.get("properties")
        ok &= f.get("type") == "Feature" and isinstance(props, dict)
        ok &= "id" not in f or isinstance(f["id"], (str, int))
        t, co = g.get("type"), g.get("coordinates")
        if t == "Point":
            ok &= len(co) == 2 and all(isinstance(v, (int, float)) for v in co)
        elif t == "LineString":
            ok &= len(co) >= 2 and all(len(p) == 2 for p in co)
        elif t == "Polygon":
            # linear rings: >= 4 positions, first == last
            ok &= all(len(r) >= 4 and r[0] == r[-1] for r in co)
        else:
            ok = False
        ok &= props.get("objectType") == "annotation" and "name" in props
        if "classification" in props:
            cl = props["classification"]
            ok &= isinstance(cl.get("name"), str) and len(cl.get("color", [])) == 3
    return bool(ok)


def main():
    osr = openslide.OpenSlide(SLIDE)
    mpp_x = float(osr.properties[openslide.PROPERTY_NAME_MPP_X])
    mpp_y = float(osr.properties[openslide.PROPERTY_NAME_MPP_Y])
    db = os.path.join(WORK, "annotations-%d.db" % os.getpid())
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(db + ext):
            os.unlink(db + ext)
    base = "/slides/%s/annotations" % SID
    with Server([SLIDE], ["--db", db, "--user", VIEWER, "--user", PATHO]) as s:
        made = []
        for shape in SHAPES:
            st, a, _ = call(s, "POST", base, shape, token="patho-token-0123456789")
            c.check(st == 201, "create %s: %s %s" % (shape["type"], st, a))
            if st != 201:
                continue
            made.append(a)
            c.check(a["type"] == shape["type"] and a["pts"] == [[float(x), float(y)]
                                                                for x, y in shape["pts"]],
                    "%s keeps its points" % shape["type"])
            c.check(a["author"] == "paula" and a["rev"] == 1 and len(a["id"]) == 16,
                    "%s: author from the token, rev 1, an id" % shape["type"])
            c.check(a["color"].startswith("#") and len(a["color"]) == 7,
                    "%s gets a colour" % shape["type"])
        by = {a["type"]: a for a in made}
        c.check(by["point"]["color"] == "#c80000", "Tumor gets QuPath's Tumor colour")
        c.check(by["freehand"]["color"] == "#12ab34", "an explicit colour is kept")

        # Measurements from the slide's MPP (OpenSlide's properties).
        ruler = by["line"]["measure"]
        want = 1000 * mpp_x
        c.check(abs(ruler["length_um"] - want) / want < 0.001,
                "ruler: %.4f um, OpenSlide MPP says %.4f" % (ruler["length_um"], want))
        diag = {"type": "line", "pts": [[0, 0], [3000, 2000]]}
        st, d, _ = call(s, "POST", base, diag)
        want = math.hypot(3000 * mpp_x, 2000 * mpp_y)
        c.check(st == 201 and abs(d["measure"]["length_um"] - want) / want < 0.001,
                "diagonal ruler within 0.1%% of %.3f um" % want)
        poly = by["polygon"]
        area = shoelace([tuple(p) for p in SHAPES[4]["pts"]])
        c.check(abs(poly["measure"]["area_px2"] - area) < 1e-6,
                "polygon area %.1f px2 = shoelace %.1f" % (poly["measure"]["area_px2"], area))
        c.check(abs(poly["measure"]["area_um2"] - area * mpp_x * mpp_y) < 1e-6 * area,
                "polygon area in um2 from both MPPs")
        c.check(abs(by["rectangle"]["measure"]["area_px2"] - 300 * 200) < 1e-9,
                "rectangle area w*h")
        c.check(abs(by["ellipse"]["measure"]["area_px2"] - math.pi * 200 * 100) < 1e-6,
                "ellipse area pi*a*b")
        c.check("length_um" not in by["point"]["measure"], "a point has no length")

        # Reading: list, one, bbox.
        st, lst, _ = call(s, "GET", base)
        c.check(st == 200 and len(lst["annotations"]) == 8 and lst["seq"] >= 8,
                "list: 8 annotations and the op log's seq (%s)" % lst.get("seq"))
        st, one, _ = call(s, "GET", base + "/" + by["ellipse"]["id"])
        c.check(st == 200 and one == by["ellipse"], "GET one returns what POST returned")
        st, box, _ = call(s, "GET", base + "?bbox=0,0,150,150")
        ids = {a["id"] for a in box.get("annotations", [])}
        c.check(by["point"]["id"] in ids and by["freehand"]["id"] in ids
                and by["ellipse"]["id"] not in ids, "bbox query selects by bounds")
        st, _, _ = call(s, "GET", base, token="viewer-token-0123456789")
        c.check(st == 200, "a viewer may read")

        # Update with optimistic concurrency.
        rid = by["rectangle"]["id"]
        st, up, _ = call(s, "PATCH", base + "/" + rid,
                         {"rev": 1, "pts": [[210, 210], [510, 410]], "label": "moved"})
        c.check(st == 200 and up["rev"] == 2 and up["label"] == "moved"
                and up["author"] == "paula" and up["editor"] == "owner",
                "PATCH moves, bumps rev, keeps the author")
        st, cf, _ = call(s, "PATCH", base + "/" + rid, {"rev": 1, "label": "stale"})
        c.check(st == 409 and cf.get("error") == "conflict" and cf.get("current") == up,
                "a stale PATCH is 409 with the current version")
        st, e, _ = call(s, "PATCH", base + "/" + rid, {"label": "no rev"})
        c.check(st == 400 and "rev" in e.get("message", ""), "PATCH without rev is 400")
        st, e, _ = call(s, "PATCH", base + "/" + rid, {"rev": 2, "type": "ellipse"})
        c.check(st == 400 and "type" in e.get("message", ""), "the type cannot change")

        # Errors name the field; roles; limits.
        bad = [
            ({"type": "hexagon", "pts": [[0, 0]]}, "type"),
            ({"type": "polygon", "pts": [[0, 0], [1, 1]]}, "pts"),
            ({"type": "point", "pts": [[0, "x"]]}, "pts[0]"),
            ({"type": "point", "pts": [[1e300, 0]]}, "pts[0]"),
            ({"type": "point", "pts": [[0, 0]], "color": "red"}, "color"),
            ({"type": "text", "pts": [[0, 0]]}, "label"),
            ({"type": "point", "pts": [[0, 0]], "label": 5}, "label"),
        ]
        for body, field in bad:
            st, e, _ = call(s, "POST", base, body)
            c.check(st == 400 and e.get("message", "").startswith(field),
                    "bad %s: 400 naming it (%s %s)" % (field, st, e))
        st, e, _ = call(s, "POST", base, raw=b"{not json")
        c.check(st == 400 and "JSON" in e.get("message", ""), "malformed JSON: 400")
        st, e, _ = call(s, "POST", base, raw=b"[1,2]")
        c.check(st == 400, "a JSON array body: 400")
        st, e, _ = call(s, "POST", base, {"type": "point", "pts": [[1, 1]]},
                        token="viewer-token-0123456789")
        c.check(st == 403, "a viewer may not write (%s)" % st)
        st, e, _ = call(s, "POST", base, {"type": "point", "pts": [[1, 1]]}, token="wrong")
        c.check(st == 401, "a wrong token: 401")
        st, e, _ = call(s, "POST", base, raw=b"[" + b"0," * (9 << 20) + b"0]")
        c.check(st == 413, "a body above 16 MiB: 413 (%s)" % st)
        st, e, _ = call(s, "POST", "/slides/nope/annotations", {"type": "point", "pts": [[1, 1]]})
        c.check(st == 404, "unknown slide: 404")
        st, e, _ = call(s, "GET", base + "/0123456789abcdef")
        c.check(st == 404, "unknown annotation: 404")
        st, e, _ = call(s, "PUT", base, {"type": "point", "pts": [[1, 1]]})
        c.check(st == 405, "PUT: 405")

        # Delete: stale rev refused, then gone.
        pid = by["point"]["id"]
        st, e, _ = call(s, "DELETE", base + "/" + pid + "?rev=7")
        c.check(st == 409 and e["current"]["id"] == pid, "stale DELETE: 409")
        st, dl, _ = call(s, "DELETE", base + "/" + pid + "?rev=1")
        c.check(st == 200 and dl == {"id": pid, "slide": SID, "rev": 2, "deleted": True},
                "DELETE answers the tombstone")
        st, e, _ = call(s, "GET", base + "/" + pid)
        c.check(st == 410, "a deleted annotation is 410 (%s)" % st)
        st, e, _ = call(s, "PATCH", base + "/" + pid, {"rev": 2, "label": "x"})
        c.check(st == 410, "editing a deleted annotation is 410")

        # GeoJSON out, validated, and back in.
        st, fc, hdr = call(s, "GET", base + "?format=geojson")
        c.check(st == 200 and hdr.get("Content-Type") == "application/geo+json",
                "GeoJSON content type")
        c.check(validate_geojson(fc), "export is RFC 7946 FeatureCollection with QuPath fields")
        st, cur, _ = call(s, "GET", base)
        exported = {a["id"]: a for a in cur["annotations"]}
        c.check(len(fc["features"]) == len(exported), "one feature per annotation")
        nexported = len(exported)
        st, imp, _ = call(s, "POST", base, fc)
        c.check(st == 201 and imp.get("imported") == len(exported), "import: 201, all of them")
        keys = ("type", "pts", "label", "class", "color", "comment", "measure")
        src = sorted((json.dumps([a[k] for k in keys], sort_keys=True) for a in exported.values()))
        back = sorted(json.dumps([a[k] for k in keys], sort_keys=True)
                      for a in imp.get("annotations", []))
        c.check(src == back, "export then import reproduces every annotation")
        c.check(all(a["id"] not in exported for a in imp.get("annotations", [])),
                "imported annotations get new ids")
        # A QuPath-made file (no consilium block) imports by geometry.
        qp = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
                [[0, 0], [10, 0], [10, 10], [0, 0]]]},
             "properties": {"objectType": "annotation", "classification": {
                 "name": "Tumor", "color": [200, 0, 0]}}},
            {"type": "Feature", "geometry": {"type": "MultiPoint",
                                             "coordinates": [[1, 2], [3, 4]]},
             "properties": {"objectType": "annotation", "name": "cells"}},
            {"type": "Feature", "geometry": {"type": "LineString",
                                             "coordinates": [[0, 0], [3, 4]]},
             "properties": {"objectType": "annotation"}}]}
        st, imp2, _ = call(s, "POST", base, qp)
        types = [a["type"] for a in imp2.get("annotations", [])]
        c.check(st == 201 and types == ["polygon", "point", "point", "line"],
                "QuPath geometry import: %s" % types)
        c.check(st == 201 and imp2["annotations"][3]["measure"]["length_px"] == 5.0,
                "imported line measured (5 px)")
        st, e, _ = call(s, "POST", base, {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
                [[0, 0], [1, 0], [0, 0]]]}, "properties": {}},
            {"type": "Feature", "geometry": {"type": "GeometryCollection"}, "properties": {}}]})
        c.check(st == 400 and "features[" in e.get("message", ""),
                "a bad import is 400 naming the feature (%s)" % e)
        st, after, _ = call(s, "GET", base)
        c.check(len(after["annotations"]) == len(exported) * 2 + 4,
                "a failed import writes nothing (all or nothing)")

    # The database: audit rows for writes, an op log entry per change.
    con = sqlite3.connect(db)
    writes = con.execute("SELECT count(*) FROM audit WHERE code = '110110'").fetchone()[0]
    events = con.execute("SELECT count(*) FROM annotation_events").fetchone()[0]
    want = 8 + 1 + 1 + nexported + 4  # creates, patch, delete, two imports
    c.check(writes == events == want, "an audit row and an op-log entry per write (%d, %d, %d)"
            % (writes, events, want))
    users = {r[0] for r in con.execute("SELECT DISTINCT user FROM audit WHERE code = '110110'")}
    c.check(users == {"paula", "owner"}, "audit names the users: %s" % users)
    try:
        con.execute("DELETE FROM audit")
        c.check(False, "the audit table refuses DELETE")
    except sqlite3.DatabaseError:
        c.check(True, "the audit table refuses DELETE")
    con.close()
    c.finish()


if __name__ == "__main__":
    main()
