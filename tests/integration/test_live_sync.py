"""Live annotation sync between two headless clients over /ws.

- What client A creates, moves or deletes reaches client B; the p95 delay
  (A sends the command -> B has the event) must stay under 100 ms on
  loopback.
- Two concurrent edits of one annotation against the same revision: one
  wins, the other gets a conflict carrying the winner's version.
- A client that drops and reconnects with `since` catches up exactly: every
  op-log event once, in order, none missing, while writes keep coming; its
  state then equals the server's.
Run with Debian's /usr/bin/python3.
"""
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import wsclient  # noqa: E402
from cshelp import TESTDATA, WORK, Checker, Server  # noqa: E402

SLIDE = os.path.join(TESTDATA, "wsi", "CMU-1-Small-Region.svs")
SID = "CMU-1-Small-Region"
ALICE = "alice:pathologist:alice-token-0123456789"
BOB = "bob:pathologist:bob-token-0123456789abc"

c = Checker()


def connect(srv, token):
    cl = wsclient.connect("ws://127.0.0.1:%d/ws" % srv.port, token)
    hello = cl.recv_json()
    assert hello and hello["type"] == "hello", hello
    return cl, hello


def subscribe(cl, since=None):
    msg = {"op": "subscribe", "slides": [SID], "req": "sub"}
    if since is not None:
        msg["since"] = since
    cl.send_json(msg)


class Mirror:
    """A client's view: applies events, checks seq order and uniqueness."""

    def __init__(self):
        self.state = {}
        self.seqs = []

    def apply(self, m):
        if m.get("type") != "event" or not m.get("seq"):
            return
        self.seqs.append(m["seq"])
        d = m["data"]
        if m["event"] == "annotation.deleted":
            self.state.pop(d["id"], None)
        else:
            self.state[d["id"]] = d


def rest_list(srv):
    req = urllib.request.Request(srv.base + "/slides/%s/annotations" % SID,
                                 headers={"Authorization": "Bearer " + srv.token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def latency(srv):
    a, _ = connect(srv, "alice-token-0123456789")
    b, _ = connect(srv, "bob-token-0123456789abc")
    subscribe(a)
    subscribe(b)
    time.sleep(0.2)
    delays = {"created": [], "updated": [], "deleted": []}
    seen_by_b = Mirror()
    for i in range(60):
        t0 = time.perf_counter()
        a.send_json({"op": "annot.create", "req": "c%d" % i, "slide": SID,
                     "annotation": {"type": "rectangle", "pts": [[i, i], [i + 50, i + 40]]}})
        ev = b.wait(lambda m: m.get("event") == "annotation.created", 5)
        if not c.check(ev is not None, "B sees A's create %d" % i):
            break
        delays["created"].append(time.perf_counter() - t0)
        seen_by_b.apply(ev)
        aid, rev = ev["data"]["id"], ev["data"]["rev"]
        c.check(ev["origin"] == "alice" and ev["data"]["author"] == "alice",
                "the event names its author") if i == 0 else None
        a.wait(lambda m: m.get("req") == "c%d" % i, 5)
        t0 = time.perf_counter()
        a.send_json({"op": "annot.update", "req": "u%d" % i, "id": aid, "rev": rev,
                     "patch": {"pts": [[i + 5, i + 5], [i + 55, i + 45]]}})
        ev = b.wait(lambda m: m.get("event") == "annotation.updated", 5)
        if not c.check(ev is not None and ev["data"]["pts"][0] == [i + 5.0, i + 5.0],
                       "B sees A's move %d" % i):
            break
        delays["updated"].append(time.perf_counter() - t0)
        seen_by_b.apply(ev)
        a.wait(lambda m: m.get("req") == "u%d" % i, 5)
        if i % 2 == 0:
            t0 = time.perf_counter()
            a.send_json({"op": "annot.delete", "req": "d%d" % i, "id": aid,
                         "rev": ev["data"]["rev"]})
            ev = b.wait(lambda m: m.get("event") == "annotation.deleted", 5)
            if not c.check(ev is not None and ev["data"]["id"] == aid,
                           "B sees A's delete %d" % i):
                break
            delays["deleted"].append(time.perf_counter() - t0)
            seen_by_b.apply(ev)
            a.wait(lambda m: m.get("req") == "d%d" % i, 5)
    allv = sorted(sum(delays.values(), []))
    p95 = allv[int(0.95 * (len(allv) - 1))] * 1000 if allv else 1e9
    p50 = allv[len(allv) // 2] * 1000 if allv else 1e9
    print("live sync: %d ops, p50 %.2f ms, p95 %.2f ms, max %.2f ms"
          % (len(allv), p50, p95, allv[-1] * 1000 if allv else 0))
    c.check(len(allv) == 150 and p95 < 100, "p95 A->B under 100 ms (%.2f ms)" % p95)
    rest = {x["id"]: x for x in rest_list(srv)["annotations"]}
    c.check(seen_by_b.state == rest, "B's state equals the server's")
    a.close()
    b.close()


def conflict(srv):
    a, _ = connect(srv, "alice-token-0123456789")
    b, _ = connect(srv, "bob-token-0123456789abc")
    subscribe(a)
    subscribe(b)
    time.sleep(0.2)
    a.send_json({"op": "annot.create", "req": "x", "slide": SID,
                 "annotation": {"type": "point", "pts": [[5, 5]], "label": "shared"}})
    made = a.wait(lambda m: m.get("req") == "x", 5)["data"]
    b.wait(lambda m: m.get("event") == "annotation.created", 5)
    wins = 0
    for k in range(10):
        cur = rest_list(srv)
        rev = [x for x in cur["annotations"] if x["id"] == made["id"]][0]["rev"]
        go = threading.Barrier(2)
        out = {}

        def edit(cl, who):
            go.wait()
            cl.send_json({"op": "annot.update", "req": "e%s%d" % (who, k), "id": made["id"],
                          "rev": rev, "patch": {"label": "%s-%d" % (who, k)}})
            out[who] = cl.wait(lambda m: m.get("req") == "e%s%d" % (who, k), 5)
        ts = [threading.Thread(target=edit, args=(a, "a")),
              threading.Thread(target=edit, args=(b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        oks = [w for w in "ab" if out[w] and out[w]["ok"]]
        bad = [w for w in "ab" if out[w] and not out[w]["ok"]]
        if not c.check(len(oks) == 1 and len(bad) == 1, "round %d: one wins, one loses (%s)"
                       % (k, out)):
            continue
        win, lose = out[oks[0]]["data"], out[bad[0]]
        c.check(lose["error"] == "conflict" and lose["current"] == win,
                "round %d: the loser's conflict carries the winner's version" % k)
        c.check(win["label"] == "%s-%d" % (oks[0], k) and win["rev"] == rev + 1,
                "round %d: the winner's edit is rev %d" % (k, rev + 1))
        loser = a if bad[0] == "a" else b
        ev = loser.wait(lambda m: m.get("event") == "annotation.conflict", 5)
        c.check(ev is not None and ev["data"]["current"] == win,
                "round %d: the loser gets annotation.conflict with the current version" % k)
        wins += 1
        time.sleep(0.05)
    c.check(wins == 10, "ten concurrent-edit rounds resolved")
    a.close()
    b.close()


def reconnect(srv):
    """B drops and reconnects five times while A writes without pause."""
    a, _ = connect(srv, "alice-token-0123456789")
    subscribe(a)
    stop = threading.Event()
    acked = []

    def writer():
        i = 0
        while not stop.is_set():
            a.send_json({"op": "annot.create", "req": "w%d" % i, "slide": SID,
                         "annotation": {"type": "point", "pts": [[i, 2 * i]]}})
            r = a.wait(lambda m: m.get("req") == "w%d" % i, 5)
            if r and r["ok"]:
                acked.append(r["data"]["id"])
                if i % 3 == 0:
                    a.send_json({"op": "annot.delete", "req": "wd%d" % i,
                                 "id": r["data"]["id"], "rev": 1})
                    a.wait(lambda m: m.get("req") == "wd%d" % i, 5)
            i += 1

    start = rest_list(srv)
    mirror = Mirror()
    mirror.state = {x["id"]: x for x in start["annotations"]}
    last = start["seq"]
    t = threading.Thread(target=writer)
    t.start()
    try:
        for round_ in range(5):
            b, hello = connect(srv, "bob-token-0123456789abc")
            subscribe(b, since=last)
            deadline = time.time() + 0.4
            while time.time() < deadline:
                m = b.recv_json(0.1)
                if m:
                    mirror.apply(m)
            if mirror.seqs:
                last = mirror.seqs[-1]
            b.close()  # drop; A keeps writing
            time.sleep(0.15)
    finally:
        stop.set()
        t.join()
    # Final catch-up after the writer stopped.
    b, hello = connect(srv, "bob-token-0123456789abc")
    subscribe(b, since=last)
    end_seq = rest_list(srv)["seq"]
    while True:
        m = b.recv_json(1.0)
        if m is None:
            break
        mirror.apply(m)
    b.close()
    a.close()
    want = list(range(start["seq"] + 1, end_seq + 1))
    c.check(mirror.seqs == want,
            "reconnecting B saw every op-log event once, in order (%d events, %d expected, "
            "dups %d)" % (len(mirror.seqs), len(want), len(mirror.seqs) - len(set(mirror.seqs))))
    rest = {x["id"]: x for x in rest_list(srv)["annotations"]}
    c.check(mirror.state == rest, "after catching up B's state equals the server's (%d)"
            % len(rest))
    c.check(len(acked) > 20, "the writer kept writing during the drops (%d)" % len(acked))


def main():
    db = os.path.join(WORK, "live-%d.db" % os.getpid())
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(db + ext):
            os.unlink(db + ext)
    with Server([SLIDE], ["--db", db, "--user", ALICE, "--user", BOB]) as s:
        latency(s)
        conflict(s)
        reconnect(s)
    c.finish()


if __name__ == "__main__":
    main()
