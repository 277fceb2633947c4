/* The wiring between the plugin host and the session: plugin commands
 * become session writes whose commit answers command.done; plugin reads go
 * to the session's read pool; cs.emit goes on the bus.
 *
 * Shutdown order (cs_server_free): cs_glue_close() under the write lock, so
 * no plugin thread is inside the session any more; then the session drains
 * its queue (answers still reach the host); then the host stops. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"

#include "rest.h"
#include "ws.h"

struct cs_glue {
    pthread_rwlock_t lock;
    int closed;
    cs_session *session;
    cs_bus *bus;
    cs_plughost *host;
};

typedef struct {
    cs_plughost *host;
    int64_t req;
    char plugin[];
} pending;

int cs_glue_new(cs_glue **out, cs_session *s, cs_bus *bus)
{
    cs_glue *g = calloc(1, sizeof(*g));
    if (!g)
        return cs_error_set(CS_ENOMEM, "out of memory");
    pthread_rwlock_init(&g->lock, NULL);
    g->session = s;
    g->bus = bus;
    *out = g;
    return 0;
}

void cs_glue_set_host(cs_glue *g, cs_plughost *h)
{
    g->host = h;
}

void cs_glue_close(cs_glue *g)
{
    if (!g)
        return;
    pthread_rwlock_wrlock(&g->lock);
    g->closed = 1;
    pthread_rwlock_unlock(&g->lock);
}

void cs_glue_free(cs_glue *g)
{
    if (!g)
        return;
    pthread_rwlock_destroy(&g->lock);
    free(g);
}

static void plugin_done(void *userdata, int code, const json_t *result, const char *message)
{
    pending *p = userdata;
    const char *err = NULL;
    if (code == CS_ECONFLICT)
        err = "conflict";
    else if (code < 0)
        err = message && *message ? message : cs_strerror(code);
    cs_plughost_complete(p->host, p->plugin, p->req, result, err);
    free(p);
}

static int plugin_command(void *userdata, const char *plugin, int64_t req, const json_t *cmd)
{
    cs_glue *g = userdata;
    char user[160];
    snprintf(user, sizeof(user), "plugin:%s", plugin);
    cs_session_actor who = {user, plugin, "plugin"};
    size_t n = strlen(plugin) + 1;
    pending *p = malloc(sizeof(*p) + n);
    if (!p)
        return cs_error_set(CS_ENOMEM, "out of memory");
    p->host = g->host;
    p->req = req;
    memcpy(p->plugin, plugin, n);
    pthread_rwlock_rdlock(&g->lock);
    int r = g->closed ? cs_error_set(CS_ECLOSED, "the node is shutting down")
                      : cs_session_submit(g->session, &who, cmd, plugin_done, p);
    pthread_rwlock_unlock(&g->lock);
    if (r < 0)
        free(p);
    return r;
}

static json_t *plugin_read(void *userdata, const char *plugin, const json_t *query,
                           const char **err)
{
    cs_glue *g = userdata;
    cs_session_actor who = {plugin, plugin, "plugin"};
    json_t *out = NULL;
    int code = 0;
    pthread_rwlock_rdlock(&g->lock);
    if (g->closed)
        code = cs_error_set(CS_ECLOSED, "the node is shutting down");
    else
        out = cs_session_read(g->session, &who, query, &code);
    pthread_rwlock_unlock(&g->lock);
    if (!out && err)
        *err = cs_error_last();
    return out;
}

static void plugin_emit(void *userdata, const char *plugin, const char *name, const json_t *data)
{
    cs_glue *g = userdata;
    const char *slide = json_string_value(json_object_get(data, "slide"));
    char topic[300] = "";
    if (slide)
        snprintf(topic, sizeof(topic), "slide:%s", slide);
    cs_event *ev =
        cs_event_new(name, topic, 0, plugin, data ? json_deep_copy(data) : json_object());
    if (ev && g->bus)
        cs_bus_post(g->bus, ev);
    cs_event_unref(ev);
}

cs_plughost_core cs_glue_plughost_core(cs_glue *g)
{
    cs_plughost_core c = {g, plugin_command, plugin_read, plugin_emit, NULL};
    return c;
}

/* ---- WebSocket clients ---- */

typedef struct {
    cs_ws *hub;
    int64_t conn;
    json_t *req;
    int64_t base_rev;
} ws_pending;

static void ws_send_json(cs_ws *hub, int64_t conn, json_t *frame)
{
    char *t = frame ? json_dumps(frame, JSON_COMPACT) : NULL;
    json_decref(frame);
    if (t)
        cs_ws_send(hub, conn, t, strlen(t));
    free(t);
}

static void ws_reply_error(cs_ws *hub, int64_t conn, json_t *req, int code, const char *message,
                           const json_t *current)
{
    json_t *err;
    cs_rest_error(code, message, &err);
    json_t *f =
        json_pack("{s:s, s:O?, s:b, s:O, s:O}", "type", "reply", "req", req, "ok", 0, "error",
                  json_object_get(err, "error"), "message", json_object_get(err, "message"));
    if (current)
        json_object_set(f, "current", (json_t *)current);
    json_decref(err);
    ws_send_json(hub, conn, f);
}

static void ws_done(void *userdata, int code, const json_t *result, const char *message)
{
    ws_pending *p = userdata;
    if (code == 0) {
        ws_send_json(p->hub, p->conn,
                     json_pack("{s:s, s:O?, s:b, s:O}", "type", "reply", "req", p->req, "ok", 1,
                               "data", result ? result : json_null()));
    } else {
        const json_t *cur = code == CS_ECONFLICT ? json_object_get(result, "current") : NULL;
        ws_reply_error(p->hub, p->conn, p->req, code, message, cur);
        if (cur)
            ws_send_json(p->hub, p->conn,
                         json_pack("{s:s, s:i, s:s, s:{s:O?, s:O, s:I}}", "type", "event", "seq", 0,
                                   "event", "annotation.conflict", "data", "id",
                                   json_object_get(cur, "id"), "current", cur, "base_rev",
                                   (json_int_t)p->base_rev));
    }
    json_decref(p->req);
    free(p);
}

void cs_glue_ws_command(cs_glue *g, cs_ws *hub, int64_t conn, const char *user, const char *role,
                        json_t *msg)
{
    const char *op = json_string_value(json_object_get(msg, "op"));
    json_t *req = json_object_get(msg, "req");
    if (!op ||
        (strcmp(op, "annot.create") && strcmp(op, "annot.update") && strcmp(op, "annot.delete"))) {
        char text[160];
        snprintf(text, sizeof(text), "unknown op \"%.100s\"", op ? op : "");
        ws_reply_error(hub, conn, req, CS_EINVAL, text, NULL);
        return;
    }
    if (!strcmp(role, "viewer")) {
        ws_reply_error(hub, conn, req, CS_EPERM, "your role may not write annotations", NULL);
        return;
    }
    char client[32];
    snprintf(client, sizeof(client), "ws:%lld", (long long)conn);
    cs_session_actor who = {user, user, client};
    ws_pending *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->hub = hub;
    p->conn = conn;
    p->req = req ? json_incref(req) : NULL;
    p->base_rev = json_integer_value(json_object_get(msg, "rev"));
    pthread_rwlock_rdlock(&g->lock);
    int r = g->closed ? cs_error_set(CS_ECLOSED, "the node is shutting down")
                      : cs_session_submit(g->session, &who, msg, ws_done, p);
    pthread_rwlock_unlock(&g->lock);
    if (r < 0) {
        ws_reply_error(hub, conn, req, r, cs_error_last(), NULL);
        json_decref(p->req);
        free(p);
    }
}

int cs_glue_ws_replay(cs_glue *g, const char *slide, int64_t since, int64_t upto,
                      void (*emit)(void *ctx, cs_event *ev), void *ctx)
{
    pthread_rwlock_rdlock(&g->lock);
    int r = g->closed ? cs_error_set(CS_ECLOSED, "the node is shutting down")
                      : cs_session_replay(g->session, slide, since, upto, emit, ctx);
    pthread_rwlock_unlock(&g->lock);
    return r;
}

int64_t cs_glue_last_seq(cs_glue *g)
{
    return cs_session_last_seq(g->session);
}
