/* Pixel codecs of cs_dicom, one library per transfer syntax: our RLE
 * (PS3.5 Annex G), our JPEG-LS decoder (jls.c; CharLS 2.4 for what it
 * leaves and for encoding), OpenJPEG 2.5 for JPEG 2000 and HTJ2K,
 * TurboJPEG for 8-bit JPEG. Each decoder checks the codestream's
 * geometry against the DICOM attributes before writing a byte, so the
 * output never exceeds cs_dicom_frame_size(). All functions are reentrant:
 * codec state lives on the stack of the call. */
#include <stdlib.h>
#include <string.h>

#include <charls/charls.h>
#include <limits.h>
#include <openjpeg.h>
#include <turbojpeg.h>

#include "cs/err.h"

#include "dicom_internal.h"

int cs_dicom_out_bytes(const cs_dicom_info *info)
{
    return info->bits_allocated <= 8 ? 1 : 2;
}

/* OR of all 16-bit values: a read-only pass, cheaper than rewriting when
 * (as usual) nothing is out of range. */
static uint16_t or16(const uint16_t *p, size_t n)
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= p[i];
    return (uint16_t)(acc | acc >> 16 | acc >> 32 | acc >> 48);
}

void cs_dicom_normalize(const cs_dicom_info *info, void *buf, size_t n)
{
    int bs = info->bits_stored;
    if (bs <= 0)
        return;
    if (cs_dicom_out_bytes(info) == 1) {
        if (bs >= 8 || info->bits_allocated == 1)
            return;
        uint8_t *p = buf;
        uint8_t mask = (uint8_t)((1u << bs) - 1);
        for (size_t i = 0; i < n; i++) {
            uint8_t v = p[i] & mask;
            if (info->pixel_signed && (v >> (bs - 1)) & 1)
                v |= (uint8_t)~mask;
            p[i] = v;
        }
        return;
    }
    if (bs >= 16)
        return;
    uint16_t *p = buf;
    uint16_t mask = (uint16_t)((1u << bs) - 1);
    uint16_t sign = (uint16_t)(1u << (bs - 1));
    if (info->pixel_signed) {
        for (size_t i = 0; i < n; i++) {
            uint16_t v = p[i] & mask;
            p[i] = (uint16_t)((v ^ sign) - sign);
        }
    } else if (or16(p, n) & (uint16_t)~mask) {
        for (size_t i = 0; i < n; i++)
            p[i] &= mask;
    }
}

void cs_dicom_normalize_decoded(const cs_dicom_info *info, void *buf, size_t n)
{
    int bs = info->bits_stored;
    int ob = cs_dicom_out_bytes(info);
    if (info->pixel_signed || bs <= 0 || bs >= ob * 8 || info->bits_allocated == 1) {
        cs_dicom_normalize(info, buf, n);
        return;
    }
    if (ob == 1) {
        uint8_t *p = buf, max = (uint8_t)((1u << bs) - 1);
        for (size_t i = 0; i < n; i++)
            p[i] = p[i] > max ? max : p[i];
    } else {
        uint16_t *p = buf, max = (uint16_t)((1u << bs) - 1);
        if (!(or16(p, n) & (uint16_t)~max))
            return;
        for (size_t i = 0; i < n; i++)
            p[i] = p[i] > max ? max : p[i];
    }
}

static size_t frame_bytes(const cs_dicom_info *info)
{
    return (size_t)info->rows * (size_t)info->cols * (size_t)info->samples *
           (size_t)cs_dicom_out_bytes(info);
}

/* ---- RLE (PS3.5 Annex G) ---- */

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Decode one PackBits segment into every @p step-th byte of dst. */
static int rle_segment(const uint8_t *s, size_t n, uint8_t *dst, size_t count, size_t step)
{
    size_t i = 0, o = 0;
    while (o < count && i < n) {
        int c = (int8_t)s[i++];
        if (c >= 0) {
            size_t len = (size_t)c + 1;
            if (i + len > n || o + len > count)
                return -1;
            if (step == 1) {
                memcpy(dst + o, s + i, len);
            } else {
                for (size_t k = 0; k < len; k++)
                    dst[(o + k) * step] = s[i + k];
            }
            i += len;
            o += len;
        } else if (c != -128) {
            size_t len = (size_t)(1 - c);
            if (i >= n || o + len > count)
                return -1;
            uint8_t v = s[i++];
            if (step == 1) {
                memset(dst + o, v, len);
            } else {
                for (size_t k = 0; k < len; k++)
                    dst[(o + k) * step] = v;
            }
            o += len;
        }
    }
    return o == count ? 0 : -1;
}

int cs_dicom_rle_decode(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst,
                        size_t cap)
{
    int ob = cs_dicom_out_bytes(info);
    if (info->bits_allocated != 8 && info->bits_allocated != 16)
        return cs_error_set(CS_EFORMAT, "RLE: Bits Allocated %d not supported",
                            info->bits_allocated);
    size_t need = frame_bytes(info);
    if (cap < need)
        return cs_error_set(CS_ERANGE, "frame buffer too small");
    if (n < 64)
        return cs_error_set(CS_EFORMAT, "RLE: fragment of %zu bytes has no 64-byte header", n);
    uint32_t nseg = rd32le(src);
    uint32_t want = (uint32_t)(info->samples * ob);
    if (nseg != want || nseg > 15)
        return cs_error_set(CS_EFORMAT, "RLE: %u segments, expected %u", nseg, want);
    size_t pixels = (size_t)info->rows * (size_t)info->cols;
    uint8_t *out = dst;
    for (uint32_t s = 0; s < nseg; s++) {
        uint32_t off = rd32le(src + 4 + 4 * s);
        uint32_t end = (s + 1 < nseg) ? rd32le(src + 8 + 4 * s) : (uint32_t)n;
        if (off < 64 || off > end || end > n)
            return cs_error_set(CS_EFORMAT, "RLE: segment %u offsets %u..%u outside %zu bytes", s,
                                off, end, n);
        /* Segment s is byte (s % ob) (0 = most significant) of sample s / ob. */
        uint32_t sample = s / (uint32_t)ob, byte = s % (uint32_t)ob;
        size_t pos = (size_t)sample * (size_t)ob;
        if (ob == 2) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            pos += byte == 0 ? 1 : 0;
#else
            pos += byte;
#endif
        }
        if (rle_segment(src + off, end - off, out + pos, pixels, (size_t)info->samples * ob) != 0)
            return cs_error_set(CS_EFORMAT, "RLE: segment %u is corrupt or short", s);
    }
    return 0;
}

/* ---- JPEG-LS (jls.c, CharLS for the rest) ---- */

static void interleave(const uint8_t *planar, uint8_t *dst, size_t pixels, int samples, int ob)
{
    for (int s = 0; s < samples; s++) {
        const uint8_t *p = planar + (size_t)s * pixels * ob;
        if (ob == 1) {
            for (size_t i = 0; i < pixels; i++)
                dst[i * samples + s] = p[i];
        } else {
            const uint16_t *q = (const uint16_t *)(const void *)p;
            uint16_t *d = (uint16_t *)(void *)dst;
            for (size_t i = 0; i < pixels; i++)
                d[i * samples + s] = q[i];
        }
    }
}

/* CharLS, for what jls.c leaves to it (and CS_JLS_CHARLS=1: the tests'
 * reference). */
static int jls_decode_charls(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst)
{
    charls_jpegls_decoder *dec = charls_jpegls_decoder_create();
    if (!dec)
        return cs_error_set(CS_ENOMEM, "JPEG-LS: no decoder");
    int rc = 0;
    uint8_t *tmp = NULL;
    charls_frame_info fi;
    charls_interleave_mode ilv;
    charls_jpegls_errc e = charls_jpegls_decoder_set_source_buffer(dec, src, n);
    if (!e)
        e = charls_jpegls_decoder_read_header(dec);
    if (!e)
        e = charls_jpegls_decoder_get_frame_info(dec, &fi);
    if (!e)
        e = charls_jpegls_decoder_get_interleave_mode(dec, &ilv);
    if (e) {
        rc = cs_error_set(CS_EFORMAT, "JPEG-LS header: %s", charls_get_error_message(e));
        goto out;
    }
    int ob = cs_dicom_out_bytes(info);
    int cb = fi.bits_per_sample <= 8 ? 1 : 2;
    if ((int)fi.width != info->cols || (int)fi.height != info->rows ||
        fi.component_count != info->samples || fi.bits_per_sample > 16 || cb > ob) {
        rc = cs_error_set(CS_EFORMAT,
                          "JPEG-LS frame is %ux%u, %d components of %d bits; the dataset says "
                          "%dx%d, %d samples of %d bits",
                          fi.width, fi.height, fi.component_count, fi.bits_per_sample, info->cols,
                          info->rows, info->samples, info->bits_allocated);
        goto out;
    }
    size_t pixels = (size_t)fi.width * fi.height;
    size_t dsize = pixels * (size_t)fi.component_count * (size_t)cb;
    int direct = cb == ob && (info->samples == 1 || ilv != CHARLS_INTERLEAVE_MODE_NONE);
    uint8_t *target = dst;
    if (!direct) {
        tmp = malloc(dsize);
        if (!tmp) {
            rc = cs_error_set(CS_ENOMEM, "JPEG-LS: out of memory");
            goto out;
        }
        target = tmp;
    }
    e = charls_jpegls_decoder_decode_to_buffer(dec, target, dsize, 0);
    if (e) {
        rc = cs_error_set(CS_EFORMAT, "JPEG-LS decode: %s", charls_get_error_message(e));
        goto out;
    }
    if (!direct) {
        if (cb == ob) {
            interleave(tmp, dst, pixels, info->samples, ob);
        } else { /* 8-bit codestream, 16-bit dataset */
            uint16_t *d = dst;
            size_t ns = pixels * (size_t)info->samples;
            if (ilv == CHARLS_INTERLEAVE_MODE_NONE && info->samples > 1) {
                for (int s = 0; s < info->samples; s++)
                    for (size_t i = 0; i < pixels; i++)
                        d[i * info->samples + s] = tmp[(size_t)s * pixels + i];
            } else {
                for (size_t i = 0; i < ns; i++)
                    d[i] = tmp[i];
            }
        }
    }
out:
    free(tmp);
    charls_jpegls_decoder_destroy(dec);
    return rc;
}

int cs_dicom_jls_decode(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst,
                        size_t cap)
{
    size_t need = frame_bytes(info);
    if (cap < need)
        return cs_error_set(CS_ERANGE, "frame buffer too small");
    const char *env = getenv("CS_JLS_CHARLS");
    if (!(env && env[0] == '1')) {
        int rc = cs_dicom_jls_decode_own(info, src, n, dst, cap);
        if (rc != 1)
            return rc;
    }
    return jls_decode_charls(info, src, n, dst);
}

int cs_dicom_jls_encode(const cs_dicom_info *info, const void *frame, int near, uint8_t **out,
                        size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    charls_jpegls_encoder *enc = charls_jpegls_encoder_create();
    if (!enc)
        return cs_error_set(CS_ENOMEM, "JPEG-LS: no encoder");
    int ob = cs_dicom_out_bytes(info);
    int bits = info->bits_stored;
    /* Signed data: the codec codes the bit pattern (masked to Bits Stored). */
    charls_frame_info fi = {(uint32_t)info->cols, (uint32_t)info->rows, bits, info->samples};
    int rc = 0;
    uint8_t *buf = NULL, *masked = NULL;
    size_t pixels = (size_t)info->rows * info->cols, ns = pixels * (size_t)info->samples;
    const void *srcp = frame;
    if (info->pixel_signed && bits < ob * 8) {
        masked = malloc(ns * (size_t)ob);
        if (!masked) {
            rc = cs_error_set(CS_ENOMEM, "JPEG-LS: out of memory");
            goto out;
        }
        if (ob == 1) {
            const uint8_t *s = frame;
            for (size_t i = 0; i < ns; i++)
                masked[i] = (uint8_t)(s[i] & ((1u << bits) - 1));
        } else {
            const uint16_t *s = frame;
            uint16_t *d = (uint16_t *)(void *)masked;
            for (size_t i = 0; i < ns; i++)
                d[i] = (uint16_t)(s[i] & ((1u << bits) - 1));
        }
        srcp = masked;
    }
    size_t cap = 0;
    charls_jpegls_errc e = charls_jpegls_encoder_set_frame_info(enc, &fi);
    if (!e && near > 0)
        e = charls_jpegls_encoder_set_near_lossless(enc, near);
    if (!e && info->samples > 1)
        e = charls_jpegls_encoder_set_interleave_mode(enc, CHARLS_INTERLEAVE_MODE_SAMPLE);
    if (!e)
        e = charls_jpegls_encoder_get_estimated_destination_size(enc, &cap);
    if (e) {
        rc = cs_error_set(CS_EINVAL, "JPEG-LS encoder: %s", charls_get_error_message(e));
        goto out;
    }
    buf = malloc(cap);
    if (!buf) {
        rc = cs_error_set(CS_ENOMEM, "JPEG-LS: out of memory");
        goto out;
    }
    e = charls_jpegls_encoder_set_destination_buffer(enc, buf, cap);
    if (!e)
        e = charls_jpegls_encoder_encode_from_buffer(enc, srcp, ns * (size_t)ob, 0);
    if (!e)
        e = charls_jpegls_encoder_get_bytes_written(enc, outlen);
    if (e) {
        rc = cs_error_set(CS_EINVAL, "JPEG-LS encode: %s", charls_get_error_message(e));
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    free(buf);
    free(masked);
    charls_jpegls_encoder_destroy(enc);
    return rc;
}

/* ---- JPEG 2000 / HTJ2K (OpenJPEG) ---- */

typedef struct memstream {
    const uint8_t *p;
    size_t n, pos;
} memstream;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T len, void *ud)
{
    memstream *m = ud;
    if (m->pos >= m->n)
        return (OPJ_SIZE_T)-1;
    size_t k = m->n - m->pos < len ? m->n - m->pos : len;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T off, void *ud)
{
    memstream *m = ud;
    if (off < 0) {
        if ((size_t)-off > m->pos)
            return -1;
        m->pos -= (size_t)-off;
        return off;
    }
    size_t room = m->n - m->pos;
    size_t k = (size_t)off > room ? room : (size_t)off;
    m->pos += k;
    return (OPJ_OFF_T)k;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T off, void *ud)
{
    memstream *m = ud;
    if (off < 0 || (size_t)off > m->n)
        return OPJ_FALSE;
    m->pos = (size_t)off;
    return OPJ_TRUE;
}

typedef struct opjmsg {
    char text[200];
} opjmsg;

static void opj_err(const char *msg, void *ud)
{
    opjmsg *m = ud;
    if (!m->text[0]) {
        snprintf(m->text, sizeof m->text, "%s", msg);
        size_t l = strlen(m->text);
        while (l && (m->text[l - 1] == '\n'))
            m->text[--l] = 0;
    }
}

static void opj_quiet(const char *msg, void *ud)
{
    (void)msg;
    (void)ud;
}

int cs_dicom_j2k_decode(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst,
                        size_t cap, int threads)
{
    size_t need = frame_bytes(info);
    if (cap < need)
        return cs_error_set(CS_ERANGE, "frame buffer too small");
    if (n < 12)
        return cs_error_set(CS_EFORMAT, "JPEG 2000: codestream of %zu bytes", n);
    OPJ_CODEC_FORMAT fmt = OPJ_CODEC_J2K;
    if (src[0] == 0 && src[1] == 0 && src[2] == 0 && src[3] == 0x0C && src[4] == 0x6A)
        fmt = OPJ_CODEC_JP2;
    else if (!(src[0] == 0xFF && src[1] == 0x4F && src[2] == 0xFF && src[3] == 0x51))
        return cs_error_set(CS_EFORMAT, "JPEG 2000: no SOC/SIZ marker at the frame start");
    memstream ms = {src, n, 0};
    opjmsg msg = {{0}};
    opj_codec_t *codec = opj_create_decompress(fmt);
    opj_stream_t *st = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_image_t *img = NULL;
    int rc = 0;
    if (!codec || !st) {
        rc = cs_error_set(CS_ENOMEM, "JPEG 2000: no decoder");
        goto out;
    }
    opj_stream_set_user_data(st, &ms, NULL);
    opj_stream_set_user_data_length(st, n);
    opj_stream_set_read_function(st, ms_read);
    opj_stream_set_skip_function(st, ms_skip);
    opj_stream_set_seek_function(st, ms_seek);
    opj_set_error_handler(codec, opj_err, &msg);
    opj_set_warning_handler(codec, opj_quiet, NULL);
    opj_set_info_handler(codec, opj_quiet, NULL);
    opj_dparameters_t par;
    opj_set_default_decoder_parameters(&par);
    if (threads > 1 && opj_has_thread_support())
        opj_codec_set_threads(codec, threads);
    if (!opj_setup_decoder(codec, &par) || !opj_read_header(st, codec, &img) || !img) {
        rc = cs_error_set(CS_EFORMAT, "JPEG 2000 header: %s", msg.text[0] ? msg.text : "corrupt");
        goto out;
    }
    int ob = cs_dicom_out_bytes(info);
    int bad = (int)img->numcomps != info->samples;
    for (OPJ_UINT32 c = 0; !bad && c < img->numcomps; c++) {
        opj_image_comp_t *cp = &img->comps[c];
        bad = cp->dx != 1 || cp->dy != 1 || (int)cp->w != info->cols || (int)cp->h != info->rows ||
              cp->prec > (OPJ_UINT32)(ob * 8) || cp->prec == 0;
    }
    if (bad || (int)(img->x1 - img->x0) != info->cols || (int)(img->y1 - img->y0) != info->rows) {
        rc = cs_error_set(CS_EFORMAT,
                          "JPEG 2000 image is %ux%u with %u components; the dataset says "
                          "%dx%d, %d samples of %d bits",
                          img->x1 - img->x0, img->y1 - img->y0, img->numcomps, info->cols,
                          info->rows, info->samples, info->bits_allocated);
        goto out;
    }
    if (!opj_decode(codec, st, img) || !opj_end_decompress(codec, st)) {
        rc = cs_error_set(CS_EFORMAT, "JPEG 2000 decode: %s", msg.text[0] ? msg.text : "corrupt");
        goto out;
    }
    size_t pixels = (size_t)info->rows * info->cols;
    int ns = info->samples;
    for (int c = 0; c < ns; c++) {
        const OPJ_INT32 *d = img->comps[c].data;
        if (!d) {
            rc = cs_error_set(CS_EFORMAT, "JPEG 2000: component %d not decoded", c);
            goto out;
        }
        if (ob == 1) {
            uint8_t *o = (uint8_t *)dst + c;
            for (size_t i = 0; i < pixels; i++)
                o[i * ns] = (uint8_t)d[i];
        } else {
            uint16_t *o = (uint16_t *)dst + c;
            for (size_t i = 0; i < pixels; i++)
                o[i * ns] = (uint16_t)d[i];
        }
    }
out:
    if (img)
        opj_image_destroy(img);
    if (st)
        opj_stream_destroy(st);
    if (codec)
        opj_destroy_codec(codec);
    return rc;
}

/* ---- JPEG (TurboJPEG, 8 bits) ---- */

int cs_dicom_jpeg_sof(const uint8_t *s, size_t n, int *precision, int *lossless, int *components)
{
    if (n < 4 || s[0] != 0xFF || s[1] != 0xD8)
        return cs_error_set(CS_EFORMAT, "JPEG: no SOI marker at the frame start");
    size_t i = 2;
    while (i + 4 <= n) {
        if (s[i] != 0xFF) {
            i++;
            continue;
        }
        int m = s[i + 1];
        if (m == 0xFF || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            i += (m == 0xFF) ? 1 : 2;
            continue;
        }
        size_t len = (size_t)s[i + 2] << 8 | s[i + 3];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (i + 2 + len > n || len < 8)
                break;
            *precision = s[i + 4];
            *components = s[i + 9];
            *lossless = (m == 0xC3 || m == 0xC7 || m == 0xCB || m == 0xCF);
            return 0;
        }
        if (m == 0xDA || len < 2)
            break;
        i += 2 + len;
    }
    return cs_error_set(CS_EFORMAT, "JPEG: no SOF marker before the scan");
}

int cs_dicom_jpeg8_decode(const cs_dicom_info *info, const uint8_t *src, size_t n, void *dst,
                          size_t cap)
{
    int prec = 0, ll = 0, nc = 0;
    int rc = cs_dicom_jpeg_sof(src, n, &prec, &ll, &nc);
    if (rc)
        return rc;
    if (prec != 8 || ll || cs_dicom_out_bytes(info) != 1)
        return 1;
    if (nc != info->samples || (nc != 1 && nc != 3))
        return cs_error_set(CS_EFORMAT, "JPEG has %d components, the dataset %d samples", nc,
                            info->samples);
    if (cap < frame_bytes(info))
        return cs_error_set(CS_ERANGE, "frame buffer too small");
    if (n > ULONG_MAX)
        return cs_error_set(CS_EFORMAT, "JPEG: frame too large");
    tjhandle h = tjInitDecompress();
    if (!h)
        return cs_error_set(CS_ENOMEM, "JPEG: no decoder");
    int w = 0, ht = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(h, src, (unsigned long)n, &w, &ht, &sub, &cs) != 0) {
        rc = cs_error_set(CS_EFORMAT, "JPEG header: %s", tjGetErrorStr2(h));
        goto out;
    }
    if (w != info->cols || ht != info->rows) {
        rc = cs_error_set(CS_EFORMAT, "JPEG frame is %dx%d, the dataset says %dx%d", w, ht,
                          info->cols, info->rows);
        goto out;
    }
    /* DCMTK converts YCbCr to RGB only when the photometric says YBR; a
     * 3-component YCbCr codestream labelled RGB goes to DCMTK's decoder. */
    if (nc == 3 && cs == TJCS_YCbCr && strncmp(info->photometric, "YBR", 3) != 0) {
        rc = 1;
        goto out;
    }
    if (tjDecompress2(h, src, (unsigned long)n, dst, w, 0, ht, nc == 1 ? TJPF_GRAY : TJPF_RGB, 0) !=
            0 &&
        tjGetErrorCode(h) == TJERR_FATAL) {
        rc = cs_error_set(CS_EFORMAT, "JPEG decode: %s", tjGetErrorStr2(h));
        goto out;
    }
out:
    tjDestroy(h);
    return rc;
}

int cs_dicom_jpeg8_encode(const cs_dicom_info *info, const void *frame, int quality, uint8_t **out,
                          size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (cs_dicom_out_bytes(info) != 1 || info->bits_stored != 8 ||
        (info->samples != 1 && info->samples != 3))
        return cs_error_set(CS_EINVAL, "JPEG baseline needs 8-bit grey or RGB data");
    tjhandle h = tjInitCompress();
    if (!h)
        return cs_error_set(CS_ENOMEM, "JPEG: no encoder");
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int rc = 0;
    int gray = info->samples == 1;
    if (tjCompress2(h, frame, info->cols, 0, info->rows, gray ? TJPF_GRAY : TJPF_RGB, &buf, &len,
                    gray ? TJSAMP_GRAY : TJSAMP_422, quality, 0) != 0) {
        rc = cs_error_set(CS_EINVAL, "JPEG encode: %s", tjGetErrorStr2(h));
        goto out;
    }
    *out = malloc(len);
    if (!*out) {
        rc = cs_error_set(CS_ENOMEM, "JPEG: out of memory");
        goto out;
    }
    memcpy(*out, buf, len);
    *outlen = len;
out:
    tjFree(buf);
    tjDestroy(h);
    return rc;
}
