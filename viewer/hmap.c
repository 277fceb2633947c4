/* viewer/hmap: see hmap.h. */
#include "hmap.h"

#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

int vw_hmap_init(vw_hmap *m, size_t cap)
{
    size_t c = 16;
    while (c < cap)
        c <<= 1;
    m->keys = calloc(c, sizeof(*m->keys));
    m->vals = calloc(c, sizeof(*m->vals));
    m->cap = c;
    m->n = 0;
    if (!m->keys || !m->vals) {
        vw_hmap_free(m);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    return 0;
}

void vw_hmap_free(vw_hmap *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}

void vw_hmap_clear(vw_hmap *m)
{
    memset(m->keys, 0, m->cap * sizeof(*m->keys));
    m->n = 0;
}

static size_t find(const vw_hmap *m, uint64_t key)
{
    size_t i = slot_of(key, m->cap);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *vw_hmap_get(const vw_hmap *m, uint64_t key)
{
    size_t i = find(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

int vw_hmap_has(const vw_hmap *m, uint64_t key)
{
    return m->keys[find(m, key)] != 0;
}

static int grow(vw_hmap *m)
{
    vw_hmap bigger;
    if (vw_hmap_init(&bigger, m->cap * 2) < 0)
        return CS_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t j = find(&bigger, m->keys[i]);
            bigger.keys[j] = m->keys[i];
            bigger.vals[j] = m->vals[i];
            bigger.n++;
        }
    vw_hmap_free(m);
    *m = bigger;
    return 0;
}

int vw_hmap_put(vw_hmap *m, uint64_t key, void *val)
{
    if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
        return CS_ENOMEM;
    size_t i = find(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
    return 0;
}

void *vw_hmap_del(vw_hmap *m, uint64_t key)
{
    size_t i = find(m, key);
    if (!m->keys[i])
        return NULL;
    void *old = m->vals[i];
    m->keys[i] = 0;
    m->n--;
    /* backward-shift: move later members of the probe run into the hole */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (m->cap - 1);
        if (!m->keys[j])
            break;
        size_t home = slot_of(m->keys[j], m->cap);
        /* keep j where it is if its home lies cyclically in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        m->keys[j] = 0;
        i = j;
    }
    return old;
}
