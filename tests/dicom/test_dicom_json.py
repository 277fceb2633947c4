"""cs_dicom_to_json(): the DICOM JSON model (PS3.18 F.2) of every corpus file
against pydicom 2.3.1's own encoder (Dataset.to_json_dict), an independent
implementation: valid UTF-8 (strings converted from the Specific Character
Set), same attributes (file meta, group lengths, Pixel Data and binary
values excepted), same VR, same values (numbers as numbers, FL to single
precision; person names by their Alphabetic group; empty and trailing empty
values as DCMTK writes them), recursively into sequences."""
import json
import os
import sys

import pydicom

sys.path.insert(0, os.path.dirname(__file__))
import dicomref as R  # noqa: E402

BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def pn(v):
    """A PN value's Alphabetic group without trailing empty components."""
    if isinstance(v, dict):
        v = v.get("Alphabetic", "")
    return (v or "").rstrip("^ ")


def values(el, vr):
    """Values with None and "" as one empty value, trailing empties dropped
    (DCMTK writes null, pydicom "", and pydicom keeps a trailing empty)."""
    vals = ["" if v is None else (pn(v) if vr == "PN" else v) for v in el.get("Value", [])]
    while vals and vals[-1] == "":
        vals.pop()
    return vals


def same_value(a, b, vr):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # FL is single precision: DCMTK prints 9 digits, pydicom the double
        tol = 1e-6 if vr in ("FL", "OF") else 1e-9
        return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)))
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def compare(ours, ref, path, problems):
    for tag, el in ref.items():
        vr = el.get("vr")
        # group lengths are not part of the JSON model (PS3.18 F.2)
        if tag == "7FE00010" or tag.startswith("0002") or tag.endswith("0000") or vr in BINARY:
            continue
        if tag == "00080005":  # ours is converted to UTF-8: ISO_IR 192
            if tag in ours and ours[tag].get("Value") != ["ISO_IR 192"]:
                problems.append("00080005 %r, not ISO_IR 192" % ours[tag].get("Value"))
            continue
        if tag not in ours:
            problems.append("%s%s missing" % (path, tag))
            continue
        mine = ours[tag]
        if mine.get("vr") != vr:
            problems.append("%s%s vr %s vs %s" % (path, tag, mine.get("vr"), vr))
            continue
        rv, mv = el.get("Value", []), mine.get("Value", [])
        if vr == "SQ":
            if len(rv) != len(mv):
                problems.append("%s%s items %d vs %d" % (path, tag, len(mv), len(rv)))
                continue
            for i, (a, b) in enumerate(zip(mv, rv)):
                compare(a, b, "%s%s[%d]." % (path, tag, i), problems)
            continue
        rv, mv = values(el, vr), values(mine, vr)
        if len(rv) != len(mv) or not all(same_value(a, b, vr) for a, b in zip(mv, rv)):
            problems.append("%s%s %s: %r vs %r" % (path, tag, vr, mv[:3], rv[:3]))
    for tag in ours:
        if tag not in ref and not tag.startswith("0002"):
            problems.append("%s%s extra" % (path, tag))


def main():
    passed = failed = 0
    for path in R.files():
        name = os.path.basename(path)
        try:
            raw = R.tool("json", path).stdout
            ours = json.loads(raw.decode("utf-8"))  # must be UTF-8
            ds = pydicom.dcmread(path, force=True)
            ref = ds.to_json_dict(bulk_data_threshold=1024,
                                  bulk_data_element_handler=lambda el: "bulk")
            problems = []
            compare(ours, ref, "", problems)
            assert "7FE00010" not in ours, "Pixel Data in JSON"
            if problems:
                raise AssertionError("; ".join(problems[:4]) +
                                     (" (+%d)" % (len(problems) - 4) if len(problems) > 4 else ""))
            print("ok   %s: %d attributes" % (name, len(ours)))
            passed += 1
        except Exception as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
    R.report(passed, failed)


if __name__ == "__main__":
    main()
