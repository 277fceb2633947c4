"""The DICOM node against real peers on loopback: DCMTK's echoscu, storescu
(uncompressed and compressed proposals) and findscu against our SCP; our
SCU (consilium dicom send/find/move/report) against Orthanc 1.10, which
C-MOVEs a study back into our SCP; the reading (Basic Text SR) found in
Orthanc through its REST API."""
import hashlib
import re
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dimsehelp as h  # noqa: E402
import cshelp  # noqa: E402
import pydicom  # noqa: E402


def findscu(c, node, level, keys, model="-S"):
    args = ["findscu", model, "-aet", "FINDSCU", "-aec", node.aet, "-k",
            "QueryRetrieveLevel=" + level]
    for k in keys:
        args += ["-k", k]
    r = subprocess.run(args + ["127.0.0.1", str(node.port)], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    c.check(r.returncode == 0, "findscu %s %s exits 0 (%s)" % (level, keys, out[-300:]))
    return out.count("# Dicom-Data-Set"), out


def storescu(node, files, extra=()):
    return subprocess.run(["storescu", "-aet", "MODALITY", "-aec", node.aet] + list(extra) +
                          ["127.0.0.1", str(node.port)] + files,
                          capture_output=True, text=True, timeout=120)


def main():
    h.run_test(run, "dimse-interop-")


def run(c, work):
    node_port = h.free_port()
    with cshelp.Orthanc(work, aet="ORTHANC",
                        modalities={"CONSILIUM": ("CONSILIUM", "127.0.0.1", node_port)}) as orth:
        pacs = "ORTHANC@127.0.0.1:%d" % orth.dicom_port
        cfg = {"peers": {"PACS": pacs},
               "routes": [{"from_aet": "CONSULT", "to": "PACS", "transfer_syntax": "keep"}]}
        with h.Node(work, "CONSILIUM", config=cfg, port=node_port) as node:
            scp_side(c, node, work)
            scu_side(c, node, orth, pacs, work)


def scp_side(c, node, work):
    r = subprocess.run(["echoscu", "-aec", node.aet, "127.0.0.1", str(node.port)],
                       capture_output=True, text=True, timeout=30)
    c.check(r.returncode == 0, "echoscu gets C-ECHO success")

    unc = [os.path.join(h.DICOM, f) for f in ("693_UNCR.dcm", "CT_small.dcm", "MR2_UNCR.dcm")]
    r = storescu(node, unc)
    c.check(r.returncode == 0, "storescu stores 3 uncompressed files (%s)" % r.stderr[-300:])
    # compressed proposals: the sender's syntax is kept, bytes and all
    comp = [("-xs", "RG2_JPLL.dcm", "1.2.840.10008.1.2.4.70"),
            ("-xt", "emri_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
            ("-xv", "693_J2KR.dcm", "1.2.840.10008.1.2.4.90"),
            ("-xr", "emri_small_RLE.dcm", "1.2.840.10008.1.2.5")]
    for opt, f, ts in comp:
        p = os.path.join(h.DICOM, f)
        r = storescu(node, [p], [opt])
        c.check(r.returncode == 0, "storescu %s %s accepted (%s)" % (opt, f, r.stderr[-300:]))
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        row = node.query("SELECT transfer_syntax, path, sha256, size FROM dicom_instances"
                         " WHERE sop_uid = ?", (ds.SOPInstanceUID,))
        c.check(row and row[0][0] == ts, "%s stored in its own syntax %s (%s)" % (f, ts, row))
        if row:
            stored = os.path.join(node.store, row[0][1])
            got = pydicom.dcmread(stored)
            orig = pydicom.dcmread(p)
            c.check(got.PixelData == orig.PixelData, "%s: pixel bytes kept as sent" % f)
            c.check(hashlib.sha256(open(stored, "rb").read()).hexdigest() == row[0][2]
                    and os.path.getsize(stored) == row[0][3], "%s: sha256 and size indexed" % f)
    sent = unc + [os.path.join(h.DICOM, f) for _, f, _ in comp]
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sent}
    n = node.count()
    c.check(n == len(uids), "%d instances indexed (%d distinct SOP instances sent)" % (n, len(uids)))
    c.check(len(node.store_files()) == n, "one file per indexed instance in the store")
    c.check(node.tmp_files() == [], "nothing left in the temp dir")
    # 693_J2KR is 693_UNCR's instance in another syntax: it replaced it
    c.check("replaced the stored instance" in node.log_text(),
            "a different instance with the same SOP UID replaces the stored one (logged)")
    # the same instance again, same bytes: acknowledged, not stored twice
    j2k = os.path.join(h.DICOM, "693_J2KR.dcm")
    before = node.query("SELECT received_at FROM dicom_instances WHERE sop_uid = ?",
                        (pydicom.dcmread(j2k, stop_before_pixels=True).SOPInstanceUID,))
    r = storescu(node, [j2k], ["-xv"])
    after = node.query("SELECT received_at FROM dicom_instances WHERE sop_uid = ?",
                       (pydicom.dcmread(j2k, stop_before_pixels=True).SOPInstanceUID,))
    c.check(r.returncode == 0 and node.count() == n and before == after,
            "an identical duplicate is acknowledged, not re-stored")
    audits = node.query("SELECT count(*) FROM audit WHERE code = '110104'")[0][0]
    c.check(audits >= 7, "each stored instance left an ATNA 110104 record (%d)" % audits)

    ct = pydicom.dcmread(unc[0], stop_before_pixels=True)
    # findscu: study level by patient ID, wildcard, date range; series; image
    cnt, out = findscu(c, node, "STUDY", ["PatientID=" + ct.PatientID, "StudyInstanceUID",
                                          "PatientName", "NumberOfStudyRelatedInstances"])
    c.check(cnt == 1 and ct.StudyInstanceUID in out, "findscu STUDY by PatientID: 1 match")
    c.check(re.search(r"NumberOfStudyRelatedInstances", out) and re.search(r"IS \[1 ?\]", out),
            "the study's instance count is answered")
    cnt, out = findscu(c, node, "STUDY", ["PatientID=" + ct.PatientID[:4] + "*",
                                          "StudyInstanceUID"])
    c.check(cnt >= 1 and ct.StudyInstanceUID in out, "findscu wildcard PatientID")
    cnt_all, _ = findscu(c, node, "STUDY", ["StudyInstanceUID"])
    c.check(cnt_all >= 5, "findscu universal match lists every study (%d)" % cnt_all)
    dates = sorted(d for (d,) in node.query("SELECT study_date FROM dicom_studies") if d)
    if dates:
        cnt, _ = findscu(c, node, "STUDY", ["StudyDate=%s-%s" % (dates[0], dates[0]),
                                            "StudyInstanceUID"])
        want = sum(1 for d in dates if d == dates[0])
        c.check(cnt == want, "findscu date range %s-%s: %d (want %d)" % (dates[0], dates[0], cnt,
                                                                           want))
        cnt, _ = findscu(c, node, "STUDY", ["StudyDate=-18000101", "StudyInstanceUID"])
        c.check(cnt == 0, "findscu open date range before 1800: none")
    two = [u for (u,) in node.query("SELECT study_uid FROM dicom_studies ORDER BY study_uid")][:2]
    cnt, out = findscu(c, node, "STUDY", ["StudyInstanceUID=" + "\\".join(two)])
    c.check(cnt == 2 and all(u in out for u in two), "findscu UID list matching: 2 studies")
    cnt, out = findscu(c, node, "STUDY", ["PatientName=*", "ModalitiesInStudy=MR",
                                          "StudyInstanceUID"])
    want = node.query("SELECT count(DISTINCT study_uid) FROM dicom_series WHERE modality='MR'")
    c.check(cnt == want[0][0] and cnt >= 1, "findscu ModalitiesInStudy=MR: %d" % cnt)
    cnt, out = findscu(c, node, "SERIES", ["StudyInstanceUID=" + ct.StudyInstanceUID,
                                           "SeriesInstanceUID", "Modality"])
    c.check(cnt == 1 and ct.SeriesInstanceUID in out and "[CT]" in out,
            "findscu SERIES level in the study")
    cnt, out = findscu(c, node, "IMAGE", ["StudyInstanceUID=" + ct.StudyInstanceUID,
                                          "SeriesInstanceUID=" + ct.SeriesInstanceUID,
                                          "SOPInstanceUID"])
    c.check(cnt == 1 and ct.SOPInstanceUID in out, "findscu IMAGE level")
    npat = node.query("SELECT count(DISTINCT patient_id) FROM dicom_studies")[0][0]
    cnt, out = findscu(c, node, "PATIENT", ["PatientID", "NumberOfPatientRelatedStudies"],
                       model="-P")
    c.check(cnt == npat and ct.PatientID in out,
            "findscu PATIENT level (Patient Root): %d patients (want %d)" % (cnt, npat))
    q = node.query("SELECT count(*) FROM audit WHERE code = '110112'")[0][0]
    c.check(q >= 7, "each query left an ATNA 110112 record (%d)" % q)


def scu_side(c, node, orth, pacs, work):
    # C-STORE SCU into Orthanc (a generated 5-slice study)
    study, series, paths = h.make_ct_series(os.path.join(work, "gen"), 5, seed=3)
    r = h.cli("send", pacs, os.path.join(work, "gen"))
    c.check("sent 5 of 5" in r.stdout, "consilium dicom send stores 5 files in Orthanc: "
            + r.stdout.strip())
    found = orth.rest("POST", "/tools/find", json.dumps(
        {"Level": "Instance", "Query": {"StudyInstanceUID": study}}).encode())
    c.check(len(found) == 5, "Orthanc holds the 5 instances (%d)" % len(found))
    # C-FIND SCU against Orthanc: study and series level
    r = h.cli("find", pacs, "-k", "StudyInstanceUID=" + study, "-k", "PatientID")
    m = h.find_json(r)
    c.check(len(m) == 1 and m[0].get("PatientID") == "CS-DIMSE-3",
            "consilium dicom find (study) at Orthanc: %s" % m)
    r = h.cli("find", pacs, "--level", "series", "-k", "StudyInstanceUID=" + study,
              "-k", "SeriesInstanceUID", "-k", "Modality")
    m = h.find_json(r)
    c.check(len(m) == 1 and m[0].get("SeriesInstanceUID") == series,
            "consilium dicom find (series) at Orthanc: %s" % m)
    # C-MOVE SCU: Orthanc sends the study back to our SCP
    before = node.count()
    r = h.cli("move", pacs, "--dest", node.aet, "-k", "StudyInstanceUID=" + study)
    c.check("5 completed, 0 failed" in r.stdout, "C-MOVE from Orthanc: " + r.stdout.strip())
    got = node.query("SELECT count(*) FROM dicom_instances WHERE study_uid = ?", (study,))[0][0]
    c.check(got == 5 and node.count() == before + 5, "the 5 moved instances are in our index")
    # our own find SCU against our own SCP
    r = h.cli("find", node.peer, "--level", "image", "-k", "StudyInstanceUID=" + study)
    c.check(len(h.find_json(r)) == 5, "consilium dicom find at our node: 5 images")
    # the reading: a Basic Text SR stored at our node; its route (from
    # CONSULT) forwards it to the PACS as stored
    key = pydicom.dcmread(paths[2], stop_before_pixels=True).SOPInstanceUID
    text = "No acute intracranial abnormality. Key image: slice 3."
    r = h.cli("report", "--aet", "CONSULT", "--to", node.peer, "--db", node.db, "--store",
              node.store, "--study", study, "--text", text, "--author", "Consultant^Ada",
              "--key", key)
    c.check("stored at" in r.stdout, "consilium dicom report: " + r.stdout.strip())
    sr = node.query("SELECT sop_uid, path FROM dicom_instances WHERE study_uid = ? AND"
                    " sop_class = ?", (study, h.SR_CLASS))
    c.check(len(sr) == 1, "the SR is indexed in the study at our node")
    deadline, hits = time.time() + 30, []
    while time.time() < deadline:
        hits = orth.rest("POST", "/tools/find", json.dumps(
            {"Level": "Instance", "Query": {"StudyInstanceUID": study, "Modality": "SR"}}).encode())
        if hits:
            break
        time.sleep(0.3)
    c.check(len(hits) == 1, "the SR was forwarded and Orthanc finds it (/tools/find Modality=SR)")
    if hits:
        raw = orth.rest("GET", "/instances/%s/file" % hits[0])
        p = os.path.join(work, "sr.dcm")
        with open(p, "wb") as f:
            f.write(raw)
        ds = pydicom.dcmread(p)
        texts = [it.TextValue for it in ds.ContentSequence if "TextValue" in it]
        refs = [it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for it in ds.ContentSequence if it.ValueType == "IMAGE"]
        c.check(texts == [text], "Orthanc's SR carries the conclusion text")
        c.check(refs == [key], "and the key image reference")
        c.check(ds.SOPClassUID == h.SR_CLASS and ds.StudyInstanceUID == study and
                ds.PatientID == "CS-DIMSE-3", "a Basic Text SR in the study, same patient")
    deadline = time.time() + 20
    while node.count("forward_queue") and time.time() < deadline:
        time.sleep(0.2)
    c.check(node.count("forward_queue") == 0, "the forward queue drained")


if __name__ == "__main__":
    main()
