/* Named pthreads, a fixed worker pool over cs_queue, and clocks. */
#include "cs/thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cs/err.h"
#include "cs/queue.h"

struct cs_thread {
    pthread_t tid;
    char name[16];
    void (*fn)(void *);
    void *userdata;
};

static void *trampoline(void *arg)
{
    cs_thread *t = arg;
    pthread_setname_np(pthread_self(), t->name);
    t->fn(t->userdata);
    return NULL;
}

int cs_thread_start(cs_thread **out, const char *name, void (*fn)(void *userdata), void *userdata)
{
    cs_thread *t = calloc(1, sizeof(*t));
    if (!t)
        return cs_error_set(CS_ENOMEM, "out of memory starting thread %s", name);
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->fn = fn;
    t->userdata = userdata;
    if (pthread_create(&t->tid, NULL, trampoline, t) != 0) {
        free(t);
        return cs_error_set(CS_EAGAIN, "cannot start thread %s", name);
    }
    *out = t;
    return 0;
}

void cs_thread_join(cs_thread *t)
{
    if (!t)
        return;
    pthread_join(t->tid, NULL);
    free(t);
}

int cs_thread_nice(int n)
{
    pid_t tid = gettid();
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (cur == -1 && errno)
        cur = 0;
    if (setpriority(PRIO_PROCESS, (id_t)tid, cur + n) != 0)
        return cs_error_set(CS_EIO, "cannot renice to %d: %s", cur + n, strerror(errno));
    return 0;
}

int64_t cs_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cs_clock_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cs_clock_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
    void (*fn)(void *);
    void *userdata;
} job;

struct cs_pool {
    cs_queue *jobs;
    int n;
    cs_thread **threads;
};

static void worker(void *arg)
{
    cs_pool *p = arg;
    void *item;
    while (cs_queue_pop(p->jobs, &item, -1) == 0) {
        job *j = item;
        j->fn(j->userdata);
        free(j);
    }
}

int cs_pool_new(cs_pool **out, const char *name, int nthreads, int depth)
{
    cs_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return cs_error_set(CS_ENOMEM, "out of memory creating pool");
    int r = cs_queue_new(&p->jobs, (size_t)depth, free);
    if (r < 0) {
        free(p);
        return r;
    }
    p->threads = calloc((size_t)nthreads, sizeof(*p->threads));
    if (!p->threads) {
        cs_pool_free(p);
        return cs_error_set(CS_ENOMEM, "out of memory creating pool");
    }
    for (int i = 0; i < nthreads; i++) {
        char tn[32];
        snprintf(tn, sizeof(tn), "%.11s/%d", name, i & 0xff);
        if ((r = cs_thread_start(&p->threads[i], tn, worker, p)) < 0) {
            cs_pool_free(p);
            return r;
        }
        p->n++;
    }
    *out = p;
    return 0;
}

int cs_pool_try_submit(cs_pool *p, void (*fn)(void *userdata), void *userdata)
{
    job *j = malloc(sizeof(*j));
    if (!j)
        return cs_error_set(CS_ENOMEM, "out of memory queueing job");
    j->fn = fn;
    j->userdata = userdata;
    int r = cs_queue_try_push(p->jobs, j);
    if (r < 0)
        free(j);
    return r;
}

void cs_pool_free(cs_pool *p)
{
    if (!p)
        return;
    if (p->jobs)
        cs_queue_close(p->jobs);
    for (int i = 0; i < p->n; i++)
        cs_thread_join(p->threads[i]);
    free(p->threads);
    cs_queue_free(p->jobs);
    free(p);
}
