/* viewer/render: see render.h.
 *
 * For each level it draws from, the compositor builds two axis tables (one
 * entry per screen column and per screen row) saying which tile holds the
 * pixel centre ("core"), which tiles and pixels its two bilinear taps read,
 * and the tap weight; and a grid of the loaded tiles' pixels over the tiles
 * the tables touch. A pixel then costs four table reads and two lerps. A tap
 * whose tile is not loaded falls back to the core tile's nearest pixel. */
#include "render.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

typedef struct {
    int32_t core;   /* tile holding the pixel centre; -1 outside the slide */
    int32_t ta, tb; /* tiles of the two taps */
    int32_t la, lb; /* tap pixels inside ta, tb */
    int32_t ka, kb; /* the taps clamped into the core tile */
    uint32_t w;     /* weight of tap b, 0-256 */
} axis_ent;

typedef struct {
    const uint32_t *px; /* NULL: not loaded */
    int w;
} cell;

typedef struct {
    int built, grid_built;
    axis_ent *cols, *rows;
    int64_t gc0, gc1, gr0, gr1; /* tile range of the grid */
    cell *grid;
    size_t grid_cap;
} level_ctx;

typedef struct {
    int64_t tile;
    int s, e; /* screen span [s, e) */
} span;

typedef struct {
    vw_key key;
    double d;
} ranked;

struct vw_render {
    vw_geom g;
    int base;
    int cap_w, cap_h;
    level_ctx lv[VW_MAX_LEVELS];
    span *cspans, *rspans;
    vw_key *want;
    size_t want_cap;
    ranked *rank;
    size_t rank_cap;
};

int vw_render_new(vw_render **out, const vw_geom *g, int base_level)
{
    vw_render *r = calloc(1, sizeof(*r));
    if (!r)
        return cs_error_set(CS_ENOMEM, "out of memory");
    r->g = *g;
    r->base = base_level;
    *out = r;
    return 0;
}

void vw_render_free(vw_render *r)
{
    if (!r)
        return;
    for (int i = 0; i < VW_MAX_LEVELS; i++) {
        free(r->lv[i].cols);
        free(r->lv[i].rows);
        free(r->lv[i].grid);
    }
    free(r->cspans);
    free(r->rspans);
    free(r->want);
    free(r->rank);
    free(r);
}

static int ensure_size(vw_render *r, int w, int h)
{
    if (w <= r->cap_w && h <= r->cap_h)
        return 0;
    int nw = w > r->cap_w ? w : r->cap_w, nh = h > r->cap_h ? h : r->cap_h;
    for (int i = 0; i < VW_MAX_LEVELS; i++) {
        axis_ent *c = realloc(r->lv[i].cols, (size_t)nw * sizeof(*c));
        if (c)
            r->lv[i].cols = c;
        axis_ent *rw = realloc(r->lv[i].rows, (size_t)nh * sizeof(*rw));
        if (rw)
            r->lv[i].rows = rw;
        if (!c || !rw)
            return CS_ENOMEM;
    }
    span *cs = realloc(r->cspans, (size_t)(nw + 1) * sizeof(*cs));
    if (cs)
        r->cspans = cs;
    span *rs = realloc(r->rspans, (size_t)(nh + 1) * sizeof(*rs));
    if (rs)
        r->rspans = rs;
    if (!cs || !rs)
        return CS_ENOMEM;
    r->cap_w = nw;
    r->cap_h = nh;
    return 0;
}

/* ---- axis tables ---- */

static int32_t clampi(int64_t v, int64_t lo, int64_t hi)
{
    return (int32_t)(v < lo ? lo : v > hi ? hi : v);
}

/* Tile and local pixel for tap @p loc of tile @p c (origin @p z, @p zs pixels). */
static void tap(const vw_geom *g, int64_t count, int64_t len, int64_t c, int64_t z, int zs,
                int64_t loc, int32_t *tile, int32_t *local)
{
    if (loc >= 0 && loc < zs) {
        *tile = (int32_t)c;
        *local = (int32_t)loc;
        return;
    }
    int64_t gl = z + loc;
    gl = gl < 0 ? 0 : gl >= len ? len - 1 : gl;
    int64_t tc = gl / g->tile;
    if (tc >= count)
        tc = count - 1;
    *tile = (int32_t)tc;
    *local = (int32_t)(gl - (tc * g->tile - (tc ? g->overlap : 0)));
}

static void axis_build(const vw_geom *g, int level, int vertical, double v0, double zoom, int n,
                       axis_ent *e)
{
    double ds = vw_geom_downsample(g, level);
    double span0 = ds * g->tile;
    int64_t count = vertical ? g->rows[level] : g->cols[level];
    int64_t len = vertical ? g->lh[level] : g->lw[level];
    double full = (double)(vertical ? g->h0 : g->w0);
    int64_t cur = -1, z = 0, p0 = 0, s0 = 1;
    int zs = 1;
    for (int i = 0; i < n; i++) {
        axis_ent *a = &e[i];
        double X = v0 + (i + 0.5) / zoom;
        if (!(X >= 0 && X < full)) {
            a->core = -1;
            continue;
        }
        int64_t c = (int64_t)(X / span0);
        if (c >= count)
            c = count - 1;
        if (c != cur) {
            vw_tile_rect tr;
            vw_geom_tile_rect(g, level, vertical ? 0 : c, vertical ? c : 0, &tr);
            cur = c;
            z = vertical ? tr.zy : tr.zx;
            zs = vertical ? tr.zh : tr.zw;
            p0 = vertical ? tr.y0 : tr.x0;
            s0 = vertical ? tr.h0 : tr.w0;
            if (s0 < 1)
                s0 = 1;
        }
        double t = (X - (double)p0) * zs / (double)s0 - 0.5;
        double fl = floor(t);
        int64_t i0 = (int64_t)fl;
        a->core = (int32_t)c;
        a->ka = clampi(i0, 0, zs - 1);
        a->kb = clampi(i0 + 1, 0, zs - 1);
        tap(g, count, len, c, z, zs, i0, &a->ta, &a->la);
        tap(g, count, len, c, z, zs, i0 + 1, &a->tb, &a->lb);
        a->w = (uint32_t)((t - fl) * 256 + 0.5);
    }
}

static level_ctx *tables(vw_render *r, const vw_view *v, int level)
{
    level_ctx *L = &r->lv[level];
    if (!L->built) {
        axis_build(&r->g, level, 0, v->x, v->zoom, v->w, L->cols);
        axis_build(&r->g, level, 1, v->y, v->zoom, v->h, L->rows);
        L->built = 1;
        L->grid_built = 0;
    }
    return L;
}

/* Tile range [lo, hi] an axis table touches; 0 when it touches none. */
static int axis_range(const axis_ent *e, int n, int64_t *lo, int64_t *hi, int core_only)
{
    int64_t a = INT64_MAX, b = -1;
    for (int i = 0; i < n; i++) {
        if (e[i].core < 0)
            continue;
        int64_t l = core_only ? e[i].core : e[i].ta < e[i].core ? e[i].ta : e[i].core;
        int64_t h = core_only ? e[i].core : e[i].tb > e[i].core ? e[i].tb : e[i].core;
        if (l < a)
            a = l;
        if (h > b)
            b = h;
    }
    *lo = a;
    *hi = b;
    return b >= 0;
}

static level_ctx *grid(vw_render *r, vw_cache *c, const vw_view *v, int level)
{
    level_ctx *L = tables(r, v, level);
    if (L->grid_built)
        return L;
    L->grid_built = 1;
    if (!axis_range(L->cols, v->w, &L->gc0, &L->gc1, 0) ||
        !axis_range(L->rows, v->h, &L->gr0, &L->gr1, 0)) {
        L->gc0 = L->gr0 = 0;
        L->gc1 = L->gr1 = -1;
        return L;
    }
    size_t nc = (size_t)(L->gc1 - L->gc0 + 1), nr = (size_t)(L->gr1 - L->gr0 + 1);
    if (nc * nr > L->grid_cap) {
        cell *ng = realloc(L->grid, nc * nr * sizeof(*ng));
        if (!ng) {
            L->gc1 = L->gr1 = -1; /* draw nothing from this level */
            return L;
        }
        L->grid = ng;
        L->grid_cap = nc * nr;
    }
    for (size_t j = 0; j < nr; j++)
        for (size_t i = 0; i < nc; i++) {
            cell *ce = &L->grid[j * nc + i];
            vw_tile *t =
                vw_cache_get(c, vw_key_make(level, L->gc0 + (int64_t)i, L->gr0 + (int64_t)j));
            ce->px = t && t->state == VW_TILE_READY ? t->px : NULL;
            ce->w = ce->px ? t->w : 0;
            if (t)
                t->last_used = c->frame;
        }
    return L;
}

/* ---- drawing ---- */

static inline uint32_t lerp2(uint32_t a, uint32_t b, uint32_t w)
{
    uint32_t iw = 256 - w;
    uint32_t rb = (((a & 0xff00ffu) * iw + (b & 0xff00ffu) * w + 0x800080u) >> 8) & 0xff00ffu;
    uint32_t g = (((a & 0x00ff00u) * iw + (b & 0x00ff00u) * w + 0x008000u) >> 8) & 0x00ff00u;
    return rb | g;
}

static inline uint32_t px_at(const cell *ce, int32_t x, int32_t y)
{
    return ce->px[(size_t)y * (size_t)ce->w + (size_t)x];
}

/* Draw screen rectangle [sx0, sx1) x [sy0, sy1) from level @p L. */
static void draw_rect(const level_ctx *L, int sx0, int sx1, int sy0, int sy1, uint32_t *fb,
                      int pitch)
{
    if (L->gc1 < L->gc0)
        return;
    int64_t nc = L->gc1 - L->gc0 + 1;
    for (int y = sy0; y < sy1; y++) {
        const axis_ent *ry = &L->rows[y];
        if (ry->core < 0)
            continue;
        const cell *rowA = L->grid + (ry->ta - L->gr0) * nc;
        const cell *rowB = L->grid + (ry->tb - L->gr0) * nc;
        const cell *rowC = L->grid + (ry->core - L->gr0) * nc;
        uint32_t *out = fb + (size_t)y * (size_t)pitch;
        for (int x = sx0; x < sx1; x++) {
            const axis_ent *cx = &L->cols[x];
            if (cx->core < 0)
                continue;
            const cell *c00 = &rowA[cx->ta - L->gc0], *c01 = &rowA[cx->tb - L->gc0];
            const cell *c10 = &rowB[cx->ta - L->gc0], *c11 = &rowB[cx->tb - L->gc0];
            uint32_t v00, v01, v10, v11;
            if (c00->px && c01->px && c10->px && c11->px) {
                v00 = px_at(c00, cx->la, ry->la);
                v01 = px_at(c01, cx->lb, ry->la);
                v10 = px_at(c10, cx->la, ry->lb);
                v11 = px_at(c11, cx->lb, ry->lb);
            } else {
                const cell *cc = &rowC[cx->core - L->gc0];
                if (cc->px) {
                    v00 = c00->px ? px_at(c00, cx->la, ry->la) : px_at(cc, cx->ka, ry->ka);
                    v01 = c01->px ? px_at(c01, cx->lb, ry->la) : px_at(cc, cx->kb, ry->ka);
                    v10 = c10->px ? px_at(c10, cx->la, ry->lb) : px_at(cc, cx->ka, ry->kb);
                    v11 = c11->px ? px_at(c11, cx->lb, ry->lb) : px_at(cc, cx->kb, ry->kb);
                } else {
                    /* core missing (an ancestor's edge): use what there is */
                    uint32_t any;
                    if (c00->px)
                        any = px_at(c00, cx->la, ry->la);
                    else if (c01->px)
                        any = px_at(c01, cx->lb, ry->la);
                    else if (c10->px)
                        any = px_at(c10, cx->la, ry->lb);
                    else if (c11->px)
                        any = px_at(c11, cx->lb, ry->lb);
                    else
                        continue;
                    v00 = c00->px ? px_at(c00, cx->la, ry->la) : any;
                    v01 = c01->px ? px_at(c01, cx->lb, ry->la) : any;
                    v10 = c10->px ? px_at(c10, cx->la, ry->lb) : any;
                    v11 = c11->px ? px_at(c11, cx->lb, ry->lb) : any;
                }
            }
            out[x] = 0xff000000u | lerp2(lerp2(v00, v01, cx->w), lerp2(v10, v11, cx->w), ry->w);
        }
    }
}

/* Whether every tile the taps of screen rectangle [sx0, sx1) x [sy0, sy1)
 * read at level @p L is loaded. Tap tiles grow with the screen position, so
 * the range is given by the first and last column and row. */
static int rect_complete(const level_ctx *L, int sx0, int sx1, int sy0, int sy1)
{
    if (L->gc1 < L->gc0)
        return 0;
    const axis_ent *c0 = &L->cols[sx0], *c1 = &L->cols[sx1 - 1];
    const axis_ent *r0 = &L->rows[sy0], *r1 = &L->rows[sy1 - 1];
    int64_t a = c0->ta < c0->core ? c0->ta : c0->core, b = c1->tb > c1->core ? c1->tb : c1->core;
    int64_t p = r0->ta < r0->core ? r0->ta : r0->core, q = r1->tb > r1->core ? r1->tb : r1->core;
    int64_t nc = L->gc1 - L->gc0 + 1;
    for (int64_t row = p; row <= q; row++)
        for (int64_t col = a; col <= b; col++)
            if (!L->grid[(row - L->gr0) * nc + (col - L->gc0)].px)
                return 0;
    return 1;
}

/* Runs of equal core tile in an axis table. @return the number of runs. */
static int spans_of(const axis_ent *e, int n, span *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].core < 0)
            continue;
        if (k && out[k - 1].tile == e[i].core && out[k - 1].e == i) {
            out[k - 1].e = i + 1;
            continue;
        }
        out[k].tile = e[i].core;
        out[k].s = i;
        out[k].e = i + 1;
        k++;
    }
    return k;
}

static int ready(vw_cache *c, int level, int64_t col, int64_t row)
{
    vw_tile *t = vw_cache_get(c, vw_key_make(level, col, row));
    return t && t->state == VW_TILE_READY;
}

void vw_render_compose(vw_render *r, vw_cache *c, const vw_view *v, uint32_t *fb, int pitch,
                       vw_frame_stats *st)
{
    memset(st, 0, sizeof(*st));
    int z = vw_geom_level_for_zoom(&r->g, v->zoom);
    st->level = z;
    for (int y = 0; y < v->h; y++)
        for (int x = 0; x < v->w; x++)
            fb[(size_t)y * (size_t)pitch + (size_t)x] = 0xff000000u | VW_BACKGROUND;
    if (v->w < 1 || v->h < 1 || ensure_size(r, v->w, v->h) < 0)
        return;
    for (int i = 0; i < r->g.nlevels; i++)
        r->lv[i].built = 0;
    level_ctx *T = grid(r, c, v, z);
    int ncs = spans_of(T->cols, v->w, r->cspans), nrs = spans_of(T->rows, v->h, r->rspans);
    int covered = 1;
    for (int j = 0; j < nrs; j++) {
        const span *rs = &r->rspans[j];
        for (int i = 0; i < ncs; i++) {
            const span *cs = &r->cspans[i];
            st->n_visible++;
            vw_tile *t = vw_cache_get(c, vw_key_make(z, cs->tile, rs->tile));
            if (t && t->state == VW_TILE_READY) {
                st->n_ready++;
                st->bytes += t->bytes;
                draw_rect(T, cs->s, cs->e, rs->s, rs->e, fb, pitch);
                continue;
            }
            if (t && t->state == VW_TILE_FAILED)
                st->n_failed++;
            /* the finest loaded ancestor, over the base level */
            int found = -1;
            for (int l = z - 1; l >= 0 && found < 0; l--)
                if (ready(c, l, cs->tile >> (z - l), rs->tile >> (z - l)))
                    found = l;
            if (found < 0) {
                covered = 0;
                continue;
            }
            /* the base level under it only where the ancestor's taps miss */
            level_ctx *F = grid(r, c, v, found);
            if (found > r->base && r->base < z &&
                ready(c, r->base, cs->tile >> (z - r->base), rs->tile >> (z - r->base)) &&
                !rect_complete(F, cs->s, cs->e, rs->s, rs->e))
                draw_rect(grid(r, c, v, r->base), cs->s, cs->e, rs->s, rs->e, fb, pitch);
            draw_rect(F, cs->s, cs->e, rs->s, rs->e, fb, pitch);
        }
    }
    st->covered = covered;
}

/* ---- what to fetch ---- */

static int by_distance(const void *a, const void *b)
{
    double x = ((const ranked *)a)->d, y = ((const ranked *)b)->d;
    return x < y ? -1 : x > y;
}

static int push_key(vw_render *r, size_t *n, vw_key k)
{
    if (*n == r->want_cap) {
        size_t cap = r->want_cap ? r->want_cap * 2 : 256;
        vw_key *nw = realloc(r->want, cap * sizeof(*nw));
        if (!nw)
            return CS_ENOMEM;
        r->want = nw;
        r->want_cap = cap;
    }
    r->want[(*n)++] = k;
    return 0;
}

static int push_rank(vw_render *r, size_t *n, vw_key k, double d)
{
    if (*n == r->rank_cap) {
        size_t cap = r->rank_cap ? r->rank_cap * 2 : 256;
        ranked *nr = realloc(r->rank, cap * sizeof(*nr));
        if (!nr)
            return CS_ENOMEM;
        r->rank = nr;
        r->rank_cap = cap;
    }
    r->rank[*n].key = k;
    r->rank[*n].d = d;
    (*n)++;
    return 0;
}

static size_t wanted(vw_render *r, vw_cache *c, const vw_view *v, int ring, size_t *n_urgent)
{
    size_t n = 0;
    *n_urgent = 0;
    for (int l = 0; l <= r->base; l++)
        for (int64_t row = 0; row < r->g.rows[l]; row++)
            for (int64_t col = 0; col < r->g.cols[l]; col++) {
                vw_key k = vw_key_make(l, col, row);
                if (vw_cache_wants(c, k) && push_key(r, &n, k) < 0)
                    return *n_urgent = n;
            }
    *n_urgent = n; /* the prefetch levels are urgent too */
    if (v->w < 1 || v->h < 1 || ensure_size(r, v->w, v->h) < 0)
        return n;
    int z = vw_geom_level_for_zoom(&r->g, v->zoom);
    for (int i = 0; i < r->g.nlevels; i++)
        r->lv[i].built = 0;
    level_ctx *T = tables(r, v, z);
    int64_t c0, c1, r0, r1;
    if (!axis_range(T->cols, v->w, &c0, &c1, 1) || !axis_range(T->rows, v->h, &r0, &r1, 1))
        return n;
    double cx = v->w / 2.0, cy = v->h / 2.0;
    /* visible tiles by distance to the centre, then the ring */
    for (int pass = 0; pass < 2; pass++) {
        size_t nr = 0;
        int m = pass ? ring : 0;
        int64_t a0 = c0 - m < 0 ? 0 : c0 - m,
                a1 = c1 + m >= r->g.cols[z] ? r->g.cols[z] - 1 : c1 + m;
        int64_t b0 = r0 - m < 0 ? 0 : r0 - m,
                b1 = r1 + m >= r->g.rows[z] ? r->g.rows[z] - 1 : r1 + m;
        for (int64_t row = b0; row <= b1; row++)
            for (int64_t col = a0; col <= a1; col++) {
                if (pass && col >= c0 && col <= c1 && row >= r0 && row <= r1)
                    continue;
                vw_key k = vw_key_make(z, col, row);
                if (!vw_cache_wants(c, k))
                    continue;
                vw_tile_rect tr;
                vw_geom_tile_rect(&r->g, z, col, row, &tr);
                double dx = ((double)tr.x0 + tr.w0 / 2.0 - v->x) * v->zoom - cx;
                double dy = ((double)tr.y0 + tr.h0 / 2.0 - v->y) * v->zoom - cy;
                if (push_rank(r, &nr, k, dx * dx + dy * dy) < 0)
                    break;
            }
        qsort(r->rank, nr, sizeof(*r->rank), by_distance);
        for (size_t i = 0; i < nr; i++)
            if (push_key(r, &n, r->rank[i].key) < 0)
                break;
        if (!pass)
            *n_urgent = n;
        if (!ring)
            break;
    }
    return n;
}

size_t vw_render_wanted(vw_render *r, vw_cache *c, const vw_view *v, int ring, const vw_key **out,
                        size_t *n_urgent)
{
    size_t n = wanted(r, c, v, ring, n_urgent);
    *out = r->want; /* after the pushes: they may have moved the array */
    return n;
}

/* ---- view ---- */

double vw_view_fit_zoom(const vw_view *v, const vw_geom *g)
{
    double zx = (double)v->w / (double)g->w0, zy = (double)v->h / (double)g->h0;
    return zx < zy ? zx : zy;
}

void vw_view_fit(vw_view *v, const vw_geom *g)
{
    v->zoom = vw_view_fit_zoom(v, g);
    v->x = ((double)g->w0 - v->w / v->zoom) / 2;
    v->y = ((double)g->h0 - v->h / v->zoom) / 2;
}

void vw_view_zoom_at(vw_view *v, const vw_geom *g, double factor, double sx, double sy)
{
    double px = v->x + sx / v->zoom, py = v->y + sy / v->zoom;
    double z = v->zoom * factor;
    double lo = vw_view_fit_zoom(v, g) / 2, hi = 16;
    if (lo > hi)
        lo = hi;
    z = z < lo ? lo : z > hi ? hi : z;
    v->zoom = z;
    v->x = px - sx / z;
    v->y = py - sy / z;
    vw_view_clamp(v, g);
}

void vw_view_clamp(vw_view *v, const vw_geom *g)
{
    double vw = v->w / v->zoom, vh = v->h / v->zoom;
    double xmin = -0.75 * vw, xmax = (double)g->w0 - 0.25 * vw;
    double ymin = -0.75 * vh, ymax = (double)g->h0 - 0.25 * vh;
    v->x = v->x < xmin ? xmin : v->x > xmax ? xmax : v->x;
    v->y = v->y < ymin ? ymin : v->y > ymax ? ymax : v->y;
}
