"""bench-dicom-decode: decode speed per transfer syntax, ours vs DCMTK.

For each transfer syntax in ../shared/testdata/dicom the largest image file
is decoded (all frames) by
  ours        decode_bench: cs_dicom_open_mem + frames_decode, 1 thread
  dcmtk       decode_dcmtk: DcmFileFormat::read + chooseRepresentation
              (DCMTK's JPEG/JPEG-LS/RLE decoders), in process
  dcmtk-cli   dcmdjpeg / dcmdjpls / dcmdrle / dcmconv +te, wall time
Median of RUNS runs each, in megapixels per second. Both in-process figures
start from the file's bytes in memory and include parsing.

Multi-frame: a 50-frame 512x512 16-bit CT is made from 693_UNCR.dcm (each
frame shifted, so frames differ), transcoded to JPEG-LS with our own
transcode into the build directory, and decoded with 1 and 2 threads.

Targets: JPEG-LS >= 2x DCMTK, every other syntax >= 1x DCMTK, multi-frame
2 threads >= 1.8x 1 thread. Prints a table, then one JSON object."""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pydicom

BENCH = os.environ["CS_DICOM_BENCH"]
DCMTK = os.environ["CS_DICOM_DCMTK"]
TOOL = os.environ["CS_DICOM_TOOL"]
DATA = os.path.join(os.environ["CS_TESTDATA"], "dicom")
WORK = os.path.join(os.environ.get("CS_WORK", "/tmp"), "bench_dicom_decode")
RUNS = int(os.environ.get("RUNS", "7"))

NAMES = {
    "1.2.840.10008.1.2": "implicit LE", "1.2.840.10008.1.2.1": "explicit LE",
    "1.2.840.10008.1.2.1.99": "deflate", "1.2.840.10008.1.2.2": "explicit BE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless P14", "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS near",
    "1.2.840.10008.1.2.4.90": "J2K lossless", "1.2.840.10008.1.2.4.91": "J2K",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless", "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE", "1.2.840.10008.1.2.8.1": "deflated frames",
}


def cli_for(ts):
    if ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
              "1.2.840.10008.1.2.4.70"):
        return ["dcmdjpeg"]
    if ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
        return ["dcmdjpls"]
    if ts == "1.2.840.10008.1.2.5":
        return ["dcmdrle"]
    if ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
              "1.2.840.10008.1.2.2"):
        return ["dcmconv", "+te"]
    return None


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def cli_ms(cmd, path, out):
    ts = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        r = subprocess.run(cmd + [path, out], capture_output=True)
        ts.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            return None
    return statistics.median(ts)


def pick_files():
    best = {}
    for f in sorted(os.listdir(DATA)):
        if not f.endswith(".dcm"):
            continue
        p = os.path.join(DATA, f)
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        if "Rows" not in ds:
            continue
        ts = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta \
            else "1.2.840.10008.1.2"
        px = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
        if ts not in best or px > best[ts][1]:
            best[ts] = (p, px)
    return best


def make_multiframe():
    os.makedirs(WORK, exist_ok=True)
    src = pydicom.dcmread(os.path.join(DATA, "693_UNCR.dcm"))
    base = src.pixel_array
    frames = np.stack([np.roll(base, 7 * k, axis=1) for k in range(50)])
    src.NumberOfFrames = 50
    src.PixelData = frames.astype(base.dtype).tobytes()
    native = os.path.join(WORK, "ct50_native.dcm")
    src.save_as(native)
    jls = os.path.join(WORK, "ct50_jls.dcm")
    subprocess.run([TOOL, "transcode", native, jls], check=True)
    return jls


def main():
    os.makedirs(WORK, exist_ok=True)
    rows = []
    for ts, (path, px) in sorted(pick_files().items(), key=lambda kv: NAMES.get(kv[0], kv[0])):
        ours = run_json([BENCH, path, str(RUNS), "1"])
        dc = run_json([DCMTK, path, str(RUNS)])
        cli = cli_for(ts)
        cms = cli_ms(cli, path, os.path.join(WORK, "cli_out.dcm")) if cli else None
        mp = ours.get("mpix", 0)
        row = {"syntax": NAMES.get(ts, ts), "uid": ts, "file": os.path.basename(path),
               "mpix": mp,
               "ours_mpix_s": mp / ours["median_ms"] * 1000 if "median_ms" in ours else None,
               "dcmtk_mpix_s": mp / dc["median_ms"] * 1000 if "median_ms" in dc else None,
               "cli_mpix_s": mp / cms * 1000 if cms else None,
               "cli": " ".join(cli) if cli else None}
        row["ratio_vs_dcmtk"] = (row["ours_mpix_s"] / row["dcmtk_mpix_s"]
                                 if row["ours_mpix_s"] and row["dcmtk_mpix_s"] else None)
        row["ratio_vs_cli"] = (row["ours_mpix_s"] / row["cli_mpix_s"]
                               if row["ours_mpix_s"] and row["cli_mpix_s"] else None)
        need = 2.0 if ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81") else 1.0
        row["target"] = need
        row["meets_target"] = (row["ratio_vs_dcmtk"] >= need
                               if row["ratio_vs_dcmtk"] is not None else None)
        rows.append(row)

    def f(v, fmt="%8.1f"):
        return fmt % v if v is not None else "     n/a"
    print("%-18s %-34s %7s %8s %8s %8s %7s %7s  %s" % (
        "syntax", "file", "MPix", "ours", "dcmtk", "cli", "x dcmtk", "x cli", "target"))
    for r in rows:
        print("%-18s %-34s %7.2f %s %s %s %s %s  %s" % (
            r["syntax"], r["file"][:34], r["mpix"], f(r["ours_mpix_s"]), f(r["dcmtk_mpix_s"]),
            f(r["cli_mpix_s"]), f(r["ratio_vs_dcmtk"], "%7.2f"), f(r["ratio_vs_cli"], "%7.2f"),
            {True: ">= %.0fx ok" % r["target"], False: ">= %.0fx MISSED" % r["target"],
             None: "(DCMTK cannot decode)"}[r["meets_target"]]))

    mf = make_multiframe()
    one = run_json([BENCH, mf, str(RUNS), "1"])
    two = run_json([BENCH, mf, str(RUNS), "2"])
    dmf = run_json([DCMTK, mf, str(RUNS)])
    speedup = one["median_ms"] / two["median_ms"]
    multi = {"file": "693_UNCR x50 frames, JPEG-LS lossless (our transcode)",
             "mpix": one["mpix"],
             "ours_1_thread_mpix_s": one["mpix"] / one["median_ms"] * 1000,
             "ours_2_threads_mpix_s": two["mpix"] / two["median_ms"] * 1000,
             "dcmtk_mpix_s": (dmf["mpix"] / dmf["median_ms"] * 1000) if "median_ms" in dmf
             else None,
             "speedup_2_threads": speedup, "target": 1.8, "meets_target": speedup >= 1.8}
    print("\nmulti-frame JPEG-LS, 50 x 512x512: 1 thread %.1f MPix/s, 2 threads %.1f MPix/s "
          "(x%.2f, target x1.8 %s); DCMTK %.1f MPix/s" % (
              multi["ours_1_thread_mpix_s"], multi["ours_2_threads_mpix_s"], speedup,
              "ok" if multi["meets_target"] else "MISSED", multi["dcmtk_mpix_s"] or 0))
    print(json.dumps({"bench": "dicom-decode", "runs": RUNS, "load": os.getloadavg()[0],
                      "syntaxes": rows, "multiframe": multi}))


if __name__ == "__main__":
    main()
