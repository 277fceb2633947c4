/* Unit tests of codecs/jpeg: encode, scaled decode, lossless crop, errors. */
/* cmocka needs these first, in this order */
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

#include "cs/err.h"
#include "cs/jpeg.h"

static uint8_t *pattern(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / w);
            q[1] = (uint8_t)(y * 255 / h);
            q[2] = (uint8_t)(128 + 100 * sin(x / 9.0) * cos(y / 7.0));
        }
    return p;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++)
        se += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return se == 0 ? 99 : 10 * log10(255.0 * 255.0 / (se / n));
}

static void jpeg__roundtrip_quality(void **state)
{
    cs_jpeg *j;
    assert_int_equal(cs_jpeg_new(&j), 0);
    uint8_t *src = pattern(256, 200), *dst = malloc(256 * 200 * 3);
    cs_buf *lo, *hi;
    assert_int_equal(cs_jpeg_encode_rgb(j, &lo, src, 256, 200, 256 * 3, 30), 0);
    assert_int_equal(cs_jpeg_encode_rgb(j, &hi, src, 256, 200, 256 * 3, 95), 0);
    assert_true(cs_buf_size(lo) < cs_buf_size(hi));
    int w, h;
    assert_int_equal(cs_jpeg_size(j, cs_buf_data(hi), cs_buf_size(hi), &w, &h), 0);
    assert_int_equal(w, 256);
    assert_int_equal(h, 200);
    assert_int_equal(cs_jpeg_decode_rgb(j, dst, 256 * 3, cs_buf_data(hi), cs_buf_size(hi), 1), 0);
    assert_true(psnr(src, dst, 256 * 200 * 3) > 35);
    cs_buf_unref(lo);
    cs_buf_unref(hi);
    free(src);
    free(dst);
    cs_jpeg_free(j);
}

static void jpeg__dct_scaled_decode(void **state)
{
    cs_jpeg *j;
    assert_int_equal(cs_jpeg_new(&j), 0);
    uint8_t *src = pattern(256, 256);
    cs_buf *b;
    assert_int_equal(cs_jpeg_encode_rgb(j, &b, src, 256, 256, 256 * 3, 90), 0);
    uint8_t *d8 = malloc(32 * 32 * 3);
    assert_int_equal(cs_jpeg_decode_rgb(j, d8, 32 * 3, cs_buf_data(b), cs_buf_size(b), 8), 0);
    /* 1/8 scale pixels are 8x8 block means of the source, near enough */
    double se = 0;
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int k = 0; k < 64; k++)
                    sum += src[((size_t)(y * 8 + k / 8) * 256 + x * 8 + k % 8) * 3 + c];
                double d = d8[(y * 32 + x) * 3 + c] - sum / 64.0;
                se += d * d;
            }
    assert_true(10 * log10(255.0 * 255 / (se / (32 * 32 * 3))) > 30);
    assert_int_equal(cs_jpeg_decode_rgb(j, d8, 32 * 3, cs_buf_data(b), cs_buf_size(b), 3),
                     CS_EINVAL);
    free(d8);
    free(src);
    cs_buf_unref(b);
    cs_jpeg_free(j);
}

static void jpeg__lossless_crop(void **state)
{
    cs_jpeg *j;
    assert_int_equal(cs_jpeg_new(&j), 0);
    uint8_t *src = pattern(240, 240);
    cs_buf *b, *c;
    assert_int_equal(cs_jpeg_encode_rgb(j, &b, src, 240, 240, 240 * 3, 80), 0);
    assert_int_equal(cs_jpeg_crop(j, &c, cs_buf_data(b), cs_buf_size(b), 60, 87), 0);
    int w, h;
    assert_int_equal(cs_jpeg_size(j, cs_buf_data(c), cs_buf_size(c), &w, &h), 0);
    assert_int_equal(w, 60);
    assert_int_equal(h, 87);
    uint8_t *full = malloc(240 * 240 * 3), *crop = malloc(60 * 87 * 3);
    cs_jpeg_decode_rgb(j, full, 240 * 3, cs_buf_data(b), cs_buf_size(b), 1);
    cs_jpeg_decode_rgb(j, crop, 60 * 3, cs_buf_data(c), cs_buf_size(c), 1);
    /* same coefficients: identical away from the new edge (chroma
     * upsampling sees one neighbour less there) */
    for (int y = 0; y < 80; y++)
        assert_memory_equal(crop + (size_t)y * 60 * 3, full + (size_t)y * 240 * 3, 56 * 3);
    free(full);
    free(crop);
    free(src);
    cs_buf_unref(b);
    cs_buf_unref(c);
    cs_jpeg_free(j);
}

static void jpeg__garbage_is_an_error(void **state)
{
    cs_jpeg *j;
    assert_int_equal(cs_jpeg_new(&j), 0);
    uint8_t junk[300];
    for (int i = 0; i < 300; i++)
        junk[i] = (uint8_t)(i * 37);
    int w, h;
    uint8_t out[64];
    cs_buf *c;
    assert_int_equal(cs_jpeg_size(j, junk, sizeof(junk), &w, &h), CS_EFORMAT);
    assert_int_equal(cs_jpeg_decode_rgb(j, out, 8, junk, sizeof(junk), 1), CS_EFORMAT);
    assert_int_equal(cs_jpeg_crop(j, &c, junk, sizeof(junk), 8, 8), CS_EFORMAT);
    assert_true(strlen(cs_error_last()) > 0);
    assert_int_equal(cs_jpeg_encode_rgb(j, &c, out, 0, 1, 3, 75), CS_EINVAL);
    cs_jpeg_free(j);
}

static void jpeg__tiny_images_keep_colour(void **state)
{
    cs_jpeg *j;
    assert_int_equal(cs_jpeg_new(&j), 0);
    uint8_t px[2 * 1 * 3] = {250, 10, 10, 10, 10, 250}; /* red, blue */
    cs_buf *b;
    assert_int_equal(cs_jpeg_encode_rgb(j, &b, px, 2, 1, 6, 75), 0);
    uint8_t out[6];
    assert_int_equal(cs_jpeg_decode_rgb(j, out, 6, cs_buf_data(b), cs_buf_size(b), 1), 0);
    for (int i = 0; i < 6; i++)
        assert_true(abs(out[i] - px[i]) <= 8); /* 4:4:4: no red/blue blend */
    cs_buf_unref(b);
    cs_jpeg_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jpeg__roundtrip_quality),
        cmocka_unit_test(jpeg__dct_scaled_decode),
        cmocka_unit_test(jpeg__lossless_crop),
        cmocka_unit_test(jpeg__garbage_is_an_error),
        cmocka_unit_test(jpeg__tiny_images_keep_colour),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
