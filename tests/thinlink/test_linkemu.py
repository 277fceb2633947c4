"""cs-linkemu against real peers: the consilium server for TCP, Python UDP
sockets for UDP, all on 127.0.0.1.

usage: test_linkemu.py [PATH/TO/cs-linkemu]   (env: CS_BIN, CS_TESTDATA, CS_SRC, CS_WORK)

Timing margins: lower bounds are physical (the emulator must never deliver
faster than the link), upper bounds leave room for a shared 2-core machine.
"""
import hashlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

SRC = os.environ.get("CS_SRC", os.path.abspath("."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "bench", "linkemu"))
import cshelp  # noqa: E402
from linkemu import LinkEmu, find_binary  # noqa: E402

BINARY = find_binary(sys.argv[1] if len(sys.argv) > 1 else None)
WORK = os.path.join(cshelp.WORK, "linkemu")
RATE = 4e6  # bit/s
RTT = 0.050  # s
WSI = os.path.join(cshelp.TESTDATA, "wsi")
BIG = "TCGA-CR-7395-01A-01-TS1"  # full/max JPEG: ~1.9 MB
SMALL = "CMU-1-Small-Region"  # full/max JPEG: ~0.75 MB

ck = cshelp.Checker()


def emu(port, **kw):
    kw.setdefault("binary", BINARY)
    kw.setdefault("workdir", WORK)
    return LinkEmu(port, **kw)


def http_get(port, path, token, conn=None):
    """GET on a (new or given) keep-alive connection. Returns
    (t_start, t_headers, t_end, body); t_headers is when the status line
    and headers had arrived (the first response bytes)."""
    own = conn is None
    t0 = time.monotonic()
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    t1 = time.monotonic()
    chunks = []
    while True:
        b = r.read(65536)
        if not b:
            break
        chunks.append(b)
    t2 = time.monotonic()
    if own:
        conn.close()
    assert r.status == 200, (path, r.status)
    return t0, t1, t2, b"".join(chunks)


def mbit(nbytes, secs):
    return nbytes * 8 / secs / 1e6 if secs > 0 else float("inf")


def full(slide):
    return "/iiif/3/%s/full/max/0/default.jpg" % slide


# ------------------------------------------------------------------ arguments


def test_arguments():
    def run(*args):
        p = subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=10)
        return p.returncode, p.stderr

    rc, err = run("--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--rate", "4mbt")
    ck.check(rc == 2 and "--rate" in err and "mbit" in err, "bad --rate: rc %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--rtt", "50")
    ck.check(rc == 2 and "--rtt" in err, "--rtt without unit: rc %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--loss", "1%")
    ck.check(rc == 2 and "--udp" in err, "--loss on TCP refused: rc %d %r" % (rc, err))
    rc, err = run("--listen", "127.0.0.1:0")
    ck.check(rc == 2 and "--connect" in err, "missing --connect: rc %d %r" % (rc, err))
    rc, err = run("--listen", "nonsense", "--connect", "127.0.0.1:1")
    ck.check(rc == 2 and "HOST:PORT" in err, "bad --listen: rc %d %r" % (rc, err))
    p = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
    ck.check(p.returncode == 0 and "--queue" in p.stdout, "--help")


# ------------------------------------------------------------------ TCP


def test_tcp(srv):
    # Warm the server's cache so only the link is measured.
    big = srv.get(full(BIG))[2]
    small = srv.get(full(SMALL))[2]
    ck.check(1_500_000 < len(big) < 3_000_000, "big image is ~2 MB (%d)" % len(big))
    with emu(srv.port, rate="4mbit", rtt="50ms") as link:
        # Time to first byte on a fresh connection: the handshake's RTT plus
        # the request's RTT; on a kept-alive connection one RTT.
        fresh, again = [], []
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", link.port, timeout=30)
            t0, t1, _, _ = http_get(link.port, "/slides/%s.dzi" % SMALL, srv.token, conn)
            fresh.append(t1 - t0)
            t0, t1, _, _ = http_get(link.port, "/slides/%s.dzi" % SMALL, srv.token, conn)
            again.append(t1 - t0)
            conn.close()
        f, a = statistics.median(fresh) * 1e3, statistics.median(again) * 1e3
        print("tcp: first byte, new connection %.1f ms, kept-alive %.1f ms (rtt 50)" % (f, a))
        ck.check(2 * RTT * 1e3 - 2 <= f <= 2 * RTT * 1e3 + 30,
                 "fresh-connection first byte %.1f ms ~ 2 RTT" % f)
        ck.check(RTT * 1e3 - 2 <= a <= RTT * 1e3 + 30, "kept-alive first byte %.1f ms ~ 1 RTT" % a)

        # One ~2 MB download: the body streams at the link rate.
        t0, t1, t2, body = http_get(link.port, full(BIG), srv.token)
        ck.check(body == big, "big download intact through the link")
        rate = mbit(len(body), t2 - t1)
        print("tcp: %d bytes in %.2f s after first byte: %.3f Mbit/s (link 4)"
              % (len(body), t2 - t1, rate))
        ck.check(abs(rate - 4.0) <= 0.15 * 4.0, "single download %.3f Mbit/s ~ 4" % rate)
        ck.check(rate <= 4.0 * 1.02, "never faster than the link (%.3f)" % rate)

        # Two downloads at once share the link: sum ~ rate, equal shares.
        res = [None, None]

        def fetch(i):
            res[i] = http_get(link.port, full(SMALL), srv.token)

        th = [threading.Thread(target=fetch, args=(i,)) for i in range(2)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        ok = all(r and r[3] == small for r in res)
        ck.check(ok, "parallel downloads intact")
        if ok:
            start = min(r[1] for r in res)
            end = max(r[2] for r in res)
            total = sum(len(r[3]) for r in res)
            agg = mbit(total, end - start)
            each = [mbit(len(r[3]), r[2] - r[1]) for r in res]
            print("tcp: 2 parallel: %.3f Mbit/s together, %.3f + %.3f each"
                  % (agg, each[0], each[1]))
            ck.check(abs(agg - 4.0) <= 0.15 * 4.0, "parallel sum %.3f Mbit/s ~ 4" % agg)
            ck.check(all(1.4 <= e <= 2.6 for e in each),
                     "fair share ~2 Mbit/s each: %.3f, %.3f" % tuple(each))
        st = link.stats()
        ck.check(st["down"]["max_backlog"] <= st["queue_bytes"] + 1448,
                 "queue bounded: max backlog %d <= %d" % (st["down"]["max_backlog"],
                                                          st["queue_bytes"]))
        ck.check(st["down"]["out_bytes"] >= len(big) + 2 * len(small), "stats count the bytes")
    ck.check(link.returncode == 0 and link.final and link.final["conns_open"] == 0,
             "clean exit on SIGTERM (rc %s)" % link.returncode)

    # The link goes down mid-transfer: the client is reset, not handed a
    # clean end of a cut response.
    with emu(srv.port, rate="4mbit", rtt="50ms") as link:
        s = socket.create_connection(("127.0.0.1", link.port), timeout=10)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (full(BIG), srv.token)).encode())
        got = len(s.recv(65536))
        link.stop()
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    outcome = "eof"
                    break
                got += len(b)
        except ConnectionResetError:
            outcome = "reset"
        s.close()
        ck.check(outcome == "reset" and got < len(big) and link.returncode == 0,
                 "SIGTERM mid-transfer resets the client (%s after %d bytes, rc %s)"
                 % (outcome, got, link.returncode))


def test_tcp_half_close_and_reset():
    """Echo peer reading to EOF: data intact both ways, FIN passed on in order;
    an unreachable upstream resets the client instead of hanging it."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def echo():
        c, _ = ls.accept()
        got = bytearray()
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        c.sendall(hashlib.sha256(got).digest() + bytes(got))
        c.close()

    th = threading.Thread(target=echo)
    th.start()
    payload = os.urandom(150_000)
    with emu(ls.getsockname()[1], rate="8mbit", rtt="20ms") as link:
        s = socket.create_connection(("127.0.0.1", link.port), timeout=20)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        back = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            back += b
        s.close()
        th.join(20)
        ck.check(bytes(back[:32]) == hashlib.sha256(payload).digest(),
                 "upload intact, half-close passed on")
        ck.check(bytes(back[32:]) == payload, "echo intact, FIN passed back")
    ls.close()

    # Nothing listens on the upstream port: the client is reset (or sees EOF).
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with emu(port, rate="4mbit", rtt="50ms") as link:
        t0 = time.monotonic()
        s = None
        try:
            # The reset can come back before connect() returns on loopback.
            s = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            outcome = "eof" if s.recv(100) == b"" else "data"
        except ConnectionResetError:
            outcome = "reset"
        except socket.timeout:
            outcome = "hang"
        if s:
            s.close()
        ck.check(outcome in ("reset", "eof") and time.monotonic() - t0 < 2,
                 "refused upstream resets the client (%s)" % outcome)
        ck.check(link.stats()["connect_failures"] == 1, "connect failure counted")


# ------------------------------------------------------------------ UDP


class UdpPeer:
    """Upstream UDP peer on 127.0.0.1: records (seq, arrival time) of each
    datagram and echoes it back unless echo=False."""

    def __init__(self, echo=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.echo = echo
        self.got = []
        self.stop = False
        self.th = threading.Thread(target=self.run)
        self.th.start()

    def run(self):
        while not self.stop:
            try:
                d, a = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.got.append((int.from_bytes(d[:4], "big"), time.monotonic(), len(d)))
            if self.echo:
                self.sock.sendto(d, a)

    def close(self):
        self.stop = True
        self.th.join()
        self.sock.close()


def udp_client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(0.3)
    return s


def paced_send(s, port, n, size, pps, burst=10, sent_at=None):
    """Send n datagrams of size bytes at pps per second, in bursts of `burst`."""
    t0 = time.monotonic()
    for i in range(n):
        if i % burst == 0:
            due = t0 + i / pps
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
        if sent_at is not None:
            sent_at[i] = time.monotonic()
        s.sendto(i.to_bytes(4, "big") + bytes(size - 4), ("127.0.0.1", port))


def drain(s, into):
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return
        into.append((int.from_bytes(d[:4], "big"), time.monotonic()))


def test_udp_overload():
    """8 Mbit/s offered to a 4 Mbit/s link: the queue overflows, the surplus
    is tail-dropped and what gets through arrives at the link rate."""
    peer = UdpPeer(echo=False)
    n, size, pps = 2000, 1000, 1000  # 8 Mbit/s for 2 s
    with emu(peer.port, rate="4mbit", rtt="50ms", udp=True) as link:
        s = udp_client()
        paced_send(s, link.port, n, size, pps)
        time.sleep(0.5)  # let the queue drain
        st = link.stats()
        s.close()
    peer.close()
    got = sorted(t for _, t, _ in peer.got)
    recv = len(got)
    rate = mbit((recv - 1) * size, got[-1] - got[0]) if recv > 1 else 0
    up = st["up"]
    print("udp: offered 8 Mbit/s, delivered %d/%d at %.3f Mbit/s, queue drops %d, max backlog %d"
          % (recv, n, rate, up["drop_queue"], up["max_backlog"]))
    ck.check(up["drop_queue"] > 0 and recv < n, "overload drops datagrams")
    ck.check(abs(rate - 4.0) <= 0.10 * 4.0, "delivered rate %.3f Mbit/s ~ 4" % rate)
    ck.check(rate <= 4.0 * 1.02, "never faster than the link (%.3f)" % rate)
    ck.check(up["in_pkts"] == n and up["out_pkts"] + up["drop_queue"] + up["drop_loss"]
             + up["drop_send"] == n, "stats add up: %r" % up)
    ck.check(up["out_pkts"] == recv, "stats out_pkts %d == received %d" % (up["out_pkts"], recv))
    ck.check(up["max_backlog"] <= st["queue_bytes"], "tail drop keeps the queue bounded")
    # Half the offered load gets through, give or take the queue's contents.
    ck.check(0.40 * n <= recv <= 0.60 * n, "about half delivered (%d of %d)" % (recv, n))


def test_udp_loss_and_delay():
    """Random loss of 1 % per direction, and the one-way delay RTT/2."""
    peer = UdpPeer(echo=True)
    with emu(peer.port, rate="4mbit", rtt="50ms", udp=True, loss="1%", seed=7) as link:
        s = udp_client()
        # Delay probes, well below the rate: one-way and round trip.
        n_probe = 40
        sent_at = {}
        echoes = []
        for i in range(n_probe):
            sent_at[i] = time.monotonic()
            s.sendto(i.to_bytes(4, "big") + bytes(96), ("127.0.0.1", link.port))
            try:
                d = s.recv(65536)
                echoes.append((int.from_bytes(d[:4], "big"), time.monotonic()))
            except socket.timeout:
                pass
        one_way = [t - sent_at[q] for q, t, _ in peer.got if q in sent_at]
        rtts = [t - sent_at[q] for q, t in echoes]
        ow, rt = statistics.median(one_way) * 1e3, statistics.median(rtts) * 1e3
        print("udp: one-way delay median %.2f ms (min %.2f), round trip %.2f ms"
              % (ow, min(one_way) * 1e3, rt))
        ck.check(RTT / 2 * 1e3 - 0.5 <= min(one_way) * 1e3 and ow <= RTT / 2 * 1e3 + 10,
                 "one-way delay %.2f ms ~ RTT/2" % ow)
        ck.check(RTT * 1e3 - 1 <= min(rtts) * 1e3 and rt <= RTT * 1e3 + 15,
                 "round trip %.2f ms ~ RTT" % rt)

        # Loss: 5000 small datagrams at 2 Mbit/s, no queue drops.
        base = len(peer.got)
        n = 5000
        got_back = []
        rx = threading.Thread(target=lambda: (time.sleep(0.05), drain(s, got_back)))
        rx.start()
        paced_send(s, link.port, n, 100, 2500, burst=5)
        rx.join()
        time.sleep(0.2)
        st = link.stats()
        s.close()
    peer.close()
    up_recv = len(peer.got) - base
    down_recv = len(got_back)
    lost_up = n - up_recv
    lost_down = up_recv - down_recv
    p = 0.01
    tol_up = 3.5 * (n * p * (1 - p)) ** 0.5
    tol_down = 3.5 * (up_recv * p * (1 - p)) ** 0.5
    print("udp: loss 1%%: up %d/%d lost (%.2f %%), down %d/%d lost (%.2f %%), queue drops %d/%d"
          % (lost_up, n, 100 * lost_up / n, lost_down, up_recv, 100 * lost_down / up_recv,
             st["up"]["drop_queue"], st["down"]["drop_queue"]))
    ck.check(abs(lost_up - n * p) <= tol_up,
             "up loss %d ~ %.0f +- %.0f (binomial, 3.5 sd)" % (lost_up, n * p, tol_up))
    ck.check(abs(lost_down - up_recv * p) <= tol_down,
             "down loss %d ~ %.0f +- %.0f (binomial, 3.5 sd)" % (lost_down, up_recv * p, tol_down))
    ck.check(st["up"]["drop_queue"] == 0 and st["down"]["drop_queue"] == 0,
             "no queue drops below the rate")
    ck.check(st["up"]["drop_loss"] == lost_up + (n_probe - len(one_way)),
             "stats drop_loss %d matches the peer's count" % st["up"]["drop_loss"])


def main():
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(BINARY):
        print("FAIL: no cs-linkemu at %s" % BINARY)
        sys.exit(1)
    t0 = time.monotonic()
    test_arguments()
    with cshelp.Server([os.path.join(WSI, BIG + ".svs"), os.path.join(WSI, SMALL + ".svs")]) as srv:
        test_tcp(srv)
    test_tcp_half_close_and_reset()
    test_udp_overload()
    test_udp_loss_and_delay()
    print("linkemu tests took %.1f s" % (time.monotonic() - t0))
    ck.finish()


if __name__ == "__main__":
    main()
