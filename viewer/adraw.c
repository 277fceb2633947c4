/* viewer/adraw: see adraw.h. Shapes are mapped to the screen per frame
 * (screen = (level-0 - view) * zoom); SDL clips what lies off screen. */
#include "adraw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/thread.h"

#define TB_W    26 /* tool bar button */
#define TB_H    22
#define TB_GAP  2
#define TB_TOP  8
#define HANDLE  7
#define LBL_GAP 4

static const char *const tb_keys[VW_TOOL_N] = {"S", "P", "L", "R", "E", "G", "F", "T"};

void vw_adraw_format_length(char *out, size_t n, double um, double px)
{
    if (um < 0)
        snprintf(out, n, "%.1f px", px);
    else if (um >= 1000)
        snprintf(out, n, "%.3f mm", um / 1000);
    else
        snprintf(out, n, "%.1f \xc2\xb5m", um);
}

void vw_adraw_format_area(char *out, size_t n, double um2, double px2)
{
    if (um2 < 0)
        snprintf(out, n, "%.0f px\xc2\xb2", px2);
    else if (um2 >= 1e5)
        snprintf(out, n, "%.4f mm\xc2\xb2", um2 / 1e6);
    else
        snprintf(out, n, "%.0f \xc2\xb5m\xc2\xb2", um2);
}

static void set_color(SDL_Renderer *ren, uint32_t rgb)
{
    SDL_SetRenderDrawColor(ren, rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255, 255);
}

/* A 2-px polyline through @p p (screen), closed when @p closed. */
static void polyline(SDL_Renderer *ren, const SDL_FPoint *p, int n, int closed)
{
    static const float off[3][2] = {{0, 0}, {1, 0}, {0, 1}};
    SDL_FPoint seg[2];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i + 1 < n + (closed && n > 2); i++) {
            seg[0] = p[i];
            seg[1] = p[(i + 1) % n];
            seg[0].x += off[k][0];
            seg[0].y += off[k][1];
            seg[1].x += off[k][0];
            seg[1].y += off[k][1];
            SDL_RenderDrawLinesF(ren, seg, 2);
        }
}

static void box(SDL_Renderer *ren, float x, float y, int s, uint32_t fill)
{
    SDL_FRect r = {x - s / 2.0f - 1, y - s / 2.0f - 1, (float)s + 2, (float)s + 2};
    SDL_SetRenderDrawColor(ren, 0, 0, 0, 255);
    SDL_RenderFillRectF(ren, &r);
    SDL_FRect in = {x - s / 2.0f, y - s / 2.0f, (float)s, (float)s};
    set_color(ren, fill);
    SDL_RenderFillRectF(ren, &in);
}

static SDL_FPoint scr(const vw_view *v, vw_pt p)
{
    SDL_FPoint s = {(float)((p.x - v->x) * v->zoom), (float)((p.y - v->y) * v->zoom)};
    return s;
}

/* The shape's outline (or points) on screen; @return count, *out malloc'd. */
static int screen_pts(const vw_annot *a, const vw_view *v, SDL_FPoint **out, int *closed)
{
    vw_pt *o = NULL;
    int n;
    *closed = vw_annot_closed(a->type);
    if (*closed) {
        n = vw_annot_outline(a, &o);
    } else {
        n = a->npts;
        o = a->pts;
    }
    *out = n > 0 ? calloc((size_t)n, sizeof(**out)) : NULL;
    if (*out)
        for (int i = 0; i < n; i++)
            (*out)[i] = scr(v, o[i]);
    if (*closed)
        free(o);
    return *out ? n : 0;
}

static void measure_text(const vw_annots *s, const vw_annot *a, char *out, size_t n)
{
    vw_measure m;
    vw_annot_measure(s, a, &m);
    if (a->type == VW_AN_LINE)
        vw_adraw_format_length(out, n, m.has_um ? m.length_um : -1, m.length_px);
    else
        vw_adraw_format_area(out, n, m.has_um ? m.area_um2 : -1, m.area_px2);
}

static void draw_one(SDL_Renderer *ren, vw_overlay *ov, const vw_edit *e, const vw_annot *a,
                     const vw_view *v, int selected, const char *typing)
{
    if (a->npts < 1)
        return;
    SDL_FPoint *p;
    int closed;
    int n = screen_pts(a, v, &p, &closed);
    if (!n)
        return;
    SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_NONE);
    float minx = p[0].x, miny = p[0].y;
    for (int i = 1; i < n; i++) {
        minx = fminf(minx, p[i].x);
        miny = fminf(miny, p[i].y);
    }
    if (a->type == VW_AN_POINT || a->type == VW_AN_TEXT) {
        box(ren, p[0].x, p[0].y, a->type == VW_AN_POINT ? 9 : 5, a->color);
    } else {
        if (selected) { /* a dark halo makes the selection stand out */
            SDL_SetRenderDrawColor(ren, 0, 0, 0, 255);
            SDL_FPoint *q = malloc((size_t)n * sizeof(*q));
            if (q) {
                for (int i = 0; i < n; i++)
                    q[i] = (SDL_FPoint){p[i].x + 1, p[i].y + 1};
                polyline(ren, q, n, closed);
                free(q);
            }
        }
        set_color(ren, a->color);
        polyline(ren, p, n, closed);
    }
    int lh = vw_overlay_line_height(ov);
    char buf[400];
    if (a->type == VW_AN_TEXT) {
        /* the text itself, right of its anchor */
        const char *t = typing ? typing : a->label;
        snprintf(buf, sizeof(buf), "%s%s", t, typing ? "|" : "");
        vw_overlay_label(ov, buf, (int)p[0].x + 6, (int)p[0].y - lh / 2, a->color);
        if (*a->author)
            vw_overlay_label(ov, a->author, (int)p[0].x + 6, (int)p[0].y + lh / 2 + 2, 0xdddddd);
    } else {
        /* "author: label" above the shape's top-left */
        const char *lbl = typing ? typing : a->label;
        snprintf(buf, sizeof(buf), "%s%s%s%s%s%s", a->author,
                 *a->author && (*lbl || typing) ? ": " : "", lbl, typing ? "|" : "",
                 *a->cls ? "  \xc2\xb7 " : "", a->cls);
        if (*buf)
            vw_overlay_label(ov, buf, (int)minx, (int)miny - lh - LBL_GAP, a->color);
    }
    char m[64];
    if (a->type == VW_AN_LINE && n >= 2) {
        measure_text(e->annots, a, m, sizeof(m));
        SDL_FPoint mid = {(p[0].x + p[n - 1].x) / 2, (p[0].y + p[n - 1].y) / 2};
        vw_overlay_label(ov, m, (int)mid.x + 8, (int)mid.y + 4, 0xffffff);
    } else if (closed && selected) {
        measure_text(e->annots, a, m, sizeof(m));
        vw_overlay_label(ov, m, (int)minx, (int)miny - 2 * lh - LBL_GAP - 2, 0xffffff);
    }
    if (selected) {
        vw_pt h[4];
        if (a->type == VW_AN_RECT || a->type == VW_AN_ELLIPSE) {
            double x0 = a->pts[0].x, y0 = a->pts[0].y, x1 = a->pts[1].x, y1 = a->pts[1].y;
            h[0] = (vw_pt){x0, y0};
            h[1] = (vw_pt){x1, y0};
            h[2] = (vw_pt){x1, y1};
            h[3] = (vw_pt){x0, y1};
            for (int i = 0; i < 4; i++) {
                SDL_FPoint s = scr(v, h[i]);
                box(ren, s.x, s.y, HANDLE, 0xffffff);
            }
        } else if (a->npts <= 256) {
            for (int i = 0; i < a->npts; i++) {
                SDL_FPoint s = scr(v, a->pts[i]);
                box(ren, s.x, s.y, HANDLE, 0xffffff);
            }
        }
    }
    free(p);
}

static void draw_toolbar(SDL_Renderer *ren, vw_overlay *ov, const vw_edit *e, int w)
{
    int x0 = w - 10 - VW_TOOL_N * (TB_W + TB_GAP);
    for (int i = 0; i < VW_TOOL_N; i++) {
        SDL_Rect r = {x0 + i * (TB_W + TB_GAP), TB_TOP, TB_W, TB_H};
        SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_BLEND);
        if ((int)e->tool == i)
            SDL_SetRenderDrawColor(ren, 230, 230, 230, 230);
        else
            SDL_SetRenderDrawColor(ren, 0, 0, 0, 150);
        SDL_RenderFillRect(ren, &r);
        vw_overlay_label(ov, tb_keys[i], r.x + 8, r.y + 2, (int)e->tool == i ? 0x000000 : 0xffffff);
    }
}

int vw_adraw_toolbar_hit(int w, int x, int y)
{
    int x0 = w - 10 - VW_TOOL_N * (TB_W + TB_GAP);
    if (y < TB_TOP || y >= TB_TOP + TB_H || x < x0)
        return -1;
    int i = (x - x0) / (TB_W + TB_GAP);
    return i < VW_TOOL_N && (x - x0) % (TB_W + TB_GAP) < TB_W ? i : -1;
}

void vw_adraw(SDL_Renderer *ren, vw_overlay *ov, const vw_edit *e, const vw_view *v, int toolbar)
{
    const vw_annots *s = e->annots;
    const char *typing_label = e->typing == VW_TYPING_LABEL ? e->text : NULL;
    for (size_t i = 0; i < s->n; i++) {
        const vw_annot *a = s->v[i];
        int sel = a->key == e->sel;
        draw_one(ren, ov, e, a, v, sel, sel ? typing_label : NULL);
    }
    if (e->draft) {
        const vw_annot *d = e->draft;
        draw_one(ren, ov, e, d, v, 0, e->typing == VW_TYPING_TEXT ? e->text : NULL);
        if (d->type == VW_AN_POLYGON && d->npts >= 1) {
            SDL_FPoint rb[3] = {
                scr(v, d->pts[d->npts - 1]), {(float)e->hx, (float)e->hy}, scr(v, d->pts[0])};
            set_color(ren, d->color);
            SDL_RenderDrawLinesF(ren, rb, d->npts >= 2 ? 3 : 2);
        }
    }
    if (toolbar)
        draw_toolbar(ren, ov, e, v->w);
    if (e->status[0] && cs_clock_ns() < e->status_until) {
        int tw = vw_overlay_label(ov, e->status, -10000, -10000, 0xffffff); /* measure */
        vw_overlay_label(ov, e->status, v->w / 2 - tw / 2, TB_TOP + TB_H + 8, 0xffffff);
    }
}
