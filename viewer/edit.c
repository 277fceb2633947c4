/* viewer/edit: see edit.h. */
#include "edit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/thread.h"

#define HIT_TOL    5.0 /* screen px around a shape that still hits it */
#define HANDLE_TOL 7.0 /* screen px around a handle */
#define MIN_DRAG   2.0 /* screen px a new line/rectangle/ellipse must span */
#define FREE_STEP  3.0 /* screen px between freehand vertices */

enum { DRAG_NONE, DRAG_MOVE, DRAG_HANDLE, DRAG_DRAW };

static const char *const tool_names[VW_TOOL_N] = {"select",  "point",   "line",     "rect",
                                                  "ellipse", "polygon", "freehand", "text"};

const char *vw_edit_tool_name(vw_tool t)
{
    return t >= 0 && t < VW_TOOL_N ? tool_names[t] : "?";
}

int vw_edit_tool_parse(const char *name)
{
    if (strcmp(name, "ruler") == 0)
        return VW_TOOL_LINE;
    if (strcmp(name, "rectangle") == 0)
        return VW_TOOL_RECT;
    for (int i = 0; i < VW_TOOL_N; i++)
        if (strcmp(name, tool_names[i]) == 0)
            return i;
    return -1;
}

void vw_edit_init(vw_edit *e, vw_annots *annots, const char *author)
{
    memset(e, 0, sizeof(*e));
    e->annots = annots;
    e->author = author;
}

void vw_edit_free(vw_edit *e)
{
    vw_annot_free(e->draft);
    e->draft = NULL;
}

void vw_edit_status(vw_edit *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->status, sizeof(e->status), fmt, ap);
    va_end(ap);
    e->status_until = cs_clock_ns() + 4000000000ll;
}

vw_annot *vw_edit_selected(const vw_edit *e)
{
    return vw_annots_by_key(e->annots, e->sel);
}

static void cancel_draft(vw_edit *e)
{
    vw_annot_free(e->draft);
    e->draft = NULL;
    e->typing = VW_TYPING_NONE;
    if (e->drag == DRAG_DRAW)
        e->drag = DRAG_NONE;
}

void vw_edit_set_tool(vw_edit *e, vw_tool tool)
{
    cancel_draft(e);
    e->tool = tool;
    if (tool != VW_TOOL_SELECT)
        e->sel = 0;
}

static void notify(vw_edit *e, vw_annot *a, int op)
{
    if (e->changed)
        e->changed(e->userdata, a, op);
}

static vw_annot *start_draft(vw_edit *e, vw_an_type t)
{
    vw_annot_free(e->draft);
    e->draft = vw_annot_new(e->annots, t);
    if (e->draft) {
        snprintf(e->draft->author, sizeof(e->draft->author), "%s", e->author ? e->author : "");
        e->draft->color = vw_annot_author_color(e->draft->author);
    }
    return e->draft;
}

/* The draft joins the list; the select tool stays where it was. */
static void commit_draft(vw_edit *e)
{
    vw_annot *a = e->draft;
    e->draft = NULL;
    e->drag = DRAG_NONE;
    e->typing = VW_TYPING_NONE;
    if (!a)
        return;
    uint64_t key = a->key;
    if (vw_annots_add(e->annots, a) < 0) {
        vw_edit_status(e, "out of memory");
        return;
    }
    e->sel = key;
    notify(e, a, VW_EDIT_CREATED);
}

/* ---- handles ---- */

/* Handles of @p a in level-0 pixels. @return count (at most max). */
static int handles(const vw_annot *a, vw_pt *h, int max)
{
    if (a->type == VW_AN_RECT || a->type == VW_AN_ELLIPSE) {
        if (a->npts < 2 || max < 4)
            return 0;
        double x0 = a->pts[0].x, y0 = a->pts[0].y, x1 = a->pts[1].x, y1 = a->pts[1].y;
        h[0] = (vw_pt){x0, y0};
        h[1] = (vw_pt){x1, y0};
        h[2] = (vw_pt){x1, y1};
        h[3] = (vw_pt){x0, y1};
        return 4;
    }
    int n = a->npts < max ? a->npts : max;
    memcpy(h, a->pts, (size_t)n * sizeof(*h));
    return n;
}

#define MAX_HANDLES 256

static int handle_at(const vw_annot *a, const vw_view *v, double sx, double sy)
{
    vw_pt h[MAX_HANDLES];
    int n = a->npts > MAX_HANDLES ? 0 : handles(a, h, MAX_HANDLES);
    for (int i = 0; i < n; i++)
        if (hypot((h[i].x - v->x) * v->zoom - sx, (h[i].y - v->y) * v->zoom - sy) <= HANDLE_TOL)
            return i;
    return -1;
}

static void move_handle(vw_annot *a, int i, double x, double y)
{
    if (a->type == VW_AN_RECT || a->type == VW_AN_ELLIPSE) {
        /* handles 0..3 = (x0,y0) (x1,y0) (x1,y1) (x0,y1) */
        if (i == 0 || i == 3)
            a->pts[0].x = x;
        else
            a->pts[1].x = x;
        if (i == 0 || i == 1)
            a->pts[0].y = y;
        else
            a->pts[1].y = y;
        return;
    }
    if (i >= 0 && i < a->npts) {
        a->pts[i].x = x;
        a->pts[i].y = y;
    }
}

/* ---- events ---- */

static int mouse_down(vw_edit *e, const SDL_MouseButtonEvent *b, const vw_view *v)
{
    double x = v->x + b->x / v->zoom, y = v->y + b->y / v->zoom;
    e->lx = x;
    e->ly = y;
    e->moved = 0;
    if (e->typing == VW_TYPING_TEXT) /* clicking elsewhere ends the text */
        commit_draft(e);
    e->typing = VW_TYPING_NONE;
    switch (e->tool) {
    case VW_TOOL_SELECT: {
        vw_annot *s = vw_edit_selected(e);
        int h = s ? handle_at(s, v, b->x, b->y) : -1;
        if (h >= 0) {
            e->drag = DRAG_HANDLE;
            e->handle = h;
            return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        }
        vw_annot *a = vw_annots_hit(e->annots, v->x, v->y, v->zoom, b->x, b->y, HIT_TOL);
        if (!a) {
            int had = e->sel != 0;
            e->sel = 0;
            return had ? VW_EDIT_DIRTY : 0; /* left to input.c: pan */
        }
        e->sel = a->key;
        e->drag = DRAG_MOVE;
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    }
    case VW_TOOL_POINT:
        if (start_draft(e, VW_AN_POINT) && vw_annot_add_pt(e->draft, x, y) == 0)
            commit_draft(e);
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case VW_TOOL_TEXT:
        if (start_draft(e, VW_AN_TEXT) && vw_annot_add_pt(e->draft, x, y) == 0) {
            e->typing = VW_TYPING_TEXT;
            e->text[0] = '\0';
        }
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case VW_TOOL_LINE:
    case VW_TOOL_RECT:
    case VW_TOOL_ELLIPSE: {
        vw_an_type t = e->tool == VW_TOOL_LINE   ? VW_AN_LINE
                       : e->tool == VW_TOOL_RECT ? VW_AN_RECT
                                                 : VW_AN_ELLIPSE;
        if (start_draft(e, t) && vw_annot_add_pt(e->draft, x, y) == 0 &&
            vw_annot_add_pt(e->draft, x, y) == 0)
            e->drag = DRAG_DRAW;
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    }
    case VW_TOOL_FREEHAND:
        if (start_draft(e, VW_AN_FREEHAND) && vw_annot_add_pt(e->draft, x, y) == 0)
            e->drag = DRAG_DRAW;
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case VW_TOOL_POLYGON:
        if (b->clicks >= 2 && e->draft && e->draft->npts >= 3) {
            commit_draft(e);
            return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        }
        if (!e->draft && !start_draft(e, VW_AN_POLYGON))
            return VW_EDIT_CONSUMED;
        vw_annot_add_pt(e->draft, x, y);
        e->hx = b->x;
        e->hy = b->y;
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    default:
        return 0;
    }
}

static int mouse_move(vw_edit *e, const SDL_MouseMotionEvent *m, const vw_view *v)
{
    double x = v->x + m->x / v->zoom, y = v->y + m->y / v->zoom;
    double dx = x - e->lx, dy = y - e->ly;
    int r = 0;
    e->hx = m->x;
    e->hy = m->y;
    if (e->tool == VW_TOOL_POLYGON && e->draft)
        r = VW_EDIT_DIRTY;
    vw_annot *s = vw_edit_selected(e);
    switch (e->drag) {
    case DRAG_MOVE:
        if (!s)
            break;
        for (int i = 0; i < s->npts; i++) {
            s->pts[i].x += dx;
            s->pts[i].y += dy;
        }
        e->moved = 1;
        r = VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        break;
    case DRAG_HANDLE:
        if (!s)
            break;
        move_handle(s, e->handle, x, y);
        e->moved = 1;
        r = VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        break;
    case DRAG_DRAW:
        if (!e->draft)
            break;
        if (e->draft->type == VW_AN_FREEHAND) {
            vw_pt l = e->draft->pts[e->draft->npts - 1];
            if (hypot(x - l.x, y - l.y) * v->zoom >= FREE_STEP)
                vw_annot_add_pt(e->draft, x, y);
        } else {
            e->draft->pts[1].x = x;
            e->draft->pts[1].y = y;
        }
        r = VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        break;
    default:
        break;
    }
    e->lx = x;
    e->ly = y;
    return r;
}

static int mouse_up(vw_edit *e, const SDL_MouseButtonEvent *b, const vw_view *v)
{
    int d = e->drag;
    e->drag = DRAG_NONE;
    if (d == DRAG_MOVE || d == DRAG_HANDLE) {
        vw_annot *s = vw_edit_selected(e);
        if (s && e->moved)
            notify(e, s, VW_EDIT_UPDATED);
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    }
    if (d != DRAG_DRAW || !e->draft)
        return 0;
    vw_annot *a = e->draft;
    if (a->type == VW_AN_FREEHAND) {
        double x = v->x + b->x / v->zoom, y = v->y + b->y / v->zoom;
        vw_pt l = a->pts[a->npts - 1];
        if (hypot(x - l.x, y - l.y) > 0)
            vw_annot_add_pt(a, x, y);
        if (a->npts >= 3)
            commit_draft(e);
        else
            cancel_draft(e);
    } else {
        double span = hypot(a->pts[1].x - a->pts[0].x, a->pts[1].y - a->pts[0].y) * v->zoom;
        if (a->type != VW_AN_LINE)
            span = fmin(fabs(a->pts[1].x - a->pts[0].x), fabs(a->pts[1].y - a->pts[0].y)) * v->zoom;
        if (span >= MIN_DRAG)
            commit_draft(e);
        else
            cancel_draft(e);
    }
    return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
}

static void next_class(vw_edit *e, vw_annot *a)
{
    int n = 0, cur = -1;
    while (vw_annot_classes[n]) {
        if (strcmp(a->cls, vw_annot_classes[n]) == 0)
            cur = n;
        n++;
    }
    int next = cur + 1; /* after the last: no class */
    if (next >= n) {
        vw_annot_set_str(&a->cls, "");
        a->color = vw_annot_author_color(a->author);
    } else {
        vw_annot_set_str(&a->cls, vw_annot_classes[next]);
        a->color = vw_annot_class_color(a->cls);
    }
    vw_edit_status(e, "class: %s", *a->cls ? a->cls : "(none)");
    notify(e, a, VW_EDIT_UPDATED);
}

static void delete_selected(vw_edit *e)
{
    vw_annot *a = vw_edit_selected(e);
    if (!a)
        return;
    uint64_t key = a->key;
    notify(e, a, VW_EDIT_DELETED);
    vw_annots_remove(e->annots, key);
    e->sel = 0;
    e->drag = DRAG_NONE;
}

static void typed_done(vw_edit *e)
{
    if (e->typing == VW_TYPING_TEXT) {
        if (e->draft && e->text[0]) {
            vw_annot_set_str(&e->draft->label, e->text);
            commit_draft(e);
        } else {
            cancel_draft(e);
        }
    } else if (e->typing == VW_TYPING_LABEL) {
        vw_annot *a = vw_edit_selected(e);
        if (a && strcmp(a->label, e->text) != 0) {
            vw_annot_set_str(&a->label, e->text);
            notify(e, a, VW_EDIT_UPDATED);
        }
    }
    e->typing = VW_TYPING_NONE;
}

static int key_typing(vw_edit *e, SDL_Keycode k)
{
    if (k == SDLK_RETURN || k == SDLK_KP_ENTER) {
        typed_done(e);
    } else if (k == SDLK_ESCAPE) {
        if (e->typing == VW_TYPING_TEXT)
            cancel_draft(e);
        e->typing = VW_TYPING_NONE;
    } else if (k == SDLK_BACKSPACE) {
        size_t n = strlen(e->text);
        while (n > 0 && ((unsigned char)e->text[n - 1] & 0xc0) == 0x80)
            n--; /* UTF-8 continuation bytes */
        if (n > 0)
            n--;
        e->text[n] = '\0';
    }
    return VW_EDIT_CONSUMED | VW_EDIT_DIRTY; /* every key goes to the text */
}

static int key_down(vw_edit *e, const SDL_KeyboardEvent *k)
{
    if (e->typing)
        return key_typing(e, k->keysym.sym);
    if (k->keysym.mod & (KMOD_CTRL | KMOD_ALT | KMOD_GUI))
        return 0;
    static const struct {
        SDL_Keycode key;
        vw_tool tool;
    } tools[] = {{SDLK_s, VW_TOOL_SELECT},  {SDLK_v, VW_TOOL_SELECT},   {SDLK_p, VW_TOOL_POINT},
                 {SDLK_l, VW_TOOL_LINE},    {SDLK_r, VW_TOOL_RECT},     {SDLK_e, VW_TOOL_ELLIPSE},
                 {SDLK_g, VW_TOOL_POLYGON}, {SDLK_f, VW_TOOL_FREEHAND}, {SDLK_t, VW_TOOL_TEXT}};
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
        if (k->keysym.sym == tools[i].key) {
            vw_edit_set_tool(e, tools[i].tool);
            vw_edit_status(e, "tool: %s", vw_edit_tool_name(e->tool));
            return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        }
    vw_annot *sel = vw_edit_selected(e);
    switch (k->keysym.sym) {
    case SDLK_RETURN:
    case SDLK_KP_ENTER:
        if (e->tool == VW_TOOL_POLYGON && e->draft) {
            if (e->draft->npts >= 3)
                commit_draft(e);
            else
                cancel_draft(e);
            return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
        }
        return 0;
    case SDLK_ESCAPE:
        if (e->draft || e->drag)
            cancel_draft(e);
        else if (e->tool != VW_TOOL_SELECT)
            vw_edit_set_tool(e, VW_TOOL_SELECT);
        else
            e->sel = 0;
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case SDLK_DELETE:
    case SDLK_BACKSPACE:
        if (!sel)
            return VW_EDIT_CONSUMED;
        delete_selected(e);
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case SDLK_n:
        if (!sel)
            return VW_EDIT_CONSUMED;
        e->typing = VW_TYPING_LABEL;
        snprintf(e->text, sizeof(e->text), "%s", sel->label);
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    case SDLK_c:
        if (sel)
            next_class(e, sel);
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    default:
        return 0;
    }
}

int vw_edit_handle(vw_edit *e, const SDL_Event *ev, const vw_view *v)
{
    switch (ev->type) {
    case SDL_MOUSEBUTTONDOWN:
        return ev->button.button == SDL_BUTTON_LEFT ? mouse_down(e, &ev->button, v) : 0;
    case SDL_MOUSEBUTTONUP:
        return ev->button.button == SDL_BUTTON_LEFT ? mouse_up(e, &ev->button, v) : 0;
    case SDL_MOUSEMOTION:
        return mouse_move(e, &ev->motion, v);
    case SDL_KEYDOWN:
        return key_down(e, &ev->key);
    case SDL_TEXTINPUT:
        if (!e->typing)
            return 0;
        {
            size_t n = strlen(e->text), m = strlen(ev->text.text);
            if (n + m < sizeof(e->text))
                memcpy(e->text + n, ev->text.text, m + 1);
        }
        return VW_EDIT_CONSUMED | VW_EDIT_DIRTY;
    default:
        return 0;
    }
}
