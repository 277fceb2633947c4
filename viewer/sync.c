/* viewer/sync: see sync.h.
 *
 * Two halves. The sync thread owns the socket, the wslay context and curl;
 * it receives JSON text to send through `out` (woken by a pipe) and hands
 * parsed messages to the render thread through `in`. The render half owns
 * the annotation list and the table of requests in flight. Nothing is
 * shared but the two queues, the pipe and a few atomics. */
#include "sync.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <wslay/wslay.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/queue.h"
#include "cs/thread.h"

#include "source.h"

#define IN_CAP      4096
#define OUT_CAP     1024
#define MAX_MSG     (17u << 20)
#define BACKOFF_MIN 500
#define BACKOFF_MAX 10000

enum { MSG_SNAPSHOT, MSG_FRAME, MSG_UP, MSG_DOWN, MSG_FATAL };
enum { OP_CREATE = 1, OP_UPDATE, OP_DELETE };

typedef struct {
    int kind;
    json_t *j;      /* SNAPSHOT: the GET body; FRAME: the frame */
    char text[300]; /* DOWN/FATAL: why */
} msg;

typedef struct {
    int req, op;
    uint64_t key;
    char id[40];
    int del_after; /* create: deleted locally before the reply */
} pending;

/* A command on its way out, kept until its reply passes by. */
typedef struct {
    int req;
    char *text;
} outcmd;

struct vw_sync {
    /* fixed at creation */
    char *base, *token, *slide;
    int insecure;
    char *cacert;
    void (*wake)(void *userdata);
    void *userdata;
    cs_queue *in, *out;
    int pipefd[2];
    cs_thread *thread;
    atomic_int stop;
    atomic_int up; /* subscribed */
    cs_logger *log;
    /* sync thread */
    outcmd **unacked;
    size_t nunacked, capunacked;
    long since;
    int need_snapshot;
    uint8_t *pre; /* bytes read with the handshake answer, fed to wslay first */
    size_t pre_len, pre_off;
    int fd;
    int closed;
    /* render thread */
    vw_annots *annots;
    vw_edit *edit;
    char user[64];
    pending *pend;
    size_t npend, cappend;
    int next_req;
    int ready, failed, was_up;
};

/* ================= sync thread ================= */

static void free_msg(void *p)
{
    msg *m = p;
    if (m)
        json_decref(m->j);
    free(m);
}

static void free_outcmd(void *p)
{
    outcmd *c = p;
    if (c)
        free(c->text);
    free(c);
}

static void push_in(vw_sync *s, int kind, json_t *j, const char *text)
{
    msg *m = calloc(1, sizeof(*m));
    if (!m) {
        json_decref(j);
        return;
    }
    m->kind = kind;
    m->j = j;
    snprintf(m->text, sizeof(m->text), "%s", text ? text : "");
    /* wait for room rather than drop an event: the render thread drains
     * every frame, and a lost event would leave the list wrong */
    int r;
    while ((r = cs_queue_push(s->in, m, 200)) == CS_ETIMEDOUT && !atomic_load(&s->stop)) {
    }
    if (r < 0) {
        free_msg(m);
        return;
    }
    if (s->wake)
        s->wake(s->userdata);
}

/* Sleep @p ms unless asked to stop (the pipe wakes us). */
static void nap(vw_sync *s, int ms)
{
    struct pollfd p = {s->pipefd[0], POLLIN, 0};
    int64_t end = cs_clock_ns() + (int64_t)ms * 1000000;
    while (!atomic_load(&s->stop)) {
        int64_t left = (end - cs_clock_ns()) / 1000000;
        if (left <= 0)
            break;
        poll(&p, 1, (int)left);
        char b[64];
        while (read(s->pipefd[0], b, sizeof(b)) > 0) {
        }
    }
}

/* GET base + /slides/{id}/annotations. @return 0, or the HTTP status / -1. */
static int load(vw_sync *s, json_t **out, char *why, size_t whyn)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char *esc = curl_easy_escape(c, s->slide, 0);
    size_t n = strlen(s->base) + (esc ? strlen(esc) : 0) + 32;
    char *url = malloc(n);
    if (!url || !esc) {
        curl_free(esc);
        free(url);
        curl_easy_cleanup(c);
        return -1;
    }
    snprintf(url, n, "%s/slides/%s/annotations", s->base, esc);
    curl_free(esc);
    curl_easy_cleanup(c);
    char cerr[CURL_ERROR_SIZE], *data;
    long status;
    int cc = vw_http_get(url, s->token, s->insecure, s->cacert, 60L, &data, &status, cerr);
    int r = 0;
    if (cc != CURLE_OK) {
        snprintf(why, whyn, "GET %s: %s", url, cerr);
        r = -1;
    } else if (status != 200) {
        snprintf(why, whyn, "GET %s: HTTP %ld", url, status);
        r = (int)status;
    } else if (!(*out = json_loads(data ? data : "", 0, NULL)) ||
               !json_is_array(json_object_get(*out, "annotations"))) {
        snprintf(why, whyn, "GET %s: not an annotation list", url);
        json_decref(*out);
        *out = NULL;
        r = -1;
    }
    free(data);
    free(url);
    return r;
}

/* ---- WebSocket client ---- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    vw_sync *s = user_data;
    if (s->pre_off < s->pre_len) {
        size_t n = s->pre_len - s->pre_off < len ? s->pre_len - s->pre_off : len;
        memcpy(buf, s->pre + s->pre_off, n);
        s->pre_off += n;
        return (ssize_t)n;
    }
    ssize_t r;
    while ((r = recv(s->fd, buf, len, 0)) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (r == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        s->closed = 1;
        return -1;
    }
    return r;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    vw_sync *s = user_data;
    ssize_t r;
    while ((r = send(s->fd, data, len, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    (void)ctx;
    (void)user_data;
    size_t got = 0;
    while (got < len) {
        ssize_t r = getrandom(buf + got, len - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void ws_queue_text(wslay_event_context_ptr ctx, const char *text)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, strlen(text)};
    wslay_event_queue_msg(ctx, &m);
}

static void send_subscribe(vw_sync *s, wslay_event_context_ptr ctx)
{
    json_t *j = json_pack("{s:s,s:[s]}", "op", "subscribe", "slides", s->slide);
    if (j && s->since >= 0)
        json_object_set_new(j, "since", json_integer(s->since));
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (t)
        ws_queue_text(ctx, t);
    free(t);
    json_decref(j);
}

/* The reply to @p req arrived: forget the command. */
static void acked(vw_sync *s, int req)
{
    for (size_t i = 0; i < s->nunacked; i++)
        if (s->unacked[i]->req == req) {
            free_outcmd(s->unacked[i]);
            memmove(&s->unacked[i], &s->unacked[i + 1],
                    (s->nunacked - i - 1) * sizeof(*s->unacked));
            s->nunacked--;
            return;
        }
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user_data)
{
    vw_sync *s = user_data;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        s->closed = 1;
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    json_t *j = json_loadb((const char *)arg->msg, arg->msg_length, 0, NULL);
    if (!json_is_object(j)) {
        cs_log(s->log, CS_LOG_WARN, "a frame that is not a JSON object (ignored)");
        json_decref(j);
        return;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    json_int_t seq = json_integer_value(json_object_get(j, "seq"));
    if (type && strcmp(type, "resync") == 0) {
        /* the server cannot replay: load the list again, then subscribe */
        s->need_snapshot = 1;
        json_decref(j);
        return;
    }
    if (type && strcmp(type, "reply") == 0)
        acked(s, (int)json_integer_value(json_object_get(j, "req")));
    if (type && strcmp(type, "event") == 0 && seq > 0) {
        if (seq <= s->since) { /* replayed twice: already applied */
            json_decref(j);
            return;
        }
        s->since = (long)seq;
    }
    (void)ctx;
    push_in(s, MSG_FRAME, j, NULL);
}

/* Split s->base "http://host[:port][/prefix]". @return 0, or -1 (not http). */
static int split_base(const char *base, char *host, size_t hn, char *port, size_t pn, char *prefix,
                      size_t xn)
{
    if (strncmp(base, "http://", 7) != 0)
        return -1;
    const char *h = base + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    snprintf(prefix, xn, "%s", slash ? slash : "");
    char hp[300];
    if (hl >= sizeof(hp))
        return -1;
    memcpy(hp, h, hl);
    hp[hl] = '\0';
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (colon && hp[0] == '[')
        colon++;
    if (colon) {
        *colon = '\0';
        snprintf(port, pn, "%s", colon + 1);
    } else {
        snprintf(port, pn, "80");
    }
    const char *name = hp;
    if (hp[0] == '[') {
        size_t l = strlen(hp);
        if (l >= 2 && hp[l - 1] == ']')
            hp[l - 1] = '\0';
        name++;
    }
    size_t l = strlen(name);
    if (l >= hn)
        return -1; /* a host name longer than the buffer */
    memcpy(host, name, l + 1);
    return 0;
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {fd, ev, 0};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    return r > 0 ? 0 : -1;
}

/* TCP connect + HTTP upgrade. @return the socket (non-blocking) or -1. */
static int ws_connect(vw_sync *s, char *why, size_t whyn)
{
    char host[256], port[16], prefix[512];
    if (split_base(s->base, host, sizeof(host), port, sizeof(port), prefix, sizeof(prefix)) < 0) {
        snprintf(why, whyn, "live sync needs an http:// server (no wss support)");
        return -2;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    int gr = getaddrinfo(host, port, &hints, &ai);
    if (gr != 0) {
        snprintf(why, whyn, "%s: %s", host, gai_strerror(gr));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int cr = connect(fd, a->ai_addr, a->ai_addrlen);
        int err = 0;
        socklen_t el = sizeof(err);
        if (cr < 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT, 5000) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
            cr = 0;
        if (cr < 0) {
            snprintf(why, whyn, "connect %s:%s: %s", host, port, strerror(err ? err : errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    /* the upgrade request */
    uint8_t key[16];
    ws_genmask(NULL, key, sizeof(key), NULL);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char k64[25];
    for (int i = 0, o = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)key[i] << 16 | (i + 1 < 16 ? (uint32_t)key[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? key[i + 2] : 0);
        k64[o++] = b64[v >> 18 & 63];
        k64[o++] = b64[v >> 12 & 63];
        k64[o++] = i + 1 < 16 ? b64[v >> 6 & 63] : '=';
        k64[o++] = i + 2 < 16 ? b64[v & 63] : '=';
        k64[o] = '\0';
    }
    char *tok = curl_easy_escape(NULL, s->token, 0);
    size_t rn = strlen(prefix) + (tok ? strlen(tok) : 0) + strlen(host) + 400;
    char *req = malloc(rn);
    if (!tok || !req) {
        curl_free(tok);
        free(req);
        close(fd);
        snprintf(why, whyn, "out of memory");
        return -1;
    }
    int len = snprintf(req, rn,
                       "GET %s/ws?access_token=%s HTTP/1.1\r\nHost: %s:%s\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                       "User-Agent: consilium-view/0.1\r\n\r\n",
                       prefix, tok, host, port, k64);
    curl_free(tok);
    for (int off = 0; off < len;) {
        ssize_t w = send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, 5000) == 0)
            continue;
        if (w <= 0) {
            snprintf(why, whyn, "sending the upgrade: %s", strerror(errno));
            free(req);
            close(fd);
            return -1;
        }
        off += (int)w;
    }
    free(req);
    /* the answer, up to the blank line; what follows belongs to wslay */
    char ans[8192];
    size_t got = 0;
    char *end = NULL;
    int64_t deadline = cs_clock_ns() + 10000000000ll;
    while (!end) {
        if (got == sizeof(ans) - 1 || cs_clock_ns() > deadline || atomic_load(&s->stop)) {
            snprintf(why, whyn, "no WebSocket upgrade answer");
            close(fd);
            return -1;
        }
        if (wait_fd(fd, POLLIN, 500) < 0)
            continue;
        ssize_t r = recv(fd, ans + got, sizeof(ans) - 1 - got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            snprintf(why, whyn, "connection closed during the WebSocket upgrade");
            close(fd);
            return -1;
        }
        got += (size_t)r;
        ans[got] = '\0';
        end = strstr(ans, "\r\n\r\n");
    }
    int code = 0;
    if (sscanf(ans, "HTTP/1.%*d %d", &code) != 1 || code != 101) {
        char *eol = strstr(ans, "\r\n");
        if (eol)
            *eol = '\0';
        snprintf(why, whyn, "GET /ws answered '%.100s'", ans);
        close(fd);
        return code == 404 ? -3 : -1;
    }
    size_t hlen = (size_t)(end + 4 - ans);
    free(s->pre);
    s->pre = NULL;
    s->pre_len = s->pre_off = 0;
    if (got > hlen && (s->pre = malloc(got - hlen))) {
        memcpy(s->pre, ans + hlen, got - hlen);
        s->pre_len = got - hlen;
    }
    return fd;
}

static void drain_out(vw_sync *s, wslay_event_context_ptr ctx)
{
    char b[64];
    while (read(s->pipefd[0], b, sizeof(b)) > 0) {
    }
    void *item;
    while (cs_queue_pop(s->out, &item, 0) == 0) {
        outcmd *c = item;
        ws_queue_text(ctx, c->text);
        if (s->nunacked == s->capunacked) {
            size_t cap = s->capunacked ? s->capunacked * 2 : 16;
            outcmd **n = realloc(s->unacked, cap * sizeof(*n));
            if (!n) {
                free_outcmd(c);
                continue;
            }
            s->unacked = n;
            s->capunacked = cap;
        }
        s->unacked[s->nunacked++] = c;
    }
}

/* Load the list if needed. @return 0, -1 to retry, -2 to give up. */
static int snapshot(vw_sync *s)
{
    char why[400] = "";
    json_t *j = NULL;
    int r = load(s, &j, why, sizeof(why));
    if (r == 0) {
        json_int_t seq = json_integer_value(json_object_get(j, "seq"));
        s->since = (long)seq;
        s->need_snapshot = 0;
        push_in(s, MSG_SNAPSHOT, j, NULL);
        return 0;
    }
    cs_log(s->log, CS_LOG_WARN, "%s", why);
    if (r == 404 || r == 405 || r == 401 || r == 403) {
        push_in(s, MSG_FATAL, NULL, why);
        return -2;
    }
    push_in(s, MSG_DOWN, NULL, why);
    return -1;
}

static void sync_main(void *userdata)
{
    vw_sync *s = userdata;
    int backoff = BACKOFF_MIN;
    struct wslay_event_callbacks cb = {ws_recv, ws_send, ws_genmask, NULL, NULL, NULL, ws_on_msg};
    while (!atomic_load(&s->stop)) {
        if (s->need_snapshot) {
            int r = snapshot(s);
            if (r == -2)
                break;
            if (r < 0) {
                nap(s, backoff);
                backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
                continue;
            }
        }
        char why[400] = "";
        int fd = ws_connect(s, why, sizeof(why));
        if (fd == -2 || fd == -3) {
            cs_log(s->log, CS_LOG_WARN, "%s: annotations are loaded but not live", why);
            push_in(s, MSG_FATAL, NULL, why);
            break;
        }
        if (fd < 0) {
            cs_log(s->log, CS_LOG_VERBOSE, "WebSocket: %s (retry in %d ms)", why, backoff);
            push_in(s, MSG_DOWN, NULL, why);
            nap(s, backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
            continue;
        }
        s->fd = fd;
        s->closed = 0;
        wslay_event_context_ptr ctx = NULL;
        if (wslay_event_context_client_init(&ctx, &cb, s) != 0) {
            close(fd);
            break;
        }
        wslay_event_config_set_max_recv_msg_length(ctx, MAX_MSG);
        send_subscribe(s, ctx);
        /* commands unanswered when the last connection dropped go again
         * (an update on a stale base then gets "conflict", and the render
         * half takes the current version) */
        for (size_t i = 0; i < s->nunacked; i++)
            ws_queue_text(ctx, s->unacked[i]->text);
        drain_out(s, ctx);
        atomic_store(&s->up, 1);
        push_in(s, MSG_UP, NULL, NULL);
        backoff = BACKOFF_MIN;
        while (!atomic_load(&s->stop) && !s->closed) {
            if (s->need_snapshot) {
                if (snapshot(s) < 0)
                    break;
                send_subscribe(s, ctx);
            }
            struct pollfd p[2] = {{fd, 0, 0}, {s->pipefd[0], POLLIN, 0}};
            if (wslay_event_want_read(ctx))
                p[0].events |= POLLIN;
            if (wslay_event_want_write(ctx))
                p[0].events |= POLLOUT;
            if (!p[0].events)
                break; /* closed both ways */
            int pr = s->pre_off < s->pre_len ? 1 : poll(p, 2, 1000);
            if (pr < 0 && errno != EINTR)
                break;
            if (p[1].revents)
                drain_out(s, ctx);
            if ((p[0].revents & (POLLIN | POLLERR | POLLHUP)) || s->pre_off < s->pre_len) {
                if (wslay_event_recv(ctx) != 0)
                    break;
            }
            if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
                break;
            if (wslay_event_get_close_received(ctx))
                s->closed = 1;
        }
        wslay_event_context_free(ctx);
        close(fd);
        s->fd = -1;
        atomic_store(&s->up, 0);
        if (!atomic_load(&s->stop)) {
            cs_log(s->log, CS_LOG_INFO, "WebSocket closed; reconnecting (since %ld)", s->since);
            push_in(s, MSG_DOWN, NULL, "connection lost");
            nap(s, backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
        }
    }
    atomic_store(&s->up, 0);
}

/* ================= render half ================= */

static void send_json(vw_sync *s, json_t *j)
{
    outcmd *c = calloc(1, sizeof(*c));
    char *t = j && c ? json_dumps(j, JSON_COMPACT) : NULL;
    if (c)
        c->req = (int)json_integer_value(json_object_get(j, "req"));
    json_decref(j);
    if (!t) {
        free(c);
        return;
    }
    c->text = t;
    if (cs_queue_try_push(s->out, c) < 0) {
        free_outcmd(c);
        vw_edit_status(s->edit, "too many edits queued; one was dropped");
        return;
    }
    char one = 1;
    if (write(s->pipefd[1], &one, 1) < 0) {
        /* the pipe is full: the thread is awake anyway */
    }
}

static pending *add_pending(vw_sync *s, int op, const vw_annot *a)
{
    if (s->npend == s->cappend) {
        size_t cap = s->cappend ? s->cappend * 2 : 16;
        pending *n = realloc(s->pend, cap * sizeof(*n));
        if (!n)
            return NULL;
        s->pend = n;
        s->cappend = cap;
    }
    pending *p = &s->pend[s->npend++];
    memset(p, 0, sizeof(*p));
    p->req = ++s->next_req;
    p->op = op;
    p->key = a->key;
    snprintf(p->id, sizeof(p->id), "%s", a->id);
    return p;
}

static pending *find_pending(vw_sync *s, int req)
{
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].req == req)
            return &s->pend[i];
    return NULL;
}

static void drop_pending(vw_sync *s, pending *p)
{
    size_t i = (size_t)(p - s->pend);
    memmove(p, p + 1, (s->npend - i - 1) * sizeof(*p));
    s->npend--;
}

static void send_create(vw_sync *s, vw_annot *a, pending *p)
{
    a->req = p->req;
    send_json(s, json_pack("{s:s,s:i,s:s,s:o}", "op", "annot.create", "req", p->req, "slide",
                           s->slide, "annotation", vw_annot_fields_json(a)));
}

static void send_update(vw_sync *s, vw_annot *a)
{
    pending *p = add_pending(s, OP_UPDATE, a);
    if (!p)
        return;
    a->req = p->req;
    a->dirty = 0;
    json_t *f = vw_annot_fields_json(a);
    json_object_del(f, "type");
    json_object_del(f, "comment");
    send_json(s, json_pack("{s:s,s:i,s:s,s:I,s:o}", "op", "annot.update", "req", p->req, "id",
                           a->id, "rev", (json_int_t)a->rev, "patch", f));
}

static void send_delete(vw_sync *s, const char *id, long rev, pending *p)
{
    json_t *j = json_pack("{s:s,s:i,s:s}", "op", "annot.delete", "req", p->req, "id", id);
    if (j && rev > 0)
        json_object_set_new(j, "rev", json_integer(rev));
    send_json(s, j);
}

void vw_sync_changed(void *userdata, vw_annot *a, int op)
{
    vw_sync *s = userdata;
    if (op == VW_EDIT_CREATED) {
        snprintf(a->author, sizeof(a->author), "%s", s->user);
        pending *p = add_pending(s, OP_CREATE, a);
        if (p)
            send_create(s, a, p);
    } else if (op == VW_EDIT_UPDATED) {
        if (a->req || !a->id[0])
            a->dirty = 1; /* sent when the request in flight is answered */
        else
            send_update(s, a);
    } else if (op == VW_EDIT_DELETED) {
        if (!a->id[0]) {
            for (size_t i = 0; i < s->npend; i++)
                if (s->pend[i].key == a->key && s->pend[i].op == OP_CREATE)
                    s->pend[i].del_after = 1;
            return;
        }
        pending *p = add_pending(s, OP_DELETE, a);
        if (p) /* with an update in flight the base rev is about to change */
            send_delete(s, a->id, a->req ? 0 : a->rev, p);
    }
}

static int same_shape(const vw_annot *a, const vw_annot *b)
{
    if (a->type != b->type || a->npts != b->npts)
        return 0;
    for (int i = 0; i < a->npts; i++)
        if (a->pts[i].x != b->pts[i].x || a->pts[i].y != b->pts[i].y)
            return 0;
    return 1;
}

static vw_annot *parse(vw_sync *s, const json_t *j)
{
    char err[200];
    vw_annot *a = vw_annot_from_json(s->annots, j, err, sizeof(err));
    if (!a)
        cs_log(s->log, CS_LOG_WARN, "an annotation from the server is malformed: %s", err);
    return a;
}

/* Put the server's version @p a in place of @p old (or append it). */
static void take(vw_sync *s, vw_annot *old, vw_annot *a)
{
    if (old)
        vw_annots_replace(s->annots, old->key, a);
    else
        vw_annots_add(s->annots, a);
}

static void apply_snapshot(vw_sync *s, const json_t *j)
{
    json_t *list = json_object_get(j, "annotations");
    vw_annots *as = s->annots;
    uint64_t *seen = calloc(json_array_size(list) + 1, sizeof(*seen));
    size_t nseen = 0, i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        vw_annot *a = parse(s, o);
        if (!a)
            continue;
        vw_annot *old = vw_annots_by_id(as, a->id);
        if (old && (old->req || old->dirty)) { /* ours, in flight: the reply settles it */
            if (seen)
                seen[nseen++] = old->key;
            vw_annot_free(a);
            continue;
        }
        take(s, old, a);
        if (seen)
            seen[nseen++] = old ? old->key : a->key;
    }
    /* those gone from the server (and not ours in flight) go */
    for (size_t k = as->n; seen && k-- > 0;) {
        vw_annot *a = as->v[k];
        if (!a->id[0] || a->req)
            continue;
        int found = 0;
        for (size_t m = 0; m < nseen && !found; m++)
            found = seen[m] == a->key;
        if (!found)
            vw_annots_remove(as, a->key);
    }
    free(seen);
}

static void apply_event(vw_sync *s, const json_t *j)
{
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *origin = json_string_value(json_object_get(j, "origin"));
    json_t *data = json_object_get(j, "data");
    if (!ev || strncmp(ev, "annotation.", 11) != 0)
        return;
    const char *id = json_string_value(json_object_get(data, "id"));
    vw_annot *old = vw_annots_by_id(s->annots, id);
    if (strcmp(ev, "annotation.deleted") == 0) {
        if (old) {
            if (old->key == s->edit->sel)
                s->edit->sel = 0;
            if (old->req || old->dirty)
                vw_edit_status(s->edit, "%s deleted an annotation you were editing",
                               origin ? origin : "someone");
            vw_annots_remove(s->annots, old->key);
        }
        return;
    }
    if (strcmp(ev, "annotation.conflict") == 0) {
        json_t *cur = json_object_get(data, "current");
        vw_annot *a = cur ? parse(s, cur) : NULL;
        if (a) {
            old = vw_annots_by_id(s->annots, a->id);
            if (old) {
                a->req = old->req;
            }
            take(s, old, a);
            vw_edit_status(s->edit, "conflict: %s changed it first; showing their version",
                           a->author);
        }
        return;
    }
    if (strcmp(ev, "annotation.created") != 0 && strcmp(ev, "annotation.updated") != 0)
        return;
    vw_annot *a = parse(s, data);
    if (!a)
        return;
    if (!old && origin && strcmp(origin, s->user) == 0) {
        /* our own create whose reply is still on its way: the reply names it */
        for (size_t i = 0; i < s->npend; i++) {
            vw_annot *mine = vw_annots_by_key(s->annots, s->pend[i].key);
            if (s->pend[i].op == OP_CREATE && mine && !mine->id[0] && same_shape(mine, a)) {
                vw_annot_free(a);
                return;
            }
        }
    }
    if (old && (old->req || old->dirty || a->rev <= old->rev)) {
        vw_annot_free(a); /* ours in flight (the reply settles it), or not newer */
        return;
    }
    take(s, old, a);
}

static void apply_reply(vw_sync *s, const json_t *j)
{
    int req = (int)json_integer_value(json_object_get(j, "req"));
    pending *p = find_pending(s, req);
    if (!p)
        return;
    pending pc = *p;
    drop_pending(s, p);
    vw_annot *mine = vw_annots_by_key(s->annots, pc.key);
    if (mine && mine->req == req)
        mine->req = 0;
    json_t *data = json_object_get(j, "data");
    if (json_is_true(json_object_get(j, "ok"))) {
        if (pc.op == OP_DELETE)
            return;
        const char *id = json_string_value(json_object_get(data, "id"));
        long rev = (long)json_integer_value(json_object_get(data, "rev"));
        if (pc.op == OP_CREATE && pc.del_after) {
            pending *d = id ? add_pending(s, OP_DELETE, &(vw_annot){.key = pc.key}) : NULL;
            if (d) {
                snprintf(d->id, sizeof(d->id), "%s", id);
                send_delete(s, id, rev, d);
            }
            return;
        }
        if (!mine)
            return;
        if (id && pc.op == OP_CREATE) {
            /* the created event may have come first and added a copy */
            vw_annot *dup = vw_annots_by_id(s->annots, id);
            if (dup && dup != mine) {
                if (s->edit->sel == dup->key)
                    s->edit->sel = mine->key;
                vw_annots_remove(s->annots, dup->key);
            }
            snprintf(mine->id, sizeof(mine->id), "%s", id);
        }
        mine->rev = rev;
        const char *au = json_string_value(json_object_get(data, "author"));
        if (au)
            snprintf(mine->author, sizeof(mine->author), "%s", au);
        const char *cr = json_string_value(json_object_get(data, "created"));
        const char *up = json_string_value(json_object_get(data, "updated"));
        if (cr)
            snprintf(mine->created, sizeof(mine->created), "%s", cr);
        if (up)
            snprintf(mine->updated, sizeof(mine->updated), "%s", up);
        if (mine->dirty)
            send_update(s, mine);
        return;
    }
    const char *err = json_string_value(json_object_get(j, "error"));
    const char *m = json_string_value(json_object_get(j, "message"));
    json_t *cur = json_object_get(j, "current");
    if (err && strcmp(err, "conflict") == 0 && json_is_object(cur)) {
        vw_annot *a = parse(s, cur);
        if (a) {
            vw_annot *old = mine ? mine : vw_annots_by_id(s->annots, a->id);
            take(s, old, a);
            vw_edit_status(s->edit, "conflict: %s changed it first; showing their version",
                           *a->author ? a->author : "someone");
        }
        return;
    }
    vw_edit_status(s->edit, "the server refused the %s: %s",
                   pc.op == OP_CREATE   ? "new annotation"
                   : pc.op == OP_UPDATE ? "change"
                                        : "deletion",
                   m     ? m
                   : err ? err
                         : "error");
    if (pc.op == OP_CREATE && mine)
        vw_annots_remove(s->annots, mine->key);
}

int vw_sync_poll(vw_sync *s)
{
    int changed = 0;
    void *item;
    while (cs_queue_pop(s->in, &item, 0) == 0) {
        msg *m = item;
        changed = 1;
        switch (m->kind) {
        case MSG_SNAPSHOT:
            apply_snapshot(s, m->j);
            break;
        case MSG_UP:
            if (s->was_up)
                vw_edit_status(s->edit, "live sync: reconnected");
            s->was_up = 1;
            break;
        case MSG_DOWN:
            s->ready = 0;
            if (s->was_up)
                vw_edit_status(s->edit, "live sync: %s; reconnecting", m->text);
            break;
        case MSG_FATAL:
            s->failed = 1;
            vw_edit_status(s->edit, "annotations: %s", m->text);
            break;
        case MSG_FRAME: {
            const char *type = json_string_value(json_object_get(m->j, "type"));
            if (!type)
                break;
            if (strcmp(type, "hello") == 0) {
                const char *u = json_string_value(json_object_get(m->j, "user"));
                if (u)
                    snprintf(s->user, sizeof(s->user), "%s", u);
                s->ready = 1;
            } else if (strcmp(type, "event") == 0) {
                apply_event(s, m->j);
            } else if (strcmp(type, "reply") == 0) {
                apply_reply(s, m->j);
            } else if (strcmp(type, "error") == 0) {
                const char *t = json_string_value(json_object_get(m->j, "message"));
                cs_log(s->log, CS_LOG_WARN, "server: %s", t ? t : "error");
            }
            break;
        }
        default:
            break;
        }
        free_msg(m);
    }
    if (s->edit->sel && !vw_annots_by_key(s->annots, s->edit->sel))
        s->edit->sel = 0;
    return changed;
}

int vw_sync_ready(const vw_sync *s)
{
    return s->ready && atomic_load(&((vw_sync *)s)->up);
}

int vw_sync_failed(const vw_sync *s)
{
    return s->failed;
}

int vw_sync_pending(const vw_sync *s)
{
    int n = (int)s->npend;
    for (size_t i = 0; i < s->annots->n; i++)
        n += s->annots->v[i]->dirty;
    return n;
}

/* ================= handle ================= */

int vw_sync_new(vw_sync **out, const vw_sync_opts *o, vw_annots *annots, vw_edit *edit)
{
    vw_sync *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->pipefd[0] = s->pipefd[1] = -1;
    s->fd = -1;
    s->since = -1;
    s->need_snapshot = 1;
    s->annots = annots;
    s->edit = edit;
    s->wake = o->wake;
    s->userdata = o->userdata;
    s->insecure = o->insecure;
    const char *user = getenv("USER");
    snprintf(s->user, sizeof(s->user), "%s", user ? user : "me");
    cs_log_new(&s->log, "viewer/sync");
    int r;
    if (!(s->base = strdup(o->base)) || !(s->token = strdup(o->token ? o->token : "")) ||
        !(s->slide = strdup(o->slide)) || (o->cacert && !(s->cacert = strdup(o->cacert)))) {
        r = cs_error_set(CS_ENOMEM, "out of memory");
        goto fail;
    }
    if (pipe2(s->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        r = cs_error_set(CS_EIO, "pipe: %s", strerror(errno));
        goto fail;
    }
    if ((r = cs_queue_new(&s->in, IN_CAP, free_msg)) < 0 ||
        (r = cs_queue_new(&s->out, OUT_CAP, free_outcmd)) < 0)
        goto fail;
    edit->author = s->user;
    edit->changed = vw_sync_changed;
    edit->userdata = s;
    if ((r = cs_thread_start(&s->thread, "sync", sync_main, s)) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    vw_sync_free(s);
    return r;
}

void vw_sync_free(vw_sync *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    if (s->pipefd[1] >= 0) {
        char c = 1;
        if (write(s->pipefd[1], &c, 1) < 0) {
            /* full: the thread wakes anyway */
        }
    }
    if (s->in)
        cs_queue_close(s->in);
    cs_thread_join(s->thread);
    if (s->edit && s->edit->userdata == s) {
        s->edit->changed = NULL;
        s->edit->author = NULL;
    }
    cs_queue_free(s->in);
    cs_queue_free(s->out);
    if (s->pipefd[0] >= 0)
        close(s->pipefd[0]);
    if (s->pipefd[1] >= 0)
        close(s->pipefd[1]);
    cs_log_free(s->log);
    free(s->pend);
    for (size_t i = 0; i < s->nunacked; i++)
        free_outcmd(s->unacked[i]);
    free(s->unacked);
    free(s->pre);
    free(s->base);
    free(s->token);
    free(s->slide);
    free(s->cacert);
    free(s);
}
