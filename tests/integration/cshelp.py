"""Shared helpers for Consilium integration tests and benches.

Start the real `consilium serve` on 127.0.0.1 on a free port, talk to it
with the token, compare images. Run with Debian's /usr/bin/python3.
"""
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

BIN = os.environ.get("CS_BIN", "build/dev/core/consilium")
TESTDATA = os.environ.get("CS_TESTDATA", os.path.abspath("../shared/testdata"))
WORK = os.environ.get("CS_WORK", os.path.abspath("build/testwork"))
SRC = os.environ.get("CS_SRC", os.path.abspath("."))
os.makedirs(WORK, exist_ok=True)


class Server:
    """`with Server(paths, extra_args) as s:` starts consilium serve, stops it on exit.

    env: variables added to the server's environment (e.g. CS_LOG).
    """

    def __init__(self, paths, args=(), token="test-token", env=None):
        self.paths = list(paths)
        self.args = list(args)
        self.token = token
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None

    def __enter__(self):
        fd, pf = tempfile.mkstemp(prefix="port-", dir=WORK)
        os.close(fd)
        os.unlink(pf)
        self.log = open(os.path.join(WORK, "server-%d.log" % os.getpid()), "ab")
        cmd = [BIN, "serve", "--port", "0", "--port-file", pf, "--token", self.token]
        cmd += self.args + self.paths
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %d" % self.proc.returncode)
            if os.path.exists(pf) and open(pf).read().strip():
                self.port = int(open(pf).read())
                os.unlink(pf)
                break
            time.sleep(0.05)
        if not self.port:
            raise RuntimeError("server did not start")
        self.base = "http://127.0.0.1:%d" % self.port
        return self

    def __exit__(self, *exc):
        killed = False
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        self.log.close()
        # A clean stop exits 0; sanitizer reports (leaks included) do not.
        if exc[0] is None and (killed or self.proc.returncode != 0):
            tail = open(self.log.name, "rb").read()[-3000:].decode(errors="replace")
            raise RuntimeError("server did not stop cleanly (exit %s, killed %s):\n%s"
                               % (self.proc.returncode, killed, tail))

    def alive(self):
        return self.proc.poll() is None

    def get(self, path, token=True, headers=None):
        """GET; returns (status, headers, body bytes). Never raises on HTTP errors."""
        h = dict(headers or {})
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token:
            h["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.base + path, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, path):
        st, _, body = self.get(path)
        assert st == 200, (path, st, body)
        return json.loads(body)


def jpeg_to_array(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def luma(a):
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def psnr(a, b):
    mse = float(np.mean((luma(a) - luma(b)) ** 2))
    return 99.0 if mse < 1e-10 else 10 * np.log10(255.0 ** 2 / mse)


def best_shift(a, b):
    """PSNR of a vs b shifted by each of the 8 one-pixel moves; returns
    (best shift, its psnr, unshifted psnr)."""
    base = psnr(a, b)
    best = ((0, 0), base)
    h, w = a.shape[:2]
    if h < 8 or w < 8:
        return best[0], best[1], base
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            aa = a[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
            bb = b[1:h - 1, 1:w - 1]
            p = psnr(aa, bb)
            if p > best[1]:
                best = ((dx, dy), p)
    return best[0], best[1], base


def jpeg_roundtrip(arr, quality):
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return jpeg_to_array(buf.getvalue())


class Checker:
    """Counts checks; prints 'N passed, N failed' at the end like other runners."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + what, flush=True)
        return cond

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed or not self.passed else 0)


def free_port():
    """A TCP port free on 127.0.0.1 now (for servers that cannot write a
    port file; the race with other processes is accepted in tests)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Orthanc:
    """`with Orthanc(workdir, aet=..., modalities={...}, plugins=("dicomweb",))`:
    Debian's Orthanc on free ports with its own config and storage, stopped
    on exit. TCP_NODELAY=1 is set for its DCMTK network layer."""

    PLUGINS = {"dicomweb": "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
               "gdcm": "/usr/share/orthanc/plugins/libOrthancGdcm.so"}

    def __init__(self, workdir, aet="ORTHANC", modalities=None, plugins=()):
        self.dir = os.path.join(workdir, "orthanc-%d" % os.getpid())
        self.aet = aet
        self.modalities = modalities or {}
        self.plugins = plugins
        self.proc = None

    def __enter__(self):
        os.makedirs(self.dir, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        conf = {
            "Name": "consilium-test", "StorageDirectory": os.path.join(self.dir, "db"),
            "IndexDirectory": os.path.join(self.dir, "db"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "HttpServerEnabled": True,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowEcho": True, "StableAge": 1, "ConcurrentJobs": 2,
            "Plugins": [self.PLUGINS[p] for p in self.plugins],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        cfg = os.path.join(self.dir, "orthanc.json")
        with open(cfg, "w") as f:
            json.dump(conf, f)
        self.log = open(os.path.join(self.dir, "orthanc.log"), "ab")
        env = dict(os.environ, TCP_NODELAY="1")
        self.proc = subprocess.Popen(["Orthanc", cfg], stdout=self.log, stderr=self.log, env=env,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited with %d (see %s)" % (self.proc.returncode,
                                                                         self.log.name))
            try:
                self.rest("GET", "/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def rest(self, method, path, data=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                     data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def upload(self, path):
        with open(path, "rb") as f:
            return self.rest("POST", "/instances", f.read())


# storescu's option proposing a compressed transfer syntax (it proposes only
# uncompressed ones unless told).
STORESCU_TS = {"1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx",
               "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.80": "-xt",
               "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.90": "-xv",
               "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr"}


def storescu(files, port, aec="CONSILIUM", aet="STORESCU", timeout=300):
    """Send @p files with DCMTK's storescu, one association per transfer
    syntax, proposing each file's own syntax. Returns (ok, stderr)."""
    import pydicom
    groups = {}
    for f in files:
        ts = str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(STORESCU_TS.get(ts, ""), []).append(f)
    err = ""
    for opt, group in groups.items():
        cmd = ["storescu", "-aet", aet, "-aec", aec] + ([opt] if opt else [])
        r = subprocess.run(cmd + ["127.0.0.1", str(port)] + group, capture_output=True,
                           text=True, timeout=timeout)
        err += r.stderr
        if r.returncode != 0 or "E: " in r.stderr:
            return False, err
    return True, err
