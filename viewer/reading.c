/* viewer/reading: the reading state, window/level, the compositor, the
 * overlays and the input of the reading mode (see reading.h). Render
 * thread only. */
#include "reading.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/thread.h"

typedef struct {
    const char *name;
    double c, w;
} preset;

static const preset presets[] = {
    {"brain", 40, 80}, {"lung", -600, 1500}, {"bone", 400, 1800}, {"abdomen", 40, 400}};

/* ---- studies and series ---- */

static void parse_study(vw_rstudy *st, const json_t *o)
{
    memset(st, 0, sizeof(*st));
    vw_dj_copy(o, "0020000D", st->uid, sizeof(st->uid));
    vw_dj_copy(o, "00100010", st->name, sizeof(st->name));
    vw_dj_copy(o, "00100020", st->pid, sizeof(st->pid));
    vw_dj_copy(o, "00100030", st->birth, sizeof(st->birth));
    vw_dj_copy(o, "00100040", st->sex, sizeof(st->sex));
    vw_dj_copy(o, "00080020", st->date, sizeof(st->date));
    vw_dj_copy(o, "00081030", st->desc, sizeof(st->desc));
    size_t nm = vw_dj_count(o, "00080061");
    size_t len = 0;
    const json_t *mv = json_object_get(json_object_get(o, "00080061"), "Value");
    for (size_t i = 0; i < nm && len + 8 < sizeof(st->modalities); i++) {
        const char *m = json_string_value(json_array_get(mv, i));
        if (m)
            len += (size_t)snprintf(st->modalities + len, sizeof(st->modalities) - len, "%s%s",
                                    len ? "/" : "", m);
    }
    double d;
    st->nseries = vw_dj_num(o, "00201206", 0, &d) == 0 ? (int)d : 0;
    st->ninst = vw_dj_num(o, "00201208", 0, &d) == 0 ? (int)d : 0;
}

static int load_studies(vw_reading *r)
{
    json_t *j;
    int rc = vw_dw_get_json(&r->dw, "/studies", "the study list", NULL, &j);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(j);
    free(r->studies);
    r->studies = calloc(n ? n : 1, sizeof(*r->studies));
    if (!r->studies) {
        json_decref(j);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    r->nstudies = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(j, i);
        if (!json_is_object(o))
            continue;
        parse_study(&r->studies[r->nstudies], o);
        if (r->studies[r->nstudies].uid[0])
            r->nstudies++;
    }
    json_decref(j);
    return 0;
}

static int cmp_series(const void *pa, const void *pb)
{
    const vw_rseries_info *a = pa, *b = pb;
    return a->number != b->number ? (a->number < b->number ? -1 : 1) : strcmp(a->uid, b->uid);
}

static void close_study(vw_reading *r)
{
    for (size_t i = 0; i < r->nseries; i++)
        vw_rseries_free(r->series[i].s);
    free(r->series);
    r->series = NULL;
    r->nseries = 0;
    r->cur = 0;
    r->slice = 0;
}

/* The network part of opening a study (any thread): its QIDO attributes
 * and its series, sorted. @p cancel may be NULL. */
static int fetch_study(vw_dw *dw, const char *uid, const atomic_int *cancel, vw_rstudy *study,
                       vw_rseries_info **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    char path[400];
    snprintf(path, sizeof(path), "/studies?StudyInstanceUID=%s", uid);
    json_t *j;
    memset(study, 0, sizeof(*study));
    int found = 0;
    if (vw_dw_get_json(dw, path, "the study", cancel, &j) == 0) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            const json_t *o = json_array_get(j, i);
            const char *u = vw_dj_str(o, "0020000D");
            if (json_is_object(o) && u && strcmp(u, uid) == 0)
                parse_study(study, o), found = 1;
        }
        json_decref(j);
    }
    snprintf(study->uid, sizeof(study->uid), "%s", uid);
    snprintf(path, sizeof(path), "/studies/%s/series", uid);
    char what[120];
    snprintf(what, sizeof(what), "the study %s", uid); /* 404: "... not found" */
    int rc = vw_dw_get_json(dw, path, what, cancel, &j);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(j), ns = 0;
    vw_rseries_info *series = calloc(n ? n : 1, sizeof(*series));
    if (!series) {
        json_decref(j);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(j, i);
        vw_rseries_info *si = &series[ns];
        if (!json_is_object(o))
            continue;
        vw_dj_copy(o, "0020000E", si->uid, sizeof(si->uid));
        if (!si->uid[0])
            continue;
        vw_dj_copy(o, "00080060", si->modality, sizeof(si->modality));
        vw_dj_copy(o, "0008103E", si->desc, sizeof(si->desc));
        double d;
        si->number = vw_dj_num(o, "00200011", 0, &d) == 0 ? (int)d : 0;
        si->ninst = vw_dj_num(o, "00201209", 0, &d) == 0 ? (int)d : 0;
        ns++;
    }
    json_decref(j);
    if (ns == 0) {
        free(series);
        return cs_error_set(CS_ENOTFOUND, "the study %s %s (at %s%s)", uid,
                            found ? "has no series" : "not found on the server: no series",
                            dw->base, path);
    }
    qsort(series, ns, sizeof(*series), cmp_series);
    *out = series;
    *nout = ns;
    return 0;
}

/* Adopt a fetched study (render thread) and open @p series (or the first). */
static int apply_study(vw_reading *r, const vw_rstudy *study, vw_rseries_info *series, size_t n,
                       const char *want)
{
    close_study(r);
    r->study = *study;
    r->series = series;
    r->nseries = n;
    int first = 0;
    if (want) {
        first = -1;
        for (size_t i = 0; i < r->nseries; i++)
            if (strcmp(r->series[i].uid, want) == 0)
                first = (int)i;
        if (first < 0)
            return cs_error_set(CS_ENOTFOUND, "the series %s is not in study %s (%zu series)", want,
                                study->uid, r->nseries);
    }
    r->screen = VW_RSCREEN_READ;
    r->cur = -1;
    return vw_reading_set_series(r, first);
}

int vw_reading_open_study(vw_reading *r, const char *uid, const char *series)
{
    vw_rstudy st;
    vw_rseries_info *si;
    size_t n;
    int rc = fetch_study(&r->dw, uid, NULL, &st, &si, &n);
    if (rc < 0)
        return rc;
    return apply_study(r, &st, si, n, series);
}

/* ---- opening a study from the list without blocking the render thread ---- */

struct vw_ropen {
    vw_reading *r; /* for dw, wake: read-only on the worker */
    char uid[72];
    cs_thread *th;
    atomic_int done, cancel;
    int rc;
    char err[600];
    vw_rstudy study;
    vw_rseries_info *series;
    size_t n;
};

static void open_worker(void *userdata)
{
    vw_ropen *op = userdata;
    op->rc = fetch_study(&op->r->dw, op->uid, &op->cancel, &op->study, &op->series, &op->n);
    if (op->rc < 0)
        snprintf(op->err, sizeof(op->err), "%s", cs_error_last());
    atomic_store_explicit(&op->done, 1, memory_order_release);
    if (op->r->wake)
        op->r->wake(op->r->userdata);
}

static void open_free(vw_ropen *op)
{
    if (!op)
        return;
    atomic_store(&op->cancel, 1);
    cs_thread_join(op->th);
    free(op->series);
    free(op);
}

int vw_reading_open_async(vw_reading *r, const char *uid)
{
    open_free(r->opening);
    r->opening = NULL;
    vw_ropen *op = calloc(1, sizeof(*op));
    if (!op)
        return cs_error_set(CS_ENOMEM, "out of memory");
    op->r = r;
    snprintf(op->uid, sizeof(op->uid), "%s", uid);
    int rc = cs_thread_start(&op->th, "ropen", open_worker, op);
    if (rc < 0) {
        free(op);
        return rc;
    }
    r->opening = op;
    snprintf(r->status, sizeof(r->status), "opening the study...");
    return 0;
}

/* The opener's result, once it is in (render thread). @return 1 when the
 * screen changed. */
static int open_poll(vw_reading *r)
{
    vw_ropen *op = r->opening;
    if (!op || !atomic_load_explicit(&op->done, memory_order_acquire))
        return 0;
    cs_thread_join(op->th);
    op->th = NULL;
    r->opening = NULL;
    r->status[0] = '\0';
    int rc = op->rc;
    if (rc == 0) {
        rc = apply_study(r, &op->study, op->series, op->n, NULL);
        op->series = NULL; /* adopted */
        if (rc < 0)
            snprintf(op->err, sizeof(op->err), "%s", cs_error_last());
    }
    if (rc < 0) {
        snprintf(r->status, sizeof(r->status), "%.290s", op->err);
        cs_log(NULL, CS_LOG_ERROR, "%s", op->err);
        close_study(r);
        r->screen = VW_RSCREEN_STUDIES;
    }
    free(op);
    return 1;
}

int vw_reading_open(vw_reading *r)
{
    if (r->o.study)
        return vw_reading_open_study(r, r->o.study, r->o.series);
    int rc = load_studies(r);
    if (rc < 0)
        return rc;
    if (r->nstudies == 0)
        return cs_error_set(CS_ENOTFOUND, "the server at %s has no studies", r->dw.base);
    r->screen = VW_RSCREEN_STUDIES;
    return 0;
}

void vw_reading_close(vw_reading *r)
{
    open_free(r->opening);
    r->opening = NULL;
    close_study(r);
    free(r->studies);
    r->studies = NULL;
    free(r->lut);
    r->lut = NULL;
}

vw_rseries *vw_reading_series(const vw_reading *r)
{
    if (r->screen != VW_RSCREEN_READ || r->cur < 0 || (size_t)r->cur >= r->nseries)
        return NULL;
    return r->series[r->cur].s;
}

/* The series, with its metadata in (NULL while loading or failed). */
static vw_rseries *ready_series(const vw_reading *r)
{
    vw_rseries *s = vw_reading_series(r);
    return s && atomic_load_explicit(&s->ready, memory_order_acquire) == 1 ? s : NULL;
}

int vw_reading_set_series(vw_reading *r, int i)
{
    if (i < 0 || (size_t)i >= r->nseries)
        return 0;
    if (i == r->cur)
        return 0;
    if (r->cur >= 0 && (size_t)r->cur < r->nseries) {
        vw_rseries_pause(r->series[r->cur].s);
        r->series[r->cur].slice = r->slice; /* back there on return */
    }
    r->cur = i;
    r->slice = 0;
    r->wl_set = 0;
    r->preset[0] = '\0';
    r->ruler = 0;
    r->cine = 0;
    vw_rseries_info *si = &r->series[i];
    if (!si->s) {
        int rc = vw_rseries_new(&si->s, &r->dw, r->study.uid, si->uid, r->o.parallel,
                                !r->o.no_preview, r->wake, r->userdata);
        if (rc < 0)
            return rc;
    } else {
        r->slice = si->slice;
        vw_rseries_set_current(si->s, r->slice);
        return vw_rseries_resume(si->s);
    }
    return 0;
}

void vw_reading_set_slice(vw_reading *r, int i)
{
    vw_rseries *s = ready_series(r);
    if (!s)
        return;
    int n = (int)s->nslices;
    r->slice = i < 0 ? 0 : i >= n ? n - 1 : i;
    vw_rseries_set_current(s, r->slice);
}

/* ---- window / level ---- */

void vw_reading_set_window(vw_reading *r, double c, double w, const char *name)
{
    r->wc = c;
    r->ww = w < 1 ? 1 : w;
    r->wl_set = 1;
    snprintf(r->preset, sizeof(r->preset), "%s", name ? name : "");
}

/* The file's window: (0028,1050/1051), else min..max of @p sl. */
static void file_window(vw_reading *r, const vw_rseries *s, const vw_rslice *sl)
{
    const vw_rinst *in = &s->inst[sl->inst];
    if (in->have_window) {
        vw_reading_set_window(r, in->wc, in->ww, "file");
        return;
    }
    if (sl->kind == VW_PX_RGB) {
        vw_reading_set_window(r, 127.5, 256, "file");
        return;
    }
    size_t npx = (size_t)in->rows * (size_t)in->cols;
    double lo = INFINITY, hi = -INFINITY;
    int sh = 32 - in->bits_stored;
    for (size_t i = 0; i < npx; i++) {
        int32_t v;
        if (sl->kind == VW_PX_MONO8) {
            v = ((const uint8_t *)sl->px)[i];
        } else {
            uint32_t u = ((const uint16_t *)sl->px)[i];
            v = in->pixrep ? (int32_t)(u << sh) >> sh : (int32_t)((u << sh) >> sh);
        }
        double x = v * in->slope + in->intercept;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    double w = hi - lo + 1;
    vw_reading_set_window(r, lo + w / 2, w, "file");
}

int vw_reading_preset(vw_reading *r, const char *name)
{
    if (strcmp(name, "file") == 0) {
        r->wl_set = 0; /* computed again at the next frame */
        return 0;
    }
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (strcmp(presets[i].name, name) == 0) {
            vw_reading_set_window(r, presets[i].c, presets[i].w, presets[i].name);
            return 0;
        }
    return -1;
}

/* PS3.3 C.11.2.1.2.1, as DCMTK: x <= c - 0.5 - (w-1)/2 -> 0,
 * x > c - 0.5 + (w-1)/2 -> 255, else ((x - (c - 0.5)) / (w-1) + 0.5) * 255. */
static uint8_t window(double x, double c, double w)
{
    if (x <= c - 0.5 - (w - 1) / 2)
        return 0;
    if (x > c - 0.5 + (w - 1) / 2)
        return 255;
    double y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
    return y <= 0 ? 0 : y >= 255 ? 255 : (uint8_t)(y + 0.5);
}

/* The stored-value -> grey table for @p in (mono). */
static int make_lut(vw_reading *r, const vw_rinst *in, int inv)
{
    size_t n = in->bits_alloc == 8 ? 256 : 65536;
    double key[8] = {(double)n, in->slope,       in->intercept, r->wc,
                     r->ww,     in->bits_stored, in->pixrep,    inv};
    if (r->lut && r->lut_n == n && memcmp(key, r->lut_key, sizeof(key)) == 0)
        return 0;
    if (r->lut_n != n) {
        free(r->lut);
        r->lut_n = 0;
        if (!(r->lut = malloc(n)))
            return -1;
        r->lut_n = n;
    }
    memcpy(r->lut_key, key, sizeof(key));
    int sh = 32 - in->bits_stored;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)i << sh;
        int32_t v = in->pixrep ? (int32_t)u >> sh : (int32_t)(u >> sh);
        uint8_t g = window(v * in->slope + in->intercept, r->wc, r->ww);
        r->lut[i] = inv ? (uint8_t)(255 - g) : g;
    }
    return 0;
}

/* ---- the compositor ---- */

static void fill(uint32_t *fb, int pitch, int w, int h, uint32_t c)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            fb[(size_t)y * (size_t)pitch + (size_t)x] = c;
}

/* The fit of an image of @p cols x @p rows into w x h: scale, offsets,
 * and the screen rectangle [x0, x1] x [y0, y1] its pixels cover. */
static void fit(vw_reading *r, int cols, int rows, int w, int h, int *x0, int *y0, int *x1, int *y1)
{
    double zoom = r->zoom > 0 ? r->zoom : 1;
    double sc = fmin((double)w / cols, (double)h / rows) * zoom;
    r->scale = sc;
    r->offx = (w - cols * sc) / 2 + r->panx;
    r->offy = (h - rows * sc) / 2 + r->pany;
    r->view_w = w, r->view_h = h, r->img_cols = cols, r->img_rows = rows;
    *x0 = (int)ceil(r->offx - 0.5), *x1 = (int)floor(r->offx + cols * sc - 0.5);
    *y0 = (int)ceil(r->offy - 0.5), *y1 = (int)floor(r->offy + rows * sc - 0.5);
    *x0 = *x0 < 0 ? 0 : *x0;
    *y0 = *y0 < 0 ? 0 : *y0;
    *x1 = *x1 >= w ? w - 1 : *x1;
    *y1 = *y1 >= h ? h - 1 : *y1;
}

/* The server-rendered JPEG where the slice will be (it may be another size
 * than the image: mapped through the image's geometry). */
static void compose_preview(vw_reading *r, const vw_rseries *s, const vw_rslice *sl, uint32_t *fb,
                            int pitch, int w, int h)
{
    const vw_rinst *in = &s->inst[sl->inst];
    int x0, y0, x1, y1;
    fit(r, in->cols, in->rows, w, h, &x0, &y0, &x1, &y1);
    for (int y = y0; y <= y1; y++) {
        double iy = (y + 0.5 - r->offy) / r->scale;
        int py = (int)floor(iy * sl->ph / in->rows);
        py = py < 0 ? 0 : py >= sl->ph ? sl->ph - 1 : py;
        for (int x = x0; x <= x1; x++) {
            double ix = (x + 0.5 - r->offx) / r->scale;
            int pxx = (int)floor(ix * sl->pw / in->cols);
            pxx = pxx < 0 ? 0 : pxx >= sl->pw ? sl->pw - 1 : pxx;
            const uint8_t *p = sl->preview + 3 * ((size_t)py * (size_t)sl->pw + (size_t)pxx);
            fb[(size_t)y * (size_t)pitch + (size_t)x] =
                (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        }
    }
}

int vw_reading_compose(vw_reading *r, uint32_t *fb, int pitch, int w, int h)
{
    fill(fb, pitch, w, h, 0);
    vw_rseries *s = ready_series(r);
    if (!s) {
        vw_rseries *p = vw_reading_series(r);
        return p && atomic_load(&p->ready) < 0 ? CS_EIO : 0;
    }
    vw_rslice *sl = &s->slices[r->slice];
    int st = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (st == VW_SLICE_FAILED)
        return CS_EIO;
    if (st != VW_SLICE_READY) {
        if (atomic_load_explicit(&sl->pstate, memory_order_acquire) != VW_SLICE_READY)
            return 0;
        compose_preview(r, s, sl, fb, pitch, w, h);
        if (!r->t_preview_ns)
            r->t_preview_ns = cs_clock_ns();
        return 2;
    }
    const vw_rinst *in = &s->inst[sl->inst];
    if (!r->wl_set)
        file_window(r, s, sl);
    int inv = (strcmp(in->photometric, "MONOCHROME1") == 0) ^ r->invert;
    if (sl->kind != VW_PX_RGB && make_lut(r, in, inv) < 0)
        return CS_ENOMEM;
    /* fit, centred; nearest neighbour (screen px centre -> image px) */
    int x0, y0, x1, y1;
    fit(r, in->cols, in->rows, w, h, &x0, &y0, &x1, &y1);
    double sc = r->scale;
    int *xmap = malloc(sizeof(int) * (size_t)(x1 - x0 + 1 > 0 ? x1 - x0 + 1 : 1));
    if (!xmap)
        return CS_ENOMEM;
    for (int x = x0; x <= x1; x++) {
        int ix = (int)floor((x + 0.5 - r->offx) / sc);
        xmap[x - x0] = ix < 0 ? 0 : ix >= in->cols ? in->cols - 1 : ix;
    }
    const uint8_t *lut = r->lut;
    for (int y = y0; y <= y1; y++) {
        int iy = (int)floor((y + 0.5 - r->offy) / sc);
        iy = iy < 0 ? 0 : iy >= in->rows ? in->rows - 1 : iy;
        uint32_t *row = fb + (size_t)y * (size_t)pitch;
        size_t base = (size_t)iy * (size_t)in->cols;
        if (sl->kind == VW_PX_MONO16) {
            const uint16_t *src = (const uint16_t *)sl->px + base;
            for (int x = x0; x <= x1; x++) {
                uint32_t g = lut[src[xmap[x - x0]]];
                row[x] = g << 16 | g << 8 | g;
            }
        } else if (sl->kind == VW_PX_MONO8) {
            const uint8_t *src = (const uint8_t *)sl->px + base;
            for (int x = x0; x <= x1; x++) {
                uint32_t g = lut[src[xmap[x - x0]]];
                row[x] = g << 16 | g << 8 | g;
            }
        } else {
            const uint8_t *src = (const uint8_t *)sl->px + base * 3;
            for (int x = x0; x <= x1; x++) {
                const uint8_t *p = src + 3 * (size_t)xmap[x - x0];
                uint32_t c = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
                row[x] = r->invert ? ~c & 0xffffff : c;
            }
        }
    }
    free(xmap);
    if (!r->t_first_ns)
        r->t_first_ns = cs_clock_ns();
    return 1;
}

/* ---- overlays ---- */

#define WHITE  0xffffff
#define YELLOW 0xffd040
#define GREY   0xa0a0a0

/* Right-aligned label: measured off screen first (the texture is cached). */
static void label_right(vw_overlay *ov, const char *s, int xr, int y, uint32_t rgb)
{
    int tw = vw_overlay_label(ov, s, -30000, -30000, rgb);
    vw_overlay_label(ov, s, xr - tw, y, rgb);
}

static void corner(vw_overlay *ov, char lines[][160], int n, int right, int bottom, int w, int h)
{
    int lh = vw_overlay_line_height(ov) + 2;
    for (int i = 0; i < n; i++) {
        if (!lines[i][0])
            continue;
        int y = bottom ? h - 8 - (n - i) * lh : 8 + i * lh;
        if (right)
            label_right(ov, lines[i], w - 8, y, WHITE);
        else
            vw_overlay_label(ov, lines[i], 8, y, WHITE);
    }
}

double vw_reading_ruler_length(const vw_reading *r, const char **unit)
{
    vw_rseries *s = ready_series(r);
    double dx = r->rx1 - r->rx0, dy = r->ry1 - r->ry0;
    *unit = "px";
    if (!s)
        return hypot(dx, dy);
    const vw_rinst *in = &s->inst[s->slices[r->slice].inst];
    if (in->spacing_kind == VW_SPACING_NONE)
        return hypot(dx, dy);
    *unit = in->spacing_kind == VW_SPACING_PIXEL ? "mm" : "mm (detector)";
    return hypot(dx * in->ps_col, dy * in->ps_row);
}

static void fmt_date(const char *d, char *out, size_t n)
{
    if (strlen(d) == 8)
        snprintf(out, n, "%.4s-%.2s-%.2s", d, d + 4, d + 6);
    else
        snprintf(out, n, "%s", d);
}

static void draw_studies(vw_reading *r, vw_overlay *ov, int w, int h)
{
    int lh = vw_overlay_line_height(ov) + 4;
    vw_overlay_label(ov, "Studies  (Up/Down, Enter opens, Q quits)", 16, 12, YELLOW);
    if (r->status[0])
        vw_overlay_label(ov, r->status, 16, h - lh - 8, YELLOW);
    int rows = (h - 60) / lh;
    int first = r->study_sel >= rows ? r->study_sel - rows + 1 : 0;
    for (int i = first; i < (int)r->nstudies && i - first < rows; i++) {
        const vw_rstudy *st = &r->studies[i];
        char date[16], line[512];
        fmt_date(st->date, date, sizeof(date));
        snprintf(line, sizeof(line), "%s %-10s  %s  %s  %s  %s  (%d series, %d images)",
                 i == r->study_sel ? ">" : " ", date, st->name[0] ? st->name : "(no name)", st->pid,
                 st->modalities, st->desc, st->nseries, st->ninst);
        vw_overlay_label(ov, line, 16, 44 + (i - first) * lh, i == r->study_sel ? YELLOW : WHITE);
    }
    (void)w;
}

void vw_reading_draw(vw_reading *r, SDL_Renderer *ren, vw_overlay *ov, int w, int h)
{
    if (r->screen == VW_RSCREEN_STUDIES) {
        draw_studies(r, ov, w, h);
        return;
    }
    vw_rseries *s = vw_reading_series(r);
    int ready = s && atomic_load(&s->ready) == 1;
    /* the ruler is part of the image, drawn even with overlays off */
    if (r->ruler && ready) {
        double x0 = r->offx + r->rx0 * r->scale, y0 = r->offy + r->ry0 * r->scale;
        double x1 = r->offx + r->rx1 * r->scale, y1 = r->offy + r->ry1 * r->scale;
        SDL_SetRenderDrawBlendMode(ren, SDL_BLENDMODE_NONE);
        SDL_SetRenderDrawColor(ren, 255, 208, 64, 255);
        SDL_RenderDrawLine(ren, (int)lround(x0), (int)lround(y0), (int)lround(x1), (int)lround(y1));
        if (r->overlays) {
            const char *unit;
            double len = vw_reading_ruler_length(r, &unit);
            char b[64];
            snprintf(b, sizeof(b), "%.2f %s", len, unit);
            vw_overlay_label(ov, b, (int)lround(x1) + 6, (int)lround(y1) + 6, YELLOW);
        }
    }
    /* what stands in for the image: shown with overlays off too (a shown
     * image has none of these) */
    if (ready) {
        const vw_rslice *cs = &s->slices[r->slice];
        int stt = atomic_load(&cs->state);
        if (stt == VW_SLICE_FAILED)
            vw_overlay_label(ov, cs->err ? cs->err : "this image failed", 8, h / 2, YELLOW);
        else if (stt != VW_SLICE_READY && atomic_load(&cs->pstate) == VW_SLICE_READY)
            vw_overlay_label(ov, "preview (server-rendered); loading the image...", 8, h / 2,
                             YELLOW);
        else if (stt != VW_SLICE_READY)
            vw_overlay_label(ov, "loading this image...", 8, h / 2, YELLOW);
    } else if (s && atomic_load(&s->ready) < 0) {
        vw_overlay_label(ov, s->err, 8, h / 2, YELLOW);
    } else {
        vw_overlay_label(ov, "loading the series...", 8, h / 2, YELLOW);
    }
    if (!r->overlays)
        return;
    char tl[4][160] = {{0}}, tr[4][160] = {{0}}, bl[4][160] = {{0}}, br[4][160] = {{0}};
    const vw_rstudy *st = &r->study;
    const vw_rinst *in = NULL;
    const vw_rslice *sl = NULL;
    if (ready) {
        sl = &s->slices[r->slice];
        in = &s->inst[sl->inst];
    }
    const char *pname = st->name[0] ? st->name : in ? in->patient : "";
    snprintf(tl[0], sizeof(tl[0]), "%s", pname);
    snprintf(tl[1], sizeof(tl[1]), "%s%s", st->pid[0] ? "ID " : "", st->pid);
    const char *sex = in && in->sex[0] ? in->sex : st->sex;
    snprintf(tl[2], sizeof(tl[2]), "%s%s%s%s", in && in->age[0] ? "Age " : "", in ? in->age : "",
             sex[0] ? "  Sex " : "", sex);
    char date[16];
    fmt_date(st->date[0] ? st->date : in ? in->date : "", date, sizeof(date));
    snprintf(tr[0], sizeof(tr[0]), "%s", date);
    snprintf(tr[1], sizeof(tr[1]), "%s", st->desc[0] ? st->desc : in ? in->study_desc : "");
    if (r->cur >= 0 && (size_t)r->cur < r->nseries) {
        const vw_rseries_info *si = &r->series[r->cur];
        snprintf(tr[2], sizeof(tr[2]), "Series %d/%zu: #%d %s %.60s", r->cur + 1, r->nseries,
                 si->number, si->modality, si->desc);
    }
    if (ready) {
        int loaded = atomic_load(&s->loaded);
        snprintf(bl[0], sizeof(bl[0]), "Image %d/%zu%s", r->slice + 1, s->nslices,
                 r->cine ? "  (cine)" : "");
        if (in->nframes > 1)
            snprintf(bl[1], sizeof(bl[1]), "Frame %d/%d", sl->frame, in->nframes);
        else if (!isnan(sl->pos))
            snprintf(bl[1], sizeof(bl[1]), "Pos %.2f mm", sl->pos);
        else if (in->have_loc)
            snprintf(bl[1], sizeof(bl[1]), "Loc %.2f mm", in->loc);
        if (loaded < (int)s->nslices)
            snprintf(bl[2], sizeof(bl[2]), "loading %d/%zu", loaded, s->nslices);
        if (r->wl_set)
            snprintf(br[0], sizeof(br[0]), "W %.0f  L %.0f%s%s%s", r->ww, r->wc,
                     r->preset[0] ? "  (" : "", r->preset, r->preset[0] ? ")" : "");
        if (r->invert)
            snprintf(br[1], sizeof(br[1]), "inverted");
        if (in->spacing_kind == VW_SPACING_IMAGER)
            snprintf(br[2], sizeof(br[2]), "spacing: detector (Imager Pixel Spacing)");
    }
    corner(ov, tl, 3, 0, 0, w, h);
    corner(ov, tr, 3, 1, 0, w, h);
    corner(ov, bl, 3, 0, 1, w, h);
    corner(ov, br, 3, 1, 1, w, h);
    /* the series strip: a text list down the left edge */
    r->strip_n = 0;
    if (r->nseries > 1) {
        int lh = vw_overlay_line_height(ov) + 2;
        int n = r->nseries < 20 ? (int)r->nseries : 20;
        int y = h / 2 - n * lh / 2, wmax = 0;
        for (int i = 0; i < n; i++) {
            const vw_rseries_info *si = &r->series[i];
            char b[200];
            snprintf(b, sizeof(b), "%s%d %s %.40s (%d)", i == r->cur ? "> " : "  ", si->number,
                     si->modality, si->desc, si->ninst);
            int tw = vw_overlay_label(ov, b, 8, y + i * lh, i == r->cur ? YELLOW : GREY);
            wmax = tw > wmax ? tw : wmax;
        }
        /* where a click picks a series */
        r->strip_n = n;
        r->strip_y = y;
        r->strip_lh = lh;
        r->strip_w = wmax + 8;
    }
    if (r->status[0])
        label_right(ov, r->status, w - 8, h / 2, YELLOW);
}

void vw_reading_state_line(const vw_reading *r, char *out, size_t n)
{
    vw_rseries *s = ready_series(r);
    if (!s) {
        snprintf(out, n, "state screen=%s series=%d/%zu ready=0",
                 r->screen == VW_RSCREEN_STUDIES ? "studies" : "read", r->cur + 1, r->nseries);
        return;
    }
    const vw_rslice *sl = &s->slices[r->slice];
    const vw_rinst *in = &s->inst[sl->inst];
    double fps = in->frame_ms > 0 ? 1000.0 / in->frame_ms : 10.0;
    snprintf(
        out, n,
        "state study=%s series=%d/%zu slice=%d/%zu instance=%s frame=%d pos=%g wl=%g/%g preset=%s "
        "invert=%d overlays=%d cine=%d fps=%g zoom=%g loaded=%d/%zu",
        r->study.uid, r->cur + 1, r->nseries, r->slice + 1, s->nslices, in->sop, sl->frame, sl->pos,
        r->wc, r->ww, r->preset[0] ? r->preset : "-", r->invert, r->overlays, r->cine, fps,
        r->zoom > 0 ? r->zoom : 1, atomic_load(&s->loaded), s->nslices);
}

/* ---- input ---- */

void vw_reading_zoom(vw_reading *r, double zoom, double sx, double sy)
{
    zoom = zoom < 0.1 ? 0.1 : zoom > 64 ? 64 : zoom;
    if (!(r->scale > 0) || !r->img_cols) { /* nothing shown yet */
        r->zoom = zoom;
        return;
    }
    /* keep the image point under (sx, sy) there */
    double fitsc = r->scale / (r->zoom > 0 ? r->zoom : 1);
    double ix = (sx - r->offx) / r->scale, iy = (sy - r->offy) / r->scale;
    double sc = fitsc * zoom;
    r->zoom = zoom;
    r->panx = sx - ix * sc - (r->view_w - r->img_cols * sc) / 2;
    r->pany = sy - iy * sc - (r->view_h - r->img_rows * sc) / 2;
    r->scale = sc;
    r->offx = sx - ix * sc;
    r->offy = sy - iy * sc;
}

static void zoom_centre(vw_reading *r, double f)
{
    vw_reading_zoom(r, (r->zoom > 0 ? r->zoom : 1) * f, r->view_w / 2.0, r->view_h / 2.0);
}

static void to_image(const vw_reading *r, int sx, int sy, double *ix, double *iy)
{
    double sc = r->scale > 0 ? r->scale : 1;
    *ix = (sx + 0.5 - r->offx) / sc;
    *iy = (sy + 0.5 - r->offy) / sc;
}

static int key_studies(vw_reading *r, SDL_Keycode k)
{
    int n = (int)r->nstudies;
    switch (k) {
    case SDLK_UP:
        r->study_sel = r->study_sel > 0 ? r->study_sel - 1 : 0;
        return 1;
    case SDLK_DOWN:
        r->study_sel = r->study_sel + 1 < n ? r->study_sel + 1 : n - 1;
        return 1;
    case SDLK_RETURN:
    case SDLK_KP_ENTER:
        if (n > 0 && vw_reading_open_async(r, r->studies[r->study_sel].uid) < 0)
            snprintf(r->status, sizeof(r->status), "%s", cs_error_last());
        return 1;
    case SDLK_q:
    case SDLK_ESCAPE:
        return -1;
    default:
        return 0;
    }
}

static void start_cine(vw_reading *r, int on)
{
    r->cine = on;
    r->cine_t0 = cs_clock_ns();
    r->cine_s0 = r->slice;
}

static int key_read(vw_reading *r, SDL_Keycode k)
{
    switch (k) {
    case SDLK_UP:
    case SDLK_LEFT:
        vw_reading_set_slice(r, r->slice - 1);
        return 1;
    case SDLK_DOWN:
    case SDLK_RIGHT:
        vw_reading_set_slice(r, r->slice + 1);
        return 1;
    case SDLK_HOME:
        vw_reading_set_slice(r, 0);
        return 1;
    case SDLK_END:
        vw_reading_set_slice(r, 1 << 30);
        return 1;
    case SDLK_PAGEUP:
        vw_reading_set_series(r, r->cur > 0 ? r->cur - 1 : (int)r->nseries - 1);
        return 1;
    case SDLK_PAGEDOWN:
    case SDLK_TAB:
        vw_reading_set_series(r, r->cur + 1 < (int)r->nseries ? r->cur + 1 : 0);
        return 1;
    case SDLK_1:
    case SDLK_2:
    case SDLK_3:
    case SDLK_4:
        vw_reading_preset(r, presets[k - SDLK_1].name);
        return 1;
    case SDLK_0:
        vw_reading_preset(r, "file");
        return 1;
    case SDLK_i:
        r->invert = !r->invert;
        return 1;
    case SDLK_o:
        r->overlays = !r->overlays;
        return 1;
    case SDLK_PLUS:
    case SDLK_EQUALS:
    case SDLK_KP_PLUS:
        zoom_centre(r, 1.25);
        return 1;
    case SDLK_MINUS:
    case SDLK_KP_MINUS:
        zoom_centre(r, 1 / 1.25);
        return 1;
    case SDLK_f:
        r->zoom = 1;
        r->panx = r->pany = 0;
        return 1;
    case SDLK_SPACE:
        start_cine(r, !r->cine);
        return 1;
    case SDLK_DELETE:
    case SDLK_BACKSPACE:
        r->ruler = 0;
        return 1;
    case SDLK_ESCAPE:
        if (r->nstudies) { /* back to the study list */
            close_study(r);
            r->screen = VW_RSCREEN_STUDIES;
            return 1;
        }
        return -1;
    case SDLK_q:
        return -1;
    default:
        return 0;
    }
}

int vw_reading_event(vw_reading *r, const SDL_Event *ev, int w, int h)
{
    (void)w, (void)h;
    if (ev->type == SDL_QUIT)
        return -1;
    if (ev->type == SDL_KEYDOWN) {
        r->status[0] = '\0';
        return r->screen == VW_RSCREEN_STUDIES ? key_studies(r, ev->key.keysym.sym)
                                               : key_read(r, ev->key.keysym.sym);
    }
    if (r->screen != VW_RSCREEN_READ) {
        if (ev->type == SDL_MOUSEWHEEL && ev->wheel.y)
            return key_studies(r, ev->wheel.y > 0 ? SDLK_UP : SDLK_DOWN);
        return 0;
    }
    switch (ev->type) {
    case SDL_MOUSEWHEEL: {
        int d = ev->wheel.y;
        if (ev->wheel.direction == SDL_MOUSEWHEEL_FLIPPED)
            d = -d;
        if (SDL_GetModState() & KMOD_CTRL) { /* zoom about the cursor */
            int mx, my;
            SDL_GetMouseState(&mx, &my);
            vw_reading_zoom(r, (r->zoom > 0 ? r->zoom : 1) * pow(1.25, d), mx, my);
            return d != 0;
        }
        vw_reading_set_slice(r, r->slice - d);
        return d != 0;
    }
    case SDL_MOUSEBUTTONDOWN:
        if (r->drag)
            return 0;
        if (ev->button.button == SDL_BUTTON_LEFT && r->strip_n && r->overlays &&
            ev->button.x >= 4 && ev->button.x < r->strip_w + 4 && ev->button.y >= r->strip_y &&
            ev->button.y < r->strip_y + r->strip_n * r->strip_lh) {
            int i = (ev->button.y - r->strip_y) / r->strip_lh;
            if (vw_reading_set_series(r, i) < 0)
                snprintf(r->status, sizeof(r->status), "%s", cs_error_last());
            return 1;
        }
        r->drag = ev->button.button;
        r->drag_x = ev->button.x;
        r->drag_y = ev->button.y;
        if (r->drag == SDL_BUTTON_RIGHT) {
            if (!r->wl_set)
                return 0; /* the file's window is computed with the first image */
            r->drag_wc = r->wc;
            r->drag_ww = r->ww;
        } else if (r->drag == SDL_BUTTON_LEFT) {
            to_image(r, ev->button.x, ev->button.y, &r->rx0, &r->ry0);
            r->rx1 = r->rx0;
            r->ry1 = r->ry0;
            r->ruler = 1;
            return 1;
        } else if (r->drag == SDL_BUTTON_MIDDLE) {
            r->drag_wc = r->panx; /* pan: where it started */
            r->drag_ww = r->pany;
        } else {
            r->drag = 0;
        }
        return 0;
    case SDL_MOUSEMOTION:
    case SDL_MOUSEBUTTONUP: {
        int x = ev->type == SDL_MOUSEMOTION ? ev->motion.x : ev->button.x;
        int y = ev->type == SDL_MOUSEMOTION ? ev->motion.y : ev->button.y;
        int dirty = 0;
        if (r->drag == SDL_BUTTON_RIGHT && r->wl_set) {
            /* horizontal: width, vertical: centre; 256 px = the width at the
             * start of the drag (so the feel is the same at any window) */
            double k = r->drag_ww / 256.0;
            vw_reading_set_window(r, r->drag_wc + (y - r->drag_y) * k,
                                  r->drag_ww + (x - r->drag_x) * k, NULL);
            dirty = 1;
        } else if (r->drag == SDL_BUTTON_LEFT) {
            to_image(r, x, y, &r->rx1, &r->ry1);
            dirty = 1;
        } else if (r->drag == SDL_BUTTON_MIDDLE) {
            r->panx = r->drag_wc + (x - r->drag_x);
            r->pany = r->drag_ww + (y - r->drag_y);
            dirty = 1;
        }
        if (ev->type == SDL_MOUSEBUTTONUP && ev->button.button == r->drag)
            r->drag = 0;
        return dirty;
    }
    default:
        return 0;
    }
}

int vw_reading_tick(vw_reading *r)
{
    int dirty = open_poll(r);
    vw_rseries *s = ready_series(r);
    if (r->cine && s && s->nslices > 1) {
        const vw_rinst *in = &s->inst[s->slices[r->slice].inst];
        double ms = in->frame_ms > 0 ? in->frame_ms : 100.0;
        int64_t steps = (int64_t)((double)(cs_clock_ns() - r->cine_t0) / 1e6 / ms);
        int want = (int)((r->cine_s0 + steps) % (int64_t)s->nslices);
        if (want != r->slice) {
            /* wait on a frame that has not arrived rather than show black */
            if (atomic_load(&s->slices[want].state) == VW_SLICE_READY) {
                r->slice = want;
                vw_rseries_set_current(s, want);
                dirty = 1;
            } else {
                r->cine_t0 = cs_clock_ns();
                r->cine_s0 = r->slice;
            }
        }
    }
    if (r->o.timing && r->t_preview_ns && !r->timing_preview_done) {
        r->timing_preview_done = 1;
        printf("{\"event\":\"first_paint\",\"source\":\"rendered\",\"ms\":%.1f}\n",
               (double)(r->t_preview_ns - r->t_start) / 1e6);
        fflush(stdout);
    }
    if (r->o.timing && r->t_first_ns && !r->timing_first_done) {
        r->timing_first_done = 1;
        printf("{\"event\":\"first_image\",\"ms\":%.1f,\"requests\":%ld}\n",
               (double)(r->t_first_ns - r->t_start) / 1e6, atomic_load(&r->dw.requests));
        fflush(stdout);
    }
    if (s && r->o.timing && !r->timing_complete_done && atomic_load(&s->t_done_ns)) {
        r->timing_complete_done = 1;
        printf("{\"event\":\"series_complete\",\"ms\":%.1f,\"metadata_ms\":%.1f,\"slices\":%zu,"
               "\"bytes\":%lld,\"requests\":%ld}\n",
               (double)(atomic_load(&s->t_done_ns) - r->t_start) / 1e6,
               (double)(atomic_load(&s->t_meta_ns) - r->t_start) / 1e6, s->nslices,
               (long long)atomic_load(&s->bytes), atomic_load(&r->dw.requests));
        fflush(stdout);
    }
    return dirty;
}
