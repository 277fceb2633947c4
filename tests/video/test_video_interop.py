"""Live video against real peers on loopback: ffprobe, ffmpeg and
gst-launch-1.0 receive our SRT stream; four of our receivers at once see
their first frame within 1 s; every recording segment passes ffprobe,
decodes and verifies (hashes, chain); after kill -9 of the recorder every
finished segment still verifies and plays; tampering is caught."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import videohelp as vh  # noqa: E402
from cshelp import Checker  # noqa: E402

c = Checker()
d = vh.workdir("video_interop")
rec = os.path.join(d, "rec")
port = vh.free_port()


def verify(folder):
    out = subprocess.run([vh.BIN, "recording", "verify", folder], capture_output=True,
                         timeout=60)
    rep = json.loads(out.stdout) if out.stdout.strip() else {}
    return out.returncode, rep, out.stderr.decode(errors="replace")


with vh.sender(d, "sender", port, ["--record", rec, "--segment", "2"], size="1280x720",
               bitrate="2M") as s:
    c.check(s.wait_for(lambda: "source testsrc" in s.log(), 30, "the sender to start"),
            "sender started")
    url = vh.srt_url(port)

    # ffprobe reads the stream: codec, size, rate
    info, err = vh.ffprobe(url)
    st = (info or {}).get("streams", [{}])[0]
    c.check(st.get("codec_name") == "h264", "ffprobe: codec h264 (%s %s)" % (st.get("codec_name"),
                                                                          err[-300:]))
    c.check((st.get("width"), st.get("height")) == (1280, 720),
            "ffprobe: 1280x720 (%s x %s)" % (st.get("width"), st.get("height")))
    c.check(st.get("r_frame_rate") in ("30/1", "60/2"), "ffprobe: 30 fps (%s)" %
            st.get("r_frame_rate"))

    # ffmpeg receives and decodes 30 frames
    t0 = time.time()
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-frames:v", "30", "-f",
                          "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True, timeout=60)
    c.check(out.returncode == 0 and len(out.stdout) == 30 * 1280 * 720 * 3 // 2,
            "ffmpeg decoded 30 frames (%d bytes, rc %d, %s)" %
            (len(out.stdout), out.returncode, out.stderr.decode(errors="replace")[-300:]))
    print("ffmpeg: 30 frames in %.2f s" % (time.time() - t0))

    # GStreamer receives it (srtsrc, tsdemux, avdec_h264)
    gst = shutil.which("gst-launch-1.0")
    if c.check(gst is not None, "gst-launch-1.0 installed"):
        pipe = ("srtsrc uri=\"srt://127.0.0.1:%d?mode=caller\" passphrase=%s latency=20 ! "
                "tsdemux ! h264parse ! avdec_h264 ! fakesink num-buffers=30" % (port, vh.PASS))
        out = subprocess.run([gst, "-q"] + pipe.split(), capture_output=True, timeout=60)
        c.check(out.returncode == 0, "gst-launch-1.0 decoded 30 frames (rc %d: %s)" %
                (out.returncode, (out.stdout + out.stderr).decode(errors="replace")[-400:]))

    # four receivers at once, each with its own stream from a keyframe
    results = [None] * 4

    def rx(i):
        results[i] = vh.receive(d, "rx%d" % i, port, 4)

    ts = [threading.Thread(target=rx, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i, (rc, summ, log) in enumerate(results):
        if not c.check(rc == 0 and summ, "receiver %d got frames (rc %d: %s)" %
                       (i, rc, log[-300:])):
            continue
        print("receiver %d: %s" % (i, json.dumps(summ)))
        c.check(summ["first_frame_ms"] < 1000, "receiver %d: first frame in %d ms (< 1000)" %
                (i, summ["first_frame_ms"]))
        c.check(summ["stamped"] == summ["frames"] and summ["frames"] >= 90,
                "receiver %d: every frame carries its capture time (%d of %d)" %
                (i, summ["stamped"], summ["frames"]))
        bound = 400 if vh.SANITIZE else 200
        c.check(0 < summ["latency_ms"]["p50"] < bound,
                "receiver %d: capture-to-decoded p50 %.1f ms (< %d on loopback)" %
                (i, summ["latency_ms"]["p50"], bound))
    stats = [x for x in s.lines() if "receivers" in x]
    c.check(any(x["receivers"] >= 4 for x in stats), "the sender counted 4 receivers at once")

    # a joiner passes from the join bridge's stream to the shared one at
    # its keyframe: ffmpeg decodes 100 frames (over 3 s, a GOP is 2 s)
    # without an error, one frame time apart, with no frame twice or missing
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-frames:v", "100", "-f",
                          "framemd5", "-"], capture_output=True, timeout=60)
    rows = [x.split(",") for x in out.stdout.decode().splitlines() if x[:1].isdigit()]
    pts = [int(r[2]) for r in rows]
    tb = [x for x in out.stdout.decode().splitlines() if x.startswith("#tb")]
    steps = sorted(set(b - a for a, b in zip(pts, pts[1:])))
    c.check(out.returncode == 0 and not out.stderr.strip() and len(rows) == 100,
            "a joiner decodes 100 frames across the switch with no error (%d frames, rc %d: %s)"
            % (len(rows), out.returncode, out.stderr.decode(errors="replace")[-300:]))
    c.check(len(steps) == 1, "... each one frame after the last (pts steps %s, %s)" %
            (steps, tb))
    # the joins cost the shared stream nothing: it keeps its GOP
    st = s.lines()[-1]
    keyint = 60
    print("sender: %d frames, %d keyframes, %d receivers joined through the bridge" %
          (st["frames"], st["keyframes"], st["bridged"]))
    c.check(st["bridged"] >= 4, "joiners were served by the join bridge (%d)" % st["bridged"])
    c.check(st["keyframes"] <= st["frames"] // keyint + 1,
            "no keyframe forced into the shared stream for %d joins: %d keyframes in %d frames"
            % (st["bridged"], st["keyframes"], st["frames"]))

    # let the recorder finish a few segments, then kill -9 it mid-segment
    c.check(s.wait_for(lambda: len([f for f in os.listdir(rec) if f.endswith(".mp4")]) >= 3, 30,
                       "3 segments"), "3 segments recorded")
    time.sleep(0.7)
    s.kill(signal.SIGKILL)
    s.wait()

segs = sorted(f for f in os.listdir(rec) if f.endswith(".mp4"))
parts = [f for f in os.listdir(rec) if f.endswith(".part")]
print("after kill -9: %d segments, unfinished: %s" % (len(segs), parts))
rc, rep, err = verify(rec)
c.check(rc == 0 and rep.get("segments") == len(segs) and not rep.get("problems"),
        "every finished segment verifies after kill -9 (rc %d, %s)" % (rc, err[-400:]))
c.check(rep.get("partial") == parts, "the unfinished segment is reported as partial")
for f in segs:
    p = os.path.join(rec, f)
    info, err = vh.ffprobe(p)
    st = (info or {}).get("streams", [{}])[0]
    dur = float((info or {}).get("format", {}).get("duration", 0))
    c.check(st.get("codec_name") == "h264" and st.get("width") == 1280 and 1.5 <= dur <= 4.5,
            "%s: ffprobe h264 1280x720, %.2f s (%s)" % (f, dur, err[-200:]))
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", p, "-f", "null", "-"],
                         capture_output=True, timeout=60)
    c.check(out.returncode == 0 and not out.stderr.strip(),
            "%s plays (decodes without errors: %s)" % (f, out.stderr.decode()[-200:]))
    # the recording is the shared stream: one keyframe per 2-s GOP, none
    # forced in for the receivers that joined meanwhile
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "frame=key_frame", "-of", "csv=p=0", p], capture_output=True,
                         timeout=60)
    keys = [x.split(",")[0] for x in out.stdout.decode().split()]
    c.check(keys and keys[0] == "1" and keys.count("1") == (len(keys) + 59) // 60,
            "%s: %d keyframes in %d frames" % (f, keys.count("1"), len(keys)))
with open(os.path.join(rec, "manifest.jsonl")) as f:
    entries = [json.loads(x) for x in f if x.strip()]
c.check(all(e["retain_until"][:4] == str(int(e["start"][:4]) + 10) for e in entries),
        "each segment carries a retention date 10 years on")

# a restarted recorder continues the chain
with vh.Proc(d, "again", ["stream", "--source", "testsrc", "--size", "640x360", "--record", rec,
                          "--segment", "1", "--duration", "3"]) as s2:
    s2.wait(60)
rc, rep, err = verify(rec)
with open(os.path.join(rec, "manifest.jsonl")) as f:
    entries2 = [json.loads(x) for x in f if x.strip()]
c.check(rc == 0 and len(entries2) > len(entries) and
        entries2[len(entries)]["prev"] == entries[-1]["hash"] and
        entries2[len(entries)]["seq"] == entries[-1]["seq"] + 1,
        "a restarted recorder continues the chain (rc %d, %s)" % (rc, err[-300:]))



def ts_pcr_margins(data):
    """DTS (else PTS) minus PCR, in ms, of every video PES that starts in a
    TS packet carrying a PCR: the decoder buffer delay a T-STD receiver
    schedules by."""
    out = []
    for i in range(0, len(data) - 187, 188):
        b = data[i:i + 188]
        if b[0] != 0x47 or not b[3] & 0x20 or b[4] == 0 or not b[5] & 0x10:
            continue
        pcr = (b[6] << 25) | (b[7] << 17) | (b[8] << 9) | (b[9] << 1) | (b[10] >> 7)
        p = 5 + b[4]
        if not b[1] & 0x40 or b[p:p + 3] != b"\0\0\1" or b[p + 3] & 0xF0 != 0xE0:
            continue
        flags, q = b[p + 7] >> 6, p + 9 + (5 if b[p + 7] >> 6 == 3 else 0)
        if flags < 2:
            continue
        t = ((b[q] >> 1) & 7) << 30 | b[q + 1] << 22 | (b[q + 2] >> 1) << 15 | b[q + 3] << 7 | \
            b[q + 4] >> 1
        out.append((t - pcr) / 90.0)
    return out


# MPEG-TS timing a hardware decoder or a videoconference gateway can follow:
# each frame's DTS lies ahead of the PCR by more than the 2-frame VBV buffer.
# Raw TS from our UDP output (the same muxer settings as SRT).
import socket  # noqa: E402
us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
us.bind(("127.0.0.1", 0))
us.settimeout(5)
raw = b""
with vh.Proc(d, "udp", ["stream", "--source", "testsrc", "--size", "640x360", "--out",
                        "udp://127.0.0.1:%d?pkt_size=1316" % us.getsockname()[1],
                        "--duration", "3"]) as su:
    try:
        while len(raw) < 400000:
            raw += us.recv(65536)
    except socket.timeout:
        pass
    su.wait(30)
us.close()
m = ts_pcr_margins(raw)
print("DTS ahead of PCR: %d frames, min %.1f ms" % (len(m), min(m) if m else -1))
c.check(len(m) >= 3 and min(m) >= 67,
        "every PCR-stamped frame's DTS is >= 67 ms ahead of the PCR (%d frames, %s ms)" %
        (len(m), sorted(set(round(x) for x in m))[:5]))

# tampering is found
t = os.path.join(d, "tampered")


def tampered(how):
    shutil.rmtree(t, ignore_errors=True)
    shutil.copytree(rec, t)
    how()
    return verify(t)


def flip_byte():
    p = os.path.join(t, entries[0]["file"])
    with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def edit_line():
    p = os.path.join(t, "manifest.jsonl")
    lines = open(p).read().splitlines()
    e = json.loads(lines[1])
    e["frames"] += 1
    lines[1] = json.dumps(e, sort_keys=True, separators=(",", ":"))
    open(p, "w").write("\n".join(lines) + "\n")


def drop_line():
    p = os.path.join(t, "manifest.jsonl")
    lines = open(p).read().splitlines()
    open(p, "w").write("\n".join(lines[:1] + lines[2:]) + "\n")
    os.unlink(os.path.join(t, entries[1]["file"]))


def extra_segment():
    shutil.copy(os.path.join(t, entries[0]["file"]), os.path.join(t, "seg-999999-x.mp4"))


for name, how, want in (("a flipped byte", flip_byte, "SHA-256 differs"),
                        ("an edited manifest line", edit_line, "hash does not match"),
                        ("a removed segment and line", drop_line, "chain is broken"),
                        ("an unlisted segment", extra_segment, "does not list")):
    rc, rep, err = tampered(how)
    c.check(rc == 1 and want in err, "%s is found (rc %d: %s)" % (name, rc, err.strip()[-300:]))

out = subprocess.run([vh.BIN, "recording", "verify", os.path.join(d, "nothing")],
                     capture_output=True, timeout=30)
c.check(out.returncode == 2 and b"manifest" in out.stderr,
        "a folder without a manifest: exit 2 with a message (%s)" % out.stderr.decode().strip())
c.finish()
