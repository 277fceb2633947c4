/* Unit tests of core/plughost against a fake core: sandbox escapes, CPU and
 * memory caps, strikes, inbox overflow, coalescing, timers on a fake clock,
 * await/command.done, permissions, api levels, discovery and hot reload.
 * Fixtures: tests/plugins/hostile/<name>/ and tests/plugins/fixtures/. */
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
#include "cs/err.h"
#include "cs/plughost.h"
#include "cs/thread.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    json_t *emits;    /* [{name, data}] */
    json_t *commands; /* [{plugin, req, cmd}] */
    int gate_closed, in_gate;
    atomic_llong now;
} fake;

#ifndef CS_SOURCE_DIR_FALLBACK
#define CS_SOURCE_DIR_FALLBACK "."
#endif

static char src[1024];

static int fake_command(void *ud, const char *plugin, int64_t req, const json_t *cmd)
{
    fake *f = ud;
    pthread_mutex_lock(&f->mu);
    json_array_append_new(f->commands, json_pack("{s:s, s:I, s:O}", "plugin", plugin, "req",
                                                 (json_int_t)req, "cmd", cmd));
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static json_t *fake_read(void *ud, const char *plugin, const json_t *q, const char **err)
{
    fake *f = ud;
    const char *op = json_string_value(json_object_get(q, "op"));
    const char *key = json_string_value(json_object_get(q, "key"));
    if (op && strcmp(op, "storage.get") == 0 && key && strcmp(key, "gate") == 0) {
        pthread_mutex_lock(&f->mu);
        f->in_gate = 1;
        pthread_cond_broadcast(&f->cv);
        while (f->gate_closed)
            pthread_cond_wait(&f->cv, &f->mu);
        f->in_gate = 0;
        pthread_mutex_unlock(&f->mu);
        return json_string("open");
    }
    *err = "not found";
    return NULL;
}

static void fake_emit(void *ud, const char *plugin, const char *name, const json_t *data)
{
    fake *f = ud;
    pthread_mutex_lock(&f->mu);
    json_array_append_new(f->emits, json_pack("{s:s, s:O}", "name", name, "data", data));
    pthread_mutex_unlock(&f->mu);
}

static int64_t fake_now(void *ud)
{
    return atomic_load(&((fake *)ud)->now);
}

static fake *fake_new(void)
{
    fake *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->emits = json_array();
    f->commands = json_array();
    return f;
}

static void fake_free(fake *f)
{
    json_decref(f->emits);
    json_decref(f->commands);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static cs_plughost_core core_of(fake *f)
{
    cs_plughost_core c = {f, fake_command, fake_read, fake_emit, fake_now};
    return c;
}

static cs_plughost_opts test_opts(void)
{
    cs_plughost_opts o = CS_PLUGHOST_OPTS_INIT;
    o.nice = 0;
    o.random_seed = 1;
    o.strikes = 1000;
    o.handler_ms = 200;
    return o;
}

static void path_of(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/tests/plugins/%s", src, rel);
}

/* A host with one plugin from tests/plugins/<rel>, started. */
static cs_plughost *host_one(fake *f, const cs_plughost_opts *o, const char *rel, int expect)
{
    cs_plughost *h;
    cs_plughost_core c = core_of(f);
    assert_int_equal(cs_plughost_new(&h, o, &c), 0);
    char p[1200];
    path_of(p, sizeof(p), rel);
    assert_int_equal(cs_plughost_add_plugin(h, p), 0);
    assert_int_equal(cs_plughost_start(h), expect);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    return h;
}

static void post(cs_plughost *h, const char *name, json_t *data)
{
    cs_event *ev = cs_event_new(name, "", 0, "test", data);
    cs_plughost_post(h, ev);
    cs_event_unref(ev);
}

static void post_idle(cs_plughost *h, const char *name, json_t *data)
{
    post(h, name, data);
    assert_int_equal(cs_plughost_idle(h, 10000), 0);
}

/* The stats entry of the first plugin (new reference). */
static json_t *stat0(cs_plughost *h)
{
    json_t *all = cs_plughost_stats(h);
    json_t *s = json_incref(json_array_get(all, 0));
    json_decref(all);
    assert_non_null(s);
    return s;
}

static const char *last_error(cs_plughost *h, char *buf, size_t n)
{
    json_t *s = stat0(h);
    snprintf(buf, n, "%s", json_string_value(json_object_get(s, "last_error")));
    json_decref(s);
    return buf;
}

static json_int_t stat_int(cs_plughost *h, const char *k)
{
    json_t *s = stat0(h);
    json_int_t v = json_integer_value(json_object_get(s, k));
    json_decref(s);
    return v;
}

static const char *stat_str(cs_plughost *h, const char *k, char *buf, size_t n)
{
    json_t *s = stat0(h);
    snprintf(buf, n, "%s", json_string_value(json_object_get(s, k)));
    json_decref(s);
    return buf;
}

/* Emits named @p name so far (the data of the i-th in *out, borrowed from a
 * copy the caller frees with json_decref(*list)). */
static int count_emits(fake *f, const char *name)
{
    int n = 0;
    size_t i;
    json_t *e;
    pthread_mutex_lock(&f->mu);
    json_array_foreach(f->emits, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
            n++;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* The data of the last emit named @p name (new reference) or NULL. */
static json_t *last_emit(fake *f, const char *name)
{
    json_t *out = NULL;
    size_t i;
    json_t *e;
    pthread_mutex_lock(&f->mu);
    json_array_foreach(f->emits, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0) {
            json_decref(out);
            out = json_incref(json_object_get(e, "data"));
        }
    }
    pthread_mutex_unlock(&f->mu);
    return out;
}

static void clear(fake *f)
{
    pthread_mutex_lock(&f->mu);
    json_array_clear(f->emits);
    json_array_clear(f->commands);
    pthread_mutex_unlock(&f->mu);
}

static void set_now(cs_plughost *h, fake *f, int64_t now)
{
    atomic_store(&f->now, now);
    cs_plughost_kick(h);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
}

static void gate(fake *f, int closed)
{
    pthread_mutex_lock(&f->mu);
    f->gate_closed = closed;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void wait_in_gate(fake *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->in_gate)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* ---- tests ---- */

static void plughost__sandbox_escapes_are_refused(void **state)
{
    static const struct {
        const char *name, *expect;
    } cases[] = {
        {"os_execute", "global 'os'"},
        {"io_open", "global 'io'"},
        {"package", "global 'package'"},
        {"debug", "global 'debug'"},
        {"require_c", "module 'socket.core' not found"},
        {"require_os", "module 'os' not found"},
        {"require_rel", "invalid module name"},
        {"require_abs", "invalid module name"},
        {"dump", "field 'dump'"},
        {"load_binary", "attempt to load a binary chunk"},
        {"load_binary_b", "attempt to load a binary chunk"},
        {"dofile", "global 'dofile'"},
        {"loadfile", "global 'loadfile'"},
        {"gc", "only \"count\""},
        {"gc_finalizer", "__gc metamethods are not allowed"},
        {"rawset_G", "frozen"},
        {"rawset_cs", "frozen"},
        {"rawset_cs_log", "frozen"},
        {"set_G", "frozen"},
        {"set_global", "frozen"},
        {"set_cs", "frozen"},
        {"set_cs_annot", "frozen"},
        {"set_string", "frozen"},
        {"string_mt", "index a boolean value"},
        {"setmetatable_G", "protected metatable"},
        {"setmetatable_cs", "protected metatable"},
        {"late_on", "too late"},
        {"emit_spoof", "plugin events are named 'escape.<event>'"},
    };
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "hostile/escape", 1);
    char buf[2048];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        post_idle(h, "escape.try", json_pack("{s:s}", "case", cases[i].name));
        if (count_emits(f, "escape.escaped"))
            fail_msg("case %s escaped the sandbox", cases[i].name);
        assert_contains(last_error(h, buf, sizeof(buf)), cases[i].expect);
        assert_int_equal(stat_int(h, "strikes"), (json_int_t)i + 1);
    }
    post_idle(h, "escape.ping", NULL);
    assert_int_equal(count_emits(f, "escape.pong"), 1);
    assert_string_equal(stat_str(h, "state", buf, sizeof(buf)), "running");
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__infinite_loops_are_killed_even_inside_pcall(void **state)
{
    static const char *const spins[] = {"spin", "spin_pcall", "spin_co"};
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.handler_ms = 50;
    cs_plughost *h = host_one(f, &o, "hostile/spin", 1);
    char buf[2048];
    for (size_t i = 0; i < sizeof(spins) / sizeof(spins[0]); i++) {
        int64_t t0 = cs_clock_ns();
        post_idle(h, spins[i], NULL);
        int64_t ms = (cs_clock_ns() - t0) / 1000000;
        if (ms > 1500)
            fail_msg("%s ran %lld ms with a 50 ms deadline", spins[i], (long long)ms);
        assert_contains(last_error(h, buf, sizeof(buf)), "timeout");
        post_idle(h, "spin.ping", NULL);
        assert_int_equal(count_emits(f, "spin.pong"), (int)i + 1);
    }
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__memory_cap_refuses_growth_and_host_survives(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.mem_limit = 8u << 20;
    o.handler_ms = 5000;
    cs_plughost *h = host_one(f, &o, "hostile/hog", 1);
    char buf[2048];
    post_idle(h, "hog", NULL);
    assert_contains(last_error(h, buf, sizeof(buf)), "memory");
    assert_true(stat_int(h, "memory_peak") <= (json_int_t)o.mem_limit);
    assert_true(stat_int(h, "memory") < (json_int_t)o.mem_limit / 2);
    assert_int_equal(stat_int(h, "strikes"), 1);
    /* caught by the plugin's own pcall: still a strike */
    post_idle(h, "hog_pcall", NULL);
    json_t *c = last_emit(f, "hog.caught");
    assert_non_null(c);
    assert_false(json_is_true(json_object_get(c, "ok")));
    json_decref(c);
    assert_int_equal(stat_int(h, "strikes"), 2);
    assert_true(stat_int(h, "memory") < (json_int_t)o.mem_limit / 2);
    post_idle(h, "hog.ping", NULL);
    assert_int_equal(count_emits(f, "hog.pong"), 1);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__three_strikes_disable(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.strikes = 3;
    cs_plughost *h = host_one(f, &o, "hostile/crash", 1);
    char buf[2048];
    post_idle(h, "boom", NULL);
    post_idle(h, "boom", NULL);
    assert_string_equal(stat_str(h, "state", buf, sizeof(buf)), "running");
    assert_int_equal(count_emits(f, "plugin.disabled"), 0);
    post_idle(h, "boom", NULL);
    assert_string_equal(stat_str(h, "state", buf, sizeof(buf)), "disabled");
    json_t *d = last_emit(f, "plugin.disabled");
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "crash");
    assert_non_null(strstr(json_string_value(json_object_get(d, "reason")), "boom"));
    json_decref(d);
    post_idle(h, "boom", NULL); /* not delivered any more */
    assert_int_equal(stat_int(h, "events"), 3);
    assert_int_equal(stat_int(h, "strikes"), 3);
    /* a reload brings it back with no strikes */
    assert_int_equal(cs_plughost_reload(h, "crash"), 0);
    assert_string_equal(stat_str(h, "state", buf, sizeof(buf)), "running");
    assert_int_equal(stat_int(h, "strikes"), 0);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__full_inbox_chokes_then_queue_overflow(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.inbox = 4;
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    gate(f, 1);
    post(h, "gate", NULL);
    wait_in_gate(f);
    for (int i = 1; i <= 10; i++)
        post(h, "tick", json_pack("{s:i}", "n", i));
    assert_int_equal(stat_int(h, "dropped"), 6);
    gate(f, 0);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    assert_int_equal(count_emits(f, "probe.tick"), 4);
    json_t *ov = last_emit(f, "probe.overflow");
    assert_non_null(ov);
    assert_int_equal(json_integer_value(json_object_get(ov, "dropped")), 6);
    json_decref(ov);
    /* drained: accepts events again */
    post_idle(h, "tick", json_pack("{s:i}", "n", 11));
    assert_int_equal(count_emits(f, "probe.tick"), 5);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__coalesced_events_keep_the_latest(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.inbox = 4;
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    gate(f, 1);
    post(h, "gate", NULL);
    wait_in_gate(f);
    for (int i = 1; i <= 50; i++)
        post(h, "viewer.viewport_changed", json_pack("{s:i}", "x", i));
    assert_int_equal(stat_int(h, "dropped"), 0);
    gate(f, 0);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    assert_int_equal(count_emits(f, "probe.viewport"), 1);
    json_t *v = last_emit(f, "probe.viewport");
    assert_int_equal(json_integer_value(json_object_get(v, "x")), 50);
    json_decref(v);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__timers_follow_the_fake_clock(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    post_idle(h, "timers.start", NULL);
    assert_int_equal(stat_int(h, "timers"), 2);
    set_now(h, f, 49);
    assert_int_equal(count_emits(f, "probe.every") + count_emits(f, "probe.after"), 0);
    set_now(h, f, 50);
    assert_int_equal(count_emits(f, "probe.every"), 1);
    set_now(h, f, 100);
    assert_int_equal(count_emits(f, "probe.every"), 2);
    assert_int_equal(count_emits(f, "probe.after"), 1);
    json_t *a = last_emit(f, "probe.after");
    assert_true(json_is_false(json_object_get(a, "premature")));
    assert_int_equal(json_integer_value(json_object_get(a, "now")), 100);
    json_decref(a);
    assert_int_equal(stat_int(h, "timers"), 1);
    post_idle(h, "timers.cancel", NULL);
    json_t *c = last_emit(f, "probe.cancelled");
    assert_true(json_is_true(json_object_get(c, "ok")));
    json_decref(c);
    set_now(h, f, 400);
    assert_int_equal(count_emits(f, "probe.every"), 2);
    assert_int_equal(stat_int(h, "timers"), 0);
    /* pending timers fire once with premature=true at shutdown */
    clear(f);
    post_idle(h, "timers.start", NULL);
    cs_plughost_free(h);
    assert_int_equal(count_emits(f, "probe.after"), 1);
    assert_int_equal(count_emits(f, "probe.every"), 1);
    a = last_emit(f, "probe.after");
    assert_true(json_is_true(json_object_get(a, "premature")));
    json_decref(a);
    json_t *s = last_emit(f, "probe.stopped");
    assert_string_equal(json_string_value(json_object_get(s, "reason")), "shutdown");
    json_decref(s);
    fake_free(f);
}

static void plughost__max_timers(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    o.max_timers = 8;
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    post_idle(h, "timers.many", json_pack("{s:i}", "n", 20));
    json_t *m = last_emit(f, "probe.many");
    assert_int_equal(json_integer_value(json_object_get(m, "n")), 8);
    assert_non_null(strstr(json_string_value(json_object_get(m, "err")), "too many timers"));
    json_decref(m);
    cs_plughost_free(h);
    fake_free(f);
}

static int64_t take_req(fake *f, int i, const char *op)
{
    pthread_mutex_lock(&f->mu);
    json_t *c = json_array_get(f->commands, (size_t)i);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "cmd"), "op")), op);
    int64_t req = json_integer_value(json_object_get(c, "req"));
    pthread_mutex_unlock(&f->mu);
    return req;
}

static void plughost__await_and_command_done(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    post_idle(h, "await", NULL);
    pthread_mutex_lock(&f->mu);
    json_t *want = json_loads("{\"op\":\"annot.create\",\"slide\":\"s1\","
                              "\"annotation\":{\"type\":\"point\",\"pts\":[[1,2]]}}",
                              0, NULL);
    assert_true(json_equal(json_object_get(json_array_get(f->commands, 0), "cmd"), want));
    json_decref(want);
    pthread_mutex_unlock(&f->mu);
    int64_t req = take_req(f, 0, "annot.create");
    assert_int_equal(count_emits(f, "probe.awaited"), 0);
    json_t *res = json_pack("{s:s, s:i}", "id", "a9", "rev", 1);
    cs_plughost_complete(h, "probe", req, res, NULL);
    cs_plughost_complete(h, "probe", req + 100, res, NULL); /* unknown: ignored */
    cs_plughost_complete(h, "nobody", req, res, NULL);
    json_decref(res);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    json_t *a = last_emit(f, "probe.awaited");
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "result"), "id")),
                        "a9");
    json_decref(a);
    /* an expected failure: nil, "conflict" */
    post_idle(h, "await", NULL);
    cs_plughost_complete(h, "probe", take_req(f, 1, "annot.create"), NULL, "conflict");
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    a = last_emit(f, "probe.awaited");
    assert_null(json_object_get(a, "result"));
    assert_string_equal(json_string_value(json_object_get(a, "err")), "conflict");
    json_decref(a);
    /* two requests answered out of order */
    post_idle(h, "await2", NULL);
    int64_t r1 = take_req(f, 2, "annot.delete"), r2 = take_req(f, 3, "annot.delete");
    cs_plughost_complete(h, "probe", r2, NULL, "gone");
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    cs_plughost_complete(h, "probe", r1, NULL, NULL);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    a = last_emit(f, "probe.awaited2");
    assert_true(json_is_true(json_object_get(a, "x1")));
    assert_string_equal(json_string_value(json_object_get(a, "e2")), "gone");
    json_decref(a);
    /* a read that fails: nil, err */
    post_idle(h, "read", NULL);
    a = last_emit(f, "probe.read");
    assert_string_equal(json_string_value(json_object_get(a, "err")), "not found");
    json_decref(a);
    assert_int_equal(stat_int(h, "strikes"), 0);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__permission_is_checked_in_c(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "fixtures/noperm", 1);
    char buf[2048];
    post_idle(h, "go", NULL);
    assert_contains(last_error(h, buf, sizeof(buf)), "API disabled: needs annot.write");
    assert_int_equal(json_array_size(f->commands), 0);
    assert_int_equal(stat_int(h, "strikes"), 1);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__bad_manifests_and_loads_fail_alone(void **state)
{
    static const struct {
        const char *rel, *expect;
    } cases[] = {
        {"hostile/future", "api level 2 is not supported"},
        {"hostile/badperm", "unknown permission 'root'"},
        {"hostile/badmanifest", "timeout"},
        {"hostile/loadspin", "timeout"},
    };
    char buf[2048];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake *f = fake_new();
        cs_plughost_opts o = test_opts();
        int64_t t0 = cs_clock_ns();
        cs_plughost *h = host_one(f, &o, cases[i].rel, 0);
        assert_true((cs_clock_ns() - t0) / 1000000 < 3000);
        assert_string_equal(stat_str(h, "state", buf, sizeof(buf)), "failed");
        assert_contains(last_error(h, buf, sizeof(buf)), cases[i].expect);
        cs_plughost_free(h);
        fake_free(f);
    }
}

static void plughost__discovery_sorted_disable_and_replace(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost_core c = core_of(f);
    cs_plughost *h;
    char p[1200], buf[256];
    assert_int_equal(cs_plughost_new(&h, &o, &c), 0);
    path_of(p, sizeof(p), "fixtures/dirs/a");
    assert_int_equal(cs_plughost_add_dir(h, p), 1); /* beta.disable skipped */
    path_of(p, sizeof(p), "fixtures/dirs/b");
    assert_int_equal(cs_plughost_add_dir(h, p), 1);
    assert_int_equal(cs_plughost_add_dir(h, "/nonexistent/plugins"), CS_ENOTFOUND);
    assert_int_equal(cs_plughost_start(h), 1);
    json_t *all = cs_plughost_stats(h);
    assert_int_equal(json_array_size(all), 1);
    json_decref(all);
    assert_string_equal(stat_str(h, "name", buf, sizeof(buf)), "alpha");
    assert_string_equal(stat_str(h, "version", buf, sizeof(buf)), "2");
    assert_non_null(strstr(stat_str(h, "dir", buf, sizeof(buf)), "dirs/b/alpha"));
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__hot_reload_keeps_saved_state_and_nothing_else(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    json_int_t subs = stat_int(h, "subscriptions");
    assert_true(subs > 5);
    for (int i = 0; i < 3; i++)
        post_idle(h, "tick", json_pack("{s:i}", "n", i));
    post_idle(h, "timers.start", NULL);
    assert_int_equal(stat_int(h, "timers"), 2);
    clear(f);
    assert_int_equal(cs_plughost_reload(h, "probe"), 0);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    json_t *s = last_emit(f, "probe.stopped");
    assert_string_equal(json_string_value(json_object_get(s, "reason")), "reload");
    json_decref(s);
    json_t *a = last_emit(f, "probe.after");
    assert_true(json_is_true(json_object_get(a, "premature")));
    json_decref(a);
    json_t *st = last_emit(f, "probe.started");
    assert_true(json_is_true(json_object_get(st, "saved")));
    json_decref(st);
    assert_int_equal(stat_int(h, "timers"), 0);
    assert_int_equal(stat_int(h, "subscriptions"), subs);
    post_idle(h, "count", NULL);
    json_t *c = last_emit(f, "probe.count");
    assert_int_equal(json_integer_value(json_object_get(c, "count")), 3);
    json_decref(c);
    /* the old instance's timers are gone: nothing fires */
    clear(f);
    set_now(h, f, 10000);
    assert_int_equal(count_emits(f, "probe.every") + count_emits(f, "probe.after"), 0);
    assert_int_equal(cs_plughost_reload(h, "nobody"), CS_ENOTFOUND);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__payload_and_meta(void **state)
{
    fake *f = fake_new();
    cs_plughost_opts o = test_opts();
    cs_plughost *h = host_one(f, &o, "fixtures/probe", 1);
    json_t *data =
        json_loads("{\"a\":[1,null,2.5,\"x\"],\"gone\":null,\"o\":{\"t\":true}}", 0, NULL);
    cs_event *ev = cs_event_new("meta", "slide:s1", 42, "alice", data);
    cs_plughost_post(h, ev);
    cs_event_unref(ev);
    assert_int_equal(cs_plughost_idle(h, 5000), 0);
    json_t *m = last_emit(f, "probe.meta");
    json_t *want = json_loads("{\"data\":{\"a\":[1,null,2.5,\"x\"],\"o\":{\"t\":true}},"
                              "\"meta\":{\"event\":\"meta\",\"seq\":42,\"topic\":\"slide:s1\","
                              "\"origin\":\"alice\"}}",
                              0, NULL);
    if (!json_equal(m, want)) {
        char *s = json_dumps(m, 0);
        fail_msg("got %s", s);
    }
    json_decref(want);
    json_decref(m);
    /* events nobody subscribed to are not posted */
    post_idle(h, "nobody.listens", NULL);
    assert_int_equal(stat_int(h, "events"), 1);
    cs_plughost_free(h);
    fake_free(f);
}

static void plughost__check_dir_reports_each(void **state)
{
    char p[1200];
    path_of(p, sizeof(p), "hostile");
    json_t *rep = NULL;
    int failed = cs_plughost_check_dir(p, NULL, &rep);
    assert_int_equal(failed, 4);
    assert_int_equal(json_array_size(rep), 8);
    size_t i;
    json_t *e;
    json_array_foreach(rep, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        int ok = json_is_true(json_object_get(e, "ok"));
        int bad = !strcmp(n, "future") || !strcmp(n, "badperm") || !strcmp(n, "badmanifest") ||
                  !strcmp(n, "loadspin");
        assert_int_equal(ok, !bad);
    }
    json_decref(rep);
}

int main(void)
{
    const char *s = getenv("CS_SRC");
    snprintf(src, sizeof(src), "%s", s ? s : CS_SOURCE_DIR_FALLBACK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plughost__sandbox_escapes_are_refused),
        cmocka_unit_test(plughost__infinite_loops_are_killed_even_inside_pcall),
        cmocka_unit_test(plughost__memory_cap_refuses_growth_and_host_survives),
        cmocka_unit_test(plughost__three_strikes_disable),
        cmocka_unit_test(plughost__full_inbox_chokes_then_queue_overflow),
        cmocka_unit_test(plughost__coalesced_events_keep_the_latest),
        cmocka_unit_test(plughost__timers_follow_the_fake_clock),
        cmocka_unit_test(plughost__max_timers),
        cmocka_unit_test(plughost__await_and_command_done),
        cmocka_unit_test(plughost__permission_is_checked_in_c),
        cmocka_unit_test(plughost__bad_manifests_and_loads_fail_alone),
        cmocka_unit_test(plughost__discovery_sorted_disable_and_replace),
        cmocka_unit_test(plughost__hot_reload_keeps_saved_state_and_nothing_else),
        cmocka_unit_test(plughost__payload_and_meta),
        cmocka_unit_test(plughost__check_dir_reports_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
