// cs_dicom: the C API over DCMTK 3.6.7 (parse, write, JSON, IJG JPEG) and the
// pixel codecs in codec.c.
//
// Invariants:
// - every public function catches every C++ exception and turns it into a
//   CS_E* code with a message (cs_error_set) -- nothing escapes to C;
// - after open, the frame table (pointers into DCMTK's loaded element values,
//   one entry per frame: fragments or an offset into native data) is
//   read-only, so frame_decode/render may run on several threads at once;
// - a declared length is never trusted: DCMTK checks element lengths against
//   the bytes left in the buffer, and the frame table is checked against the
//   geometry before anything is allocated from it.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcjson.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrui.h>
#include <dcmtk/dcmjpeg/djcparam.h>
#include <dcmtk/dcmjpeg/djdijg12.h>
#include <dcmtk/dcmjpeg/djdijg16.h>
#include <dcmtk/dcmjpeg/djdijg8.h>
#include <dcmtk/dcmjpeg/djutils.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/ofstd/ofchrenc.h>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zlib.h>

extern "C" {
#include "cs/buf.h"
#include "cs/err.h"
}

#include "dicom_internal.h"

namespace
{

enum ts_kind { TS_NATIVE, TS_RLE, TS_JPEG, TS_JLS, TS_J2K, TS_DEFLFRAME };

struct ts_entry {
    const char *uid;
    ts_kind kind;
    E_TransferSyntax xfer; // EXS_Unknown for syntaxes DCMTK 3.6.7 does not know
    int lossy;
};

const ts_entry ts_table[] = {
    {CS_DICOM_TS_IMPLICIT_LE, TS_NATIVE, EXS_LittleEndianImplicit, 0},
    {CS_DICOM_TS_EXPLICIT_LE, TS_NATIVE, EXS_LittleEndianExplicit, 0},
    {CS_DICOM_TS_DEFLATE, TS_NATIVE, EXS_DeflatedLittleEndianExplicit, 0},
    {"1.2.840.10008.1.2.8.1", TS_DEFLFRAME, EXS_Unknown, 0}, // Deflated Image Frame Compression
    {CS_DICOM_TS_EXPLICIT_BE, TS_NATIVE, EXS_BigEndianExplicit, 0},
    {CS_DICOM_TS_JPEG_BASE, TS_JPEG, EXS_JPEGProcess1, 1},
    {CS_DICOM_TS_JPEG_EXT, TS_JPEG, EXS_JPEGProcess2_4, 1},
    {CS_DICOM_TS_JPEG_LL14, TS_JPEG, EXS_JPEGProcess14, 0},
    {CS_DICOM_TS_JPEG_LL_SV1, TS_JPEG, EXS_JPEGProcess14SV1, 0},
    {CS_DICOM_TS_JLS_LL, TS_JLS, EXS_JPEGLSLossless, 0},
    {CS_DICOM_TS_JLS_NEAR, TS_JLS, EXS_JPEGLSLossy, 1},
    {CS_DICOM_TS_J2K_LL, TS_J2K, EXS_JPEG2000LosslessOnly, 0},
    {CS_DICOM_TS_J2K, TS_J2K, EXS_JPEG2000, 1},
    {CS_DICOM_TS_HTJ2K_LL, TS_J2K, EXS_Unknown, 0},
    {CS_DICOM_TS_HTJ2K_RPCL, TS_J2K, EXS_Unknown, 0},
    {CS_DICOM_TS_HTJ2K, TS_J2K, EXS_Unknown, 1},
    {CS_DICOM_TS_RLE, TS_RLE, EXS_RLELossless, 0},
};

const ts_entry *find_ts(const char *uid)
{
    for (const ts_entry &t : ts_table)
        if (strcmp(t.uid, uid) == 0)
            return &t;
    return nullptr;
}

typedef cs_dicom_span span; // {p, n}: one fragment

} // namespace

struct cs_dicom {
    DcmFileFormat *ff = nullptr;
    const ts_entry *ts = nullptr;
    cs_dicom_pix pix{};
    // Native pixel data (local byte order), or the fragments of each frame.
    const uint8_t *native = nullptr;
    size_t native_len = 0;
    std::vector<span> frags;
    std::vector<std::pair<size_t, size_t>> frame_frags; // first fragment, count
    std::vector<uint16_t> lut_store[5];                 // modality, voi, r, g, b
    // Per-frame rescale and window of enhanced objects (functional groups);
    // empty when every frame uses pix.info's.
    struct frame_vals {
        double slope, intercept, wc, ww;
        int has_window;
    };
    std::vector<frame_vals> per_frame;
    E_TransferSyntax cur_xfer = EXS_Unknown;
    // The file's bytes, kept only for syntaxes DCMTK 3.6.7 cannot write
    // (HTJ2K, Deflated Image Frame): save() writes them unchanged.
    std::vector<uint8_t> orig;
    int frame_threads = 1; // threads one frame's decode may use (JPEG 2000)
    ~cs_dicom()
    {
        delete ff;
    }
};

namespace
{

void quiet_dcmtk()
{
    static std::once_flag once;
    std::call_once(once, [] {
        // Library code does not print: DCMTK's parse warnings become our
        // error messages instead.
        const char *names[] = {"dcmtk.dcmdata", "dcmtk.dcmjpeg", "dcmtk.dcmimgle", "dcmtk.ofstd"};
        for (const char *n : names)
            OFLog::getLogger(n).setLogLevel(OFLogger::OFF_LOG_LEVEL);
    });
}

int fail_exception(const char *where)
{
    try {
        throw;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "%s: out of memory", where);
    } catch (const std::exception &e) {
        return cs_error_set(CS_EFORMAT, "%s: %s", where, e.what());
    } catch (...) {
        return cs_error_set(CS_EFORMAT, "%s: unexpected C++ exception", where);
    }
}

#define GUARD(where, ...)                                                                          \
    try {                                                                                          \
        __VA_ARGS__                                                                                \
    } catch (...) {                                                                                \
        return fail_exception(where);                                                              \
    }

void copy_str(char *dst, size_t cap, const OFString &s)
{
    snprintf(dst, cap, "%s", s.c_str());
}

std::string get_str(DcmItem *it, const DcmTagKey &k)
{
    OFString s;
    if (it->findAndGetOFStringArray(k, s).bad())
        return "";
    std::string r = s.c_str();
    while (!r.empty() && (r.back() == ' ' || r.back() == '\0'))
        r.pop_back();
    size_t b = 0;
    while (b < r.size() && r[b] == ' ')
        b++;
    return r.substr(b);
}

int get_int(DcmItem *it, const DcmTagKey &k, int def)
{
    // US/SS/IS all read through a string: values are small.
    OFString s;
    if (it->findAndGetOFString(k, s).bad() || s.empty())
        return def;
    char *end = nullptr;
    long v = strtol(s.c_str(), &end, 10);
    if (end == s.c_str() || v < INT32_MIN || v > INT32_MAX)
        return def;
    return (int)v;
}

double get_double(DcmItem *it, const DcmTagKey &k, unsigned pos, double def)
{
    Float64 v;
    if (it->findAndGetFloat64(k, v, pos).bad() || !std::isfinite(v))
        return def;
    return v;
}

// A LUT from a descriptor and data element in item @p it.
void load_lut(cs_dicom *d, int slot, DcmItem *it, const DcmTagKey &desc, const DcmTagKey &data,
              cs_dicom_lut *out)
{
    DcmElement *de = nullptr, *dd = nullptr;
    if (it->findAndGetElement(desc, de).bad() || it->findAndGetElement(data, dd).bad())
        return;
    if (de->getVM() < 3)
        return;
    Uint16 n16 = 0, f16 = 0, b16 = 0;
    if (de->getUint16(n16, 0).bad() || de->getUint16(f16, 1).bad() || de->getUint16(b16, 2).bad())
        return;
    int n = n16 == 0 ? 65536 : n16;
    bool sgn = de->getVR() == EVR_SS || d->pix.info.pixel_signed;
    int first = sgn ? (int)(int16_t)f16 : (int)f16;
    int bits = b16;
    if (bits < 1 || bits > 16)
        return;
    Uint16 *w = nullptr;
    unsigned long cnt = dd->getLength() / 2;
    if (dd->getUint16Array(w).bad() || !w || cnt == 0)
        return;
    std::vector<uint16_t> &v = d->lut_store[slot];
    if (bits == 8 && cnt * 2 == (unsigned long)n) {
        // 8-bit entries packed two per word (PS3.3 C.7.6.3.1.6)
        v.resize(n);
        for (int i = 0; i < n; i++)
            v[i] = (i & 1) ? (w[i / 2] >> 8) : (w[i / 2] & 0xFF);
    } else {
        if (cnt < (unsigned long)n)
            n = (int)cnt;
        v.assign(w, w + n);
        uint16_t mask = (uint16_t)((1u << bits) - 1);
        for (auto &x : v)
            x &= mask;
    }
    out->n = n;
    out->first = first;
    out->bits = bits;
    out->data = v.data();
}

bool ends_with_eoi(const span &s)
{
    size_t n = s.n;
    while (n > 2 && s.p[n - 1] == 0)
        n--; // even-length padding
    return n >= 2 && s.p[n - 2] == 0xFF && s.p[n - 1] == 0xD9;
}

uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Map frame starts (byte offsets from the first fragment's item tag) to
// fragment indices.
int map_offsets(cs_dicom *d, const std::vector<uint64_t> &offs, const char *what)
{
    int frames = d->pix.info.frames;
    if ((int)offs.size() != frames)
        return cs_error_set(CS_EFORMAT, "%s has %zu entries for %d frames", what, offs.size(),
                            frames);
    std::vector<uint64_t> starts;
    uint64_t pos = 0;
    for (const span &s : d->frags) {
        starts.push_back(pos);
        pos += 8 + s.n;
    }
    size_t prev = 0;
    for (int f = 0; f < frames; f++) {
        auto itr = std::lower_bound(starts.begin(), starts.end(), offs[f]);
        if (itr == starts.end() || *itr != offs[f])
            return cs_error_set(CS_EFORMAT, "%s: frame %d offset %llu is not a fragment start",
                                what, f, (unsigned long long)offs[f]);
        size_t idx = (size_t)(itr - starts.begin());
        if (f > 0) {
            if (idx <= prev)
                return cs_error_set(CS_EFORMAT, "%s: offsets not increasing", what);
            d->frame_frags.back().second = idx - prev;
        }
        d->frame_frags.push_back({idx, 0});
        prev = idx;
    }
    d->frame_frags.back().second = d->frags.size() - prev;
    return 0;
}

int load_fragments(cs_dicom *d, DcmPixelSequence *seq)
{
    unsigned long card = seq->card();
    if (card < 1)
        return cs_error_set(CS_EFORMAT, "encapsulated Pixel Data has no Basic Offset Table item");
    DcmPixelItem *bot = nullptr;
    if (seq->getItem(bot, 0).bad())
        return cs_error_set(CS_EFORMAT, "encapsulated Pixel Data: no offset table");
    for (unsigned long i = 1; i < card; i++) {
        DcmPixelItem *it = nullptr;
        Uint8 *p = nullptr;
        if (seq->getItem(it, i).bad())
            return cs_error_set(CS_EFORMAT, "encapsulated Pixel Data: fragment %lu unreadable", i);
        Uint32 len = it->getLength();
        if (len > 0 && (it->getUint8Array(p).bad() || !p))
            return cs_error_set(CS_EFORMAT, "encapsulated Pixel Data: fragment %lu has no value",
                                i);
        d->frags.push_back({p, len});
    }
    int frames = d->pix.info.frames;
    if (d->frags.empty())
        return cs_error_set(CS_EFORMAT, "encapsulated Pixel Data has no fragments");
    DcmItem *ds = d->ff->getDataset();
    DcmElement *eot = nullptr;
    Uint32 botlen = bot->getLength();
    if (frames == 1) {
        d->frame_frags.push_back({0, d->frags.size()});
        return 0;
    }
    if (ds->findAndGetElement(DcmTagKey(0x7FE0, 0x0001), eot).good() && eot->getLength() > 0) {
        // OV (DCMTK 3.6.7 reads it as 64-bit values) or OB from older writers
        std::vector<uint64_t> offs(eot->getLength() / 8);
        Uint64 *q = nullptr;
        Uint8 *p = nullptr;
        if (eot->getUint64Array(q).good() && q) {
            for (size_t i = 0; i < offs.size(); i++)
                offs[i] = q[i];
        } else if (eot->getUint8Array(p).good() && p) {
            for (size_t i = 0; i < offs.size(); i++) {
                uint64_t v = 0;
                for (int b = 7; b >= 0; b--)
                    v = v << 8 | p[8 * i + (size_t)b];
                offs[i] = v;
            }
        } else {
            return cs_error_set(CS_EFORMAT, "Extended Offset Table unreadable");
        }
        return map_offsets(d, offs, "Extended Offset Table");
    }
    if (botlen > 0) {
        Uint8 *p = nullptr;
        if (bot->getUint8Array(p).bad() || !p || botlen % 4)
            return cs_error_set(CS_EFORMAT, "Basic Offset Table of %u bytes unreadable", botlen);
        std::vector<uint64_t> offs(botlen / 4);
        for (size_t i = 0; i < offs.size(); i++)
            offs[i] = rd32(p + 4 * i);
        return map_offsets(d, offs, "Basic Offset Table");
    }
    if ((int)d->frags.size() == frames) {
        for (int f = 0; f < frames; f++)
            d->frame_frags.push_back({(size_t)f, 1});
        return 0;
    }
    if (d->ts->kind == TS_RLE)
        return cs_error_set(CS_EFORMAT, "RLE: %zu fragments for %d frames and no offset table",
                            d->frags.size(), frames);
    // No table: a frame ends with the fragment that ends in EOI (JPEG) or
    // EOC (J2K), both FF D9.
    size_t first = 0;
    for (size_t i = 0; i < d->frags.size(); i++) {
        if (ends_with_eoi(d->frags[i])) {
            d->frame_frags.push_back({first, i + 1 - first});
            first = i + 1;
        }
    }
    if ((int)d->frame_frags.size() != frames || first != d->frags.size())
        return cs_error_set(CS_EFORMAT,
                            "%zu fragments cannot be split into %d frames (no offset table, "
                            "%zu end markers)",
                            d->frags.size(), frames, d->frame_frags.size());
    return 0;
}

size_t native_frame_bytes(const cs_dicom_info *in, const char *pi)
{
    size_t px = (size_t)in->rows * in->cols;
    if (in->bits_allocated == 1)
        return (px + 7) / 8; // not byte aligned in general: see decode
    size_t b = px * in->samples * (in->bits_allocated / 8);
    if (strcmp(pi, "YBR_FULL_422") == 0 && in->samples == 3)
        b = b / 3 * 2;
    return b;
}

// Rescale and window from an enhanced object's functional groups item
// (Pixel Value Transformation / Frame VOI LUT sequences), where present.
void functional_values(DcmItem *fg, double &slope, double &intercept, double &wc, double &ww,
                       int &has_window)
{
    DcmItem *it = nullptr;
    if (fg->findAndGetSequenceItem(DCM_PixelValueTransformationSequence, it, 0).good() && it) {
        double sl = get_double(it, DCM_RescaleSlope, 0, NAN);
        double ic = get_double(it, DCM_RescaleIntercept, 0, NAN);
        if (std::isfinite(sl) && sl != 0 && std::isfinite(ic)) {
            slope = sl;
            intercept = ic;
        }
    }
    if (fg->findAndGetSequenceItem(DCM_FrameVOILUTSequence, it, 0).good() && it) {
        double c = get_double(it, DCM_WindowCenter, 0, NAN);
        double w = get_double(it, DCM_WindowWidth, 0, NAN);
        if (std::isfinite(c) && std::isfinite(w) && w > 0) {
            wc = c;
            ww = w;
            has_window = 1;
        }
    }
}

void load_functional_groups(cs_dicom *d)
{
    DcmItem *ds = d->ff->getDataset();
    cs_dicom_info &in = d->pix.info;
    bool top_rescale = ds->tagExists(DCM_RescaleSlope) || ds->tagExists(DCM_RescaleIntercept);
    bool top_window = in.has_window;
    double slope = in.slope, intercept = in.intercept, wc = in.window_center, ww = in.window_width;
    int hw = in.has_window;
    DcmItem *shared = nullptr;
    if (ds->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good() &&
        shared) {
        double s2 = slope, i2 = intercept, c2 = wc, w2 = ww;
        int h2 = hw;
        functional_values(shared, s2, i2, c2, w2, h2);
        if (!top_rescale) {
            slope = s2;
            intercept = i2;
        }
        if (!top_window) {
            wc = c2;
            ww = w2;
            hw = h2;
        }
    }
    DcmSequenceOfItems *pf = nullptr;
    if (ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, pf).good() && pf &&
        (long)pf->card() == in.frames) {
        bool any = false;
        d->per_frame.resize((size_t)in.frames);
        for (int f = 0; f < in.frames; f++) {
            auto &v = d->per_frame[(size_t)f];
            v = {slope, intercept, wc, ww, hw};
            double s2 = slope, i2 = intercept, c2 = wc, w2 = ww;
            int h2 = hw;
            functional_values(pf->getItem((unsigned long)f), s2, i2, c2, w2, h2);
            if (!top_rescale && (s2 != slope || i2 != intercept)) {
                v.slope = s2;
                v.intercept = i2;
                any = true;
            }
            if (!top_window && h2 && (c2 != wc || w2 != ww || !hw)) {
                v.wc = c2;
                v.ww = w2;
                v.has_window = 1;
                any = true;
            }
        }
        if (!any)
            d->per_frame.clear();
    }
    in.slope = slope;
    in.intercept = intercept;
    in.window_center = wc;
    in.window_width = ww;
    in.has_window = hw;
    if (!d->per_frame.empty()) { // info describes frame 0
        in.slope = d->per_frame[0].slope;
        in.intercept = d->per_frame[0].intercept;
        in.window_center = d->per_frame[0].wc;
        in.window_width = d->per_frame[0].ww;
        in.has_window = d->per_frame[0].has_window;
    }
}

int load_info(cs_dicom *d)
{
    DcmItem *ds = d->ff->getDataset();
    DcmItem *meta = d->ff->getMetaInfo();
    cs_dicom_info &in = d->pix.info;
    memset(&in, 0, sizeof in);
    std::string ts = get_str(meta, DCM_TransferSyntaxUID);
    if (ts.empty()) {
        // A bare dataset: DCMTK detected its encoding.
        DcmXfer x(d->ff->getDataset()->getOriginalXfer());
        ts = x.getXferID();
    }
    d->ts = find_ts(ts.c_str());
    if (!d->ts)
        return cs_error_set(CS_EFORMAT, "unknown or unsupported transfer syntax \"%s\"",
                            ts.c_str());
    copy_str(in.transfer_syntax, sizeof in.transfer_syntax, ts.c_str());
    copy_str(in.sop_class_uid, sizeof in.sop_class_uid, get_str(ds, DCM_SOPClassUID).c_str());
    copy_str(in.sop_instance_uid, sizeof in.sop_instance_uid,
             get_str(ds, DCM_SOPInstanceUID).c_str());
    copy_str(in.study_uid, sizeof in.study_uid, get_str(ds, DCM_StudyInstanceUID).c_str());
    copy_str(in.series_uid, sizeof in.series_uid, get_str(ds, DCM_SeriesInstanceUID).c_str());
    copy_str(in.modality, sizeof in.modality, get_str(ds, DCM_Modality).c_str());
    copy_str(in.photometric, sizeof in.photometric,
             get_str(ds, DCM_PhotometricInterpretation).c_str());
    bool has_pixels = ds->tagExists(DCM_PixelData);
    in.rows = has_pixels ? get_int(ds, DCM_Rows, 0) : 0;
    in.cols = has_pixels ? get_int(ds, DCM_Columns, 0) : 0;
    in.frames = get_int(ds, DCM_NumberOfFrames, 1);
    in.samples = get_int(ds, DCM_SamplesPerPixel, 1);
    in.bits_allocated = get_int(ds, DCM_BitsAllocated, 0);
    in.bits_stored = get_int(ds, DCM_BitsStored, in.bits_allocated);
    in.high_bit = get_int(ds, DCM_HighBit, in.bits_stored - 1);
    in.pixel_signed = get_int(ds, DCM_PixelRepresentation, 0) == 1;
    in.planar = get_int(ds, DCM_PlanarConfiguration, 0) == 1;
    in.lossy = d->ts->lossy || get_str(ds, DCM_LossyImageCompression) == "01";
    in.slope = get_double(ds, DCM_RescaleSlope, 0, 1.0);
    in.intercept = get_double(ds, DCM_RescaleIntercept, 0, 0.0);
    if (in.slope == 0)
        in.slope = 1.0;
    double wc = get_double(ds, DCM_WindowCenter, 0, NAN);
    double ww = get_double(ds, DCM_WindowWidth, 0, NAN);
    in.has_window = std::isfinite(wc) && std::isfinite(ww) && ww > 0;
    in.window_center = in.has_window ? wc : 0;
    in.window_width = in.has_window ? ww : 0;
    in.has_modality_lut = ds->tagExists(DCM_ModalityLUTSequence);
    in.has_voi_lut = ds->tagExists(DCM_VOILUTSequence);
    double sp0 = get_double(ds, DCM_PixelSpacing, 0, NAN);
    double sp1 = get_double(ds, DCM_PixelSpacing, 1, NAN);
    if (std::isfinite(sp0) && std::isfinite(sp1)) {
        in.spacing_kind = 1;
    } else {
        sp0 = get_double(ds, DCM_ImagerPixelSpacing, 0, NAN);
        sp1 = get_double(ds, DCM_ImagerPixelSpacing, 1, NAN);
        in.spacing_kind = std::isfinite(sp0) && std::isfinite(sp1) ? 2 : 0;
    }
    in.spacing[0] = in.spacing_kind ? sp0 : 0;
    in.spacing[1] = in.spacing_kind ? sp1 : 0;
    double ft = get_double(ds, DCM_FrameTime, 0, NAN);
    if (!std::isfinite(ft)) {
        double rate = get_double(ds, DCM_CineRate, 0, NAN);
        ft = std::isfinite(rate) && rate > 0 ? 1000.0 / rate : 0;
    }
    in.frame_time_ms = ft;
    in.instance_number = get_int(ds, DCM_InstanceNumber, 0);
    in.slice_location = get_double(ds, DCM_SliceLocation, 0, NAN);
    if (!std::isfinite(in.slice_location))
        in.slice_location = get_double(ds, DCM_ImagePositionPatient, 2, NAN);

    if (!has_pixels)
        return 0;
    // Geometry sanity: everything later sizes buffers from these.
    if (in.rows <= 0 || in.cols <= 0 || in.rows > 65535 || in.cols > 65535)
        return cs_error_set(CS_EFORMAT, "bad image size %dx%d", in.cols, in.rows);
    if (in.frames <= 0 || in.frames > 1000000)
        return cs_error_set(CS_EFORMAT, "bad Number of Frames %d", in.frames);
    if (in.samples != 1 && in.samples != 3)
        return cs_error_set(CS_EFORMAT, "Samples per Pixel %d not supported", in.samples);
    if (in.bits_allocated != 1 && in.bits_allocated != 8 && in.bits_allocated != 16)
        return cs_error_set(CS_EFORMAT, "Bits Allocated %d not supported", in.bits_allocated);
    if (in.bits_stored <= 0 || in.bits_stored > in.bits_allocated)
        in.bits_stored = in.bits_allocated;
    if (in.bits_allocated == 1 &&
        (in.samples != 1 || (d->ts->kind != TS_NATIVE && d->ts->kind != TS_DEFLFRAME)))
        return cs_error_set(CS_EFORMAT, "1-bit pixel data must be native single-sample");
    copy_str(d->pix.out_photometric, sizeof d->pix.out_photometric, in.photometric);
    if (in.samples == 3) {
        bool ybr = strncmp(in.photometric, "YBR", 3) == 0;
        if ((d->ts->kind == TS_JPEG && ybr) ||
            (d->ts->kind == TS_J2K &&
             (strcmp(in.photometric, "YBR_RCT") == 0 || strcmp(in.photometric, "YBR_ICT") == 0)))
            snprintf(d->pix.out_photometric, sizeof d->pix.out_photometric, "RGB");
        else if (d->ts->kind == TS_NATIVE && strcmp(in.photometric, "YBR_FULL_422") == 0)
            snprintf(d->pix.out_photometric, sizeof d->pix.out_photometric, "YBR_FULL");
    }
    load_functional_groups(d);
    std::string fn = get_str(ds, DCM_VOILUTFunction);
    d->pix.voi_function = fn == "SIGMOID" ? 2 : fn == "LINEAR_EXACT" ? 1 : 0;
    // Rendering inputs.
    d->pix.has_window = in.has_window;
    d->pix.wc = in.window_center;
    d->pix.ww = in.window_width;
    DcmItem *it = nullptr;
    if (ds->findAndGetSequenceItem(DCM_ModalityLUTSequence, it, 0).good() && it)
        load_lut(d, 0, it, DCM_LUTDescriptor, DCM_LUTData, &d->pix.modality);
    if (ds->findAndGetSequenceItem(DCM_VOILUTSequence, it, 0).good() && it)
        load_lut(d, 1, it, DCM_LUTDescriptor, DCM_LUTData, &d->pix.voi);
    if (strcmp(in.photometric, "PALETTE COLOR") == 0) {
        load_lut(d, 2, ds, DCM_RedPaletteColorLookupTableDescriptor,
                 DCM_RedPaletteColorLookupTableData, &d->pix.pal[0]);
        load_lut(d, 3, ds, DCM_GreenPaletteColorLookupTableDescriptor,
                 DCM_GreenPaletteColorLookupTableData, &d->pix.pal[1]);
        load_lut(d, 4, ds, DCM_BluePaletteColorLookupTableDescriptor,
                 DCM_BluePaletteColorLookupTableData, &d->pix.pal[2]);
        // Palette descriptors are always unsigned first-mapped values.
    }
    return 0;
}

int load_pixels(cs_dicom *d)
{
    const cs_dicom_info &in = d->pix.info;
    DcmDataset *ds = d->ff->getDataset();
    DcmElement *el = nullptr;
    if (in.rows == 0 || ds->findAndGetElement(DCM_PixelData, el).bad() || !el)
        return 0;
    DcmPixelData *pd = dynamic_cast<DcmPixelData *>(el);
    if (!pd)
        return cs_error_set(CS_EFORMAT, "Pixel Data element of unexpected type");
    if (d->ts->kind == TS_NATIVE) {
        if (el->getLength() == DCM_UndefinedLength)
            return cs_error_set(CS_EFORMAT, "native Pixel Data with undefined length");
        size_t fb = native_frame_bytes(&in, in.photometric);
        size_t need = in.bits_allocated == 1
                          ? ((size_t)in.rows * in.cols * (size_t)in.frames + 7) / 8
                          : fb * (size_t)in.frames;
        if (el->getLength() < need)
            return cs_error_set(CS_EFORMAT, "Pixel Data has %u bytes, %zu expected (%d frames)",
                                el->getLength(), need, in.frames);
        if (in.bits_allocated == 16) {
            Uint16 *w = nullptr;
            if (el->getUint16Array(w).bad() || !w)
                return cs_error_set(CS_EFORMAT, "Pixel Data unreadable as 16-bit words");
            d->native = reinterpret_cast<const uint8_t *>(w);
        } else {
            Uint8 *b = nullptr;
            if (el->getUint8Array(b).bad() || !b)
                return cs_error_set(CS_EFORMAT, "Pixel Data unreadable as bytes");
            d->native = b;
        }
        d->native_len = el->getLength();
        return 0;
    }
    E_TransferSyntax rep = EXS_Unknown;
    const DcmRepresentationParameter *par = nullptr;
    pd->getOriginalRepresentationKey(rep, par);
    DcmPixelSequence *seq = nullptr;
    if (pd->getEncapsulatedRepresentation(rep, par, seq).bad() || !seq)
        return cs_error_set(CS_EFORMAT,
                            "transfer syntax %s needs encapsulated Pixel Data; it is native",
                            in.transfer_syntax);
    return load_fragments(d, seq);
}

std::string walk(const uint8_t *p, size_t n, size_t pos, bool meta, bool explicit_vr, bool big);

// Walk the element headers before DCMTK sees the buffer: every declared
// length must fit in what is left (of the file, and of the enclosing
// defined-length sequence or item), every explicit VR must be letters.
// DCMTK 3.6.7 allocates a declared length before checking it in some paths
// (an unknown VR read as implicit), and repairs some inconsistent lengths
// silently; we refuse both, naming the element. Returns "" when sound.
std::string check_structure(const uint8_t *p, size_t n)
{
    if (n >= 132 && memcmp(p + 128, "DICM", 4) == 0)
        return walk(p, n, 132, true, true, false);
    bool explicit_vr = !(n >= 6 && !(p[4] >= 'A' && p[4] <= 'Z' && p[5] >= 'A' && p[5] <= 'Z'));
    return walk(p, n, 0, false, explicit_vr, false);
}

// A deflated dataset is inflated (at most 1 GiB) and walked.
std::string walk_deflated(const uint8_t *p, size_t n)
{
    const size_t cap = (size_t)1 << 30;
    std::vector<uint8_t> out;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK)
        return "inflate: no memory";
    z.next_in = const_cast<Bytef *>(p);
    z.avail_in = (uInt)std::min(n, (size_t)UINT32_MAX);
    int zr = Z_OK;
    while (zr == Z_OK) {
        size_t have = out.size();
        if (have >= cap) {
            inflateEnd(&z);
            return "the deflated dataset expands beyond 1 GiB";
        }
        out.resize(std::min(cap, std::max(have * 2, (size_t)1 << 16)));
        z.next_out = out.data() + have;
        z.avail_out = (uInt)(out.size() - have);
        zr = inflate(&z, Z_NO_FLUSH);
        out.resize(out.size() - z.avail_out);
        if (zr == Z_BUF_ERROR && z.avail_in == 0)
            break; // truncated: walk what there is
    }
    inflateEnd(&z);
    if (zr == Z_DATA_ERROR || zr == Z_MEM_ERROR)
        return "the deflated dataset is corrupt";
    return walk(out.data(), out.size(), 0, false, true, false);
}

std::string walk(const uint8_t *p, size_t n, size_t pos, bool meta, bool explicit_vr, bool big)
{
    char msg[200];
    std::string ts;
    bool in_pixels = false;
    std::vector<size_t> ends; // ends of the enclosing defined-length sequences/items
    auto past_end = [&](size_t end, unsigned g, unsigned e, size_t at) {
        while (!ends.empty() && at >= ends.back())
            ends.pop_back();
        if (!ends.empty() && end > ends.back()) {
            snprintf(msg, sizeof msg,
                     "(%04X,%04X) at offset %zu runs to offset %zu, past the end (%zu) of its "
                     "sequence or item",
                     g, e, at, end, ends.back());
            return true;
        }
        return false;
    };
    auto u16 = [&](size_t o, bool be) {
        return be ? (unsigned)(p[o] << 8 | p[o + 1]) : (unsigned)(p[o] | p[o + 1] << 8);
    };
    auto u32 = [&](size_t o, bool be) {
        return be ? ((uint32_t)p[o] << 24 | (uint32_t)p[o + 1] << 16 | (uint32_t)p[o + 2] << 8 |
                     p[o + 3])
                  : rd32(p + o);
    };
    while (pos < n) {
        if (pos + 8 > n) {
            snprintf(msg, sizeof msg, "the file ends inside an element header at offset %zu", pos);
            return msg;
        }
        unsigned g = u16(pos, big && !meta), e = u16(pos + 2, big && !meta);
        if (meta && g != 0x0002) {
            // end of the meta header: the dataset's encoding follows the syntax
            meta = false;
            if (ts == "1.2.840.10008.1.2.1.99")
                return walk_deflated(p + pos, n - pos);
            explicit_vr = ts != "1.2.840.10008.1.2";
            big = ts == "1.2.840.10008.1.2.2";
            g = u16(pos, big);
            e = u16(pos + 2, big);
        }
        bool be = big && !meta;
        if (g == 0xFFFE) {
            uint32_t len = u32(pos + 4, be);
            if (e == 0xE000 && in_pixels && len != 0xFFFFFFFFu) {
                if (len > n - pos - 8) {
                    snprintf(msg, sizeof msg,
                             "Pixel Data fragment at offset %zu declares %u bytes, only %zu "
                             "remain",
                             pos, len, n - pos - 8);
                    return msg;
                }
                pos += 8 + len;
            } else {
                if (e == 0xE0DD)
                    in_pixels = false;
                if (e == 0xE000 && len != 0xFFFFFFFFu && len > n - pos - 8) {
                    snprintf(msg, sizeof msg,
                             "item at offset %zu declares %u bytes, only %zu remain", pos, len,
                             n - pos - 8);
                    return msg;
                }
                if (e == 0xE000 && len != 0xFFFFFFFFu) {
                    if (past_end(pos + 8 + len, g, e, pos))
                        return msg;
                    ends.push_back(pos + 8 + len);
                }
                pos += 8; // step into items: their contents are elements
            }
            continue;
        }
        size_t hdr;
        uint32_t len;
        bool sq = false;
        if (explicit_vr || meta) {
            char vr[3] = {(char)p[pos + 4], (char)p[pos + 5], 0};
            static const char *longvr[] = {"OB", "OW", "OF", "SQ", "UT", "UN", "OD",
                                           "OL", "OV", "UC", "UR", "SV", "UV"};
            bool lf = false;
            for (const char *v : longvr)
                lf = lf || strcmp(v, vr) == 0;
            if (!(vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z')) {
                snprintf(msg, sizeof msg,
                         "element (%04X,%04X) at offset %zu has no valid VR (explicit VR "
                         "expected)",
                         g, e, pos);
                return msg;
            }
            sq = strcmp(vr, "SQ") == 0;
            if (lf) {
                if (pos + 12 > n) {
                    snprintf(msg, sizeof msg,
                             "the file ends inside the header of (%04X,%04X) at offset %zu", g, e,
                             pos);
                    return msg;
                }
                len = u32(pos + 8, be);
                hdr = 12;
            } else {
                len = u16(pos + 6, be);
                hdr = 8;
            }
        } else {
            len = u32(pos + 4, be);
            hdr = 8;
            sq = len == 0xFFFFFFFFu;
        }
        if (len == 0xFFFFFFFFu) {
            if (g == 0x7FE0 && e == 0x0010)
                in_pixels = true;
            pos += hdr;
            continue;
        }
        if (len > n - pos - hdr) {
            snprintf(msg, sizeof msg,
                     "element (%04X,%04X) at offset %zu declares %u bytes, only %zu remain", g, e,
                     pos, len, n - pos - hdr);
            return msg;
        }
        if (past_end(pos + hdr + len, g, e, pos))
            return msg;
        if (sq)
            ends.push_back(pos + hdr + len);
        if (g == 0x0002 && e == 0x0010) {
            ts.assign(reinterpret_cast<const char *>(p + pos + hdr), len);
            while (!ts.empty() && (ts.back() == 0 || ts.back() == ' '))
                ts.pop_back();
        }
        pos += sq ? hdr : hdr + len; // a defined-length sequence: step into its items
    }
    return "";
}

int parse(cs_dicom *d, const uint8_t *data, size_t len)
{
    quiet_dcmtk();
    if (len < 8)
        return cs_error_set(CS_EFORMAT, "not DICOM: %zu bytes", len);
    std::string why = check_structure(data, len);
    if (!why.empty())
        return cs_error_set(CS_EFORMAT, "DICOM structure error: %s", why.c_str());
    d->ff = new DcmFileFormat();
    DcmInputBufferStream is;
    is.setBuffer(data, (offile_off_t)len);
    is.setEos();
    d->ff->transferInit();
    OFCondition c = d->ff->read(is, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
    d->ff->transferEnd();
    if (c.bad())
        return cs_error_set(CS_EFORMAT, "DICOM parse error: %s", c.text());
    if (d->ff->getDataset()->card() == 0)
        return cs_error_set(CS_EFORMAT, "not DICOM: no data elements");
    // Everything is in memory: make sure no value is read lazily later.
    c = d->ff->loadAllDataIntoMemory();
    if (c.bad())
        return cs_error_set(CS_EFORMAT, "DICOM load error: %s", c.text());
    int rc = load_info(d);
    if (rc)
        return rc;
    d->cur_xfer = d->ts->xfer;
    if (d->cur_xfer == EXS_Unknown)
        d->orig.assign(data, data + len);
    return load_pixels(d);
}

int open_buf(cs_dicom **out, const uint8_t *data, size_t len)
{
    *out = nullptr;
    cs_dicom *d = new (std::nothrow) cs_dicom();
    if (!d)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int rc;
    try {
        rc = parse(d, data, len);
    } catch (...) {
        rc = fail_exception("open");
    }
    if (rc) {
        delete d;
        return rc;
    }
    *out = d;
    return 0;
}

// ---- decoding ----

// One native frame at @p src; 1-bit data starts at bit @p bit0 of src.
int decode_native_src(const cs_dicom_info &in, const uint8_t *src, size_t bit0, uint8_t *dst)
{
    size_t px = (size_t)in.rows * in.cols;
    if (in.bits_allocated == 1) {
        for (size_t i = 0; i < px; i++) {
            size_t b = bit0 + i;
            dst[i] = (src[b >> 3] >> (b & 7)) & 1;
        }
        return 0;
    }
    int ob = in.bits_allocated / 8;
    if (in.samples == 3 && strcmp(in.photometric, "YBR_FULL_422") == 0 && ob == 1) {
        // Y1 Y2 Cb Cr per pixel pair -> (Y1 Cb Cr)(Y2 Cb Cr)
        for (int r = 0; r < in.rows; r++) {
            const uint8_t *s = src + (size_t)r * in.cols * 2;
            uint8_t *o = dst + (size_t)r * in.cols * 3;
            for (int x = 0; x + 1 < in.cols; x += 2, s += 4) {
                o[3 * x] = s[0];
                o[3 * x + 3] = s[1];
                o[3 * x + 1] = o[3 * x + 4] = s[2];
                o[3 * x + 2] = o[3 * x + 5] = s[3];
            }
        }
        return 0;
    }
    if (in.samples == 3 && in.planar) {
        size_t plane = px * ob;
        for (int s = 0; s < 3; s++)
            for (size_t i = 0; i < px; i++)
                memcpy(dst + (i * 3 + s) * ob, src + s * plane + i * ob, ob);
        cs_dicom_normalize(&in, dst, px * in.samples);
        return 0;
    }
    size_t ns = px * in.samples;
    int bs = in.bits_stored;
    if (ob == 2 && bs < 16) {
        // copy and mask/sign-extend in one pass (the common 12-bit case)
        const uint16_t *s16 = reinterpret_cast<const uint16_t *>(src);
        uint16_t *d16 = reinterpret_cast<uint16_t *>(dst);
        uint16_t mask = (uint16_t)((1u << bs) - 1), sign = (uint16_t)(1u << (bs - 1));
        if (in.pixel_signed) {
            for (size_t i = 0; i < ns; i++) {
                uint16_t v = s16[i] & mask;
                d16[i] = (uint16_t)((v ^ sign) - sign);
            }
        } else {
            for (size_t i = 0; i < ns; i++)
                d16[i] = s16[i] & mask;
        }
        return 0;
    }
    memcpy(dst, src, ns * ob);
    cs_dicom_normalize(&in, dst, ns);
    return 0;
}

int decode_native(cs_dicom *d, int frame, uint8_t *dst)
{
    const cs_dicom_info &in = d->pix.info;
    if (in.bits_allocated == 1)
        return decode_native_src(in, d->native, (size_t)in.rows * in.cols * (size_t)frame, dst);
    size_t fb = native_frame_bytes(&in, in.photometric);
    return decode_native_src(in, d->native + fb * (size_t)frame, 0, dst);
}

// Deflated Image Frame Compression: each frame is a deflate stream of the
// native frame (raw deflate, or zlib-wrapped).
int decode_deflframe(const cs_dicom_info &in, const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t fb = native_frame_bytes(&in, in.photometric);
    std::vector<uint8_t> raw(fb);
    z_stream z;
    memset(&z, 0, sizeof z);
    bool zlib = n >= 2 && (src[0] & 0x0F) == 8 && ((src[0] << 8) | src[1]) % 31 == 0;
    if (inflateInit2(&z, zlib ? 15 : -15) != Z_OK)
        return cs_error_set(CS_ENOMEM, "inflate: no memory");
    z.next_in = const_cast<Bytef *>(src);
    z.avail_in = (uInt)std::min(n, (size_t)UINT32_MAX);
    z.next_out = raw.data();
    z.avail_out = (uInt)fb;
    int zr = inflate(&z, Z_FINISH);
    size_t got = fb - z.avail_out;
    inflateEnd(&z);
    if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || got != fb)
        return cs_error_set(CS_EFORMAT, "deflated frame: %s (%zu of %zu bytes)",
                            zr == Z_DATA_ERROR ? "corrupt deflate data" : "short", got, fb);
    return decode_native_src(in, raw.data(), 0, dst);
}

// DCMTK's IJG decoders suspend at the end of each input buffer, so the
// fragments of a frame are fed one after the other, never joined.
int decode_ijg(cs_dicom *d, const span *parts, size_t nparts, uint8_t *dst, size_t cap)
{
    const uint8_t *src = parts[0].p;
    size_t n = parts[0].n;
    const cs_dicom_info &in = d->pix.info;
    int prec = 0, ll = 0, nc = 0;
    int rc = cs_dicom_jpeg_sof(src, n, &prec, &ll, &nc);
    if (rc)
        return rc;
    bool ybr = strncmp(in.photometric, "YBR", 3) == 0;
    // Lossless JPEG is ours (ljpeg.c); IJG stays for 12-bit lossy JPEG and
    // for YCbCr-labelled lossless colour, which it converts to RGB.
    if (ll && !(ybr && in.samples == 3))
        return cs_dicom_ljpeg_decode(&in, parts, nparts, dst, cap);
    if (nc != in.samples)
        return cs_error_set(CS_EFORMAT, "JPEG has %d components, the dataset %d samples", nc,
                            in.samples);
    DJCodecParameter cp(ECC_lossyYCbCr, EDC_photometricInterpretation, EUC_default, EPC_default);
    DJDecoder *dec;
    if (prec <= 8)
        dec = new DJDecompressIJG8Bit(cp, ybr);
    else if (prec <= 12)
        dec = new DJDecompressIJG12Bit(cp, ybr);
    else
        dec = new DJDecompressIJG16Bit(cp, ybr);
    std::unique_ptr<DJDecoder> guard(dec);
    int ob = cs_dicom_out_bytes(&in);
    int db = dec->bytesPerSample();
    size_t px = (size_t)in.rows * in.cols * in.samples;
    if (db > ob)
        return cs_error_set(CS_EFORMAT, "JPEG precision %d exceeds Bits Allocated %d", prec,
                            in.bits_allocated);
    std::vector<uint8_t> tmp;
    uint8_t *target = dst;
    size_t tsize = px * db;
    if (db != ob) {
        tmp.resize(tsize);
        target = tmp.data();
    } else if (cap < tsize) {
        return cs_error_set(CS_ERANGE, "frame buffer too small");
    }
    OFCondition c = dec->init();
    for (size_t i = 0; c.good() && i < nparts; i++) {
        if (parts[i].n > 0xFFFFFFFFu)
            return cs_error_set(CS_EFORMAT, "JPEG fragment too large");
        c = dec->decode(const_cast<Uint8 *>(parts[i].p), (Uint32)parts[i].n, target, (Uint32)tsize,
                        in.pixel_signed ? OFTrue : OFFalse);
        if (c == EJ_Suspension && i + 1 < nparts)
            c = EC_Normal; // more data follows
    }
    if (c == EJ_Suspension)
        return cs_error_set(CS_EFORMAT, "JPEG decode (DCMTK IJG): the codestream ends early");
    if (c.bad())
        return cs_error_set(CS_EFORMAT, "JPEG decode (DCMTK IJG %d-bit): %s",
                            prec <= 8    ? 8
                            : prec <= 12 ? 12
                                         : 16,
                            c.text());
    if (db != ob) {
        uint16_t *o = reinterpret_cast<uint16_t *>(dst);
        for (size_t i = 0; i < px; i++)
            o[i] = tmp[i];
    }
    return 0;
}

int decode_frame(cs_dicom *d, int frame, void *dst, size_t cap, int inner_threads = 1)
{
    const cs_dicom_info &in = d->pix.info;
    if (in.rows == 0)
        return cs_error_set(CS_ERANGE, "no pixel data");
    if (frame < 0 || frame >= in.frames)
        return cs_error_set(CS_ERANGE, "frame %d out of range (0..%d)", frame, in.frames - 1);
    size_t need = cs_dicom_frame_size(&in);
    if (cap < need)
        return cs_error_set(CS_ERANGE, "buffer of %zu bytes, frame needs %zu", cap, need);
    uint8_t *out = static_cast<uint8_t *>(dst);
    if (d->ts->kind == TS_NATIVE)
        return decode_native(d, frame, out);
    const auto &ff = d->frame_frags[(size_t)frame];
    std::vector<uint8_t> joined;
    const uint8_t *src;
    size_t n;
    if (d->ts->kind == TS_JPEG && ff.second > 1) {
        // 12/16-bit and lossless JPEG, fragment by fragment: lossless to
        // ljpeg.c, the rest to DCMTK's IJG
        const span &f0 = d->frags[ff.first];
        int prec = 0, ll = 0, nc = 0;
        if (f0.n && cs_dicom_jpeg_sof(f0.p, f0.n, &prec, &ll, &nc) == 0 &&
            (prec != 8 || ll || cs_dicom_out_bytes(&in) != 1)) {
            int rc = decode_ijg(d, &d->frags[ff.first], ff.second, out, cap);
            if (rc)
                return rc;
            size_t ns2 = (size_t)in.rows * in.cols * in.samples;
            if (!in.pixel_signed && prec <= in.bits_stored)
                return 0;
            if (d->ts->lossy)
                cs_dicom_normalize_decoded(&in, out, ns2);
            else
                cs_dicom_normalize(&in, out, ns2);
            return 0;
        }
    }
    if (ff.second == 1) {
        src = d->frags[ff.first].p;
        n = d->frags[ff.first].n;
    } else {
        size_t total = 0;
        for (size_t i = 0; i < ff.second; i++)
            total += d->frags[ff.first + i].n;
        joined.resize(total);
        size_t o = 0;
        for (size_t i = 0; i < ff.second; i++) {
            const span &s = d->frags[ff.first + i];
            if (s.n)
                memcpy(joined.data() + o, s.p, s.n);
            o += s.n;
        }
        src = joined.data();
        n = total;
    }
    if (!src || n == 0)
        return cs_error_set(CS_EFORMAT, "frame %d has no encoded bytes", frame);
    int rc;
    size_t ns = (size_t)in.rows * in.cols * in.samples;
    switch (d->ts->kind) {
    case TS_RLE:
        rc = cs_dicom_rle_decode(&in, src, n, out, cap);
        break;
    case TS_JLS:
        rc = cs_dicom_jls_decode(&in, src, n, out, cap);
        break;
    case TS_J2K:
        rc = cs_dicom_j2k_decode(&in, src, n, out, cap, inner_threads);
        break;
    case TS_DEFLFRAME:
        return decode_deflframe(in, src, n, out);
    case TS_JPEG:
        rc = cs_dicom_jpeg8_decode(&in, src, n, out, cap);
        if (rc == 1) {
            span whole = {src, n};
            rc = decode_ijg(d, &whole, 1, out, cap);
        }
        break;
    default:
        rc = cs_error_set(CS_EFORMAT, "unsupported syntax");
    }
    if (rc)
        return rc;
    if (d->ts->kind == TS_JPEG && !in.pixel_signed) {
        // IJG/TurboJPEG output is below 2^precision: when that fits in
        // Bits Stored the masking pass would change nothing.
        int prec = 0, ll = 0, nc = 0;
        if (cs_dicom_jpeg_sof(src, n, &prec, &ll, &nc) == 0 && prec <= in.bits_stored)
            return 0;
    }
    // Lossless codecs reproduce native values (mask, as native data);
    // lossy ones may overshoot (clamp).
    if (d->ts->lossy)
        cs_dicom_normalize_decoded(&in, out, ns);
    else
        cs_dicom_normalize(&in, out, ns);
    return 0;
}

// ---- writing ----

int write_mem(cs_dicom *d, E_TransferSyntax xfer, std::vector<uint8_t> &out)
{
    if (xfer == EXS_Unknown && !d->orig.empty()) {
        out = d->orig; // unmodified (edits refuse these syntaxes)
        return 0;
    }
    if (xfer == EXS_Unknown)
        return cs_error_set(CS_EINVAL,
                            "cannot write transfer syntax %s with DCMTK 3.6.7 (transcode first)",
                            d->pix.info.transfer_syntax);
    std::vector<uint8_t> chunk(1 << 20);
    DcmOutputBufferStream os(chunk.data(), (offile_off_t)chunk.size());
    d->ff->transferInit();
    OFCondition c = EC_StreamNotifyClient;
    while (c == EC_StreamNotifyClient) {
        c = d->ff->write(os, xfer, EET_ExplicitLength, nullptr, EGL_recalcGL, EPD_noChange, 0, 0, 0,
                         EWM_createNewMeta);
        void *b = nullptr;
        offile_off_t len = 0;
        os.flushBuffer(b, len);
        if (len > 0)
            out.insert(out.end(), static_cast<uint8_t *>(b), static_cast<uint8_t *>(b) + len);
    }
    if (c.good()) {
        os.flush();
        void *b = nullptr;
        offile_off_t len = 0;
        os.flushBuffer(b, len);
        if (len > 0)
            out.insert(out.end(), static_cast<uint8_t *>(b), static_cast<uint8_t *>(b) + len);
    }
    d->ff->transferEnd();
    if (c.bad())
        return cs_error_set(CS_EFORMAT, "DICOM write error: %s", c.text());
    return 0;
}

// Re-read the handle from its own serialisation (after transcode): the
// frame table then points into fresh, consistent element values.
int reload(cs_dicom *d)
{
    std::vector<uint8_t> buf;
    int rc = write_mem(d, d->cur_xfer, buf);
    if (rc)
        return rc;
    cs_dicom *n = nullptr;
    rc = open_buf(&n, buf.data(), buf.size());
    if (rc)
        return rc;
    std::swap(d->ff, n->ff);
    d->ts = n->ts;
    d->pix = n->pix;
    d->native = n->native;
    d->native_len = n->native_len;
    d->frags.swap(n->frags);
    d->frame_frags.swap(n->frame_frags);
    for (int i = 0; i < 5; i++)
        d->lut_store[i].swap(n->lut_store[i]);
    d->per_frame.swap(n->per_frame);
    d->cur_xfer = n->cur_xfer;
    d->orig.swap(n->orig);
    delete n;
    return 0;
}

// @p in with every byte that is not part of a valid UTF-8 sequence read as
// Latin-1 (the usual unconverted case), so the JSON always parses.
std::string utf8_valid(const std::string &in)
{
    std::string out;
    out.reserve(in.size());
    const unsigned char *p = reinterpret_cast<const unsigned char *>(in.data());
    size_t n = in.size(), i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len == 2)
            ok = c >= 0xC2;
        if (ok) {
            out.append(in, i, len);
            i += len;
        } else {
            out += (char)(0xC0 | (c >> 6));
            out += (char)(0x80 | (c & 0x3F));
            i++;
        }
    }
    return out;
}

} // namespace

// ---- the C API ----

extern "C" {

int cs_dicom_open(cs_dicom **out, const char *path)
{
    if (!out || !path)
        return cs_error_set(CS_EINVAL, "cs_dicom_open: NULL argument");
    *out = nullptr;
    GUARD("open", {
        int fd = ::open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cs_error_set(errno == ENOENT ? CS_ENOTFOUND : CS_EIO, "%s: %s", path,
                                strerror(errno));
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return cs_error_set(CS_EIO, "%s: not a regular file", path);
        }
        std::vector<uint8_t> buf((size_t)st.st_size);
        size_t got = 0;
        while (got < buf.size()) {
            ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        ::close(fd);
        if (got != buf.size())
            return cs_error_set(CS_EIO, "%s: short read", path);
        int rc = open_buf(out, buf.data(), buf.size());
        if (rc && cs_error_last()[0]) {
            std::string m = cs_error_last();
            cs_error_set(rc, "%s: %s", path, m.c_str());
        }
        return rc;
    })
}

int cs_dicom_open_mem(cs_dicom **out, const void *data, size_t len)
{
    if (!out || (!data && len))
        return cs_error_set(CS_EINVAL, "cs_dicom_open_mem: NULL argument");
    *out = nullptr;
    GUARD("open", { return open_buf(out, static_cast<const uint8_t *>(data), len); })
}

void cs_dicom_free(cs_dicom *d)
{
    try {
        delete d;
    } catch (...) {
    }
}

int cs_dicom_get_info(cs_dicom *d, cs_dicom_info *out)
{
    if (!d || !out)
        return cs_error_set(CS_EINVAL, "cs_dicom_get_info: NULL argument");
    *out = d->pix.info;
    return 0;
}

int cs_dicom_get_string(cs_dicom *d, uint32_t tag, char *buf, size_t cap)
{
    if (!d || (!buf && cap))
        return cs_error_set(CS_EINVAL, "cs_dicom_get_string: NULL argument");
    GUARD("get_string", {
        DcmTagKey k((Uint16)(tag >> 16), (Uint16)(tag & 0xFFFF));
        DcmItem *it = (tag >> 16) == 2 ? static_cast<DcmItem *>(d->ff->getMetaInfo())
                                       : static_cast<DcmItem *>(d->ff->getDataset());
        DcmElement *el = nullptr;
        if (it->findAndGetElement(k, el).bad() || !el || el->ident() == EVR_SQ)
            return cs_error_set(CS_ENOTFOUND, "(%04X,%04X) absent", tag >> 16, tag & 0xFFFF);
        OFString s;
        if (el->getOFStringArray(s).bad())
            return cs_error_set(CS_ENOTFOUND, "(%04X,%04X) has no string value", tag >> 16,
                                tag & 0xFFFF);
        size_t n = s.length();
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
            n--;
        if (n == 0)
            return cs_error_set(CS_ENOTFOUND, "(%04X,%04X) is empty", tag >> 16, tag & 0xFFFF);
        if (n + 1 > cap)
            return cs_error_set(CS_ERANGE, "(%04X,%04X) needs %zu bytes", tag >> 16, tag & 0xFFFF,
                                n + 1);
        memcpy(buf, s.c_str(), n);
        buf[n] = 0;
        return 0;
    })
}

size_t cs_dicom_frame_size(const cs_dicom_info *info)
{
    if (!info || info->rows <= 0 || info->cols <= 0)
        return 0;
    return (size_t)info->rows * (size_t)info->cols * (size_t)info->samples *
           (size_t)cs_dicom_out_bytes(info);
}

int cs_dicom_frame_decode(cs_dicom *d, int frame, void *dst, size_t cap)
{
    if (!d || (!dst && cap))
        return cs_error_set(CS_EINVAL, "cs_dicom_frame_decode: NULL argument");
    GUARD("frame_decode", { return decode_frame(d, frame, dst, cap); })
}

int cs_dicom_frames_decode(cs_dicom *d, int first, int count, void *dst, size_t cap, int threads)
{
    if (!d || (!dst && cap) || count < 0)
        return cs_error_set(CS_EINVAL, "cs_dicom_frames_decode: bad argument");
    GUARD("frames_decode", {
        const cs_dicom_info &in = d->pix.info;
        if (first < 0 || count > in.frames || first > in.frames - count)
            return cs_error_set(CS_ERANGE, "frames %d..%d out of range (%d frames)", first,
                                first + count - 1, in.frames);
        size_t fs = cs_dicom_frame_size(&in);
        if (cap / (fs ? fs : 1) < (size_t)count)
            return cs_error_set(CS_ERANGE, "buffer of %zu bytes for %d frames of %zu", cap, count,
                                fs);
        uint8_t *out = static_cast<uint8_t *>(dst);
        if (threads <= 0)
            threads = (int)std::max(1u, std::thread::hardware_concurrency());
        // Native frames are a memcpy: threads do not pay. One JPEG 2000
        // frame is decoded by OpenJPEG's own threads instead.
        int inner = 1;
        if (d->ts->kind == TS_J2K && count == 1)
            inner = threads;
        if (d->ts->kind == TS_NATIVE || count < 2)
            threads = 1;
        threads = std::min(threads, count);
        if (threads == 1) {
            for (int i = 0; i < count; i++) {
                int rc = decode_frame(d, first + i, out + fs * i, fs, inner);
                if (rc)
                    return rc;
            }
            return 0;
        }
        std::atomic<int> next{0}, err{0};
        std::string msg;
        std::mutex mu;
        auto work = [&] {
            for (;;) {
                int i = next.fetch_add(1);
                if (i >= count || err.load())
                    return;
                int rc;
                try {
                    rc = decode_frame(d, first + i, out + fs * i, fs);
                } catch (...) {
                    rc = fail_exception("frames_decode");
                }
                if (rc) {
                    std::lock_guard<std::mutex> g(mu);
                    if (!err.load()) {
                        msg = cs_error_last();
                        err.store(rc);
                    }
                }
            }
        };
        std::vector<std::thread> pool;
        for (int t = 1; t < threads; t++) {
            try {
                pool.emplace_back(work);
            } catch (...) {
                break; // fewer threads: the caller's thread still works
            }
        }
        work();
        for (auto &t : pool)
            t.join();
        if (err.load())
            return cs_error_set(err.load(), "%s", msg.c_str());
        return 0;
    })
}

int cs_dicom_frame_encoded(cs_dicom *d, int frame, cs_buf **out)
{
    if (!d || !out)
        return cs_error_set(CS_EINVAL, "cs_dicom_frame_encoded: NULL argument");
    *out = nullptr;
    GUARD("frame_encoded", {
        const cs_dicom_info &in = d->pix.info;
        if (in.rows == 0 || frame < 0 || frame >= in.frames)
            return cs_error_set(CS_ERANGE, "frame %d out of range", frame);
        if (d->ts->kind == TS_NATIVE) {
            if (in.bits_allocated == 1)
                return cs_error_set(CS_EINVAL, "1-bit frames are not byte aligned");
            size_t fb = native_frame_bytes(&in, in.photometric);
            return cs_buf_new_copy(out, d->native + fb * (size_t)frame, fb);
        }
        const auto &ff = d->frame_frags[(size_t)frame];
        size_t total = 0;
        for (size_t i = 0; i < ff.second; i++)
            total += d->frags[ff.first + i].n;
        int rc = cs_buf_new(out, total);
        if (rc)
            return rc;
        size_t o = 0;
        for (size_t i = 0; i < ff.second; i++) {
            const span &s = d->frags[ff.first + i];
            if (s.n)
                memcpy(cs_buf_data(*out) + o, s.p, s.n);
            o += s.n;
        }
        return 0;
    })
}

int cs_dicom_render(cs_dicom *d, int frame, const cs_dicom_window *win, uint8_t *dst, size_t stride,
                    size_t cap, int *channels)
{
    if (!d || !dst || !channels)
        return cs_error_set(CS_EINVAL, "cs_dicom_render: NULL argument");
    GUARD("render", {
        size_t fs = cs_dicom_frame_size(&d->pix.info);
        if (fs == 0)
            return cs_error_set(CS_ERANGE, "no pixel data");
        std::unique_ptr<uint8_t[]> buf(new uint8_t[fs]);
        int rc = decode_frame(d, frame, buf.get(), fs, d->frame_threads);
        if (rc)
            return rc;
        if (d->per_frame.empty())
            return cs_dicom_render_frame(&d->pix, buf.get(), win, dst, stride, cap, channels);
        cs_dicom_pix p = d->pix; // this frame's functional groups
        const auto &v = d->per_frame[(size_t)frame];
        p.info.slope = v.slope;
        p.info.intercept = v.intercept;
        p.has_window = v.has_window;
        p.wc = v.wc;
        p.ww = v.ww;
        return cs_dicom_render_frame(&p, buf.get(), win, dst, stride, cap, channels);
    })
}

void cs_dicom_set_frame_threads(cs_dicom *d, int threads)
{
    if (d)
        d->frame_threads = threads < 1 ? 1 : threads;
}

int cs_dicom_save_mem(cs_dicom *d, cs_buf **out)
{
    if (!d || !out)
        return cs_error_set(CS_EINVAL, "cs_dicom_save_mem: NULL argument");
    *out = nullptr;
    GUARD("save", {
        std::vector<uint8_t> buf;
        int rc = write_mem(d, d->cur_xfer, buf);
        if (rc)
            return rc;
        return cs_buf_new_copy(out, buf.data(), buf.size());
    })
}

int cs_dicom_save(cs_dicom *d, const char *path)
{
    if (!d || !path)
        return cs_error_set(CS_EINVAL, "cs_dicom_save: NULL argument");
    GUARD("save", {
        std::vector<uint8_t> buf;
        int rc = write_mem(d, d->cur_xfer, buf);
        if (rc)
            return rc;
        std::string tmp = std::string(path) + ".tmpXXXXXX";
        std::vector<char> tname(tmp.begin(), tmp.end());
        tname.push_back(0);
        int fd = mkstemp(tname.data());
        if (fd < 0)
            return cs_error_set(CS_EIO, "%s: %s", tname.data(), strerror(errno));
        size_t done = 0;
        while (done < buf.size()) {
            ssize_t w = ::write(fd, buf.data() + done, buf.size() - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        int ok = done == buf.size() && fsync(fd) == 0;
        ok = (::close(fd) == 0) && ok;
        if (!ok || rename(tname.data(), path) != 0) {
            int e = errno;
            unlink(tname.data());
            return cs_error_set(CS_EIO, "%s: %s", path, strerror(e));
        }
        return 0;
    })
}

int cs_dicom_to_json(cs_dicom *d, cs_buf **out)
{
    if (!d || !out)
        return cs_error_set(CS_EINVAL, "cs_dicom_to_json: NULL argument");
    *out = nullptr;
    GUARD("to_json", {
        DcmDataset copy(*d->ff->getDataset());
        // No bulk data: Pixel Data and large binary values are left out
        // (WADO-RS serves them separately).
        std::vector<DcmTagKey> drop;
        for (unsigned long i = 0; i < copy.card(); i++) {
            DcmElement *el = copy.getElement(i);
            DcmEVR vr = el->ident();
            bool bin = vr == EVR_OB || vr == EVR_OW || vr == EVR_OF || vr == EVR_OD ||
                       vr == EVR_OL || vr == EVR_UN || vr == EVR_pixelSQ || vr == EVR_PixelData;
            if (el->getTag() == DCM_PixelData || el->getTag() == DCM_FloatPixelData ||
                el->getTag() == DCM_DoubleFloatPixelData || (bin && el->getLength() > 1024))
                drop.push_back(el->getTag());
        }
        for (const DcmTagKey &k : drop)
            delete copy.remove(k);
        // DICOM JSON is UTF-8 (PS3.18 F.2): convert the copy's strings from
        // its Specific Character Set; whatever could not be converted is
        // made valid below.
        std::string cs = get_str(&copy, DCM_SpecificCharacterSet);
        if (!cs.empty() && cs != "ISO_IR 192" && OFCharacterEncoding::isLibraryAvailable())
            (void)copy.convertToUTF8();
        std::ostringstream os;
        DcmJsonFormatCompact fmt(OFFalse);
        OFCondition c = copy.writeJson(os, fmt);
        if (c.bad())
            return cs_error_set(CS_EFORMAT, "JSON: %s", c.text());
        // DcmDataset::writeJson writes the members; the object is ours.
        std::string s = "{" + utf8_valid(os.str()) + "}";
        return cs_buf_new_copy(out, s.data(), s.size());
    })
}

} // extern "C"

namespace
{

// ---- transcode ----

void set_lossy(DcmItem *ds, double ratio, const char *method)
{
    // PS3.3 C.7.6.1.1.5: once lossy, always "01"; ratio and method list
    // every lossy step, oldest first.
    std::string r0 = get_str(ds, DCM_LossyImageCompressionRatio);
    std::string m0 = get_str(ds, DCM_LossyImageCompressionMethod);
    char buf[32];
    snprintf(buf, sizeof buf, "%.4g", ratio);
    ds->putAndInsertString(DCM_LossyImageCompression, "01");
    ds->putAndInsertString(DCM_LossyImageCompressionRatio,
                           (r0.empty() ? std::string(buf) : r0 + "\\" + buf).c_str());
    ds->putAndInsertString(DCM_LossyImageCompressionMethod,
                           (m0.empty() ? std::string(method) : m0 + "\\" + method).c_str());
}

int transcode(cs_dicom *d, const cs_dicom_transcode_opts *opts)
{
    const char *target = opts && opts->transfer_syntax ? opts->transfer_syntax : CS_DICOM_TS_JLS_LL;
    int quality = opts ? opts->quality : 90;
    const ts_entry *to = find_ts(target);
    if (to && strcmp(target, d->pix.info.transfer_syntax) == 0)
        return 0; // already there (also for syntaxes DCMTK cannot write)
    if (!to || to->xfer == EXS_Unknown)
        return cs_error_set(CS_EINVAL, "transcode: unknown or unwritable transfer syntax \"%s\"",
                            target);
    bool to_jls = to->kind == TS_JLS, to_jpeg = to->xfer == EXS_JPEGProcess1;
    bool to_native = to->kind == TS_NATIVE;
    if (!to_jls && !to_jpeg && !to_native)
        return cs_error_set(CS_EINVAL,
                            "transcode: %s is not a supported target (native, JPEG-LS, JPEG "
                            "baseline)",
                            target);
    if (strcmp(target, d->pix.info.transfer_syntax) == 0)
        return 0;
    cs_dicom_info in = d->pix.info;
    DcmDataset *ds = d->ff->getDataset();
    if (in.rows == 0) { // no pixels: only the encoding changes
        if (!to_native)
            return cs_error_set(CS_EINVAL, "transcode: no pixel data to compress");
        d->cur_xfer = to->xfer;
        return reload(d);
    }
    if (to_native && d->ts->kind == TS_NATIVE) {
        d->cur_xfer = to->xfer; // DCMTK re-encodes byte order and deflate
        return reload(d);
    }
    if (!to_native && in.bits_allocated == 1)
        return cs_error_set(CS_EINVAL, "transcode: 1-bit data cannot be compressed to %s", target);
    int near = to->xfer == EXS_JPEGLSLossy ? std::max(1, std::min(quality, 9)) : 0;
    if (to_jpeg && (cs_dicom_out_bytes(&in) != 1 || in.bits_stored != 8))
        return cs_error_set(CS_EINVAL, "transcode: JPEG baseline needs 8-bit data (have %d bits)",
                            in.bits_stored);
    const char *pi = d->pix.out_photometric;
    if (to_jpeg && !(strncmp(pi, "MONOCHROME", 10) == 0 || strcmp(pi, "RGB") == 0))
        return cs_error_set(CS_EINVAL, "transcode: JPEG baseline from %s not supported", pi);
    size_t fs = cs_dicom_frame_size(&in);
    std::vector<uint8_t> all(fs * (size_t)in.frames);
    int rc = cs_dicom_frames_decode(d, 0, in.frames, all.data(), all.size(), 0);
    if (rc)
        return rc;
    std::string new_pi = pi;
    if (to_native) {
        if (cs_dicom_out_bytes(&in) == 1 && in.bits_allocated != 1)
            ds->putAndInsertUint8Array(DCM_PixelData, all.data(), (unsigned long)all.size());
        else if (in.bits_allocated == 1) {
            // repack bits (the decoded frames hold one 0/1 byte per pixel)
            std::vector<uint8_t> bits((all.size() + 7) / 8);
            for (size_t i = 0; i < all.size(); i++)
                if (all[i])
                    bits[i >> 3] |= (uint8_t)(1u << (i & 7));
            ds->putAndInsertUint8Array(DCM_PixelData, bits.data(), (unsigned long)bits.size());
        } else
            ds->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16 *>(all.data()),
                                        (unsigned long)(all.size() / 2));
    } else {
        DcmPixelSequence *seq = new DcmPixelSequence(DcmTag(DCM_PixelData, EVR_OB));
        DcmPixelItem *bot = new DcmPixelItem(DcmTag(DCM_Item, EVR_OB));
        seq->insert(bot);
        std::vector<Uint32> offsets;
        Uint32 pos = 0;
        size_t total = 0;
        for (int f = 0; f < in.frames; f++) {
            uint8_t *enc = nullptr;
            size_t len = 0;
            const void *frame = all.data() + fs * (size_t)f;
            rc = to_jls ? cs_dicom_jls_encode(&in, frame, near, &enc, &len)
                        : cs_dicom_jpeg8_encode(&in, frame, quality, &enc, &len);
            if (rc) {
                delete seq;
                return rc;
            }
            std::unique_ptr<uint8_t, void (*)(void *)> guard(enc, free);
            std::vector<uint8_t> even(enc, enc + len);
            if (even.size() & 1)
                even.push_back(0);
            DcmPixelItem *it = new DcmPixelItem(DcmTag(DCM_Item, EVR_OB));
            it->putUint8Array(even.data(), (unsigned long)even.size());
            seq->insert(it);
            offsets.push_back(pos);
            pos += 8 + (Uint32)even.size();
            total += even.size();
        }
        if (in.frames > 1)
            bot->putUint8Array(reinterpret_cast<const Uint8 *>(offsets.data()),
                               (unsigned long)(offsets.size() * 4));
        DcmPixelData *pd = new DcmPixelData(DCM_PixelData);
        pd->putOriginalRepresentation(to->xfer, nullptr, seq);
        ds->insert(pd, OFTrue);
        delete ds->remove(DcmTagKey(0x7FE0, 0x0001)); // old extended offset table
        delete ds->remove(DcmTagKey(0x7FE0, 0x0002));
        if (to_jpeg && in.samples == 3)
            new_pi = "YBR_FULL_422"; // TurboJPEG codes RGB as YCbCr 4:2:2
        double ratio = (double)all.size() / (double)(total ? total : 1);
        if (to_jpeg)
            set_lossy(ds, ratio, "ISO_10918_1");
        else if (near > 0)
            set_lossy(ds, ratio, "ISO_14495_1");
    }
    if (in.lossy && get_str(ds, DCM_LossyImageCompression).empty())
        ds->putAndInsertString(DCM_LossyImageCompression, "01"); // lossy before: stays so
    if (in.samples == 3)
        ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
    ds->putAndInsertString(DCM_PhotometricInterpretation, new_pi.c_str());
    if (in.bits_allocated != 1 && !to_native) {
        // values were sign-extended/masked: the high bit stays
        ds->putAndInsertUint16(DCM_HighBit, (Uint16)(in.bits_stored - 1));
    }
    d->cur_xfer = to->xfer;
    return reload(d);
}

// ---- de-identification ----

std::string new_uid(const std::string &old)
{
    // 2.25.<128-bit hash of the old UID>: the same input gives the same UID.
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
    for (unsigned char c : old) {
        h1 = (h1 ^ c) * 0x100000001b3ULL;
        h2 = (h2 ^ c) * 0x100000001b3ULL;
        h2 ^= h2 >> 29;
    }
    auto mix = [](uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    };
    unsigned __int128 v = ((unsigned __int128)mix(h1) << 64) | mix(h2 ^ h1);
    if (v == 0)
        v = 1;
    char digits[48];
    int n = 0;
    while (v > 0) {
        digits[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    }
    std::string r = "2.25.";
    while (n > 0)
        r += digits[--n];
    return r;
}

const char *dummy_for(DcmEVR vr)
{
    switch (vr) {
    case EVR_DA:
        return "19000101";
    case EVR_TM:
        return "000000";
    case EVR_DT:
        return "19000101000000";
    case EVR_IS:
    case EVR_DS:
        return "0";
    case EVR_AS:
        return "000Y";
    case EVR_CS:
        return "ANONYMIZED";
    default:
        return "ANONYMIZED";
    }
}

char rule_for(uint32_t tag, const cs_dicom_deid_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((tag & rules[i].mask) == rules[i].tag)
            return rules[i].action;
    return 0;
}

void replace_uids(DcmElement *el)
{
    OFString all;
    if (el->getOFStringArray(all).bad() || all.empty())
        return;
    std::string out, cur;
    std::string s = all.c_str();
    size_t start = 0;
    for (;;) {
        size_t bs = s.find('\\', start);
        std::string v = s.substr(start, bs == std::string::npos ? std::string::npos : bs - start);
        while (!v.empty() && (v.back() == ' ' || v.back() == '\0'))
            v.pop_back();
        if (!out.empty() || start > 0)
            out += "\\";
        out += v.empty() ? v : new_uid(v);
        if (bs == std::string::npos)
            break;
        start = bs + 1;
    }
    el->putString(out.c_str());
}

void clean_item(DcmItem *item, const cs_dicom_deid_rule *rules, size_t nrules)
{
    for (unsigned long i = item->card(); i-- > 0;) {
        DcmElement *el = item->getElement(i);
        if (!el)
            continue;
        DcmTag tag = el->getTag();
        uint32_t key = (uint32_t)tag.getGroup() << 16 | tag.getElement();
        if (tag.getGroup() & 1) { // private: removed (Annex E, "X")
            delete item->remove(el);
            continue;
        }
        if (key == 0x7FE00010u || tag.getGroup() == 0x0002)
            continue;
        if ((tag.getGroup() & 0xFF00) == 0x6000) { // overlays: data X, so all of it
            delete item->remove(el);
            continue;
        }
        char a = rule_for(key, rules, nrules);
        DcmEVR vr = el->ident();
        if (a == 'X') {
            delete item->remove(el);
        } else if (vr == EVR_SQ) {
            DcmSequenceOfItems *sq = static_cast<DcmSequenceOfItems *>(el);
            if (a == 'Z') {
                while (sq->card() > 0)
                    delete sq->remove((unsigned long)0);
            } else {
                for (unsigned long k = 0; k < sq->card(); k++)
                    clean_item(sq->getItem(k), rules, nrules);
            }
        } else if (a == 'U' || (a == 'D' && vr == EVR_UI)) {
            replace_uids(el);
        } else if (a == 'Z') {
            el->putString("");
        } else if (a == 'D') {
            el->putString(dummy_for(vr));
        } else if (vr == EVR_UI) {
            // Any other UID that is an instance reference keeps consistency
            // through the same hash (SOP Class and syntax UIDs are kept).
        }
    }
}

int deidentify(cs_dicom *d)
{
    if (d->cur_xfer == EXS_Unknown)
        return cs_error_set(CS_EINVAL, "deidentify: cannot rewrite %s with DCMTK 3.6.7",
                            d->pix.info.transfer_syntax);
    size_t n = 0;
    const cs_dicom_deid_rule *rules = cs_dicom_deid_rules(&n);
    DcmDataset *ds = d->ff->getDataset();
    clean_item(ds, rules, n);
    std::string sop = get_str(ds, DCM_SOPInstanceUID);
    DcmMetaInfo *meta = d->ff->getMetaInfo();
    if (!sop.empty())
        meta->putAndInsertString(DCM_MediaStorageSOPInstanceUID, sop.c_str());
    ds->putAndInsertString(DCM_PatientIdentityRemoved, "YES");
    ds->putAndInsertString(DCM_DeidentificationMethod,
                           "PS3.15 Annex E Basic Profile (Consilium cs_dicom)");
    delete ds->remove(DCM_DeidentificationMethodCodeSequence);
    DcmItem *code = nullptr;
    if (ds->findOrCreateSequenceItem(DCM_DeidentificationMethodCodeSequence, code, 0).bad() ||
        !code)
        return cs_error_set(CS_ENOMEM, "deidentify: cannot add the method code");
    code->putAndInsertString(DCM_CodeValue, "113100");
    code->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
    code->putAndInsertString(DCM_CodeMeaning, "Basic Application Confidentiality Profile");
    return reload(d);
}

} // namespace

extern "C" int cs_dicom_transcode(cs_dicom *d, const cs_dicom_transcode_opts *opts)
{
    if (!d)
        return cs_error_set(CS_EINVAL, "cs_dicom_transcode: NULL argument");
    GUARD("transcode", { return transcode(d, opts); })
}

extern "C" int cs_dicom_deidentify(cs_dicom *d)
{
    if (!d)
        return cs_error_set(CS_EINVAL, "cs_dicom_deidentify: NULL argument");
    GUARD("deidentify", { return deidentify(d); })
}
