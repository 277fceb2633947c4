/* viewer/render: the view, which tiles it needs, and the compositor.
 *
 * A view is the level-0 position of the screen's top-left corner and a zoom
 * (screen pixels per level-0 pixel). The compositor draws it into an XRGB8888
 * frame buffer by exact bilinear resampling: the centre of screen pixel
 * (i, j) is level-0 point (x + (i + 0.5) / zoom, y + (j + 0.5) / zoom), mapped
 * into the tile that covers it through that tile's own level-0 rectangle
 * (geom.h), with taps crossing into neighbour tiles, so there are no seams
 * and no sub-pixel shifts. Where a tile of the target level is missing, the
 * finest loaded ancestor is drawn stretched, over the always-loaded base
 * level, so the screen is never blank once the base level is in.
 * Render thread only. */
#ifndef VW_RENDER_H
#define VW_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "geom.h"

#define VW_BACKGROUND 0x303030u

typedef struct {
    double x, y; /**< level-0 position of the top-left corner */
    double zoom; /**< screen pixels per level-0 pixel */
    int w, h;    /**< screen size */
} vw_view;

typedef struct {
    int level;     /**< DZI level drawn (target) */
    int n_visible; /**< target-level tiles on screen */
    int n_ready;   /**< ... of them loaded and drawn */
    int n_failed;  /**< ... of them that failed (drawn from a coarser level) */
    int covered;   /**< every on-slide pixel was drawn from some tile */
    size_t bytes;  /**< encoded bytes of the loaded visible target tiles */
} vw_frame_stats;

typedef struct vw_render vw_render;

/** @param base_level the prefetched level (every tile up to it is wanted first). */
int vw_render_new(vw_render **out, const vw_geom *g, int base_level);
void vw_render_free(vw_render *r);

/** Draw @p v into @p fb (@p pitch pixels per row) and describe the frame.
 *  Marks every tile it reads as used in the cache's current frame. */
void vw_render_compose(vw_render *r, vw_cache *c, const vw_view *v, uint32_t *fb, int pitch,
                       vw_frame_stats *st);

/** The tiles to fetch, most wanted first: the prefetch levels, then the
 *  visible target tiles nearest the centre first (these are the first
 *  *n_urgent), then a ring of @p ring tiles around them; tiles in @p c are
 *  left out unless due for a retry (vw_cache_wants()).
 *  @return the count; *out points into @p r, valid until the next call. */
size_t vw_render_wanted(vw_render *r, vw_cache *c, const vw_view *v, int ring, const vw_key **out,
                        size_t *n_urgent);

/** Zoom at which the whole slide fits the screen. */
double vw_view_fit_zoom(const vw_view *v, const vw_geom *g);
/** Fit the whole slide, centred. */
void vw_view_fit(vw_view *v, const vw_geom *g);
/** Multiply the zoom by @p factor keeping the level-0 point under screen
 *  point (@p sx, @p sy) in place; the zoom stays within sane limits. */
void vw_view_zoom_at(vw_view *v, const vw_geom *g, double factor, double sx, double sy);
/** Keep part of the slide on screen. */
void vw_view_clamp(vw_view *v, const vw_geom *g);

#endif
