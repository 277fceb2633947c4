/* viewer/video: the live video view; see video.h.
 *
 * Invariants: the mailbox (slot) holds at most one frame, owned by the
 * video struct until the render thread takes it; the source handle (src)
 * is published under the mutex only while the video thread may block in
 * it, so vw_video_close() can interrupt it; the texture belongs to the
 * renderer it was made on (close the video before that renderer goes). */
#include "video.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/media.h"
#include "cs/thread.h"
#include "cs/video.h"

#include "adraw.h"
#include "input.h"

#define LAT_RING       512
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000
/* A frame without our capture-time SEI gets the time the source returned
 * it: a capture time this close to the read's return is that, not a stamp
 * (a stamped frame was captured, encoded, sent and decoded before it). */
#define UNSTAMPED_NS 300000
#define SEEK_STEP_US 10000000

struct vw_video {
    vw_video_opts o;
    char url[2048];   /* what is opened: SRT defaults and the passphrase added */
    char shown[2048]; /* the same, passphrase redacted */
    int paced;        /* not a network stream: shown at its pts rate */
    int64_t file_bytes;
    void (*wake)(void *userdata);
    void *wake_ud;
    cs_thread *thread;
    int64_t t_open; /* cs_clock_ns */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; any change, both directions */
    /* under mu */
    int stop;
    cs_video_source *src;
    cs_vframe *slot;
    int64_t slot_gen;
    int slot_stamped;
    int news;
    int64_t received, late_drops, errors_closed, errors_cur;
    int lost, failed, ended, paused, show_one;
    int64_t seek_req; /* -1: none */
    int64_t seek_gen; /* generation of the latest request */
    int64_t dur_us;
    double src_fps;
    char codec[32];
    char error[512];

    /* render thread */
    SDL_Texture *tex;
    SDL_Renderer *tex_ren;
    int tex_w, tex_h;
    int have_frame, pending, shown_stamped;
    int64_t shown_capture_ns, shown_pts, shown_gen;
    int64_t frames;
    double first_ms;
    int64_t lat_t[LAT_RING], lat_v[LAT_RING];
    int lat_n, lat_i;
    int64_t fps_t0, fps_recv0;
    double fps;
    int64_t target_us, target_gen; /* the last seek asked */
    int stats_on;
    vw_video_stats snap; /* shared state as of the last update */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait on v->cond (mutex held) until monotonic time @p deadline. */
static void wait_until(vw_video *v, int64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
    pthread_cond_timedwait(&v->cond, &v->mu, &ts);
}

static int is_network(const char *url)
{
    static const char *const net[] = {
        "srt:", "udp:", "rtp:", "rtsp:", "rtmp:", "tcp:", "http:", "https:"};
    for (size_t i = 0; i < sizeof(net) / sizeof(net[0]); i++)
        if (!strncmp(url, net[i], strlen(net[i])))
            return 1;
    return 0;
}

/* Replace every occurrence of @p secret in @p s by "***". */
static void scrub(char *s, size_t n, const char *secret)
{
    size_t k = secret ? strlen(secret) : 0;
    if (!k)
        return;
    char *p;
    while ((p = strstr(s, secret))) {
        char tail[1024];
        snprintf(tail, sizeof(tail), "%s", p + k);
        snprintf(p, n - (size_t)(p - s), "***%s", tail);
    }
}

/* ------------------------------------------------------------ options */

int vw_video_args(vw_video_opts *o, int argc, char **argv)
{
    int n = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char name[32];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = vw_arg_split(&a, &v, name, sizeof(name));
        int bad = 0;
        if (strcmp(a, "--video") == 0 || strcmp(a, "--passphrase") == 0 ||
            strcmp(a, "--latency") == 0 || strcmp(a, "--video-wait") == 0 ||
            strcmp(a, "--video-frames") == 0) {
            if (!v) {
                fprintf(stderr, "consilium-view: %s needs a value (see --help)\n", a);
                return -1;
            }
            if (strcmp(a, "--video") == 0)
                o->url = v;
            else if (strcmp(a, "--passphrase") == 0)
                o->passphrase = v;
            else if (strcmp(a, "--latency") == 0)
                bad = vw_parse_int(v, 1, 10000, &o->latency_ms);
            else if (strcmp(a, "--video-wait") == 0)
                bad = vw_parse_int(v, 1, 600000, &o->wait_ms);
            else
                bad = vw_parse_int(v, 1, 100000, &o->frames);
            if (bad) {
                fprintf(stderr, "consilium-view: bad value '%s' for %s (see --help)\n", v, a);
                return -1;
            }
            i += takes;
        } else {
            argv[n++] = argv[i];
        }
    }
    argv[n] = NULL;
    if ((o->passphrase || o->latency_ms) && !o->url) {
        fprintf(stderr, "consilium-view: --passphrase and --latency go with --video\n");
        return -1;
    }
    return n;
}

/* ------------------------------------------------------- video thread */

static void notify(vw_video *v)
{
    v->news = 1;
    pthread_cond_broadcast(&v->cond);
}

static void wake(vw_video *v)
{
    if (v->wake)
        v->wake(v->wake_ud);
}

static void set_error(vw_video *v, const char *msg)
{
    snprintf(v->error, sizeof(v->error), "%s", msg);
    scrub(v->error, sizeof(v->error), v->o.passphrase);
}

/* Hand @p f over (mutex not held); a frame not yet taken is replaced. */
static void post(vw_video *v, cs_video_source *s, cs_vframe *f, int64_t gen, int stamped)
{
    pthread_mutex_lock(&v->mu);
    if (v->slot) {
        if (v->slot_gen == gen)
            v->late_drops++;
        cs_vframe_unref(v->slot);
    }
    v->slot = f;
    v->slot_gen = gen;
    v->slot_stamped = stamped;
    v->received++;
    v->errors_cur = cs_video_source_errors(s);
    v->lost = 0;
    v->show_one = 0;
    notify(v);
    pthread_mutex_unlock(&v->mu);
    wake(v);
}

/* Wait until a frame of @p pts is due (paced sources). @return 1 to show
 * it, 0 to drop it (a seek or stop came). */
static int pace(vw_video *v, int64_t pts, int64_t *base_ns, int64_t *base_pts)
{
    pthread_mutex_lock(&v->mu);
    for (;;) {
        if (v->stop || v->seek_req >= 0) {
            pthread_mutex_unlock(&v->mu);
            return 0;
        }
        if (v->show_one) {
            *base_ns = 0;
            break;
        }
        if (v->paused) {
            pthread_cond_wait(&v->cond, &v->mu);
            *base_ns = 0; /* resume from here, not catch up */
            continue;
        }
        int64_t now = mono_ns();
        if (!*base_ns || pts < *base_pts) {
            *base_ns = now;
            *base_pts = pts;
            break;
        }
        int64_t due = *base_ns + (pts - *base_pts) * 1000;
        if (due <= now) {
            if (now - due > 500000000) { /* far behind (slow machine): start again */
                *base_ns = now;
                *base_pts = pts;
            }
            break;
        }
        wait_until(v, due);
    }
    pthread_mutex_unlock(&v->mu);
    return 1;
}

/* Read and hand over frames until an error, or stop. @return the error. */
static int play(vw_video *v, cs_video_source *s, int *backoff)
{
    int64_t gen = 0, discard_until = -1, base_ns = 0, base_pts = 0;
    cs_vframe *held = NULL; /* last frame skipped on the way to a seek target */
    int64_t half = v->src_fps > 0 ? (int64_t)(500000 / v->src_fps) : 16666;
    for (;;) {
        pthread_mutex_lock(&v->mu);
        while (!v->stop && v->seek_req < 0 && ((v->paused && !v->show_one) || v->ended)) {
            pthread_cond_wait(&v->cond, &v->mu);
            base_ns = 0;
        }
        if (v->stop) {
            pthread_mutex_unlock(&v->mu);
            cs_vframe_unref(held);
            return cs_error_set(CS_ECLOSED, "closed");
        }
        int64_t seek = v->seek_req;
        if (seek >= 0) {
            v->seek_req = -1;
            v->ended = 0;
            gen = v->seek_gen;
        }
        pthread_mutex_unlock(&v->mu);
        if (seek >= 0) {
            if (cs_video_source_seek(s, seek) < 0)
                cs_log(NULL, CS_LOG_WARN, "video: %s", cs_error_last());
            discard_until = seek;
            base_ns = 0;
            cs_vframe_unref(held);
            held = NULL;
        }
        cs_vframe *f;
        int rc = cs_video_source_read(s, &f);
        int64_t now = cs_clock_wall_ns();
        if (rc == CS_EFORMAT) {
            pthread_mutex_lock(&v->mu);
            v->errors_cur = cs_video_source_errors(s);
            pthread_mutex_unlock(&v->mu);
            continue;
        }
        if (rc == CS_EOF && v->dur_us > 0) {
            if (held) { /* the target was past the last frame: show the last one */
                post(v, s, held, gen, 0);
                held = NULL;
                discard_until = -1;
            }
            pthread_mutex_lock(&v->mu);
            v->ended = 1;
            v->show_one = 0;
            notify(v);
            pthread_mutex_unlock(&v->mu);
            wake(v);
            continue;
        }
        if (rc) {
            cs_vframe_unref(held);
            return rc;
        }
        int64_t pts = cs_vframe_pts_us(f);
        int64_t cap = cs_vframe_capture_ns(f);
        int stamped = cap != 0 && !(now - cap >= 0 && now - cap < UNSTAMPED_NS);
        if (discard_until >= 0 && pts >= 0 && pts + half < discard_until) {
            cs_vframe_unref(held);
            held = f;
            continue;
        }
        discard_until = -1;
        cs_vframe_unref(held);
        held = NULL;
        if (v->paced && pts >= 0 && !pace(v, pts, &base_ns, &base_pts)) {
            cs_vframe_unref(f);
            continue;
        }
        *backoff = BACKOFF_MIN_MS;
        post(v, s, f, gen, stamped);
    }
}

static void video_main(void *userdata)
{
    vw_video *v = userdata;
    int backoff = BACKOFF_MIN_MS;
    for (;;) {
        cs_video_source_opts so = CS_VIDEO_SOURCE_OPTS_INIT;
        so.realtime = 0; /* paced here (pause, exact seeks) */
        so.timeout_ms = v->o.timeout_ms;
        cs_video_source *s = NULL;
        int rc = cs_video_source_open(&s, v->url, &so);
        if (rc == 0) {
            const char *codec = NULL;
            double fps = 0;
            cs_video_source_info(s, &codec, NULL, NULL, &fps);
            pthread_mutex_lock(&v->mu);
            v->src = s;
            if (v->stop)
                cs_video_source_interrupt(s);
            v->dur_us = v->paced ? cs_video_source_duration_us(s) : 0;
            v->src_fps = fps;
            snprintf(v->codec, sizeof(v->codec), "%s", codec ? codec : "");
            notify(v);
            pthread_mutex_unlock(&v->mu);
            wake(v);
            rc = play(v, s, &backoff);
            pthread_mutex_lock(&v->mu);
            v->src = NULL;
            v->errors_closed += cs_video_source_errors(s);
            v->errors_cur = 0;
            pthread_mutex_unlock(&v->mu);
        }
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", cs_error_last());
        cs_video_source_close(s);
        pthread_mutex_lock(&v->mu);
        if (v->stop || rc == CS_ECLOSED) {
            pthread_mutex_unlock(&v->mu);
            break;
        }
        set_error(v, msg);
        if (v->paced) { /* a file (or test pattern) that fails will fail again */
            v->failed = 1;
            notify(v);
            pthread_mutex_unlock(&v->mu);
            cs_log(NULL, CS_LOG_ERROR, "video: %s", v->error);
            wake(v);
            break;
        }
        if (!v->lost)
            cs_log(NULL, CS_LOG_WARN, "video: source lost (%s); reconnecting", v->error);
        v->lost = 1;
        notify(v);
        pthread_mutex_unlock(&v->mu);
        wake(v);
        /* live: reconnect after 0.5, 1, 2, 4, 5, 5... s */
        pthread_mutex_lock(&v->mu);
        int64_t until = mono_ns() + (int64_t)backoff * 1000000;
        while (!v->stop && mono_ns() < until)
            wait_until(v, until);
        int stop = v->stop;
        pthread_mutex_unlock(&v->mu);
        if (stop)
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

/* ------------------------------------------------------ open and close */

int vw_video_open(vw_video **out, const vw_video_opts *o, void (*wake_fn)(void *userdata),
                  void *userdata)
{
    *out = NULL;
    if (!o->url || !*o->url)
        return cs_error_set(CS_EINVAL, "no video URL");
    vw_video *v = calloc(1, sizeof(*v));
    if (!v)
        return cs_error_set(CS_ENOMEM, "out of memory");
    v->o = *o;
    if (!v->o.passphrase || !*v->o.passphrase)
        v->o.passphrase = getenv("CS_SRT_PASSPHRASE");
    if (v->o.passphrase && !*v->o.passphrase)
        v->o.passphrase = NULL;
    if (v->o.timeout_ms <= 0)
        v->o.timeout_ms = 2000;
    if (!strncmp(o->url, "srt://", 6)) {
        if (cs_media_srt_url(v->url, sizeof(v->url), o->url, v->o.passphrase, v->o.latency_ms,
                             NULL) < 0) {
            free(v);
            return CS_EINVAL;
        }
    } else {
        snprintf(v->url, sizeof(v->url), "%s", o->url);
    }
    cs_video_url_redact(v->url, v->shown, sizeof(v->shown));
    scrub(v->shown, sizeof(v->shown), v->o.passphrase);
    v->paced = !is_network(v->url);
    struct stat sb;
    if (v->paced && stat(v->url, &sb) == 0 && S_ISREG(sb.st_mode))
        v->file_bytes = (int64_t)sb.st_size;
    v->wake = wake_fn;
    v->wake_ud = userdata;
    v->seek_req = -1;
    v->first_ms = -1;
    v->target_us = -1;
    v->stats_on = 1;
    v->t_open = cs_clock_ns();
    v->fps_t0 = v->t_open;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&v->mu, NULL);
    int rc = cs_thread_start(&v->thread, "video", video_main, v);
    if (rc < 0) {
        pthread_cond_destroy(&v->cond);
        pthread_mutex_destroy(&v->mu);
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void vw_video_close(vw_video *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->mu);
    v->stop = 1;
    if (v->src)
        cs_video_source_interrupt(v->src);
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->mu);
    cs_thread_join(v->thread);
    cs_vframe_unref(v->slot);
    if (v->tex)
        SDL_DestroyTexture(v->tex);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

/* ------------------------------------------------------- render thread */

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentiles of the latency samples of the last @p window_ns (0: all). */
static int latency(const vw_video *v, int64_t window_ns, double *p50, double *p95)
{
    int64_t tmp[LAT_RING];
    int n = 0;
    int64_t now = cs_clock_ns();
    for (int i = 0; i < v->lat_n; i++)
        if (!window_ns || now - v->lat_t[i] <= window_ns)
            tmp[n++] = v->lat_v[i];
    *p50 = *p95 = -1;
    if (!n)
        return 0;
    qsort(tmp, (size_t)n, sizeof(tmp[0]), cmp64);
    *p50 = (double)tmp[n * 50 / 100] / 1e6;
    *p95 = (double)tmp[n * 95 / 100 < n ? n * 95 / 100 : n - 1] / 1e6;
    return n;
}

int vw_video_update(vw_video *v, SDL_Renderer *ren)
{
    pthread_mutex_lock(&v->mu);
    cs_vframe *f = v->slot;
    int64_t gen = v->slot_gen;
    int stamped = v->slot_stamped;
    v->slot = NULL;
    int dirty = v->news;
    v->news = 0;
    vw_video_stats *s = &v->snap;
    s->received = v->received;
    s->late_drops = v->late_drops;
    s->errors = v->errors_closed + v->errors_cur;
    s->dur_us = v->dur_us;
    s->paused = v->paused;
    s->lost = v->lost;
    s->ended = v->ended;
    s->failed = v->failed;
    snprintf(s->codec, sizeof(s->codec), "%s", v->codec);
    snprintf(s->error, sizeof(s->error), "%s", v->error);
    pthread_mutex_unlock(&v->mu);
    if (f) {
        int w = cs_vframe_width(f), h = cs_vframe_height(f);
        if (!v->tex || v->tex_ren != ren || w != v->tex_w || h != v->tex_h) {
            if (v->tex && v->tex_ren == ren)
                SDL_DestroyTexture(v->tex);
            v->tex =
                SDL_CreateTexture(ren, SDL_PIXELFORMAT_IYUV, SDL_TEXTUREACCESS_STREAMING, w, h);
            v->tex_ren = ren;
            v->tex_w = w;
            v->tex_h = h;
            if (!v->tex)
                cs_log(NULL, CS_LOG_ERROR, "video: cannot create a %dx%d IYUV texture: %s", w, h,
                       SDL_GetError());
        }
        if (v->tex) {
            int ys, us, vs;
            const uint8_t *py = cs_vframe_plane(f, 0, &ys);
            const uint8_t *pu = cs_vframe_plane(f, 1, &us);
            const uint8_t *pv = cs_vframe_plane(f, 2, &vs);
            if (SDL_UpdateYUVTexture(v->tex, NULL, py, ys, pu, us, pv, vs) == 0) {
                v->have_frame = 1;
                v->pending = 1;
                v->shown_capture_ns = cs_vframe_capture_ns(f);
                v->shown_stamped = stamped;
                v->shown_pts = cs_vframe_pts_us(f);
                v->shown_gen = gen;
                s->width = w;
                s->height = h;
            }
        }
        cs_vframe_unref(f);
        dirty = 1;
    }
    int64_t now = cs_clock_ns();
    if (now - v->fps_t0 >= 1000000000) {
        v->fps = (double)(s->received - v->fps_recv0) * 1e9 / (double)(now - v->fps_t0);
        v->fps_t0 = now;
        v->fps_recv0 = s->received;
        if (v->stats_on)
            dirty = 1;
    }
    return dirty;
}

void vw_video_presented(vw_video *v)
{
    if (!v->pending)
        return;
    v->pending = 0;
    v->frames++;
    if (v->first_ms < 0)
        v->first_ms = (double)(cs_clock_ns() - v->t_open) / 1e6;
    if (v->shown_stamped && v->snap.dur_us <= 0) {
        v->lat_t[v->lat_i] = cs_clock_ns();
        v->lat_v[v->lat_i] = cs_clock_wall_ns() - v->shown_capture_ns;
        v->lat_i = (v->lat_i + 1) % LAT_RING;
        if (v->lat_n < LAT_RING)
            v->lat_n++;
    }
}

void vw_video_wait(vw_video *v, int ms)
{
    pthread_mutex_lock(&v->mu);
    if (!v->news && !v->slot)
        wait_until(v, mono_ns() + (int64_t)ms * 1000000);
    pthread_mutex_unlock(&v->mu);
}

static void fmt_time(char *out, size_t n, int64_t us)
{
    if (us < 0)
        us = 0;
    int64_t s = us / 1000000;
    snprintf(out, n, "%lld:%02lld.%01lld", (long long)(s / 60), (long long)(s % 60),
             (long long)(us / 100000 % 10));
}

static SDL_Rect progress_rect(const SDL_Rect *area)
{
    SDL_Rect r = {area->x + 10, area->y + area->h - 16, area->w - 20, 6};
    return r;
}

/* Draw @p msg wrapped to about @p w pixels, centred on @p cx, from @p y.
 * @return the y below it. */
static int wrapped(vw_overlay *ov, const char *msg, int cx, int y, int w, uint32_t rgb)
{
    int lh = vw_overlay_line_height(ov);
    int per = w / 8 > 16 ? w / 8 : 16; /* characters a line, about 8 px each */
    const char *p = msg;
    while (*p) {
        size_t n = strlen(p);
        if ((int)n > per) {
            n = (size_t)per;
            while (n > (size_t)per / 2 && p[n] != ' ')
                n--;
            if (p[n] != ' ')
                n = (size_t)per;
        }
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), p);
        int tw = vw_overlay_label(ov, line, -10000, -10000, rgb); /* measure */
        vw_overlay_label(ov, line, cx - tw / 2, y, rgb);
        y += lh + 4;
        p += n;
        while (*p == ' ')
            p++;
    }
    return y;
}

void vw_video_draw(vw_video *v, SDL_Renderer *ren, vw_overlay *ov, const SDL_Rect *area)
{
    const vw_video_stats *s = &v->snap;
    SDL_RenderSetClipRect(ren, area);
    SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_NONE);
    SDL_SetRenderDrawColor(ren, 0, 0, 0, 255);
    SDL_RenderFillRect(ren, area);
    if (v->have_frame && v->tex && v->tex_w > 0 && v->tex_h > 0) {
        /* letterbox: the largest rectangle of the frame's aspect that fits */
        SDL_Rect dst = *area;
        if ((int64_t)area->w * v->tex_h > (int64_t)area->h * v->tex_w) {
            dst.w = (int)((int64_t)area->h * v->tex_w / v->tex_h);
            dst.x = area->x + (area->w - dst.w) / 2;
        } else {
            dst.h = (int)((int64_t)area->w * v->tex_h / v->tex_w);
            dst.y = area->y + (area->h - dst.h) / 2;
        }
        SDL_RenderCopy(ren, v->tex, NULL, &dst);
    }
    int lh = vw_overlay_line_height(ov);
    char line[600];
    if (v->stats_on) {
        int x = area->x + 8, y = area->y + 8;
        vw_overlay_label(ov, v->shown, x, y, 0xffffff);
        y += lh + 3;
        char rate[64] = "";
        if (v->file_bytes > 0 && s->dur_us > 0)
            snprintf(rate, sizeof(rate), "  %.2f Mbit/s avg",
                     (double)v->file_bytes * 8 / ((double)s->dur_us / 1e6) / 1e6);
        snprintf(line, sizeof(line), "%s %dx%d  %.1f fps%s", s->codec[0] ? s->codec : "?", s->width,
                 s->height, v->fps, rate);
        vw_overlay_label(ov, line, x, y, 0xffffff);
        y += lh + 3;
        double p50, p95;
        if (s->dur_us > 0)
            snprintf(line, sizeof(line), "latency n/a (recording)");
        else if (latency(v, 1000000000, &p50, &p95) > 0)
            snprintf(line, sizeof(line), "latency p50 %.0f ms  p95 %.0f ms", p50, p95);
        else
            snprintf(line, sizeof(line), "latency n/a");
        vw_overlay_label(ov, line, x, y, 0xffffff);
        y += lh + 3;
        snprintf(line, sizeof(line), "late drops %lld  decode errors %lld",
                 (long long)s->late_drops, (long long)s->errors);
        vw_overlay_label(ov, line, x, y, s->errors ? 0xffa0a0 : 0xffffff);
    }
    int cx = area->x + area->w / 2, cy = area->y + area->h / 2 - lh;
    if (s->failed || s->lost) { /* a dark band: the banner reads over any picture */
        SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_BLEND);
        SDL_SetRenderDrawColor(ren, 0, 0, 0, 190);
        SDL_Rect band = {area->x, cy - 10, area->w, 3 * (lh + 4) + 16};
        SDL_RenderFillRect(ren, &band);
    }
    if (s->failed) {
        int y = wrapped(ov, "CANNOT PLAY", cx, cy, area->w - 20, 0xff5050);
        wrapped(ov, s->error, cx, y, area->w - 20, 0xffffff);
    } else if (s->lost) {
        int y =
            wrapped(ov, "SOURCE LOST \xe2\x80\x94 reconnecting", cx, cy, area->w - 20, 0xff5050);
        wrapped(ov, s->error, cx, y, area->w - 20, 0xffffff);
    } else if (!v->have_frame) {
        snprintf(line, sizeof(line), "connecting to %.500s", v->shown);
        wrapped(ov, line, cx, cy, area->w - 20, 0xc0c0c0);
    }
    if (s->dur_us > 0) {
        SDL_Rect bar = progress_rect(area);
        int64_t pos = v->shown_pts < 0 ? 0 : v->shown_pts;
        SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_BLEND);
        SDL_SetRenderDrawColor(ren, 0, 0, 0, 160);
        SDL_Rect back = {bar.x - 4, bar.y - lh - 8, bar.w + 8, bar.h + lh + 14};
        SDL_RenderFillRect(ren, &back);
        SDL_SetRenderDrawColor(ren, 90, 90, 90, 255);
        SDL_RenderFillRect(ren, &bar);
        SDL_Rect done = bar;
        done.w =
            (int)((double)bar.w * (double)(pos > s->dur_us ? s->dur_us : pos) / (double)s->dur_us);
        SDL_SetRenderDrawColor(ren, 80, 160, 255, 255);
        SDL_RenderFillRect(ren, &done);
        char a[32], b[32];
        fmt_time(a, sizeof(a), pos);
        fmt_time(b, sizeof(b), s->dur_us);
        snprintf(line, sizeof(line), "%s / %s%s", a, b,
                 s->ended    ? "  end"
                 : s->paused ? "  paused"
                             : "");
        vw_overlay_label(ov, line, bar.x, bar.y - lh - 4, 0xffffff);
    }
    SDL_RenderSetClipRect(ren, NULL);
}

/* ------------------------------------------------------------- control */

int vw_video_is_file(const vw_video *v)
{
    return v->snap.dur_us > 0;
}

int64_t vw_video_shown_gen(const vw_video *v)
{
    return v->shown_gen;
}

const char *vw_video_url(const vw_video *v)
{
    return v->shown;
}

int64_t vw_video_seek(vw_video *v, int64_t us)
{
    pthread_mutex_lock(&v->mu);
    int64_t dur = v->dur_us;
    if (dur <= 0) {
        pthread_mutex_unlock(&v->mu);
        return -1;
    }
    if (us > dur)
        us = dur;
    if (us < 0)
        us = 0;
    v->seek_req = us;
    int64_t gen = ++v->seek_gen;
    v->show_one = 1; /* paused: show where it went */
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->mu);
    v->target_us = us;
    v->target_gen = gen;
    return gen;
}

void vw_video_set_paused(vw_video *v, int paused)
{
    pthread_mutex_lock(&v->mu);
    int ended = v->ended;
    if (v->dur_us > 0) {
        v->paused = paused;
        v->news = 1;
    }
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->mu);
    if (!paused && ended)
        vw_video_seek(v, 0); /* play again from the start */
}

/* Where a relative seek starts: the last target until its frame shows. */
static int64_t position(const vw_video *v)
{
    if (v->target_us >= 0 && v->shown_gen < v->target_gen)
        return v->target_us;
    return v->shown_pts < 0 ? 0 : v->shown_pts;
}

int vw_video_event(vw_video *v, const SDL_Event *ev, const SDL_Rect *area)
{
    int file = v->snap.dur_us > 0;
    if (ev->type == SDL_KEYDOWN) {
        switch (ev->key.keysym.sym) {
        case SDLK_i:
            v->stats_on = !v->stats_on;
            return 1;
        case SDLK_SPACE:
            if (file)
                vw_video_set_paused(v, !v->snap.paused || v->snap.ended);
            return file;
        case SDLK_LEFT:
        case SDLK_RIGHT:
            if (file)
                vw_video_seek(v, position(v) + (ev->key.keysym.sym == SDLK_LEFT ? -SEEK_STEP_US
                                                                                : SEEK_STEP_US));
            return file;
        case SDLK_HOME:
            if (file)
                vw_video_seek(v, 0);
            return file;
        default:
            return 0;
        }
    }
    if (ev->type == SDL_MOUSEBUTTONDOWN && ev->button.button == SDL_BUTTON_LEFT && file) {
        SDL_Rect bar = progress_rect(area);
        int x = ev->button.x, y = ev->button.y;
        if (x >= bar.x - 4 && x <= bar.x + bar.w + 4 && y >= bar.y - 10 &&
            y <= bar.y + bar.h + 10 && bar.w > 0) {
            double f = (double)(x - bar.x) / bar.w;
            f = f < 0 ? 0 : f > 1 ? 1 : f;
            vw_video_seek(v, (int64_t)(f * (double)v->snap.dur_us));
            return 1;
        }
    }
    return 0;
}

void vw_video_get_stats(vw_video *v, vw_video_stats *out)
{
    *out = v->snap;
    out->frames = v->frames;
    out->first_ms = v->first_ms;
    out->lat_n = latency(v, 0, &out->lat_p50, &out->lat_p95);
    out->pos_us = v->shown_pts;
    out->fps = v->fps;
}

static json_t *num_or_null(double x)
{
    return x < 0 ? json_null() : json_real((double)(int64_t)(x * 10 + 0.5) / 10);
}

void vw_video_print_json(vw_video *v, FILE *f)
{
    vw_video_stats s;
    vw_video_get_stats(v, &s);
    json_t *lat = json_pack("{s:o,s:o,s:i}", "p50", num_or_null(s.lat_p50), "p95",
                            num_or_null(s.lat_p95), "n", s.lat_n);
    json_t *j =
        json_pack("{s:{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:o,s:i,s:i,s:o,s:o,s:b,s:b,s:b,s:b,s:s}}",
                  "video", "url", v->shown, "codec", s.codec, "first_frame_ms",
                  num_or_null(s.first_ms), "frames", (json_int_t)s.frames, "received",
                  (json_int_t)s.received, "late_drops", (json_int_t)s.late_drops, "errors",
                  (json_int_t)s.errors, "latency_ms", lat, "width", s.width, "height", s.height,
                  "position_s", s.pos_us < 0 ? json_null() : json_real((double)s.pos_us / 1e6),
                  "duration_s", json_real((double)s.dur_us / 1e6), "paused", s.paused, "lost",
                  s.lost, "ended", s.ended, "failed", s.failed, "error", s.error);
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (txt) {
        fprintf(f, "%s\n", txt);
        fflush(f);
        free(txt);
    }
    json_decref(j);
}

void vw_video_layout(int w, int h, int with_slide, SDL_Rect *slide, SDL_Rect *video)
{
    if (!with_slide) {
        *slide = (SDL_Rect){0, 0, 0, 0};
        *video = (SDL_Rect){0, 0, w, h};
        return;
    }
    int vw = w / 3 < 160 ? (w < 320 ? w / 2 : 160) : w / 3;
    *slide = (SDL_Rect){0, 0, w - vw, h};
    *video = (SDL_Rect){w - vw, 0, vw, h};
}

/* --------------------------------------------------------------- window */

static void ui_wake(void *userdata)
{
    vw_app *a = userdata;
    if (atomic_exchange(&a->wake_pending, 1) == 0) {
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = a->wake_event;
        SDL_PushEvent(&ev);
    }
}

static int in_rect(const SDL_Rect *r, int x, int y)
{
    return x >= r->x && x < r->x + r->w && y >= r->y && y < r->y + r->h;
}

/* The window: the video alone, or the slide view (ui.c's loop, in the left
 * part) beside it. Mouse events go to the pane they start in (a drag stays
 * with its pane); keys to the pane under the pointer. */
int vw_video_ui_run(vw_app *a, const vw_video_opts *vo)
{
    int with_slide = a->o.target != NULL;
    if (SDL_Init(SDL_INIT_VIDEO) < 0) {
        fprintf(stderr,
                "consilium-view: cannot open a window: %s\n"
                "(for use without a display, see --screenshot)\n",
                SDL_GetError());
        return 1;
    }
    int rc = 1;
    SDL_Window *win = NULL;
    SDL_Renderer *ren = NULL;
    SDL_Texture *tex = NULL;
    vw_overlay *ov = NULL;
    vw_video *vid = NULL;
    a->wake_event = SDL_RegisterEvents(1);
    if (a->wake_event == (uint32_t)-1 || (with_slide && (vw_app_start_fetch(a, ui_wake, a) < 0 ||
                                                         vw_app_start_sync(a, ui_wake, a) < 0))) {
        fprintf(stderr, "consilium-view: %s\n",
                a->wake_event == (uint32_t)-1 ? SDL_GetError() : cs_error_last());
        goto out;
    }
    char url[600], title[800];
    cs_video_url_redact(vo->url, url, sizeof(url));
    if (with_slide)
        snprintf(title, sizeof(title), "%.150s + %.600s", a->src.name, url);
    else
        snprintf(title, sizeof(title), "%.600s", url);
    win = SDL_CreateWindow(title, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, a->o.w, a->o.h,
                           SDL_WINDOW_RESIZABLE);
    if (!win) {
        fprintf(stderr, "consilium-view: cannot open a window: %s\n", SDL_GetError());
        goto out;
    }
    ren = SDL_CreateRenderer(win, -1, SDL_RENDERER_ACCELERATED | SDL_RENDERER_PRESENTVSYNC);
    if (!ren)
        ren = SDL_CreateRenderer(win, -1, SDL_RENDERER_SOFTWARE);
    if (!ren) {
        fprintf(stderr, "consilium-view: no renderer: %s\n", SDL_GetError());
        goto out;
    }
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "1");
    if (vw_overlay_new(&ov, ren, a->o.font) < 0)
        goto out;
    if (vw_video_open(&vid, vo, ui_wake, a) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    int ww, wh;
    SDL_GetWindowSize(win, &ww, &wh);
    SDL_Rect sr, vr;
    vw_video_layout(ww, wh, with_slide, &sr, &vr);
    vw_view v = {0, 0, 1, sr.w, sr.h};
    vw_input in = {0};
    in.overlays = 1;
    if (with_slide) {
        if (!(tex = SDL_CreateTexture(ren, SDL_PIXELFORMAT_XRGB8888, SDL_TEXTUREACCESS_STREAMING,
                                      sr.w, sr.h))) {
            fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
            goto out;
        }
        vw_app_initial_view(a, &v);
    }
    /* recompose: the slide's pixels changed (view, tiles, size); a video
     * frame alone only copies the slide's texture again */
    int dirty = 1, recompose = 1, quit = 0, owner = 0, hover = with_slide ? 1 : 2, typing = 0;
    int last_inflight = -1, status_shown = 0;
    vw_frame_stats st;
    memset(&st, 0, sizeof(st));
    SDL_StopTextInput();
    while (!quit && !in.quit) {
        SDL_Event ev;
        int got = dirty ? SDL_PollEvent(&ev) : SDL_WaitEventTimeout(&ev, 100);
        int got_any = got || dirty;
        while (got) {
            if (ev.type == a->wake_event) {
                /* drained below */
            } else if (ev.type == SDL_QUIT) {
                quit = 1;
            } else if (ev.type == SDL_WINDOWEVENT &&
                       ev.window.event == SDL_WINDOWEVENT_SIZE_CHANGED) {
                vw_video_layout(ev.window.data1, ev.window.data2, with_slide, &sr, &vr);
                if (with_slide && sr.w > 0 && sr.h > 0 && (sr.w != v.w || sr.h != v.h)) {
                    v.x += (v.w - sr.w) / 2.0 / v.zoom;
                    v.y += (v.h - sr.h) / 2.0 / v.zoom;
                    v.w = sr.w;
                    v.h = sr.h;
                    SDL_DestroyTexture(tex);
                    if (!(tex = SDL_CreateTexture(ren, SDL_PIXELFORMAT_XRGB8888,
                                                  SDL_TEXTUREACCESS_STREAMING, sr.w, sr.h)))
                        goto out;
                }
                dirty = recompose = 1;
            } else {
                int pane = hover;
                if (ev.type == SDL_MOUSEBUTTONDOWN) {
                    owner = pane = in_rect(&vr, ev.button.x, ev.button.y) ? 2 : 1;
                } else if (ev.type == SDL_MOUSEBUTTONUP) {
                    pane = owner ? owner : in_rect(&vr, ev.button.x, ev.button.y) ? 2 : 1;
                    owner = 0;
                } else if (ev.type == SDL_MOUSEMOTION) {
                    hover = in_rect(&vr, ev.motion.x, ev.motion.y) ? 2 : 1;
                    pane = owner ? owner : hover;
                } else if (ev.type == SDL_MOUSEWHEEL) {
                    pane = hover;
                } else if (ev.type == SDL_TEXTINPUT || typing) {
                    pane = 1;
                }
                if (!with_slide)
                    pane = 2;
                if (pane == 2) {
                    if (ev.type == SDL_KEYDOWN && ev.key.keysym.sym == SDLK_q)
                        quit = 1;
                    else
                        dirty |= vw_video_event(vid, &ev, &vr);
                } else if (vw_app_event(a, &in, &ev, &v, 1)) {
                    dirty = recompose = 1;
                }
                if (pane == 1) {
                    if (!!a->edit.typing != typing) {
                        typing = !!a->edit.typing;
                        if (typing)
                            SDL_StartTextInput();
                        else
                            SDL_StopTextInput();
                    }
                }
            }
            got = SDL_PollEvent(&ev);
        }
        atomic_store(&a->wake_pending, 0);
        if (vw_video_update(vid, ren))
            dirty = 1;
        if (with_slide) {
            if (vw_app_annotations_poll(a))
                dirty = 1;
            int show = a->edit.status[0] && cs_clock_ns() < a->edit.status_until;
            if (show != status_shown)
                dirty = 1;
            status_shown = show;
            if (!got_any)
                vw_app_publish(a, &v);
            if (vw_app_consume(a) > 0)
                dirty = recompose = 1;
            int inflight = vw_fetch_in_flight(a->fetch);
            if (inflight != last_inflight && in.overlays)
                dirty = 1;
            last_inflight = inflight;
        }
        if (!dirty)
            continue;
        dirty = 0;
        SDL_SetRenderDrawColor(ren, 0, 0, 0, 255);
        SDL_RenderClear(ren);
        if (with_slide && recompose) {
            recompose = 0;
            vw_app_publish(a, &v);
            void *pixels;
            int pitch;
            if (SDL_LockTexture(tex, NULL, &pixels, &pitch) < 0) {
                fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
                goto out;
            }
            vw_app_compose(a, &v, pixels, pitch / 4, &st);
            SDL_UnlockTexture(tex);
        }
        if (with_slide) {
            SDL_RenderCopy(ren, tex, NULL, &sr);
            SDL_RenderSetClipRect(ren, &sr);
            vw_adraw(ren, ov, &a->edit, &v, 1);
            if (in.overlays) {
                vw_overlay_info info = {a->src.name,         a->src.mpp_x,  v.zoom,   st.level,
                                        a->src.geom.nlevels, last_inflight, a->failed};
                vw_overlay_draw(ov, v.w, v.h, &info);
            }
            SDL_RenderSetClipRect(ren, NULL);
        }
        vw_video_draw(vid, ren, ov, &vr);
        SDL_RenderPresent(ren);
        vw_video_presented(vid);
    }
    rc = 0;
out:
    /* stop the workers before SDL goes: they may push wake events */
    vw_video_close(vid);
    vw_fetch_free(a->fetch);
    a->fetch = NULL;
    vw_sync_free(a->sync);
    a->sync = NULL;
    vw_overlay_free(ov);
    if (tex)
        SDL_DestroyTexture(tex);
    if (ren)
        SDL_DestroyRenderer(ren);
    if (win)
        SDL_DestroyWindow(win);
    SDL_Quit();
    return rc;
}
