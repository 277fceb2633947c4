/* Unit tests of codecs/slide: OpenSlide backend on the shared CMU slide,
 * raw JPEG tiles, the synthetic slide, errors (sticky ones included). */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs/err.h"
#include "cs/jpeg.h"
#include "cs/slide.h"

#include "testdata.h"

static void slide__cmu_properties(void **state)
{
    NEED_CMU();
    cs_slide *s;
    assert_int_equal(cs_slide_open(&s, cmu), 0);
    assert_string_equal(cs_slide_vendor(s), "aperio");
    assert_int_equal(cs_slide_level_count(s), 1);
    cs_slide_level l;
    assert_int_equal(cs_slide_get_level(s, 0, &l), 0);
    assert_int_equal(l.width, 2220);
    assert_int_equal(l.height, 2967);
    assert_int_equal(l.tile_width, 240);
    assert_int_equal(l.raw, CS_SLIDE_RAW_JPEG);
    assert_true(fabs(cs_slide_mpp_x(s) - 0.499) < 1e-9);
    assert_true(fabs(cs_slide_objective_power(s) - 20) < 1e-9);
    assert_non_null(cs_slide_property(s, "aperio.AppMag"));
    assert_int_equal(cs_slide_get_level(s, 1, &l), CS_ERANGE);
    int has_label = 0;
    for (const char *const *n = cs_slide_associated_names(s); *n; n++)
        has_label |= strcmp(*n, "label") == 0;
    assert_true(has_label);
    int64_t w, h;
    assert_int_equal(cs_slide_associated_dims(s, "label", &w, &h), 0);
    uint8_t *rgb = malloc((size_t)(w * h * 3));
    assert_int_equal(cs_slide_read_associated(s, "label", rgb), 0);
    free(rgb);
    assert_int_equal(cs_slide_associated_dims(s, "nope", &w, &h), CS_ENOTFOUND);
    cs_slide_close(s);
}

/* A raw tile is a standalone JPEG that decodes to what OpenSlide renders. */
static void slide__raw_tile_matches_read_region(void **state)
{
    NEED_CMU();
    cs_slide *s;
    cs_jpeg *j;
    assert_int_equal(cs_slide_open(&s, cmu), 0);
    assert_int_equal(cs_jpeg_new(&j), 0);
    cs_buf *b;
    assert_int_equal(cs_slide_read_raw_tile(s, 0, 3, 4, &b), 0);
    const uint8_t *d = cs_buf_data(b);
    assert_true(d[0] == 0xff && d[1] == 0xd8);
    assert_memory_equal(d + 6, "Adobe", 5);
    uint8_t *dec = malloc(240 * 240 * 3), *ref = malloc(240 * 240 * 3);
    assert_int_equal(cs_jpeg_decode_rgb(j, dec, 240 * 3, d, cs_buf_size(b), 1), 0);
    assert_int_equal(cs_slide_read_region(s, ref, 240 * 3, 3 * 240, 4 * 240, 0, 240, 240), 0);
    double se = 0;
    for (int i = 0; i < 240 * 240 * 3; i++)
        se += (double)(dec[i] - ref[i]) * (dec[i] - ref[i]);
    double p = se == 0 ? 99 : 10 * log10(255.0 * 255 / (se / (240 * 240 * 3)));
    assert_true(p > 45);
    cs_buf_unref(b);
    assert_int_equal(cs_slide_read_raw_tile(s, 0, 10, 0, &b), CS_ERANGE);
    assert_int_equal(cs_slide_read_raw_tile(s, 1, 0, 0, &b), CS_ERANGE);
    free(dec);
    free(ref);
    cs_jpeg_free(j);
    cs_slide_close(s);
}

static void slide__outside_is_white(void **state)
{
    NEED_CMU();
    cs_slide *s;
    assert_int_equal(cs_slide_open(&s, cmu), 0);
    uint8_t px[4 * 4 * 3];
    assert_int_equal(cs_slide_read_region(s, px, 12, -100, -100, 0, 4, 4), 0);
    for (size_t i = 0; i < sizeof(px); i++)
        assert_int_equal(px[i], 255);
    assert_int_equal(cs_slide_read_region(s, px, 12, 0, 0, 0, 0, 4), CS_ERANGE);
    assert_int_equal(cs_slide_read_region(s, px, 12, 0, 0, 3, 4, 4), CS_ERANGE);
    cs_slide_close(s);
}

static void slide__open_errors(void **state)
{
    cs_slide *s;
    assert_int_equal(cs_slide_open(&s, "/nonexistent/x.svs"), CS_ENOTFOUND);
    assert_non_null(strstr(cs_error_last(), "/nonexistent/x.svs"));
    char path[] = "/tmp/cs-slide-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 131);
    assert_int_equal(write(fd, junk, sizeof(junk)), (int)sizeof(junk));
    close(fd);
    assert_int_equal(cs_slide_open(&s, path), CS_EFORMAT);
    unlink(path);
    assert_int_equal(cs_slide_open(&s, "/tmp"), CS_EFORMAT);
}

/* A truncated copy: the header opens, tiles past the cut fail, and the
 * failure sticks to the handle. */
static void slide__truncated_is_sticky(void **state)
{
    NEED_CMU();
    FILE *in = fopen(cmu, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *data = malloc((size_t)n);
    assert_int_equal(fread(data, 1, (size_t)n, in), (size_t)n);
    fclose(in);
    char path[] = "/tmp/cs-trunc-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, data, (size_t)n / 2), n / 2);
    close(fd);
    free(data);
    cs_slide *s;
    int r = cs_slide_open(&s, path);
    if (r == 0) {
        int failed = 0;
        cs_buf *b;
        for (int row = 12; row >= 0 && !failed; row--) {
            r = cs_slide_read_raw_tile(s, 0, 9, row, &b);
            if (r == 0)
                cs_buf_unref(b);
            else
                failed = r;
        }
        assert_true(failed == CS_EIO || failed == CS_EFORMAT);
        const char *msg;
        assert_int_equal(cs_slide_get_error(s, &msg), failed);
        assert_non_null(strstr(msg, "truncated"));
        uint8_t px[12];
        assert_int_equal(cs_slide_read_region(s, px, 6, 0, 0, 0, 2, 2), failed); /* sticky */
        assert_int_equal(cs_slide_read_raw_tile(s, 0, 0, 0, &b), failed);
        cs_slide_close(s);
    } else {
        assert_int_equal(r, CS_EFORMAT);
    }
    unlink(path);
}

static void slide__synthetic(void **state)
{
    cs_slide *s;
    assert_int_equal(cs_slide_open_synthetic(&s, 5000, 3000), 0);
    assert_string_equal(cs_slide_vendor(s), "synthetic");
    assert_int_equal(cs_slide_level_count(s), 3); /* 1, 4, 16: stops once within 512 px */
    cs_slide_level l;
    cs_slide_get_level(s, 2, &l);
    assert_int_equal(l.width, (5000 + 15) / 16);
    assert_true(l.downsample == 16);
    assert_int_equal(cs_slide_best_level(s, 1), 0);
    assert_int_equal(cs_slide_best_level(s, 3.9), 0);
    assert_int_equal(cs_slide_best_level(s, 4), 1);
    assert_int_equal(cs_slide_best_level(s, 1000), 2);
    uint8_t px[3 * 3 * 3];
    assert_int_equal(cs_slide_read_region(s, px, 9, 100, 200, 1, 3, 3), 0);
    uint32_t want = cs_slide_synthetic_pixel(100 + 4, 200 + 8);
    assert_int_equal(px[(2 * 3 + 1) * 3], (uint8_t)(want >> 16));
    assert_int_equal(px[(2 * 3 + 1) * 3 + 2], (uint8_t)want);
    cs_buf *b;
    assert_int_equal(cs_slide_read_raw_tile(s, 0, 0, 0, &b), CS_ENOTFOUND);
    cs_slide_close(s);
    assert_int_equal(cs_slide_open_synthetic(&s, 0, 10), CS_EINVAL);
    cs_slide_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slide__cmu_properties),
        cmocka_unit_test(slide__raw_tile_matches_read_region),
        cmocka_unit_test(slide__outside_is_white),
        cmocka_unit_test(slide__open_errors),
        cmocka_unit_test(slide__truncated_is_sticky),
        cmocka_unit_test(slide__synthetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
