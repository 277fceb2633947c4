/* Unit tests of the Pillow-compatible resampler in core/tiles: the
 * vectorised passes give the bytes of a plain transcription of Pillow's
 * coefficients run vertical-first (as ours is), and stay within one level
 * of Pillow's own horizontal-first order, for 2:1 interiors, odd scales,
 * upscaling, fractional boxes and single planes. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"

/* Pillow's precompute_coeffs + ImagingResampleHorizontal/Vertical_8bpc. */
static double lanczos(double x)
{
    double a = x == 0 ? 1 : sin(M_PI * x) / (M_PI * x),
           b = x == 0 ? 1 : sin(M_PI * x / 3) / (M_PI * x / 3);
    return (-3.0 <= x && x < 3.0) ? a * b : 0.0;
}

static void coeffs(int in_size, double in0, double in1, int out, int *bounds, int32_t *kk, int *ksz)
{
    double scale = (in1 - in0) / out, fs = scale < 1 ? 1 : scale, support = 3 * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    *ksz = ksize;
    for (int xx = 0; xx < out; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0, k[1024];
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++)
            ww += k[x] = lanczos((x + xmin - center + 0.5) / fs);
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? k[x] / ww : 0;
            kk[xx * ksize + x] = (int32_t)(w < 0 ? w * (1 << 22) - 0.5 : w * (1 << 22) + 0.5);
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
}

static uint8_t clip(int32_t v)
{
    v >>= 22;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Plain loops over Pillow's coefficients, @p nch channels; @p vfirst runs
 * the vertical pass first (ours), else horizontal first (Pillow's). */
static void naive(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh, int nch,
                  double x0, double y0, double w, double h, int vfirst)
{
    int bx[2 * 512], by[2 * 512], kx, ky;
    static int32_t wx[512 * 1024], wy[512 * 1024];
    coeffs(sw, x0, x0 + w, dw, bx, wx, &kx);
    coeffs(sh, y0, y0 + h, dh, by, wy, &ky);
    int tw = vfirst ? sw : dw, th = vfirst ? dh : sh;
    uint8_t *tmp = calloc((size_t)th * tw * nch, 1);
    for (int y = 0; y < th; y++)
        for (int x = 0; x < tw; x++)
            for (int c = 0; c < nch; c++) {
                int32_t a = 1 << 21;
                if (vfirst)
                    for (int i = 0; i < by[2 * y + 1]; i++)
                        a += wy[y * ky + i] * src[((size_t)(by[2 * y] + i) * sw + x) * nch + c];
                else
                    for (int i = 0; i < bx[2 * x + 1]; i++)
                        a += wx[x * kx + i] * src[((size_t)y * sw + bx[2 * x] + i) * nch + c];
                tmp[((size_t)y * tw + x) * nch + c] = clip(a);
            }
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < nch; c++) {
                int32_t a = 1 << 21;
                if (vfirst)
                    for (int i = 0; i < bx[2 * x + 1]; i++)
                        a += wx[x * kx + i] * tmp[((size_t)y * tw + bx[2 * x] + i) * nch + c];
                else
                    for (int i = 0; i < by[2 * y + 1]; i++)
                        a += wy[y * ky + i] * tmp[((size_t)(by[2 * y] + i) * tw + x) * nch + c];
                dst[((size_t)y * dw + x) * nch + c] = clip(a);
            }
    free(tmp);
}

static void check_n(int nch, int sw, int sh, double x0, double y0, double w, double h, int dw,
                    int dh)
{
    size_t n = (size_t)dw * dh * nch;
    uint8_t *src = malloc((size_t)sw * sh * nch), *a = malloc(n), *b = malloc(n), *p = malloc(n);
    srand((unsigned)(sw * 7 + dw));
    for (int i = 0; i < sw * sh * nch; i++)
        src[i] = (uint8_t)(i % 97 < 50 ? rand() : (i / nch) % 256);
    int r = nch == 3 ? cs_resample_rgb(NULL, a, (size_t)dw * 3, dw, dh, src, (size_t)sw * 3, sw, sh,
                                       x0, y0, w, h)
                     : cs_resample_plane(NULL, a, (size_t)dw, dw, dh, src, (size_t)sw, sw, sh, x0,
                                         y0, w, h);
    assert_int_equal(r, 0);
    naive(b, dw, dh, src, sw, sh, nch, x0, y0, w, h, 1);
    assert_memory_equal(a, b, n);
    naive(p, dw, dh, src, sw, sh, nch, x0, y0, w, h, 0);
    /* Rounding the 8-bit intermediate elsewhere moves a value by one level;
     * on this random test pattern Lanczos overshoots are clipped at another
     * point too (up to ~30 levels on single pixels): bound the average. */
    long sum = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a[i] - p[i]);
        sum += d;
        worst = d > worst ? d : worst;
    }
    print_message("%dx%d->%dx%d/%d: vs Pillow's order max %d mean %.3f\n", sw, sh, dw, dh, nch,
                  worst, (double)sum / (double)n);
    assert_true((double)sum / (double)n <= 0.5);
    free(src);
    free(a);
    free(b);
    free(p);
}

static void check(int sw, int sh, double x0, double y0, double w, double h, int dw, int dh)
{
    check_n(3, sw, sh, x0, y0, w, h, dw, dh);
    check_n(1, sw, sh, x0, y0, w, h, dw, dh);
}

static void resample__same_bytes_as_plain_loops(void **state)
{
    check(512, 512, 0, 0, 512, 512, 256, 256);        /* 2:1, the made-tile case */
    check(480, 480, 0, 0, 480, 480, 240, 240);        /* 240-px tiles */
    check(300, 200, 0, 0, 300, 200, 100, 67);         /* 3:1 and odd */
    check(257, 130, 0.5, 0.25, 255.3, 128.9, 97, 51); /* fractional box */
    check(11, 9, 0, 0, 10.004, 8.03, 5, 4);           /* a whole-slide thumbnail */
    check(64, 48, 3.5, 2, 40, 30, 120, 90);           /* upscaling */
    check(100, 100, 0, 0, 100, 100, 1, 1);
}

static void resample__integer_copy_and_reduce(void **state)
{
    uint8_t src[4 * 4 * 3], dst[2 * 2 * 3];
    for (int i = 0; i < 48; i++)
        src[i] = (uint8_t)(i * 5);
    assert_int_equal(cs_resample_rgb(NULL, dst, 6, 2, 2, src, 12, 4, 4, 1, 2, 2, 2), 0);
    assert_memory_equal(dst, src + 2 * 12 + 3, 6); /* 1:1 at an integer offset: a copy */
    cs_reduce_rgb(dst, 6, src, 12, 3, 3, 2);       /* partial blocks average what they cover */
    assert_int_equal(dst[0], (src[0] + src[3] + src[12] + src[15] + 2) / 4);
    assert_int_equal(dst[3], (src[6] + src[18] + 1) / 2);
    assert_int_equal(dst[9], src[30]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resample__same_bytes_as_plain_loops),
        cmocka_unit_test(resample__integer_copy_and_reduce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
