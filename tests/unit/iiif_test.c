/* Unit tests of the IIIF Image API 3 request parser. */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdint.h>

#include "cs/err.h"
#include "cs/iiif.h"

#define W 2220
#define H 2967

static int parse(cs_iiif_request *r, const char *region, const char *size)
{
    return cs_iiif_parse(r, W, H, region, size, "0", "default.jpg", 4096, 4096, 4096LL * 4096);
}

static void expect(const char *region, const char *size, int64_t x, int64_t y, int64_t w, int64_t h,
                   int ow, int oh)
{
    cs_iiif_request r;
    assert_int_equal(parse(&r, region, size), 0);
    assert_int_equal(r.x, x);
    assert_int_equal(r.y, y);
    assert_int_equal(r.w, w);
    assert_int_equal(r.h, h);
    assert_int_equal(r.out_w, ow);
    assert_int_equal(r.out_h, oh);
}

static void iiif__regions(void **state)
{
    expect("full", "max", 0, 0, W, H, W, H);
    expect("square", "max", 0, (H - W) / 2, W, W, W, W);
    expect("10,20,300,400", "max", 10, 20, 300, 400, 300, 400);
    expect("2000,2900,500,500", "max", 2000, 2900, 220, 67, 220, 67); /* clipped */
    expect("pct:10,10,50,50", "max", 222, 296, 1110, 1483, 1110, 1483);
}

static void iiif__sizes(void **state)
{
    expect("0,0,1000,500", "500,", 0, 0, 1000, 500, 500, 250);
    expect("0,0,1000,500", ",100", 0, 0, 1000, 500, 200, 100);
    expect("0,0,1000,500", "300,300", 0, 0, 1000, 500, 300, 300);
    expect("0,0,1000,500", "!300,300", 0, 0, 1000, 500, 300, 150);
    expect("0,0,1000,500", "pct:25", 0, 0, 1000, 500, 250, 125);
    expect("0,0,100,100", "^200,", 0, 0, 100, 100, 200, 200);
}

static void iiif__max_respects_limits(void **state)
{
    cs_iiif_request r;
    assert_int_equal(cs_iiif_parse(&r, 40000, 30000, "full", "max", "0", "default.jpg", 4096, 4096,
                                   4096LL * 4096),
                     0);
    assert_true(r.out_w <= 4096 && r.out_h <= 4096);
    assert_int_equal(r.out_w, 4096);
}

static void iiif__errors(void **state)
{
    cs_iiif_request r;
    assert_int_equal(parse(&r, "full", "5000,"), CS_EINVAL);       /* upscale without ^ */
    assert_int_equal(parse(&r, "full", "^5000,"), CS_ETOOBIG);     /* over the maximum */
    assert_int_equal(parse(&r, "0,0,0,10", "max"), CS_EINVAL);     /* empty region */
    assert_int_equal(parse(&r, "3000,0,10,10", "max"), CS_ERANGE); /* outside */
    assert_int_equal(parse(&r, "1,2,3", "max"), CS_EINVAL);        /* malformed */
    assert_int_equal(parse(&r, "-1,0,10,10", "max"), CS_EINVAL);   /* negative */
    assert_int_equal(parse(&r, "0,0,10,10x", "max"), CS_EINVAL);   /* trailing junk */
    assert_int_equal(parse(&r, "full", "abc"), CS_EINVAL);
    assert_int_equal(parse(&r, "full", ","), CS_EINVAL);
    assert_int_equal(parse(&r, "full", "!100,"), CS_EINVAL);
    assert_int_equal(parse(&r, "full", "pct:0"), CS_EINVAL);
    assert_int_equal(parse(&r, "full", "99999999999999999,"), CS_EINVAL);
    assert_int_equal(cs_iiif_parse(&r, W, H, "full", "max", "90", "default.jpg", 0, 0, 0),
                     CS_EINVAL);
    assert_int_equal(cs_iiif_parse(&r, W, H, "full", "max", "0", "default.png", 0, 0, 0),
                     CS_EINVAL);
    assert_int_equal(cs_iiif_parse(&r, W, H, "full", "max", "0", "bitonal.jpg", 0, 0, 0),
                     CS_EINVAL);
    assert_int_equal(cs_iiif_parse(&r, W, H, "full", "max", "0", "color.jpg", 0, 0, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(iiif__regions),
        cmocka_unit_test(iiif__sizes),
        cmocka_unit_test(iiif__max_respects_limits),
        cmocka_unit_test(iiif__errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
