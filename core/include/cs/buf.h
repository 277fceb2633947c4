/* Refcounted byte buffers.
 *
 * Encoded tiles and frames live in a cs_buf so that the cache and every
 * response that sends them share one copy. The count is atomic: ref and unref
 * are thread-safe; the bytes are immutable once shared. */
#ifndef CS_BUF_H
#define CS_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"

typedef struct cs_buf cs_buf;

/** Allocate @p size bytes with refcount 1. @return 0 or CS_ENOMEM. */
CS_API int cs_buf_new(cs_buf **out, size_t size);
/** Allocate and copy @p size bytes from @p src. */
CS_API int cs_buf_new_copy(cs_buf **out, const void *src, size_t size);
/** Take a reference; returns @p b. */
CS_API cs_buf *cs_buf_ref(cs_buf *b);
/** Drop a reference; frees at zero. NULL is a no-op. */
CS_API void cs_buf_unref(cs_buf *b);
CS_API uint8_t *cs_buf_data(cs_buf *b);
CS_API size_t cs_buf_size(const cs_buf *b);
/** Shrink the logical size (never grows); for buffers filled after allocation. */
CS_API void cs_buf_set_size(cs_buf *b, size_t size);

#endif
