"""Shared helpers for the cs_dicom Python tests: run dicom_tool, and build
reference decodes from independent tools (pydicom, DCMTK's command-line
decoders, opj_decompress, zlib)."""
import os
import re
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pydicom
from pydicom.encaps import generate_pixel_data_frame

TOOL = os.environ.get("CS_DICOM_TOOL", "")
DATA = os.path.join(os.environ.get("CS_TESTDATA", ""), "dicom")
WORK = os.environ.get("CS_WORK", tempfile.gettempdir())

JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70"}
JPEG_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
JLS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
       "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
J2K_LOSSY = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}
DEFLFRAME = "1.2.840.10008.1.2.8.1"


def files():
    return sorted(os.path.join(DATA, f) for f in os.listdir(DATA) if f.endswith(".dcm"))


def images():
    """(path, name, info) of each corpus file that has pixel data, and how
    many were skipped (a SKIP line printed for each)."""
    out, skipped = [], 0
    for path in files():
        name = os.path.basename(path)
        inf = info(path)
        if inf["rows"] == 0:
            print("SKIP %s: no pixel data" % name)
            skipped += 1
            continue
        out.append((path, name, inf))
    return out, skipped


def workdir(name):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    return d


def tool(*args, check=True):
    r = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True, text=False)
    if check and r.returncode != 0:
        raise RuntimeError("dicom_tool %s failed: %s" % (args, r.stderr.decode(errors="replace")))
    return r


def info(path):
    out = tool("info", path).stdout.decode()
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        d[k] = v
    for k in ("rows", "cols", "frames", "samples", "bits_allocated", "bits_stored",
              "pixel_signed", "planar", "lossy", "has_window", "frame_size"):
        d[k] = int(d[k])
    return d


def dtype_of(inf):
    if inf["bits_allocated"] <= 8:
        return np.int8 if inf["pixel_signed"] and inf["bits_allocated"] == 8 else np.uint8
    return np.int16 if inf["pixel_signed"] else np.uint16


def ours(path, inf, out):
    tool("decode", path, out)
    a = np.fromfile(out, dtype=dtype_of(inf))
    return a.reshape(inf["frames"], inf["rows"], inf["cols"], inf["samples"])


def normalize(a, inf, decoded=False):
    """Stored values as cs_dicom defines them: masked to Bits Stored, or
    sign-extended from it; a lossy codec's unsigned output (decoded=True) is
    clamped to 2^Bits Stored - 1 instead of masked (overshoot)."""
    bs, ba = inf["bits_stored"], inf["bits_allocated"]
    if ba == 1 or bs >= (8 if ba <= 8 else 16):
        return a.astype(dtype_of(inf))
    if decoded and not inf["pixel_signed"]:
        return np.minimum(a.astype(np.int64), (1 << bs) - 1).astype(dtype_of(inf))
    a = a.astype(np.int64) & ((1 << bs) - 1)
    if inf["pixel_signed"]:
        a = np.where(a >= (1 << (bs - 1)), a - (1 << bs), a)
    return a.astype(dtype_of(inf))


def shape4(a, inf):
    return np.asarray(a).reshape(inf["frames"], inf["rows"], inf["cols"], inf["samples"])


def ref_pydicom(path, inf):
    ds = pydicom.dcmread(path)
    return normalize(shape4(ds.pixel_array, inf), inf)


def ref_dcmtk(path, inf, ts, tmp):
    """DCMTK's command-line decoder to explicit LE, read back by pydicom."""
    out = os.path.join(tmp, os.path.basename(path) + ".dcmtk.dcm")
    if ts in JPEG:
        cmd = ["dcmdjpeg", path, out]
    elif ts in JLS:
        cmd = ["dcmdjpls", path, out]
    elif ts == "1.2.840.10008.1.2.5":
        cmd = ["dcmdrle", path, out]
    else:
        cmd = ["dcmconv", "+te", path, out]
    subprocess.run(cmd, check=True, capture_output=True)
    ds = pydicom.dcmread(out)
    lossy = ts in JPEG_LOSSY or ts == "1.2.840.10008.1.2.4.81"
    return normalize(shape4(ds.pixel_array, inf), inf, decoded=lossy), ds


def encoded_frames(path, nframes):
    ds = pydicom.dcmread(path)
    return list(generate_pixel_data_frame(ds.PixelData, nframes))


def ref_opj(path, inf, tmp):
    """opj_decompress on each extracted codestream (planar little-endian raw)."""
    frames = []
    for i, cs in enumerate(encoded_frames(path, inf["frames"])):
        j2k = os.path.join(tmp, "f%d.j2k" % i)
        raw = os.path.join(tmp, "f%d.rawl" % i)
        with open(j2k, "wb") as f:
            f.write(cs)
        r = subprocess.run(["opj_decompress", "-i", j2k, "-o", raw], check=True,
                           capture_output=True, text=True)
        dt = dtype_of(inf)
        a = np.fromfile(raw, dtype=np.dtype(dt).newbyteorder("<"))
        # opj's raw writer masks a signed component to its precision:
        # sign-extend from "Component 0 characteristics: WxHxP signed".
        m = re.search(r"Component 0 characteristics: \d+x\d+x(\d+) (signed|unsigned)", r.stdout)
        if m and m.group(2) == "signed":
            p = int(m.group(1))
            v = a.astype(np.int64) & ((1 << p) - 1)
            a = np.where(v >= (1 << (p - 1)), v - (1 << p), v).astype(dt)
        a = a.reshape(inf["samples"], inf["rows"], inf["cols"]).transpose(1, 2, 0)
        frames.append(a)
    return normalize(np.stack(frames), inf, decoded=inf["transfer_syntax"] in J2K_LOSSY)


def ref_deflframe(path, inf):
    """Deflated Image Frame Compression: zlib-inflate each frame."""
    out = []
    for cs in encoded_frames(path, inf["frames"]):
        try:
            raw = zlib.decompress(cs, -15)
        except zlib.error:
            raw = zlib.decompress(cs)
        b = np.frombuffer(raw, np.uint8)
        n = inf["rows"] * inf["cols"]
        if inf["bits_allocated"] == 1:
            a = np.unpackbits(b, bitorder="little")[:n]
        else:
            a = b.view(dtype_of(inf))[: n * inf["samples"]]
        out.append(a.reshape(inf["rows"], inf["cols"], inf["samples"]))
    return normalize(np.stack(out), inf)


def reference(path, inf, tmp):
    """(array, oracle name, lossy) for a file's pixel data."""
    ts = inf["transfer_syntax"]
    if ts in J2K:
        return ref_opj(path, inf, tmp), "opj_decompress", ts in J2K_LOSSY
    if ts in JPEG or ts in JLS:
        a, _ = ref_dcmtk(path, inf, ts, tmp)
        return a, ("dcmdjpeg" if ts in JPEG else "dcmdjpls"), ts in JPEG_LOSSY
    if ts == DEFLFRAME:
        return ref_deflframe(path, inf), "zlib", False
    return ref_pydicom(path, inf), "pydicom", False


class Cases:
    """Runs check functions that return True/False; an exception is a
    failure, reported with its case name, and the run goes on."""

    def __init__(self):
        self.passed = self.failed = 0

    def run(self, name, fn):
        try:
            ok = fn()
        except Exception as e:  # report every case, then fail
            print("FAIL %s: %s" % (name, e))
            ok = False
        self.passed += bool(ok)
        self.failed += not ok


def report(passed, failed, skipped=0):
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)
