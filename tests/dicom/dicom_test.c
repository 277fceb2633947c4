/* cs_dicom bad input (acceptance 5) and API edges, with cmocka. Each case
 * builds a corruption in memory from a real corpus file and checks that
 * cs_dicom answers with the documented code and a message naming the
 * problem: never a crash, never an allocation sized by a declared length.
 *
 * Allocation check: where the build is not sanitized, the huge-length cases
 * run in a child process limited to 512 MiB of address space; a parser that
 * allocated the declared 2-4 GiB would fail with CS_ENOMEM there instead of
 * CS_EFORMAT. */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cs/dicom.h"
#include "cs/err.h"

#include "dicom_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define CS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CS_ASAN 1
#endif
#endif

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob load(const char *name)
{
    const char *td = getenv("CS_TESTDATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/dicom/%s", td ? td : "../shared/testdata", name);
    blob b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_message("cannot open %s (set CS_TESTDATA)\n", path);
        fail();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc((size_t)n);
    assert_non_null(b.p);
    b.n = fread(b.p, 1, (size_t)n, f);
    fclose(f);
    assert_int_equal(b.n, (size_t)n);
    return b;
}

/* Offset of the last (or first) occurrence of @p pat. */
static size_t find(const blob *b, const void *pat, size_t m, int last)
{
    size_t hit = (size_t)-1;
    for (size_t i = 0; i + m <= b->n; i++) {
        if (memcmp(b->p + i, pat, m) == 0) {
            hit = i;
            if (!last)
                break;
        }
    }
    assert_true(hit != (size_t)-1);
    return hit;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* open_mem must fail with @p code and a message containing @p needle. */
static void expect_open_fails(const uint8_t *p, size_t n, int code, const char *needle)
{
    cs_dicom *d = NULL;
    int rc = cs_dicom_open_mem(&d, p, n);
    if (rc != code || !strstr(cs_error_last(), needle))
        print_message("rc %d, message: %s\n", rc, cs_error_last());
    assert_int_equal(rc, code);
    assert_null(d);
    assert_non_null(strstr(cs_error_last(), needle));
}

/* Run expect_open_fails in a child with a 512 MiB address-space limit. */
static void expect_open_fails_bounded(const uint8_t *p, size_t n, const char *needle)
{
#ifndef CS_ASAN
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {512u << 20, 512u << 20};
        setrlimit(RLIMIT_AS, &rl);
        cs_dicom *d = NULL;
        int rc = cs_dicom_open_mem(&d, p, n);
        _exit(rc == CS_EFORMAT && strstr(cs_error_last(), needle) ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
#endif
    expect_open_fails(p, n, CS_EFORMAT, needle);
}

/* Offset of the Basic Offset Table item of encapsulated Pixel Data. */
static size_t offset_table(const blob *b)
{
    static const uint8_t px[] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    size_t at = find(b, px, sizeof px, 1) + sizeof px;
    assert_int_equal(b->p[at], 0xFE);
    assert_int_equal(b->p[at + 3], 0xE0);
    return at;
}

/* The first fragment's item, and its codestream start. */
static size_t first_item(const blob *b)
{
    size_t bot = offset_table(b);
    uint32_t botlen = b->p[bot + 4] | b->p[bot + 5] << 8;
    return bot + 8 + botlen;
}

static size_t first_fragment(const blob *b)
{
    return first_item(b) + 8;
}

static void dicom__truncated(void **state)
{
    (void)state;
    blob b = load("CT_small.dcm");
    /* inside the meta header, inside the dataset, inside the pixel data */
    size_t cuts[] = {140, 600, b.n / 2, b.n - 100};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cs_dicom *d = NULL;
        int rc = cs_dicom_open_mem(&d, b.p, cuts[i]);
        print_message("cut at %zu: %s\n", cuts[i], cs_error_last());
        assert_int_equal(rc, CS_EFORMAT);
        assert_null(d);
        assert_true(strlen(cs_error_last()) > 10);
    }
    expect_open_fails(b.p, 0, CS_EFORMAT, "not DICOM");
    expect_open_fails((const uint8_t *)"hello, world, not dicom at all", 30, CS_EFORMAT, "");
    free(b.p);
}

static void dicom__huge_length(void **state)
{
    (void)state;
    blob b = load("CT_small.dcm");
    /* Pixel Data (7FE0,0010) OW: 32-bit length after 2 reserved bytes */
    static const uint8_t px[] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0};
    size_t at = find(&b, px, sizeof px, 1);
    uint32_t lens[] = {0xFFFFFFF0u, 0x7FFFFFFEu, (uint32_t)(b.n - at - 12 + 2)};
    /* the last: just 2 bytes more than the file has */
    for (size_t i = 0; i < 3; i++) {
        put32(b.p + at + 8, lens[i]);
        expect_open_fails_bounded(b.p, b.n, "(7FE0,0010)");
        print_message("length %08x: %s\n", lens[i], cs_error_last());
    }
    free(b.p);
    /* A wrong (too short) length: the parse goes astray, still an error */
    b = load("CT_small.dcm");
    at = find(&b, px, sizeof px, 1);
    put32(b.p + at + 8, 1000);
    cs_dicom *d = NULL;
    int rc = cs_dicom_open_mem(&d, b.p, b.n);
    print_message("short pixel length: %s\n", cs_error_last());
    assert_int_equal(rc, CS_EFORMAT);
    free(b.p);
}

static void dicom__huge_length_in_sequence(void **state)
{
    (void)state;
    blob b = load("test-SR.dcm");
    /* the first Item tag (FFFE,E000) inside a sequence: declare 3.9 GiB */
    static const uint8_t item[] = {0xFE, 0xFF, 0x00, 0xE0};
    size_t at = find(&b, item, sizeof item, 0);
    put32(b.p + at + 4, 0xF0000000u);
    expect_open_fails_bounded(b.p, b.n, "item at offset");
    print_message("item length: %s\n", cs_error_last());
    free(b.p);
}

static void dicom__fragment_past_eof(void **state)
{
    (void)state;
    blob b = load("JPEGBaseline_1s_1f_u_08_08.dcm");
    size_t frag = first_item(&b);
    put32(b.p + frag + 4, (uint32_t)(b.n * 4));
    expect_open_fails_bounded(b.p, b.n, "fragment");
    print_message("fragment past EOF: %s\n", cs_error_last());
    free(b.p);
}

static void dicom__unknown_syntax(void **state)
{
    (void)state;
    blob b = load("CT_small.dcm");
    static const char ts[] = "1.2.840.10008.1.2.1";
    size_t at = find(&b, ts, sizeof ts - 1, 0);
    memcpy(b.p + at, "1.2.840.10008.1.2.7", sizeof ts - 1);
    expect_open_fails(b.p, b.n, CS_EFORMAT, "transfer syntax");
    assert_non_null(strstr(cs_error_last(), "1.2.840.10008.1.2.7"));
    free(b.p);
}

/* Open @p b, decode frame 0; expect @p code and @p needle. */
static void expect_decode_fails(const blob *b, int code, const char *needle)
{
    cs_dicom *d = NULL;
    assert_int_equal(cs_dicom_open_mem(&d, b->p, b->n), 0);
    cs_dicom_info in;
    cs_dicom_get_info(d, &in);
    size_t fs = cs_dicom_frame_size(&in);
    uint8_t *buf = malloc(fs);
    int rc = cs_dicom_frame_decode(d, 0, buf, fs);
    print_message("decode: %s\n", cs_error_last());
    assert_int_equal(rc, code);
    assert_non_null(strstr(cs_error_last(), needle));
    /* render goes through the same decoder */
    uint8_t *img = malloc((size_t)in.rows * in.cols * 3);
    int ch = 0;
    assert_int_equal(
        cs_dicom_render(d, 0, NULL, img, (size_t)in.cols * 3, (size_t)in.rows * in.cols * 3, &ch),
        code);
    free(img);
    free(buf);
    cs_dicom_free(d);
}

static void dicom__corrupt_jpegls(void **state)
{
    (void)state;
    blob b = load("JLSL_16_15_1_1F.dcm");
    size_t cs = first_fragment(&b);
    assert_int_equal(b.p[cs], 0xFF);
    assert_int_equal(b.p[cs + 1], 0xD8);
    /* SOF55: FF F7 len(2) P(1) Y(2) X(2): make the height wrong */
    static const uint8_t sof[] = {0xFF, 0xF7};
    size_t s = find(&b, sof, 2, 0);
    b.p[s + 5] ^= 0x01;
    expect_decode_fails(&b, CS_EFORMAT, "JPEG-LS");
    free(b.p);
    /* entropy data garbage: a marker in the middle of the scan */
    b = load("JLSL_16_15_1_1F.dcm");
    cs = first_fragment(&b);
    memset(b.p + cs + 200, 0xFF, 64);
    expect_decode_fails(&b, CS_EFORMAT, "JPEG-LS");
    free(b.p);
}

static void dicom__corrupt_j2k(void **state)
{
    (void)state;
    blob b = load("693_J2KR.dcm");
    size_t cs = first_fragment(&b);
    assert_int_equal(b.p[cs], 0xFF);
    assert_int_equal(b.p[cs + 1], 0x4F);
    /* SIZ: FF51 Lsiz(2) Rsiz(2) Xsiz(4): a wider image than the dataset */
    b.p[cs + 4 + 6] ^= 0x01;
    expect_decode_fails(&b, CS_EFORMAT, "JPEG 2000");
    free(b.p);
    b = load("693_J2KR.dcm");
    cs = first_fragment(&b);
    memset(b.p + cs, 0x00, 16);
    expect_decode_fails(&b, CS_EFORMAT, "JPEG 2000");
    free(b.p);
}

static void dicom__corrupt_rle(void **state)
{
    (void)state;
    blob b = load("SC_rgb_rle.dcm");
    size_t cs = first_fragment(&b);
    assert_int_equal(b.p[cs], 3); /* three segments (RGB 8-bit) */
    b.p[cs] = 2;
    expect_decode_fails(&b, CS_EFORMAT, "RLE");
    b.p[cs] = 3;
    put32(b.p + cs + 8, 0x7FFFFFFF); /* second segment offset past the end */
    expect_decode_fails(&b, CS_EFORMAT, "RLE");
    free(b.p);
}

static void dicom__corrupt_jpeg(void **state)
{
    (void)state;
    blob b = load("JPEGBaseline_1s_1f_u_08_08.dcm");
    size_t cs = first_fragment(&b);
    memset(b.p + cs, 0, 2); /* no SOI */
    expect_decode_fails(&b, CS_EFORMAT, "JPEG");
    free(b.p);
}

/* Lossless JPEG (SOF3, our ljpeg.c): every corruption is CS_EFORMAT with a
 * message naming the problem and its byte offset. */
static void dicom__corrupt_jpeg_lossless(void **state)
{
    (void)state;
    static const uint8_t sof3[] = {0xFF, 0xC3}, dht[] = {0xFF, 0xC4}, sos[] = {0xFF, 0xDA};
    /* SOF3: FF C3 len(2) P(1) Y(2) X(2): one row more than Rows */
    blob b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    size_t cs = first_fragment(&b);
    assert_int_equal(b.p[cs + 1], 0xD8);
    size_t s = find(&b, sof3, 2, 0);
    b.p[s + 6] ^= 0x01;
    expect_decode_fails(&b, CS_EFORMAT, "the dataset says");
    free(b.p);
    /* DHT: FF C4 len(2) Tc/Th(1) L1..L16: three codes of length 1 (taken
     * from a longer length, so the count of values still agrees) */
    b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    s = find(&b, dht, 2, 0);
    int moved = 0;
    for (int l = 2; l <= 16 && !moved; l++) {
        if (b.p[s + 4 + l] >= 3) {
            b.p[s + 4 + l] -= 3;
            b.p[s + 5] += 3;
            moved = 1;
        }
    }
    assert_true(moved);
    expect_decode_fails(&b, CS_EFORMAT, "more codes of length 1 than fit");
    free(b.p);
    /* more values declared than the segment holds */
    b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    s = find(&b, dht, 2, 0);
    b.p[s + 5] = 3;
    expect_decode_fails(&b, CS_EFORMAT, "bad Huffman table (DHT at byte");
    free(b.p);
    /* a category above 16 in the table */
    b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    s = find(&b, dht, 2, 0);
    b.p[s + 5 + 16] = 17;
    expect_decode_fails(&b, CS_EFORMAT, "Huffman table (DHT at byte");
    free(b.p);
    /* the scan cut in half: the fragment item shortened, the sequence
     * delimiter moved after it (Pixel Data is the last element) */
    b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    size_t item = first_item(&b);
    cs = item + 8;
    uint32_t len = b.p[item + 4] | b.p[item + 5] << 8 | (uint32_t)b.p[item + 6] << 16 |
                   (uint32_t)b.p[item + 7] << 24;
    assert_true(cs + len + 8 <= b.n);
    uint32_t half = (len / 2) & ~1u;
    put32(b.p + item + 4, half);
    static const uint8_t delim[] = {0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0};
    memcpy(b.p + cs + half, delim, sizeof delim);
    b.n = cs + half + sizeof delim;
    expect_decode_fails(&b, CS_EFORMAT, "the scan's data ends early, in row");
    free(b.p);
    /* an EOI marker in the middle of the entropy-coded data */
    b = load("JPGLosslessP14SV1_1s_1f_8b.dcm");
    s = find(&b, sos, 2, 0);
    b.p[s + 4000] = 0xFF;
    b.p[s + 4001] = 0xD9;
    expect_decode_fails(&b, CS_EFORMAT, "JPEG lossless");
    free(b.p);
    /* no Huffman table for the scan: the DHT's id changed to 3 */
    b = load("JPEGLossless_1s_1f_u_16_12.dcm");
    s = find(&b, dht, 2, 0);
    b.p[s + 4] = 0x03;
    expect_decode_fails(&b, CS_EFORMAT, "Huffman table 0 is missing");
    free(b.p);
}

/* Frame 0's codestream (one fragment) replaced by @p cs: the item's length,
 * then the sequence delimiter (Pixel Data is the last element). */
static void set_fragment(blob *b, const uint8_t *cs, size_t n)
{
    size_t item = first_item(b);
    assert_int_equal(n % 2, 0);
    uint8_t *p = realloc(b->p, item + 8 + n + 8);
    assert_non_null(p);
    b->p = p;
    put32(b->p + item + 4, (uint32_t)n);
    memcpy(b->p + item + 8, cs, n);
    static const uint8_t delim[] = {0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0};
    memcpy(b->p + item + 8 + n, delim, sizeof delim);
    b->n = item + 8 + n + sizeof delim;
}

/* JPEG-LS (our jls.c): every corruption is CS_EFORMAT with a message
 * naming the problem and its byte offset. JLSL_16_15_1_1F is 128x128,
 * P 15, one scan, an LSE type 1. */
static void dicom__corrupt_jpegls_t87(void **state)
{
    (void)state;
    static const uint8_t sof55[] = {0xFF, 0xF7}, lse[] = {0xFF, 0xF8}, sos[] = {0xFF, 0xDA};
    /* wrong size against the dataset: SOF55 one column wider */
    blob b = load("JLSL_16_15_1_1F.dcm");
    size_t s = find(&b, sof55, 2, 0);
    b.p[s + 8] ^= 0x01;
    expect_decode_fails(&b, CS_EFORMAT, "the dataset says 128x128");
    free(b.p);
    /* truncated: the scan cut in half */
    b = load("JLSL_16_15_1_1F.dcm");
    size_t item = first_item(&b);
    uint32_t len = b.p[item + 4] | b.p[item + 5] << 8 | (uint32_t)b.p[item + 6] << 16 |
                   (uint32_t)b.p[item + 7] << 24;
    uint8_t *cs = malloc(len);
    assert_non_null(cs);
    memcpy(cs, b.p + item + 8, len);
    set_fragment(&b, cs, (len / 2) & ~(size_t)1);
    expect_decode_fails(&b, CS_EFORMAT, "the scan's data ends early, in line");
    free(b.p);
    /* bad markers: SOF3 instead of SOF55; a reserved marker before the SOS;
     * an EOI in the middle of the entropy-coded data */
    b = load("JLSL_16_15_1_1F.dcm");
    s = find(&b, sof55, 2, 0);
    b.p[s + 1] = 0xC3;
    expect_decode_fails(&b, CS_EFORMAT, "a frame other than JPEG-LS SOF55");
    free(b.p);
    b = load("JLSL_16_15_1_1F.dcm");
    s = find(&b, lse, 2, 0);
    b.p[s + 1] = 0x02;
    expect_decode_fails(&b, CS_EFORMAT, "marker 0x02 at byte");
    free(b.p);
    b = load("JLSL_16_15_1_1F.dcm");
    s = find(&b, sos, 2, 0);
    b.p[s + 3000] = 0xFF;
    b.p[s + 3001] = 0xD9;
    expect_decode_fails(&b, CS_EFORMAT, "JPEG-LS");
    free(b.p);
    /* LSE: T1 above MAXVAL */
    b = load("JLSL_16_15_1_1F.dcm");
    s = find(&b, lse, 2, 0);
    b.p[s + 7] = 0x80;
    expect_decode_fails(&b, CS_EFORMAT, "LSE thresholds");
    free(b.p);
    /* garbage after the SOS: zero bytes are one endless unary code */
    b = load("JLSL_16_15_1_1F.dcm");
    s = find(&b, sos, 2, 0);
    memset(b.p + s + 10, 0, 64);
    expect_decode_fails(&b, CS_EFORMAT, "a Golomb code longer than LIMIT (byte");
    free(b.p);
    /* crafted: line 0 opens in run mode (all neighbours 0); 19 one-bits
     * cover 124 of its 128 samples (RUNindex 19, J 5), then 0 and 11111:
     * 31 more samples, past the line end */
    static const uint8_t hdr[] = {0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x0B, 0x0F, 0x00, 0x80,
                                  0x00, 0x80, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xDA, 0x00,
                                  0x08, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00};
    uint8_t crafted[64];
    memcpy(crafted, hdr, sizeof hdr);
    static const uint8_t run[] = {0xFF, 0x7F, 0xF7, 0xC0, 0xFF, 0xD9, 0x00};
    memcpy(crafted + sizeof hdr, run, sizeof run);
    b = load("JLSL_16_15_1_1F.dcm");
    set_fragment(&b, crafted, sizeof hdr + sizeof run);
    expect_decode_fails(&b, CS_EFORMAT, "corrupt data in line 0: a run past the end of the line");
    free(b.p);
    /* crafted: DRI 1; 20 one-bits fill line 0 with a run, then EOI where
     * RST0 should be */
    static const uint8_t dri[] = {0xFF, 0xDD, 0x00, 0x04, 0x00, 0x01};
    static const uint8_t norst[] = {0xFF, 0x7F, 0xF8, 0xFF, 0xD9};
    memcpy(crafted, hdr, 15);
    memcpy(crafted + 15, dri, sizeof dri);
    memcpy(crafted + 15 + sizeof dri, hdr + 15, sizeof hdr - 15);
    memcpy(crafted + sizeof hdr + sizeof dri, norst, sizeof norst);
    b = load("JLSL_16_15_1_1F.dcm");
    set_fragment(&b, crafted, sizeof hdr + sizeof dri + sizeof norst);
    expect_decode_fails(&b, CS_EFORMAT, "expected restart marker RST0 before line 1");
    free(b.p);
    free(cs);
}

/* Four components, sample-interleaved (no DICOM photometric has four
 * samples, so straight through the codec): CharLS's encoder writes, ours
 * decodes, lossless and NEAR 2 against CharLS's own decode. */
static void dicom__jpegls_four_components(void **state)
{
    (void)state;
    cs_dicom_info in;
    memset(&in, 0, sizeof in);
    in.rows = 37;
    in.cols = 53;
    in.samples = 4;
    in.bits_allocated = 16;
    in.bits_stored = 12;
    size_t ns = (size_t)in.rows * in.cols * 4, fs = ns * 2;
    uint16_t *src = malloc(fs), *a = malloc(fs), *c = malloc(fs);
    assert_true(src && a && c);
    uint32_t seed = 87;
    for (size_t i = 0; i < ns; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t px = i / 4, x = px % in.cols, y = px / in.cols;
        /* smooth ramps (runs and small errors) with some noise */
        src[i] =
            (uint16_t)(((x * 31 + y * 17 * (i % 4 + 1)) + ((seed >> 16) % 9) * (y > 20)) & 0xFFF);
    }
    for (int near = 0; near <= 2; near += 2) {
        uint8_t *cs = NULL;
        size_t n = 0;
        assert_int_equal(cs_dicom_jls_encode(&in, src, near, &cs, &n), 0);
        assert_int_equal(cs_dicom_jls_decode_own(&in, cs, n, a, fs), 0);
        setenv("CS_JLS_CHARLS", "1", 1);
        assert_int_equal(cs_dicom_jls_decode(&in, cs, n, c, fs), 0);
        unsetenv("CS_JLS_CHARLS");
        assert_memory_equal(a, c, fs);
        if (!near)
            assert_memory_equal(a, src, fs);
        free(cs);
    }
    free(src);
    free(a);
    free(c);
}

static void dicom__ranges(void **state)
{
    (void)state;
    blob b = load("emri_small_jpeg_ls_lossless.dcm");
    cs_dicom *d = NULL;
    assert_int_equal(cs_dicom_open_mem(&d, b.p, b.n), 0);
    cs_dicom_info in;
    cs_dicom_get_info(d, &in);
    assert_int_equal(in.frames, 10);
    size_t fs = cs_dicom_frame_size(&in);
    uint8_t *a = malloc(fs * 10), *c = malloc(fs * 10);
    assert_int_equal(cs_dicom_frame_decode(d, -1, a, fs), CS_ERANGE);
    assert_int_equal(cs_dicom_frame_decode(d, 10, a, fs), CS_ERANGE);
    assert_int_equal(cs_dicom_frame_decode(d, 0, a, fs - 1), CS_ERANGE);
    assert_int_equal(cs_dicom_frames_decode(d, 5, 6, a, fs * 10, 2), CS_ERANGE);
    /* parallel decode equals frame-by-frame decode */
    assert_int_equal(cs_dicom_frames_decode(d, 0, 10, a, fs * 10, 2), 0);
    for (int f = 0; f < 10; f++)
        assert_int_equal(cs_dicom_frame_decode(d, f, c + fs * f, fs), 0);
    assert_memory_equal(a, c, fs * 10);
    /* strings: absent, too small, present */
    char s[8];
    assert_int_equal(cs_dicom_get_string(d, CS_DICOM_TAG(0x0009, 0x0001), s, sizeof s),
                     CS_ENOTFOUND);
    assert_int_equal(cs_dicom_get_string(d, CS_DICOM_TAG(0x0008, 0x0018), s, sizeof s), CS_ERANGE);
    char uid[65];
    assert_int_equal(cs_dicom_get_string(d, CS_DICOM_TAG(0x0008, 0x0018), uid, sizeof uid), 0);
    assert_string_equal(uid, in.sop_instance_uid);
    assert_int_equal(cs_dicom_get_string(d, CS_DICOM_TAG(0x0002, 0x0010), uid, sizeof uid), 0);
    assert_string_equal(uid, CS_DICOM_TS_JLS_LL);
    /* encoded frame: what the fragment holds */
    cs_buf *enc = NULL;
    assert_int_equal(cs_dicom_frame_encoded(d, 3, &enc), 0);
    assert_int_equal(cs_buf_data(enc)[0], 0xFF);
    assert_int_equal(cs_buf_data(enc)[1], 0xD8);
    cs_buf_unref(enc);
    /* a transcode to an unknown syntax is refused, the handle stays usable */
    cs_dicom_transcode_opts o = CS_DICOM_TRANSCODE_OPTS_INIT;
    o.transfer_syntax = "1.2.3";
    assert_int_equal(cs_dicom_transcode(d, &o), CS_EINVAL);
    o.transfer_syntax = CS_DICOM_TS_JPEG_BASE; /* 12-bit data */
    assert_int_equal(cs_dicom_transcode(d, &o), CS_EINVAL);
    assert_non_null(strstr(cs_error_last(), "8-bit"));
    assert_int_equal(cs_dicom_frame_decode(d, 9, a, fs), 0);
    /* JSON has no pixel data */
    cs_buf *j = NULL;
    assert_int_equal(cs_dicom_to_json(d, &j), 0);
    assert_int_equal(cs_buf_data(j)[0], '{');
    char *txt = malloc(cs_buf_size(j) + 1); /* not NUL-terminated in the buffer */
    assert_non_null(txt);
    memcpy(txt, cs_buf_data(j), cs_buf_size(j));
    txt[cs_buf_size(j)] = 0;
    assert_null(strstr(txt, "\"7FE00010\""));
    assert_non_null(strstr(txt, "\"00080018\""));
    free(txt);
    cs_buf_unref(j);
    free(a);
    free(c);
    cs_dicom_free(d);
    free(b.p);
    cs_dicom_free(NULL);
    assert_int_equal(cs_dicom_open(&d, "/nonexistent/x.dcm"), CS_ENOTFOUND);
}

/* Syntaxes DCMTK 3.6.7 cannot write: save gives the original bytes back,
 * edits are refused, transcoding away from them works. */
static void dicom__unwritable_syntax(void **state)
{
    (void)state;
    blob b = load("HTJ2K_08_RGB.dcm");
    cs_dicom *d = NULL;
    assert_int_equal(cs_dicom_open_mem(&d, b.p, b.n), 0);
    cs_buf *out = NULL;
    assert_int_equal(cs_dicom_save_mem(d, &out), 0);
    assert_int_equal(cs_buf_size(out), b.n);
    assert_memory_equal(cs_buf_data(out), b.p, b.n);
    cs_buf_unref(out);
    assert_int_equal(cs_dicom_deidentify(d), CS_EINVAL);
    assert_non_null(strstr(cs_error_last(), "DCMTK"));
    cs_dicom_info in;
    cs_dicom_get_info(d, &in);
    size_t fs = cs_dicom_frame_size(&in);
    uint8_t *a = malloc(fs), *c = malloc(fs);
    assert_int_equal(cs_dicom_frame_decode(d, 0, a, fs), 0);
    cs_dicom_transcode_opts o = CS_DICOM_TRANSCODE_OPTS_INIT; /* JPEG-LS lossless */
    assert_int_equal(cs_dicom_transcode(d, &o), 0);
    cs_dicom_get_info(d, &in);
    assert_string_equal(in.transfer_syntax, CS_DICOM_TS_JLS_LL);
    assert_int_equal(cs_dicom_frame_decode(d, 0, c, fs), 0);
    assert_memory_equal(a, c, fs); /* lossless: the HTJ2K decode, bit for bit */
    assert_int_equal(cs_dicom_deidentify(d), 0);
    free(a);
    free(c);
    cs_dicom_free(d);
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dicom__truncated),
        cmocka_unit_test(dicom__huge_length),
        cmocka_unit_test(dicom__huge_length_in_sequence),
        cmocka_unit_test(dicom__fragment_past_eof),
        cmocka_unit_test(dicom__unknown_syntax),
        cmocka_unit_test(dicom__corrupt_jpegls),
        cmocka_unit_test(dicom__corrupt_j2k),
        cmocka_unit_test(dicom__corrupt_rle),
        cmocka_unit_test(dicom__corrupt_jpeg),
        cmocka_unit_test(dicom__corrupt_jpeg_lossless),
        cmocka_unit_test(dicom__corrupt_jpegls_t87),
        cmocka_unit_test(dicom__jpegls_four_components),
        cmocka_unit_test(dicom__ranges),
        cmocka_unit_test(dicom__unwritable_syntax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
