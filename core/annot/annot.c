/* Annotations: validation, measurement and QuPath-style GeoJSON. */
#include "cs/annot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cs/err.h"

typedef struct {
    const char *name;
    int min_pts, max_pts;
    int closed; /* has an area */
} shape_kind;

static const shape_kind kinds[] = {
    {"point", 1, 1, 0},
    {"text", 1, 1, 0},
    {"line", 2, CS_ANNOT_MAX_POINTS, 0},
    {"rectangle", 2, 2, 1},
    {"ellipse", 2, 2, 1},
    {"polygon", 3, CS_ANNOT_MAX_POINTS, 1},
    {"freehand", 3, CS_ANNOT_MAX_POINTS, 1},
};

static const shape_kind *find_kind(const char *type)
{
    for (size_t i = 0; type && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(kinds[i].name, type))
            return &kinds[i];
    return NULL;
}

/* ---- validation ---- */

static int check_pts(const json_t *pts, const shape_kind *k, json_t **out)
{
    if (!json_is_array(pts))
        return cs_error_set(CS_EINVAL, "pts: expected an array of [x, y] points");
    size_t n = json_array_size(pts);
    if ((int)n < k->min_pts || n > (size_t)k->max_pts)
        return cs_error_set(CS_EINVAL, "pts: a %s takes %d%s point%s, not %zu", k->name, k->min_pts,
                            k->max_pts > k->min_pts ? " or more" : "",
                            k->min_pts == 1 && k->max_pts == 1 ? "" : "s", n);
    json_t *o = json_array();
    if (!o)
        return cs_error_set(CS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(pts, i);
        const json_t *x = json_array_get(p, 0), *y = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_number(x) ||
            !json_is_number(y)) {
            json_decref(o);
            return cs_error_set(CS_EINVAL, "pts[%zu]: expected [x, y] numbers", i);
        }
        double vx = json_number_value(x), vy = json_number_value(y);
        if (!isfinite(vx) || !isfinite(vy) || fabs(vx) > 1e9 || fabs(vy) > 1e9) {
            json_decref(o);
            return cs_error_set(CS_EINVAL, "pts[%zu]: coordinates out of range", i);
        }
        json_array_append_new(o, json_pack("[f, f]", vx, vy));
    }
    *out = o;
    return 0;
}

static int is_color(const char *c)
{
    if (strlen(c) != 7 || c[0] != '#')
        return 0;
    for (int i = 1; i < 7; i++)
        if (!strchr("0123456789abcdefABCDEF", c[i]))
            return 0;
    return 1;
}

static int copy_text(json_t *out, const json_t *in, const json_t *base, const char *key, size_t max)
{
    const json_t *v = json_object_get(in, key);
    if (!v)
        v = base ? json_object_get(base, key) : NULL;
    if (!v || json_is_null(v)) {
        json_object_set_new(out, key, json_string(""));
        return 0;
    }
    if (!json_is_string(v))
        return cs_error_set(CS_EINVAL, "%s: expected a string", key);
    if (json_string_length(v) > max)
        return cs_error_set(CS_EINVAL, "%s: longer than %zu bytes", key, max);
    json_object_set_new(out, key, json_stringn(json_string_value(v), json_string_length(v)));
    return 0;
}

int cs_annot_normalize(const json_t *in, const json_t *base, json_t **out)
{
    if (!json_is_object(in))
        return cs_error_set(CS_EINVAL, "annotation: expected a JSON object");
    const char *type = json_string_value(json_object_get(in, "type"));
    const char *base_type = base ? json_string_value(json_object_get(base, "type")) : NULL;
    if (base && type && base_type && strcmp(type, base_type))
        return cs_error_set(CS_EINVAL, "type: cannot change from %s to %s", base_type, type);
    if (!type)
        type = base_type;
    if (!type && json_object_get(in, "type"))
        return cs_error_set(CS_EINVAL, "type: expected a string");
    const shape_kind *k = find_kind(type);
    if (!k)
        return cs_error_set(CS_EINVAL,
                            "type: \"%s\" is not one of point, line, rectangle, ellipse, "
                            "polygon, freehand, text",
                            type ? type : "");
    json_t *o = base ? json_deep_copy(base) : json_object();
    if (!o)
        return cs_error_set(CS_ENOMEM, "out of memory");
    json_object_set_new(o, "type", json_string(k->name));
    const json_t *pts = json_object_get(in, "pts");
    if (!pts && base)
        pts = json_object_get(base, "pts");
    json_t *np = NULL;
    int r = check_pts(pts, k, &np);
    if (r == 0) {
        json_object_set_new(o, "pts", np);
        r = copy_text(o, in, base, "label", 4096);
    }
    if (r == 0)
        r = copy_text(o, in, base, "class", 256);
    if (r == 0)
        r = copy_text(o, in, base, "comment", 65536);
    if (r == 0)
        r = copy_text(o, in, base, "color", 7);
    if (r == 0) {
        const char *c = json_string_value(json_object_get(o, "color"));
        if (*c && !is_color(c))
            r = cs_error_set(CS_EINVAL, "color: expected \"#rrggbb\", not \"%s\"", c);
    }
    if (r == 0 && !strcmp(k->name, "text") && !*json_string_value(json_object_get(o, "label")))
        r = cs_error_set(CS_EINVAL, "label: a text annotation needs its text");
    if (r < 0) {
        json_decref(o);
        return r;
    }
    *out = o;
    return 0;
}

/* ---- measurement ---- */

static void pt(const json_t *a, size_t i, double *x, double *y)
{
    const json_t *p = json_array_get(json_object_get(a, "pts"), i);
    *x = json_number_value(json_array_get(p, 0));
    *y = json_number_value(json_array_get(p, 1));
}

void cs_annot_bbox(const json_t *a, double box[4])
{
    size_t n = json_array_size(json_object_get(a, "pts"));
    box[0] = box[1] = INFINITY;
    box[2] = box[3] = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x, y;
        pt(a, i, &x, &y);
        box[0] = fmin(box[0], x);
        box[1] = fmin(box[1], y);
        box[2] = fmax(box[2], x);
        box[3] = fmax(box[3], y);
    }
    if (n == 0)
        box[0] = box[1] = box[2] = box[3] = 0;
}

/* Path length with the axes scaled by sx, sy; closed adds the last edge. */
static double path_length(const json_t *a, double sx, double sy, int closed)
{
    size_t n = json_array_size(json_object_get(a, "pts"));
    double len = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i == n && (!closed || n < 3))
            break;
        double x0, y0, x1, y1;
        pt(a, i - 1, &x0, &y0);
        pt(a, i % n, &x1, &y1);
        len += hypot((x1 - x0) * sx, (y1 - y0) * sy);
    }
    return len;
}

static double shoelace(const json_t *a)
{
    size_t n = json_array_size(json_object_get(a, "pts"));
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double x0, y0, x1, y1;
        pt(a, i, &x0, &y0);
        pt(a, (i + 1) % n, &x1, &y1);
        s += x0 * y1 - x1 * y0;
    }
    return fabs(s) / 2;
}

static double ellipse_perimeter(double ra, double rb)
{
    return M_PI * (3 * (ra + rb) - sqrt((3 * ra + rb) * (ra + 3 * rb)));
}

/* Area (px²) and perimeter with axes scaled by sx, sy. */
static void closed_figures(const json_t *a, const char *type, double sx, double sy, double *area,
                           double *perim)
{
    if (!strcmp(type, "rectangle") || !strcmp(type, "ellipse")) {
        double x0, y0, x1, y1;
        pt(a, 0, &x0, &y0);
        pt(a, 1, &x1, &y1);
        double w = fabs(x1 - x0) * sx, h = fabs(y1 - y0) * sy;
        if (type[0] == 'r') {
            *area = w * h;
            *perim = 2 * (w + h);
        } else {
            *area = M_PI * (w / 2) * (h / 2);
            *perim = ellipse_perimeter(w / 2, h / 2);
        }
        return;
    }
    *area = shoelace(a) * sx * sy;
    *perim = path_length(a, sx, sy, 1);
}

json_t *cs_annot_measure(const json_t *a, double mpp_x, double mpp_y)
{
    json_t *m = json_object();
    const shape_kind *k = find_kind(json_string_value(json_object_get(a, "type")));
    if (!m || !k)
        return m;
    int um = mpp_x > 0 && mpp_y > 0 && isfinite(mpp_x) && isfinite(mpp_y);
    if (!strcmp(k->name, "line")) {
        json_object_set_new(m, "length_px", json_real(path_length(a, 1, 1, 0)));
        if (um)
            json_object_set_new(m, "length_um", json_real(path_length(a, mpp_x, mpp_y, 0)));
    } else if (k->closed) {
        double area, perim;
        closed_figures(a, k->name, 1, 1, &area, &perim);
        json_object_set_new(m, "area_px2", json_real(area));
        json_object_set_new(m, "perimeter_px", json_real(perim));
        if (um) {
            closed_figures(a, k->name, mpp_x, mpp_y, &area, &perim);
            json_object_set_new(m, "area_um2", json_real(area));
            json_object_set_new(m, "perimeter_um", json_real(perim));
        }
    }
    return m;
}

/* ---- colours ---- */

typedef struct {
    const char *cls;
    const char *color;
} class_color;

/* QuPath's default classes and colours. */
static const class_color palette[] = {
    {"Tumor", "#c80000"},    {"Stroma", "#96c896"},   {"Immune cells", "#a05aa0"},
    {"Necrosis", "#323232"}, {"Other", "#ffc800"},    {"Region*", "#0000b4"},
    {"Ignore*", "#b4b4b4"},  {"Positive", "#c83232"}, {"Negative", "#7070e1"},
};

static _Thread_local char hashed[8];

static const char *hash_color(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    /* A saturated hue at medium lightness: visible on tissue. */
    double hue = (h % 360) / 60.0, c = 0.75, x = c * (1 - fabs(fmod(hue, 2) - 1)), m = 0.15;
    double rgb[3][6] = {{c, x, 0, 0, x, c}, {x, c, c, x, 0, 0}, {0, 0, x, c, c, x}};
    int sector = (int)hue % 6;
    snprintf(hashed, sizeof(hashed), "#%02x%02x%02x", (int)((rgb[0][sector] + m) * 255),
             (int)((rgb[1][sector] + m) * 255), (int)((rgb[2][sector] + m) * 255));
    return hashed;
}

const char *cs_annot_default_color(const char *cls, const char *author)
{
    if (cls && *cls) {
        for (size_t i = 0; i < sizeof(palette) / sizeof(palette[0]); i++)
            if (!strcasecmp(palette[i].cls, cls))
                return palette[i].color;
        return hash_color(cls);
    }
    return hash_color(author && *author ? author : "?");
}

/* ---- GeoJSON ---- */

static json_t *rgb_array(const char *color)
{
    unsigned r = 0, g = 0, b = 0;
    if (color && is_color(color))
        sscanf(color + 1, "%2x%2x%2x", &r, &g, &b);
    return json_pack("[i, i, i]", (int)r, (int)g, (int)b);
}

static json_t *ring(const json_t *a, const char *type)
{
    json_t *r = json_array();
    double x0, y0, x1, y1;
    if (!strcmp(type, "rectangle")) {
        pt(a, 0, &x0, &y0);
        pt(a, 1, &x1, &y1);
        double c[5][2] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}};
        for (int i = 0; i < 5; i++)
            json_array_append_new(r, json_pack("[f, f]", c[i][0], c[i][1]));
    } else if (!strcmp(type, "ellipse")) {
        pt(a, 0, &x0, &y0);
        pt(a, 1, &x1, &y1);
        double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, rx = fabs(x1 - x0) / 2,
               ry = fabs(y1 - y0) / 2;
        for (int i = 0; i <= 64; i++) {
            double t = 2 * M_PI * (i % 64) / 64;
            json_array_append_new(r, json_pack("[f, f]", cx + rx * cos(t), cy + ry * sin(t)));
        }
    } else {
        json_t *pts = json_object_get(a, "pts");
        size_t i;
        json_t *p;
        json_array_foreach(pts, i, p) json_array_append(r, p);
        json_array_append(r, json_array_get(pts, 0));
    }
    return json_pack("[o]", r);
}

json_t *cs_annot_to_feature(const json_t *a)
{
    const char *type = json_string_value(json_object_get(a, "type"));
    json_t *pts = json_object_get(a, "pts");
    json_t *geom;
    if (!type)
        type = "";
    if (!strcmp(type, "point") || !strcmp(type, "text"))
        geom = json_pack("{s:s, s:O}", "type", "Point", "coordinates", json_array_get(pts, 0));
    else if (!strcmp(type, "line"))
        geom = json_pack("{s:s, s:O}", "type", "LineString", "coordinates", pts);
    else
        geom = json_pack("{s:s, s:o}", "type", "Polygon", "coordinates", ring(a, type));
    const char *cls = json_string_value(json_object_get(a, "class"));
    const char *color = json_string_value(json_object_get(a, "color"));
    json_t *mine = json_pack("{s:s, s:O}", "type", type, "pts", pts);
    static const char *const keep[] = {"comment", "color",   "author", "rev",
                                       "created", "updated", "measure"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        json_t *v = json_object_get(a, keep[i]);
        if (v)
            json_object_set(mine, keep[i], v);
    }
    json_t *props = json_pack("{s:s, s:s, s:b, s:o, s:o}", "objectType", "annotation", "name",
                              json_string_value(json_object_get(a, "label")) ?: "", "isLocked", 0,
                              "color", rgb_array(color), "consilium", mine);
    if (cls && *cls)
        json_object_set_new(props, "classification",
                            json_pack("{s:s, s:o}", "name", cls, "color",
                                      rgb_array(cs_annot_default_color(cls, NULL))));
    json_t *f =
        json_pack("{s:s, s:o, s:o}", "type", "Feature", "geometry", geom, "properties", props);
    const char *id = json_string_value(json_object_get(a, "id"));
    if (id)
        json_object_set_new(f, "id", json_string(id));
    return f;
}

json_t *cs_annot_to_geojson(const json_t *list)
{
    json_t *feats = json_array();
    size_t i;
    const json_t *a;
    json_array_foreach(list, i, a) json_array_append_new(feats, cs_annot_to_feature(a));
    return json_pack("{s:s, s:o}", "type", "FeatureCollection", "features", feats);
}

/* Drop a ring's closing point (equal to the first). */
static json_t *open_ring(const json_t *ring)
{
    json_t *pts = json_deep_copy(ring);
    size_t n = json_array_size(pts);
    if (n >= 2 && json_equal(json_array_get(pts, 0), json_array_get(pts, n - 1)))
        json_array_remove(pts, n - 1);
    return pts;
}

static int from_feature(const json_t *f, size_t idx, json_t *out)
{
    if (!json_is_object(f) ||
        strcmp(json_string_value(json_object_get(f, "type")) ?: "", "Feature"))
        return cs_error_set(CS_EINVAL, "features[%zu]: not a GeoJSON Feature", idx);
    const json_t *props = json_object_get(f, "properties");
    const json_t *mine = json_object_get(props, "consilium");
    const json_t *geom = json_object_get(f, "geometry");
    const char *gt = json_string_value(json_object_get(geom, "type"));
    const json_t *coords = json_object_get(geom, "coordinates");
    const char *cls =
        json_string_value(json_object_get(json_object_get(props, "classification"), "name"));
    json_t *a = json_object();
    json_object_set_new(a, "label",
                        json_string(json_string_value(json_object_get(props, "name")) ?: ""));
    json_object_set_new(a, "class", json_string(cls ?: ""));
    if (json_is_object(mine) && json_object_get(mine, "type") && json_object_get(mine, "pts")) {
        static const char *const keep[] = {"type", "pts", "comment", "color"};
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            json_t *v = json_object_get(mine, keep[i]);
            if (v)
                json_object_set(a, keep[i], v);
        }
        json_t *src = json_object();
        static const char *const orig[] = {"author", "rev", "created", "updated"};
        for (size_t i = 0; i < sizeof(orig) / sizeof(orig[0]); i++) {
            json_t *v = json_object_get(mine, orig[i]);
            if (v)
                json_object_set(src, orig[i], v);
        }
        if (json_object_get(f, "id"))
            json_object_set(src, "id", json_object_get(f, "id"));
        json_object_set_new(a, "source", src);
        json_array_append_new(out, a);
        return 0;
    }
    if (gt && !strcmp(gt, "Point")) {
        json_object_set_new(a, "type", json_string("point"));
        json_object_set_new(a, "pts", json_pack("[O]", coords));
    } else if (gt && !strcmp(gt, "MultiPoint")) {
        /* QuPath's points annotation: one point annotation per point. */
        size_t i;
        const json_t *p;
        json_array_foreach(coords, i, p)
        {
            json_t *one = json_deep_copy(a);
            json_object_set_new(one, "type", json_string("point"));
            json_object_set_new(one, "pts", json_pack("[O]", p));
            json_array_append_new(out, one);
        }
        json_decref(a);
        return json_array_size(coords)
                   ? 0
                   : cs_error_set(CS_EINVAL, "features[%zu]: empty MultiPoint", idx);
    } else if (gt && !strcmp(gt, "LineString")) {
        json_object_set_new(a, "type", json_string("line"));
        json_object_set(a, "pts", (json_t *)coords);
    } else if (gt && (!strcmp(gt, "Polygon") || !strcmp(gt, "MultiPolygon"))) {
        const json_t *outer = json_array_get(coords, 0);
        if (gt[0] == 'M')
            outer = json_array_get(outer, 0);
        json_object_set_new(a, "type", json_string("polygon"));
        json_object_set_new(a, "pts", open_ring(outer));
    } else {
        json_decref(a);
        return cs_error_set(CS_EINVAL, "features[%zu]: geometry \"%s\" is not supported", idx,
                            gt ? gt : "(none)");
    }
    if (!cls || !*cls) {
        const json_t *c = json_object_get(props, "color");
        if (json_array_size(c) == 3) {
            char hex[8];
            snprintf(hex, sizeof(hex), "#%02x%02x%02x",
                     (int)json_integer_value(json_array_get(c, 0)) & 255,
                     (int)json_integer_value(json_array_get(c, 1)) & 255,
                     (int)json_integer_value(json_array_get(c, 2)) & 255);
            json_object_set_new(a, "color", json_string(hex));
        }
    }
    json_array_append_new(out, a);
    return 0;
}

int cs_annot_from_geojson(const json_t *fc, json_t **out)
{
    const char *t = json_string_value(json_object_get(fc, "type"));
    json_t *list = json_array();
    if (!list)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int r = 0;
    if (t && !strcmp(t, "Feature")) {
        r = from_feature(fc, 0, list);
    } else if (t && !strcmp(t, "FeatureCollection") &&
               json_is_array(json_object_get(fc, "features"))) {
        size_t i;
        const json_t *f;
        json_array_foreach(json_object_get(fc, "features"), i, f)
        {
            if ((r = from_feature(f, i, list)) < 0)
                break;
        }
    } else {
        r = cs_error_set(CS_EINVAL, "GeoJSON: expected a FeatureCollection or a Feature");
    }
    if (r < 0) {
        json_decref(list);
        return r;
    }
    *out = list;
    return 0;
}
