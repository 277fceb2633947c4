#!/usr/bin/env python3
"""First rendered frame over HTTP: Consilium's DICOMweb vs Orthanc's.

Same files, same client, same machine: a JPEG-LS CR (RG2_JLSL, 2140x1760)
and a JPEG 2000 MR (MR2_J2KR, 1024x1024) are stored into both servers; then
GET .../instances/{sop}/rendered is timed, a new connection each time, on
the file's own window. Orthanc renders through its DICOMweb plugin with the
GDCM plugin decoding (it has no JPEG 2000 decoder of its own).
"first" is the first request for that instance, after each server has
rendered two other small images, one JPEG-LS and one JPEG 2000 (emri_small
in each syntax), so that neither pays its process's one-time start-up
(dictionaries, codec libraries) in the figure: this
is the image a radiologist opening a new study waits for. Orthanc caches
what it rendered, so its later requests ("median") are cache hits. Ours
runs twice: as deployed (frame 1 of each compressed instance rendered as it
arrives, served from disk; the bench also reports how long after the store
those images were ready) and with --no-prerender (decoded on request, every
time). Prints a table and one JSON line.
Target (issue 4): ours <= 0.5x Orthanc's.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import cshelp  # noqa: E402
import pydicom  # noqa: E402

FILES = {"JPEG-LS CR": "RG2_JLSL.dcm", "JPEG 2000 MR": "MR2_J2KR.dcm"}
WARM = ["emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"]



def timed_get(port, path, headers):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    dt = time.perf_counter() - t0
    if r.status != 200:
        raise RuntimeError("%s: %d %s" % (path, r.status, body[:200]))
    return dt, len(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-rendered-", dir=cshelp.WORK)
    files = {k: os.path.join(cshelp.TESTDATA, "dicom", v) for k, v in FILES.items()}
    warm = [("warm-up", os.path.join(cshelp.TESTDATA, "dicom", w)) for w in WARM]
    results = {}
    dport, dport2 = cshelp.free_port(), cshelp.free_port()
    store = os.path.join(work, "store")
    node = ["--aet", "CONSILIUM", "--db"]
    with cshelp.Orthanc(work, plugins=("dicomweb", "gdcm")) as orth, \
            cshelp.Server([], ["--store", store] + node + [os.path.join(work, "node.db"),
                               "--dicom-port", str(dport)]) as ours, \
            cshelp.Server([], ["--store", store + "2", "--no-prerender"] + node +
                          [os.path.join(work, "node2.db"), "--dicom-port", str(dport2)]) as cold:
        sent = list(files.values()) + [w for _, w in warm]
        for port in (dport, dport2):
            ok, err = cshelp.storescu(sent, port)
            if not ok:
                raise RuntimeError("storescu: " + err[-500:])
            if port == dport:  # how long after the store the images are ready
                t0 = time.perf_counter()
                sops = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in sent}
                while time.perf_counter() - t0 < 30:
                    d = os.path.join(store, ".rendered")
                    have = {x.split("_")[0] for x in os.listdir(d)} if os.path.isdir(d) else set()
                    if sops <= have:
                        break
                    time.sleep(0.005)
                ahead_ms = (time.perf_counter() - t0) * 1e3 if sops <= have else None
        for f in sent:
            orth.upload(f)
        for kind, f in warm + list(files.items()):
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            rel = "/studies/%s/series/%s/instances/%s/rendered" % (
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            row = {}
            for name, port, path, hdr in (
                    ("consilium", ours.port, "/dicomweb" + rel,
                     {"Authorization": "Bearer " + ours.token}),
                    ("consilium_on_request", cold.port, "/dicomweb" + rel,
                     {"Authorization": "Bearer " + cold.token}),
                    ("orthanc", orth.http_port, "/dicom-web" + rel, {})):
                first, size = timed_get(port, path, hdr)
                ts = [timed_get(port, path, hdr)[0] for _ in range(a.runs)]
                row[name] = {"first_ms": first * 1e3, "median_ms": statistics.median(ts) * 1e3,
                             "bytes": size}
            if kind == "warm-up":
                continue
            for name in ("consilium", "consilium_on_request"):
                row["ratio_first_" + name] = row[name]["first_ms"] / row["orthanc"]["first_ms"]
            results[kind] = row
    print("rendered ahead: all %d instances ready %s after storescu returned" % (
        len(sent), "%.0f ms" % ahead_ms if ahead_ms is not None else "NOT within 30 s"))
    print("%-14s %14s %14s %12s %8s %10s %12s %12s" % (
        "file", "ours (ahead)", "ours (on req)", "orthanc 1st", "ratio", "ratio req",
        "ours median", "orthanc med"))
    for kind, r in results.items():
        print("%-14s %11.1f ms %11.1f ms %9.1f ms %7.2fx %9.2fx %9.1f ms %9.1f ms" % (
            kind, r["consilium"]["first_ms"], r["consilium_on_request"]["first_ms"],
            r["orthanc"]["first_ms"], r["ratio_first_consilium"],
            r["ratio_first_consilium_on_request"], r["consilium"]["median_ms"],
            r["orthanc"]["median_ms"]))
    print("target: first ratio <= 0.5")
    print(json.dumps({"bench": "dicom-rendered", "runs": a.runs, "rendered_ahead_ms": ahead_ms,
                      "results": results}))


if __name__ == "__main__":
    sys.exit(main())
