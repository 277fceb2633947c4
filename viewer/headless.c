/* viewer/headless: --screenshot and --views, with no window and no display.
 *
 * Frames are composed into an SDL_Surface; overlays, when asked for, are
 * drawn on it by SDL's software renderer (SDL_CreateSoftwareRenderer), which
 * needs no video driver. The loop is the window's loop without events:
 * take finished tiles, say what the view needs, compose, and wait on the
 * fetcher's result queue until every visible tile of the target level has
 * been drawn. With --video the video pane is drawn over its part of the
 * surface (video.h) once its frames are in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/thread.h"

#include "adraw.h"
#include "app.h"
#include "overlay.h"
#include "png.h"
#include "video.h"

typedef struct {
    double first_ms, sharp_ms; /* -1: not reached */
    vw_frame_stats st;
    long fetched;
    int timed_out;
} view_run;

static double ms_since(int64_t t0)
{
    return (double)(cs_clock_ns() - t0) / 1e6;
}

/* Show @p v until it is sharp (or the timeout passes). */
static void run_view(vw_app *a, const vw_view *v, uint32_t *fb, int pitch, view_run *out)
{
    int64_t t0 = cs_clock_ns();
    int64_t deadline = t0 + (int64_t)(a->o.timeout_s * 1e9);
    long f0 = a->fetched;
    out->first_ms = out->sharp_ms = -1;
    out->timed_out = 0;
    for (;;) {
        vw_app_consume(a);
        vw_app_publish(a, v);
        vw_app_compose(a, v, fb, pitch, &out->st);
        if (out->first_ms < 0 && out->st.covered)
            out->first_ms = ms_since(t0);
        if (out->st.n_ready + out->st.n_failed >= out->st.n_visible) {
            out->sharp_ms = ms_since(t0);
            if (out->first_ms < 0)
                out->first_ms = out->sharp_ms;
            break;
        }
        int64_t left = deadline - cs_clock_ns();
        if (left <= 0) {
            out->timed_out = 1;
            break;
        }
        int wait = left > 1000000000ll ? 1000 : (int)(left / 1000000) + 1;
        void *item;
        if (cs_queue_pop(vw_fetch_results(a->fetch), &item, wait) == 0)
            vw_app_take(a, item);
    }
    out->fetched = a->fetched - f0;
}

int vw_headless_settle(vw_app *a, const vw_view *v, uint32_t *fb, int pitch, vw_frame_stats *st)
{
    view_run run;
    run_view(a, v, fb, pitch, &run);
    *st = run.st;
    return run.timed_out ? 3 : 0;
}

static SDL_Surface *make_surface(int w, int h)
{
    SDL_Surface *s = SDL_CreateRGBSurfaceWithFormat(0, w, h, 32, SDL_PIXELFORMAT_XRGB8888);
    if (!s)
        fprintf(stderr, "consilium-view: cannot create a %dx%d surface: %s\n", w, h,
                SDL_GetError());
    return s;
}

int vw_headless_screenshot(vw_app *a)
{
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "1");
    SDL_Surface *surf = make_surface(a->o.w, a->o.h);
    if (!surf)
        return 1;
    SDL_Renderer *ren = SDL_CreateSoftwareRenderer(surf);
    if (!ren) {
        fprintf(stderr, "consilium-view: no software renderer: %s\n", SDL_GetError());
        SDL_FreeSurface(surf);
        return 1;
    }
    vw_view v = {0, 0, 1, a->o.w, a->o.h};
    vw_app_initial_view(a, &v);
    uint32_t *fb = surf->pixels;
    int pitch = surf->pitch / 4;
    view_run run;
    run_view(a, &v, fb, pitch, &run);
    int rc = 0;
    if (run.timed_out) {
        fprintf(stderr,
                "consilium-view: timed out after %g s with %d of %d tiles of level %d loaded; "
                "the screenshot shows coarser levels where they are missing\n",
                a->o.timeout_s, run.st.n_ready, run.st.n_visible, run.st.level);
        rc = 3;
    }
    {
        if (run.st.n_failed)
            fprintf(stderr,
                    "consilium-view: warning: %d of %d tiles failed and are drawn from a coarser "
                    "level\n",
                    run.st.n_failed, run.st.n_visible);
        if (a->o.overlays || a->annots.n) {
            vw_overlay *ov = NULL;
            if (vw_overlay_new(&ov, ren, a->o.font) == 0) {
                vw_adraw(ren, ov, &a->edit, &v, a->o.overlays);
                if (a->o.overlays) {
                    vw_overlay_info info = {
                        a->src.name,  a->src.mpp_x,        v.zoom,
                        run.st.level, a->src.geom.nlevels, vw_fetch_in_flight(a->fetch),
                        a->failed};
                    vw_overlay_draw(ov, v.w, v.h, &info);
                }
                SDL_RenderPresent(ren);
                vw_overlay_free(ov);
            }
        }
        if (vw_png_write(a->o.screenshot, fb, v.w, v.h, pitch) < 0) {
            fprintf(stderr, "consilium-view: %s\n", cs_error_last());
            rc = rc ? rc : 1;
        }
    }
    SDL_DestroyRenderer(ren);
    SDL_FreeSurface(surf);
    return rc;
}

/* Read "X,Y,ZOOM" lines (blank lines and # comments skipped). */
static int read_views(const char *path, double **out, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "consilium-view: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[512];
    int cap = 0, lineno = 0;
    double *vs = NULL;
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p)
            continue;
        double x, y, z;
        if (vw_parse_view(p, &x, &y, &z) < 0) {
            fprintf(stderr, "consilium-view: %s:%d: expected X,Y,ZOOM\n", path, lineno);
            free(vs);
            fclose(f);
            return -1;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            double *nv = realloc(vs, (size_t)cap * 3 * sizeof(*nv));
            if (!nv) {
                free(vs);
                fclose(f);
                return -1;
            }
            vs = nv;
        }
        vs[3 * *n] = x;
        vs[3 * *n + 1] = y;
        vs[3 * *n + 2] = z;
        (*n)++;
    }
    fclose(f);
    if (!*n) {
        fprintf(stderr, "consilium-view: %s has no views\n", path);
        free(vs);
        return -1;
    }
    *out = vs;
    return 0;
}

int vw_headless_views(vw_app *a)
{
    double *views = NULL;
    int nviews = 0;
    if (read_views(a->o.views, &views, &nviews) < 0)
        return 2;
    SDL_Surface *surf = make_surface(a->o.w, a->o.h);
    if (!surf) {
        free(views);
        return 1;
    }
    uint32_t *fb = surf->pixels;
    int pitch = surf->pitch / 4;
    int rc = 0;

    /* startup: the coarse levels, so that every jump paints at once */
    vw_view none = {0, 0, 1, 0, 0};
    int64_t deadline = cs_clock_ns() + (int64_t)(a->o.timeout_s * 1e9);
    size_t prefetch_bytes = 0;
    for (;;) {
        vw_app_consume(a);
        if (vw_app_prefetched(a, &prefetch_bytes))
            break;
        vw_app_publish(a, &none);
        if (cs_clock_ns() > deadline) {
            fprintf(stderr, "consilium-view: timed out prefetching the coarse levels\n");
            free(views);
            SDL_FreeSurface(surf);
            return 3;
        }
        void *item;
        if (cs_queue_pop(vw_fetch_results(a->fetch), &item, 1000) == 0)
            vw_app_take(a, item);
    }
    printf("{\"startup_ms\":%.1f,\"prefetch_bytes\":%zu}\n", ms_since(a->t_start), prefetch_bytes);
    fflush(stdout);

    for (int i = 0; i < nviews; i++) {
        vw_view v = {views[3 * i], views[3 * i + 1], views[3 * i + 2], a->o.w, a->o.h};
        view_run run;
        run_view(a, &v, fb, pitch, &run);
        char first[32], sharp[32];
        if (run.first_ms >= 0)
            snprintf(first, sizeof(first), "%.1f", run.first_ms);
        else
            snprintf(first, sizeof(first), "null");
        if (run.sharp_ms >= 0)
            snprintf(sharp, sizeof(sharp), "%.1f", run.sharp_ms);
        else
            snprintf(sharp, sizeof(sharp), "null");
        printf("{\"view\":%d,\"x\":%.10g,\"y\":%.10g,\"zoom\":%.10g,\"first_paint_ms\":%s,"
               "\"sharp_ms\":%s,\"tiles\":%d,\"bytes\":%zu,\"fetched\":%ld}\n",
               i, v.x, v.y, v.zoom, first, sharp, run.st.n_visible, run.st.bytes, run.fetched);
        fflush(stdout);
        if (run.timed_out) {
            fprintf(stderr, "consilium-view: view %d timed out after %g s (%d of %d tiles)\n", i,
                    a->o.timeout_s, run.st.n_ready, run.st.n_visible);
            rc = 3;
        }
    }
    free(views);
    SDL_FreeSurface(surf);
    return rc;
}

/* ---- --video with --screenshot ---- */

/* Draw the video pane (and nothing else) and count the frame shown. */
static void video_frame(vw_video *vid, SDL_Renderer *ren, vw_overlay *ov, const SDL_Rect *vr)
{
    vw_video_draw(vid, ren, ov, vr);
    SDL_RenderPresent(ren);
    vw_video_presented(vid);
}

int vw_video_headless_screenshot(vw_app *a, const vw_video_opts *vo)
{
    int with_slide = a->o.target != NULL;
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "1");
    SDL_Surface *surf = make_surface(a->o.w, a->o.h);
    if (!surf)
        return 1;
    SDL_Renderer *ren = SDL_CreateSoftwareRenderer(surf);
    vw_overlay *ov = NULL;
    vw_video *vid = NULL;
    int rc = 1;
    if (!ren || vw_overlay_new(&ov, ren, a->o.font) < 0) {
        fprintf(stderr, "consilium-view: no software renderer: %s\n", SDL_GetError());
        goto out;
    }
    if (vw_video_open(&vid, vo, NULL, NULL) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    SDL_Rect sr, vr;
    vw_video_layout(a->o.w, a->o.h, with_slide, &sr, &vr);
    /* the video first: its first frame time is not the slide's */
    int64_t deadline = cs_clock_ns() + (int64_t)vo->wait_ms * 1000000;
    vw_video_stats st;
    for (;;) {
        if (vw_video_update(vid, ren))
            video_frame(vid, ren, ov, &vr);
        vw_video_get_stats(vid, &st);
        if (st.frames >= vo->frames || st.failed)
            break;
        int64_t left = deadline - cs_clock_ns();
        if (left <= 0)
            break;
        vw_video_wait(vid, left > 50000000 ? 50 : (int)(left / 1000000) + 1);
    }
    rc = 0;
    if (st.frames < vo->frames) {
        if (st.failed)
            fprintf(stderr, "consilium-view: cannot play the video: %s\n", st.error);
        else if (st.frames == 0 && st.error[0])
            fprintf(stderr, "consilium-view: no video frame in %d ms: %s\n", vo->wait_ms, st.error);
        else if (st.frames == 0)
            fprintf(stderr, "consilium-view: no video frame from %s in %d ms\n", vw_video_url(vid),
                    vo->wait_ms);
        else
            fprintf(stderr, "consilium-view: %lld of %d video frames in %d ms\n",
                    (long long)st.frames, vo->frames, vo->wait_ms);
        rc = st.failed ? 1 : 3;
    }
    if (with_slide) {
        vw_view v = {0, 0, 1, sr.w, sr.h};
        vw_app_initial_view(a, &v);
        vw_frame_stats fs;
        if (vw_headless_settle(a, &v, surf->pixels, surf->pitch / 4, &fs) != 0) {
            fprintf(stderr, "consilium-view: the slide timed out after %g s\n", a->o.timeout_s);
            rc = rc ? rc : 3;
        }
        vw_adraw(ren, ov, &a->edit, &v, a->o.overlays);
        if (a->o.overlays) {
            vw_overlay_info info = {a->src.name, a->src.mpp_x,        v.zoom,
                                    fs.level,    a->src.geom.nlevels, vw_fetch_in_flight(a->fetch),
                                    a->failed};
            vw_overlay_draw(ov, v.w, v.h, &info);
        }
    }
    vw_video_update(vid, ren); /* the newest frame, over the pane drawn before */
    video_frame(vid, ren, ov, &vr);
    if (vw_png_write(a->o.screenshot, surf->pixels, a->o.w, a->o.h, surf->pitch / 4) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        rc = rc ? rc : 1;
    }
    vw_video_print_json(vid, stdout);
out:
    vw_video_close(vid); /* before the renderer: the texture is its */
    vw_overlay_free(ov);
    if (ren)
        SDL_DestroyRenderer(ren);
    SDL_FreeSurface(surf);
    return rc;
}
