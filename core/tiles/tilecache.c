/* core/tiles: sharded LRU cache of encoded tiles.
 *
 * 64 shards, chosen by the key's hash, each a small open hash table plus an
 * LRU list under its own mutex; the byte budget is split evenly. No lock is
 * held while a tile is produced or sent. */
#include "cs/tilecache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#define NSHARDS 64

typedef struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU, most recent first */
    uint64_t hash;
    cs_buf *value;
    size_t cost;
    char key[];
} entry;

typedef struct {
    pthread_mutex_t lock;
    entry **table;
    size_t nbuckets, count, bytes;
    entry *head, *tail;
    uint64_t hits, misses, evictions;
} shard;

struct cs_tilecache {
    size_t shard_budget;
    shard shards[NSHARDS];
};

/* The shard comes from the top bits and the bucket from the low bits, so
 * that the entries of one shard spread over all its buckets. */
#define SHARD_OF(h) ((h) >> 58)

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

int cs_tilecache_new(cs_tilecache **out, size_t max_bytes)
{
    cs_tilecache *c = calloc(1, sizeof(*c));
    if (!c)
        return cs_error_set(CS_ENOMEM, "out of memory creating tile cache");
    c->shard_budget = max_bytes / NSHARDS;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = 256;
        s->table = calloc(s->nbuckets, sizeof(entry *));
        if (!s->table) {
            cs_tilecache_free(c);
            return cs_error_set(CS_ENOMEM, "out of memory creating tile cache");
        }
    }
    *out = c;
    return 0;
}

static void lru_unlink(shard *s, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(shard *s, entry *e)
{
    e->next = s->head;
    e->prev = NULL;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

static void remove_entry(shard *s, entry *e)
{
    entry **pp = &s->table[e->hash % s->nbuckets];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= e->cost;
    cs_buf_unref(e->value);
    free(e);
}

void cs_tilecache_free(cs_tilecache *c)
{
    if (!c)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &c->shards[i];
        while (s->head)
            remove_entry(s, s->head);
        free(s->table);
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

static entry *find(shard *s, uint64_t h, const char *key)
{
    for (entry *e = s->table[h % s->nbuckets]; e; e = e->hnext) {
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static void grow(shard *s)
{
    size_t nb = s->nbuckets * 2;
    entry **t = calloc(nb, sizeof(entry *));
    if (!t)
        return; /* keep the longer chains */
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->table[i];
        while (e) {
            entry *next = e->hnext;
            e->hnext = t[e->hash % nb];
            t[e->hash % nb] = e;
            e = next;
        }
    }
    free(s->table);
    s->table = t;
    s->nbuckets = nb;
}

int cs_tilecache_get(cs_tilecache *c, const char *key, cs_buf **out)
{
    uint64_t h = hash_key(key);
    shard *s = &c->shards[SHARD_OF(h)];
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, h, key);
    if (e) {
        lru_unlink(s, e);
        lru_push_front(s, e);
        *out = cs_buf_ref(e->value);
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->lock);
    return e ? 0 : CS_ENOTFOUND;
}

int cs_tilecache_put(cs_tilecache *c, const char *key, cs_buf *value)
{
    size_t klen = strlen(key);
    size_t cost = sizeof(entry) + klen + 1 + cs_buf_size(value) + 64;
    if (cost > c->shard_budget)
        return 0; /* too big to cache (or caching disabled) */
    uint64_t h = hash_key(key);
    shard *s = &c->shards[SHARD_OF(h)];
    entry *e = malloc(sizeof(entry) + klen + 1);
    if (!e)
        return cs_error_set(CS_ENOMEM, "out of memory caching a tile");
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->cost = cost;
    e->value = cs_buf_ref(value);
    e->prev = e->next = NULL;
    pthread_mutex_lock(&s->lock);
    entry *old = find(s, h, key);
    if (old)
        remove_entry(s, old);
    while (s->bytes + cost > c->shard_budget && s->tail) {
        remove_entry(s, s->tail);
        s->evictions++;
    }
    if (s->count + 1 > s->nbuckets * 2)
        grow(s);
    e->hnext = s->table[h % s->nbuckets];
    s->table[h % s->nbuckets] = e;
    lru_push_front(s, e);
    s->count++;
    s->bytes += cost;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void cs_tilecache_drop_prefix(cs_tilecache *c, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        entry *e = s->head;
        while (e) {
            entry *next = e->next;
            if (strncmp(e->key, prefix, n) == 0)
                remove_entry(s, e);
            e = next;
        }
        pthread_mutex_unlock(&s->lock);
    }
}

void cs_tilecache_get_stats(cs_tilecache *c, cs_tilecache_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->entries += s->count;
        out->bytes += s->bytes;
        pthread_mutex_unlock(&s->lock);
    }
}
