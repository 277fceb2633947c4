"""The forward queue is persistent: instances a node could not forward
(the peer is down) stay queued in its database across a restart of the
node and go, once, when the peer is up; each delivery leaves an ATNA
110104 record at the sender."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dimsehelp as h  # noqa: E402


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def main():
    h.run_test(run, "dimse-queue-")


def run(c, work):
    n = 4
    study, _, _ = h.make_ct_series(os.path.join(work, "ct"), n, src="CT_small.dcm", seed=21)
    consult_port, hosp_port = h.free_port(), h.free_port()
    cfg = {"peers": {"CONSULT": "CONSULT@127.0.0.1:%d" % consult_port},
           "routes": [{"from_aet": "*", "to": "CONSULT", "transfer_syntax": "jpeg-ls-lossless"}]}
    with h.Node(work, "HOSPITAL", config=cfg, port=hosp_port) as hosp:
        h.cli("send", hosp.peer, os.path.join(work, "ct"), "-q")
        c.check(wait_for(lambda: hosp.query("SELECT min(attempts) FROM forward_queue")[0][0], 15),
                "the peer is down: the forward was tried and queued")
    rows = hosp.query("SELECT count(*), max(last_error) FROM forward_queue")[0]
    c.check(rows[0] == n and rows[1], "after a clean stop, %d rows wait in the queue (%s)"
            % (rows[0], (rows[1] or "")[:80]))
    with h.Node(work, "CONSULT", port=consult_port) as cons:
        with h.Node(work, "HOSPITAL", config=cfg, port=hosp_port) as hosp2:
            c.check(wait_for(lambda: cons.count() == n, 90),
                    "after the restart the queued instances reach the peer (%d)" % cons.count())
            c.check(wait_for(lambda: hosp2.count("forward_queue") == 0, 30),
                    "and leave the queue")
            sent = hosp2.query("SELECT count(*) FROM audit WHERE code = '110104' AND"
                               " event = 'DICOM instance forwarded'")[0][0]
            c.check(sent == n, "one 110104 'forwarded' record each (%d)" % sent)
            ts = {r[0] for r in cons.query("SELECT transfer_syntax FROM dicom_instances")}
            c.check(ts == {h.JLS_LOSSLESS}, "they arrive JPEG-LS lossless (%s)" % ts)
            got = cons.query("SELECT count(*) FROM dicom_instances WHERE study_uid = ?",
                             (study,))[0][0]
            c.check(got == n, "once each, in the study (%d)" % got)


if __name__ == "__main__":
    main()
