"""Acceptance 3: transcoding.

- Default (JPEG-LS lossless, the link default): for every file with pixel
  data that JPEG-LS can hold (not 1-bit), decoding after transcode equals
  decoding before, bit for bit; DCMTK's dcmdjpls decodes the output to the
  same values; dciodvfy reports no error line the input did not have; no
  Lossy Image Compression is claimed for a lossless input.
- Lossy JPEG baseline only when asked (8-bit grey/RGB inputs, quality 90):
  (0028,2110) "01", (0028,2112) the ratio (uncompressed / compressed bytes,
  within 1 %; below 1 for 10x10 tiles), (0028,2114) ends with ISO_10918_1; dcmdjpeg
  decodes it; luma PSNR against the input > 30 dB; dciodvfy adds no error.
- JPEG-LS near-lossless (NEAR 2) on request: every value within 2 of the
  input, (0028,2114) ISO_14495_1, dcmdjpls decodes the same values."""
import os
import re
import subprocess
import sys

import numpy as np
import pydicom

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402


def dciodvfy_errors(path):
    r = subprocess.run(["dciodvfy", "-new", path], capture_output=True, text=True,
                       errors="replace")
    lines = (r.stdout + r.stderr).splitlines()
    # Errors name an attribute or module; drop the file-specific prefix.
    return {re.sub(r"\s+", " ", l.strip()) for l in lines if l.startswith("Error")}


def check_no_new_errors(src, out, tmp):
    base = src
    if R.info(src)["transfer_syntax"] == "1.2.840.10008.1.2.1.99":
        # dciodvfy stops early in a deflated dataset: compare with DCMTK's
        # inflated copy, which lists every attribute.
        base = os.path.join(tmp, os.path.basename(src) + ".inflated.dcm")
        subprocess.run(["dcmconv", "+te", src, base], check=True, capture_output=True)
    new = dciodvfy_errors(out) - dciodvfy_errors(base)
    if "SOPInstanceUID" not in pydicom.dcmread(src, stop_before_pixels=True, force=True):
        # The input lacks its Type 1 SOP Instance UID; a Part 10 writer must
        # still fill (0002,0003), which dciodvfy then reports as unmatched.
        new = {e for e in new if "MediaStorageSOPInstanceUID" not in e}
    if new:
        raise AssertionError("dciodvfy: new errors %s" % sorted(new)[:5])


def main():
    tmp = R.workdir("dicom_transcode")
    passed = failed = 0
    items, skipped = R.images()
    for path, name, inf in items:
        if inf["bits_allocated"] == 1:
            print("SKIP %s: 1-bit data cannot be JPEG-LS (transcode refuses with CS_EINVAL)" % name)
            r = R.tool("transcode", path, os.path.join(tmp, name + ".jls.dcm"), check=False)
            if r.returncode == 0:
                print("FAIL %s: 1-bit transcode should be refused" % name)
                failed += 1
            skipped += 1
            continue
        try:
            before = R.ours(path, inf, os.path.join(tmp, name + ".before.raw"))
            out = os.path.join(tmp, name + ".jls.dcm")
            R.tool("transcode", path, out)
            inf2 = R.info(out)
            assert inf2["transfer_syntax"] == "1.2.840.10008.1.2.4.80", inf2["transfer_syntax"]
            after = R.ours(out, inf2, os.path.join(tmp, name + ".after.raw"))
            assert np.array_equal(before, after), "decode after transcode differs"
            ref, _ = R.ref_dcmtk(out, inf2, inf2["transfer_syntax"], tmp)
            assert np.array_equal(ref, after), "dcmdjpls decodes differently"
            ds = pydicom.dcmread(out, stop_before_pixels=True)
            if not inf["lossy"]:
                assert ds.get("LossyImageCompression", "00") != "01", "lossless claims lossy"
            check_no_new_errors(path, out, tmp)
            msg = "JLS lossless %d -> %d bytes" % (os.path.getsize(path), os.path.getsize(out))
            if inf["transfer_syntax"] == "1.2.840.10008.1.2.4.50":
                # already JPEG baseline: transcoding to it is a no-op
                same = os.path.join(tmp, name + ".same.dcm")
                R.tool("transcode", path, same, "1.2.840.10008.1.2.4.50", 90)
                a = pydicom.dcmread(same).PixelData
                assert a == pydicom.dcmread(path).PixelData, "no-op transcode changed pixels"
                msg += "; JPEG->JPEG is a no-op"
            elif inf["bits_stored"] == 8 and inf2["photometric"] in ("MONOCHROME2", "MONOCHROME1",
                                                                   "RGB"):
                lossy = os.path.join(tmp, name + ".jpg.dcm")
                R.tool("transcode", path, lossy, "1.2.840.10008.1.2.4.50", 90)
                ds = pydicom.dcmread(lossy, stop_before_pixels=True)
                assert ds.LossyImageCompression == "01"
                ratios = ds.LossyImageCompressionRatio
                ratio = float(ratios[-1] if isinstance(ratios, pydicom.multival.MultiValue)
                              else ratios)
                methods = ds.LossyImageCompressionMethod
                method = methods[-1] if isinstance(methods, pydicom.multival.MultiValue) \
                    else methods
                assert method == "ISO_10918_1", method
                full = pydicom.dcmread(lossy)
                comp = sum(len(f) for f in pydicom.encaps.generate_pixel_data_frame(
                    full.PixelData, inf["frames"]))
                expect = before.nbytes / comp
                assert abs(ratio - expect) / expect < 0.01, (ratio, expect)
                infj = R.info(lossy)
                refj, _ = R.ref_dcmtk(lossy, infj, infj["transfer_syntax"], tmp)
                # Luma PSNR of DCMTK's decode of the JPEG against our input
                # decode: 4:2:2 chroma subsampling (what YBR_FULL_422 means)
                # blurs colour edges by design, luma must stay close.
                def luma(a):
                    a = a.astype(float)
                    if a.shape[-1] == 1:
                        return a[..., 0]
                    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
                mse = float(np.mean((luma(refj) - luma(before)) ** 2))
                psnr = 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
                assert psnr > 30, "PSNR %.1f dB" % psnr
                check_no_new_errors(path, lossy, tmp)
                msg += "; JPEG q90 ratio %.2f luma PSNR %.1f dB" % (ratio, psnr)
            print("ok   %s [%s]: %s" % (name, inf["transfer_syntax"], msg))
            passed += 1
        except Exception as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
    # JPEG-LS near-lossless on request: every value within NEAR of the input
    # (the JPEG-LS guarantee), lossy attributes with ISO_14495_1, dcmdjpls
    # decodes it to the same values as we do.
    for name in ("CT_small.dcm", "MR2_UNCR.dcm", "US1_UNCR.dcm"):
        path = os.path.join(R.DATA, name)
        try:
            inf = R.info(path)
            before = R.ours(path, inf, os.path.join(tmp, name + ".before.raw"))
            out = os.path.join(tmp, name + ".near.dcm")
            R.tool("transcode", path, out, "1.2.840.10008.1.2.4.81", 2)
            inf2 = R.info(out)
            after = R.ours(out, inf2, out + ".raw")
            err = int(np.abs(after.astype(np.int64) - before.astype(np.int64)).max())
            assert err <= 2, "NEAR=2 but max error %d" % err
            ref, _ = R.ref_dcmtk(out, inf2, inf2["transfer_syntax"], tmp)
            assert np.array_equal(ref, after), "dcmdjpls decodes differently"
            ds = pydicom.dcmread(out, stop_before_pixels=True)
            assert ds.LossyImageCompression == "01"
            methods = ds.LossyImageCompressionMethod
            last = methods[-1] if isinstance(methods, pydicom.multival.MultiValue) else methods
            assert last == "ISO_14495_1", last
            check_no_new_errors(path, out, tmp)
            print("ok   %s JPEG-LS near 2: max error %d, %d -> %d bytes" %
                  (name, err, os.path.getsize(path), os.path.getsize(out)))
            passed += 1
        except Exception as e:
            print("FAIL %s JPEG-LS near: %s" % (name, e))
            failed += 1
    R.report(passed, failed, skipped)


if __name__ == "__main__":
    main()
