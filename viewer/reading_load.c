/* viewer/reading_load: one series: metadata, slice order, and the "rload"
 * thread fetching raw frames outward from the current slice (see
 * reading.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <limits.h>

#include "cs/err.h"
#include "cs/jpeg.h"
#include "cs/log.h"
#include "cs/thread.h"

#include "reading.h"

#define FRAME_ACCEPT                                                                               \
    "multipart/related; type=\"application/octet-stream\"; "                                       \
    "transfer-syntax=1.2.840.10008.1.2.1"

/* ---- metadata ---- */

/* An integer attribute: @p dflt when absent, INT_MIN when present but not
 * a usable number (rejected by unsupported()). */
static int get_int(const json_t *o, const char *tag, int dflt)
{
    double d;
    if (!vw_dj_count(o, tag))
        return dflt;
    if (vw_dj_num(o, tag, 0, &d) < 0 || !(d > -1e9 && d < 1e9))
        return INT_MIN;
    return (int)d;
}

static void parse_inst(vw_rinst *in, const json_t *o)
{
    vw_dj_copy(o, "00080018", in->sop, sizeof(in->sop));
    in->number = get_int(o, "00200013", 0);
    in->rows = get_int(o, "00280010", 0);
    in->cols = get_int(o, "00280011", 0);
    in->samples = get_int(o, "00280002", 1);
    in->bits_alloc = get_int(o, "00280100", 16);
    in->bits_stored = get_int(o, "00280101", in->bits_alloc);
    in->pixrep = get_int(o, "00280103", 0);
    in->planar = get_int(o, "00280006", 0);
    in->nframes = get_int(o, "00280008", 1);
    vw_dj_copy(o, "00280004", in->photometric, sizeof(in->photometric));
    if (!in->photometric[0])
        snprintf(in->photometric, sizeof(in->photometric), "%s",
                 in->samples == 3 ? "RGB" : "MONOCHROME2");
    if (vw_dj_num(o, "00281053", 0, &in->slope) < 0 || in->slope == 0)
        in->slope = 1;
    if (vw_dj_num(o, "00281052", 0, &in->intercept) < 0)
        in->intercept = 0;
    in->have_window = vw_dj_num(o, "00281050", 0, &in->wc) == 0 &&
                      vw_dj_num(o, "00281051", 0, &in->ww) == 0 && in->ww >= 1;
    in->spacing_kind = VW_SPACING_NONE;
    if (vw_dj_num(o, "00280030", 0, &in->ps_row) == 0 &&
        vw_dj_num(o, "00280030", 1, &in->ps_col) == 0 && in->ps_row > 0 && in->ps_col > 0)
        in->spacing_kind = VW_SPACING_PIXEL;
    else if (vw_dj_num(o, "00181164", 0, &in->ps_row) == 0 &&
             vw_dj_num(o, "00181164", 1, &in->ps_col) == 0 && in->ps_row > 0 && in->ps_col > 0)
        in->spacing_kind = VW_SPACING_IMAGER;
    in->have_ipp = 1;
    for (int i = 0; i < 3; i++)
        in->have_ipp &= vw_dj_num(o, "00200032", (size_t)i, &in->ipp[i]) == 0;
    in->have_iop = 1;
    for (int i = 0; i < 6; i++)
        in->have_iop &= vw_dj_num(o, "00200037", (size_t)i, &in->iop[i]) == 0;
    in->have_loc = vw_dj_num(o, "00201041", 0, &in->loc) == 0;
    double ft, rate;
    in->frame_ms = 0;
    if (vw_dj_num(o, "00181063", 0, &ft) == 0 && ft > 0 && ft < 60000)
        in->frame_ms = ft;
    else if (vw_dj_num(o, "00180040", 0, &rate) == 0 && rate > 0 && rate < 1000)
        in->frame_ms = 1000.0 / rate;
    vw_dj_copy(o, "00101010", in->age, sizeof(in->age));
    vw_dj_copy(o, "00100040", in->sex, sizeof(in->sex));
    vw_dj_copy(o, "00080020", in->date, sizeof(in->date));
    vw_dj_copy(o, "00100010", in->patient, sizeof(in->patient));
    vw_dj_copy(o, "0008103E", in->series_desc, sizeof(in->series_desc));
    vw_dj_copy(o, "00081030", in->study_desc, sizeof(in->study_desc));
    vw_dj_copy(o, "00080060", in->modality, sizeof(in->modality));
    in->series_number = get_int(o, "00200011", 0);
}

/* Why an instance cannot be shown (NULL: it can). */
static const char *unsupported(const vw_rinst *in)
{
    if (!in->sop[0])
        return "no SOPInstanceUID";
    if (in->rows <= 0 || in->cols <= 0 || in->rows > 65535 || in->cols > 65535)
        return "no usable Rows/Columns";
    if (in->nframes < 1 || in->nframes > 100000)
        return "bad NumberOfFrames";
    if (in->samples == 1) {
        if (in->bits_alloc != 8 && in->bits_alloc != 16)
            return "BitsAllocated is neither 8 nor 16";
        if (strcmp(in->photometric, "MONOCHROME1") != 0 &&
            strcmp(in->photometric, "MONOCHROME2") != 0)
            return "single-sample photometric interpretation other than MONOCHROME1/2 "
                   "(PALETTE COLOR is not supported)";
    } else if (in->samples == 3) {
        if (in->bits_alloc != 8)
            return "colour with BitsAllocated other than 8";
        if (strcmp(in->photometric, "RGB") != 0 && strcmp(in->photometric, "YBR_FULL") != 0 &&
            strcmp(in->photometric, "YBR_FULL_422") != 0)
            return "colour photometric interpretation other than RGB, YBR_FULL, YBR_FULL_422";
    } else {
        return "SamplesPerPixel is neither 1 nor 3";
    }
    if (in->bits_stored < 1 || in->bits_stored > in->bits_alloc)
        return "bad BitsStored";
    if (in->pixrep != 0 && in->pixrep != 1)
        return "bad PixelRepresentation";
    if (in->planar != 0 && in->planar != 1)
        return "bad PlanarConfiguration";
    return NULL;
}

typedef struct {
    int inst, frame, number;
    double pos;
} order;

static int cmp_order(const void *pa, const void *pb)
{
    const order *a = pa, *b = pb;
    if (!isnan(a->pos) && !isnan(b->pos) && a->pos != b->pos)
        return a->pos < b->pos ? -1 : 1;
    if (a->number != b->number)
        return a->number < b->number ? -1 : 1;
    if (a->inst != b->inst)
        return a->inst < b->inst ? -1 : 1;
    return a->frame < b->frame ? -1 : a->frame > b->frame;
}

int vw_rseries_parse(vw_rseries *s, const json_t *meta)
{
    size_t n = json_array_size(meta);
    if (n == 0)
        return cs_error_set(CS_ENOTFOUND, "the series %s has no instances", s->uid);
    vw_rinst *inst = calloc(n, sizeof(*inst));
    if (!inst)
        return cs_error_set(CS_ENOMEM, "out of memory");
    size_t ni = 0, nslices = 0;
    const char *why = NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(meta, i);
        if (!json_is_object(o)) {
            free(inst);
            return cs_error_set(CS_EFORMAT,
                                "the metadata of series %s is not an array of DICOM JSON objects",
                                s->uid);
        }
        vw_rinst *in = &inst[ni];
        parse_inst(in, o);
        const char *u = unsupported(in);
        if (u) {
            why = u; /* skipped (e.g. a structured report in the series) */
            cs_log(NULL, CS_LOG_WARN, "instance %s of series %s not shown: %s",
                   in->sop[0] ? in->sop : "?", s->uid, u);
            continue;
        }
        nslices += (size_t)in->nframes;
        ni++;
    }
    if (ni == 0) {
        free(inst);
        return cs_error_set(CS_EFORMAT, "no instance of series %s can be shown: %s", s->uid,
                            why ? why : "none");
    }
    order *ord = calloc(nslices, sizeof(*ord));
    vw_rslice *sl = calloc(nslices, sizeof(*sl));
    if (!ord || !sl) {
        free(inst);
        free(ord);
        free(sl);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    /* the slice normal: IOP row x column of the first instance that has it */
    double nrm[3] = {0, 0, 0};
    int have_n = 0;
    for (size_t i = 0; i < ni && !have_n; i++)
        if (inst[i].have_iop) {
            const double *o = inst[i].iop;
            nrm[0] = o[1] * o[5] - o[2] * o[4];
            nrm[1] = o[2] * o[3] - o[0] * o[5];
            nrm[2] = o[0] * o[4] - o[1] * o[3];
            have_n = fabs(nrm[0]) + fabs(nrm[1]) + fabs(nrm[2]) > 1e-6;
        }
    size_t k = 0;
    for (size_t i = 0; i < ni; i++)
        for (int f = 1; f <= inst[i].nframes; f++) {
            ord[k].inst = (int)i;
            ord[k].frame = f;
            ord[k].number = inst[i].number;
            ord[k].pos = NAN;
            if (inst[i].nframes == 1 && have_n && inst[i].have_ipp)
                ord[k].pos =
                    inst[i].ipp[0] * nrm[0] + inst[i].ipp[1] * nrm[1] + inst[i].ipp[2] * nrm[2];
            else if (inst[i].nframes == 1 && inst[i].have_loc)
                ord[k].pos = inst[i].loc;
            k++;
        }
    /* sort by position only when every single-frame slice has one */
    int all_pos = 1;
    for (size_t i = 0; i < nslices; i++)
        if (inst[ord[i].inst].nframes == 1 && isnan(ord[i].pos))
            all_pos = 0;
    if (!all_pos)
        for (size_t i = 0; i < nslices; i++)
            ord[i].pos = NAN;
    qsort(ord, nslices, sizeof(*ord), cmp_order);
    for (size_t i = 0; i < nslices; i++) {
        sl[i].inst = ord[i].inst;
        sl[i].frame = ord[i].frame;
        sl[i].pos = ord[i].pos;
        atomic_init(&sl[i].state, VW_SLICE_NONE);
    }
    free(ord);
    s->inst = inst;
    s->ninst = ni;
    s->slices = sl;
    s->nslices = nslices;
    return 0;
}

/* ---- frames ---- */

static uint8_t clamp8(double v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5);
}

static void ybr_to_rgb(int y, int cb, int cr, uint8_t *out)
{
    /* PS3.3 C.7.6.3.1.2, YBR_FULL (JPEG JFIF full range) */
    out[0] = clamp8(y + 1.402 * (cr - 128));
    out[1] = clamp8(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
    out[2] = clamp8(y + 1.772 * (cb - 128));
}

int vw_rslice_decode(vw_rslice *sl, const vw_rinst *in, const unsigned char *data, size_t len,
                     char *err, size_t errn)
{
    size_t npx = (size_t)in->rows * (size_t)in->cols;
    size_t bps = (size_t)in->bits_alloc / 8;
    int is422 = strcmp(in->photometric, "YBR_FULL_422") == 0;
    size_t need = is422 ? npx * 2 : npx * (size_t)in->samples * bps;
    if (is422 && len >= npx * 3)
        is422 = 0, need = npx * 3; /* the server sent it as full YBR */
    if (len < need) {
        snprintf(err, errn,
                 "frame %d of instance %s has %zu bytes, expected %zu (%d x %d x %d samples x "
                 "%zu bytes)",
                 sl->frame, in->sop, len, need, in->rows, in->cols, in->samples, bps);
        return CS_EFORMAT;
    }
    if (in->samples == 1 && bps == 1) {
        uint8_t *p = malloc(npx);
        if (!p)
            goto nomem;
        memcpy(p, data, npx);
        sl->px = p;
        sl->kind = VW_PX_MONO8;
        return 0;
    }
    if (in->samples == 1) {
        uint16_t *p = malloc(npx * 2);
        if (!p)
            goto nomem;
        for (size_t i = 0; i < npx; i++)
            p[i] = (uint16_t)(data[2 * i] | data[2 * i + 1] << 8);
        sl->px = p;
        sl->kind = VW_PX_MONO16;
        return 0;
    }
    uint8_t *p = malloc(npx * 3);
    if (!p)
        goto nomem;
    int ybr = strncmp(in->photometric, "YBR_FULL", 8) == 0;
    if (is422) {
        /* Y1 Y2 Cb Cr for each pair of pixels along a row */
        size_t cols = (size_t)in->cols;
        for (size_t y = 0; y < (size_t)in->rows; y++)
            for (size_t x = 0; x < cols; x++) {
                size_t pair = (y * cols + x) / 2;
                const unsigned char *q = data + pair * 4;
                if (pair * 4 + 3 >= len)
                    q = data + len - 4;
                ybr_to_rgb(q[((y * cols + x) & 1)], q[2], q[3], p + 3 * (y * cols + x));
            }
    } else {
        for (size_t i = 0; i < npx; i++) {
            int a, b, c;
            if (in->planar == 1) {
                a = data[i], b = data[npx + i], c = data[2 * npx + i];
            } else {
                a = data[3 * i], b = data[3 * i + 1], c = data[3 * i + 2];
            }
            if (ybr) {
                ybr_to_rgb(a, b, c, p + 3 * i);
            } else {
                p[3 * i] = (uint8_t)a;
                p[3 * i + 1] = (uint8_t)b;
                p[3 * i + 2] = (uint8_t)c;
            }
        }
    }
    sl->px = p;
    sl->kind = VW_PX_RGB;
    return 0;
nomem:
    snprintf(err, errn, "out of memory for frame %d of instance %s", sl->frame, in->sop);
    return CS_ENOMEM;
}

/* ---- the loader ---- */

typedef struct {
    CURL *easy;
    int slice;   /* -1: free */
    int preview; /* the rendered JPEG, not the raw frame */
    vw_dw_resp resp;
    struct curl_slist *hdrs;
    char url[2400];
} xfer;

static void wake(vw_rseries *s)
{
    if (s->wake)
        s->wake(s->userdata);
}

/* One more slice in (READY or FAILED); the last one dates the series. */
static void slice_done(vw_rseries *s)
{
    if (atomic_fetch_add(&s->loaded, 1) + 1 == (int)s->nslices)
        atomic_store(&s->t_done_ns, cs_clock_ns());
}

static void slice_fail(vw_rseries *s, vw_rslice *sl, const char *msg)
{
    free(sl->err);
    sl->err = strdup(msg);
    atomic_store(&sl->state, VW_SLICE_FAILED);
    slice_done(s);
}

/* The next slice to fetch: nearest the current one, ahead first. */
static int next_slice(vw_rseries *s)
{
    int n = (int)s->nslices;
    int c = atomic_load(&s->cur);
    if (c < 0 || c >= n)
        c = 0;
    for (int d = 0; d < n; d++) {
        int cand[2] = {c + d, c - d};
        for (int k = 0; k < (d ? 2 : 1); k++) {
            int i = cand[k];
            if (i < 0 || i >= n)
                continue;
            int expect = VW_SLICE_NONE;
            if (atomic_compare_exchange_strong(&s->slices[i].state, &expect, VW_SLICE_FLIGHT))
                return i;
        }
    }
    return -1;
}

static void start_xfer(vw_rseries *s, xfer *x, int i)
{
    vw_rslice *sl = &s->slices[i];
    const vw_rinst *in = &s->inst[sl->inst];
    snprintf(x->url, sizeof(x->url), "%s/studies/%s/series/%s/instances/%s/frames/%d", s->dw->base,
             s->study, s->uid, in->sop, sl->frame);
    curl_easy_reset(x->easy);
    vw_dw_setup(s->dw, x->easy, x->url, FRAME_ACCEPT, &x->resp, &x->hdrs);
    x->slice = i;
    if (curl_multi_add_handle(s->multi, x->easy) != CURLM_OK) {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        x->slice = -1;
        slice_fail(s, sl, "cannot start a transfer");
        return;
    }
    atomic_fetch_add(&s->inflight, 1);
}

/* The rendered JPEG of the current slice, for a first paint. */
static void start_preview(vw_rseries *s, xfer *x)
{
    int i = atomic_load(&s->cur);
    if (i < 0 || (size_t)i >= s->nslices)
        i = 0;
    vw_rslice *sl = &s->slices[i];
    int expect = VW_SLICE_NONE;
    if (atomic_load(&sl->state) != VW_SLICE_NONE ||
        !atomic_compare_exchange_strong(&sl->pstate, &expect, VW_SLICE_FLIGHT))
        return;
    const vw_rinst *in = &s->inst[sl->inst];
    snprintf(x->url, sizeof(x->url), "%s/studies/%s/series/%s/instances/%s/frames/%d/rendered",
             s->dw->base, s->study, s->uid, in->sop, sl->frame);
    curl_easy_reset(x->easy);
    vw_dw_setup(s->dw, x->easy, x->url, "image/jpeg", &x->resp, &x->hdrs);
    x->slice = i;
    x->preview = 1;
    if (curl_multi_add_handle(s->multi, x->easy) != CURLM_OK) {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        x->slice = -1;
        atomic_store(&sl->pstate, VW_SLICE_FAILED);
    }
}

static void finish_preview(vw_rseries *s, xfer *x, CURLcode cc)
{
    vw_rslice *sl = &s->slices[x->slice];
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
    curl_multi_remove_handle(s->multi, x->easy);
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    int ok = 0;
    cs_jpeg *j = NULL;
    int w, h;
    if (cc == CURLE_OK && x->resp.status == 200 && x->resp.len && cs_jpeg_new(&j) == 0 &&
        cs_jpeg_size(j, (const uint8_t *)x->resp.body, x->resp.len, &w, &h) == 0 && w > 0 &&
        h > 0 && w <= 16384 && h <= 16384) {
        uint8_t *px = malloc((size_t)w * (size_t)h * 3);
        if (px && cs_jpeg_decode_rgb(j, px, (size_t)w * 3, (const uint8_t *)x->resp.body,
                                     x->resp.len, 1) == 0) {
            sl->preview = px;
            sl->pw = w;
            sl->ph = h;
            ok = 1;
        } else {
            free(px);
        }
    }
    cs_jpeg_free(j);
    atomic_fetch_add(&s->bytes, (long long)x->resp.len);
    vw_dw_resp_free(&x->resp);
    x->slice = -1;
    x->preview = 0;
    /* a preview that fails is only logged: the raw frame is what counts */
    if (!ok)
        cs_log(NULL, CS_LOG_INFO, "no rendered preview (%s): HTTP %ld", x->url,
               (long)x->resp.status);
    atomic_store_explicit(&sl->pstate, ok ? VW_SLICE_READY : VW_SLICE_FAILED, memory_order_release);
    if (ok)
        wake(s);
}

static void finish_xfer(vw_rseries *s, xfer *x, CURLcode cc)
{
    vw_rslice *sl = &s->slices[x->slice];
    const vw_rinst *in = &s->inst[sl->inst];
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
    curl_multi_remove_handle(s->multi, x->easy);
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    char what[200];
    snprintf(what, sizeof(what), "frame %d of instance %s", sl->frame, in->sop);
    int rc = vw_dw_check(&x->resp, (int)cc, what, x->url);
    char err[1024];
    if (rc < 0) {
        snprintf(err, sizeof(err), "%s", cs_error_last());
    } else {
        const char *part;
        size_t plen;
        char perr[300];
        rc = vw_dw_multipart_first(x->resp.ctype, x->resp.body, x->resp.len, &part, &plen, perr,
                                   sizeof(perr));
        if (rc < 0)
            snprintf(err, sizeof(err), "%s: %s (%.300s)", what, perr, x->url);
        else if ((rc = vw_rslice_decode(sl, in, (const unsigned char *)part, plen, perr,
                                        sizeof(perr))) < 0)
            snprintf(err, sizeof(err), "%s (%.300s)", perr, x->url);
    }
    atomic_fetch_add(&s->bytes, (long long)x->resp.len);
    vw_dw_resp_free(&x->resp);
    x->slice = -1;
    atomic_fetch_sub(&s->inflight, 1);
    if (rc < 0) {
        cs_log(NULL, CS_LOG_WARN, "%s", err);
        slice_fail(s, sl, err);
    } else {
        atomic_store_explicit(&sl->state, VW_SLICE_READY, memory_order_release);
        slice_done(s);
    }
    wake(s);
}

static void load_meta(vw_rseries *s)
{
    char path[400];
    snprintf(path, sizeof(path), "/studies/%s/series/%s/metadata", s->study, s->uid);
    char what[200];
    snprintf(what, sizeof(what), "the metadata of series %s", s->uid);
    json_t *j = NULL;
    int rc = vw_dw_get_json(s->dw, path, what, &s->stop, &j);
    if (rc == 0)
        rc = vw_rseries_parse(s, j);
    json_decref(j);
    if (rc == CS_ECLOSED)
        return; /* paused: loaded again on resume */
    if (rc < 0) {
        snprintf(s->err, sizeof(s->err), "%s", cs_error_last());
        atomic_store(&s->ready, -1);
    } else {
        atomic_store(&s->t_meta_ns, cs_clock_ns());
        atomic_store_explicit(&s->ready, 1, memory_order_release);
    }
    wake(s);
}

static void loader(void *userdata)
{
    vw_rseries *s = userdata;
    if (atomic_load(&s->ready) == 0)
        load_meta(s);
    if (atomic_load(&s->ready) != 1)
        return;
    int par = s->parallel;
    xfer *xs = calloc((size_t)par + 1, sizeof(*xs)); /* + the preview */
    CURLM *m = curl_multi_init();
    if (!xs || !m) {
        free(xs);
        if (m)
            curl_multi_cleanup(m);
        cs_log(NULL, CS_LOG_ERROR, "out of memory starting the series loader");
        return;
    }
    s->multi = m;
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)par);
    int nx = 0;
    for (int i = 0; i < par; i++) {
        xs[i].slice = -1;
        if ((xs[i].easy = curl_easy_init()))
            nx++;
        else
            break;
    }
    xfer *pv = &xs[par];
    pv->slice = -1;
    if (s->preview && (pv->easy = curl_easy_init()))
        start_preview(s, pv); /* before the raw frames: it goes out first */
    while (!atomic_load(&s->stop)) {
        int busy = pv->slice >= 0;
        for (int i = 0; i < nx; i++) {
            if (xs[i].slice < 0) {
                int k = next_slice(s);
                if (k >= 0)
                    start_xfer(s, &xs[i], k);
            }
            busy += xs[i].slice >= 0;
        }
        if (!busy)
            break; /* every slice is in */
        int running;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left, finished = 0;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            finished++;
            if (pv->slice >= 0 && pv->easy == msg->easy_handle) {
                finish_preview(s, pv, msg->data.result);
                continue;
            }
            for (int i = 0; i < nx; i++)
                if (xs[i].slice >= 0 && xs[i].easy == msg->easy_handle) {
                    finish_xfer(s, &xs[i], msg->data.result);
                    break;
                }
        }
        if (finished)
            continue; /* start the next transfers now, not after a poll */
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    /* stopped: transfers in flight go back to NONE, to be fetched on resume */
    for (int i = 0; i < nx; i++) {
        if (xs[i].slice >= 0) {
            curl_multi_remove_handle(m, xs[i].easy);
            curl_slist_free_all(xs[i].hdrs);
            vw_dw_resp_free(&xs[i].resp);
            atomic_store(&s->slices[xs[i].slice].state, VW_SLICE_NONE);
            atomic_fetch_sub(&s->inflight, 1);
        }
        curl_easy_cleanup(xs[i].easy);
    }
    if (pv->slice >= 0) {
        curl_multi_remove_handle(m, pv->easy);
        curl_slist_free_all(pv->hdrs);
        vw_dw_resp_free(&pv->resp);
        atomic_store(&s->slices[pv->slice].pstate, VW_SLICE_NONE);
    }
    if (pv->easy)
        curl_easy_cleanup(pv->easy);
    s->multi = NULL;
    curl_multi_cleanup(m);
    free(xs);
}

int vw_rseries_new(vw_rseries **out, vw_dw *dw, const char *study, const char *uid, int parallel,
                   int preview, void (*wakefn)(void *userdata), void *userdata)
{
    *out = NULL;
    vw_rseries *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->dw = dw;
    snprintf(s->study, sizeof(s->study), "%s", study);
    snprintf(s->uid, sizeof(s->uid), "%s", uid);
    s->parallel = parallel > 0 ? parallel : 4;
    s->preview = preview;
    s->wake = wakefn;
    s->userdata = userdata;
    int rc = vw_rseries_resume(s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void vw_rseries_set_current(vw_rseries *s, int slice)
{
    if (s)
        atomic_store(&s->cur, slice);
}

void vw_rseries_pause(vw_rseries *s)
{
    if (!s || !s->th)
        return;
    atomic_store(&s->stop, 1);
    /* the loader checks `stop` at least every 50 ms (its poll timeout) and
     * the metadata request aborts on it (curl's progress callback) */
    cs_thread_join(s->th);
    s->th = NULL;
}

int vw_rseries_resume(vw_rseries *s)
{
    if (!s || s->th || atomic_load(&s->ready) < 0)
        return 0;
    if (atomic_load(&s->ready) == 1 && atomic_load(&s->loaded) == (int)s->nslices)
        return 0;
    atomic_store(&s->stop, 0);
    return cs_thread_start(&s->th, "rload", loader, s);
}

void vw_rseries_free(vw_rseries *s)
{
    if (!s)
        return;
    vw_rseries_pause(s);
    for (size_t i = 0; i < s->nslices; i++) {
        free(s->slices[i].px);
        free(s->slices[i].err);
        free(s->slices[i].preview);
    }
    free(s->slices);
    free(s->inst);
    free(s);
}
