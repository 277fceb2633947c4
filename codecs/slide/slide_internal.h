/* Private to codecs/slide: the backend vtable and the raw TIFF tile index. */
#ifndef CS_SLIDE_INTERNAL_H
#define CS_SLIDE_INTERNAL_H

#include <stdatomic.h>

#include "cs/slide.h"

typedef struct cs_slide_backend {
    const char *name;
    /* Read level pixels into premultiplied-free RGB; x, y level-0. */
    int (*read_region)(cs_slide *s, uint8_t *rgb, size_t stride, int64_t x, int64_t y, int level,
                       int w, int h);
    int (*read_associated)(cs_slide *s, const char *name, uint8_t *rgb);
    void (*close)(cs_slide *s);
} cs_slide_backend;

/* Where one level's stored JPEG tiles are in the file. */
typedef struct {
    int64_t cols, rows;
    uint64_t *offsets, *counts; /* cols*rows each */
    uint8_t *prefix;            /* SOI + Adobe APP14 + tables, no EOI */
    size_t prefix_len;
} cs_slide_rawlevel;

#define CS_SLIDE_MAX_LEVELS 32

struct cs_slide {
    const cs_slide_backend *backend;
    void *priv; /* backend state (openslide_t *) */
    char *path;
    char *vendor;
    int nlevels;
    cs_slide_level levels[CS_SLIDE_MAX_LEVELS];
    cs_slide_rawlevel raw[CS_SLIDE_MAX_LEVELS];
    int raw_fd;
    double mpp_x, mpp_y, objective;
    const char *const *prop_names;
    const char *const *assoc_names;
    atomic_int err;
    char errmsg[256];
    /* synthetic */
    int64_t synth_w, synth_h;
};

/* Record the first error (atomic), set the thread's message, return the code. */
CS_INTERNAL int cs_slide_fail(cs_slide *s, int code, const char *fmt, ...) CS_PRINTF(3, 4);

/* Index the stored JPEG tiles of every level that matches a TIFF directory. */
CS_INTERNAL void cs_slide_tiff_index(cs_slide *s);
CS_INTERNAL void cs_slide_tiff_free(cs_slide *s);

#endif
