/* Unit tests of core/tiles: DeepZoom geometry, passthrough, made tiles,
 * rendering of the synthetic slide, concurrency. */
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
#include "cs/thread.h"
#include "cs/tiles.h"

#include "testdata.h"

static void tiles__geometry_follows_deepzoom(void **state)
{
    cs_slide *s;
    cs_tiles *t;
    assert_int_equal(cs_slide_open_synthetic(&s, 1000, 700), 0);
    assert_int_equal(cs_tiles_new(&t, s, NULL), 0);
    /* no stored JPEG tiles: openslide-python's 254 + 1 */
    assert_int_equal(cs_tiles_tile_size(t), 254);
    assert_int_equal(cs_tiles_overlap(t), 1);
    assert_int_equal(cs_tiles_level_count(t), 11); /* 1000 -> 1 in 10 halvings */
    int64_t w, h, c, r;
    assert_int_equal(cs_tiles_level_info(t, 10, &w, &h, &c, &r), 0);
    assert_true(w == 1000 && h == 700 && c == 4 && r == 3);
    assert_int_equal(cs_tiles_level_info(t, 9, &w, &h, &c, &r), 0);
    assert_true(w == 500 && h == 350 && c == 2 && r == 2);
    assert_int_equal(cs_tiles_level_info(t, 0, &w, &h, &c, &r), 0);
    assert_true(w == 1 && h == 1 && c == 1 && r == 1);
    assert_int_equal(cs_tiles_level_info(t, 11, &w, &h, &c, &r), CS_ERANGE);
    cs_buf *b;
    assert_int_equal(cs_tiles_get_dzi(t, &b, NULL, 10, 4, 0), CS_ERANGE);
    assert_int_equal(cs_tiles_get_dzi(t, &b, NULL, 10, 0, -1), CS_ERANGE);
    /* interior tile with overlap on both sides: 254 + 2 */
    cs_jpeg *j;
    cs_jpeg_new(&j);
    assert_int_equal(cs_tiles_get_dzi(t, &b, NULL, 10, 1, 1), 0);
    int tw, th;
    cs_jpeg_size(j, cs_buf_data(b), cs_buf_size(b), &tw, &th);
    assert_int_equal(tw, 256);
    assert_int_equal(th, 256);
    cs_buf_unref(b);
    /* last column: 1000 - 3*254 = 238, plus the left overlap */
    assert_int_equal(cs_tiles_get_dzi(t, &b, NULL, 10, 3, 0), 0);
    cs_jpeg_size(j, cs_buf_data(b), cs_buf_size(b), &tw, &th);
    assert_int_equal(tw, 239);
    assert_int_equal(th, 255);
    cs_buf_unref(b);
    cs_jpeg_free(j);
    cs_tiles_free(t);
    cs_tiles_opts o = CS_TILES_OPTS_INIT;
    o.quality = 0;
    assert_int_equal(cs_tiles_new(&t, s, &o), CS_EINVAL);
    cs_slide_close(s);
}

static void tiles__synthetic_full_resolution_is_exact(void **state)
{
    cs_slide *s;
    cs_tiles *t;
    assert_int_equal(cs_slide_open_synthetic(&s, 3000, 2000), 0);
    assert_int_equal(cs_tiles_new(&t, s, NULL), 0);
    uint8_t *rgb = malloc(100 * 80 * 3);
    assert_int_equal(cs_tiles_render_rgb(t, rgb, 1234, 567, 100, 80, 100, 80), 0);
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 100; x++) {
            uint32_t p = cs_slide_synthetic_pixel(1234 + x, 567 + y);
            const uint8_t *q = rgb + ((size_t)y * 100 + x) * 3;
            assert_int_equal(q[0], (uint8_t)(p >> 16));
            assert_int_equal(q[1], (uint8_t)(p >> 8));
            assert_int_equal(q[2], (uint8_t)p);
        }
    /* a region outside the slide is refused */
    assert_int_equal(cs_tiles_render_rgb(t, rgb, 2950, 0, 100, 80, 100, 80), CS_ERANGE);
    /* downscaled: the smooth red gradient keeps its mean */
    assert_int_equal(cs_tiles_render_rgb(t, rgb, 0, 0, 1600, 1280, 100, 80), 0);
    double red = 0, want = 0;
    for (int i = 0; i < 100 * 80; i++)
        red += rgb[i * 3];
    for (int x = 0; x < 1600; x++)
        want += (cs_slide_synthetic_pixel(x, 0) >> 16) & 0xff;
    assert_true(fabs(red / (100 * 80) - want / 1600) < 3);
    free(rgb);
    cs_tiles_free(t);
    cs_slide_close(s);
}

static void tiles__cmu_passthrough_crop_and_made(void **state)
{
    NEED_CMU();
    cs_slide *s;
    cs_tiles *t;
    cs_jpeg *j;
    assert_int_equal(cs_slide_open(&s, cmu), 0);
    assert_int_equal(cs_tiles_new(&t, s, NULL), 0);
    cs_jpeg_new(&j);
    assert_int_equal(cs_tiles_tile_size(t), 240); /* the stored tiles' size */
    assert_int_equal(cs_tiles_overlap(t), 0);
    int top = cs_tiles_level_count(t) - 1;
    cs_buf *b, *raw;
    cs_tiles_how how;
    assert_int_equal(cs_tiles_get_dzi(t, &b, &how, top, 2, 3), 0);
    assert_int_equal(how, CS_TILES_PASSTHROUGH);
    assert_int_equal(cs_slide_read_raw_tile(s, 0, 2, 3, &raw), 0);
    assert_int_equal(cs_buf_size(b), cs_buf_size(raw)); /* the stored bytes */
    assert_memory_equal(cs_buf_data(b), cs_buf_data(raw), cs_buf_size(raw));
    cs_buf_unref(raw);
    cs_buf_unref(b);
    int w, h;
    assert_int_equal(cs_tiles_get_dzi(t, &b, &how, top, 9, 12), 0);
    assert_int_equal(how, CS_TILES_CROPPED);
    cs_jpeg_size(j, cs_buf_data(b), cs_buf_size(b), &w, &h);
    assert_int_equal(w, 2220 - 9 * 240);
    assert_int_equal(h, 2967 - 12 * 240);
    cs_buf_unref(b);
    assert_int_equal(cs_tiles_get_dzi(t, &b, &how, top - 2, 1, 1), 0);
    assert_int_equal(how, CS_TILES_FROM_JPEG);
    cs_jpeg_size(j, cs_buf_data(b), cs_buf_size(b), &w, &h);
    assert_int_equal(w, 240);
    cs_buf_unref(b);
    /* IIIF: a region that is exactly one stored tile passes through */
    assert_int_equal(cs_tiles_get_region(t, &b, &how, 480, 240, 240, 240, 240, 240), 0);
    assert_int_equal(how, CS_TILES_PASSTHROUGH);
    cs_buf_unref(b);
    cs_jpeg_free(j);
    cs_tiles_free(t);
    cs_slide_close(s);
}

typedef struct {
    cs_tiles *t;
    int top;
    size_t sizes[13 * 10];
    int bad;
} worker_arg;

static void fetch_all(void *ud)
{
    worker_arg *a = ud;
    for (int i = 0; i < 13 * 10; i++) {
        cs_buf *b;
        if (cs_tiles_get_dzi(a->t, &b, NULL, a->top - 1, i % 5, (i / 5) % 7) != 0) {
            a->bad++;
            continue;
        }
        a->sizes[i] = cs_buf_size(b);
        cs_buf_unref(b);
    }
}

/* Many threads on one cs_tiles produce the same tiles as one thread. */
static void tiles__threads_agree(void **state)
{
    NEED_CMU();
    cs_slide *s;
    cs_tiles *t;
    assert_int_equal(cs_slide_open(&s, cmu), 0);
    assert_int_equal(cs_tiles_new(&t, s, NULL), 0);
    worker_arg a[4];
    cs_thread *th[4];
    for (int i = 0; i < 4; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].t = t;
        a[i].top = cs_tiles_level_count(t) - 1;
        assert_int_equal(cs_thread_start(&th[i], "tiletest", fetch_all, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        cs_thread_join(th[i]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].bad, 0);
        assert_memory_equal(a[i].sizes, a[0].sizes, sizeof(a[0].sizes));
    }
    cs_tiles_free(t);
    cs_slide_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiles__geometry_follows_deepzoom),
        cmocka_unit_test(tiles__synthetic_full_resolution_is_exact),
        cmocka_unit_test(tiles__cmu_passthrough_crop_and_made),
        cmocka_unit_test(tiles__threads_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
