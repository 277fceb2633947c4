/* viewer/geom: see geom.h. */
#include "geom.h"

#include <math.h>

#include "cs/err.h"

int vw_geom_init(vw_geom *g, int64_t w0, int64_t h0, int tile, int overlap)
{
    if (w0 < 1 || h0 < 1 || w0 >= (1ll << 40) || h0 >= (1ll << 40))
        return cs_error_set(CS_EINVAL, "bad slide size %lldx%lld", (long long)w0, (long long)h0);
    if (tile < 1 || tile > 8192 || overlap < 0 || overlap > tile / 2)
        return cs_error_set(CS_EINVAL, "bad DeepZoom tile geometry %d + %d", tile, overlap);
    g->w0 = w0;
    g->h0 = h0;
    g->tile = tile;
    g->overlap = overlap;
    int64_t tw[VW_MAX_LEVELS], th[VW_MAX_LEVELS];
    int n = 0;
    int64_t w = w0, h = h0;
    tw[n] = w, th[n] = h, n++;
    while ((w > 1 || h > 1) && n < VW_MAX_LEVELS) {
        w = (w + 1) / 2;
        h = (h + 1) / 2;
        tw[n] = w, th[n] = h, n++;
    }
    g->nlevels = n;
    for (int i = 0; i < n; i++) {
        g->lw[i] = tw[n - 1 - i];
        g->lh[i] = th[n - 1 - i];
        g->cols[i] = (g->lw[i] + tile - 1) / tile;
        g->rows[i] = (g->lh[i] + tile - 1) / tile;
        if (g->cols[i] >= (1 << 28) || g->rows[i] >= (1 << 28))
            return cs_error_set(CS_EINVAL, "slide too large for the tile grid");
    }
    return 0;
}

double vw_geom_downsample(const vw_geom *g, int level)
{
    return ldexp(1.0, g->nlevels - 1 - level);
}

/* One axis of vw_geom_tile_rect(), as core/tiles computes it. */
static void axis(const vw_geom *g, int64_t n, int64_t len, int64_t full, double ds, int64_t i,
                 int64_t *z, int *zs, int64_t *p0, int64_t *s0)
{
    int T = g->tile, ov = g->overlap;
    *z = i * T - (i ? ov : 0);
    int64_t core = len - i * T < T ? len - i * T : T;
    *zs = (int)(core + (i ? ov : 0) + (i < n - 1 ? ov : 0));
    *p0 = (int64_t)((double)*z * ds);
    *s0 = (int64_t)ceil((double)*zs * ds);
    if (*p0 + *s0 > full)
        *s0 = full - *p0;
}

void vw_geom_tile_rect(const vw_geom *g, int level, int64_t col, int64_t row, vw_tile_rect *out)
{
    double ds = vw_geom_downsample(g, level);
    axis(g, g->cols[level], g->lw[level], g->w0, ds, col, &out->zx, &out->zw, &out->x0, &out->w0);
    axis(g, g->rows[level], g->lh[level], g->h0, ds, row, &out->zy, &out->zh, &out->y0, &out->h0);
}

int vw_geom_level_for_zoom(const vw_geom *g, double zoom)
{
    for (int z = 0; z < g->nlevels; z++)
        if (1.0 / vw_geom_downsample(g, z) >= zoom * (1 - 1e-9))
            return z;
    return g->nlevels - 1;
}

int vw_geom_base_level(const vw_geom *g, int max_px)
{
    int best = 0;
    for (int z = 0; z < g->nlevels; z++)
        if (g->lw[z] <= max_px && g->lh[z] <= max_px)
            best = z;
    return best;
}
