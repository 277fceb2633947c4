/* viewer/cache: see cache.h. */
#include "cache.h"

#include <stdint.h>
#include <stdlib.h>

#include "cs/err.h"

int vw_cache_init(vw_cache *c, size_t budget)
{
    c->used = 0;
    c->budget = budget;
    c->frame = 1;
    return vw_hmap_init(&c->map, 1024);
}

static void drop(vw_cache *c, vw_tile *t)
{
    if (t->px)
        c->used -= (size_t)t->w * t->h * 4;
    free(t->px);
    free(t);
}

void vw_cache_free(vw_cache *c)
{
    for (size_t i = 0; i < c->map.cap; i++)
        if (c->map.keys[i])
            drop(c, c->map.vals[i]);
    vw_hmap_free(&c->map);
}

vw_tile *vw_cache_get(vw_cache *c, vw_key key)
{
    return vw_hmap_get(&c->map, key);
}

vw_tile *vw_cache_put(vw_cache *c, vw_tile_result *r, int pinned)
{
    vw_tile *t = vw_hmap_get(&c->map, r->key);
    if (!t) {
        if (!(t = calloc(1, sizeof(*t))))
            return NULL;
        if (vw_hmap_put(&c->map, r->key, t) < 0) {
            free(t);
            return NULL;
        }
        t->key = r->key;
    } else if (t->px) {
        c->used -= (size_t)t->w * t->h * 4;
        free(t->px);
    }
    t->px = r->px;
    r->px = NULL;
    t->state = r->status == 0 && t->px ? VW_TILE_READY : VW_TILE_FAILED;
    t->fails += t->state == VW_TILE_FAILED;
    t->retry_ns = INT64_MAX;
    t->w = t->state == VW_TILE_READY ? r->w : 0;
    t->h = t->state == VW_TILE_READY ? r->h : 0;
    t->bytes = r->bytes;
    t->pinned = pinned;
    t->last_used = c->frame;
    if (t->px)
        c->used += (size_t)t->w * t->h * 4;
    return t;
}

void vw_cache_fail(vw_cache *c, vw_key key)
{
    vw_tile *t = vw_hmap_get(&c->map, key);
    if (!t)
        return;
    if (t->px) {
        c->used -= (size_t)t->w * t->h * 4;
        free(t->px);
        t->px = NULL;
    }
    t->state = VW_TILE_FAILED;
    t->w = t->h = 0;
    t->retry_ns = INT64_MAX;
}

int vw_cache_wants(vw_cache *c, vw_key key)
{
    vw_tile *t = vw_hmap_get(&c->map, key);
    return !t || (t->state == VW_TILE_FAILED && t->retry_ns <= c->now);
}

static int by_age(const void *a, const void *b)
{
    const vw_tile *x = *(vw_tile *const *)a, *y = *(vw_tile *const *)b;
    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

void vw_cache_trim(vw_cache *c)
{
    if (c->used <= c->budget)
        return;
    vw_tile **cand = malloc(c->map.n * sizeof(*cand));
    if (!cand)
        return;
    size_t n = 0;
    for (size_t i = 0; i < c->map.cap; i++) {
        vw_tile *t = c->map.keys[i] ? c->map.vals[i] : NULL;
        if (t && t->state == VW_TILE_READY && !t->pinned && t->last_used < c->frame)
            cand[n++] = t;
    }
    qsort(cand, n, sizeof(*cand), by_age);
    /* trim to 90% so that eviction runs in batches, not every frame */
    size_t goal = c->budget / 10 * 9;
    for (size_t i = 0; i < n && c->used > goal; i++) {
        vw_hmap_del(&c->map, cand[i]->key);
        drop(c, cand[i]);
    }
    free(cand);
}
