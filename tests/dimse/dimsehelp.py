"""Helpers for the DICOM node tests: start `consilium serve` as a DICOM node
(own process group, own log), read its index, make CT series, and speak the
DICOM upper layer by hand for the hostile cases."""
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cshelp  # noqa: E402
from cshelp import free_port  # noqa: E402,F401

BIN = cshelp.BIN
WORK = cshelp.WORK
TESTDATA = cshelp.TESTDATA
DICOM = os.path.join(TESTDATA, "dicom")
LINKEMU = os.environ.get("CS_LINKEMU") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(BIN))), "bench", "linkemu", "cs-linkemu")
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.11"
JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"


class Node:
    """`with Node(workdir, "AET", config={...}) as n:` a DICOM node (and its
    HTTP server on a free port). n.port, n.store, n.db, n.log_text()."""

    def __init__(self, workdir, aet, config=None, timeout=None, port=None, name=None):
        self.name = name or aet.lower()
        self.dir = os.path.join(workdir, self.name)
        self.aet = aet
        self.config = config
        self.timeout = timeout
        self.port = port or free_port()
        self.store = os.path.join(self.dir, "store")
        self.db = os.path.join(self.dir, "node.db")
        self.proc = None

    def __enter__(self):
        os.makedirs(self.dir, exist_ok=True)
        args = [BIN, "serve", "--port", "0", "--token", "test-token", "--aet", self.aet,
                "--dicom-port", str(self.port), "--store", self.store, "--db", self.db]
        if self.config is not None:
            cfg = os.path.join(self.dir, "dicom.json")
            with open(cfg, "w") as f:
                json.dump(self.config, f)
            args += ["--dicom-config", cfg]
        if self.timeout:
            args += ["--dicom-timeout", str(self.timeout)]
        self.port_file = os.path.join(self.dir, "http.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        args += ["--port-file", self.port_file]
        self.logpath = os.path.join(self.dir, "node.log")
        self.log = open(self.logpath, "ab")
        self.log_start = self.log.tell()  # a restart appends: wait for this run's line
        env = dict(os.environ, CS_LOG=os.environ.get("CS_LOG", "info"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("node %s exited with %d:\n%s" % (self.aet, self.proc.returncode,
                                                                    self.log_text()[-2000:]))
            if ("dicom: %s on port" % self.aet) in self.log_text()[self.log_start:]:
                return self
            time.sleep(0.05)
        raise RuntimeError("node %s did not start" % self.aet)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return -9
        return self.proc.returncode if self.proc else 0

    def __exit__(self, *exc):
        rc = self.stop()
        self.log.close()
        if exc[0] is None and rc != 0:
            raise RuntimeError("node %s did not stop cleanly (exit %s):\n%s"
                               % (self.aet, rc, self.log_text()[-3000:]))

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def http_get(self, path):
        """GET @p path on the node's HTTP server (owner token): (status, body)."""
        import urllib.error
        import urllib.request
        deadline = time.time() + 10
        while not os.path.exists(self.port_file) and time.time() < deadline:
            time.sleep(0.05)
        with open(self.port_file) as f:
            port = int(f.read().strip())
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                     headers={"Authorization": "Bearer test-token"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    @property
    def peer(self):
        return "%s@127.0.0.1:%d" % (self.aet, self.port)

    def query(self, sql, args=()):
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def count(self, table="dicom_instances"):
        return self.query("SELECT count(*) FROM %s" % table)[0][0]

    def store_files(self):
        out = []
        for root, dirs, files in os.walk(self.store):
            dirs[:] = [d for d in dirs if d != ".tmp"]
            out += [os.path.join(root, f) for f in files if f.endswith(".dcm")]
        return sorted(out)

    def tmp_files(self):
        d = os.path.join(self.store, ".tmp")
        return os.listdir(d) if os.path.isdir(d) else []


def cli(*args, timeout=300, check=True):
    r = subprocess.run([BIN, "dicom"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("consilium dicom %s failed (%d): %s" % (args[0], r.returncode,
                                                                    r.stderr[-2000:]))
    return r


def find_json(r):
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def make_ct_series(outdir, n, src="693_UNCR.dcm", seed=1):
    """n 512x512 CT slices from one real slice: new Study/Series/SOP UIDs,
    each slice's pixels rolled and offset differently, Image Position and
    Instance Number set; uncompressed explicit VR little endian."""
    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    os.makedirs(outdir, exist_ok=True)
    base = pydicom.dcmread(os.path.join(DICOM, src))
    px = base.pixel_array.astype(np.int32)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        ds = base.copy()
        a = np.roll(px, shift=(3 * i) % 512, axis=1)
        a = np.roll(a, shift=(i * 7) % 64, axis=0)
        a = a + int(rng.integers(-20, 20))
        a = np.clip(a, 0 if base.PixelRepresentation == 0 else -32768,
                    65535 if base.PixelRepresentation == 0 else 32767)
        dt = np.uint16 if base.PixelRepresentation == 0 else np.int16
        ds.PixelData = a.astype(dt).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = 7
        ds.SeriesDescription = "generated CT %d slices" % n
        ds.ImagePositionPatient = [-250.0, -250.0, -100.0 + 1.25 * i]
        ds.SliceLocation = -100.0 + 1.25 * i
        ds.PatientID = "CS-DIMSE-%d" % seed
        ds.PatientName = "Test^Dimse%d" % seed
        ds.StudyDate = "2026%02d%02d" % (1 + seed % 12, 1 + seed % 28)
        ds.AccessionNumber = "ACC%d" % seed
        p = os.path.join(outdir, "ct%04d.dcm" % (i + 1))
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(p, write_like_original=False)
        paths.append(p)
    return study, series, paths


# ------------------------------------------------------------ upper layer

def _item(t, payload):
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def _uid(u):
    b = u.encode()
    return b + (b"\0" if len(b) % 2 else b"")


def associate_rq(called, calling, contexts, max_pdu=16384):
    """contexts: [(id, abstract, [ts...])]"""
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
    body += b"\0" * 32
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for pcid, abstract, tss in contexts:
        sub = struct.pack(">BBBB", pcid, 0, 0, 0) + _item(0x30, abstract.encode())
        for ts in tss:
            sub += _item(0x40, ts.encode())
        body += _item(0x20, sub)
    user = _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.9.7.1")
    body += _item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def _elem(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def command(fields):
    """Implicit VR LE command set from [(elem, bytes)], group length first."""
    body = b"".join(_elem(0, e, v) for e, v in fields)
    return _elem(0, 0, struct.pack("<I", len(body))) + body


def store_rq_command(sop_class, sop_uid, msg_id=1):
    return command([(0x0002, _uid(sop_class)), (0x0100, struct.pack("<H", 1)),
                    (0x0110, struct.pack("<H", msg_id)), (0x0700, struct.pack("<H", 0)),
                    (0x0800, struct.pack("<H", 0)), (0x1000, _uid(sop_uid))])


def echo_rq_command(msg_id=1):
    return command([(0x0002, _uid("1.2.840.10008.1.1")), (0x0100, struct.pack("<H", 0x30)),
                    (0x0110, struct.pack("<H", msg_id)), (0x0800, struct.pack("<H", 0x0101))])


def pdata(pcid, payload, is_command, last=True):
    hdr = (1 if is_command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(payload) + 2, pcid, hdr) + payload
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def read_pdu(sock, timeout=10):
    sock.settimeout(timeout)
    hdr = b""
    while len(hdr) < 6:
        chunk = sock.recv(6 - len(hdr))
        if not chunk:
            return None, b""
        hdr += chunk
    t, _, n = struct.unpack(">BBI", hdr)
    body = b""
    while len(body) < n:
        chunk = sock.recv(min(65536, n - len(body)))
        if not chunk:
            break
        body += chunk
    return t, body


def command_status(body):
    """Status (0000,0900) of the command PDV(s) in a P-DATA body."""
    off, data = 0, b""
    while off + 6 <= len(body):
        n, _, _ = struct.unpack(">IBB", body[off:off + 6])
        data += body[off + 6:off + 4 + n]
        off += 4 + n
    i = 0
    while i + 8 <= len(data):
        g, e, n = struct.unpack("<HHI", data[i:i + 8])
        if (g, e) == (0, 0x0900):
            return struct.unpack("<H", data[i + 8:i + 10])[0]
        i += 8 + n
    return None


def dataset_bytes(path):
    """The dataset of a Part 10 file (explicit VR little endian), no meta."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[128:132] == b"DICM"
    glen = struct.unpack("<I", raw[140:144])[0]
    return raw[144 + glen:]


def run_test(run, prefix):
    """Run @p run(checker, workdir) in a fresh folder under WORK, removed
    afterwards, then print the checker's summary (and exit with it)."""
    import shutil
    import tempfile
    c = cshelp.Checker()
    work = tempfile.mkdtemp(prefix=prefix, dir=WORK)
    try:
        run(c, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c.finish()
