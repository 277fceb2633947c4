/* Pillow-compatible resampling (Lanczos-3 and box reduce) of packed RGB.
 *
 * Mirrors Pillow's libImaging/Resample.c precompute_coeffs() and its 8-bit
 * passes, and Reduce.c's partial-block averaging, because the oracle for
 * made tiles is openslide-python's DeepZoomGenerator, which uses them. */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#define PRECISION_BITS (32 - 8 - 2)

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos3(double x)
{
    if (-3.0 <= x && x < 3.0)
        return sinc(x) * sinc(x / 3.0);
    return 0.0;
}

/* Fixed-point coefficients for one axis: bounds[2*i] = first source index,
 * bounds[2*i+1] = count, kk[i*ksize + j] the weights. */
static int precompute(int **bounds_out, int32_t **kk_out, int *ksize_out, int in_size, double in0,
                      double in1, int out_size)
{
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 3.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)out_size);
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !kk || !k) {
        free(bounds);
        free(kk);
        free(k);
        return cs_error_set(CS_ENOMEM, "out of memory resampling");
    }
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize)
            xmax = ksize;
        for (int x = 0; x < xmax; x++) {
            double w = lanczos3((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        int32_t *ki = kk + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? (ww != 0.0 ? k[x] / ww : 0.0) : 0.0;
            ki[x] = (int32_t)(w < 0 ? (w * (1 << PRECISION_BITS) - 0.5)
                                    : (w * (1 << PRECISION_BITS) + 0.5));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax > 0 ? xmax : 0;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    *ksize_out = ksize;
    return 0;
}

static uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void cs_reduce_rgb(uint8_t *dst, size_t dst_stride, const uint8_t *src, size_t src_stride, int w,
                   int h, int k)
{
    int ow = (w + k - 1) / k, oh = (h + k - 1) / k;
    for (int y = 0; y < oh; y++) {
        int y0 = y * k, ny = h - y0 < k ? h - y0 : k;
        uint8_t *o = dst + (size_t)y * dst_stride;
        for (int x = 0; x < ow; x++) {
            int x0 = x * k, nx = w - x0 < k ? w - x0 : k;
            uint32_t r = 0, g = 0, b = 0, n = (uint32_t)(nx * ny);
            for (int j = 0; j < ny; j++) {
                const uint8_t *p = src + (size_t)(y0 + j) * src_stride + (size_t)x0 * 3;
                for (int i = 0; i < nx; i++, p += 3) {
                    r += p[0];
                    g += p[1];
                    b += p[2];
                }
            }
            o[3 * x] = (uint8_t)((r + n / 2) / n);
            o[3 * x + 1] = (uint8_t)((g + n / 2) / n);
            o[3 * x + 2] = (uint8_t)((b + n / 2) / n);
        }
    }
}

static int is_int(double v)
{
    return fabs(v - nearbyint(v)) < 1e-9;
}

/* Vectorisable kernels. Integer sums are exact whatever the order, so these
 * give the very bytes of the straightforward loops; target_clones lets the
 * loader pick an AVX2 build where the CPU has it. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* acc[i] += w * src[i] for n values */
VECTOR_CLONES static void mac_u8(int32_t *restrict acc, const uint8_t *restrict src, int32_t w,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += w * src[i];
}

/* even[i] = src[2i], odd[i] = src[2i + 1] */
VECTOR_CLONES static void split2(uint8_t *restrict even, uint8_t *restrict odd,
                                 const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        even[i] = src[2 * i];
        odd[i] = src[2 * i + 1];
    }
}

static void store_clip(uint8_t *dst, size_t step, const int32_t *acc, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i * step] = clip8(acc[i]);
}

/* Longest run [lo, hi) of outputs whose taps are those of output lo moved
 * by a fixed step: the interior of a 2:1 (or any integer-step) reduction. */
static int periodic_run(const int *bounds, const int32_t *kk, int ksize, int n, int *lo, int *hi)
{
    int best = 0;
    *lo = *hi = 0;
    for (int a = 0; a + 1 < n;) {
        int step = bounds[2 * (a + 1)] - bounds[2 * a], b = a + 1;
        while (b < n && bounds[2 * b + 1] == bounds[2 * a + 1] &&
               bounds[2 * b] - bounds[2 * (b - 1)] == step &&
               memcmp(kk + (size_t)b * ksize, kk + (size_t)a * ksize,
                      sizeof(int32_t) * (size_t)bounds[2 * a + 1]) == 0)
            b++;
        if (b - a > best && step >= 1 && step <= 8) {
            best = b - a;
            *lo = a;
            *hi = b;
        }
        a = b;
    }
    return best >= 8 ? bounds[2 * (*lo + 1)] - bounds[2 * *lo] : 0;
}

/* Horizontal pass of one row of @p nch channels. Outputs in [lo, hi) share
 * weights with a source step @p step: one sequential sweep splits the row
 * into per-channel, per-phase byte planes, then every tap is one contiguous
 * multiply-add. */
static void hpass_row(uint8_t *out, const uint8_t *row, int c0, int nch, int src_w, int dw,
                      const int *bx, const int32_t *wx, int kx, int lo, int hi, int step,
                      int32_t *acc, uint8_t *plane, size_t per)
{
    /* @p row starts at source column @p c0; bx[] counts from column 0 */
    if (hi > lo) {
        int n = hi - lo, taps = bx[2 * lo + 1], s0 = bx[2 * lo] - c0;
        int end = s0 + (int)per * step;
        if (end > src_w)
            end = src_w;
        memset(plane, 0, per * (size_t)step * (size_t)nch);
        if (nch == 1 && step == 2) { /* the Y/Cb/Cr planes of a 2:1 tile */
            split2(plane, plane + per, row + s0, (size_t)(end - s0) / 2);
            if ((end - s0) & 1)
                plane[(end - s0) / 2] = row[end - 1];
        }
        for (int sx = s0 + (nch == 1 && step == 2 ? (end - s0) : 0), i = (sx - s0) / step; sx < end;
             i++) {
            for (int ph = 0; ph < step && sx < end; ph++, sx++) {
                const uint8_t *p = row + (size_t)sx * nch;
                for (int c = 0; c < nch; c++)
                    plane[(size_t)(c * step + ph) * per + i] = p[c];
            }
        }
        const int32_t *k = wx + (size_t)lo * kx;
        for (int c = 0; c < nch; c++) {
            for (int i = 0; i < n; i++)
                acc[i] = 1 << (PRECISION_BITS - 1);
            for (int j = 0; j < taps; j++)
                mac_u8(acc, plane + (size_t)(c * step + j % step) * per + j / step, k[j],
                       (size_t)n);
            store_clip(out + (size_t)lo * nch + c, (size_t)nch, acc, (size_t)n);
        }
    }
    for (int x = 0; x < dw; x++) {
        if (x == lo && hi > lo) {
            x = hi - 1;
            continue;
        }
        const int32_t *k = wx + (size_t)x * kx;
        for (int c = 0; c < nch; c++) {
            const uint8_t *p = row + (size_t)(bx[2 * x] - c0) * nch + c;
            int32_t a = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < bx[2 * x + 1]; i++, p += nch)
                a += k[i] * *p;
            out[(size_t)x * nch + c] = clip8(a);
        }
    }
}

/* Coefficients for one axis. A cs_resample_cache keeps the last few sets:
 * every interior tile of a level asks for the same ones, and computing
 * them (two sin() per tap) would cost a fifth of a made tile. */
typedef struct {
    int in_size, out_size;
    double in0, in1;
    int *bounds;
    int32_t *kk;
    int ksize;
    uint64_t used;
} coeffs;

#define CACHE_SETS 8

struct cs_resample_cache {
    coeffs sets[CACHE_SETS];
    uint64_t clock;
};

int cs_resample_cache_new(cs_resample_cache **out)
{
    *out = calloc(1, sizeof(cs_resample_cache));
    return *out ? 0 : cs_error_set(CS_ENOMEM, "out of memory");
}

void cs_resample_cache_free(cs_resample_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < CACHE_SETS; i++) {
        free(c->sets[i].bounds);
        free(c->sets[i].kk);
    }
    free(c);
}

/* Borrowed from @p cache (valid until its next lookup but one: a resample
 * asks for two sets), or owned by @p tmp when there is no cache. */
static const coeffs *get_coeffs(cs_resample_cache *cache, coeffs *tmp, int in_size, double in0,
                                double in1, int out_size)
{
    coeffs *c = tmp;
    if (cache) {
        coeffs *victim = &cache->sets[0];
        for (int i = 0; i < CACHE_SETS; i++) {
            coeffs *e = &cache->sets[i];
            if (e->bounds && e->in_size == in_size && e->out_size == out_size && e->in0 == in0 &&
                e->in1 == in1) {
                e->used = ++cache->clock;
                return e;
            }
            if (e->used < victim->used)
                victim = e;
        }
        free(victim->bounds);
        free(victim->kk);
        c = victim;
        c->used = ++cache->clock;
    }
    c->bounds = NULL;
    c->kk = NULL;
    c->in_size = in_size, c->out_size = out_size, c->in0 = in0, c->in1 = in1;
    if (precompute(&c->bounds, &c->kk, &c->ksize, in_size, in0, in1, out_size) < 0) {
        c->bounds = NULL;
        return NULL;
    }
    return c;
}

static int resample(cs_resample_cache *cache, uint8_t *dst, size_t dst_stride, int dw, int dh,
                    const uint8_t *src, size_t src_stride, int src_w, int src_h, int nch, double sx,
                    double sy, double sw, double sh)
{
    if (is_int(sx) && is_int(sy) && fabs(sw - dw) < 1e-9 && fabs(sh - dh) < 1e-9 &&
        (int)nearbyint(sx) + dw <= src_w && (int)nearbyint(sy) + dh <= src_h) {
        int x0 = (int)nearbyint(sx), y0 = (int)nearbyint(sy);
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dst_stride,
                   src + (size_t)(y0 + y) * src_stride + (size_t)x0 * nch, (size_t)dw * nch);
        return 0;
    }
    coeffs tx = {0}, ty = {0};
    int32_t *acc = NULL;
    uint8_t *tmp = NULL, *plane = NULL;
    int r = 0;
    const coeffs *pcx = get_coeffs(cache, &tx, src_w, sx, sx + sw, dw);
    const coeffs *pcy = pcx ? get_coeffs(cache, &ty, src_h, sy, sy + sh, dh) : NULL;
    if (!pcx || !pcy) {
        r = cs_error_set(CS_ENOMEM, "out of memory resampling");
        goto done;
    }
    const coeffs cx = *pcx, cy = *pcy;
    /* Vertical pass first, over just the columns the horizontal taps read:
     * rows are contiguous, so it vectorises, and the horizontal pass then
     * runs on dh rows instead of the source's. (Pillow goes the other way;
     * the 8-bit intermediate then rounds at another point: +-1 level.) */
    const int *bx = cx.bounds, *by = cy.bounds;
    int c0 = bx[0], c1 = bx[2 * (dw - 1)] + bx[2 * (dw - 1) + 1];
    for (int x = 0; x < dw; x++) {
        if (bx[2 * x] < c0)
            c0 = bx[2 * x];
        if (bx[2 * x] + bx[2 * x + 1] > c1)
            c1 = bx[2 * x] + bx[2 * x + 1];
    }
    if (c1 <= c0)
        c1 = c0 + 1;
    int tw = c1 - c0;
    size_t ts = (size_t)tw * nch;
    int lo, hi, step = periodic_run(bx, cx.kk, cx.ksize, dw, &lo, &hi);
    if (!step)
        lo = hi = 0;
    size_t per = step ? (size_t)(hi - lo) + (size_t)cx.ksize / (size_t)step + 2 : 1;
    size_t nacc = ts > (size_t)dw ? ts : (size_t)dw;
    tmp = malloc(ts * (size_t)dh);
    acc = malloc(sizeof(int32_t) * nacc);
    plane = malloc(per * (size_t)(step ? step : 1) * (size_t)nch);
    if (!tmp || !acc || !plane) {
        r = cs_error_set(CS_ENOMEM, "out of memory resampling");
        goto done;
    }
    for (int y = 0; y < dh; y++) {
        const int32_t *k = cy.kk + (size_t)y * cy.ksize;
        for (size_t i = 0; i < ts; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int i = 0; i < by[2 * y + 1]; i++)
            mac_u8(acc, src + (size_t)(by[2 * y] + i) * src_stride + (size_t)c0 * nch, k[i], ts);
        store_clip(tmp + (size_t)y * ts, 1, acc, ts);
    }
    for (int y = 0; y < dh; y++)
        hpass_row(dst + (size_t)y * dst_stride, tmp + (size_t)y * ts, c0, nch, tw, dw, bx, cx.kk,
                  cx.ksize, lo, hi, step, acc, plane, per);
done:
    free(tmp);
    free(acc);
    free(plane);
    free(tx.bounds);
    free(tx.kk);
    free(ty.bounds);
    free(ty.kk);
    return r;
}

int cs_resample_rgb(cs_resample_cache *cache, uint8_t *dst, size_t dst_stride, int dw, int dh,
                    const uint8_t *src, size_t src_stride, int src_w, int src_h, double sx,
                    double sy, double sw, double sh)
{
    return resample(cache, dst, dst_stride, dw, dh, src, src_stride, src_w, src_h, 3, sx, sy, sw,
                    sh);
}

int cs_resample_plane(cs_resample_cache *cache, uint8_t *dst, size_t dst_stride, int dw, int dh,
                      const uint8_t *src, size_t src_stride, int src_w, int src_h, double sx,
                      double sy, double sw, double sh)
{
    return resample(cache, dst, dst_stride, dw, dh, src, src_stride, src_w, src_h, 1, sx, sy, sw,
                    sh);
}
