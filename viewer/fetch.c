/* viewer/fetch: see fetch.h.
 *
 * Invariants: a key is in `busy` from the moment a worker takes it until the
 * render thread acknowledges its result (or the transfer is cancelled), so a
 * tile is never fetched twice at once nor fetched again while its result
 * waits in the queue. `want`, `cursor`, `wanted` and `busy` are guarded by
 * `lock`; curl handles belong to the net thread alone. */
#include "fetch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cs/buf.h"
#include "cs/err.h"
#include "cs/jpeg.h"
#include "cs/log.h"
#include "cs/thread.h"

#include "hmap.h"

#define MAX_PARALLEL 32
#define MAX_WORKERS  8
#define RESULTS_CAP  256
#define JOBS_CAP     256

/* Encoded tile on its way from the net thread to a decoder. */
typedef struct {
    vw_key key;
    uint8_t *data;
    size_t len;
    int status;
    char msg[240];
} job;

typedef struct {
    struct vw_fetch *f;
    CURL *easy;
    int active, urgent;
    vw_key key;
    uint8_t *buf;
    size_t len, cap;
    char url[1200];
} slot;

struct vw_fetch {
    vw_fetch_opts o;
    char *tile_url, *token;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    vw_key *want;
    size_t want_n, want_cap, cursor, want_urgent;
    uint64_t want_gen;
    vw_hmap wanted; /* keys of `want`, for cancellation */
    vw_hmap busy;
    int stop;
    atomic_int inflight;
    cs_queue *jobs, *results;
    cs_thread *net;
    cs_thread *workers[MAX_WORKERS];
    int nworkers;
    /* http, net thread only */
    CURLM *multi;
    struct curl_slist *headers;
    slot slots[MAX_PARALLEL];
    long transfers, cancelled, connects; /* new TCP connections: keep-alive check */
    cs_logger *log;
};

void vw_tile_result_free(vw_tile_result *r)
{
    if (!r)
        return;
    free(r->px);
    free(r);
}

static void free_result_item(void *p)
{
    vw_tile_result_free(p);
}

static void free_job(void *p)
{
    job *j = p;
    if (j)
        free(j->data);
    free(j);
}

static void deliver(vw_fetch *f, vw_tile_result *r)
{
    if (cs_queue_push(f->results, r, -1) < 0)
        vw_tile_result_free(r);
    atomic_fetch_sub(&f->inflight, 1);
    if (f->o.wake)
        f->o.wake(f->o.userdata);
}

static vw_tile_result *failed(vw_key key, int status, const char *msg)
{
    vw_tile_result *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->key = key;
    r->status = status;
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    return r;
}

/* Decode JPEG bytes to XRGB pixels with @p jp. */
static vw_tile_result *decode(cs_jpeg *jp, vw_key key, const uint8_t *data, size_t len)
{
    int w = 0, h = 0;
    int r = cs_jpeg_size(jp, data, len, &w, &h);
    if (r == 0 && (w < 1 || h < 1 || w > 16384 || h > 16384))
        r = cs_error_set(CS_EFORMAT, "tile is %dx%d", w, h);
    uint8_t *px = NULL;
    if (r == 0 && !(px = malloc((size_t)w * h * 4)))
        r = cs_error_set(CS_ENOMEM, "out of memory");
    /* decode packed RGB into the front of the buffer, then widen in place
     * from the end (pixel i moves from 3i to 4i, never over unread bytes) */
    if (r == 0)
        r = cs_jpeg_decode_rgb(jp, px, (size_t)w * 3, data, len, 1);
    if (r < 0) {
        free(px);
        return failed(key, r, cs_error_last());
    }
    for (size_t i = (size_t)w * h; i-- > 0;) {
        uint32_t v = (uint32_t)px[3 * i] << 16 | (uint32_t)px[3 * i + 1] << 8 | px[3 * i + 2];
        memcpy(px + 4 * i, &v, 4);
    }
    vw_tile_result *res = calloc(1, sizeof(*res));
    if (!res) {
        free(px);
        return NULL;
    }
    res->key = key;
    res->px = (uint32_t *)(void *)px;
    res->w = w;
    res->h = h;
    res->bytes = len;
    return res;
}

/* Take the most wanted key that nobody works on; call with the lock held.
 * Ring keys wait while @p ring_blocked. */
static int take_next(vw_fetch *f, vw_key *out, int *urgent, int ring_blocked)
{
    while (f->cursor < f->want_n) {
        if (f->cursor >= f->want_urgent && ring_blocked)
            return 0;
        if (urgent)
            *urgent = f->cursor < f->want_urgent;
        vw_key k = f->want[f->cursor++];
        if (vw_hmap_has(&f->busy, k))
            continue;
        if (vw_hmap_put(&f->busy, k, f) < 0)
            return 0;
        *out = k;
        atomic_fetch_add(&f->inflight, 1);
        return 1;
    }
    return 0;
}

/* ---- file backend ---- */

static void tiles_main(void *userdata)
{
    vw_fetch *f = userdata;
    cs_jpeg *jp = NULL;
    int jr = cs_jpeg_new(&jp);
    pthread_mutex_lock(&f->lock);
    while (!f->stop) {
        vw_key k;
        if (!take_next(f, &k, NULL, 0)) {
            pthread_cond_wait(&f->cond, &f->lock);
            continue;
        }
        pthread_mutex_unlock(&f->lock);
        vw_tile_result *res;
        cs_buf *b = NULL;
        int r = jr < 0 ? jr
                       : cs_tiles_get_dzi(f->o.tiles, &b, NULL, vw_key_level(k), vw_key_col(k),
                                          vw_key_row(k));
        if (r < 0)
            res = failed(k, r, cs_error_last());
        else
            res = decode(jp, k, cs_buf_data(b), cs_buf_size(b));
        cs_buf_unref(b);
        if (!res)
            res = failed(k, CS_ENOMEM, "out of memory");
        if (res)
            deliver(f, res);
        else
            atomic_fetch_sub(&f->inflight, 1);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    cs_jpeg_free(jp);
}

/* ---- http backend ---- */

static void decode_main(void *userdata)
{
    vw_fetch *f = userdata;
    cs_jpeg *jp = NULL;
    int jr = cs_jpeg_new(&jp);
    void *item;
    while (cs_queue_pop(f->jobs, &item, -1) == 0) {
        job *j = item;
        vw_tile_result *res;
        if (j->status < 0)
            res = failed(j->key, j->status, j->msg);
        else if (jr < 0)
            res = failed(j->key, jr, "cannot create a JPEG decoder");
        else
            res = decode(jp, j->key, j->data, j->len);
        if (!res)
            res = failed(j->key, CS_ENOMEM, "out of memory");
        free_job(j);
        if (res)
            deliver(f, res);
        else
            atomic_fetch_sub(&f->inflight, 1);
    }
    cs_jpeg_free(jp);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    slot *s = userdata;
    size_t n = size * nmemb;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        if (cap > (64u << 20))
            return 0; /* a tile is never this big: abort the transfer */
        uint8_t *nb = realloc(s->buf, cap);
        if (!nb)
            return 0;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, ptr, n);
    s->len += n;
    return n;
}

static int start_transfer(vw_fetch *f, vw_key k, int urgent)
{
    slot *s = NULL;
    for (int i = 0; i < f->o.parallel; i++)
        if (!f->slots[i].active) {
            s = &f->slots[i];
            break;
        }
    if (!s)
        return CS_EAGAIN;
    snprintf(s->url, sizeof(s->url), "%s%d/%lld_%lld.jpeg", f->tile_url, vw_key_level(k),
             (long long)vw_key_col(k), (long long)vw_key_row(k));
    s->key = k;
    s->urgent = urgent;
    s->len = 0;
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    if (curl_multi_add_handle(f->multi, s->easy) != CURLM_OK)
        return CS_EIO;
    s->active = 1;
    return 0;
}

static void finish_transfer(vw_fetch *f, slot *s, CURLcode cc)
{
    long status = 0, conns = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &conns);
    f->transfers++;
    f->connects += conns;
    if (cs_log_enabled(f->log, CS_LOG_DEBUG)) {
        curl_off_t total = 0, conn = 0, start = 0;
        curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME_T, &total);
        curl_easy_getinfo(s->easy, CURLINFO_CONNECT_TIME_T, &conn);
        curl_easy_getinfo(s->easy, CURLINFO_STARTTRANSFER_TIME_T, &start);
        cs_log(f->log, CS_LOG_DEBUG,
               "tile %d/%lld_%lld%s: HTTP %ld, %zu bytes, %.1f ms (connect %.1f, first byte %.1f), "
               "%ld new connection(s)",
               vw_key_level(s->key), (long long)vw_key_col(s->key), (long long)vw_key_row(s->key),
               s->urgent ? "" : " (ring)", status, s->len, total / 1e3, conn / 1e3, start / 1e3,
               conns);
    }
    curl_multi_remove_handle(f->multi, s->easy);
    s->active = 0;
    job *j = calloc(1, sizeof(*j));
    if (!j) {
        pthread_mutex_lock(&f->lock);
        vw_hmap_del(&f->busy, s->key);
        pthread_mutex_unlock(&f->lock);
        atomic_fetch_sub(&f->inflight, 1);
        return;
    }
    j->key = s->key;
    if (cc != CURLE_OK) {
        j->status = CS_EIO;
        snprintf(j->msg, sizeof(j->msg), "%s", curl_easy_strerror(cc));
    } else if (status != 200) {
        j->status = status == 404 ? CS_ENOTFOUND : CS_EIO;
        snprintf(j->msg, sizeof(j->msg), "HTTP %ld%s", status,
                 status == 401 ? " (the server rejected the token)" : "");
    } else {
        /* hand the body over; the slot grows a new buffer */
        j->data = s->buf;
        j->len = s->len;
        s->buf = NULL;
        s->cap = s->len = 0;
    }
    if (cs_queue_push(f->jobs, j, -1) < 0) {
        free_job(j);
        atomic_fetch_sub(&f->inflight, 1);
    }
}

static void net_main(void *userdata)
{
    vw_fetch *f = userdata;
    uint64_t seen_gen = 0;
    for (;;) {
        vw_key start[MAX_PARALLEL];
        int start_urgent[MAX_PARALLEL];
        int nstart = 0, ncancel = 0;
        slot *cancel[MAX_PARALLEL];
        pthread_mutex_lock(&f->lock);
        if (f->stop) {
            pthread_mutex_unlock(&f->lock);
            break;
        }
        if (f->want_gen != seen_gen) {
            seen_gen = f->want_gen;
            /* after a jump, drop transfers nobody wants unless mostly done */
            for (int i = 0; i < f->o.parallel; i++) {
                slot *s = &f->slots[i];
                if (!s->active || vw_hmap_has(&f->wanted, s->key))
                    continue;
                curl_off_t cl = -1;
                curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                if (cl > 0 && (curl_off_t)s->len * 2 > cl)
                    continue;
                vw_hmap_del(&f->busy, s->key);
                cancel[ncancel++] = s;
            }
        }
        /* Ring tiles wait for the urgent ones, and take at most a third of
         * the connections: a jump cancels them, and each cancel costs a new
         * connection (a round trip) that the warm ones do not pay. */
        int active = 0, urgent = 0, ring_max = f->o.parallel / 3 > 1 ? f->o.parallel / 3 : 1;
        for (int i = 0; i < f->o.parallel; i++) {
            active += f->slots[i].active;
            urgent += f->slots[i].active && f->slots[i].urgent;
        }
        for (int i = 0; i < ncancel; i++) {
            active--;
            urgent -= cancel[i]->urgent;
        }
        int ring = active - urgent;
        while (
            active + nstart < f->o.parallel &&
            take_next(f, &start[nstart], &start_urgent[nstart], urgent > 0 || ring >= ring_max)) {
            urgent += start_urgent[nstart];
            ring += !start_urgent[nstart];
            nstart++;
        }
        pthread_mutex_unlock(&f->lock);

        for (int i = 0; i < ncancel; i++) {
            f->cancelled++;
            curl_multi_remove_handle(f->multi, cancel[i]->easy);
            cancel[i]->active = 0;
            atomic_fetch_sub(&f->inflight, 1);
        }
        for (int i = 0; i < nstart; i++)
            if (start_transfer(f, start[i], start_urgent[i]) < 0) {
                vw_tile_result *r = failed(start[i], CS_EIO, "cannot start a transfer");
                if (r)
                    deliver(f, r);
            }
        int running = 0;
        curl_multi_perform(f->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(f->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            slot *s = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            if (s)
                finish_transfer(f, s, m->data.result);
        }
        curl_multi_poll(f->multi, NULL, 0, 250, NULL);
    }
    for (int i = 0; i < f->o.parallel; i++)
        if (f->slots[i].active) {
            curl_multi_remove_handle(f->multi, f->slots[i].easy);
            f->slots[i].active = 0;
        }
}

static int http_setup(vw_fetch *f)
{
    if (!(f->multi = curl_multi_init()))
        return cs_error_set(CS_ENOMEM, "cannot create a curl multi handle");
    curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)f->o.parallel);
    curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)f->o.parallel);
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->o.parallel + 2);
    if (f->token && *f->token) {
        size_t n = strlen(f->token) + 32;
        char *h = malloc(n);
        if (!h)
            return cs_error_set(CS_ENOMEM, "out of memory");
        snprintf(h, n, "Authorization: Bearer %s", f->token);
        f->headers = curl_slist_append(NULL, h);
        free(h);
        if (!f->headers)
            return cs_error_set(CS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < f->o.parallel; i++) {
        slot *s = &f->slots[i];
        s->f = f;
        if (!(s->easy = curl_easy_init()))
            return cs_error_set(CS_ENOMEM, "cannot create a curl handle");
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT, 15L);
        /* a stalled link: give up on a tile after 60 s without a byte */
        curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "consilium-view/0.1");
        if (f->headers)
            curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, f->headers);
        if (f->o.insecure) {
            curl_easy_setopt(s->easy, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(s->easy, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (f->o.cacert)
            curl_easy_setopt(s->easy, CURLOPT_CAINFO, f->o.cacert);
    }
    return 0;
}

/* ---- handle ---- */

int vw_fetch_new(vw_fetch **out, const vw_fetch_opts *opts)
{
    vw_fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return cs_error_set(CS_ENOMEM, "out of memory");
    f->o = *opts;
    if (f->o.parallel < 1)
        f->o.parallel = 1;
    if (f->o.parallel > MAX_PARALLEL)
        f->o.parallel = MAX_PARALLEL;
    if (f->o.decoders < 1)
        f->o.decoders = 1;
    if (f->o.decoders > MAX_WORKERS)
        f->o.decoders = MAX_WORKERS;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    cs_log_new(&f->log, "viewer/net");
    atomic_init(&f->inflight, 0);
    int r;
    if ((r = vw_hmap_init(&f->wanted, 256)) < 0 || (r = vw_hmap_init(&f->busy, 256)) < 0 ||
        (r = cs_queue_new(&f->results, RESULTS_CAP, free_result_item)) < 0 ||
        (r = cs_queue_new(&f->jobs, JOBS_CAP, free_job)) < 0)
        goto fail;
    if (f->o.tile_url) {
        f->tile_url = strdup(f->o.tile_url);
        f->token = f->o.token ? strdup(f->o.token) : NULL;
        if (!f->tile_url || (f->o.token && !f->token)) {
            r = cs_error_set(CS_ENOMEM, "out of memory");
            goto fail;
        }
        if ((r = http_setup(f)) < 0)
            goto fail;
        for (int i = 0; i < f->o.decoders; i++) {
            if ((r = cs_thread_start(&f->workers[i], "decode", decode_main, f)) < 0)
                goto fail;
            f->nworkers++;
        }
        if ((r = cs_thread_start(&f->net, "net", net_main, f)) < 0)
            goto fail;
    } else {
        if (!f->o.tiles) {
            r = cs_error_set(CS_EINVAL, "no tile source");
            goto fail;
        }
        int n = f->o.parallel > MAX_WORKERS ? MAX_WORKERS : f->o.parallel;
        for (int i = 0; i < n; i++) {
            if ((r = cs_thread_start(&f->workers[i], "tiles", tiles_main, f)) < 0)
                goto fail;
            f->nworkers++;
        }
    }
    *out = f;
    return 0;
fail:
    vw_fetch_free(f);
    return r;
}

void vw_fetch_free(vw_fetch *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = 1;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    if (f->multi)
        curl_multi_wakeup(f->multi);
    if (f->jobs)
        cs_queue_close(f->jobs);
    if (f->results)
        cs_queue_close(f->results);
    cs_thread_join(f->net);
    for (int i = 0; i < f->nworkers; i++)
        cs_thread_join(f->workers[i]);
    if (f->multi)
        cs_log(f->log, CS_LOG_VERBOSE, "%ld tiles transferred over %ld connections, %ld cancelled",
               f->transfers, f->connects, f->cancelled);
    cs_log_free(f->log);
    for (int i = 0; i < MAX_PARALLEL; i++) {
        if (f->slots[i].easy)
            curl_easy_cleanup(f->slots[i].easy);
        free(f->slots[i].buf);
    }
    if (f->multi)
        curl_multi_cleanup(f->multi);
    curl_slist_free_all(f->headers);
    cs_queue_free(f->jobs);
    cs_queue_free(f->results);
    vw_hmap_free(&f->wanted);
    vw_hmap_free(&f->busy);
    free(f->want);
    free(f->tile_url);
    free(f->token);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void vw_fetch_want(vw_fetch *f, const vw_key *keys, size_t n, size_t n_urgent)
{
    pthread_mutex_lock(&f->lock);
    if (n > f->want_cap) {
        vw_key *nw = realloc(f->want, n * sizeof(*nw));
        if (!nw) {
            pthread_mutex_unlock(&f->lock);
            return; /* keep the old list; the next call tries again */
        }
        f->want = nw;
        f->want_cap = n;
    }
    if (n)
        memcpy(f->want, keys, n * sizeof(*keys));
    f->want_n = n;
    f->want_urgent = n_urgent < n ? n_urgent : n;
    f->cursor = 0;
    f->want_gen++;
    vw_hmap_clear(&f->wanted);
    for (size_t i = 0; i < n; i++)
        vw_hmap_put(&f->wanted, keys[i], f);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    if (f->multi)
        curl_multi_wakeup(f->multi);
}

void vw_fetch_ack(vw_fetch *f, vw_key key)
{
    pthread_mutex_lock(&f->lock);
    vw_hmap_del(&f->busy, key);
    pthread_mutex_unlock(&f->lock);
}

int vw_fetch_in_flight(vw_fetch *f)
{
    return atomic_load(&f->inflight);
}

cs_queue *vw_fetch_results(vw_fetch *f)
{
    return f->results;
}
