/* Unit tests of the reading mode's parsers (viewer/dicomweb.c,
 * viewer/reading_load.c): multipart/related, DICOM JSON, series metadata
 * to sorted slices, raw frames to pixels. Every prefix of a good answer and
 * a set of hostile ones must give an error, never a crash or an overread
 * (run under ASan in the sanitizer build). */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#include "dicomweb.h"
#include "reading.h"

static const char CT[] =
    "multipart/related; type=\"application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\"; "
    "boundary=abc-123";

static void multipart__first_part_with_quoted_type(void **state)
{
    const char body[] = "--abc-123\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Location: x\r\n\r\nDATA\r\n--abc\r\nMORE\r\n--abc-123--\r\n";
    const char *p;
    size_t n;
    char err[200];
    assert_int_equal(vw_dw_multipart_first(CT, body, sizeof(body) - 1, &p, &n, err, sizeof(err)),
                     0);
    /* "\r\n--abc" alone is not the delimiter */
    assert_int_equal(n, strlen("DATA\r\n--abc\r\nMORE"));
    assert_memory_equal(p, "DATA\r\n--abc\r\nMORE", n);
}

static void multipart__quoted_boundary_and_no_part_headers(void **state)
{
    const char ct[] = "Multipart/Related; boundary=\"b;c d\"; type=application/octet-stream";
    const char body[] = "preamble\r\n--b;c d\r\n\r\n\x01\x02\x03\r\n--b;c d--";
    const char *p;
    size_t n;
    char err[200];
    assert_int_equal(vw_dw_multipart_first(ct, body, sizeof(body) - 1, &p, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\x01\x02\x03", 3);
}

static void multipart__every_prefix_fails_cleanly(void **state)
{
    const char body[] = "--abc-123\r\nContent-Type: application/octet-stream\r\n\r\n"
                        "0123456789abcdef\r\n--abc-123--\r\n";
    size_t len = sizeof(body) - 1;
    size_t full = strlen("--abc-123\r\nContent-Type: application/octet-stream\r\n\r\n"
                         "0123456789abcdef\r\n--abc-123");
    for (size_t k = 0; k < len; k++) {
        /* an exact-size heap copy, so ASan sees any read past it */
        char *b = malloc(k ? k : 1);
        memcpy(b, body, k);
        const char *p;
        size_t n;
        char err[200];
        int rc = vw_dw_multipart_first(CT, b, k, &p, &n, err, sizeof(err));
        if (k < full)
            assert_int_equal(rc, CS_EFORMAT);
        else
            assert_int_equal(rc, 0);
        if (rc < 0)
            assert_true(strlen(err) > 10);
        free(b);
    }
}

static void multipart__hostile_headers(void **state)
{
    const char *p;
    size_t n;
    char err[200];
    const char body[] = "--x\r\n\r\nD\r\n--x--";
    const char *bad[] = {"",
                         "application/octet-stream",
                         "multipart/related",
                         "multipart/related; boundary=",
                         "multipart/related; boundary=\"",
                         "multipart/related; boundary=\"\\",
                         "multipart/related;;;; =; boundary",
                         "multipart/related; type=\"a;boundary=x",
                         "multipart/related; boundary=y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            vw_dw_multipart_first(bad[i], body, sizeof(body) - 1, &p, &n, err, sizeof(err)),
            CS_EFORMAT);
    assert_int_equal(vw_dw_multipart_first("multipart/related; boundary=x", body, sizeof(body) - 1,
                                           &p, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 1);
    /* the closing delimiter right after the opening one: no part */
    const char empty[] = "--x--\r\n";
    assert_int_equal(vw_dw_multipart_first("multipart/related; boundary=x", empty,
                                           sizeof(empty) - 1, &p, &n, err, sizeof(err)),
                     CS_EFORMAT);
}

static void dicom_json__values(void **state)
{
    json_error_t je;
    json_t *o = json_loads("{\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Doe^J\"}]},"
                           "\"00280030\":{\"vr\":\"DS\",\"Value\":[0.5,\" 0.25 \"]},"
                           "\"00280010\":{\"vr\":\"US\",\"Value\":[\"x\"]},"
                           "\"00080060\":{\"vr\":\"CS\"},\"00081030\":[1,2]}",
                           0, &je);
    assert_non_null(o);
    assert_string_equal(vw_dj_str(o, "00100010"), "Doe^J");
    double d;
    assert_int_equal(vw_dj_num(o, "00280030", 0, &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(vw_dj_num(o, "00280030", 1, &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(vw_dj_num(o, "00280030", 2, &d), -1);
    assert_int_equal(vw_dj_num(o, "00280010", 0, &d), -1);
    assert_null(vw_dj_str(o, "00080060"));
    assert_null(vw_dj_str(o, "00081030"));
    assert_int_equal(vw_dj_count(o, "00280030"), 2);
    assert_int_equal(vw_dj_count(o, "00081030"), 0);
    char b[4];
    vw_dj_copy(o, "00100010", b, sizeof(b));
    assert_string_equal(b, "Doe");
    json_decref(o);
}

/* One instance of a metadata array; z NAN: no position. */
static json_t *inst(const char *sop, int number, double z, int frames)
{
    json_t *o = json_pack("{s:{s:s,s:[s]},s:{s:s,s:[i]},s:{s:s,s:[i]},s:{s:s,s:[i]},"
                          "s:{s:s,s:[i]},s:{s:s,s:[i]},s:{s:s,s:[s]}}",
                          "00080018", "vr", "UI", "Value", sop, "00200013", "vr", "IS", "Value",
                          number, "00280010", "vr", "US", "Value", 4, "00280011", "vr", "US",
                          "Value", 3, "00280100", "vr", "US", "Value", 16, "00280008", "vr", "IS",
                          "Value", frames, "00280004", "vr", "CS", "Value", "MONOCHROME2");
    if (!isnan(z)) {
        json_object_set_new(o, "00200032",
                            json_pack("{s:s,s:[f,f,f]}", "vr", "DS", "Value", 0.0, 0.0, z));
        json_object_set_new(
            o, "00200037",
            json_pack("{s:s,s:[f,f,f,f,f,f]}", "vr", "DS", "Value", 1.0, 0.0, 0.0, 0.0, 1.0, 0.0));
    }
    return o;
}

static void series__sorted_by_position_then_number(void **state)
{
    vw_rseries s;
    memset(&s, 0, sizeof(s));
    snprintf(s.uid, sizeof(s.uid), "1.2.3");
    json_t *m = json_array();
    json_array_append_new(m, inst("1.1", 1, 10.0, 1));
    json_array_append_new(m, inst("1.2", 2, -5.0, 1));
    json_array_append_new(m, inst("1.3", 3, 0.0, 1));
    assert_int_equal(vw_rseries_parse(&s, m), 0);
    assert_int_equal(s.nslices, 3);
    assert_string_equal(s.inst[s.slices[0].inst].sop, "1.2");
    assert_string_equal(s.inst[s.slices[1].inst].sop, "1.3");
    assert_string_equal(s.inst[s.slices[2].inst].sop, "1.1");
    free(s.inst);
    free(s.slices);
    json_decref(m);
    /* one without a position: InstanceNumber for all; a multi-frame: frames */
    memset(&s, 0, sizeof(s));
    m = json_array();
    json_array_append_new(m, inst("2.1", 3, 10.0, 1));
    json_array_append_new(m, inst("2.2", 1, NAN, 1));
    json_array_append_new(m, inst("2.3", 2, NAN, 4));
    assert_int_equal(vw_rseries_parse(&s, m), 0);
    assert_int_equal(s.nslices, 6);
    assert_string_equal(s.inst[s.slices[0].inst].sop, "2.2");
    for (int f = 1; f <= 4; f++) {
        assert_string_equal(s.inst[s.slices[f].inst].sop, "2.3");
        assert_int_equal(s.slices[f].frame, f);
    }
    assert_string_equal(s.inst[s.slices[5].inst].sop, "2.1");
    free(s.inst);
    free(s.slices);
    json_decref(m);
}

static void series__hostile_metadata(void **state)
{
    const char *bad[] = {
        "[]",
        "[1, \"x\", null]",
        "[{}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]}}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]},\"00280010\":{\"Value\":[-4]},"
        "\"00280011\":{\"Value\":[3]}}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]},\"00280010\":{\"Value\":[4]},"
        "\"00280011\":{\"Value\":[3]},\"00280100\":{\"Value\":[32]}}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]},\"00280010\":{\"Value\":[4]},"
        "\"00280011\":{\"Value\":[3]},\"00280008\":{\"Value\":[1e12]}}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]},\"00280010\":{\"Value\":[4]},"
        "\"00280011\":{\"Value\":[3]},\"00280004\":{\"Value\":[\"PALETTE COLOR\"]}}]",
        "[{\"00080018\":{\"vr\":\"UI\",\"Value\":[\"1\"]},\"00280010\":{\"Value\":[4]},"
        "\"00280011\":{\"Value\":[3]},\"00280101\":{\"Value\":[17]}}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vw_rseries s;
        memset(&s, 0, sizeof(s));
        json_t *m = json_loads(bad[i], 0, NULL);
        assert_non_null(m);
        int rc = vw_rseries_parse(&s, m);
        assert_true(rc < 0);
        assert_true(strlen(cs_error_last()) > 10);
        assert_null(s.slices);
        json_decref(m);
    }
}

static vw_rinst mono(int bits, int samples, const char *photometric)
{
    vw_rinst in;
    memset(&in, 0, sizeof(in));
    snprintf(in.sop, sizeof(in.sop), "9.9");
    in.rows = 2;
    in.cols = 2;
    in.samples = samples;
    in.bits_alloc = bits;
    in.bits_stored = bits;
    in.nframes = 1;
    snprintf(in.photometric, sizeof(in.photometric), "%s", photometric);
    return in;
}

static void frame__decode(void **state)
{
    char err[300];
    vw_rslice sl;
    memset(&sl, 0, sizeof(sl));
    sl.frame = 1;
    /* 16-bit little endian */
    vw_rinst in = mono(16, 1, "MONOCHROME2");
    const unsigned char le[] = {0x01, 0x02, 0xff, 0xff, 0x00, 0x80, 0x10, 0x00};
    assert_int_equal(vw_rslice_decode(&sl, &in, le, sizeof(le), err, sizeof(err)), 0);
    assert_int_equal(sl.kind, VW_PX_MONO16);
    assert_int_equal(((uint16_t *)sl.px)[0], 0x0201);
    assert_int_equal(((uint16_t *)sl.px)[2], 0x8000);
    free(sl.px);
    sl.px = NULL;
    /* short: an error naming the sizes */
    assert_int_equal(vw_rslice_decode(&sl, &in, le, 7, err, sizeof(err)), CS_EFORMAT);
    assert_non_null(strstr(err, "7 bytes, expected 8"));
    /* planar RGB */
    in = mono(8, 3, "RGB");
    in.planar = 1;
    const unsigned char pl[] = {1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24};
    assert_int_equal(vw_rslice_decode(&sl, &in, pl, sizeof(pl), err, sizeof(err)), 0);
    assert_memory_equal(sl.px, "\x01\x0b\x15\x02\x0c\x16\x03\x0d\x17\x04\x0e\x18", 12);
    free(sl.px);
    sl.px = NULL;
    /* YBR_FULL_422: Y1 Y2 Cb Cr; neutral chroma gives grey */
    in = mono(8, 3, "YBR_FULL_422");
    const unsigned char y422[] = {10, 200, 128, 128, 50, 60, 128, 128};
    assert_int_equal(vw_rslice_decode(&sl, &in, y422, sizeof(y422), err, sizeof(err)), 0);
    assert_memory_equal(sl.px, "\x0a\x0a\x0a\xc8\xc8\xc8\x32\x32\x32\x3c\x3c\x3c", 12);
    free(sl.px);
    sl.px = NULL;
    /* YBR_FULL: pure red is Y 76, Cb 85, Cr 255 */
    in = mono(8, 3, "YBR_FULL");
    in.rows = 1;
    in.cols = 1;
    const unsigned char red[] = {76, 85, 255};
    assert_int_equal(vw_rslice_decode(&sl, &in, red, sizeof(red), err, sizeof(err)), 0);
    uint8_t *p = sl.px;
    assert_true(p[0] >= 253 && p[1] <= 2 && p[2] <= 2);
    free(sl.px);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(multipart__first_part_with_quoted_type),
        cmocka_unit_test(multipart__quoted_boundary_and_no_part_headers),
        cmocka_unit_test(multipart__every_prefix_fails_cleanly),
        cmocka_unit_test(multipart__hostile_headers),
        cmocka_unit_test(dicom_json__values),
        cmocka_unit_test(series__sorted_by_position_then_number),
        cmocka_unit_test(series__hostile_metadata),
        cmocka_unit_test(frame__decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
