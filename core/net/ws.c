/* core/net: the WebSocket hub of GET /ws (see ws.h and PROTOCOL.md).
 *
 * One thread per connection. Its state is in two parts: what the bus
 * callback and cs_ws_send() touch (the outgoing ring, the subscription set,
 * the stop/overflow flags) is under client.lock, held only for a push or a
 * pop, never across I/O or a callback; everything else (the wslay context,
 * counters, timers) belongs to the connection thread alone. The
 * subscription set is written only by the connection thread (under the
 * lock), so that thread reads it without the lock.
 *
 * Lock order: hub.lock before client.lock. A finished connection thread moves
 * itself from hub.live to hub.dead; whoever comes next (a new upgrade,
 * stats, close_all) joins and frees it. */
#include "ws.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <wslay/wslay.h>

#include "cs/err.h"
#include "cs/thread.h"

#define MAX_SUBS       1024 /* slides one connection may follow */
#define MAX_SLIDE_ID   200
#define MAX_BAD_IN_ROW 10
#define WSLAY_SOFT_MAX 64 /* messages handed to wslay before the ring waits */

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept (RFC 3174, RFC 4648) ---- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(uint8_t out[20], const void *data, size_t len)
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const uint8_t *p = data;
    size_t n = len;
    for (; n >= 64; n -= 64, p += 64)
        sha1_block(h, p);
    uint8_t tail[128] = {0};
    memcpy(tail, p, n);
    tail[n] = 0x80;
    size_t tl = n + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tl == 128)
        sha1_block(h, tail + 64);
    for (int i = 0; i < 20; i++)
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(char *out, const uint8_t *in, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[k++] = b64[v >> 18 & 63];
        out[k++] = b64[v >> 12 & 63];
        out[k++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[k] = '\0';
}

/* A Sec-WebSocket-Key must be the base64 of 16 bytes: 22 symbols and "==". */
static int key_ok(const char *key)
{
    if (!key || strlen(key) != 24 || strcmp(key + 22, "==") != 0)
        return 0;
    for (int i = 0; i < 22; i++) {
        if (!strchr(b64, key[i]) || key[i] == '\0')
            return 0;
    }
    return 1;
}

/* 1 when the comma-separated header value @p v holds @p token (any case). */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - v) == tl && strncasecmp(v, token, tl) == 0)
            return 1;
        v = end;
    }
    return 0;
}

/* ---- the hub ---- */

typedef struct {
    cs_event *ev; /* a bus event, or */
    char *buf;    /* a frame of our own (cs_ws_send) */
    size_t len;
} out_item;

typedef struct {
    char *id;
    int64_t skip_upto; /* live op-log events up to here were replayed: skip */
    int64_t sent_upto; /* highest op-log seq handed to wslay */
} sub_slide;

typedef struct client client;

/* An upgrade answered 101 but not yet called back: who it is. */
typedef struct pending {
    struct MHD_Connection *mc;
    char *user, *role;
    struct pending *next;
} pending;

struct cs_ws {
    cs_bus *bus;
    cs_ws_core core;
    cs_ws_opts o;
    cs_logger *log;
    pthread_mutex_t lock;
    pthread_cond_t gone; /* a connection left live */
    client *live, *dead;
    pending *pending;
    int closing;
    int64_t next_id;
    uint64_t accepted, closed_slow, closed_malformed, sent, dropped;
};

struct client {
    cs_ws *hub;
    client *next;
    int64_t id;
    char *user, *role;
    int fd;
    struct MHD_UpgradeResponseHandle *urh; /* NULL: fd is ours to close */
    int wake;                              /* eventfd: "look at the ring and flags" */
    cs_thread *thread;
    int64_t bus_sub;
    uint8_t *extra; /* bytes read by libmicrohttpd after the headers */
    size_t extra_len, extra_off;

    pthread_mutex_t lock; /* ring, subs (writes), flags below */
    out_item *ring;
    size_t head, count, cap;
    sub_slide *subs;
    size_t nsubs;
    int overflow, stop;
    cs_event *own_viewport; /* not echoed to its sender */

    /* connection thread only */
    wslay_event_context_ptr ws;
    int bad_in_row, closing, close_queued, broken;
    uint16_t close_code;
    const char *close_reason; /* a static string */
    int64_t last_rx_ns, last_ping_ns, close_deadline_ns;
    json_t *vp_pending; /* a viewport op waiting for its slot */
    char *vp_slide;
    int64_t vp_last_ns;
    uint64_t sent, dropped;
};

static int64_t ms_ns(int ms)
{
    return (int64_t)ms * 1000000;
}

static void wake(client *c)
{
    uint64_t one = 1;
    ssize_t w = write(c->wake, &one, sizeof(one));
    (void)w; /* a full counter is still a wake-up */
}

static void item_free(out_item *it)
{
    cs_event_unref(it->ev);
    free(it->buf);
}

/* Push under c->lock. @return 0, CS_EAGAIN (overflow: the item is freed and
 * the connection will close with 1013) or CS_ECLOSED (freed, closing). */
static int push_locked(client *c, out_item it, int *need_wake)
{
    if (c->overflow || c->stop) {
        item_free(&it);
        return c->overflow ? CS_EAGAIN : CS_ECLOSED;
    }
    if (c->count == c->cap) {
        c->overflow = 1;
        *need_wake = 1;
        item_free(&it);
        return CS_EAGAIN;
    }
    c->ring[(c->head + c->count) % c->cap] = it;
    *need_wake = c->count++ == 0;
    return 0;
}

static sub_slide *find_sub(client *c, const char *id, size_t len)
{
    for (size_t i = 0; i < c->nsubs; i++) {
        if (strlen(c->subs[i].id) == len && memcmp(c->subs[i].id, id, len) == 0)
            return &c->subs[i];
    }
    return NULL;
}

/* The slide of a "slide:ID" topic, or NULL for "" (everyone) and others. */
static const char *topic_slide(const char *topic)
{
    return strncmp(topic, "slide:", 6) == 0 ? topic + 6 : NULL;
}

/* The bus callback, on the poster's thread: filter and try-push. */
static void on_event(void *userdata, cs_event *ev)
{
    client *c = userdata;
    const char *topic = cs_event_topic(ev);
    const char *slide = topic_slide(topic);
    int need_wake = 0;
    pthread_mutex_lock(&c->lock);
    if (ev != c->own_viewport && (topic[0] == '\0' || (slide && find_sub(c, slide, strlen(slide)))))
        push_locked(c, (out_item){cs_event_ref(ev), NULL, 0}, &need_wake);
    pthread_mutex_unlock(&c->lock);
    if (need_wake)
        wake(c);
}

/* ---- wslay I/O callbacks ---- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *userdata)
{
    (void)flags;
    client *c = userdata;
    if (c->extra_off < c->extra_len) {
        size_t n = c->extra_len - c->extra_off;
        n = n < len ? n : len;
        memcpy(buf, c->extra + c->extra_off, n);
        c->extra_off += n;
        c->last_rx_ns = cs_clock_ns();
        return (ssize_t)n;
    }
    ssize_t r;
    do
        r = recv(c->fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        c->last_rx_ns = cs_clock_ns();
        return r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        c->broken = 1; /* 0: the peer went away */
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *userdata)
{
    (void)flags;
    client *c = userdata;
    ssize_t r;
    do
        r = send(c->fd, data, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        c->broken = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

/* ---- sending from the connection thread ---- */

/* Begin closing: no more frames are queued; the close frame itself goes out
 * once what is queued has been written (wslay would send it ahead of them),
 * except for a slow client, whose queue may never drain. */
static void start_close(client *c, uint16_t code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = code;
    c->close_reason = reason;
    c->close_deadline_ns = cs_clock_ns() + ms_ns(c->hub->o.close_timeout_ms);
    cs_log(c->hub->log, CS_LOG_VERBOSE, "ws %lld (%s): closing %u %s", (long long)c->id, c->user,
           code, reason);
}

/* @return 1 when the close frame was queued now. */
static int queue_close(client *c)
{
    if (!c->closing || c->close_queued || (c->close_code != 1013 && wslay_event_want_write(c->ws)))
        return 0;
    c->close_queued = 1;
    wslay_event_queue_close(c->ws, c->close_code, (const uint8_t *)c->close_reason,
                            strlen(c->close_reason));
    return 1;
}

static void slow_close(client *c)
{
    pthread_mutex_lock(&c->hub->lock);
    c->hub->closed_slow++;
    pthread_mutex_unlock(&c->hub->lock);
    start_close(c, 1013, "client too slow: reconnect with since");
}

/* Queue a frame of ours straight into wslay (copied). */
static void send_frame(client *c, const char *frame, size_t len)
{
    if (c->closing || c->broken)
        return;
    if (wslay_event_get_queued_msg_count(c->ws) > (size_t)c->hub->o.queue_max) {
        slow_close(c);
        return;
    }
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)frame, len};
    if (wslay_event_queue_msg(c->ws, &m) == 0)
        c->sent++;
}

static void send_json_frame(client *c, json_t *j)
{
    if (!j)
        return;
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (t)
        send_frame(c, t, strlen(t));
    free(t);
}

/* {"type":"reply","req":R,"ok":true[,"data":data]} (data stolen) */
static void reply_ok(client *c, json_t *msg, json_t *data)
{
    json_t *req = json_object_get(msg, "req");
    if (!req) {
        json_decref(data);
        return;
    }
    json_t *r = json_pack("{s:s, s:O, s:b}", "type", "reply", "req", req, "ok", 1);
    if (r && data)
        json_object_set_new(r, "data", data);
    else
        json_decref(data);
    send_json_frame(c, r);
}

static void reply_error(client *c, json_t *msg, const char *word, const char *text)
{
    json_t *req = msg ? json_object_get(msg, "req") : NULL;
    if (req)
        send_json_frame(c, json_pack("{s:s, s:O, s:b, s:s, s:s}", "type", "reply", "req", req, "ok",
                                     0, "error", word, "message", text));
    else
        send_json_frame(c, json_pack("{s:s, s:s}", "type", "error", "message", text));
}

/* Write out what wslay holds, waiting for the socket up to dead_after_ms
 * (for long replays). @return 0, or -1 when the peer is stuck. */
static int flush(client *c)
{
    int64_t deadline = cs_clock_ns() + ms_ns(c->hub->o.dead_after_ms);
    while (!c->broken && wslay_event_want_write(c->ws)) {
        if (wslay_event_send(c->ws) < 0)
            return -1;
        if (!wslay_event_want_write(c->ws))
            break;
        int64_t left = (deadline - cs_clock_ns()) / 1000000;
        if (left <= 0)
            return -1;
        struct pollfd p = {c->fd, POLLOUT, 0};
        if (poll(&p, 1, (int)(left < 1000 ? left : 1000)) < 0 && errno != EINTR)
            return -1;
    }
    return c->broken ? -1 : 0;
}

static void send_event(client *c, cs_event *ev)
{
    size_t len;
    const char *f = cs_event_frame(ev, &len);
    if (f)
        send_frame(c, f, len);
}

/* Move ring items into wslay while wslay holds few: the ring is what
 * counts towards queue_max, so a stuck client fills it. */
static void pump(client *c)
{
    while (!c->closing && wslay_event_get_queued_msg_count(c->ws) < WSLAY_SOFT_MAX) {
        pthread_mutex_lock(&c->lock);
        if (c->count == 0 || c->overflow || c->stop) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        out_item it = c->ring[c->head];
        c->head = (c->head + 1) % c->cap;
        c->count--;
        pthread_mutex_unlock(&c->lock);
        if (it.buf) {
            send_frame(c, it.buf, it.len);
        } else {
            const char *slide = topic_slide(cs_event_topic(it.ev));
            int64_t seq = cs_event_seq(it.ev);
            sub_slide *s = slide ? find_sub(c, slide, strlen(slide)) : NULL;
            if (slide && (!s || (seq > 0 && seq <= s->skip_upto))) {
                c->dropped++; /* unsubscribed meanwhile, or replayed already */
            } else {
                if (s && seq > s->sent_upto)
                    s->sent_upto = seq;
                send_event(c, it.ev);
            }
        }
        item_free(&it);
    }
}

/* ---- ops the hub handles ---- */

typedef struct {
    client *c;
    sub_slide *s;
    const char *slide;
    int64_t lo, hi;
} replay_ctx;

static void emit(void *ctx, cs_event *ev)
{
    replay_ctx *rc = ctx;
    client *c = rc->c;
    int64_t seq = cs_event_seq(ev);
    const char *slide = topic_slide(cs_event_topic(ev));
    if (c->broken || seq <= rc->lo || seq > rc->hi || !slide || strcmp(slide, rc->slide) != 0)
        return;
    send_event(c, ev);
    if (seq > rc->s->sent_upto)
        rc->s->sent_upto = seq;
    if (wslay_event_get_queued_msg_count(c->ws) >= 4 * WSLAY_SOFT_MAX && flush(c) < 0)
        c->broken = 1;
}

static int slides_arg(client *c, json_t *msg, json_t **out)
{
    json_t *slides = json_object_get(msg, "slides");
    size_t i;
    json_t *v;
    if (!json_is_array(slides)) {
        reply_error(c, msg, "bad_request", "\"slides\" must be an array of slide ids");
        return -1;
    }
    json_array_foreach(slides, i, v)
    {
        const char *id = json_string_value(v);
        if (!id || !*id || strlen(id) > MAX_SLIDE_ID || strlen(id) != json_string_length(v)) {
            reply_error(c, msg, "bad_request", "\"slides\" must hold slide ids (strings)");
            return -1;
        }
    }
    *out = slides;
    return 0;
}

static void op_subscribe(client *c, json_t *msg)
{
    cs_ws *hub = c->hub;
    json_t *slides, *jsince = json_object_get(msg, "since"), *v;
    size_t i;
    if (slides_arg(c, msg, &slides) < 0)
        return;
    if (jsince && !json_is_null(jsince) &&
        (!json_is_integer(jsince) || json_integer_value(jsince) < 0)) {
        reply_error(c, msg, "bad_request", "\"since\" must be a seq (an integer >= 0)");
        return;
    }
    /* 1. register live: from here on the bus queues this slide's events */
    pthread_mutex_lock(&c->lock);
    int full = 0;
    json_array_foreach(slides, i, v)
    {
        const char *id = json_string_value(v);
        if (find_sub(c, id, strlen(id)))
            continue;
        char *dup = strdup(id);
        if (c->nsubs == MAX_SUBS || !dup) {
            free(dup);
            full = 1;
            break;
        }
        c->subs[c->nsubs++] = (sub_slide){dup, 0, 0};
    }
    pthread_mutex_unlock(&c->lock);
    if (full) {
        reply_error(c, msg, "too_many", "too many subscriptions on one connection");
        return;
    }
    int64_t S = hub->core.last_seq ? hub->core.last_seq(hub->core.userdata) : 0;
    json_t *resync = json_array();
    if (jsince && json_is_integer(jsince)) {
        int64_t since = json_integer_value(jsince);
        json_array_foreach(slides, i, v)
        {
            const char *id = json_string_value(v);
            sub_slide *s = find_sub(c, id, strlen(id));
            /* 2. live events up to S will come from the log (or are older
             * than what the client has): skip them when they leave the ring */
            pthread_mutex_lock(&c->lock);
            if (S > s->skip_upto)
                s->skip_upto = S;
            pthread_mutex_unlock(&c->lock);
            /* 3. replay what the client misses and this connection has not sent */
            int64_t lo = since > s->sent_upto ? since : s->sent_upto;
            if (lo >= S || !hub->core.replay)
                continue;
            replay_ctx rc = {c, s, id, lo, S};
            int r = hub->core.replay(hub->core.userdata, id, lo, S, emit, &rc);
            if (r == CS_ERANGE) {
                json_array_append_new(resync, json_string(id));
            } else if (r < 0) {
                reply_error(c, msg, "internal", cs_error_last());
                json_decref(resync);
                return;
            }
        }
    }
    if (json_array_size(resync))
        send_json_frame(c, json_pack("{s:s, s:I, s:O}", "type", "resync", "seq", (json_int_t)S,
                                     "slides", resync));
    json_decref(resync);
    reply_ok(c, msg, json_pack("{s:I, s:O}", "seq", (json_int_t)S, "slides", slides));
}

static void op_unsubscribe(client *c, json_t *msg)
{
    json_t *slides, *v;
    size_t i;
    if (slides_arg(c, msg, &slides) < 0)
        return;
    pthread_mutex_lock(&c->lock);
    json_array_foreach(slides, i, v)
    {
        const char *id = json_string_value(v);
        sub_slide *s = find_sub(c, id, strlen(id));
        if (s) {
            free(s->id);
            *s = c->subs[--c->nsubs];
        }
    }
    pthread_mutex_unlock(&c->lock);
    reply_ok(c, msg, NULL);
}

static void post_viewport(client *c)
{
    char topic[MAX_SLIDE_ID + 8];
    snprintf(topic, sizeof(topic), "slide:%s", c->vp_slide);
    cs_event *ev = cs_event_new("viewer.viewport_changed", topic, 0, c->user, c->vp_pending);
    c->vp_pending = NULL;
    free(c->vp_slide);
    c->vp_slide = NULL;
    c->vp_last_ns = cs_clock_ns();
    if (!ev)
        return;
    pthread_mutex_lock(&c->lock);
    cs_event *old = c->own_viewport;
    c->own_viewport = cs_event_ref(ev);
    pthread_mutex_unlock(&c->lock);
    cs_event_unref(old);
    cs_bus_post(c->hub->bus, ev);
    cs_event_unref(ev);
}

static void op_viewport(client *c, json_t *msg)
{
    json_t *jslide = json_object_get(msg, "slide");
    const char *slide = json_string_value(jslide);
    if (!slide || !*slide || strlen(slide) > MAX_SLIDE_ID ||
        strlen(slide) != json_string_length(jslide)) {
        reply_error(c, msg, "bad_request", "viewport needs \"slide\" (a slide id)");
        return;
    }
    json_t *data = json_pack("{s:s}", "slide", slide);
    static const char *const keys[] = {"x", "y", "w", "h", "zoom", "rotation", NULL};
    for (int i = 0; keys[i]; i++) {
        json_t *n = json_object_get(msg, keys[i]);
        if (n && !json_is_number(n)) {
            json_decref(data);
            reply_error(c, msg, "bad_request", "viewport fields x, y, w, h, zoom are numbers");
            return;
        }
        if (n)
            json_object_set(data, keys[i], n);
    }
    /* coalesce: the newest viewport replaces one still waiting for its slot */
    json_decref(c->vp_pending);
    free(c->vp_slide);
    c->vp_pending = data;
    c->vp_slide = strdup(slide);
    if (!c->vp_slide) {
        json_decref(c->vp_pending);
        c->vp_pending = NULL;
    } else if (cs_clock_ns() - c->vp_last_ns >= ms_ns(c->hub->o.viewport_interval_ms)) {
        post_viewport(c);
    }
    reply_ok(c, msg, NULL);
}

static void malformed(client *c, const char *why)
{
    reply_error(c, NULL, "malformed", why);
    if (++c->bad_in_row >= MAX_BAD_IN_ROW) {
        pthread_mutex_lock(&c->hub->lock);
        c->hub->closed_malformed++;
        pthread_mutex_unlock(&c->hub->lock);
        start_close(c, 1008, "too many malformed frames");
    }
}

static void on_text(client *c, const uint8_t *data, size_t len)
{
    json_error_t err;
    json_t *msg = json_loadb((const char *)data, len, 0, &err);
    if (!msg || !json_is_object(msg)) {
        char why[300];
        if (msg)
            snprintf(why, sizeof(why), "a frame must be one JSON object");
        else
            snprintf(why, sizeof(why), "frame is not JSON: %s", err.text);
        json_decref(msg);
        malformed(c, why);
        return;
    }
    const char *op = json_string_value(json_object_get(msg, "op"));
    if (!op) {
        json_decref(msg);
        malformed(c, "a frame needs \"op\" (a string)");
        return;
    }
    c->bad_in_row = 0;
    cs_ws *hub = c->hub;
    if (strcmp(op, "subscribe") == 0) {
        op_subscribe(c, msg);
    } else if (strcmp(op, "unsubscribe") == 0) {
        op_unsubscribe(c, msg);
    } else if (strcmp(op, "viewport") == 0) {
        op_viewport(c, msg);
    } else if (strcmp(op, "ping") == 0) {
        reply_ok(c, msg, NULL);
    } else if (hub->core.command) {
        hub->core.command(hub->core.userdata, hub, c->id, c->user, c->role, msg);
    } else {
        char why[200];
        snprintf(why, sizeof(why), "unknown op %.100s", op);
        reply_error(c, msg, "unsupported", why);
    }
    json_decref(msg);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *userdata)
{
    (void)ctx;
    client *c = userdata;
    if (arg->opcode == WSLAY_TEXT_FRAME)
        on_text(c, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME)
        malformed(c, "binary frames are not part of the protocol: send JSON text");
    /* close, ping and pong: wslay answers them */
}

/* ---- the connection thread ---- */

static void conn_loop(client *c)
{
    cs_ws *hub = c->hub;
    int64_t now = cs_clock_ns();
    c->last_rx_ns = c->last_ping_ns = now;
    c->vp_last_ns = now - ms_ns(hub->o.viewport_interval_ms);
    int64_t seq = hub->core.last_seq ? hub->core.last_seq(hub->core.userdata) : 0;
    send_json_frame(c, json_pack("{s:s, s:I, s:s, s:s}", "type", "hello", "seq", (json_int_t)seq,
                                 "user", c->user, "role", c->role));
    if (c->extra_len && wslay_event_recv(c->ws) < 0)
        return;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int stop = c->stop, overflow = c->overflow;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            start_close(c, 1001, "server shutting down");
        else if (overflow && !c->closing)
            slow_close(c);
        now = cs_clock_ns();
        int64_t vp_due = c->vp_last_ns + ms_ns(hub->o.viewport_interval_ms);
        if (c->vp_pending && now >= vp_due)
            post_viewport(c);
        pump(c);
        if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) < 0)
            break;
        if (queue_close(c))
            continue;
        if (c->broken || (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)))
            break; /* closed both ways, or the peer is gone */
        now = cs_clock_ns();
        if (c->closing && now >= c->close_deadline_ns)
            break;
        int64_t dead_at = c->last_rx_ns + ms_ns(hub->o.dead_after_ms);
        if (now >= dead_at) {
            cs_log(hub->log, CS_LOG_VERBOSE, "ws %lld (%s): peer silent, dropped", (long long)c->id,
                   c->user);
            break;
        }
        int64_t ping_at = c->last_ping_ns + ms_ns(hub->o.ping_interval_ms);
        if (now >= ping_at && !c->closing) {
            struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
            wslay_event_queue_msg(c->ws, &m);
            c->last_ping_ns = now;
            continue;
        }
        int64_t next = dead_at < ping_at ? dead_at : ping_at;
        if (c->closing && c->close_deadline_ns < next)
            next = c->close_deadline_ns;
        if (c->vp_pending && vp_due < next)
            next = vp_due;
        pthread_mutex_lock(&c->lock);
        int ready =
            c->count > 0 && !c->closing && wslay_event_get_queued_msg_count(c->ws) < WSLAY_SOFT_MAX;
        pthread_mutex_unlock(&c->lock);
        int64_t wait_ms = ready ? 0 : (next - now + 999999) / 1000000;
        struct pollfd p[2] = {
            {c->fd,
             (short)((wslay_event_want_read(c->ws) ? POLLIN : 0) |
                     (wslay_event_want_write(c->ws) ? POLLOUT : 0)),
             0},
            {c->wake, POLLIN, 0},
        };
        int n = poll(p, 2, (int)(wait_ms > 60000 ? 60000 : wait_ms));
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (p[1].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(c->wake, &v, sizeof(v));
            (void)r;
        }
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && wslay_event_want_read(c->ws) &&
            wslay_event_recv(c->ws) < 0)
            break;
        if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN))
            break;
    }
}

/* After a close frame sent while reading had stopped (a frame too big: the
 * peer may still be sending it), read and drop until the peer closes or is
 * quiet, so it gets to read our close frame instead of a reset. */
static void linger(client *c)
{
    if (c->broken || !wslay_event_get_close_sent(c->ws) || wslay_event_get_close_received(c->ws))
        return;
    int64_t end = cs_clock_ns() + ms_ns(10000);
    uint8_t scratch[16384];
    for (;;) {
        int64_t left = (end - cs_clock_ns()) / 1000000;
        if (left <= 0)
            return;
        int idle = c->hub->o.close_timeout_ms;
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, (int)(left < idle ? left : idle)) <= 0)
            return;
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

static void conn_main(void *userdata)
{
    client *c = userdata;
    cs_ws *hub = c->hub;
    conn_loop(c);
    linger(c);
    cs_bus_unsubscribe(hub->bus, c->bus_sub); /* on_event is never called again */
    if (c->urh)
        MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    else
        close(c->fd);
    cs_log(hub->log, CS_LOG_VERBOSE, "ws %lld (%s): closed", (long long)c->id, c->user);
    pthread_mutex_lock(&hub->lock);
    for (client **p = &hub->live; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    hub->sent += c->sent;
    hub->dropped += c->dropped;
    c->next = hub->dead;
    hub->dead = c;
    pthread_cond_broadcast(&hub->gone);
    pthread_mutex_unlock(&hub->lock);
}

static void conn_free(client *c)
{
    if (!c)
        return;
    cs_thread_join(c->thread);
    if (c->ws)
        wslay_event_context_free(c->ws);
    for (size_t i = 0; i < c->count; i++)
        item_free(&c->ring[(c->head + i) % c->cap]);
    free(c->ring);
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].id);
    free(c->subs);
    cs_event_unref(c->own_viewport);
    json_decref(c->vp_pending);
    free(c->vp_slide);
    if (c->wake >= 0)
        close(c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c->extra);
    free(c->user);
    free(c->role);
    free(c);
}

/* Join and free finished connections. */
static void reap(cs_ws *hub)
{
    pthread_mutex_lock(&hub->lock);
    client *d = hub->dead;
    hub->dead = NULL;
    pthread_mutex_unlock(&hub->lock);
    while (d) {
        client *next = d->next;
        conn_free(d);
        d = next;
    }
}

/* Start a connection on an upgraded socket; on failure the socket is
 * closed (through @p urh when given). */
static int conn_start(cs_ws *hub, int fd, struct MHD_UpgradeResponseHandle *urh, const char *user,
                      const char *role, const char *extra, size_t extra_len, int64_t *id)
{
    reap(hub);
    static const struct wslay_event_callbacks cb = {recv_cb, send_cb, NULL,  NULL,
                                                    NULL,    NULL,    on_msg};
    int r = CS_ENOMEM;
    client *c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->hub = hub;
    c->fd = fd;
    c->urh = urh;
    c->wake = -1;
    pthread_mutex_init(&c->lock, NULL);
    c->cap = (size_t)hub->o.queue_max;
    c->ring = calloc(c->cap, sizeof(out_item));
    c->subs = calloc(MAX_SUBS, sizeof(sub_slide));
    c->user = strdup(user ? user : "");
    c->role = strdup(role ? role : "");
    if (extra_len) {
        c->extra = malloc(extra_len);
        if (c->extra) {
            memcpy(c->extra, extra, extra_len);
            c->extra_len = extra_len;
        }
    }
    if (!c->ring || !c->subs || !c->user || !c->role || (extra_len && !c->extra) ||
        wslay_event_context_server_init(&c->ws, &cb, c) != 0)
        goto fail;
    wslay_event_config_set_max_recv_msg_length(c->ws, hub->o.max_frame);
    c->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int fl = fcntl(fd, F_GETFL);
    if (c->wake < 0 || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        r = cs_error_set(CS_EIO, "ws: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_lock(&hub->lock);
    if (hub->closing) {
        pthread_mutex_unlock(&hub->lock);
        r = cs_error_set(CS_ECLOSED, "server shutting down");
        goto fail;
    }
    c->id = hub->next_id++;
    int64_t sub = cs_bus_subscribe(hub->bus, on_event, c);
    char name[16];
    snprintf(name, sizeof(name), "ws-%lld", (long long)c->id);
    c->bus_sub = sub; /* before the thread starts: it unsubscribes on its way out */
    if (sub < 0 || (r = cs_thread_start(&c->thread, name, conn_main, c)) < 0) {
        if (sub > 0)
            cs_bus_unsubscribe(hub->bus, sub);
        pthread_mutex_unlock(&hub->lock);
        r = sub < 0 ? (int)sub : r;
        goto fail;
    }
    c->next = hub->live;
    hub->live = c;
    hub->accepted++;
    if (id)
        *id = c->id;
    pthread_mutex_unlock(&hub->lock);
    cs_log(hub->log, CS_LOG_VERBOSE, "ws %lld: %s (%s) connected", (long long)c->id, c->user,
           c->role);
    return 0;
fail:
    if (r == CS_ENOMEM)
        cs_error_set(CS_ENOMEM, "out of memory");
    if (urh)
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    else
        close(fd);
    if (c) {
        c->thread = NULL;
        conn_free(c);
    }
    return r;
}

static void on_upgrade(void *cls, struct MHD_Connection *mc, void *con_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)con_cls;
    cs_ws *hub = cls;
    pthread_mutex_lock(&hub->lock);
    pending *p = NULL;
    for (pending **pp = &hub->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->mc == mc) {
            p = *pp;
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&hub->lock);
    if (!p) { /* cannot happen: the response was made for this connection */
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    if (conn_start(hub, sock, urh, p->user, p->role, extra, extra_len, NULL) < 0)
        cs_log(hub->log, CS_LOG_WARN, "ws: connection of %s refused: %s", p->user, cs_error_last());
    free(p->user);
    free(p->role);
    free(p);
}

/* ---- API ---- */

int cs_ws_new(cs_ws **out, cs_bus *bus, const cs_ws_core *core, const cs_ws_opts *opts,
              cs_logger *log)
{
    cs_ws *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return cs_error_set(CS_ENOMEM, "out of memory");
    cs_ws_opts d = CS_WS_OPTS_INIT;
    hub->o = opts ? *opts : d;
    if (hub->o.queue_max < 1)
        hub->o.queue_max = d.queue_max;
    if (core)
        hub->core = *core;
    hub->bus = bus;
    hub->log = log;
    hub->next_id = 1;
    pthread_mutex_init(&hub->lock, NULL);
    pthread_cond_init(&hub->gone, NULL);
    *out = hub;
    return 0;
}

static struct MHD_Response *error_response(unsigned *status, unsigned code, const char *word,
                                           const char *msg)
{
    json_t *j = json_pack("{s:s, s:s}", "error", word, "message", msg);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t)
        return NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(t), t, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(t);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (code == MHD_HTTP_UPGRADE_REQUIRED) {
        MHD_add_response_header(r, "Upgrade", "websocket");
        MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
    }
    *status = code;
    return r;
}

struct MHD_Response *cs_ws_upgrade_response(cs_ws *hub, struct MHD_Connection *conn,
                                            const char *user, const char *role, unsigned *status)
{
    const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
    const char *co = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
    const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    if (!has_token(up, "websocket"))
        return error_response(status, MHD_HTTP_UPGRADE_REQUIRED, "upgrade_required",
                              "/ws is a WebSocket: send 'Upgrade: websocket'");
    if (!has_token(co, "upgrade"))
        return error_response(status, MHD_HTTP_BAD_REQUEST, "bad_handshake",
                              "WebSocket handshake needs 'Connection: Upgrade'");
    if (!ver || strcmp(ver, "13") != 0)
        return error_response(status, MHD_HTTP_UPGRADE_REQUIRED, "upgrade_required",
                              "only WebSocket version 13 is spoken");
    if (!key_ok(key))
        return error_response(status, MHD_HTTP_BAD_REQUEST, "bad_handshake",
                              "Sec-WebSocket-Key must be 16 bytes in base64");
    char buf[24 + 36 + 1];
    snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t digest[20];
    sha1(digest, buf, strlen(buf));
    char accept[32];
    base64(accept, digest, sizeof(digest));

    pending *p = calloc(1, sizeof(*p));
    if (!p || !(p->user = strdup(user ? user : "")) || !(p->role = strdup(role ? role : ""))) {
        if (p)
            free(p->user);
        free(p);
        return NULL;
    }
    p->mc = conn;
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, hub);
    if (!r) {
        free(p->user);
        free(p->role);
        free(p);
        return NULL;
    }
    MHD_add_response_header(r, "Upgrade", "websocket");
    /* libmicrohttpd adds "Connection: Upgrade" itself */
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    /* One entry per HTTP connection: an older one for the same pointer is
     * stale (that connection failed before its upgrade and the pointer was
     * reused), so it is replaced, never matched. */
    pthread_mutex_lock(&hub->lock);
    for (pending **pp = &hub->pending; *pp;) {
        pending *q = *pp;
        if (q->mc == conn) {
            *pp = q->next;
            free(q->user);
            free(q->role);
            free(q);
        } else {
            pp = &q->next;
        }
    }
    p->next = hub->pending;
    hub->pending = p;
    pthread_mutex_unlock(&hub->lock);
    *status = MHD_HTTP_SWITCHING_PROTOCOLS;
    return r;
}

int cs_ws_attach(cs_ws *hub, int fd, const char *user, const char *role, int64_t *id)
{
    return conn_start(hub, fd, NULL, user, role, NULL, 0, id);
}

int cs_ws_send(cs_ws *hub, int64_t id, const char *frame, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return cs_error_set(CS_ENOMEM, "out of memory");
    memcpy(copy, frame, len);
    copy[len] = '\0';
    int r = CS_ENOTFOUND, need_wake = 0;
    pthread_mutex_lock(&hub->lock);
    client *c = hub->live;
    while (c && c->id != id)
        c = c->next;
    if (c) {
        pthread_mutex_lock(&c->lock);
        r = push_locked(c, (out_item){NULL, copy, len}, &need_wake);
        pthread_mutex_unlock(&c->lock);
        if (need_wake)
            wake(c);
    }
    pthread_mutex_unlock(&hub->lock);
    if (!c) {
        free(copy);
        return cs_error_set(CS_ENOTFOUND, "WebSocket connection %lld is gone", (long long)id);
    }
    if (r == CS_EAGAIN)
        return cs_error_set(CS_EAGAIN, "WebSocket connection %lld is too slow", (long long)id);
    if (r == CS_ECLOSED)
        return cs_error_set(CS_ENOTFOUND, "WebSocket connection %lld is closing", (long long)id);
    return r;
}

void cs_ws_close_all(cs_ws *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->lock);
    hub->closing = 1;
    for (client *c = hub->live; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        c->stop = 1;
        pthread_mutex_unlock(&c->lock);
        wake(c);
    }
    while (hub->live)
        pthread_cond_wait(&hub->gone, &hub->lock);
    pthread_mutex_unlock(&hub->lock);
    reap(hub);
}

void cs_ws_free(cs_ws *hub)
{
    if (!hub)
        return;
    cs_ws_close_all(hub);
    while (hub->pending) {
        pending *p = hub->pending;
        hub->pending = p->next;
        free(p->user);
        free(p->role);
        free(p);
    }
    pthread_cond_destroy(&hub->gone);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

json_t *cs_ws_stats(cs_ws *hub)
{
    reap(hub);
    pthread_mutex_lock(&hub->lock);
    size_t n = 0;
    uint64_t sent = hub->sent, dropped = hub->dropped;
    for (client *c = hub->live; c; c = c->next)
        n++;
    json_t *j =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)n, "accepted",
                  (json_int_t)hub->accepted, "closed_slow", (json_int_t)hub->closed_slow,
                  "closed_malformed", (json_int_t)hub->closed_malformed, "frames_sent",
                  (json_int_t)sent, "frames_dropped", (json_int_t)dropped);
    pthread_mutex_unlock(&hub->lock);
    return j;
}
