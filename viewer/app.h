/* viewer/app: options, the state shared by the window and headless modes,
 * and the steps every render loop takes: take finished tiles into the cache
 * (vw_app_consume), tell the fetcher what the view needs (vw_app_publish),
 * compose a frame (vw_app_compose). All on the render (main) thread. */
#ifndef VW_APP_H
#define VW_APP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <SDL.h>

#include "annot.h"
#include "cache.h"
#include "edit.h"
#include "fetch.h"
#include "input.h"
#include "render.h"
#include "source.h"
#include "sync.h"

typedef struct {
    const char *target;
    const char *token;
    const char *screenshot;  /**< --screenshot OUT.png */
    const char *views;       /**< --views FILE */
    const char *script;      /**< --script FILE */
    const char *annotations; /**< --annotations FILE (local files) */
    const char *font;
    const char *cacert;
    int w, h;
    int have_view;
    double vx, vy, vzoom;
    int overlays, timing, insecure;
    int parallel, cache_mb, prefetch_px, ring;
    double timeout_s;
} vw_options;

typedef struct {
    vw_options o;
    int64_t t_start; /**< process start, ns */
    vw_source src;
    vw_fetch *fetch;
    vw_cache cache;
    vw_render *render;
    int base; /**< prefetched level */
    /* counters */
    long fetched; /**< results taken since start */
    size_t fetched_bytes;
    int failed;
    /* the want list last handed to the fetcher */
    vw_key *last_want;
    size_t last_n, last_cap, last_urgent;
    /* annotations: a sidecar GeoJSON (FILE) or live sync (URL) */
    vw_annots annots;
    vw_edit edit;
    vw_sync *sync;
    char *sidecar;
    char author[64];
    int save_pending;
    /* window mode: wake the event loop when a tile is ready */
    uint32_t wake_event;
    atomic_int wake_pending;
} vw_app;

/** "--name=value" is "--name value": when argv[i] (@p *a) has an '=', the
 *  name goes to @p name and *a points at it, *v at the value; the option then
 *  takes no further argument. @return the number of arguments the option's
 *  value takes after it: 0 when split, else 1. */
int vw_arg_split(const char **a, const char **v, char *name, size_t cap);
/** An integer option value in [@p lo, @p hi] (strtol, whole string).
 *  @return 0 or -1. */
int vw_parse_int(const char *s, int lo, int hi, int *out);
/** "WxH", each 1..16384. @return 0 or -1. */
int vw_parse_size(const char *s, int *w, int *h);
/** "X,Y,ZOOM" (spaces allowed, zoom > 0). @return 0 or -1. */
int vw_parse_view(const char *s, double *x, double *y, double *zoom);
/* The first view for a screen of v->w x v->h: --view if given, else the
 * whole slide fitted. */
void vw_app_initial_view(const vw_app *a, vw_view *v);
/** Start the fetcher; @p wake (may be NULL) runs on a worker after each result. */
int vw_app_start_fetch(vw_app *a, void (*wake)(void *userdata), void *userdata);
/** Take one result (ownership passes to the app). */
void vw_app_take(vw_app *a, vw_tile_result *r);
/** Take every queued result without blocking. @return how many. */
int vw_app_consume(vw_app *a);
/** Hand the fetcher the tiles @p v needs (only when the list changed). */
void vw_app_publish(vw_app *a, const vw_view *v);
/** Compose @p v into @p fb and trim the cache. */
void vw_app_compose(vw_app *a, const vw_view *v, uint32_t *fb, int pitch, vw_frame_stats *st);
/** Whether every tile of the prefetched levels is in (loaded or failed). */
int vw_app_prefetched(vw_app *a, size_t *bytes);
/** URL mode: start the annotation sync (@p wake as for the fetcher). */
int vw_app_start_sync(vw_app *a, void (*wake)(void *userdata), void *userdata);
/** One input event: the tool bar (@p toolbar), then the editor, then
 *  input.c (pan, zoom, keys). @return 1 when the frame must be drawn again. */
int vw_app_event(vw_app *a, vw_input *in, const SDL_Event *ev, vw_view *v, int toolbar);
/** Apply what the sync thread brought, save a changed sidecar.
 *  @return 1 when the frame must be drawn again. */
int vw_app_annotations_poll(vw_app *a);
/** Headless: show @p v until sharp (or --timeout). @return 0 or 3 (timeout). */
int vw_headless_settle(vw_app *a, const vw_view *v, uint32_t *fb, int pitch, vw_frame_stats *st);

/* modes; each returns the process exit code */
int vw_headless_screenshot(vw_app *a);
int vw_headless_views(vw_app *a);
int vw_headless_script(vw_app *a);
int vw_ui_run(vw_app *a);

#endif
