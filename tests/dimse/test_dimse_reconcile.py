"""The stored files are the truth, the index is derived from them: the node
commits its index rows unsynced (synchronous=NORMAL) after the file is
durable, so a power cut may lose the last commits. At start it walks the
store and indexes every file without a row: here rows are deleted while the
node is down, a stray unparseable file and a misplaced one are dropped into
the store, and after the restart the instances are indexed again, C-FIND and
QIDO-RS find them, a forward is queued for each ("*" route) and an ATNA
110104 "re-indexed" record is written; the stray files are skipped. A new
instance is renamed into its place before its fsync, so a power cut there
leaves a cut or torn file under its own name: it is not indexed (it does not
parse, or no longer matches the SHA-256 recorded with it in an extended
attribute), and the sender's retry stores it whole."""
import hashlib
import json
import os
import shutil
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dimsehelp as h  # noqa: E402


def main():
    h.run_test(run, "dimse-reconcile-")


def run(c, work):
    n = 5
    study, series, _ = h.make_ct_series(os.path.join(work, "ct"), n, src="CT_small.dcm", seed=33)
    pid = "CS-DIMSE-33"
    down = h.free_port()  # nobody listens: forwards stay queued
    cfg = {"peers": {"CONSULT": "CONSULT@127.0.0.1:%d" % down},
           "routes": [{"from_aet": "*", "to": "CONSULT"}]}
    with h.Node(work, "HOSPITAL", config=cfg) as node:
        h.cli("send", node.peer, os.path.join(work, "ct"), "-q")
        c.check(node.count() == n, "%d instances indexed (%d)" % (n, node.count()))
    files = node.store_files()
    c.check(len(files) == n, "and stored (%d files)" % len(files))
    tags = []
    for p in files:
        with open(p, "rb") as f:
            tags.append(os.getxattr(p, "user.consilium.sha256").decode()
                        == hashlib.sha256(f.read()).hexdigest())
    c.check(tags == [True] * n, "each carries its SHA-256 (user.consilium.sha256): %s" % tags)

    # A power cut after the acknowledgements lost the index commits: the
    # study's rows and their forward-queue rows are gone, the files are not.
    con = sqlite3.connect(node.db, timeout=10)
    with con:
        con.execute("DELETE FROM forward_queue")
        con.execute("DELETE FROM dicom_instances WHERE study_uid = ?", (study,))
        con.execute("DELETE FROM dicom_series WHERE study_uid = ?", (study,))
        con.execute("DELETE FROM dicom_studies WHERE study_uid = ?", (study,))
    con.close()
    c.check(node.count() == 0, "rows deleted while the node is down")
    sdir = os.path.join(node.store, study, series)
    with open(os.path.join(sdir, "1.2.3.4.5.dcm"), "wb") as f:
        f.write(b"not a DICOM file at all" * 10)  # unparseable: skipped, logged
    shutil.copy(files[0], os.path.join(sdir, "1.2.3.99.dcm"))  # its UIDs say elsewhere
    with open(os.path.join(node.store, ".tmp", "partial"), "wb") as f:
        f.write(b"half a reception")
    # What a power cut before the in-place fsync leaves: the first pages of
    # a new instance under its final name (the whole one is kept to resend).
    import pydicom
    ds = pydicom.dcmread(files[1])
    cut_uid = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = cut_uid
    ds.file_meta.MediaStorageSOPInstanceUID = cut_uid
    whole = os.path.join(work, "whole", cut_uid + ".dcm")
    os.makedirs(os.path.dirname(whole))
    ds.save_as(whole, write_like_original=True)
    with open(whole, "rb") as f:
        data = f.read()
    with open(os.path.join(sdir, cut_uid + ".dcm"), "wb") as f:
        f.write(data[:8192])
    # A torn one: whole length, UIDs in place, but its last pages never
    # reached the disk; its recorded SHA-256 gives it away.
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = torn_uid = \
        pydicom.uid.generate_uid()
    torn = os.path.join(work, "whole", torn_uid + ".dcm")
    ds.save_as(torn, write_like_original=True)
    with open(torn, "rb") as f:
        tdata = f.read()
    tpath = os.path.join(sdir, torn_uid + ".dcm")
    with open(tpath, "wb") as f:
        f.write(tdata[:-4096] + bytes(4096))
    os.setxattr(tpath, "user.consilium.sha256", hashlib.sha256(tdata).hexdigest().encode())
    audits0 = node.query("SELECT count(*) FROM audit WHERE event LIKE '%re-indexed%'")[0][0]

    with h.Node(work, "HOSPITAL", config=cfg) as node2:
        got = node2.query("SELECT count(*) FROM dicom_instances WHERE study_uid = ?",
                          (study,))[0][0]
        c.check(got == n, "after the restart the %d instances are indexed again (%d)" % (n, got))
        c.check(node2.count() == n, "and only they: the stray files are not (%d rows)"
                % node2.count())
        row = node2.query("SELECT patient_id, accession FROM dicom_studies WHERE study_uid = ?",
                          (study,))
        c.check(row == [(pid, "ACC33")], "the study row is rebuilt from the files (%s)" % row)
        sr = node2.query("SELECT series_number, modality FROM dicom_series WHERE series_uid = ?",
                         (series,))
        c.check(sr == [(7, "CT")], "the series row too (%s)" % sr)
        inst = node2.query("SELECT count(*) FROM dicom_instances WHERE study_uid = ? AND"
                           " length(sha256) = 64 AND size > 0 AND rows > 0", (study,))[0][0]
        c.check(inst == n, "with size, SHA-256 and dimensions (%d)" % inst)
        fwd = node2.count("forward_queue")
        c.check(fwd == n, "a forward is queued for each re-indexed instance (%d)" % fwd)
        aud = node2.query("SELECT count(*) FROM audit WHERE code = '110104' AND"
                          " event LIKE '%re-indexed%'")[0][0] - audits0
        c.check(aud == n, "one ATNA 110104 're-indexed' record each (%d)" % aud)
        log = node2.log_text()
        c.check("1.2.3.4.5.dcm skipped" in log, "the unparseable file is skipped and logged")
        c.check("1.2.3.99.dcm skipped" in log, "the misplaced file is skipped and logged")
        c.check(node2.query("SELECT count(*) FROM dicom_instances WHERE sop_uid = ?",
                            (cut_uid,))[0][0] == 0, "the cut file is not indexed")
        c.check(cut_uid + ".dcm skipped" in log and "declares" in log,
                "and the log says why (%s)" % [ln for ln in log.splitlines() if cut_uid in ln])
        c.check("reconcile: %d of" % n in log, "the start logs how many were re-indexed")
        c.check(node2.tmp_files() == [], "the temporary folder is emptied")

        r = h.cli("find", node2.peer, "-k", "PatientID=" + pid, "-k", "StudyInstanceUID",
                  "-k", "NumberOfStudyRelatedInstances")
        m = h.find_json(r)
        c.check(len(m) == 1 and json.dumps(m[0]).find(study) >= 0,
                "C-FIND finds the study (%s)" % r.stdout[-300:])
        r = h.cli("find", node2.peer, "--level", "image", "-k", "StudyInstanceUID=" + study,
                  "-k", "SOPInstanceUID")
        c.check(len(h.find_json(r)) == n, "C-FIND IMAGE lists the %d instances (%d)"
                % (n, len(h.find_json(r))))
        st, body = node2.http_get("/dicomweb/studies?PatientID=" + pid)
        ans = json.loads(body) if st == 200 else []
        c.check(st == 200 and len(ans) == 1 and study in body.decode(),
                "QIDO-RS lists the study (%d, %s)" % (st, body[:200]))
        st, body = node2.http_get("/dicomweb/studies/%s/series/%s/instances" % (study, series))
        c.check(st == 200 and len(json.loads(body)) == n,
                "QIDO-RS lists its %d instances (%d)" % (n, len(json.loads(body)) if st == 200
                                                           else -1))
        c.check(node2.query("SELECT count(*) FROM dicom_instances WHERE sop_uid = ?",
                            (torn_uid,))[0][0] == 0 and torn_uid + ".dcm skipped" in log
                and "no longer matches the SHA-256" in log,
                "a torn file whose content differs from its recorded SHA-256 is refused")
        h.cli("send", node2.peer, whole, "-q")
        got = node2.query("SELECT sha256 FROM dicom_instances WHERE sop_uid = ?", (cut_uid,))
        with open(os.path.join(sdir, cut_uid + ".dcm"), "rb") as f:
            stored = f.read()
        c.check(got == [(hashlib.sha256(data).hexdigest(),)] and stored == data,
                "the sender's retry stores it whole, in its place (%s)" % got)

    # A second start has nothing to do.
    with h.Node(work, "HOSPITAL", config=cfg) as node3:
        c.check(node3.count() == n + 1, "the index is unchanged (%d)" % node3.count())
        st, _ = node3.http_get("/dicomweb/studies")
        c.check(st == 200, "and served (%d)" % st)
        c.check(node3.log_text().count("had no index row") == 1,
                "the next start re-indexes nothing")

if __name__ == "__main__":
    main()
