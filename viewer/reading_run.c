/* viewer/reading_run: the reading mode's options, its window loop, and the
 * headless runs (--screenshot, --script) that tests drive.
 *
 * --script commands (one a line, # comments; X Y are window pixels; slices
 * and series are 1-based as the overlays show them):
 *   slice N | next | prev       go to a slice
 *   series N | series UID       go to a series of the study
 *   key NAME                    an SDL key (Up, Down, Page Down, 1..4, 0, I, O, Space, ...)
 *   wheel N                     mouse wheel (positive: towards the first slice)
 *   wl C W                      window centre and width
 *   preset NAME                 brain, lung, bone, abdomen, file
 *   invert                      toggle inversion
 *   rdrag X0 Y0 X1 Y1           right-drag (window/level); prints the window
 *   ruler X0 Y0 X1 Y1           left-drag (ruler); prints its length
 *   click X Y                   left click (the series strip as last drawn)
 *   zoom Z [X Y]                Z times the fit, about (X, Y) (default: the centre)
 *   mdrag X0 Y0 X1 Y1           middle-drag (pan)
 *   overlays on|off
 *   cine on|off                 (at FrameTime, default 10 fps)
 *   wait MS                     keep running (cine, loading) for MS ms
 *   wait-slice                  until the current slice is in
 *   wait-series                 until every slice of the series is in
 *   state                       prints the state line
 *   requests                    prints "requests N" (HTTP requests so far)
 *   screenshot OUT.png          the view once the current slice is in
 * Output lines go to stdout. Exit status: 0, 1 (server or data error),
 * 2 (bad line), 3 (timeout). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/queue.h"
#include "cs/thread.h"

#include "app.h"
#include "png.h"
#include "reading.h"

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: consilium-view http(s)://HOST:PORT/dicomweb [options]   (reading mode)\n"
               "\n"
               "Reads DICOM studies over DICOMweb (QIDO-RS, WADO-RS). The mode is chosen when the\n"
               "URL's path ends in /dicomweb or /dicom-web, or with --reading.\n"
               "\n"
               "options:\n"
               "  --token T          bearer token (default: $CONSILIUM_TOKEN)\n"
               "  --study UID        open this study (default: the study list)\n"
               "  --series UID       with --study: start on this series (default: the first)\n"
               "  --size WxH         window or image size (default 1024x1024)\n"
               "  --screenshot OUT.png  headless: the reading view once the first image is in\n"
               "  --script FILE      headless: replay commands (see viewer/README.md)\n"
               "  --overlays         headless: draw the corner overlays (the window: O toggles)\n"
               "  --timing           print first-image and series-complete times (JSON lines)\n"
               "  --parallel N       concurrent frame transfers (default 4)\n"
               "  --no-preview       no server-rendered JPEG as a first paint\n"
               "  --timeout S        headless: give up after S seconds (default 120; exit 3)\n"
               "  --font PATH, --cacert FILE, --insecure\n"
               "\n"
               "keys: Up/Down or wheel: slice; PageUp/PageDown/Tab: series; 1-4: brain, lung,\n"
               "  bone, abdomen; 0: the file's window; I invert; O overlays; Space cine;\n"
               "  right-drag: window (horizontal width, vertical level); left-drag: ruler;\n"
               "  +/- or Ctrl+wheel zoom, middle-drag pans, F fits;\n"
               "  Esc: back to the study list; Q quits.\n");
}

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && strncmp(s + n - k, suf, k) == 0;
}

static int is_dicomweb_url(const char *t)
{
    if (strncmp(t, "http://", 7) != 0 && strncmp(t, "https://", 8) != 0)
        return 0;
    size_t n = strlen(t);
    while (n && t[n - 1] == '/')
        n--;
    return ends_with(t, n, "/dicomweb") || ends_with(t, n, "/dicom-web");
}

int vw_reading_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reading") == 0)
            return 1;
        if (argv[i][0] != '-' && is_dicomweb_url(argv[i]))
            return 1;
    }
    return 0;
}

static int parse_args(vw_ropts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char name[40];
        int takes = vw_arg_split(&a, &v, name, sizeof(name));
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--reading") == 0) {
            takes = 0;
        } else if (strcmp(a, "--overlays") == 0) {
            o->overlays = 1, takes = 0;
        } else if (strcmp(a, "--timing") == 0) {
            o->timing = 1, takes = 0;
        } else if (strcmp(a, "--no-preview") == 0) {
            o->no_preview = 1, takes = 0;
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
            else if (strcmp(a, "--study") == 0)
                o->study = v;
            else if (strcmp(a, "--series") == 0)
                o->series = v;
            else if (strcmp(a, "--size") == 0)
                bad = vw_parse_size(v, &o->w, &o->h);
            else if (strcmp(a, "--screenshot") == 0)
                o->screenshot = v;
            else if (strcmp(a, "--script") == 0)
                o->script = v;
            else if (strcmp(a, "--parallel") == 0)
                bad = vw_parse_int(v, 1, 32, &o->parallel);
            else if (strcmp(a, "--timeout") == 0) {
                char *end;
                errno = 0;
                o->timeout_s = strtod(v, &end);
                bad = errno || end == v || *end || !(o->timeout_s > 0);
            } else if (strcmp(a, "--font") == 0)
                o->font = v;
            else if (strcmp(a, "--cacert") == 0)
                o->cacert = v;
            else {
                fprintf(stderr, "consilium-view: unknown option %s in reading mode (see --help)\n",
                        a);
                return -1;
            }
            if (bad) {
                fprintf(stderr, "consilium-view: bad value '%s' for %s (see --help)\n", v, a);
                return -1;
            }
        } else if (!o->url) {
            o->url = a, takes = 0;
        } else {
            fprintf(stderr, "consilium-view: one URL only ('%s'?)\n", a);
            return -1;
        }
        i += takes;
    }
    if (!o->url) {
        fprintf(stderr, "consilium-view: no DICOMweb URL given\n\n");
        usage(stderr);
        return -1;
    }
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0) {
        fprintf(stderr, "consilium-view: reading mode needs an http(s) DICOMweb URL, not '%s'\n",
                o->url);
        return -1;
    }
    if (o->series && !o->study) {
        fprintf(stderr, "consilium-view: --series needs --study\n");
        return -1;
    }
    return 0;
}

/* ---- shared ---- */

typedef struct {
    vw_reading r;
    cs_queue *wakeq; /* headless: the loaders' wake-ups */
    SDL_Surface *surf;
    SDL_Renderer *ren;
    vw_overlay *ov;
    int64_t deadline;
    double shown_key[9]; /* what the last headless frame showed */
    /* window */
    uint32_t wake_event;
    atomic_int wake_pending;
} run;

static void wake_headless(void *userdata)
{
    run *u = userdata;
    cs_queue_try_push(u->wakeq, (void *)1);
}

static void wake_window(void *userdata)
{
    run *u = userdata;
    if (atomic_exchange(&u->wake_pending, 1) == 0) {
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = u->wake_event;
        SDL_PushEvent(&ev);
    }
}

/* The current slice: 1 in, 0 not yet, -1 failed (message printed). */
static int slice_settled(run *u, int print)
{
    vw_reading *r = &u->r;
    if (r->opening)
        return 0; /* a study is being opened from the list */
    if (r->screen == VW_RSCREEN_STUDIES) {
        if (r->status[0] && print) /* the study did not open */
            fprintf(stderr, "consilium-view: %s\n", r->status);
        return r->status[0] ? -1 : 1;
    }
    vw_rseries *s = vw_reading_series(r);
    if (!s)
        return -1;
    int rd = atomic_load_explicit(&s->ready, memory_order_acquire);
    if (rd < 0) {
        if (print)
            fprintf(stderr, "consilium-view: %s\n", s->err);
        return -1;
    }
    if (rd == 0)
        return 0;
    vw_rslice *sl = &s->slices[r->slice];
    int st = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (st == VW_SLICE_FAILED) {
        if (print)
            fprintf(stderr, "consilium-view: image %d of the series failed: %s\n", r->slice + 1,
                    sl->err ? sl->err : "?");
        return -1;
    }
    return st == VW_SLICE_READY;
}

static int series_settled(run *u, int print)
{
    int c = slice_settled(u, print);
    if (c <= 0)
        return c;
    vw_rseries *s = vw_reading_series(&u->r);
    if (!s)
        return 1;
    return atomic_load(&s->loaded) == (int)s->nslices && atomic_load(&s->t_done_ns) != 0;
}

static void sleep_wake(run *u, int64_t ms)
{
    void *item;
    if (ms > 50)
        ms = 50;
    if (ms < 1)
        ms = 1;
    cs_queue_pop(u->wakeq, &item, (int)ms);
}

static int frame(run *u, uint32_t *fb, int pitch);

/* As the window does: draw again when what is on screen changed (the
 * current slice arrived, another slice, series or window), so the first
 * image is shown (and timed) as soon as it is in. */
static void redraw_if_changed(run *u)
{
    vw_reading *r = &u->r;
    vw_rseries *s = vw_reading_series(r);
    if (!s || atomic_load_explicit(&s->ready, memory_order_acquire) != 1)
        return;
    int st = atomic_load(&s->slices[r->slice].state);
    int pst = atomic_load(&s->slices[r->slice].pstate);
    double key[9] = {
        (double)r->cur, (double)r->slice, (double)(st * 8 + pst), r->wc, r->ww, r->invert, r->zoom,
        r->panx,        r->pany};
    if ((st == VW_SLICE_READY || pst == VW_SLICE_READY) &&
        memcmp(key, u->shown_key, sizeof(key)) != 0) {
        memcpy(u->shown_key, key, sizeof(key));
        frame(u, u->surf->pixels, u->surf->pitch / 4);
    }
}

/* Run until @p cond is 1 (0 ok), -1 (1: error) or the deadline (3). */
static int wait_for(run *u, int (*cond)(run *, int))
{
    for (;;) {
        redraw_if_changed(u);
        vw_reading_tick(&u->r);
        int c = cond(u, 0);
        if (c != 0) {
            if (c < 0)
                cond(u, 1);
            return c > 0 ? 0 : 1;
        }
        int64_t left = u->deadline - cs_clock_ns();
        if (left <= 0) {
            fprintf(stderr, "consilium-view: timed out after %g s waiting for the server\n",
                    u->r.o.timeout_s);
            return 3;
        }
        sleep_wake(u, left / 1000000);
    }
}

static void pump_ms(run *u, int ms)
{
    int64_t end = cs_clock_ns() + (int64_t)ms * 1000000;
    for (;;) {
        redraw_if_changed(u);
        vw_reading_tick(&u->r);
        int64_t left = end - cs_clock_ns();
        if (left <= 0)
            break;
        sleep_wake(u, left / 1000000 + 1);
    }
}

static int frame(run *u, uint32_t *fb, int pitch)
{
    int w = u->surf->w, h = u->surf->h;
    int rc = vw_reading_compose(&u->r, fb, pitch, w, h);
    vw_reading_draw(&u->r, u->ren, u->ov, w, h);
    SDL_RenderPresent(u->ren);
    vw_reading_tick(&u->r);
    return rc;
}

static int screenshot(run *u, const char *path)
{
    int rc = wait_for(u, slice_settled);
    uint32_t *fb = u->surf->pixels;
    int pitch = u->surf->pitch / 4;
    frame(u, fb, pitch);
    if (vw_png_write(path, fb, u->surf->w, u->surf->h, pitch) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        return 1;
    }
    return rc;
}

/* ---- --script ---- */

static int nums(const char *s, double *out, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        out[i] = strtod(s, &end);
        if (end == s || errno || !isfinite(out[i]))
            return -1;
        s = end;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    return *s ? -1 : 0;
}

static void feed(run *u, SDL_Event *ev)
{
    ev->common.timestamp = SDL_GetTicks();
    vw_reading_event(&u->r, ev, u->surf->w, u->surf->h);
}

static void drag(run *u, int button, const double *p)
{
    SDL_Event ev;
    SDL_zero(ev);
    ev.type = SDL_MOUSEBUTTONDOWN;
    ev.button.button = (Uint8)button;
    ev.button.state = SDL_PRESSED;
    ev.button.x = (int)p[0];
    ev.button.y = (int)p[1];
    feed(u, &ev);
    SDL_zero(ev);
    ev.type = SDL_MOUSEMOTION;
    ev.motion.x = (int)p[2];
    ev.motion.y = (int)p[3];
    ev.motion.state = SDL_BUTTON(button);
    feed(u, &ev);
    SDL_zero(ev);
    ev.type = SDL_MOUSEBUTTONUP;
    ev.button.button = (Uint8)button;
    ev.button.state = SDL_RELEASED;
    ev.button.x = (int)p[2];
    ev.button.y = (int)p[3];
    feed(u, &ev);
}

/* The image must be on screen (geometry, the file's window) for drags. */
static int shown(run *u)
{
    int rc = wait_for(u, slice_settled);
    if (rc == 0)
        frame(u, u->surf->pixels, u->surf->pitch / 4);
    return rc;
}

static int command(run *u, const char *cmd, char *args, const char *where)
{
    vw_reading *r = &u->r;
    double v[4];
    char line[1024];
    if (strcmp(cmd, "slice") == 0) {
        if (nums(args, v, 1) < 0)
            goto bad;
        int rc = wait_for(u, slice_settled);
        if (rc)
            return rc;
        vw_reading_set_slice(r, (int)v[0] - 1);
    } else if (strcmp(cmd, "next") == 0 || strcmp(cmd, "prev") == 0) {
        vw_reading_set_slice(r, r->slice + (cmd[0] == 'n' ? 1 : -1));
    } else if (strcmp(cmd, "series") == 0) {
        int idx = -1;
        if (nums(args, v, 1) == 0) {
            idx = (int)v[0] - 1;
        } else {
            for (size_t i = 0; i < r->nseries; i++)
                if (strcmp(r->series[i].uid, args) == 0)
                    idx = (int)i;
        }
        if (idx < 0 || (size_t)idx >= r->nseries) {
            fprintf(stderr, "consilium-view: %s: no series '%s' in the study (%zu series)\n", where,
                    args, r->nseries);
            return 1;
        }
        if (vw_reading_set_series(r, idx) < 0) {
            fprintf(stderr, "consilium-view: %s\n", cs_error_last());
            return 1;
        }
    } else if (strcmp(cmd, "key") == 0) {
        SDL_Keycode k = SDL_GetKeyFromName(args);
        if (k == SDLK_UNKNOWN) {
            fprintf(stderr, "consilium-view: %s: unknown key '%s'\n", where, args);
            return 2;
        }
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = SDL_KEYDOWN;
        ev.key.state = SDL_PRESSED;
        ev.key.keysym.sym = k;
        ev.key.keysym.scancode = SDL_GetScancodeFromKey(k);
        feed(u, &ev);
        if (r->opening) /* Return on the list: wait for the study and its first image */
            return wait_for(u, slice_settled);
    } else if (strcmp(cmd, "wheel") == 0) {
        if (nums(args, v, 1) < 0)
            goto bad;
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = SDL_MOUSEWHEEL;
        ev.wheel.y = (int)v[0];
        feed(u, &ev);
    } else if (strcmp(cmd, "wl") == 0) {
        if (nums(args, v, 2) < 0)
            goto bad;
        vw_reading_set_window(r, v[0], v[1], NULL);
    } else if (strcmp(cmd, "preset") == 0) {
        if (vw_reading_preset(r, args) < 0) {
            fprintf(stderr,
                    "consilium-view: %s: unknown preset '%s' (brain, lung, bone, "
                    "abdomen, file)\n",
                    where, args);
            return 2;
        }
    } else if (strcmp(cmd, "invert") == 0) {
        r->invert = !r->invert;
    } else if (strcmp(cmd, "zoom") == 0) {
        int k = nums(args, v, 1) == 0 ? 1 : nums(args, v, 3) == 0 ? 3 : 0;
        if (!k || !(v[0] > 0))
            goto bad;
        int rc = shown(u);
        if (rc)
            return rc;
        vw_reading_zoom(r, v[0], k == 3 ? v[1] : u->surf->w / 2.0,
                        k == 3 ? v[2] : u->surf->h / 2.0);
    } else if (strcmp(cmd, "mdrag") == 0) {
        if (nums(args, v, 4) < 0)
            goto bad;
        int rc = shown(u);
        if (rc)
            return rc;
        drag(u, SDL_BUTTON_MIDDLE, v);
    } else if (strcmp(cmd, "click") == 0) {
        if (nums(args, v, 2) < 0)
            goto bad;
        v[2] = v[0], v[3] = v[1];
        drag(u, SDL_BUTTON_LEFT, v);
    } else if (strcmp(cmd, "rdrag") == 0 || strcmp(cmd, "ruler") == 0) {
        if (nums(args, v, 4) < 0)
            goto bad;
        int rc = shown(u);
        if (rc)
            return rc;
        if (cmd[0] == 'r' && cmd[1] == 'd') {
            drag(u, SDL_BUTTON_RIGHT, v);
            printf("wl %g %g\n", r->wc, r->ww);
        } else {
            drag(u, SDL_BUTTON_LEFT, v);
            const char *unit;
            double len = vw_reading_ruler_length(r, &unit);
            printf("ruler %.4f %s image %.3f %.3f %.3f %.3f\n", len, unit, r->rx0, r->ry0, r->rx1,
                   r->ry1);
        }
    } else if (strcmp(cmd, "overlays") == 0 || strcmp(cmd, "cine") == 0) {
        int on = strcmp(args, "on") == 0;
        if (!on && strcmp(args, "off") != 0)
            goto bad;
        if (cmd[0] == 'o') {
            r->overlays = on;
        } else {
            int rc = wait_for(u, slice_settled);
            if (rc)
                return rc;
            r->cine = on;
            r->cine_t0 = cs_clock_ns();
            r->cine_s0 = r->slice;
        }
    } else if (strcmp(cmd, "wait") == 0) {
        if (nums(args, v, 1) < 0 || v[0] < 0 || v[0] > 3600000)
            goto bad;
        pump_ms(u, (int)v[0]);
    } else if (strcmp(cmd, "wait-slice") == 0) {
        return wait_for(u, slice_settled);
    } else if (strcmp(cmd, "wait-series") == 0) {
        return wait_for(u, series_settled);
    } else if (strcmp(cmd, "state") == 0) {
        vw_reading_state_line(r, line, sizeof(line));
        printf("%s\n", line);
    } else if (strcmp(cmd, "requests") == 0) {
        printf("requests %ld\n", atomic_load(&r->dw.requests));
    } else if (strcmp(cmd, "screenshot") == 0) {
        if (!*args)
            goto bad;
        return screenshot(u, args);
    } else {
        fprintf(stderr, "consilium-view: %s: unknown command '%s'\n", where, cmd);
        return 2;
    }
    return 0;
bad:
    fprintf(stderr, "consilium-view: %s: bad arguments '%s' for %s\n", where, args, cmd);
    return 2;
}

static int run_script(run *u)
{
    const char *path = u->r.o.script;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "consilium-view: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
            p[--n] = '\0';
        if (!*p || *p == '#')
            continue;
        char *args = p;
        while (*args && *args != ' ' && *args != '\t')
            args++;
        if (*args)
            *args++ = '\0';
        while (*args == ' ' || *args == '\t')
            args++;
        char where[600];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        rc = command(u, p, args, where);
        fflush(stdout);
    }
    fclose(f);
    return rc;
}

static int headless(run *u)
{
    vw_ropts *o = &u->r.o;
    int rc = 1;
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "1");
    u->surf = SDL_CreateRGBSurfaceWithFormat(0, o->w, o->h, 32, SDL_PIXELFORMAT_XRGB8888);
    if (!u->surf) {
        fprintf(stderr, "consilium-view: cannot create a %dx%d surface: %s\n", o->w, o->h,
                SDL_GetError());
        return 1;
    }
    if (!(u->ren = SDL_CreateSoftwareRenderer(u->surf))) {
        fprintf(stderr, "consilium-view: no software renderer: %s\n", SDL_GetError());
        goto out;
    }
    if (vw_overlay_new(&u->ov, u->ren, o->font) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    u->deadline = cs_clock_ns() + (int64_t)(o->timeout_s * 1e9);
    rc = 0;
    if (o->script)
        rc = run_script(u);
    if (rc == 0 && o->screenshot)
        rc = screenshot(u, o->screenshot);
    else if (rc == 0 && !o->script)
        rc = wait_for(u, slice_settled);
    if (rc == 0 && o->timing && u->r.screen == VW_RSCREEN_READ) {
        /* the first image is printed at once; the series when complete */
        frame(u, u->surf->pixels, u->surf->pitch / 4);
        rc = wait_for(u, series_settled);
        vw_reading_tick(&u->r);
    }
out:
    vw_reading_close(&u->r); /* stops the loaders before the queue goes */
    vw_overlay_free(u->ov);
    if (u->ren)
        SDL_DestroyRenderer(u->ren);
    SDL_FreeSurface(u->surf);
    return rc;
}

/* ---- the window ---- */

static int window(run *u)
{
    vw_reading *r = &u->r;
    if (SDL_Init(SDL_INIT_VIDEO) < 0) {
        fprintf(stderr,
                "consilium-view: cannot open a window: %s\n"
                "(for use without a display, see --screenshot and --script)\n",
                SDL_GetError());
        return 1;
    }
    int rc = 1;
    SDL_Window *win = NULL;
    SDL_Renderer *ren = NULL;
    SDL_Texture *tex = NULL;
    vw_overlay *ov = NULL;
    u->wake_event = SDL_RegisterEvents(1);
    if (u->wake_event == (uint32_t)-1) {
        fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
        goto out;
    }
    r->wake = wake_window;
    r->userdata = u;
    if (vw_reading_open(r) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    win = SDL_CreateWindow("consilium-view: reading", SDL_WINDOWPOS_UNDEFINED,
                           SDL_WINDOWPOS_UNDEFINED, r->o.w, r->o.h, SDL_WINDOW_RESIZABLE);
    if (!win) {
        fprintf(stderr, "consilium-view: cannot open a window: %s\n", SDL_GetError());
        goto out;
    }
    ren = SDL_CreateRenderer(win, -1, SDL_RENDERER_ACCELERATED | SDL_RENDERER_PRESENTVSYNC);
    if (!ren)
        ren = SDL_CreateRenderer(win, -1, SDL_RENDERER_SOFTWARE);
    if (!ren || vw_overlay_new(&ov, ren, r->o.font) < 0) {
        fprintf(stderr, "consilium-view: no renderer: %s\n", SDL_GetError());
        goto out;
    }
    int w = r->o.w, h = r->o.h, tw = 0, th = 0;
    int dirty = 1, quit = 0, last_loaded = -1;
    while (!quit) {
        SDL_Event ev;
        int got = dirty || r->cine ? SDL_PollEvent(&ev) : SDL_WaitEventTimeout(&ev, 250);
        while (got) {
            if (ev.type == SDL_WINDOWEVENT && ev.window.event == SDL_WINDOWEVENT_SIZE_CHANGED) {
                dirty = 1;
            } else if (ev.type != u->wake_event) {
                int e = vw_reading_event(r, &ev, w, h);
                if (e < 0)
                    quit = 1;
                dirty |= e > 0;
            }
            got = SDL_PollEvent(&ev);
        }
        atomic_store(&u->wake_pending, 0);
        dirty |= vw_reading_tick(r);
        vw_rseries *s = vw_reading_series(r);
        int loaded = s ? atomic_load(&s->loaded) + 1000000 * atomic_load(&s->ready) : -1;
        if (loaded != last_loaded)
            dirty = 1; /* a frame came: it may be the one on screen; the count shows */
        last_loaded = loaded;
        if (!dirty) {
            if (r->cine)
                SDL_Delay(5);
            continue;
        }
        dirty = 0;
        SDL_GetWindowSize(win, &w, &h);
        if (!tex || tw != w || th != h) {
            if (tex)
                SDL_DestroyTexture(tex);
            tex =
                SDL_CreateTexture(ren, SDL_PIXELFORMAT_XRGB8888, SDL_TEXTUREACCESS_STREAMING, w, h);
            if (!tex) {
                fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
                goto out;
            }
            tw = w, th = h;
        }
        void *pixels;
        int pitch;
        if (SDL_LockTexture(tex, NULL, &pixels, &pitch) < 0) {
            fprintf(stderr, "consilium-view: %s\n", SDL_GetError());
            goto out;
        }
        vw_reading_compose(r, pixels, pitch / 4, w, h);
        SDL_UnlockTexture(tex);
        SDL_RenderClear(ren);
        SDL_RenderCopy(ren, tex, NULL, NULL);
        vw_reading_draw(r, ren, ov, w, h);
        SDL_RenderPresent(ren);
    }
    rc = 0;
out:
    vw_reading_close(r); /* loaders stop before SDL goes: they push wake events */
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

int vw_reading_main(int argc, char **argv)
{
    run *u = calloc(1, sizeof(*u));
    if (!u) {
        fprintf(stderr, "consilium-view: out of memory\n");
        return 1;
    }
    vw_reading *r = &u->r;
    r->t_start = cs_clock_ns();
    vw_ropts *o = &r->o;
    o->w = 1024;
    o->h = 1024;
    o->parallel = 4;
    o->timeout_s = 120;
    o->font = VW_DEFAULT_FONT;
    if (parse_args(o, argc, argv) < 0) {
        free(u);
        return 2;
    }
    if (!o->token)
        o->token = getenv("CONSILIUM_TOKEN");
    size_t n = strlen(o->url);
    while (n && o->url[n - 1] == '/')
        n--;
    if (n >= sizeof(r->dw.base)) {
        fprintf(stderr, "consilium-view: the URL is too long\n");
        free(u);
        return 2;
    }
    memcpy(r->dw.base, o->url, n);
    r->dw.base[n] = '\0';
    r->dw.token = o->token;
    r->dw.insecure = o->insecure;
    r->dw.cacert = o->cacert;
    r->dw.timeout_s = (long)ceil(o->timeout_s);
    int headless_mode = o->screenshot || o->script;
    r->overlays = headless_mode ? o->overlays : 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "consilium-view: cannot initialise libcurl\n");
        free(u);
        return 1;
    }
    int rc;
    if (headless_mode) {
        if (cs_queue_new(&u->wakeq, 64, NULL) < 0) {
            fprintf(stderr, "consilium-view: %s\n", cs_error_last());
            rc = 1;
        } else {
            r->wake = wake_headless;
            r->userdata = u;
            if (vw_reading_open(r) < 0) {
                fprintf(stderr, "consilium-view: %s\n", cs_error_last());
                vw_reading_close(r);
                rc = 1;
            } else {
                rc = headless(u);
            }
            cs_queue_free(u->wakeq);
        }
    } else {
        rc = window(u);
    }
    curl_global_cleanup();
    free(u);
    return rc;
}
