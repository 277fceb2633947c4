/* The DICOM node: accept loop, one thread per association (C-ECHO, C-STORE
 * into the study store, C-FIND over the index), and the auto-forwarder.
 *
 * Invariants: a file is renamed into the store only after it arrived whole
 * and parsed, carrying its SHA-256; it is synced (a replacement before its
 * rename, a new instance after it) and its name made durable (by that
 * fsync where cs_file_names_durable(), else the folder's) before its index
 * rows are written; the index rows, the
 * forward-queue rows and the audit record of an instance are one
 * transaction, committed (not synced: synchronous=NORMAL) before the C-STORE
 * response leaves. The files are the truth: a commit lost to a power cut is
 * redone from the file by reconcile() at the next start. Every thread has its own database handle.
 * No lock is held across network I/O: the forwarder's only shared state is the wake-up flag under
 * n->mu. */
#include "cs/dimse.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "cs/db.h"
#include "cs/dicom.h"
#include "cs/dicomnet.h"
#include "cs/err.h"
#include "cs/file.h"
#include "cs/log.h"
#include "cs/thread.h"

#define PATH_CAP     4096
#define XATTR_SHA256 "user.consilium.sha256" /* the file's SHA-256 when stored, hex */
#define FWD_THREADS  2                       /* associations per peer at once: fills the RTT gaps */
#define FWD_BATCH    8                       /* rows a forwarder claims at a time */
#define FWD_LEASE    300.0 /* s a claimed row is hidden from the other forwarder */
#define STORE_CAP    3000  /* leaves room for study/series/sop below it */

typedef struct route {
    char from_aet[17];
    char peer[300]; /* AET@HOST:PORT */
    char peer_aet[17];
    char ts[65]; /* "" = as stored */
} route;

typedef struct slot {
    struct cs_dimse *n;
    cs_thread *t;
} slot;

struct cs_dimse {
    char aet[17];
    int port;
    char store[STORE_CAP];
    char tmp[STORE_CAP + 8];
    char db_path[PATH_CAP];
    int timeout;
    int max_assoc;
    int fsync;         /* sync files and commits before acknowledging */
    int names_durable; /* fsync of a renamed file makes its name durable */
    route *routes;
    int nroutes;
    cs_dicomnet_listener *l;
    cs_logger *log;
    atomic_int stop;
    cs_thread *fwd_thr[FWD_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned kick; /* under mu: bumped when forward rows are queued */
    slot *slots;
    void (*stored)(void *userdata, const char *path, const char *ts); /* cs_dimse_on_stored */
    void *stored_ud;
};

/* ------------------------------------------------------------- helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int uid_ok(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > 64 || u[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((u[i] >= '0' && u[i] <= '9') || u[i] == '.'))
            return 0;
    return strstr(u, "..") == NULL;
}

static int mkdir_one(const char *path, int *created)
{
    if (mkdir(path, 0755) == 0) {
        *created = 1;
        return 0;
    }
    return errno == EEXIST ? 0 : cs_error_set(CS_EIO, "mkdir %s: %s", path, strerror(errno));
}

static void parent_of(char *dst, size_t cap, const char *path)
{
    snprintf(dst, cap, "%s", path);
    char *s = strrchr(dst, '/');
    if (s && s != dst)
        *s = '\0';
}

const char *cs_dimse_ts_from_name(const char *name)
{
    static const struct {
        const char *name, *uid;
    } map[] = {
        {"keep", ""},
        {"explicit", "1.2.840.10008.1.2.1"},
        {"implicit", "1.2.840.10008.1.2"},
        {"big-endian", "1.2.840.10008.1.2.2"},
        {"deflate", "1.2.840.10008.1.2.1.99"},
        {"rle", "1.2.840.10008.1.2.5"},
        {"jpeg-baseline", "1.2.840.10008.1.2.4.50"},
        {"jpeg-extended", "1.2.840.10008.1.2.4.51"},
        {"jpeg-lossless", "1.2.840.10008.1.2.4.70"},
        {"jpeg-lossless-14", "1.2.840.10008.1.2.4.57"},
        {"jpeg-ls", "1.2.840.10008.1.2.4.80"},
        {"jpeg-ls-lossless", "1.2.840.10008.1.2.4.80"},
        {"jpeg-ls-near", "1.2.840.10008.1.2.4.81"},
        {"j2k-lossless", "1.2.840.10008.1.2.4.90"},
        {"j2k", "1.2.840.10008.1.2.4.91"},
        {"htj2k-lossless", "1.2.840.10008.1.2.4.201"},
        {"htj2k", "1.2.840.10008.1.2.4.203"},
    };
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].name, name))
            return map[i].uid;
    return uid_ok(name) ? name : NULL;
}

int cs_dimse_send_file(cs_dicomnet_assoc *a, const char *path, const char *want_ts,
                       const char *tmp_dir, int *status, char *sent_ts)
{
    char sop[65], ts[65];
    int r = cs_dicomnet_file_probe(path, sop, ts);
    if (r < 0)
        return r;
    const char *target = NULL;
    if (want_ts && *want_ts && cs_dicomnet_accepted(a, sop, want_ts))
        target = want_ts;
    else if (cs_dicomnet_ts_known(ts) && cs_dicomnet_accepted(a, sop, ts))
        target = ts;
    else if (cs_dicomnet_accepted(a, sop, CS_DICOM_TS_EXPLICIT_LE))
        target = CS_DICOM_TS_EXPLICIT_LE;
    else if (cs_dicomnet_accepted(a, sop, CS_DICOM_TS_IMPLICIT_LE))
        target = CS_DICOM_TS_IMPLICIT_LE;
    else
        return cs_error_set(CS_EINVAL, "%s: the peer accepted no context for SOP class %s", path,
                            sop);
    if (!strcmp(target, ts))
        return cs_dicomnet_store_file(a, path, NULL, status, sent_ts);
    /* Re-encode with cs_dicom (CharLS, TurboJPEG, native) into a temp file. */
    static atomic_uint counter;
    char tmp[PATH_CAP];
    snprintf(tmp, sizeof(tmp), "%s/.send-%ld-%u.dcm", tmp_dir ? tmp_dir : "/tmp", (long)getpid(),
             atomic_fetch_add(&counter, 1));
    cs_dicom *d = NULL;
    cs_dicom_transcode_opts to = CS_DICOM_TRANSCODE_OPTS_INIT;
    to.transfer_syntax = target;
    r = cs_dicom_open(&d, path);
    if (r == 0)
        r = cs_dicom_transcode(d, &to);
    if (r == 0)
        r = cs_dicom_save(d, tmp);
    cs_dicom_free(d);
    if (r == CS_EINVAL) /* not a cs_dicom target (J2K, RLE...): DCMTK's codecs */
        return cs_dicomnet_store_file(a, path, target, status, sent_ts);
    if (r < 0) {
        unlink(tmp);
        return r == CS_ENOMEM ? r : CS_EFORMAT;
    }
    r = cs_dicomnet_store_file(a, tmp, NULL, status, sent_ts);
    unlink(tmp);
    return r;
}

/* ------------------------------------------------------------- config */

static int load_config(cs_dimse *n, const cs_dimse_opts *o)
{
    json_t *root = NULL;
    if (o->config_path) {
        json_error_t je;
        root = json_load_file(o->config_path, 0, &je);
        if (!root)
            return cs_error_set(CS_EINVAL, "%s:%d: %s", o->config_path, je.line, je.text);
        if (!json_is_object(root)) {
            json_decref(root);
            return cs_error_set(CS_EINVAL, "%s: not a JSON object", o->config_path);
        }
    }
    const char *aet = o->aet ? o->aet : json_string_value(json_object_get(root, "aet"));
    snprintf(n->aet, sizeof(n->aet), "%s", aet ? aet : "CONSILIUM");
    if (!n->aet[0] || (aet && strlen(aet) > 16)) {
        json_decref(root);
        return cs_error_set(CS_EINVAL, "AE title '%s' must have 1-16 characters", aet);
    }
    n->port = o->port;
    if (n->port < 0) {
        json_t *p = json_object_get(root, "dicom_port");
        n->port = json_is_integer(p) ? (int)json_integer_value(p) : 11112;
    }
    const char *store = o->store ? o->store : json_string_value(json_object_get(root, "store"));
    if (!store) {
        json_decref(root);
        return cs_error_set(CS_EINVAL, "the DICOM node needs a store folder");
    }
    if (strlen(store) >= sizeof(n->store)) {
        json_decref(root);
        return cs_error_set(CS_EINVAL, "the store path is too long");
    }
    snprintf(n->store, sizeof(n->store), "%s", store);
    n->fsync = o->fsync;
    if (n->fsync < 0) {
        json_t *fs = json_object_get(root, "fsync");
        n->fsync = fs ? json_is_true(fs) : 1;
    }
    /* "dir_sync": "always" keeps the folder fsync where the filesystem
     * would not need it (cs_file_names_durable()); "auto" is the default. */
    const char *ds = json_string_value(json_object_get(root, "dir_sync"));
    if (ds && strcmp(ds, "auto") && strcmp(ds, "always")) {
        json_decref(root);
        return cs_error_set(CS_EINVAL, "\"dir_sync\" is \"auto\" or \"always\", not \"%s\"", ds);
    }
    n->names_durable = !(ds && !strcmp(ds, "always"));
    json_t *to = json_object_get(root, "timeout_s");
    if (json_is_integer(to) && json_integer_value(to) > 0)
        n->timeout = (int)json_integer_value(to);
    json_t *peers = json_object_get(root, "peers");
    json_t *routes = json_object_get(root, "routes");
    if (routes && !json_is_array(routes)) {
        json_decref(root);
        return cs_error_set(CS_EINVAL, "%s: \"routes\" must be an array", o->config_path);
    }
    size_t nr = json_array_size(routes);
    n->routes = nr ? calloc(nr, sizeof(route)) : NULL;
    if (nr && !n->routes) {
        json_decref(root);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nr; i++) {
        json_t *r = json_array_get(routes, i);
        const char *from = json_string_value(json_object_get(r, "from_aet"));
        const char *to_name = json_string_value(json_object_get(r, "to"));
        const char *ts = json_string_value(json_object_get(r, "transfer_syntax"));
        const char *peer = to_name ? json_string_value(json_object_get(peers, to_name)) : NULL;
        if (!peer && to_name && strchr(to_name, '@'))
            peer = to_name; /* a peer written in place */
        cs_dicomnet_peer p;
        if (!peer || cs_dicomnet_peer_parse(&p, peer) < 0) {
            json_decref(root);
            return cs_error_set(CS_EINVAL, "%s: route %zu: \"to\" must name a peer (AET@HOST:PORT)",
                                o->config_path, i);
        }
        const char *uid = cs_dimse_ts_from_name(ts ? ts : "jpeg-ls-lossless");
        if (!uid) {
            json_decref(root);
            return cs_error_set(CS_EINVAL, "%s: route %zu: unknown transfer_syntax '%s'",
                                o->config_path, i, ts);
        }
        route *rt = &n->routes[n->nroutes++];
        snprintf(rt->from_aet, sizeof(rt->from_aet), "%s", from ? from : "*");
        snprintf(rt->peer, sizeof(rt->peer), "%s", peer);
        snprintf(rt->peer_aet, sizeof(rt->peer_aet), "%s", p.aet);
        snprintf(rt->ts, sizeof(rt->ts), "%s", uid);
    }
    json_decref(root);
    return 0;
}

/* -------------------------------------------------------------- store */

enum { ST_STUDY, ST_SERIES, ST_INSTANCE, ST_FORWARD, ST_DUP, ST_COUNT };

typedef struct worker {
    cs_dimse *n;
    cs_db *db;
    const char *host;
    cs_db_stmt *st[ST_COUNT]; /* prepared once per thread */
} worker;

/* The cached statement @p k of @p w, reset; NULL on error. */
static cs_db_stmt *stmt(struct worker *w, int k, const char *sql)
{
    if (!w->st[k] && cs_db_prepare(w->db, &w->st[k], sql) < 0)
        return NULL;
    cs_db_reset(w->st[k]);
    return w->st[k];
}

static int exec_bind(struct worker *w, int k, const char *sql, const char *const *args, int nargs)
{
    cs_db_stmt *st = stmt(w, k, sql);
    if (!st)
        return CS_EINVAL;
    for (int i = 0; i < nargs; i++)
        cs_db_bind_text(st, i + 1, args[i]);
    int r = cs_db_step(st);
    cs_db_reset(st);
    return r == CS_DB_ROW ? 0 : r;
}

/* The rows of one instance, its forward-queue rows (routes apply) and its
 * ATNA 110104 record (@p event) in one transaction. */
static int index_instance(worker *w, const cs_dicomnet_instance *in, const char *rel,
                          const char *event)
{
    cs_db *db = w->db;
    char num[4][24];
    snprintf(num[0], sizeof(num[0]), "%d", in->series_number);
    snprintf(num[1], sizeof(num[1]), "%d", in->instance_number);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)in->size);
    int r = cs_db_begin(db);
    if (r < 0)
        return r;
    const char *study[] = {in->study_uid,          in->patient_id,  in->patient_name,
                           in->patient_birth_date, in->patient_sex, in->study_date,
                           in->study_time,         in->accession,   in->study_id,
                           in->study_desc,         in->referring};
    r = exec_bind(w, ST_STUDY,
                  "INSERT INTO dicom_studies (study_uid, patient_id, patient_name,"
                  " patient_birth_date, patient_sex, study_date, study_time, accession, study_id,"
                  " study_desc, referring, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,"
                  " strftime('%Y-%m-%dT%H:%M:%fZ','now')) ON CONFLICT(study_uid) DO UPDATE SET"
                  " patient_id=coalesce(nullif(excluded.patient_id,''),patient_id),"
                  " patient_name=coalesce(nullif(excluded.patient_name,''),patient_name),"
                  " patient_birth_date=coalesce(nullif(excluded.patient_birth_date,''),"
                  "patient_birth_date),"
                  " patient_sex=coalesce(nullif(excluded.patient_sex,''),patient_sex),"
                  " study_date=coalesce(nullif(excluded.study_date,''),study_date),"
                  " study_time=coalesce(nullif(excluded.study_time,''),study_time),"
                  " accession=coalesce(nullif(excluded.accession,''),accession),"
                  " study_id=coalesce(nullif(excluded.study_id,''),study_id),"
                  " study_desc=coalesce(nullif(excluded.study_desc,''),study_desc),"
                  " referring=coalesce(nullif(excluded.referring,''),referring),"
                  " updated_at=excluded.updated_at",
                  study, 11);
    if (r == 0) {
        const char *series[] = {in->series_uid, in->study_uid,   in->modality,
                                num[0],         in->series_desc, in->body_part};
        r = exec_bind(w, ST_SERIES,
                      "INSERT INTO dicom_series (series_uid, study_uid, modality, series_number,"
                      " series_desc, body_part, updated_at) VALUES ($1,$2,$3,"
                      " CASE WHEN $4 = '-1' THEN NULL ELSE CAST($4 AS INTEGER) END,$5,$6,"
                      " strftime('%Y-%m-%dT%H:%M:%fZ','now')) ON CONFLICT(series_uid) DO UPDATE SET"
                      " modality=coalesce(nullif(excluded.modality,''),modality),"
                      " series_number=coalesce(excluded.series_number,series_number),"
                      " series_desc=coalesce(nullif(excluded.series_desc,''),series_desc),"
                      " body_part=coalesce(nullif(excluded.body_part,''),body_part),"
                      " updated_at=excluded.updated_at",
                      series, 6);
    }
    if (r == 0) {
        char dims[3][16];
        snprintf(dims[0], sizeof(dims[0]), "%d", in->rows);
        snprintf(dims[1], sizeof(dims[1]), "%d", in->cols);
        snprintf(dims[2], sizeof(dims[2]), "%d", in->frames);
        const char *inst[] = {in->sop_uid,    in->series_uid,
                              in->study_uid,  in->sop_class,
                              num[1],         in->transfer_syntax,
                              dims[0],        dims[1],
                              dims[2],        rel,
                              num[2],         in->sha256,
                              in->calling_aet};
        r = exec_bind(w, ST_INSTANCE,
                      "INSERT OR REPLACE INTO dicom_instances (sop_uid, series_uid, study_uid,"
                      " sop_class, instance_number, transfer_syntax, rows, cols, frames, path,"
                      " size, sha256, source_aet, received_at) VALUES ($1,$2,$3,$4,"
                      " CASE WHEN $5 = '-1' THEN NULL ELSE CAST($5 AS INTEGER) END,$6,"
                      " CAST($7 AS INTEGER),CAST($8 AS INTEGER),CAST($9 AS INTEGER),$10,"
                      " CAST($11 AS INTEGER),$12,$13,strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                      inst, 13);
    }
    int queued = 0;
    for (int i = 0; r == 0 && i < w->n->nroutes; i++) {
        const route *rt = &w->n->routes[i];
        if (strcmp(rt->from_aet, "*") && strcmp(rt->from_aet, in->calling_aet))
            continue;
        if (!strcmp(rt->peer_aet, in->calling_aet))
            continue; /* never back to where it came from */
        const char *q[] = {in->sop_uid, rt->peer, rt->ts};
        r = exec_bind(w, ST_FORWARD,
                      "INSERT INTO forward_queue (sop_uid, peer, transfer_syntax, created_at)"
                      " VALUES ($1,$2,$3,strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                      q, 3);
        queued++;
    }
    if (r == 0) {
        /* A re-indexed file does not say who sent it: the node is the user. */
        cs_db_audit a = {"110104", event,      0, in->calling_aet[0] ? in->calling_aet : w->n->aet,
                         w->host,  in->sop_uid};
        r = cs_db_audit_append(db, &a, NULL);
    }
    if (r == 0)
        r = cs_db_commit(db);
    if (r < 0) {
        cs_db_rollback(db);
        return r;
    }
    if (queued) {
        pthread_mutex_lock(&w->n->mu);
        w->n->kick++;
        pthread_cond_broadcast(&w->n->cv);
        pthread_mutex_unlock(&w->n->mu);
    }
    return 0;
}

static int on_store(const cs_dicomnet_instance *in, void *userdata)
{
    worker *w = userdata;
    cs_dimse *n = w->n;
    if (!uid_ok(in->study_uid) || !uid_ok(in->series_uid) || !uid_ok(in->sop_uid)) {
        cs_error_set(CS_EFORMAT, "malformed UID (study %.70s series %.70s sop %.70s)",
                     in->study_uid, in->series_uid, in->sop_uid);
        return CS_DICOMNET_DATASET_MISMATCH;
    }
    if (!w->db) {
        cs_error_set(CS_EIO, "the index database is not open");
        return CS_DICOMNET_OUT_OF_RESOURCES;
    }
    /* A duplicate with the same bytes: acknowledged, not stored again. */
    int dup = 0;
    cs_db_stmt *st = stmt(w, ST_DUP, "SELECT sha256 FROM dicom_instances WHERE sop_uid = $1");
    if (st) {
        cs_db_bind_text(st, 1, in->sop_uid);
        if (cs_db_step(st) == CS_DB_ROW)
            dup = !strcmp(cs_db_column_text(st, 0), in->sha256) ? 1 : 2;
        cs_db_reset(st);
    }
    if (dup == 1) {
        cs_log(n->log, CS_LOG_VERBOSE, "%s from %s: already stored, same bytes", in->sop_uid,
               in->calling_aet);
        cs_db_audit a = {"110104", "DICOM instance received (duplicate, kept once)",
                         0,        in->calling_aet,
                         w->host,  in->sop_uid};
        cs_db_audit_append(w->db, &a, NULL);
        return CS_DICOMNET_SUCCESS;
    }
    char rel[256], abs[PATH_CAP], dir[PATH_CAP];
    snprintf(rel, sizeof(rel), "%s/%s/%s.dcm", in->study_uid, in->series_uid, in->sop_uid);
    int c1 = 0, c2 = 0;
    snprintf(dir, sizeof(dir), "%s/%s", n->store, in->study_uid);
    int r = mkdir_one(dir, &c1);
    snprintf(dir, sizeof(dir), "%s/%s/%s", n->store, in->study_uid, in->series_uid);
    if (r == 0)
        r = mkdir_one(dir, &c2);
    snprintf(abs, sizeof(abs), "%s/%s", n->store, rel);
    /* The content's SHA-256 rides with the file (an extended attribute):
     * reconcile() re-indexes a file without its row only if the file still
     * matches it. That is what lets a new instance be renamed first and
     * synced in its place: where that fsync also makes the new name durable
     * (cs_file_names_durable()) the folder's fsync is skipped, one device
     * flush per instance instead of two. Until it has an index row nothing
     * serves it, and a power cut before the sync leaves at most a cut or
     * torn file that reconcile() refuses. Without the attribute, and for a
     * replacement (a torn file must never take the place of a whole one),
     * the file is synced before its rename. */
    int tagged = r == 0 && setxattr(in->path, XATTR_SHA256, in->sha256, 64, 0) == 0;
    int fresh = dup == 0 && tagged;
    if (r == 0 && n->fsync && !fresh)
        r = cs_file_sync(in->path, CS_FILE_SYNC_DATA);
    if (r == 0 && rename(in->path, abs) != 0)
        r = cs_error_set(CS_EIO, "rename into %s: %s", abs, strerror(errno));
    if (r == 0 && n->fsync && fresh)
        r = cs_file_sync(abs, CS_FILE_SYNC_FULL);
    if (r == 0 && n->fsync && !(fresh && n->names_durable))
        r = cs_file_sync(dir, CS_FILE_SYNC_DIR);
    if (r == 0 && c2 && n->fsync) {
        char p[PATH_CAP];
        parent_of(p, sizeof(p), dir);
        r = cs_file_sync(p, CS_FILE_SYNC_DIR);
        if (r == 0 && c1)
            r = cs_file_sync(n->store, CS_FILE_SYNC_DIR);
    }
    if (r == 0)
        r = index_instance(w, in, rel, "DICOM instance received");
    if (r < 0) {
        cs_log(n->log, CS_LOG_ERROR, "%s from %s not stored: %s", in->sop_uid, in->calling_aet,
               cs_error_last());
        if (dup == 0)
            unlink(abs); /* not indexed: no file either */
        return CS_DICOMNET_OUT_OF_RESOURCES;
    }
    if (dup == 2)
        cs_log(n->log, CS_LOG_WARN, "%s from %s replaced the stored instance (different bytes)",
               in->sop_uid, in->calling_aet);
    cs_log(n->log, CS_LOG_VERBOSE, "stored %s (%s, %lld bytes) from %s", rel, in->transfer_syntax,
           (long long)in->size, in->calling_aet);
    if (n->stored)
        n->stored(n->stored_ud, abs, in->transfer_syntax);
    return CS_DICOMNET_SUCCESS;
}

/* --------------------------------------------------------------- find */

enum { K_UID, K_STR, K_PN, K_DATE, K_TIME, K_INT, K_MODS, K_NONE };

typedef struct colmap {
    uint32_t tag;
    const char *expr;
    int kind;
    int level; /* 0 study, 1 series, 2 image */
} colmap;

static const colmap cols[] = {
    {0x0020000D, "st.study_uid", K_UID, 0},
    {0x00100020, "st.patient_id", K_STR, 0},
    {0x00100010, "st.patient_name", K_PN, 0},
    {0x00100030, "st.patient_birth_date", K_DATE, 0},
    {0x00100040, "st.patient_sex", K_STR, 0},
    {0x00080020, "st.study_date", K_DATE, 0},
    {0x00080030, "st.study_time", K_TIME, 0},
    {0x00080050, "st.accession", K_STR, 0},
    {0x00200010, "st.study_id", K_STR, 0},
    {0x00081030, "st.study_desc", K_STR, 0},
    {0x00080090, "st.referring", K_PN, 0},
    {0x00080061,
     "(SELECT replace(group_concat(DISTINCT x.modality), ',', '\\') FROM dicom_series x"
     " WHERE x.study_uid = st.study_uid)",
     K_MODS, 0},
    {0x00201206, "(SELECT count(*) FROM dicom_series x WHERE x.study_uid = st.study_uid)", K_NONE,
     0},
    {0x00201208, "(SELECT count(*) FROM dicom_instances x WHERE x.study_uid = st.study_uid)",
     K_NONE, 0},
    {0x0020000E, "se.series_uid", K_UID, 1},
    {0x00080060, "se.modality", K_STR, 1},
    {0x00200011, "se.series_number", K_INT, 1},
    {0x0008103E, "se.series_desc", K_STR, 1},
    {0x00180015, "se.body_part", K_STR, 1},
    {0x00201209, "(SELECT count(*) FROM dicom_instances x WHERE x.series_uid = se.series_uid)",
     K_NONE, 1},
    {0x00080018, "i.sop_uid", K_UID, 2},
    {0x00080016, "i.sop_class", K_UID, 2},
    {0x00200013, "i.instance_number", K_INT, 2},
    {0x00280010, "i.rows", K_INT, 2},
    {0x00280011, "i.cols", K_INT, 2},
    {0x00280008, "i.frames", K_INT, 2},
    {0x00201200, "count(*)", K_NONE, -1}, /* patient level, grouped by Patient ID */
};
#define NCOLS    ((int)(sizeof(cols) / sizeof(cols[0])))
#define MAX_ARGS 64

/* Which attributes a level has: PATIENT (-1) the patient module and its
 * study count; STUDY (0) .. IMAGE (2) their own and those above. */
static int in_level(const colmap *c, int lv)
{
    if (lv < 0)
        return c->level == -1 || c->tag == 0x00100010 || c->tag == 0x00100020 ||
               c->tag == 0x00100030 || c->tag == 0x00100040;
    return c->level >= 0 && c->level <= lv;
}

typedef struct sqlbuf {
    char s[8192];
    size_t len;
    int overflow;
    char *args[MAX_ARGS];
    int nargs;
} sqlbuf;

static void add(sqlbuf *b, const char *fmt, ...) CS_PRINTF(2, 3);
static void add(sqlbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->len, sizeof(b->s) - b->len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(b->s) - b->len)
        b->overflow = 1;
    else
        b->len += (size_t)k;
}

/* Push a bound argument (copied); returns its $n or 0 when full. */
static int arg(sqlbuf *b, const char *v, size_t len)
{
    if (b->nargs == MAX_ARGS) {
        b->overflow = 1;
        return 0;
    }
    char *c = malloc(len + 1);
    if (!c) {
        b->overflow = 1;
        return 0;
    }
    memcpy(c, v, len);
    c[len] = '\0';
    b->args[b->nargs++] = c;
    return b->nargs;
}

/* DICOM wildcards (* ?) to a LIKE pattern with \ as the escape. */
static int like_arg(sqlbuf *b, const char *v)
{
    size_t n = strlen(v);
    char *p = malloc(2 * n + 1);
    if (!p) {
        b->overflow = 1;
        return 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '*')
            p[k++] = '%';
        else if (v[i] == '?')
            p[k++] = '_';
        else {
            if (v[i] == '%' || v[i] == '_' || v[i] == '\\')
                p[k++] = '\\';
            p[k++] = v[i];
        }
    }
    int r = arg(b, p, k);
    free(p);
    return r;
}

static void where_key(sqlbuf *b, const colmap *c, const char *v)
{
    if (!v[0] || !strcmp(v, "*") || c->kind == K_NONE)
        return; /* universal */
    if (c->kind == K_UID || c->kind == K_MODS) {
        /* UID list matching (values separated by backslashes) */
        const char *col = c->kind == K_MODS ? "x.modality" : c->expr;
        if (c->kind == K_MODS)
            add(b,
                " AND EXISTS (SELECT 1 FROM dicom_series x WHERE x.study_uid = st.study_uid"
                " AND %s IN (",
                col);
        else
            add(b, " AND %s IN (", col);
        const char *p = v;
        for (int first = 1;; first = 0) {
            const char *e = strchr(p, '\\');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            add(b, "%s$%d", first ? "" : ",", arg(b, p, len));
            if (!e)
                break;
            p = e + 1;
        }
        add(b, c->kind == K_MODS ? "))" : ")");
        return;
    }
    if ((c->kind == K_DATE || c->kind == K_TIME) && strchr(v, '-')) {
        const char *dash = strchr(v, '-');
        size_t lo = (size_t)(dash - v), hi = strlen(dash + 1);
        add(b, " AND coalesce(%s, '') <> ''", c->expr); /* an unknown date is in no range */
        if (lo)
            add(b, " AND %s >= $%d", c->expr, arg(b, v, lo));
        if (hi)
            add(b, " AND substr(%s, 1, %zu) <= $%d", c->expr, hi, arg(b, dash + 1, hi));
        return;
    }
    if (c->kind == K_INT) {
        add(b, " AND %s = CAST($%d AS INTEGER)", c->expr, arg(b, v, strlen(v)));
        return;
    }
    if (strpbrk(v, "*?") || c->kind == K_PN)
        add(b, " AND %s LIKE $%d ESCAPE '\\'", c->expr, like_arg(b, v));
    else
        add(b, " AND %s = $%d", c->expr, arg(b, v, strlen(v)));
}

static int on_find(const char *level, const cs_dicomnet_attr *keys, int nkeys,
                   cs_dicomnet_emit_fn emit, void *ctx, const char *calling, void *userdata)
{
    worker *w = userdata;
    int64_t t0 = cs_clock_ns();
    int lv = !strcmp(level, "PATIENT")  ? -1
             : !strcmp(level, "STUDY")  ? 0
             : !strcmp(level, "SERIES") ? 1
             : !strcmp(level, "IMAGE")  ? 2
                                        : -2;
    if (lv < -1) {
        cs_log(w->n->log, CS_LOG_WARN, "C-FIND from %s at level %s: not supported", calling, level);
        return CS_DICOMNET_FIND_UNABLE;
    }
    if (!w->db)
        return CS_DICOMNET_FIND_UNABLE;
    sqlbuf *b = calloc(1, sizeof(*b));
    if (!b)
        return CS_DICOMNET_FIND_UNABLE;
    int sel[NCOLS], nsel = 0;
    add(b, "SELECT ");
    for (int i = 0; i < NCOLS; i++) {
        if (!in_level(&cols[i], lv))
            continue;
        int asked = cols[i].kind != K_NONE && cols[i].kind != K_MODS;
        for (int k = 0; !asked && k < nkeys; k++)
            asked = keys[k].tag == cols[i].tag;
        if (!asked)
            continue;
        add(b, "%s%s", nsel ? ", " : "", cols[i].expr);
        sel[nsel++] = i;
    }
    add(b, lv <= 0   ? " FROM dicom_studies st WHERE 1"
           : lv == 1 ? " FROM dicom_series se JOIN dicom_studies st ON st.study_uid = se.study_uid"
                       " WHERE 1"
                     : " FROM dicom_instances i JOIN dicom_series se ON se.series_uid ="
                       " i.series_uid JOIN dicom_studies st ON st.study_uid = i.study_uid WHERE 1");
    for (int k = 0; k < nkeys; k++)
        for (int i = 0; i < NCOLS; i++)
            if (cols[i].tag == keys[k].tag && in_level(&cols[i], lv))
                where_key(b, &cols[i], keys[k].value);
    add(b, lv < 0    ? " GROUP BY st.patient_id ORDER BY st.patient_id"
           : lv == 0 ? " ORDER BY st.study_date, st.study_time, st.study_uid"
           : lv == 1 ? " ORDER BY se.series_number, se.series_uid"
                     : " ORDER BY i.instance_number, i.sop_uid");
    int status = CS_DICOMNET_SUCCESS, count = 0;
    cs_db_stmt *st = NULL;
    if (b->overflow || cs_db_prepare(w->db, &st, b->s) < 0) {
        cs_log(w->n->log, CS_LOG_ERROR, "C-FIND from %s: %s", calling,
               b->overflow ? "query too large" : cs_error_last());
        status = CS_DICOMNET_FIND_UNABLE;
    } else {
        for (int i = 0; i < b->nargs; i++)
            cs_db_bind_text(st, i + 1, b->args[i]);
        cs_dicomnet_attr attrs[NCOLS];
        int r;
        while ((r = cs_db_step(st)) == CS_DB_ROW) {
            for (int i = 0; i < nsel; i++) {
                const char *v = cs_db_column_text(st, i);
                attrs[i].tag = cols[sel[i]].tag;
                attrs[i].value = v ? v : "";
            }
            count++;
            if (emit(ctx, attrs, nsel))
                break;
        }
        if (r < 0)
            status = CS_DICOMNET_FIND_UNABLE;
        cs_db_finalize(st);
    }
    char obj[200];
    snprintf(obj, sizeof(obj), "%s level, %d match(es)", level, count);
    cs_db_audit a = {"110112", "C-FIND query", status == 0 ? 0 : 4, calling, w->host, obj};
    cs_db_audit_append(w->db, &a, NULL);
    cs_log(w->n->log, CS_LOG_VERBOSE, "C-FIND %s from %s: %d match(es) in %.2f ms", level, calling,
           count, (cs_clock_ns() - t0) / 1e6);
    for (int i = 0; i < b->nargs; i++)
        free(b->args[i]);
    free(b);
    return status;
}

/* -------------------------------------------------------- associations */

/* Each of the max_assoc threads accepts (handshake included) and then
 * serves its association: a peer that connects and says nothing holds one
 * thread until the ACSE timeout, never the others. Concurrent accepts on
 * the listening socket are safe: it is non-blocking (cs_dicomnet_listen),
 * a thread that loses the race gets CS_ETIMEDOUT. */
static void assoc_main(void *userdata)
{
    slot *s = userdata;
    cs_dimse *n = s->n;
    worker w = {n, NULL, NULL, {NULL}};
    if (cs_db_open(&w.db, n->db_path) < 0)
        cs_log(n->log, CS_LOG_ERROR, "database %s: %s", n->db_path, cs_error_last());
    else /* WAL: synced at checkpoints; the file is the truth (reconcile) */
        cs_db_exec(w.db, "PRAGMA synchronous=NORMAL");
    while (!atomic_load(&n->stop)) {
        cs_dicomnet_assoc *a;
        int r = cs_dicomnet_accept(n->l, &a, 200);
        if (r == CS_ETIMEDOUT)
            continue;
        if (r < 0) {
            cs_log(n->log, CS_LOG_WARN, "%s", cs_error_last());
            continue;
        }
        if (cs_error_last()[0]) /* contexts refused, association kept */
            cs_log(n->log, CS_LOG_WARN, "%s", cs_error_last());
        w.host = cs_dicomnet_assoc_peer_host(a);
        cs_dicomnet_handlers h = {sizeof(h), n->tmp, on_store, on_find, &w};
        r = cs_dicomnet_serve(a, &h);
        if (r < 0)
            cs_log(n->log, CS_LOG_WARN, "association with %s (%s) ended: %s",
                   cs_dicomnet_assoc_calling_aet(a), w.host, cs_error_last());
        else
            cs_log(n->log, CS_LOG_VERBOSE, "association with %s released",
                   cs_dicomnet_assoc_calling_aet(a));
        cs_dicomnet_assoc_free(a);
        w.host = NULL;
    }
    for (int k = 0; k < ST_COUNT; k++)
        cs_db_finalize(w.st[k]);
    cs_db_close(w.db);
}

/* ----------------------------------------------------------- forwarder */

typedef struct fwd_item {
    int64_t id;
    char sop_uid[65], ts[65], sop_class[65];
    char path[320];
} fwd_item;

static void fwd_backoff(cs_db *db, const char *peer, int64_t id, const char *why)
{
    cs_db_stmt *st;
    const char *sql =
        id ? "UPDATE forward_queue SET attempts = attempts + 1, last_error = $2,"
             " next_at = $3 + min(60, 1 << min(attempts, 6)) WHERE id = $1"
           : "UPDATE forward_queue SET attempts = attempts + 1, last_error = $2,"
             " next_at = $3 + min(60, 1 << min(attempts, 6)) WHERE peer = $4 AND next_at <= $3";
    if (cs_db_prepare(db, &st, sql) < 0)
        return;
    cs_db_bind_int(st, 1, id);
    cs_db_bind_text(st, 2, why);
    cs_db_bind_real(st, 3, now_s());
    cs_db_bind_text(st, 4, peer);
    cs_db_step(st);
    cs_db_finalize(st);
}

static void fwd_done(cs_dimse *n, cs_db *db, const fwd_item *it, const char *peer, int outcome,
                     const char *what)
{
    cs_db_begin(db);
    cs_db_stmt *st;
    if (cs_db_prepare(db, &st, "DELETE FROM forward_queue WHERE id = $1") == 0) {
        cs_db_bind_int(st, 1, it->id);
        cs_db_step(st);
        cs_db_finalize(st);
    }
    char obj[400];
    snprintf(obj, sizeof(obj), "%s to %s", it->sop_uid, peer);
    cs_db_audit a = {"110104", what, outcome, n->aet, peer, obj};
    cs_db_audit_append(db, &a, NULL);
    cs_db_commit(db);
}

/* Claim up to @p cap due items for @p peer, oldest first. */
static int fwd_load(cs_db *db, const char *peer, fwd_item *items, int cap)
{
    cs_db_stmt *st;
    if (cs_db_begin(db) < 0)
        return 0;
    if (cs_db_prepare(db, &st,
                      "SELECT q.id, q.sop_uid, coalesce(nullif(q.transfer_syntax, ''),"
                      " i.transfer_syntax), i.sop_class, i.path FROM forward_queue q JOIN"
                      " dicom_instances i ON i.sop_uid = q.sop_uid WHERE q.peer = $1 AND"
                      " q.next_at <= $2 ORDER BY q.id LIMIT $3") < 0) {
        cs_db_rollback(db);
        return 0;
    }
    cs_db_bind_text(st, 1, peer);
    cs_db_bind_real(st, 2, now_s());
    cs_db_bind_int(st, 3, cap);
    int k = 0;
    while (k < cap && cs_db_step(st) == CS_DB_ROW) {
        fwd_item *it = &items[k++];
        it->id = cs_db_column_int(st, 0);
        snprintf(it->sop_uid, sizeof(it->sop_uid), "%s", cs_db_column_text(st, 1));
        snprintf(it->ts, sizeof(it->ts), "%s", cs_db_column_text(st, 2));
        snprintf(it->sop_class, sizeof(it->sop_class), "%s", cs_db_column_text(st, 3));
        snprintf(it->path, sizeof(it->path), "%s", cs_db_column_text(st, 4));
    }
    cs_db_finalize(st);
    /* Claimed: the other forwarder skips them until done, backed off,
     * released, or the lease runs out (a crash: sent again, and the peer
     * keeps an identical duplicate once). */
    if (k && cs_db_prepare(db, &st, "UPDATE forward_queue SET next_at = $2 WHERE id = $1") == 0) {
        for (int i = 0; i < k; i++) {
            cs_db_reset(st);
            cs_db_bind_int(st, 1, items[i].id);
            cs_db_bind_real(st, 2, now_s() + FWD_LEASE);
            cs_db_step(st);
        }
        cs_db_finalize(st);
    }
    cs_db_commit(db);
    return k;
}

/* Wait up to @p ms for new forward rows (or stop); @p seen is the kick
 * generation the caller last saw. */
static void fwd_wait(cs_dimse *n, unsigned *seen, long ms)
{
    pthread_mutex_lock(&n->mu);
    if (n->kick == *seen && !atomic_load(&n->stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    }
    *seen = n->kick;
    pthread_mutex_unlock(&n->mu);
}

/* Give rows back: due again after @p delay s (0: now). */
static void fwd_release(cs_db *db, const fwd_item *items, int k, double delay)
{
    cs_db_stmt *st;
    if (k <= 0 || cs_db_prepare(db, &st, "UPDATE forward_queue SET next_at = $2 WHERE id = $1") < 0)
        return;
    for (int i = 0; i < k; i++) {
        if (!items[i].id)
            continue; /* done or backed off already */
        cs_db_reset(st);
        cs_db_bind_int(st, 1, items[i].id);
        cs_db_bind_real(st, 2, delay > 0 ? now_s() + delay : 0);
        cs_db_step(st);
    }
    cs_db_finalize(st);
}

/* Queue rows whose instance is gone from the index can never be sent. */
static void fwd_prune(cs_db *db)
{
    cs_db_exec(db, "DELETE FROM forward_queue WHERE sop_uid NOT IN"
                   " (SELECT sop_uid FROM dicom_instances)");
}

static void fwd_peer(cs_dimse *n, cs_db *db, const char *peer_text, unsigned *seen)
{
    cs_dicomnet_peer peer;
    if (cs_dicomnet_peer_parse(&peer, peer_text) < 0) {
        fwd_backoff(db, peer_text, 0, cs_error_last());
        return;
    }
    fwd_item *items = calloc(FWD_BATCH, sizeof(*items));
    if (!items)
        return;
    int k = fwd_load(db, peer_text, items, FWD_BATCH);
    /* Propose the SOP classes and syntaxes of what is due. */
    const char *classes[FWD_BATCH], *syntaxes[8];
    int nc = 0, nt = 0;
    for (int i = 0; i < k; i++) {
        int have = 0;
        for (int j = 0; j < nc && !have; j++)
            have = !strcmp(classes[j], items[i].sop_class);
        if (!have && nc < FWD_BATCH)
            classes[nc++] = items[i].sop_class;
        have = 0;
        for (int j = 0; j < nt && !have; j++)
            have = !strcmp(syntaxes[j], items[i].ts);
        if (!have && nt < 2)
            syntaxes[nt++] = items[i].ts;
    }
    cs_dicomnet_connect_opts co = CS_DICOMNET_CONNECT_OPTS_INIT;
    co.calling_aet = n->aet;
    co.timeout_s = n->timeout;
    co.sop_classes = classes;
    co.nsop_classes = nc;
    co.transfer_syntaxes = syntaxes;
    co.ntransfer_syntaxes = nt;
    co.verification = 0;
    cs_dicomnet_assoc *a = NULL;
    if (k == 0 || cs_dicomnet_connect(&a, &peer, &co) < 0) {
        if (k) {
            cs_log(n->log, CS_LOG_WARN, "forward to %s: %s (will retry)", peer_text,
                   cs_error_last());
            for (int i = 0; i < k; i++)
                fwd_backoff(db, peer_text, items[i].id, cs_error_last());
            fwd_backoff(db, peer_text, 0, cs_error_last());
        }
        free(items);
        return;
    }
    /* The class names point into items[]: keep a private copy of the
     * proposed set while items[] is reloaded. */
    char proposed[FWD_BATCH][65];
    for (int j = 0; j < nc; j++)
        snprintf(proposed[j], sizeof(proposed[j]), "%s", classes[j]);
    int sent = 0, broken = 0;
    int64_t idle_since = 0;
    while (!atomic_load(&n->stop) && !broken) {
        int any = 0;
        for (int i = 0; i < k && !broken && !atomic_load(&n->stop); i++) {
            fwd_item *it = &items[i];
            int ok = 0;
            for (int j = 0; j < nc && !ok; j++)
                ok = !strcmp(proposed[j], it->sop_class);
            if (!ok)
                continue; /* released below: another association will propose it */
            any = 1;
            char path[PATH_CAP], sent_ts[65] = "";
            snprintf(path, sizeof(path), "%s/%s", n->store, it->path);
            int status = 0;
            int r =
                cs_dimse_send_file(a, path, it->ts[0] ? it->ts : NULL, n->tmp, &status, sent_ts);
            if (r == CS_EIO) {
                cs_log(n->log, CS_LOG_WARN, "forward to %s broke: %s (will retry)", peer_text,
                       cs_error_last());
                fwd_backoff(db, peer_text, it->id, cs_error_last());
                broken = 1;
                it->id = 0;
                fwd_release(db, items + i + 1, k - i - 1, 1.0);
            } else if (r < 0) {
                cs_log(n->log, CS_LOG_ERROR, "forward %s to %s: %s (dropped)", it->sop_uid,
                       peer_text, cs_error_last());
                fwd_done(n, db, it, peer_text, 8, "DICOM instance not forwarded");
                it->id = 0;
            } else if (status == 0 || (status & 0xf000) == 0xb000) {
                fwd_done(n, db, it, peer_text, 0, "DICOM instance forwarded");
                it->id = 0;
                sent++;
                cs_log(n->log, CS_LOG_VERBOSE, "forwarded %s to %s as %s", it->sop_uid, peer_text,
                       sent_ts);
            } else {
                cs_log(n->log, CS_LOG_WARN, "forward %s to %s refused (0x%04x): %s", it->sop_uid,
                       peer_text, status, cs_error_last());
                fwd_backoff(db, peer_text, it->id, cs_error_last());
                it->id = 0;
            }
        }
        if (broken)
            break;
        fwd_release(db, items, k, 0); /* what this association could not take */
        k = fwd_load(db, peer_text, items, FWD_BATCH);
        int usable = 0;
        for (int i = 0; i < k && !usable; i++)
            for (int j = 0; j < nc && !usable; j++)
                usable = !strcmp(proposed[j], items[i].sop_class);
        if (k > 0 && !usable) {
            fwd_release(db, items, k, 0);
            break; /* only classes this association lacks: a new one */
        }
        if (k == 0 || !any) {
            /* Keep the association a little while for what arrives next. */
            if (!idle_since)
                idle_since = cs_clock_ns();
            if (cs_clock_ns() - idle_since > 2000000000LL)
                break;
            fwd_wait(n, seen, 200);
            if (k == 0)
                k = fwd_load(db, peer_text, items, FWD_BATCH);
        } else {
            idle_since = 0;
        }
    }
    cs_dicomnet_assoc_free(a);
    fwd_release(db, items, k, 0); /* stopped with claimed rows: due again */
    if (sent)
        cs_log(n->log, CS_LOG_INFO, "forwarded %d instance(s) to %s", sent, peer_text);
    free(items);
}

static void fwd_main(void *userdata)
{
    cs_dimse *n = userdata;
    cs_db *db;
    if (cs_db_open(&db, n->db_path) < 0) {
        cs_log(n->log, CS_LOG_ERROR, "forwarder: %s", cs_error_last());
        return;
    }
    fwd_prune(db);
    unsigned seen = 0;
    while (!atomic_load(&n->stop)) {
        char peer[300] = "";
        double next = 0;
        cs_db_stmt *st;
        if (cs_db_prepare(db, &st,
                          "SELECT peer, next_at FROM forward_queue ORDER BY next_at, id LIMIT 1") ==
            0) {
            if (cs_db_step(st) == CS_DB_ROW) {
                snprintf(peer, sizeof(peer), "%s", cs_db_column_text(st, 0));
                next = (double)cs_db_column_int(st, 1);
            }
            cs_db_finalize(st);
        }
        double wait = 1.0;
        if (peer[0]) {
            double d = next - now_s();
            if (d <= 0) {
                fwd_peer(n, db, peer, &seen);
                continue;
            }
            wait = d < 1.0 ? d : 1.0;
        }
        fwd_wait(n, &seen, (long)(wait * 1000));
    }
    cs_db_close(db);
}

/* ------------------------------------------------------------- public */

static void clean_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_CAP];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))) {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

/* ----------------------------------------------------------- reconcile */

static int sha256_file(const char *path, char out[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 18);
    if (!ctx || !buf) {
        EVP_MD_CTX_free(ctx);
        free(buf);
        close(fd);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    int r = 0;
    for (;;) {
        ssize_t k = read(fd, buf, 1 << 18);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(errno));
        if (k <= 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)k);
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return r;
}

static void get_str(cs_dicom *d, uint32_t tag, char *buf, size_t cap)
{
    if (cs_dicom_get_string(d, tag, buf, cap) < 0)
        buf[0] = 0;
}

static int get_num(cs_dicom *d, uint32_t tag, int dflt)
{
    char b[32], *end;
    get_str(d, tag, b, sizeof(b));
    long v = strtol(b, &end, 10);
    return b[0] && end != b ? (int)v : dflt;
}

/* Fill @p in from the stored file @p abs, as the SCP's parse does (same
 * attributes, same defaults). @return 0, CS_EFORMAT (named). */
static int describe_file(const char *abs, cs_dicomnet_instance *in)
{
    cs_dicom *d;
    int r = cs_dicom_open(&d, abs);
    if (r < 0)
        return r;
    cs_dicom_info fi;
    cs_dicom_get_info(d, &fi);
    snprintf(in->sop_class, sizeof(in->sop_class), "%s", fi.sop_class_uid);
    snprintf(in->sop_uid, sizeof(in->sop_uid), "%s", fi.sop_instance_uid);
    snprintf(in->study_uid, sizeof(in->study_uid), "%s", fi.study_uid);
    snprintf(in->series_uid, sizeof(in->series_uid), "%s", fi.series_uid);
    snprintf(in->transfer_syntax, sizeof(in->transfer_syntax), "%s", fi.transfer_syntax);
    get_str(d, CS_DICOM_TAG(0x0010, 0x0020), in->patient_id, sizeof(in->patient_id));
    get_str(d, CS_DICOM_TAG(0x0010, 0x0010), in->patient_name, sizeof(in->patient_name));
    get_str(d, CS_DICOM_TAG(0x0010, 0x0030), in->patient_birth_date,
            sizeof(in->patient_birth_date));
    get_str(d, CS_DICOM_TAG(0x0010, 0x0040), in->patient_sex, sizeof(in->patient_sex));
    get_str(d, CS_DICOM_TAG(0x0008, 0x0020), in->study_date, sizeof(in->study_date));
    get_str(d, CS_DICOM_TAG(0x0008, 0x0030), in->study_time, sizeof(in->study_time));
    get_str(d, CS_DICOM_TAG(0x0008, 0x0050), in->accession, sizeof(in->accession));
    get_str(d, CS_DICOM_TAG(0x0020, 0x0010), in->study_id, sizeof(in->study_id));
    get_str(d, CS_DICOM_TAG(0x0008, 0x1030), in->study_desc, sizeof(in->study_desc));
    get_str(d, CS_DICOM_TAG(0x0008, 0x0090), in->referring, sizeof(in->referring));
    get_str(d, CS_DICOM_TAG(0x0008, 0x0060), in->modality, sizeof(in->modality));
    get_str(d, CS_DICOM_TAG(0x0008, 0x103E), in->series_desc, sizeof(in->series_desc));
    get_str(d, CS_DICOM_TAG(0x0018, 0x0015), in->body_part, sizeof(in->body_part));
    in->series_number = get_num(d, CS_DICOM_TAG(0x0020, 0x0011), -1);
    in->instance_number = get_num(d, CS_DICOM_TAG(0x0020, 0x0013), -1);
    in->rows = fi.rows;
    in->cols = fi.cols;
    in->frames = fi.rows ? get_num(d, CS_DICOM_TAG(0x0028, 0x0008), 1) : 0;
    cs_dicom_free(d);
    if (!in->sop_uid[0] || !in->study_uid[0] || !in->series_uid[0])
        return cs_error_set(CS_EFORMAT, "%s lacks a Study, Series or SOP Instance UID", abs);
    return 0;
}

/* One <store>/<study>/<series>/<name>: indexed again when it has no row, or
 * a row of another size (a replacement whose commit was lost). @return 1
 * re-indexed, 0 nothing to do or skipped (logged). */
static int reconcile_file(worker *w, const char *study, const char *series, const char *name)
{
    cs_dimse *n = w->n;
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 4, ".dcm"))
        return 0;
    char sop[65], rel[256], abs[PATH_CAP];
    snprintf(sop, sizeof(sop), "%.*s", (int)(len - 4), name);
    snprintf(abs, sizeof(abs), "%s/%s/%s/%s", n->store, study, series, name);
    if (len - 4 >= sizeof(sop) || !uid_ok(sop)) {
        cs_log(n->log, CS_LOG_WARN, "reconcile: %s: not a SOP Instance UID name, skipped", abs);
        return 0;
    }
    struct stat sb;
    if (stat(abs, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    cs_db_stmt *st = stmt(w, ST_DUP, "SELECT size FROM dicom_instances WHERE sop_uid = $1");
    if (!st)
        return 0;
    cs_db_bind_text(st, 1, sop);
    int have = cs_db_step(st) == CS_DB_ROW;
    int64_t size = have ? cs_db_column_int(st, 0) : -1;
    cs_db_reset(st);
    if (have && size == (int64_t)sb.st_size)
        return 0;
    cs_dicomnet_instance in;
    memset(&in, 0, sizeof(in));
    in.path = abs;
    in.size = (int64_t)sb.st_size;
    int r = describe_file(abs, &in);
    if (r == 0 &&
        (strcmp(in.sop_uid, sop) || strcmp(in.study_uid, study) || strcmp(in.series_uid, series)))
        r = cs_error_set(CS_EFORMAT, "its UIDs (%s/%s/%s) do not match its place", in.study_uid,
                         in.series_uid, in.sop_uid);
    if (r == 0)
        r = sha256_file(abs, in.sha256);
    char rec[64];
    if (r == 0 && getxattr(abs, XATTR_SHA256, rec, sizeof(rec)) == (ssize_t)sizeof(rec) &&
        memcmp(rec, in.sha256, sizeof(rec)))
        r = cs_error_set(CS_EFORMAT, "its content no longer matches the SHA-256 recorded when it"
                                     " was stored (a write cut short by a power failure?)");
    snprintf(rel, sizeof(rel), "%.64s/%.64s/%.64s.dcm", study, series, sop); /* UIDs: <= 64 */
    if (r == 0)
        r = index_instance(w, &in, rel, "DICOM instance re-indexed from the store");
    if (r < 0) {
        cs_log(n->log, CS_LOG_WARN, "reconcile: %s skipped: %s", abs, cs_error_last());
        return 0;
    }
    cs_log(n->log, CS_LOG_VERBOSE, "reconcile: re-indexed %s", rel);
    return 1;
}

/* The files are the truth, the index is derived from them: index every
 * <store>/<study>/<series>/<sop>.dcm without its row (a commit lost to a
 * power cut after the acknowledgement: the node's commits are not synced).
 * Runs in cs_dimse_new(), before any association or forwarder. */
static void reconcile(cs_dimse *n, cs_db *db)
{
    worker w = {n, db, "", {NULL}};
    int files = 0, fixed = 0;
    DIR *d1 = opendir(n->store);
    struct dirent *e1, *e2, *e3;
    char p[PATH_CAP];
    while (d1 && (e1 = readdir(d1))) {
        if (e1->d_name[0] == '.' || !uid_ok(e1->d_name))
            continue; /* ".tmp" and what is not a study */
        snprintf(p, sizeof(p), "%s/%s", n->store, e1->d_name);
        DIR *d2 = opendir(p);
        while (d2 && (e2 = readdir(d2))) {
            if (e2->d_name[0] == '.' || !uid_ok(e2->d_name))
                continue;
            snprintf(p, sizeof(p), "%s/%s/%s", n->store, e1->d_name, e2->d_name);
            DIR *d3 = opendir(p);
            while (d3 && (e3 = readdir(d3))) {
                if (e3->d_name[0] == '.')
                    continue;
                files++;
                fixed += reconcile_file(&w, e1->d_name, e2->d_name, e3->d_name);
            }
            if (d3)
                closedir(d3);
        }
        if (d2)
            closedir(d2);
    }
    if (d1)
        closedir(d1);
    for (int k = 0; k < ST_COUNT; k++)
        cs_db_finalize(w.st[k]);
    if (fixed)
        cs_log(n->log, CS_LOG_WARN,
               "reconcile: %d of %d stored file(s) had no index row:"
               " re-indexed",
               fixed, files);
    else
        cs_log(n->log, CS_LOG_VERBOSE, "reconcile: %d stored file(s), index complete", files);
}

int cs_dimse_new(cs_dimse **out, const cs_dimse_opts *o)
{
    *out = NULL;
    cs_dimse *n = calloc(1, sizeof(*n));
    if (!n)
        return cs_error_set(CS_ENOMEM, "out of memory");
    n->timeout = o->timeout_s > 0 ? o->timeout_s : 30;
    n->max_assoc = o->max_associations > 0 ? o->max_associations : 16;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    int r = cs_log_new(&n->log, "dimse");
    if (r == 0)
        r = load_config(n, o);
    if (r == 0 && !o->db_path)
        r = cs_error_set(CS_EINVAL, "the DICOM node needs a database path");
    if (r == 0) {
        snprintf(n->db_path, sizeof(n->db_path), "%s", o->db_path);
        snprintf(n->tmp, sizeof(n->tmp), "%s/.tmp", n->store);
        int c;
        r = mkdir_one(n->store, &c);
        if (r == 0)
            r = mkdir_one(n->tmp, &c);
        if (r == 0)
            clean_tmp(n->tmp); /* partial receptions of a previous run */
        n->names_durable = n->names_durable && cs_file_names_durable(n->store);
    }
    if (r == 0) {
        cs_db *db;
        r = cs_db_open(&db, n->db_path); /* migrates once, before the threads */
        /* Claims of a previous run that stopped without releasing them
         * (backoffs never exceed 60 s, claims are FWD_LEASE): due now. */
        if (r == 0)
            cs_db_exec(db, "UPDATE forward_queue SET next_at = 0 WHERE next_at >"
                           " (julianday('now') - 2440587.5) * 86400.0 + 61");
        if (r == 0)
            reconcile(n, db);
        cs_db_close(r == 0 ? db : NULL);
    }
    if (r == 0) {
        n->slots = calloc((size_t)n->max_assoc, sizeof(slot));
        if (!n->slots)
            r = cs_error_set(CS_ENOMEM, "out of memory");
        for (int i = 0; r == 0 && i < n->max_assoc; i++)
            n->slots[i].n = n;
    }
    if (r == 0) {
        cs_dicomnet_listen_opts lo = CS_DICOMNET_LISTEN_OPTS_INIT;
        lo.port = n->port;
        lo.aet = n->aet;
        lo.timeout_s = n->timeout;
        r = cs_dicomnet_listen(&n->l, &lo);
        if (r == 0)
            n->port = cs_dicomnet_listener_port(n->l);
    }
    if (r < 0) {
        cs_dimse_free(n);
        return r;
    }
    *out = n;
    return 0;
}

void cs_dimse_on_stored(cs_dimse *n, void (*fn)(void *userdata, const char *path, const char *ts),
                        void *userdata)
{
    n->stored = fn;
    n->stored_ud = userdata;
}

int cs_dimse_start(cs_dimse *n)
{
    int r = 0;
    for (int i = 0; i < n->max_assoc && r == 0; i++)
        r = cs_thread_start(&n->slots[i].t, "dimse-assoc", assoc_main, &n->slots[i]);
    for (int i = 0; i < FWD_THREADS && r == 0; i++)
        r = cs_thread_start(&n->fwd_thr[i], "dimse-fwd", fwd_main, n);
    if (r == 0)
        cs_log(n->log, CS_LOG_INFO, "DICOM node %s on port %d, store %s, %d route(s)%s", n->aet,
               n->port, n->store, n->nroutes,
               !n->fsync          ? ", fsync off"
               : n->names_durable ? ""
                                  : ", folder fsync per instance");
    return r;
}

int cs_dimse_port(const cs_dimse *n)
{
    return n->port;
}

const char *cs_dimse_aet(const cs_dimse *n)
{
    return n->aet;
}

const char *cs_dimse_store(const cs_dimse *n)
{
    return n->store;
}

void cs_dimse_free(cs_dimse *n)
{
    if (!n)
        return;
    atomic_store(&n->stop, 1);
    pthread_mutex_lock(&n->mu);
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; n->slots && i < n->max_assoc; i++)
        cs_thread_join(n->slots[i].t);
    for (int i = 0; i < FWD_THREADS; i++)
        cs_thread_join(n->fwd_thr[i]);
    cs_dicomnet_listener_free(n->l);
    free(n->slots);
    free(n->routes);
    cs_log_free(n->log);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}
