/* codecs/jpeg: TurboJPEG encode, scaled decode and lossless crop.
 * One cs_jpeg per thread: TurboJPEG handles are not thread-safe. */
#include "cs/jpeg.h"

#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "cs/err.h"

struct cs_jpeg {
    tjhandle enc, dec, xform;
};

int cs_jpeg_new(cs_jpeg **out)
{
    cs_jpeg *j = calloc(1, sizeof(*j));
    if (!j)
        return cs_error_set(CS_ENOMEM, "out of memory creating JPEG codec");
    j->enc = tjInitCompress();
    j->dec = tjInitDecompress();
    j->xform = tjInitTransform();
    if (!j->enc || !j->dec || !j->xform) {
        cs_jpeg_free(j);
        return cs_error_set(CS_ENOMEM, "cannot initialise TurboJPEG");
    }
    *out = j;
    return 0;
}

void cs_jpeg_free(cs_jpeg *j)
{
    if (!j)
        return;
    if (j->enc)
        tjDestroy(j->enc);
    if (j->dec)
        tjDestroy(j->dec);
    if (j->xform)
        tjDestroy(j->xform);
    free(j);
}

/* Copy TurboJPEG's output into a refcounted buffer sized to fit. */
static int take_output(cs_buf **out, unsigned char *data, unsigned long size)
{
    int r = cs_buf_new_copy(out, data, size);
    tjFree(data);
    return r;
}

int cs_jpeg_encode_rgb(cs_jpeg *j, cs_buf **out, const uint8_t *rgb, int w, int h, size_t stride,
                       int quality)
{
    if (w <= 0 || h <= 0 || quality < 1 || quality > 100)
        return cs_error_set(CS_EINVAL, "bad JPEG encode request %dx%d q%d", w, h, quality);
    unsigned char *data = NULL;
    unsigned long size = 0;
    int sub = TJSAMP_420;
    if (w * h < 64 * 64) { /* a thumbnail's few pixels: no chroma smearing */
        sub = TJSAMP_444;
        quality = quality < 90 ? 90 : quality;
    }
    if (tjCompress2(j->enc, rgb, w, (int)stride, h, TJPF_RGB, &data, &size, sub, quality, 0) != 0) {
        tjFree(data);
        return cs_error_set(CS_EFORMAT, "JPEG encode failed: %s", tjGetErrorStr2(j->enc));
    }
    return take_output(out, data, size);
}

int cs_jpeg_encode_gray(cs_jpeg *j, cs_buf **out, const uint8_t *grey, int w, int h, size_t stride,
                        int quality)
{
    if (w <= 0 || h <= 0 || quality < 1 || quality > 100)
        return cs_error_set(CS_EINVAL, "bad JPEG encode request %dx%d q%d", w, h, quality);
    unsigned char *data = NULL;
    unsigned long size = 0;
    if (tjCompress2(j->enc, grey, w, (int)stride, h, TJPF_GRAY, &data, &size, TJSAMP_GRAY, quality,
                    0) != 0) {
        tjFree(data);
        return cs_error_set(CS_EFORMAT, "JPEG encode failed: %s", tjGetErrorStr2(j->enc));
    }
    return take_output(out, data, size);
}

int cs_jpeg_size(cs_jpeg *j, const uint8_t *data, size_t len, int *w, int *h)
{
    int sub, cs;
    if (tjDecompressHeader3(j->dec, data, (unsigned long)len, w, h, &sub, &cs) != 0)
        return cs_error_set(CS_EFORMAT, "not a JPEG image: %s", tjGetErrorStr2(j->dec));
    return 0;
}

/* The size of the image decoded at 1/@p denom (what the DCT scaling gives). */
static int scaled_size(cs_jpeg *j, const uint8_t *data, size_t len, int denom, int *sw, int *sh)
{
    int w = 0, h = 0;
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8)
        return cs_error_set(CS_EINVAL, "JPEG scale 1/%d unsupported", denom);
    int r = cs_jpeg_size(j, data, len, &w, &h);
    *sw = (w + denom - 1) / denom;
    *sh = (h + denom - 1) / denom;
    return r;
}

int cs_jpeg_decode_rgb(cs_jpeg *j, uint8_t *dst, size_t dst_stride, const uint8_t *data, size_t len,
                       int denom)
{
    int sw, sh, r = scaled_size(j, data, len, denom, &sw, &sh);
    if (r < 0)
        return r;
    if (tjDecompress2(j->dec, data, (unsigned long)len, dst, sw, (int)dst_stride, sh, TJPF_RGB,
                      0) != 0 &&
        tjGetErrorCode(j->dec) == TJERR_FATAL)
        return cs_error_set(CS_EFORMAT, "JPEG decode failed: %s", tjGetErrorStr2(j->dec));
    return 0;
}

int cs_jpeg_is_yuv420(cs_jpeg *j, const uint8_t *data, size_t len)
{
    int w, h, sub, cs;
    if (tjDecompressHeader3(j->dec, data, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return cs_error_set(CS_EFORMAT, "not a JPEG image: %s", tjGetErrorStr2(j->dec));
    return sub == TJSAMP_420 && cs == TJCS_YCbCr;
}

int cs_jpeg_decode_yuv420(cs_jpeg *j, uint8_t *const planes[3], const int strides[3],
                          const uint8_t *data, size_t len, int denom)
{
    int sw, sh, r = scaled_size(j, data, len, denom, &sw, &sh);
    if (r < 0)
        return r;
    unsigned char *p[3] = {planes[0], planes[1], planes[2]};
    if (tjDecompressToYUVPlanes(j->dec, data, (unsigned long)len, p, sw, (int *)strides, sh, 0) !=
            0 &&
        tjGetErrorCode(j->dec) == TJERR_FATAL)
        return cs_error_set(CS_EFORMAT, "JPEG decode failed: %s", tjGetErrorStr2(j->dec));
    return 0;
}

int cs_jpeg_encode_yuv420(cs_jpeg *j, cs_buf **out, const uint8_t *const planes[3],
                          const int strides[3], int w, int h, int quality)
{
    if (w <= 0 || h <= 0 || quality < 1 || quality > 100)
        return cs_error_set(CS_EINVAL, "bad JPEG encode request %dx%d q%d", w, h, quality);
    const unsigned char *p[3] = {planes[0], planes[1], planes[2]};
    unsigned char *data = NULL;
    unsigned long size = 0;
    if (tjCompressFromYUVPlanes(j->enc, p, w, strides, h, TJSAMP_420, &data, &size, quality, 0) !=
        0) {
        tjFree(data);
        return cs_error_set(CS_EFORMAT, "JPEG encode failed: %s", tjGetErrorStr2(j->enc));
    }
    return take_output(out, data, size);
}

int cs_jpeg_crop(cs_jpeg *j, cs_buf **out, const uint8_t *data, size_t len, int w, int h)
{
    tjtransform xf;
    memset(&xf, 0, sizeof(xf));
    xf.op = TJXOP_NONE;
    xf.options = TJXOPT_CROP;
    xf.r.x = 0;
    xf.r.y = 0;
    xf.r.w = w;
    xf.r.h = h;
    unsigned char *dst = NULL;
    unsigned long dst_size = 0;
    if (tjTransform(j->xform, data, (unsigned long)len, 1, &dst, &dst_size, &xf, 0) != 0) {
        tjFree(dst);
        return cs_error_set(CS_EFORMAT, "JPEG crop failed: %s", tjGetErrorStr2(j->xform));
    }
    return take_output(out, dst, dst_size);
}
