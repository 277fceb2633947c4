/* viewer/source: see source.h. */
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cs/err.h"

typedef struct {
    char *data;
    size_t len;
} body;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > (17u << 20))
        return 0;
    char *nd = realloc(b->data, b->len + n + 1);
    if (!nd)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->data = nd;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

int vw_source_is_url(const char *target)
{
    return strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0;
}

/* The "message" of a JSON error body, or the body itself, or "". */
static void error_text(const body *b, char *out, size_t n)
{
    out[0] = '\0';
    if (!b->data)
        return;
    json_t *j = json_loads(b->data, 0, NULL);
    const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
    if (m)
        snprintf(out, n, "%s", m);
    else
        snprintf(out, n, "%.200s", b->data);
    json_decref(j);
}

int vw_http_get(const char *url, const char *token, int insecure, const char *cacert,
                long timeout_s, char **body_out, long *status, char *err)
{
    *body_out = NULL;
    *status = 0;
    err[0] = '\0';
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, CURL_ERROR_SIZE, "out of memory");
        return CURLE_OUT_OF_MEMORY;
    }
    body b = {0};
    struct curl_slist *hdr = NULL;
    char auth[1100];
    if (token && *token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdr = curl_slist_append(NULL, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "consilium-view/0.1");
    if (insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK && !*err)
        snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
    *body_out = b.data;
    return (int)cc;
}

/* GET base + path; 200 gives the parsed JSON in @p out. */
static int get_json(const vw_source *s, const char *path, const char *what, json_t **out)
{
    size_t n = strlen(s->base) + strlen(path) + 1;
    char *url = malloc(n);
    if (!url)
        return cs_error_set(CS_ENOMEM, "out of memory");
    snprintf(url, n, "%s%s", s->base, path);
    char cerr[CURL_ERROR_SIZE];
    long status;
    body b = {0};
    int cc = vw_http_get(url, s->token, s->insecure, s->cacert, 120L, &b.data, &status, cerr);
    char msg[300];
    error_text(&b, msg, sizeof(msg));
    int r = 0;
    if (cc != CURLE_OK)
        r = cs_error_set(CS_EIO, "cannot reach the server at %s: %s%s", url, cerr,
                         cc == CURLE_PEER_FAILED_VERIFICATION
                             ? " (give the server's CA with --cacert FILE, or --insecure)"
                             : "");
    else if (status == 401)
        r = cs_error_set(CS_EPERM,
                         s->token && *s->token
                             ? "the server refused the access token (HTTP 401 Unauthorized) for "
                               "%s: check --token or CONSILIUM_TOKEN"
                             : "the server needs an access token (HTTP 401 Unauthorized) for %s: "
                               "pass --token T or set CONSILIUM_TOKEN",
                         url);
    else if (status == 404)
        r = cs_error_set(CS_ENOTFOUND, "unknown %s on the server (HTTP 404 for %s)%s%s", what, url,
                         *msg ? ": " : "", msg);
    else if (status != 200)
        r = cs_error_set(status == 422 || status == 410 ? CS_EFORMAT : CS_EIO,
                         "HTTP %ld for %s%s%s", status, url, *msg ? ": " : "", msg);
    if (r == 0) {
        json_error_t je;
        *out = b.data ? json_loads(b.data, 0, &je) : NULL;
        if (!*out)
            r = cs_error_set(CS_EFORMAT, "%s did not answer JSON", url);
    }
    free(b.data);
    free(url);
    return r;
}

static int open_url(vw_source *s, const char *target)
{
    /* split into base and slide id */
    const char *start = strstr(target, "://") + 3;
    const char *end = target + strcspn(target, "?#");
    const char *sl = NULL;
    for (const char *p = strstr(start, "/slides/"); p && p < end; p = strstr(p + 1, "/slides/"))
        sl = p;
    char id[200] = "";
    size_t blen;
    if (sl) {
        blen = (size_t)(sl - target);
        const char *ib = sl + 8, *ie = end;
        while (ie > ib && ie[-1] == '/')
            ie--;
        if (ie - ib > 4 && strncmp(ie - 4, ".dzi", 4) == 0)
            ie -= 4;
        if (memchr(ib, '/', (size_t)(ie - ib)) || ie == ib || (size_t)(ie - ib) >= sizeof(id))
            return cs_error_set(CS_EINVAL,
                                "cannot read the slide id in %s; expected "
                                "http(s)://HOST:PORT/slides/ID.dzi, .../slides/ID or "
                                "http(s)://HOST:PORT",
                                target);
        memcpy(id, ib, (size_t)(ie - ib));
        id[ie - ib] = '\0';
    } else {
        blen = (size_t)(end - target);
        while (blen > (size_t)(start - target) && target[blen - 1] == '/')
            blen--;
        if (blen >= 7 && strncmp(target + blen - 7, "/slides", 7) == 0)
            blen -= 7;
    }
    if (!(s->base = malloc(blen + 1)))
        return cs_error_set(CS_ENOMEM, "out of memory");
    memcpy(s->base, target, blen);
    s->base[blen] = '\0';

    json_t *j = NULL;
    int r;
    if (!*id) {
        if ((r = get_json(s, "/slides", "listing", &j)) < 0)
            return r;
        json_t *first = json_array_get(json_object_get(j, "slides"), 0);
        const char *fid = json_string_value(json_object_get(first, "id"));
        if (!fid || strlen(fid) >= sizeof(id)) {
            json_decref(j);
            return cs_error_set(CS_ENOTFOUND, "the server at %s has no slides", s->base);
        }
        snprintf(id, sizeof(id), "%s", fid);
        json_decref(j);
    }
    char path[300];
    snprintf(path, sizeof(path), "/slides/%s", id);
    char what[260];
    snprintf(what, sizeof(what), "slide '%s'", id);
    if ((r = get_json(s, path, what, &j)) < 0)
        return r;
    json_t *dzi = json_object_get(json_object_get(j, "tile_formats"), "dzi");
    json_t *jw = json_object_get(j, "width"), *jh = json_object_get(j, "height");
    json_t *jt = json_object_get(dzi, "tile_size"), *jo = json_object_get(dzi, "overlap");
    if (!json_is_integer(jw) || !json_is_integer(jh) || !json_is_integer(jt) ||
        !json_is_integer(jo)) {
        const char *st = json_string_value(json_object_get(j, "status"));
        const char *err = json_string_value(json_object_get(j, "error"));
        r = cs_error_set(CS_EFORMAT, "slide '%s' cannot be shown: %s%s%s", id,
                         st ? st : "no DeepZoom geometry in its description", err ? ": " : "",
                         err ? err : "");
        json_decref(j);
        return r;
    }
    r = vw_geom_init(&s->geom, json_integer_value(jw), json_integer_value(jh),
                     (int)json_integer_value(jt), (int)json_integer_value(jo));
    s->mpp_x = json_number_value(json_object_get(j, "mpp_x"));
    s->mpp_y = json_number_value(json_object_get(j, "mpp_y"));
    if (!(s->mpp_y > 0))
        s->mpp_y = s->mpp_x;
    snprintf(s->id, sizeof(s->id), "%s", id);
    json_decref(j);
    if (r < 0)
        return r;
    snprintf(s->name, sizeof(s->name), "%s", id);
    size_t n = blen + strlen(id) + 16;
    if (!(s->tile_url = malloc(n)))
        return cs_error_set(CS_ENOMEM, "out of memory");
    snprintf(s->tile_url, n, "%s/slides/%s_files/", s->base, id);
    return 0;
}

static int open_file(vw_source *s, const char *path)
{
    char why[400];
    int r = cs_slide_open(&s->slide, path);
    if (r < 0) {
        snprintf(why, sizeof(why), "%s", cs_error_last());
        return cs_error_set(r, "cannot open slide file: %s", why);
    }
    if ((r = cs_tiles_new(&s->tiles, s->slide, NULL)) < 0) {
        snprintf(why, sizeof(why), "%s", cs_error_last());
        return cs_error_set(r, "cannot make tiles of %s: %s", path, why);
    }
    cs_slide_level l0;
    if ((r = cs_slide_get_level(s->slide, 0, &l0)) < 0)
        return r;
    if ((r = vw_geom_init(&s->geom, l0.width, l0.height, cs_tiles_tile_size(s->tiles),
                          cs_tiles_overlap(s->tiles))) < 0)
        return r;
    if (s->geom.nlevels != cs_tiles_level_count(s->tiles))
        return cs_error_set(CS_EFORMAT, "DeepZoom level count disagrees (%d vs %d)",
                            s->geom.nlevels, cs_tiles_level_count(s->tiles));
    s->mpp_x = cs_slide_mpp_x(s->slide);
    s->mpp_y = cs_slide_mpp_y(s->slide);
    if (!(s->mpp_y > 0))
        s->mpp_y = s->mpp_x;
    const char *base = strrchr(path, '/');
    snprintf(s->name, sizeof(s->name), "%s", base ? base + 1 : path);
    return 0;
}

int vw_source_open(vw_source *s, const char *target, const char *token, int insecure,
                   const char *cacert)
{
    memset(s, 0, sizeof(*s));
    s->token = token;
    s->insecure = insecure;
    s->cacert = cacert;
    int r = vw_source_is_url(target) ? open_url(s, target) : open_file(s, target);
    if (r < 0) {
        /* keep the message across the cleanup */
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", cs_error_last());
        vw_source_close(s);
        cs_error_set(r, "%s", msg);
    }
    return r;
}

void vw_source_close(vw_source *s)
{
    cs_tiles_free(s->tiles);
    cs_slide_close(s->slide);
    free(s->base);
    free(s->tile_url);
    s->tiles = NULL;
    s->slide = NULL;
    s->base = s->tile_url = NULL;
}
