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

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402


def main():
    tmp = R.workdir("dicom_decode")
    passed = failed = skipped = 0
    for path in R.files():
        name = os.path.basename(path)
        inf = R.info(path)
        if inf["rows"] == 0:
            print("SKIP %s: no pixel data" % name)
            skipped += 1
            continue
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
    R.report(passed, failed, skipped)


if __name__ == "__main__":
    main()
