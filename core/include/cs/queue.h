/* Bounded multi-producer queue of pointers.
 *
 * Producers on real-time threads use cs_queue_try_push(), which never blocks;
 * consumers wait with a timeout. cs_queue_close() wakes every waiter; after it
 * pushes fail with CS_ECLOSED and pops drain what is left, then return
 * CS_ECLOSED. Thread-safe. */
#ifndef CS_QUEUE_H
#define CS_QUEUE_H

#include <stddef.h>

#include "cs/common.h"

typedef struct cs_queue cs_queue;

/** @param free_item called on items still queued at cs_queue_free(); may be NULL. */
CS_API int cs_queue_new(cs_queue **out, size_t capacity, void (*free_item)(void *));
CS_API void cs_queue_free(cs_queue *q);
/** @return 0, CS_EAGAIN when full, CS_ECLOSED after close. */
CS_API int cs_queue_try_push(cs_queue *q, void *item);
/** Wait up to @p timeout_ms (-1: forever) for room. @return 0, CS_ETIMEDOUT, CS_ECLOSED. */
CS_API int cs_queue_push(cs_queue *q, void *item, int timeout_ms);
/** Wait up to @p timeout_ms (0: poll, -1: forever). @return 0, CS_ETIMEDOUT, CS_ECLOSED. */
CS_API int cs_queue_pop(cs_queue *q, void **out, int timeout_ms);
CS_API size_t cs_queue_length(cs_queue *q);
CS_API void cs_queue_close(cs_queue *q);

#endif
