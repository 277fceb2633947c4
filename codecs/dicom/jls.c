/* JPEG-LS (ITU-T T.87, ISO/IEC 14495-1) decoder for DICOM
 * 1.2.840.10008.1.2.4.80 and .81, bit-exact with CharLS 2.4 (which stays our
 * encoder and the fallback for what this file does not decode). Output is
 * what cs_dicom_jls_decode() gave with CharLS: samples interleaved per pixel
 * (a scan per component is written straight to its place), 1 byte when Bits
 * Allocated is 8, else uint16 (an 8-bit codestream in a 16-bit dataset too).
 *
 * Decoded: SOF55 with 2..16 bits, 1..4 components; SOS with NEAR 0..255 and
 * ILV 0 (a scan per component), 1 (line) or 2 (sample, 3 or 4 components);
 * LSE type 1 (T1..T3, RESET <= 255; MAXVAL only as 2^P-1); DRI and RSTm;
 * APPn and COM skipped. Returns 1 (the caller falls back to CharLS) for
 * what CharLS handles differently or alone: an HP colour transform (APP8
 * "mrfx"), mapping tables (LSE 2/3, Tm), LSE type 4, a MAXVAL below 2^P-1
 * (CharLS clamps to it but keeps RANGE from P), RESET > 255 (CharLS keeps it
 * in 8 bits for run mode), a point transform, two components interleaved,
 * height 0. Default thresholds are T.87 C.2.4.1.1.1 (CharLS
 * compute_default), run interruption in sample-interleaved scans uses the
 * type-0 context and predicts from Rb for every component, as CharLS does.
 * One deliberate difference: CharLS 2.4 (and DCMTK's fork) decode a
 * sample-interleaved scan whose LSE sets RESET != 64 as if it had one
 * component (their codec factory falls back to single-sample traits);
 * this file decodes it as T.87 says.
 *
 * Speed: the entropy bits come from a 64-bit MSB-first buffer refilled 7-8
 * bytes at a time while no 0xFF is within 8 bytes (the position of the next
 * 0xFF is kept), unconditionally per sample (a test of the fill level is a
 * branch that mispredicts); after an 0xFF the next byte carries 7 bits,
 * handled on a byte-by-byte slow path. The unary prefix is one
 * count-leading-zeros. A context carries its Golomb k, computed when the
 * context is updated, so the path from one sample to the next is Ra ->
 * quantised gradient (one table lookup) -> context -> k -> value -> Rx. The
 * median predictor uses conditional moves (its three cases are equally
 * common on noisy data: as branches they cost ~18 % of the time). Row loops
 * are specialised for NEAR 0 (reconstruction is a mask) and for 1 component
 * per line or 3 / 4 interleaved. What is left (perf, RG2_JLSL): ~85 % in
 * the row loop, ~40 cycles per regular-mode sample against a dependency
 * chain of ~26; the bias-update branches (14 % of samples take one) are
 * part of the rest, the VM exposes no counters to say more (a branchless
 * bias update, a shorter chain through three sign-specific gradient tables,
 * BMI2/LZCNT and k computed at use were all measured slower).
 *
 * Invariants: the SOF is checked against the dataset before a sample is
 * written; every sample is in 0..MAXVAL, so gradient lookups stay in the
 * table; a run never passes the line end (its fill may write up to 3
 * samples past the run, into the line buffer's slack, before they are
 * decoded); a read past the scan's data yields zero bits that are counted
 * (pad), and a row that consumed any of them fails as truncated. Every
 * error is CS_EFORMAT with the byte offset in the codestream (CS_ERANGE for
 * a short buffer, CS_ENOMEM). */
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#include "dicom_internal.h"

#if defined(__GNUC__)
#define JL_INLINE      static inline __attribute__((always_inline))
#define JL_NOINLINE    static __attribute__((noinline))
#define JL_LIKELY(x)   __builtin_expect(!!(x), 1)
#define JL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define JL_INLINE      static inline
#define JL_NOINLINE    static
#define JL_LIKELY(x)   (x)
#define JL_UNLIKELY(x) (x)
#endif

#define FALLBACK 1 /* "use CharLS" */

/* Run lengths coded by one bit (T.87 A.2.1, J[RUNindex]). */
static const uint8_t J[32] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,  2,  3,  3,  3,  3,
                              4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* A regular-mode context (T.87 A.2) with its Golomb k (A.10) for the current
 * A and N: computing it at the update takes it off the next use's path. */
typedef struct jctx {
    int32_t a, b;
    int16_t c, n;
    int32_t k;
} jctx;

/* A run-interruption context (A.7.2): type 0 (Rb predicts) or 1 (Ra). */
typedef struct rctx {
    int32_t a, n, nn;
} rctx;

/* The bit reader of one entropy-coded segment [p .. end). */
typedef struct bitr {
    uint64_t acc;       /* next bits, MSB first; past cnt: look-ahead or 0 */
    int cnt;            /* valid bits in acc (including pad) */
    int pad;            /* zero bits appended after end */
    int ff;             /* the last byte read was 0xFF: the next has 7 bits */
    const uint8_t *p;   /* next byte to read */
    const uint8_t *pff; /* next 0xFF at or after p (or end); p when ff */
    const uint8_t *end; /* the marker that ends the segment */
} bitr;

/* Per-scan constants, copied into the row loops' registers. */
typedef struct sp {
    int maxval, near, qmul, rngq; /* qmul = 2 NEAR + 1, rngq = RANGE * qmul */
    int reset, esc, qbpp, limit;  /* esc: LIMIT - qbpp - 1 zeros mean escape */
    int a0;                       /* initial A (A.2.1) */
} sp;

enum { BAD_NONE, BAD_K, BAD_LIMIT, BAD_VALUE, BAD_STATS, BAD_RUN };

typedef struct jls {
    const uint8_t *src;
    size_t n;
    bitr br;
    sp s;
    int8_t *qt; /* gradient quantisation, indexed -maxval..maxval */
    jctx ctx[365];
    rctx rc[2];
    int bad;       /* BAD_* met in the current row */
    size_t bad_at; /* its offset */
} jls;

typedef struct frame {
    int p, w, h, nf, id[4], done[4];
    uint32_t ri;                        /* restart interval in lines, 0 none */
    int lse, maxval, t1, t2, t3, reset; /* LSE type 1 as read (0 = default) */
} frame;

typedef struct scan {
    int ns, ci[4], near, ilv;
    size_t at;
} scan;

/* ---- bits ---- */

static size_t bit_offset(const jls *d, const bitr *b)
{
    size_t o = (size_t)(b->p - d->src);
    size_t back = b->cnt > b->pad ? (size_t)(b->cnt - b->pad) / 8 : 0;
    return o > back ? o - back : 0;
}

/* The next marker (0xFF followed by a byte with its MSB set, or 0xFF as the
 * last byte) at or after q, or the end of the codestream. */
static const uint8_t *find_marker(const jls *d, const uint8_t *q)
{
    const uint8_t *lim = d->src + d->n;
    while (q < lim) {
        const uint8_t *f = memchr(q, 0xFF, (size_t)(lim - q));
        if (!f)
            return lim;
        if (f + 1 == lim || f[1] >= 0x80)
            return f;
        q = f + 1;
    }
    return lim;
}

static void br_start(jls *d, const uint8_t *q)
{
    bitr *b = &d->br;
    b->acc = 0;
    b->cnt = b->pad = b->ff = 0;
    b->p = q;
    b->end = find_marker(d, q);
    const uint8_t *f = memchr(q, 0xFF, (size_t)(b->end - q));
    b->pff = f ? f : b->end;
}

JL_NOINLINE void refill_slow(bitr *b)
{
    b->acc &= b->cnt ? ~(~(uint64_t)0 >> b->cnt) : 0;
    while (b->cnt <= 55) {
        if (b->p >= b->end) {
            b->cnt += 8;
            b->pad += 8;
            continue;
        }
        unsigned c = *b->p++;
        if (b->ff) { /* a stuffed 0 bit, then 7 bits (T.87 A.1) */
            b->acc |= (uint64_t)c << (57 - b->cnt);
            b->cnt += 7;
        } else {
            b->acc |= (uint64_t)c << (56 - b->cnt);
            b->cnt += 8;
        }
        b->ff = c == 0xFF;
    }
    if (b->ff) {
        b->pff = b->p;
    } else {
        const uint8_t *f = b->p < b->end ? memchr(b->p, 0xFF, (size_t)(b->end - b->p)) : NULL;
        b->pff = f ? f : b->end;
    }
}

/* To >= 56 valid bits (at most 63). */
JL_INLINE void refill(bitr *b)
{
    if (JL_LIKELY(b->pff - b->p >= 8)) {
        const uint8_t *q = b->p;
        uint64_t x = (uint64_t)q[0] << 56 | (uint64_t)q[1] << 48 | (uint64_t)q[2] << 40 |
                     (uint64_t)q[3] << 32 | (uint64_t)q[4] << 24 | (uint64_t)q[5] << 16 |
                     (uint64_t)q[6] << 8 | (uint64_t)q[7];
        /* Bits past cnt are the next bytes' own bits (no 0xFF among them):
         * a later refill ORs the same values there. */
        b->acc |= x >> b->cnt;
        b->p += (63 - b->cnt) >> 3;
        b->cnt |= 56;
        return;
    }
    refill_slow(b);
}

static uint32_t get_bits(bitr *b, int n)
{
    if (n == 0)
        return 0;
    if (b->cnt < n)
        refill(b);
    uint32_t v = (uint32_t)(b->acc >> (64 - n));
    b->acc <<= n;
    b->cnt -= n;
    return v;
}

JL_INLINE int get_bit(bitr *b)
{
    if (b->cnt < 1)
        refill(b);
    int v = (int)(b->acc >> 63);
    b->acc <<= 1;
    b->cnt--;
    return v;
}

static void set_bad(jls *d, const bitr *b, int what)
{
    if (!d->bad) {
        d->bad = what;
        d->bad_at = bit_offset(d, b);
    }
}

/* A mapped value (T.87 A.5.3) with Golomb parameter k whose unary part is
 * longer than the buffer holds, or an escape (esc zeros: qbpp bits + 1). */
JL_NOINLINE uint32_t value_slow(jls *d, bitr *b, int k, int esc)
{
    if (k >= 16 + (esc < d->s.esc ? 9 : 0)) { /* CharLS stops at 16 (regular mode) */
        set_bad(d, b, BAD_K);
        return 0;
    }
    int z = 0;
    for (;;) {
        if (b->cnt < 56)
            refill(b);
        int avail = b->cnt - b->pad;
        if (avail <= 0) { /* past the data: the row check reports it */
            b->acc <<= 1;
            b->cnt -= 1;
            return 0;
        }
        int lz = b->acc ? __builtin_clzll(b->acc) : 64;
        if (lz < avail) {
            z += lz;
            b->acc <<= lz;
            b->acc <<= 1;
            b->cnt -= lz + 1;
            break;
        }
        z += avail;
        b->acc = avail < 64 ? b->acc << avail : 0;
        b->cnt -= avail;
        if (z > esc)
            break;
    }
    if (z > esc) {
        set_bad(d, b, BAD_LIMIT);
        return 0;
    }
    if (z == esc)
        return get_bits(b, d->s.qbpp) + 1;
    return ((uint32_t)z << k) + get_bits(b, k);
}

/* The common case inline: unary prefix and k bits within the buffer. The
 * refill is unconditional: cheap when the buffer is full, where a test of
 * cnt would be a branch that mispredicts every few samples. */
JL_INLINE uint32_t get_value(jls *d, bitr *b, int k, int esc)
{
    refill(b);
    uint64_t acc = b->acc;
    int z = __builtin_clzll(acc | 1), l = z + 1 + k;
    if (JL_LIKELY(l <= b->cnt && z < esc && k < 16)) {
        uint64_t t = acc << z; /* the 1 that ends the prefix on top */
        b->acc = acc << l;
        b->cnt -= l;
        return ((uint32_t)(z - 1) << k) + (uint32_t)(t >> (63 - k));
    }
    return value_slow(d, b, k, esc);
}

/* ---- modelling ---- */

JL_INLINE int kcalc(int a, int n)
{
    int k = __builtin_clz((unsigned)n) - __builtin_clz((unsigned)a | 1);
    k = k < 0 ? 0 : k;
    return k + (((unsigned)n << k) < (unsigned)a);
}

/* The median edge detector (A.4.1) with conditional moves: on noisy data
 * each of its three cases is common and a branch mispredicts (this alone
 * was ~18 % of the decode time). */
JL_INLINE int med(int a, int b, int c)
{
    int mx = a > b ? a : b, mn = a > b ? b : a, p = a + b - c;
    p = c <= mn ? mx : p;
    return c >= mx ? mn : p;
}

/* Rx from a prediction and a signed error (T.87 A.8: modulo reduction and
 * clamping; NEAR 0 and MAXVAL 2^P-1: a mask). */
JL_INLINE int recon(const sp *s, int px, int e, const int ll)
{
    if (ll)
        return (px + e) & s->maxval;
    int rx = px + e * s->qmul;
    if (rx < -s->near)
        rx += s->rngq;
    else if (rx > s->maxval + s->near)
        rx -= s->rngq;
    return rx < 0 ? 0 : rx > s->maxval ? s->maxval : rx;
}

/* One regular-mode sample (T.87 A.4-A.6) of context q (signed). */
JL_INLINE int regular(jls *d, bitr *b, jctx *ctx, const sp *s, int q, int pred, const int ll)
{
    int sg = q >> 31;
    jctx *cx = &ctx[(q ^ sg) - sg];
    int k = cx->k;
    int px = pred + ((cx->c ^ sg) - sg);
    px = px < 0 ? 0 : px > s->maxval ? s->maxval : px;
    uint32_t m = get_value(d, b, k, s->esc);
    if (JL_UNLIKELY(m >= 131071)) { /* |Errval| > 65535: CharLS's limit */
        set_bad(d, b, BAD_VALUE);
        return px;
    }
    int e = (int)(m >> 1) ^ -(int)(m & 1);
    int a = cx->a, bb = cx->b, n = cx->n, c = cx->c;
    if (ll && k == 0)
        e ^= (2 * bb + n - 1) >> 31; /* A.5.2: the mapping flips when B <= -N/2 */
    a += e < 0 ? -e : e;
    bb += ll ? e : e * s->qmul;
    if (JL_UNLIKELY(a >= (1 << 24) || bb >= (1 << 24) || bb <= -(1 << 24))) {
        set_bad(d, b, BAD_STATS);
        return px;
    }
    if (JL_UNLIKELY(n == s->reset)) {
        a >>= 1;
        bb >>= 1;
        n >>= 1;
    }
    n++;
    if (bb + n <= 0) { /* A.13 */
        bb += n;
        bb = bb <= -n ? -n + 1 : bb;
        c -= c > -128;
    } else if (bb > 0) {
        bb -= n;
        bb = bb > 0 ? 0 : bb;
        c += c < 127;
    }
    cx->a = a;
    cx->b = bb;
    cx->c = (int16_t)c;
    cx->n = (int16_t)n;
    cx->k = kcalc(a, n);
    return recon(s, px, (e ^ sg) - sg, ll);
}

/* The error of one run-interruption sample (T.87 A.7.2) of context type t. */
static int ri_error(jls *d, bitr *b, int t, int r)
{
    rctx *rc = &d->rc[t];
    int k = kcalc(rc->a + (rc->n >> 1) * t, rc->n); /* < 2^26: no overflow */
    uint32_t m = get_value(d, b, k, d->s.limit - J[r] - 1 - d->s.qbpp - 1);
    if (JL_UNLIKELY(m >= 131071)) {
        set_bad(d, b, BAD_VALUE);
        return 0;
    }
    int tm = (int)m + t, map = tm & 1, ea = (tm + map) >> 1;
    int e = ((k != 0 || 2 * rc->nn >= rc->n) == map) ? -ea : ea;
    if (e < 0)
        rc->nn++;
    rc->a += ((int)m + 1 - t) >> 1;
    if (rc->n == d->s.reset) {
        rc->a >>= 1;
        rc->n >>= 1;
        rc->nn >>= 1;
    }
    rc->n++;
    return e;
}

/* The run bits (A.7.1): how many of the n samples from here repeat Ra
 * (== n: up to the line end, no interruption sample follows). */
static int run_length(jls *d, bitr *b, int n, int *ri)
{
    int i = 0, r = *ri;
    for (;;) {
        if (!get_bit(b))
            break;
        int len = 1 << J[r], c = len < n - i ? len : n - i;
        i += c;
        if (c == len)
            r += r < 31;
        if (i == n)
            break;
    }
    if (i != n) {
        i += (int)get_bits(b, J[r]);
        if (i > n) {
            set_bad(d, b, BAD_RUN);
            i = n;
        }
    }
    *ri = r;
    return i;
}

/* Run mode from sample x of a one-component line; samples handled. */
JL_NOINLINE int run_one(jls *d, uint16_t *cur, const uint16_t *prev, int x, int w, int *ri,
                        const int ll)
{
    bitr *b = &d->br;
    int ra = cur[x - 1];
    int i = run_length(d, b, w - x, ri);
    /* 4 samples per store: the line buffers have slack past the border */
    uint64_t v4 = (uint64_t)(uint16_t)ra * 0x0001000100010001ull;
    for (int j = 0; j < i; j += 4)
        memcpy(cur + x + j, &v4, 8);
    x += i;
    if (x == w)
        return i;
    int rb = prev[x], rx, diff = ra - rb;
    if ((diff < 0 ? -diff : diff) <= d->s.near)
        rx = recon(&d->s, ra, ri_error(d, b, 1, *ri), ll);
    else
        rx = recon(&d->s, rb, rb >= ra ? ri_error(d, b, 0, *ri) : -ri_error(d, b, 0, *ri), ll);
    cur[x] = (uint16_t)rx;
    *ri -= *ri > 0;
    return i + 1;
}

/* Run mode of a sample-interleaved line (nc samples per pixel). */
JL_NOINLINE int run_px(jls *d, uint16_t *cur, const uint16_t *prev, int x, int w, int *ri, int nc,
                       const int ll)
{
    bitr *b = &d->br;
    const uint16_t *ra = cur + (ptrdiff_t)(x - 1) * nc;
    int i = run_length(d, b, w - x, ri);
    for (int j = 0; j < i; j++)
        for (int c = 0; c < nc; c++)
            cur[(size_t)(x + j) * nc + c] = ra[c];
    x += i;
    if (x == w)
        return i;
    for (int c = 0; c < nc; c++) {
        int rb = prev[(size_t)x * nc + c], e = ri_error(d, b, 0, *ri);
        cur[(size_t)x * nc + c] = (uint16_t)recon(&d->s, rb, rb >= ra[c] ? e : -e, ll);
    }
    *ri -= *ri > 0;
    return i + 1;
}

/* ---- lines ---- */

/* One line of one component; cur[-1] and prev[-1..w] are set. */
JL_INLINE void line_one(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri, const int ll)
{
    const int8_t *qt = d->qt;
    jctx *ctx = d->ctx;
    const sp s = d->s;
    bitr b = d->br;
    int ra = cur[-1], rb = prev[-1], rd = prev[0];
    for (int x = 0; x < w;) {
        int rc = rb;
        rb = rd;
        rd = prev[x + 1];
        int q = qt[rd - rb] * 81 + qt[rb - rc] * 9 + qt[rc - ra];
        if (JL_LIKELY(q != 0)) {
            ra = regular(d, &b, ctx, &s, q, med(ra, rb, rc), ll);
            cur[x++] = (uint16_t)ra;
        } else {
            d->br = b;
            x += run_one(d, cur, prev, x, w, ri, ll);
            b = d->br;
            ra = cur[x - 1];
            rb = prev[x - 1];
            rd = prev[x];
        }
    }
    d->br = b;
}

/* One line of nc samples per pixel (ILV 2); cur[-nc..-1] and prev[-nc..w*nc+nc-1]. */
JL_INLINE void line_px(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri, const int nc,
                       const int ll)
{
    const int8_t *qt = d->qt;
    jctx *ctx = d->ctx;
    const sp s = d->s;
    bitr b = d->br;
    for (int x = 0; x < w;) {
        int q[4], ra[4], rb[4], rc[4], any = 0;
        for (int c = 0; c < nc; c++) {
            ra[c] = cur[(x - 1) * nc + c];
            rc[c] = prev[(x - 1) * nc + c];
            rb[c] = prev[x * nc + c];
            int rd = prev[(x + 1) * nc + c];
            q[c] = qt[rd - rb[c]] * 81 + qt[rb[c] - rc[c]] * 9 + qt[rc[c] - ra[c]];
            any |= q[c];
        }
        if (any) {
            for (int c = 0; c < nc; c++)
                cur[x * nc + c] =
                    (uint16_t)regular(d, &b, ctx, &s, q[c], med(ra[c], rb[c], rc[c]), ll);
            x++;
        } else {
            d->br = b;
            x += run_px(d, cur, prev, x, w, ri, nc, ll);
            b = d->br;
        }
    }
    d->br = b;
}

typedef void (*line_fn)(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri);

static void line1_ll(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_one(d, cur, prev, w, ri, 1);
}

static void line1_nl(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_one(d, cur, prev, w, ri, 0);
}

static void line3_ll(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_px(d, cur, prev, w, ri, 3, 1);
}

static void line3_nl(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_px(d, cur, prev, w, ri, 3, 0);
}

static void line4_ll(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_px(d, cur, prev, w, ri, 4, 1);
}

static void line4_nl(jls *d, uint16_t *cur, const uint16_t *prev, int w, int *ri)
{
    line_px(d, cur, prev, w, ri, 4, 0);
}

/* ---- scans ---- */

static void put_line(uint8_t *dst, int ob, size_t y, int w, int nf, int ci, const uint16_t *v,
                     int step)
{
    size_t o = y * (size_t)w * nf + ci;
    if (ob == 1) {
        uint8_t *d8 = dst + o;
        for (int x = 0; x < w; x++)
            d8[(size_t)x * nf] = (uint8_t)v[(size_t)x * step];
    } else if (nf == 1 && step == 1) {
        memcpy((uint16_t *)(void *)dst + o, v, (size_t)w * 2);
    } else {
        uint16_t *d16 = (uint16_t *)(void *)dst + o;
        for (int x = 0; x < w; x++)
            d16[(size_t)x * nf] = v[(size_t)x * step];
    }
}

static int log2ceil(int v)
{
    int x = 0;
    while (v > (1 << x))
        x++;
    return x;
}

/* Contexts to their initial values (T.87 A.2.1): at a scan's start and at
 * each restart marker. */
static void init_contexts(jls *d)
{
    int a0 = d->s.a0;
    jctx c0 = {a0, 0, 0, 1, kcalc(a0, 1)};
    for (int i = 0; i < 365; i++)
        d->ctx[i] = c0;
    d->rc[0] = (rctx){a0, 1, 0};
    d->rc[1] = (rctx){a0, 1, 0};
}

static int clampt(int i, int j, int maxval)
{
    return i > maxval || i < j ? j : i;
}

/* Coding parameters of a scan: T.87 C.2.4.1.1 (CharLS is_valid and
 * compute_default). Returns FALLBACK for a MAXVAL or RESET CharLS treats
 * differently from T.87. */
static int scan_params(jls *d, const frame *f, const scan *sc)
{
    int full = (1 << f->p) - 1, near = sc->near;
    if (f->maxval && f->maxval > full)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: LSE MAXVAL %d exceeds %d bits (SOS at byte %zu)",
                            f->maxval, f->p, sc->at);
    int maxval = f->maxval ? f->maxval : full;
    if (maxval != full)
        return FALLBACK;
    int lim = maxval / 2 < 255 ? maxval / 2 : 255;
    if (near > lim)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: NEAR %d exceeds %d (SOS at byte %zu)", near, lim,
                            sc->at);
    int t1, t2, t3;
    if (maxval >= 128) {
        int fac = ((maxval < 4095 ? maxval : 4095) + 128) / 256;
        t1 = clampt(fac * (3 - 2) + 2 + 3 * near, near + 1, maxval);
        t2 = clampt(fac * (7 - 3) + 3 + 5 * near, t1, maxval);
        t3 = clampt(fac * (21 - 4) + 4 + 7 * near, t2, maxval);
    } else {
        int fac = 256 / (maxval + 1);
        t1 = clampt(3 / fac + 3 * near > 2 ? 3 / fac + 3 * near : 2, near + 1, maxval);
        t2 = clampt(7 / fac + 5 * near > 3 ? 7 / fac + 5 * near : 3, t1, maxval);
        t3 = clampt(21 / fac + 7 * near > 4 ? 21 / fac + 7 * near : 4, t2, maxval);
    }
    if (f->t1) {
        if (f->t1 < near + 1 || f->t1 > maxval)
            goto bad;
        t1 = f->t1;
    }
    if (f->t2) {
        if (f->t2 < t1 || f->t2 > maxval)
            goto bad;
        t2 = f->t2;
    }
    if (f->t3) {
        if (f->t3 < t2 || f->t3 > maxval)
            goto bad;
        t3 = f->t3;
    }
    int reset = 64;
    if (f->reset) {
        if (f->reset < 3 || f->reset > (maxval > 255 ? maxval : 255))
            goto bad;
        if (f->reset > 255)
            return FALLBACK;
        reset = f->reset;
    }
    sp *s = &d->s;
    s->maxval = maxval;
    s->near = near;
    s->qmul = 2 * near + 1;
    int range = (maxval + 2 * near) / (2 * near + 1) + 1;
    s->rngq = range * s->qmul;
    s->qbpp = log2ceil(range);
    int bpp = log2ceil(maxval);
    s->limit = 2 * (bpp + (bpp > 8 ? bpp : 8));
    s->esc = s->limit - s->qbpp - 1;
    s->reset = reset;
    /* gradient quantisation (A.3.3), piecewise constant: 9 ranges */
    int8_t *qt = d->qt;
    static const int8_t qv[9] = {-4, -3, -2, -1, 0, 1, 2, 3, 4};
    int lo[10] = {-maxval, -t3 + 1, -t2 + 1, -t1 + 1, -near, near + 1, t1, t2, t3, maxval + 1};
    for (int i = 0; i < 9; i++) {
        int a = lo[i] < -maxval ? -maxval : lo[i],
            e = lo[i + 1] > maxval + 1 ? maxval + 1 : lo[i + 1];
        if (e > a)
            memset(qt + a, qv[i], (size_t)(e - a));
    }
    s->a0 = (range + 32) / 64 < 2 ? 2 : (range + 32) / 64;
    init_contexts(d);
    return 0;
bad:
    return cs_error_set(CS_EFORMAT,
                        "JPEG-LS: LSE thresholds T1 %d, T2 %d, T3 %d, RESET %d are out of range "
                        "for MAXVAL %d, NEAR %d (SOS at byte %zu)",
                        f->t1, f->t2, f->t3, f->reset, maxval, near, sc->at);
}

static const char *bad_text(int bad)
{
    switch (bad) {
    case BAD_K:
        return "Golomb parameter k reached 16";
    case BAD_LIMIT:
        return "a Golomb code longer than LIMIT";
    case BAD_VALUE:
        return "an error value beyond 65535";
    case BAD_STATS:
        return "context statistics overflow";
    default:
        return "a run past the end of the line";
    }
}

/* Unread bits of the segment after its last sample: a partial byte, and
 * the byte a final 0xFF needs after it. */
static int leftover_ok(const jls *d, const uint8_t *seg)
{
    const bitr *b = &d->br;
    long rem = b->cnt - b->pad;
    int ff = b->ff;
    for (const uint8_t *q = b->p; q < b->end && rem < 16; q++) {
        rem += ff ? 7 : 8;
        ff = *q == 0xFF;
    }
    if (rem < 8)
        return 1;
    return rem < 15 && b->end - 2 >= seg && b->end[-2] == 0xFF;
}

static int decode_scan(jls *d, frame *f, const scan *sc, uint8_t *dst, int ob, uint16_t *lines,
                       size_t pos, size_t *next)
{
    int w = f->w, nf = f->nf, ll = sc->near == 0;
    int nc = sc->ilv == 2 ? sc->ns : 1;       /* samples per buffer pixel */
    int nl = sc->ilv == 1 ? sc->ns : 1;       /* buffer lines per image line */
    size_t stride = (size_t)(w + 2) * nc + 4; /* one buffer line, 4 slack (run_one) */
    line_fn fn = nc == 1   ? (ll ? line1_ll : line1_nl)
                 : nc == 3 ? (ll ? line3_ll : line3_nl)
                           : (ll ? line4_ll : line4_nl);
    int ri[4] = {0, 0, 0, 0}, rst = 0;
    const uint8_t *seg = d->src + pos;
    memset(lines, 0, 2 * nl * stride * sizeof *lines);
    br_start(d, seg);
    d->bad = 0;
    for (int y = 0; y < f->h; y++) {
        if (f->ri && y > 0 && (uint32_t)y % f->ri == 0) {
            const uint8_t *m = d->br.end, *lim = d->src + d->n;
            if (d->br.pad > d->br.cnt || !leftover_ok(d, seg))
                return cs_error_set(CS_EFORMAT, "JPEG-LS: restart interval %d ends at byte %zu, %s",
                                    rst, bit_offset(d, &d->br),
                                    d->br.pad > d->br.cnt ? "past the data"
                                                          : "before the data does (extra data)");
            while (m < lim && *m == 0xFF)
                m++;
            if (m == d->br.end || m >= lim || *m != 0xD0 + (rst & 7))
                return cs_error_set(CS_EFORMAT,
                                    "JPEG-LS: expected restart marker RST%d before line %d at byte "
                                    "%zu, found %s",
                                    rst & 7, y, (size_t)(d->br.end - d->src),
                                    m >= lim ? "the end of the data" : "another marker");
            rst++;
            seg = m + 1;
            br_start(d, seg);
            memset(lines, 0, 2 * nl * stride * sizeof *lines);
            memset(ri, 0, sizeof ri);
            init_contexts(d);
        }
        uint16_t *cur = lines + (size_t)(y & 1) * nl * stride;
        uint16_t *prev = lines + (size_t)((y + 1) & 1) * nl * stride;
        for (int j = 0; j < nl; j++) {
            uint16_t *c = cur + j * stride + nc, *p = prev + j * stride + nc;
            for (int k = 0; k < nc; k++) {
                p[(size_t)w * nc + k] = p[(size_t)(w - 1) * nc + k];
                c[k - nc] = p[k];
            }
            fn(d, c, p, w, &ri[j]);
        }
        if (JL_UNLIKELY(d->bad))
            return cs_error_set(CS_EFORMAT, "JPEG-LS: corrupt data in line %d: %s (byte %zu)", y,
                                bad_text(d->bad), d->bad_at);
        if (JL_UNLIKELY(d->br.pad > d->br.cnt))
            return cs_error_set(CS_EFORMAT,
                                "JPEG-LS: the scan's data ends early, in line %d of %d (%s at "
                                "byte %zu)",
                                y, f->h, d->br.end < d->src + d->n ? "marker" : "end of data",
                                (size_t)(d->br.end - d->src));
        for (int j = 0; j < nl; j++) {
            const uint16_t *c = cur + j * stride + nc;
            if (nc == 1)
                put_line(dst, ob, (size_t)y, w, nf, sc->ci[sc->ilv == 1 ? j : 0], c, 1);
            else
                for (int k = 0; k < nc; k++)
                    put_line(dst, ob, (size_t)y, w, nf, sc->ci[k], c + k, nc);
        }
    }
    if (!leftover_ok(d, seg))
        return cs_error_set(CS_EFORMAT,
                            "JPEG-LS: data after the last line of the scan at byte %zu (the "
                            "next marker is at byte %zu)",
                            bit_offset(d, &d->br), (size_t)(d->br.end - d->src));
    *next = (size_t)(d->br.end - d->src);
    return 0;
}

/* ---- markers ---- */

static unsigned rd16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static int read_sof(frame *f, const cs_dicom_info *info, const uint8_t *s, size_t len, size_t at)
{
    if (f->w)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: a second SOF at byte %zu", at);
    if (len < 6)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: SOF55 at byte %zu is truncated", at);
    int p = s[0], h = (int)rd16(s + 1), w = (int)rd16(s + 3), nf = s[5];
    if (p < 2 || p > 16)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: %d bits per sample (SOF55 at byte %zu)", p, at);
    if (nf < 1 || len != 6 + 3 * (size_t)nf)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: %d components, length %zu (SOF55 at byte %zu)",
                            nf, len + 2, at);
    if (h == 0 || w == 0)
        return FALLBACK; /* DNL or LSE type 4: CharLS decides */
    if (w != info->cols || h != info->rows || nf != info->samples ||
        (p > 8 && cs_dicom_out_bytes(info) == 1))
        return cs_error_set(CS_EFORMAT,
                            "JPEG-LS frame is %dx%d, %d components of %d bits; the dataset says "
                            "%dx%d, %d samples of %d bits (SOF55 at byte %zu)",
                            w, h, nf, p, info->cols, info->rows, info->samples,
                            info->bits_allocated, at);
    for (int i = 0; i < nf; i++) {
        const uint8_t *c = s + 6 + 3 * i;
        for (int j = 0; j < i; j++)
            if (f->id[j] == c[0])
                return cs_error_set(CS_EFORMAT,
                                    "JPEG-LS: component id %d twice (SOF55 at byte %zu)", c[0], at);
        if (c[1] != 0x11)
            return cs_error_set(CS_EFORMAT,
                                "JPEG-LS: sampling factors %dx%d of component %d are not "
                                "supported (SOF55 at byte %zu)",
                                c[1] >> 4, c[1] & 15, c[0], at);
        f->id[i] = c[0];
    }
    f->p = p;
    f->w = w;
    f->h = h;
    f->nf = nf;
    return 0;
}

static int read_lse(frame *f, const uint8_t *s, size_t len, size_t at)
{
    if (len < 1)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: LSE at byte %zu is truncated", at);
    if (s[0] >= 2 && s[0] <= 4)
        return FALLBACK; /* mapping tables, oversize dimensions */
    if (s[0] != 1)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: LSE type %d at byte %zu is not supported", s[0],
                            at);
    if (len != 11)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: LSE type 1 at byte %zu has length %zu", at,
                            len + 2);
    f->lse = 1;
    f->maxval = (int)rd16(s + 1);
    f->t1 = (int)rd16(s + 3);
    f->t2 = (int)rd16(s + 5);
    f->t3 = (int)rd16(s + 7);
    f->reset = (int)rd16(s + 9);
    return 0;
}

static int read_sos(frame *f, scan *sc, const uint8_t *s, size_t len, size_t at)
{
    if (!f->w)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: SOS at byte %zu before the SOF", at);
    int ns = len ? s[0] : 0;
    if (ns < 1 || ns > f->nf || len != 4 + 2 * (size_t)ns)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: %d components, length %zu (SOS at byte %zu)", ns,
                            len + 2, at);
    sc->ns = ns;
    sc->at = at;
    for (int i = 0; i < ns; i++) {
        int id = s[1 + 2 * i], tm = s[2 + 2 * i], ci = -1;
        for (int j = 0; j < f->nf; j++)
            if (f->id[j] == id)
                ci = j;
        if (ci < 0)
            return cs_error_set(
                CS_EFORMAT, "JPEG-LS: SOS at byte %zu names component %d, not in the SOF", at, id);
        for (int j = 0; j < i; j++)
            if (sc->ci[j] == ci)
                return cs_error_set(CS_EFORMAT, "JPEG-LS: SOS at byte %zu names component %d twice",
                                    at, id);
        if (f->done[ci])
            return cs_error_set(
                CS_EFORMAT, "JPEG-LS: component %d has a second scan (SOS at byte %zu)", id, at);
        if (tm)
            return FALLBACK; /* a mapping table */
        sc->ci[i] = ci;
    }
    sc->near = s[1 + 2 * ns];
    sc->ilv = s[2 + 2 * ns];
    if (s[3 + 2 * ns] & 15)
        return FALLBACK; /* a point transform (CharLS: not supported) */
    if (sc->ilv > 2)
        return cs_error_set(CS_EFORMAT, "JPEG-LS: interleave mode %d (SOS at byte %zu)", sc->ilv,
                            at);
    if ((ns == 1) != (sc->ilv == 0))
        return cs_error_set(CS_EFORMAT,
                            "JPEG-LS: %d components in a scan with interleave mode %d (SOS at "
                            "byte %zu)",
                            ns, sc->ilv, at);
    if (ns > 1 && (ns != f->nf || ns == 2))
        return FALLBACK;
    return 0;
}

int cs_dicom_jls_decode_own(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst,
                            size_t cap)
{
    jls *d = malloc(sizeof *d);
    if (!d)
        return cs_error_set(CS_ENOMEM, "JPEG-LS: no memory");
    memset(d, 0, sizeof *d);
    d->src = src;
    d->n = n;
    frame f;
    memset(&f, 0, sizeof f);
    uint16_t *lines = NULL;
    int8_t *qtab = NULL;
    int ob = cs_dicom_out_bytes(info), rc = 0, ndone = 0;
    size_t pos = 2;
    if (n < 2 || src[0] != 0xFF || src[1] != 0xD8) {
        rc = cs_error_set(CS_EFORMAT, "JPEG-LS: no SOI marker at the frame start");
        goto out;
    }
    for (;;) {
        size_t at = pos;
        if (pos >= n) {
            if (!f.w || ndone < f.nf)
                rc = cs_error_set(CS_EFORMAT, "JPEG-LS: the codestream ends at byte %zu before %s",
                                  pos, f.w ? "all components are decoded" : "the frame header");
            break; /* all decoded: a missing EOI is tolerated */
        }
        if (src[pos] != 0xFF) {
            rc = cs_error_set(CS_EFORMAT, "JPEG-LS: no marker at byte %zu", pos);
            break;
        }
        while (pos < n && src[pos] == 0xFF)
            pos++;
        if (pos >= n) {
            rc = cs_error_set(CS_EFORMAT, "JPEG-LS: the codestream ends at byte %zu", at);
            break;
        }
        int m = src[pos++];
        if (m == 0xD9) { /* EOI */
            if (!f.w || ndone < f.nf)
                rc = cs_error_set(CS_EFORMAT, "JPEG-LS: EOI at byte %zu before %s", at,
                                  f.w ? "all components are decoded" : "any SOF");
            break;
        }
        /* T.87 C.1.1: SOF55, LSE, SOS, DRI, APPn, COM (DNL is not supported) */
        if (m != 0xF7 && m != 0xF8 && m != 0xDA && m != 0xDD && m != 0xFE &&
            !(m >= 0xE0 && m <= 0xEF)) {
            rc = cs_error_set(CS_EFORMAT, "JPEG-LS: marker 0x%02X at byte %zu is %s", m, at,
                              m == 0xD8 || (m >= 0xD0 && m <= 0xD7) ? "unexpected"
                              : m == 0xDC                           ? "DNL (not supported)"
                              : (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) ||
                                      m == 0xF9
                                  ? "a frame other than JPEG-LS SOF55"
                                  : "not a JPEG-LS marker");
            break;
        }
        if (pos + 2 > n) {
            rc = cs_error_set(CS_EFORMAT, "JPEG-LS: marker 0x%02X at byte %zu is truncated", m, at);
            break;
        }
        size_t len = rd16(src + pos);
        if (len < 2 || pos + len > n) {
            rc = cs_error_set(CS_EFORMAT,
                              "JPEG-LS: marker segment 0x%02X at byte %zu is truncated (length "
                              "%zu, %zu bytes left)",
                              m, at, len, n - pos);
            break;
        }
        const uint8_t *s = src + pos + 2;
        len -= 2;
        pos += 2 + len;
        if (m == 0xF7) {
            rc = read_sof(&f, info, s, len, at);
            if (!rc && cap < (size_t)f.w * f.h * f.nf * (size_t)ob)
                rc = cs_error_set(CS_ERANGE, "JPEG-LS: frame buffer too small");
            if (!rc) {
                lines = malloc((size_t)2 * 4 * (f.w + 6) * sizeof *lines);
                qtab = malloc((size_t)2 << f.p);
                if (!lines || !qtab)
                    rc = cs_error_set(CS_ENOMEM, "JPEG-LS: no memory");
                d->qt = qtab + ((size_t)1 << f.p);
            }
        } else if (m == 0xF8) {
            rc = read_lse(&f, s, len, at);
        } else if (m == 0xDD) {
            if (len < 2 || len > 4)
                rc = cs_error_set(CS_EFORMAT, "JPEG-LS: DRI at byte %zu has length %zu", at,
                                  len + 2);
            else
                f.ri = len == 2   ? rd16(s)
                       : len == 3 ? (uint32_t)s[0] << 16 | rd16(s + 1)
                                  : (uint32_t)rd16(s) << 16 | rd16(s + 2);
        } else if (m == 0xE8 && len == 5 && !memcmp(s, "mrfx", 4)) {
            if (s[4])
                rc = FALLBACK; /* HP colour transform */
        } else if (m == 0xDA) {
            scan sc;
            memset(&sc, 0, sizeof sc);
            rc = read_sos(&f, &sc, s, len, at);
            if (!rc)
                rc = scan_params(d, &f, &sc);
            if (!rc)
                rc = decode_scan(d, &f, &sc, dst, ob, lines, pos, &pos);
            if (!rc) {
                for (int i = 0; i < sc.ns; i++)
                    f.done[sc.ci[i]] = 1;
                ndone += sc.ns;
            }
        } /* else APPn, COM: skipped */
        if (rc)
            break;
    }
out:
    free(lines);
    free(qtab);
    free(d);
    return rc;
}
