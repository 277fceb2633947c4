/* cs_dicom_render(): stored values to 8-bit display values, as DCMTK's
 * dcmimgle does for a grey image:
 *
 *   modality  m = LUT[v - first] (Modality LUT Sequence) or v * slope + intercept
 *   VOI       y = window(m) or VOI LUT[m - first] scaled to 8 bits
 *   MONOCHROME1 inverts y.
 *
 * The window is PS3.3 C.11.2.1.2.1 (LINEAR):
 *   x <= c - 0.5 - (w - 1) / 2  -> 0
 *   x >  c - 0.5 + (w - 1) / 2  -> 255
 *   else  y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, truncated to an
 *         integer as DCMTK does (MONOCHROME1: 255 - y, then truncated).
 * VOI LUT Function LINEAR_EXACT and SIGMOID (C.11.2.1.3) are honoured too.
 * With no window the frame's min/max of m is used (DCMTK's +Wm: c = (min +
 * max) / 2, w = max - min).
 *
 * Grey frames go through a 2^bits_stored-entry table built per call, so a
 * 16-bit frame costs one table lookup per pixel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <limits.h>

#include "cs/err.h"

#include "dicom_internal.h"

static double lut_at(const cs_dicom_lut *l, double x)
{
    long i = (long)floor(x) - l->first;
    if (i < 0)
        i = 0;
    if (i >= l->n)
        i = l->n - 1;
    return l->data[i];
}

/* The window's output before truncation to an integer (DCMTK truncates;
 * MONOCHROME1 inverts before truncating). @p fn: 0 LINEAR (C.11.2.1.2.1),
 * 1 LINEAR_EXACT (C.11.2.1.3.2), 2 SIGMOID (C.11.2.1.3.1). */
static double window(double x, double c, double w, int fn)
{
    if (fn == 2) {
        if (w <= 0)
            w = 1;
        return 255.0 / (1.0 + exp(-4.0 * (x - c) / w));
    }
    if (fn == 1) {
        if (w <= 0)
            w = 1;
        if (x <= c - w / 2)
            return 0;
        if (x > c + w / 2)
            return 255;
        double y = ((x - c) / w + 0.5) * 255.0;
        return y < 0 ? 0 : y > 255 ? 255 : y;
    }
    if (w < 1)
        w = 1;
    double lo = c - 0.5 - (w - 1) / 2, hi = c - 0.5 + (w - 1) / 2;
    if (x <= lo)
        return 0;
    if (x > hi)
        return 255;
    double y = w > 1 ? ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 : 255.0;
    return y < 0 ? 0 : y > 255 ? 255 : y;
}

static double modality(const cs_dicom_pix *p, int v)
{
    if (p->modality.data && p->modality.n > 0)
        return lut_at(&p->modality, v);
    return v * p->info.slope + p->info.intercept;
}

static int render_grey(const cs_dicom_pix *p, const void *frame, const cs_dicom_window *win,
                       uint8_t *dst, size_t stride)
{
    const cs_dicom_info *in = &p->info;
    int ob = cs_dicom_out_bytes(in);
    int bits = in->bits_stored > 0 && in->bits_stored <= 16 ? in->bits_stored : ob * 8;
    if (in->bits_allocated == 1)
        bits = 1;
    int sgn = in->pixel_signed && bits > 1;
    long lo = sgn ? -(1L << (bits - 1)) : 0;
    long count = 1L << bits;
    size_t npx = (size_t)in->rows * in->cols;
    uint8_t *table = malloc((size_t)count);
    if (!table)
        return cs_error_set(CS_ENOMEM, "render: out of memory");
    const uint8_t *f8 = frame;
    const uint16_t *f16 = frame;
#define SAMPLE(i)                                                                                  \
    (ob == 1 ? (sgn ? (long)(int8_t)f8[i] : (long)f8[i])                                           \
             : (sgn ? (long)(int16_t)f16[i] : (long)f16[i]))
    double c = 0, w = 0;
    int use_voi_lut = 0;
    if (win && win->width > 0) {
        c = win->center;
        w = win->width;
    } else if (p->voi.data && p->voi.n > 0) {
        use_voi_lut = 1;
    } else if (p->has_window && p->ww > 0) {
        c = p->wc;
        w = p->ww;
    } else {
        double mn = INFINITY, mx = -INFINITY;
        /* min/max over the stored values present, then through modality */
        long smin = LONG_MAX, smax = LONG_MIN;
        for (size_t i = 0; i < npx; i++) {
            long v = SAMPLE(i);
            if (v < smin)
                smin = v;
            if (v > smax)
                smax = v;
        }
        if (p->modality.data) {
            for (long v = smin; v <= smax; v++) {
                double m = modality(p, (int)v);
                mn = m < mn ? m : mn;
                mx = m > mx ? m : mx;
            }
        } else {
            double a = modality(p, (int)smin), b = modality(p, (int)smax);
            mn = a < b ? a : b;
            mx = a < b ? b : a;
        }
        c = (mn + mx) / 2;
        w = mx - mn;
        if (w <= 0) { /* a flat frame: DCMTK shows it black */
            c = mx + 1;
            w = 1;
        }
    }
    int invert = strcmp(in->photometric, "MONOCHROME1") == 0;
    double vmax = p->voi.bits > 0 ? (double)((1L << p->voi.bits) - 1) : 255.0;
    for (long k = 0; k < count; k++) {
        long v = lo + k;
        double m = modality(p, (int)v);
        double y;
        if (use_voi_lut) {
            y = lut_at(&p->voi, m) / vmax * 255.0;
            y = y < 0 ? 0 : y > 255 ? 255 : y;
        } else {
            y = window(m, c, w, p->voi_function);
        }
        table[k] = (uint8_t)(invert ? 255.0 - y : y);
    }
    for (int r = 0; r < in->rows; r++) {
        uint8_t *d = dst + (size_t)r * stride;
        size_t base = (size_t)r * in->cols;
        for (int x = 0; x < in->cols; x++) {
            long v = SAMPLE(base + x);
            long k = v - lo;
            if (k < 0)
                k = 0;
            if (k >= count)
                k = count - 1;
            d[x] = table[k];
        }
    }
#undef SAMPLE
    free(table);
    return 0;
}

static uint8_t clamp8(double v)
{
    long r = lround(v);
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

static int render_colour(const cs_dicom_pix *p, const void *frame, uint8_t *dst, size_t stride)
{
    const cs_dicom_info *in = &p->info;
    int ob = cs_dicom_out_bytes(in);
    const char *pi = p->out_photometric;
    int ybr = strncmp(pi, "YBR_FULL", 8) == 0;
    int shift = ob == 2 && in->bits_stored > 8 ? in->bits_stored - 8 : 0;
    const uint8_t *f8 = frame;
    const uint16_t *f16 = frame;
    for (int r = 0; r < in->rows; r++) {
        uint8_t *d = dst + (size_t)r * stride;
        for (int x = 0; x < in->cols; x++) {
            size_t i = ((size_t)r * in->cols + x) * 3;
            int s[3];
            for (int k = 0; k < 3; k++)
                s[k] = ob == 1 ? f8[i + k] : f16[i + k] >> shift;
            if (ybr) {
                double y = s[0], cb = s[1] - 128.0, cr = s[2] - 128.0;
                d[3 * x] = clamp8(y + 1.402 * cr);
                d[3 * x + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
                d[3 * x + 2] = clamp8(y + 1.772 * cb);
            } else {
                for (int k = 0; k < 3; k++)
                    d[3 * x + k] = (uint8_t)(s[k] > 255 ? 255 : s[k]);
            }
        }
    }
    return 0;
}

static int render_palette(const cs_dicom_pix *p, const void *frame, uint8_t *dst, size_t stride)
{
    const cs_dicom_info *in = &p->info;
    for (int k = 0; k < 3; k++)
        if (!p->pal[k].data || p->pal[k].n <= 0)
            return cs_error_set(CS_EFORMAT, "PALETTE COLOR without a complete palette");
    int ob = cs_dicom_out_bytes(in);
    const uint8_t *f8 = frame;
    const uint16_t *f16 = frame;
    for (int r = 0; r < in->rows; r++) {
        uint8_t *d = dst + (size_t)r * stride;
        for (int x = 0; x < in->cols; x++) {
            size_t i = (size_t)r * in->cols + x;
            int v = ob == 1 ? f8[i] : f16[i];
            for (int k = 0; k < 3; k++) {
                const cs_dicom_lut *l = &p->pal[k];
                long j = v - l->first;
                j = j < 0 ? 0 : j >= l->n ? l->n - 1 : j;
                uint16_t e = l->data[j];
                d[3 * x + k] = l->bits > 8 ? (uint8_t)(e >> (l->bits - 8)) : (uint8_t)e;
            }
        }
    }
    return 0;
}

int cs_dicom_render_frame(const cs_dicom_pix *p, const void *frame, const cs_dicom_window *win,
                          uint8_t *dst, size_t stride, size_t cap, int *channels)
{
    const cs_dicom_info *in = &p->info;
    const char *pi = p->out_photometric;
    int ch;
    if (strncmp(pi, "MONOCHROME", 10) == 0 && in->samples == 1)
        ch = 1;
    else if (strcmp(pi, "PALETTE COLOR") == 0 && in->samples == 1)
        ch = 3;
    else if (in->samples == 3 && (strcmp(pi, "RGB") == 0 || strncmp(pi, "YBR_FULL", 8) == 0))
        ch = 3;
    else
        return cs_error_set(CS_EFORMAT, "cannot render photometric %s with %d samples", pi,
                            in->samples);
    if (stride < (size_t)in->cols * ch ||
        cap < stride * (size_t)(in->rows - 1) + (size_t)in->cols * ch)
        return cs_error_set(CS_ERANGE, "render buffer too small for %dx%dx%d", in->cols, in->rows,
                            ch);
    *channels = ch;
    if (ch == 1)
        return render_grey(p, frame, win, dst, stride);
    if (in->samples == 1)
        return render_palette(p, frame, dst, stride);
    return render_colour(p, frame, dst, stride);
}
