/* Unit tests of the WebSocket hub (core/net/ws.c) without libmicrohttpd:
 * each connection runs on one end of a socketpair, the test speaks raw
 * RFC 6455 frames on the other, and a fake core holds an op log.
 *
 * The point is resume: events committed while a replay runs must arrive
 * once, after the replayed ones, in seq order. Also: topic filtering,
 * cs_ws_send, resync, a stuck client closed with 1013 without holding up
 * the poster, a silent peer dropped, 1001 on close_all. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include "cs/bus.h"
#include "cs/err.h"
#include "cs/thread.h"

#include "../../core/net/ws.h"

/* ---- a raw client ---- */

static void send_frame(int fd, int opcode, const char *data, size_t n)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        hdr[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(hdr + h, key, 4);
    h += 4;
    uint8_t *buf = malloc(h + n);
    memcpy(buf, hdr, h);
    for (size_t i = 0; i < n; i++)
        buf[h + i] = (uint8_t)(data[i] ^ key[i % 4]);
    size_t off = 0;
    while (off < h + n) {
        ssize_t w = write(fd, buf + off, h + n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    free(buf);
}

static void send_text(int fd, const char *s)
{
    send_frame(fd, 1, s, strlen(s));
}

/* Read exactly n bytes before the deadline. @return 0, -1 on EOF or timeout. */
static int read_full(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    while (n) {
        int left = (int)((deadline - cs_clock_ns()) / 1000000);
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            return -1;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The next frame: its payload (malloc'd, NUL-terminated) and opcode; NULL on
 * timeout or EOF. Pings are answered. */
static char *recv_frame(int fd, int *opcode, int timeout_ms)
{
    int64_t deadline = cs_clock_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        uint8_t h[2];
        if (read_full(fd, h, 2, deadline) < 0)
            return NULL;
        uint64_t n = h[1] & 127;
        if (n >= 126) {
            uint8_t ext[8];
            int k = n == 126 ? 2 : 8;
            if (read_full(fd, ext, (size_t)k, deadline) < 0)
                return NULL;
            n = 0;
            for (int i = 0; i < k; i++)
                n = n << 8 | ext[i];
        }
        char *p = malloc(n + 1);
        if (read_full(fd, (uint8_t *)p, n, deadline) < 0) {
            free(p);
            return NULL;
        }
        p[n] = '\0';
        if ((h[0] & 15) == 9) { /* ping: pong */
            send_frame(fd, 10, p, n);
            free(p);
            continue;
        }
        *opcode = h[0] & 15;
        return p;
    }
}

static json_t *recv_json(int fd, int timeout_ms)
{
    int op = 0;
    char *p = recv_frame(fd, &op, timeout_ms);
    if (!p)
        return NULL;
    json_t *j = op == 1 ? json_loads(p, 0, NULL) : json_pack("{s:s, s:i}", "close", "", "op", op);
    if (op == 8) /* close: code in the first two bytes */
        json_object_set_new(j, "code", json_integer((uint8_t)p[0] << 8 | (uint8_t)p[1]));
    free(p);
    return j;
}

static const char *type_of(json_t *j)
{
    return json_string_value(json_object_get(j, "type"));
}

/* ---- a fake core: an op log of events ---- */

#define LOG_MAX 64

typedef struct {
    pthread_mutex_t lock;
    cs_event *log[LOG_MAX];
    int n;
    cs_bus *bus;
    int erange;
    /* run during the next replay, as if other writers committed meanwhile */
    void (*during_replay)(void *fc);
    int replays;
} fake_core;

static void fake_append(fake_core *fc, const char *slide, int post)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "slide:%s", slide);
    pthread_mutex_lock(&fc->lock);
    int64_t seq = fc->n + 1;
    cs_event *ev = cs_event_new("annotation.created", topic, seq, "alice",
                                json_pack("{s:I}", "n", (json_int_t)seq));
    fc->log[fc->n++] = ev;
    pthread_mutex_unlock(&fc->lock);
    if (post)
        cs_bus_post(fc->bus, ev);
}

static int64_t fake_last_seq(void *userdata)
{
    fake_core *fc = userdata;
    pthread_mutex_lock(&fc->lock);
    int64_t n = fc->n;
    pthread_mutex_unlock(&fc->lock);
    return n;
}

static int fake_replay(void *userdata, const char *slide, int64_t since, int64_t upto,
                       void (*emit)(void *ctx, cs_event *ev), void *ctx)
{
    fake_core *fc = userdata;
    fc->replays++;
    if (fc->erange)
        return cs_error_set(CS_ERANGE, "log truncated");
    if (fc->during_replay) {
        void (*f)(void *) = fc->during_replay;
        fc->during_replay = NULL;
        f(fc);
    }
    char topic[64];
    snprintf(topic, sizeof(topic), "slide:%s", slide);
    for (int64_t s = since + 1; s <= upto; s++) {
        pthread_mutex_lock(&fc->lock);
        cs_event *ev = cs_event_ref(fc->log[s - 1]);
        pthread_mutex_unlock(&fc->lock);
        if (strcmp(cs_event_topic(ev), topic) == 0)
            emit(ctx, ev);
        cs_event_unref(ev);
    }
    return 0;
}

static void fake_command(void *userdata, cs_ws *hub, int64_t conn, const char *user,
                         const char *role, json_t *msg)
{
    (void)userdata;
    json_t *r = json_pack("{s:s, s:O, s:b, s:{s:s, s:s}}", "type", "reply", "req",
                          json_object_get(msg, "req"), "ok", 1, "data", "user", user, "role", role);
    char *t = json_dumps(r, JSON_COMPACT);
    cs_ws_send(hub, conn, t, strlen(t));
    free(t);
    json_decref(r);
}

typedef struct {
    cs_bus *bus;
    fake_core fc;
    cs_ws *hub;
} fixture;

static int setup_opts(void **state, const cs_ws_opts *o)
{
    fixture *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->fc.lock, NULL);
    assert_int_equal(cs_bus_new(&f->bus), 0);
    f->fc.bus = f->bus;
    cs_ws_core core = {&f->fc, fake_command, fake_replay, fake_last_seq};
    assert_int_equal(cs_ws_new(&f->hub, f->bus, &core, o, NULL), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, NULL);
}

static int setup_tight(void **state)
{
    cs_ws_opts o = CS_WS_OPTS_INIT;
    o.queue_max = 32;
    o.ping_interval_ms = 100;
    o.dead_after_ms = 400;
    o.close_timeout_ms = 300;
    return setup_opts(state, &o);
}

static int teardown(void **state)
{
    fixture *f = *state;
    cs_ws_free(f->hub);
    for (int i = 0; i < f->fc.n; i++)
        cs_event_unref(f->fc.log[i]);
    cs_bus_free(f->bus);
    pthread_mutex_destroy(&f->fc.lock);
    free(f);
    return 0;
}

/* A connected client: returns our end; *id gets the hub's id. */
static int client(fixture *f, int64_t *id)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int64_t cid = 0;
    assert_int_equal(cs_ws_attach(f->hub, sv[1], "alice", "pathologist", &cid), 0);
    if (id)
        *id = cid;
    json_t *hello = recv_json(sv[0], 2000);
    assert_non_null(hello);
    assert_string_equal(type_of(hello), "hello");
    assert_int_equal(json_integer_value(json_object_get(hello, "seq")), fake_last_seq(&f->fc));
    assert_string_equal(json_string_value(json_object_get(hello, "user")), "alice");
    json_decref(hello);
    return sv[0];
}

/* Send a request and return its reply (other frames go to @p others). */
static json_t *request(int fd, const char *text, json_t *others)
{
    send_text(fd, text);
    for (;;) {
        json_t *m = recv_json(fd, 3000);
        assert_non_null(m);
        if (type_of(m) && strcmp(type_of(m), "reply") == 0)
            return m;
        if (others)
            json_array_append(others, m);
        json_decref(m);
    }
}

static void expect_ok(int fd, const char *text)
{
    json_t *r = request(fd, text, NULL);
    assert_true(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
}

/* ---- tests ---- */

static void ws__ping_command_and_send(void **state)
{
    fixture *f = *state;
    int64_t id;
    int fd = client(f, &id);
    json_t *r = request(fd, "{\"op\":\"ping\",\"req\":5}", NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "req")), 5);
    json_decref(r);
    r = request(fd, "{\"op\":\"annot.create\",\"req\":\"c1\"}", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "req")), "c1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "data"), "role")),
                        "pathologist");
    json_decref(r);
    assert_int_equal(cs_ws_send(f->hub, id, "{\"type\":\"x\"}", 12), 0);
    json_t *m = recv_json(fd, 2000);
    assert_string_equal(type_of(m), "x");
    json_decref(m);
    assert_int_equal(cs_ws_send(f->hub, id + 1000, "{}", 2), CS_ENOTFOUND);
    close(fd);
}

static void ws__topics_reach_only_subscribers(void **state)
{
    fixture *f = *state;
    int a = client(f, NULL), b = client(f, NULL);
    expect_ok(a, "{\"op\":\"subscribe\",\"slides\":[\"A\"],\"req\":1}");
    expect_ok(b, "{\"op\":\"subscribe\",\"slides\":[\"B\"],\"req\":1}");
    fake_append(&f->fc, "A", 1);
    cs_event *all = cs_event_new("node.notice", "", 0, "core", NULL);
    cs_bus_post(f->bus, all);
    cs_event_unref(all);
    json_t *m = recv_json(a, 2000);
    assert_int_equal(json_integer_value(json_object_get(m, "seq")), 1);
    json_decref(m);
    m = recv_json(a, 2000);
    assert_string_equal(json_string_value(json_object_get(m, "event")), "node.notice");
    json_decref(m);
    m = recv_json(b, 2000); /* B sees only the node-wide one */
    assert_string_equal(json_string_value(json_object_get(m, "event")), "node.notice");
    json_decref(m);
    assert_null(recv_json(b, 200));
    /* unsubscribed: nothing more */
    expect_ok(a, "{\"op\":\"unsubscribe\",\"slides\":[\"A\"],\"req\":2}");
    fake_append(&f->fc, "A", 1);
    assert_null(recv_json(a, 200));
    close(a);
    close(b);
}

/* While the replay runs, other writers commit 6 and 7 (posted live) and the
 * post of 5 (committed before S was read) arrives late: the client must see
 * 3, 4, 5 from the log, then 6, 7 live, then a transient one, each once. */
static void commit_meanwhile(void *p)
{
    fake_core *fc = p;
    fake_append(fc, "A", 1);          /* 6 */
    cs_bus_post(fc->bus, fc->log[4]); /* 5, late */
    cs_event *t = cs_event_new("viewer.viewport_changed", "slide:A", 0, "bob", NULL);
    cs_bus_post(fc->bus, t);
    cs_event_unref(t);
    fake_append(fc, "A", 1); /* 7 */
}

static void ws__resume_delivers_each_logged_event_once_in_order(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 5; i++)
        fake_append(&f->fc, i == 1 ? "B" : "A", 0); /* 1 A, 2 B, 3 A, 4 A, 5 A */
    int fd = client(f, NULL);
    f->fc.during_replay = commit_meanwhile;
    json_t *got = json_array();
    json_t *r = request(fd, "{\"op\":\"subscribe\",\"slides\":[\"A\"],\"since\":1,\"req\":1}", got);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "data"), "seq")), 5);
    json_decref(r);
    for (;;) { /* the live ones may come after the reply */
        json_t *m = recv_json(fd, 300);
        if (!m)
            break;
        json_array_append_new(got, m);
    }
    /* 3 4 5 from the log first, then the live ones in posting order; the
     * late post of 5 is not repeated */
    int64_t want[] = {3, 4, 5, 6, 0, 7};
    assert_int_equal(json_array_size(got), 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(got, i), "seq")),
                         want[i]);
    json_decref(got);
    /* resubscribing with an older since replays nothing already sent */
    int replays = f->fc.replays;
    got = json_array();
    r = request(fd, "{\"op\":\"subscribe\",\"slides\":[\"A\"],\"since\":0,\"req\":2}", got);
    json_decref(r);
    assert_null(recv_json(fd, 200));
    assert_int_equal(json_array_size(got), 0);
    assert_int_equal(f->fc.replays, replays); /* 7 sent already: nothing to ask */
    json_decref(got);
    close(fd);
}

static void ws__resync_when_the_log_is_short(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        fake_append(&f->fc, "A", 0);
    f->fc.erange = 1;
    int fd = client(f, NULL);
    json_t *got = json_array();
    json_t *r = request(fd, "{\"op\":\"subscribe\",\"slides\":[\"A\"],\"since\":0,\"req\":1}", got);
    json_decref(r);
    assert_int_equal(json_array_size(got), 1);
    json_t *rs = json_array_get(got, 0);
    assert_string_equal(type_of(rs), "resync");
    assert_int_equal(json_integer_value(json_object_get(rs, "seq")), 3);
    json_decref(got);
    /* still subscribed live */
    f->fc.erange = 0;
    fake_append(&f->fc, "A", 1);
    json_t *m = recv_json(fd, 2000);
    assert_int_equal(json_integer_value(json_object_get(m, "seq")), 4);
    json_decref(m);
    close(fd);
}

static void ws__stuck_client_closed_1013_poster_never_waits(void **state)
{
    fixture *f = *state;
    int64_t id;
    int fd = client(f, &id);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    expect_ok(fd, "{\"op\":\"subscribe\",\"slides\":[\"A\"],\"req\":1}");
    char pad[2000];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    int64_t worst = 0;
    for (int i = 0; i < 3000; i++) {
        cs_event *ev = cs_event_new("e", "slide:A", 0, "core", json_pack("{s:s}", "pad", pad));
        int64_t t = cs_clock_ns();
        cs_bus_post(f->bus, ev);
        t = cs_clock_ns() - t;
        worst = t > worst ? t : worst;
        cs_event_unref(ev);
    }
    assert_true(worst < 50 * 1000000); /* a post never waits for the client */
    /* the hub closes it: drain until the close frame or EOF */
    int code = 0;
    for (int i = 0; i < 5000 && !code; i++) {
        json_t *m = recv_json(fd, 2000);
        if (!m) {
            code = -1;
            break;
        }
        if (json_object_get(m, "code"))
            code = (int)json_integer_value(json_object_get(m, "code"));
        json_decref(m);
    }
    assert_true(code == 1013 || code == -1);
    json_t *st = cs_ws_stats(f->hub);
    assert_int_equal(json_integer_value(json_object_get(st, "closed_slow")), 1);
    json_decref(st);
    close(fd);
}

static void ws__silent_peer_dropped(void **state)
{
    fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(cs_ws_attach(f->hub, sv[1], "bob", "viewer", NULL), 0);
    /* never read, never answer pings: closed after dead_after_ms */
    int64_t t0 = cs_clock_ns();
    uint8_t buf[4096];
    ssize_t r;
    struct pollfd p = {sv[0], POLLIN, 0};
    do {
        poll(&p, 1, 100);
        r = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
    } while ((r > 0 || (r < 0 && errno == EAGAIN)) && cs_clock_ns() - t0 < 3000000000ll);
    int64_t dt = (cs_clock_ns() - t0) / 1000000;
    assert_int_equal(r, 0); /* EOF */
    assert_true(dt >= 300 && dt < 2000);
    close(sv[0]);
}

static void ws__malformed_and_close_all(void **state)
{
    fixture *f = *state;
    int fd = client(f, NULL);
    for (int i = 0; i < 10; i++)
        send_text(fd, i % 2 ? "[]" : "nope");
    for (int i = 0; i < 10; i++) {
        json_t *m = recv_json(fd, 2000);
        assert_string_equal(type_of(m), "error");
        json_decref(m);
    }
    json_t *m = recv_json(fd, 2000);
    assert_int_equal(json_integer_value(json_object_get(m, "code")), 1008);
    json_decref(m);
    close(fd);
    /* close_all: 1001 to whoever is left */
    int a = client(f, NULL), b = client(f, NULL);
    cs_ws_close_all(f->hub);
    for (int i = 0; i < 2; i++) {
        m = recv_json(i ? b : a, 2000);
        assert_int_equal(json_integer_value(json_object_get(m, "code")), 1001);
        json_decref(m);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(cs_ws_attach(f->hub, sv[1], "late", "viewer", NULL), CS_ECLOSED);
    close(sv[0]);
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ws__ping_command_and_send, setup, teardown),
        cmocka_unit_test_setup_teardown(ws__topics_reach_only_subscribers, setup, teardown),
        cmocka_unit_test_setup_teardown(ws__resume_delivers_each_logged_event_once_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ws__resync_when_the_log_is_short, setup, teardown),
        cmocka_unit_test_setup_teardown(ws__stuck_client_closed_1013_poster_never_waits,
                                        setup_tight, teardown),
        cmocka_unit_test_setup_teardown(ws__silent_peer_dropped, setup_tight, teardown),
        cmocka_unit_test_setup_teardown(ws__malformed_and_close_all, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
