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

int cs_resample_rgb(uint8_t *dst, size_t dst_stride, int dw, int dh, const uint8_t *src,
                    size_t src_stride, int src_w, int src_h, double sx, double sy, double sw,
                    double sh)
{
    if (is_int(sx) && is_int(sy) && fabs(sw - dw) < 1e-9 && fabs(sh - dh) < 1e-9 &&
        (int)nearbyint(sx) + dw <= src_w && (int)nearbyint(sy) + dh <= src_h) {
        int x0 = (int)nearbyint(sx), y0 = (int)nearbyint(sy);
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dst_stride, src + (size_t)(y0 + y) * src_stride + x0 * 3,
                   (size_t)dw * 3);
        return 0;
    }
    int *bx = NULL, *by = NULL, kx, ky;
    int32_t *wx = NULL, *wy = NULL;
    uint8_t *tmp = NULL;
    int r = precompute(&bx, &wx, &kx, src_w, sx, sx + sw, dw);
    if (r == 0)
        r = precompute(&by, &wy, &ky, src_h, sy, sy + sh, dh);
    if (r < 0)
        goto done;
    /* horizontal pass over the rows the vertical pass reads */
    int ry0 = by[0], ry1 = by[2 * (dh - 1)] + by[2 * (dh - 1) + 1];
    if (ry1 <= ry0)
        ry1 = ry0 + 1;
    tmp = malloc((size_t)dw * 3 * (size_t)(ry1 - ry0));
    if (!tmp) {
        r = cs_error_set(CS_ENOMEM, "out of memory resampling");
        goto done;
    }
    for (int y = ry0; y < ry1; y++) {
        const uint8_t *row = src + (size_t)y * src_stride;
        uint8_t *o = tmp + (size_t)(y - ry0) * dw * 3;
        for (int x = 0; x < dw; x++) {
            const int32_t *k = wx + (size_t)x * kx;
            const uint8_t *p = row + (size_t)bx[2 * x] * 3;
            int32_t a = 1 << (PRECISION_BITS - 1), b = a, c = a;
            for (int i = 0; i < bx[2 * x + 1]; i++, p += 3) {
                a += k[i] * p[0];
                b += k[i] * p[1];
                c += k[i] * p[2];
            }
            o[3 * x] = clip8(a);
            o[3 * x + 1] = clip8(b);
            o[3 * x + 2] = clip8(c);
        }
    }
    size_t ts = (size_t)dw * 3;
    for (int y = 0; y < dh; y++) {
        const int32_t *k = wy + (size_t)y * ky;
        uint8_t *o = dst + (size_t)y * dst_stride;
        const uint8_t *base = tmp + (size_t)(by[2 * y] - ry0) * ts;
        int n = by[2 * y + 1];
        for (size_t x = 0; x < ts; x++) {
            int32_t a = 1 << (PRECISION_BITS - 1);
            const uint8_t *p = base + x;
            for (int i = 0; i < n; i++, p += ts)
                a += k[i] * *p;
            o[x] = clip8(a);
        }
    }
done:
    free(tmp);
    free(bx);
    free(by);
    free(wx);
    free(wy);
    return r;
}
