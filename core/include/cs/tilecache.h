/* A byte-bounded cache of encoded tiles shared by every worker thread.
 *
 * Keys are strings ("slide/level/col_row", "slide/iiif/..."). The cache is
 * split into shards, each with its own lock and LRU list, so threads working
 * on different tiles rarely meet; a hit costs one hash and one short lock.
 * Values are refcounted cs_buf: a hit hands out a reference, so an evicted
 * tile that is still being sent stays alive until the send ends.
 * Thread-safe. */
#ifndef CS_TILECACHE_H
#define CS_TILECACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cs/buf.h"
#include "cs/common.h"

typedef struct cs_tilecache cs_tilecache;

typedef struct {
    uint64_t hits, misses, evictions, entries, bytes;
} cs_tilecache_stats;

/** @param max_bytes total budget for values and keys; 0 disables caching. */
CS_API int cs_tilecache_new(cs_tilecache **out, size_t max_bytes);
CS_API void cs_tilecache_free(cs_tilecache *c);

/** @return 0 and a new reference in @p out, or CS_ENOTFOUND. */
CS_API int cs_tilecache_get(cs_tilecache *c, const char *key, cs_buf **out);
/** Insert (or replace) @p key; the cache takes its own reference. */
CS_API int cs_tilecache_put(cs_tilecache *c, const char *key, cs_buf *value);
/** Drop every key starting with @p prefix (a slide that changed or went). */
CS_API void cs_tilecache_drop_prefix(cs_tilecache *c, const char *prefix);
CS_API void cs_tilecache_get_stats(cs_tilecache *c, cs_tilecache_stats *out);

#endif
