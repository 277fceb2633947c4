"""Acceptance 2: cs_dicom_render() at the file's own window matches DCMTK's
dcmj2pnm (3.6.7) within 1 grey level on every pixel.

dcmj2pnm (dcml2pnm for JPEG-LS) options mirror our defaults: +op (8-bit PGM/PPM), first frame, and
the VOI the file gives: +Wl 1 (first VOI LUT) when it has a VOI LUT
Sequence, else +Wi 1 (first window), else +Wm (min-max of the frame).
A window found only in an enhanced object's functional groups (which
dcmj2pnm's +Wi does not see; it does apply their rescale) is passed to it
with +Ww.
Colour: RGB as stored, YBR_FULL converted to RGB, PALETTE COLOR expanded.
dcmj2pnm cannot decode JPEG 2000 / HTJ2K: for those the frame decoded by
opj_decompress is written into an explicit-LE copy (pydicom) and rendered
by dcmj2pnm, so the same formula is checked against the lossless
reference."""
import os
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402


def read_pnm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts = []
    pos = 0
    while len(parts) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        parts.append(data[pos:end])
        pos = end
    pos += 1
    magic, w, h = parts[0], int(parts[1]), int(parts[2])
    ch = 1 if magic == b"P5" else 3
    return np.frombuffer(data[pos:pos + w * h * ch], np.uint8).reshape(h, w, ch)


def j2k_as_native(path, inf, tmp):
    ref = R.ref_opj(path, inf, tmp)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_implicit_VR = False
    ds.is_little_endian = True
    ds.PixelData = np.ascontiguousarray(ref).tobytes()
    if inf["samples"] == 3:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    out = os.path.join(tmp, os.path.basename(path) + ".native.dcm")
    ds.save_as(out)
    return out


def main():
    tmp = R.workdir("dicom_render")
    passed = failed = 0
    items, skipped = R.images()
    for path, name, inf in items:
        if inf["bits_allocated"] == 1 or inf["transfer_syntax"] == R.DEFLFRAME:
            # dcmj2pnm 3.6.7 knows neither 1-bit SEG frames nor this syntax
            print("SKIP %s: dcmj2pnm cannot read %s / 1-bit" % (name, inf["transfer_syntax"]))
            skipped += 1
            continue
        try:
            src = path
            if inf["transfer_syntax"] in R.J2K:
                src = j2k_as_native(path, inf, tmp)
            mine = os.path.join(tmp, name + ".ours.pnm")
            R.tool("render", path, mine)
            theirs = os.path.join(tmp, name + ".dcmtk.pnm")
            top = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if inf["has_voi_lut"] == "1":
                voi = ["+Wl", "1"]
            elif inf["has_window"] and "WindowCenter" in top:
                voi = ["+Wi", "1"]
            elif inf["has_window"]:
                # a window in the enhanced object's functional groups, which
                # dcmj2pnm 3.6.7 does not select with +Wi (it does apply their
                # rescale): give it the same window explicitly
                c, w = float(inf["window_center"]), float(inf["window_width"])
                voi = ["+Ww", "%.6f" % c, "%.6f" % w]
            else:
                voi = ["+Wm"]
            prog = "dcml2pnm" if inf["transfer_syntax"] in R.JLS else "dcmj2pnm"
            subprocess.run([prog, "+op", "-O", "+F", "1"] + voi + [src, theirs], check=True,
                           capture_output=True)
            a, b = read_pnm(mine), read_pnm(theirs)
            if a.shape != b.shape:
                raise AssertionError("shape %s vs dcmj2pnm %s" % (a.shape, b.shape))
            d = np.abs(a.astype(int) - b.astype(int))
            ok = d.max() <= 1
            print("%s %s [%s %s, VOI %s]: max|diff| %d, %.2f%% pixels differ" %
                  ("ok  " if ok else "FAIL", name, inf["photometric"], inf["transfer_syntax"],
                   " ".join(voi), d.max(), 100.0 * np.count_nonzero(d) / d.size))
            passed += ok
            failed += not ok
        except Exception as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
    # VOI LUT Function: CT_small with its window declared SIGMOID / LINEAR_EXACT
    for fn in ("SIGMOID", "LINEAR_EXACT"):
        try:
            ds = pydicom.dcmread(os.path.join(R.DATA, "CT_small.dcm"))
            ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, fn
            src = os.path.join(tmp, "CT_small_%s.dcm" % fn)
            ds.save_as(src)
            mine, theirs = src + ".ours.pnm", src + ".dcmtk.pnm"
            R.tool("render", src, mine)
            subprocess.run(["dcmj2pnm", "+op", "-O", "+Wi", "1", src, theirs], check=True,
                           capture_output=True)
            d = np.abs(read_pnm(mine).astype(int) - read_pnm(theirs).astype(int))
            ok = d.max() <= 1
            print("%s CT_small with VOI LUT Function %s: max|diff| %d" %
                  ("ok  " if ok else "FAIL", fn, d.max()))
            passed += ok
            failed += not ok
        except Exception as e:
            print("FAIL VOI LUT Function %s: %s" % (fn, e))
            failed += 1
    R.report(passed, failed, skipped)


if __name__ == "__main__":
    main()
