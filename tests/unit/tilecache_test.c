/* Unit tests of the sharded tile cache. */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cs/err.h"
#include "cs/thread.h"
#include "cs/tilecache.h"

static cs_buf *make(size_t n, char fill)
{
    cs_buf *b;
    assert_int_equal(cs_buf_new(&b, n), 0);
    memset(cs_buf_data(b), fill, n);
    return b;
}

static void tilecache__hit_miss_replace(void **state)
{
    cs_tilecache *c;
    assert_int_equal(cs_tilecache_new(&c, 64 << 20), 0);
    cs_buf *b = make(1000, 'a'), *out;
    assert_int_equal(cs_tilecache_get(c, "s/dz/1/0_0", &out), CS_ENOTFOUND);
    assert_int_equal(cs_tilecache_put(c, "s/dz/1/0_0", b), 0);
    cs_buf_unref(b); /* the cache holds its own reference */
    assert_int_equal(cs_tilecache_get(c, "s/dz/1/0_0", &out), 0);
    assert_int_equal(cs_buf_data(out)[999], 'a');
    cs_buf *b2 = make(10, 'b');
    assert_int_equal(cs_tilecache_put(c, "s/dz/1/0_0", b2), 0);
    cs_buf_unref(b2);
    assert_int_equal(cs_buf_data(out)[0], 'a'); /* old value alive while referenced */
    cs_buf_unref(out);
    assert_int_equal(cs_tilecache_get(c, "s/dz/1/0_0", &out), 0);
    assert_int_equal(cs_buf_size(out), 10);
    cs_buf_unref(out);
    cs_tilecache_stats st;
    cs_tilecache_get_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.entries, 1);
    cs_tilecache_free(c);
}

static void tilecache__stays_within_budget(void **state)
{
    size_t budget = 4 << 20;
    cs_tilecache *c;
    assert_int_equal(cs_tilecache_new(&c, budget), 0);
    char key[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "s/dz/12/%d_%d", i % 100, i / 100);
        cs_buf *b = make(15000, 'x');
        cs_tilecache_put(c, key, b);
        cs_buf_unref(b);
    }
    cs_tilecache_stats st;
    cs_tilecache_get_stats(c, &st);
    assert_true(st.bytes <= budget);
    assert_true(st.evictions > 0);
    assert_true(st.entries > 100); /* it does cache */
    cs_tilecache_free(c);
}

static void tilecache__lru_keeps_recent(void **state)
{
    cs_tilecache *c;
    /* one shard's budget is 1/64 of the total: use a single key prefix
     * whose entries spread over shards, and check a hot key survives */
    assert_int_equal(cs_tilecache_new(&c, 64 * 40000), 0);
    char key[64];
    cs_buf *b = make(10000, 'h'), *out;
    cs_tilecache_put(c, "hot", b);
    cs_buf_unref(b);
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "cold/%d", i);
        b = make(10000, 'c');
        cs_tilecache_put(c, key, b);
        cs_buf_unref(b);
        if (cs_tilecache_get(c, "hot", &out) == 0) /* touch: most recent */
            cs_buf_unref(out);
        else
            fail_msg("hot key evicted after %d inserts", i);
    }
    cs_tilecache_free(c);
}

static void tilecache__drop_prefix_and_disabled(void **state)
{
    cs_tilecache *c;
    assert_int_equal(cs_tilecache_new(&c, 64 << 20), 0);
    cs_buf *b = make(100, 'p'), *out;
    cs_tilecache_put(c, "a/1", b);
    cs_tilecache_put(c, "a/2", b);
    cs_tilecache_put(c, "b/1", b);
    cs_tilecache_drop_prefix(c, "a/");
    assert_int_equal(cs_tilecache_get(c, "a/1", &out), CS_ENOTFOUND);
    assert_int_equal(cs_tilecache_get(c, "b/1", &out), 0);
    cs_buf_unref(out);
    cs_tilecache_free(c);
    assert_int_equal(cs_tilecache_new(&c, 0), 0); /* 0: caching off */
    cs_tilecache_put(c, "a/1", b);
    assert_int_equal(cs_tilecache_get(c, "a/1", &out), CS_ENOTFOUND);
    cs_tilecache_free(c);
    cs_buf_unref(b);
}

typedef struct {
    cs_tilecache *c;
    int seed;
    int bad;
} worker_arg;

static void hammer(void *ud)
{
    worker_arg *w = ud;
    char key[64];
    for (int i = 0; i < 20000; i++) {
        int k = (i * 7919 + w->seed) % 500;
        snprintf(key, sizeof(key), "k/%d", k);
        cs_buf *out;
        if (cs_tilecache_get(w->c, key, &out) == 0) {
            if (cs_buf_size(out) != (size_t)(100 + k) || cs_buf_data(out)[0] != (uint8_t)k)
                w->bad++;
            cs_buf_unref(out);
        } else {
            cs_buf *b;
            cs_buf_new(&b, (size_t)(100 + k));
            memset(cs_buf_data(b), k & 0xff, (size_t)(100 + k));
            cs_tilecache_put(w->c, key, b);
            cs_buf_unref(b);
        }
    }
}

static void tilecache__many_threads_consistent(void **state)
{
    cs_tilecache *c;
    assert_int_equal(cs_tilecache_new(&c, 256 << 10), 0); /* small: forces evictions */
    worker_arg a[4];
    cs_thread *t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){c, i * 31, 0};
        assert_int_equal(cs_thread_start(&t[i], "cachetest", hammer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        cs_thread_join(t[i]);
        assert_int_equal(a[i].bad, 0);
    }
    cs_tilecache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tilecache__hit_miss_replace),
        cmocka_unit_test(tilecache__stays_within_budget),
        cmocka_unit_test(tilecache__lru_keeps_recent),
        cmocka_unit_test(tilecache__drop_prefix_and_disabled),
        cmocka_unit_test(tilecache__many_threads_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
