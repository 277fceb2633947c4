/* viewer/ui: the interactive window.
 *
 * The event loop sleeps in SDL_WaitEventTimeout; workers wake it with an
 * SDL user event when a tile is ready (at most one outstanding, guarded by
 * an atomic flag). A frame is composed into a streaming texture only when
 * something changed: the view, the window size, a tile arriving, or the
 * status line. */
#include <stdio.h>
#include <string.h>

#include <SDL.h>

#include "cs/err.h"
#include "cs/thread.h"

#include "adraw.h"
#include "app.h"
#include "input.h"
#include "overlay.h"

static void wake(void *userdata)
{
    vw_app *a = userdata;
    if (atomic_exchange(&a->wake_pending, 1) == 0) {
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = a->wake_event;
        SDL_PushEvent(&ev);
    }
}

static SDL_Texture *make_texture(SDL_Renderer *ren, int w, int h)
{
    SDL_Texture *t =
        SDL_CreateTexture(ren, SDL_PIXELFORMAT_XRGB8888, SDL_TEXTUREACCESS_STREAMING, w, h);
    if (!t)
        fprintf(stderr, "consilium-view: cannot create a %dx%d texture: %s\n", w, h,
                SDL_GetError());
    return t;
}

int vw_ui_run(vw_app *a)
{
    if (SDL_Init(SDL_INIT_VIDEO) < 0) {
        fprintf(stderr,
                "consilium-view: cannot open a window: %s\n"
                "(for use without a display, see --screenshot and --views)\n",
                SDL_GetError());
        return 1;
    }
    const char *drv = SDL_GetCurrentVideoDriver();
    if (drv && (strcmp(drv, "offscreen") == 0 || strcmp(drv, "dummy") == 0))
        fprintf(stderr,
                "consilium-view: warning: no display (SDL video driver '%s'); the window is "
                "invisible. For use without a display, see --screenshot and --views\n",
                drv);
    int rc = 1;
    SDL_Window *win = NULL;
    SDL_Renderer *ren = NULL;
    SDL_Texture *tex = NULL;
    vw_overlay *ov = NULL;
    a->wake_event = SDL_RegisterEvents(1);
    if (a->wake_event == (uint32_t)-1 || vw_app_start_fetch(a, wake, a) < 0 ||
        vw_app_start_sync(a, wake, a) < 0) {
        fprintf(stderr, "consilium-view: %s\n",
                a->wake_event == (uint32_t)-1 ? SDL_GetError() : cs_error_last());
        goto out;
    }
    win = SDL_CreateWindow(a->src.name, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, a->o.w,
                           a->o.h, SDL_WINDOW_RESIZABLE);
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
    vw_view v = {0, 0, 1, a->o.w, a->o.h};
    SDL_GetWindowSize(win, &v.w, &v.h);
    if (!(tex = make_texture(ren, v.w, v.h)))
        goto out;
    if (vw_overlay_new(&ov, ren, a->o.font) < 0)
        goto out;
    vw_app_initial_view(a, &v);
    vw_input in = {0};
    in.overlays = 1;
    int dirty = 1, last_inflight = -1, typing = 0, status_shown = 0;
    /* text input only while the editor takes text: the key that starts it
     * (N, or a click of the text tool) must not arrive as text too */
    SDL_StopTextInput();
    while (!in.quit) {
        SDL_Event ev;
        int got = dirty ? SDL_PollEvent(&ev) : SDL_WaitEventTimeout(&ev, 250);
        int got_any = got || dirty;
        while (got) {
            if (ev.type == a->wake_event) {
                /* handled below by draining the result queue */
            } else if (ev.type == SDL_WINDOWEVENT &&
                       ev.window.event == SDL_WINDOWEVENT_SIZE_CHANGED) {
                int w = ev.window.data1, h = ev.window.data2;
                if (w > 0 && h > 0 && (w != v.w || h != v.h)) {
                    /* keep the centre where it was */
                    v.x += (v.w - w) / 2.0 / v.zoom;
                    v.y += (v.h - h) / 2.0 / v.zoom;
                    v.w = w;
                    v.h = h;
                    SDL_DestroyTexture(tex);
                    if (!(tex = make_texture(ren, v.w, v.h)))
                        goto out;
                }
                dirty = 1;
            } else {
                dirty |= vw_app_event(a, &in, &ev, &v, 1);
                if (!!a->edit.typing != typing) {
                    typing = !!a->edit.typing;
                    if (typing)
                        SDL_StartTextInput();
                    else
                        SDL_StopTextInput();
                }
            }
            got = SDL_PollEvent(&ev);
        }
        if (vw_app_annotations_poll(a))
            dirty = 1;
        /* the status message goes after a few seconds */
        int show = a->edit.status[0] && cs_clock_ns() < a->edit.status_until;
        if (show != status_shown)
            dirty = 1;
        status_shown = show;
        if (!got_any)
            vw_app_publish(a, &v); /* idle: failed tiles may be due for a retry */
        atomic_store(&a->wake_pending, 0);
        if (vw_app_consume(a) > 0)
            dirty = 1;
        int inflight = vw_fetch_in_flight(a->fetch);
        if (inflight != last_inflight && in.overlays)
            dirty = 1;
        last_inflight = inflight;
        if (!dirty)
            continue;
        dirty = 0;
        vw_app_publish(a, &v);
        void *pixels;
        int pitch;
        vw_frame_stats st;
        if (SDL_LockTexture(tex, NULL, &pixels, &pitch) < 0) {
            fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
            goto out;
        }
        vw_app_compose(a, &v, pixels, pitch / 4, &st);
        SDL_UnlockTexture(tex);
        SDL_RenderClear(ren);
        SDL_RenderCopy(ren, tex, NULL, NULL);
        vw_adraw(ren, ov, &a->edit, &v, 1);
        if (in.overlays) {
            vw_overlay_info info = {a->src.name,         a->src.mpp_x, v.zoom,   st.level,
                                    a->src.geom.nlevels, inflight,     a->failed};
            vw_overlay_draw(ov, v.w, v.h, &info);
        }
        SDL_RenderPresent(ren);
    }
    rc = 0;
out:
    /* stop the workers before SDL goes: they may push wake events */
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
