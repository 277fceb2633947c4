#!/usr/bin/python3
"""bench/video: Consilium's live video pipeline against FFmpeg's command line.

One run, same source frames, same x264 settings, same transport (MPEG-TS over
SRT on loopback, AES passphrase), both pipelines measured back to back:

  ours:   generator | consilium stream --source pipe:0 ... --out srt://:PORT
  ffmpeg: generator | ffmpeg -f rawvideo -i pipe:0 ... -f tee
          "[f=mpegts]srt://:P1?mode=listener...|[f=mpegts]srt://:P2...|..."
          (one SRT listener per receiver: FFmpeg's listener takes one caller;
          use_fifo=1 so a slow or absent caller does not stall the encode)

The generator (this file, "gen" mode) pans a 3840x2400 crop of a real
whole-slide image (triangle waves of n*6 / n*2 px, as pan_pos() in
codecs/video/video.c) and writes a machine-readable block barcode (frame
number, capture time) into the top 16 rows of each frame. Receivers decode
with `ffmpeg -i srt://... -f rawvideo -` and this file ("recv" mode) reads the
barcode: capture-to-decoded latency and frame numbers measured the same way
for both pipelines. Quality: every 13th received frame (13 is prime to the
60-frame GOP, so the samples cover every position in a GOP for both
pipelines; every 30th put half of FFmpeg's samples on its IDRs, which sit on
frames n % 60 == 0; ~138 samples in 60 s, since PSNR moves ~12 dB within a
GOP) against the same frames regenerated from the image, with ffmpeg's psnr
and ssim filters (the barcode band excluded).

usage: video.py [DURATION_S [LATENCY_MS]]   (default 60 s, 2 ms for the
latency phase: SRT's latency is a receive buffer for retransmissions, sized
at 4 x RTT or more; loopback's RTT is ~0.05 ms, so 2 ms is 40 x RTT, and
both pipelines get the same). Env: CS_BIN, CS_SRTCOUNT, CS_WORK, CS_TESTDATA; CS_PHASES
(comma list of a1080,a720,enc1080,enc720,lat1080,lat720,fanout; default
all), CS_ENC_RUNS (3: alternating runs of the encode-alone phases),
CS_FANOUT (e.g. "10,20,30,50,64,80,100"), CS_FANOUT_S (20).
Prints a table, then one JSON object ("bench": "video")."""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

SEC = 1_000_000_000
BAND = 16          # barcode rows (luma)
BLOCK = 16         # barcode block width
NBITS = 72         # 24-bit frame number, 40-bit capture us, 8-bit check
PASS = "consiliumbench01"


# ------------------------------------------------------------------ helpers

def pan_pos(n, v, span):
    """pan_pos() of codecs/video/video.c."""
    if span <= 0:
        return 0
    p = (n * v) % (2 * span)
    return (2 * span - p if p > span else p) & ~1


def bits_of(n, t_us):
    n &= (1 << 24) - 1
    t_us &= (1 << 40) - 1
    v = (n << 40) | t_us
    chk = 0
    for i in range(8):
        chk ^= (v >> (8 * i)) & 0xff
    v = (v << 8) | chk
    return [(v >> (NBITS - 1 - i)) & 1 for i in range(NBITS)]


def parse_bits(bits):
    v = 0
    for b in bits:
        v = (v << 1) | int(b)
    chk = v & 0xff
    v >>= 8
    c = 0
    for i in range(8):
        c ^= (v >> (8 * i)) & 0xff
    if c != chk:
        return None
    return v >> 40, v & ((1 << 40) - 1)


def read_barcode(y):
    """(frame number, capture us) from a frame's luma (rows x width), or
    None when the barcode does not check."""
    nb = min(NBITS, y.shape[1] // BLOCK)
    cells = y[4:12, :nb * BLOCK].reshape(8, nb, BLOCK)[:, :, 4:12].mean(axis=(0, 2))
    return parse_bits(cells > 128)


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, len(v) * p // 100)]


def load_yuv(path, iw, ih):
    import numpy as np
    raw = np.fromfile(path, dtype=np.uint8)
    ys = iw * ih
    Y = raw[:ys].reshape(ih, iw)
    U = raw[ys:ys + ys // 4].reshape(ih // 2, iw // 2)
    V = raw[ys + ys // 4:].reshape(ih // 2, iw // 2)
    return Y, U, V


def make_frame(planes, buf, n, w, h):
    """Frame n of the pan into buf (views Y, U, V); barcode not drawn."""
    Y, U, V = planes
    ih, iw = Y.shape
    x = pan_pos(n, 6, iw - w)
    y = pan_pos(n, 2, ih - h)
    by, bu, bv = buf
    by[:] = Y[y:y + h, x:x + w]
    bu[:] = U[y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2]
    bv[:] = V[y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2]


def frame_buf(w, h):
    import numpy as np
    b = np.empty(w * h * 3 // 2, dtype=np.uint8)
    ys = w * h
    return b, (b[:ys].reshape(h, w), b[ys:ys + ys // 4].reshape(h // 2, w // 2),
               b[ys + ys // 4:].reshape(h // 2, w // 2))


# ---------------------------------------------------------------- generator

def gen_main(argv):
    """gen IMAGE.yuv IW IH W H FPS DURATION: paced raw yuv420p on stdout."""
    import numpy as np
    path, iw, ih, w, h, fps, dur = argv[0], *map(int, argv[1:6]), float(argv[6])
    planes = load_yuv(path, iw, ih)
    raw, buf = frame_buf(w, h)
    out = sys.stdout.buffer
    lut = np.array([16, 235], dtype=np.uint8)
    nframes = int(dur * fps)
    t0 = time.monotonic_ns()
    late_max = 0
    late, wait = [], []
    for n in range(nframes):
        if n == 1:
            # the pace starts once the consumer took the first frame: a
            # sender still starting up would otherwise get a burst of
            # overdue frames, and one that drops late frames (ours) would
            # drop some, shifting its GOP against the content
            t0 = time.monotonic_ns() - SEC // fps
        due = t0 + n * SEC // fps
        while True:
            d = due - time.monotonic_ns()
            if d <= 0:
                break
            time.sleep(min(d, 20_000_000) / SEC)
        make_frame(planes, buf, n, w, h)
        late_max = max(late_max, time.monotonic_ns() - due)
        bits = bits_of(n, time.time_ns() // 1000)
        row = np.repeat(lut[bits], BLOCK)
        by, bu, bv = buf
        by[:BAND, :len(row)] = row
        by[:BAND, len(row):] = 16
        bu[:BAND // 2] = 128
        bv[:BAND // 2] = 128
        t_stamp = time.monotonic_ns()
        try:
            out.write(raw.data)
            out.flush()
        except (BrokenPipeError, ValueError):
            break
        if n >= 3 * fps:  # how long the consumer took to take the frame
            wait.append((time.monotonic_ns() - t_stamp) / 1e6)
            late.append((t_stamp - due) / 1e6)
    sys.stderr.write(json.dumps({"gen_frames": n + 1, "late_max_ms": late_max / 1e6,
                                 "late_ms_after_3s": {"p50": pct(late, 50), "max": max(late or [0])},
                                 "write_ms_after_3s": {"p50": pct(wait, 50), "p95": pct(wait, 95),
                                                       "max": max(wait or [0])}}) + "\n")


# ----------------------------------------------------------------- receiver

def recv_main(argv):
    """recv OUT.json W H T_START_NS WARMUP_S [SAMPLES.yuv EVERY]: reads raw
    yuv420p frames on stdin until EOF or SIGTERM, decodes the barcode."""
    import numpy as np
    out_path, w, h, t_start, warm = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), \
        float(argv[4])
    samples = argv[5] if len(argv) > 5 else None
    every = int(argv[6]) if len(argv) > 6 else 0
    fsize = w * h * 3 // 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    buf = bytearray(fsize)
    mv = memoryview(buf)
    inp = sys.stdin.buffer
    sf = open(samples, "wb") if samples else None
    res = {"frames": 0, "bad_barcode": 0, "first_frame_ms": None, "first_live_ms": None,
           "n_first": None, "n_last": None, "gaps": 0, "missing": 0, "sampled": [],
           "lat_ms": []}
    last_n = None
    while not stop:
        got = 0
        while got < fsize:
            try:
                k = inp.readinto(mv[got:])
            except InterruptedError:
                k = -1
            if not k:
                break
            got += k
        if got < fsize:
            break
        now = time.time_ns()
        res["frames"] += 1
        if res["first_frame_ms"] is None:
            res["first_frame_ms"] = (now - t_start) / 1e6
        y = np.frombuffer(buf, dtype=np.uint8, count=BAND * w).reshape(BAND, w)
        p = read_barcode(y)
        if p is None:
            res["bad_barcode"] += 1
            continue
        n, t_us = p
        cap = (now // 1000 & ~((1 << 40) - 1)) | t_us
        if cap > now // 1000 + SEC // 1000:
            cap -= 1 << 40
        lat = (now // 1000 - cap) / 1000.0
        if res["first_live_ms"] is None and cap * 1000 >= t_start:
            res["first_live_ms"] = (now - t_start) / 1e6
        if res["n_first"] is None:
            res["n_first"] = n
        if last_n is not None and n > last_n + 1:
            res["gaps"] += 1
            res["missing"] += n - last_n - 1
        last_n = n if last_n is None else max(last_n, n)
        res["n_last"] = last_n
        if (now - t_start) / SEC >= warm:
            res["lat_ms"].append(lat)
        if sf and every and n % every == 0:
            sf.write(buf)
            res["sampled"].append(n)
    if sf:
        sf.close()
    lat = res.pop("lat_ms")
    res["latency_ms"] = {"n": len(lat), "p50": pct(lat, 50), "p95": pct(lat, 95),
                         "max": max(lat) if lat else None}
    with open(out_path, "w") as f:
        json.dump(res, f)


# ------------------------------------------------------------------- driver

class Procs:
    """Every process started, each in its own session; all killed at the end."""

    def __init__(self):
        self.ps = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, start_new_session=True, **kw)
        self.ps.append(p)
        return p

    def kill_all(self):
        for p in self.ps:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        t = time.monotonic() + 3
        for p in self.ps:
            try:
                p.wait(max(0.1, t - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.ps = []


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError):
        return None


HZ = os.sysconf("SC_CLK_TCK")
ME = os.path.abspath(__file__)
PY = "/usr/bin/python3"


def srt_url(port, latency_ms):
    return f"srt://127.0.0.1:{port}?passphrase={PASS}&latency={latency_ms * 1000}"


def ffrecv_cmd(url, kbps, join=False, keep_ts=None):
    # Same decoding receiver for both pipelines, with the demuxer and decoder
    # settings of our own receiver (codecs/video/video.c open_input): MPEG-TS
    # without the parser (a frame is handed over when its PES is complete),
    # small probe, low-delay decoder without frame threads; the raw output
    # flushed per frame.
    # A joiner keeps its probed packets (no "nobuffer"): the ffmpeg CLI always
    # probes, and with nobuffer it would throw away the keyframe it joined on
    # and wait for the next one (our own receiver skips probing instead).
    # "-threads 1" twice: before -i for the decoder, after it for the
    # rawvideo ENCODER of the output, which is frame-threaded by default
    # (threads auto = 2 here) and then hands each frame over only when a
    # later one is submitted: 1 or 2 frames (33 or 67 ms) held at random,
    # fixed for the whole run by a race in the first frames -- the
    # bimodal 66/99 ms of earlier runs, for both pipelines.
    # probesize: the CLI reads that much before its first frame, so it is
    # joining time (256 kB: +0.6 s at 4 Mbit/s); but it must hold the first
    # IDR (up to the 2-frame VBV, ~33 kB at 4 Mbit/s, plus TS overhead): 32 kB
    # sometimes did not ("could not find codec parameters", no frames). So
    # three frames' worth at the bitrate (50 kB at 4 Mbit/s), at least 32 kB.
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-fflags", "noparse+nofillin" if join else "nobuffer+noparse+nofillin", "-flags", "low_delay", "-threads", "1",
            "-f", "mpegts", "-probesize", str(max(32768, kbps * 1000 // 8 * 3 // 30)), "-analyzeduration", "100000",
            "-i", url, "-map", "0:v", "-fps_mode", "passthrough", "-threads", "1",
            "-f", "rawvideo", "-pix_fmt", "yuv420p",
            "-flush_packets", "1", "-"] + \
        (["-map", "0:v", "-c", "copy", "-copyinkf", "-f", "mpegts", "-y", keep_ts]
         if keep_ts else [])


class Ctx:
    def __init__(self):
        self.bin = os.environ.get("CS_BIN", "build/release/core/consilium")
        self.srtcount = os.environ.get("CS_SRTCOUNT", "build/release/bench/video/video_srtcount")
        self.work = os.path.join(os.environ.get("CS_WORK", "build/release/benchwork"), "video")
        self.testdata = os.environ.get("CS_TESTDATA", "../shared/testdata")
        os.makedirs(self.work, exist_ok=True)
        self.port = 19400

    def next_port(self, k=1):
        p = self.port
        self.port += k
        return p


def make_image(ctx):
    """3840x2400 px of real tissue from a WSI, as PNG and raw yuv420p."""
    png = os.path.join(ctx.work, "tissue_3840x2400.png")
    yuv = os.path.join(ctx.work, "tissue_3840x2400.yuv")
    if not os.path.exists(yuv):
        import openslide
        s = openslide.OpenSlide(os.path.join(ctx.testdata, "wsi",
                                             "TCGA-CR-7395-01A-01-TS1.svs"))
        s.read_region((300, 600), 0, (3840, 2400)).convert("RGB").save(png)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", png,
                        "-pix_fmt", "yuv420p", "-f", "rawvideo", yuv], check=True)
    return png, yuv, 3840, 2400


def encoder_cmd(ctx, who, w, h, kbps):
    """Either pipeline reading raw frames on stdin and encoding them, with
    the same x264 settings; the caller adds the outputs."""
    fps = 30
    if who == "ours":
        return [ctx.bin, "stream", "--source-format", "rawvideo", "--source-opts",
                f"video_size={w}x{h}:pixel_format=yuv420p:framerate={fps}",
                "--source", "pipe:0", "--size", f"{w}x{h}", "--fps", str(fps),
                "--bitrate", f"{kbps}k", "--preset", "superfast", "--keyint", "60"]
    # Our encoder's VBV buffer is bitrate x (1000/fps*2 + 1) ms (2 frames);
    # FFmpeg gets the same, plus our x264-params (no scene-cut keyframes,
    # AUDs) and the same 2 sliced threads.
    bufsize = kbps * (2000 // fps + 1)
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning",
            "-f", "rawvideo", "-video_size", f"{w}x{h}", "-pix_fmt", "yuv420p",
            "-framerate", str(fps), "-i", "pipe:0",
            "-c:v", "libx264", "-preset", "superfast", "-tune", "zerolatency",
            "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{bufsize}",
            "-g", "60", "-keyint_min", "60", "-bf", "0", "-threads", "2", "-thread_type", "slice",
            "-x264-params", "scenecut=0:aud=1"]


def sender_cmd(ctx, who, w, h, kbps, latency, ports, dur):
    if who == "ours":
        return encoder_cmd(ctx, who, w, h, kbps) + [
            "--out", f"srt://:{ports[0]}", "--passphrase", PASS, "--latency", str(latency),
            "--stats", "--duration", str(int(dur))]
    # FFmpeg's MPEG-TS muxer gets our muxer settings (PES length written, a
    # packet flushed at once)
    slaves = "|".join(f"[f=mpegts:onfail=ignore:omit_video_pes_length=0]srt://0.0.0.0:{p}?mode=listener"
                      f"&passphrase={PASS}&latency={latency * 1000}" for p in ports)
    return encoder_cmd(ctx, who, w, h, kbps) + [
        "-flush_packets", "1", "-map", "0:v", "-f", "tee", "-use_fifo", "1",
        "-fifo_options", "drop_pkts_on_overflow=1:restart_with_keyframe=1:queue_size=60",
        "-progress", "pipe:1", "-stats_period", "1", slaves]


def run_pipeline(ctx, who, w, h, kbps, dur, latency, img, nlight=3, joins=(), ours_native=False,
                 samples_every=13, barcode=True):
    """One pipeline: generator -> sender -> 1 decoding barcode receiver
    (unless not barcode) + nlight light receivers (+ joiners at the given
    times, + our native receiver). Returns its figures."""
    procs = Procs()
    png, yuv, iw, ih = img
    tag = f"{who}_{h}p_{latency}ms"
    nports = 1 if who == "ours" else 1 + nlight + len(joins) + (1 if ours_native else 0)
    base = ctx.next_port(nports + 1)
    ports = [base] if who == "ours" else list(range(base, base + nports))
    port_of = (lambda i: ports[0]) if who == "ours" else (lambda i: ports[i])
    out = {}
    logs = {}
    try:
        t0 = time.time_ns()
        m0 = time.monotonic()
        gen = procs.start([PY, ME, "gen", yuv, str(iw), str(ih), str(w), str(h), "30",
                           str(dur + (3 if who == "ours" else 0))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        slog = open(os.path.join(ctx.work, f"{tag}_sender.log"), "w")
        sout = os.path.join(ctx.work, f"{tag}_sender.out")
        sender = procs.start(sender_cmd(ctx, who, w, h, kbps, latency, ports, dur),
                             stdin=gen.stdout, stdout=open(sout, "w"), stderr=slog)
        gen.stdout.close()
        time.sleep(0.3)
        # R1: decoding receiver with barcode
        rj = os.path.join(ctx.work, f"{tag}_r1.json")
        samp = os.path.join(ctx.work, f"{tag}_samples.yuv")
        kept = os.path.join(ctx.work, f"{tag}_r1.ts") if samples_every else None
        r1d = r1 = None
        if barcode:
            r1d = procs.start(ffrecv_cmd(srt_url(port_of(0), latency), kbps, keep_ts=kept),
                              stdout=subprocess.PIPE,
                              stderr=open(os.path.join(ctx.work, f"{tag}_r1.log"), "w"))
            r1 = procs.start([PY, ME, "recv", rj, str(w), str(h), str(time.time_ns()), "3",
                              samp, str(samples_every)], stdin=r1d.stdout)
            r1d.stdout.close()
        # light receivers
        light = None
        if nlight:
            urls = ([srt_url(ports[0], latency)] if who == "ours"
                    else [srt_url(port_of(1 + i), latency) for i in range(nlight)])
            light = procs.start([ctx.srtcount, "--fps", "30"] +
                                (["--n", str(nlight)] if who == "ours" else []) +
                                ["--start-ms", "100", str(dur - 1.5)] + urls,
                                stdout=subprocess.PIPE,
                                stderr=open(os.path.join(ctx.work, f"{tag}_light.log"), "w"))
        native = None
        if ours_native:
            native = procs.start([ctx.bin, "stream", "--source",
                                  f"srt://127.0.0.1:{port_of(1 + nlight)}", "--passphrase",
                                  PASS, "--latency", str(latency), "--duration",
                                  str(int(dur - 3))], stdout=subprocess.PIPE,
                                 stderr=open(os.path.join(ctx.work, f"{tag}_native.log"), "w"))
        # CPU window: from 3 s to the end
        time.sleep(max(0, 3 - (time.monotonic() - m0)))
        c_a, m_a = cpu_ticks(sender.pid), time.monotonic()
        joiners = []
        c_b, m_b = c_a, m_a
        for k, jt in enumerate(joins):
            while time.monotonic() - m0 < jt:
                c_b, m_b = cpu_ticks(sender.pid) or c_b, time.monotonic()
                time.sleep(0.2)
            jport = port_of(1 + nlight + (1 if ours_native else 0) + k)
            jj = os.path.join(ctx.work, f"{tag}_join{k}.json")
            jd = procs.start(ffrecv_cmd(srt_url(jport, latency), kbps, join=True), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
            jr = procs.start([PY, ME, "recv", jj, str(w), str(h), str(time.time_ns()), "0"],
                             stdin=jd.stdout)
            jd.stdout.close()
            joiners.append((jd, jr, jj, time.monotonic()))
        end = m0 + dur - 0.7
        while time.monotonic() < end:
            c = cpu_ticks(sender.pid)
            if c is not None:
                c_b, m_b = c, time.monotonic()
            for jd, jr, jj, js in joiners:
                if jd.poll() is None and time.monotonic() - js > 4:
                    os.killpg(jd.pid, signal.SIGTERM)
            time.sleep(0.2)
        out["cpu_cores"] = (c_b - c_a) / HZ / (m_b - m_a) if c_a is not None else None
        # stop the decoding receivers (their reader writes its JSON on EOF)
        for p in [r1d] + [j[0] for j in joiners]:
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [r1] + [j[1] for j in joiners]:
            try:
                p and p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        light_res = json.loads(light.communicate(timeout=15)[0]) if light else None
        if native:
            nat = native.communicate(timeout=15)[0].decode().strip().splitlines()
            out["native_receiver"] = json.loads(nat[-1]) if nat else None
        try:
            sender.wait(10 if who == "ours" else 5)
        except subprocess.TimeoutExpired:
            os.killpg(sender.pid, signal.SIGTERM)
            sender.wait(5)
        gerr = gen.stderr.read().decode().strip().splitlines()
        out["generator"] = json.loads(gerr[-1]) if gerr and gerr[-1].startswith("{") else None
        out["wall_s"] = round(time.monotonic() - m0, 2)
        if barcode:
            with open(rj) as f:
                out["r1"] = json.load(f)
        out["joiners"] = []
        for jd, jr, jj, js in joiners:
            try:
                with open(jj) as f:
                    out["joiners"].append(json.load(f))
            except (OSError, ValueError):
                out["joiners"].append(None)
        out["light"] = light_res["connections"] if light_res else []
        with open(sout) as f:
            lines = f.read().splitlines()
        out.update(sender_figures(who, lines, dur))
        slog.close()
        with open(slog.name) as f:
            logs["sender_stderr_tail"] = f.read()[-2000:]
        out["sender_log_tail"] = logs["sender_stderr_tail"][-600:]
        out["samples_file"] = samp
        out["kept_ts"] = kept
        del t0
    finally:
        procs.kill_all()
    return out


def sink_totals(stats):
    """Per-sink drops and packets, the largest value each sink reported in
    any stats line (receivers that left are gone from the final line)."""
    d, p = {}, {}
    for st in stats:
        for k in st.get("sinks", []):
            d[k["id"]] = max(d.get(k["id"], 0), k.get("drops", 0))
            p[k["id"]] = max(p.get(k["id"], 0), k.get("packets", 0))
    ids = sorted(d)
    return [d[i] for i in ids], [p[i] for i in ids]


def sender_figures(who, lines, dur):
    r = {}
    if who == "ours":
        st = [json.loads(l) for l in lines if l.startswith("{")]
        per = [s for s in st if not s.get("summary")]
        summ = next((s for s in st if s.get("summary")), st[-1] if st else {})
        win = [s["fps"] for s in per[3:]]  # warm-up excluded, as for FFmpeg
        r["enc_fps"] = statistics.mean(win) if win else None
        r["enc_fps_min_1s"] = min(win) if win else None
        r["enc_frames"] = summ.get("frames")
        r["sender_dropped"] = summ.get("dropped")
        # frames dropped before the encoder after the 3-s warm-up
        r["sender_dropped_steady"] = (summ.get("dropped", 0) - per[2].get("dropped", 0)
                                      if len(per) > 3 else None)
        r["sink_drops"], r["sink_packets"] = sink_totals(st)
        r["bitrate_kbps"] = summ.get("bitrate_kbps")
        r["capture_to_encoded_ms"] = summ.get("latency_ms")
        return r
    # FFmpeg -progress: blocks of key=value ending with progress=continue|end
    blocks, cur = [], {}
    for l in lines:
        if "=" in l:
            k, v = l.split("=", 1)
            cur[k] = v
            if k == "progress":
                cur["_t"] = int(cur.get("out_time_us", "0") or 0)
                blocks.append(cur)
                cur = {}
    fr = [(int(b.get("frame", 0)), b) for b in blocks]
    if len(fr) > 4:
        # 1-s progress blocks: rate between consecutive blocks, warm-up excluded
        rates = [fr[i + 1][0] - fr[i][0] for i in range(3, len(fr) - 2)]
        r["enc_fps"] = statistics.mean(rates) if rates else None
        r["enc_fps_min_1s"] = min(rates) if rates else None
    r["enc_frames"] = fr[-1][0] if fr else None
    r["sender_dropped"] = int(fr[-1][1].get("drop_frames", 0)) if fr else None
    r["sender_dropped_steady"] = (r["sender_dropped"] - int(fr[2][1].get("drop_frames", 0))
                                  if len(fr) > 3 else None)
    br = fr[-1][1].get("bitrate", "") if fr else ""
    m = re.match(r"([\d.]+)kbits/s", br.strip())
    r["bitrate_kbps"] = float(m.group(1)) if m else None
    return r


def quality(ctx, samples, sampled, img, w, h, tag):
    """PSNR/SSIM of the sampled received frames against the same frames
    regenerated from the image, barcode band excluded (ffmpeg filters)."""
    if not sampled or not os.path.exists(samples):
        return None
    png, yuv, iw, ih = img
    planes = load_yuv(yuv, iw, ih)
    raw, buf = frame_buf(w, h)
    ref = os.path.join(ctx.work, f"{tag}_ref.yuv")
    with open(ref, "wb") as f:
        for n in sampled:
            make_frame(planes, buf, n, w, h)
            f.write(raw.data)
    res = {"frames": len(sampled)}
    for filt in ("psnr", "ssim"):
        cmd = ["ffmpeg", "-nostdin", "-hide_banner"]
        for p in (samples, ref):
            cmd += ["-f", "rawvideo", "-video_size", f"{w}x{h}", "-pix_fmt", "yuv420p",
                    "-framerate", "30", "-i", p]
        cmd += ["-lavfi", f"[0]crop={w}:{h - BAND}:0:{BAND}[a];[1]crop={w}:{h - BAND}:0:{BAND}[b];"
                f"[a][b]{filt}", "-f", "null", "-"]
        e = subprocess.run(cmd, capture_output=True, text=True).stderr
        if filt == "psnr":
            m = re.search(r"PSNR y:([\d.inf]+) u:([\d.inf]+) v:([\d.inf]+) average:([\d.inf]+)", e)
            if m:
                res["psnr_y"], res["psnr_avg"] = float(m.group(1)), float(m.group(4))
        else:
            m = re.search(r"SSIM Y:([\d.]+) .*All:([\d.]+)", e)
            if m:
                res["ssim_y"], res["ssim_all"] = float(m.group(1)), float(m.group(2))
    os.unlink(ref)
    os.unlink(samples)
    return res


def frame_errors(ts, img, w, h):
    """{frame number: luma MSE} of every frame of a received stream
    (decoded again from the TS the barcode receiver kept) against the same
    frame regenerated from the image, barcode band excluded."""
    import numpy as np
    _, yuv, iw, ih = img
    planes = load_yuv(yuv, iw, ih)
    _, ref = frame_buf(w, h)
    raw, got = frame_buf(w, h)
    # no frame that decoded with errors: the copy starts before the first
    # keyframe (the receiver's probe took it)
    dec = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "quiet", "-flags", "-output_corrupt",
                            "-i", ts, "-map", "0:v",
                            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                            "-"], stdout=subprocess.PIPE)
    mse = {}
    mv = memoryview(raw)
    while dec.stdout.readinto(mv) == len(raw):
        p = read_barcode(got[0])
        if p is None:
            continue
        make_frame(planes, ref, p[0], w, h)
        d = got[0][BAND:].astype(np.int32) - ref[0][BAND:]
        mse[p[0]] = float(np.mean(d * d))
    dec.wait()
    os.unlink(ts)
    return mse


def psnr_common(res, errs):
    """PSNR-Y of each pipeline over the frames both received (the same
    pictures): 10 log10(255^2 / mean MSE), as ffmpeg's psnr filter."""
    import math
    common = set.intersection(*(set(e) for e in errs.values())) if errs else set()
    for who, e in errs.items():
        if common and res.get(who, {}).get("quality") is not None:
            m = sum(e[n] for n in common) / len(common)
            res[who]["quality"]["psnr_y_all"] = 10 * math.log10(255 * 255 / m) if m else None
            res[who]["quality"]["frames_all"] = len(common)


def summarize(r, fps=30):
    """Drop figures of a pipeline run."""
    light = r.get("light") or []
    rec = []
    for c in light:
        exp = c.get("frames_expected") or 0
        rec.append({"frames": c["frames"], "expected": exp,
                    "missing": max(0, exp - c["frames"]), "cc_errors": c["cc_errors"],
                    "kbps": c["bytes"] * 8 / 1000 / c["seconds"] if c["seconds"] else 0})
    r1 = r["r1"]
    if r1.get("n_first") is not None:
        exp = r1["n_last"] - r1["n_first"] + 1
        rec.insert(0, {"frames": r1["frames"] - r1["bad_barcode"], "expected": exp,
                       "missing": r1["missing"], "cc_errors": None, "kbps": None})
    worst = max((x["missing"] / x["expected"] for x in rec if x["expected"]), default=None)
    r["receivers"] = rec
    r["receivers_connected"] = sum(1 for x in rec if x["frames"])
    r["receiver_drop_pct_max"] = None if worst is None else 100 * worst
    if r.get("sink_drops") is not None:
        sd = [d / (d + p) for d, p in zip(r["sink_drops"], r["sink_packets"]) if d + p]
        r["sink_drop_pct_max"] = 100 * max(sd) if sd else 0.0
    if r.get("enc_frames"):
        r["sender_drop_pct"] = 100 * (r.get("sender_dropped") or 0) / r["enc_frames"]
        if r.get("sender_dropped_steady") is not None:
            r["sender_drop_pct_steady"] = 100 * r["sender_dropped_steady"] / r["enc_frames"]
    js = [j for j in r.get("joiners", []) if j]
    r["join_first_frame_ms"] = [j["first_frame_ms"] for j in js]
    r["join_first_live_ms"] = [j["first_live_ms"] for j in js]
    lk = [x["kbps"] for x in rec if x.get("kbps")]
    r["received_kbps"] = statistics.median(lk) if lk else None
    return r


def phase_a(ctx, img, w, h, kbps, dur, latency=20):
    joins = [t for t in (10.3, 20.9, 31.5) if t + 5 < dur] or ([dur / 2] if dur >= 8 else [])
    if os.environ.get("CS_NOJOIN"):  # quality without the IDRs we force for joiners
        joins = []
    res, errs = {}, {}
    for who in ("ours", "ffmpeg"):
        print(f"# {who} {w}x{h} {kbps} kbit/s, {dur} s, SRT latency {latency} ms ...",
              file=sys.stderr, flush=True)
        r = run_pipeline(ctx, who, w, h, kbps, dur, latency, img, nlight=3, joins=joins)
        r["quality"] = quality(ctx, r.pop("samples_file"), r["r1"].get("sampled"), img, w, h,
                               f"{who}_{h}p")
        r["r1"].pop("sampled", None)
        kept = r.pop("kept_ts", None)
        if kept and os.path.exists(kept):
            errs[who] = frame_errors(kept, img, w, h)
            with open(os.path.join(ctx.work, f"{who}_{h}p_mse.json"), "w") as f:
                json.dump(errs[who], f)
        res[who] = summarize(r)
    psnr_common(res, errs)
    return res


def phase_enc(ctx, img, w, h, kbps, dur, runs):
    """The encode alone, no transport and no receivers: each pipeline
    writes MPEG-TS to a file, runs alternating; PSNR-Y over every frame
    that every run has. Frame for frame x264 differs between runs (its
    sliced-thread VBV, and the barcode's capture time in the picture), so
    several runs show the spread that one live run cannot."""
    _, yuv, iw, ih = img
    errs = {"ours": [], "ffmpeg": []}
    for i in range(runs):
        for who in ("ours", "ffmpeg"):
            print(f"# encode alone {who} {w}x{h} {kbps} kbit/s, {dur} s, run {i + 1}/{runs} ...",
                  file=sys.stderr, flush=True)
            ts = os.path.join(ctx.work, f"enc_{who}_{h}p.ts")
            # ours stops at its --duration with the generator still
            # running: its source never ends, so no slate is recorded
            gen = subprocess.Popen([PY, ME, "gen", yuv, str(iw), str(ih), str(w), str(h), "30",
                                    str(dur + (3 if who == "ours" else 0))],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            out = ["--out", ts, "--duration", str(dur)] if who == "ours" else ["-y", ts]
            subprocess.run(encoder_cmd(ctx, who, w, h, kbps) + out, stdin=gen.stdout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=dur + 60)
            gen.stdout.close()
            gen.kill()
            gen.wait()
            errs[who].append(frame_errors(ts, img, w, h))
    import math
    common = set.intersection(*(set(e) for v in errs.values() for e in v))
    res = {"frames": len(common), "runs": runs, "duration_s": dur}
    for who, v in errs.items():
        ps = [10 * math.log10(255 * 255 / (sum(e[n] for n in common) / len(common)))
              for e in v] if common else []
        res[who] = {"psnr_y": ps, "median": statistics.median(ps) if ps else None}
    return res


def phase_lat(ctx, img, w, h, kbps, dur, latency):
    res = {}
    for who in ("ours", "ffmpeg"):
        print(f"# latency {who} {w}x{h}, {dur} s, SRT latency {latency} ms ...",
              file=sys.stderr, flush=True)
        r = run_pipeline(ctx, who, w, h, kbps, dur, latency, img, nlight=0, joins=(),
                         ours_native=True, samples_every=0)
        res[who] = {"barcode_latency_ms": r["r1"]["latency_ms"],
                    "native_receiver": r.get("native_receiver"), "cpu_cores": r["cpu_cores"],
                    "generator": r.get("generator"),
                    "enc_fps": r.get("enc_fps")}
    # ours again with only our receiver: the barcode receiver (a second
    # 1080p decoder and the Python reading 90-190 MB/s) is measuring
    # apparatus, and on 2 cores it takes CPU from the pipeline it measures
    print(f"# latency ours {w}x{h} alone, {dur} s, SRT latency {latency} ms ...",
          file=sys.stderr, flush=True)
    r = run_pipeline(ctx, "ours", w, h, kbps, dur, latency, img, nlight=0, joins=(),
                     ours_native=True, samples_every=0, barcode=False)
    res["ours"]["native_receiver_alone"] = r.get("native_receiver")
    return res


def fanout(ctx, img, steps, dur):
    """Ours only: one sender (pan:IMAGE source, 1080p30 4 Mbit/s) and N light
    receivers in one srtcount process."""
    png = img[0]
    res = []
    for n in steps:
        procs = Procs()
        port = ctx.next_port()
        try:
            print(f"# fan-out N={n}, {dur} s ...", file=sys.stderr, flush=True)
            m0 = time.monotonic()
            sout = os.path.join(ctx.work, f"fanout_{n}_sender.out")
            sender = procs.start([ctx.bin, "stream", "--source", f"pan:{png}", "--size",
                                  "1920x1080", "--fps", "30", "--bitrate", "4M", "--preset",
                                  "superfast", "--keyint", "60", "--out", f"srt://:{port}",
                                  "--passphrase", PASS, "--latency", "20", "--stats",
                                  "--receivers", "1000", "--duration", str(dur + 4)],
                                 stdout=open(sout, "w"),
                                 stderr=open(sout.replace(".out", ".log"), "w"))
            time.sleep(1.0)
            light = procs.start([ctx.srtcount, "--fps", "30", "--n", str(n), "--start-ms", "20",
                                 str(dur), srt_url(port, 20)], stdout=subprocess.PIPE,
                                stderr=open(sout.replace(".out", "_recv.log"), "w"))
            c_a, m_a = cpu_ticks(sender.pid), time.monotonic()
            lo = light.communicate(timeout=dur + 60)[0]
            c_b, m_b = cpu_ticks(sender.pid), time.monotonic()
            conns = json.loads(lo)["connections"]
            sender.wait(dur + 30)
            with open(sout) as f:
                st = [json.loads(l) for l in f if l.startswith("{")]
            summ = next((s for s in st if s.get("summary")), st[-1] if st else {})
            per = [s for s in st if not s.get("summary")]
            full = [s for s in per if s.get("receivers", 0) >= n]
            sdrops, spk = sink_totals(st)
            sd = [d / (d + p) for d, p in zip(sdrops, spk) if d + p]
            rd = [max(0, c["frames_expected"] - c["frames"]) / c["frames_expected"]
                  for c in conns if c["frames_expected"]]
            connected = sum(1 for c in conns if c["frames"])
            r = {"n": n, "connected": connected,
                 "all_connected_after_s": None,
                 "sink_drop_pct_max": 100 * max(sd) if sd else None,
                 "sink_drops_total": sum(sdrops), "sinks_seen": len(sdrops),
                 "receiver_missing_pct_max": 100 * max(rd) if rd else None,
                 "cc_errors_total": sum(c["cc_errors"] for c in conns),
                 "enc_fps_min_1s": min((s["fps"] for s in full[1:]), default=None),
                 "sender_dropped": summ.get("dropped"),
                 "sender_cpu_cores": (c_b - c_a) / HZ / (m_b - m_a)
                 if c_a is not None and c_b is not None else None,
                 "receiver_kbps_median": statistics.median(
                     [c["bytes"] * 8 / 1000 / c["seconds"] for c in conns if c["seconds"]] or [0]),
                 "wall_s": round(time.monotonic() - m0, 1)}
            fc = [c["first_byte_ms"] for c in conns if c["first_byte_ms"] >= 0]
            r["all_connected_after_s"] = max(fc) / 1000 if len(fc) == n else None
            # frames the encoder skipped (late at the capture mailbox) once
            # every receiver was connected
            r["sender_dropped_all_connected"] = (full[-1].get("dropped", 0) -
                                                 full[0].get("dropped", 0)) if full else None
            r["ok"] = (connected == n and r["sink_drop_pct_max"] is not None
                       and r["sink_drop_pct_max"] < 1 and r["receiver_missing_pct_max"] < 1)
            res.append(r)
            print(f"  N={n}: connected {connected}, sink drops max "
                  f"{r['sink_drop_pct_max']}%, receivers missing max "
                  f"{r['receiver_missing_pct_max']}%, cc {r['cc_errors_total']}, sender "
                  f"dropped {r['sender_dropped']}, cpu {r['sender_cpu_cores']}",
                  file=sys.stderr, flush=True)
        finally:
            procs.kill_all()
        if not r["ok"]:
            break
    return res


def fmt(v, d=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{d}f}"
    return str(v)


def ratio(a, b):
    try:
        return a / b if a is not None and b else None
    except TypeError:
        return None


def main():
    dur = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    lat = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    phases = os.environ.get("CS_PHASES",
                            "a1080,a720,enc1080,enc720,lat1080,lat720,fanout").split(",")
    steps = [int(x) for x in os.environ.get("CS_FANOUT", "10,20,30,40,50,64,80").split(",")]
    fdur = int(os.environ.get("CS_FANOUT_S", "20"))
    ctx = Ctx()
    img = make_image(ctx)
    out = {"bench": "video", "duration_s": dur, "latency_phase_srt_ms": lat,
           "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}
    cfg = {"a1080": (1920, 1080, 4000), "a720": (1280, 720, 2000)}
    for ph in phases:
        if ph in cfg:
            w, h, kbps = cfg[ph]
            out[ph] = phase_a(ctx, img, w, h, kbps, dur)
        elif ph.startswith("enc"):
            w, h, kbps = cfg["a" + ph[3:]]
            out[ph] = phase_enc(ctx, img, w, h, kbps, min(dur, 20),
                                int(os.environ.get("CS_ENC_RUNS", "3")))
        elif ph.startswith("lat"):
            w, h, kbps = cfg["a" + ph[3:]]
            out[ph] = phase_lat(ctx, img, w, h, kbps, max(10, min(dur, 20)), lat)
        elif ph == "fanout":
            fo = fanout(ctx, img, steps, fdur)
            out["fanout"] = {"steps": fo,
                             "max_receivers_ok": max((r["n"] for r in fo if r["ok"]),
                                                     default=0)}
    out["load_after"] = os.getloadavg()
    report(out)


def report(out):
    rows = []
    ratios = {}
    for ph in ("a1080", "a720"):
        if ph not in out:
            continue
        o, f = out[ph]["ours"], out[ph]["ffmpeg"]
        q0, q1 = o.get("quality") or {}, f.get("quality") or {}
        figs = [
            ("encoder fps (mean of 1 s)", o.get("enc_fps"), f.get("enc_fps"), 2),
            ("encoder fps, worst 1 s", o.get("enc_fps_min_1s"), f.get("enc_fps_min_1s"), 1),
            ("sender drops % (whole run)", o.get("sender_drop_pct"), f.get("sender_drop_pct"), 2),
            ("sender drops % (after 3 s)", o.get("sender_drop_pct_steady"),
             f.get("sender_drop_pct_steady"), 2),
            ("per-sink drops % (max)", o.get("sink_drop_pct_max"), None, 2),
            ("receiver missing frames % (max of 4)", o.get("receiver_drop_pct_max"),
             f.get("receiver_drop_pct_max"), 2),
            ("sender CPU, cores", o.get("cpu_cores"), f.get("cpu_cores"), 2),
            ("received kbit/s (TS)", o.get("received_kbps"), f.get("received_kbps"), 0),
            ("PSNR Y dB, every frame both got", q0.get("psnr_y_all"), q1.get("psnr_y_all"), 3),
            ("  frames compared", q0.get("frames_all"), q1.get("frames_all"), 0),
            ("PSNR Y dB (frames n%13==0)", q0.get("psnr_y"), q1.get("psnr_y"), 2),
            ("PSNR avg dB", q0.get("psnr_avg"), q1.get("psnr_avg"), 2),
            ("SSIM Y", q0.get("ssim_y"), q1.get("ssim_y"), 4),
            ("SSIM all", q0.get("ssim_all"), q1.get("ssim_all"), 4),
            ("latency p50 ms (barcode, SRT 20)", o["r1"]["latency_ms"]["p50"],
             f["r1"]["latency_ms"]["p50"], 1),
            ("latency p95 ms (barcode, SRT 20)", o["r1"]["latency_ms"]["p95"],
             f["r1"]["latency_ms"]["p95"], 1),
            ("join: first frame ms (median)", med(o["join_first_frame_ms"]),
             med(f["join_first_frame_ms"]), 0),
            ("join: first live frame ms (median)", med(o["join_first_live_ms"]),
             med(f["join_first_live_ms"]), 0),
            ("join: first live frame ms (max)", mx(o["join_first_live_ms"]),
             mx(f["join_first_live_ms"]), 0),
        ]
        for name, a, b, d in figs:
            rr = ratio(a, b)
            ratios[f"{ph}: {name}"] = rr
            rows.append((ph, name, fmt(a, d), fmt(b, d), fmt(rr, 3)))
    for ph in ("enc1080", "enc720"):
        if ph not in out:
            continue
        o, f = out[ph]["ours"], out[ph]["ffmpeg"]
        rows.append((ph, f"PSNR Y dB, encode alone, median of {out[ph]['runs']}",
                     fmt(o["median"], 3), fmt(f["median"], 3), fmt(ratio(o["median"], f["median"]), 3)))
        rows.append((ph, "  each run", " ".join(fmt(x, 2) for x in o["psnr_y"]),
                     " ".join(fmt(x, 2) for x in f["psnr_y"]), ""))
        rows.append((ph, "  frames compared", str(out[ph]["frames"]), "", ""))
        ratios[f"{ph}: PSNR Y, encode alone"] = ratio(o["median"], f["median"])
    for ph in ("lat1080", "lat720"):
        if ph not in out:
            continue
        o, f = out[ph]["ours"], out[ph]["ffmpeg"]
        for k in ("p50", "p95"):
            a, b = o["barcode_latency_ms"][k], f["barcode_latency_ms"][k]
            ratios[f"{ph}: latency {k}"] = ratio(a, b)
            rows.append((ph, f"latency {k} ms (barcode, SRT {out['latency_phase_srt_ms']})",
                         fmt(a), fmt(b), fmt(ratio(a, b), 3)))
        nr = o.get("native_receiver") or {}
        rows.append((ph, "ours: latency p50/p95 ms (SEI, our receiver)",
                     f"{fmt((nr.get('latency_ms') or {}).get('p50'))}/"
                     f"{fmt((nr.get('latency_ms') or {}).get('p95'))}", "", ""))
        na = o.get("native_receiver_alone") or {}
        rows.append((ph, "ours alone: latency p50/p95 ms (SEI, no barcode receiver)",
                     f"{fmt((na.get('latency_ms') or {}).get('p50'))}/"
                     f"{fmt((na.get('latency_ms') or {}).get('p95'))}", "", ""))
        rows.append((ph, "our receiver joining: first_frame_ms",
                     fmt(nr.get("first_frame_ms")),
                     fmt((f.get("native_receiver") or {}).get("first_frame_ms")), ""))
    if "fanout" in out:
        rows.append(("fanout", "max 4 Mbit/s receivers, < 1 % drops",
                     str(out["fanout"]["max_receivers_ok"]), "", ""))
    w = [max(len(r[i]) for r in rows) for i in range(5)] if rows else [0] * 5
    print(f"{'phase':{w[0]}}  {'figure':{w[1]}}  {'ours':>{w[2]}}  {'ffmpeg':>{w[3]}}  ratio")
    for r in rows:
        print(f"{r[0]:{w[0]}}  {r[1]:{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]}")
    out["ratios_ours_over_ffmpeg"] = ratios
    print(json.dumps(out, default=lambda x: None))


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def mx(v):
    v = [x for x in v if x is not None]
    return max(v) if v else None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "gen":
        gen_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "recv":
        recv_main(sys.argv[2:])
    else:
        main()
