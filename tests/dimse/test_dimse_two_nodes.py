"""Two nodes, the requesting hospital (HOSPITAL) and the consulting site
(CONSULT), the link between them through cs-linkemu at 4 Mbit/s / 50 ms RTT.

A 120-slice 512x512 CT series stored into HOSPITAL is auto-forwarded and
arrives JPEG-LS lossless at CONSULT (bit-exact after decoding); the first
slice is indexed and decodable there before the last has arrived. Slices
stored while CONSULT is down stay queued and go once it is up. The
consultant's reading (Basic Text SR) is then stored at both nodes, and
HOSPITAL does not send it back. Prints seconds and bytes on the link
against the uncompressed size."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dimsehelp as h  # noqa: E402
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402

sys.path.insert(0, os.path.join(cshelp.SRC, "bench", "linkemu"))
from linkemu import LinkEmu  # noqa: E402

N = 120
EARLY = 3  # stored while the consulting node is down


def decoded_equal(path, original, work):
    """Decode a JPEG-LS file with DCMTK's dcmdjpls and compare its pixels
    with the original's."""
    out = os.path.join(work, "dec-%d.dcm" % os.getpid())
    r = subprocess.run(["dcmdjpls", path, out], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return False
    da, db = pydicom.dcmread(out), pydicom.dcmread(original)
    os.unlink(out)
    return np.array_equal(stored_values(da), stored_values(db))


def stored_values(ds):
    """The Bits Stored bits, sign-extended when signed: what a lossless
    codec keeps (JPEG-LS carries P = Bits Stored bits; the unused high bits
    of native data are not part of the value)."""
    bs = int(ds.BitsStored)
    v = ds.pixel_array.astype(np.int64) & ((1 << bs) - 1)
    if int(ds.PixelRepresentation) == 1:
        v = np.where(v >= 1 << (bs - 1), v - (1 << bs), v)
    return v


def main():
    h.run_test(run, "dimse-two-")


def run(c, work):
    study, series, paths = h.make_ct_series(os.path.join(work, "ct"), N, seed=11)
    originals = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}
    raw_bytes = sum(os.path.getsize(p) for p in paths)
    early, rest = os.path.join(work, "early"), os.path.join(work, "rest")
    os.makedirs(early)
    os.makedirs(rest)
    for i, p in enumerate(paths):
        os.symlink(p, os.path.join(early if i < EARLY else rest, os.path.basename(p)))

    consult_port, hospital_port = h.free_port(), h.free_port()
    with LinkEmu(consult_port, rate="4mbit", rtt="50ms", workdir=work) as up, \
            LinkEmu(hospital_port, rate="4mbit", rtt="50ms", workdir=work) as down:
        cfg = {"peers": {"CONSULT": "CONSULT@127.0.0.1:%d" % up.port},
               "routes": [{"from_aet": "*", "to": "CONSULT",
                           "transfer_syntax": "jpeg-ls-lossless"}]}
        with h.Node(work, "HOSPITAL", config=cfg, port=hospital_port) as hosp:
            # the consulting node is down: the first slices wait in the queue
            h.cli("send", "--aet", "MODALITY", hosp.peer, early, "-q")
            deadline = time.time() + 20
            tries = 0
            while time.time() < deadline:
                rows = hosp.query("SELECT min(attempts) FROM forward_queue")
                tries = rows[0][0] or 0
                if tries >= 1:
                    break
                time.sleep(0.2)
            c.check(hosp.count("forward_queue") == EARLY and tries >= 1,
                    "peer down: %d slices queued, retried (%d attempt(s))"
                    % (hosp.count("forward_queue"), tries))
            c.check("will retry" in hosp.log_text(), "the failed forward is logged")
            with h.Node(work, "CONSULT", port=consult_port) as cons:
                transfer(c, work, hosp, cons, up, study, rest, originals, raw_bytes)
                reading(c, hosp, cons, down, study, paths)
    c.check(up.returncode == 0 and down.returncode == 0, "the links exit cleanly")


def transfer(c, work, hosp, cons, up, study, rest, originals, raw_bytes):
    t0 = time.time()
    sender = subprocess.Popen([h.BIN, "dicom", "send", "--aet", "MODALITY", hosp.peer, rest,
                               "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_ok, first_at, first_count, done_at = False, None, None, None
    deadline = time.time() + 600
    while time.time() < deadline:
        n = cons.count()
        if n and first_at is None:
            sop, rel = cons.query("SELECT sop_uid, path FROM dicom_instances ORDER BY"
                                  " received_at LIMIT 1")[0]
            first_ok = decoded_equal(os.path.join(cons.store, rel), originals[sop], work)
            first_at, first_count = time.time() - t0, cons.count()
        if n >= N:
            done_at = time.time() - t0
            break
        time.sleep(0.1)
    out, err = sender.communicate(timeout=120)
    c.check(sender.returncode == 0, "the modality stored %d slices at HOSPITAL: %s"
            % (N - EARLY, out.strip() or err[-300:]))
    c.check(done_at is not None, "all %d slices arrived at CONSULT (%d)" % (N, cons.count()))
    c.check(first_ok and first_count is not None and first_count < N,
            "the first slice was indexed and decoded bit-exact at CONSULT after %.1f s, while "
            "%d of %d had arrived" % (first_at or -1, first_count or -1, N))
    rows = cons.query("SELECT sop_uid, transfer_syntax, path FROM dicom_instances"
                      " WHERE study_uid = ? ORDER BY instance_number", (study,))
    c.check(len(rows) == N and all(r[1] == h.JLS_LOSSLESS for r in rows),
            "every slice is stored JPEG-LS lossless at CONSULT")
    for k in (0, N // 2, N - 1):
        if k < len(rows):
            c.check(decoded_equal(os.path.join(cons.store, rows[k][2]), originals[rows[k][0]],
                                  work), "slice %d decodes to the original pixels" % (k + 1))
    deadline = time.time() + 30
    while hosp.count("forward_queue") and time.time() < deadline:
        time.sleep(0.2)
    c.check(hosp.count("forward_queue") == 0, "HOSPITAL's forward queue drained")
    stats = up.stats()
    sent = stats["up"]["out_bytes"]
    print("two nodes: %d slices (%.1f MB uncompressed) over 4 Mbit/s / 50 ms: all at CONSULT "
          "after %.1f s; first decodable after %.1f s; %.2f MB on the link (%.1f%% of "
          "uncompressed, %.2fx smaller)" % (N, raw_bytes / 1e6, done_at or -1, first_at or -1,
                                             sent / 1e6, 100.0 * sent / raw_bytes,
                                             raw_bytes / max(sent, 1)), flush=True)
    c.check(sent < 0.6 * raw_bytes, "JPEG-LS on the link: %.1f MB < 60%% of %.1f MB"
            % (sent / 1e6, raw_bytes / 1e6))


def reading(c, hosp, cons, down, study, paths):
    key = pydicom.dcmread(paths[N // 2], stop_before_pixels=True).SOPInstanceUID
    text = "CT head: no haemorrhage, no mass effect. Key image at mid-series."
    r = h.cli("report", "--aet", "CONSULT", "--to", cons.peer, "--to",
              "HOSPITAL@127.0.0.1:%d" % down.port, "--db", cons.db, "--store", cons.store,
              "--study", study, "--text", text, "--author", "Reader^Remote", "--key", key)
    c.check(r.stdout.count("stored at") == 2, "the reading was stored at both nodes: "
            + r.stdout.strip())
    for node in (hosp, cons):
        sr = node.query("SELECT path FROM dicom_instances WHERE study_uid = ? AND sop_class = ?",
                        (study, h.SR_CLASS))
        c.check(len(sr) == 1, "%s indexes one SR in the study" % node.aet)
        if sr:
            ds = pydicom.dcmread(os.path.join(node.store, sr[0][0]))
            texts = [it.TextValue for it in ds.ContentSequence if "TextValue" in it]
            c.check(texts == [text], "%s's SR carries the conclusion" % node.aet)
    time.sleep(1.5)
    c.check(hosp.count("forward_queue") == 0,
            "HOSPITAL does not send the consultant's SR back to CONSULT")


if __name__ == "__main__":
    main()
