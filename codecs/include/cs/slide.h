/* Whole-slide images: OpenSlide 3.4.1 behind one handle, plus a synthetic
 * slide for unit tests.
 *
 * Coordinates are level-0 pixels unless a function says otherwise. Pixels come
 * out as packed 8-bit RGB, composited on white (OpenSlide hands out
 * premultiplied ARGB; transparent areas outside scanned regions become white,
 * as every viewer shows them).
 *
 * Raw tiles: for TIFF-based formats whose stored tiles form the level's own
 * grid (Aperio, generic tiled TIFF) and are JPEG-compressed, the stored tile
 * bytes can be read without decoding: cs_slide_read_raw_tile() returns a
 * standalone JPEG (the TIFF's shared JPEG tables spliced in, an Adobe marker
 * telling decoders whether the data is RGB or YCbCr).
 *
 * Errors are sticky: once a read fails (a truncated or corrupt file), every
 * later read returns the same error, and cs_slide_get_error() tells it.
 *
 * Thread-safety: every function is safe to call from many threads on one
 * handle, except cs_slide_close(). */
#ifndef CS_SLIDE_H
#define CS_SLIDE_H

#include <stddef.h>
#include <stdint.h>

#include "cs/buf.h"
#include "cs/common.h"

typedef struct cs_slide cs_slide;

typedef enum {
    CS_SLIDE_RAW_NONE = 0, /**< stored tiles cannot be read raw */
    CS_SLIDE_RAW_JPEG = 1, /**< cs_slide_read_raw_tile() returns JPEG */
} cs_slide_raw;

/** Geometry of one pyramid level. */
typedef struct {
    int64_t width, height;
    double downsample; /**< level-0 pixels per level pixel */
    int tile_width;    /**< stored tile size; 0 when not tiled or unknown */
    int tile_height;
    cs_slide_raw raw; /**< what cs_slide_read_raw_tile() gives at this level */
    int renderable;   /**< 0 when OpenSlide 3.4.1 renders this level wrongly:
                           non-JPEG tiles wider or taller than the level make
                           Debian's libtiff 4.5 shrink the RGBA raster under
                           OpenSlide's fixed stride. cs_slide_best_level()
                           skips such levels. */
} cs_slide_level;

/** Open a slide file. @return 0, CS_ENOTFOUND (no such file), CS_EFORMAT (not
 *  a slide OpenSlide reads, or corrupt), CS_ENOMEM. @since 0.1 */
CS_API int cs_slide_open(cs_slide **out, const char *path);

/** Open a synthetic slide of @p width x @p height with levels at downsamples
 *  1, 4, 16 ... and a deterministic pattern (cs_slide_synthetic_pixel()).
 *  Vendor "synthetic", MPP 0.25. @since 0.1 */
CS_API int cs_slide_open_synthetic(cs_slide **out, int64_t width, int64_t height);

/** The synthetic pattern at level-0 pixel (x, y), as 0xRRGGBB. */
CS_API uint32_t cs_slide_synthetic_pixel(int64_t x, int64_t y);

/** Close; NULL is a no-op. Not thread-safe against concurrent reads. */
CS_API void cs_slide_close(cs_slide *s);

/** Borrowed strings, valid until cs_slide_close(). */
CS_API const char *cs_slide_path(const cs_slide *s);
CS_API const char *cs_slide_vendor(const cs_slide *s);

CS_API int cs_slide_level_count(const cs_slide *s);
/** @return 0 or CS_ERANGE. */
CS_API int cs_slide_get_level(const cs_slide *s, int level, cs_slide_level *out);
/** Level OpenSlide picks for @p downsample (the finest whose downsample is not
 *  above it), the same rule as openslide_get_best_level_for_downsample(),
 *  except that levels that are not renderable are passed over. */
CS_API int cs_slide_best_level(const cs_slide *s, double downsample);

/** Microns per pixel at level 0; 0 when the slide does not say. */
CS_API double cs_slide_mpp_x(const cs_slide *s);
CS_API double cs_slide_mpp_y(const cs_slide *s);
/** Scanner objective power (20, 40); 0 when unknown. */
CS_API double cs_slide_objective_power(const cs_slide *s);

/** NULL-terminated list of property names (borrowed). */
CS_API const char *const *cs_slide_property_names(const cs_slide *s);
/** A property's value or NULL (borrowed). */
CS_API const char *cs_slide_property(const cs_slide *s, const char *name);

/** NULL-terminated list of associated image names ("label", "macro",
 *  "thumbnail"). These can identify the patient: serve them only when
 *  configured to. */
CS_API const char *const *cs_slide_associated_names(const cs_slide *s);
CS_API int cs_slide_associated_dims(const cs_slide *s, const char *name, int64_t *w, int64_t *h);
/** Read an associated image into caller-owned RGB (w*h*3 bytes). */
CS_API int cs_slide_read_associated(cs_slide *s, const char *name, uint8_t *rgb);

/** Read a region into caller-owned RGB, @p stride bytes per row (>= w*3).
 *  (@p x, @p y) is the top-left in level-0 pixels; @p w x @p h in @p level
 *  pixels. Parts outside the slide are white.
 *  @return 0, CS_ERANGE (bad level or size), CS_EIO/CS_EFORMAT (sticky). */
CS_API int cs_slide_read_region(cs_slide *s, uint8_t *rgb, size_t stride, int64_t x, int64_t y,
                                int level, int w, int h);

/** The stored tile (@p col, @p row) of @p level as a standalone JPEG of the
 *  full stored tile size (edge tiles are padded, as stored).
 *  @param out receives a new reference.
 *  @return 0, CS_ENOTFOUND (no raw tiles at this level, or the tile is empty
 *  in a sparse file: render instead), CS_ERANGE, CS_EIO/CS_EFORMAT (sticky). */
CS_API int cs_slide_read_raw_tile(cs_slide *s, int level, int64_t col, int64_t row, cs_buf **out);

/** The sticky error code (0 if none); the message is returned in @p msg
 *  (borrowed, valid until close) when not NULL. */
CS_API int cs_slide_get_error(cs_slide *s, const char **msg);

#endif
