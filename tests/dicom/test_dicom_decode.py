"""Acceptance 1: every corpus file with pixel data decodes (all frames); the
stored values equal an independent reference decode bit for bit for the
lossless syntaxes, and within a stated tolerance for lossy JPEG.

Oracles: pydicom 2.3.1 (native, deflate, big endian, RLE); dcmdjpeg /
dcmdjpls (DCMTK 3.6.7) to explicit LE read back with pydicom (JPEG, JPEG-LS);
opj_decompress on the codestream pydicom extracts (J2K, HTJ2K: same wavelet
library as ours, so this checks our framing, fragment joining, component
interleave and sign handling); zlib for Deflated Image Frame Compression.

Lossy JPEG tolerance: our 8-bit path is libjpeg-turbo, DCMTK's is IJG 6b;
both use the accurate integer IDCT but differ in chroma upsampling rounding:
|diff| <= 2 grey levels (8-bit), and the mean |diff| < 0.1.
JPEG-LS near-lossless and lossy J2K are still compared exactly: their
decoders are deterministic."""
import os
import sys

import numpy as np
import pydicom
from pydicom import encaps

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402


def main():
    tmp = R.workdir("dicom_decode")
    passed = failed = 0
    items, skipped = R.images()
    for path, name, inf in items:
        try:
            a = R.ours(path, inf, os.path.join(tmp, name + ".raw"))
            ref, oracle, lossy = R.reference(path, inf, tmp)
            if ref.shape != a.shape:
                raise AssertionError("shape %s vs %s %s" % (a.shape, oracle, ref.shape))
            d = np.abs(a.astype(np.int64) - ref.astype(np.int64))
            mx, mean = int(d.max()), float(d.mean())
            if lossy and inf["transfer_syntax"] in R.JPEG_LOSSY:
                ok = mx <= 2 and mean < 0.1
            else:
                ok = mx == 0
            print("%s %s [%s, %s, %d frame(s)] vs %s: max|diff| %d mean %.4f" %
                  ("ok  " if ok else "FAIL", name, inf["transfer_syntax"], inf["photometric"],
                   inf["frames"], oracle, mx, mean))
            if ok:
                passed += 1
            else:
                failed += 1
        except Exception as e:  # report every file, then fail
            print("FAIL %s: %s" % (name, e))
            failed += 1
    # Fragmentation: multi-frame files re-encapsulated (pydicom.encaps) with
    # several fragments per frame and no offset table (frames found by their
    # EOI/EOC markers), with a Basic Offset Table, and with an Extended Offset
    # Table; each must decode exactly as the original.
    for name in ("emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm",
                 "examples_ybr_color.dcm"):
        path = os.path.join(R.DATA, name)
        inf = R.info(path)
        want = R.ours(path, inf, os.path.join(tmp, name + ".orig.raw"))
        frames = R.encoded_frames(path, inf["frames"])
        for how in ("3 fragments/frame, no BOT", "2 fragments/frame + BOT", "EOT"):
            try:
                ds = pydicom.dcmread(path)
                if how == "EOT":
                    data, offsets, lengths = encaps.encapsulate_extended(frames)
                    ds.PixelData = data
                    ds.ExtendedOffsetTable = offsets
                    ds.ExtendedOffsetTableLengths = lengths
                else:
                    n = 3 if how.startswith("3") else 2
                    ds.PixelData = encaps.encapsulate(frames, fragments_per_frame=n,
                                                      has_bot="BOT" in how and "no" not in how)
                out = os.path.join(tmp, "%s.%s.dcm" % (name, how.split()[0]))
                ds.save_as(out)
                got = R.ours(out, inf, out + ".raw")
                ok = np.array_equal(got, want)
                print("%s %s re-encapsulated, %s" % ("ok  " if ok else "FAIL", name, how))
            except Exception as e:
                ok = False
                print("FAIL %s %s: %s" % (name, how, e))
            passed += ok
            failed += not ok
    R.report(passed, failed, skipped)


if __name__ == "__main__":
    main()
