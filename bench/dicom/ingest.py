"""C-STORE ingest and C-FIND latency: our DICOM node against Orthanc 1.10.

Ours runs twice: durable (default: acknowledged once the file is
renamed into its place and fsync'd there, its directory too where the
filesystem needs it; the index is committed unsynced and rebuilt from the
files at start) and with "fsync": false (acknowledged once written and
committed, Orthanc's own guarantee). Same files (N generated 512x512 16-bit CT slices, uncompressed explicit
VR little endian, ~0.5 MB each), same sender (DCMTK storescu, one
association), each server with a fresh store; Orthanc runs with
TCP_NODELAY=1 (cshelp.Orthanc). A run counts only when every instance is
indexed at the end (our index / Orthanc's /statistics). Then 50 small
studies are added and one Python client, on one association, times C-FIND
at STUDY level by PatientID (request to final response): median and p90.

Prints one JSON object. Run: cmake --build build/dev --target bench-dicom-ingest
or CS_BIN=... /usr/bin/python3 bench/dicom/ingest.py [N] [runs]."""
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CS_SRC", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "dimse"))
import dimsehelp as h  # noqa: E402
import cshelp  # noqa: E402

FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def storescu(aet, port, folder):
    t0 = time.time()
    r = subprocess.run(["storescu", "-aet", "BENCH", "-aec", aet, "+sd", "+r", "127.0.0.1",
                        str(port), folder], capture_output=True, text=True, timeout=1800,
                       env=dict(os.environ, TCP_NODELAY="1"))  # Nagle off at the sender too
    dt = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError("storescu failed: " + r.stderr[-500:])
    return dt


def explicit_elem(group, elem, vr, value):
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def find_identifier(patient_id):
    return b"".join([
        explicit_elem(0x0008, 0x0020, b"DA", b""),
        explicit_elem(0x0008, 0x0052, b"CS", b"STUDY"),
        explicit_elem(0x0010, 0x0010, b"PN", b""),
        explicit_elem(0x0010, 0x0020, b"LO", patient_id.encode()),
        explicit_elem(0x0020, 0x000D, b"UI", b""),
    ])


def find_command(msg_id):
    return h.command([(0x0002, h._uid(FIND_MODEL)), (0x0100, struct.pack("<H", 0x20)),
                      (0x0110, struct.pack("<H", msg_id)), (0x0700, struct.pack("<H", 0)),
                      (0x0800, struct.pack("<H", 0))])


def find_latencies(aet, port, patient_ids, rounds):
    """C-FIND round trips (ms) on one association; also the match counts."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(h.associate_rq(aet, "BENCH", [(1, FIND_MODEL, [EXPLICIT])]))
    t, _ = h.read_pdu(s)
    if t != 2:
        raise RuntimeError("C-FIND association refused by %s (PDU %s)" % (aet, t))
    out, matches = [], []
    for i in range(rounds):
        pid = patient_ids[i % len(patient_ids)]
        t0 = time.perf_counter()
        s.sendall(h.pdata(1, find_command(i + 1), True) + h.pdata(1, find_identifier(pid), False))
        n = 0
        while True:
            t, body = h.read_pdu(s)
            if t != 4:
                raise RuntimeError("C-FIND: unexpected PDU %s" % t)
            st = h.command_status(body)
            if st is None:
                continue  # a data PDV (the identifier of a pending match)
            if st in (0xFF00, 0xFF01):
                n += 1
                continue
            break
        out.append((time.perf_counter() - t0) * 1000)
        matches.append(n)
    s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0" * 4)
    h.read_pdu(s)
    s.close()
    return out, matches


def small_studies(folder, n):
    import pydicom
    from pydicom.uid import generate_uid
    os.makedirs(folder, exist_ok=True)
    base = pydicom.dcmread(os.path.join(h.DICOM, "CT_small.dcm"))
    ids = []
    for i in range(n):
        ds = base.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = "BENCH-%03d" % i
        ds.PatientName = "Bench^Patient%03d" % i
        ds.StudyDate = "2025%02d%02d" % (1 + i % 12, 1 + i % 28)
        ds.save_as(os.path.join(folder, "s%03d.dcm" % i))
        ids.append(ds.PatientID)
    return ids


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="bench-ingest-", dir=h.WORK)
    try:
        result = bench(work, n, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


def bench(work, n, runs):
    _, _, paths = h.make_ct_series(os.path.join(work, "ct"), n, seed=5)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    extra = os.path.join(work, "small")
    pids = small_studies(extra, 50)
    res = {"bench": "dicom-ingest", "images": n, "mb": round(mb, 1), "sender": "storescu",
           "load_before": os.getloadavg()[0]}
    kinds = ("ours", "ours_fsync_off", "orthanc")
    times = {k: [] for k in kinds}
    for r in range(runs):
        for who in (kinds if r % 2 == 0 else kinds[::-1]):
            d = os.path.join(work, "%s-%d" % (who, r))
            last = r == runs - 1
            if who.startswith("ours"):
                cfg = {"fsync": who == "ours"}
                with h.Node(d, "CONSILIUM", config=cfg) as node:
                    times[who].append(storescu(node.aet, node.port, os.path.join(work, "ct")))
                    if node.count() != n:
                        raise RuntimeError("%s indexed %d of %d" % (who, node.count(), n))
                    if last and who == "ours":
                        storescu(node.aet, node.port, extra)
                        res[who] = finds(node.aet, node.port, pids)
            else:
                with cshelp.Orthanc(d) as orth:
                    times[who].append(storescu(orth.aet, orth.dicom_port,
                                               os.path.join(work, "ct")))
                    got = orth.rest("GET", "/statistics")["CountInstances"]
                    if got != n:
                        raise RuntimeError("Orthanc indexed %d of %d" % (got, n))
                    if last:
                        storescu(orth.aet, orth.dicom_port, extra)
                        res[who] = finds(orth.aet, orth.dicom_port, pids)
    for who in kinds:
        best = min(times[who])
        res.setdefault(who, {})
        res[who]["seconds"] = [round(t, 2) for t in times[who]]
        res[who]["images_per_s"] = round(n / best, 1)
        res[who]["mb_per_s"] = round(mb / best, 1)
    o = res["orthanc"]["images_per_s"]
    res["ingest_ratio"] = round(res["ours"]["images_per_s"] / o, 2)
    res["ingest_ratio_fsync_off"] = round(res["ours_fsync_off"]["images_per_s"] / o, 2)
    res["load_after"] = os.getloadavg()[0]
    return res


def finds(aet, port, pids):
    lat, m = find_latencies(aet, port, pids, 200)
    return {"find_ms_median": round(statistics.median(lat), 3),
            "find_ms_p90": round(pct(lat, 90), 3), "find_matches": sorted(set(m))}


if __name__ == "__main__":
    main()
