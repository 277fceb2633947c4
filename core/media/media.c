/* core/media: the live pipeline (see cs/media.h for the threads). */
#include "cs/media.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs/err.h"
#include "cs/queue.h"
#include "cs/record.h"
#include "cs/thread.h"

#define MAX_LISTEN     8
#define IDR_MIN_NS     250000000LL
#define LAT_RING       256
#define BACKOFF_MAX_MS 5000
#define JOIN_WAIT_MS   200 /* a joiner waits for a keyframe due this soon */
#define HOLD_MAX       8   /* packets a sink holds while it switches streams */

enum { SINK_RECEIVER, SINK_OUTPUT, SINK_RECORD };
static const char *const sink_kinds[] = {"receiver", "output", "record"};
enum { SRC_CONNECTING, SRC_LIVE, SRC_LOST };
static const char *const src_states[] = {"connecting", "live", "lost"};

typedef struct sink {
    cs_media *m;
    int kind;
    int64_t id;
    char url[700];   /* may hold the SRT passphrase: never logged */
    char shown[700]; /* url redacted */
    cs_queue *q;
    cs_thread *th;
    cs_video_out *out;
    cs_record *rec;
    atomic_int need_key, done;
    /* joined through the bridge (see bridge_thread): fed by it until the
     * shared stream's keyframe at switch_us (INT64_MAX: none yet) */
    atomic_int bridged;
    _Atomic int64_t switch_us;
    cs_vpacket *held[HOLD_MAX]; /* the sink thread's: see sink_route */
    int nheld;
    int64_t last_us; /* the sink thread's: the last packet written */
    _Atomic int64_t bytes, packets, drops;
    int64_t since_ns;
    char error[256];
    struct sink *next;
} sink;

struct cs_media {
    cs_media_opts o;
    cs_logger *log;
    int own_log;
    cs_video_enc *enc;
    int w, h, fps;
    cs_queue *mail;
    cs_thread *cap_th, *enc_th, *listen_th[MAX_LISTEN];
    char listen_url[MAX_LISTEN][700];
    int nlisten;
    atomic_int stop;
    pthread_mutex_t mu; /* sinks, src, stats, last_error */
    sink *sinks;
    int64_t next_sink_id;
    cs_video_source *src;
    char src_shown[700]; /* the source URL, redacted */
    atomic_int idr_req;
    int64_t last_idr_ns;
    /* the join bridge (see bridge_thread): br_enc is the bridge thread's,
     * the rest but join_req the encode thread's; no br_enc: no bridge */
    cs_video_enc *br_enc;
    cs_queue *br_q;
    cs_thread *br_th;
    atomic_int join_req;
    int br_active, br_idr;
    int64_t br_idr_ns;
    int64_t next_key_n; /* the encode thread's: where the GOP's next keyframe is due */
    int64_t seq_skew;   /* the encode thread's: frame index - source frame index */
    /* stats */
    atomic_int src_state;
    char src_error[300];
    char src_codec[32];
    int src_w, src_h;
    _Atomic int64_t frames_in, late_drops, src_errors;
    int64_t frames_out, slate_frames, freeze_frames, keyframes, bytes_enc, bridged;
    int64_t lat_ns[LAT_RING];
    int nlat;
    json_t *last_stats;
    int64_t tick_frames, tick_bytes, tick_ns;
};

static void nap(cs_media *m, int ms)
{
    for (int i = 0; i < ms && !atomic_load(&m->stop); i += 20) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
}

/* The interrupt the media threads give every blocking libav call. */
static int stopped(void *ud)
{
    return atomic_load(&((cs_media *)ud)->stop);
}

void cs_media_request_idr(cs_media *m)
{
    atomic_store(&m->idr_req, 1);
}

/* A receiver or output waits for a keyframe: see join_start. */
static void request_join(cs_media *m)
{
    atomic_store(&m->join_req, 1);
}

/* ----------------------------------------------------------------- sinks */

static void sink_unbridge(sink *s)
{
    atomic_store(&s->bridged, 0);
    atomic_store(&s->switch_us, INT64_MAX);
    for (int i = 0; i < s->nheld; i++)
        cs_vpacket_unref(s->held[i]);
    s->nheld = 0;
}

static void sink_free(sink *s)
{
    if (!s)
        return;
    cs_queue_free(s->q);
    sink_unbridge(s);
    cs_video_out_close(s->out);
    if (s->rec && cs_record_close(s->rec))
        cs_log(s->m->log, CS_LOG_ERROR, "recording: %s", cs_error_last());
    free(s);
}

/* One packet to the sink's destination; 0 or an error. */
static int sink_write(sink *s, cs_vpacket *p)
{
    if (atomic_load(&s->need_key)) {
        if (!cs_vpacket_is_key(p))
            return 0;
        atomic_store(&s->need_key, 0);
    }
    int rc = s->rec ? cs_record_write(s->rec, p) : cs_video_out_write(s->out, p);
    if (!rc) {
        s->last_us = cs_vpacket_pts_us(p);
        atomic_fetch_add(&s->bytes, (int64_t)cs_vpacket_size(p));
        atomic_fetch_add(&s->packets, 1);
    }
    if (s->rec && cs_record_wants_key(s->rec) && s->m->o.enc.intra_refresh)
        cs_media_request_idr(s->m);
    return rc;
}

static int sink_open_output(sink *s)
{
    cs_video_out_opts oo = CS_VIDEO_OUT_OPTS_INIT;
    oo.timeout_ms = 3000;
    oo.interrupt = stopped;
    oo.interrupt_userdata = s->m;
    int rc = cs_video_out_open(&s->out, s->url, s->m->enc, &oo);
    if (!rc) {
        /* a new stream: whatever the bridge had begun for the last one
         * starts again (the encode thread may mark it again) */
        sink_unbridge(s);
        atomic_store(&s->need_key, 1);
        request_join(s->m);
    }
    return rc;
}

/* The switch from the bridge's stream to the shared one: the held packets
 * (the first is the shared stream's keyframe), then @p p if not NULL. */
static int sink_switch(sink *s, cs_vpacket *p)
{
    int rc = 0;
    atomic_store(&s->bridged, 0);
    for (int i = 0; i < s->nheld; i++) {
        if (!rc)
            rc = sink_write(s, s->held[i]);
        cs_vpacket_unref(s->held[i]);
    }
    s->nheld = 0;
    return rc || !p ? rc : sink_write(s, p);
}

/* A packet from either encoder: a sink that joined through the bridge
 * takes the bridge's packets up to the shared stream's keyframe at
 * switch_us, then the shared stream's. The two encoders run in two
 * threads, so around the switch their packets come in either order: the
 * shared stream's wait in held until the bridge's frame before the switch
 * is written (or HOLD_MAX of them, if the bridge skipped it). */
static int sink_route(sink *s, cs_vpacket *p)
{
    int from_bridge = cs_vpacket_encoder(p) != s->m->enc;
    if (!atomic_load(&s->bridged))
        return from_bridge ? 0 : sink_write(s, p);
    int64_t pts = cs_vpacket_pts_us(p), sw = atomic_load(&s->switch_us);
    int64_t frame_us = 1000000 / s->m->fps;
    if (!from_bridge) {
        if (pts < sw)
            return 0;
        if (s->nheld == HOLD_MAX ||
            (!s->nheld && !atomic_load(&s->need_key) && pts - s->last_us < frame_us * 3 / 2))
            return sink_switch(s, p);
        s->held[s->nheld++] = cs_vpacket_ref(p);
        return 0;
    }
    if (pts >= sw) /* a later bridge: this one has ended */
        return sink_switch(s, NULL);
    int rc = sink_write(s, p);
    if (!rc && sw != INT64_MAX && sw - pts < frame_us * 3 / 2)
        rc = sink_switch(s, NULL);
    return rc;
}

static void sink_thread(void *arg)
{
    sink *s = arg;
    cs_media *m = s->m;
    int backoff = 500, logged = 0;
    while (!atomic_load(&m->stop)) {
        if (s->kind == SINK_OUTPUT && !s->out) {
            if (sink_open_output(s)) {
                if (!logged++)
                    cs_log(m->log, CS_LOG_WARN, "output %s: %s; retrying", s->shown,
                           cs_error_last());
                nap(m, backoff);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            cs_log(m->log, CS_LOG_INFO, "output %s: open", s->shown);
            backoff = 500;
            logged = 0;
        }
        void *item;
        int rc = cs_queue_pop(s->q, &item, 200);
        if (rc == CS_ECLOSED)
            break;
        if (rc)
            continue;
        cs_vpacket *p = item;
        rc = sink_route(s, p);
        cs_vpacket_unref(p);
        if (!rc)
            continue;
        pthread_mutex_lock(&m->mu); /* the stats read it */
        snprintf(s->error, sizeof(s->error), "%s", cs_error_last());
        pthread_mutex_unlock(&m->mu);
        if (s->kind == SINK_RECEIVER) {
            cs_log(m->log, CS_LOG_INFO, "receiver %lld left (%s)", (long long)s->id, s->error);
            break;
        }
        if (s->kind == SINK_OUTPUT) {
            cs_log(m->log, CS_LOG_WARN, "output %s: %s; reopening", s->shown, s->error);
            cs_video_out_close(s->out);
            s->out = NULL;
        } else {
            cs_log(m->log, CS_LOG_ERROR, "recording: %s; a new segment starts at the next keyframe",
                   s->error);
        }
    }
    atomic_store(&s->done, 1);
}

static int sink_add(cs_media *m, int kind, const char *url, cs_video_out *out, cs_record *rec)
{
    sink *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->m = m;
    s->kind = kind;
    s->out = out;
    s->rec = rec;
    s->since_ns = cs_clock_ns();
    snprintf(s->url, sizeof(s->url), "%s", url);
    cs_video_url_redact(url, s->shown, sizeof(s->shown));
    atomic_init(&s->need_key, 1);
    atomic_init(&s->switch_us, INT64_MAX);
    int cap = m->o.sink_queue ? m->o.sink_queue : 2 * m->fps;
    int rc = cs_queue_new(&s->q, (size_t)cap, (void (*)(void *))cs_vpacket_unref);
    if (rc) {
        s->out = NULL;
        s->rec = NULL;
        free(s);
        return rc;
    }
    pthread_mutex_lock(&m->mu);
    s->id = ++m->next_sink_id;
    rc = cs_thread_start(&s->th, "cs-sink", sink_thread, s);
    if (!rc) {
        s->next = m->sinks;
        m->sinks = s;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc) {
        s->out = NULL;
        s->rec = NULL;
        sink_free(s);
    }
    return rc;
}

/* Join and free the sinks whose threads ended (receivers that left). */
static void sinks_reap(cs_media *m)
{
    pthread_mutex_lock(&m->mu);
    sink **pp = &m->sinks;
    while (*pp) {
        sink *s = *pp;
        if (atomic_load(&s->done) && s->kind == SINK_RECEIVER) {
            *pp = s->next;
            cs_queue_close(s->q);
            cs_thread_join(s->th);
            sink_free(s);
        } else {
            pp = &s->next;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static int receivers_locked(cs_media *m)
{
    int n = 0;
    for (sink *s = m->sinks; s; s = s->next)
        n += s->kind == SINK_RECEIVER && !atomic_load(&s->done);
    return n;
}

/* @p p to every sink (from the bridge: to those it feeds). */
static void fan_out(cs_media *m, cs_vpacket *p, int from_bridge)
{
    int want_key = 0;
    pthread_mutex_lock(&m->mu);
    for (sink *s = m->sinks; s; s = s->next) {
        if (atomic_load(&s->done) || (from_bridge && !atomic_load(&s->bridged)))
            continue;
        if (cs_queue_try_push(s->q, cs_vpacket_ref(p))) {
            cs_vpacket_unref(p);
            atomic_fetch_add(&s->drops, 1);
            if (!atomic_exchange(&s->need_key, 1))
                want_key |= s->kind != SINK_RECORD;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (want_key)
        request_join(m);
}

/* -------------------------------------------------------------- listener */

static void listen_thread(void *arg)
{
    cs_media *m = ((void **)arg)[0];
    const char *url = ((void **)arg)[1];
    free(arg);
    char shown[700];
    cs_video_url_redact(url, shown, sizeof(shown));
    int logged = 0;
    int max = m->o.max_receivers ? m->o.max_receivers : 64;
    while (!atomic_load(&m->stop)) {
        pthread_mutex_lock(&m->mu);
        int n = receivers_locked(m);
        pthread_mutex_unlock(&m->mu);
        if (n >= max) {
            nap(m, 100);
            continue;
        }
        /* listen until a caller comes: no timeout, so no moment when a
         * joining caller finds nobody listening (stop interrupts it) */
        cs_video_out *out;
        cs_video_out_opts oo = CS_VIDEO_OUT_OPTS_INIT;
        oo.interrupt = stopped;
        oo.interrupt_userdata = m;
        int rc = cs_video_out_open(&out, url, m->enc, &oo);
        if (rc == CS_ETIMEDOUT || rc == CS_ECLOSED)
            continue;
        if (rc) {
            if (!logged++)
                cs_log(m->log, CS_LOG_WARN, "listener %s: %s", shown, cs_error_last());
            nap(m, 1000);
            continue;
        }
        logged = 0;
        if (sink_add(m, SINK_RECEIVER, url, out, NULL)) {
            cs_log(m->log, CS_LOG_ERROR, "cannot add a receiver: %s", cs_error_last());
            cs_video_out_close(out);
            continue;
        }
        cs_log(m->log, CS_LOG_INFO, "receiver joined on %s (%d watching)", shown, n + 1);
        request_join(m);
    }
}

/* A frame on its way to an encoder, with its index in the stream: the
 * capture thread numbers frames by their source timestamps, so a frame
 * dropped on the way leaves a gap and the frames after it keep their
 * place (and the GOP its phase on the content). */
typedef struct frame_item {
    cs_vframe *f;
    int64_t n;
    int idr;
} frame_item;

static void frame_item_free(void *p)
{
    frame_item *it = p;
    if (it)
        cs_vframe_unref(it->f);
    free(it);
}

/* ---------------------------------------------------------------- capture */

/* The capture thread's frame numbering (see frame_item). */
typedef struct frame_clock {
    int64_t t0_us, n0, last; /* last: -1 before the first frame */
} frame_clock;

/* The index, at the output's @p fps, of a frame timed @p t_us (its pts,
 * or else its capture time): the slot it falls in, or the next if it is
 * at most a quarter of a slot early (jitter); -1 if that is the slot of
 * the frame before (a source faster than the output: 60 fps to 30 keeps
 * every other frame). A new source (@p restart), or a jump back or of
 * over 2 s ahead, counts on after the last frame. */
static int64_t frame_clock_index(frame_clock *c, int64_t t_us, int fps, int restart)
{
    int64_t n = c->n0 + ((t_us - c->t0_us) * fps + 250000) / 1000000;
    if (restart || c->last < 0 || t_us < c->t0_us || n > c->last + 2 * fps) {
        c->t0_us = t_us;
        n = c->n0 = c->last + 1;
    }
    if (n <= c->last)
        return -1;
    return c->last = n;
}

static void capture_thread(void *arg)
{
    cs_media *m = arg;
    int backoff = 250;
    int64_t lost_since = 0;
    char last_err[300] = "";
    frame_clock clk = {0, 0, -1};
    while (!atomic_load(&m->stop)) {
        cs_video_source *src;
        cs_video_source_opts so = m->o.src;
        so.width = m->w;
        so.height = m->h;
        so.fps = m->fps;
        so.interrupt = stopped;
        so.interrupt_userdata = m;
        int rc = cs_video_source_open(&src, m->o.source, &so);
        if (rc) {
            if (atomic_load(&m->stop))
                break;
            pthread_mutex_lock(&m->mu);
            snprintf(m->src_error, sizeof(m->src_error), "%s", cs_error_last());
            pthread_mutex_unlock(&m->mu);
            if (strcmp(last_err, cs_error_last())) {
                snprintf(last_err, sizeof(last_err), "%s", cs_error_last());
                cs_log(m->log, CS_LOG_WARN, "source %s: %s; retrying", m->src_shown, last_err);
            }
            if (atomic_load(&m->src_state) == SRC_LIVE || !lost_since)
                lost_since = cs_clock_ns();
            atomic_store(&m->src_state, SRC_LOST);
            nap(m, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        pthread_mutex_lock(&m->mu);
        m->src = src;
        const char *codec;
        cs_video_source_info(src, &codec, &m->src_w, &m->src_h, NULL);
        snprintf(m->src_codec, sizeof(m->src_codec), "%s", codec);
        m->src_error[0] = '\0';
        pthread_mutex_unlock(&m->mu);
        if (atomic_load(&m->stop)) {
            pthread_mutex_lock(&m->mu);
            m->src = NULL;
            pthread_mutex_unlock(&m->mu);
            cs_video_source_close(src);
            break;
        }
        if (!lost_since)
            cs_log(m->log, CS_LOG_INFO, "source %s: %s %dx%d", m->src_shown, codec, m->src_w,
                   m->src_h);
        int bad = 0, got = 0;
        for (;;) {
            cs_vframe *f;
            rc = cs_video_source_read(src, &f);
            if (rc == CS_EFORMAT) {
                atomic_fetch_add(&m->src_errors, 1);
                if (!bad++)
                    cs_log(m->log, CS_LOG_WARN, "source %s: %s (counting in stats)", m->src_shown,
                           cs_error_last());
                if (bad < 100)
                    continue;
                cs_error_set(CS_EFORMAT, "100 undecodable frames in a row");
            }
            if (rc)
                break;
            bad = 0;
            if (!got++) { /* live again only once a frame comes */
                if (lost_since)
                    cs_log(m->log, CS_LOG_INFO, "source %s: back after %.1f s", m->src_shown,
                           (double)(cs_clock_ns() - lost_since) / 1e9);
                atomic_store(&m->src_state, SRC_LIVE);
                lost_since = 0;
                last_err[0] = '\0';
                backoff = 250;
            }
            int w, h;
            cs_video_source_info(src, NULL, &w, &h, NULL);
            if ((w != m->src_w || h != m->src_h) && w && h) {
                cs_log(m->log, CS_LOG_INFO, "source %s: size changed from %dx%d to %dx%d",
                       m->o.source, m->src_w, m->src_h, w, h);
                pthread_mutex_lock(&m->mu);
                m->src_w = w;
                m->src_h = h;
                pthread_mutex_unlock(&m->mu);
            }
            atomic_fetch_add(&m->frames_in, 1);
            int64_t pts = cs_vframe_pts_us(f);
            int64_t n = frame_clock_index(&clk, pts >= 0 ? pts : cs_vframe_capture_ns(f) / 1000,
                                          m->fps, got == 1);
            frame_item *it = n < 0 ? NULL : malloc(sizeof(*it));
            if (!it) {
                cs_vframe_unref(f);
                continue;
            }
            *it = (frame_item){f, n, 0};
            if (cs_queue_try_push(m->mail, it) == CS_EAGAIN) {
                void *old;
                if (cs_queue_pop(m->mail, &old, 0) == 0) {
                    frame_item_free(old);
                    atomic_fetch_add(&m->late_drops, 1);
                }
                if (cs_queue_try_push(m->mail, it))
                    frame_item_free(it);
            }
        }
        pthread_mutex_lock(&m->mu);
        m->src = NULL;
        if (rc != CS_ECLOSED)
            snprintf(m->src_error, sizeof(m->src_error), "%s",
                     rc == CS_EOF ? "the input ended" : cs_error_last());
        pthread_mutex_unlock(&m->mu);
        cs_video_source_close(src);
        if (atomic_load(&m->stop))
            break;
        if (got) {
            snprintf(last_err, sizeof(last_err), "%s", m->src_error);
            cs_log(m->log, CS_LOG_WARN, "source %s lost: %s; showing the slate and reconnecting",
                   m->src_shown, last_err);
            atomic_store(&m->src_state, SRC_LOST);
            lost_since = cs_clock_ns();
        } else { /* opens, but ends at once (a pipe at its end): back off */
            if (!lost_since) {
                cs_log(m->log, CS_LOG_WARN, "source %s: %s; retrying", m->src_shown, m->src_error);
                lost_since = cs_clock_ns();
            }
            atomic_store(&m->src_state, SRC_LOST);
            nap(m, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
    }
}

/* ----------------------------------------------------------------- slate */

/* 5x7 glyphs for the slate's words, one byte per row (bit 4 = left). */
static const struct {
    char c;
    uint8_t rows[7];
} glyphs[] = {
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}},
    {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}},
    {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}},
    {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
};

static void slate_text(cs_vframe *f, const char *text)
{
    int w = cs_vframe_width(f), h = cs_vframe_height(f), ys;
    uint8_t *y = cs_vframe_plane(f, 0, &ys);
    int k = h / 40 > 1 ? h / 40 : 1; /* pixels per glyph dot */
    int n = (int)strlen(text);
    int x0 = (w - n * 6 * k) / 2, y0 = (h - 7 * k) / 2;
    for (int i = 0; i < n; i++) {
        const uint8_t *rows = NULL;
        for (size_t g = 0; g < sizeof(glyphs) / sizeof(glyphs[0]); g++)
            if (glyphs[g].c == text[i])
                rows = glyphs[g].rows;
        for (int r = 0; rows && r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (rows[r] & (0x10 >> c))
                    for (int dy = 0; dy < k; dy++) {
                        int px = x0 + (i * 6 + c) * k, py = y0 + r * k + dy;
                        if (px >= 0 && px + k <= w && py >= 0 && py < h)
                            memset(y + (size_t)py * ys + px, 235, (size_t)k);
                    }
    }
}

/* The last picture, darkened and grey, with "SOURCE LOST" over it. */
static cs_vframe *slate_new(cs_media *m, cs_vframe *last)
{
    cs_vframe *f;
    if (last ? cs_vframe_copy(&f, last) : cs_vframe_new(&f, m->w, m->h))
        return NULL;
    int ys, us, vs;
    uint8_t *y = cs_vframe_plane(f, 0, &ys), *u = cs_vframe_plane(f, 1, &us),
            *v = cs_vframe_plane(f, 2, &vs);
    for (int r = 0; r < m->h; r++)
        for (int c = 0; c < m->w; c++)
            y[(size_t)r * ys + c] = (uint8_t)(16 + (y[(size_t)r * ys + c] - 16) / 4);
    for (int r = 0; r < m->h / 2; r++) {
        memset(u + (size_t)r * us, 128, (size_t)m->w / 2);
        memset(v + (size_t)r * vs, 128, (size_t)m->w / 2);
    }
    slate_text(f, "SOURCE LOST");
    return f;
}

/* ----------------------------------------------------------------- encode */

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static json_t *stats_locked(cs_media *m, double fps, double kbps)
{
    int64_t lat[LAT_RING];
    int n = m->nlat < LAT_RING ? m->nlat : LAT_RING;
    memcpy(lat, m->lat_ns, sizeof(int64_t) * (size_t)n);
    qsort(lat, (size_t)n, sizeof(int64_t), cmp64);
    json_t *sinks = json_array();
    int receivers = 0;
    for (sink *s = m->sinks; s; s = s->next) {
        if (atomic_load(&s->done) && s->kind == SINK_RECEIVER)
            continue;
        receivers += s->kind == SINK_RECEIVER;
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:i, s:I, s:I, s:I, s:f}", "id", (json_int_t)s->id, "kind",
            sink_kinds[s->kind], "url", s->shown, "queue", (int)cs_queue_length(s->q), "bytes",
            (json_int_t)atomic_load(&s->bytes), "packets", (json_int_t)atomic_load(&s->packets),
            "drops", (json_int_t)atomic_load(&s->drops), "seconds",
            (double)(cs_clock_ns() - s->since_ns) / 1e9);
        if (s->rec)
            json_object_set_new(o, "segments", json_integer(cs_record_segments(s->rec)));
        if (s->error[0])
            json_object_set_new(o, "error", json_string(s->error));
        json_array_append_new(sinks, o);
    }
    return json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I}, s:i, s:i, s:i, s:f, s:f, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:{s:f, s:f}, s:i, s:o}",
        "source", "url", m->src_shown, "state", src_states[atomic_load(&m->src_state)], "error",
        m->src_error, "codec", m->src_codec, "width", m->src_w, "height", m->src_h, "frames",
        (json_int_t)atomic_load(&m->frames_in), "errors", (json_int_t)atomic_load(&m->src_errors),
        "width", m->w, "height", m->h, "fps_target", m->fps, "fps", fps, "bitrate_kbps", kbps,
        "frames", (json_int_t)m->frames_out, "dropped", (json_int_t)atomic_load(&m->late_drops),
        "slate_frames", (json_int_t)m->slate_frames, "freeze_frames", (json_int_t)m->freeze_frames,
        "keyframes", (json_int_t)m->keyframes, "bridged", (json_int_t)m->bridged, "latency_ms",
        "p50", n ? (double)lat[n / 2] / 1e6 : 0.0, "p95", n ? (double)lat[n * 95 / 100] / 1e6 : 0.0,
        "receivers", receivers, "sinks", sinks);
}

static void stats_tick(cs_media *m, int force)
{
    int64_t now = cs_clock_ns();
    if (!force && now - m->tick_ns < 1000000000)
        return;
    double dt = (double)(now - m->tick_ns) / 1e9;
    double fps = dt > 0 ? (double)(m->frames_out - m->tick_frames) / dt : 0;
    double kbps = dt > 0 ? (double)(m->bytes_enc - m->tick_bytes) * 8 / 1000 / dt : 0;
    m->tick_ns = now;
    m->tick_frames = m->frames_out;
    m->tick_bytes = m->bytes_enc;
    sinks_reap(m);
    pthread_mutex_lock(&m->mu);
    json_t *st = stats_locked(m, fps, kbps);
    json_decref(m->last_stats);
    m->last_stats = json_incref(st);
    pthread_mutex_unlock(&m->mu);
    if (st && m->o.on_stats)
        m->o.on_stats(m->o.userdata, st);
    json_decref(st);
}

/* ----------------------------------------------------------------- bridge
 *
 * A receiver that joins mid-GOP needs a keyframe, and one forced into the
 * shared stream costs every other viewer: at a VBV of two frames an IDR
 * is ~12 dB below the frames around it, and the GOP takes a second to
 * recover. So unless the shared stream's next keyframe is due within
 * JOIN_WAIT_MS, a second encoder, the bridge, encodes the same frames
 * (same size, rate and timestamps) from an IDR of its own for the joiners
 * alone, until the shared stream's next keyframe, where each joiner
 * switches over (sink_route). It costs a second encode for up to one GOP
 * per join, in its own thread, and nothing to anyone already watching.
 * With intra refresh (no natural keyframes) a joiner still gets a forced
 * IDR. */

static void bridge_thread(void *arg)
{
    cs_media *m = arg;
    cs_video_enc *e = m->br_enc;
    int logged = 0;
    for (;;) {
        void *item;
        int rc = cs_queue_pop(m->br_q, &item, 200);
        if (rc == CS_ECLOSED)
            break;
        if (rc)
            continue;
        frame_item *it = item;
        rc = cs_video_enc_skip_to(e, it->n);
        if (!rc)
            rc = cs_video_enc_send(e, it->f, it->idr);
        frame_item_free(it);
        if (rc && !logged++)
            cs_log(m->log, CS_LOG_ERROR, "join bridge: %s", cs_error_last());
        cs_vpacket *p;
        while (cs_video_enc_receive(e, &p) == 0) {
            fan_out(m, p, 1);
            cs_vpacket_unref(p);
        }
    }
}

/* A sink waits for a keyframe, frame @p n is next: 1 if the shared stream
 * must make it one. */
static int join_start(cs_media *m, int64_t n)
{
    if (!m->br_th)
        return 1;
    int64_t due = m->next_key_n - n;
    if (due * 1000 / m->fps <= JOIN_WAIT_MS)
        return 0;
    int waiting = 0;
    pthread_mutex_lock(&m->mu);
    for (sink *s = m->sinks; s; s = s->next) {
        if (s->kind == SINK_RECORD || atomic_load(&s->done) || !atomic_load(&s->need_key))
            continue;
        if (!atomic_load(&s->bridged)) {
            atomic_store(&s->switch_us, INT64_MAX);
            atomic_store(&s->bridged, 1);
            m->bridged++;
        }
        waiting += atomic_load(&s->switch_us) == INT64_MAX;
    }
    pthread_mutex_unlock(&m->mu);
    if (waiting) {
        m->br_active = 1;
        m->br_idr = 1;
    }
    return 0;
}

/* The shared stream made a keyframe at @p pts_us: the bridge's joiners
 * switch there, and the bridge rests. */
static void bridge_end(cs_media *m, int64_t pts_us)
{
    m->br_active = 0;
    m->br_idr = 0;
    pthread_mutex_lock(&m->mu);
    for (sink *s = m->sinks; s; s = s->next) {
        int64_t none = INT64_MAX;
        if (atomic_load(&s->bridged))
            atomic_compare_exchange_strong(&s->switch_us, &none, pts_us);
    }
    pthread_mutex_unlock(&m->mu);
}

static void bridge_feed(cs_media *m, cs_vframe *f, int64_t n, int64_t now)
{
    frame_item *it = malloc(sizeof(*it));
    if (!it)
        return;
    int idr = m->br_idr && now - m->br_idr_ns >= IDR_MIN_NS;
    it->f = cs_vframe_ref(f);
    it->n = n;
    it->idr = idr;
    if (cs_queue_try_push(m->br_q, it)) { /* the bridge fell behind: it skips one */
        frame_item_free(it);
        return;
    }
    if (idr) { /* it is the bridge thread's now */
        m->br_idr = 0;
        m->br_idr_ns = now;
    }
}

/* --------------------------------------------------------------- encode */

/* Encodes @p f, the source's frame @p seq (see frame_item), or a slate or
 * freeze frame (-1), as the frame after the last. */
static int encode_one(cs_media *m, cs_vframe *f, int64_t seq)
{
    int64_t now = cs_clock_ns(), n = cs_video_enc_next(m->enc);
    if (seq >= 0) { /* frames dropped before it leave their gap */
        if (seq + m->seq_skew < n)
            m->seq_skew = n - seq; /* after slate frames: from here on */
        n = seq + m->seq_skew;
        int rc = cs_video_enc_skip_to(m->enc, n);
        if (rc)
            return rc;
    }
    /* Keyframes fall on a grid of frame indexes, not every keyint frames
     * encoded, so that frames dropped on the way (or a source slower than
     * the output) do not move them on the content. */
    int idr = !m->o.enc.intra_refresh && n >= m->next_key_n;
    if (atomic_exchange(&m->join_req, 0) && join_start(m, n))
        atomic_store(&m->idr_req, 1);
    if (atomic_load(&m->idr_req) && now - m->last_idr_ns >= IDR_MIN_NS) {
        atomic_store(&m->idr_req, 0);
        m->last_idr_ns = now;
        idr = 1;
    }
    int rc = cs_video_enc_send(m->enc, f, idr);
    if (rc)
        return rc;
    int64_t keyint = cs_video_enc_keyint(m->enc);
    cs_vpacket *p;
    while (cs_video_enc_receive(m->enc, &p) == 0) {
        int64_t lat = cs_clock_wall_ns() - cs_vpacket_capture_ns(p);
        int key = cs_vpacket_is_key(p);
        pthread_mutex_lock(&m->mu);
        m->lat_ns[m->nlat++ % LAT_RING] = lat;
        m->frames_out++;
        m->bytes_enc += (int64_t)cs_vpacket_size(p);
        m->keyframes += key;
        pthread_mutex_unlock(&m->mu);
        if (key) {
            m->next_key_n = (n / keyint + 1) * keyint;
            if (m->br_active)
                bridge_end(m, cs_vpacket_pts_us(p));
        }
        fan_out(m, p, 0);
        cs_vpacket_unref(p);
    }
    /* after the shared stream's encode, so that the bridge never encodes
     * the frame of the keyframe it ends at; it overlaps the next one */
    if (m->br_active)
        bridge_feed(m, f, n, now);
    return 0;
}

static void encode_thread(void *arg)
{
    cs_media *m = arg;
    int64_t interval = 1000000000LL / m->fps;
    int64_t stall = (int64_t)(m->o.stall_ms ? m->o.stall_ms : 500) * 1000000;
    int64_t last_real = cs_clock_ns(), last_out = 0;
    cs_vframe *last = NULL, *slate = NULL;
    m->tick_ns = cs_clock_ns();
    while (!atomic_load(&m->stop)) {
        int64_t now = cs_clock_ns();
        int64_t wake = now - last_real < stall ? last_real + stall : last_out + interval;
        int wait = (int)((wake - now) / 1000000);
        void *item;
        int rc = cs_queue_pop(m->mail, &item, wait > 0 ? wait : 1);
        if (rc == CS_ECLOSED)
            break;
        now = cs_clock_ns();
        cs_vframe *f = NULL;
        int64_t seq = -1;
        if (rc == 0) {
            frame_item *it = item;
            f = it->f;
            seq = it->n;
            free(it);
            cs_vframe_unref(last);
            last = cs_vframe_ref(f);
            last_real = now;
            if (slate) {
                cs_vframe_unref(slate);
                slate = NULL;
            }
        } else if (now - last_real >= stall && now - last_out >= interval) {
            /* nothing for a while: freeze on the last picture, and once
             * the capture thread calls the source lost, the slate */
            cs_vframe *fill = last;
            if (atomic_load(&m->src_state) != SRC_LIVE || !last) {
                if (!slate)
                    slate = slate_new(m, last);
                fill = slate;
                m->slate_frames++;
            } else {
                m->freeze_frames++;
            }
            if (fill && !cs_vframe_copy(&f, fill))
                cs_vframe_set_capture_ns(f, cs_clock_wall_ns());
            /* a fill frame takes the slot of the time it is sent: the
             * stall before the first leaves its gap in the pts, so that
             * the output (and the recording) keeps real time, and a
             * receiver that plays by the pts does not fall behind by a
             * stall's length each time the source stalls */
            int64_t gap = last_out ? (now - last_out + interval / 2) / interval - 1 : 0;
            if (f && gap > 0 && cs_video_enc_skip_to(m->enc, cs_video_enc_next(m->enc) + gap))
                cs_log(m->log, CS_LOG_ERROR, "encode: %s", cs_error_last());
        }
        if (f) {
            if (encode_one(m, f, seq))
                cs_log(m->log, CS_LOG_ERROR, "encode: %s", cs_error_last());
            cs_vframe_unref(f);
            last_out = now;
        }
        stats_tick(m, 0);
    }
    cs_vframe_unref(last);
    cs_vframe_unref(slate);
}

/* ------------------------------------------------------------------ setup */

int cs_media_srt_url(char *out, size_t n, const char *in, const char *passphrase, int latency_ms,
                     int *listener)
{
    char host[300] = "";
    if (strncmp(in, "srt://", 6))
        return cs_error_set(CS_EINVAL, "%s: not an srt:// URL", in);
    const char *rest = in + 6;
    const char *q = strchr(rest, '?');
    size_t hl = q ? (size_t)(q - rest) : strlen(rest);
    if (hl >= sizeof(host))
        return cs_error_set(CS_EINVAL, "%s: address too long", in);
    memcpy(host, rest, hl);
    host[hl] = '\0';
    int lis = host[0] == ':' || (q && strstr(q, "mode=listener"));
    int len = snprintf(out, n, "srt://%s%s%s", host[0] == ':' ? "0.0.0.0" : "", host, q ? q : "?");
    if (!(q && strstr(q, "mode=")))
        len += snprintf(out + len, n > (size_t)len ? n - (size_t)len : 0, "%smode=%s", q ? "&" : "",
                        lis ? "listener" : "caller");
    if (passphrase && *passphrase && !(q && strstr(q, "passphrase=")))
        len += snprintf(out + len, n > (size_t)len ? n - (size_t)len : 0, "&passphrase=%s",
                        passphrase);
    if (!(q && strstr(q, "latency=")))
        len += snprintf(out + len, n > (size_t)len ? n - (size_t)len : 0, "&latency=%d",
                        (latency_ms > 0 ? latency_ms : 120) * 1000);
    if (len >= (int)n)
        return cs_error_set(CS_EINVAL, "%s: URL too long", in);
    if (listener)
        *listener = lis;
    return 0;
}

static void log_free(cs_media *m)
{
    if (m->own_log)
        cs_log_free(m->log);
}

int cs_media_start(cs_media **out, const cs_media_opts *o)
{
    *out = NULL;
    if (!o || !o->source || !*o->source)
        return cs_error_set(CS_EINVAL, "no video source given");
    cs_media *m = calloc(1, sizeof(*m));
    if (!m)
        return cs_error_set(CS_ENOMEM, "out of memory");
    m->o = *o;
    cs_video_url_redact(o->source, m->src_shown, sizeof(m->src_shown));
    pthread_mutex_init(&m->mu, NULL);
    m->log = o->log;
    if (!m->log) {
        if (cs_log_new(&m->log, "media")) {
            free(m);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        m->own_log = 1;
    }
    int rc = cs_video_enc_new(&m->enc, &m->o.enc);
    if (!rc) {
        cs_video_enc_size(m->enc, &m->w, &m->h, &m->fps);
        rc = cs_queue_new(&m->mail, 2, frame_item_free);
    }
    for (int i = 0; !rc && i < o->noutputs; i++) {
        const char *u = o->outputs[i];
        if (!strncmp(u, "srt://", 6)) {
            char full[700];
            int listener = 0;
            rc = cs_media_srt_url(full, sizeof(full), u, o->passphrase, o->srt_latency_ms,
                                  &listener);
            if (!rc && listener) {
                if (m->nlisten == MAX_LISTEN)
                    rc = cs_error_set(CS_EINVAL, "at most %d SRT listeners", MAX_LISTEN);
                else
                    snprintf(m->listen_url[m->nlisten++], sizeof(m->listen_url[0]), "%s", full);
            } else if (!rc) {
                rc = sink_add(m, SINK_OUTPUT, full, NULL, NULL);
            }
        } else {
            rc = sink_add(m, SINK_OUTPUT, u, NULL, NULL);
        }
    }
    if (!rc && o->record_dir) {
        cs_record_opts ro = CS_RECORD_OPTS_INIT;
        if (o->segment_s)
            ro.segment_s = o->segment_s;
        if (o->retention_years)
            ro.retention_years = o->retention_years;
        cs_record *rec;
        rc = cs_record_open(&rec, o->record_dir, m->enc, &ro);
        if (!rc && (rc = sink_add(m, SINK_RECORD, o->record_dir, NULL, rec)))
            cs_record_close(rec);
    }
    if (!rc && !o->enc.intra_refresh && (m->nlisten || o->noutputs)) {
        /* the bridge's stream is a joiner's for up to one GOP: it is made
         * cheaply (ultrafast, one thread), so that a join does not take
         * the CPU the shared encode needs; the joiner's decoder takes the
         * shared stream's own SPS/PPS at the switch */
        cs_video_enc_opts bo = m->o.enc;
        bo.preset = "ultrafast";
        bo.threads = 1;
        if (cs_video_enc_new(&m->br_enc, &bo))
            cs_log(m->log, CS_LOG_WARN, "join bridge: %s; joiners get a forced keyframe",
                   cs_error_last());
        else if (!(rc = cs_queue_new(&m->br_q, 4, frame_item_free)))
            rc = cs_thread_start(&m->br_th, "cs-bridge", bridge_thread, m);
    }
    if (!rc)
        rc = cs_thread_start(&m->enc_th, "cs-encode", encode_thread, m);
    if (!rc)
        rc = cs_thread_start(&m->cap_th, "cs-capture", capture_thread, m);
    for (int i = 0; !rc && i < m->nlisten; i++) {
        void **arg = malloc(2 * sizeof(void *));
        if (!arg) {
            rc = cs_error_set(CS_ENOMEM, "out of memory");
            break;
        }
        arg[0] = m;
        arg[1] = m->listen_url[i];
        rc = cs_thread_start(&m->listen_th[i], "cs-listen", listen_thread, arg);
        if (rc)
            free(arg);
    }
    if (rc) {
        int keep = rc;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", cs_error_last());
        cs_media_stop(m);
        return cs_error_set(keep, "%s", msg);
    }
    *out = m;
    return 0;
}

json_t *cs_media_stats(cs_media *m)
{
    pthread_mutex_lock(&m->mu);
    json_t *s = m->last_stats ? json_deep_copy(m->last_stats) : stats_locked(m, 0, 0);
    pthread_mutex_unlock(&m->mu);
    return s;
}

int cs_media_stop(cs_media *m)
{
    if (!m)
        return 0;
    atomic_store(&m->stop, 1);
    pthread_mutex_lock(&m->mu);
    cs_video_source_interrupt(m->src);
    pthread_mutex_unlock(&m->mu);
    cs_thread_join(m->cap_th);
    for (int i = 0; i < m->nlisten; i++)
        cs_thread_join(m->listen_th[i]);
    if (m->mail)
        cs_queue_close(m->mail);
    cs_thread_join(m->enc_th);
    if (m->br_q)
        cs_queue_close(m->br_q);
    cs_thread_join(m->br_th);
    /* the sinks drain what is queued (the recorder finishes its segment) */
    int rc = 0;
    for (sink *s = m->sinks; s; s = s->next)
        cs_queue_close(s->q);
    while (m->sinks) {
        sink *s = m->sinks;
        m->sinks = s->next;
        cs_thread_join(s->th);
        if (s->rec) {
            rc = cs_record_close(s->rec);
            s->rec = NULL;
        }
        sink_free(s);
    }
    cs_queue_free(m->mail);
    cs_queue_free(m->br_q);
    cs_video_enc_free(m->br_enc);
    cs_video_enc_free(m->enc);
    json_decref(m->last_stats);
    pthread_mutex_destroy(&m->mu);
    log_free(m);
    free(m);
    return rc;
}
