"""Start and stop cs-linkemu from Python tests and benches.

    from linkemu import LinkEmu
    with LinkEmu(server_port, rate="4mbit", rtt="50ms") as link:
        url = "http://127.0.0.1:%d/..." % link.port   # goes through the link
        print(link.stats())                           # live counters (SIGUSR1)
    print(link.final)                                 # counters at exit

Add this folder to sys.path (os.path.join(CS_SRC, "bench", "linkemu")).
The binary is taken from the `binary` argument, else $CS_LINKEMU, else
build/dev/bench/linkemu/cs-linkemu under $CS_SRC (or the current directory).
"""
import json
import os
import signal
import subprocess
import tempfile
import time


def find_binary(binary=None):
    if binary:
        return binary
    if os.environ.get("CS_LINKEMU"):
        return os.environ["CS_LINKEMU"]
    src = os.environ.get("CS_SRC", os.getcwd())
    return os.path.join(src, "build", "dev", "bench", "linkemu", "cs-linkemu")


class LinkEmu:
    """Context manager running one cs-linkemu in front of 127.0.0.1:upstream_port.

    rate/rtt/loss/queue are passed as strings in cs-linkemu's units
    ("4mbit", "50ms", "1%", "64k"); None leaves the emulator's default.
    """

    def __init__(self, upstream_port, rate="4mbit", rtt="50ms", udp=False, loss=None,
                 queue=None, seed=None, overhead=None, binary=None, host="127.0.0.1",
                 workdir=None):
        self.binary = find_binary(binary)
        self.upstream = "%s:%d" % (host, upstream_port)
        self.host = host
        self.args = ["--rate", str(rate), "--rtt", str(rtt)]
        if udp:
            self.args.append("--udp")
        if loss is not None:
            self.args += ["--loss", str(loss)]
        if queue is not None:
            self.args += ["--queue", str(queue)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if overhead is not None:
            self.args += ["--overhead", str(overhead)]
        self.workdir = workdir or tempfile.gettempdir()
        self.proc = None
        self.port = None
        self.final = None
        self.returncode = None
        self.err_text = ""

    def __enter__(self):
        os.makedirs(self.workdir, exist_ok=True)
        fd, self.port_file = tempfile.mkstemp(prefix="linkemu-port-", dir=self.workdir)
        os.close(fd)
        os.unlink(self.port_file)
        self.out = tempfile.TemporaryFile(dir=self.workdir)
        self.err = tempfile.TemporaryFile(dir=self.workdir)
        cmd = [self.binary, "--listen", "%s:0" % self.host, "--connect", self.upstream,
               "--port-file", self.port_file, "--stats"] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cs-linkemu exited with %d: %s"
                                   % (self.proc.returncode, self.stderr()))
            if os.path.exists(self.port_file):
                self.port = int(open(self.port_file).read())
                os.unlink(self.port_file)
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("cs-linkemu did not start")

    def __exit__(self, *exc):
        self.stop()

    def stderr(self):
        if self.proc is None:
            return self.err_text
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def _lines(self):
        self.out.seek(0)
        return [json.loads(l) for l in self.out.read().decode().splitlines() if l.strip()]

    def stats(self, timeout=5):
        """Ask for the counters (SIGUSR1) and return them as a dict."""
        n = len(self._lines())
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + timeout
        while time.time() < deadline:
            lines = self._lines()
            if len(lines) > n:
                return lines[-1]
            time.sleep(0.01)
        raise RuntimeError("cs-linkemu did not answer SIGUSR1")

    def stop(self):
        """SIGTERM, wait; sets .returncode and .final (the exit counters)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        lines = [l for l in self._lines() if l.get("event") == "exit"]
        self.final = lines[-1] if lines else None
        self.err_text = self.stderr()
        self.proc = None
        self.out.close()
        self.err.close()
