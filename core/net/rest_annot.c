/* REST for annotations over the session (see core/net/PROTOCOL.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/annot.h"
#include "cs/err.h"

#include "rest.h"

unsigned cs_rest_error(int code, const char *message, json_t **out)
{
    static const struct {
        int code;
        unsigned status;
        const char *word;
    } map[] = {
        {CS_EINVAL, 400, "bad_request"},  {CS_EPERM, 403, "forbidden"},
        {CS_ENOTFOUND, 404, "not_found"}, {CS_ECONFLICT, 409, "conflict"},
        {CS_EGONE, 410, "gone"},          {CS_ETOOBIG, 413, "too_large"},
        {CS_EAGAIN, 503, "busy"},         {CS_ECLOSED, 503, "shutting_down"},
    };
    unsigned status = 500;
    const char *word = "internal";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].code == code) {
            status = map[i].status;
            word = map[i].word;
        }
    }
    *out = json_pack("{s:s, s:s}", "error", word, "message", message ? message : "");
    return status;
}

static unsigned not_allowed(const char *message, json_t **out)
{
    *out = json_pack("{s:s, s:s}", "error", "method_not_allowed", "message", message);
    return 405;
}

static unsigned fail(int code, json_t **out)
{
    return cs_rest_error(code, cs_error_last(), out);
}

/* Run a write and shape its answer: conflicts carry the current version. */
static unsigned write(cs_session *s, const cs_session_actor *who, json_t *cmd, unsigned ok,
                      json_t **out)
{
    json_t *res = NULL;
    int r = cs_session_call(s, who, cmd, &res);
    json_decref(cmd);
    if (r == 0) {
        *out = res ? res : json_object();
        return ok;
    }
    unsigned st = fail(r, out);
    if (r == CS_ECONFLICT && res)
        json_object_set(*out, "current", json_object_get(res, "current"));
    json_decref(res);
    return st;
}

static int parse_bbox(const char *text, json_t **out)
{
    double b[4];
    char tail;
    if (sscanf(text, "%lf,%lf,%lf,%lf%c", &b[0], &b[1], &b[2], &b[3], &tail) != 4)
        return cs_error_set(CS_EINVAL, "bbox: expected x0,y0,x1,y1");
    *out = json_pack("[f, f, f, f]", b[0], b[1], b[2], b[3]);
    return 0;
}

static int parse_body(const cs_rest_request *rq, json_t **out)
{
    json_error_t je;
    if (!rq->body || !rq->body_len)
        return cs_error_set(CS_EINVAL, "body: a JSON object is required");
    json_t *j = json_loadb(rq->body, rq->body_len, 0, &je);
    if (!j)
        return cs_error_set(CS_EINVAL, "body: not JSON (line %d: %s)", je.line, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return cs_error_set(CS_EINVAL, "body: expected a JSON object");
    }
    *out = j;
    return 0;
}

static unsigned collection(cs_session *s, const cs_session_actor *who, const cs_rest_request *rq,
                           json_t **out, const char **type)
{
    if (!strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD")) {
        json_t *q = json_pack("{s:s, s:s}", "op", "annot.list", "slide", rq->slide), *bb = NULL;
        if (rq->bbox) {
            if (parse_bbox(rq->bbox, &bb) < 0) {
                json_decref(q);
                return fail(CS_EINVAL, out);
            }
            json_object_set_new(q, "bbox", bb);
        }
        int code;
        json_t *list = cs_session_read(s, who, q, &code);
        json_decref(q);
        if (!list)
            return fail(code, out);
        if (rq->format && !strcmp(rq->format, "geojson")) {
            *out = cs_annot_to_geojson(json_object_get(list, "annotations"));
            *type = "application/geo+json";
            json_decref(list);
        } else if (rq->format && *rq->format && strcmp(rq->format, "json")) {
            json_decref(list);
            cs_error_set(CS_EINVAL, "format: \"%s\" is not json or geojson", rq->format);
            return fail(CS_EINVAL, out);
        } else {
            *out = list;
        }
        return 200;
    }
    if (strcmp(rq->method, "POST"))
        return not_allowed("use GET or POST on a slide's annotations", out);
    if (!rq->can_write)
        return cs_rest_error(CS_EPERM, "your role may not write annotations", out);
    json_t *body;
    if (parse_body(rq, &body) < 0)
        return fail(CS_EINVAL, out);
    const char *t = json_string_value(json_object_get(body, "type"));
    json_t *cmd;
    if (t && (!strcmp(t, "FeatureCollection") || !strcmp(t, "Feature")))
        cmd =
            json_pack("{s:s, s:s, s:o}", "op", "annot.import", "slide", rq->slide, "geojson", body);
    else
        cmd = json_pack("{s:s, s:s, s:o}", "op", "annot.create", "slide", rq->slide, "annotation",
                        body);
    return write(s, who, cmd, 201, out);
}

/* The annotation must belong to the slide of the URL. */
static int check_owner(cs_session *s, const cs_session_actor *who, const cs_rest_request *rq,
                       json_t **cur)
{
    int code;
    json_t *q = json_pack("{s:s, s:s}", "op", "annot.get", "id", rq->aid);
    json_t *a = cs_session_read(s, who, q, &code);
    json_decref(q);
    if (!a)
        return code;
    if (strcmp(json_string_value(json_object_get(a, "slide")) ?: "", rq->slide)) {
        json_decref(a);
        return cs_error_set(CS_ENOTFOUND, "no annotation \"%s\" on slide %s", rq->aid, rq->slide);
    }
    *cur = a;
    return 0;
}

static unsigned item(cs_session *s, const cs_session_actor *who, const cs_rest_request *rq,
                     json_t **out)
{
    json_t *cur;
    int r = check_owner(s, who, rq, &cur);
    if (r < 0)
        return fail(r, out);
    if (!strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD")) {
        *out = cur;
        return 200;
    }
    json_decref(cur);
    if (strcmp(rq->method, "PATCH") && strcmp(rq->method, "DELETE"))
        return not_allowed("use GET, PATCH or DELETE on an annotation", out);
    if (!rq->can_write)
        return cs_rest_error(CS_EPERM, "your role may not write annotations", out);
    json_t *cmd;
    if (!strcmp(rq->method, "DELETE")) {
        cmd = json_pack("{s:s, s:s}", "op", "annot.delete", "id", rq->aid);
        if (rq->rev) {
            char *end;
            long long v = strtoll(rq->rev, &end, 10);
            if (*end || end == rq->rev) {
                json_decref(cmd);
                return cs_rest_error(CS_EINVAL, "rev: expected an integer", out);
            }
            json_object_set_new(cmd, "rev", json_integer(v));
        }
        return write(s, who, cmd, 200, out);
    }
    json_t *body;
    if (parse_body(rq, &body) < 0)
        return fail(CS_EINVAL, out);
    json_t *rev = json_object_get(body, "rev");
    if (!json_is_integer(rev)) {
        json_decref(body);
        return cs_rest_error(CS_EINVAL, "rev: the base revision is required", out);
    }
    cmd = json_pack("{s:s, s:s, s:O, s:O}", "op", "annot.update", "id", rq->aid, "rev", rev,
                    "patch", body);
    json_decref(body);
    return write(s, who, cmd, 200, out);
}

unsigned cs_rest_annotations(cs_session *s, const cs_session_actor *who, const cs_rest_request *rq,
                             json_t **out, const char **content_type)
{
    *content_type = "application/json";
    if (rq->body_len > CS_REST_MAX_BODY)
        return cs_rest_error(CS_ETOOBIG, "body larger than 16 MiB", out);
    return rq->aid ? item(s, who, rq, out) : collection(s, who, rq, out, content_type);
}
