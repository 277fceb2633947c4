/* Area resampling of packed RGB, separable, 16.16 fixed-point weights. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"
#include "resample.h"

typedef struct {
    int start, count; /* source taps */
    int woff;         /* offset in the weight array */
} taps;

/* Weights of each output index over source indexes [0, n). */
static int make_taps(taps *t, int **weights, int dn, int n, double s0, double sl)
{
    double scale = sl / dn;
    int maxtaps = (int)ceil(scale) + 3;
    int *w = malloc(sizeof(int) * (size_t)dn * (size_t)maxtaps);
    double *acc = malloc(sizeof(double) * (size_t)maxtaps * 2);
    if (!w || !acc) {
        free(w);
        free(acc);
        return cs_error_set(CS_ENOMEM, "out of memory resampling");
    }
    double *folded = acc + maxtaps;
    for (int i = 0; i < dn; i++) {
        int start, count = 0;
        if (scale >= 1.0) {
            double a = s0 + i * scale, b = a + scale;
            start = (int)floor(a);
            for (int j = start; j < b && count < maxtaps; j++) {
                double lo = a > j ? a : j, hi = b < j + 1 ? b : j + 1;
                acc[count++] = hi > lo ? hi - lo : 0;
            }
        } else {
            double c = s0 + (i + 0.5) * scale - 0.5;
            start = (int)floor(c);
            double f = c - start;
            acc[0] = 1 - f;
            acc[1] = f;
            count = 2;
        }
        /* clamp taps to [0, n), folding weight onto the edge pixel */
        double sum = 0;
        int cs = start < 0 ? 0 : start;
        int ce = start + count > n ? n : start + count;
        if (ce <= cs) {
            cs = start < 0 ? 0 : n - 1;
            ce = cs + 1;
        }
        memset(folded, 0, sizeof(double) * (size_t)maxtaps);
        for (int k = 0; k < count; k++) {
            int j = start + k;
            int jj = j < cs ? cs : (j >= ce ? ce - 1 : j);
            folded[jj - cs] += acc[k];
        }
        int nt = ce - cs;
        for (int k = 0; k < nt; k++)
            sum += folded[k];
        t[i].start = cs;
        t[i].count = nt;
        t[i].woff = i * maxtaps;
        int isum = 0;
        for (int k = 0; k < nt; k++) {
            int v = (int)lround(folded[k] / (sum > 0 ? sum : 1) * 65536.0);
            w[i * maxtaps + k] = v;
            isum += v;
        }
        w[i * maxtaps] += 65536 - isum; /* exact unit gain */
    }
    free(acc);
    *weights = w;
    return 0;
}

static int is_int(double v)
{
    return fabs(v - nearbyint(v)) < 1e-9;
}

int cs_resample_rgb(uint8_t *dst, size_t dst_stride, int dw, int dh, const uint8_t *src,
                    size_t src_stride, int src_w, int src_h, double sx, double sy, double sw,
                    double sh)
{
    double kx = sw / dw, ky = sh / dh;
    if (is_int(sx) && is_int(sy) && is_int(kx) && is_int(ky) && kx == ky && kx >= 1 &&
        (int)nearbyint(sx + sw) <= src_w && (int)nearbyint(sy + sh) <= src_h) {
        int k = (int)nearbyint(kx), x0 = (int)nearbyint(sx), y0 = (int)nearbyint(sy);
        if (k == 1) {
            for (int y = 0; y < dh; y++)
                memcpy(dst + (size_t)y * dst_stride, src + (size_t)(y0 + y) * src_stride + x0 * 3,
                       (size_t)dw * 3);
            return 0;
        }
        int area = k * k, half = area / 2;
        for (int y = 0; y < dh; y++) {
            uint8_t *o = dst + (size_t)y * dst_stride;
            const uint8_t *rows = src + (size_t)(y0 + y * k) * src_stride + (size_t)x0 * 3;
            for (int x = 0; x < dw; x++) {
                unsigned r = 0, g = 0, b = 0;
                for (int j = 0; j < k; j++) {
                    const uint8_t *p = rows + (size_t)j * src_stride + (size_t)x * k * 3;
                    for (int i = 0; i < k; i++, p += 3) {
                        r += p[0];
                        g += p[1];
                        b += p[2];
                    }
                }
                o[3 * x] = (uint8_t)((r + half) / area);
                o[3 * x + 1] = (uint8_t)((g + half) / area);
                o[3 * x + 2] = (uint8_t)((b + half) / area);
            }
        }
        return 0;
    }
    taps *tx = malloc(sizeof(taps) * (size_t)dw), *ty = malloc(sizeof(taps) * (size_t)dh);
    int *wx = NULL, *wy = NULL;
    int r = CS_ENOMEM;
    if (!tx || !ty || make_taps(tx, &wx, dw, src_w, sx, sw) < 0 ||
        make_taps(ty, &wy, dh, src_h, sy, sh) < 0)
        goto done;
    /* horizontal pass over the rows the vertical pass needs */
    int ry0 = ty[0].start, ry1 = ty[dh - 1].start + ty[dh - 1].count;
    uint32_t *tmp = malloc(sizeof(uint32_t) * 3 * (size_t)dw * (size_t)(ry1 - ry0));
    if (!tmp)
        goto done;
    for (int y = ry0; y < ry1; y++) {
        const uint8_t *row = src + (size_t)y * src_stride;
        uint32_t *o = tmp + (size_t)(y - ry0) * dw * 3;
        for (int x = 0; x < dw; x++) {
            const int *w = wx + tx[x].woff;
            const uint8_t *p = row + (size_t)tx[x].start * 3;
            uint32_t a = 0, b = 0, c = 0;
            for (int k = 0; k < tx[x].count; k++, p += 3) {
                a += (uint32_t)w[k] * p[0];
                b += (uint32_t)w[k] * p[1];
                c += (uint32_t)w[k] * p[2];
            }
            o[3 * x] = a >> 8, o[3 * x + 1] = b >> 8, o[3 * x + 2] = c >> 8; /* 8.8 */
        }
    }
    for (int y = 0; y < dh; y++) {
        const int *w = wy + ty[y].woff;
        uint8_t *o = dst + (size_t)y * dst_stride;
        for (int x = 0; x < dw * 3; x++) {
            uint64_t acc = 0;
            const uint32_t *p = tmp + (size_t)(ty[y].start - ry0) * dw * 3 + x;
            for (int k = 0; k < ty[y].count; k++, p += (size_t)dw * 3)
                acc += (uint64_t)w[k] * *p;
            uint64_t v = (acc + (1ull << 23)) >> 24;
            o[x] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    free(tmp);
    r = 0;
done:
    free(tx);
    free(ty);
    free(wx);
    free(wy);
    return r;
}
