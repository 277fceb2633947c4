/* viewer/script: --script FILE, headless input replay for tests.
 *
 * One command a line (blank lines and # comments skipped); X Y are window
 * pixels of the --size image, the view is --view (or the fit):
 *   tool NAME            select point line|ruler rect|rectangle ellipse polygon freehand text
 *   down X Y, move X Y, up X Y     the left button
 *   click X Y, dblclick X Y
 *   key NAME             an SDL key name: Delete, Return, Escape, Backspace, N, C, ...
 *   type TEXT            text input (the rest of the line)
 *   wait MS              keep taking tiles and server messages for MS ms
 *   view X,Y,ZOOM        jump
 *   screenshot OUT.png   the view once sharp, with the annotations
 *   expect-annotations N exit 4 unless there are N annotations
 *   dump OUT.json        the annotations as JSON ({"annotations":[...],"count":n,...})
 * With --video (video.h; the slide commands above need a slide beside it):
 *   wait-frames N        display N more video frames (at most --video-wait ms)
 *   seek SECONDS         seek the file and wait for the frame there; prints
 *                        "position SECONDS" (the displayed frame's time)
 *   pause, play          pause or play the file
 *   video-key NAME       a key for the video pane (key NAME does that too when
 *                        the video is shown alone)
 *   video-state          prints the {"video":{...}} JSON line
 *   click X Y            in the video pane: the video's (its progress bar)
 *   screenshot OUT.png   also draws the video pane (its newest frame)
 * and the JSON line is printed at the end too.
 * The events go through the same path as the window's (vw_app_event). In
 * URL mode the script starts once the annotations are loaded and the
 * WebSocket subscribed (or that failed), and ends once every request is
 * answered (at most --timeout s). With --screenshot, a last screenshot is
 * written at the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <SDL.h>

#include "cs/err.h"
#include "cs/thread.h"

#include "adraw.h"
#include "app.h"
#include "overlay.h"
#include "png.h"
#include "video.h"

typedef struct {
    vw_app *a;
    vw_view v;
    vw_input in;
    SDL_Surface *surf;
    SDL_Renderer *ren;
    vw_overlay *ov;
    int button; /* left button held */
    int with_slide;
    vw_video *vid; /* --video, else NULL */
    const vw_video_opts *vo;
    SDL_Rect sr, vr; /* the slide's and the video's panes */
} script;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Show the newest video frame, if there is one, in the video pane. */
static void video_pump(script *s)
{
    if (s->vid && vw_video_update(s->vid, s->ren)) {
        vw_video_draw(s->vid, s->ren, s->ov, &s->vr);
        SDL_RenderPresent(s->ren);
        vw_video_presented(s->vid);
    }
}

/* Take tiles, server messages and video frames for @p ms. */
static void pump(script *s, int ms)
{
    int64_t end = cs_clock_ns() + (int64_t)ms * 1000000;
    do {
        if (s->with_slide) {
            vw_app_consume(s->a);
            vw_app_annotations_poll(s->a);
        }
        video_pump(s);
        int64_t left = end - cs_clock_ns();
        if (left <= 0)
            break;
        if (s->vid)
            vw_video_wait(s->vid, left > 5000000 ? 5 : (int)(left / 1000000) + 1);
        else
            sleep_ms(5);
    } while (cs_clock_ns() < end);
}

/* Pump until @p done (or --video-wait passes). @return 0 or -1 (timeout). */
static int video_until(script *s, int (*done)(script *s, int64_t arg), int64_t arg)
{
    int64_t end = cs_clock_ns() + (int64_t)s->vo->wait_ms * 1000000;
    for (;;) {
        video_pump(s);
        if (done(s, arg))
            return 0;
        if (cs_clock_ns() >= end)
            return -1;
        if (s->with_slide) {
            vw_app_consume(s->a);
            vw_app_annotations_poll(s->a);
        }
        vw_video_wait(s->vid, 5);
    }
}

static int frames_reached(script *s, int64_t n)
{
    vw_video_stats st;
    vw_video_get_stats(s->vid, &st);
    return st.frames >= n || st.failed;
}

static int gen_shown(script *s, int64_t gen)
{
    vw_video_stats st;
    vw_video_get_stats(s->vid, &st);
    return vw_video_shown_gen(s->vid) >= gen || st.failed;
}

static void feed(script *s, SDL_Event *ev)
{
    ev->common.timestamp = SDL_GetTicks();
    vw_app_event(s->a, &s->in, ev, &s->v, 0);
}

static void mouse(script *s, Uint32 type, int x, int y, int clicks)
{
    SDL_Event ev;
    SDL_zero(ev);
    ev.type = type;
    if (type == SDL_MOUSEMOTION) {
        ev.motion.x = x;
        ev.motion.y = y;
        ev.motion.state = s->button ? SDL_BUTTON_LMASK : 0;
    } else {
        ev.button.button = SDL_BUTTON_LEFT;
        ev.button.state = type == SDL_MOUSEBUTTONDOWN ? SDL_PRESSED : SDL_RELEASED;
        ev.button.clicks = (Uint8)clicks;
        ev.button.x = x;
        ev.button.y = y;
        s->button = type == SDL_MOUSEBUTTONDOWN;
    }
    feed(s, &ev);
}

static int screenshot(script *s, const char *path)
{
    vw_frame_stats st;
    uint32_t *fb = s->surf->pixels;
    int pitch = s->surf->pitch / 4;
    if (!s->with_slide) {
        video_pump(s);
        vw_video_draw(s->vid, s->ren, s->ov, &s->vr);
        SDL_RenderPresent(s->ren);
        vw_video_presented(s->vid);
        if (vw_png_write(path, fb, s->surf->w, s->surf->h, pitch) < 0) {
            fprintf(stderr, "consilium-view: %s\n", cs_error_last());
            return 1;
        }
        return 0;
    }
    int rc = vw_headless_settle(s->a, &s->v, fb, pitch, &st);
    vw_app_annotations_poll(s->a);
    vw_adraw(s->ren, s->ov, &s->a->edit, &s->v, s->a->o.overlays);
    if (s->a->o.overlays) {
        vw_overlay_info info = {
            s->a->src.name, s->a->src.mpp_x,        s->v.zoom,
            st.level,       s->a->src.geom.nlevels, vw_fetch_in_flight(s->a->fetch),
            s->a->failed};
        vw_overlay_draw(s->ov, s->v.w, s->v.h, &info);
    }
    if (s->vid) {
        vw_video_update(s->vid, s->ren);
        vw_video_draw(s->vid, s->ren, s->ov, &s->vr);
    }
    SDL_RenderPresent(s->ren);
    if (s->vid)
        vw_video_presented(s->vid);
    if (vw_png_write(path, fb, s->surf->w, s->surf->h, pitch) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        return 1;
    }
    if (rc)
        fprintf(stderr, "consilium-view: %s: timed out; coarser levels where tiles are missing\n",
                path);
    return 0;
}

static int dump(script *s, const char *path)
{
    vw_app *a = s->a;
    json_t *j = vw_annots_to_json(&a->annots, vw_source_is_url(a->o.target) ? a->src.id : NULL);
    if (!j)
        return 1;
    json_object_set_new(j, "mpp_x", json_real(a->annots.mpp_x));
    json_object_set_new(j, "mpp_y", json_real(a->annots.mpp_y));
    vw_annot *sel = vw_edit_selected(&a->edit);
    json_object_set_new(j, "selected", sel ? json_string(sel->id) : json_null());
    json_object_set_new(j, "tool", json_string(vw_edit_tool_name(a->edit.tool)));
    json_object_set_new(j, "view",
                        json_pack("{s:f,s:f,s:f}", "x", s->v.x, "y", s->v.y, "zoom", s->v.zoom));
    int r = json_dump_file(j, path, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (r < 0) {
        fprintf(stderr, "consilium-view: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

static int xy(const char *args, int *x, int *y)
{
    char *end;
    errno = 0;
    double dx = strtod(args, &end);
    if (end == args)
        return -1;
    const char *p = end;
    double dy = strtod(p, &end);
    if (end == p || errno)
        return -1;
    *x = (int)dx;
    *y = (int)dy;
    return 0;
}

/* Run one command. @return 0, 2 (bad line), 4 (expectation failed), 1 (error). */
/* A key event for @p name. @return 0 or -1 (unknown key). */
static int key_event(SDL_Event *ev, const char *name)
{
    SDL_Keycode k = SDL_GetKeyFromName(name);
    if (k == SDLK_UNKNOWN)
        return -1;
    SDL_zero(*ev);
    ev->type = SDL_KEYDOWN;
    ev->key.state = SDL_PRESSED;
    ev->key.keysym.sym = k;
    ev->key.keysym.scancode = SDL_GetScancodeFromKey(k);
    ev->common.timestamp = SDL_GetTicks();
    return 0;
}

/* The --video commands. @return as command(), or -1 when @p cmd is not one. */
static int video_command(script *s, const char *cmd, const char *args, const char *where)
{
    static const char *const names[] = {"wait-frames", "seek",      "pause",
                                        "play",        "video-key", "video-state"};
    int known = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        known |= strcmp(cmd, names[i]) == 0;
    if (!known)
        return -1;
    if (!s->vid) {
        fprintf(stderr, "consilium-view: %s: %s needs --video\n", where, cmd);
        return 2;
    }
    if (strcmp(cmd, "wait-frames") == 0) {
        int n;
        if (vw_parse_int(args, 1, 1000000, &n) < 0) {
            fprintf(stderr, "consilium-view: %s: expected wait-frames N\n", where);
            return 2;
        }
        vw_video_stats st;
        vw_video_get_stats(s->vid, &st);
        if (video_until(s, frames_reached, st.frames + n) < 0 ||
            (vw_video_get_stats(s->vid, &st), st.failed)) {
            fprintf(stderr, "consilium-view: %s: %lld video frames in %d ms, not %d more%s%s\n",
                    where, (long long)st.frames, s->vo->wait_ms, n, st.error[0] ? ": " : "",
                    st.error);
            return 4;
        }
    } else if (strcmp(cmd, "seek") == 0) {
        char *end;
        errno = 0;
        double sec = strtod(args, &end);
        if (end == args || *end || errno || !(sec >= 0) || sec > 1e7) {
            fprintf(stderr, "consilium-view: %s: expected seek SECONDS\n", where);
            return 2;
        }
        pump(s, 0); /* the duration, once the source is open */
        int64_t gen = vw_video_seek(s->vid, (int64_t)(sec * 1e6));
        if (gen < 0) {
            /* maybe not open yet: wait for a frame, then try again */
            vw_video_stats st;
            vw_video_get_stats(s->vid, &st);
            video_until(s, frames_reached, st.frames + 1);
            gen = vw_video_seek(s->vid, (int64_t)(sec * 1e6));
        }
        if (gen < 0) {
            fprintf(stderr, "consilium-view: %s: %s cannot seek (a live source)\n", where,
                    vw_video_url(s->vid));
            return 4;
        }
        if (video_until(s, gen_shown, gen) < 0) {
            fprintf(stderr, "consilium-view: %s: no frame after the seek in %d ms\n", where,
                    s->vo->wait_ms);
            return 4;
        }
        vw_video_stats st;
        vw_video_get_stats(s->vid, &st);
        printf("position %.3f\n", st.pos_us < 0 ? -1.0 : (double)st.pos_us / 1e6);
        fflush(stdout);
    } else if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "play") == 0) {
        vw_video_set_paused(s->vid, strcmp(cmd, "pause") == 0);
        pump(s, 0);
    } else if (strcmp(cmd, "video-key") == 0) {
        SDL_Event ev;
        if (key_event(&ev, args) < 0) {
            fprintf(stderr, "consilium-view: %s: unknown key '%s'\n", where, args);
            return 2;
        }
        vw_video_event(s->vid, &ev, &s->vr);
        pump(s, 0);
    } else {
        pump(s, 0);
        vw_video_print_json(s->vid, stdout);
    }
    return 0;
}

static int command(script *s, char *cmd, char *args, const char *where)
{
    int x = 0, y = 0;
    int vr = video_command(s, cmd, args, where);
    if (vr >= 0)
        return vr;
    if (s->vid && !s->with_slide && strcmp(cmd, "key") == 0)
        return video_command(s, "video-key", args, where);
    if (s->vid && strcmp(cmd, "click") == 0 && xy(args, &x, &y) == 0 && x >= s->vr.x &&
        x < s->vr.x + s->vr.w && y >= s->vr.y && y < s->vr.y + s->vr.h) {
        SDL_Event ev;
        SDL_zero(ev);
        ev.type = SDL_MOUSEBUTTONDOWN;
        ev.button.button = SDL_BUTTON_LEFT;
        ev.button.state = SDL_PRESSED;
        ev.button.clicks = 1;
        ev.button.x = x;
        ev.button.y = y;
        vw_video_event(s->vid, &ev, &s->vr);
        pump(s, 0);
        return 0;
    }
    if (!s->with_slide && strcmp(cmd, "wait") != 0 && strcmp(cmd, "screenshot") != 0) {
        fprintf(stderr, "consilium-view: %s: %s needs a slide\n", where, cmd);
        return 2;
    }
    if (strcmp(cmd, "tool") == 0) {
        int t = vw_edit_tool_parse(args);
        if (t < 0) {
            fprintf(stderr, "consilium-view: %s: unknown tool '%s'\n", where, args);
            return 2;
        }
        vw_edit_set_tool(&s->a->edit, (vw_tool)t);
    } else if (strcmp(cmd, "down") == 0 || strcmp(cmd, "move") == 0 || strcmp(cmd, "up") == 0 ||
               strcmp(cmd, "click") == 0 || strcmp(cmd, "dblclick") == 0) {
        if (xy(args, &x, &y) < 0) {
            fprintf(stderr, "consilium-view: %s: expected %s X Y\n", where, cmd);
            return 2;
        }
        if (strcmp(cmd, "down") == 0) {
            mouse(s, SDL_MOUSEMOTION, x, y, 0);
            mouse(s, SDL_MOUSEBUTTONDOWN, x, y, 1);
        } else if (strcmp(cmd, "move") == 0) {
            mouse(s, SDL_MOUSEMOTION, x, y, 0);
        } else if (strcmp(cmd, "up") == 0) {
            mouse(s, SDL_MOUSEMOTION, x, y, 0);
            mouse(s, SDL_MOUSEBUTTONUP, x, y, 1);
        } else {
            int n = strcmp(cmd, "click") == 0 ? 1 : 2;
            mouse(s, SDL_MOUSEMOTION, x, y, 0);
            for (int c = 1; c <= n; c++) {
                mouse(s, SDL_MOUSEBUTTONDOWN, x, y, c);
                mouse(s, SDL_MOUSEBUTTONUP, x, y, c);
            }
        }
    } else if (strcmp(cmd, "key") == 0) {
        SDL_Event ev;
        if (key_event(&ev, args) < 0) {
            fprintf(stderr, "consilium-view: %s: unknown key '%s'\n", where, args);
            return 2;
        }
        feed(s, &ev);
    } else if (strcmp(cmd, "type") == 0) {
        /* one event per UTF-8 character, as an IME would send them */
        for (const char *p = args; *p;) {
            size_t n = 1;
            while (p[n] && ((unsigned char)p[n] & 0xc0) == 0x80)
                n++;
            SDL_Event ev;
            SDL_zero(ev);
            ev.type = SDL_TEXTINPUT;
            memcpy(ev.text.text, p, n < sizeof(ev.text.text) ? n : sizeof(ev.text.text) - 1);
            feed(s, &ev);
            p += n;
        }
    } else if (strcmp(cmd, "wait") == 0) {
        char *end;
        long ms = strtol(args, &end, 10);
        if (end == args || *end || ms < 0 || ms > 600000) {
            fprintf(stderr, "consilium-view: %s: expected wait MS\n", where);
            return 2;
        }
        pump(s, (int)ms);
    } else if (strcmp(cmd, "view") == 0) {
        if (vw_parse_view(args, &s->v.x, &s->v.y, &s->v.zoom) < 0) {
            fprintf(stderr, "consilium-view: %s: expected view X,Y,ZOOM\n", where);
            return 2;
        }
    } else if (strcmp(cmd, "screenshot") == 0) {
        return screenshot(s, args);
    } else if (strcmp(cmd, "dump") == 0) {
        return dump(s, args);
    } else if (strcmp(cmd, "expect-annotations") == 0) {
        char *end;
        long n = strtol(args, &end, 10);
        if (end == args || *end) {
            fprintf(stderr, "consilium-view: %s: expected expect-annotations N\n", where);
            return 2;
        }
        vw_app_annotations_poll(s->a);
        if ((long)s->a->annots.n != n) {
            fprintf(stderr, "consilium-view: %s: %zu annotations, expected %ld\n", where,
                    s->a->annots.n, n);
            return 4;
        }
    } else {
        fprintf(stderr, "consilium-view: %s: unknown command '%s'\n", where, cmd);
        return 2;
    }
    return 0;
}

/* URL mode: wait for the list and the subscription, or for pending requests. */
static void settle_sync(script *s, int for_ready)
{
    vw_app *a = s->a;
    if (!a->sync)
        return;
    int64_t end = cs_clock_ns() + (int64_t)(a->o.timeout_s * 1e9);
    while (cs_clock_ns() < end) {
        vw_app_annotations_poll(a);
        if (vw_sync_failed(a->sync))
            break;
        if (for_ready ? vw_sync_ready(a->sync) : vw_sync_pending(a->sync) == 0)
            return;
        sleep_ms(10);
    }
    fprintf(stderr, "consilium-view: warning: %s\n",
            vw_sync_failed(a->sync) ? "annotation sync failed (see the log)"
            : for_ready             ? "annotations not loaded/subscribed before the timeout"
                                    : "requests still unanswered at the end of the script");
}

static int run(vw_app *a, const vw_video_opts *vo)
{
    FILE *f = fopen(a->o.script, "r");
    if (!f) {
        fprintf(stderr, "consilium-view: cannot read %s: %s\n", a->o.script, strerror(errno));
        return 2;
    }
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "1");
    script s;
    memset(&s, 0, sizeof(s));
    s.a = a;
    s.with_slide = a->o.target != NULL;
    s.vo = vo;
    vw_video_layout(a->o.w, a->o.h, s.with_slide, &s.sr, &s.vr);
    if (!vo)
        s.sr = s.vr; /* no video: the slide has it all */
    s.v = (vw_view){0, 0, 1, s.sr.w, s.sr.h};
    if (s.with_slide)
        vw_app_initial_view(a, &s.v);
    s.in.overlays = a->o.overlays;
    int rc = 1;
    s.surf = SDL_CreateRGBSurfaceWithFormat(0, a->o.w, a->o.h, 32, SDL_PIXELFORMAT_XRGB8888);
    if (!s.surf || !(s.ren = SDL_CreateSoftwareRenderer(s.surf)) ||
        vw_overlay_new(&s.ov, s.ren, a->o.font) < 0) {
        fprintf(stderr, "consilium-view: cannot set up the headless renderer: %s\n",
                SDL_GetError());
        goto out;
    }
    if (vo && vw_video_open(&s.vid, vo, NULL, NULL) < 0) {
        fprintf(stderr, "consilium-view: %s\n", cs_error_last());
        goto out;
    }
    settle_sync(&s, 1);
    char line[4096];
    int lineno = 0;
    rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        char *cmd = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p)
            *p++ = '\0';
        if (strcmp(cmd, "type") != 0) /* type keeps its spaces after the first */
            while (*p == ' ' || *p == '\t')
                p++;
        char where[600];
        snprintf(where, sizeof(where), "%s:%d", a->o.script, lineno);
        rc = command(&s, cmd, p, where);
    }
    if (rc == 0) {
        settle_sync(&s, 0);
        vw_app_annotations_poll(a);
        if (a->o.screenshot)
            rc = screenshot(&s, a->o.screenshot);
    }
    if (s.vid)
        vw_video_print_json(s.vid, stdout);
out:
    fclose(f);
    vw_video_close(s.vid); /* before the renderer: the texture is its */
    vw_overlay_free(s.ov);
    if (s.ren)
        SDL_DestroyRenderer(s.ren);
    if (s.surf)
        SDL_FreeSurface(s.surf);
    return rc;
}

int vw_headless_script(vw_app *a)
{
    return run(a, NULL);
}

int vw_video_headless_script(vw_app *a, const vw_video_opts *o)
{
    return run(a, o);
}
