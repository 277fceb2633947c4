/* IIIF Image API 3.0 request parsing and region/size math (pure functions).
 *
 * Supports regions full, square, x,y,w,h and pct:x,y,w,h; sizes max, ^max,
 * w,, ,h, w,h, !w,h, pct:n (each with the ^ upscaling prefix); rotation 0;
 * quality default or color; format jpg. Thread-safe. */
#ifndef CS_IIIF_H
#define CS_IIIF_H

#include <stdint.h>

#include "cs/common.h"

typedef struct {
    int64_t x, y, w, h; /**< region in full-image pixels, clipped to the image */
    int out_w, out_h;   /**< size of the delivered image */
} cs_iiif_request;

/** Parse the four path segments of an image request against an image of
 *  @p width x @p height, with the server's limits.
 *  @return 0; CS_EINVAL (malformed, or an unsupported feature: message says
 *  which), CS_ERANGE (region outside the image or size zero), CS_ETOOBIG
 *  (beyond max_width/max_height/max_area). */
CS_API int cs_iiif_parse(cs_iiif_request *out, int64_t width, int64_t height, const char *region,
                         const char *size, const char *rotation, const char *quality_format,
                         int max_width, int max_height, int64_t max_area);

#endif
