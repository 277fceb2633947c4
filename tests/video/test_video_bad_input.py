"""Bad input on the live video path. A relay (`consilium stream --source
udp://... --out srt://:P`) takes an upstream sender's MPEG-TS; a receiver
watches the relay throughout. The upstream stalls (SIGSTOP), comes back,
dies (SIGKILL), is replaced by garbage datagrams, then returns: the relay's
output never stops (freeze, then the SOURCE LOST slate), it recovers each
time and logs one line per event. A source that changes resolution
mid-stream is scaled to the output size. A receiver with a wrong
passphrase is refused while another is served without a gap."""
import os
import random
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import videohelp as vh  # noqa: E402
from cshelp import Checker  # noqa: E402

c = Checker()
d = vh.workdir("video_bad_input")
udp = vh.free_udp_port()
port = vh.free_port()
slow = 2 if vh.SANITIZE else 1


def upstream(name, size="640x360"):
    return vh.Proc(d, name, ["stream", "--source", "testsrc", "--size", size, "--bitrate", "1M",
                             "--keyint", "15", "--no-encryption",
                             "--out", "udp://127.0.0.1:%d?pkt_size=1316" % udp])


def relay_stats(r):
    return [x for x in r.lines() if "source" in x and not x.get("summary")]


def state(r):
    st = relay_stats(r)
    return st[-1]["source"]["state"] if st else None


def watcher(name, seconds, passphrase=vh.PASS):
    return vh.Proc(d, name, ["stream", "--source", vh.srt_url(port, passphrase), "--passphrase",
                             passphrase, "--latency", "20", "--duration", str(seconds),
                             "--stats"])


def fps_lines(w):
    return [x["fps"] for x in w.lines() if "fps" in x and not x.get("summary")]


relay_args = ["stream", "--source", "udp://127.0.0.1:%d" % udp, "--size", "640x360",
              "--bitrate", "1M", "--out", "srt://:%d" % port, "--passphrase", vh.PASS,
              "--latency", "20", "--stats", "-v"]
with vh.Proc(d, "relay", relay_args) as relay, upstream("up1") as up:
    c.check(relay.wait_for(lambda: state(relay) == "live", 30, "the relay to go live"),
            "relay live on the upstream")
    with watcher("watch", 40 * slow) as w:
        c.check(w.wait_for(lambda: len(fps_lines(w)) >= 2, 20, "the watcher"), "watcher receiving")

        # stall: no data, the process still there
        up.kill(signal.SIGSTOP)
        c.check(relay.wait_for(lambda: state(relay) == "lost", 15, "stall detected"),
                "a stalled source is called lost")
        time.sleep(1)
        up.kill(signal.SIGCONT)
        c.check(relay.wait_for(lambda: state(relay) == "live", 15, "recovery after stall"),
                "the relay recovers when the stalled source resumes")

        # death
        up.kill(signal.SIGKILL)
        up.wait()
        c.check(relay.wait_for(lambda: state(relay) == "lost", 15, "death detected"),
                "a dead source is called lost")

        # garbage instead of MPEG-TS
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rnd = random.Random(7)
        end = time.time() + 2
        while time.time() < end:
            s.sendto(bytes(rnd.getrandbits(8) for _ in range(1316)), ("127.0.0.1", udp))
            time.sleep(0.002)
        s.close()
        c.check(relay.alive(), "the relay survives garbage datagrams")

        # the source returns
        with upstream("up2"):
            c.check(relay.wait_for(lambda: state(relay) == "live", 20, "recovery"),
                    "the relay recovers when the source returns")
            time.sleep(2)
            n_before = len(fps_lines(w))

            # a receiver with the wrong passphrase is refused; the watcher is not disturbed
            t0 = time.time()
            rc, summ, log = vh.receive(d, "intruder", port, 2, passphrase="wrong-passphrase-1")
            c.check(rc != 0 and summ is None and "refused" in log and "wrong-passphrase" not in log,
                    "a wrong passphrase is refused with a clear error that hides it (rc %d: %s)" %
                    (rc, log.strip()[-300:]))
            c.check(time.time() - t0 < 30, "the refused receiver does not hang")
            time.sleep(1)
            during = fps_lines(w)[n_before:]
            c.check(during and min(during) >= 20,
                    "the watcher kept ~30 fps while the intruder was refused (%s)" % during)
        w.wait(60 * slow)
        fps = fps_lines(w)
        summ = w.last()
    # the output never stopped: every full second of the watch had frames
    inner = fps[1:-1]
    c.check(inner and min(inner) >= 15,
            "the relay's output never stopped: fps per second min %.1f over %d s (%s)" %
            (min(inner) if inner else 0, len(inner), [round(x) for x in inner]))
    last = relay_stats(relay)[-1]
    c.check(last["freeze_frames"] > 0 and last["slate_frames"] > 0,
            "freeze, then slate frames were sent (%d freeze, %d slate)" %
            (last["freeze_frames"], last["slate_frames"]))
    log = relay.log()
    lost = log.count(" lost: ")
    back = log.count("back after")
    print("relay log:\n" + log[-3000:])
    c.check(2 <= lost <= 3 and back >= 2,
            "one line per loss and per recovery (%d lost, %d back)" % (lost, back))
    retry = log.count("retrying")
    c.check(retry <= 3, "retries are not logged over and over (%d lines)" % retry)

# a source that changes resolution mid-stream (one file: 640x360, then 1280x720)
a, b, ab = (os.path.join(d, x) for x in ("a.ts", "b.ts", "ab.ts"))
for out, size in ((a, "640x360"), (b, "1280x720")):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=%s:rate=30" % size, "-t", "3", "-c:v", "libx264", "-g", "15",
                    "-pix_fmt", "yuv420p", out], check=True, timeout=120)
with open(ab, "wb") as f:
    f.write(open(a, "rb").read() + open(b, "rb").read())
port2 = vh.free_port()
with vh.Proc(d, "resize", ["stream", "--source", ab, "--size", "640x360", "--bitrate", "1M",
                           "--out", "srt://:%d" % port2, "--passphrase", vh.PASS, "--latency",
                           "20", "--stats", "-v", "--duration", str(12 * slow)]) as r:
    rc, summ, log = vh.receive(d, "resize_rx", port2, 8 * slow)
    r.wait(60)
    c.check(rc == 0 and summ and (summ["width"], summ["height"]) == (640, 360) and
            summ["frames"] >= 200 * slow,
            "the output keeps its size across the change (%s)" % summ)
    c.check("size changed from 640x360 to 1280x720" in r.log(),
            "the change is logged: %s" % [x for x in r.log().splitlines() if "size" in x])

# a source that is not there at all: the output runs on the slate
port3 = vh.free_port()
with vh.Proc(d, "dead", ["stream", "--source", "udp://127.0.0.1:%d" % vh.free_udp_port(),
                         "--size", "640x360", "--out", "srt://:%d" % port3, "--passphrase",
                         vh.PASS, "--latency", "20", "--stats", "-v"]) as r:
    rc, summ, log = vh.receive(d, "dead_rx", port3, 3)
    c.check(rc == 0 and summ and summ["frames"] >= 60,
            "a missing source still gives receivers the slate (%s %s)" % (summ, log[-200:]))
    c.check(r.wait_for(lambda: state(r) == "lost", 20, "the dead source to be called lost"),
            "its stats call the source lost once its open times out")
    st = relay_stats(r)
    c.check(st and st[-1]["slate_frames"] > 0 and "no stream information" in
            st[-1]["source"]["error"], "and count slate frames, with the reason (%s)" %
            (st[-1]["source"] if st else None))

def pipe_stream(name, fps_in, nf, extra=(), pause=None, scale=180):
    """Writes nf flat frames to a raw-video pipe source at fps_in, in real
    time, each frame's luma telling the time it is written (40 + scale t);
    pause=(k, s) waits s seconds before frame k. The output records at 30
    fps. Returns (process, stderr, frames), frames being [(pts seconds,
    keyframe, mean luma)] over the recording's segments."""
    rec = os.path.join(d, name)
    w, h = 320, 240
    args = [vh.BIN, "stream", "--source-format", "rawvideo", "--source-opts",
            "video_size=%dx%d:pixel_format=yuv420p:framerate=%d" % (w, h, fps_in),
            "--source", "pipe:0", "--size", "%dx%d" % (w, h), "--fps", "30", "--record", rec,
            "--duration", "4"] + list(extra)
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    t0 = time.monotonic()
    for k in range(nf):
        t = k / fps_in + (pause[1] if pause and k >= pause[0] else 0)
        time.sleep(max(0, t0 + t - time.monotonic()))
        p.stdin.write(bytes([40 + round(scale * t)]) * (w * h) + bytes([128]) * (w * h // 2))
        p.stdin.flush()
    p.stdin.close()
    err = p.stderr.read().decode(errors="replace")
    p.wait(60)
    segs = sorted(os.path.join(rec, f) for f in os.listdir(rec) if f.endswith(".mp4")) \
        if os.path.isdir(rec) else []
    frames = []
    for s in segs:
        r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "frame=pts_time,key_frame", "-of", "csv=p=0", s],
                           capture_output=True, text=True, timeout=60)
        pix = subprocess.run(["ffmpeg", "-v", "error", "-i", s, "-fps_mode", "passthrough", "-f",
                              "rawvideo", "-pix_fmt", "yuv420p", "-"],
                             capture_output=True, timeout=60).stdout
        for i, line in enumerate(r.stdout.split()):
            key, t = line.split(",")[:2]
            y = pix[i * w * h * 3 // 2:][:w * h]
            frames.append((float(t), key == "1", sum(y[::97]) / len(y[::97]) if y else -1))
    return p, err, frames


# raw video on a pipe that ends: nothing probed away (the recording starts
# with the first frame written), and its end is one log line, not a line
# per reopening of a pipe at its end
out, err, fr = pipe_stream("piperec", 30, 30, ["--segment", "1"])
luma = fr[0][2] if fr else -1
c.check(out.returncode == 0 and abs(luma - 40) < 1,
        "a raw pipe source keeps its first frame: the recording starts at luma %.1f (40: frame 0,"
        " 46: frame 1; rc %d %s)" % (luma, out.returncode, err[-200:]))
lost = err.count("lost:")
c.check(lost == 1, "the pipe's end is logged once (%d lines)" % lost)

# sources at another rate than the output's: frames take their place by
# their timestamps (a 60 fps source loses every other frame, a 20 fps one
# leaves gaps), so each frame is shown at the time it was taken, and the
# keyframes stay one GOP (--keyint 10: a third of a second) apart in time
for fps_in in (60, 20):
    out, err, fr = pipe_stream("rate%d" % fps_in, fps_in, fps_in, ["--keyint", "10"])
    real = fr[:1]  # the source's frames: until the freeze and the slate
    for f in fr[1:]:
        if f[2] <= real[-1][2] + 2:
            break
        real.append(f)
    off = [abs((f[0] - real[0][0]) - (f[2] - 40) / 180) for f in real]
    # a slow (sanitized) build may drop a few frames late at the start:
    # they leave gaps; the frames kept must still be at their times
    c.check(out.returncode == 0 and len(real) >= 0.8 * min(fps_in, 30) and max(off) < 0.025,
            "a %d fps source at 30 fps: %d frames, each at its time (worst %.3f s off; rc %d %s;"
            " %s)" % (fps_in, len(real), max(off) if off else -1, out.returncode, err[-200:],
                      [(round(t, 3), round(y)) for t, _, y in fr[:40]]))
    keys = [round(f[0] - real[0][0], 3) for f in real if f[1]]
    late = [(k * 3 - int(k * 3 + 0.01)) / 3 for k in keys]  # after each 1/3 s
    c.check(len(keys) >= 3 and max(late) < 1 / fps_in + 0.005,
            "a %d fps source's keyframes fall every 1/3 s, at the first frame: %s"
            % (fps_in, keys))

# a source that stalls for 1.5 s (frames 0-14 from 0 s, 15-29 from 2 s):
# the freeze (and slate) frames take the slots of the stall, so the first
# frame after it is recorded at the time it was taken, not 0.5 s early (the
# freeze starts stall_ms after the last frame), and a receiver that plays
# by the pts does not fall behind by that much at each stall
out, err, fr = pipe_stream("pause", 30, 30, pause=(15, 1.5), scale=80)
after = [f for f in fr if abs(f[2] - 200) < 1.5]  # frame 15, written at 2 s: luma 40 + 80 * 2
t_after = after[0][0] - fr[0][0] if after and fr else -1
c.check(out.returncode == 0 and abs(t_after - 2) < 0.05,
        "after a 1.5 s stall the source's next frame is recorded at %.3f s, the time it was"
        " written (2 s; rc %d %s; %s)" % (t_after, out.returncode, err[-200:],
                                          [(round(t, 3), round(y)) for t, _, y in fr[:60]]))
c.finish()
