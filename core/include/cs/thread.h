/* Named threads, a small worker pool and the monotonic clock. */
#ifndef CS_THREAD_H
#define CS_THREAD_H

#include <stdint.h>

#include "cs/common.h"

typedef struct cs_thread cs_thread;

/** Start a thread named @p name (at most 15 characters are kept, as the
 *  kernel allows). @return 0 or CS_ENOMEM/CS_EAGAIN. */
CS_API int cs_thread_start(cs_thread **out, const char *name, void (*fn)(void *userdata),
                           void *userdata);
/** Wait for the thread and free the handle. NULL is a no-op. */
CS_API void cs_thread_join(cs_thread *t);
/** Lower the calling thread's priority by @p n nice steps (Linux nices
 *  threads one by one). @return 0, or CS_EIO (the message says why). */
CS_API int cs_thread_nice(int n);

/** Monotonic time in nanoseconds. */
CS_API int64_t cs_clock_ns(void);
/** Wall-clock time (CLOCK_REALTIME) in ns: for stamps compared across
 *  processes or machines (a frame's capture time), never for intervals. */
CS_API int64_t cs_clock_wall_ns(void);
/** Process CPU time (all threads) in nanoseconds. */
CS_API int64_t cs_clock_cpu_ns(void);

typedef struct cs_pool cs_pool;

/** A fixed set of @p nthreads workers fed by a bounded queue of @p depth jobs. */
CS_API int cs_pool_new(cs_pool **out, const char *name, int nthreads, int depth);
/** Queue a job without blocking. @return 0, CS_EAGAIN when the queue is full. */
CS_API int cs_pool_try_submit(cs_pool *p, void (*fn)(void *userdata), void *userdata);
/** Finish queued jobs, stop the workers, free. NULL is a no-op. */
CS_API void cs_pool_free(cs_pool *p);

#endif
