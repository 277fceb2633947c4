#!/usr/bin/env python3
"""consilium-view's reading mode (DICOMweb) against a real server.

The server is a parameter: `--server node` (consilium serve with its DICOM
store, files sent with DCMTK's storescu), `--server orthanc` (Debian's
Orthanc with its DICOMweb plugin, files POSTed), or `auto` (default: the node
when its serve flags exist, else Orthanc; `both` runs the two). The viewer
talks to the server through a small counting proxy in this process, which
can also delay frames and inject bad answers.

Checks (each printed with its figures):
  - screenshots at the file's window equal a pydicom reference with the
    PS3.3 linear window (max difference <= 1 grey level, overlays off);
  - presets (keys and names), right-drag, MONOCHROME1 inversion, RGB;
  - slice order along the patient axis, series switching, the study list;
  - ruler lengths in mm / mm (detector) / px;
  - overlays differ from the plain image only in the corner bands;
  - cine on a multi-frame instance;
  - prefetch: first image before series complete; scrolling a loaded
    series makes no request (viewer's count and the proxy's);
  - bad answers: unknown study, truncated multipart, short frame, garbage
    JSON, HTTP 500, unreachable server: a clear message, exit 1, no crash.
"""
import argparse
import copy
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from PIL import Image  # noqa: E402

DICOM = os.path.join(cshelp.TESTDATA, "dicom")
VIEW = os.environ.get("CS_VIEW", "build/dev/viewer/consilium-view")
ENV = dict(os.environ, SDL_VIDEODRIVER="dummy")
ENV.pop("DISPLAY", None)
SANITIZE = os.environ.get("CS_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
TOKEN = "test-token"


# ---------------------------------------------------------------- proxy

class Proxy:
    """Forwards GETs to the upstream server; counts them; can slow frames
    down to `rate` bytes/s and replace answers (mode: None, 'truncate', 'short', 'garbage-json',
    'frame-500', 'octet')."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.count = 0
        self.paths = []
        self.mode = None
        self.rate = 0.0
        self.lock = threading.Lock()
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with proxy.lock:
                    proxy.count += 1
                    proxy.paths.append(self.path)
                    mode = proxy.mode
                is_frame = "/frames/" in self.path
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("accept", "authorization")}
                c = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                c.request("GET", self.path, headers=hdrs)
                r = c.getresponse()
                body = r.read()
                status, ctype = r.status, r.getheader("Content-Type", "")
                c.close()
                if is_frame and proxy.rate:  # a thin link for frames
                    time.sleep(len(body) / proxy.rate)
                is_frame = is_frame and not self.path.endswith("/rendered")
                if mode == "truncate" and is_frame and status == 200:
                    body = body[:len(body) // 2]
                elif mode == "short" and is_frame and status == 200:
                    b = re.search(r'boundary="?([^";]+)', ctype).group(1).encode()
                    body = (b"--" + b + b"\r\nContent-Type: application/octet-stream\r\n\r\n" +
                            b"\x01\x02" * 100 + b"\r\n--" + b + b"--\r\n")
                elif mode == "garbage-json" and self.path.endswith("/metadata"):
                    body, ctype = b'[{"00280010": {"vr": "US", "Value": [12', "application/dicom+json"
                elif mode == "garbage-series" and self.path.endswith("/series"):
                    body, ctype = b"<html>oops</html>", "application/dicom+json"
                elif mode == "octet" and is_frame and status == 200:
                    ctype = "application/octet-stream"
                elif mode == "frame-500" and is_frame:
                    status, ctype = 500, "application/json"
                    body = b'{"message": "decoder exploded"}'
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        # the viewer closes its keep-alive connections when it exits
        self.httpd.handle_error = lambda *a: None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, mode=None, rate=0.0):
        with self.lock:
            self.count = 0
            self.paths = []
            self.mode = mode
            self.rate = rate

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- data

def make_series(work):
    """A 5-slice CT series (from CT_small) whose InstanceNumber order is not
    its position order, each slice's pixels offset so it is recognisable,
    plus a second series (MR) in the same study and an Imager-Pixel-Spacing
    only copy of dx_image."""
    out = []
    base = pydicom.dcmread(os.path.join(DICOM, "CT_small.dcm"))
    study = pydicom.uid.generate_uid()
    series = pydicom.uid.generate_uid()
    zs = [10.0, -5.0, 20.0, 0.0, 5.0]
    for k, z in enumerate(zs):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.SeriesNumber = 1
        ds.SeriesDescription = "READ CT"
        ds.PatientName = "Reading^Test"
        ds.PatientID = "READ-1"
        ds.PatientAge = "042Y"
        ds.StudyDescription = "reading test"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-50.0, -50.0, z]
        ds.SliceLocation = z
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        a = ds.pixel_array.astype(np.int16) + np.int16(40 * k)
        ds.PixelData = a.tobytes()
        p = os.path.join(work, "read_ct_%d.dcm" % k)
        ds.save_as(p, write_like_original=False)
        out.append(p)
    mr = pydicom.dcmread(os.path.join(DICOM, "MR_small_bigendian.dcm"))
    mr.StudyInstanceUID = study
    mr.SeriesInstanceUID = pydicom.uid.generate_uid()
    mr.SOPInstanceUID = pydicom.uid.generate_uid()
    mr.file_meta.MediaStorageSOPInstanceUID = mr.SOPInstanceUID
    mr.SeriesNumber = 2
    mr.SeriesDescription = "READ MR"
    mr.PatientName = "Reading^Test"
    mr.PatientID = "READ-1"
    p = os.path.join(work, "read_mr.dcm")
    mr.save_as(p, write_like_original=False)
    out.append(p)
    mf = pydicom.dcmread(os.path.join(DICOM, "emri_small.dcm"))
    mf.FrameTime = 50  # 20 fps
    mf.StudyInstanceUID = pydicom.uid.generate_uid()
    mf.SeriesInstanceUID = pydicom.uid.generate_uid()
    mf.SOPInstanceUID = pydicom.uid.generate_uid()
    mf.file_meta.MediaStorageSOPInstanceUID = mf.SOPInstanceUID
    p = os.path.join(work, "emri_20fps.dcm")
    mf.save_as(p, write_like_original=False)
    out.append(p)
    # a 16-bit MONOCHROME1 CR (12 bits stored, a real rescale): MR2_UNCR's
    # pixels (the corpus' RG3 is JPEG 2000, which not every server decodes)
    cr = pydicom.dcmread(os.path.join(DICOM, "MR2_UNCR.dcm"))
    cr.PhotometricInterpretation = "MONOCHROME1"
    cr.Modality = "CR"
    cr.StudyInstanceUID = pydicom.uid.generate_uid()
    cr.SeriesInstanceUID = pydicom.uid.generate_uid()
    cr.SOPInstanceUID = pydicom.uid.generate_uid()
    cr.file_meta.MediaStorageSOPInstanceUID = cr.SOPInstanceUID
    p = os.path.join(work, "cr_mono1_16.dcm")
    cr.save_as(p, write_like_original=False)
    out.append(p)
    dx = pydicom.dcmread(os.path.join(DICOM, "dx_image.dcm"))
    del dx[0x00280030]
    dx.StudyInstanceUID = pydicom.uid.generate_uid()
    dx.SeriesInstanceUID = pydicom.uid.generate_uid()
    dx.SOPInstanceUID = pydicom.uid.generate_uid()
    dx.file_meta.MediaStorageSOPInstanceUID = dx.SOPInstanceUID
    p = os.path.join(work, "dx_imager_only.dcm")
    dx.save_as(p, write_like_original=False)
    out.append(p)
    return out


def window(ds, arr, center=None, width=None, invert=False):
    """PS3.3 C.11.2.1.2 linear window on the modality values, as DCMTK."""
    v = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + \
        float(getattr(ds, "RescaleIntercept", 0) or 0)
    if center is None:
        if "WindowCenter" in ds:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            center = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
            width = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
        else:  # the viewer's rule: min..max of the slice
            lo, hi = float(v.min()), float(v.max())
            width = hi - lo + 1
            center = lo + width / 2
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    out = ((v - (center - 0.5)) / (width - 1) + 0.5) * 255
    out = np.where(v <= lo, 0, np.where(v > hi, 255, out))
    if (ds.PhotometricInterpretation == "MONOCHROME1") != invert:
        out = 255 - out
    return out


def png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


# ---------------------------------------------------------------- servers

class OrthancServer:
    name = "orthanc"
    root = "/dicom-web"

    def __init__(self, work):
        self.o = cshelp.Orthanc(work, plugins=("dicomweb",))

    def __enter__(self):
        self.o.__enter__()
        self.port = self.o.http_port
        return self

    def upload(self, paths):
        for p in paths:
            self.o.upload(p)
        return []

    def __exit__(self, *exc):
        self.o.__exit__(*exc)


class NodeServer:
    name = "node"
    root = "/dicomweb"

    def __init__(self, work):
        self.work = work
        self.dport = cshelp.free_port()
        self.s = cshelp.Server([], ["--store", os.path.join(work, "store"), "--db",
                                    os.path.join(work, "node.db"), "--aet", "CONSILIUM",
                                    "--dicom-port", str(self.dport)], token=TOKEN)

    def __enter__(self):
        self.s.__enter__()
        self.port = self.s.port
        return self

    def upload(self, paths):
        """One storescu per file (each proposing its own syntax): a file the
        node refuses is reported, not fatal."""
        bad = []
        propose = {"1.2.840.10008.1.2.4.90": ["-xv"], "1.2.840.10008.1.2.4.91": ["-xw"],
                   "1.2.840.10008.1.2.4.70": ["-xs"], "1.2.840.10008.1.2.4.50": ["-xy"]}
        for p in paths:
            ts = str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            r = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "CONSILIUM", "-R"] +
                               propose.get(ts, []) + ["127.0.0.1", str(self.dport), p],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                bad.append(os.path.basename(p))
                print("  (storescu could not send %s: %s)" % (
                    os.path.basename(p), r.stderr.strip().splitlines()[-1][:160]), flush=True)
        return bad

    def __exit__(self, *exc):
        self.s.__exit__(*exc)


def node_available():
    try:
        r = subprocess.run([cshelp.BIN, "serve", "--help"], capture_output=True, text=True,
                           timeout=20)
    except OSError:
        return False
    return "--dicom-port" in (r.stdout + r.stderr)


# ---------------------------------------------------------------- viewer runs

class Run:
    def __init__(self, rc, out, err, secs):
        self.rc, self.out, self.err, self.secs = rc, out, err, secs

    def lines(self, prefix):
        return [l for l in self.out.splitlines() if l.startswith(prefix)]

    def state(self, i=-1):
        ls = self.lines("state ")
        return dict(kv.split("=", 1) for kv in ls[i].split()[1:] if "=" in kv) if ls else {}


def view(base, args, script=None, work=None, timeout=120):
    cmd = [VIEW, base, "--token", TOKEN] + list(args)
    if script is not None:
        fd, sp = tempfile.mkstemp(suffix=".txt", dir=work)
        with os.fdopen(fd, "w") as f:
            f.write(script)
        cmd += ["--script", sp]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    r = Run(p.returncode, p.stdout, p.stderr, time.time() - t0)
    if "AddressSanitizer" in p.stderr or "runtime error" in p.stderr:
        r.rc = 99
    return r


def compare(c, got, ref, what, mask=None):
    g = got[..., 0]
    d = np.abs(g - ref)
    if mask is not None:
        d = d[mask]
    mx = float(d.max()) if d.size else 0.0
    c.check(mx <= 1.0, "%s: max |viewer - pydicom| = %.0f grey level(s) (<= 1)" % (what, mx))
    print("  %-58s max diff %.0f, mean %.3f" % (what, mx, float(d.mean()) if d.size else 0),
          flush=True)
    return mx


# ---------------------------------------------------------------- the checks

def run_checks(c, srv, work):
    px = Proxy(srv.port)
    base = "http://127.0.0.1:%d%s" % (px.port, srv.root)
    print("== server %s at %s (through the proxy at %d)" % (srv.name, srv.root, px.port), flush=True)
    made = make_series(work)
    files = {f: os.path.join(DICOM, f) for f in
             ["CT_small.dcm", "MR_small_bigendian.dcm", "emri_small.dcm", "693_UNCR.dcm",
              "dx_image.dcm", "US1_UNCR.dcm", "RG3_J2KR.dcm",
              "SC_ybr_full_422_uncompressed.dcm"]}
    refused = srv.upload(list(files.values()) + made)
    for f in refused:
        files.pop(f, None)
    ds = {k: pydicom.dcmread(v) for k, v in files.items()}
    # the server's own answer first: the viewer's errors below follow from it
    d = ds["CT_small.dcm"]
    req = cshelp.urllib.request.Request(
        "http://127.0.0.1:%d%s/studies/%s/series/%s/metadata" % (
            srv.port, srv.root, d.StudyInstanceUID, d.SeriesInstanceUID),
        headers={"Authorization": "Bearer " + TOKEN, "Accept": "application/dicom+json"})
    raw = cshelp.urllib.request.urlopen(req, timeout=60).read()
    try:
        meta = json.loads(raw)
        good = isinstance(meta, list) and all(isinstance(o, dict) for o in meta)
    except ValueError:
        good = False
    c.check(good, "%s: WADO-RS series metadata is a DICOM JSON array of objects (PS3.18 F.2); "
            "it starts %r (a server bug: the viewer refuses it below)" % (srv.name, raw[:60]))
    shot = lambda n: os.path.join(work, "%s-%s.png" % (srv.name, n))  # noqa: E731

    def open_args(d):
        return ["--study", d.StudyInstanceUID, "--series", d.SeriesInstanceUID,
                "--size", "%dx%d" % (d.Columns, d.Rows)]

    # 1. the file's window, pixel for pixel
    print("-- file window vs pydicom", flush=True)
    for name in ["693_UNCR.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "dx_image.dcm",
                 "emri_small.dcm"]:
        d = ds[name]
        r = view(base, open_args(d) + ["--screenshot", shot(name)], work=work)
        if not c.check(r.rc == 0, "%s: exit %d: %s" % (name, r.rc, r.err[-400:])):
            continue
        arr = d.pixel_array
        if arr.ndim == 3:
            arr = arr[0]
        compare(c, png(shot(name)), window(d, arr),
                "%s (%s, %s)" % (name, d.PhotometricInterpretation,
                                 "file window" if "WindowCenter" in d else "min-max"))
    d = pydicom.dcmread(made[7])  # cr_mono1_16.dcm
    r = view(base, open_args(d) + ["--screenshot", shot("cr")], work=work)
    if c.check(r.rc == 0, "CR MONOCHROME1 16-bit: exit %d: %s" % (r.rc, r.err[-400:])):
        compare(c, png(shot("cr")), window(d, d.pixel_array),
                "cr_mono1_16 (MONOCHROME1, 12 of 16 bits, slope %s)" % d.RescaleSlope)
    d = ds["US1_UNCR.dcm"]
    r = view(base, open_args(d) + ["--screenshot", shot("us")], work=work)
    if c.check(r.rc == 0, "US RGB: exit %d %s" % (r.rc, r.err[-300:])):
        diff = np.abs(png(shot("us")) - d.pixel_array.astype(np.float64)).max()
        c.check(diff == 0, "US1_UNCR RGB shown as is: max diff %.0f" % diff)
        print("  US1_UNCR.dcm (RGB) max diff %.0f" % diff, flush=True)

    # servers that can (or cannot) give raw frames of compressed / YBR files
    for name in ["RG3_J2KR.dcm", "SC_ybr_full_422_uncompressed.dcm"]:
        if name not in ds:
            print("  %s: the server did not take the file" % name)
            continue
        d = ds[name]
        r = view(base, open_args(d) + ["--screenshot", shot(name)], work=work, timeout=300)
        if r.rc == 0:
            if d.PhotometricInterpretation.startswith("YBR"):
                ref = pydicom.pixel_data_handlers.util.convert_color_space(
                    d.pixel_array, d.PhotometricInterpretation, "RGB")
                diff = float(np.abs(png(shot(name)) - ref.astype(np.float64)).max())
                c.check(diff <= 2, "%s YBR -> RGB max diff %.0f (<= 2)" % (name, diff))
                print("  %s max diff %.0f" % (name, diff), flush=True)
            else:
                try:
                    ref = window(d, d.pixel_array)
                    compare(c, png(shot(name)), ref, name + " (MONOCHROME1, server-decoded)")
                except Exception as e:  # pydicom without a JPEG 2000 handler
                    print("  %s shown; no pydicom decoder for a reference (%s)" % (name, e))
        else:
            ok = r.rc == 1 and "frame 1 of instance" in r.err and "HTTP" in r.err
            c.check(ok and r.rc != 99, "%s: the server cannot give raw frames; the viewer says "
                    "so and exits 1 (got %d: %s)" % (name, r.rc, r.err.strip()[-300:]))
            print("  %s: server gives no raw frame -> %s" % (name, r.err.strip()[-160:]))

    # 2. presets, keys, right-drag, inversion
    print("-- window/level", flush=True)
    d = ds["693_UNCR.dcm"]
    arr = d.pixel_array
    r = view(base, open_args(d), work=work, script="""
preset lung
screenshot %s
preset bone
screenshot %s
key 1
screenshot %s
key 0
rdrag 100 100 228 164
state
screenshot %s
invert
screenshot %s
""" % (shot("lung"), shot("bone"), shot("brain"), shot("rdrag"), shot("inv")))
    if c.check(r.rc == 0, "W/L script: exit %d %s" % (r.rc, r.err[-300:])):
        compare(c, png(shot("lung")), window(d, arr, -600, 1500), "693 preset lung (-600/1500)")
        compare(c, png(shot("bone")), window(d, arr, 400, 1800), "693 preset bone (400/1800)")
        compare(c, png(shot("brain")), window(d, arr, 40, 80), "693 key 1 = brain (40/80)")
        # from the file's 40/100: +128 px -> width + 128 * 100/256, +64 px -> centre + 25
        wl = r.lines("wl ")
        c.check(wl == ["wl 65 150"], "right-drag 128 px right, 64 down: %s (want wl 65 150)" % wl)
        compare(c, png(shot("rdrag")), window(d, arr, 65, 150), "693 after right-drag (65/150)")
        compare(c, png(shot("inv")), window(d, arr, 65, 150, invert=True), "693 inverted (I)")
    d = ds["dx_image.dcm"]
    r = view(base, open_args(d), work=work, script="invert\nscreenshot %s\n" % shot("dxinv"))
    if c.check(r.rc == 0, "dx invert: %s" % r.err[-300:]):
        compare(c, png(shot("dxinv")), window(d, d.pixel_array, invert=True),
                "dx_image MONOCHROME1, I shows it uninverted")

    # 3. ruler
    print("-- ruler", flush=True)
    cases = [("693_UNCR.dcm", ds["693_UNCR.dcm"], "mm"), ("dx_image.dcm", ds["dx_image.dcm"], "mm"),
             ("emri_small.dcm", ds["emri_small.dcm"], "px")]
    dxi = pydicom.dcmread(made[-1])  # dx_imager_only.dcm
    cases.append(("dx imager-only", dxi, "mm (detector)"))
    for name, d, unit in cases:
        x0, y0, x1, y1 = 5, 7, d.Columns - 9, d.Rows - 13
        r = view(base, open_args(d), work=work, script="ruler %d %d %d %d\n" % (x0, y0, x1, y1))
        ls = r.lines("ruler ")
        if not c.check(r.rc == 0 and ls, "%s ruler: %s" % (name, r.err[-300:])):
            continue
        m = re.match(r"ruler ([\d.]+) (.*) image ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)$", ls[0])
        length, got_unit = float(m.group(1)), m.group(2)
        dx, dy = float(m.group(5)) - float(m.group(3)), float(m.group(6)) - float(m.group(4))
        c.check((dx, dy) == (x1 - x0, y1 - y0), "%s ruler image vector %s" % (name, (dx, dy)))
        if unit == "px":
            want = np.hypot(dx, dy)
        else:
            sp = d.PixelSpacing if unit == "mm" else d.ImagerPixelSpacing
            want = np.hypot(dx * float(sp[1]), dy * float(sp[0]))
        # absolute 1e-3 (4 decimals printed): swapping row and column spacing
        # (dx_image: 1.2 / 1.2012) would be 0.07 mm off
        c.check(got_unit == unit and abs(length - want) <= 1e-3,
                "%s ruler %.4f %s, want %.4f %s" % (name, length, got_unit, want, unit))
        print("  %-16s %.4f %s (want %.4f %s)" % (name, length, got_unit, want, unit), flush=True)

    # zoom and pan: nearest neighbour, the ruler still in image pixels
    d = ds["693_UNCR.dcm"]
    ref = window(d, d.pixel_array)
    r = view(base, open_args(d), work=work, script="""
zoom 2
screenshot %s
ruler 0 0 200 100
key Delete
mdrag 100 100 150 120
state
screenshot %s
key F
screenshot %s
""" % (shot("z2"), shot("z2pan"), shot("zfit")))
    if c.check(r.rc == 0, "zoom: %s" % r.err[-300:]):
        up = lambda a: np.repeat(np.repeat(a, 2, 0), 2, 1)  # noqa: E731
        compare(c, png(shot("z2")), up(ref[128:384, 128:384]), "693 zoom 2 about the centre")
        compare(c, png(shot("z2pan")), up(ref[118:374, 103:359]),
                "693 zoom 2, middle-drag +50,+20 px")
        compare(c, png(shot("zfit")), ref, "693 F fits again")
        ls = r.lines("ruler ")
        sp = d.PixelSpacing
        want = np.hypot(100 * float(sp[1]), 50 * float(sp[0]))
        got = float(ls[0].split()[1]) if ls else -1
        c.check(abs(got - want) <= 1e-3, "ruler at zoom 2: 200x100 screen px = 100x50 image px "
                "= %.4f mm (want %.4f)" % (got, want))
        c.check(r.state().get("zoom") == "2", "state zoom=2: %s" % r.state().get("zoom"))

    # 4. overlays only in the corners
    print("-- overlays", flush=True)
    d = ds["693_UNCR.dcm"]
    r = view(base, open_args(d), work=work, script="overlays on\nscreenshot %s\nkey O\nscreenshot %s\n"
             % (shot("ov-on"), shot("ov-off")))
    if c.check(r.rc == 0, "overlays: %s" % r.err[-300:]):
        a, b = png(shot("ov-on")), png(shot("ov-off"))
        diff = np.abs(a - b).max(axis=2) > 0
        ys, xs = np.nonzero(diff)
        h = a.shape[0]
        band = ((ys < 0.2 * h) | (ys >= 0.8 * h)).all() if ys.size else False
        c.check(ys.size > 500 and band, "overlays differ in %d px, all in the top/bottom 20%% "
                "bands: %s (rows %s..%s)" % (ys.size, band, ys.min() if ys.size else "-",
                                             ys.max() if ys.size else "-"))
        compare(c, b, window(d, d.pixel_array), "after O (overlays off) = plain image")
        print("  overlay pixels %d, rows %d..%d of %d" % (ys.size, ys.min(), ys.max(), h))

    # 5. slice order, series switching, cine
    print("-- slices, series, cine", flush=True)
    cts = [pydicom.dcmread(p) for p in made[:5]]
    order = sorted(cts, key=lambda x: float(x.ImagePositionPatient[2]))
    d0 = cts[0]
    script = "".join("slice %d\nstate\nscreenshot %s\n" % (k + 1, shot("ct%d" % k))
                     for k in range(5))
    script += "key PageDown\nwait-slice\nstate\nkey PageUp\nwait-slice\nstate\n"
    # the series strip (overlays on), left edge around the middle: 2nd line
    script += "overlays on\nscreenshot %s\nclick 20 69\nwait-slice\nstate\n" % shot("strip")
    r = view(base, ["--study", d0.StudyInstanceUID, "--size", "128x128"], work=work,
             script=script)
    if c.check(r.rc == 0, "slices: %s" % r.err[-300:]):
        pos = [float(r.state(k)["pos"]) for k in range(5)]
        c.check(pos == sorted(float(x.ImagePositionPatient[2]) for x in cts),
                "slices sorted along the normal: %s" % pos)
        for k in range(5):
            compare(c, png(shot("ct%d" % k)), window(order[k], order[k].pixel_array),
                    "slice %d = instance %d (z %g)" % (k + 1, order[k].InstanceNumber,
                                                      float(order[k].ImagePositionPatient[2])))
        s1, s2, s3 = r.state(5), r.state(6), r.state(7)
        c.check(s1.get("series") == "2/2" and s2.get("series") == "1/2",
                "Page Down / Page Up switch series: %s, %s" % (s1.get("series"), s2.get("series")))
        c.check(s2.get("slice") == "5/5", "back on series 1, its slice is kept: %s"
                % s2.get("slice"))
        c.check(s3.get("series") == "2/2", "a click on the series strip: %s" % s3.get("series"))
    d = ds["emri_small.dcm"]
    r = view(base, open_args(d), work=work, script="""
wait-series
slice 2
screenshot %s
slice 7
screenshot %s
slice 1
state
cine on
wait 450
state
cine off
""" % (shot("f2"), shot("f7")))
    if c.check(r.rc == 0, "cine: %s" % r.err[-300:]):
        fr = d.pixel_array
        # no window in the file: min..max of the first slice shown (frame 1) stays
        v1 = fr[0].astype(np.float64)
        w1 = v1.max() - v1.min() + 1
        compare(c, png(shot("f2")), window(d, fr[1], v1.min() + w1 / 2, w1),
                "emri_small frame 2 (frame 1's min-max window)")
        compare(c, png(shot("f7")), window(d, fr[6], v1.min() + w1 / 2, w1),
                "emri_small frame 7 (frame 1's min-max window)")
        a, b = r.state(0), r.state(1)
        moved = int(b["slice"].split("/")[0]) - int(a["slice"].split("/")[0])
        c.check(b["fps"] == "10" and 3 <= moved <= 6,
                "cine at 10 fps moved %d frames in 450 ms (frame %s -> %s)" %
                (moved, a["frame"], b["frame"]))
        print("  cine: %s fps, frame %s -> %s in 450 ms" % (b["fps"], a["frame"], b["frame"]))
    mf = pydicom.dcmread(made[6])
    r = view(base, open_args(mf), work=work, script="wait-series\nstate\ncine on\nwait 300\n"
             "state\nkey Space\nstate\nwait 200\nstate\n")
    if c.check(r.rc == 0, "cine at FrameTime: %s" % r.err[-300:]):
        a, b, e1, e2 = (r.state(i) for i in range(4))
        moved = int(b["slice"]) if "/" not in b["slice"] else int(b["slice"].split("/")[0]) - 1
        c.check(b["fps"] == "20" and 4 <= moved <= 8,
                "cine at FrameTime 50 ms (20 fps) moved %d frames in 300 ms" % moved)
        c.check(e1["cine"] == "0" and e1["slice"] == e2["slice"],
                "Space stops the cine (%s stays %s)" % (e1["slice"], e2["slice"]))
        print("  cine at FrameTime 50 ms: %s fps, %d frames in 300 ms; Space stops it" %
              (b["fps"], moved))

    # 6. the study list (browser)
    studies = json.loads(cshelp.urllib.request.urlopen(cshelp.urllib.request.Request(
        "http://127.0.0.1:%d%s/studies" % (srv.port, srv.root),
        headers={"Authorization": "Bearer " + TOKEN})).read())
    uids = [st["0020000D"]["Value"][0] for st in studies]
    k = uids.index(d0.StudyInstanceUID)
    r = view(base, ["--size", "900x500", "--overlays"], work=work,
             script="screenshot %s\n%skey Return\nwait-slice\nstate\n" % (shot("list"),
                                                                          "key Down\n" * k))
    if c.check(r.rc == 0, "study list: %s" % r.err[-300:]):
        c.check(r.state().get("study") == d0.StudyInstanceUID and
                r.state().get("series") == "1/2",
                "Down x%d + Return opened the reading-test study: %s" % (k, r.lines("state")))
        c.check(png(shot("list")).max() > 0, "the study list is drawn")
        print("  %d studies listed; Down x%d + Return -> %s" % (len(studies), k,
                                                             r.lines("state")[-1][:100]))

    # 7. prefetch: first image before the series is complete; no request after
    print("-- prefetch", flush=True)
    px.reset(rate=100e3)  # 100 kB/s for frames: a raw 64x64x2 frame takes 82 ms
    d = ds["emri_small.dcm"]
    script = "wait-series\nrequests\n" + "".join("slice %d\nwait-slice\n" % k
                                                 for k in list(range(1, 11)) + list(range(9, 0, -1)))
    script += "requests\n"
    r = view(base, open_args(d) + ["--timing", "--parallel", "2"], work=work, script=script)
    if c.check(r.rc == 0, "prefetch: %s" % r.err[-300:]):
        ev = {json.loads(l)["event"]: json.loads(l) for l in r.lines("{")}
        first, done = ev.get("first_image", {}).get("ms"), ev.get("series_complete", {}).get("ms")
        paint = ev.get("first_paint", {}).get("ms")
        c.check(first is not None and done is not None and first < done,
                "first image %s ms before series complete %s ms" % (first, done))
        c.check(paint is not None and paint < first,
                "the server-rendered preview painted first (%s ms, raw image %s ms)"
                % (paint, first))
        req = [int(l.split()[1]) for l in r.lines("requests ")]
        c.check(len(req) == 2 and req[0] == req[1] == px.count,
                "scrolling 19 slices after loading made no request: viewer counted %s, the "
                "proxy saw %d" % (req, px.count))
        frames = sum("/frames/" in p and not p.endswith("/rendered") for p in px.paths)
        rendered = sum(p.endswith("/rendered") for p in px.paths)
        c.check(frames == 10 and rendered == 1,
                "each of the 10 frames fetched once (%d), one preview (%d)" % (frames, rendered))
        print("  first paint (rendered JPEG) %.1f ms, first image %.1f ms, series complete "
              "%.1f ms (frames at 100 kB/s, 2 transfers); requests %s, proxy %d, raw frames %d"
              % (paint, first, done, req, px.count, frames))
    r = view(base, open_args(d) + ["--timing", "--no-preview"], work=work, script="wait-series\n")
    c.check(r.rc == 0 and not r.lines('{"event":"first_paint"'),
            "--no-preview: no rendered request, no first_paint line")

    # 8. bad answers
    print("-- bad answers", flush=True)
    d = ds["CT_small.dcm"]
    bad = [
        ("unknown study", None, ["--study", "1.2.3.4.5.6.7.8.9"], ["not found"]),
        ("truncated multipart", "truncate", open_args(d), ["truncated multipart"]),
        ("short frame", "short", open_args(d), ["bytes, expected"]),
        ("garbage JSON", "garbage-json", open_args(d), ["not valid JSON"]),
        ("frame HTTP 500", "frame-500", open_args(d), ["HTTP 500", "decoder exploded"]),
        ("not multipart", "octet", open_args(d), ["not multipart/related"]),
    ]
    for what, mode, args, words in bad:
        px.reset(mode=mode)
        r = view(base, args + ["--screenshot", shot("bad")], work=work)
        msg = r.err.strip().splitlines()[-1] if r.err.strip() else ""
        c.check(r.rc == 1 and all(w in r.err for w in words),
                "%s: exit %d, message %r" % (what, r.rc, msg[:300]))
        print("  %-20s exit %d: %s" % (what, r.rc, msg[:200]), flush=True)
    px.reset(mode="garbage-series")
    r = view(base, ["--size", "400x300"], work=work, script="key Return\nstate\n")
    c.check(r.rc == 1 and "not valid JSON" in r.err and not r.lines("state"),
            "a study opened from the list whose series answer is garbage: exit %d, %r"
            % (r.rc, r.err.strip()[-200:]))
    print("  list -> bad series  exit %d: %s" % (r.rc, r.err.strip()[-160:]))
    px.reset()
    dead = cshelp.free_port()
    r = view("http://127.0.0.1:%d/dicomweb" % dead, ["--screenshot", shot("bad")], work=work)
    c.check(r.rc == 1 and "cannot get the study list" in r.err,
            "unreachable server: exit %d %r" % (r.rc, r.err.strip()[-200:]))
    print("  unreachable server   exit %d: %s" % (r.rc, r.err.strip()[-160:]))
    r = view(base, open_args(d), work=work, script="bogus 1 2\n")
    c.check(r.rc == 2, "bad script line: exit %d" % r.rc)
    px.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.environ.get("CS_READING_SERVER", "auto"),
                    choices=["auto", "node", "orthanc", "both"])
    a = ap.parse_args()
    which = a.server
    if which == "auto":
        which = "both" if node_available() else "orthanc"
        if which == "orthanc":
            print("(the node's serve has no DICOM store flags: testing against Orthanc only)")
    kinds = ["node", "orthanc"] if which == "both" else [which]
    c = cshelp.Checker()
    for kind in kinds:
        work = tempfile.mkdtemp(prefix="reading-%s-" % kind, dir=cshelp.WORK)
        cls = NodeServer if kind == "node" else OrthancServer
        with cls(work) as srv:
            run_checks(c, srv, work)
        shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
