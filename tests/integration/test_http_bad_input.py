"""Bad input and HTTP behaviour of `consilium serve`, against the real server.

Truncated and fake slides, a missing file, a slide deleted while served,
traversal attempts (plain and percent-encoded), out-of-range levels and
tiles, absurd IIIF requests, missing/wrong tokens, malformed HTTP. Each must
get its clear 4xx with a JSON message while a concurrent client on a good
slide sees no error. Also: ETag/304, CORS preflight, keep-alive, TLS.
"""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cshelp  # noqa: E402

ck = cshelp.Checker()
WSI = os.path.join(cshelp.TESTDATA, "wsi")
CMU = os.path.join(WSI, "CMU-1-Small-Region.svs")
work = os.path.join(cshelp.WORK, "bad-input")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)

# The served folder: one good slide, a truncated copy, random bytes, and a
# copy that will be deleted while served.
shutil.copy(CMU, os.path.join(work, "good.svs"))
data = open(CMU, "rb").read()
open(os.path.join(work, "truncated.svs"), "wb").write(data[: len(data) // 2])
open(os.path.join(work, "random.svs"), "wb").write(os.urandom(200000))
shutil.copy(CMU, os.path.join(work, "doomed.svs"))


def raw(srv, path, method="GET", headers=None, token=True):
    """Send a request path verbatim (no client-side normalisation)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + srv.token
    c.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
    for k, v in h.items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def expect_error(srv, path, statuses, what, word=None, **kw):
    st, hdr, body = raw(srv, path, **kw)
    if not ck.check(st in statuses, "%s: %s gave %d, want %s (%r)" % (what, path, st, statuses, body[:200])):
        return
    try:
        j = json.loads(body)
    except ValueError:
        ck.check(False, "%s: error body is not JSON: %r" % (what, body[:200]))
        return
    ck.check(isinstance(j.get("message"), str) and len(j["message"]) > 5,
             "%s: error has no clear message: %r" % (what, j))
    if word:
        ck.check(j.get("error") == word, "%s: error word %r, want %r" % (what, j.get("error"), word))
    ck.check(b"root:" not in body, "%s: leaked file contents" % what)
    ck.check(work.encode() not in body, "%s: message reveals the server's path: %r" % (what, body[:200]))


class Hammer(threading.Thread):
    """A concurrent client on the good slide; records every failure."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = False
        self.ok = 0
        self.errors = []

    def run(self):
        i = 0
        while not self.stop:
            col, row = i % 10, (i // 10) % 13
            st, _, body = self.srv.get("/slides/good_files/12/%d_%d.jpeg" % (col, row))
            if st == 200 and body[:2] == b"\xff\xd8":
                self.ok += 1
            else:
                self.errors.append((col, row, st))
            i += 1


# A missing path is refused at start with a clear message.
p = subprocess.run([cshelp.BIN, "serve", "--port", "0", os.path.join(work, "missing.svs")],
                   capture_output=True, text=True, timeout=30)
ck.check(p.returncode != 0 and "missing.svs" in p.stderr and "No such file" in p.stderr,
         "missing file: exit %d, stderr %r" % (p.returncode, p.stderr))
p = subprocess.run([cshelp.BIN, "info", os.path.join(work, "random.svs")], capture_output=True, text=True)
ck.check(p.returncode != 0 and "random.svs" in p.stderr, "info on random bytes: %r" % p.stderr)
p = subprocess.run([cshelp.BIN, "serve", "--help"], capture_output=True, text=True)
ck.check(p.returncode == 0 and "--token" in p.stdout, "serve --help")

audit_path = os.path.join(cshelp.WORK, "bad-input-audit.jsonl")
if os.path.exists(audit_path):
    os.unlink(audit_path)
with cshelp.Server([work], ["--audit-log", audit_path]) as srv:
    ids = {s["id"]: s for s in srv.json("/slides")["slides"]}
    ck.check(set(ids) == {"good", "truncated", "random", "doomed"}, "slides listed: %s" % sorted(ids))
    ck.check(ids.get("random", {}).get("status") == "unreadable", "random bytes flagged unreadable")
    ck.check(work not in json.dumps(ids), "slide list does not reveal server paths")
    ham = Hammer(srv)
    ham.start()

    # health needs no token; everything else does
    st, _, body = raw(srv, "/health", token=False)
    ck.check(st == 200 and json.loads(body)["status"] == "ok", "health without token")
    expect_error(srv, "/slides", {401}, "no token", "unauthorized", token=False)
    expect_error(srv, "/slides/good_files/12/0_0.jpeg", {401}, "wrong token", "unauthorized",
                 token=False, headers={"Authorization": "Bearer nope"})
    expect_error(srv, "/iiif/3/good/info.json", {401}, "no token iiif", "unauthorized", token=False)
    st, _, _ = raw(srv, "/slides/good.dzi?access_token=" + srv.token, token=False)
    ck.check(st == 200, "token as access_token query parameter: %d" % st)
    st, hdr, _ = raw(srv, "/slides", token=False)
    ck.check("Bearer" in hdr.get("WWW-Authenticate", ""), "401 carries WWW-Authenticate")

    # unreadable slides: clear 422 naming the problem
    expect_error(srv, "/slides/random", {422}, "random bytes", "slide_unreadable")
    expect_error(srv, "/slides/random_files/0/0_0.jpeg", {422}, "random bytes tile", "slide_unreadable")
    expect_error(srv, "/iiif/3/random/info.json", {422}, "random bytes iiif", "slide_unreadable")
    st, _, body = raw(srv, "/slides/truncated")
    if st == 200:
        # header intact: the first tiles past the cut fail, then sticky
        codes = set()
        for row in range(12, -1, -1):
            s2, _, _ = raw(srv, "/slides/truncated_files/12/0_%d.jpeg" % row)
            codes.add(s2)
        ck.check(422 in codes, "truncated slide: tiles past the cut give 422 (got %s)" % codes)
        expect_error(srv, "/slides/truncated_files/12/5_12.jpeg", {422}, "truncated is sticky", "slide_unreadable")
    else:
        ck.check(st == 422, "truncated slide: %d" % st)

    # unknown slide, levels and tiles out of range
    expect_error(srv, "/slides/nope.dzi", {404}, "unknown slide", "unknown_slide")
    expect_error(srv, "/slides/good_files/13/0_0.jpeg", {404}, "level out of range", "out_of_range")
    expect_error(srv, "/slides/good_files/12/10_0.jpeg", {404}, "column out of range", "out_of_range")
    expect_error(srv, "/slides/good_files/12/0_13.jpeg", {404}, "row out of range", "out_of_range")
    expect_error(srv, "/slides/good_files/99999999999/0_0.jpeg", {400, 404}, "huge level")
    expect_error(srv, "/slides/good_files/12/-1_0.jpeg", {400}, "negative column", "bad_request")
    expect_error(srv, "/slides/good_files/12/a_b.jpeg", {400}, "non-numeric tile", "bad_request")
    expect_error(srv, "/slides/good_files/12/0_0.png", {400}, "wrong tile format", "bad_request")

    # traversal, plain and encoded: never outside the registry
    for path in ["/slides/../../../../etc/passwd", "/slides/%2e%2e/%2e%2e/etc/passwd",
                 "/slides/..%2f..%2f..%2fetc%2fpasswd", "/iiif/3/..%2f..%2fetc%2fpasswd/info.json",
                 "/slides/good_files/../../../etc/passwd", "/slides/%252e%252e%252fetc%252fpasswd",
                 "/slides/..\\..\\etc\\passwd", "/slides/good%00.dzi"]:
        expect_error(srv, path, {400, 404}, "traversal")

    # IIIF: absurd and malformed requests
    for path, want in [("/iiif/3/good/full/100000,/0/default.jpg", {400}),
                       ("/iiif/3/good/full/^100000,/0/default.jpg", {413}),
                       ("/iiif/3/good/full/^99999999999999,/0/default.jpg", {400, 413}),
                       ("/iiif/3/good/full/!100000,100000/0/default.jpg", {400}),
                       ("/iiif/3/good/0,0,0,0/max/0/default.jpg", {400}),
                       ("/iiif/3/good/99999,0,10,10/max/0/default.jpg", {400}),
                       ("/iiif/3/good/pct:200,0,10,10/max/0/default.jpg", {400}),
                       ("/iiif/3/good/full/abc/0/default.jpg", {400}),
                       ("/iiif/3/good/full/max/90/default.jpg", {400}),
                       ("/iiif/3/good/full/max/0/default.png", {400}),
                       ("/iiif/3/good/full/max/0/gray.jpg", {400}),
                       ("/iiif/3/good/full/max/0", {400})]:
        expect_error(srv, path, want, "iiif " + path)
    st, _, body = raw(srv, "/iiif/3/good/full/max/0/default.jpg")
    ck.check(st == 200 and body[:2] == b"\xff\xd8", "iiif full/max is served (%d)" % st)

    # malformed HTTP on a raw socket: an error or a close, and the server lives on
    for junk in [b"GARBAGE\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00" * 8,
                 b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            s.sendall(junk)
            reply = s.recv(200)
        except OSError:
            reply = b""
        s.close()
        ck.check(reply == b"" or reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.0 4")
                 or reply.startswith(b"HTTP/1.1 505"),
                 "malformed request %r... got %r" % (junk[:20], reply[:40]))
    ck.check(raw(srv, "/health", token=False)[0] == 200, "server alive after malformed HTTP")

    # ETag, 304, Cache-Control, CORS, keep-alive
    st, hdr, body = raw(srv, "/slides/good_files/12/3_3.jpeg")
    etag = hdr.get("ETag")
    ck.check(st == 200 and etag and "private" in hdr.get("Cache-Control", ""), "ETag and Cache-Control")
    ck.check("Authorization" in hdr.get("Vary", ""),
             "Vary: Authorization, so browser caches never replay a tile to another token")
    st, _, body = raw(srv, "/slides/good_files/12/3_3.jpeg", headers={"If-None-Match": etag})
    ck.check(st == 304 and body == b"", "If-None-Match gives 304 (%d)" % st)
    st, hdr, _ = raw(srv, "/slides/good_files/12/3_3.jpeg", method="OPTIONS", token=False,
                     headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
                              "Access-Control-Request-Headers": "authorization"})
    ck.check(st == 204 and "Authorization" in hdr.get("Access-Control-Allow-Headers", "")
             and hdr.get("Access-Control-Allow-Origin"), "CORS preflight")
    expect_error(srv, "/slides", {405}, "POST not allowed", method="POST")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    socks = set()
    for i in range(5):
        c.request("GET", "/slides/good_files/12/%d_1.jpeg" % i, headers={"Authorization": "Bearer " + srv.token})
        r = c.getresponse()
        r.read()
        socks.add(c.sock.getsockname() if c.sock else None)
        ck.check(r.status == 200, "keep-alive request %d" % i)
    ck.check(len(socks) == 1, "five requests on one kept-alive connection")
    c.close()

    # associated images identify the patient: refused unless configured
    expect_error(srv, "/slides/good/associated/label.jpg", {403}, "label refused", "forbidden")
    info = srv.json("/slides/good")
    ck.check("label" in info["associated_images"] and info["associated_served"] is False,
             "label listed but not served")

    # a slide deleted while served: 410, even for a tile already cached
    st, _, _ = raw(srv, "/slides/doomed_files/12/1_1.jpeg")
    ck.check(st == 200, "doomed slide served before deletion")
    os.unlink(os.path.join(work, "doomed.svs"))
    expect_error(srv, "/slides/doomed_files/12/1_1.jpeg", {410}, "deleted slide, cached tile", "slide_gone")
    expect_error(srv, "/slides/doomed_files/12/2_2.jpeg", {410}, "deleted slide, new tile", "slide_gone")
    expect_error(srv, "/slides/doomed.dzi", {410}, "deleted slide dzi", "slide_gone")
    listed = {x["id"]: x["status"] for x in srv.json("/slides")["slides"]}
    ck.check(listed.get("doomed") == "gone" and listed.get("good") == "ok",
             "the list marks the deleted slide gone: %s" % listed)

    time.sleep(0.2)
    ham.stop = True
    ham.join(30)
    ck.check(ham.ok > 20 and not ham.errors,
             "concurrent client on the good slide: %d ok, errors %s" % (ham.ok, ham.errors[:5]))
    ck.check(srv.alive(), "server still running")

# The audit trail: access to patient data and failed authentication, with
# ATNA codes, rate-limited, never the token itself nor server paths.
records = [json.loads(line) for line in open(audit_path)]
ck.check(all(set(r) >= {"time", "code", "event", "outcome", "client", "user", "route"} for r in records),
         "audit records carry time, code, event, outcome, client, user, route")
tiles = [r for r in records if r["code"] == "110103" and r.get("slide") == "good" and r.get("kind") == "tiles"]
ck.check(len(tiles) >= 1, "access to the good slide's tiles is audited")
ck.check(len(tiles) <= 3, "tile access is recorded once a while, not per tile (%d records)" % len(tiles))
ck.check(any(r["code"] == "110103" and r.get("kind") == "metadata" for r in records), "metadata access audited")
fails = [r for r in records if r["code"] == "110114"]
ck.check(len(fails) >= 1 and all(r["outcome"] == 4 for r in fails), "failed authentication audited")
text = open(audit_path).read()
ck.check("test-token" not in text and "nope" not in text, "the audit trail never holds a token")
ck.check(work not in text, "the audit trail never holds server paths")
ck.check(oct(os.stat(audit_path).st_mode & 0o777) == "0o600", "the audit file is private to the server's user")

# Associated images when configured; TLS with a self-signed certificate.
cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
               check=True, capture_output=True)
with cshelp.Server([CMU], ["--serve-associated", "--tls-cert", cert, "--tls-key", key]) as srv:
    ctx = ssl.create_default_context(cafile=cert)
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
    c.request("GET", "/slides/CMU-1-Small-Region/associated/label.jpg",
              headers={"Authorization": "Bearer " + srv.token})
    r = c.getresponse()
    body = r.read()
    ck.check(r.status == 200 and body[:2] == b"\xff\xd8", "label over TLS when configured (%d)" % r.status)
    c.close()
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("GET", "/health")
        plain = c.getresponse().status
    except (OSError, http.client.HTTPException):
        plain = None
    ck.check(plain != 200, "plain HTTP on the TLS port is not served")

ck.finish()
