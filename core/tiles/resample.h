/* Private to core/tiles: area resampling of packed RGB. */
#ifndef CS_RESAMPLE_H
#define CS_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"

/* Resample the source rectangle (sx, sy, sw, sh), in source pixels and
 * possibly fractional, of @p src (src_w x src_h, @p src_stride) to
 * @p dst (dw x dh, @p dst_stride). Downscaling averages each output pixel's
 * footprint (area filter); upscaling interpolates bilinearly. Exact integer
 * factors take fast paths (copy, k x k box). @return 0 or CS_ENOMEM. */
CS_INTERNAL int cs_resample_rgb(uint8_t *dst, size_t dst_stride, int dw, int dh, const uint8_t *src,
                                size_t src_stride, int src_w, int src_h, double sx, double sy,
                                double sw, double sh);

#endif
