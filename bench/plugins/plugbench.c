/* bench/plugins: dispatch throughput and post->handler latency of the
 * plugin host, with the real host and a counting plugin (plugin/).
 *
 *   plugbench [--plugin DIR] [--events N] [--latency N] [--rate R]
 *
 * Throughput: one event posted N times as fast as the inbox takes it
 * (cs_plughost_try_post_to, retrying when full), until the plugin has
 * handled all N. Latency: N fresh events at R per second (so it measures
 * dispatch, not queueing); the plugin reports the time from cs_event_new
 * to its handler's first instruction. Prints one JSON object. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sched.h>

#include "cs/bus.h"
#include "cs/err.h"
#include "cs/plughost.h"
#include "cs/thread.h"

#ifndef CS_BENCH_PLUGIN_DIR
#define CS_BENCH_PLUGIN_DIR "bench/plugins/plugin"
#endif

typedef struct {
    pthread_mutex_t mu;
    int64_t *lat;
    int nlat, cap;
    int64_t count;
} sink;

static void on_emit(void *ud, const char *plugin, const char *name, const json_t *data)
{
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    if (strcmp(name, "bench.lat") == 0 && s->nlat < s->cap)
        s->lat[s->nlat++] = json_integer_value(json_object_get(data, "ns"));
    else if (strcmp(name, "bench.count") == 0)
        s->count = json_integer_value(json_object_get(data, "n"));
    pthread_mutex_unlock(&s->mu);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void post_wait(cs_plughost *h, cs_event *ev)
{
    while (cs_plughost_try_post_to(h, "bench", ev) == CS_EAGAIN)
        sched_yield();
}

int main(int argc, char **argv)
{
    const char *dir = CS_BENCH_PLUGIN_DIR;
    long n = 1000000, nlat = 10000, rate = 10000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--plugin") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--events") == 0)
            n = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--latency") == 0)
            nlat = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--rate") == 0)
            rate = strtol(argv[i + 1], NULL, 10);
    }
    sink s = {PTHREAD_MUTEX_INITIALIZER, calloc((size_t)nlat + 1, sizeof(int64_t)), 0, (int)nlat,
              -1};
    cs_plughost_opts o = CS_PLUGHOST_OPTS_INIT;
    cs_plughost_core core = {&s, NULL, NULL, on_emit, NULL};
    cs_plughost *h;
    if (cs_plughost_new(&h, &o, &core) != 0 || cs_plughost_add_plugin(h, dir) != 0 ||
        cs_plughost_start(h) != 1) {
        fprintf(stderr, "plugbench: cannot start the bench plugin in %s: %s\n", dir,
                cs_error_last());
        return 1;
    }
    cs_plughost_idle(h, 5000);

    /* throughput */
    cs_event *tick = cs_event_new("bench.tick", "", 0, "bench", NULL);
    int64_t t0 = cs_clock_ns();
    for (long i = 0; i < n; i++)
        post_wait(h, tick);
    cs_plughost_idle(h, 600000);
    int64_t t1 = cs_clock_ns();
    cs_event_unref(tick);
    cs_event *cnt = cs_event_new("bench.count", "", 0, "bench", NULL);
    post_wait(h, cnt);
    cs_event_unref(cnt);
    cs_plughost_idle(h, 5000);

    /* latency at a moderate rate */
    int64_t period = rate > 0 ? 1000000000 / rate : 0;
    int64_t next = cs_clock_ns();
    for (long i = 0; i < nlat; i++) {
        next += period;
        cs_event *ev = cs_event_new("bench.lat", "", 0, "bench", NULL);
        post_wait(h, ev);
        cs_event_unref(ev);
        int64_t now = cs_clock_ns();
        if (next > now) {
            struct timespec ts = {(next - now) / 1000000000, (next - now) % 1000000000};
            nanosleep(&ts, NULL);
        }
    }
    cs_plughost_idle(h, 10000);
    json_t *stats = cs_plughost_stats(h);
    json_t *st = json_array_get(stats, 0);
    pthread_mutex_lock(&s.mu);
    qsort(s.lat, (size_t)s.nlat, sizeof(int64_t), cmp64);
    double p50 = s.nlat ? s.lat[s.nlat / 2] / 1000.0 : 0;
    double p99 = s.nlat ? s.lat[(int)(s.nlat * 0.99)] / 1000.0 : 0;
    double mx = s.nlat ? s.lat[s.nlat - 1] / 1000.0 : 0;
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"events\": %ld, \"handled\": %lld, \"seconds\": %.3f, \"events_per_s\": %.0f, "
           "\"latency_samples\": %d, \"latency_rate_per_s\": %ld, \"latency_p50_us\": %.1f, "
           "\"latency_p99_us\": %.1f, \"latency_max_us\": %.1f, \"dropped\": %lld, "
           "\"memory_peak\": %lld}\n",
           n, (long long)s.count, secs, n / secs, s.nlat, rate, p50, p99, mx,
           (long long)json_integer_value(json_object_get(st, "dropped")),
           (long long)json_integer_value(json_object_get(st, "memory_peak")));
    int ok = s.count == n;
    pthread_mutex_unlock(&s.mu);
    json_decref(stats);
    cs_plughost_free(h);
    free(s.lat);
    return ok ? 0 : 1;
}
