"""Lossless JPEG (SOF3, codecs/dicom/ljpeg.c) beyond the corpus: each case
must decode bit for bit as dcmdjpeg (DCMTK 3.6.7's IJG) decodes it, and as
the stored values it was made from (the original >> Pt << Pt).

1. dcmcjpeg from the corpus's uncompressed files: predictors 1..7 (+el +sv),
   SV1 (+e1), point transform (+pt), 1 KiB fragments (+fs 1), 8/12/14/16
   bits, signed and unsigned, grey and RGB, multi-frame.
2. Our own small SOF3 encoder (below), for what dcmcjpeg cannot write:
   restart intervals (DRI/RSTn), precisions 2..16, one scan per component
   with a table each, long Huffman codes (> the decoder's lookahead), the
   SSSS=16 difference (32768, no extra bits), noise full of 0xFF bytes, and
   a frame spread over many small fragments."""
import heapq
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

TS_LL14 = "1.2.840.10008.1.2.4.57"


# ---- a minimal lossless JPEG encoder (T.81 H, Huffman) ----

def predict(x, pred, P, pt, ri_rows):
    """Differences (mod 2^16, signed) of x (H, W) int64 for predictor pred."""
    H, W = x.shape
    d = np.empty_like(x)
    for y in range(H):
        row = x[y]
        p = np.empty_like(row)
        if y == 0 or (ri_rows and y % ri_rows == 0):
            p[0] = 1 << (P - pt - 1)
            p[1:] = row[:-1]
        else:
            up = x[y - 1]
            a = np.concatenate(([0], row[:-1]))
            c = np.concatenate(([0], up[:-1]))
            b = up
            p = {1: a, 2: b, 3: c, 4: a + b - c, 5: a + ((b - c) >> 1), 6: b + ((a - c) >> 1),
                 7: (a + b) >> 1}[pred].copy()
            p[0] = up[0]
        d[y] = row - p
    return ((d + 32768) & 0xFFFF) - 32768


def categories(d):
    s = np.zeros(d.shape, np.int64)
    nz = d != 0
    s[nz] = np.floor(np.log2(np.abs(d[nz]))).astype(np.int64) + 1
    return s


def code_lengths(freq, deep):
    """Huffman code lengths {category: length} (<= 16, never all ones)."""
    if deep:  # long codes on purpose: 2, 2, 3, ..., 16, 16 (Kraft 3/4)
        order = sorted(range(17), key=lambda k: -freq.get(k, 0))
        return dict(zip(order, [2, 2] + list(range(3, 17)) + [16]))
    heap = [(n, i, [k]) for i, (k, n) in enumerate(freq.items())]
    heap.append((1, len(heap), [-1]))  # reserves the all-ones code (IJG's trick)
    heapq.heapify(heap)
    depth = {k: 0 for k in list(freq) + [-1]}
    i = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        for k in a + b:
            depth[k] += 1
        heapq.heappush(heap, (n1 + n2, i, a + b))
        i += 1
    depth.pop(-1)
    if max(depth.values()) > 16:
        return code_lengths(freq, True)
    return depth


def canonical(lengths):
    """(counts[16], values, {category: (code, length)})."""
    syms = sorted(lengths, key=lambda k: (lengths[k], k))
    counts = [0] * 16
    codes, code, prev = {}, 0, 0
    for k in syms:
        n = lengths[k]
        code <<= n - prev
        prev = n
        codes[k] = (code, n)
        counts[n - 1] += 1
        code += 1
    return counts, syms, codes


def entropy_bytes(d_list, codes_list):
    """Entropy-code samples: d_list[i] the diffs of a component in MCU
    order; interleaved when several. Returns stuffed bytes, padded with 1s."""
    parts = []
    n = len(d_list[0])
    cols = []
    for d, codes in zip(d_list, codes_list):
        s = categories(d)
        v = np.where(d >= 0, d, d + (1 << s) - 1)
        v = np.where(s == 16, 0, v)
        ext = np.where(s == 16, 0, s)
        code = np.array([codes.get(k, (0, 0))[0] for k in range(17)], np.int64)[s]
        clen = np.array([codes.get(k, (0, 0))[1] for k in range(17)], np.int64)[s]
        cols.append(((code << ext) | v, clen + ext))
    cols = [(val.tolist(), ln.tolist()) for val, ln in cols]
    for i in range(n):
        for val, ln in cols:
            if ln[i]:
                parts.append(format(val[i], "0%db" % ln[i]))
    bits = "".join(parts)
    bits += "1" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return raw.replace(b"\xff", b"\xff\x00")


def seg(marker, payload):
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def dht(tid, counts, vals):
    return seg(0xC4, bytes([tid]) + bytes(counts) + bytes(vals))


def ljpeg_encode(img, P, pred, pt=0, ri_rows=0, interleave=True, deep=False):
    """img (H, W, C) values < 2^P -> a SOF3 codestream."""
    H, W, C = img.shape
    x = img.astype(np.int64) >> pt
    diffs = [predict(x[:, :, c], pred, P, pt, ri_rows) for c in range(C)]
    out = bytearray(b"\xff\xd8")
    sof = bytes([P]) + H.to_bytes(2, "big") + W.to_bytes(2, "big") + bytes([C])
    for c in range(C):
        sof += bytes([c + 1, 0x11, 0])
    out += seg(0xC3, sof)
    if ri_rows:
        out += seg(0xDD, (ri_rows * W).to_bytes(2, "big"))
    groups = [list(range(C))] if interleave else [[c] for c in range(C)]
    tables = {}
    for g in groups:
        for c in g:
            tid = c if not interleave or C > 1 else 0
            freq = {}
            for k, m in zip(*np.unique(categories(diffs[c]), return_counts=True)):
                freq[int(k)] = int(m)
            counts, vals, codes = canonical(code_lengths(freq, deep))
            out += dht(tid, counts, vals)
            tables[c] = (tid, codes)
        sos = bytes([len(g)])
        for c in g:
            sos += bytes([c + 1, tables[c][0] << 4])
        out += seg(0xDA, sos + bytes([pred, 0, pt]))
        step = ri_rows or H
        for k, y0 in enumerate(range(0, H, step)):
            if k:
                out += bytes([0xFF, 0xD0 + ((k - 1) & 7)])
            out += entropy_bytes([diffs[c][y0:y0 + step].ravel() for c in g],
                                 [tables[c][1] for c in g])
    out += b"\xff\xd9"
    return bytes(out)


def write_dicom(path, frames, H, W, C, ba, bs, signed, frags=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = TS_LL14
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
    ds.PixelRepresentation = signed
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encaps.encapsulate(frames, fragments_per_frame=frags, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, write_like_original=False)


# ---- cases ----

def source_pixels():
    """Real image content to encode: 16-bit grey and 8-bit RGB."""
    ct = pydicom.dcmread(os.path.join(R.DATA, "MR2_UNCR.dcm")).pixel_array[256:448, 300:520]
    rgb = pydicom.dcmread(os.path.join(R.DATA, "US1_UNCR.dcm")).pixel_array[100:260, 200:400]
    return ct.astype(np.int64), rgb.astype(np.int64)


def synthetic_cases():
    ct, rgb = source_pixels()
    rng = np.random.default_rng(14)
    grey = ct[:, :, None]
    cases = []
    for p in (1, 4, 6, 7):
        cases.append(("restart 1 row, P12, SV%d" % p, grey & 0xFFF, 12, p, 0, 1, True, False))
    cases.append(("restart 5 rows, P16 scaled, SV1", (grey * 16) & 0xFFFF, 16, 1, 0, 5, True,
                  False))
    cases.append(("restart 3 rows, Pt 2, SV5", grey & 0xFFF, 12, 5, 2, 3, True, False))
    cases.append(("RGB interleaved, restart 2 rows, SV7", rgb, 8, 7, 0, 2, True, False))
    cases.append(("RGB one scan per component, SV2", rgb, 8, 2, 0, 0, False, False))
    cases.append(("RGB one scan per component, restart 4 rows, Pt 1, SV6", rgb, 8, 6, 1, 4,
                  False, False))
    for P in (2, 5, 13, 16):
        v = (grey >> max(0, 12 - P)) if P < 12 else (grey << (P - 12))
        cases.append(("P%d, SV1" % P, v & ((1 << P) - 1), P, 1, 0, 0, True, False))
    cases.append(("long Huffman codes, P16 noise, SV1 (0xFF bytes)",
                  rng.integers(0, 65536, (64, 96, 1)), 16, 1, 0, 0, True, True))
    cases.append(("long Huffman codes, P12, restart 7 rows, SV4", grey & 0xFFF, 12, 4, 0, 7, True,
                  True))
    jump = np.zeros((40, 50, 1), np.int64)
    jump[:, 1::2] = 32768
    cases.append(("SSSS=16 differences (32768), P16", jump, 16, 1, 0, 0, True, False))
    return cases


def check(name, path, want, inf_expect, tmp):
    """Ours == want (stored values) and == dcmdjpeg."""
    inf = R.info(path)
    for k, v in inf_expect.items():
        assert inf[k] == v, "%s: %s %s, expected %s" % (name, k, inf[k], v)
    a = R.ours(path, inf, path + ".raw")
    ref, _ = R.ref_dcmtk(path, inf, inf["transfer_syntax"], tmp)
    ok = np.array_equal(a, ref) and (want is None or np.array_equal(a, want))
    detail = ""
    if not ok:
        d1 = int(np.abs(a.astype(np.int64) - ref.astype(np.int64)).max())
        d2 = -1 if want is None else int(np.abs(a.astype(np.int64) - want.astype(np.int64)).max())
        detail = " (max|diff| vs dcmdjpeg %d, vs source %d)" % (d1, d2)
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, detail))
    return ok


def main():
    tmp = R.workdir("dicom_ljpeg")
    cases = R.Cases()
    run = cases.run

    # 1. dcmcjpeg variants of the uncompressed corpus files
    sources = ["CT_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "693_UNCR.dcm",
               "mlut_18.dcm", "vlut_04.dcm", "dx_image.dcm", "US1_UNCR.dcm", "emri_small.dcm",
               "sm_image.dcm", "eCT_Supplemental.dcm"]
    variants = [("+e1", ["+e1"])] + [("+sv%d" % p, ["+el", "+sv", str(p)]) for p in range(1, 8)]
    variants += [("+pt2 +sv1", ["+el", "+sv", "1", "+pt", "2"]), ("+fs1", ["+e1", "+fs", "1"])]
    for src in sources:
        spath = os.path.join(R.DATA, src)
        sinf = R.info(spath)
        orig = R.ref_pydicom(spath, sinf)
        many = src in ("CT_small.dcm", "vlut_04.dcm", "US1_UNCR.dcm", "693_UNCR.dcm",
                       "MR-SIEMENS-DICOM-WithOverlays.dcm")
        for tag, args in variants if many else [variants[0], variants[3], variants[-1]]:
            out = os.path.join(tmp, "%s.%s.dcm" % (src, tag.replace(" ", "")))

            def one(src=src, tag=tag, args=args, out=out, sinf=sinf, orig=orig):
                subprocess.run(["dcmcjpeg"] + args + [spath, out], check=True,
                               capture_output=True)
                want = orig
                if "+pt" in args:
                    pt = int(args[args.index("+pt") + 1])
                    inf = R.info(out)
                    raw = orig.astype(np.int64) & ((1 << inf["bits_stored"]) - 1)
                    want = R.normalize((raw >> pt) << pt, inf)
                return check("dcmcjpeg %s %s" % (tag, src), out, want,
                             {"rows": sinf["rows"], "cols": sinf["cols"],
                              "samples": sinf["samples"]}, tmp)
            run("dcmcjpeg %s %s" % (tag, src), one)

    # 2. our encoder: restart intervals, precisions, scans, long codes
    for name, img, P, pred, pt, ri, inter, deep in synthetic_cases():
        def one(name=name, img=img, P=P, pred=pred, pt=pt, ri=ri, inter=inter, deep=deep):
            H, W, C = img.shape
            cs = ljpeg_encode(img, P, pred, pt, ri, inter, deep)
            ba = 8 if P <= 8 else 16
            path = os.path.join(tmp, "enc_%d.dcm" % abs(hash(name)))
            write_dicom(path, [cs], H, W, C, ba, P, 0)
            want = ((img >> pt) << pt).reshape(1, H, W, C)
            return check("encoded: " + name, path, want.astype(R.dtype_of(R.info(path))),
                         {"rows": H, "cols": W}, tmp)
        run(name, one)

    # a frame over many small fragments (0xFF 0x00 pairs split between them),
    # and two frames, signed 12-bit
    ct, _ = source_pixels()

    def frags():
        img = (ct[:96, :128, None] * 7) & 0xFFFF
        frames = [ljpeg_encode(img, 16, 1, 0, 3, True, True), ljpeg_encode(img[::-1].copy(), 16, 6)]
        path = os.path.join(tmp, "enc_frags.dcm")
        write_dicom(path, frames, 96, 128, 1, 16, 16, 0, frags=37)
        want = np.stack([img, img[::-1]]).astype(np.uint16)
        return check("encoded: 2 frames x 37 fragments, restart 3 rows", path, want,
                     {"frames": 2}, tmp)
    run("fragments", frags)

    def signed12():
        img = (ct[:64, :80, None] - 900) & 0xFFF
        path = os.path.join(tmp, "enc_signed.dcm")
        write_dicom(path, [ljpeg_encode(img, 12, 3, 0, 8)], 64, 80, 1, 16, 12, 1)
        inf = R.info(path)
        return check("encoded: signed 12-bit, SV3, restart 8 rows", path,
                     R.normalize(img.reshape(1, 64, 80, 1), inf), {"pixel_signed": 1}, tmp)
    run("signed", signed12)
    R.report(cases.passed, cases.failed)


if __name__ == "__main__":
    main()
