/* Tiles of one slide: DeepZoom geometry and JPEG tile production.
 *
 * DeepZoom levels follow openslide-python's DeepZoomGenerator: level dims
 * are the level-0 dims halved with rounding up until 1x1; level z has
 * downsample 2^(nlevels-1-z). A tile's pixels come, in order of preference:
 *
 *  1. passthrough: the slide level OpenSlide would pick has exactly the DZI
 *     downsample, stores JPEG tiles on the DZI grid, and the request is one
 *     stored tile: its bytes are sent as stored (edge tiles losslessly cropped);
 *  2. made from stored tiles: decoded with libjpeg-turbo, using DCT scaling
 *     (1/2, 1/4, 1/8) for coarser levels, then area-resampled and encoded;
 *  3. rendered by OpenSlide's read_region (JPEG 2000, Deflate, other vendors).
 *
 * The same renderer serves IIIF regions (cs_tiles_get_region()).
 *
 * Thread-safety: cs_tiles_get_* may be called from many threads at once;
 * each thread gets its own JPEG codec state. */
#ifndef CS_TILES_H
#define CS_TILES_H

#include <stddef.h>
#include <stdint.h>

#include "cs/buf.h"
#include "cs/common.h"
#include "cs/slide.h"
#include "cs/thread.h"

typedef struct cs_tiles cs_tiles;

typedef struct {
    size_t size;
    int tile_size; /**< 0: the slide's own stored tile size when tiles can pass
                        through, else 254 */
    int overlap;   /**< -1: 0 when tiles pass through, else 1 */
    int quality;   /**< JPEG quality of made tiles, 1-100 */
    cs_pool *pool; /**< borrowed: a made tile decodes half its stored tiles here
                        (lower latency on an idle server); NULL: all inline */
} cs_tiles_opts;

#define CS_TILES_OPTS_INIT                                                                         \
    {                                                                                              \
        sizeof(cs_tiles_opts), 0, -1, 75, NULL                                                     \
    }

/** How a tile was produced (for stats and tests). */
typedef enum {
    CS_TILES_PASSTHROUGH = 1,
    CS_TILES_CROPPED,   /**< stored tile, losslessly cropped at the edge */
    CS_TILES_FROM_JPEG, /**< decoded from stored JPEG tiles and re-encoded */
    CS_TILES_RENDERED,  /**< through OpenSlide read_region */
} cs_tiles_how;

/** @param slide borrowed; must outlive the cs_tiles. */
CS_API int cs_tiles_new(cs_tiles **out, cs_slide *slide, const cs_tiles_opts *opts);
CS_API void cs_tiles_free(cs_tiles *t);

CS_API int cs_tiles_tile_size(const cs_tiles *t);
CS_API int cs_tiles_overlap(const cs_tiles *t);
CS_API int cs_tiles_quality(const cs_tiles *t);
CS_API int cs_tiles_level_count(const cs_tiles *t);
/** DZI level size in pixels and its tile grid. @return 0 or CS_ERANGE. */
CS_API int cs_tiles_level_info(const cs_tiles *t, int level, int64_t *w, int64_t *h, int64_t *cols,
                               int64_t *rows);

/** The DZI tile as JPEG. @param out receives a new reference.
 *  @param how receives how it was made (may be NULL).
 *  @return 0, CS_ERANGE (level/tile out of range), slide errors. */
CS_API int cs_tiles_get_dzi(cs_tiles *t, cs_buf **out, cs_tiles_how *how, int level, int64_t col,
                            int64_t row);

/** The level-0 rectangle (@p x, @p y, @p w, @p h) scaled to @p out_w x
 *  @p out_h, as JPEG (IIIF). The rectangle must lie inside the slide. */
CS_API int cs_tiles_get_region(cs_tiles *t, cs_buf **out, cs_tiles_how *how, int64_t x, int64_t y,
                               int64_t w, int64_t h, int out_w, int out_h);

/** The same region as packed RGB into a caller buffer (stride out_w*3). */
CS_API int cs_tiles_render_rgb(cs_tiles *t, uint8_t *rgb, int64_t x, int64_t y, int64_t w,
                               int64_t h, int out_w, int out_h);

#endif
