/* Private to core/tiles: resampling of packed RGB the way Pillow does it,
 * so made tiles match openslide-python's DeepZoomGenerator (which scales
 * with Image.thumbnail: a box reduce by floor(f/2), then Lanczos-3). */
#ifndef CS_RESAMPLE_H
#define CS_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"

/* The last few coefficient sets, reused across calls; one per thread (not
 * thread-safe). NULL is allowed wherever a cache is taken. */
typedef struct cs_resample_cache cs_resample_cache;
CS_INTERNAL int cs_resample_cache_new(cs_resample_cache **out);
CS_INTERNAL void cs_resample_cache_free(cs_resample_cache *c);

/* Box-reduce the @p w x @p h image at @p src by @p k in both directions,
 * averaging partial blocks at the right and bottom edges (Pillow's reduce).
 * Output is ceil(w/k) x ceil(h/k). */
CS_INTERNAL void cs_reduce_rgb(uint8_t *dst, size_t dst_stride, const uint8_t *src,
                               size_t src_stride, int w, int h, int k);

/* Lanczos-3 resample of the source rectangle (sx, sy, sw, sh), fractional,
 * of @p src (src_w x src_h) to @p dst (dw x dh), with Pillow's support
 * scaling, edge clamping and 22-bit fixed point; horizontal pass first.
 * An exact 1:1 copy at an integer offset is a plain copy. @return 0 or
 * CS_ENOMEM. */
CS_INTERNAL int cs_resample_rgb(cs_resample_cache *cache, uint8_t *dst, size_t dst_stride, int dw,
                                int dh, const uint8_t *src, size_t src_stride, int src_w, int src_h,
                                double sx, double sy, double sw, double sh);

/* The same for one 8-bit plane (Y, Cb or Cr). */
CS_INTERNAL int cs_resample_plane(cs_resample_cache *cache, uint8_t *dst, size_t dst_stride, int dw,
                                  int dh, const uint8_t *src, size_t src_stride, int src_w,
                                  int src_h, double sx, double sy, double sw, double sh);

#endif
