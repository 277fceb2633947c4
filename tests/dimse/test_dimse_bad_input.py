"""Hostile peers at the SCP, by hand over raw sockets: an association that
drops half-way through a dataset, one that stalls, a truncated dataset, an
element with a huge declared length, PDUs whose declared lengths lie, an
unknown transfer syntax, garbage instead of an A-ASSOCIATE-RQ, peers that
connect and stay silent. Each gets a
clear answer (status, rejection or abort, and a log line); the node keeps
serving (echoscu and storescu right after succeed); nothing half-received
is indexed or left in the store, and the temp dir ends empty."""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dimsehelp as h  # noqa: E402
import cshelp  # noqa: E402
import pydicom  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
VERIFY = "1.2.840.10008.1.1"
TIMEOUT = 3


def connect(node, contexts=None):
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    ctx = contexts or [(1, CT, [EXPLICIT]), (3, VERIFY, [EXPLICIT])]
    s.sendall(h.associate_rq(node.aet, "HOSTILE", ctx))
    t, body = h.read_pdu(s)
    return s, t, body


def ac_results(body):
    """{pcid: result} of an A-ASSOCIATE-AC body."""
    off, out = 68, {}
    while off + 4 <= len(body):
        t, _, n = struct.unpack(">BBH", body[off:off + 4])
        if t == 0x21:
            out[body[off + 4]] = body[off + 6]
        off += 4 + n
    return out


def send_dataset(s, data, pcid=1, chunk=16000):
    for i in range(0, len(data), chunk):
        s.sendall(h.pdata(pcid, data[i:i + chunk], False, last=i + chunk >= len(data)))


def store_status(s):
    t, body = h.read_pdu(s, timeout=20)
    return (h.command_status(body) if t == 4 else None), t


def echo_on(s):
    s.sendall(h.pdata(3, h.echo_rq_command(2), True))
    t, body = h.read_pdu(s)
    return h.command_status(body) if t == 4 else None


def closed(s, timeout):
    """True when the node aborted (A-ABORT) or closed within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            t, _ = h.read_pdu(s, timeout)
            if t is None or t == 7:
                return True
    except OSError:
        return True


def healthy(c, node, what):
    r = subprocess.run(["echoscu", "-aec", node.aet, "127.0.0.1", str(node.port)],
                       capture_output=True, text=True, timeout=30)
    c.check(r.returncode == 0, "after %s: echoscu still answered" % what)


def main():
    c = cshelp.Checker()
    work = tempfile.mkdtemp(prefix="dimse-bad-", dir=h.WORK)
    try:
        with h.Node(work, "CONSILIUM", timeout=TIMEOUT) as node:
            run(c, node)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c.finish()


def run(c, node):
    good = os.path.join(h.DICOM, "693_UNCR.dcm")
    ds = pydicom.dcmread(good, stop_before_pixels=True)
    data = h.dataset_bytes(good)
    cmd = h.store_rq_command(CT, ds.SOPInstanceUID)

    # 1. drops half-way: command, then a P-DATA PDU cut off, then close
    s, t, body = connect(node)
    c.check(t == 2, "a valid A-ASSOCIATE-RQ is accepted")
    s.sendall(h.pdata(1, cmd, True))
    pdu = h.pdata(1, data[:60000], False)
    s.sendall(pdu[:20000])
    s.close()
    time.sleep(0.5)
    healthy(c, node, "a dropped association")
    c.check("did not arrive whole" in node.log_text(), "the drop is logged as such")

    # 2. stalls half-way: the node aborts after its timeout
    s, t, _ = connect(node)
    s.sendall(h.pdata(1, cmd, True))
    s.sendall(h.pdata(1, data[:30000], False, last=False))
    t0 = time.time()
    gone = closed(s, TIMEOUT + 10)
    c.check(gone and time.time() - t0 < TIMEOUT + 5,
            "a stalled sender is dropped after ~%d s (%.1f s)" % (TIMEOUT, time.time() - t0))
    s.close()

    # 2b. a C-FIND whose identifier never comes: dropped after the timeout
    find = "1.2.840.10008.5.1.4.1.2.2.1"
    s, t, _ = connect(node, [(1, find, [EXPLICIT])])
    s.sendall(h.pdata(1, h.command([(0x0002, h._uid(find)), (0x0100, struct.pack("<H", 0x20)),
                                    (0x0110, struct.pack("<H", 1)),
                                    (0x0700, struct.pack("<H", 0)),
                                    (0x0800, struct.pack("<H", 0))]), True))
    t0 = time.time()
    gone = closed(s, TIMEOUT + 10)
    c.check(gone and time.time() - t0 < TIMEOUT + 5,
            "a C-FIND without its identifier is dropped after ~%d s (%.1f s)"
            % (TIMEOUT, time.time() - t0))
    s.close()

    # 3. truncated dataset (complete PDUs, the last flag set, half the bytes)
    s, t, _ = connect(node)
    s.sendall(h.pdata(1, cmd, True))
    send_dataset(s, data[:(len(data) // 4) * 2])  # even: DIMSE takes it, the parser must not
    st, t = store_status(s)
    c.check(st is not None and st >= 0xA000, "a truncated dataset gets a failure status "
            "(0x%04x)" % (st or 0))
    c.check(echo_on(s) == 0, "the same association still answers C-ECHO")
    s.close()

    # 4. an element with a huge declared length (Pixel Data 0x7ffffff0)
    i = data.find(b"\xe0\x7f\x10\x00OW\x00\x00")
    c.check(i > 0, "found the Pixel Data element")
    bad = data[:i + 8] + struct.pack("<I", 0x7FFFFFF0) + data[i + 12:]
    s, t, _ = connect(node)
    s.sendall(h.pdata(1, cmd, True))
    send_dataset(s, bad)
    st, t = store_status(s)
    c.check(st is not None and st >= 0xA000, "a huge element length gets a failure status "
            "(0x%04x)" % (st or 0))
    s.close()

    # 5. the request names another instance than the dataset carries
    s, t, _ = connect(node)
    s.sendall(h.pdata(1, h.store_rq_command(CT, "1.2.3.4.5.6.7.8"), True))
    send_dataset(s, data)
    st, t = store_status(s)
    c.check(st == 0xA900, "a dataset/request mismatch gets 0xA900 (0x%04x)" % (st or 0))
    s.close()

    # 6. lying PDU lengths: a PDV longer than its PDU; a 4 GB PDU
    s, t, _ = connect(node)
    pdv = struct.pack(">IBB", 100000, 1, 1) + cmd
    s.sendall(struct.pack(">BBI", 4, 0, len(pdv)) + pdv)
    c.check(closed(s, TIMEOUT + 10), "a PDV longer than its PDU: the association is dropped")
    s.close()
    s, t, _ = connect(node)
    s.sendall(struct.pack(">BBI", 4, 0, 0xFFFFFFF0) + b"\0" * 4096)
    c.check(closed(s, TIMEOUT + 10), "a 4 GB P-DATA PDU: the association is dropped")
    s.close()
    healthy(c, node, "lying PDU lengths")

    # 7. unknown transfer syntax: alone it is rejected; beside Verification
    # its context alone is refused
    s, t, body = connect(node, [(1, CT, ["1.2.3.4.5.6.99"])])
    c.check(t == 3, "only an unknown transfer syntax: A-ASSOCIATE-RJ (PDU type %s)" % t)
    s.close()
    s, t, body = connect(node, [(1, CT, ["1.2.3.4.5.6.99"]), (3, VERIFY, [EXPLICIT])])
    res = ac_results(body) if t == 2 else {}
    c.check(t == 2 and res.get(1) == 4 and res.get(3) == 0,
            "beside Verification: that context refused as transfer-syntax-not-supported (%s)"
            % res)
    c.check(echo_on(s) == 0, "and Verification works")
    s.close()
    c.check("no presentation context we support" in node.log_text() and
            "1.2.3.4.5.6.99" in node.log_text(), "the refusal names the syntax in the log")

    # 8. garbage instead of an association request
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.check(closed(s, TIMEOUT + 10), "HTTP on the DICOM port is dropped")
    s.close()

    # 9. peers that connect and say nothing hold their own thread only
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(3)]
    time.sleep(0.3)
    t0 = time.time()
    healthy(c, node, "three silent connections")
    c.check(time.time() - t0 < 2.0, "echo answered in %.2f s while 3 peers stay silent"
            % (time.time() - t0))
    for s in silent:
        s.close()

    # the node still works: a good store right after all that
    time.sleep(0.5)
    healthy(c, node, "everything")
    r = subprocess.run(["storescu", "-aec", node.aet, "127.0.0.1", str(node.port), good],
                       capture_output=True, text=True, timeout=60)
    c.check(r.returncode == 0, "storescu stores a good file after all that")
    c.check(node.count() == 1, "exactly one instance indexed (%d)" % node.count())
    files = node.store_files()
    c.check(len(files) == 1, "exactly one file in the store (%s)" % files)
    deadline = time.time() + TIMEOUT + 5
    while node.tmp_files() and time.time() < deadline:
        time.sleep(0.2)
    c.check(node.tmp_files() == [], "the temp dir is empty (%s)" % node.tmp_files())
    fails = node.query("SELECT count(*) FROM audit WHERE code = '110104'")[0][0]
    c.check(fails == 1, "one 110104 audit record, for the good instance (%d)" % fails)


if __name__ == "__main__":
    main()
