/* codecs/slide: OpenSlide backend, the synthetic backend, sticky errors.
 *
 * OpenSlide's handle is thread-safe, so one cs_slide serves every tile
 * worker. Its errors are sticky too; we copy the first one into our own
 * sticky slot so raw-tile reads and region reads report the same thing. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openslide.h>

#include "cs/err.h"

#include "slide_internal.h"

int cs_slide_fail(cs_slide *s, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->err, &expected, code))
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
    return cs_error_set(code, "%s", msg);
}

static int sticky(cs_slide *s)
{
    int e = atomic_load(&s->err);
    if (e)
        return cs_error_set(e, "%s", s->errmsg);
    return 0;
}

/* ---- OpenSlide backend ---- */

static void argb_to_rgb(uint8_t *dst, const uint32_t *src, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t p = src[i];
        uint32_t a = p >> 24;
        uint32_t r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
        if (a != 255) {
            /* premultiplied over white: c + (255 - a) */
            r += 255 - a;
            g += 255 - a;
            b += 255 - a;
        }
        dst[3 * i] = (uint8_t)r;
        dst[3 * i + 1] = (uint8_t)g;
        dst[3 * i + 2] = (uint8_t)b;
    }
}

static int os_read_region(cs_slide *s, uint8_t *rgb, size_t stride, int64_t x, int64_t y, int level,
                          int w, int h)
{
    openslide_t *osr = s->priv;
    uint32_t *argb = malloc((size_t)w * (size_t)h * 4);
    if (!argb)
        return cs_error_set(CS_ENOMEM, "out of memory reading %dx%d region", w, h);
    openslide_read_region(osr, argb, x, y, level, w, h);
    const char *e = openslide_get_error(osr);
    if (e) {
        free(argb);
        return cs_slide_fail(s, CS_EFORMAT, "slide %s is unreadable: %s", s->path, e);
    }
    for (int row = 0; row < h; row++)
        argb_to_rgb(rgb + (size_t)row * stride, argb + (size_t)row * (size_t)w, w);
    free(argb);
    return 0;
}

static int os_read_associated(cs_slide *s, const char *name, uint8_t *rgb)
{
    openslide_t *osr = s->priv;
    int64_t w, h;
    openslide_get_associated_image_dimensions(osr, name, &w, &h);
    if (w <= 0 || h <= 0)
        return cs_error_set(CS_ENOTFOUND, "slide has no associated image '%s'", name);
    uint32_t *argb = malloc((size_t)w * (size_t)h * 4);
    if (!argb)
        return cs_error_set(CS_ENOMEM, "out of memory reading associated image");
    openslide_read_associated_image(osr, name, argb);
    const char *e = openslide_get_error(osr);
    if (e) {
        free(argb);
        return cs_slide_fail(s, CS_EFORMAT, "slide %s is unreadable: %s", s->path, e);
    }
    argb_to_rgb(rgb, argb, (int)(w * h));
    free(argb);
    return 0;
}

static void os_close(cs_slide *s)
{
    openslide_close(s->priv);
}

static const cs_slide_backend openslide_backend = {
    .name = "openslide",
    .read_region = os_read_region,
    .read_associated = os_read_associated,
    .close = os_close,
};

static double prop_double(openslide_t *osr, const char *name)
{
    const char *v = openslide_get_property_value(osr, name);
    if (!v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    return end != v && isfinite(d) && d > 0 ? d : 0;
}

static int64_t prop_int(openslide_t *osr, int level, const char *what)
{
    char name[64];
    snprintf(name, sizeof(name), "openslide.level[%d].%s", level, what);
    const char *v = openslide_get_property_value(osr, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

int cs_slide_open(cs_slide **out, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cs_error_set(CS_ENOTFOUND, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cs_error_set(CS_EFORMAT, "%s: not a regular file", path);
    const char *vendor = openslide_detect_vendor(path);
    if (!vendor)
        return cs_error_set(CS_EFORMAT, "%s: not a slide format OpenSlide reads", path);
    openslide_t *osr = openslide_open(path);
    if (!osr)
        return cs_error_set(CS_EFORMAT, "%s: not a slide format OpenSlide reads", path);
    const char *e = openslide_get_error(osr);
    if (e) {
        int r = cs_error_set(CS_EFORMAT, "%s: corrupt slide: %s", path, e);
        openslide_close(osr);
        return r;
    }
    cs_slide *s = calloc(1, sizeof(*s));
    if (!s) {
        openslide_close(osr);
        return cs_error_set(CS_ENOMEM, "out of memory opening %s", path);
    }
    s->backend = &openslide_backend;
    s->priv = osr;
    s->raw_fd = -1;
    s->path = strdup(path);
    s->vendor = strdup(vendor);
    int n = openslide_get_level_count(osr);
    if (n < 1 || n > CS_SLIDE_MAX_LEVELS || !s->path || !s->vendor) {
        cs_slide_close(s);
        return cs_error_set(CS_EFORMAT, "%s: unusable level count %d", path, n);
    }
    s->nlevels = n;
    for (int i = 0; i < n; i++) {
        cs_slide_level *l = &s->levels[i];
        openslide_get_level_dimensions(osr, i, &l->width, &l->height);
        l->downsample = openslide_get_level_downsample(osr, i);
        l->tile_width = (int)prop_int(osr, i, "tile-width");
        l->tile_height = (int)prop_int(osr, i, "tile-height");
        l->renderable = 1;
        if (l->width <= 0 || l->height <= 0 || !(l->downsample > 0)) {
            cs_slide_close(s);
            return cs_error_set(CS_EFORMAT, "%s: level %d has no size", path, i);
        }
    }
    s->mpp_x = prop_double(osr, OPENSLIDE_PROPERTY_NAME_MPP_X);
    s->mpp_y = prop_double(osr, OPENSLIDE_PROPERTY_NAME_MPP_Y);
    s->objective = prop_double(osr, OPENSLIDE_PROPERTY_NAME_OBJECTIVE_POWER);
    s->prop_names = openslide_get_property_names(osr);
    s->assoc_names = openslide_get_associated_image_names(osr);
    cs_slide_tiff_index(s);
    for (int i = 1; i < n; i++) {
        cs_slide_level *l = &s->levels[i];
        if (l->raw != CS_SLIDE_RAW_JPEG && (l->tile_width > l->width || l->tile_height > l->height))
            l->renderable = 0;
    }
    *out = s;
    return 0;
}

/* ---- synthetic backend ---- */

uint32_t cs_slide_synthetic_pixel(int64_t x, int64_t y)
{
    /* Smooth gradients plus a 64-px checker and fine diagonal stripes, so
     * both geometry errors and colour-channel swaps show. */
    uint32_t r = (uint32_t)((x * 255 / 4096) & 0xff);
    uint32_t g = (uint32_t)((y * 255 / 4096) & 0xff);
    uint32_t b = (((x >> 6) + (y >> 6)) & 1) ? 200 : 60;
    if (((x + y) & 15) < 2)
        b = 255 - b;
    return (r << 16) | (g << 8) | b;
}

static int synth_read_region(cs_slide *s, uint8_t *rgb, size_t stride, int64_t x, int64_t y,
                             int level, int w, int h)
{
    double ds = s->levels[level].downsample;
    for (int j = 0; j < h; j++) {
        uint8_t *row = rgb + (size_t)j * stride;
        int64_t y0 = y + (int64_t)(j * ds);
        for (int i = 0; i < w; i++) {
            int64_t x0 = x + (int64_t)(i * ds);
            uint32_t p = 0xffffff;
            if (x0 >= 0 && y0 >= 0 && x0 < s->synth_w && y0 < s->synth_h)
                p = cs_slide_synthetic_pixel(x0, y0);
            row[3 * i] = (uint8_t)(p >> 16);
            row[3 * i + 1] = (uint8_t)(p >> 8);
            row[3 * i + 2] = (uint8_t)p;
        }
    }
    return 0;
}

static int synth_read_associated(cs_slide *s, const char *name, uint8_t *rgb)
{
    return cs_error_set(CS_ENOTFOUND, "synthetic slide has no associated image '%s'", name);
}

static void synth_close(cs_slide *s)
{
}

static const cs_slide_backend synthetic_backend = {
    .name = "synthetic",
    .read_region = synth_read_region,
    .read_associated = synth_read_associated,
    .close = synth_close,
};

static const char *const no_names[] = {NULL};

int cs_slide_open_synthetic(cs_slide **out, int64_t width, int64_t height)
{
    if (width <= 0 || height <= 0)
        return cs_error_set(CS_EINVAL, "synthetic slide needs a positive size");
    cs_slide *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->backend = &synthetic_backend;
    s->raw_fd = -1;
    s->path = strdup("synthetic");
    s->vendor = strdup("synthetic");
    s->synth_w = width;
    s->synth_h = height;
    for (int64_t ds = 1; s->nlevels < CS_SLIDE_MAX_LEVELS; ds *= 4) {
        cs_slide_level *l = &s->levels[s->nlevels++];
        l->width = (width + ds - 1) / ds;
        l->height = (height + ds - 1) / ds;
        l->downsample = (double)ds;
        l->tile_width = l->tile_height = 256;
        l->renderable = 1;
        if (l->width <= 512 && l->height <= 512)
            break;
    }
    s->mpp_x = s->mpp_y = 0.25;
    s->objective = 40;
    s->prop_names = no_names;
    s->assoc_names = no_names;
    if (!s->path || !s->vendor) {
        cs_slide_close(s);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    *out = s;
    return 0;
}

/* ---- common ---- */

void cs_slide_close(cs_slide *s)
{
    if (!s)
        return;
    if (s->priv)
        s->backend->close(s);
    cs_slide_tiff_free(s);
    free(s->path);
    free(s->vendor);
    free(s);
}

const char *cs_slide_path(const cs_slide *s)
{
    return s->path;
}

const char *cs_slide_vendor(const cs_slide *s)
{
    return s->vendor;
}

int cs_slide_level_count(const cs_slide *s)
{
    return s->nlevels;
}

int cs_slide_get_level(const cs_slide *s, int level, cs_slide_level *out)
{
    if (level < 0 || level >= s->nlevels)
        return cs_error_set(CS_ERANGE, "level %d out of range (slide has %d)", level, s->nlevels);
    *out = s->levels[level];
    return 0;
}

int cs_slide_best_level(const cs_slide *s, double downsample)
{
    int best = 0;
    for (int i = 1; i < s->nlevels; i++) {
        if (downsample < s->levels[i].downsample)
            break;
        if (s->levels[i].renderable)
            best = i;
    }
    return best;
}

double cs_slide_mpp_x(const cs_slide *s)
{
    return s->mpp_x;
}

double cs_slide_mpp_y(const cs_slide *s)
{
    return s->mpp_y;
}

double cs_slide_objective_power(const cs_slide *s)
{
    return s->objective;
}

const char *const *cs_slide_property_names(const cs_slide *s)
{
    return s->prop_names;
}

const char *cs_slide_property(const cs_slide *s, const char *name)
{
    if (s->backend != &openslide_backend)
        return NULL;
    return openslide_get_property_value(s->priv, name);
}

const char *const *cs_slide_associated_names(const cs_slide *s)
{
    return s->assoc_names;
}

int cs_slide_associated_dims(const cs_slide *s, const char *name, int64_t *w, int64_t *h)
{
    *w = *h = -1;
    if (s->backend == &openslide_backend)
        openslide_get_associated_image_dimensions(s->priv, name, w, h);
    if (*w <= 0 || *h <= 0)
        return cs_error_set(CS_ENOTFOUND, "slide has no associated image '%s'", name);
    return 0;
}

int cs_slide_read_associated(cs_slide *s, const char *name, uint8_t *rgb)
{
    int r = sticky(s);
    return r ? r : s->backend->read_associated(s, name, rgb);
}

int cs_slide_read_region(cs_slide *s, uint8_t *rgb, size_t stride, int64_t x, int64_t y, int level,
                         int w, int h)
{
    if (level < 0 || level >= s->nlevels)
        return cs_error_set(CS_ERANGE, "level %d out of range (slide has %d)", level, s->nlevels);
    if (w <= 0 || h <= 0 || stride < (size_t)w * 3)
        return cs_error_set(CS_ERANGE, "bad region size %dx%d", w, h);
    int r = sticky(s);
    return r ? r : s->backend->read_region(s, rgb, stride, x, y, level, w, h);
}

int cs_slide_get_error(cs_slide *s, const char **msg)
{
    int e = atomic_load(&s->err);
    if (msg)
        *msg = e ? s->errmsg : "";
    return e;
}
