/* viewer/cache: the render thread's decoded tiles, bounded in bytes.
 *
 * Each entry is READY (pixels held) or FAILED (kept, so a broken tile is
 * drawn from a coarser level and asked for again only after retry_ns, or
 * never when the error is permanent). Pinned entries (the
 * prefetched coarse levels) and entries used in the current frame are never
 * evicted; the rest go least recently used first once the pixels exceed the
 * budget. Render thread only. */
#ifndef VW_CACHE_H
#define VW_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "geom.h"
#include "hmap.h"

enum { VW_TILE_READY = 1, VW_TILE_FAILED = 2 };

typedef struct {
    vw_key key;
    int state;
    uint32_t *px; /**< w*h XRGB8888 when READY */
    int w, h;
    size_t bytes; /**< encoded size as received */
    uint64_t last_used;
    int pinned;
    int fails;        /**< failures so far */
    int64_t retry_ns; /**< FAILED: fetch again from then on (INT64_MAX: never) */
} vw_tile;

typedef struct {
    vw_hmap map;
    size_t used, budget; /**< pixel bytes held / allowed */
    uint64_t frame;      /**< current frame number, for LRU */
    int64_t now;         /**< monotonic ns, set by the render loop (for retries) */
} vw_cache;

int vw_cache_init(vw_cache *c, size_t budget);
void vw_cache_free(vw_cache *c);
/** @return the entry or NULL (no entry: not fetched yet). */
vw_tile *vw_cache_get(vw_cache *c, vw_key key);
/** Store a result, taking its pixels; @p pinned protects it from eviction.
 *  @return the entry, or NULL when out of memory. */
vw_tile *vw_cache_put(vw_cache *c, vw_tile_result *r, int pinned);
/** Mark @p key FAILED (e.g. a tile of the wrong size). */
void vw_cache_fail(vw_cache *c, vw_key key);
/** Whether @p key should be fetched: absent, or FAILED and due for a retry. */
int vw_cache_wants(vw_cache *c, vw_key key);
/** Evict until within budget, sparing pinned entries and those used in the
 *  current frame. */
void vw_cache_trim(vw_cache *c);

#endif
