/* viewer/annot: see annot.h. */
#include "annot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cs/err.h"
#include "cs/thread.h"

#define MAX_PTS 100000

static const char *const type_names[VW_AN_NTYPES] = {"point",   "line",     "rectangle", "ellipse",
                                                     "polygon", "freehand", "text"};

const char *const vw_annot_classes[] = {"Tumor",        "Stroma", "Necrosis",
                                        "Immune cells", "Other",  NULL};
static const uint32_t class_colors[] = {0xc80000, 0x2e9e3e, 0x6b3fa0, 0x1f6fd6, 0xe0a000};

const char *vw_annot_type_name(vw_an_type t)
{
    return t >= 0 && t < VW_AN_NTYPES ? type_names[t] : "?";
}

int vw_annot_type_parse(const char *s)
{
    for (int i = 0; s && i < VW_AN_NTYPES; i++)
        if (strcmp(s, type_names[i]) == 0)
            return i;
    return -1;
}

int vw_annot_closed(vw_an_type t)
{
    return t == VW_AN_RECT || t == VW_AN_ELLIPSE || t == VW_AN_POLYGON || t == VW_AN_FREEHAND;
}

uint32_t vw_annot_class_color(const char *cls)
{
    for (int i = 0; cls && vw_annot_classes[i]; i++)
        if (strcmp(cls, vw_annot_classes[i]) == 0)
            return class_colors[i];
    return 0;
}

uint32_t vw_annot_author_color(const char *author)
{
    /* bright, distinct hues that show on H&E */
    static const uint32_t pal[] = {0x00c8ff, 0xffd400, 0x00e070, 0xff6ec7,
                                   0xff8c1a, 0x9d7bff, 0x40ffe0, 0xc8ff40};
    uint32_t h = 2166136261u;
    for (const char *p = author ? author : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return pal[h % (sizeof(pal) / sizeof(pal[0]))];
}

void vw_annot_make_id(char out[17])
{
    uint8_t b[8];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t v = (uint64_t)cs_clock_ns() * 6364136223846793005ull + (uint64_t)getpid();
        memcpy(b, &v, sizeof(b));
    }
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- objects ---- */

int vw_annot_set_str(char **dst, const char *src)
{
    char *n = strdup(src ? src : "");
    if (!n)
        return CS_ENOMEM;
    free(*dst);
    *dst = n;
    return 0;
}

vw_annot *vw_annot_new(vw_annots *s, vw_an_type type)
{
    vw_annot *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->key = ++s->next_key;
    a->type = type;
    if (vw_annot_set_str(&a->label, "") < 0 || vw_annot_set_str(&a->cls, "") < 0 ||
        vw_annot_set_str(&a->comment, "") < 0) {
        vw_annot_free(a);
        return NULL;
    }
    return a;
}

void vw_annot_free(vw_annot *a)
{
    if (!a)
        return;
    free(a->pts);
    free(a->label);
    free(a->cls);
    free(a->comment);
    free(a);
}

int vw_annot_add_pt(vw_annot *a, double x, double y)
{
    if (a->npts >= MAX_PTS)
        return CS_ERANGE;
    if (a->npts == a->cap) {
        int cap = a->cap ? a->cap * 2 : 8;
        vw_pt *n = realloc(a->pts, (size_t)cap * sizeof(*n));
        if (!n)
            return CS_ENOMEM;
        a->pts = n;
        a->cap = cap;
    }
    a->pts[a->npts].x = x;
    a->pts[a->npts].y = y;
    a->npts++;
    return 0;
}

vw_annot *vw_annot_clone(vw_annots *s, const vw_annot *a)
{
    vw_annot *c = vw_annot_new(s, a->type);
    if (!c)
        return NULL;
    uint64_t key = c->key;
    char *l = c->label, *k = c->cls, *m = c->comment;
    *c = *a;
    c->key = key;
    c->pts = NULL;
    c->npts = c->cap = 0;
    c->label = l;
    c->cls = k;
    c->comment = m;
    if (vw_annot_set_str(&c->label, a->label) < 0 || vw_annot_set_str(&c->cls, a->cls) < 0 ||
        vw_annot_set_str(&c->comment, a->comment) < 0) {
        vw_annot_free(c);
        return NULL;
    }
    for (int i = 0; i < a->npts; i++)
        if (vw_annot_add_pt(c, a->pts[i].x, a->pts[i].y) < 0) {
            vw_annot_free(c);
            return NULL;
        }
    return c;
}

void vw_annots_init(vw_annots *s, double mpp_x, double mpp_y)
{
    memset(s, 0, sizeof(*s));
    s->mpp_x = mpp_x > 0 ? mpp_x : 0;
    s->mpp_y = mpp_y > 0 ? mpp_y : s->mpp_x;
}

void vw_annots_clear(vw_annots *s)
{
    for (size_t i = 0; i < s->n; i++)
        vw_annot_free(s->v[i]);
    s->n = 0;
}

void vw_annots_free(vw_annots *s)
{
    vw_annots_clear(s);
    free(s->v);
    s->v = NULL;
    s->cap = 0;
}

int vw_annots_add(vw_annots *s, vw_annot *a)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        vw_annot **n = realloc(s->v, cap * sizeof(*n));
        if (!n) {
            vw_annot_free(a);
            return CS_ENOMEM;
        }
        s->v = n;
        s->cap = cap;
    }
    s->v[s->n++] = a;
    return 0;
}

static long index_of(const vw_annots *s, uint64_t key)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i]->key == key)
            return (long)i;
    return -1;
}

vw_annot *vw_annots_by_key(const vw_annots *s, uint64_t key)
{
    long i = key ? index_of(s, key) : -1;
    return i < 0 ? NULL : s->v[i];
}

vw_annot *vw_annots_by_id(const vw_annots *s, const char *id)
{
    if (!id || !*id)
        return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->id, id) == 0)
            return s->v[i];
    return NULL;
}

void vw_annots_remove(vw_annots *s, uint64_t key)
{
    long i = index_of(s, key);
    if (i < 0)
        return;
    vw_annot_free(s->v[i]);
    memmove(&s->v[i], &s->v[i + 1], (s->n - (size_t)i - 1) * sizeof(*s->v));
    s->n--;
}

void vw_annots_replace(vw_annots *s, uint64_t key, vw_annot *a)
{
    long i = index_of(s, key);
    if (i < 0) {
        vw_annots_add(s, a);
        return;
    }
    a->key = key;
    vw_annot_free(s->v[i]);
    s->v[i] = a;
}

/* ---- geometry ---- */

void vw_annot_ellipse_pts(const vw_annot *a, vw_pt *out, int n)
{
    double cx = (a->pts[0].x + a->pts[1].x) / 2, cy = (a->pts[0].y + a->pts[1].y) / 2;
    double rx = fabs(a->pts[1].x - a->pts[0].x) / 2, ry = fabs(a->pts[1].y - a->pts[0].y) / 2;
    for (int i = 0; i < n; i++) {
        double t = 2 * M_PI * i / n;
        out[i].x = cx + rx * cos(t);
        out[i].y = cy + ry * sin(t);
    }
}

int vw_annot_outline(const vw_annot *a, vw_pt **out)
{
    *out = NULL;
    int n = 0;
    if (a->type == VW_AN_RECT && a->npts >= 2)
        n = 4;
    else if (a->type == VW_AN_ELLIPSE && a->npts >= 2)
        n = 64;
    else if ((a->type == VW_AN_POLYGON || a->type == VW_AN_FREEHAND) && a->npts >= 2)
        n = a->npts;
    if (!n || !(*out = malloc((size_t)n * sizeof(**out))))
        return 0;
    vw_pt *o = *out;
    if (a->type == VW_AN_RECT) {
        double x0 = a->pts[0].x, y0 = a->pts[0].y, x1 = a->pts[1].x, y1 = a->pts[1].y;
        o[0] = (vw_pt){x0, y0};
        o[1] = (vw_pt){x1, y0};
        o[2] = (vw_pt){x1, y1};
        o[3] = (vw_pt){x0, y1};
    } else if (a->type == VW_AN_ELLIPSE) {
        vw_annot_ellipse_pts(a, o, n);
    } else {
        memcpy(o, a->pts, (size_t)n * sizeof(*o));
    }
    return n;
}

static double seg_len(vw_pt p, vw_pt q, double sx, double sy)
{
    return hypot((q.x - p.x) * sx, (q.y - p.y) * sy);
}

static double ring_len(const vw_pt *p, int n, double sx, double sy)
{
    double l = 0;
    for (int i = 0; i < n; i++)
        l += seg_len(p[i], p[(i + 1) % n], sx, sy);
    return l;
}

void vw_annot_measure(const vw_annots *s, const vw_annot *a, vw_measure *m)
{
    memset(m, 0, sizeof(*m));
    double mx = s->mpp_x, my = s->mpp_y;
    m->has_um = mx > 0 && my > 0;
    if (a->type == VW_AN_LINE) {
        for (int i = 0; i + 1 < a->npts; i++) {
            m->length_px += seg_len(a->pts[i], a->pts[i + 1], 1, 1);
            if (m->has_um)
                m->length_um += seg_len(a->pts[i], a->pts[i + 1], mx, my);
        }
        return;
    }
    if (!vw_annot_closed(a->type) || a->npts < 2)
        return;
    if (a->type == VW_AN_RECT) {
        double w = fabs(a->pts[1].x - a->pts[0].x), h = fabs(a->pts[1].y - a->pts[0].y);
        m->area_px2 = w * h;
        m->perimeter_px = 2 * (w + h);
        m->area_um2 = w * h * mx * my;
        m->perimeter_um = 2 * (w * mx + h * my);
    } else if (a->type == VW_AN_ELLIPSE) {
        double ra = fabs(a->pts[1].x - a->pts[0].x) / 2, rb = fabs(a->pts[1].y - a->pts[0].y) / 2;
        m->area_px2 = M_PI * ra * rb;
        m->area_um2 = M_PI * ra * mx * rb * my;
        /* Ramanujan's approximation */
        double pa = ra * mx, pb = rb * my;
        m->perimeter_px = M_PI * (3 * (ra + rb) - sqrt((3 * ra + rb) * (ra + 3 * rb)));
        m->perimeter_um = M_PI * (3 * (pa + pb) - sqrt((3 * pa + pb) * (pa + 3 * pb)));
    } else {
        double sum = 0;
        for (int i = 0; i < a->npts; i++) {
            vw_pt p = a->pts[i], q = a->pts[(i + 1) % a->npts];
            sum += p.x * q.y - q.x * p.y;
        }
        m->area_px2 = fabs(sum) / 2;
        m->area_um2 = m->area_px2 * mx * my;
        m->perimeter_px = ring_len(a->pts, a->npts, 1, 1);
        m->perimeter_um = ring_len(a->pts, a->npts, mx, my);
    }
    if (!m->has_um)
        m->area_um2 = m->perimeter_um = 0;
}

/* ---- hit-testing (screen space) ---- */

static double dist_seg(double px, double py, double ax, double ay, double bx, double by)
{
    double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return hypot(px - (ax + t * dx), py - (ay + t * dy));
}

static int inside(const vw_pt *p, int n, double x, double y)
{
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++)
        if ((p[i].y > y) != (p[j].y > y) &&
            x < (p[j].x - p[i].x) * (y - p[i].y) / (p[j].y - p[i].y) + p[i].x)
            in = !in;
    return in;
}

vw_annot *vw_annots_hit(const vw_annots *s, double vx, double vy, double zoom, double sx, double sy,
                        double tol)
{
    /* level-0 point and tolerance */
    double x = vx + sx / zoom, y = vy + sy / zoom, t = tol / zoom;
    vw_annot *in_hit = NULL;
    for (size_t k = s->n; k-- > 0;) {
        vw_annot *a = s->v[k];
        if (a->npts < 1)
            continue;
        if (a->type == VW_AN_POINT || a->type == VW_AN_TEXT) {
            if (hypot(a->pts[0].x - x, a->pts[0].y - y) <= t * 1.5)
                return a;
            continue;
        }
        if (a->type == VW_AN_LINE) {
            for (int i = 0; i + 1 < a->npts; i++)
                if (dist_seg(x, y, a->pts[i].x, a->pts[i].y, a->pts[i + 1].x, a->pts[i + 1].y) <= t)
                    return a;
            continue;
        }
        vw_pt *o;
        int n = vw_annot_outline(a, &o);
        int edge = 0;
        for (int i = 0; i < n && !edge; i++) {
            vw_pt p = o[i], q = o[(i + 1) % n];
            edge = dist_seg(x, y, p.x, p.y, q.x, q.y) <= t;
        }
        if (edge) {
            free(o);
            return a; /* an outline wins over a region it lies inside */
        }
        if (!in_hit && n >= 3 && inside(o, n, x, y))
            in_hit = a;
        free(o);
    }
    return in_hit;
}

/* ---- JSON ---- */

static json_t *pts_json(const vw_annot *a)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < a->npts; i++)
        json_array_append_new(arr, json_pack("[f,f]", a->pts[i].x, a->pts[i].y));
    return arr;
}

static void color_hex(uint32_t c, char out[8])
{
    snprintf(out, 8, "#%06x", c & 0xffffffu);
}

json_t *vw_annot_fields_json(const vw_annot *a)
{
    char col[8];
    color_hex(a->color, col);
    return json_pack("{s:s,s:o,s:s,s:s,s:s,s:s}", "type", vw_annot_type_name(a->type), "pts",
                     pts_json(a), "label", a->label, "class", a->cls, "color", col, "comment",
                     a->comment);
}

static json_t *measure_json(const vw_annots *s, const vw_annot *a)
{
    vw_measure m;
    vw_annot_measure(s, a, &m);
    json_t *j = json_object();
    if (a->type == VW_AN_LINE) {
        json_object_set_new(j, "length_px", json_real(m.length_px));
        if (m.has_um)
            json_object_set_new(j, "length_um", json_real(m.length_um));
    } else if (vw_annot_closed(a->type)) {
        json_object_set_new(j, "area_px2", json_real(m.area_px2));
        json_object_set_new(j, "perimeter_px", json_real(m.perimeter_px));
        if (m.has_um) {
            json_object_set_new(j, "area_um2", json_real(m.area_um2));
            json_object_set_new(j, "perimeter_um", json_real(m.perimeter_um));
        }
    }
    return j;
}

json_t *vw_annot_to_json(const vw_annots *s, const vw_annot *a, const char *slide)
{
    json_t *j = vw_annot_fields_json(a);
    if (!j)
        return NULL;
    json_object_set_new(j, "id", json_string(a->id));
    if (slide)
        json_object_set_new(j, "slide", json_string(slide));
    json_object_set_new(j, "author", json_string(a->author));
    json_object_set_new(j, "rev", json_integer(a->rev));
    if (*a->created)
        json_object_set_new(j, "created", json_string(a->created));
    if (*a->updated)
        json_object_set_new(j, "updated", json_string(a->updated));
    json_object_set_new(j, "measure", measure_json(s, a));
    return j;
}

static int parse_color(const char *s, uint32_t *out)
{
    if (!s || s[0] != '#' || strlen(s) != 7)
        return -1;
    char *end;
    unsigned long v = strtoul(s + 1, &end, 16);
    if (*end)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_pts(vw_annot *a, const json_t *arr, char *err, size_t errn)
{
    if (!json_is_array(arr) || json_array_size(arr) > MAX_PTS) {
        snprintf(err, errn, "pts: not an array of at most %d points", MAX_PTS);
        return -1;
    }
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p)
    {
        json_t *x = json_array_get(p, 0), *y = json_array_get(p, 1);
        if (!json_is_number(x) || !json_is_number(y) || !isfinite(json_number_value(x)) ||
            !isfinite(json_number_value(y))) {
            snprintf(err, errn, "pts[%zu]: not [x, y]", i);
            return -1;
        }
        if (vw_annot_add_pt(a, json_number_value(x), json_number_value(y)) < 0) {
            snprintf(err, errn, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int check_count(const vw_annot *a, char *err, size_t errn)
{
    int lo = 1, hi = 1;
    switch (a->type) {
    case VW_AN_LINE:
    case VW_AN_RECT:
    case VW_AN_ELLIPSE:
        lo = hi = 2;
        break;
    case VW_AN_POLYGON:
    case VW_AN_FREEHAND:
        lo = 3, hi = MAX_PTS;
        break;
    default:
        break;
    }
    if (a->npts < lo || a->npts > hi) {
        snprintf(err, errn, "a %s needs %d%s points, not %d", vw_annot_type_name(a->type), lo,
                 hi > lo ? " or more" : "", a->npts);
        return -1;
    }
    return 0;
}

static void copy_str(char *dst, size_t n, const json_t *j)
{
    const char *s = json_string_value(j);
    snprintf(dst, n, "%s", s ? s : "");
}

vw_annot *vw_annot_from_json(vw_annots *s, const json_t *j, char *err, size_t errn)
{
    if (!json_is_object(j)) {
        snprintf(err, errn, "not an object");
        return NULL;
    }
    int t = vw_annot_type_parse(json_string_value(json_object_get(j, "type")));
    if (t < 0) {
        snprintf(err, errn, "type: unknown");
        return NULL;
    }
    vw_annot *a = vw_annot_new(s, (vw_an_type)t);
    if (!a) {
        snprintf(err, errn, "out of memory");
        return NULL;
    }
    if (parse_pts(a, json_object_get(j, "pts"), err, errn) < 0 || check_count(a, err, errn) < 0)
        goto bad;
    copy_str(a->id, sizeof(a->id), json_object_get(j, "id"));
    copy_str(a->author, sizeof(a->author), json_object_get(j, "author"));
    copy_str(a->created, sizeof(a->created), json_object_get(j, "created"));
    copy_str(a->updated, sizeof(a->updated), json_object_get(j, "updated"));
    if (vw_annot_set_str(&a->label, json_string_value(json_object_get(j, "label"))) < 0 ||
        vw_annot_set_str(&a->cls, json_string_value(json_object_get(j, "class"))) < 0 ||
        vw_annot_set_str(&a->comment, json_string_value(json_object_get(j, "comment"))) < 0) {
        snprintf(err, errn, "out of memory");
        goto bad;
    }
    a->rev = (long)json_integer_value(json_object_get(j, "rev"));
    if (parse_color(json_string_value(json_object_get(j, "color")), &a->color) < 0) {
        a->color = vw_annot_class_color(a->cls);
        if (!a->color)
            a->color = vw_annot_author_color(a->author);
    }
    return a;
bad:
    vw_annot_free(a);
    return NULL;
}

/* ---- GeoJSON (QuPath layout) ---- */

static json_t *xy(vw_pt p)
{
    return json_pack("[f,f]", p.x, p.y);
}

static json_t *ring_json(const vw_pt *p, int n)
{
    json_t *r = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(r, xy(p[i]));
    if (n)
        json_array_append_new(r, xy(p[0]));
    return json_pack("[o]", r);
}

json_t *vw_annot_to_feature(const vw_annots *s, const vw_annot *a)
{
    json_t *geom;
    if (a->type == VW_AN_POINT || a->type == VW_AN_TEXT) {
        geom = json_pack("{s:s,s:o}", "type", "Point", "coordinates", xy(a->pts[0]));
    } else if (a->type == VW_AN_LINE) {
        json_t *c = json_array();
        for (int i = 0; i < a->npts; i++)
            json_array_append_new(c, xy(a->pts[i]));
        geom = json_pack("{s:s,s:o}", "type", "LineString", "coordinates", c);
    } else {
        vw_pt *o;
        int n = vw_annot_outline(a, &o);
        geom = json_pack("{s:s,s:o}", "type", "Polygon", "coordinates", ring_json(o, n));
        free(o);
    }
    uint32_t c = a->color;
    json_t *cons = json_pack("{s:s,s:o,s:s,s:s,s:I,s:o}", "type", vw_annot_type_name(a->type),
                             "pts", pts_json(a), "comment", a->comment, "author", a->author, "rev",
                             (json_int_t)a->rev, "measure", measure_json(s, a));
    if (*a->created)
        json_object_set_new(cons, "created", json_string(a->created));
    if (*a->updated)
        json_object_set_new(cons, "updated", json_string(a->updated));
    json_t *props = json_pack("{s:s,s:s,s:b,s:[i,i,i],s:o}", "objectType", "annotation", "name",
                              a->label, "isLocked", 0, "color", (int)(c >> 16 & 255),
                              (int)(c >> 8 & 255), (int)(c & 255), "consilium", cons);
    if (*a->cls) {
        uint32_t cc = vw_annot_class_color(a->cls);
        if (!cc)
            cc = c;
        json_object_set_new(props, "classification",
                            json_pack("{s:s,s:[i,i,i]}", "name", a->cls, "color",
                                      (int)(cc >> 16 & 255), (int)(cc >> 8 & 255),
                                      (int)(cc & 255)));
    }
    return json_pack("{s:s,s:s,s:o,s:o}", "type", "Feature", "id", a->id, "geometry", geom,
                     "properties", props);
}

static uint32_t rgb_of(const json_t *arr)
{
    if (json_array_size(arr) != 3)
        return 0xffffffffu;
    uint32_t v = 0;
    for (int i = 0; i < 3; i++) {
        json_int_t c = json_integer_value(json_array_get(arr, (size_t)i));
        v = v << 8 | (uint32_t)(c < 0 ? 0 : c > 255 ? 255 : c);
    }
    return v;
}

vw_annot *vw_annot_from_feature(vw_annots *s, const json_t *f, char *err, size_t errn)
{
    json_t *props = json_object_get(f, "properties");
    json_t *cons = json_object_get(props, "consilium");
    json_t *cls = json_object_get(props, "classification");
    vw_annot *a = NULL;
    if (json_is_object(cons)) {
        json_t *o = json_deep_copy(cons);
        if (!o) {
            snprintf(err, errn, "out of memory");
            return NULL;
        }
        json_object_set(o, "id", json_object_get(f, "id"));
        json_object_set(o, "label", json_object_get(props, "name"));
        json_object_set(o, "class", json_object_get(cls, "name"));
        a = vw_annot_from_json(s, o, err, errn);
        json_decref(o);
        if (!a)
            return NULL;
    } else {
        /* QuPath's own export: the type from the geometry */
        json_t *g = json_object_get(f, "geometry");
        const char *gt = json_string_value(json_object_get(g, "type"));
        json_t *c = json_object_get(g, "coordinates");
        vw_an_type t;
        json_t *pts;
        if (gt && strcmp(gt, "Point") == 0) {
            t = VW_AN_POINT;
            pts = json_pack("[O]", c);
        } else if (gt && strcmp(gt, "MultiPoint") == 0) {
            t = VW_AN_POINT;
            pts = json_pack("[O]", json_array_get(c, 0));
        } else if (gt && strcmp(gt, "LineString") == 0) {
            t = json_array_size(c) == 2 ? VW_AN_LINE : VW_AN_POLYGON;
            pts = json_incref(c);
        } else if (gt && (strcmp(gt, "Polygon") == 0 || strcmp(gt, "MultiPolygon") == 0)) {
            t = VW_AN_POLYGON;
            json_t *ring = json_array_get(strcmp(gt, "Polygon") == 0 ? c : json_array_get(c, 0), 0);
            pts = json_copy(ring);
            size_t n = json_array_size(pts);
            if (n > 1 && json_equal(json_array_get(pts, 0), json_array_get(pts, n - 1)))
                json_array_remove(pts, n - 1);
        } else {
            snprintf(err, errn, "geometry type %s not supported", gt ? gt : "(none)");
            return NULL;
        }
        json_t *o =
            json_pack("{s:s,s:o,s:O,s:O,s:O}", "type", vw_annot_type_name(t), "pts", pts, "id",
                      json_object_get(f, "id"), "label", json_object_get(props, "name"), "class",
                      json_object_get(cls, "name"));
        if (!o) {
            snprintf(err, errn, "malformed feature");
            return NULL;
        }
        a = vw_annot_from_json(s, o, err, errn);
        json_decref(o);
        if (!a)
            return NULL;
    }
    uint32_t c = rgb_of(json_object_get(props, "color"));
    if (c == 0xffffffffu)
        c = rgb_of(json_object_get(cls, "color"));
    if (c != 0xffffffffu)
        a->color = c;
    if (!*a->id)
        vw_annot_make_id(a->id);
    return a;
}

json_t *vw_annots_to_json(const vw_annots *s, const char *slide)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->n; i++)
        json_array_append_new(arr, vw_annot_to_json(s, s->v[i], slide));
    return json_pack("{s:o,s:I}", "annotations", arr, "count", (json_int_t)s->n);
}

int vw_annots_save_geojson(const vw_annots *s, const char *path)
{
    json_t *feats = json_array();
    for (size_t i = 0; feats && i < s->n; i++)
        if (s->v[i]->npts > 0)
            json_array_append_new(feats, vw_annot_to_feature(s, s->v[i]));
    json_t *fc = json_pack("{s:s,s:o}", "type", "FeatureCollection", "features", feats);
    if (!fc)
        return cs_error_set(CS_ENOMEM, "out of memory");
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        json_decref(fc);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int r = json_dump_file(fc, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(fc);
    if (r < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return cs_error_set(CS_EIO, "cannot write %s: %s", path,
                            r < 0 ? "write failed" : strerror(e));
    }
    free(tmp);
    return 0;
}

int vw_annots_load_geojson(vw_annots *s, const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    json_error_t je;
    json_t *fc = json_load_file(path, 0, &je);
    if (!fc)
        return cs_error_set(CS_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
    json_t *feats = json_object_get(fc, "features");
    if (!json_is_array(feats)) {
        json_decref(fc);
        return cs_error_set(CS_EFORMAT, "%s: not a GeoJSON FeatureCollection", path);
    }
    size_t i;
    json_t *f;
    json_array_foreach(feats, i, f)
    {
        char err[200];
        vw_annot *a = vw_annot_from_feature(s, f, err, sizeof(err));
        if (!a) {
            json_decref(fc);
            return cs_error_set(CS_EFORMAT, "%s: feature %zu: %s", path, i, err);
        }
        if (vw_annots_add(s, a) < 0) {
            json_decref(fc);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
    }
    json_decref(fc);
    return 0;
}
