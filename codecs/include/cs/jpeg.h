/* JPEG encode, decode (with DCT-domain downscaling) and lossless crop through
 * libjpeg-turbo's TurboJPEG API.
 *
 * A cs_jpeg holds the codec state and is used by one thread at a time; give
 * each worker thread its own. */
#ifndef CS_JPEG_H
#define CS_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "cs/buf.h"
#include "cs/common.h"

typedef struct cs_jpeg cs_jpeg;

CS_API int cs_jpeg_new(cs_jpeg **out);
CS_API void cs_jpeg_free(cs_jpeg *j);

/** Encode packed RGB (@p stride bytes per row) at @p quality (1-100), 4:2:0.
 *  Images under 64x64 pixels (whole-slide thumbnails at the top of a pyramid)
 *  use 4:4:4 and at least quality 90: subsampling would smear their few
 *  pixels' colours. @param out receives a new buffer. */
CS_API int cs_jpeg_encode_rgb(cs_jpeg *j, cs_buf **out, const uint8_t *rgb, int w, int h,
                              size_t stride, int quality);

/** Encode 8-bit greyscale (one byte per pixel) at @p quality: radiographs
 *  and other monochrome images, a third of the bytes of the same as RGB. */
CS_API int cs_jpeg_encode_gray(cs_jpeg *j, cs_buf **out, const uint8_t *grey, int w, int h,
                               size_t stride, int quality);

/** Read the image size. @return 0 or CS_EFORMAT. */
CS_API int cs_jpeg_size(cs_jpeg *j, const uint8_t *data, size_t len, int *w, int *h);

/** Decode to packed RGB at 1/@p denom scale (@p denom 1, 2, 4 or 8; the DCT
 *  does the scaling). The output is ceil(w/denom) x ceil(h/denom) and must fit
 *  the caller's buffer (@p dst_stride bytes per row). */
CS_API int cs_jpeg_decode_rgb(cs_jpeg *j, uint8_t *dst, size_t dst_stride, const uint8_t *data,
                              size_t len, int denom);

/** 1 when the image is YCbCr with 4:2:0 chroma (the planes
 *  cs_jpeg_decode_yuv420() gives), else 0; CS_EFORMAT when not a JPEG. */
CS_API int cs_jpeg_is_yuv420(cs_jpeg *j, const uint8_t *data, size_t len);

/** Decode a YCbCr 4:2:0 JPEG at 1/@p denom into caller planes, without
 *  chroma upsampling or colour conversion: Y is ceil(w/denom) x
 *  ceil(h/denom), Cb and Cr half that (rounded up). @p strides in bytes. */
CS_API int cs_jpeg_decode_yuv420(cs_jpeg *j, uint8_t *const planes[3], const int strides[3],
                                 const uint8_t *data, size_t len, int denom);

/** Encode Y, Cb, Cr planes (Cb and Cr at half size, rounded up) as a 4:2:0
 *  JPEG at @p quality. @param out receives a new buffer. */
CS_API int cs_jpeg_encode_yuv420(cs_jpeg *j, cs_buf **out, const uint8_t *const planes[3],
                                 const int strides[3], int w, int h, int quality);

/** Lossless crop to the top-left @p w x @p h (jpegtran -crop WxH+0+0): for
 *  edge tiles that pass through. @param out receives a new buffer. */
CS_API int cs_jpeg_crop(cs_jpeg *j, cs_buf **out, const uint8_t *data, size_t len, int w, int h);

#endif
