/* Raw JPEG tiles of TIFF-based slides, read without decoding.
 *
 * OpenSlide 3.4.1 has no raw-tile API, so at open we walk the TIFF
 * directories with libtiff, match each tiled JPEG directory to an OpenSlide
 * level by its dimensions, and copy its tile offsets, byte counts and shared
 * JPEG tables. Afterwards a tile is one pread() from our own descriptor (no
 * libtiff handle, so no lock) plus a splice:
 *
 *   SOI | APP14 "Adobe" (transform: 0 = RGB, 1 = YCbCr) | tables | tile minus SOI
 *
 * The Adobe marker matters: Aperio often stores RGB-coded JPEG (TIFF
 * Photometric = RGB), which a browser would otherwise decode as YCbCr.
 * Only vendors whose stored tiles are exactly the level's grid are indexed
 * (Aperio, generic tiled TIFF); others (BIF, Trestle overlap their tiles)
 * render through OpenSlide. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <tiffio.h>

#include "cs/err.h"

#include "slide_internal.h"

static int vendor_has_grid_tiles(const char *vendor)
{
    return strcmp(vendor, "aperio") == 0 || strcmp(vendor, "generic-tiff") == 0;
}

static void quiet_handler(const char *module, const char *fmt, va_list ap)
{
    /* libtiff would print to stderr; a failed index only disables passthrough. */
}

static int index_directory(cs_slide *s, TIFF *tif, int level)
{
    cs_slide_rawlevel *rl = &s->raw[level];
    const cs_slide_level *l = &s->levels[level];
    uint32_t tw = 0, th = 0;
    uint16_t spp = 0, bps = 0, photometric = 0, planar = PLANARCONFIG_CONTIG;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);
    if (tw == 0 || th == 0 || spp != 3 || bps != 8 || planar != PLANARCONFIG_CONTIG)
        return 0;
    if (photometric != PHOTOMETRIC_RGB && photometric != PHOTOMETRIC_YCBCR)
        return 0;
    int64_t cols = (l->width + tw - 1) / tw, rows = (l->height + th - 1) / th;
    if ((uint64_t)(cols * rows) != TIFFNumberOfTiles(tif))
        return 0;
    uint64_t *off = NULL, *cnt = NULL;
    if (!TIFFGetField(tif, TIFFTAG_TILEOFFSETS, &off) ||
        !TIFFGetField(tif, TIFFTAG_TILEBYTECOUNTS, &cnt) || !off || !cnt)
        return 0;
    uint32_t tlen = 0;
    const uint8_t *tables = NULL;
    if (!TIFFGetField(tif, TIFFTAG_JPEGTABLES, &tlen, &tables))
        tlen = 0;
    /* Tables are SOI ... EOI: keep what lies between. */
    if (tlen >= 4 && tables[0] == 0xff && tables[1] == 0xd8)
        tables += 2, tlen -= 2;
    if (tlen >= 2 && tables[tlen - 2] == 0xff && tables[tlen - 1] == 0xd9)
        tlen -= 2;
    size_t n = (size_t)(cols * rows);
    rl->offsets = malloc(n * sizeof(uint64_t));
    rl->counts = malloc(n * sizeof(uint64_t));
    rl->prefix_len = 2 + 16 + tlen;
    rl->prefix = malloc(rl->prefix_len);
    if (!rl->offsets || !rl->counts || !rl->prefix) {
        free(rl->offsets);
        free(rl->counts);
        free(rl->prefix);
        memset(rl, 0, sizeof(*rl));
        return 0;
    }
    memcpy(rl->offsets, off, n * sizeof(uint64_t));
    memcpy(rl->counts, cnt, n * sizeof(uint64_t));
    static const uint8_t adobe[18] = {0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 'A',  'd',  'o',
                                      'b',  'e',  0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00};
    memcpy(rl->prefix, adobe, sizeof(adobe));
    rl->prefix[17] = photometric == PHOTOMETRIC_YCBCR ? 1 : 0;
    if (tlen)
        memcpy(rl->prefix + 18, tables, tlen);
    rl->cols = cols;
    rl->rows = rows;
    s->levels[level].tile_width = (int)tw;
    s->levels[level].tile_height = (int)th;
    s->levels[level].raw = CS_SLIDE_RAW_JPEG;
    return 1;
}

void cs_slide_tiff_index(cs_slide *s)
{
    if (!vendor_has_grid_tiles(s->vendor))
        return;
    TIFFErrorHandler old_err = TIFFSetErrorHandler(quiet_handler);
    TIFFErrorHandler old_warn = TIFFSetWarningHandler(quiet_handler);
    TIFF *tif = TIFFOpen(s->path, "rm");
    int found = 0;
    if (tif) {
        do {
            uint32_t w = 0, h = 0;
            uint16_t comp = 0;
            if (!TIFFIsTiled(tif) || !TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) ||
                !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) ||
                !TIFFGetField(tif, TIFFTAG_COMPRESSION, &comp) || comp != COMPRESSION_JPEG)
                continue;
            for (int i = 0; i < s->nlevels; i++) {
                if (s->raw[i].offsets == NULL && s->levels[i].width == (int64_t)w &&
                    s->levels[i].height == (int64_t)h) {
                    found += index_directory(s, tif, i);
                    break;
                }
            }
        } while (TIFFReadDirectory(tif));
        TIFFClose(tif);
    }
    TIFFSetErrorHandler(old_err);
    TIFFSetWarningHandler(old_warn);
    if (found)
        s->raw_fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (found && s->raw_fd < 0)
        cs_slide_tiff_free(s);
}

void cs_slide_tiff_free(cs_slide *s)
{
    for (int i = 0; i < CS_SLIDE_MAX_LEVELS; i++) {
        free(s->raw[i].offsets);
        free(s->raw[i].counts);
        free(s->raw[i].prefix);
        memset(&s->raw[i], 0, sizeof(s->raw[i]));
        if (s->levels[i].raw)
            s->levels[i].raw = CS_SLIDE_RAW_NONE;
    }
    if (s->raw_fd >= 0)
        close(s->raw_fd);
    s->raw_fd = -1;
}

int cs_slide_read_raw_tile(cs_slide *s, int level, int64_t col, int64_t row, cs_buf **out)
{
    if (level < 0 || level >= s->nlevels)
        return cs_error_set(CS_ERANGE, "level %d out of range", level);
    int e = cs_slide_get_error(s, NULL);
    if (e)
        return cs_error_set(e, "%s", s->errmsg);
    const cs_slide_rawlevel *rl = &s->raw[level];
    if (!rl->offsets)
        return cs_error_set(CS_ENOTFOUND, "level %d has no raw JPEG tiles", level);
    if (col < 0 || row < 0 || col >= rl->cols || row >= rl->rows)
        return cs_error_set(CS_ERANGE, "tile %lld,%lld out of range", (long long)col,
                            (long long)row);
    size_t idx = (size_t)(row * rl->cols + col);
    uint64_t off = rl->offsets[idx], cnt = rl->counts[idx];
    if (cnt == 0)
        return cs_error_set(CS_ENOTFOUND, "tile %lld,%lld is empty", (long long)col,
                            (long long)row);
    if (cnt < 4 || cnt > (64u << 20))
        return cs_slide_fail(s, CS_EFORMAT, "slide %s: tile %lld,%lld has bad size %llu", s->path,
                             (long long)col, (long long)row, (unsigned long long)cnt);
    cs_buf *b;
    int r = cs_buf_new(&b, rl->prefix_len + cnt);
    if (r < 0)
        return r;
    uint8_t *d = cs_buf_data(b);
    memcpy(d, rl->prefix, rl->prefix_len);
    uint8_t *tile = d + rl->prefix_len - 2; /* the tile's own SOI lands here, then is cut */
    uint8_t save[2] = {tile[0], tile[1]};
    ssize_t got = pread(s->raw_fd, tile, cnt, (off_t)off);
    if (got != (ssize_t)cnt) {
        cs_buf_unref(b);
        return cs_slide_fail(s, CS_EIO, "slide %s is truncated or unreadable at tile %lld,%lld",
                             s->path, (long long)col, (long long)row);
    }
    if (tile[0] != 0xff || tile[1] != 0xd8) {
        cs_buf_unref(b);
        return cs_slide_fail(s, CS_EFORMAT, "slide %s: tile %lld,%lld is not JPEG data", s->path,
                             (long long)col, (long long)row);
    }
    tile[0] = save[0];
    tile[1] = save[1];
    cs_buf_set_size(b, rl->prefix_len - 2 + cnt);
    *out = b;
    return 0;
}
