/* Unit tests of core/bus: event fields and references, the shared frame,
 * subscribe/unsubscribe, and posts from several threads at once (each
 * subscriber sees every event, each poster's events in its order). */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/bus.h"
#include "cs/thread.h"

static void bus__event_fields_and_defaults(void **state)
{
    (void)state;
    cs_event *ev =
        cs_event_new("annotation.created", "slide:S1", 42, "alice", json_pack("{s:s}", "id", "a1"));
    assert_non_null(ev);
    assert_string_equal(cs_event_name(ev), "annotation.created");
    assert_string_equal(cs_event_topic(ev), "slide:S1");
    assert_int_equal(cs_event_seq(ev), 42);
    assert_string_equal(cs_event_origin(ev), "alice");
    assert_string_equal(json_string_value(json_object_get(cs_event_data(ev), "id")), "a1");
    assert_true(cs_event_time_ns(ev) > 0 && cs_event_time_ns(ev) <= cs_clock_ns());
    cs_event_unref(ev);

    ev = cs_event_new("x", NULL, 0, NULL, NULL);
    assert_non_null(ev);
    assert_string_equal(cs_event_topic(ev), "");
    assert_string_equal(cs_event_origin(ev), "");
    assert_true(json_is_object(cs_event_data(ev)) && json_object_size(cs_event_data(ev)) == 0);
    cs_event_unref(ev);
    cs_event_unref(NULL);
}

static void bus__references_keep_the_payload(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:i}", "n", 7);
    json_incref(data); /* watch it: the event holds the other reference */
    cs_event *ev = cs_event_new("e", "", 0, "core", data);
    assert_int_equal(data->refcount, 2);
    assert_ptr_equal(cs_event_ref(ev), ev);
    cs_event_unref(ev);
    assert_int_equal(data->refcount, 2); /* one reference left: alive */
    assert_int_equal(json_integer_value(json_object_get(cs_event_data(ev), "n")), 7);
    cs_event_unref(ev);
    assert_int_equal(data->refcount, 1); /* freed with the event */
    json_decref(data);
}

static void bus__frame_is_the_wire_event_serialised_once(void **state)
{
    (void)state;
    cs_event *ev =
        cs_event_new("viewer.viewport_changed", "slide:S", 0, "bob", json_pack("{s:f}", "x", 1.5));
    size_t len = 0;
    const char *f = cs_event_frame(ev, &len);
    assert_non_null(f);
    assert_int_equal(len, strlen(f));
    json_error_t err;
    json_t *j = json_loads(f, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "event");
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "viewer.viewport_changed");
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "slide:S");
    assert_string_equal(json_string_value(json_object_get(j, "origin")), "bob");
    assert_true(json_equal(json_object_get(j, "data"), cs_event_data(ev)));
    json_decref(j);
    assert_ptr_equal(cs_event_frame(ev, NULL), f); /* shared, not rebuilt */
    cs_event_unref(ev);
}

typedef struct {
    atomic_int calls;
    atomic_long seq_sum;
} counter;

static void count_fn(void *userdata, cs_event *ev)
{
    counter *c = userdata;
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&c->seq_sum, (long)cs_event_seq(ev));
}

static void bus__subscribe_unsubscribe(void **state)
{
    (void)state;
    cs_bus *bus;
    assert_int_equal(cs_bus_new(&bus), 0);
    counter a = {0}, b = {0};
    int64_t ia = cs_bus_subscribe(bus, count_fn, &a);
    int64_t ib = cs_bus_subscribe(bus, count_fn, &b);
    assert_true(ia > 0 && ib > 0 && ia != ib);
    cs_event *ev = cs_event_new("e", "", 5, "core", NULL);
    cs_bus_post(bus, ev);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    cs_bus_unsubscribe(bus, ia);
    cs_bus_post(bus, ev);
    assert_int_equal(a.calls, 1); /* never called after unsubscribe */
    assert_int_equal(b.calls, 2);
    cs_bus_unsubscribe(bus, ia); /* twice: harmless */
    cs_bus_unsubscribe(bus, ib);
    cs_bus_post(bus, ev);
    assert_int_equal(b.calls, 2);
    assert_int_equal(cs_bus_posted(bus), 3);
    cs_event_unref(ev); /* the poster kept its reference throughout */
    /* many subscribers: the table grows */
    counter many[40] = {0};
    int64_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = cs_bus_subscribe(bus, count_fn, &many[i]);
    ev = cs_event_new("e", "", 1, "core", NULL);
    cs_bus_post(bus, ev);
    cs_event_unref(ev);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(many[i].calls, 1);
        cs_bus_unsubscribe(bus, ids[i]);
    }
    cs_bus_free(bus);
    cs_bus_free(NULL);
}

/* Several posters; one subscriber checks each poster's events arrive in
 * its order; another subscribes and unsubscribes all the while. */
#define POSTERS 4
#define PER     20000

typedef struct {
    pthread_mutex_t lock;
    int64_t last[POSTERS];
    int out_of_order;
    long total;
} order_check;

static void order_fn(void *userdata, cs_event *ev)
{
    order_check *o = userdata;
    int poster = (int)json_integer_value(json_object_get(cs_event_data(ev), "p"));
    pthread_mutex_lock(&o->lock);
    if (cs_event_seq(ev) <= o->last[poster])
        o->out_of_order++;
    o->last[poster] = cs_event_seq(ev);
    o->total++;
    pthread_mutex_unlock(&o->lock);
}

typedef struct {
    cs_bus *bus;
    int poster;
    atomic_int *stop;
} poster_arg;

static void *poster_main(void *arg)
{
    poster_arg *p = arg;
    for (int i = 1; i <= PER; i++) {
        cs_event *ev = cs_event_new("e", "", i, "core", json_pack("{s:i}", "p", p->poster));
        cs_bus_post(p->bus, ev);
        if (i % 3 == 0)
            cs_event_frame(ev, NULL); /* framing races with other readers too */
        cs_event_unref(ev);
    }
    return NULL;
}

static void *churn_main(void *arg)
{
    poster_arg *p = arg;
    counter c = {0};
    while (!atomic_load(p->stop)) {
        int64_t id = cs_bus_subscribe(p->bus, count_fn, &c);
        cs_bus_unsubscribe(p->bus, id);
    }
    return NULL;
}

static void bus__concurrent_posts(void **state)
{
    (void)state;
    cs_bus *bus;
    assert_int_equal(cs_bus_new(&bus), 0);
    order_check o = {.lock = PTHREAD_MUTEX_INITIALIZER};
    counter all = {0};
    int64_t io = cs_bus_subscribe(bus, order_fn, &o);
    int64_t ia = cs_bus_subscribe(bus, count_fn, &all);
    atomic_int stop = 0;
    pthread_t th[POSTERS], churn;
    poster_arg args[POSTERS], cargs = {bus, 0, &stop};
    pthread_create(&churn, NULL, churn_main, &cargs);
    for (int i = 0; i < POSTERS; i++) {
        args[i] = (poster_arg){bus, i, &stop};
        pthread_create(&th[i], NULL, poster_main, &args[i]);
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(churn, NULL);
    assert_int_equal(o.total, (long)POSTERS * PER);
    assert_int_equal(o.out_of_order, 0);
    assert_int_equal(all.calls, POSTERS * PER);
    assert_int_equal(all.seq_sum, (long)POSTERS * PER * (PER + 1) / 2);
    assert_int_equal(cs_bus_posted(bus), (uint64_t)POSTERS * PER);
    cs_bus_unsubscribe(bus, io);
    cs_bus_unsubscribe(bus, ia);
    cs_bus_free(bus);
}

/* Many threads frame one event at once: one frame, the same for all. */
static void *frame_main(void *arg)
{
    return (void *)cs_event_frame(arg, NULL);
}

static void bus__frame_from_many_threads(void **state)
{
    (void)state;
    for (int round = 0; round < 50; round++) {
        cs_event *ev = cs_event_new("e", "slide:S", round, "core", json_pack("{s:i}", "r", round));
        pthread_t th[8];
        void *res[8];
        for (int i = 0; i < 8; i++)
            pthread_create(&th[i], NULL, frame_main, ev);
        for (int i = 0; i < 8; i++)
            pthread_join(th[i], &res[i]);
        for (int i = 1; i < 8; i++)
            assert_ptr_equal(res[i], res[0]);
        assert_non_null(res[0]);
        cs_event_unref(ev);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bus__event_fields_and_defaults),
        cmocka_unit_test(bus__references_keep_the_payload),
        cmocka_unit_test(bus__frame_is_the_wire_event_serialised_once),
        cmocka_unit_test(bus__subscribe_unsubscribe),
        cmocka_unit_test(bus__concurrent_posts),
        cmocka_unit_test(bus__frame_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
