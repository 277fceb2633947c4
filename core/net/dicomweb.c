/* DICOMweb (PS3.18) over the study store of core/dimse: QIDO-RS for
 * studies, series and instances, WADO-RS for metadata, instances, frames and
 * rendered images. No libmicrohttpd here: server.c hands over the path
 * after /dicomweb/, the Accept header and a query-argument getter, and sends
 * the reply this file fills.
 *
 * The index is read through a small pool of database handles (one per
 * request thread at a time; SQLite's WAL lets them read while the DICOM
 * node writes). Files are found by the index, never by the URL: a UID in
 * the path is checked to be a UID, then looked up. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cs/buf.h"
#include "cs/db.h"
#include "cs/dicom.h"
#include "cs/err.h"
#include "cs/jpeg.h"
#include "cs/queue.h"
#include "cs/thread.h"

#include "rest.h"

#define MAX_READERS 8
#define MAX_RESULTS 1000 /* a QIDO answer without ?limit */
#define MAX_FRAMES  64   /* frames in one WADO-RS frames request */

#define PRERENDER_QUEUE 4096 /* instances waiting; more are rendered on demand */
#define RENDER_QUALITY  90

struct cs_dicomweb {
    char *db_path, *store;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    cs_db *idle[MAX_READERS];
    int nidle, nopen, max;
    cs_queue *pre; /* store paths to pre-render; NULL: off */
    cs_thread *pre_thread;
    atomic_int closing; /* what is still queued is dropped */
};

static void prerender_thread(void *arg);

int cs_dicomweb_new(cs_dicomweb **out, const char *db_path, const char *store_dir, int readers,
                    int prerender)
{
    *out = NULL;
    cs_dicomweb *w = calloc(1, sizeof(*w));
    if (!w)
        return cs_error_set(CS_ENOMEM, "out of memory");
    w->db_path = strdup(db_path);
    w->store = strdup(store_dir);
    w->max = readers < 1 ? 1 : readers > MAX_READERS ? MAX_READERS : readers;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->freed, NULL);
    if (!w->db_path || !w->store) {
        cs_dicomweb_free(w);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    /* One reader now: opening checks the schema, which the first reader of
     * a study should not wait for. */
    int r = cs_db_open(&w->idle[0], w->db_path);
    if (r < 0) {
        cs_dicomweb_free(w);
        return r;
    }
    w->nidle = w->nopen = 1;
    if (prerender) {
        if ((r = cs_queue_new(&w->pre, PRERENDER_QUEUE, free)) < 0 ||
            (r = cs_thread_start(&w->pre_thread, "prerender", prerender_thread, w)) < 0) {
            cs_dicomweb_free(w);
            return r;
        }
    }
    *out = w;
    return 0;
}

void cs_dicomweb_free(cs_dicomweb *w)
{
    if (!w)
        return;
    atomic_store(&w->closing, 1);
    if (w->pre)
        cs_queue_close(w->pre);
    cs_thread_join(w->pre_thread);
    cs_queue_free(w->pre);
    for (int i = 0; i < w->nidle; i++)
        cs_db_close(w->idle[i]);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->freed);
    free(w->db_path);
    free(w->store);
    free(w);
}

/* A reader handle: an idle one, a new one while under the maximum, else
 * wait for one to come back. */
static int db_take(cs_dicomweb *w, cs_db **out)
{
    pthread_mutex_lock(&w->lock);
    while (!w->nidle && w->nopen >= w->max)
        pthread_cond_wait(&w->freed, &w->lock);
    if (w->nidle) {
        *out = w->idle[--w->nidle];
        pthread_mutex_unlock(&w->lock);
        return 0;
    }
    w->nopen++;
    pthread_mutex_unlock(&w->lock);
    int r = cs_db_open(out, w->db_path);
    if (r < 0) {
        pthread_mutex_lock(&w->lock);
        w->nopen--;
        pthread_cond_signal(&w->freed);
        pthread_mutex_unlock(&w->lock);
    }
    return r;
}

static void db_give(cs_dicomweb *w, cs_db *db)
{
    pthread_mutex_lock(&w->lock);
    w->idle[w->nidle++] = db;
    pthread_cond_signal(&w->freed);
    pthread_mutex_unlock(&w->lock);
}

/* ---- replies ---- */

static int reply_take(cs_dicomweb_reply *out, unsigned status, const char *type, char *body,
                      size_t len)
{
    out->status = status;
    snprintf(out->content_type, sizeof(out->content_type), "%s", type);
    out->body = body;
    out->len = len;
    return 0;
}

static int reply_json(cs_dicomweb_reply *out, unsigned status, const char *type, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return reply_take(out, 500, "text/plain", NULL, 0);
    return reply_take(out, status, type, text, strlen(text));
}

static int reply_error(cs_dicomweb_reply *out, int code, const char *message)
{
    json_t *j = NULL;
    unsigned st = cs_rest_error(code, message, &j);
    if (code == CS_EFORMAT || code == CS_EIO) { /* the stored file is unreadable */
        json_decref(j);
        j = json_pack("{s:s, s:s}", "error", "unreadable", "message", message);
        st = 422;
    }
    return reply_json(out, st, "application/json", j);
}

static int reply_code(cs_dicomweb_reply *out, int code)
{
    return reply_error(out, code, cs_error_last());
}

/* ---- DICOM JSON model ---- */

static void put(json_t *o, const char *tag, const char *vr, const char *value)
{
    json_t *a = json_pack("{s:s}", "vr", vr);
    if (value && *value) {
        json_t *v;
        if (strcmp(vr, "PN") == 0)
            v = json_pack("[{s:s}]", "Alphabetic", value);
        else if (strcmp(vr, "CS") == 0 && strchr(value, '\\')) { /* multi-valued */
            v = json_array();
            char *copy = strdup(value), *save = NULL;
            for (char *t = copy ? strtok_r(copy, "\\,", &save) : NULL; t;
                 t = strtok_r(NULL, "\\,", &save))
                json_array_append_new(v, json_string(t));
            free(copy);
        } else
            v = json_pack("[s]", value);
        json_object_set_new(a, "Value", v);
    }
    json_object_set_new(o, tag, a);
}

static void put_int(json_t *o, const char *tag, const char *vr, int64_t value)
{
    json_object_set_new(o, tag, json_pack("{s:s, s:[I]}", "vr", vr, "Value", (json_int_t)value));
}

static void put_col(json_t *o, const char *tag, const char *vr, cs_db_stmt *st, int col)
{
    put(o, tag, vr, cs_db_column_text(st, col));
}

static void put_col_int(json_t *o, const char *tag, const char *vr, cs_db_stmt *st, int col)
{
    const char *t = cs_db_column_text(st, col);
    if (t && *t)
        put_int(o, tag, vr, cs_db_column_int(st, col));
    else
        put(o, tag, vr, NULL);
}

/* ---- QIDO matching ---- */

/* A UID as PS3.5 9.1 allows: digits and dots, at most 64. */
static int is_uid(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return 0;
    return 1;
}

typedef struct {
    char sql[2048];
    size_t len;
    const char *args[16];
    int nargs;
} query;

static void q_add(query *q, const char *text)
{
    int n = snprintf(q->sql + q->len, sizeof(q->sql) - q->len, "%s", text);
    if (n > 0)
        q->len += (size_t)n < sizeof(q->sql) - q->len ? (size_t)n : sizeof(q->sql) - q->len - 1;
}

/* " AND <pre>$n<post>": the value is bound at run time, never spliced. */
static void q_cond(query *q, const char *pre, const char *value, const char *post)
{
    if (q->nargs >= 16)
        return;
    q->args[q->nargs++] = value;
    char num[16];
    snprintf(num, sizeof(num), "$%d", q->nargs);
    q_add(q, " AND ");
    q_add(q, pre);
    q_add(q, num);
    q_add(q, post);
}

/* Attribute matching of PS3.4 C.2.2.2 for one text column: universal
 * (empty or "*": no condition), wildcard (* and ?), or single value. Names
 * (@p fold) match case-insensitively, as most archives do; the value is
 * always bound, never spliced into the SQL. */
static int match_text(query *q, const char *col, const char *value, int fold, char *scratch,
                      size_t cap)
{
    if (!value || !*value || strcmp(value, "*") == 0)
        return 0;
    if (strlen(value) * 3 + 1 > cap)
        return cs_error_set(CS_EINVAL, "%s: value too long", col);
    char pre[96];
    if (!strpbrk(value, "*?")) {
        snprintf(pre, sizeof(pre), "%s = ", col);
        q_cond(q, pre, value, fold ? " COLLATE NOCASE" : "");
        return 0;
    }
    size_t o = 0;
    for (const char *p = value; *p; p++) {
        if (fold) { /* LIKE: % and _ are literal when escaped */
            if (*p == '%' || *p == '_' || *p == '\\')
                scratch[o++] = '\\';
            scratch[o++] = *p == '*' ? '%' : *p == '?' ? '_' : *p;
        } else if (*p == '[') { /* GLOB: * and ? as DICOM's; [ is a class */
            memcpy(scratch + o, "[[]", 3);
            o += 3;
        } else {
            scratch[o++] = *p;
        }
    }
    scratch[o] = '\0';
    snprintf(pre, sizeof(pre), fold ? "%s LIKE " : "%s GLOB ", col);
    q_cond(q, pre, scratch, fold ? " ESCAPE '\\'" : "");
    return 0;
}

/* Dates: "YYYYMMDD", "A-B", "-B", "A-". */
static int match_date(query *q, const char *col, const char *value, char *lo, char *hi)
{
    if (!value || !*value)
        return 0;
    const char *dash = strchr(value, '-');
    size_t n = strlen(value);
    for (size_t i = 0; i < n; i++)
        if (!((value[i] >= '0' && value[i] <= '9') || value[i] == '-'))
            return cs_error_set(CS_EINVAL, "%s: expected YYYYMMDD or a range A-B", col);
    char pre[96];
    if (!dash) {
        snprintf(pre, sizeof(pre), "%s = ", col);
        q_cond(q, pre, value, "");
        return 0;
    }
    size_t a = (size_t)(dash - value);
    if (a > 8 || n - a - 1 > 8)
        return cs_error_set(CS_EINVAL, "%s: bad date range", col);
    memcpy(lo, value, a);
    lo[a] = '\0';
    memcpy(hi, dash + 1, n - a - 1);
    hi[n - a - 1] = '\0';
    /* a range never matches an unknown date (as the C-FIND SCP does) */
    snprintf(pre, sizeof(pre), "%s <> '' AND %s IS NOT NULL", col, col);
    q_add(q, " AND ");
    q_add(q, pre);
    if (*lo) {
        snprintf(pre, sizeof(pre), "%s >= ", col);
        q_cond(q, pre, lo, "");
    }
    if (*hi) {
        snprintf(pre, sizeof(pre), "%s <= ", col);
        q_cond(q, pre, hi, "");
    }
    return 0;
}

/* A query argument by keyword or by tag (QIDO allows both). */
static const char *arg2(cs_dicomweb_arg_fn arg, void *ctx, const char *keyword, const char *tag)
{
    const char *v = arg(ctx, keyword);
    return v ? v : arg(ctx, tag);
}

static int parse_count(const char *text, const char *what, int dflt, int max, int *out)
{
    if (!text) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0)
        return cs_error_set(CS_EINVAL, "%s: expected a number >= 0", what);
    *out = v > max ? max : (int)v;
    return 0;
}

static int q_limits(query *q, cs_dicomweb_arg_fn arg, void *ctx, char *buf, size_t cap)
{
    int limit, offset;
    int r = parse_count(arg(ctx, "limit"), "limit", MAX_RESULTS, MAX_RESULTS, &limit);
    if (r < 0 || (r = parse_count(arg(ctx, "offset"), "offset", 0, 1 << 30, &offset)) < 0)
        return r;
    snprintf(buf, cap, " LIMIT %d OFFSET %d", limit, offset);
    q_add(q, buf);
    return 0;
}

static int q_run(cs_db *db, query *q, cs_db_stmt **out)
{
    if (q->len + 1 >= sizeof(q->sql))
        return cs_error_set(CS_EINVAL, "query too complex");
    int r = cs_db_prepare(db, out, q->sql);
    for (int i = 0; r == 0 && i < q->nargs; i++)
        r = cs_db_bind_text(*out, i + 1, q->args[i]);
    return r;
}

/* Run @p q and make a JSON array of its rows with @p row. */
static int q_rows(cs_db *db, query *q, json_t *(*row)(cs_db_stmt *st), json_t **out)
{
    cs_db_stmt *st = NULL;
    int r = q_run(db, q, &st);
    if (r < 0)
        return r;
    json_t *a = json_array();
    while ((r = cs_db_step(st)) == CS_DB_ROW)
        json_array_append_new(a, row(st));
    cs_db_finalize(st);
    if (r < 0) {
        json_decref(a);
        return r;
    }
    *out = a;
    return 0;
}

static const char STUDY_COLS[] =
    "SELECT s.study_uid, s.patient_id, s.patient_name, s.patient_birth_date, s.patient_sex,"
    " s.study_date, s.study_time, s.accession, s.study_id, s.study_desc, s.referring,"
    " (SELECT COUNT(*) FROM dicom_series x WHERE x.study_uid = s.study_uid),"
    " (SELECT COUNT(*) FROM dicom_instances i WHERE i.study_uid = s.study_uid),"
    " (SELECT GROUP_CONCAT(DISTINCT x.modality) FROM dicom_series x"
    "  WHERE x.study_uid = s.study_uid)"
    " FROM dicom_studies s WHERE 1";

static json_t *study_json(cs_db_stmt *st)
{
    json_t *o = json_object();
    put_col(o, "0020000D", "UI", st, 0);
    put_col(o, "00100020", "LO", st, 1);
    put_col(o, "00100010", "PN", st, 2);
    put_col(o, "00100030", "DA", st, 3);
    put_col(o, "00100040", "CS", st, 4);
    put_col(o, "00080020", "DA", st, 5);
    put_col(o, "00080030", "TM", st, 6);
    put_col(o, "00080050", "SH", st, 7);
    put_col(o, "00200010", "SH", st, 8);
    put_col(o, "00081030", "LO", st, 9);
    put_col(o, "00080090", "PN", st, 10);
    put_int(o, "00201206", "IS", cs_db_column_int(st, 11));
    put_int(o, "00201208", "IS", cs_db_column_int(st, 12));
    put_col(o, "00080061", "CS", st, 13);
    return o;
}

static int qido_studies(cs_db *db, cs_dicomweb_arg_fn arg, void *ctx, json_t **out)
{
    query q = {.len = 0};
    char s1[200], s2[200], s3[200], lo[9], hi[9], lim[64];
    q_add(&q, STUDY_COLS);
    const char *uid = arg2(arg, ctx, "StudyInstanceUID", "0020000D");
    if (uid && !is_uid(uid, strlen(uid)))
        return cs_error_set(CS_EINVAL, "StudyInstanceUID: not a UID");
    int r = match_text(&q, "s.study_uid", uid, 0, s1, sizeof(s1));
    if (r == 0)
        r = match_text(&q, "s.patient_id", arg2(arg, ctx, "PatientID", "00100020"), 0, s2,
                       sizeof(s2));
    if (r == 0)
        r = match_text(&q, "s.patient_name", arg2(arg, ctx, "PatientName", "00100010"), 1, s3,
                       sizeof(s3));
    if (r == 0)
        r = match_date(&q, "s.study_date", arg2(arg, ctx, "StudyDate", "00080020"), lo, hi);
    const char *acc = arg2(arg, ctx, "AccessionNumber", "00080050");
    if (r == 0 && acc && *acc)
        q_cond(&q, "s.accession = ", acc, "");
    const char *mod = arg2(arg, ctx, "ModalitiesInStudy", "00080061");
    if (r == 0 && mod && *mod)
        q_cond(&q,
               "EXISTS (SELECT 1 FROM dicom_series x WHERE x.study_uid = s.study_uid AND "
               "x.modality = ",
               mod, ")");
    if (r < 0)
        return r;
    q_add(&q, " ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid");
    if ((r = q_limits(&q, arg, ctx, lim, sizeof(lim))) < 0)
        return r;
    return q_rows(db, &q, study_json, out);
}

static json_t *series_json(cs_db_stmt *st)
{
    json_t *o = json_object();
    put_col(o, "0020000E", "UI", st, 0);
    put_col(o, "00080060", "CS", st, 1);
    put_col_int(o, "00200011", "IS", st, 2);
    put_col(o, "0008103E", "LO", st, 3);
    put_col(o, "00180015", "CS", st, 4);
    put_int(o, "00201209", "IS", cs_db_column_int(st, 5));
    put_col(o, "0020000D", "UI", st, 6);
    return o;
}

static int qido_series(cs_db *db, const char *study, cs_dicomweb_arg_fn arg, void *ctx,
                       json_t **out)
{
    query q = {.len = 0};
    char s1[200], lim[64];
    q_add(&q, "SELECT x.series_uid, x.modality, x.series_number, x.series_desc, x.body_part,"
              " (SELECT COUNT(*) FROM dicom_instances i WHERE i.series_uid = x.series_uid),"
              " x.study_uid FROM dicom_series x WHERE 1");
    q_cond(&q, "x.study_uid = ", study, "");
    const char *uid = arg2(arg, ctx, "SeriesInstanceUID", "0020000E");
    if (uid && !is_uid(uid, strlen(uid)))
        return cs_error_set(CS_EINVAL, "SeriesInstanceUID: not a UID");
    int r = match_text(&q, "x.series_uid", uid, 0, s1, sizeof(s1));
    const char *mod = arg2(arg, ctx, "Modality", "00080060");
    if (r == 0 && mod && *mod)
        q_cond(&q, "x.modality = ", mod, "");
    if (r < 0)
        return r;
    q_add(&q, " ORDER BY x.series_number, x.series_uid");
    if ((r = q_limits(&q, arg, ctx, lim, sizeof(lim))) < 0)
        return r;
    return q_rows(db, &q, series_json, out);
}

/* The instances of a series, in reading order. @p paths (may be NULL)
 * gets the files' store paths, one per object of @p out. */
static int qido_instances(cs_db *db, const char *study, const char *series, const char *sop,
                          cs_dicomweb_arg_fn arg, void *ctx, json_t **out, json_t **paths)
{
    query q = {.len = 0};
    char lim[64];
    q_add(&q, "SELECT i.sop_uid, i.sop_class, i.instance_number, i.rows, i.cols, i.frames,"
              " i.transfer_syntax, i.series_uid, i.study_uid, i.path"
              " FROM dicom_instances i WHERE 1");
    q_cond(&q, "i.study_uid = ", study, "");
    q_cond(&q, "i.series_uid = ", series, "");
    if (sop)
        q_cond(&q, "i.sop_uid = ", sop, "");
    q_add(&q, " ORDER BY i.instance_number, i.sop_uid");
    int r;
    if (arg && (r = q_limits(&q, arg, ctx, lim, sizeof(lim))) < 0)
        return r;
    cs_db_stmt *st = NULL;
    if ((r = q_run(db, &q, &st)) < 0)
        return r;
    json_t *a = json_array();
    if (paths)
        *paths = json_array();
    while ((r = cs_db_step(st)) == CS_DB_ROW) {
        json_t *o = json_object();
        put_col(o, "00080018", "UI", st, 0);
        put_col(o, "00080016", "UI", st, 1);
        put_col_int(o, "00200013", "IS", st, 2);
        put_col_int(o, "00280010", "US", st, 3);
        put_col_int(o, "00280011", "US", st, 4);
        put_col_int(o, "00280008", "IS", st, 5);
        put_col(o, "00083002", "UI", st, 6);
        put_col(o, "0020000E", "UI", st, 7);
        put_col(o, "0020000D", "UI", st, 8);
        json_array_append_new(a, o);
        if (paths)
            json_array_append_new(*paths, json_string(cs_db_column_text(st, 9)));
    }
    cs_db_finalize(st);
    if (r < 0) {
        json_decref(a);
        if (paths) {
            json_decref(*paths);
            *paths = NULL;
        }
        return r;
    }
    *out = a;
    return 0;
}

/* ---- WADO-RS ---- */

/* The file of a store path (relative, as the index keeps it). */
static int store_path(cs_dicomweb *w, const char *rel, char *out, size_t cap)
{
    if (!rel || !*rel || rel[0] == '/' || strstr(rel, ".."))
        return cs_error_set(CS_EFORMAT, "index entry has a bad path");
    if ((size_t)snprintf(out, cap, "%s/%s", w->store, rel) >= cap)
        return cs_error_set(CS_ERANGE, "path too long");
    return 0;
}

/* The file of one instance, by the index. */
static int instance_path(cs_dicomweb *w, cs_db *db, const char *study, const char *series,
                         const char *sop, char *path, size_t cap)
{
    json_t *found = NULL, *paths = NULL;
    int r = qido_instances(db, study, series, sop, NULL, NULL, &found, &paths);
    if (r < 0)
        return r;
    if (json_array_size(paths) == 0)
        r = cs_error_set(CS_ENOTFOUND, "no instance %s in series %s of study %s", sop, series,
                         study);
    else
        r = store_path(w, json_string_value(json_array_get(paths, 0)), path, cap);
    json_decref(found);
    json_decref(paths);
    return r;
}

static int open_path(const char *path, const char *sop, cs_dicom **out)
{
    int r = cs_dicom_open(out, path);
    if (r == CS_ENOTFOUND) /* indexed but gone: the store lost it */
        r = cs_error_set(CS_EIO, "instance %s is indexed but its file is missing", sop);
    return r;
}

/* Parse "1,3,5" (1-based frame numbers) against @p frames. */
static int parse_frames(const char *text, int frames, int *out, int *n)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ','))
            return cs_error_set(CS_EINVAL, "frames: expected numbers separated by commas");
        if (v < 1 || v > frames)
            return cs_error_set(CS_ENOTFOUND, "frame %ld: the instance has %d", v, frames);
        if (*n >= MAX_FRAMES)
            return cs_error_set(CS_ETOOBIG, "at most %d frames per request", MAX_FRAMES);
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0)
        return cs_error_set(CS_EINVAL, "frames: none given");
    return 0;
}

/* A growing body. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} body;

static void b_add(body *b, const void *data, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void b_str(body *b, const char *s)
{
    b_add(b, s, strlen(s));
}

#define BOUNDARY "consilium-dicomweb-part"

/* Frames as multipart/related application/octet-stream, decoded to the
 * explicit little endian layout (the PS3.18 default when the client asks
 * for octet-stream). */
static void wado_frames(cs_dicom *d, const char *list, cs_dicomweb_reply *out)
{
    cs_dicom_info info;
    cs_dicom_get_info(d, &info);
    int frames[MAX_FRAMES], n;
    if (info.rows <= 0 || info.cols <= 0) {
        reply_error(out, CS_ENOTFOUND, "the instance has no pixel data");
        return;
    }
    int r = parse_frames(list, info.frames, frames, &n);
    if (r < 0) {
        reply_code(out, r);
        return;
    }
    size_t fsz = cs_dicom_frame_size(&info);
    void *pix = malloc(fsz);
    if (!pix) {
        reply_error(out, CS_ENOMEM, "out of memory");
        return;
    }
    body b = {0};
    for (int i = 0; i < n && r == 0; i++) {
        r = cs_dicom_frame_decode(d, frames[i] - 1, pix, fsz);
        if (r < 0)
            break;
        char head[256];
        snprintf(head, sizeof(head),
                 "--" BOUNDARY "\r\nContent-Type: application/octet-stream;"
                 " transfer-syntax=" CS_DICOM_TS_EXPLICIT_LE "\r\nContent-Length: %zu\r\n\r\n",
                 fsz);
        b_str(&b, head);
        b_add(&b, pix, fsz);
        b_str(&b, "\r\n");
    }
    free(pix);
    b_str(&b, "--" BOUNDARY "--\r\n");
    if (r < 0 || b.failed) {
        free(b.data);
        if (r < 0)
            reply_code(out, r);
        else
            reply_error(out, CS_ENOMEM, "out of memory");
        return;
    }
    reply_take(out, 200, "multipart/related; type=\"application/octet-stream\"; boundary=" BOUNDARY,
               b.data, b.len);
}

/* "center,width[,function]" of ?window=. */
static int parse_window(const char *text, cs_dicom_window *win)
{
    char *end;
    errno = 0;
    win->center = strtod(text, &end);
    if (errno || end == text || *end != ',')
        return cs_error_set(CS_EINVAL, "window: expected center,width[,linear]");
    const char *p = end + 1;
    win->width = strtod(p, &end);
    if (end == p || (*end && strcmp(end, ",linear") != 0) || !isfinite(win->center) ||
        !isfinite(win->width) || win->width < 1)
        return cs_error_set(CS_EINVAL, "window: expected center,width[,linear], width >= 1");
    return 0;
}

/* ---- rendered images, rendered ahead ----
 *
 * What a reader opens first is frame 1 at the file's own window. So when a
 * compressed instance arrives (cs_dicomweb_prerender) one low-priority
 * thread renders that image ahead, and the first request does not wait for
 * a JPEG 2000 or JPEG-LS decode. The cache is
 * <store>/.rendered/<sop>_<size>_<mtime ns>.jpg: a replaced file has another
 * size or time, so a stale image is never served (it is left behind). */

/* Frame @p frame (0-based) at @p win (NULL: the file's) as a malloc'd JPEG. */
static int render_jpeg(cs_dicom *d, int frame, const cs_dicom_window *win, int quality, int threads,
                       char **data, size_t *len)
{
    cs_dicom_info info;
    cs_dicom_get_info(d, &info);
    *data = NULL;
    /* grey images render to one byte a pixel: a third of the memory to touch */
    int colour = info.samples == 3 || strncmp(info.photometric, "PALETTE", 7) == 0;
    size_t stride = (size_t)info.cols * (colour ? 3 : 1), cap = stride * (size_t)info.rows;
    uint8_t *px = malloc(cap);
    if (!px)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int channels = 0;
    cs_jpeg *j = NULL;
    cs_buf *jpg = NULL;
    cs_dicom_set_frame_threads(d, threads);
    int r = cs_dicom_render(d, frame, win, px, stride, cap, &channels);
    if (r == 0)
        r = cs_jpeg_new(&j);
    if (r == 0)
        r = channels == 1 ? cs_jpeg_encode_gray(j, &jpg, px, info.cols, info.rows, stride, quality)
                          : cs_jpeg_encode_rgb(j, &jpg, px, info.cols, info.rows, stride, quality);
    free(px);
    cs_jpeg_free(j);
    if (r < 0)
        return r;
    *len = cs_buf_size(jpg);
    *data = malloc(*len);
    if (*data)
        memcpy(*data, cs_buf_data(jpg), *len);
    cs_buf_unref(jpg);
    return *data ? 0 : cs_error_set(CS_ENOMEM, "out of memory");
}

/* The cache file of the store file @p path as it is now. */
static int cache_path(cs_dicomweb *w, const char *path, char *out, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return CS_ENOTFOUND;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int n = (int)strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".dcm"))
        n -= 4;
    int len = snprintf(out, cap, "%s/.rendered/%.*s_%lld_%lld.jpg", w->store, n, base,
                       (long long)st.st_size,
                       (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
    return len > 0 && (size_t)len < cap ? 0 : CS_ERANGE;
}

/* Serve the pre-rendered image of @p path if there is one: 1 when served. */
static int rendered_ahead(cs_dicomweb *w, const char *path, cs_dicomweb_reply *out)
{
    char cp[4200];
    if (!w->pre || cache_path(w, path, cp, sizeof(cp)) < 0)
        return 0;
    FILE *f = fopen(cp, "rb");
    if (!f)
        return 0;
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && (data = malloc((size_t)st.st_size)))
        len = fread(data, 1, (size_t)st.st_size, f);
    fclose(f);
    if (!data || len != (size_t)st.st_size) {
        free(data);
        return 0;
    }
    reply_take(out, 200, "image/jpeg", data, len);
    return 1;
}

static int is_native_ts(const char *ts)
{
    return !strcmp(ts, CS_DICOM_TS_IMPLICIT_LE) || !strcmp(ts, CS_DICOM_TS_EXPLICIT_LE) ||
           !strcmp(ts, CS_DICOM_TS_EXPLICIT_BE);
}

static void prerender_one(cs_dicomweb *w, const char *path)
{
    char cp[4200], tmp[4300];
    cs_dicom *d = NULL;
    cs_dicom_info info;
    char *data = NULL;
    size_t len = 0;
    if (cache_path(w, path, cp, sizeof(cp)) < 0 || access(cp, F_OK) == 0 ||
        cs_dicom_open(&d, path) < 0)
        return;
    cs_dicom_get_info(d, &info);
    if (info.rows > 0 && info.cols > 0 && info.frames > 0 &&
        render_jpeg(d, 0, NULL, RENDER_QUALITY, 1, &data, &len) == 0) {
        snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", cp, (long)gettid());
        FILE *f = fopen(tmp, "wb");
        int ok = f && fwrite(data, 1, len, f) == len;
        if (f && fclose(f) != 0)
            ok = 0;
        if (!ok || rename(tmp, cp) != 0)
            unlink(tmp);
    }
    free(data);
    cs_dicom_free(d);
}

static void prerender_thread(void *arg)
{
    cs_dicomweb *w = arg;
    cs_thread_nice(10); /* behind the readers, the DICOM node and the tile server */
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/.rendered", w->store);
    mkdir(dir, 0755);
    void *item;
    while (cs_queue_pop(w->pre, &item, -1) == 0) {
        if (!atomic_load(&w->closing))
            prerender_one(w, item);
        free(item);
    }
}

void cs_dicomweb_prerender(cs_dicomweb *w, const char *path, const char *ts)
{
    char *p;
    /* uncompressed images render in a few ms: not worth a thread or the disk */
    if (w && w->pre && ts && !is_native_ts(ts) && (p = strdup(path)) &&
        cs_queue_try_push(w->pre, p) != 0)
        free(p); /* full: rendered on demand */
}

static void wado_rendered(cs_dicom *d, int frame, cs_dicomweb_arg_fn arg, void *ctx,
                          cs_dicomweb_reply *out)
{
    cs_dicom_info info;
    cs_dicom_get_info(d, &info);
    if (info.rows <= 0 || info.cols <= 0) {
        reply_error(out, CS_ENOTFOUND, "the instance has no pixel data");
        return;
    }
    if (frame < 1 || frame > info.frames) {
        reply_error(out, CS_ENOTFOUND, "no such frame");
        return;
    }
    cs_dicom_window win = {0, 0};
    const char *wt = arg(ctx, "window");
    int quality = 90, r = 0;
    if (wt && (r = parse_window(wt, &win)) < 0) {
        reply_code(out, r);
        return;
    }
    if ((r = parse_count(arg(ctx, "quality"), "quality", 90, 100, &quality)) < 0 || quality < 1) {
        reply_error(out, CS_EINVAL, "quality: expected 1-100");
        return;
    }
    char *data;
    size_t len;
    /* two decode threads: a reader waits for this one image */
    r = render_jpeg(d, frame - 1, wt ? &win : NULL, quality, 2, &data, &len);
    if (r < 0)
        reply_code(out, r);
    else
        reply_take(out, 200, "image/jpeg", data, len);
}

static void wado_metadata(cs_dicomweb *w, json_t *paths, cs_dicomweb_reply *out)
{
    body b = {0};
    b_str(&b, "[");
    for (size_t i = 0; i < json_array_size(paths); i++) {
        char path[4096];
        cs_dicom *d = NULL;
        cs_buf *j = NULL;
        int r = store_path(w, json_string_value(json_array_get(paths, i)), path, sizeof(path));
        if (r == 0)
            r = cs_dicom_open(&d, path);
        if (r == 0)
            r = cs_dicom_to_json(d, &j);
        cs_dicom_free(d);
        if (r < 0) {
            free(b.data);
            reply_code(out, r);
            return;
        }
        if (i)
            b_str(&b, ",");
        b_add(&b, cs_buf_data(j), cs_buf_size(j));
        cs_buf_unref(j);
    }
    b_str(&b, "]");
    if (b.failed) {
        free(b.data);
        reply_error(out, CS_ENOMEM, "out of memory");
        return;
    }
    reply_take(out, 200, "application/dicom+json", b.data, b.len);
}

/* The instance files as multipart/related application/dicom. */
static void wado_instances(cs_dicomweb *w, json_t *paths, cs_dicomweb_reply *out)
{
    body b = {0};
    for (size_t i = 0; i < json_array_size(paths); i++) {
        char path[4096];
        int r = store_path(w, json_string_value(json_array_get(paths, i)), path, sizeof(path));
        FILE *f = r == 0 ? fopen(path, "rb") : NULL;
        if (!f) {
            free(b.data);
            reply_error(out, CS_EIO, r < 0 ? cs_error_last() : "an indexed file is missing");
            return;
        }
        b_str(&b, "--" BOUNDARY "\r\nContent-Type: application/dicom\r\n\r\n");
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            b_add(&b, buf, n);
        fclose(f);
        b_str(&b, "\r\n");
    }
    b_str(&b, "--" BOUNDARY "--\r\n");
    if (b.failed) {
        free(b.data);
        reply_error(out, CS_ENOMEM, "out of memory");
        return;
    }
    reply_take(out, 200, "multipart/related; type=\"application/dicom\"; boundary=" BOUNDARY,
               b.data, b.len);
}

/* ---- routing ---- */

/* Split @p path at '/' into at most @p max parts (copied into @p buf). */
static int split(const char *path, char *buf, size_t cap, char **parts, int max)
{
    size_t n = strlen(path);
    if (n >= cap)
        return -1;
    memcpy(buf, path, n + 1);
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (k == max)
            return -1;
        parts[k++] = t;
    }
    return k;
}

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static int route(cs_dicomweb *w, cs_db *db, char **p, int n, cs_dicomweb_arg_fn arg, void *ctx,
                 cs_dicomweb_reply *out)
{
    json_t *j = NULL, *paths = NULL;
    int r;
    if (n == 1 && is(p[0], "studies")) {
        if ((r = qido_studies(db, arg, ctx, &j)) < 0)
            return reply_code(out, r);
        return reply_json(out, 200, "application/dicom+json", j);
    }
    if (n < 2 || !is(p[0], "studies"))
        return reply_error(out, CS_ENOTFOUND, "no such DICOMweb resource");
    for (int i = 1; i < n && i <= 5; i += 2) /* study, series, instance */
        if (!is_uid(p[i], strlen(p[i])))
            return reply_error(out, CS_EINVAL, "a UID in the path is malformed");
    snprintf(out->object, sizeof(out->object), "%s", p[1]);
    if (n == 3 && is(p[2], "series")) {
        if ((r = qido_series(db, p[1], arg, ctx, &j)) < 0)
            return reply_code(out, r);
        if (json_array_size(j) == 0 && !arg(ctx, "SeriesInstanceUID") && !arg(ctx, "Modality")) {
            json_decref(j); /* an unknown study, not an empty answer */
            return reply_error(out, CS_ENOTFOUND, "no such study");
        }
        return reply_json(out, 200, "application/dicom+json", j);
    }
    if (n < 4 || !is(p[2], "series"))
        return reply_error(out, CS_ENOTFOUND, "no such DICOMweb resource");
    const char *sop = n >= 6 ? p[5] : NULL;
    if (n >= 5 && !is(p[4], "instances") && !(n == 5 && is(p[4], "metadata")))
        return reply_error(out, CS_ENOTFOUND, "no such DICOMweb resource");
    if ((r = qido_instances(db, p[1], p[3], sop, n == 5 && is(p[4], "instances") ? arg : NULL, ctx,
                            &j, &paths)) < 0)
        return reply_code(out, r);
    if (json_array_size(j) == 0) {
        json_decref(j);
        json_decref(paths);
        return reply_error(out, CS_ENOTFOUND, sop ? "no such instance" : "no such series");
    }
    if (n == 5 && is(p[4], "instances")) { /* QIDO */
        json_decref(paths);
        return reply_json(out, 200, "application/dicom+json", j);
    }
    json_decref(j);
    if ((n == 5 && is(p[4], "metadata")) || (n == 7 && is(p[6], "metadata"))) {
        wado_metadata(w, paths, out);
    } else if (n == 4 || n == 6) {
        wado_instances(w, paths, out);
    } else if ((n == 7 && is(p[6], "rendered")) || (n == 8 && is(p[6], "frames")) ||
               (n == 9 && is(p[6], "frames") && is(p[8], "rendered"))) {
        cs_dicom *d = NULL;
        char path[4096];
        r = instance_path(w, db, p[1], p[3], p[5], path, sizeof(path));
        int first = n == 7 || (n == 9 && !strcmp(p[7], "1"));
        if (r == 0 && n != 8 && first && !arg(ctx, "window") && !arg(ctx, "quality") &&
            rendered_ahead(w, path, out)) {
            json_decref(paths);
            return 0;
        }
        if (r == 0)
            r = open_path(path, p[5], &d);
        if (r < 0) {
            reply_code(out, r);
        } else if (n == 8) {
            wado_frames(d, p[7], out);
        } else {
            int frame = 1;
            if (n == 9) {
                int fr[1], nf = 0;
                cs_dicom_info info;
                cs_dicom_get_info(d, &info);
                if (strchr(p[7], ',') || (r = parse_frames(p[7], info.frames, fr, &nf)) < 0)
                    r = r < 0 ? r : cs_error_set(CS_EINVAL, "rendered takes one frame");
                frame = fr[0];
            }
            if (r < 0)
                reply_code(out, r);
            else
                wado_rendered(d, frame, arg, ctx, out);
        }
        cs_dicom_free(d);
    } else {
        reply_error(out, CS_ENOTFOUND, "no such DICOMweb resource");
    }
    json_decref(paths);
    return 0;
}

void cs_dicomweb_handle(cs_dicomweb *w, const char *path, cs_dicomweb_arg_fn arg, void *ctx,
                        cs_dicomweb_reply *out)
{
    memset(out, 0, sizeof(*out));
    char buf[1024], *parts[10];
    int n = split(path, buf, sizeof(buf), parts, 10);
    if (n <= 0) {
        reply_error(out, n < 0 ? CS_EINVAL : CS_ENOTFOUND,
                    n < 0 ? "path too long" : "no such DICOMweb resource");
        return;
    }
    cs_db *db = NULL;
    if (db_take(w, &db) < 0) {
        reply_error(out, CS_EAGAIN, cs_error_last());
        return;
    }
    route(w, db, parts, n, arg, ctx, out);
    db_give(w, db);
}
