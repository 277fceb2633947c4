#!/usr/bin/env python3
"""bench/plugins: plugbench once idle and once while wrk loads tiles from a
real `consilium serve synthetic:40000x30000`; prints both as one JSON object.

usage: run.py PLUGBENCH CONSILIUM [--events N] [--latency N] [--seconds S]
"""
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def plugbench(exe, events, latency):
    out = subprocess.run([exe, "--events", str(events), "--latency", str(latency)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    pb, cs = args[0], args[1]
    opts = {"--events": 1000000, "--latency": 10000, "--seconds": 0}
    for i in range(2, len(args) - 1, 2):
        opts[args[i]] = int(args[i + 1])
    events, latency = opts["--events"], opts["--latency"]

    result = {"idle": plugbench(pb, events, latency)}

    token = "bench-plugins"
    port = free_port()
    work = tempfile.mkdtemp(prefix="cs-bench-plugins-")
    srv = subprocess.Popen([cs, "serve", "synthetic:40000x30000", "--port", str(port),
                            "--token", token],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    wrk = None
    try:
        base = "http://127.0.0.1:%d" % port
        for _ in range(100):
            try:
                slides = json.loads(get(base + "/slides", token))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        sid = slides["slides"][0]["id"]
        dzi = get(base + "/slides/%s.dzi" % sid, token).decode()
        ts = int(re.search(r'TileSize="(\d+)"', dzi).group(1))
        w, h = 40000, 30000
        top = (max(w, h) - 1).bit_length()
        rnd = random.Random(1)
        paths = []
        for level in range(top - 4, top + 1):  # the five deepest levels: decode + resample
            scale = 2 ** (top - level)
            cols, rows = -(-w // scale // ts), -(-h // scale // ts)
            for _ in range(4000):
                paths.append("/slides/%s_files/%d/%d_%d.jpeg" % (sid, level, rnd.randrange(cols),
                                                                rnd.randrange(rows)))
        script = os.path.join(work, "tiles.lua")
        with open(script, "w") as f:
            f.write("local paths = {%s}\nlocal i = 0\n" % ",".join('"%s"' % p for p in paths))
            f.write('wrk.headers["Authorization"] = "Bearer %s"\n' % token)
            f.write("request = function()\n  i = i %% %d + 1\n"
                    "  return wrk.format(nil, paths[i])\nend\n" % len(paths))
        secs = opts["--seconds"] or 30  # must outlast plugbench under load
        wrk = subprocess.Popen(["wrk", "-t2", "-c8", "-d%ds" % secs, "-s", script, base + "/"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2)  # let the load settle
        t0 = time.time()
        result["under_tile_load"] = plugbench(pb, events, latency)
        if time.time() - t0 > secs - 2:
            print("warning: plugbench outlasted the tile load; raise --seconds", file=sys.stderr)
        out = wrk.communicate(timeout=secs + 60)[0]
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        result["tile_load"] = {"wrk": "-t2 -c8, 5 deepest levels, random tiles",
                               "requests_per_s": float(m.group(1)) if m else None}
    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
            wrk.wait()
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    print(json.dumps(result, indent=1))
    ok = all(r["events_per_s"] >= 100000 and r["latency_p99_us"] <= 1000
             for r in (result["idle"], result["under_tile_load"]))
    print("targets (>= 100000 events/s, p99 <= 1 ms): idle %s, under load %s" % (
        "met" if result["idle"]["events_per_s"] >= 100000 and result["idle"]["latency_p99_us"] <= 1000 else "MISSED",
        "met" if ok else "see figures"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
