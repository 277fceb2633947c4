/* Lossless JPEG (ITU T.81 process 14: SOF3, Huffman, predictors 1..7) for
 * DICOM 1.2.840.10008.1.2.4.57 and .70, decoding a frame's fragments in
 * place (never joined). Output is what DCMTK's IJG decoders give: samples
 * interleaved, (value << Pt) as 1 byte when Bits Allocated is 8, else as
 * little-endian uint16 (a precision <= 8 keeps 8 bits, as IJG's 8-bit
 * build does); reconstruction is modulo 2^16 (T.81 H.2.1, IJG jdpred.c).
 *
 * Speed: entropy bits come from a 64-bit MSB-first buffer refilled 7-8
 * bytes at a time; only a window holding a 0xFF byte (stuffing or marker)
 * or a fragment end takes the byte-by-byte slow path. Huffman codes of up
 * to LOOKAHEAD bits, with their extra bits when they fit, decode in one
 * table lookup into the difference itself. Each predictor has its own row
 * loop; 16-bit output with Pt 0 is reconstructed in the output buffer.
 *
 * Invariants: the SOF geometry is checked against the dataset before a
 * sample is written and writes stay inside rows * cols * samples; a read
 * past the scan's data yields zero bits that are counted (pad), and a row
 * that consumed any of them fails as truncated. Every error is CS_EFORMAT
 * (CS_ERANGE for a short buffer, CS_ENOMEM) with the byte offset in the
 * frame's codestream. */
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#include "dicom_internal.h"

#define LOOKAHEAD 11

#if defined(__GNUC__)
#define LJ_INLINE      static inline __attribute__((always_inline))
#define LJ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LJ_INLINE      static inline
#define LJ_UNLIKELY(x) (x)
#endif

/* fast[] entry, bit 5 clear: diff * 64 + total length (code + extra bits);
 * bit 5 set: ssss * 64 + 32 + code length (extra bits read separately), or
 * just 32 for a code longer than LOOKAHEAD (or an invalid one). */
typedef struct huff {
    int32_t fast[1 << LOOKAHEAD];
    int32_t maxcode[17]; /* largest code of each length, -1 when none */
    int32_t valoff[17];  /* vals[] index of a code of length l: code + valoff[l] */
    uint8_t vals[256];
    int nvals, defined;
} huff;

typedef struct ljd {
    /* input: the frame's fragments */
    const cs_dicom_span *parts;
    size_t nparts, ipart;
    const uint8_t *p, *end;
    size_t base; /* codestream offset of parts[ipart] */
    /* entropy decoder */
    uint64_t acc;  /* next bits, MSB first */
    int cnt;       /* valid bits in acc (including pad) */
    int pad;       /* zero bits appended after the data ended */
    int marker;    /* a marker (or the end, -1) stops the data; 0 none */
    int bad;       /* an invalid Huffman code was met */
    size_t bad_at; /* its offset */
} ljd;

typedef struct frame {
    int prec, w, h, nf;
    int id[4], hs[4], vs[4], done[4];
    int ri; /* restart interval in MCUs, 0 none */
    huff *tab[4];
} frame;

/* ---- bytes ---- */

static size_t offset_of(const ljd *r)
{
    if (r->nparts == 0)
        return 0;
    return r->base + (size_t)(r->p - r->parts[r->ipart].p);
}

static int next_part(ljd *r)
{
    while (r->ipart + 1 < r->nparts) {
        r->base += r->parts[r->ipart].n;
        r->ipart++;
        r->p = r->parts[r->ipart].p;
        r->end = r->p + r->parts[r->ipart].n;
        if (r->p && r->p < r->end)
            return 1;
    }
    r->p = r->end;
    return 0;
}

/* Next byte, or -1 at the end of the data. */
static int get_u8(ljd *r)
{
    if (r->p == r->end && !next_part(r))
        return -1;
    return *r->p++;
}

/* The byte after the current one (which must exist), or -1. */
static int peek_second(const ljd *r)
{
    if (r->end - r->p >= 2)
        return r->p[1];
    for (size_t i = r->ipart + 1; i < r->nparts; i++)
        if (r->parts[i].p && r->parts[i].n)
            return r->parts[i].p[0];
    return -1;
}

static int get_u16(ljd *r)
{
    int a = get_u8(r), b = get_u8(r);
    return (a < 0 || b < 0) ? -1 : (a << 8 | b);
}

static int skip_bytes(ljd *r, size_t n)
{
    while (n) {
        if (r->p == r->end && !next_part(r))
            return -1;
        size_t k = (size_t)(r->end - r->p);
        if (k > n)
            k = n;
        r->p += k;
        n -= k;
    }
    return 0;
}

/* Skip to the next marker (entropy data, fill bytes) and return its code,
 * or -1 at the end of the data. */
static int seek_marker(ljd *r)
{
    for (;;) {
        int c = get_u8(r);
        if (c < 0)
            return -1;
        if (c != 0xFF)
            continue;
        do {
            c = get_u8(r);
        } while (c == 0xFF);
        if (c < 0)
            return -1;
        if (c != 0)
            return c;
    }
}

/* ---- bits ---- */

static void refill_slow(ljd *r)
{
    r->acc &= r->cnt ? ~(~(uint64_t)0 >> r->cnt) : 0;
    while (r->cnt <= 56) {
        int c;
        if (r->marker) {
            c = 0;
            r->pad += 8;
        } else if (r->p == r->end && !next_part(r)) {
            r->marker = -1;
            continue;
        } else if (*r->p != 0xFF) {
            c = *r->p++;
        } else {
            int nx = peek_second(r);
            if (nx == 0x00) {
                get_u8(r);
                get_u8(r);
                c = 0xFF;
            } else if (nx == 0xFF) {
                get_u8(r); /* fill byte before a marker */
                continue;
            } else {
                r->marker = nx < 0 ? -1 : nx; /* left unread */
                continue;
            }
        }
        r->acc |= (uint64_t)c << (56 - r->cnt);
        r->cnt += 8;
    }
}

LJ_INLINE void refill(ljd *r)
{
    if (r->end - r->p >= 8 && !r->marker) {
        const uint8_t *q = r->p;
        uint64_t x = (uint64_t)q[0] << 56 | (uint64_t)q[1] << 48 | (uint64_t)q[2] << 40 |
                     (uint64_t)q[3] << 32 | (uint64_t)q[4] << 24 | (uint64_t)q[5] << 16 |
                     (uint64_t)q[6] << 8 | (uint64_t)q[7];
        uint64_t nx = ~x; /* a 0xFF byte of x is a zero byte of nx */
        if (!((nx - 0x0101010101010101ull) & ~nx & 0x8080808080808080ull)) {
            /* Bits past cnt are the next bytes' own bits: a later refill
             * ORs the same values there (Giesen's variant 4). */
            r->acc |= x >> r->cnt;
            r->p += (63 - r->cnt) >> 3;
            r->cnt |= 56;
            return;
        }
    }
    refill_slow(r);
}

static int32_t extend(uint32_t v, int s)
{
    return v < (1u << (s - 1)) ? (int32_t)v - (int32_t)(1u << s) + 1 : (int32_t)v;
}

static size_t bit_offset(const ljd *r)
{
    size_t o = offset_of(r);
    size_t back = (size_t)(r->cnt - r->pad) / 8;
    return o > back ? o - back : 0;
}

static int32_t diff_slow(ljd *r, const huff *h, int32_t e)
{
    int l, s;
    if (e & 31) {
        l = e & 31;
        s = e >> 6;
    } else {
        for (l = LOOKAHEAD + 1; l <= 16; l++) {
            int32_t code = (int32_t)(r->acc >> (64 - l));
            if (code <= h->maxcode[l])
                break;
        }
        int32_t vi = l <= 16 ? (int32_t)(r->acc >> (64 - l)) + h->valoff[l] : -1;
        if (vi < 0 || vi >= h->nvals) {
            if (!r->bad)
                r->bad_at = bit_offset(r);
            r->bad = 1;
            r->acc <<= 16;
            r->cnt -= 16;
            return 0;
        }
        s = h->vals[vi];
    }
    r->acc <<= l;
    r->cnt -= l;
    if (s == 0)
        return 0;
    if (s == 16)
        return 32768;
    uint32_t v = (uint32_t)(r->acc >> (64 - s));
    r->acc <<= s;
    r->cnt -= s;
    return extend(v, s);
}

/* One difference (at most 31 bits: refilled to >= 32 first). */
LJ_INLINE int32_t get_diff(ljd *r, const huff *h)
{
    if (r->cnt < 32)
        refill(r);
    int32_t e = h->fast[r->acc >> (64 - LOOKAHEAD)];
    if (!(e & 32)) {
        int l = e & 31;
        r->acc <<= l;
        r->cnt -= l;
        return e >> 6;
    }
    return diff_slow(r, h, e);
}

/* ---- Huffman tables ---- */

static int huff_build(huff *h, const uint8_t counts[16], size_t at)
{
    int32_t code = 0;
    int k = 0;
    for (int i = 0; i < (1 << LOOKAHEAD); i++)
        h->fast[i] = 32;
    for (int l = 1; l <= 16; l++) {
        h->valoff[l] = k - code;
        for (int i = 0; i < counts[l - 1]; i++, k++, code++) {
            int s = h->vals[k];
            if (code >= (1 << l))
                return cs_error_set(CS_EFORMAT,
                                    "JPEG lossless: bad Huffman table (DHT at byte %zu): more "
                                    "codes of length %d than fit",
                                    at, l);
            if (s > 16)
                return cs_error_set(CS_EFORMAT,
                                    "JPEG lossless: Huffman table (DHT at byte %zu) has category "
                                    "%d (lossless allows 0..16)",
                                    at, s);
            if (l > LOOKAHEAD)
                continue;
            int shift = LOOKAHEAD - l;
            for (int32_t j = 0; j < (1 << shift); j++) {
                int32_t idx = (code << shift) | j, e;
                if (s == 0)
                    e = l;
                else if (s == 16)
                    e = 32768 * 64 + l;
                else if (l + s <= LOOKAHEAD) {
                    uint32_t v = (uint32_t)(idx >> (LOOKAHEAD - l - s)) & ((1u << s) - 1);
                    e = extend(v, s) * 64 + l + s;
                } else
                    e = s * 64 + 32 + l;
                h->fast[idx] = e;
            }
        }
        h->maxcode[l] = counts[l - 1] ? code - 1 : -1;
        code <<= 1;
    }
    h->defined = 1;
    return 0;
}

static int read_dht(ljd *r, frame *f, size_t at)
{
    int len = get_u16(r);
    if (len < 2)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: DHT at byte %zu is truncated", at);
    len -= 2;
    while (len > 0) {
        uint8_t counts[16];
        int tc = get_u8(r), total = 0;
        if (tc < 0 || len < 17)
            return cs_error_set(CS_EFORMAT, "JPEG lossless: DHT at byte %zu is truncated", at);
        for (int i = 0; i < 16; i++) {
            int c = get_u8(r);
            if (c < 0)
                return cs_error_set(CS_EFORMAT, "JPEG lossless: DHT at byte %zu is truncated", at);
            counts[i] = (uint8_t)c;
            total += c;
        }
        len -= 17;
        if (total > 256 || total > len)
            return cs_error_set(CS_EFORMAT,
                                "JPEG lossless: bad Huffman table (DHT at byte %zu): %d codes in "
                                "%d bytes",
                                at, total, len);
        int th = tc & 15;
        if ((tc >> 4) > 1 || th > 3)
            return cs_error_set(
                CS_EFORMAT, "JPEG lossless: bad Huffman table class/id 0x%02X (DHT at byte %zu)",
                tc, at);
        if (tc >> 4) { /* an AC table: never used by a lossless scan */
            if (skip_bytes(r, (size_t)total))
                return cs_error_set(CS_EFORMAT, "JPEG lossless: DHT at byte %zu is truncated", at);
            len -= total;
            continue;
        }
        if (!f->tab[th]) {
            f->tab[th] = malloc(sizeof(huff));
            if (!f->tab[th])
                return cs_error_set(CS_ENOMEM, "JPEG lossless: no memory");
        }
        huff *h = f->tab[th];
        h->defined = 0;
        for (int i = 0; i < total; i++) {
            int c = get_u8(r);
            if (c < 0)
                return cs_error_set(CS_EFORMAT, "JPEG lossless: DHT at byte %zu is truncated", at);
            h->vals[i] = (uint8_t)c;
        }
        len -= total;
        h->nvals = total;
        int rc = huff_build(h, counts, at);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- rows ---- */

/* One row of one component: @p st samples between pixels. prev NULL: the
 * first row of the scan or of a restart interval (T.81 H.1.2.1). */
LJ_INLINE void row1(ljd *r, const huff *h, uint16_t *cur, const uint16_t *prev, int w, int st,
                    int pred, int init)
{
    uint32_t ra;
    int x;
    if (!prev) {
        ra = (uint32_t)(init + get_diff(r, h)) & 0xFFFF;
        cur[0] = (uint16_t)ra;
        for (x = 1; x < w; x++) {
            ra = (uint32_t)((int32_t)ra + get_diff(r, h)) & 0xFFFF;
            cur[x * st] = (uint16_t)ra;
        }
        return;
    }
    int32_t rb = prev[0], rc;
    ra = (uint32_t)(rb + get_diff(r, h)) & 0xFFFF;
    cur[0] = (uint16_t)ra;
#define ROW1(PX)                                                                                   \
    for (x = 1; x < w; x++) {                                                                      \
        int32_t a = (int32_t)ra;                                                                   \
        rc = rb;                                                                                   \
        rb = prev[x * st];                                                                         \
        (void)a;                                                                                   \
        (void)rc;                                                                                  \
        ra = (uint32_t)((PX) + get_diff(r, h)) & 0xFFFF;                                           \
        cur[x * st] = (uint16_t)ra;                                                                \
    }
    switch (pred) {
    case 1:
        for (x = 1; x < w; x++) {
            ra = (uint32_t)((int32_t)ra + get_diff(r, h)) & 0xFFFF;
            cur[x * st] = (uint16_t)ra;
        }
        break;
    case 2:
        ROW1(rb)
        break;
    case 3:
        ROW1(rc)
        break;
    case 4:
        ROW1(a + rb - rc)
        break;
    case 5:
        ROW1(a + ((rb - rc) >> 1))
        break;
    case 6:
        ROW1(rb + ((a - rc) >> 1))
        break;
    default:
        ROW1((a + rb) >> 1)
        break;
    }
#undef ROW1
}

static void row1_st1(ljd *r, const huff *h, uint16_t *cur, const uint16_t *prev, int w, int pred,
                     int init)
{
    row1(r, h, cur, prev, w, 1, pred, init);
}

static void row1_any(ljd *r, const huff *h, uint16_t *cur, const uint16_t *prev, int w, int st,
                     int pred, int init)
{
    row1(r, h, cur, prev, w, st, pred, init);
}

/* One row of an interleaved scan of @p ns components at offsets @p off. */
static void rown(ljd *r, const huff *const *h, int ns, const int *off, uint16_t *cur,
                 const uint16_t *prev, int w, int st, int pred, int init)
{
    int x, c;
    for (c = 0; c < ns; c++) {
        int32_t px = prev ? prev[off[c]] : init;
        cur[off[c]] = (uint16_t)((uint32_t)(px + get_diff(r, h[c])) & 0xFFFF);
    }
    if (!prev)
        pred = 1;
#define ROWN(PX)                                                                                   \
    for (x = 1; x < w; x++) {                                                                      \
        for (c = 0; c < ns; c++) {                                                                 \
            size_t i = (size_t)x * st + off[c];                                                    \
            int32_t a = cur[i - st];                                                               \
            int32_t b = prev ? prev[i] : 0;                                                        \
            int32_t d = prev ? prev[i - st] : 0;                                                   \
            (void)a;                                                                               \
            (void)b;                                                                               \
            (void)d;                                                                               \
            cur[i] = (uint16_t)((uint32_t)((PX) + get_diff(r, h[c])) & 0xFFFF);                    \
        }                                                                                          \
    }
    switch (pred) {
    case 1:
        ROWN(a)
        break;
    case 2:
        ROWN(b)
        break;
    case 3:
        ROWN(d)
        break;
    case 4:
        ROWN(a + b - d)
        break;
    case 5:
        ROWN(a + ((b - d) >> 1))
        break;
    case 6:
        ROWN(b + ((a - d) >> 1))
        break;
    default:
        ROWN((a + b) >> 1)
        break;
    }
#undef ROWN
}

/* ---- scans ---- */

typedef struct scan {
    int ns, ci[4], off[4];
    const huff *h[4];
    int pred, pt;
    size_t at;
} scan;

static int decode_scan(ljd *r, frame *f, const scan *s, uint8_t *dst, int ob, uint16_t *ring)
{
    int w = f->w, nf = f->nf;
    size_t rowlen = (size_t)w * nf;
    int direct = ob == 2 && f->prec > 8 && s->pt == 0;
    int init = 1 << (f->prec - s->pt - 1);
    int rrows = f->ri ? f->ri / w : 0, rst = 0;
    uint16_t *d16 = (uint16_t *)(void *)dst;
    r->acc = 0;
    r->cnt = r->pad = r->marker = r->bad = 0;
    for (int y = 0; y < f->h; y++) {
        int first = y == 0;
        if (rrows && y > 0 && y % rrows == 0) {
            int m = seek_marker(r);
            if (m != 0xD0 + (rst & 7))
                return cs_error_set(CS_EFORMAT,
                                    m < 0 ? "JPEG lossless: the data ends before restart marker "
                                            "RST%d (row %d, byte %zu)"
                                          : "JPEG lossless: expected restart marker RST%d "
                                            "before row %d, found another marker (byte %zu)",
                                    rst & 7, y, offset_of(r));
            rst++;
            r->acc = 0;
            r->cnt = r->pad = r->marker = 0;
            first = 1;
        }
        uint16_t *cur, *prev;
        if (direct) {
            cur = d16 + (size_t)y * rowlen;
            prev = first ? NULL : cur - rowlen;
        } else {
            cur = ring + (size_t)(y & 1) * rowlen;
            prev = first ? NULL : ring + (size_t)((y - 1) & 1) * rowlen;
        }
        if (s->ns == 1) {
            int o = s->off[0];
            if (nf == 1)
                row1_st1(r, s->h[0], cur, prev, w, s->pred, init);
            else
                row1_any(r, s->h[0], cur + o, prev ? prev + o : NULL, w, nf, s->pred, init);
        } else {
            rown(r, s->h, s->ns, s->off, cur, prev, w, nf, s->pred, init);
        }
        if (LJ_UNLIKELY(r->bad))
            return cs_error_set(CS_EFORMAT,
                                "JPEG lossless: bad Huffman code in row %d (byte %zu of the "
                                "codestream)",
                                y, r->bad_at);
        if (LJ_UNLIKELY(r->pad > r->cnt))
            return cs_error_set(CS_EFORMAT,
                                "JPEG lossless: the scan's data ends early, in row %d of %d (%s "
                                "at byte %zu)",
                                y, f->h, r->marker > 0 ? "marker" : "end of data", offset_of(r));
        if (!direct) {
            int pt = s->pt;
            for (int c = 0; c < s->ns; c++) {
                int o = s->off[c];
                if (ob == 1) {
                    uint8_t *o8 = dst + (size_t)y * rowlen + o;
                    for (int x = 0; x < w; x++)
                        o8[(size_t)x * nf] = (uint8_t)(cur[(size_t)x * nf + o] << pt);
                } else {
                    uint16_t *o16 = d16 + (size_t)y * rowlen + o;
                    unsigned mask = f->prec <= 8 ? 0xFFu : 0xFFFFu;
                    for (int x = 0; x < w; x++)
                        o16[(size_t)x * nf] =
                            (uint16_t)((unsigned)(cur[(size_t)x * nf + o] << pt) & mask);
                }
            }
        }
    }
    return 0;
}

static int read_sof(ljd *r, frame *f, const cs_dicom_info *info, int m, size_t at)
{
    if (m != 0xC3)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: SOF%d at byte %zu (%s) is not supported, only SOF3",
                            m - 0xC0, at,
                            m == 0xC7   ? "differential lossless"
                            : m >= 0xC8 ? "arithmetic coding"
                                        : "not lossless");
    if (f->w)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: a second SOF at byte %zu", at);
    int len = get_u16(r), p = get_u8(r), y = get_u16(r), x = get_u16(r), nf = get_u8(r);
    if (len < 0 || p < 0 || y < 0 || x < 0 || nf < 0)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: SOF3 at byte %zu is truncated", at);
    if (p < 2 || p > 16)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: precision %d (SOF3 at byte %zu)", p, at);
    if (nf < 1 || nf > 4 || len != 8 + 3 * nf)
        return cs_error_set(
            CS_EFORMAT, "JPEG lossless: %d components, length %d (SOF3 at byte %zu)", nf, len, at);
    if (y == 0)
        return cs_error_set(
            CS_EFORMAT, "JPEG lossless: height 0 (DNL) is not supported (SOF3 at byte %zu)", at);
    if (x != info->cols || y != info->rows)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: frame is %dx%d, the dataset says %dx%d (SOF3 at "
                            "byte %zu)",
                            x, y, info->cols, info->rows, at);
    if (nf != info->samples)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: %d components, the dataset %d samples (SOF3 at byte "
                            "%zu)",
                            nf, info->samples, at);
    if (p > 8 && cs_dicom_out_bytes(info) == 1)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: precision %d exceeds Bits Allocated %d (SOF3 at byte "
                            "%zu)",
                            p, info->bits_allocated, at);
    for (int i = 0; i < nf; i++) {
        int id = get_u8(r), hv = get_u8(r), tq = get_u8(r);
        if (id < 0 || hv < 0 || tq < 0)
            return cs_error_set(CS_EFORMAT, "JPEG lossless: SOF3 at byte %zu is truncated", at);
        for (int j = 0; j < i; j++)
            if (f->id[j] == id)
                return cs_error_set(
                    CS_EFORMAT, "JPEG lossless: component id %d twice (SOF3 at byte %zu)", id, at);
        f->id[i] = id;
        f->hs[i] = hv >> 4;
        f->vs[i] = hv & 15;
        if (f->hs[i] != 1 || f->vs[i] != 1) {
            if (nf > 1)
                return cs_error_set(CS_EFORMAT,
                                    "JPEG lossless: sampling factors %dx%d of component %d are "
                                    "not supported (SOF3 at byte %zu)",
                                    f->hs[i], f->vs[i], id, at);
        }
    }
    f->prec = p;
    f->w = x;
    f->h = y;
    f->nf = nf;
    return 0;
}

static int read_sos(ljd *r, frame *f, scan *s, size_t at)
{
    int len = get_u16(r), ns = get_u8(r);
    if (len < 0 || ns < 0)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: SOS at byte %zu is truncated", at);
    if (!f->w)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: SOS at byte %zu before any SOF", at);
    if (ns < 1 || ns > f->nf || len != 6 + 2 * ns)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: %d components, length %d (SOS at byte %zu)",
                            ns, len, at);
    s->ns = ns;
    s->at = at;
    for (int i = 0; i < ns; i++) {
        int id = get_u8(r), t = get_u8(r), ci = -1;
        if (id < 0 || t < 0)
            return cs_error_set(CS_EFORMAT, "JPEG lossless: SOS at byte %zu is truncated", at);
        for (int j = 0; j < f->nf; j++)
            if (f->id[j] == id)
                ci = j;
        if (ci < 0)
            return cs_error_set(CS_EFORMAT,
                                "JPEG lossless: SOS at byte %zu names component %d, not in the "
                                "SOF",
                                at, id);
        for (int j = 0; j < i; j++)
            if (s->ci[j] == ci)
                return cs_error_set(
                    CS_EFORMAT, "JPEG lossless: SOS at byte %zu names component %d twice", at, id);
        if (f->done[ci])
            return cs_error_set(CS_EFORMAT,
                                "JPEG lossless: component %d has a second scan (SOS at byte %zu)",
                                id, at);
        int td = t >> 4;
        if (td > 3 || !f->tab[td] || !f->tab[td]->defined)
            return cs_error_set(
                CS_EFORMAT, "JPEG lossless: Huffman table %d is missing (SOS at byte %zu)", td, at);
        s->ci[i] = ci;
        s->off[i] = ci;
        s->h[i] = f->tab[td];
    }
    int ss = get_u8(r), se = get_u8(r), a = get_u8(r);
    if (ss < 0 || se < 0 || a < 0)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: SOS at byte %zu is truncated", at);
    if (ss < 1 || ss > 7)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: predictor %d (SOS at byte %zu)", ss, at);
    s->pred = ss;
    s->pt = a & 15;
    if (s->pt >= f->prec)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: point transform %d for precision %d (SOS at byte %zu)",
                            s->pt, f->prec, at);
    if (f->ri && f->ri % f->w)
        return cs_error_set(CS_EFORMAT,
                            "JPEG lossless: restart interval %d is not a multiple of the width "
                            "%d (SOS at byte %zu)",
                            f->ri, f->w, at);
    if (ns > 1)
        for (int i = 0; i < ns; i++)
            if (f->hs[s->ci[i]] != 1 || f->vs[s->ci[i]] != 1)
                return cs_error_set(
                    CS_EFORMAT, "JPEG lossless: subsampled interleaved scan (SOS at byte %zu)", at);
    return 0;
}

int cs_dicom_ljpeg_decode(const cs_dicom_info *info, const cs_dicom_span *parts, size_t nparts,
                          void *dst, size_t cap)
{
    ljd r;
    frame f;
    memset(&r, 0, sizeof r);
    memset(&f, 0, sizeof f);
    r.parts = parts;
    r.nparts = nparts;
    if (nparts) {
        r.p = parts[0].p;
        r.end = r.p ? r.p + parts[0].n : r.p;
    }
    int ob = cs_dicom_out_bytes(info);
    uint16_t *ring = NULL;
    int rc = 0, ndone = 0;
    if (get_u8(&r) != 0xFF || get_u8(&r) != 0xD8)
        return cs_error_set(CS_EFORMAT, "JPEG lossless: no SOI marker at the frame start");
    int pending = 0; /* a marker seek_marker() already read */
    for (;;) {
        size_t at = offset_of(&r);
        int m;
        if (pending) {
            m = pending;
            pending = 0;
            at = at >= 2 ? at - 2 : 0;
        } else {
            m = get_u8(&r);
            if (m != 0xFF) {
                rc = cs_error_set(CS_EFORMAT,
                                  m < 0 ? "JPEG lossless: the codestream ends at byte %zu before %s"
                                        : "JPEG lossless: no marker at byte %zu (%s)",
                                  at, f.w ? "all components are decoded" : "the frame header");
                break;
            }
            do {
                m = get_u8(&r);
            } while (m == 0xFF);
            if (m < 0) {
                rc = cs_error_set(CS_EFORMAT, "JPEG lossless: the codestream ends at byte %zu", at);
                break;
            }
        }
        if (m == 0xD9) { /* EOI */
            if (!f.w)
                rc = cs_error_set(CS_EFORMAT, "JPEG lossless: EOI at byte %zu before any SOF", at);
            else if (ndone < f.nf)
                rc = cs_error_set(CS_EFORMAT,
                                  "JPEG lossless: EOI at byte %zu, %d of %d components have no "
                                  "scan",
                                  at, f.nf - ndone, f.nf);
            break;
        }
        if (m == 0xC4) {
            rc = read_dht(&r, &f, at);
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC8 && m != 0xCC) {
            rc = read_sof(&r, &f, info, m, at);
            if (!rc) {
                size_t need = (size_t)f.w * f.h * f.nf * (size_t)ob;
                if (cap < need)
                    rc = cs_error_set(CS_ERANGE, "JPEG lossless: frame buffer too small");
            }
        } else if (m == 0xDD) {
            int len = get_u16(&r), ri = get_u16(&r);
            if (len != 4 || ri < 0)
                rc = cs_error_set(CS_EFORMAT, "JPEG lossless: bad DRI at byte %zu", at);
            f.ri = ri;
        } else if (m == 0xDA) {
            scan s;
            memset(&s, 0, sizeof s);
            rc = read_sos(&r, &f, &s, at);
            if (!rc && !ring && !(ob == 2 && f.prec > 8 && s.pt == 0)) {
                ring = malloc((size_t)f.w * f.nf * 2 * sizeof *ring);
                if (!ring)
                    rc = cs_error_set(CS_ENOMEM, "JPEG lossless: no memory");
            }
            if (!rc)
                rc = decode_scan(&r, &f, &s, dst, ob, ring);
            if (!rc) {
                for (int i = 0; i < s.ns; i++)
                    f.done[s.ci[i]] = 1;
                ndone += s.ns;
                /* back to the marker after the entropy data */
                int nm = seek_marker(&r);
                if (nm < 0) {
                    if (ndone < f.nf)
                        rc = cs_error_set(CS_EFORMAT,
                                          "JPEG lossless: the codestream ends after the scan at "
                                          "byte %zu, %d of %d components have no scan",
                                          s.at, f.nf - ndone, f.nf);
                    break; /* all decoded; a missing EOI is tolerated */
                }
                pending = nm;
            }
        } else if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
            rc = cs_error_set(CS_EFORMAT, "JPEG lossless: unexpected marker 0x%02X at byte %zu", m,
                              at);
        } else if (m == 0xC8 || m == 0xCC || m == 0xDC || m == 0xDE || m == 0xDF) {
            rc = cs_error_set(CS_EFORMAT,
                              "JPEG lossless: marker 0x%02X at byte %zu (arithmetic coding, DNL "
                              "or hierarchical) is not supported",
                              m, at);
        } else {
            int len = get_u16(&r); /* APPn, COM, DQT, ...: skipped */
            if (len < 2 || skip_bytes(&r, (size_t)len - 2))
                rc = cs_error_set(CS_EFORMAT,
                                  "JPEG lossless: marker segment 0x%02X at byte %zu is truncated",
                                  m, at);
        }
        if (rc)
            break;
    }
    free(ring);
    for (int i = 0; i < 4; i++)
        free(f.tab[i]);
    return rc;
}
