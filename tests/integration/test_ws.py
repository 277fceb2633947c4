"""The WebSocket event channel GET /ws of `consilium serve` (core/net/PROTOCOL.md).

Token in the query and in the header, 401 without it, bad handshakes
(426/400/405), hello, ping replies, viewport events fanned out to the
clients subscribed to the slide and to no one else (transient: seq 0),
coalescing, malformed frames (error, then 1008 after ten), frames above
16 MiB (1009), 50 concurrent clients, a client that never reads (closed with
1013 while the others' latency stays low), wss over TLS, 1001 on shutdown.
Tiles are fetched the whole time and must never fail.
"""
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cshelp  # noqa: E402
import websocket  # noqa: E402
import wsclient  # noqa: E402

ck = cshelp.Checker()
CMU = os.path.join(cshelp.TESTDATA, "wsi", "CMU-1-Small-Region.svs")
SLIDE = "CMU-1-Small-Region"
work = os.path.join(cshelp.WORK, "ws")
os.makedirs(work, exist_ok=True)


def is_event(m):
    return m.get("type") == "event"


def raw_request(srv, headers, method="GET", path="/ws", tls_ctx=None):
    """One request with exactly these headers; returns (status, headers, body)."""
    if tls_ctx:
        c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=tls_ctx, timeout=10)
    else:
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in headers.items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read() if r.status != 101 else b""
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def masked(payload, opcode=1):
    """A client frame (masked, as RFC 6455 requires)."""
    key = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return hdr + key + body


class RawClient:
    """A WebSocket client on a bare socket with a tiny receive buffer: it does
    the handshake, sends what it is told and reads only when asked."""

    def __init__(self, srv, key="dGhlIHNhbXBsZSBub25jZQ=="):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", srv.port))
        self.sock.sendall(("GET /ws?access_token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n"
                           % (srv.token, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)

    def send_json(self, obj):
        self.sock.sendall(masked(json.dumps(obj).encode()))

    def drain(self, timeout=30):
        """Read everything until the server closes the TCP connection; returns
        (frames, close code or None, True when EOF was reached)."""
        self.sock.settimeout(timeout)
        data = self.buf
        eof = False
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    eof = True
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            eof = not isinstance(sys.exc_info()[1], socket.timeout)
        frames, code, pos = 0, None, 0
        while pos + 2 <= len(data):
            op, n = data[pos] & 15, data[pos + 1] & 127
            pos += 2
            if n == 126:
                n = struct.unpack("!H", data[pos:pos + 2])[0]
                pos += 2
            elif n == 127:
                n = struct.unpack("!Q", data[pos:pos + 8])[0]
                pos += 8
            if pos + n > len(data):
                break
            if op == 8 and n >= 2:
                code = struct.unpack("!H", data[pos:pos + 2])[0]
            elif op == 1:
                frames += 1
            pos += n
        self.sock.close()
        return frames, code, eof


class TileHammer(threading.Thread):
    """Fetches tiles the whole time; records failures and the worst latency."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv, self.stop, self.ok, self.errors, self.worst = srv, False, 0, [], 0.0

    def run(self):
        i = 0
        while not self.stop:
            path = "/slides/%s_files/%d/%d_%d.jpeg" % (SLIDE, 10 + i % 3, i % 2, (i // 2) % 2)
            t = time.time()
            try:
                st, _, body = self.srv.get(path)
                if st == 200 and body[:2] == b"\xff\xd8":
                    self.ok += 1
                else:
                    self.errors.append((path, st))
            except Exception as e:  # noqa: BLE001
                self.errors.append((path, repr(e)))
            self.worst = max(self.worst, time.time() - t)
            i += 1
            time.sleep(0.02)


class Reader(threading.Thread):
    """Reads a client's messages continuously (a fast consumer)."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c, self.msgs, self.stop, self.closed = client, [], False, None

    def run(self):
        while not self.stop:
            try:
                m = self.c.recv_json(0.2)
            except wsclient.Closed as e:
                self.closed = e.code
                return
            if m is not None:
                self.msgs.append((time.time(), m))


def probe_latency(sender, receiver_reader, slide, n, interval=0.1):
    """Send n viewports (x = a unique mark) and time their arrival at the reader."""
    lat = []
    for _ in range(n):
        mark = time.time()
        sender.send_json({"op": "viewport", "slide": slide, "x": mark, "y": 0, "w": 1, "h": 1,
                          "zoom": 1})
        deadline = time.time() + 5
        got = None
        while time.time() < deadline and got is None:
            for t, m in list(receiver_reader.msgs):
                if is_event(m) and m["data"].get("x") == mark:
                    got = t
                    break
            time.sleep(0.002)
        lat.append(got - mark if got else 5.0)
        time.sleep(interval)
    lat.sort()
    return lat


def run_main(srv):
    url = "ws://127.0.0.1:%d/ws" % srv.port
    hammer = TileHammer(srv)
    hammer.start()

    # -- token: query and header; 401 without it
    for via in ("query", "header"):
        c = wsclient.connect(url, srv.token, via=via)
        h = c.recv_json()
        ck.check(h and h.get("type") == "hello" and isinstance(h.get("seq"), int) and h.get("user")
                 and h.get("role"), "hello first (token via %s): %r" % (via, h))
        me = h.get("user")
        c.close()
    for tok, what in ((None, "no token"), ("wrong", "wrong token")):
        try:
            wsclient.connect(url, tok)
            ck.check(False, "%s: upgraded" % what)
        except websocket.WebSocketBadStatusException as e:
            ck.check(e.status_code == 401, "%s: %s, want 401" % (what, e.status_code))
    st, _, _ = raw_request(srv, {"Upgrade": "websocket", "Connection": "Upgrade",
                                 "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                 "Authorization": "Bearer nope"})
    ck.check(st == 401, "raw handshake with a wrong bearer token: %d" % st)

    # -- handshakes
    auth = {"Authorization": "Bearer " + srv.token}
    good = dict(auth, **{"Upgrade": "websocket", "Connection": "Upgrade",
                         "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    st, hdr, body = raw_request(srv, auth)
    ck.check(st == 426 and json.loads(body).get("message"), "plain GET /ws: %d %r" % (st, body))
    st, hdr, body = raw_request(srv, dict(good, **{"Sec-WebSocket-Version": "8"}))
    ck.check(st == 426 and hdr.get("sec-websocket-version") == "13",
             "version 8: %d, Sec-WebSocket-Version %r" % (st, hdr.get("sec-websocket-version")))
    for name, h in (("no key", {k: v for k, v in good.items() if k != "Sec-WebSocket-Key"}),
                    ("short key", dict(good, **{"Sec-WebSocket-Key": "abc"})),
                    ("key not base64", dict(good, **{"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="})),
                    ("no Connection: upgrade", dict(good, **{"Connection": "keep-alive"}))):
        st, _, body = raw_request(srv, h)
        ck.check(st == 400 and b"message" in body, "%s: %d %r" % (name, st, body[:100]))
    st, _, _ = raw_request(srv, good, method="POST")
    ck.check(st == 405, "POST /ws: %d" % st)
    rc = RawClient(srv)
    ck.check(b"101" in rc.head.split(b"\r\n")[0] and
             b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in rc.head.lower(),
             "RFC 6455 sample key gets its accept value: %r" % rc.head)
    rc.sock.close()
    st, _, body = srv.get("/ws/stats")
    ck.check(st == 200 and "connections" in json.loads(body), "/ws/stats: %d %r" % (st, body))
    st, _, _ = srv.get("/ws/stats", token=False)
    ck.check(st == 401, "/ws/stats needs the token")

    # -- ping, unknown op
    c = wsclient.connect(url, srv.token)
    c.recv_json()
    c.send_json({"op": "ping", "req": 7})
    m = c.recv_json()
    ck.check(m == {"type": "reply", "req": 7, "ok": True}, "ping reply: %r" % m)
    c.send_json({"op": "ping", "req": "r-1"})
    m = c.recv_json()
    ck.check(m == {"type": "reply", "req": "r-1", "ok": True}, "ping reply, string req: %r" % m)
    c.send_json({"op": "annot.frobnicate", "req": 8})
    m = c.recv_json()
    ck.check(m and m.get("req") == 8 and m.get("ok") is False and m.get("error"),
             "unknown op answered: %r" % m)
    c.close()

    # -- fan-out of viewport events by slide
    A, B, C, D = (wsclient.connect(url, srv.token) for _ in range(4))
    for x in (A, B, C, D):
        x.recv_json()
    for x, slides in ((A, [SLIDE]), (B, [SLIDE]), (C, ["other-slide"])):
        x.send_json({"op": "subscribe", "slides": slides, "req": "s"})
        r = x.wait(lambda m: m.get("req") == "s")
        ck.check(r and r.get("ok") is True, "subscribe reply: %r" % r)
    B.send_json({"op": "viewport", "slide": SLIDE, "x": 10, "y": 20, "w": 300, "h": 200, "zoom": 0.5})
    ev = A.wait(is_event, 3)
    ck.check(ev is not None and ev.get("event") == "viewer.viewport_changed" and ev.get("seq") == 0
             and ev.get("topic") == "slide:" + SLIDE and ev.get("origin") == me
             and ev.get("data", {}).get("x") == 10 and ev["data"].get("zoom") == 0.5,
             "viewport reaches a client on the same slide, transient (seq 0): %r" % ev)
    for x, who in ((B, "its sender"), (C, "a client on another slide"), (D, "an unsubscribed client")):
        m = x.recv_json(0.4)
        ck.check(m is None, "viewport not sent to %s: %r" % (who, m))
    B.send_json({"op": "viewport", "slide": SLIDE, "x": "left"})
    m = B.recv_json()
    ck.check(m and m.get("type") == "error", "viewport with a non-number: %r" % m)
    A.send_json({"op": "unsubscribe", "slides": [SLIDE], "req": "u"})
    r = A.wait(lambda m: m.get("req") == "u")
    ck.check(r and r.get("ok") is True, "unsubscribe reply: %r" % r)
    time.sleep(0.06)
    B.send_json({"op": "viewport", "slide": SLIDE, "x": 11, "y": 0, "w": 1, "h": 1, "zoom": 1})
    ck.check(A.recv_json(0.4) is None, "no events after unsubscribe")
    # coalescing: a burst of 30 gives fewer events, and the last one wins
    A.send_json({"op": "subscribe", "slides": [SLIDE]})
    time.sleep(0.2)
    for i in range(30):
        B.send_json({"op": "viewport", "slide": SLIDE, "x": i, "y": 0, "w": 1, "h": 1, "zoom": 1})
    evs = A.collect(is_event, timeout=1.0)
    ck.check(0 < len(evs) < 30 and evs[-1]["data"]["x"] == 29,
             "a burst of 30 viewports is coalesced to %d events ending at x=%s"
             % (len(evs), evs[-1]["data"]["x"] if evs else None))
    for x in (A, B, C, D):
        x.close()

    # -- malformed frames: an error each; ten in a row close with 1008
    M = wsclient.connect(url, srv.token)
    M.recv_json()
    bad = ["not json", "[1,2]", '"str"', "{}", '{"op": 5}', "{broken", "42", "null", "{\"op\":", "]"]
    for t in bad[:9]:
        M.send_text(t)
    errs = M.collect(lambda m: m.get("type") == "error", count=9, timeout=3)
    ck.check(len(errs) == 9 and all(e.get("message") for e in errs), "nine errors for nine bad frames")
    M.send_json({"op": "ping", "req": 1})
    ck.check((M.recv_json() or {}).get("req") == 1, "a good frame still answered (and resets the count)")
    M.send_binary(b"\x00\x01")
    for t in bad[:9]:
        M.send_text(t)
    errs = M.collect(lambda m: m.get("type") == "error", count=10, timeout=3)
    ck.check(len(errs) == 10, "ten errors (binary frames count too): %d" % len(errs))
    ck.check(M.wait_closed(3) == 1008, "closed with 1008 after ten malformed frames in a row")

    # -- frame size limit: 16 MiB is accepted, more closes with 1009
    Z = wsclient.connect(url, srv.token)
    Z.recv_json()
    head = '{"op":"ping","req":"big","pad":"'
    Z.send_text(head + "x" * ((16 << 20) - len(head) - 2) + '"}')
    m = Z.recv_json(20)
    ck.check(m and m.get("req") == "big", "a 16 MiB frame is accepted: %r" % (m and str(m)[:80]))
    Z.send_text("x" * ((16 << 20) + 1))
    ck.check(Z.wait_closed(20) == 1009, "a frame above 16 MiB closes with 1009")

    # -- 50 concurrent clients
    many = [wsclient.connect(url, srv.token) for _ in range(50)]
    for x in many:
        x.recv_json()
        x.send_json({"op": "subscribe", "slides": [SLIDE], "req": 1})
    ok = sum(1 for x in many if (x.wait(lambda m: m.get("req") == 1) or {}).get("ok"))
    ck.check(ok == 50, "50 clients subscribed (%d)" % ok)
    t0 = time.time()
    many[0].send_json({"op": "viewport", "slide": SLIDE, "x": 50, "y": 0, "w": 1, "h": 1, "zoom": 1})
    got = sum(1 for x in many[1:] if (x.wait(is_event, 5) or {}).get("data", {}).get("x") == 50)
    dt = time.time() - t0
    ck.check(got == 49, "one viewport reaches the 49 others (%d, in %.0f ms)" % (got, dt * 1000))
    print("50 clients: fan-out to 49 in %.1f ms" % (dt * 1000), flush=True)
    for x in many:
        x.close()

    # -- a client that never reads: closed with 1013, nobody else slowed down
    flood = "flood-" + "s" * 150
    P = wsclient.connect(url, srv.token)       # probe sender
    Q = wsclient.connect(url, srv.token)       # probe receiver
    R = wsclient.connect(url, srv.token)       # a fast reader of the flood
    for x, s in ((P, None), (Q, "probe"), (R, flood)):
        x.recv_json()
        if s:
            x.send_json({"op": "subscribe", "slides": [s], "req": 1})
            x.wait(lambda m: m.get("req") == 1)
    qr, rr = Reader(Q), Reader(R)
    qr.start()
    rr.start()
    base = probe_latency(P, qr, "probe", 10)
    slow = RawClient(srv, key=base64.b64encode(os.urandom(16)).decode())
    slow.send_json({"op": "subscribe", "slides": [flood]})
    time.sleep(0.2)
    senders = [wsclient.connect(url, srv.token) for _ in range(40)]
    stop = threading.Event()

    def pump():
        n = 0
        while not stop.is_set():
            for i, x in enumerate(senders):
                x.send_json({"op": "viewport", "slide": flood, "x": n, "y": i, "w": 1, "h": 1,
                             "zoom": 1})
            n += 1
            time.sleep(0.05)

    pt = threading.Thread(target=pump, daemon=True)
    pt.start()
    t0 = time.time()
    during = []
    closed_after = None
    while time.time() - t0 < 60:
        during += probe_latency(P, qr, "probe", 5)
        stats = srv.json("/ws/stats")
        if stats["closed_slow"] >= 1:
            closed_after = time.time() - t0
            break
    during += probe_latency(P, qr, "probe", 5)
    stop.set()
    pt.join()
    ck.check(closed_after is not None, "the client that never reads is closed (after %s s)"
             % (closed_after and round(closed_after, 1)))
    frames, code, eof = slow.drain(10)
    ck.check(eof or code == 1013, "the slow client's connection ends (close %s, eof %s, %d frames)"
             % (code, eof, frames))
    during.sort()
    p95 = lambda v: v[int(len(v) * 0.95) - 1] if v else 9  # noqa: E731
    print("probe latency ms: before p50 %.1f p95 %.1f; with a stuck client p50 %.1f p95 %.1f (n=%d);"
          " stuck client closed after %.1f s having got %d frames, the fast reader %d"
          % (base[len(base) // 2] * 1e3, p95(base) * 1e3, during[len(during) // 2] * 1e3,
             p95(during) * 1e3, len(during), closed_after or -1, frames,
             sum(1 for _, m in rr.msgs if is_event(m))), flush=True)
    ck.check(p95(during) < 0.5, "others' p95 latency stays low with a stuck client: %.0f ms"
             % (p95(during) * 1e3))
    flood_events = sum(1 for _, m in rr.msgs if is_event(m))
    ck.check(flood_events > frames, "the fast reader of the same slide got more (%d) than the stuck "
             "one (%d)" % (flood_events, frames))
    ck.check(rr.closed is None and qr.closed is None, "fast clients stay connected")
    qr.stop = rr.stop = True
    qr.join()
    rr.join()
    for x in senders + [P, Q, R]:
        x.close()

    # -- shutdown with a client connected: 1001
    hammer.stop = True
    hammer.join()
    ck.check(not hammer.errors and hammer.ok > 20, "tiles served throughout (%d ok, errors %r, worst %.0f ms)"
             % (hammer.ok, hammer.errors[:3], hammer.worst * 1e3))
    last = wsclient.connect(url, srv.token)
    last.recv_json()
    srv.proc.send_signal(signal.SIGTERM)
    ck.check(last.wait_closed(10) == 1001, "an open client gets 1001 when the server stops")


def run_tls():
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with cshelp.Server([CMU], ["--tls-cert", cert, "--tls-key", key]) as srv:
        url = "wss://127.0.0.1:%d/ws" % srv.port
        A = wsclient.connect(url, srv.token)
        B = wsclient.connect(url, srv.token, via="header")
        for x in (A, B):
            h = x.recv_json()
            ck.check(h and h.get("type") == "hello", "wss hello: %r" % h)
            x.send_json({"op": "subscribe", "slides": [SLIDE], "req": 1})
            ck.check((x.wait(lambda m: m.get("req") == 1) or {}).get("ok") is True, "wss subscribe")
        B.send_json({"op": "viewport", "slide": SLIDE, "x": 1, "y": 2, "w": 3, "h": 4, "zoom": 1})
        ev = A.wait(is_event, 3)
        ck.check(ev and ev["data"]["x"] == 1, "wss viewport fan-out: %r" % ev)
        A.send_json({"op": "ping", "req": "p" * (1 << 20)})
        m = A.recv_json(10)
        ck.check(m and len(m.get("req", "")) == 1 << 20, "wss: a 1 MiB frame each way")
        try:
            wsclient.connect(url, "wrong")
            ck.check(False, "wss with a wrong token upgraded")
        except websocket.WebSocketBadStatusException as e:
            ck.check(e.status_code == 401, "wss wrong token: %s" % e.status_code)
        ctx = ssl.create_default_context(cafile=cert)
        st, hdr, _ = raw_request(srv, {"Authorization": "Bearer " + srv.token}, tls_ctx=ctx)
        ck.check(st == 426, "https GET /ws without upgrade: %d" % st)
        A.close()
        srv.proc.send_signal(signal.SIGTERM)
        ck.check(B.wait_closed(10) == 1001, "wss client gets 1001 when the server stops")


with cshelp.Server([CMU]) as srv:
    run_main(srv)
run_tls()
ck.finish()
