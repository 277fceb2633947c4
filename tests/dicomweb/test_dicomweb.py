#!/usr/bin/env python3
"""DICOMweb of the node: QIDO-RS and WADO-RS against pydicom's own reading.

Starts `consilium serve` with a DICOM store on free ports, sends real files
from ../shared/testdata/dicom with DCMTK's storescu (a real modality's
sender), then checks every route: attributes, matching, counts, raw frames
bit for bit, rendered images, metadata, errors, tokens and the audit trail.
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from PIL import Image  # noqa: E402

DICOM = os.path.join(cshelp.TESTDATA, "dicom")
FILES = ["CT_small.dcm", "MR_small_bigendian.dcm", "emri_small.dcm", "693_UNCR.dcm",
         "693_J2KR.dcm", "RG2_JLSL.dcm", "US1_UNCR.dcm", "MR2_J2KR.dcm", "RG3_J2KR.dcm"]



def multipart(ctype, body):
    """Parts of a multipart/related body, split at its boundary."""
    b = [p.split("=", 1)[1].strip('"') for p in ctype.split(";") if p.strip().startswith("boundary=")]
    assert b, ctype
    sep = b"--" + b[0].encode()
    parts = []
    for chunk in body.split(sep)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        parts.append(data[:-2] if data.endswith(b"\r\n") else data)
    return parts


def window(ds, arr, center=None, width=None):
    """PS3.3 C.11.2.1.2 linear window on the modality values, as DCMTK."""
    v = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + \
        float(getattr(ds, "RescaleIntercept", 0) or 0)
    if center is None:
        wc, ww = ds.WindowCenter, ds.WindowWidth
        center = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        width = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    out = ((v - (center - 0.5)) / (width - 1) + 0.5) * 255
    out = np.where(v <= lo, 0, np.where(v > hi, 255, out))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out


def main():
    c = cshelp.Checker()
    work = tempfile.mkdtemp(prefix="dicomweb-", dir=cshelp.WORK)
    store, db = os.path.join(work, "store"), os.path.join(work, "node.db")
    audit = os.path.join(work, "audit.log")
    dport = cshelp.free_port()
    try:
        with cshelp.Server([], ["--store", store, "--db", db, "--aet", "CONSILIUM",
                                "--dicom-port", str(dport), "--audit-log", audit]) as s:
            paths = [os.path.join(DICOM, f) for f in FILES]
            ok, err = cshelp.storescu(paths, dport, aet="MODALITY")
            c.check(ok, "storescu sent the files: " + err[-500:])
            if ok:
                run(c, s, paths, audit)
                check_rendered_ahead(c, s, store, dport, work, paths)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


def run(c, s, paths, audit):
    dss = {p: pydicom.dcmread(p) for p in paths}
    studies = {}
    for p, ds in dss.items():
        studies.setdefault(ds.StudyInstanceUID, []).append((p, ds))

    # --- QIDO-RS studies ---
    st, h, body = s.get("/dicomweb/studies")
    c.check(st == 200 and h.get("Content-Type", "").startswith("application/dicom+json"),
            "QIDO studies answers dicom+json (%s)" % st)
    got = {o["0020000D"]["Value"][0]: o for o in json.loads(body)}
    c.check(set(got) == set(studies), "every study stored is listed (%d vs %d)"
            % (len(got), len(studies)))
    for uid, items in studies.items():
        o, ds = got.get(uid, {}), items[0][1]
        nsop = len({x.SOPInstanceUID for _, x in items})  # 693_UNCR/J2KR share one
        c.check(int(o.get("00201208", {}).get("Value", [0])[0]) == nsop,
                "study %s: instance count" % uid)
        pid = str(getattr(ds, "PatientID", ""))
        if pid:
            c.check(o.get("00100020", {}).get("Value", [None])[0] == pid, "study %s: PatientID" % uid)
        mods = set(o.get("00080061", {}).get("Value", []))
        c.check(mods == {x.Modality for _, x in items if "Modality" in x},
                "study %s: modalities %s" % (uid, mods))

    # matching: exact PatientID, wildcard name (any case), date range, limit/offset
    ds0 = dss[paths[0]]
    pid = str(ds0.PatientID)
    ans = s.json("/dicomweb/studies?PatientID=" + pid)
    want = {u for u, it in studies.items() if str(getattr(it[0][1], "PatientID", "")) == pid}
    c.check({o["0020000D"]["Value"][0] for o in ans} == want, "PatientID exact match")
    name = str(ds0.PatientName)
    if len(name) >= 3:
        pat = name[:3].lower() + "*"
        ans = s.json("/dicomweb/studies?PatientName=" + pat)
        want = {u for u, it in studies.items()
                if str(getattr(it[0][1], "PatientName", "")).lower().startswith(name[:3].lower())}
        c.check({o["0020000D"]["Value"][0] for o in ans} == want,
                "PatientName wildcard, case-insensitive (%s)" % pat)
    dates = sorted(str(it[0][1].StudyDate) for it in studies.values() if it[0][1].get("StudyDate"))
    if dates:
        d = dates[len(dates) // 2]
        ans = s.json("/dicomweb/studies?StudyDate=-" + d)
        want = {u for u, it in studies.items() if it[0][1].get("StudyDate")
                and str(it[0][1].StudyDate) <= d}
        c.check({o["0020000D"]["Value"][0] for o in ans} == want,
                "StudyDate range -%s: the dated studies up to it, not the undated" % d)
    page1 = s.json("/dicomweb/studies?limit=2")
    page2 = s.json("/dicomweb/studies?limit=2&offset=2")
    c.check(len(page1) == min(2, len(studies)), "limit=2")
    c.check(not ({o["0020000D"]["Value"][0] for o in page1} &
                 {o["0020000D"]["Value"][0] for o in page2}), "offset pages do not overlap")
    c.check(s.json("/dicomweb/studies?PatientID=nobody-at-all") == [], "no match: empty array")

    # --- series, instances, frames, rendered ---
    for p, ds in dss.items():
        base = "/dicomweb/studies/%s/series/%s" % (ds.StudyInstanceUID, ds.SeriesInstanceUID)
        series = s.json("/dicomweb/studies/%s/series" % ds.StudyInstanceUID)
        c.check(ds.SeriesInstanceUID in [o["0020000E"]["Value"][0] for o in series],
                "%s: its series is listed" % os.path.basename(p))
        inst = s.json(base + "/instances")
        c.check(ds.SOPInstanceUID in [o["00080018"]["Value"][0] for o in inst],
                "%s: its instance is listed" % os.path.basename(p))
        ib = base + "/instances/" + ds.SOPInstanceUID
        meta = s.json(ib + "/metadata")
        c.check(len(meta) == 1 and meta[0].get("00280010", {}).get("Value") == [ds.Rows]
                and "7FE00010" not in meta[0] or "BulkDataURI" in meta[0].get("7FE00010", {}),
                "%s: metadata has Rows and no inline pixel data" % os.path.basename(p))
        check_frames(c, s, ib, p, ds)
        check_rendered(c, s, ib, p, ds)

    # --- errors and tokens ---
    ds = dss[paths[0]]
    base = "/dicomweb/studies/%s/series/%s" % (ds.StudyInstanceUID, ds.SeriesInstanceUID)
    st, _, _ = s.get(base + "/instances/" + ds.SOPInstanceUID + "/frames/99")
    c.check(st == 404, "frame out of range: 404 (%d)" % st)
    st, _, _ = s.get("/dicomweb/studies/1.2.3.999/series")
    c.check(st == 404, "unknown study: 404 (%d)" % st)
    st, _, _ = s.get("/dicomweb/studies/not-a-uid/series")
    c.check(st == 400, "malformed UID: 400 (%d)" % st)
    st, _, _ = s.get(base + "/instances/" + ds.SOPInstanceUID + "/rendered?window=40")
    c.check(st == 400, "bad window: 400 (%d)" % st)
    st, _, _ = s.get("/dicomweb/studies?limit=abc")
    c.check(st == 400, "bad limit: 400 (%d)" % st)
    st, _, _ = s.get("/dicomweb/studies", token=False)
    c.check(st == 401, "no token: 401 (%d)" % st)
    st, _, _ = s.get("/dicomweb/studies", token="wrong-token-wrong-token")
    c.check(st == 401, "wrong token: 401 (%d)" % st)
    c.check(s.alive(), "server alive after the bad requests")

    # --- audit: study access recorded, by token fingerprint, never the token ---
    time.sleep(0.2)
    lines = [json.loads(x) for x in open(audit)]
    acc = [x for x in lines if x.get("code") == "110103" and x.get("study")]
    c.check({x["study"] for x in acc} >= set(studies), "every study read left a 110103 record")
    c.check(all(s.token not in json.dumps(x) for x in lines), "no token in the audit trail")


def instance_url(ds):
    return "/dicomweb/studies/%s/series/%s/instances/%s" % (
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def cached(store, sop):
    d = os.path.join(store, ".rendered")
    names = os.listdir(d) if os.path.isdir(d) else []
    return sorted(os.path.join(d, f) for f in names if f.split("_")[0] == sop and
                  f.endswith(".jpg"))


def wait_cached(store, sops, n=1, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(len(cached(store, x)) >= n for x in sops):
        time.sleep(0.2)
    return {x for x in sops if len(cached(store, x)) >= n}


def check_rendered_ahead(c, s, store, dport, work, paths):
    """Frame 1 of each compressed instance is rendered as it arrives; the
    first /rendered serves that file, the same bytes as one made on request;
    a replaced instance is never answered with the old image."""
    dss = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in paths}
    comp = {p: ds for p, ds in dss.items() if ds.file_meta.TransferSyntaxUID.is_compressed}
    want = {ds.SOPInstanceUID for ds in comp.values()}
    got = wait_cached(store, want)
    c.check(got == want, "every compressed instance was rendered ahead (%d of %d)"
            % (len(got), len(want)))
    plain = {ds.SOPInstanceUID for ds in dss.values()} - want
    c.check(not any(cached(store, x) for x in plain),
            "uncompressed instances are not rendered ahead (%d)" % len(plain))
    for p, ds in comp.items():
        name = os.path.basename(p)
        files = cached(store, ds.SOPInstanceUID)
        if not files:
            continue
        with open(files[-1], "rb") as f:
            ahead = f.read()
        st, _, fresh = s.get(instance_url(ds) + "/rendered?quality=90")
        c.check(st == 200 and fresh == ahead,
                "%s: the image rendered ahead is the one rendered on request" % name)
        # put another image in its place: /rendered must answer it, from disk
        st, _, other = s.get(instance_url(ds) + "/rendered?quality=50")
        with open(files[-1], "wb") as f:
            f.write(other)
        st, h, body = s.get(instance_url(ds) + "/rendered")
        c.check(st == 200 and h.get("Content-Type") == "image/jpeg" and body == other != fresh,
                "%s: /rendered answers from the image rendered ahead" % name)

    # the sender corrects an instance (another window): never the old image
    src = os.path.join(DICOM, "MR2_J2KR.dcm")
    ds = pydicom.dcmread(src)
    with open(cached(store, ds.SOPInstanceUID)[-1], "rb") as f:
        before = f.read()  # replaced above: what a stale cache would answer
    ds.WindowCenter, ds.WindowWidth = 300, 200
    fixed = os.path.join(work, "MR2_J2KR_rewindowed.dcm")
    ds.save_as(fixed)
    ok, err = cshelp.storescu([fixed], dport, aet="MODALITY")
    c.check(ok, "the corrected instance was sent: " + err[-300:])
    c.check(len(wait_cached(store, {ds.SOPInstanceUID}, n=2)) == 1,
            "the corrected instance was rendered ahead again")
    st, _, body = s.get(instance_url(ds) + "/rendered")
    st2, _, fresh = s.get(instance_url(ds) + "/rendered?quality=90")
    c.check(st == 200 and body != before and body == fresh,
            "after the correction /rendered is the new image, not the old one")


def check_frames(c, s, ib, p, ds):
    name = os.path.basename(p)
    nf = int(getattr(ds, "NumberOfFrames", 1) or 1)
    want = list(range(1, min(nf, 3) + 1))
    st, h, body = s.get(ib + "/frames/" + ",".join(map(str, want)), headers={
        "Accept": 'multipart/related; type="application/octet-stream"'})
    c.check(st == 200, "%s: frames %s (%d %s)" % (name, want, st, body[:200]))
    if st != 200:
        return
    parts = multipart(h["Content-Type"], body)
    c.check(len(parts) == len(want), "%s: %d parts" % (name, len(parts)))
    ref = reference_pixels(p, ds)
    if ref is None:
        return
    ref = np.asarray(ref).reshape(nf, -1)  # frames of interleaved samples
    for k, part in enumerate(parts):
        dt = np.dtype(("<i2" if ds.PixelRepresentation else "<u2") if ds.BitsAllocated > 8
                      else "u1")
        a = np.frombuffer(part, dtype=dt)
        r = ref[k].astype(dt)
        c.check(a.size == r.size and np.array_equal(a, r),
                "%s frame %d: raw values equal pydicom's bit for bit" % (name, k + 1))


def reference_pixels(p, ds):
    """pydicom's stored values; for J2K/JLS files the uncompressed twin in
    the corpus (same image: NEMA WG04) or DCMTK's dcmdjpls decode."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts in ("1.2.840.10008.1.2.4.90",):
        twin = p.replace("_J2KR", "_UNCR")
        if os.path.exists(twin) and twin != p:
            return pydicom.dcmread(twin).pixel_array
        try:
            return ds.pixel_array  # Pillow with OpenJPEG
        except Exception:
            return None
    if ts == "1.2.840.10008.1.2.4.80":
        out = os.path.join(cshelp.WORK, "ref-" + os.path.basename(p))
        subprocess.run(["dcmdjpls", p, out], check=True)
        a = pydicom.dcmread(out).pixel_array
        os.unlink(out)
        return a
    return ds.pixel_array


def check_rendered(c, s, ib, p, ds):
    name = os.path.basename(p)
    st, h, body = s.get(ib + "/rendered?quality=100")  # little JPEG noise in the comparison
    c.check(st == 200 and h.get("Content-Type") == "image/jpeg",
            "%s: rendered is a JPEG (%d)" % (name, st))
    if st != 200 or ds.SamplesPerPixel != 1:
        return
    img = np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float64)
    ref = reference_pixels(p, ds)
    if ref is None:
        return
    ref = ref[0] if ref.ndim == 3 else ref
    if "WindowCenter" in ds:
        exp = window(ds, ref)
        err = float(np.mean(np.abs(img - exp)))
        c.check(img.shape == exp.shape and err < 1.0,
                "%s: rendered at the file's window, mean error %.2f grey levels" % (name, err))
    lo = window(ds, ref, 40.0, 400.0)
    st, _, body = s.get(ib + "/rendered?window=40,400&quality=100")
    img2 = np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float64)
    err = float(np.mean(np.abs(img2 - lo)))
    c.check(st == 200 and err < 1.0, "%s: ?window=40,400 honoured, mean error %.2f" % (name, err))


if __name__ == "__main__":
    sys.exit(main())
