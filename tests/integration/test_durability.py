"""Nothing lost: kill -9 the server during a burst of 1,000 annotation writes
from 4 clients, restart it on the same database, and check that

- every write that was acknowledged (201) is there, byte for byte as the
  acknowledgement said;
- nothing is half-there: every stored annotation is whole, has exactly one
  op-log entry (its create) and one audit row, and was one of the writes
  sent (a write that committed but whose answer the kill cut off may be
  there, whole, or absent).

Three rounds, killed at different points. Run with Debian's /usr/bin/python3.
"""
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from cshelp import BIN, TESTDATA, WORK, Checker, Server  # noqa: E402

SLIDE = os.path.join(TESTDATA, "wsi", "CMU-1-Small-Region.svs")
SID = "CMU-1-Small-Region"
TOKEN = "durability-token"
c = Checker()


def start(db):
    pf = os.path.join(WORK, "dur-port-%d" % os.getpid())
    if os.path.exists(pf):
        os.unlink(pf)
    log = open(os.path.join(WORK, "dur-server-%d.log" % os.getpid()), "ab")
    p = subprocess.Popen([BIN, "serve", "--port", "0", "--port-file", pf, "--token", TOKEN,
                          "--db", db, SLIDE], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(pf) and open(pf).read().strip():
            port = int(open(pf).read())
            os.unlink(pf)
            return p, port
        if p.poll() is not None:
            raise RuntimeError("server exited with %d" % p.returncode)
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def burst(port, round_, kill_after, proc):
    """4 clients x 250 writes; SIGKILL once kill_after writes are acknowledged."""
    acked = {}
    sent = set()
    lock = threading.Lock()
    killed = threading.Event()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(250):
            label = "r%d-c%d-%d" % (round_, k, i)
            body = json.dumps({"type": "polygon", "label": label, "class": "Tumor",
                               "pts": [[i, k], [i + 10, k], [i + 10, k + 10 + i % 7]]})
            with lock:
                sent.add(label)
            try:
                conn.request("POST", "/slides/%s/annotations" % SID, body,
                             {"Authorization": "Bearer " + TOKEN,
                              "Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                return  # the server is gone
            if r.status != 201:
                continue
            with lock:
                acked[label] = json.loads(data)
                if len(acked) >= kill_after and not killed.is_set():
                    killed.set()
                    proc.send_signal(signal.SIGKILL)
        conn.close()

    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    proc.wait()
    return acked, sent, killed.is_set()


def main():
    db = os.path.join(WORK, "durability-%d.db" % os.getpid())
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(db + ext):
            os.unlink(db + ext)
    all_acked, all_sent = {}, set()
    for round_, kill_after in enumerate((137, 420, 777)):
        proc, port = start(db)
        acked, sent, killed = burst(port, round_, kill_after, proc)
        c.check(killed and proc.returncode == -signal.SIGKILL,
                "round %d: killed -9 mid-burst after %d acknowledged writes"
                % (round_, len(acked)))
        all_acked.update(acked)
        all_sent |= sent

        # Restart on the same database and look.
        with Server([SLIDE], ["--db", db], token=TOKEN) as s:
            listing = s.json("/slides/%s/annotations" % SID)
        stored = {a["label"]: a for a in listing["annotations"]}
        missing = [k for k in all_acked if k not in stored]
        c.check(not missing, "round %d: every acknowledged write is there (%d acked, %d "
                "missing)" % (round_, len(all_acked), len(missing)))
        changed = [k for k in all_acked if k in stored and stored[k] != all_acked[k]]
        c.check(not changed, "round %d: stored exactly as acknowledged (%d differ)"
                % (round_, len(changed)))
        strangers = [k for k in stored if k not in all_sent]
        c.check(not strangers, "round %d: nothing stored that was not sent" % round_)
        extra = len(stored) - len(all_acked)
        print("round %d: %d acknowledged, %d stored (%d committed with the answer cut off)"
              % (round_, len(all_acked), len(stored), extra))

        con = sqlite3.connect(db)
        rows = con.execute("SELECT id, rev, deleted, body FROM annotations").fetchall()
        whole = all(json.loads(b)["id"] == i and r == 1 and d == 0 and
                    json.loads(b)["measure"]["area_px2"] > 0 for i, r, d, b in rows)
        c.check(whole and len(rows) == len(stored), "round %d: every row is whole" % round_)
        ev = con.execute("SELECT aid, count(*), min(body) FROM annotation_events "
                         "WHERE event = 'annotation.created' GROUP BY aid").fetchall()
        evmap = {aid: (n, body) for aid, n, body in ev}
        one_each = all(evmap.get(i, (0, None))[0] == 1 and json.loads(evmap[i][1]) ==
                       json.loads(b) for i, r, d, b in rows) and len(evmap) == len(rows)
        c.check(one_each, "round %d: one op-log entry per annotation, same body" % round_)
        audits = con.execute("SELECT count(*) FROM audit WHERE code = '110110'").fetchone()[0]
        c.check(audits == len(rows), "round %d: one audit row per write (%d / %d)"
                % (round_, audits, len(rows)))
        con.close()
    c.finish()


if __name__ == "__main__":
    main()
