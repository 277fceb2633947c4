/* Refcounted immutable byte buffers (header and bytes in one allocation). */
#include "cs/buf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

struct cs_buf {
    atomic_int refs;
    size_t size;
    _Alignas(16) uint8_t data[];
};

int cs_buf_new(cs_buf **out, size_t size)
{
    cs_buf *b = malloc(sizeof(*b) + size);
    if (!b)
        return cs_error_set(CS_ENOMEM, "out of memory allocating %zu bytes", size);
    atomic_init(&b->refs, 1);
    b->size = size;
    *out = b;
    return 0;
}

int cs_buf_new_copy(cs_buf **out, const void *src, size_t size)
{
    int r = cs_buf_new(out, size);
    if (r == 0 && size)
        memcpy((*out)->data, src, size);
    return r;
}

cs_buf *cs_buf_ref(cs_buf *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void cs_buf_unref(cs_buf *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

uint8_t *cs_buf_data(cs_buf *b)
{
    return b->data;
}

size_t cs_buf_size(const cs_buf *b)
{
    return b->size;
}

void cs_buf_set_size(cs_buf *b, size_t size)
{
    if (size < b->size)
        b->size = size;
}
