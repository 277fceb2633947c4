/* viewer/app: consilium-view's entry point: options, opening the slide,
 * the fetcher and cache, and the steps shared by every render loop.
 *
 * Threads: main = render (SDL, compositor, cache); "net" + "decode" (URL) or
 * "tiles" (FILE) fetch and decode tiles and hand them over through the
 * fetcher's bounded result queue. The render thread never waits on the
 * network or the disk. */
#include "app.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/thread.h"

#include "adraw.h"
#include "reading.h"
#include "video.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: consilium-view URL|FILE [options]\n"
            "       consilium-view [URL|FILE] --video SOURCE [video options] [options]\n"
            "\n"
            "Whole-slide viewer. URL is a Consilium server's slide,\n"
            "  http(s)://HOST:PORT/slides/ID.dzi, http(s)://HOST:PORT/slides/ID, or the bare\n"
            "  http(s)://HOST:PORT (first slide of GET /slides); FILE is a local slide\n"
            "  (SVS, TIFF, NDPI, ... anything OpenSlide reads), tiled in-process.\n"
            "  A URL ending in /dicomweb or /dicom-web (or --reading) opens the radiology\n"
            "  reading mode: consilium-view URL --help lists its options.\n"
            "\n"
            "options:\n"
            "  --token T          bearer token for the server (default: $CONSILIUM_TOKEN)\n"
            "  --size WxH         window or image size (default 1280x800)\n"
            "  --view X,Y,ZOOM    view: level-0 position of the top-left corner and zoom in\n"
            "                     screen px per level-0 px (1 = full resolution); default: fit\n"
            "  --screenshot OUT.png  headless: render the view once every visible tile of\n"
            "                     its level is loaded, write OUT.png (WxH) and exit\n"
            "  --overlays         with --screenshot: draw scale bar, name and status too\n"
            "  --script FILE      headless: replay input (tool, down/move/up/click/dblclick X Y,\n"
            "                     key NAME, type TEXT, wait MS, screenshot OUT.png,\n"
            "                     expect-annotations N, dump OUT.json); see viewer/README.md\n"
            "  --annotations FILE local files: the annotation sidecar (default\n"
            "                     SLIDE.annotations.geojson next to the slide)\n"
            "  --views FILE       headless timing run: FILE has one X,Y,ZOOM per line; prints\n"
            "                     {\"startup_ms\",\"prefetch_bytes\"} then one JSON line per view\n"
            "                     (first_paint_ms, sharp_ms, tiles, bytes, fetched)\n"
            "  --timing           accepted with --views (its output is always printed)\n"
            "  --parallel N       concurrent tile transfers (URL, default 6) or tile\n"
            "                     threads (FILE, default 2)\n"
            "  --ring N           tiles of margin fetched around the view (default 1)\n"
            "  --prefetch-px N    prefetch every level up to N px (default 1024)\n"
            "  --cache-mb N       decoded tile cache budget in MiB (default 256)\n"
            "  --timeout S        headless: give up on a view after S seconds (default 120;\n"
            "                     a screenshot is still written, from coarser levels)\n"
            "  --font PATH        TTF font for overlays (default DejaVu Sans)\n"
            "  --cacert FILE      CA bundle for https; --insecure skips verification\n"
            "  -h, --help         this text\n"
            "\n"
            "live video (see viewer/README.md, \"Live video\"):\n"
            "  --video SOURCE     show a video: srt://HOST:PORT (SRT caller), udp://..., or a\n"
            "                     file (a recording segment .mp4). Alone, it fills the window;\n"
            "                     with a slide URL|FILE, it takes the right third of it\n"
            "  --passphrase P     SRT passphrase (default: $CS_SRT_PASSPHRASE)\n"
            "  --latency MS       SRT receive latency (default 120)\n"
            "  --video-wait MS    headless: wait this long for the frames (default 5000)\n"
            "  --video-frames N   --screenshot: after N frames shown (default 1); prints\n"
            "                     "
            "{\"video\":{\"first_frame_ms\",\"frames\",\"latency_ms\":{\"p50\",\"p95\"},\n"
            "                     \"width\",\"height\",...}}\n"
            "  keys (video): I stats overlay, Space pause, Left/Right -/+10 s, Home start,\n"
            "  click in the progress bar seeks (files); Q quits. Beside a slide, keys go to\n"
            "  the pane under the pointer.\n"
            "\n"
            "keys (window): drag to pan, wheel zooms about the cursor, arrows pan,\n"
            "  +/- zoom, Home fits the slide, O toggles overlays, Q quits.\n"
            "  annotation tools: S select, P point, L ruler, R rectangle, E ellipse,\n"
            "  G polygon, F freehand, T text; Delete deletes, N relabels, C cycles the class,\n"
            "  Esc cancels.\n"
            "headless modes need no display (SDL software renderer on a surface).\n"
            "exit status: 0 ok, 1 error (server, token, slide, file), 2 usage, 3 timeout.\n");
}

/* ---- option parsing (no atoi: strtol/strtod with full checks) ---- */

int vw_arg_split(const char **a, const char **v, char *name, size_t cap)
{
    const char *s = *a;
    const char *eq = s[0] == '-' && s[1] == '-' ? strchr(s, '=') : NULL;
    if (!eq || (size_t)(eq - s) >= cap)
        return 1;
    memcpy(name, s, (size_t)(eq - s));
    name[eq - s] = '\0';
    *a = name;
    *v = eq + 1;
    return 0;
}

int vw_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double *out, char **end)
{
    errno = 0;
    *out = strtod(s, end);
    return errno || *end == s || !isfinite(*out) ? -1 : 0;
}

int vw_parse_view(const char *s, double *x, double *y, double *zoom)
{
    char *end;
    if (parse_double(s, x, &end) < 0)
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end++ != ',')
        return -1;
    if (parse_double(end, y, &end) < 0)
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end++ != ',')
        return -1;
    if (parse_double(end, zoom, &end) < 0)
        return -1;
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    return *end || !(*zoom > 0) ? -1 : 0;
}

int vw_parse_size(const char *s, int *w, int *h)
{
    const char *x = strchr(s, 'x');
    if (!x || x == s)
        return -1;
    char wb[16];
    size_t n = (size_t)(x - s);
    if (n >= sizeof(wb))
        return -1;
    memcpy(wb, s, n);
    wb[n] = '\0';
    return vw_parse_int(wb, 1, 16384, w) < 0 || vw_parse_int(x + 1, 1, 16384, h) < 0 ? -1 : 0;
}

static int parse_args(vw_options *o, int argc, char **argv, int video)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char name[40];
        int takes = vw_arg_split(&a, &v, name, sizeof(name));
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--overlays") == 0) {
            o->overlays = 1, takes = 0;
        } else if (strcmp(a, "--timing") == 0) {
            o->timing = 1, takes = 0;
        } else if (strcmp(a, "--insecure") == 0) {
            o->insecure = 1, takes = 0;
        } else if (a[0] == '-' && a[1] == '-') {
            if (!v) {
                fprintf(stderr, "consilium-view: %s needs a value (see --help)\n", a);
                return -1;
            }
            int bad = 0;
            if (strcmp(a, "--token") == 0)
                o->token = v;
            else if (strcmp(a, "--size") == 0)
                bad = vw_parse_size(v, &o->w, &o->h);
            else if (strcmp(a, "--view") == 0)
                bad = vw_parse_view(v, &o->vx, &o->vy, &o->vzoom), o->have_view = 1;
            else if (strcmp(a, "--screenshot") == 0)
                o->screenshot = v;
            else if (strcmp(a, "--views") == 0)
                o->views = v;
            else if (strcmp(a, "--script") == 0)
                o->script = v;
            else if (strcmp(a, "--annotations") == 0)
                o->annotations = v;
            else if (strcmp(a, "--parallel") == 0)
                bad = vw_parse_int(v, 1, 32, &o->parallel);
            else if (strcmp(a, "--ring") == 0)
                bad = vw_parse_int(v, 0, 8, &o->ring);
            else if (strcmp(a, "--prefetch-px") == 0)
                bad = vw_parse_int(v, 1, 16384, &o->prefetch_px);
            else if (strcmp(a, "--cache-mb") == 0)
                bad = vw_parse_int(v, 16, 1 << 20, &o->cache_mb);
            else if (strcmp(a, "--timeout") == 0) {
                char *end;
                bad = parse_double(v, &o->timeout_s, &end) < 0 || *end || o->timeout_s <= 0;
            } else if (strcmp(a, "--font") == 0)
                o->font = v;
            else if (strcmp(a, "--cacert") == 0)
                o->cacert = v;
            else {
                fprintf(stderr, "consilium-view: unknown option %s (see --help)\n", a);
                return -1;
            }
            if (bad) {
                fprintf(stderr, "consilium-view: bad value '%s' for %s (see --help)\n", v, a);
                return -1;
            }
        } else if (!o->target) {
            o->target = a, takes = 0;
        } else {
            fprintf(stderr, "consilium-view: one URL or FILE only ('%s'?)\n", a);
            return -1;
        }
        i += takes;
    }
    if (!o->target && !video) {
        fprintf(stderr, "consilium-view: no URL or FILE given\n\n");
        usage(stderr);
        return -1;
    }
    if (o->screenshot && o->views) {
        fprintf(stderr, "consilium-view: --screenshot and --views do not go together\n");
        return -1;
    }
    if (video && o->views) {
        fprintf(stderr, "consilium-view: --video and --views do not go together\n");
        return -1;
    }
    if (o->script && o->views) {
        fprintf(stderr, "consilium-view: --script and --views do not go together\n");
        return -1;
    }
    return 0;
}

/* ---- shared render-loop steps ---- */

#define MAX_TRIES 5 /* fetches of a tile that keeps failing transiently */

void vw_app_take(vw_app *a, vw_tile_result *r)
{
    const vw_geom *g = &a->src.geom;
    int level = vw_key_level(r->key);
    if (level >= g->nlevels) {
        vw_tile_result_free(r);
        return;
    }
    if (r->status == 0) {
        vw_tile_rect tr;
        vw_geom_tile_rect(g, level, vw_key_col(r->key), vw_key_row(r->key), &tr);
        if (r->w != tr.zw || r->h != tr.zh) {
            free(r->px);
            r->px = NULL;
            r->status = CS_EFORMAT;
            snprintf(r->msg, sizeof(r->msg), "tile is %dx%d, expected %dx%d", r->w, r->h, tr.zw,
                     tr.zh);
        }
    }
    a->fetched++;
    a->fetched_bytes += r->bytes;
    if (r->status < 0) {
        if (a->failed++ == 0)
            cs_log(NULL, CS_LOG_WARN,
                   "tile %d/%lld_%lld failed: %s (drawn from a coarser level; further failures "
                   "are counted in the status line, not logged)",
                   level, (long long)vw_key_col(r->key), (long long)vw_key_row(r->key), r->msg);
    }
    vw_tile *t = vw_cache_put(&a->cache, r, level <= a->base);
    if (!t)
        cs_log(NULL, CS_LOG_WARN, "out of memory caching a tile");
    else if (t->state == VW_TILE_FAILED && t->fails < MAX_TRIES &&
             (r->status == CS_EIO || r->status == CS_ETIMEDOUT || r->status == CS_ENOMEM))
        /* transient (network, server busy): try again after 1, 2, 4, 8 s */
        t->retry_ns = cs_clock_ns() + (1000000000ll << (t->fails - 1));
    vw_fetch_ack(a->fetch, r->key);
    vw_tile_result_free(r);
}

int vw_app_consume(vw_app *a)
{
    int n = 0;
    void *item;
    while (cs_queue_pop(vw_fetch_results(a->fetch), &item, 0) == 0) {
        vw_app_take(a, item);
        n++;
    }
    return n;
}

void vw_app_publish(vw_app *a, const vw_view *v)
{
    const vw_key *keys;
    size_t urgent;
    a->cache.now = cs_clock_ns();
    size_t n = vw_render_wanted(a->render, &a->cache, v, a->o.ring, &keys, &urgent);
    if (n == a->last_n && urgent == a->last_urgent &&
        (n == 0 || memcmp(keys, a->last_want, n * sizeof(*keys)) == 0))
        return;
    if (n > a->last_cap) {
        vw_key *nw = realloc(a->last_want, n * sizeof(*nw));
        if (!nw)
            return;
        a->last_want = nw;
        a->last_cap = n;
    }
    if (n)
        memcpy(a->last_want, keys, n * sizeof(*keys));
    a->last_n = n;
    a->last_urgent = urgent;
    vw_fetch_want(a->fetch, keys, n, urgent);
}

void vw_app_compose(vw_app *a, const vw_view *v, uint32_t *fb, int pitch, vw_frame_stats *st)
{
    a->cache.frame++;
    vw_render_compose(a->render, &a->cache, v, fb, pitch, st);
    vw_cache_trim(&a->cache);
}

int vw_app_prefetched(vw_app *a, size_t *bytes)
{
    const vw_geom *g = &a->src.geom;
    int all = 1;
    size_t b = 0;
    for (int l = 0; l <= a->base; l++)
        for (int64_t row = 0; row < g->rows[l]; row++)
            for (int64_t col = 0; col < g->cols[l]; col++) {
                vw_tile *t = vw_cache_get(&a->cache, vw_key_make(l, col, row));
                if (!t)
                    all = 0;
                else
                    b += t->bytes;
            }
    if (bytes)
        *bytes = b;
    return all;
}

int vw_app_start_fetch(vw_app *a, void (*wake)(void *userdata), void *userdata)
{
    vw_fetch_opts fo = VW_FETCH_OPTS_INIT;
    fo.tile_url = a->src.tile_url;
    fo.token = a->o.token;
    fo.insecure = a->o.insecure;
    fo.cacert = a->o.cacert;
    fo.tiles = a->src.tiles;
    fo.parallel = a->o.parallel;
    fo.decoders = 2;
    fo.wake = wake;
    fo.userdata = userdata;
    return vw_fetch_new(&a->fetch, &fo);
}

/* ---- annotations ---- */

/* ISO 8601 UTC with milliseconds, as the server writes them. */
static void now_iso(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char b[32];
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", b, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* The editor's callback for local files: ids, revs and times as the server
 * would set them; the sidecar is written once the event is handled. */
static void local_changed(void *userdata, vw_annot *an, int op)
{
    vw_app *a = userdata;
    if (op == VW_EDIT_CREATED) {
        vw_annot_make_id(an->id);
        an->rev = 1;
        now_iso(an->created, sizeof(an->created));
        snprintf(an->updated, sizeof(an->updated), "%s", an->created);
    } else if (op == VW_EDIT_UPDATED) {
        an->rev++;
        now_iso(an->updated, sizeof(an->updated));
    }
    a->save_pending = 1;
}

static int annotations_open(vw_app *a)
{
    vw_annots_init(&a->annots, a->src.mpp_x, a->src.mpp_y);
    const char *user = getenv("USER");
    snprintf(a->author, sizeof(a->author), "%s", user && *user ? user : "local");
    vw_edit_init(&a->edit, &a->annots, a->author);
    if (vw_source_is_url(a->o.target))
        return 0; /* the sync thread loads them (vw_app_start_sync) */
    const char *p = a->o.annotations;
    size_t n = strlen(a->o.target) + 32;
    if (!(a->sidecar = malloc(p ? strlen(p) + 1 : n)))
        return cs_error_set(CS_ENOMEM, "out of memory");
    if (p)
        memcpy(a->sidecar, p, strlen(p) + 1);
    else
        snprintf(a->sidecar, n, "%s.annotations.geojson", a->o.target);
    a->edit.changed = local_changed;
    a->edit.userdata = a;
    int r = vw_annots_load_geojson(&a->annots, a->sidecar);
    if (r == 0 && a->annots.n)
        cs_log(NULL, CS_LOG_INFO, "%zu annotations from %s", a->annots.n, a->sidecar);
    return r;
}

int vw_app_start_sync(vw_app *a, void (*wake)(void *userdata), void *userdata)
{
    if (!vw_source_is_url(a->o.target))
        return 0;
    vw_sync_opts so = {a->src.base, a->o.token, a->src.id, a->o.insecure,
                       a->o.cacert, wake,       userdata};
    return vw_sync_new(&a->sync, &so, &a->annots, &a->edit);
}

int vw_app_annotations_poll(vw_app *a)
{
    int changed = a->sync ? vw_sync_poll(a->sync) : 0;
    if (a->save_pending && a->sidecar) {
        a->save_pending = 0;
        if (vw_annots_save_geojson(&a->annots, a->sidecar) < 0) {
            cs_log(NULL, CS_LOG_ERROR, "%s", cs_error_last());
            vw_edit_status(&a->edit, "cannot save the annotations: %s", cs_error_last());
            changed = 1;
        }
    }
    return changed;
}

int vw_app_event(vw_app *a, vw_input *in, const SDL_Event *ev, vw_view *v, int toolbar)
{
    if (toolbar && ev->type == SDL_MOUSEBUTTONDOWN && ev->button.button == SDL_BUTTON_LEFT) {
        int t = vw_adraw_toolbar_hit(v->w, ev->button.x, ev->button.y);
        if (t >= 0) {
            vw_edit_set_tool(&a->edit, (vw_tool)t);
            return 1;
        }
    }
    int r = vw_edit_handle(&a->edit, ev, v);
    int dirty = (r & VW_EDIT_DIRTY) != 0;
    if (!(r & VW_EDIT_CONSUMED))
        dirty |= vw_input_handle(in, ev, v, &a->src.geom);
    dirty |= vw_app_annotations_poll(a);
    return dirty;
}

int main(int argc, char **argv)
{
    if (vw_reading_wanted(argc, argv))
        return vw_reading_main(argc, argv); /* DICOMweb reading mode: reading_run.c */
    vw_app app;
    memset(&app, 0, sizeof(app));
    app.t_start = cs_clock_ns();
    vw_options *o = &app.o;
    o->w = 1280;
    o->h = 800;
    o->parallel = 0;
    o->ring = 1;
    o->prefetch_px = 1024;
    o->cache_mb = 256;
    o->timeout_s = 120;
    o->font = VW_DEFAULT_FONT;
    vw_video_opts vo = VW_VIDEO_OPTS_INIT;
    if ((argc = vw_video_args(&vo, argc, argv)) < 0 || parse_args(o, argc, argv, !!vo.url) < 0)
        return 2;
    if (!o->target) { /* the video alone */
        if (o->script)
            return vw_video_headless_script(&app, &vo);
        return o->screenshot ? vw_video_headless_screenshot(&app, &vo) : vw_video_ui_run(&app, &vo);
    }
    if (!o->token)
        o->token = getenv("CONSILIUM_TOKEN");
    int is_url = vw_source_is_url(o->target);
    if (!o->parallel)
        o->parallel = is_url ? 6 : 2;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "consilium-view: cannot initialise libcurl\n");
        return 1;
    }
    int rc = 1;
    if (vw_source_open(&app.src, o->target, o->token, o->insecure, o->cacert) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        curl_global_cleanup();
        return 1;
    }
    app.base = vw_geom_base_level(&app.src.geom, o->prefetch_px);
    int r;
    if ((r = vw_cache_init(&app.cache, (size_t)o->cache_mb << 20)) < 0 ||
        (r = vw_render_new(&app.render, &app.src.geom, app.base)) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    if (!o->views && annotations_open(&app) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    if (!o->screenshot && !o->views && !o->script) {
        /* they create the fetcher themselves, to wire the wake-up */
        rc = vo.url ? vw_video_ui_run(&app, &vo) : vw_ui_run(&app);
        goto out;
    }
    if ((r = vw_app_start_fetch(&app, NULL, NULL)) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    if (o->script) {
        if ((r = vw_app_start_sync(&app, NULL, NULL)) < 0) {
            fprintf(stderr, "consilium-view: %s\n", cs_error_last());
            goto out;
        }
        rc = vo.url ? vw_video_headless_script(&app, &vo) : vw_headless_script(&app);
    } else if (vo.url) {
        rc = vw_video_headless_screenshot(&app, &vo);
    } else {
        rc = o->screenshot ? vw_headless_screenshot(&app) : vw_headless_views(&app);
    }
out:
    vw_sync_free(app.sync);
    vw_edit_free(&app.edit);
    vw_annots_free(&app.annots);
    free(app.sidecar);
    vw_fetch_free(app.fetch);
    vw_render_free(app.render);
    vw_cache_free(&app.cache);
    free(app.last_want);
    vw_source_close(&app.src);
    curl_global_cleanup();
    return rc;
}

void vw_app_initial_view(const vw_app *a, vw_view *v)
{
    if (a->o.have_view) {
        v->x = a->o.vx;
        v->y = a->o.vy;
        v->zoom = a->o.vzoom;
    } else {
        vw_view_fit(v, &a->src.geom);
    }
}
