"""Helpers for the live video tests: run `consilium stream` senders and
receivers as process groups with their output in files, read their JSON
stats lines, and always stop them."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cshelp  # noqa: E402
from cshelp import free_port  # noqa: E402,F401

BIN = cshelp.BIN
WORK = cshelp.WORK
SANITIZE = bool(os.environ.get("CS_SANITIZE"))
PASS = "consilium-test-pass"


def workdir(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def free_udp_port():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def srt_url(port, passphrase=PASS, latency_ms=20):
    return "srt://127.0.0.1:%d?mode=caller&passphrase=%s&latency=%d" % (
        port, passphrase, latency_ms * 1000)


class Proc:
    """`with Proc(dir, "name", ["stream", ...]) as p:` runs consilium with
    stdout in name.out and stderr in name.err; p.lines() are the JSON lines
    printed so far; p.kill(sig) and leaving the block stop it."""

    def __init__(self, d, name, args, env=None, exe=None):
        self.out = os.path.join(d, name + ".out")
        self.err = os.path.join(d, name + ".err")
        self.args = [exe or BIN] + args
        self.env = dict(os.environ, **(env or {}))
        self.p = None

    def __enter__(self):
        self.p = subprocess.Popen(self.args, stdout=open(self.out, "wb"),
                                  stderr=open(self.err, "wb"), env=self.env,
                                  start_new_session=True)
        return self

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGTERM):
        if self.p and self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=30):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.p.wait()
            raise

    def __exit__(self, *exc):
        if self.p and self.p.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.p.wait()

    def lines(self):
        out = []
        with open(self.out, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def last(self):
        ls = self.lines()
        return ls[-1] if ls else None

    def log(self):
        with open(self.err, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for(self, pred, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            if pred():
                return True
            if not self.alive():
                break
            time.sleep(0.1)
        print("timed out waiting for %s; log:\n%s" % (what, self.log()[-2000:]), flush=True)
        return False


def sender(d, name, port, extra=(), source="testsrc", size="640x360", bitrate="1M"):
    """A sender listening for SRT receivers on port (loopback latency 20 ms)."""
    return Proc(d, name, ["stream", "--source", source, "--size", size, "--bitrate", bitrate,
                          "--out", "srt://:%d" % port, "--passphrase", PASS,
                          "--latency", "20", "--stats", "-v"] + list(extra))


def receive(d, name, port, seconds, passphrase=PASS, timeout=None):
    """Run a command-line receiver for `seconds`; its summary and exit code."""
    with Proc(d, name, ["stream", "--source", srt_url(port, passphrase), "--passphrase",
                        passphrase, "--latency", "20", "--duration", str(seconds)]) as r:
        rc = r.wait(timeout or seconds + 30)
        last = r.last()
        return rc, (last if last and last.get("summary") else None), r.log()


def ffprobe(path_or_url, timeout=30):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of",
                          "json", path_or_url], capture_output=True, timeout=timeout)
    if out.returncode:
        return None, out.stderr.decode(errors="replace")
    return json.loads(out.stdout), ""
