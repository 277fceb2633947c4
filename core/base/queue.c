/* Bounded MPMC ring of pointers under one mutex with two condition variables.
 * Contention is low (events, jobs): a lock-free ring is not worth its risk. */
#include "cs/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "cs/err.h"

struct cs_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    void **items;
    size_t cap, head, len;
    int closed;
    void (*free_item)(void *);
};

int cs_queue_new(cs_queue **out, size_t capacity, void (*free_item)(void *))
{
    if (capacity == 0)
        return cs_error_set(CS_EINVAL, "queue capacity must be positive");
    cs_queue *q = calloc(1, sizeof(*q));
    if (!q || !(q->items = calloc(capacity, sizeof(void *)))) {
        free(q);
        return cs_error_set(CS_ENOMEM, "out of memory creating queue");
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    q->cap = capacity;
    q->free_item = free_item;
    *out = q;
    return 0;
}

void cs_queue_free(cs_queue *q)
{
    if (!q)
        return;
    if (q->free_item) {
        for (size_t i = 0; i < q->len; i++)
            q->free_item(q->items[(q->head + i) % q->cap]);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->items);
    free(q);
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait on @p cv until @p ready says so, the queue closes or time runs out. */
static int wait_for(cs_queue *q, pthread_cond_t *cv, int (*ready)(const cs_queue *), int ms)
{
    struct timespec ts;
    if (ms > 0)
        deadline_after(&ts, ms);
    while (!ready(q) && !q->closed) {
        if (ms == 0)
            return CS_ETIMEDOUT;
        if (ms < 0)
            pthread_cond_wait(cv, &q->lock);
        else if (pthread_cond_timedwait(cv, &q->lock, &ts) == ETIMEDOUT && !ready(q))
            return q->closed ? CS_ECLOSED : CS_ETIMEDOUT;
    }
    return 0;
}

static int has_room(const cs_queue *q)
{
    return q->len < q->cap;
}

static int has_item(const cs_queue *q)
{
    return q->len > 0;
}

int cs_queue_push(cs_queue *q, void *item, int timeout_ms)
{
    pthread_mutex_lock(&q->lock);
    int r = wait_for(q, &q->not_full, has_room, timeout_ms);
    if (r == 0 && q->closed)
        r = CS_ECLOSED;
    if (r == 0) {
        q->items[(q->head + q->len) % q->cap] = item;
        q->len++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->lock);
    if (r == CS_ETIMEDOUT && timeout_ms == 0)
        r = CS_EAGAIN;
    return r;
}

int cs_queue_try_push(cs_queue *q, void *item)
{
    return cs_queue_push(q, item, 0);
}

int cs_queue_pop(cs_queue *q, void **out, int timeout_ms)
{
    pthread_mutex_lock(&q->lock);
    int r = wait_for(q, &q->not_empty, has_item, timeout_ms);
    if (r == 0 && q->len == 0)
        r = CS_ECLOSED;
    if (r == 0) {
        *out = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

size_t cs_queue_length(cs_queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void cs_queue_close(cs_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}
