/* The session thread: applies writes in batches, one transaction each
 * (a savepoint per command), acknowledges after the commit, then posts the
 * events. Reads use a small pool of read connections (WAL readers see the
 * last commit and never block the writer). */
#include "cs/session.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cs/annot.h"
#include "cs/db.h"
#include "cs/err.h"
#include "cs/queue.h"
#include "cs/thread.h"

#define BATCH_MAX   256
#define QUEUE_DEPTH 8192
#define READERS_MAX 8

typedef struct {
    char *id;
    double mpp_x, mpp_y;
} slide_info;

typedef struct {
    json_t *cmd;
    char *user, *origin, *client;
    cs_session_done done;
    void *userdata;
    /* filled by apply */
    int code;
    char *message;
    json_t *result;
    json_t *events; /* [{event, slide, seq, data}] posted after the commit */
} job;

struct cs_session {
    char *path;
    cs_db *w; /* the session thread's own */
    cs_bus *bus;
    cs_logger *log;
    cs_queue *q;
    cs_thread *thread;

    pthread_mutex_t rlock; /* the read-connection pool */
    cs_db *readers[READERS_MAX];
    int nreaders;

    pthread_rwlock_t slock; /* slides */
    slide_info *slides;
    int nslides, cap;

    atomic_int_fast64_t last_seq;
    atomic_uint_fast64_t writes, batches, failed;
};

/* ---- helpers ---- */

static void now_iso(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static int new_id(char out[17])
{
    unsigned char b[8];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return cs_error_set(CS_EIO, "no randomness for an annotation id");
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int find_slide(cs_session *s, const char *id, double *mx, double *my)
{
    int found = 0;
    pthread_rwlock_rdlock(&s->slock);
    for (int i = 0; id && i < s->nslides; i++) {
        if (!strcmp(s->slides[i].id, id)) {
            *mx = s->slides[i].mpp_x;
            *my = s->slides[i].mpp_y;
            found = 1;
            break;
        }
    }
    pthread_rwlock_unlock(&s->slock);
    return found ? 0 : cs_error_set(CS_ENOTFOUND, "no slide \"%s\"", id ? id : "");
}

static int step_done(cs_db_stmt *st)
{
    int r;
    while ((r = cs_db_step(st)) == CS_DB_ROW)
        ;
    return r;
}

/* Run one statement with text/real/int parameters given as a printf-like
 * type string: 't' text, 'i' int64, 'r' double. */
static int run(cs_db *db, const char *sql, const char *types, ...)
{
    cs_db_stmt *st;
    int r = cs_db_prepare(db, &st, sql);
    if (r < 0)
        return r;
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i] && r == 0; i++) {
        if (types[i] == 't')
            r = cs_db_bind_text(st, i + 1, va_arg(ap, const char *));
        else if (types[i] == 'i')
            r = cs_db_bind_int(st, i + 1, va_arg(ap, int64_t));
        else
            r = cs_db_bind_real(st, i + 1, va_arg(ap, double));
    }
    va_end(ap);
    if (r == 0)
        r = step_done(st);
    cs_db_finalize(st);
    return r;
}

/* The stored row of annotation @p id: body (new reference) and deleted flag. */
static int load_row(cs_db *db, const char *id, json_t **body, int *deleted)
{
    cs_db_stmt *st;
    int r = cs_db_prepare(db, &st, "SELECT body, deleted FROM annotations WHERE id = $1");
    if (r < 0)
        return r;
    cs_db_bind_text(st, 1, id);
    r = cs_db_step(st);
    if (r == CS_DB_ROW) {
        *body = json_loads(cs_db_column_text(st, 0), 0, NULL);
        *deleted = (int)cs_db_column_int(st, 1);
        r = *body ? 0 : cs_error_set(CS_EIO, "annotation %s: stored body unreadable", id);
    } else if (r == 0) {
        r = cs_error_set(CS_ENOTFOUND, "no annotation \"%s\"", id);
    }
    cs_db_finalize(st);
    return r;
}

/* ---- writes (session thread) ---- */

static int log_event(cs_session *s, job *j, const char *event, const char *slide, const char *aid,
                     int64_t rev, json_t *data)
{
    char *body = json_dumps(data, JSON_COMPACT);
    if (!body)
        return cs_error_set(CS_ENOMEM, "out of memory");
    cs_db_stmt *st;
    int r = cs_db_prepare(s->w, &st,
                          "INSERT INTO annotation_events (slide, event, origin, aid, rev, body)"
                          " VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq");
    if (r == 0) {
        cs_db_bind_text(st, 1, slide);
        cs_db_bind_text(st, 2, event);
        cs_db_bind_text(st, 3, j->origin);
        cs_db_bind_text(st, 4, aid);
        cs_db_bind_int(st, 5, rev);
        cs_db_bind_text(st, 6, body);
        r = cs_db_step(st);
        if (r == CS_DB_ROW) {
            int64_t seq = cs_db_column_int(st, 0);
            r = step_done(st);
            json_array_append_new(j->events,
                                  json_pack("{s:s, s:s, s:I, s:O}", "event", event, "slide", slide,
                                            "seq", (json_int_t)seq, "data", data));
        }
        cs_db_finalize(st);
    }
    free(body);
    if (r == 0) {
        char what[96];
        snprintf(what, sizeof(what), "%s %s", event, aid);
        cs_db_audit rec = {"110110", what, 0, j->user, j->client, slide};
        r = cs_db_audit_append(s->w, &rec, NULL);
    }
    return r;
}

static int store_annotation(cs_session *s, const json_t *a, int insert)
{
    double box[4];
    cs_annot_bbox(a, box);
    char *body = json_dumps(a, JSON_COMPACT);
    if (!body)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int r;
    if (insert)
        r = run(s->w,
                "INSERT INTO annotations (id, slide, rev, x0, y0, x1, y1, body)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                "ttirrrrt", str(a, "id"), str(a, "slide"),
                (int64_t)json_integer_value(json_object_get(a, "rev")), box[0], box[1], box[2],
                box[3], body);
    else
        r = run(s->w,
                "UPDATE annotations SET rev = $2, x0 = $3, y0 = $4, x1 = $5, y1 = $6, body = $7"
                " WHERE id = $1",
                "tirrrrt", str(a, "id"), (int64_t)json_integer_value(json_object_get(a, "rev")),
                box[0], box[1], box[2], box[3], body);
    free(body);
    return r;
}

/* Server-set fields, colour default and measurements. */
static void finish(json_t *a, const char *when, double mx, double my)
{
    json_object_set_new(a, "updated", json_string(when));
    const char *c = str(a, "color");
    if (!c || !*c)
        json_object_set_new(a, "color",
                            json_string(cs_annot_default_color(str(a, "class"), str(a, "author"))));
    json_object_set_new(a, "measure", cs_annot_measure(a, mx, my));
}

static int create_one(cs_session *s, job *j, const char *slide, const json_t *in, json_t **out)
{
    double mx, my;
    json_t *a;
    char id[17], when[40];
    int r = find_slide(s, slide, &mx, &my);
    if (r < 0 || (r = cs_annot_normalize(in, NULL, &a)) < 0)
        return r;
    if ((r = new_id(id)) < 0) {
        json_decref(a);
        return r;
    }
    now_iso(when, sizeof(when));
    json_object_set_new(a, "id", json_string(id));
    json_object_set_new(a, "slide", json_string(slide));
    json_object_set_new(a, "author", json_string(j->user));
    json_object_set_new(a, "created", json_string(when));
    json_object_set_new(a, "rev", json_integer(1));
    finish(a, when, mx, my);
    r = store_annotation(s, a, 1);
    if (r == 0)
        r = log_event(s, j, "annotation.created", slide, id, 1, a);
    if (r < 0) {
        json_decref(a);
        return r;
    }
    *out = a;
    return 0;
}

/* The current version for update/delete, checked against the base rev. */
static int current_for_edit(cs_session *s, job *j, const char *id, json_t **cur)
{
    int deleted = 0, r = load_row(s->w, id, cur, &deleted);
    if (r < 0)
        return r;
    if (deleted) {
        json_decref(*cur);
        return cs_error_set(CS_EGONE, "annotation \"%s\" was deleted", id);
    }
    json_t *rev = json_object_get(j->cmd, "rev");
    int64_t have = json_integer_value(json_object_get(*cur, "rev"));
    if (rev && !json_is_null(rev) && json_integer_value(rev) != have) {
        j->result = json_pack("{s:O}", "current", *cur);
        r = cs_error_set(CS_ECONFLICT, "annotation %s: edit against revision %lld, current is %lld",
                         id, (long long)json_integer_value(rev), (long long)have);
        json_decref(*cur);
        return r;
    }
    return 0;
}

static int apply_update(cs_session *s, job *j)
{
    const char *id = str(j->cmd, "id");
    json_t *cur, *a;
    if (!id)
        return cs_error_set(CS_EINVAL, "id: missing");
    if (!json_is_integer(json_object_get(j->cmd, "rev")))
        return cs_error_set(CS_EINVAL, "rev: the base revision is required");
    int r = current_for_edit(s, j, id, &cur);
    if (r < 0)
        return r;
    double mx = 0, my = 0;
    find_slide(s, str(cur, "slide"), &mx, &my);
    cs_error_clear();
    r = cs_annot_normalize(json_object_get(j->cmd, "patch"), cur, &a);
    json_decref(cur);
    if (r < 0)
        return r;
    char when[40];
    now_iso(when, sizeof(when));
    int64_t rev = json_integer_value(json_object_get(a, "rev")) + 1;
    json_object_set_new(a, "rev", json_integer(rev));
    json_object_set_new(a, "editor", json_string(j->user));
    finish(a, when, mx, my);
    r = store_annotation(s, a, 0);
    if (r == 0)
        r = log_event(s, j, "annotation.updated", str(a, "slide"), id, rev, a);
    if (r < 0)
        json_decref(a);
    else
        j->result = a;
    return r;
}

static int apply_delete(cs_session *s, job *j)
{
    const char *id = str(j->cmd, "id");
    json_t *cur;
    if (!id)
        return cs_error_set(CS_EINVAL, "id: missing");
    int r = current_for_edit(s, j, id, &cur);
    if (r < 0)
        return r;
    int64_t rev = json_integer_value(json_object_get(cur, "rev")) + 1;
    json_t *stub = json_pack("{s:s, s:s, s:I, s:b}", "id", id, "slide", str(cur, "slide"), "rev",
                             (json_int_t)rev, "deleted", 1);
    r = run(s->w, "UPDATE annotations SET deleted = 1, rev = $2 WHERE id = $1", "ti", id, rev);
    if (r == 0)
        r = log_event(s, j, "annotation.deleted", str(cur, "slide"), id, rev, stub);
    json_decref(cur);
    if (r < 0)
        json_decref(stub);
    else
        j->result = stub;
    return r;
}

static int apply_import(cs_session *s, job *j)
{
    json_t *list, *made = json_array(), *in;
    const char *slide = str(j->cmd, "slide");
    int r = cs_annot_from_geojson(json_object_get(j->cmd, "geojson"), &list);
    if (r < 0) {
        json_decref(made);
        return r;
    }
    size_t i;
    json_array_foreach(list, i, in)
    {
        json_t *a;
        if ((r = create_one(s, j, slide, in, &a)) < 0) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", cs_error_last());
            r = cs_error_set(r, "features[%zu]: %s", i, msg);
            break;
        }
        json_array_append_new(made, a);
    }
    json_decref(list);
    if (r < 0) {
        json_decref(made);
        return r;
    }
    j->result =
        json_pack("{s:I, s:o}", "imported", (json_int_t)json_array_size(made), "annotations", made);
    return 0;
}

static int apply(cs_session *s, job *j)
{
    const char *op = str(j->cmd, "op");
    if (!op)
        return cs_error_set(CS_EINVAL, "op: missing");
    if (!strcmp(op, "annot.create")) {
        json_t *a;
        const json_t *in = json_object_get(j->cmd, "annotation");
        int r = create_one(s, j, str(j->cmd, "slide"), in ? in : j->cmd, &a);
        if (r == 0)
            j->result = a;
        return r;
    }
    if (!strcmp(op, "annot.update"))
        return apply_update(s, j);
    if (!strcmp(op, "annot.delete"))
        return apply_delete(s, j);
    if (!strcmp(op, "annot.import"))
        return apply_import(s, j);
    if (!strcmp(op, "storage.set")) {
        const char *key = str(j->cmd, "key");
        if (!key)
            return cs_error_set(CS_EINVAL, "key: missing");
        char *v = json_dumps(json_object_get(j->cmd, "value") ?: json_null(),
                             JSON_COMPACT | JSON_ENCODE_ANY);
        int r = run(s->w,
                    "INSERT INTO plugin_storage (plugin, key, value) VALUES ($1, $2, $3)"
                    " ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                    "ttt", j->origin, key, v ? v : "null");
        free(v);
        if (r == 0)
            j->result = json_object();
        return r;
    }
    return cs_error_set(CS_EINVAL, "op: unknown \"%s\"", op);
}

static void job_free(job *j)
{
    json_decref(j->cmd);
    json_decref(j->result);
    json_decref(j->events);
    free(j->user);
    free(j->origin);
    free(j->client);
    free(j->message);
    free(j);
}

static void fail_job(job *j, int code)
{
    j->code = code;
    free(j->message);
    j->message = strdup(cs_error_last());
}

static void run_batch(cs_session *s, job **batch, int n)
{
    int r = cs_db_begin(s->w);
    for (int i = 0; i < n; i++) {
        job *j = batch[i];
        if (r < 0) {
            fail_job(j, r);
            continue;
        }
        int rr = cs_db_exec(s->w, "SAVEPOINT cmd");
        if (rr == 0)
            rr = apply(s, j);
        if (rr < 0) {
            fail_job(j, rr);
            json_array_clear(j->events);
            if (cs_db_exec(s->w, "ROLLBACK TO cmd; RELEASE cmd") < 0)
                r = CS_EIO;
        } else {
            cs_db_exec(s->w, "RELEASE cmd");
        }
    }
    if (r == 0 && (r = cs_db_commit(s->w)) < 0)
        cs_db_rollback(s->w);
    if (r < 0) {
        cs_log(s->log, CS_LOG_ERROR, "session: a batch of %d writes failed: %s", n,
               cs_error_last());
        for (int i = 0; i < n; i++) {
            if (batch[i]->code == 0) {
                fail_job(batch[i], r);
                json_decref(batch[i]->result);
                batch[i]->result = NULL;
                json_array_clear(batch[i]->events);
            }
        }
    }
    atomic_fetch_add(&s->batches, 1);
    for (int i = 0; i < n; i++) {
        job *j = batch[i];
        size_t k;
        json_t *e;
        json_array_foreach(j->events, k, e)
        {
            int64_t seq = json_integer_value(json_object_get(e, "seq"));
            if (seq > atomic_load(&s->last_seq))
                atomic_store(&s->last_seq, seq);
        }
        if (j->code == 0)
            atomic_fetch_add(&s->writes, 1);
        else
            atomic_fetch_add(&s->failed, 1);
        if (j->done)
            j->done(j->userdata, j->code, j->result, j->message ? j->message : "");
        json_array_foreach(j->events, k, e)
        {
            char topic[300];
            snprintf(topic, sizeof(topic), "slide:%s", str(e, "slide"));
            cs_event *ev =
                cs_event_new(str(e, "event"), topic, json_integer_value(json_object_get(e, "seq")),
                             j->origin, json_incref(json_object_get(e, "data")));
            if (ev && s->bus)
                cs_bus_post(s->bus, ev);
            cs_event_unref(ev);
        }
        job_free(j);
    }
}

static void session_main(void *arg)
{
    cs_session *s = arg;
    job *batch[BATCH_MAX];
    for (;;) {
        void *item;
        if (cs_queue_pop(s->q, &item, -1) < 0)
            break;
        int n = 0;
        batch[n++] = item;
        while (n < BATCH_MAX && cs_queue_pop(s->q, &item, 0) == 0)
            batch[n++] = item;
        run_batch(s, batch, n);
    }
}

int cs_session_submit(cs_session *s, const cs_session_actor *who, const json_t *cmd,
                      cs_session_done done, void *userdata)
{
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return cs_error_set(CS_ENOMEM, "out of memory");
    j->cmd = json_deep_copy(cmd);
    j->user = strdup(who && who->user ? who->user : "anonymous");
    j->origin = strdup(who && who->origin ? who->origin : j->user ? j->user : "");
    j->client = strdup(who && who->client ? who->client : "local");
    j->events = json_array();
    j->done = done;
    j->userdata = userdata;
    if (!j->cmd || !j->user || !j->origin || !j->client || !j->events) {
        job_free(j);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    int r = cs_queue_try_push(s->q, j);
    if (r < 0) {
        job_free(j);
        return cs_error_set(r == CS_EAGAIN ? CS_EAGAIN : CS_ECLOSED,
                            r == CS_EAGAIN ? "the session's queue is full"
                                           : "the session is shutting down");
    }
    return 0;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished, code;
    json_t *result;
    char message[512];
} waiter;

static void wake(void *ud, int code, const json_t *result, const char *message)
{
    waiter *w = ud;
    pthread_mutex_lock(&w->lock);
    w->code = code;
    w->result = result ? json_incref((json_t *)result) : NULL;
    snprintf(w->message, sizeof(w->message), "%s", message ? message : "");
    w->finished = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int cs_session_call(cs_session *s, const cs_session_actor *who, const json_t *cmd, json_t **result)
{
    waiter w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    int r = cs_session_submit(s, who, cmd, wake, &w);
    if (r < 0)
        return r;
    pthread_mutex_lock(&w.lock);
    while (!w.finished)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    if (result)
        *result = w.result;
    else
        json_decref(w.result);
    return w.code < 0 ? cs_error_set(w.code, "%s", w.message) : 0;
}

/* ---- reads (any thread) ---- */

static cs_db *reader_get(cs_session *s)
{
    cs_db *db = NULL;
    pthread_mutex_lock(&s->rlock);
    if (s->nreaders > 0)
        db = s->readers[--s->nreaders];
    pthread_mutex_unlock(&s->rlock);
    if (!db && cs_db_open(&db, s->path) < 0)
        return NULL;
    return db;
}

static void reader_put(cs_session *s, cs_db *db)
{
    pthread_mutex_lock(&s->rlock);
    if (s->nreaders < READERS_MAX) {
        s->readers[s->nreaders++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&s->rlock);
    cs_db_close(db);
}

static json_t *read_list(cs_db *db, const json_t *q, int *code)
{
    const char *slide = str(q, "slide");
    const json_t *bbox = json_object_get(q, "bbox");
    double b[4] = {-INFINITY, -INFINITY, INFINITY, INFINITY};
    if (json_is_array(bbox)) {
        if (json_array_size(bbox) != 4) {
            *code = cs_error_set(CS_EINVAL, "bbox: expected x0,y0,x1,y1");
            return NULL;
        }
        for (int i = 0; i < 4; i++)
            b[i] = json_number_value(json_array_get(bbox, (size_t)i));
    }
    cs_db_stmt *st, *sq;
    int r = cs_db_exec(db, "BEGIN");
    if (r < 0) {
        *code = r;
        return NULL;
    }
    json_t *list = json_array();
    int64_t seq = 0;
    r = cs_db_prepare(db, &st,
                      "SELECT body FROM annotations WHERE slide = $1 AND deleted = 0"
                      " AND x1 >= $2 AND x0 <= $4 AND y1 >= $3 AND y0 <= $5 ORDER BY rowid");
    if (r == 0) {
        cs_db_bind_text(st, 1, slide ? slide : "");
        for (int i = 0; i < 4; i++)
            cs_db_bind_real(st, i + 2, b[i]);
        while ((r = cs_db_step(st)) == CS_DB_ROW) {
            json_t *a = json_loads(cs_db_column_text(st, 0), 0, NULL);
            if (a)
                json_array_append_new(list, a);
        }
        cs_db_finalize(st);
    }
    if (r == 0 && (r = cs_db_prepare(db, &sq,
                                     "SELECT coalesce(max(seq), 0) FROM "
                                     "annotation_events")) == 0) {
        if ((r = cs_db_step(sq)) == CS_DB_ROW) {
            seq = cs_db_column_int(sq, 0);
            r = 0;
        }
        cs_db_finalize(sq);
    }
    cs_db_exec(db, "COMMIT");
    if (r < 0) {
        json_decref(list);
        *code = r;
        return NULL;
    }
    return json_pack("{s:s, s:I, s:o}", "slide", slide ? slide : "", "seq", (json_int_t)seq,
                     "annotations", list);
}

static json_t *read_get(cs_db *db, const char *id, int *code)
{
    json_t *a;
    int deleted;
    int r = id ? load_row(db, id, &a, &deleted) : cs_error_set(CS_EINVAL, "id: missing");
    if (r == 0 && deleted) {
        json_decref(a);
        r = cs_error_set(CS_EGONE, "annotation \"%s\" was deleted", id);
    }
    if (r < 0) {
        *code = r;
        return NULL;
    }
    return a;
}

static json_t *read_storage(cs_db *db, const char *plugin, const char *key, int *code)
{
    cs_db_stmt *st;
    json_t *v = NULL;
    int r = cs_db_prepare(db, &st,
                          "SELECT value FROM plugin_storage WHERE plugin = $1 AND "
                          "key = $2");
    if (r == 0) {
        cs_db_bind_text(st, 1, plugin);
        cs_db_bind_text(st, 2, key ? key : "");
        if ((r = cs_db_step(st)) == CS_DB_ROW) {
            v = json_loads(cs_db_column_text(st, 0), JSON_DECODE_ANY, NULL);
            r = 0;
        }
        cs_db_finalize(st);
    }
    if (r < 0)
        *code = r;
    else if (!v)
        v = json_null();
    return v;
}

json_t *cs_session_read(cs_session *s, const cs_session_actor *who, const json_t *query, int *code)
{
    int dummy;
    if (!code)
        code = &dummy;
    *code = 0;
    const char *op = str(query, "op");
    cs_db *db = reader_get(s);
    if (!db) {
        *code = CS_EIO;
        return NULL;
    }
    json_t *out = NULL;
    if (!op) {
        *code = cs_error_set(CS_EINVAL, "op: missing");
    } else if (!strcmp(op, "annot.list")) {
        out = read_list(db, query, code);
    } else if (!strcmp(op, "annot.query")) { /* plugins: just the array */
        json_t *l = read_list(db, query, code);
        if (l)
            out = json_incref(json_object_get(l, "annotations"));
        json_decref(l);
    } else if (!strcmp(op, "annot.get")) {
        out = read_get(db, str(query, "id"), code);
    } else if (!strcmp(op, "annot.measure")) {
        json_t *a = read_get(db, str(query, "id"), code);
        if (a)
            out = json_incref(json_object_get(a, "measure"));
        json_decref(a);
    } else if (!strcmp(op, "storage.get")) {
        out = read_storage(db, who && who->origin ? who->origin : "", str(query, "key"), code);
    } else {
        *code = cs_error_set(CS_EINVAL, "op: unknown read \"%s\"", op);
    }
    reader_put(s, db);
    return out;
}

int64_t cs_session_last_seq(cs_session *s)
{
    return atomic_load(&s->last_seq);
}

int cs_session_replay(cs_session *s, const char *slide, int64_t since, int64_t upto,
                      void (*emit)(void *ctx, cs_event *ev), void *ctx)
{
    cs_db *db = reader_get(s);
    if (!db)
        return CS_EIO;
    cs_db_stmt *st;
    int r = cs_db_prepare(db, &st,
                          "SELECT seq, event, origin, body FROM annotation_events"
                          " WHERE slide = $1 AND seq > $2 AND seq <= $3 ORDER BY seq");
    if (r == 0) {
        char topic[300];
        snprintf(topic, sizeof(topic), "slide:%s", slide);
        cs_db_bind_text(st, 1, slide);
        cs_db_bind_int(st, 2, since);
        cs_db_bind_int(st, 3, upto);
        while ((r = cs_db_step(st)) == CS_DB_ROW) {
            cs_event *ev = cs_event_new(cs_db_column_text(st, 1), topic, cs_db_column_int(st, 0),
                                        cs_db_column_text(st, 2),
                                        json_loads(cs_db_column_text(st, 3), 0, NULL));
            if (!ev) {
                r = cs_error_set(CS_ENOMEM, "out of memory");
                break;
            }
            emit(ctx, ev);
            cs_event_unref(ev);
        }
        cs_db_finalize(st);
    }
    reader_put(s, db);
    return r;
}

json_t *cs_session_stats(cs_session *s)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I}", "writes", (json_int_t)atomic_load(&s->writes),
                     "failed", (json_int_t)atomic_load(&s->failed), "batches",
                     (json_int_t)atomic_load(&s->batches), "queued",
                     (json_int_t)cs_queue_length(s->q), "last_seq",
                     (json_int_t)atomic_load(&s->last_seq));
}

/* ---- life ---- */

int cs_session_add_slide(cs_session *s, const char *id, double mpp_x, double mpp_y)
{
    pthread_rwlock_wrlock(&s->slock);
    int r = 0;
    if (s->nslides == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        slide_info *n = realloc(s->slides, sizeof(*n) * (size_t)nc);
        if (!n)
            r = cs_error_set(CS_ENOMEM, "out of memory");
        else {
            s->slides = n;
            s->cap = nc;
        }
    }
    if (r == 0) {
        s->slides[s->nslides] = (slide_info){strdup(id), mpp_x, mpp_y};
        if (s->slides[s->nslides].id)
            s->nslides++;
        else
            r = cs_error_set(CS_ENOMEM, "out of memory");
    }
    pthread_rwlock_unlock(&s->slock);
    return r;
}

static void free_job_item(void *item)
{
    job_free(item);
}

int cs_session_new(cs_session **out, const char *db_path, cs_bus *bus, cs_logger *log)
{
    cs_session *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->path = strdup(db_path);
    s->bus = bus;
    s->log = log;
    pthread_mutex_init(&s->rlock, NULL);
    pthread_rwlock_init(&s->slock, NULL);
    int r = s->path ? cs_db_open(&s->w, db_path) : cs_error_set(CS_ENOMEM, "out of memory");
    if (r == 0)
        r = cs_queue_new(&s->q, QUEUE_DEPTH, free_job_item);
    if (r == 0) {
        cs_db_stmt *st;
        r = cs_db_prepare(s->w, &st, "SELECT coalesce(max(seq), 0) FROM annotation_events");
        if (r == 0 && cs_db_step(st) == CS_DB_ROW)
            atomic_store(&s->last_seq, cs_db_column_int(st, 0));
        if (r == 0)
            cs_db_finalize(st);
    }
    if (r == 0)
        r = cs_thread_start(&s->thread, "session", session_main, s);
    if (r < 0) {
        cs_session_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void cs_session_free(cs_session *s)
{
    if (!s)
        return;
    if (s->q)
        cs_queue_close(s->q);
    cs_thread_join(s->thread);
    cs_queue_free(s->q);
    cs_db_close(s->w);
    for (int i = 0; i < s->nreaders; i++)
        cs_db_close(s->readers[i]);
    for (int i = 0; i < s->nslides; i++)
        free(s->slides[i].id);
    free(s->slides);
    pthread_rwlock_destroy(&s->slock);
    pthread_mutex_destroy(&s->rlock);
    free(s->path);
    free(s);
}
