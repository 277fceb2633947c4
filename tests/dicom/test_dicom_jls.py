"""JPEG-LS (codecs/dicom/jls.c, our T.87 decoder) beyond the corpus: every
case must decode bit for bit as CharLS 2.4 decodes it (our previous path,
forced with CS_JLS_CHARLS=1), as dcmdjpls (DCMTK 3.6.7's own CharLS fork)
decodes it, and as the values it was made from (lossless: the source;
near-lossless: our encoder's reconstruction, within NEAR of the source).

1. Every JPEG-LS file of the corpus (lossless, near-lossless, 8..16 bits,
   grey and RGB, one scan per component and sample-interleaved, LSE).
2. dcmcjpls from the corpus's uncompressed files: lossless, near-lossless
   (+md 1, 3), line / sample / no interleave (+il +is +in), custom
   thresholds and RESET (+t1 +t2 +t3 +rs, written as LSE), cooked mode,
   1 KiB fragments; 8, 12, 16 bits, signed and unsigned, grey and RGB,
   multi-frame.
3. Our transcode (CharLS's encoder, sample-interleaved colour): NEAR 0, 1, 3.
4. Our own small T.87 encoder (below), for what neither encoder writes:
   restart intervals (DRI/RSTm) in every interleave mode, precisions
   2..16, custom T1..T3 and RESET down to 3, NEAR up to 7 (and RANGE not a
   power of two), noise full of 0xFF bytes and escape codes, long runs
   ending at and before the line end, 1-pixel-wide and 1-line images, an
   8-bit codestream in a 16-bit dataset.
5. What jls.c leaves to CharLS (LSE MAXVAL below 2^P-1, RESET > 255, an HP
   colour transform, a mapping table, a point transform): the result,
   pixels or error, is CharLS's.

CharLS 2.4 and DCMTK's fork decode a sample-interleaved scan whose LSE sets
a RESET other than 64 as if it had one component (their codec factory
falls back to single-sample traits; DCMTK's encoder aborts on it): that
case is checked against T.87 (our encoder) only.

Prints how many cases ran; fails if any failed or fewer than expected ran."""
import os
import subprocess
import sys

import numpy as np
import pydicom
from pydicom import encaps
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import generate_uid

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402

TS_LL = "1.2.840.10008.1.2.4.80"
TS_NEAR = "1.2.840.10008.1.2.4.81"
MIN_CASES = 125

J = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12,
     13, 14, 15]


# ---- a minimal JPEG-LS encoder (T.87 Annex A, as CharLS 2.4 codes it) ----

def log2ceil(v):
    x = 0
    while v > (1 << x):
        x += 1
    return x


def default_thresholds(maxval, near):
    """T.87 C.2.4.1.1.1 (CharLS compute_default)."""
    def clamp(i, j):
        return j if i > maxval or i < j else i
    if maxval >= 128:
        f = (min(maxval, 4095) + 128) // 256
        t1 = clamp(f * 1 + 2 + 3 * near, near + 1)
        t2 = clamp(f * 4 + 3 + 5 * near, t1)
        return t1, t2, clamp(f * 17 + 4 + 7 * near, t2)
    f = 256 // (maxval + 1)
    t1 = clamp(max(2, 3 // f + 3 * near), near + 1)
    t2 = clamp(max(3, 7 // f + 5 * near), t1)
    return t1, t2, clamp(max(4, 21 // f + 7 * near), t2)


class Writer:
    """MSB-first bits; after an 0xFF byte the next byte carries 7 bits."""

    def __init__(self):
        self.out = bytearray()
        self.cur = self.nb = 0
        self.ff = False

    def bits(self, v, n):
        for i in range(n - 1, -1, -1):
            self.cur = (self.cur << 1) | ((v >> i) & 1)
            self.nb += 1
            if self.nb == (7 if self.ff else 8):
                self.out.append(self.cur)
                self.ff = self.cur == 0xFF
                self.cur = self.nb = 0

    def flush(self):
        if self.nb:
            self.bits(0, (7 if self.ff else 8) - self.nb)
        if self.ff:  # a marker must not follow 0xFF directly
            self.bits(0, 7)
        return bytes(self.out)


class Encoder:
    def __init__(self, P, near, t=None, reset=64):
        self.maxval = (1 << P) - 1
        self.near = near
        self.t1, self.t2, self.t3 = t or default_thresholds(self.maxval, near)
        self.reset = reset
        self.qm = 2 * near + 1
        self.range = (self.maxval + 2 * near) // self.qm + 1
        self.qbpp = log2ceil(self.range)
        bpp = max(2, log2ceil(self.maxval + 1))
        self.limit = 2 * (bpp + max(8, bpp))
        self.init()

    def init(self):
        a0 = max(2, (self.range + 32) // 64)
        self.A, self.B, self.C, self.N = [a0] * 365, [0] * 365, [0] * 365, [1] * 365
        self.RA, self.RN, self.RNn = [a0, a0], [1, 1], [0, 0]

    def Q(self, d):
        t1, t2, t3, n = self.t1, self.t2, self.t3, self.near
        if d <= -t3:
            return -4
        if d <= -t2:
            return -3
        if d <= -t1:
            return -2
        if d < -n:
            return -1
        if d <= n:
            return 0
        if d < t1:
            return 1
        if d < t2:
            return 2
        if d < t3:
            return 3
        return 4

    def golomb(self, w, k, m, limit):
        esc = limit - self.qbpp - 1
        if (m >> k) < esc:
            w.bits(0, m >> k)
            w.bits(1, 1)
            w.bits(m & ((1 << k) - 1), k)
        else:
            w.bits(0, esc)
            w.bits(1, 1)
            w.bits((m - 1) & ((1 << self.qbpp) - 1), self.qbpp)

    def err(self, e):
        """Quantised (NEAR) and reduced modulo RANGE (A.4.4, A.4.5)."""
        if self.near:
            e = (e + self.near) // self.qm if e > 0 else -((self.near - e) // self.qm)
        if e < 0:
            e += self.range
        if e >= (self.range + 1) // 2:
            e -= self.range
        return e

    def fix(self, v):
        if v < -self.near:
            v += self.range * self.qm
        elif v > self.maxval + self.near:
            v -= self.range * self.qm
        return min(max(v, 0), self.maxval)

    def regular(self, w, ix, q, pred):
        sign = -1 if q < 0 else 1
        q = abs(q)
        px = min(max(pred + sign * self.C[q], 0), self.maxval)
        e = self.err(sign * (ix - px))
        k = 0
        while (self.N[q] << k) < self.A[q]:
            k += 1
        corr = -1 if (k == 0 and self.near == 0 and 2 * self.B[q] + self.N[q] - 1 < 0) else 0
        ee = e ^ corr
        self.golomb(w, k, 2 * ee if ee >= 0 else -2 * ee - 1, self.limit)
        self.B[q] += e * self.qm
        self.A[q] += abs(e)
        if self.N[q] == self.reset:
            self.A[q] >>= 1
            self.B[q] >>= 1
            self.N[q] >>= 1
        self.N[q] += 1
        b, n = self.B[q], self.N[q]
        if b + n <= 0:
            b += n
            if b <= -n:
                b = -n + 1
            self.C[q] -= self.C[q] > -128
        elif b > 0:
            b -= n
            if b > 0:
                b = 0
            self.C[q] += self.C[q] < 127
        self.B[q] = b
        return self.fix(px + sign * e * self.qm)

    def interruption(self, w, ix, ra, rb, r, t):
        px = ra if t else rb
        sign = -1 if (t == 0 and ra > rb) else 1
        e = self.err(sign * (ix - px))
        temp = self.RA[t] + (self.RN[t] >> 1) * t
        k = 0
        while (self.RN[t] << k) < temp:
            k += 1
        nn, n = self.RNn[t], self.RN[t]
        m = ((k == 0 and e > 0 and 2 * nn < n) or (e < 0 and 2 * nn >= n) or (e < 0 and k != 0))
        em = 2 * abs(e) - t - int(m)
        self.golomb(w, k, em, self.limit - J[r] - 1)
        if e < 0:
            self.RNn[t] += 1
        self.RA[t] += (em + 1 - t) >> 1
        if self.RN[t] == self.reset:
            self.RA[t] >>= 1
            self.RN[t] >>= 1
            self.RNn[t] >>= 1
        self.RN[t] += 1
        return self.fix(px + sign * e * self.qm)

    def run_bits(self, w, cnt, eol, r):
        while cnt >= (1 << J[r]):
            w.bits(1, 1)
            cnt -= 1 << J[r]
            r = min(r + 1, 31)
        if eol:
            if cnt:
                w.bits(1, 1)
        else:
            w.bits(0, 1)
            w.bits(cnt, J[r])
        return r

    def line(self, w, row, cur, prev, ri, nc):
        """One line (nc == 1: one component; else sample-interleaved pixels
        as tuples). cur/prev have a border pixel at each end."""
        W = len(row)
        prev[W + 1] = prev[W]
        cur[0] = prev[1]
        x = 0
        while x < W:
            ra, rb, rc, rd = cur[x], prev[x + 1], prev[x], prev[x + 2]
            if nc == 1:
                ra, rb, rc, rd = (ra,), (rb,), (rc,), (rd,)
            qs = [(self.Q(rd[c] - rb[c]) * 9 + self.Q(rb[c] - rc[c])) * 9 + self.Q(rc[c] - ra[c])
                  for c in range(len(ra))]
            if any(qs):
                ix = row[x] if nc > 1 else (row[x],)
                v = tuple(self.regular(w, ix[c], qs[c], med(ra[c], rb[c], rc[c]))
                          for c in range(len(ra)))
                cur[x + 1] = v if nc > 1 else v[0]
                x += 1
                continue
            cnt = 0
            while x + cnt < W:
                ix = row[x + cnt] if nc > 1 else (row[x + cnt],)
                if any(abs(ix[c] - ra[c]) > self.near for c in range(len(ra))):
                    break
                cnt += 1
            for j in range(cnt):
                cur[x + 1 + j] = cur[x]
            xi = x + cnt
            ri[0] = self.run_bits(w, cnt, xi == W, ri[0])
            if xi == W:
                break
            rbi = prev[xi + 1]
            if nc == 1:
                t = 1 if abs(ra[0] - rbi) <= self.near else 0
                cur[xi + 1] = self.interruption(w, row[xi], ra[0], rbi, ri[0], t)
            else:  # CharLS: type 0 (Rb predicts) for every component
                cur[xi + 1] = tuple(self.interruption(w, row[xi][c], ra[c], rbi[c], ri[0], 0)
                                    for c in range(nc))
            ri[0] = max(ri[0] - 1, 0)
            x = xi + 1


def med(a, b, c):
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def seg(marker, payload):
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def jls_encode(img, P, near=0, ilv=0, restart=0, t=None, reset=64, lse=False):
    """img (H, W, C) -> (codestream, reconstruction (H, W, C))."""
    H, W, C = img.shape
    img = img.astype(np.int64)
    rec = np.zeros_like(img)
    out = bytearray(b"\xff\xd8")
    out += seg(0xF7, bytes([P]) + H.to_bytes(2, "big") + W.to_bytes(2, "big") + bytes([C]) +
               b"".join(bytes([c + 1, 0x11, 0]) for c in range(C)))
    if t or reset != 64 or lse:
        vals = [(1 << P) - 1] + list(t or (0, 0, 0)) + [reset]
        out += seg(0xF8, b"\x01" + b"".join(v.to_bytes(2, "big") for v in vals))
    if restart:
        out += seg(0xDD, restart.to_bytes(2, "big"))
    scans = [[c] for c in range(C)] if ilv == 0 else [list(range(C))]
    for comps in scans:
        out += seg(0xDA, bytes([len(comps)]) + b"".join(bytes([c + 1, 0]) for c in comps) +
                   bytes([near, ilv, 0]))
        enc = Encoder(P, near, t, reset)
        nl = len(comps) if ilv == 1 else 1
        nc = len(comps) if ilv == 2 else 1
        zero = (0,) * nc if nc > 1 else 0
        step = restart or H
        for k, y0 in enumerate(range(0, H, step)):
            if k:
                out += bytes([0xFF, 0xD0 + ((k - 1) & 7)])
            enc.init()
            w = Writer()
            prev = [[zero] * (W + 2) for _ in range(nl)]
            ri = [[0] for _ in range(nl)]
            for y in range(y0, min(H, y0 + step)):
                cur = [[zero] * (W + 2) for _ in range(nl)]
                for j in range(nl):
                    if nc > 1:
                        row = [tuple(int(v) for v in img[y, x, comps]) for x in range(W)]
                    else:
                        row = [int(v) for v in img[y, :, comps[j]]]
                    enc.line(w, row, cur[j], prev[j], ri[j], nc)
                    if nc > 1:
                        rec[y, :, comps] = np.array(cur[0][1:W + 1]).T
                    else:
                        rec[y, :, comps[j]] = cur[j][1:W + 1]
                prev = cur
            out += w.flush()
    out += b"\xff\xd9"
    return bytes(out), rec


def write_dicom(path, frames, H, W, C, ba, bs, near, frags=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = TS_NEAR if near else TS_LL
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = H, W, C
    ds.PhotometricInterpretation = "RGB" if C == 3 else "MONOCHROME2"
    if C == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = ba, bs, bs - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = len(frames)
    if near:
        ds.LossyImageCompression = "01"
    ds.PixelData = encaps.encapsulate([f + b"\0" * (len(f) & 1) for f in frames],
                                      fragments_per_frame=frags, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, write_like_original=False)


# ---- checks ----

def decode_raw(path, out, charls=False):
    env = dict(os.environ)
    env.pop("CS_JLS_CHARLS", None)
    if charls:
        env["CS_JLS_CHARLS"] = "1"
    r = subprocess.run([R.TOOL, "decode", path, out], capture_output=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("dicom_tool decode%s: %s" % (" (CharLS)" if charls else "",
                                                        r.stderr.decode(errors="replace").strip()))
    with open(out, "rb") as f:
        return f.read()


def check(name, path, tmp, want=None, near=0, no_charls=None, no_dcmtk=None):
    """Ours == CharLS 2.4 (bytes) == dcmdjpls == want (lossless) or within
    NEAR of it (compared as the stored bit patterns, as the codec sees
    them). no_charls / no_dcmtk: why that decoder is expected to fail or
    differ on this stream (then it only has to)."""
    inf = R.info(path)
    raw = path + ".raw"
    ours = decode_raw(path, raw)
    a = np.frombuffer(ours, dtype=R.dtype_of(inf)).reshape(inf["frames"], inf["rows"],
                                                           inf["cols"], inf["samples"])
    problems, notes = [], []
    try:
        charls = decode_raw(path, raw + ".charls", charls=True)
        if ours != charls:
            c = np.frombuffer(charls, dtype=R.dtype_of(inf)).reshape(a.shape)
            problems.append("vs CharLS max|diff| %d" % int(np.abs(a.astype(np.int64) - c).max()))
    except RuntimeError as e:
        problems.append(str(e))
    if no_charls and problems:
        notes.append("CharLS n/a: %s" % no_charls)
        problems = []
    elif no_charls:
        problems.append("CharLS decodes it (expected not to: %s)" % no_charls)
    try:
        ref, _ = R.ref_dcmtk(path, inf, inf["transfer_syntax"], tmp)
        if not np.array_equal(a, ref):
            problems.append("vs dcmdjpls max|diff| %d" %
                            int(np.abs(a.astype(np.int64) - ref.astype(np.int64)).max()))
    except subprocess.CalledProcessError as e:
        if not no_dcmtk:
            problems.append("dcmdjpls: %s" % e.stderr.decode(errors="replace").strip())
        else:
            notes.append("dcmdjpls n/a: %s" % no_dcmtk)
    if want is not None:
        mask = (1 << inf["bits_stored"]) - 1
        d = int(np.abs((a.astype(np.int64) & mask) - (want.astype(np.int64) & mask)).max())
        if d > near:
            problems.append("vs source max|diff| %d (NEAR %d)" % (d, near))
    ok = not problems
    print("%s %s [%s, %dx%dx%d, %d bits, %d frame(s)]%s%s" % (
        "ok  " if ok else "FAIL", name, inf["transfer_syntax"].split(".")[-1], inf["rows"],
        inf["cols"], inf["samples"], inf["bits_stored"], inf["frames"],
        "" if ok else ": " + "; ".join(problems), " (%s)" % "; ".join(notes) if notes else ""))
    return ok


def source_pixels():
    """Real image content: 16-bit CT, 12-bit MR, 8-bit RGB ultrasound."""
    ct = pydicom.dcmread(os.path.join(R.DATA, "693_UNCR.dcm")).pixel_array.astype(np.int64)
    mr = pydicom.dcmread(os.path.join(R.DATA, "MR2_UNCR.dcm")).pixel_array.astype(np.int64)
    rgb = pydicom.dcmread(os.path.join(R.DATA, "US1_UNCR.dcm")).pixel_array.astype(np.int64)
    return ct & 0xFFFF, mr & 0xFFF, rgb


def encoder_cases():
    """(name, img (H, W, C), P, near, ilv, restart, t, reset, ba)."""
    ct, mr, rgb = source_pixels()
    rng = np.random.default_rng(87)
    g12 = mr[400:448, 400:464, None]
    g16 = ct[200:240, 180:236, None]
    col = rgb[150:190, 250:298]
    flat = np.full((24, 40, 1), 100, np.int64)
    flat[5, 7] = 180
    flat[9, 39] = 3
    flat[12:14, 10:30] = 101
    flat[17, :] = 90
    flat[20, 0] = 0
    cases = [
        ("P12, restart 1 line", g12, 12, 0, 0, 1, None, 64, 16),
        ("P12, restart 5 lines, NEAR 1", g12, 12, 1, 0, 5, None, 64, 16),
        ("P16, restart 3 lines", g16, 16, 0, 0, 3, None, 64, 16),
        ("P16, restart 7 lines, NEAR 3", g16, 16, 3, 0, 7, None, 64, 16),
        ("P8, restart 2 lines, NEAR 7 (RANGE 18)", g12 >> 4, 8, 7, 0, 2, None, 64, 8),
        ("RGB ILV 0, restart 4 lines", col, 8, 0, 0, 4, None, 64, 8),
        ("RGB ILV 1, restart 3 lines", col, 8, 0, 1, 3, None, 64, 8),
        ("RGB ILV 2, restart 1 line", col, 8, 0, 2, 1, None, 64, 8),
        ("RGB ILV 1, restart 6 lines, NEAR 2", col, 8, 2, 1, 6, None, 64, 8),
        ("RGB ILV 2, restart 5 lines, NEAR 1", col, 8, 1, 2, 5, None, 64, 8),
        ("RGB 12-bit ILV 2, NEAR 0", (col * 13) & 0xFFF, 12, 0, 2, 0, None, 64, 16),
        ("RGB 12-bit ILV 1, NEAR 3", (col * 13) & 0xFFF, 12, 3, 1, 0, None, 64, 16),
        ("custom T1..T3, RESET 16", g12, 12, 0, 0, 0, (5, 20, 70), 16, 16),
        ("custom T1..T3, RESET 3, NEAR 2", g12, 12, 2, 0, 0, (3, 4, 9), 3, 16),
        ("T1 = T2 = T3, RESET 255", g12, 12, 0, 0, 0, (40, 40, 40), 255, 16),
        ("RGB custom thresholds, ILV 2, RESET 40", col, 8, 0, 2, 0, (2, 3, 4), 40, 8),
        ("LSE with the default values", g12, 12, 0, 0, 0, None, 64, 16),
        ("flat with runs: to and before the line end", flat, 8, 0, 0, 0, None, 64, 8),
        ("flat with runs, NEAR 1", flat + (rng.integers(0, 2, flat.shape)), 8, 1, 0, 3, None,
         64, 8),
        ("RGB runs, ILV 2", np.repeat(flat, 3, axis=2) // [1, 2, 3], 8, 0, 2, 0, None, 64, 8),
        ("RGB runs, ILV 1", np.repeat(flat, 3, axis=2) // [1, 2, 3], 8, 0, 1, 0, None, 64, 8),
        ("P16 noise (escape codes, 0xFF bytes)", rng.integers(0, 65536, (20, 30, 1)), 16, 0, 0, 0,
         None, 64, 16),
        ("P16 noise, NEAR 5", rng.integers(0, 65536, (20, 30, 1)), 16, 5, 0, 4, None, 64, 16),
        ("P8 noise, restart 2", rng.integers(0, 256, (20, 30, 1)), 8, 0, 0, 2, None, 64, 8),
        ("P2", (g12 >> 10) & 3, 2, 0, 0, 0, None, 64, 8),
        ("P2, NEAR 1", (g12 >> 10) & 3, 2, 1, 0, 0, None, 64, 8),
        ("P5", (g12 >> 7) & 31, 5, 0, 0, 2, None, 64, 8),
        ("P5, NEAR 1", (g12 >> 7) & 31, 5, 1, 0, 0, None, 64, 8),
        ("P13", (g12 * 2) & 0x1FFF, 13, 0, 0, 0, None, 64, 16),
        ("P15, NEAR 4", (g16 >> 1) & 0x7FFF, 15, 4, 0, 0, None, 64, 16),
        ("8-bit codestream, 16-bit dataset", g12 >> 4, 8, 0, 0, 0, None, 64, 16),
        ("1 pixel wide", g12[:, :1], 12, 0, 0, 3, None, 64, 16),
        ("1 line", g12[:1], 12, 0, 0, 0, None, 64, 16),
        ("1x1", g12[:1, :1], 12, 0, 0, 0, None, 64, 16),
        ("RGB 1 pixel wide, ILV 2", col[:, :1], 8, 0, 2, 2, None, 64, 8),
        ("RGB 2x2, ILV 1, NEAR 1", col[:2, :2], 8, 1, 1, 1, None, 64, 8),
    ]
    return cases


def main():
    tmp = R.workdir("dicom_jls")
    cases = R.Cases()
    run = cases.run

    # 1. the corpus's JPEG-LS files
    corpus = [p for p in R.files() if R.info(p)["transfer_syntax"] in R.JLS]
    print("corpus JPEG-LS files: %s" % ", ".join(os.path.basename(p) for p in corpus))
    for p in corpus:
        run(os.path.basename(p), lambda p=p: check("corpus " + os.path.basename(p), p, tmp))

    # 2. dcmcjpls variants of the uncompressed corpus files
    sources = ["CT_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "693_UNCR.dcm",
               "mlut_18.dcm", "vlut_04.dcm", "dx_image.dcm", "US1_UNCR.dcm", "emri_small.dcm",
               "sm_image.dcm", "eCT_Supplemental.dcm", "MR2_UNCR.dcm"]
    # dcmcjpls writes near-lossless for unsigned data only, and aborts in
    # cooked mode on some signed images and for +is with a RESET (CharLS 1.x
    # codes sample-interleaved scans with RESET != 64 as one component).
    grey = [("+el", ["+el"], 0), ("+t1 4 +t2 11 +t3 40 +rs 30",
                                  ["+t1", "4", "+t2", "11", "+t3", "40", "+rs", "30"], 0),
            ("+fs 1", ["+fs", "1"], 0)]
    grey_unsigned = grey + [("+md 1", ["+en", "+md", "1"], 1), ("+md 3", ["+en", "+md", "3"], 3),
                            ("+pc +fs 1", ["+pc", "+fs", "1"], 0)]
    colour = [("+il", ["+il"], 0), ("+is", ["+is"], 0), ("+in", ["+in"], 0),
              ("+is +md 2", ["+is", "+en", "+md", "2"], 2),
              ("+il +md 1", ["+il", "+en", "+md", "1"], 1),
              ("+in +md 3", ["+in", "+en", "+md", "3"], 3),
              ("+is +t1 5 +t2 9 +t3 30", ["+is", "+t1", "5", "+t2", "9", "+t3", "30"], 0),
              ("+il +t1 5 +t2 9 +t3 30 +rs 20",
               ["+il", "+t1", "5", "+t2", "9", "+t3", "30", "+rs", "20"], 0)]
    for src in sources:
        spath = os.path.join(R.DATA, src)
        sinf = R.info(spath)
        orig = R.ref_pydicom(spath, sinf)
        variants = (colour if sinf["samples"] == 3 else
                    grey if sinf["pixel_signed"] else grey_unsigned)
        if src == "MR2_UNCR.dcm":
            variants = [variants[0], variants[3]]
        for tag, args, near in variants:
            out = os.path.join(tmp, "%s.%s.dcm" % (src, tag.replace(" ", "")))

            def one(src=src, tag=tag, args=args, out=out, orig=orig, near=near):
                subprocess.run(["dcmcjpls"] + args + [spath, out], check=True,
                               capture_output=True)
                return check("dcmcjpls %s %s" % (tag, src), out, tmp, orig, near)
            run("dcmcjpls %s %s" % (tag, src), one)

    # 3. our transcode (CharLS's encoder; colour sample-interleaved)
    for src in ["CT_small.dcm", "mlut_18.dcm", "vlut_04.dcm", "US1_UNCR.dcm", "emri_small.dcm",
                "eCT_Supplemental.dcm"]:
        spath = os.path.join(R.DATA, src)
        sinf = R.info(spath)
        orig = R.ref_pydicom(spath, sinf)
        for ts, q in ((TS_LL, 0), (TS_NEAR, 1), (TS_NEAR, 3)):
            out = os.path.join(tmp, "tc_%s_%d.dcm" % (src, q))

            def one(src=src, ts=ts, q=q, out=out, orig=orig):
                args = [R.TOOL, "transcode", spath, out, ts] + ([str(q)] if q else [])
                subprocess.run(args, check=True, capture_output=True)
                return check("transcode NEAR %d %s" % (q, src), out, tmp, orig, q)
            run("transcode %d %s" % (q, src), one)

    # 4. our encoder
    for name, img, P, near, ilv, ri, t, reset, ba in encoder_cases():
        def one(name=name, img=img, P=P, near=near, ilv=ilv, ri=ri, t=t, reset=reset, ba=ba):
            H, W, C = img.shape
            cs, rec = jls_encode(img, P, near, ilv, ri, t, reset, lse="LSE" in name)
            if near == 0 and not np.array_equal(rec, img):
                raise AssertionError("encoder: lossless reconstruction differs")
            if int(np.abs(rec - img).max()) > near:
                raise AssertionError("encoder: reconstruction beyond NEAR")
            path = os.path.join(tmp, "enc_%08x.dcm" % (abs(hash(name)) & 0xFFFFFFFF))
            frames = [cs, cs] if "1x1" in name else [cs]
            write_dicom(path, frames, H, W, C, ba, max(P, 8) if ba == 16 and P == 8 else P, near)
            want = np.stack([rec] * len(frames)).astype(np.int64)
            no_dcmtk = ("DCMTK 3.6.7's CharLS fork rejects restart intervals" if ri else
                        "DCMTK rejects P < 8" if P < 8 else
                        "DCMTK wants Bits Allocated 8 for P 8" if ba == 16 and P == 8 else None)
            no_charls = None
            if ilv == 2 and reset != 64:
                no_charls = no_dcmtk = ("CharLS 2.4 and DCMTK's fork decode a sample-"
                                        "interleaved scan with RESET != 64 as one component")
            return check("encoded: %s (P%d NEAR %d ILV %d%s)" % (
                name, P, near, ilv, ", DRI %d" % ri if ri else ""), path, tmp, want, 0,
                no_charls, no_dcmtk)
        run(name, one)

    # 5. what jls.c leaves to CharLS: the result (pixels or error) is CharLS's
    _, mr, rgb = source_pixels()
    g12, col = mr[400:432, 400:440, None], rgb[150:182, 250:290]
    cs12, _ = jls_encode(g12, 12, 0, 0, 0, None, 64, lse=True)
    lse = cs12.index(b"\xff\xf8")
    cs8, _ = jls_encode(col, 8, 0, 2)
    sos = cs8.index(b"\xff\xda")
    fallbacks = [
        ("LSE MAXVAL 4000 < 2^P-1", cs12[:lse + 5] + (4000).to_bytes(2, "big") + cs12[lse + 7:],
         g12.shape, 12),
        ("LSE RESET 300 > 255", cs12[:lse + 13] + (300).to_bytes(2, "big") + cs12[lse + 15:],
         g12.shape, 12),
        ("HP colour transform 1 (APP8 mrfx)", cs8[:2] + seg(0xE8, b"mrfx\x01") + cs8[2:],
         col.shape, 8),
        ("a mapping table selected", cs8[:sos + 6] + b"\x01" + cs8[sos + 7:], col.shape, 8),
        ("point transform 1", cs8[:sos + 13] + b"\x01" + cs8[sos + 14:], col.shape, 8),
    ]
    for name, cs, shape, P in fallbacks:
        def one(name=name, cs=cs, shape=shape, P=P):
            H, W, C = shape
            path = os.path.join(tmp, "fb_%08x.dcm" % (abs(hash(name)) & 0xFFFFFFFF))
            write_dicom(path, [cs], H, W, C, 8 if P <= 8 else 16, P, 0)
            res = []
            for charls in (False, True):
                try:
                    res.append(decode_raw(path, path + ".raw%d" % charls, charls))
                except RuntimeError as e:
                    res.append(str(e).replace(" (CharLS)", ""))
            ok = res[0] == res[1]
            print("%s fallback: %s: %s" % ("ok  " if ok else "FAIL", name,
                                          "decoded by CharLS" if isinstance(res[0], bytes)
                                          else "CharLS's error: " + res[0]))
            return ok
        run(name, one)

    total = cases.passed + cases.failed
    print("%d cases ran (expected at least %d)" % (total, MIN_CASES))
    if total < MIN_CASES:
        print("FAIL: only %d cases ran" % total)
        cases.failed += 1
    R.report(cases.passed, cases.failed)


if __name__ == "__main__":
    main()
