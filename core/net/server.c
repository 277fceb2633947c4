/* core/net: the HTTP server, its slide registry and the tile routes.
 *
 * The registry is filled before start and never changes afterwards, so
 * request threads read it without locks. Each request runs on one of
 * libmicrohttpd's pool threads: cache lookup, then (on a miss) tile
 * production through cs_tiles, then a zero-copy response that holds a
 * reference to the cached buffer until libmicrohttpd is done with it. */
#include "cs/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "cs/buf.h"
#include "cs/bus.h"
#include "cs/err.h"
#include "cs/iiif.h"
#include "cs/jpeg.h"
#include "cs/log.h"
#include "cs/plughost.h"
#include "cs/session.h"
#include "cs/slide.h"
#include "cs/thread.h"
#include "cs/tilecache.h"
#include "cs/tiles.h"

#include "rest.h"
#include "ws.h"

typedef struct {
    char id[128];
    char *path;
    cs_slide *slide; /* NULL when it could not be opened */
    cs_tiles *tiles;
    char error[300];
    int synthetic;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    uint64_t fingerprint; /* for ETags */
} slide_entry;

/* Recent audit records, to write one per client/user/slide/kind a while */
#define AUDIT_SLOTS 4096

typedef struct {
    pthread_mutex_t lock;
    int fd; /* -1: the "audit" logger */
    uint64_t key[AUDIT_SLOTS];
    int64_t when[AUDIT_SLOTS];
} audit_log;

/* A token's owner. */
typedef struct {
    char *name, *role, *token;
} user_entry;

/* A request body being received (POST/PATCH); the connection's context. */
typedef struct {
    char *data;
    size_t len, cap;
    int too_big;
} body_buf;

struct cs_server {
    cs_server_opts o;
    audit_log audit;
    char *bind, *cors, *token;
    char *tls_cert_pem, *tls_key_pem;
    slide_entry *slides;
    int nslides, cap;
    cs_tilecache *cache;
    cs_pool *decoders; /* stored-tile decodes of made tiles, shared by all slides */
    struct MHD_Daemon *daemon;
    int port;
    cs_logger *log;
    cs_bus *bus;       /* events for WebSocket clients (and plugins) */
    cs_ws *ws;         /* the /ws hub */
    user_entry *users; /* [0] is the owner of the server token */
    int nusers;
    cs_session *session;  /* the store's one writer */
    cs_plughost *plugins; /* NULL without plugin folders */
    cs_glue *glue;
    int64_t plugins_sub;
    char *tmp_db;          /* the temporary database to remove, when no db_path */
    cs_dicomweb *dicomweb; /* NULL without a DICOM store */
};

/* ---- registry ---- */

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void make_id(cs_server *s, char *id, size_t n, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t k = 0;
    for (const char *p = base; *p && k + 1 < n; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.';
        id[k++] = ok ? c : '-';
    }
    id[k] = '\0';
    char *dot = strrchr(id, '.');
    if (dot && dot != id)
        *dot = '\0';
    /* unique: append -2, -3 ... */
    char base_id[128];
    memcpy(base_id, id, strlen(id) + 1);
    for (int suffix = 2;; suffix++) {
        int clash = 0;
        for (int i = 0; i < s->nslides; i++)
            clash |= strcmp(s->slides[i].id, id) == 0;
        if (!clash)
            return;
        snprintf(id, n, "%.100s-%d", base_id, suffix);
    }
}

static slide_entry *new_entry(cs_server *s, const char *path)
{
    if (s->nslides == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        slide_entry *ns = realloc(s->slides, sizeof(*ns) * (size_t)nc);
        if (!ns)
            return NULL;
        s->slides = ns;
        s->cap = nc;
    }
    slide_entry *e = &s->slides[s->nslides];
    memset(e, 0, sizeof(*e));
    e->path = strdup(path);
    if (!e->path)
        return NULL;
    make_id(s, e->id, sizeof(e->id), path);
    s->nslides++;
    return e;
}

static int open_entry(cs_server *s, slide_entry *e)
{
    cs_tiles_opts to = CS_TILES_OPTS_INIT;
    to.tile_size = s->o.tile_size;
    to.overlap = s->o.overlap;
    to.quality = s->o.quality;
    to.pool = s->decoders;
    int r = cs_tiles_new(&e->tiles, e->slide, &to);
    if (r < 0) {
        snprintf(e->error, sizeof(e->error), "%s", cs_error_last());
        return r;
    }
    char fp[64];
    int n = snprintf(fp, sizeof(fp), "%d/%d/%d", cs_tiles_tile_size(e->tiles),
                     cs_tiles_overlap(e->tiles), cs_tiles_quality(e->tiles));
    e->fingerprint =
        fnv(fnv(fnv(1469598103934665603ull, &e->ino, sizeof(e->ino)), &e->mtime, sizeof(e->mtime)),
            fp, (size_t)n);
    e->fingerprint = fnv(e->fingerprint, e->path, strlen(e->path));
    return 0;
}

static int add_file(cs_server *s, const char *path)
{
    slide_entry *e = new_entry(s, path);
    if (!e)
        return cs_error_set(CS_ENOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) == 0) {
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        e->mtime = st.st_mtim;
    }
    int r = cs_slide_open(&e->slide, path);
    if (r < 0) {
        snprintf(e->error, sizeof(e->error), "%s", cs_error_last());
        cs_log(s->log, CS_LOG_WARN, "slide %s unreadable: %s", e->id, e->error);
        e->slide = NULL;
        return 1;
    }
    if (open_entry(s, e) < 0)
        cs_log(s->log, CS_LOG_WARN, "slide %s: %s", e->id, e->error);
    cs_log(s->log, CS_LOG_INFO, "slide %s: %s (%s)", e->id, path, cs_slide_vendor(e->slide));
    return 1;
}

static int is_slide_name(const char *name)
{
    static const char *const exts[] = {".svs", ".tif",  ".tiff", ".ndpi",    ".vms", ".vmu",
                                       ".scn", ".mrxs", ".bif",  ".svslide", NULL};
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    for (int i = 0; exts[i]; i++) {
        if (strcasecmp(dot, exts[i]) == 0)
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_dir(cs_server *s, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return cs_error_set(CS_ENOTFOUND, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof(char *));
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (names[i] && stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth > 0) {
                int r = scan_dir(s, path, depth - 1);
                added += r > 0 ? r : 0;
            } else if (S_ISREG(st.st_mode) && is_slide_name(names[i])) {
                added += add_file(s, path);
            }
        }
        free(names[i]);
    }
    free(names);
    return added;
}

int cs_server_add_path(cs_server *s, const char *path)
{
    long long w, h;
    if (sscanf(path, "synthetic:%lldx%lld", &w, &h) == 2) {
        slide_entry *e = new_entry(s, "synthetic");
        if (!e)
            return cs_error_set(CS_ENOMEM, "out of memory");
        e->synthetic = 1;
        int r = cs_slide_open_synthetic(&e->slide, w, h);
        if (r < 0) {
            s->nslides--;
            free(e->path);
            return r;
        }
        return open_entry(s, e) < 0 ? -1 : 1;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return cs_error_set(CS_ENOTFOUND, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return scan_dir(s, path, 2);
    return add_file(s, path);
}

int cs_server_slide_count(const cs_server *s)
{
    return s->nslides;
}

const char *cs_server_slide_id(const cs_server *s, int index)
{
    return index >= 0 && index < s->nslides ? s->slides[index].id : NULL;
}

static slide_entry *find_slide(cs_server *s, const char *id, size_t len)
{
    for (int i = 0; i < s->nslides; i++) {
        if (strlen(s->slides[i].id) == len && memcmp(s->slides[i].id, id, len) == 0)
            return &s->slides[i];
    }
    return NULL;
}

/* ---- responses ---- */

typedef struct {
    cs_server *srv;
    struct MHD_Connection *conn;
    const char *url;
    const char *method;
    body_buf *body;
    const user_entry *user; /* set once the token is checked */
} request;

/* ---- audit ---- */

/* The client's IPv4 address, or NULL. */
static const struct in_addr *client_in(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        return &((const struct sockaddr_in *)ci->client_addr)->sin_addr;
    return NULL;
}

/* Write one audit record unless the same one went out within @p every_s.
 * Runs on every tile request: the key hashes raw bytes, and text is only
 * formatted for a record that is written. */
static void audit(request *rq, const char *code, const char *event, int outcome, const char *what,
                  const char *object, const char *kind, int every_s)
{
    audit_log *a = &rq->srv->audit;
    const struct in_addr *in = client_in(rq->conn);
    const char *auth = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    const char *tok = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
    if (!tok)
        tok = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "access_token");
    uint64_t tokhash = tok ? fnv(1469598103934665603ull, tok, strlen(tok)) : 0;
    uint64_t key = fnv(1469598103934665603ull, &tokhash, sizeof(tokhash));
    if (in)
        key = fnv(key, in, sizeof(*in));
    key = fnv(key, code, strlen(code));
    if (object)
        key = fnv(key, object, strlen(object));
    if (kind)
        key = fnv(key, kind, strlen(kind));
    int64_t now = cs_clock_ns() / 1000000000;
    size_t slot = key % AUDIT_SLOTS;
    pthread_mutex_lock(&a->lock);
    int fresh = a->key[slot] != key || now - a->when[slot] >= every_s;
    if (fresh) {
        a->key[slot] = key;
        a->when[slot] = now;
    }
    pthread_mutex_unlock(&a->lock);
    if (!fresh)
        return;
    char client[INET_ADDRSTRLEN] = "unknown", user[40] = "anonymous";
    if (in)
        inet_ntop(AF_INET, in, client, sizeof(client));
    if (tok)
        snprintf(user, sizeof(user), "token#%08llx", (unsigned long long)(tokhash >> 32));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "time", when, "code", code, "event", event,
                  "outcome", outcome, "client", client, "user", user, "route", rq->url);
    if (object)
        json_object_set_new(j, what, json_string(object));
    if (kind)
        json_object_set_new(j, "kind", json_string(kind));
    char *line = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!line)
        return;
    if (a->fd >= 0) {
        size_t n = strlen(line);
        line[n] = '\n'; /* one write per record: lines never interleave */
        ssize_t w = write(a->fd, line, n + 1);
        line[n] = '\0';
        if (w != (ssize_t)n + 1)
            cs_log(rq->srv->log, CS_LOG_ERROR, "audit log write failed: %s", strerror(errno));
    } else {
        cs_log(rq->srv->log, CS_LOG_INFO, "audit: %s", line);
    }
    free(line);
}

static void audit_access(request *rq, const slide_entry *e, const char *kind)
{
    audit(rq, "110103", "slide accessed", 0, "slide", e->id, kind, 300);
}

static void add_common_headers(request *rq, struct MHD_Response *resp)
{
    /* Responses depend on the token: a browser must not replay a cached
     * tile to a request that carries another (or a revoked) token. */
    MHD_add_response_header(resp, "Vary", "Authorization");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", rq->srv->cors);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "ETag, X-Tile-Source");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result send_buffer(request *rq, unsigned status, const char *type, const void *data,
                                   size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    add_common_headers(rq, resp);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"consilium\"");
    enum MHD_Result ret = MHD_queue_response(rq->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(request *rq, unsigned status, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return MHD_NO;
    enum MHD_Result r = send_buffer(rq, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

static enum MHD_Result send_error(request *rq, unsigned status, const char *word, const char *fmt,
                                  ...) CS_PRINTF(4, 5);

static enum MHD_Result send_error(request *rq, unsigned status, const char *word, const char *fmt,
                                  ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cs_log(rq->srv->log, CS_LOG_VERBOSE, "%u %s: %s", status, rq->url, msg);
    return send_json(rq, status, json_pack("{s:s, s:s}", "error", word, "message", msg));
}

/* Map a CS_E* code from tile production to a status. */
static enum MHD_Result send_code(request *rq, int code)
{
    const char *msg = cs_error_last();
    switch (code) {
    case CS_ERANGE:
        return send_error(rq, MHD_HTTP_NOT_FOUND, "out_of_range", "%s", msg);
    case CS_ENOTFOUND:
        return send_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "%s", msg);
    case CS_EINVAL:
        return send_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", msg);
    case CS_ETOOBIG:
        return send_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "%s", msg);
    case CS_EFORMAT:
    case CS_EIO:
        return send_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "slide_unreadable", "%s", msg);
    case CS_ENOMEM:
        return send_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "%s", msg);
    }
    return send_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "%s", msg);
}

static void unref_buf(void *cls)
{
    cs_buf_unref(cls);
}

static enum MHD_Result send_tile(request *rq, cs_buf *b, const char *etag, const char *source)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        cs_buf_size(b), cs_buf_data(b), unref_buf, b);
    if (!resp) {
        cs_buf_unref(b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "image/jpeg");
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "private, max-age=86400");
    if (source)
        MHD_add_response_header(resp, "X-Tile-Source", source);
    add_common_headers(rq, resp);
    enum MHD_Result ret = MHD_queue_response(rq->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_not_modified(request *rq, const char *etag)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "private, max-age=86400");
    add_common_headers(rq, resp);
    enum MHD_Result ret = MHD_queue_response(rq->conn, MHD_HTTP_NOT_MODIFIED, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- checks ---- */

/* Constant-time string equality (the lengths may leak, not the bytes). */
static int same_secret(const char *want, const char *got)
{
    size_t n = strlen(want), m = strlen(got);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(want[i] ^ got[i < m ? i : 0]);
    return diff == 0;
}

/* The user whose token the request carries, or NULL. Every user's token is
 * compared, so the time does not say which one matched. */
static const user_entry *find_user(request *rq)
{
    const char *got = NULL;
    const char *auth = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        got = auth + 7;
    if (!got)
        got = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "access_token");
    if (!got)
        return NULL;
    const user_entry *found = NULL;
    for (int i = 0; i < rq->srv->nusers; i++)
        if (same_secret(rq->srv->users[i].token, got) && !found)
            found = &rq->srv->users[i];
    return found;
}

static int token_ok(request *rq)
{
    rq->user = find_user(rq);
    return rq->user != NULL;
}

/* 1 when the file behind @p e is no longer the one opened */
static int slide_gone(const slide_entry *e)
{
    struct stat st;
    return !e->synthetic &&
           (stat(e->path, &st) != 0 || st.st_ino != e->ino || st.st_dev != e->dev ||
            st.st_mtim.tv_sec != e->mtime.tv_sec || st.st_mtim.tv_nsec != e->mtime.tv_nsec);
}

/* Copy @p msg to @p out with the server's file path replaced by the slide
 * id: clients learn what is wrong, not where the server keeps its files. */
static const char *scrub(char *out, size_t n, const char *msg, const slide_entry *e)
{
    size_t plen = strlen(e->path), k = 0;
    char quoted[160];
    snprintf(quoted, sizeof(quoted), "slide '%s'", e->id);
    for (const char *p = msg; *p && k + 1 < n;) {
        if (plen && strncmp(p, e->path, plen) == 0) {
            for (const char *q = quoted; *q && k + 1 < n; q++)
                out[k++] = *q;
            p += plen;
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = '\0';
    return out;
}

/* 0 when the slide is usable; else a response has been queued. */
static int check_slide(request *rq, slide_entry *e, enum MHD_Result *ret)
{
    char clean[400];
    if (!e->slide) {
        *ret = send_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "slide_unreadable",
                          "slide '%s' cannot be read: %s", e->id,
                          scrub(clean, sizeof(clean), e->error, e));
        return -1;
    }
    if (slide_gone(e)) {
        *ret = send_error(rq, MHD_HTTP_GONE, "slide_gone",
                          "slide '%s' was removed or replaced on the server", e->id);
        return -1;
    }
    const char *msg;
    if (cs_slide_get_error(e->slide, &msg)) {
        *ret = send_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "slide_unreadable", "%s",
                          scrub(clean, sizeof(clean), msg, e));
        return -1;
    }
    if (!e->tiles) {
        *ret = send_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "slide_unreadable", "%s",
                          scrub(clean, sizeof(clean), e->error, e));
        return -1;
    }
    return 0;
}

static int parse_i64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 12)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* ---- tile delivery, shared by DeepZoom and IIIF ---- */

static const char *how_name(cs_tiles_how how)
{
    switch (how) {
    case CS_TILES_PASSTHROUGH:
        return "passthrough";
    case CS_TILES_CROPPED:
        return "cropped";
    case CS_TILES_FROM_JPEG:
        return "from-jpeg";
    case CS_TILES_RENDERED:
        return "rendered";
    }
    return "unknown";
}

typedef struct {
    int dzi;
    int level;
    int64_t col, row;
    cs_iiif_request iiif;
} tile_req;

static enum MHD_Result serve_tile(request *rq, slide_entry *e, const char *key, const tile_req *tr)
{
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%016llx\"",
             (unsigned long long)fnv(e->fingerprint, key, strlen(key)));
    audit_access(rq, e, "tiles");
    const char *inm = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "If-None-Match");
    if (inm && strstr(inm, etag))
        return send_not_modified(rq, etag);
    cs_buf *b;
    if (cs_tilecache_get(rq->srv->cache, key, &b) == 0)
        return send_tile(rq, b, etag, "cache");
    cs_tiles_how how = 0;
    int r = tr->dzi ? cs_tiles_get_dzi(e->tiles, &b, &how, tr->level, tr->col, tr->row)
                    : cs_tiles_get_region(e->tiles, &b, &how, tr->iiif.x, tr->iiif.y, tr->iiif.w,
                                          tr->iiif.h, tr->iiif.out_w, tr->iiif.out_h);
    if (r < 0) {
        char clean[400];
        cs_error_set(r, "%s", scrub(clean, sizeof(clean), cs_error_last(), e));
        return send_code(rq, r);
    }
    cs_tilecache_put(rq->srv->cache, key, b);
    return send_tile(rq, b, etag, how_name(how));
}

/* ---- routes ---- */

static json_t *slide_json(cs_server *s, slide_entry *e, int full)
{
    json_t *j = json_pack("{s:s}", "id", e->id);
    if (e->slide && slide_gone(e)) {
        json_object_set_new(j, "status", json_string("gone"));
        return j;
    }
    if (!e->slide) {
        char clean[400];
        json_object_set_new(j, "status", json_string("unreadable"));
        json_object_set_new(j, "message", json_string(scrub(clean, sizeof(clean), e->error, e)));
        return j;
    }
    cs_slide_level l0;
    cs_slide_get_level(e->slide, 0, &l0);
    json_object_set_new(j, "status", json_string(e->tiles ? "ok" : "unreadable"));
    json_object_set_new(j, "vendor", json_string(cs_slide_vendor(e->slide)));
    json_object_set_new(j, "width", json_integer(l0.width));
    json_object_set_new(j, "height", json_integer(l0.height));
    json_object_set_new(j, "level_count", json_integer(cs_slide_level_count(e->slide)));
    double mx = cs_slide_mpp_x(e->slide), my = cs_slide_mpp_y(e->slide);
    json_object_set_new(j, "mpp_x", mx > 0 ? json_real(mx) : json_null());
    json_object_set_new(j, "mpp_y", my > 0 ? json_real(my) : json_null());
    double op = cs_slide_objective_power(e->slide);
    json_object_set_new(j, "objective_power", op > 0 ? json_real(op) : json_null());
    if (!full)
        return j;
    json_t *levels = json_array();
    for (int i = 0; i < cs_slide_level_count(e->slide); i++) {
        cs_slide_level l;
        cs_slide_get_level(e->slide, i, &l);
        json_array_append_new(
            levels, json_pack("{s:I, s:I, s:f, s:i, s:i, s:s}", "width", (json_int_t)l.width,
                              "height", (json_int_t)l.height, "downsample", l.downsample,
                              "tile_width", l.tile_width, "tile_height", l.tile_height,
                              "stored_tiles", l.raw == CS_SLIDE_RAW_JPEG ? "jpeg" : "other"));
    }
    json_object_set_new(j, "levels", levels);
    if (e->tiles) {
        char dzi[200], iiif[200];
        snprintf(dzi, sizeof(dzi), "/slides/%s.dzi", e->id);
        snprintf(iiif, sizeof(iiif), "/iiif/3/%s/info.json", e->id);
        json_object_set_new(j, "tile_formats",
                            json_pack("{s:{s:s, s:i, s:i, s:s, s:i}, s:{s:s, s:s}}", "dzi", "url",
                                      dzi, "tile_size", cs_tiles_tile_size(e->tiles), "overlap",
                                      cs_tiles_overlap(e->tiles), "format", "jpeg", "levels",
                                      cs_tiles_level_count(e->tiles), "iiif", "url", iiif,
                                      "profile", "level1"));
    }
    json_t *assoc = json_array();
    for (const char *const *n = cs_slide_associated_names(e->slide); *n; n++)
        json_array_append_new(assoc, json_string(*n));
    json_object_set_new(j, "associated_images", assoc);
    json_object_set_new(j, "associated_served", json_boolean(s->o.serve_associated));
    return j;
}

static enum MHD_Result route_slide_list(request *rq)
{
    json_t *arr = json_array();
    for (int i = 0; i < rq->srv->nslides; i++)
        json_array_append_new(arr, slide_json(rq->srv, &rq->srv->slides[i], 0));
    return send_json(rq, MHD_HTTP_OK, json_pack("{s:o}", "slides", arr));
}

static enum MHD_Result route_dzi_xml(request *rq, slide_entry *e)
{
    int64_t w, h;
    cs_tiles_level_info(e->tiles, cs_tiles_level_count(e->tiles) - 1, &w, &h, NULL, NULL);
    char xml[512];
    snprintf(xml, sizeof(xml),
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"jpeg\" "
             "Overlap=\"%d\" TileSize=\"%d\"><Size Width=\"%lld\" Height=\"%lld\"/></Image>\n",
             cs_tiles_overlap(e->tiles), cs_tiles_tile_size(e->tiles), (long long)w, (long long)h);
    return send_buffer(rq, MHD_HTTP_OK, "application/xml", xml, strlen(xml));
}

/* /slides/{id}_files/{level}/{col}_{row}.jpeg; @p rest points after "_files/" */
static enum MHD_Result route_dzi_tile(request *rq, slide_entry *e, const char *rest)
{
    const char *slash = strchr(rest, '/');
    const char *us = slash ? strchr(slash + 1, '_') : NULL;
    const char *dot = us ? strchr(us + 1, '.') : NULL;
    int64_t level, col, row;
    if (!slash || !us || !dot || parse_i64(rest, (size_t)(slash - rest), &level) < 0 ||
        parse_i64(slash + 1, (size_t)(us - slash - 1), &col) < 0 ||
        parse_i64(us + 1, (size_t)(dot - us - 1), &row) < 0 ||
        (strcmp(dot, ".jpeg") != 0 && strcmp(dot, ".jpg") != 0))
        return send_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "malformed DeepZoom tile path; expected {level}/{col}_{row}.jpeg");
    enum MHD_Result ret;
    if (check_slide(rq, e, &ret) < 0)
        return ret;
    if (level >= cs_tiles_level_count(e->tiles))
        return send_error(rq, MHD_HTTP_NOT_FOUND, "out_of_range",
                          "DeepZoom level %lld out of range 0-%d", (long long)level,
                          cs_tiles_level_count(e->tiles) - 1);
    char key[200];
    snprintf(key, sizeof(key), "%s/dz/%lld/%lld_%lld", e->id, (long long)level, (long long)col,
             (long long)row);
    tile_req tr = {.dzi = 1, .level = (int)level, .col = col, .row = row};
    return serve_tile(rq, e, key, &tr);
}

static enum MHD_Result route_associated(request *rq, slide_entry *e, const char *name)
{
    enum MHD_Result ret;
    if (check_slide(rq, e, &ret) < 0)
        return ret;
    if (!rq->srv->o.serve_associated)
        return send_error(rq, MHD_HTTP_FORBIDDEN, "forbidden",
                          "associated images (label, macro) can identify the patient and are "
                          "not served; start the server with --serve-associated to allow it");
    char nm[64];
    const char *dot = strrchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    if (n >= sizeof(nm) || !dot || strcmp(dot, ".jpg") != 0)
        return send_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request", "expected {name}.jpg");
    memcpy(nm, name, n);
    nm[n] = '\0';
    int64_t w, h;
    if (cs_slide_associated_dims(e->slide, nm, &w, &h) < 0)
        return send_code(rq, CS_ENOTFOUND);
    if (w * h > 64ll << 20)
        return send_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "associated image too big");
    audit_access(rq, e, "associated");
    uint8_t *rgb = malloc((size_t)(w * h * 3));
    if (!rgb)
        return send_code(rq, cs_error_set(CS_ENOMEM, "out of memory"));
    cs_jpeg *j = NULL;
    cs_buf *b = NULL;
    int r = cs_slide_read_associated(e->slide, nm, rgb);
    if (r == 0 && (r = cs_jpeg_new(&j)) == 0)
        r = cs_jpeg_encode_rgb(j, &b, rgb, (int)w, (int)h, (size_t)w * 3, 90);
    cs_jpeg_free(j);
    free(rgb);
    if (r < 0)
        return send_code(rq, r);
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%016llx\"",
             (unsigned long long)fnv(e->fingerprint, nm, strlen(nm)));
    return send_tile(rq, b, etag, NULL);
}

/* ---- annotations and plugins ---- */

static void client_text(request *rq, char *out, size_t n)
{
    const struct in_addr *in = client_in(rq->conn);
    if (!in || !inet_ntop(AF_INET, in, out, (socklen_t)n))
        snprintf(out, n, "unknown");
}

static int can_write(const user_entry *u)
{
    return u && strcmp(u->role, "viewer") != 0;
}

static enum MHD_Result route_annotations(request *rq, slide_entry *e, const char *aid)
{
    enum MHD_Result ret;
    if (check_slide(rq, e, &ret) < 0)
        return ret;
    if (aid && (!*aid || strchr(aid, '/')))
        return send_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no such annotation route");
    audit_access(rq, e, "annotations");
    char client[64];
    client_text(rq, client, sizeof(client));
    cs_session_actor who = {rq->user->name, rq->user->name, client};
    cs_rest_request r = {
        rq->method,
        e->id,
        aid,
        MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "format"),
        MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "bbox"),
        MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "rev"),
        rq->body->data,
        rq->body->len,
        can_write(rq->user),
    };
    json_t *out = NULL;
    const char *type = "application/json";
    unsigned status = cs_rest_annotations(rq->srv->session, &who, &r, &out, &type);
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text)
        return MHD_NO;
    ret = send_buffer(rq, status, type, text, strlen(text));
    free(text);
    return ret;
}

/* A viewer opened a slide: plugins hear image.opened (transient). */
static void post_image_opened(request *rq, slide_entry *e, const json_t *meta)
{
    char topic[160];
    snprintf(topic, sizeof(topic), "slide:%s", e->id);
    json_t *d =
        json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:O?}", "slide", e->id, "kind", "wsi",
                  "levels", json_object_get(meta, "levels"), "mpp_x",
                  json_object_get(meta, "mpp_x"), "mpp_y", json_object_get(meta, "mpp_y"), "width",
                  json_object_get(meta, "width"), "height", json_object_get(meta, "height"));
    cs_event *ev = cs_event_new("image.opened", topic, 0, rq->user->name, d);
    if (ev)
        cs_bus_post(rq->srv->bus, ev);
    cs_event_unref(ev);
}

/* GET /plugins; POST /plugins/{name}/reload (admin). */
static enum MHD_Result route_plugins(request *rq, const char *rest)
{
    cs_plughost *h = rq->srv->plugins;
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        if (strcmp(rq->method, "GET") && strcmp(rq->method, "HEAD"))
            return send_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                              "GET /plugins lists the plugins");
        return send_json(rq, MHD_HTTP_OK, h ? cs_plughost_stats(h) : json_array());
    }
    const char *name = rest + 1, *slash = strchr(name, '/');
    if (!slash || strcmp(slash, "/reload") || strcmp(rq->method, "POST"))
        return send_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                          "plugin routes: GET /plugins, POST /plugins/{name}/reload");
    if (strcmp(rq->user->role, "admin"))
        return send_error(rq, MHD_HTTP_FORBIDDEN, "forbidden", "reloading plugins needs admin");
    char pname[128];
    snprintf(pname, sizeof(pname), "%.*s", (int)(slash - name), name);
    int r =
        h ? cs_plughost_reload(h, pname) : cs_error_set(CS_ENOTFOUND, "no plugin \"%s\"", pname);
    if (r < 0)
        return send_code(rq, r);
    return send_json(rq, MHD_HTTP_OK,
                     json_pack("{s:s, s:s}", "plugin", pname, "status", "reloaded"));
}

static enum MHD_Result route_slides(request *rq, const char *rest)
{
    cs_server *s = rq->srv;
    if (*rest == '\0')
        return route_slide_list(rq);
    size_t len = strlen(rest);
    const char *files = strstr(rest, "_files/");
    const char *sub = strchr(rest, '/');
    slide_entry *e;
    if (files && (!sub || files < sub)) {
        if (!(e = find_slide(s, rest, (size_t)(files - rest))))
            goto unknown;
        return route_dzi_tile(rq, e, files + 7);
    }
    if (len > 4 && !sub && strcmp(rest + len - 4, ".dzi") == 0) {
        if (!(e = find_slide(s, rest, len - 4)))
            goto unknown;
        enum MHD_Result ret;
        if (check_slide(rq, e, &ret) < 0)
            return ret;
        audit_access(rq, e, "metadata");
        return route_dzi_xml(rq, e);
    }
    if (sub && (strcmp(sub, "/annotations") == 0 || strncmp(sub, "/annotations/", 13) == 0)) {
        if (!(e = find_slide(s, rest, (size_t)(sub - rest))))
            goto unknown;
        return route_annotations(rq, e, sub[12] ? sub + 13 : NULL);
    }
    if (sub && strncmp(sub, "/associated/", 12) == 0) {
        if (!(e = find_slide(s, rest, (size_t)(sub - rest))))
            goto unknown;
        return route_associated(rq, e, sub + 12);
    }
    if (!sub) {
        if (!(e = find_slide(s, rest, len)))
            goto unknown;
        enum MHD_Result ret;
        if (check_slide(rq, e, &ret) < 0)
            return ret;
        audit_access(rq, e, "metadata");
        json_t *meta = slide_json(s, e, 1);
        post_image_opened(rq, e, meta);
        return send_json(rq, MHD_HTTP_OK, meta);
    }
    return send_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no such route under /slides");
unknown:
    return send_error(rq, MHD_HTTP_NOT_FOUND, "unknown_slide", "no slide with that id");
}

static enum MHD_Result route_iiif(request *rq, const char *rest)
{
    cs_server *s = rq->srv;
    const char *sub = strchr(rest, '/');
    size_t idlen = sub ? (size_t)(sub - rest) : strlen(rest);
    slide_entry *e = find_slide(s, rest, idlen);
    if (!e)
        return send_error(rq, MHD_HTTP_NOT_FOUND, "unknown_slide", "no slide with that id");
    enum MHD_Result ret;
    if (check_slide(rq, e, &ret) < 0)
        return ret;
    int64_t w, h;
    cs_tiles_level_info(e->tiles, cs_tiles_level_count(e->tiles) - 1, &w, &h, NULL, NULL);
    if (!sub || strcmp(sub, "/info.json") == 0) {
        audit_access(rq, e, "metadata");
        const char *host = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Host");
        char id[600];
        snprintf(id, sizeof(id), "%s://%s/iiif/3/%s", s->tls_cert_pem ? "https" : "http",
                 host ? host : "localhost", e->id);
        json_t *factors = json_array();
        for (int k = 0; k < cs_tiles_level_count(e->tiles); k++) {
            json_array_append_new(factors, json_integer(1ll << k));
            if ((w >> k) <= 1 && (h >> k) <= 1)
                break;
        }
        int T = cs_tiles_tile_size(e->tiles);
        json_t *j = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:[{s:i, s:i, s:o}], s:[s], s:[s]}",
            "@context", "http://iiif.io/api/image/3/context.json", "id", id, "type",
            "ImageService3", "protocol", "http://iiif.io/api/image", "profile", "level1", "width",
            (json_int_t)w, "height", (json_int_t)h, "maxWidth", s->o.max_width, "maxHeight",
            s->o.max_height, "tiles", "width", T, "height", T, "scaleFactors", factors,
            "extraQualities", "color", "extraFeatures", "regionByPct");
        return send_json(rq, MHD_HTTP_OK, j);
    }
    /* {region}/{size}/{rotation}/{quality}.{format} */
    char parts[4][128];
    const char *p = sub + 1;
    for (int i = 0; i < 4; i++) {
        const char *q = i < 3 ? strchr(p, '/') : p + strlen(p);
        if (!q || (size_t)(q - p) >= sizeof(parts[i]) || q == p)
            return send_error(rq, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "malformed IIIF request; expected "
                              "{region}/{size}/{rotation}/{quality}.{format}");
        memcpy(parts[i], p, (size_t)(q - p));
        parts[i][q - p] = '\0';
        p = q + (i < 3);
    }
    tile_req tr = {.dzi = 0};
    int r = cs_iiif_parse(&tr.iiif, w, h, parts[0], parts[1], parts[2], parts[3], s->o.max_width,
                          s->o.max_height, (int64_t)s->o.max_width * s->o.max_height);
    if (r < 0)
        return send_code(rq, r == CS_ERANGE ? CS_EINVAL : r);
    char key[300];
    snprintf(key, sizeof(key), "%s/iiif/%lld,%lld,%lld,%lld/%d,%d", e->id, (long long)tr.iiif.x,
             (long long)tr.iiif.y, (long long)tr.iiif.w, (long long)tr.iiif.h, tr.iiif.out_w,
             tr.iiif.out_h);
    return serve_tile(rq, e, key, &tr);
}

static const char *query_arg(void *ctx, const char *key)
{
    request *rq = ctx;
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

static void free_reply_body(void *cls)
{
    free(cls);
}

/* DICOMweb (dicomweb.c): studies read through the DICOM node's store. */
static enum MHD_Result route_dicomweb(request *rq, const char *rest)
{
    if (!rq->srv->dicomweb)
        return send_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                          "this node has no DICOM store (start it with --store DIR)");
    if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0)
        return send_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "DICOMweb here is read-only (QIDO-RS, WADO-RS)");
    cs_dicomweb_reply rp;
    cs_dicomweb_handle(rq->srv->dicomweb, rest, query_arg, rq, &rp);
    if (rp.object[0])
        audit(rq, "110103", "study accessed", rp.status < 400 ? 0 : 4, "study", rp.object,
              "dicomweb", 300);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(
        rp.len, rp.body ? rp.body : (void *)"", rp.body ? free_reply_body : NULL);
    if (!resp) {
        free(rp.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", rp.content_type);
    add_common_headers(rq, resp);
    enum MHD_Result ret = MHD_queue_response(rq->conn, rp.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int path_is_safe(const char *url)
{
    if (url[0] != '/' || strchr(url, '\\') || strstr(url, "%00"))
        return 0;
    for (const char *p = url; (p = strstr(p, "..")); p += 2) {
        int starts = p == url || p[-1] == '/';
        int ends = p[2] == '\0' || p[2] == '/';
        if (starts && ends)
            return 0;
    }
    return 1;
}

/* ---- WebSocket /ws (the hub is in ws.c) ---- */

/* The hub's core: commands, replay and resume point go to the session
 * through the glue (which refuses them once shutdown has begun). The
 * session exists from cs_server_start(), before any connection. */
static void ws_command(void *userdata, cs_ws *hub, int64_t conn, const char *user, const char *role,
                       json_t *msg)
{
    cs_server *s = userdata;
    cs_glue_ws_command(s->glue, hub, conn, user, role, msg);
}

static int ws_replay(void *userdata, const char *slide, int64_t since, int64_t upto,
                     void (*emit)(void *ctx, cs_event *ev), void *ctx)
{
    cs_server *s = userdata;
    return cs_glue_ws_replay(s->glue, slide, since, upto, emit, ctx);
}

static int64_t ws_last_seq(void *userdata)
{
    cs_server *s = userdata;
    return s->glue ? cs_glue_last_seq(s->glue) : 0;
}

static enum MHD_Result route_ws(request *rq, const char *method)
{
    if (strcmp(method, "GET") != 0)
        return send_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "/ws takes GET with a WebSocket upgrade");
    unsigned status;
    struct MHD_Response *resp =
        cs_ws_upgrade_response(rq->srv->ws, rq->conn, rq->user->name, rq->user->role, &status);
    if (!resp)
        return MHD_NO;
    if (status != MHD_HTTP_SWITCHING_PROTOCOLS)
        add_common_headers(rq, resp);
    enum MHD_Result ret = MHD_queue_response(rq->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    cs_server *s = cls;
    request rq = {s, conn, url, method, NULL, NULL};
    if (*con_cls == NULL) { /* first call: headers only */
        body_buf *b = calloc(1, sizeof(*b));
        if (!b)
            return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    rq.body = *con_cls;
    if (*upload_data_size) { /* a body: kept up to the limit, the rest counted and dropped */
        body_buf *b = rq.body;
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (b->too_big || b->len + n > CS_REST_MAX_BODY) {
            b->too_big = 1;
            return MHD_YES;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n + 1)
                cap *= 2;
            char *d = realloc(b->data, cap);
            if (!d)
                return MHD_NO;
            b->data = d;
            b->cap = cap;
        }
        memcpy(b->data + b->len, upload_data, n);
        b->len += n;
        b->data[b->len] = '\0';
        return MHD_YES;
    }
    if (strcmp(method, "OPTIONS") == 0) {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        add_common_headers(&rq, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, If-None-Match, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    int reading = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int writing = strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
                  strcmp(method, "DELETE") == 0;
    if (!reading && !(writing && (strstr(url, "/annotations") || !strncmp(url, "/plugins/", 9))))
        return send_error(&rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "%s is not allowed here", method);
    if (rq.body->too_big)
        return send_error(&rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                          "request body larger than %u MiB", CS_REST_MAX_BODY >> 20);
    if (!path_is_safe(url))
        return send_error(&rq, MHD_HTTP_BAD_REQUEST, "bad_path",
                          "path traversal or malformed path rejected");
    if (strcmp(url, "/health") == 0)
        return send_json(&rq, MHD_HTTP_OK,
                         json_pack("{s:s, s:i}", "status", "ok", "slides", s->nslides));
    if (!token_ok(&rq)) {
        audit(&rq, "110114", "user authentication failed", 4, NULL, NULL, NULL, 10);
        return send_error(&rq, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                          "missing or wrong token: send 'Authorization: Bearer <token>'");
    }
    if (strcmp(url, "/slides") == 0 || strcmp(url, "/slides/") == 0)
        return route_slides(&rq, "");
    if (strncmp(url, "/slides/", 8) == 0)
        return route_slides(&rq, url + 8);
    if (strncmp(url, "/iiif/3/", 8) == 0)
        return route_iiif(&rq, url + 8);
    if (strcmp(url, "/ws") == 0)
        return route_ws(&rq, method);
    if (strcmp(url, "/ws/stats") == 0)
        return send_json(&rq, MHD_HTTP_OK, cs_ws_stats(s->ws));
    if (strcmp(url, "/plugins") == 0 || strncmp(url, "/plugins/", 9) == 0)
        return route_plugins(&rq, url + 8);
    if (strncmp(url, "/dicomweb/", 10) == 0)
        return route_dicomweb(&rq, url + 10);
    if (strncmp(url, "/dicom-web/", 11) == 0)
        return route_dicomweb(&rq, url + 11);
    return send_error(&rq, MHD_HTTP_NOT_FOUND, "not_found", "no route for %s", url);
}

/* ---- lifecycle ---- */

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s ? s : dflt);
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_error_set(CS_ENOTFOUND, "%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf)
        return cs_error_set(CS_ENOMEM, "out of memory");
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int random_token(char *out, size_t n)
{
    uint8_t raw[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
        if (fd >= 0)
            close(fd);
        return cs_error_set(CS_EIO, "cannot read /dev/urandom");
    }
    close(fd);
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < sizeof(raw) && k + 2 < n; i++) {
        out[k++] = hex[raw[i] >> 4];
        out[k++] = hex[raw[i] & 15];
    }
    out[k] = '\0';
    return 0;
}

static const char *const roles[] = {"viewer", "pathologist", "coordinator", "admin"};

/* users[0] = the server token's owner, then each "NAME:ROLE:TOKEN". */
static int add_users(cs_server *s)
{
    s->users = calloc((size_t)s->o.nusers + 1, sizeof(*s->users));
    if (!s->users)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->users[0] = (user_entry){strdup("owner"), strdup("admin"), strdup(s->token)};
    s->nusers = 1;
    for (int i = 0; i < s->o.nusers; i++) {
        const char *spec = s->o.users[i], *c1 = strchr(spec, ':');
        const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        int known = 0;
        for (size_t k = 0; c2 && k < sizeof(roles) / sizeof(roles[0]); k++)
            known |= strlen(roles[k]) == (size_t)(c2 - c1 - 1) &&
                     !strncmp(roles[k], c1 + 1, (size_t)(c2 - c1 - 1));
        if (!c2 || c1 == spec || strlen(c2 + 1) < 16 || !known)
            return cs_error_set(CS_EINVAL,
                                "user %d: expected NAME:ROLE:TOKEN with ROLE one of viewer, "
                                "pathologist, coordinator, admin and a token of 16 or more "
                                "characters",
                                i + 1);
        user_entry *u = &s->users[s->nusers++];
        u->name = strndup(spec, (size_t)(c1 - spec));
        u->role = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
        u->token = strdup(c2 + 1);
        if (!u->name || !u->role || !u->token)
            return cs_error_set(CS_ENOMEM, "out of memory");
    }
    return 0;
}

/* The store, the session, and the plugins (after the slides are known). */
static int start_session(cs_server *s)
{
    const char *path = s->o.db_path;
    if (!path) {
        char tmpl[] = "/tmp/consilium-XXXXXX.db";
        int fd = mkstemps(tmpl, 3);
        if (fd < 0)
            return cs_error_set(CS_EIO, "cannot create a temporary database: %s", strerror(errno));
        close(fd);
        unlink(tmpl); /* SQLite creates it afresh */
        if (!(s->tmp_db = strdup(tmpl)))
            return cs_error_set(CS_ENOMEM, "out of memory");
        path = s->tmp_db;
        cs_log(s->log, CS_LOG_WARN,
               "no --db given: annotations go to a temporary database, removed at exit");
    }
    int r = cs_session_new(&s->session, path, s->bus, s->log);
    if (r == 0 && s->o.dicom_store) /* after the session: the schema is migrated */
        r = cs_dicomweb_new(&s->dicomweb, path, s->o.dicom_store, s->o.threads,
                            s->o.dicom_prerender);
    if (r < 0)
        return r;
    for (int i = 0; i < s->nslides && r == 0; i++) {
        slide_entry *e = &s->slides[i];
        r = cs_session_add_slide(s->session, e->id, e->slide ? cs_slide_mpp_x(e->slide) : 0,
                                 e->slide ? cs_slide_mpp_y(e->slide) : 0);
    }
    if (r == 0)
        r = cs_glue_new(&s->glue, s->session, s->bus);
    if (r < 0 || s->o.nplugin_dirs == 0)
        return r;
    cs_plughost_opts po = CS_PLUGHOST_OPTS_INIT;
    po.lib_dir = s->o.plugin_lib;
    cs_plughost_core core = cs_glue_plughost_core(s->glue);
    if ((r = cs_plughost_new(&s->plugins, &po, &core)) < 0)
        return r;
    cs_glue_set_host(s->glue, s->plugins);
    for (int i = 0; i < s->o.nplugin_dirs; i++)
        if ((r = cs_plughost_add_dir(s->plugins, s->o.plugin_dirs[i])) < 0)
            return r;
    s->plugins_sub = cs_bus_subscribe(s->bus, cs_plughost_bus_fn, s->plugins);
    if (s->plugins_sub < 0)
        return (int)s->plugins_sub;
    r = cs_plughost_start(s->plugins);
    cs_log(s->log, CS_LOG_INFO, "plugins: %d running", r);
    return r < 0 ? r : 0;
}

static void free_body(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    body_buf *b = *con_cls;
    if (b) {
        free(b->data);
        free(b);
        *con_cls = NULL;
    }
}

int cs_server_new(cs_server **out, const cs_server_opts *opts)
{
    cs_server *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    pthread_mutex_init(&s->audit.lock, NULL);
    s->audit.fd = -1;
    cs_server_opts d = CS_SERVER_OPTS_INIT;
    s->o = opts ? *opts : d;
    int r = cs_log_new(&s->log, "net");
    if (r < 0) {
        free(s);
        return r;
    }
    s->bind = dup_or(s->o.bind, "127.0.0.1");
    s->cors = dup_or(s->o.cors_origin, "*");
    if (s->o.token && *s->o.token) {
        s->token = strdup(s->o.token);
    } else {
        char t[64];
        if ((r = random_token(t, sizeof(t))) < 0) {
            cs_server_free(s);
            return r;
        }
        s->token = strdup(t);
    }
    if (s->o.tls_cert && s->o.tls_key) {
        if ((r = read_file(s->o.tls_cert, &s->tls_cert_pem)) < 0 ||
            (r = read_file(s->o.tls_key, &s->tls_key_pem)) < 0) {
            cs_server_free(s);
            return r;
        }
    }
    if (s->o.audit_path) {
        s->audit.fd = open(s->o.audit_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (s->audit.fd < 0) {
            r = cs_error_set(CS_EIO, "audit log %s: %s", s->o.audit_path, strerror(errno));
            cs_server_free(s);
            return r;
        }
    }
    if (s->o.threads < 1)
        s->o.threads = 1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if ((r = cs_pool_new(&s->decoders, "decode", ncpu > 1 ? (int)ncpu : 1, 256)) < 0 ||
        (r = cs_tilecache_new(&s->cache, s->o.cache_bytes)) < 0 || (r = cs_bus_new(&s->bus)) < 0 ||
        (r = cs_ws_new(&s->ws, s->bus, &(cs_ws_core){s, ws_command, ws_replay, ws_last_seq}, NULL,
                       s->log)) < 0) {
        cs_server_free(s);
        return r;
    }
    if (!s->bind || !s->cors || !s->token) {
        cs_server_free(s);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    if ((r = add_users(s)) < 0) {
        cs_server_free(s);
        return r;
    }
    *out = s;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding for paths and arguments that leaves "%00" as it is: a
 * decoded NUL would end the C string early and "good%00.dzi" would name the
 * slide "good". */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        int hi = r[0] == '%' ? hexval(r[1]) : -1, lo = hi >= 0 ? hexval(r[2]) : -1;
        if (hi >= 0 && lo >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    cs_log(cls, CS_LOG_VERBOSE, "microhttpd: %s", msg);
}

int cs_server_start(cs_server *s)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->o.port);
    if (inet_pton(AF_INET, s->bind, &sa.sin_addr) != 1)
        return cs_error_set(CS_EINVAL, "bind address '%s' is not an IPv4 address", s->bind);
    int r = s->session ? 0 : start_session(s);
    if (r < 0)
        return r;
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
    if (s->tls_cert_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, s->log, MHD_OPTION_UNESCAPE_CALLBACK, unescape, s, MHD_OPTION_NOTIFY_COMPLETED,
        free_body, s, MHD_OPTION_ARRAY, s->tls_cert_pem ? tls : tls + 2, MHD_OPTION_END);
    if (!s->daemon)
        return cs_error_set(CS_EIO, "cannot listen on %s:%d (in use, or not allowed)", s->bind,
                            s->o.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->o.port;
    return 0;
}

int cs_server_port(const cs_server *s)
{
    return s->port;
}

const char *cs_server_token(const cs_server *s)
{
    return s->token;
}

cs_bus *cs_server_bus(cs_server *s)
{
    return s->bus;
}

void cs_server_dicom_stored(cs_server *s, const char *path, const char *ts)
{
    cs_dicomweb_prerender(s->dicomweb, path, ts);
}

void cs_server_free(cs_server *s)
{
    if (!s)
        return;
    cs_ws_close_all(s->ws); /* libmicrohttpd must not stop with upgraded connections open */
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    /* No request runs now. Plugins and WebSocket threads stop calling the
     * session; the session finishes what is queued (its answers still reach
     * the host and the hub); then the plugins stop. */
    cs_glue_close(s->glue);
    cs_session_free(s->session);
    if (s->plugins_sub > 0)
        cs_bus_unsubscribe(s->bus, s->plugins_sub);
    cs_plughost_free(s->plugins);
    cs_ws_free(s->ws);
    cs_glue_free(s->glue);
    cs_dicomweb_free(s->dicomweb);
    if (s->tmp_db) {
        static const char *const ext[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            char p[64];
            snprintf(p, sizeof(p), "%s%s", s->tmp_db, ext[i]);
            unlink(p);
        }
        free(s->tmp_db);
    }
    for (int i = 0; i < s->nusers; i++) {
        free(s->users[i].name);
        free(s->users[i].role);
        free(s->users[i].token);
    }
    free(s->users);
    cs_pool_free(s->decoders); /* no request runs, so no job is queued */
    for (int i = 0; i < s->nslides; i++) {
        cs_tiles_free(s->slides[i].tiles);
        cs_slide_close(s->slides[i].slide);
        free(s->slides[i].path);
    }
    free(s->slides);
    cs_tilecache_free(s->cache);
    if (s->audit.fd >= 0)
        close(s->audit.fd);
    pthread_mutex_destroy(&s->audit.lock);
    free(s->bind);
    free(s->cors);
    free(s->token);
    free(s->tls_cert_pem);
    free(s->tls_key_pem);
    cs_bus_free(s->bus); /* last: every subscriber has gone */
    cs_log_free(s->log);
    free(s);
}
