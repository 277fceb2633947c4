"""The thin link: 1080p30 of a panned tissue image at 3 Mbit/s (about 25 %
headroom) through cs-linkemu at 4 Mbit/s, 50 ms RTT and 1 % loss each way,
for 60 s, SRT latency 150 ms, periodic intra refresh. No frame may be
lost (SRT retransmits), capture-to-decoded p95 <= 300 ms, and no keyframe
spikes: p95 within 40 ms of the median. CS_VIDEO_THIN_S shortens it."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import videohelp as vh  # noqa: E402
from cshelp import Checker, TESTDATA  # noqa: E402

c = Checker()
d = vh.workdir("video_thin_link")
seconds = int(os.environ.get("CS_VIDEO_THIN_S", "60"))
linkemu = os.environ["CS_LINKEMU"]

# a real tissue image, larger than the frame, for the pan source
img = os.path.join(d, "tissue.png")
slide = os.path.join(TESTDATA, "wsi", "CMU-1-Small-Region.svs")
subprocess.run(["/usr/bin/python3", "-c",
                "import openslide,sys; s=openslide.OpenSlide(sys.argv[1]);"
                "s.read_region((0,0),0,s.dimensions).convert('RGB').save(sys.argv[2])",
                slide, img], check=True, timeout=120)

port = vh.free_port()
pfile = os.path.join(d, "link.port")
with vh.sender(d, "sender", port, ["--intra-refresh", "--latency", "150"], source="pan:" + img,
               size="1920x1080", bitrate="3M") as s, \
        vh.Proc(d, "link", ["--listen", "127.0.0.1:0", "--port-file", pfile, "--connect",
                            "127.0.0.1:%d" % port, "--udp", "--rate", "4mbit", "--rtt", "50ms",
                            "--loss", "1%", "--seed", "42", "--stats"], exe=linkemu) as link:
    end = time.time() + 20
    while not os.path.exists(pfile) and time.time() < end:
        time.sleep(0.05)
    lport = int(open(pfile).read())
    c.check(s.wait_for(lambda: "source pan:" in s.log(), 60, "the sender"), "sender started")
    with vh.Proc(d, "rx", ["stream", "--source", vh.srt_url(lport, latency_ms=150), "--passphrase",
                           vh.PASS, "--latency", "150", "--duration", str(seconds),
                           "--stats"]) as rx:
        rx.wait(seconds + 60)
        summ = rx.last()
    sent = [x for x in s.lines() if "bitrate_kbps" in x]
    link.kill()
    link.wait()
    stats = link.lines()

print("receiver: %s" % summ)
ok = c.check(summ and summ.get("summary"), "the receiver finished (%s)" % rx.log()[-300:])
if ok:
    lat = summ["latency_ms"]
    c.check(summ["frames"] >= (seconds - 1) * 30 and summ["lost"] == 0 and summ["errors"] == 0,
            "no frame lost: %d frames in %d s, %d missing, %d undecodable" %
            (summ["frames"], seconds, summ["lost"], summ["errors"]))
    c.check(lat["p95"] <= 300, "capture-to-decoded p95 %.1f ms <= 300" % lat["p95"])
    c.check(lat["p95"] - lat["p50"] <= 40, "no keyframe spikes: p95 %.1f - median %.1f <= 40 ms" %
            (lat["p95"], lat["p50"]))
rates = [x["bitrate_kbps"] for x in sent[2:-1]]
if c.check(rates, "the sender reported its bitrate"):
    print("sender bitrate kbit/s: median %.0f, max %.0f" % (sorted(rates)[len(rates) // 2],
                                                            max(rates)))
    c.check(max(rates) <= 3000 * 1.2, "the encoder stays under the VBV cap (max %.0f kbit/s)" %
            max(rates))
down = (stats[-1] if stats else {}).get("down", {})
print("link: %s" % down)
c.check(down.get("drop_loss", 0) > 0, "the link did drop packets (%d) that SRT recovered" %
        down.get("drop_loss", 0))
c.finish()
