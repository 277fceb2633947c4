/* viewer/geom: DeepZoom pyramid geometry and tile keys (pure functions).
 *
 * Mirrors core/tiles (openslide-python's DeepZoomGenerator): level dims are
 * the level-0 dims halved with rounding up until 1x1, level z has downsample
 * 2^(nlevels-1-z), and tile (col, row) holds level pixels starting at
 * col*T - (col ? overlap : 0). A tile shows the level-0 rectangle
 * [x0, x0 + w0) x [y0, y0 + h0) scaled to its zw x zh pixels, where w0 is
 * clipped at the slide edge, exactly as the server makes it; drawing tiles on
 * that rectangle puts every pixel where OpenSlide has it. */
#ifndef VW_GEOM_H
#define VW_GEOM_H

#include <stdint.h>

#define VW_MAX_LEVELS 64

typedef struct {
    int64_t w0, h0; /**< level-0 size */
    int tile, overlap;
    int nlevels;
    int64_t lw[VW_MAX_LEVELS], lh[VW_MAX_LEVELS];     /**< level sizes */
    int64_t cols[VW_MAX_LEVELS], rows[VW_MAX_LEVELS]; /**< tile grid per level */
} vw_geom;

typedef struct {
    int64_t zx, zy; /**< level-pixel origin of the tile (overlap included) */
    int zw, zh;     /**< tile size in pixels */
    int64_t x0, y0; /**< level-0 rectangle the tile shows */
    int64_t w0, h0;
} vw_tile_rect;

/** A tile as one integer; never 0 (bit 63 is always set). */
typedef uint64_t vw_key;

static inline vw_key vw_key_make(int level, int64_t col, int64_t row)
{
    return (1ull << 63) | ((uint64_t)level << 56) | ((uint64_t)col << 28) | (uint64_t)row;
}
static inline int vw_key_level(vw_key k)
{
    return (int)((k >> 56) & 0x3f);
}
static inline int64_t vw_key_col(vw_key k)
{
    return (int64_t)((k >> 28) & 0xfffffff);
}
static inline int64_t vw_key_row(vw_key k)
{
    return (int64_t)(k & 0xfffffff);
}

/** @return 0, or CS_EINVAL for a bad size or tile geometry (message set). */
int vw_geom_init(vw_geom *g, int64_t w0, int64_t h0, int tile, int overlap);
/** Level-0 pixels per pixel of @p level (a power of two). */
double vw_geom_downsample(const vw_geom *g, int level);
void vw_geom_tile_rect(const vw_geom *g, int level, int64_t col, int64_t row, vw_tile_rect *out);
/** The level OpenSeadragon draws at @p zoom (screen px per level-0 px): the
 *  smallest level whose scale is at least @p zoom, else the finest. */
int vw_geom_level_for_zoom(const vw_geom *g, double zoom);
/** The finest level no larger than @p max_px on either side (prefetched). */
int vw_geom_base_level(const vw_geom *g, int max_px);

#endif
