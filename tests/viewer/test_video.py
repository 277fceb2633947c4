"""consilium-view --video, headless, against a real `consilium stream` sender.

Starts `consilium stream --source testsrc --out srt://:PORT --latency 20
--record DIR --segment 2` on a free port (stopped at the end, also on
failure) and runs the headless viewer against it:
  - live: --screenshot after 60 frames shows the test pattern (mean and
    spread of the pixels, the colour bars there), first_frame_ms < 1000,
    capture-to-display latency p50 < 200 ms on loopback, 1280x720;
  - a wrong passphrase: non-zero exit, a message naming the passphrase as a
    cause, a SOURCE LOST state in the JSON, all within a few seconds; the
    passphrase never appears in the output;
  - recording playback: a finished segment opened as a file, a --script
    seeks (the position printed moves to the target), pauses, seeks while
    paused and clicks in the progress bar; the screenshot after the seek is
    not black;
  - side by side: the local CMU-1-Small-Region.svs slide with the live video
    (passphrase from CS_SRT_PASSPHRASE): both parts of the screenshot have
    content;
  - a missing file and bad options fail cleanly.

Runs with SDL_VIDEODRIVER=dummy and no DISPLAY. Under CS_SANITIZE the
waits are longer and the time limits looser. Prints "N passed, N failed".
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("CS_SRC", "."), "tests", "integration"))
import cshelp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

VIEW = os.environ.get("CS_VIEW", "build/dev/viewer/consilium-view")
CMU = os.path.join(cshelp.TESTDATA, "wsi", "CMU-1-Small-Region.svs")
OUT = os.path.join(cshelp.WORK, "viewer-video")
SAN = os.environ.get("CS_SANITIZE", "0") not in ("0", "", "OFF", "FALSE")
SLOW = 3 if SAN else 1
PASS = "0123456789abc"

ENV = dict(os.environ)
ENV["SDL_VIDEODRIVER"] = "dummy"
ENV.pop("DISPLAY", None)
ENV.pop("WAYLAND_DISPLAY", None)
ENV.pop("CS_SRT_PASSPHRASE", None)

ck = cshelp.Checker()


def run(args, env=None, timeout=60):
    t = time.time()
    p = subprocess.run([VIEW] + args, env=env or ENV, capture_output=True, text=True,
                       timeout=timeout * SLOW)
    return p.returncode, p.stdout, p.stderr, time.time() - t


def video_json(out):
    """The last {"video":...} line of the output, or None."""
    found = None
    for line in out.splitlines():
        if line.startswith('{"video"'):
            try:
                found = json.loads(line)["video"]
            except ValueError:
                pass
    return found


def states(out):
    return [json.loads(line)["video"] for line in out.splitlines()
            if line.startswith('{"video"')]


def pixels(path, box=None):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    if box:
        x0, y0, x1, y1 = box
        img = img[y0:y1, x0:x1]
    return img


def colourful(img, what):
    """The test pattern (testsrc2): bright, varied, with saturated colours."""
    mean, std = img.mean(), img.std()
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    red = ((r > 180) & (g < 80) & (b < 80)).mean()
    green = ((g > 180) & (r < 80) & (b < 80)).mean()
    blue = ((b > 180) & (r < 80) & (g < 80)).mean()
    print("%s: mean %.1f std %.1f red %.3f green %.3f blue %.3f" %
          (what, mean, std, red, green, blue))
    return ck.check(mean > 50 and std > 50 and red > 0.02 and green > 0.02 and blue > 0.02,
                    "%s: not the test pattern (mean %.1f std %.1f, red %.3f green %.3f blue %.3f)"
                    % (what, mean, std, red, green, blue))


def no_secret(text, what):
    ck.check(PASS not in text and "wrongpass" not in text, "%s: the passphrase is shown" % what)


def main():
    os.makedirs(OUT, exist_ok=True)
    rec = os.path.join(OUT, "rec")
    for f in glob.glob(os.path.join(rec, "*")):
        os.remove(f)
    os.makedirs(rec, exist_ok=True)
    port = cshelp.free_port()
    url = "srt://127.0.0.1:%d" % port
    sender = subprocess.Popen(
        [cshelp.BIN, "stream", "--source", "testsrc", "--size", "1280x720", "--out",
         "srt://:%d" % port, "--passphrase", PASS, "--latency", "20", "--duration", "120",
         "--record", rec, "--segment", "2"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, "sender.log"), "w"),
        start_new_session=True)
    try:
        time.sleep(1.5 * SLOW)
        ck.check(sender.poll() is None, "the sender is running")
        tests(url, rec)
    finally:
        if sender.poll() is None:
            os.killpg(sender.pid, signal.SIGTERM)
            try:
                sender.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(sender.pid, signal.SIGKILL)
                sender.wait()
    ck.finish()


def tests(url, rec):
    # --help documents it
    rc, out, _, _ = run(["--help"])
    ck.check(rc == 0 and "--video" in out and "--passphrase" in out and "CS_SRT_PASSPHRASE" in out,
             "--help documents --video")

    # live: first frame, latency, the picture
    png = os.path.join(OUT, "live.png")
    rc, out, err, secs = run(["--video", url, "--passphrase", PASS, "--latency", "20",
                              "--screenshot", png, "--video-frames", "60", "--size", "960x540"])
    v = video_json(out)
    print("live: exit %d in %.1f s: %s" % (rc, secs, json.dumps(v)))
    if err.strip():
        print("  stderr: " + err.strip().replace("\n", "\n  ")[-2000:])
    ck.check(rc == 0 and v is not None, "live: exit %d, JSON %r" % (rc, v))
    if v:
        lim_first, lim_p50 = (2500, 400) if SAN else (1000, 200)
        ck.check(v["frames"] >= 60, "live: %d frames" % v["frames"])
        ck.check(v["first_frame_ms"] is not None and v["first_frame_ms"] < lim_first,
                 "live: first_frame_ms %r >= %d" % (v["first_frame_ms"], lim_first))
        p50 = v["latency_ms"]["p50"]
        ck.check(p50 is not None and 0 < p50 < lim_p50,
                 "live: latency p50 %r ms (limit %d)" % (p50, lim_p50))
        ck.check(v["width"] == 1280 and v["height"] == 720 and v["codec"] == "h264",
                 "live: %sx%s %s" % (v["width"], v["height"], v["codec"]))
        ck.check(v["duration_s"] == 0 and not v["lost"], "live: a live source, not lost")
    if os.path.exists(png):
        img = pixels(png)
        ck.check(img.shape == (540, 960, 3), "live: screenshot size %r" % (img.shape,))
        colourful(img[60:480, :], "live screenshot")
    no_secret(out + err, "live")

    # a wrong passphrase: a clear error, non-zero, no hang
    png = os.path.join(OUT, "wrong.png")
    rc, out, err, secs = run(["--video", url, "--passphrase", "wrongpassphrase1", "--latency",
                              "20", "--screenshot", png, "--video-wait", "2500",
                              "--size", "640x360"], timeout=30)
    v = video_json(out)
    msg = [l for l in err.splitlines() if l.startswith("consilium-view:")]
    print("wrong passphrase: exit %d in %.1f s: %s" % (rc, secs, msg))
    ck.check(rc != 0 and any("passphrase" in l for l in msg),
             "wrong passphrase: exit %d, %r" % (rc, msg))
    ck.check(v is not None and v["lost"] and v["frames"] == 0,
             "wrong passphrase: SOURCE LOST state %r" % (v,))
    ck.check(secs < 10 * SLOW, "wrong passphrase: took %.1f s" % secs)
    ck.check(os.path.exists(png), "wrong passphrase: the SOURCE LOST screen is written")
    no_secret(out + err, "wrong passphrase")

    # side by side: the slide on the left, the live video on the right third
    png = os.path.join(OUT, "side.png")
    env = dict(ENV)
    env["CS_SRT_PASSPHRASE"] = PASS
    rc, out, err, secs = run([CMU, "--video", url, "--latency", "20", "--screenshot", png,
                              "--size", "1200x600", "--video-frames", "5"], env=env)
    v = video_json(out)
    print("side by side: exit %d in %.1f s: %s" % (rc, secs, json.dumps(v)))
    ck.check(rc == 0 and v is not None and v["frames"] >= 5,
             "side by side: exit %d %r %s" % (rc, v, err[-1000:]))
    if os.path.exists(png):
        slide = pixels(png, (0, 0, 800, 600))
        # H&E tissue: not uniform, pinks and purples (red above blue above green)
        print("side by side: slide mean %.1f std %.1f" % (slide.mean(), slide.std()))
        ck.check(slide.std() > 20 and slide.mean() > 60, "side by side: the slide part is empty")
        # the video is letterboxed in 400x600: 400x225 around the middle
        colourful(pixels(png, (800, 200, 1200, 400)), "side by side: video part")
    no_secret(out + err, "side by side")

    # recording playback: a finished segment (the third exists)
    deadline = time.time() + 15 * SLOW
    while len(glob.glob(os.path.join(rec, "seg-*.mp4"))) < 3 and time.time() < deadline:
        time.sleep(0.2)
    segs = sorted(glob.glob(os.path.join(rec, "seg-*.mp4")))
    ck.check(len(segs) >= 3, "recording: %d segments" % len(segs))
    if len(segs) >= 2:
        seg = segs[1]
        script = os.path.join(OUT, "seek.txt")
        shot = os.path.join(OUT, "seek.png")
        # 640x360: the progress bar is x 10..630 at y 344..350; 75 % is x 475
        with open(script, "w") as f:
            f.write("wait-frames 2\nvideo-state\nseek 1.2\nvideo-state\nscreenshot %s\n"
                    "pause\nseek 0.4\nvideo-state\nclick 475 347\nwait 800\nvideo-state\n"
                    "key I\nkey Space\nwait-frames 2\nvideo-state\n" % shot)
        rc, out, err, secs = run(["--video", seg, "--script", script, "--size", "640x360",
                                  "--video-wait", str(5000 * SLOW)])
        st = states(out)
        pos = [float(l.split()[1]) for l in out.splitlines() if l.startswith("position ")]
        print("recording %s: exit %d in %.1f s, positions %r" % (os.path.basename(seg), rc, secs,
                                                                 pos))
        for s in st:
            print("  " + json.dumps({k: s[k] for k in ("position_s", "duration_s", "paused",
                                                          "frames", "ended")}))
        if err.strip():
            print("  stderr: " + err.strip()[-1000:])
        ck.check(rc == 0 and len(st) == 6, "recording: exit %d, %d states" % (rc, len(st)))
        if len(st) == 6:
            ck.check(1.5 < st[0]["duration_s"] < 3.5, "recording: duration %r" %
                     st[0]["duration_s"])
            ck.check(st[0]["position_s"] < 0.6, "recording: starts at %r" % st[0]["position_s"])
            ck.check(len(pos) == 2 and abs(pos[0] - 1.2) < 0.1 and abs(pos[1] - 0.4) < 0.1,
                     "recording: seek positions %r" % pos)
            ck.check(abs(st[1]["position_s"] - 1.2) < 0.1, "recording: after seek 1.2: %r" %
                     st[1]["position_s"])
            ck.check(st[2]["paused"] and abs(st[2]["position_s"] - 0.4) < 0.1,
                     "recording: paused seek: %r" % st[2])
            want = 0.75 * st[0]["duration_s"]
            ck.check(st[3]["paused"] and abs(st[3]["position_s"] - want) < 0.15,
                     "recording: click at 75%% of the bar: %r, want %.2f" %
                     (st[3]["position_s"], want))
            ck.check(not st[4]["paused"] and st[4]["frames"] >= st[3]["frames"] + 2,
                     "recording: Space plays again: %r" % st[4])
            ck.check(st[0]["latency_ms"]["p50"] is None, "recording: latency is n/a")
        if os.path.exists(shot):
            colourful(pixels(shot, (0, 60, 640, 300)), "recording after the seek")
        else:
            ck.check(False, "recording: no screenshot after the seek")

    # bad input
    rc, out, err, secs = run(["--video", os.path.join(OUT, "missing.mp4"), "--screenshot",
                              os.path.join(OUT, "missing.png")], timeout=30)
    print("missing file: exit %d in %.1f s: %s" % (rc, secs, err.strip()[-300:]))
    ck.check(rc == 1 and "missing.mp4" in err and secs < 10 * SLOW,
             "missing file: exit %d %r" % (rc, err))
    rc, _, err, _ = run(["--video", url, "--latency", "abc", "--screenshot", "x.png"])
    ck.check(rc == 2 and "--latency" in err, "bad --latency: exit %d %r" % (rc, err))
    rc, _, err, _ = run(["--passphrase", PASS, "--screenshot", "x.png"])
    ck.check(rc == 2, "--passphrase without --video: exit %d %r" % (rc, err))
    rc, _, err, _ = run(["--video", url, "--views", "x.txt"])
    ck.check(rc == 2 and "--views" in err, "--video with --views: exit %d %r" % (rc, err))


if __name__ == "__main__":
    main()
