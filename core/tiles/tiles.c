/* core/tiles: DeepZoom geometry and tile production for one slide.
 *
 * Level choice mirrors openslide-python's DeepZoomGenerator so that tiles
 * line up with OpenSlide's own rendering: the source level is the one
 * openslide_get_best_level_for_downsample() picks, the level rectangle is
 * rounded the same way, and the whole rectangle is scaled to the tile.
 * Per-thread TurboJPEG state hangs off a pthread key owned by the cs_tiles. */
#include "cs/tiles.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"
#include "cs/jpeg.h"

#include "resample.h"

#define MAX_DZ_LEVELS 64

/* Per-thread state: TurboJPEG handles and resampling coefficients. */
typedef struct codec_node {
    cs_jpeg *jpeg;
    cs_resample_cache *coeffs;
    struct codec_node *next;
} codec_node;

struct cs_tiles {
    cs_slide *slide;
    cs_pool *pool;
    int tile, overlap, quality;
    int nz;
    int64_t zw[MAX_DZ_LEVELS], zh[MAX_DZ_LEVELS];
    int64_t w0, h0;
    pthread_key_t key;
    pthread_mutex_t codecs_lock;
    codec_node *codecs;
};

static codec_node *thread_state(cs_tiles *t)
{
    codec_node *n = pthread_getspecific(t->key);
    if (n)
        return n;
    n = calloc(1, sizeof(*n));
    if (!n || cs_jpeg_new(&n->jpeg) < 0 || cs_resample_cache_new(&n->coeffs) < 0) {
        if (n)
            cs_jpeg_free(n->jpeg);
        free(n);
        return NULL;
    }
    pthread_mutex_lock(&t->codecs_lock);
    n->next = t->codecs;
    t->codecs = n;
    pthread_mutex_unlock(&t->codecs_lock);
    pthread_setspecific(t->key, n);
    return n;
}

static cs_jpeg *thread_codec(cs_tiles *t)
{
    codec_node *n = thread_state(t);
    return n ? n->jpeg : NULL;
}

static cs_resample_cache *thread_coeffs(cs_tiles *t)
{
    codec_node *n = thread_state(t);
    return n ? n->coeffs : NULL;
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
    t->pool = o.pool;
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
        cs_resample_cache_free(n->coeffs);
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

/* ---- rendering ----
 *
 * A level rectangle (fractional) becomes an output image in two steps, as
 * Pillow's Image.thumbnail does it inside DeepZoomGenerator: a box reduce by
 * r = floor(scale / 2), then Lanczos-3 for the rest. The reduce is done
 * where it is cheapest: by libjpeg-turbo's DCT scaling (1/2, 1/4, 1/8) while
 * decoding stored tiles, and by summing pixels into a reduced canvas for any
 * factor left over, one stored tile (or one OpenSlide chunk) at a time, so
 * memory stays at about the output size however coarse the level. */

#define CHUNK 2048 /* OpenSlide reads, in level pixels */

typedef struct {
    int d;            /* DCT scale denominator of the patches */
    int kx, ky;       /* box reduce left after the DCT */
    int64_t x0, y0;   /* region origin, in 1/d pixels */
    int64_t x1, y1;   /* region end (exclusive), in 1/d pixels */
    int rw, rh;       /* reduced canvas size */
    int64_t l0x, l0y; /* OpenSlide path: level-0 point of the region origin */
    uint8_t *canvas;
    uint32_t *acc; /* r, g, b, count per reduced pixel when kx*ky > 1 */
} region;

/* Add a patch of 1/d pixels whose top-left is (px, py) in 1/d space. */
static void put_patch(region *g, const uint8_t *buf, size_t stride, int64_t px, int64_t py, int pw,
                      int ph)
{
    int64_t ax = px > g->x0 ? px : g->x0, ay = py > g->y0 ? py : g->y0;
    int64_t bx = px + pw < g->x1 ? px + pw : g->x1, by = py + ph < g->y1 ? py + ph : g->y1;
    for (int64_t y = ay; y < by; y++) {
        const uint8_t *src = buf + (size_t)(y - py) * stride + (size_t)(ax - px) * 3;
        if (!g->acc) {
            memcpy(g->canvas + ((size_t)(y - g->y0) * g->rw + (size_t)(ax - g->x0)) * 3, src,
                   (size_t)(bx - ax) * 3);
            continue;
        }
        uint32_t *row = g->acc + (size_t)((y - g->y0) / g->ky) * g->rw * 4;
        for (int64_t x = ax; x < bx; x++, src += 3) {
            uint32_t *c = row + (size_t)((x - g->x0) / g->kx) * 4;
            c[0] += src[0];
            c[1] += src[1];
            c[2] += src[2];
            c[3]++;
        }
    }
}

static int patches_from_jpeg(cs_tiles *t, region *g, const cs_slide_level *l, int level)
{
    cs_jpeg *j = thread_codec(t);
    if (!j)
        return cs_error_set(CS_ENOMEM, "cannot create JPEG codec");
    int T = l->tile_width, TH = l->tile_height, d = g->d;
    int st = T / d, sth = TH / d;
    int64_t c0 = g->x0 * d / T, r0 = g->y0 * d / TH;
    int64_t c1 = (g->x1 * d - 1) / T, r1 = (g->y1 * d - 1) / TH;
    uint8_t *tile = malloc((size_t)st * sth * 3);
    if (!tile)
        return cs_error_set(CS_ENOMEM, "out of memory decoding tiles");
    int r = 0;
    for (int64_t row = r0; row <= r1 && r == 0; row++) {
        for (int64_t col = c0; col <= c1 && r == 0; col++) {
            cs_buf *raw;
            r = cs_slide_read_raw_tile(t->slide, level, col, row, &raw);
            if (r == CS_ENOTFOUND) { /* empty tile in a sparse slide: white */
                memset(tile, 255, (size_t)st * sth * 3);
                r = 0;
            } else if (r == 0) {
                int jw, jh;
                r = cs_jpeg_size(j, cs_buf_data(raw), cs_buf_size(raw), &jw, &jh);
                if (r == 0 && (jw != T || jh != TH))
                    r = cs_error_set(CS_EFORMAT, "stored tile %lld,%lld is %dx%d, expected %dx%d",
                                     (long long)col, (long long)row, jw, jh, T, TH);
                if (r == 0)
                    r = cs_jpeg_decode_rgb(j, tile, (size_t)st * 3, cs_buf_data(raw),
                                           cs_buf_size(raw), d);
                cs_buf_unref(raw);
            }
            if (r == 0)
                put_patch(g, tile, (size_t)st * 3, col * st, row * sth, st, sth);
        }
    }
    free(tile);
    return r;
}

static int patches_from_openslide(cs_tiles *t, region *g, const cs_slide_level *l, int level)
{
    uint8_t *buf = malloc((size_t)CHUNK * CHUNK * 3);
    if (!buf)
        return cs_error_set(CS_ENOMEM, "out of memory reading a region");
    int r = 0;
    for (int64_t y = g->y0; y < g->y1 && r == 0; y += CHUNK) {
        for (int64_t x = g->x0; x < g->x1 && r == 0; x += CHUNK) {
            int w = (int)(g->x1 - x < CHUNK ? g->x1 - x : CHUNK);
            int h = (int)(g->y1 - y < CHUNK ? g->y1 - y : CHUNK);
            r = cs_slide_read_region(t->slide, buf, (size_t)w * 3,
                                     g->l0x + (int64_t)llround((x - g->x0) * l->downsample),
                                     g->l0y + (int64_t)llround((y - g->y0) * l->downsample), level,
                                     w, h);
            if (r == 0)
                put_patch(g, buf, (size_t)w * 3, x, y, w, h);
        }
    }
    free(buf);
    return r;
}

/* Render the level rectangle (lx, ly, lw, lh), fractional level pixels, of
 * @p level into an ow x oh image. With @p l0_origin, OpenSlide reads start at
 * the level-0 point of (lx, ly) itself, as DeepZoomGenerator's do (OpenSlide
 * then shifts the fraction with cairo); else at whole level pixels, and the
 * Lanczos pass takes the fraction. */
static int render_level(cs_tiles *t, uint8_t *dst, size_t stride, int ow, int oh, int level,
                        double lx, double ly, double lw, double lh, int l0_origin)
{
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    int jpeg = l.raw == CS_SLIDE_RAW_JPEG;
    /* Stored tiles sit on integer level pixels. OpenSlide takes a level-0
     * point and lands on its fractional level position l0 / downsample,
     * like DeepZoomGenerator's reads: start there, just left of lx. */
    double ox, oy;
    int64_t l0x = 0, l0y = 0;
    if (jpeg) {
        ox = floor(lx + 1e-9), oy = floor(ly + 1e-9);
    } else {
        double fx0 = l0_origin ? lx : floor(lx + 1e-9), fy0 = l0_origin ? ly : floor(ly + 1e-9);
        l0x = (int64_t)floor(fx0 * l.downsample + 1e-6);
        l0y = (int64_t)floor(fy0 * l.downsample + 1e-6);
        ox = l0x / l.downsample, oy = l0y / l.downsample;
        if (ox > lx)
            ox = lx;
        if (oy > ly)
            oy = ly;
    }
    int64_t ix0 = (int64_t)floor(ox), iy0 = (int64_t)floor(oy);
    int64_t ix1 = ix0 + (int64_t)ceil(lx + lw - ox - 1e-9);
    int64_t iy1 = iy0 + (int64_t)ceil(ly + lh - oy - 1e-9);
    if (ix1 > l.width)
        ix1 = l.width;
    if (iy1 > l.height)
        iy1 = l.height;
    if (ix0 < 0 || iy0 < 0 || ix1 <= ix0 || iy1 <= iy0)
        return cs_error_set(CS_ERANGE, "region outside the slide level");
    /* Pillow: factor = int(size / out / reducing_gap) or 1, per axis */
    int rx = (int)((ix1 - ix0) / (double)ow / 2.0), ry = (int)((iy1 - iy0) / (double)oh / 2.0);
    if (rx < 1)
        rx = 1;
    if (ry < 1)
        ry = 1;
    region g = {.d = 1, .l0x = l0x, .l0y = l0y};
    while (jpeg && g.d < 8 && rx % (g.d * 2) == 0 && ry % (g.d * 2) == 0 &&
           l.tile_width % (g.d * 2) == 0 && l.tile_height % (g.d * 2) == 0 &&
           ix0 % (g.d * 2) == 0 && iy0 % (g.d * 2) == 0)
        g.d *= 2;
    g.kx = rx / g.d;
    g.ky = ry / g.d;
    g.x0 = ix0 / g.d, g.y0 = iy0 / g.d;
    g.x1 = (ix1 + g.d - 1) / g.d, g.y1 = (iy1 + g.d - 1) / g.d;
    g.rw = (int)((g.x1 - g.x0 + g.kx - 1) / g.kx);
    g.rh = (int)((g.y1 - g.y0 + g.ky - 1) / g.ky);
    size_t n = (size_t)g.rw * g.rh;
    if (n > (size_t)64 << 20)
        return cs_error_set(CS_ETOOBIG, "region needs a %dx%d canvas", g.rw, g.rh);
    g.canvas = malloc(n * 3);
    if (g.kx * g.ky > 1)
        g.acc = calloc(n * 4, sizeof(uint32_t));
    int r = 0;
    if (!g.canvas || (g.kx * g.ky > 1 && !g.acc))
        r = cs_error_set(CS_ENOMEM, "out of memory for a %dx%d canvas", g.rw, g.rh);
    if (r == 0)
        r = jpeg ? patches_from_jpeg(t, &g, &l, level) : patches_from_openslide(t, &g, &l, level);
    if (r == 0 && g.acc) {
        for (size_t i = 0; i < n; i++) {
            uint32_t c = g.acc[4 * i + 3] ? g.acc[4 * i + 3] : 1;
            for (int k = 0; k < 3; k++)
                g.canvas[3 * i + k] = (uint8_t)((g.acc[4 * i + k] + c / 2) / c);
        }
    }
    if (r == 0) {
        double fx = (double)g.d * g.kx, fy = (double)g.d * g.ky;
        r = cs_resample_rgb(thread_coeffs(t), dst, stride, ow, oh, g.canvas, (size_t)g.rw * 3, g.rw,
                            g.rh, (lx - ox) / fx, (ly - oy) / fy, lw / fx, lh / fy);
    }
    free(g.canvas);
    free(g.acc);
    return r;
}

/* Where a tile's pixels come from: a fractional rectangle of one level. */
typedef struct {
    int level;
    double lx, ly, lw, lh;
    int l0_origin; /* see render_level() */
} level_rect;

/* The DeepZoom tile whose level-ds rectangle is (zx, zy, zw, zh), computed
 * with DeepZoomGenerator's own double arithmetic (_get_tile_info): the level
 * OpenSlide picks, l = ds/lds * z, l0 = (int)(lds * l), size =
 * min(ceil(ds/lds * zsize), level size - ceil(l)), so that the read lands on
 * the very same level-0 point even where float error makes it 1 px short. */
static int dzg_rect(cs_tiles *t, level_rect *out, int64_t zx, int64_t zy, int zw, int zh, double ds)
{
    int level = cs_slide_best_level(t->slide, ds);
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    double lds = l.downsample, lz = ds / lds;
    double lx = lz * (double)zx, ly = lz * (double)zy;
    int64_t l0x = (int64_t)(lds * lx), l0y = (int64_t)(lds * ly);
    double lw = fmin(ceil(lz * zw), (double)(l.width - (int64_t)ceil(lx)));
    double lh = fmin(ceil(lz * zh), (double)(l.height - (int64_t)ceil(ly)));
    if (lw <= 0 || lh <= 0)
        return cs_error_set(CS_ERANGE, "tile outside the slide");
    *out = (level_rect){level, l0x / lds, l0y / lds, lw, lh, 1};
    return 0;
}

/* A level-0 rectangle scaled to ow x oh (IIIF): the level OpenSlide picks
 * for the smaller of the two scales, the exact fractional rectangle. */
static int region_rect(cs_tiles *t, level_rect *out, int64_t x, int64_t y, int64_t w, int64_t h,
                       int ow, int oh)
{
    double ds = fmin((double)w / ow, (double)h / oh);
    int level = cs_slide_best_level(t->slide, ds);
    cs_slide_level l;
    cs_slide_get_level(t->slide, level, &l);
    double lds = l.downsample;
    double lx = x / lds, ly = y / lds, lw = w / lds, lh = h / lds;
    if (lx + lw > l.width)
        lw = l.width - lx;
    if (ly + lh > l.height)
        lh = l.height - ly;
    if (lw <= 0 || lh <= 0)
        return cs_error_set(CS_ERANGE, "region outside the slide");
    *out = (level_rect){level, lx, ly, lw, lh, 0};
    return 0;
}

static int render_rect(cs_tiles *t, uint8_t *rgb, const level_rect *r, int ow, int oh)
{
    return render_level(t, rgb, (size_t)ow * 3, ow, oh, r->level, r->lx, r->ly, r->lw, r->lh,
                        r->l0_origin);
}

/* ---- made tiles in YCbCr ----
 *
 * Stored tiles are nearly always YCbCr 4:2:0. Then a tile is made without
 * leaving that space: decoded to Y, Cb, Cr planes (no chroma upsampling, no
 * colour conversion), Lanczos on Y at full size and on the chroma planes at
 * half size, encoded straight from the planes: a third of the resampling and
 * no conversions. Luma is linear in RGB, so luma matches the RGB path. Any
 * condition not met (other subsampling, an odd origin, a reduce factor left
 * after the DCT, a thumbnail) answers CS_ENOTFOUND and the RGB path runs. */

typedef struct {
    uint8_t *p[3];
    int w[3], h[3];
} planes;

static void planes_free(planes *pl)
{
    for (int i = 0; i < 3; i++)
        free(pl->p[i]);
}

/* Planes for a w x h image; with @p even, Y is padded to even sizes as
 * TurboJPEG's 4:2:0 plane functions read and write it (tjPlaneWidth/Height). */
static int planes_alloc(planes *pl, int w, int h, int fill, int even)
{
    memset(pl, 0, sizeof(*pl));
    for (int i = 0; i < 3; i++) {
        pl->w[i] = i ? (w + 1) / 2 : (even ? (w + 1) & ~1 : w);
        pl->h[i] = i ? (h + 1) / 2 : (even ? (h + 1) & ~1 : h);
        pl->p[i] = malloc((size_t)pl->w[i] * pl->h[i]);
        if (!pl->p[i]) {
            planes_free(pl);
            return cs_error_set(CS_ENOMEM, "out of memory for %dx%d planes", w, h);
        }
        if (fill)
            memset(pl->p[i], i ? 128 : 255, (size_t)pl->w[i] * pl->h[i]); /* white */
    }
    return 0;
}

/* Copy plane data of a tile whose Y origin is (px, py) into the canvas
 * whose Y origin is (x0, y0); all even, so chroma lands on whole samples. */
static void put_planes(planes *cv, const planes *tile, int64_t px, int64_t py, int64_t x0,
                       int64_t y0)
{
    for (int i = 0; i < 3; i++) {
        int sh = i ? 1 : 0;
        int64_t ox = (px - x0) >> sh, oy = (py - y0) >> sh;
        int64_t ax = ox > 0 ? ox : 0, ay = oy > 0 ? oy : 0;
        int64_t bx = ox + tile->w[i] < cv->w[i] ? ox + tile->w[i] : cv->w[i];
        int64_t by = oy + tile->h[i] < cv->h[i] ? oy + tile->h[i] : cv->h[i];
        for (int64_t y = ay; y < by; y++)
            memcpy(cv->p[i] + (size_t)y * cv->w[i] + ax,
                   tile->p[i] + (size_t)(y - oy) * tile->w[i] + (ax - ox), (size_t)(bx - ax));
    }
}

/* Decode stored tiles [first, last) (row-major over the covering grid) into
 * the canvas. Jobs write disjoint parts of it, so two run at once safely. */
typedef struct {
    cs_tiles *t;
    int level, d;
    planes *cv;
    int64_t x0, y0, c0, c1, r0, first, last;
    int rc;
    pthread_mutex_t *m;
    pthread_cond_t *done;
    int *pending; /* set while the pooled job runs; only it clears it */
    int pooled;
} decode_job;

static void decode_job_run(void *userdata)
{
    decode_job *job = userdata;
    cs_slide_level l;
    cs_slide_get_level(job->t->slide, job->level, &l);
    int T = l.tile_width, TH = l.tile_height, st = T / job->d, sth = TH / job->d;
    cs_jpeg *j = thread_codec(job->t);
    planes tile;
    int rc = j ? planes_alloc(&tile, st, sth, 0, 1) : cs_error_set(CS_ENOMEM, "no JPEG codec");
    int64_t cols = job->c1 - job->c0 + 1;
    for (int64_t i = job->first; i < job->last && rc == 0; i++) {
        int64_t col = job->c0 + i % cols, row = job->r0 + i / cols;
        cs_buf *raw;
        rc = cs_slide_read_raw_tile(job->t->slide, job->level, col, row, &raw);
        if (rc == CS_ENOTFOUND) { /* empty tile in a sparse slide: stays white */
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        int jw, jh, yuv = cs_jpeg_is_yuv420(j, cs_buf_data(raw), cs_buf_size(raw));
        if (yuv == 1 && cs_jpeg_size(j, cs_buf_data(raw), cs_buf_size(raw), &jw, &jh) == 0 &&
            jw == T && jh == TH)
            rc = cs_jpeg_decode_yuv420(j, tile.p, tile.w, cs_buf_data(raw), cs_buf_size(raw),
                                       job->d);
        else
            rc = yuv < 0 ? yuv : CS_ENOTFOUND; /* the RGB path decides */
        cs_buf_unref(raw);
        if (rc == 0)
            put_planes(job->cv, &tile, col * st, row * sth, job->x0, job->y0);
    }
    if (j)
        planes_free(&tile);
    job->rc = rc;
    if (job->pooled) {
        pthread_mutex_lock(job->m);
        *job->pending = 0;
        pthread_cond_signal(job->done);
        pthread_mutex_unlock(job->m);
    }
}

static int make_yuv(cs_tiles *t, cs_buf **out, const level_rect *r, int ow, int oh)
{
    cs_slide_level l;
    cs_slide_get_level(t->slide, r->level, &l);
    if (l.raw != CS_SLIDE_RAW_JPEG || ow * oh < 64 * 64)
        return CS_ENOTFOUND;
    cs_jpeg *j = thread_codec(t);
    if (!j)
        return cs_error_set(CS_ENOMEM, "cannot create JPEG codec");
    int64_t ix0 = (int64_t)floor(r->lx + 1e-9), iy0 = (int64_t)floor(r->ly + 1e-9);
    int64_t ix1 = (int64_t)ceil(r->lx + r->lw - 1e-9), iy1 = (int64_t)ceil(r->ly + r->lh - 1e-9);
    if (ix1 > l.width)
        ix1 = l.width;
    if (iy1 > l.height)
        iy1 = l.height;
    if (ix1 <= ix0 || iy1 <= iy0)
        return CS_ENOTFOUND;
    int rx = (int)((ix1 - ix0) / (double)ow / 2.0), ry = (int)((iy1 - iy0) / (double)oh / 2.0);
    rx = rx < 1 ? 1 : rx;
    ry = ry < 1 ? 1 : ry;
    int d = 1, T = l.tile_width, TH = l.tile_height;
    while (d < 8 && rx % (d * 2) == 0 && ry % (d * 2) == 0 && T % (d * 4) == 0 && TH % (d * 4) == 0)
        d *= 2;
    /* no reduce left after the DCT; even origin and tile size in 1/d pixels */
    if (rx != d || ry != d || ix0 % (2 * d) || iy0 % (2 * d) || (T / d) % 2 || (TH / d) % 2)
        return CS_ENOTFOUND;
    int64_t x0 = ix0 / d, y0 = iy0 / d, x1 = (ix1 + d - 1) / d, y1 = (iy1 + d - 1) / d;
    planes cv, o;
    int rc = planes_alloc(&cv, (int)(x1 - x0), (int)(y1 - y0), 1, 0);
    if (rc < 0)
        return rc;
    /* the stored tiles: the second half on the pool when it has room */
    decode_job half[2];
    int64_t c0 = ix0 / T, c1 = (ix1 - 1) / T, r0 = iy0 / TH, r1 = (iy1 - 1) / TH;
    int64_t n = (c1 - c0 + 1) * (r1 - r0 + 1);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
    int pending = 0;
    for (int i = 0; i < 2; i++)
        half[i] = (decode_job){t,         r->level,        d, &cv, x0,       y0,       c0, c1, r0,
                               n * i / 2, n * (i + 1) / 2, 0, &m,  &cv_done, &pending, 0};
    if (t->pool && n >= 2) {
        pending = 1;
        half[1].pooled = 1;
        if (cs_pool_try_submit(t->pool, decode_job_run, &half[1]) < 0) {
            pending = 0; /* busy: do it here */
            half[1].pooled = 0;
            decode_job_run(&half[1]);
        }
    } else {
        decode_job_run(&half[1]);
    }
    decode_job_run(&half[0]);
    pthread_mutex_lock(&m);
    while (pending)
        pthread_cond_wait(&cv_done, &m);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
    pthread_cond_destroy(&cv_done);
    rc = half[0].rc ? half[0].rc : half[1].rc;
    if (rc == 0 && (rc = planes_alloc(&o, ow, oh, 0, 1)) == 0) {
        double bx = (r->lx - ix0) / d, by = (r->ly - iy0) / d, bw = r->lw / d, bh = r->lh / d;
        rc = cs_resample_plane(thread_coeffs(t), o.p[0], (size_t)o.w[0], ow, oh, cv.p[0],
                               (size_t)cv.w[0], cv.w[0], cv.h[0], bx, by, bw, bh);
        /* chroma sample m covers output luma [2m, 2m + 2) */
        double cw = bw * o.w[1] / ow, ch = bh * o.h[1] / oh;
        for (int i = 1; i < 3 && rc == 0; i++)
            rc =
                cs_resample_plane(thread_coeffs(t), o.p[i], (size_t)o.w[i], o.w[i], o.h[i], cv.p[i],
                                  (size_t)cv.w[i], cv.w[i], cv.h[i], bx / 2, by / 2, cw, ch);
        /* the encoder reads Y's even padding: repeat the last column, row */
        for (int y = 0; rc == 0 && ow < o.w[0] && y < oh; y++)
            o.p[0][(size_t)y * o.w[0] + ow] = o.p[0][(size_t)y * o.w[0] + ow - 1];
        if (rc == 0 && oh < o.h[0])
            memcpy(o.p[0] + (size_t)oh * o.w[0], o.p[0] + (size_t)(oh - 1) * o.w[0],
                   (size_t)o.w[0]);
        if (rc == 0)
            rc =
                cs_jpeg_encode_yuv420(j, out, (const uint8_t *const *)o.p, o.w, ow, oh, t->quality);
        planes_free(&o);
    }
    planes_free(&cv);
    return rc;
}

int cs_tiles_render_rgb(cs_tiles *t, uint8_t *rgb, int64_t x, int64_t y, int64_t w, int64_t h,
                        int out_w, int out_h)
{
    if (w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || x < 0 || y < 0 || x + w > t->w0 ||
        y + h > t->h0)
        return cs_error_set(CS_ERANGE, "region %lld,%lld,%lld,%lld outside the %lldx%lld slide",
                            (long long)x, (long long)y, (long long)w, (long long)h,
                            (long long)t->w0, (long long)t->h0);
    level_rect lr;
    int r = region_rect(t, &lr, x, y, w, h, out_w, out_h);
    return r < 0 ? r : render_rect(t, rgb, &lr, out_w, out_h);
}

static int encode(cs_tiles *t, cs_buf **out, const uint8_t *rgb, int w, int h)
{
    cs_jpeg *j = thread_codec(t);
    if (!j)
        return cs_error_set(CS_ENOMEM, "cannot create JPEG codec");
    return cs_jpeg_encode_rgb(j, out, rgb, w, h, (size_t)w * 3, t->quality);
}

/* A tile that is not a stored one: in YCbCr when the stored tiles allow,
 * else rendered in RGB and encoded. */
static int make_tile(cs_tiles *t, cs_buf **out, cs_tiles_how *how, const level_rect *lr, int ow,
                     int oh)
{
    cs_slide_level l;
    cs_slide_get_level(t->slide, lr->level, &l);
    int r = make_yuv(t, out, lr, ow, oh);
    if (r == CS_ENOTFOUND) {
        uint8_t *rgb = malloc((size_t)ow * (size_t)oh * 3);
        if (!rgb)
            return cs_error_set(CS_ENOMEM, "out of memory for a %dx%d image", ow, oh);
        r = render_rect(t, rgb, lr, ow, oh);
        if (r == 0)
            r = encode(t, out, rgb, ow, oh);
        free(rgb);
    }
    if (r == 0 && how)
        *how = l.raw == CS_SLIDE_RAW_JPEG ? CS_TILES_FROM_JPEG : CS_TILES_RENDERED;
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
    r = try_passthrough(t, out, how, ds, x0, y0, (int)zw, (int)zh);
    if (r != CS_ENOTFOUND)
        return r;
    level_rect lr;
    if ((r = dzg_rect(t, &lr, zx, zy, (int)zw, (int)zh, ds)) < 0)
        return r;
    return make_tile(t, out, how, &lr, (int)zw, (int)zh);
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
    level_rect lr;
    int r = region_rect(t, &lr, x, y, w, h, out_w, out_h);
    return r < 0 ? r : make_tile(t, out, how, &lr, out_w, out_h);
}
