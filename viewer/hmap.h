/* viewer/hmap: open-addressing hash map from a non-zero uint64 key to a
 * pointer (linear probing, backward-shift deletion, grows at 50% load).
 * One thread at a time. Iterate with `for (i = 0; i < m->cap; i++) if
 * (m->keys[i])`. */
#ifndef VW_HMAP_H
#define VW_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys; /**< 0 = empty slot */
    void **vals;
    size_t cap, n;
} vw_hmap;

/** @return 0 or CS_ENOMEM. */
int vw_hmap_init(vw_hmap *m, size_t cap);
void vw_hmap_free(vw_hmap *m);
void vw_hmap_clear(vw_hmap *m);
/** @return the value or NULL. */
void *vw_hmap_get(const vw_hmap *m, uint64_t key);
int vw_hmap_has(const vw_hmap *m, uint64_t key);
/** Insert or replace. @return 0 or CS_ENOMEM. */
int vw_hmap_put(vw_hmap *m, uint64_t key, void *val);
/** Remove; @return the old value or NULL. */
void *vw_hmap_del(vw_hmap *m, uint64_t key);

#endif
