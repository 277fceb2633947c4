/* 100 hot reloads of a plugin holding timers, subscriptions and a request
 * suspended in cs.await: run under valgrind (tests/plugins/CMakeLists.txt),
 * nothing may leak and each reload must leave only the new instance's
 * timers and subscriptions. Exit status 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/bus.h"
#include "cs/err.h"
#include "cs/plughost.h"

static int commands;

static int on_command(void *ud, const char *plugin, int64_t req, const json_t *cmd)
{
    commands++;
    return 0;
}

static json_t *on_read(void *ud, const char *plugin, const json_t *q, const char **err)
{
    *err = "not found";
    return NULL;
}

static void on_emit(void *ud, const char *plugin, const char *name, const json_t *data)
{
}

static void post(cs_plughost *h, const char *name)
{
    cs_event *ev = cs_event_new(name, "", 0, "test", json_pack("{s:i}", "n", 1));
    cs_plughost_post(h, ev);
    cs_event_unref(ev);
}

static json_int_t stat(cs_plughost *h, const char *k)
{
    json_t *all = cs_plughost_stats(h);
    json_int_t v = json_integer_value(json_object_get(json_array_get(all, 0), k));
    json_decref(all);
    return v;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "reload_test: %s:%d: %s failed\n", __FILE__, __LINE__, #c);            \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const char *src = getenv("CS_SRC");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/plugins/fixtures/probe",
             argc > 1 ? argv[1]
             : src    ? src
                      : ".");
    int n = 100;
    if (argc > 2) {
        char *end;
        long v = strtol(argv[2], &end, 10);
        if (*end || end == argv[2] || v < 1 || v > 100000) {
            fprintf(stderr, "reload_test: '%s' is not a reload count (1..100000)\n", argv[2]);
            return 2;
        }
        n = (int)v;
    }
    cs_plughost_opts o = CS_PLUGHOST_OPTS_INIT;
    o.nice = 0;
    o.handler_ms = 2000; /* valgrind is slow */
    o.load_ms = 5000;
    cs_plughost_core core = {NULL, on_command, on_read, on_emit, NULL};
    cs_plughost *h;
    CHECK(cs_plughost_new(&h, &o, &core) == 0);
    CHECK(cs_plughost_add_plugin(h, dir) == 0);
    CHECK(cs_plughost_start(h) == 1);
    json_int_t subs = stat(h, "subscriptions");
    for (int i = 0; i < n; i++) {
        post(h, "timers.start");
        post(h, "tick");
        post(h, "await"); /* left suspended in cs.await */
        post(h, "viewer.viewport_changed");
        CHECK(cs_plughost_idle(h, 30000) == 0);
        CHECK(stat(h, "timers") == 2);
        CHECK(cs_plughost_reload(h, "probe") == 0);
        CHECK(cs_plughost_idle(h, 30000) == 0);
        CHECK(stat(h, "timers") == 0);
        CHECK(stat(h, "subscriptions") == subs);
        CHECK(stat(h, "strikes") == 0);
    }
    CHECK(commands == n);
    cs_plughost_free(h);
    printf("%d reloads, 0 failed\n", n);
    return 0;
}
