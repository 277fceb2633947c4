/* Unit tests of core/base: errors, buffers, queues, threads, pool. */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdint.h>
#include <string.h>

#include "cs/buf.h"
#include "cs/err.h"
#include "cs/queue.h"
#include "cs/thread.h"

static void base__error_is_thread_local_and_returns_code(void **state)
{
    assert_int_equal(cs_error_set(CS_EIO, "disk %d gone", 3), CS_EIO);
    assert_string_equal(cs_error_last(), "disk 3 gone");
    cs_error_clear();
    assert_string_equal(cs_error_last(), "");
    assert_string_equal(cs_strerror(CS_ENOTFOUND), "not found");
    assert_string_equal(cs_strerror(12345), "unknown error");
}

static void set_other(void *ud)
{
    cs_error_set(CS_EINVAL, "other thread");
    *(int *)ud = strcmp(cs_error_last(), "other thread") == 0;
}

static void base__error_message_does_not_cross_threads(void **state)
{
    cs_error_set(CS_EIO, "main thread");
    int seen = 0;
    cs_thread *t;
    assert_int_equal(cs_thread_start(&t, "errtest", set_other, &seen), 0);
    cs_thread_join(t);
    assert_int_equal(seen, 1);
    assert_string_equal(cs_error_last(), "main thread");
}

static void base__buf_refcount(void **state)
{
    cs_buf *b;
    assert_int_equal(cs_buf_new_copy(&b, "hello", 5), 0);
    assert_int_equal(cs_buf_size(b), 5);
    assert_memory_equal(cs_buf_data(b), "hello", 5);
    cs_buf *r = cs_buf_ref(b);
    assert_ptr_equal(r, b);
    cs_buf_unref(b); /* still referenced */
    assert_memory_equal(cs_buf_data(r), "hello", 5);
    cs_buf_set_size(r, 2);
    assert_int_equal(cs_buf_size(r), 2);
    cs_buf_set_size(r, 10); /* never grows */
    assert_int_equal(cs_buf_size(r), 2);
    cs_buf_unref(r);
    cs_buf_unref(NULL);
}

static void base__queue_bounded_fifo(void **state)
{
    cs_queue *q;
    assert_int_equal(cs_queue_new(&q, 2, NULL), 0);
    int a = 1, b = 2, c = 3;
    assert_int_equal(cs_queue_try_push(q, &a), 0);
    assert_int_equal(cs_queue_try_push(q, &b), 0);
    assert_int_equal(cs_queue_try_push(q, &c), CS_EAGAIN);
    assert_int_equal(cs_queue_push(q, &c, 20), CS_ETIMEDOUT);
    assert_int_equal(cs_queue_length(q), 2);
    void *out;
    assert_int_equal(cs_queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &a);
    assert_int_equal(cs_queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &b);
    assert_int_equal(cs_queue_pop(q, &out, 0), CS_ETIMEDOUT);
    assert_int_equal(cs_queue_pop(q, &out, 10), CS_ETIMEDOUT);
    assert_int_equal(cs_queue_try_push(q, &c), 0);
    cs_queue_close(q);
    assert_int_equal(cs_queue_try_push(q, &a), CS_ECLOSED);
    assert_int_equal(cs_queue_pop(q, &out, -1), 0); /* drains after close */
    assert_ptr_equal(out, &c);
    assert_int_equal(cs_queue_pop(q, &out, -1), CS_ECLOSED);
    cs_queue_free(q);
    assert_int_equal(cs_queue_new(&q, 0, NULL), CS_EINVAL);
}

typedef struct {
    cs_queue *q;
    int n;
} producer_arg;

static void produce(void *ud)
{
    producer_arg *p = ud;
    for (intptr_t i = 1; i <= p->n; i++)
        cs_queue_push(p->q, (void *)i, -1);
}

static void base__queue_many_producers_lose_nothing(void **state)
{
    cs_queue *q;
    assert_int_equal(cs_queue_new(&q, 8, NULL), 0);
    producer_arg arg = {q, 5000};
    cs_thread *t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs_thread_start(&t[i], "prod", produce, &arg), 0);
    long long sum = 0;
    for (int i = 0; i < 4 * 5000; i++) {
        void *v;
        assert_int_equal(cs_queue_pop(q, &v, 5000), 0);
        sum += (intptr_t)v;
    }
    for (int i = 0; i < 4; i++)
        cs_thread_join(t[i]);
    assert_true(sum == 4LL * 5000 * 5001 / 2);
    cs_queue_free(q);
}

static void count_job(void *ud)
{
    __atomic_add_fetch((int *)ud, 1, __ATOMIC_SEQ_CST);
}

static void base__pool_runs_every_accepted_job(void **state)
{
    cs_pool *p;
    assert_int_equal(cs_pool_new(&p, "pooltest", 2, 64), 0);
    int done = 0, accepted = 0;
    for (int i = 0; i < 1000; i++) {
        if (cs_pool_try_submit(p, count_job, &done) == 0)
            accepted++;
        else
            cs_clock_ns(); /* queue full: CS_EAGAIN, keep going */
    }
    cs_pool_free(p); /* finishes queued jobs */
    assert_int_equal(done, accepted);
    assert_true(accepted >= 64);
}

static void base__clock_is_monotonic(void **state)
{
    int64_t a = cs_clock_ns(), b = cs_clock_ns();
    assert_true(b >= a);
    assert_true(cs_clock_cpu_ns() > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base__error_is_thread_local_and_returns_code),
        cmocka_unit_test(base__error_message_does_not_cross_threads),
        cmocka_unit_test(base__buf_refcount),
        cmocka_unit_test(base__queue_bounded_fifo),
        cmocka_unit_test(base__queue_many_producers_lose_nothing),
        cmocka_unit_test(base__pool_runs_every_accepted_job),
        cmocka_unit_test(base__clock_is_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
