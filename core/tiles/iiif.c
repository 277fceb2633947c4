/* IIIF Image API 3.0: region, size, rotation and quality.format parsing. */
#include "cs/iiif.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

/* Parse exactly @p n comma-separated non-negative numbers (decimals if
 * @p decimals) filling the whole string. */
static int parse_list(const char *s, double *v, int n, int decimals)
{
    const char *p = s;
    for (int i = 0; i < n; i++) {
        if (*p < '0' || *p > '9')
            return -1;
        char *end;
        errno = 0;
        v[i] = decimals ? strtod(p, &end) : (double)strtoll(p, &end, 10);
        if (errno || end == p || !isfinite(v[i]) || v[i] > 1e12)
            return -1;
        p = end;
        if (i < n - 1) {
            if (*p != ',')
                return -1;
            p++;
        }
    }
    return *p ? -1 : 0;
}

int cs_iiif_parse(cs_iiif_request *out, int64_t width, int64_t height, const char *region,
                  const char *size, const char *rotation, const char *quality_format, int max_width,
                  int max_height, int64_t max_area)
{
    double v[4];
    int64_t x, y, w, h;
    if (strcmp(region, "full") == 0) {
        x = y = 0, w = width, h = height;
    } else if (strcmp(region, "square") == 0) {
        int64_t m = width < height ? width : height;
        x = (width - m) / 2, y = (height - m) / 2, w = h = m;
    } else if (strncmp(region, "pct:", 4) == 0) {
        if (parse_list(region + 4, v, 4, 1) < 0)
            return cs_error_set(CS_EINVAL, "malformed IIIF region '%s'", region);
        x = (int64_t)floor(v[0] * width / 100.0), y = (int64_t)floor(v[1] * height / 100.0);
        w = (int64_t)floor(v[2] * width / 100.0), h = (int64_t)floor(v[3] * height / 100.0);
    } else {
        if (parse_list(region, v, 4, 0) < 0)
            return cs_error_set(CS_EINVAL, "malformed IIIF region '%s'", region);
        x = (int64_t)v[0], y = (int64_t)v[1], w = (int64_t)v[2], h = (int64_t)v[3];
    }
    if (w <= 0 || h <= 0)
        return cs_error_set(CS_EINVAL, "IIIF region '%s' has zero width or height", region);
    if (x >= width || y >= height)
        return cs_error_set(CS_ERANGE, "IIIF region '%s' lies outside the %lldx%lld image", region,
                            (long long)width, (long long)height);
    if (x + w > width)
        w = width - x;
    if (y + h > height)
        h = height - y;

    const char *s = size;
    int up = 0;
    if (*s == '^')
        up = 1, s++;
    double ow, oh;
    if (strcmp(s, "max") == 0) {
        ow = (double)w, oh = (double)h;
        /* max never exceeds the server's limits: scale down to fit */
        double k = 1;
        if (max_width > 0 && ow > max_width)
            k = fmin(k, max_width / ow);
        if (max_height > 0 && oh > max_height)
            k = fmin(k, max_height / oh);
        if (max_area > 0 && ow * oh > (double)max_area)
            k = fmin(k, sqrt((double)max_area / (ow * oh)));
        ow = floor(ow * k), oh = floor(oh * k);
        if (ow < 1)
            ow = 1;
        if (oh < 1)
            oh = 1;
    } else if (strncmp(s, "pct:", 4) == 0) {
        if (parse_list(s + 4, v, 1, 1) < 0 || v[0] <= 0)
            return cs_error_set(CS_EINVAL, "malformed IIIF size '%s'", size);
        ow = floor(w * v[0] / 100.0), oh = floor(h * v[0] / 100.0);
    } else {
        int confined = 0;
        if (*s == '!')
            confined = 1, s++;
        const char *comma = strchr(s, ',');
        if (!comma || strchr(comma + 1, ','))
            return cs_error_set(CS_EINVAL, "malformed IIIF size '%s'", size);
        int hasw = comma != s, hash = comma[1] != '\0';
        char wbuf[32] = "", hbuf[32] = "";
        size_t wl = (size_t)(comma - s), hl = strlen(comma + 1);
        if (wl >= sizeof(wbuf) || hl >= sizeof(hbuf))
            return cs_error_set(CS_EINVAL, "malformed IIIF size '%s'", size);
        memcpy(wbuf, s, wl);
        memcpy(hbuf, comma + 1, hl);
        double vw = 0, vh = 0;
        if ((hasw && parse_list(wbuf, &vw, 1, 0) < 0) || (hash && parse_list(hbuf, &vh, 1, 0) < 0))
            return cs_error_set(CS_EINVAL, "malformed IIIF size '%s'", size);
        if ((!hasw && !hash) || (confined && !(hasw && hash)))
            return cs_error_set(CS_EINVAL, "malformed IIIF size '%s'", size);
        if (confined) {
            double k = fmin(vw / w, vh / h);
            ow = floor(w * k + 1e-9), oh = floor(h * k + 1e-9);
        } else if (hasw && hash) {
            ow = vw, oh = vh;
        } else if (hasw) {
            ow = vw, oh = round(h * vw / w);
        } else {
            oh = vh, ow = round(w * vh / h);
        }
    }
    if (ow < 1 || oh < 1)
        return cs_error_set(CS_ERANGE, "IIIF size '%s' gives an empty image", size);
    if (!up && (ow > w || oh > h))
        return cs_error_set(CS_EINVAL, "IIIF size '%s' is larger than the region; use ^ to upscale",
                            size);
    if ((max_width > 0 && ow > max_width) || (max_height > 0 && oh > max_height) ||
        (max_area > 0 && ow * oh > (double)max_area))
        return cs_error_set(CS_ETOOBIG, "IIIF size %.0fx%.0f exceeds the server's maximum %dx%d",
                            ow, oh, max_width, max_height);
    if (strcmp(rotation, "0") != 0)
        return cs_error_set(CS_EINVAL, "IIIF rotation '%s' not supported (only 0)", rotation);
    if (strcmp(quality_format, "default.jpg") != 0 && strcmp(quality_format, "color.jpg") != 0)
        return cs_error_set(CS_EINVAL,
                            "IIIF quality/format '%s' not supported (default.jpg, color.jpg)",
                            quality_format);
    out->x = x, out->y = y, out->w = w, out->h = h;
    out->out_w = (int)ow, out->out_h = (int)oh;
    return 0;
}
