/* core/tiles: DeepZoom geometry and tile production for one slide.
 *
 * Level choice mirrors openslide-python's DeepZoomGenerator so that tiles
 * line up with OpenSlide's own rendering: the source level is the one
 * openslide_get_best_level_for_downsample() picks, the level rectangle is
 * rounded the same way, and the whole rectangle is scaled to the tile.
 * Per-thread TurboJPEG state hangs off a pthread key owned by the cs_tiles. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"
#include "cs/jpeg.h"
#include "cs/tiles.h"
#include "resample.h"

#define MAX_DZ_LEVELS 64
/* Above this many canvas pixels a region is rendered in quadrants. */
#define MAX_CANVAS_PIXELS (4096 * 4096)

typedef struct codec_node {
    cs_jpeg *jpeg;
    struct codec_node *next;
} codec_node;

struct cs_tiles {
    cs_slide *slide;
    int tile, overlap, quality;
    int nz;
    int64_t zw[MAX_DZ_LEVELS], zh[MAX_DZ_LEVELS];
    int64_t w0, h0;
    pthread_key_t key;
    pthread_mutex_t codecs_lock;
    codec_node *codecs;
};

static cs_jpeg *thread_codec(cs_tiles *t)
{
    codec_node *n = pthread_getspecific(t->key);
    if (n)
        return n->jpeg;
    n = calloc(1, sizeof(*n));
    if (!n || cs_jpeg_new(&n->jpeg) < 0) {
        free(n);
        return NULL;
    }
    pthread_mutex_lock(&t->codecs_lock);
    n->next = t->codecs;
    t->codecs = n;
    pthread_mutex_unlock(&t->codecs_lock);
    pthread_setspecific(t->key, n);
    return n->jpeg;
}

int cs_tiles_new(cs_tiles **out, cs_slide *slide, const cs_tiles_opts *opts)
{
    cs_tiles_opts o = CS_TILES_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.quality < 1 || o.quality > 100)
        return cs_error_set(CS_EINVAL, "JPEG quality %d outside 1-100", o.quality);
    cs_tiles *t = calloc(1, sizeof(*t));
    if (!t)
        return cs_error_set(CS_ENOMEM, "out of memory");
    t->slide = slide;
    t->quality = o.quality;
    cs_slide_level l0;
    cs_slide_get_level(slide, 0, &l0);
    t->w0 = l0.width;
    t->h0 = l0.height;
    /* Default geometry: the stored tile size, no overlap, when stored tiles
     * can pass through; else openslide-python's 254 + 1. */
    int pass = l0.raw == CS_SLIDE_RAW_JPEG && l0.tile_width == l0.tile_height &&
               l0.tile_width >= 64 && l0.tile_width <= 4096;
    t->tile = o.tile_size > 0 ? o.tile_size : (pass ? l0.tile_width : 254);
    t->overlap = o.overlap >= 0 ? o.overlap : (pass && t->tile == l0.tile_width ? 0 : 1);
    if (t->tile < 1 || t->tile > 8192 || t->overlap > t->tile / 2) {
        free(t);
        return cs_error_set(CS_EINVAL, "bad tile geometry %d + %d", o.tile_size, o.overlap);
    }
    /* levels: halve with rounding up until 1x1, then reverse */
    int64_t w = t->w0, h = t->h0;
    int64_t tw[MAX_DZ_LEVELS], th[MAX_DZ_LEVELS];
    int n = 0;
    tw[n] = w, th[n] = h, n++;
    while ((w > 1 || h > 1) && n < MAX_DZ_LEVELS) {
        w = (w + 1) / 2 > 0 ? (w + 1) / 2 : 1;
        h = (h + 1) / 2 > 0 ? (h + 1) / 2 : 1;
        tw[n] = w, th[n] = h, n++;
    }
    t->nz = n;
    for (int i = 0; i < n; i++) {
        t->zw[i] = tw[n - 1 - i];
        t->zh[i] = th[n - 1 - i];
    }
    pthread_key_create(&t->key, NULL);
    pthread_mutex_init(&t->codecs_lock, NULL);
    *out = t;
    return 0;
}

void cs_tiles_free(cs_tiles *t)
{
    if (!t)
        return;
    codec_node *n = t->codecs;
    while (n) {
        codec_node *next = n->next;
        cs_jpeg_free(n->jpeg);
        free(n);
        n = next;
    }
    pthread_key_delete(t->key);
    pthread_mutex_destroy(&t->codecs_lock);
    free(t);
}

int cs_tiles_tile_size(const cs_tiles *t)
{
    return t->tile;
}

int cs_tiles_overlap(const cs_tiles *t)
{
    return t->overlap;
}

int cs_tiles_quality(const cs_tiles *t)
{
    return t->quality;
}

int cs_tiles_level_count(const cs_tiles *t)
{
    return t->nz;
}

int cs_tiles_level_info(const cs_tiles *t, int level, int64_t *w, int64_t *h, int64_t *cols,
                        int64_t *rows)
{
    if (level < 0 || level >= t->nz)
        return cs_error_set(CS_ERANGE, "DeepZoom level %d out of range 0-%d", level, t->nz - 1);
    if (w)
        *w = t->zw[level];
    if (h)
        *h = t->zh[level];
    if (cols)
        *cols = (t->zw[level] + t->tile - 1) / t->tile;
    if (rows)
        *rows = (t->zh[level] + t->tile - 1) / t->tile;
    return 0;
}

/* ---- rendering ---- */

/* Render level pixels (lx, ly, lw, lh; fractional) of @p level into dst. */
static int render_level(cs_tiles *t, uint8_t *dst, size_t stride, int ow, int oh, int level,
                        double lx, double ly, double lw, double lh, double f);

/* Decode the stored tiles covering the level rectangle at 1/denom. */
static int render_from_jpeg(cs_tiles *t, uint8_t *dst, size_t stride, int ow, int oh,
                            const cs_slide_level *l, int level, double lx, double ly, double lw,
                            double lh, int denom)
{
    cs_jpeg *j = thread_codec(t);
    if (!j)
        return cs_error_set(CS_ENOMEM, "cannot create JPEG codec");
    int T = l->tile_width, TH = l->tile_height;
    int64_t c0 = (int64_t)floor(lx) / T, r0 = (int64_t)floor(ly) / TH;
    int64_t c1 = ((int64_t)ceil(lx + lw) - 1) / T, r1 = ((int64_t)ceil(ly + lh) - 1) / TH;
    int64_t maxc = (l->width + T - 1) / T - 1, maxr = (l->height + TH - 1) / TH - 1;
    if (c1 > maxc)
        c1 = maxc;
    if (r1 > maxr)
        r1 = maxr;
    int st = T / denom, sth = TH / denom;
    int cw = (int)(c1 - c0 + 1) * st, ch = (int)(r1 - r0 + 1) * sth;
    size_t cstride = (size_t)cw * 3;
    uint8_t *canvas = malloc(cstride * (size_t)ch);
    if (!canvas)
        return cs_error_set(CS_ENOMEM, "out of memory for a %dx%d canvas", cw, ch);
    int r = 0;
    for (int64_t row = r0; row <= r1 && r == 0; row++) {
        for (int64_t col = c0; col <= c1 && r == 0; col++) {
            uint8_t *at = canvas + (size_t)(row - r0) * sth * cstride + (size_t)(col - c0) * st * 3;
            cs_buf *raw;
            r = cs_slide_read_raw_tile(t->slide, level, col, row, &raw);
            if (r == CS_ENOTFOUND) { /* empty tile in a sparse slide: white */
                for (int y = 0; y < sth; y++)
                    memset(at + (size_t)y * cstride, 255, (size_t)st * 3);
                r = 0;
                continue;
            }
            if (r < 0)
                break;
            int jw, jh;
            r = cs_jpeg_size(j, cs_buf_data(raw), cs_buf_size(raw), &jw, &jh);
            if (r == 0 && (jw < T || jh < TH))
                r = cs_error_set(CS_EFORMAT, "stored tile %lld,%lld is %dx%d, expected %dx%d",
                                 (long long)col, (long long)row, jw, jh, T, TH);
            if (r == 0 && (jw > T || jh > TH)) {
                /* larger than the grid: decode aside and copy the grid part */
                int sw = (jw + denom - 1) / denom, sh = (jh + denom - 1) / denom;
                uint8_t *tmp = malloc((size_t)sw * sh * 3);
                r = tmp ? cs_jpeg_decode_rgb(j, tmp, (size_t)sw * 3, cs_buf_data(raw),
                                             cs_buf_size(raw), denom)
                        : CS_ENOMEM;
                for (int y = 0; r == 0 && y < sth; y++)
                    memcpy(at + (size_t)y * cstride, tmp + (size_t)y * sw * 3, (size_t)st * 3);
                free(tmp);
            } else if (r == 0) {
                r = cs_jpeg_decode_rgb(j, at, cstride, cs_buf_data(raw), cs_buf_size(raw), denom);
            }
            cs_buf_unref(raw);
        }
    }
    if (r == 0)
        r = cs_resample_rgb(dst, stride, ow, oh, canvas, cstride, cw, ch, (lx - c0 * T) / denom,
                            (ly - r0 * TH) / denom, lw / denom, lh / denom);
    free(canvas);
    return r;
}

static int render_from_openslide(cs_tiles *t, uint8_t *dst, size_t stride, int ow, int oh,
                                 const cs_slide_level *l, int level, double lx, double ly,
                                 double lw, double lh)
{
    int64_t ix = (int64_t)floor(lx), iy = (int64_t)floor(ly);
    int64_t iw = (int64_t)ceil(lx + lw) - ix, ih = (int64_t)ceil(ly + lh) - iy;
    if (iw == ow && ih == oh && ix == lx && iy == ly) /* 1:1, straight into dst */
        return cs_slide_read_region(t->slide, dst, stride, (int64_t)llround(ix * l->downsample),
                                    (int64_t)llround(iy * l->downsample), level, ow, oh);
    size_t cstride = (size_t)iw * 3;
    uint8_t *canvas = malloc(cstride * (size_t)ih);
    if (!canvas)
        return cs_error_set(CS_ENOMEM, "out of memory for a region");
    int r = cs_slide_read_region(t->slide, canvas, cstride, (int64_t)llround(ix * l->downsample),
                                 (int64_t)llround(iy * l->downsample), level, (int)iw, (int)ih);
    if (r == 0)
        r = cs_resample_rgb(dst, stride, ow, oh, canvas, cstride, (int)iw, (int)ih, lx - ix,
                            ly - iy, lw, lh);
    free(canvas);
    return r;
}

static int render_level(cs_tiles *t, uint8_t *dst, size_t stride, int ow, int oh, int level,
                        double lx, double ly, double lw, double lh, double f)
{
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    int denom = 1;
    if (l.raw == CS_SLIDE_RAW_JPEG) {
        while (denom < 8 && denom * 2 <= f + 1e-9 && l.tile_width % (denom * 2) == 0 &&
               l.tile_height % (denom * 2) == 0)
            denom *= 2;
    }
    double canvas = (lw / denom + l.tile_width) * (lh / denom + l.tile_height);
    if (canvas > MAX_CANVAS_PIXELS && ow > 1 && oh > 1) {
        /* split the output in quadrants, each maps linearly to its part */
        int aw = ow / 2, ah = oh / 2;
        double sx = lw / ow, sy = lh / oh;
        int r = 0;
        for (int q = 0; q < 4 && r == 0; q++) {
            int qx = q & 1, qy = q >> 1;
            int qw = qx ? ow - aw : aw, qh = qy ? oh - ah : ah;
            r = render_level(t, dst + (size_t)(qy ? ah : 0) * stride + (size_t)(qx ? aw : 0) * 3,
                             stride, qw, qh, level, lx + (qx ? aw * sx : 0),
                             ly + (qy ? ah * sy : 0), qw * sx, qh * sy, f);
        }
        return r;
    }
    if (l.raw == CS_SLIDE_RAW_JPEG)
        return render_from_jpeg(t, dst, stride, ow, oh, &l, level, lx, ly, lw, lh, denom);
    return render_from_openslide(t, dst, stride, ow, oh, &l, level, lx, ly, lw, lh);
}

/* Level-0 rectangle at nominal downsample @p ds: choose the level like
 * DeepZoomGenerator and round the level rectangle the same way. */
static int render_ds(cs_tiles *t, uint8_t *rgb, size_t stride, int64_t x, int64_t y, int64_t w,
                     int64_t h, int ow, int oh, double ds)
{
    int level = cs_slide_best_level(t->slide, ds);
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    double lds = l.downsample;
    double lx = x / lds, ly = y / lds;
    /* DeepZoomGenerator: origin rounded down, size ceil(out * ds/lds), clipped */
    int64_t ix = (int64_t)floor(lx + 1e-9), iy = (int64_t)floor(ly + 1e-9);
    double lw = fmin(ceil(ow * ds / lds - 1e-9), (double)(l.width - (int64_t)ceil(lx - 1e-9)));
    double lh = fmin(ceil(oh * ds / lds - 1e-9), (double)(l.height - (int64_t)ceil(ly - 1e-9)));
    (void)w, (void)h;
    if (lw < 1)
        lw = 1;
    if (lh < 1)
        lh = 1;
    if (ix + lw > l.width)
        lw = (double)(l.width - ix);
    if (iy + lh > l.height)
        lh = (double)(l.height - iy);
    if (lw <= 0 || lh <= 0)
        return cs_error_set(CS_ERANGE, "region outside the slide");
    return render_level(t, rgb, stride, ow, oh, level, (double)ix, (double)iy, lw, lh, ds / lds);
}

int cs_tiles_render_rgb(cs_tiles *t, uint8_t *rgb, int64_t x, int64_t y, int64_t w, int64_t h,
                        int out_w, int out_h)
{
    if (w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || x < 0 || y < 0 || x + w > t->w0 ||
        y + h > t->h0)
        return cs_error_set(CS_ERANGE, "region %lld,%lld,%lld,%lld outside the %lldx%lld slide",
                            (long long)x, (long long)y, (long long)w, (long long)h,
                            (long long)t->w0, (long long)t->h0);
    double ds = fmin((double)w / out_w, (double)h / out_h);
    return render_ds(t, rgb, (size_t)out_w * 3, x, y, w, h, out_w, out_h, ds);
}

static int encode(cs_tiles *t, cs_buf **out, const uint8_t *rgb, int w, int h)
{
    cs_jpeg *j = thread_codec(t);
    if (!j)
        return cs_error_set(CS_ENOMEM, "cannot create JPEG codec");
    return cs_jpeg_encode_rgb(j, out, rgb, w, h, (size_t)w * 3, t->quality);
}

static int made_tile(cs_tiles *t, cs_buf **out, cs_tiles_how *how, int64_t x, int64_t y, int64_t w,
                     int64_t h, int ow, int oh, double ds)
{
    uint8_t *rgb = malloc((size_t)ow * (size_t)oh * 3);
    if (!rgb)
        return cs_error_set(CS_ENOMEM, "out of memory for a %dx%d tile", ow, oh);
    int r = render_ds(t, rgb, (size_t)ow * 3, x, y, w, h, ow, oh, ds);
    if (r == 0)
        r = encode(t, out, rgb, ow, oh);
    free(rgb);
    if (r == 0 && how) {
        cs_slide_level l;
        cs_slide_get_level(t->slide, cs_slide_best_level(t->slide, ds), &l);
        *how = l.raw == CS_SLIDE_RAW_JPEG ? CS_TILES_FROM_JPEG : CS_TILES_RENDERED;
    }
    return r;
}

/* Send the stored tile when the request is exactly one stored tile. */
static int try_passthrough(cs_tiles *t, cs_buf **out, cs_tiles_how *how, double ds, int64_t x,
                           int64_t y, int ow, int oh)
{
    int level = cs_slide_best_level(t->slide, ds);
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    if (l.raw != CS_SLIDE_RAW_JPEG || l.downsample != ds)
        return CS_ENOTFOUND;
    int64_t lx = (int64_t)(x / ds), ly = (int64_t)(y / ds);
    if ((double)lx * ds != (double)x || (double)ly * ds != (double)y || lx % l.tile_width ||
        ly % l.tile_height)
        return CS_ENOTFOUND;
    int64_t ew = l.width - lx < l.tile_width ? l.width - lx : l.tile_width;
    int64_t eh = l.height - ly < l.tile_height ? l.height - ly : l.tile_height;
    if (ow != ew || oh != eh)
        return CS_ENOTFOUND;
    cs_buf *raw;
    int r = cs_slide_read_raw_tile(t->slide, level, lx / l.tile_width, ly / l.tile_height, &raw);
    if (r < 0)
        return r;
    cs_jpeg *j = thread_codec(t);
    int jw = 0, jh = 0;
    r = j ? cs_jpeg_size(j, cs_buf_data(raw), cs_buf_size(raw), &jw, &jh) : CS_ENOMEM;
    if (r == 0 && jw == ow && jh == oh) {
        *out = raw;
        if (how)
            *how = CS_TILES_PASSTHROUGH;
        return 0;
    }
    if (r == 0 && jw >= ow && jh >= oh) {
        r = cs_jpeg_crop(j, out, cs_buf_data(raw), cs_buf_size(raw), ow, oh);
        if (r == 0 && how)
            *how = CS_TILES_CROPPED;
    } else if (r == 0) {
        r = CS_ENOTFOUND;
    }
    cs_buf_unref(raw);
    return r;
}

int cs_tiles_get_dzi(cs_tiles *t, cs_buf **out, cs_tiles_how *how, int level, int64_t col,
                     int64_t row)
{
    int64_t cols, rows;
    int r = cs_tiles_level_info(t, level, NULL, NULL, &cols, &rows);
    if (r < 0)
        return r;
    if (col < 0 || row < 0 || col >= cols || row >= rows)
        return cs_error_set(CS_ERANGE, "tile %lld_%lld out of range at level %d (%lldx%lld tiles)",
                            (long long)col, (long long)row, level, (long long)cols,
                            (long long)rows);
    int T = t->tile, ov = t->overlap;
    int64_t zx = col * T - (col ? ov : 0), zy = row * T - (row ? ov : 0);
    int64_t zw = (t->zw[level] - col * T < T ? t->zw[level] - col * T : T) + (col ? ov : 0) +
                 (col < cols - 1 ? ov : 0);
    int64_t zh = (t->zh[level] - row * T < T ? t->zh[level] - row * T : T) + (row ? ov : 0) +
                 (row < rows - 1 ? ov : 0);
    double ds = ldexp(1.0, t->nz - 1 - level);
    int64_t x0 = (int64_t)(zx * ds), y0 = (int64_t)(zy * ds);
    int64_t w0 = (int64_t)ceil(zw * ds), h0 = (int64_t)ceil(zh * ds);
    if (x0 + w0 > t->w0)
        w0 = t->w0 - x0;
    if (y0 + h0 > t->h0)
        h0 = t->h0 - y0;
    r = try_passthrough(t, out, how, ds, x0, y0, (int)zw, (int)zh);
    if (r != CS_ENOTFOUND)
        return r;
    return made_tile(t, out, how, x0, y0, w0, h0, (int)zw, (int)zh, ds);
}

int cs_tiles_get_region(cs_tiles *t, cs_buf **out, cs_tiles_how *how, int64_t x, int64_t y,
                        int64_t w, int64_t h, int out_w, int out_h)
{
    if (w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || x < 0 || y < 0 || x + w > t->w0 ||
        y + h > t->h0)
        return cs_error_set(CS_ERANGE, "region %lld,%lld,%lld,%lld outside the %lldx%lld slide",
                            (long long)x, (long long)y, (long long)w, (long long)h,
                            (long long)t->w0, (long long)t->h0);
    double ds = fmin((double)w / out_w, (double)h / out_h);
    /* a power-of-two scale on the stored grid can pass through */
    double p2 = ldexp(1.0, (int)lround(log2(ds > 1 ? ds : 1)));
    if (fabs(p2 * out_w - (double)w) < 1 && fabs(p2 * out_h - (double)h) < 1) {
        int r = try_passthrough(t, out, how, p2, x, y, out_w, out_h);
        if (r != CS_ENOTFOUND)
            return r;
    }
    return made_tile(t, out, how, x, y, w, h, out_w, out_h, ds);
}
