/* viewer/dicomweb: see dicomweb.h. */
#include "dicomweb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>

#include "cs/err.h"

#define MAX_BODY ((size_t)512 << 20) /* a frame of 16k x 16k x 2 bytes fits */

void vw_dw_resp_free(vw_dw_resp *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    vw_dw_resp *r = userdata;
    size_t n = size * nmemb;
    if (r->len + n > MAX_BODY) {
        r->truncated = 1;
        return 0;
    }
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, ptr, n);
    r->body = nb;
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    vw_dw_resp *r = userdata;
    size_t n = size * nitems;
    static const char ct[] = "content-type:";
    if (n > sizeof(ct) - 1 && strncasecmp(ptr, ct, sizeof(ct) - 1) == 0) {
        const char *v = ptr + sizeof(ct) - 1;
        const char *e = ptr + n;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        size_t len = (size_t)(e - v);
        if (len >= sizeof(r->ctype))
            len = sizeof(r->ctype) - 1;
        memcpy(r->ctype, v, len);
        r->ctype[len] = '\0';
    }
    return n;
}

int vw_dw_setup(vw_dw *c, CURL *easy, const char *url, const char *accept, vw_dw_resp *r,
                struct curl_slist **hdrs)
{
    memset(r, 0, sizeof(*r));
    *hdrs = NULL;
    char line[1200];
    if (c->token && *c->token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", c->token);
        *hdrs = curl_slist_append(*hdrs, line);
    }
    if (accept) {
        snprintf(line, sizeof(line), "Accept: %s", accept);
        struct curl_slist *h = curl_slist_append(*hdrs, line);
        if (h)
            *hdrs = h;
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT, c->timeout_s > 0 ? c->timeout_s : 120L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "consilium-view/0.1");
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    if (c->insecure) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->cacert)
        curl_easy_setopt(easy, CURLOPT_CAINFO, c->cacert);
    atomic_fetch_add(&c->requests, 1);
    return 0;
}

/* The server's own words: JSON "message"/"Message" (Orthanc, Consilium),
 * else the start of a text body. */
static void server_words(const vw_dw_resp *r, char *out, size_t n)
{
    out[0] = '\0';
    if (!r->body || !r->len)
        return;
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *m = NULL;
    if (json_is_object(j)) {
        m = json_string_value(json_object_get(j, "message"));
        if (!m)
            m = json_string_value(json_object_get(j, "Message"));
        if (!m)
            m = json_string_value(json_object_get(j, "error"));
    }
    if (m) {
        snprintf(out, n, ": %s", m);
    } else if (!j && strncmp(r->ctype, "text/", 5) == 0) {
        snprintf(out, n, ": %.160s", r->body);
        for (char *p = out; *p; p++)
            if (*p == '\r' || *p == '\n')
                *p = ' ';
    }
    json_decref(j);
}

int vw_dw_check(const vw_dw_resp *r, int cc, const char *what, const char *url)
{
    if (cc != CURLE_OK)
        return cs_error_set(cc == CURLE_OPERATION_TIMEDOUT ? CS_ETIMEDOUT : CS_EIO,
                            "cannot get %s from %s: %s%s", what, url, r->err[0] ? r->err : "",
                            cc == CURLE_PEER_FAILED_VERIFICATION
                                ? " (give the server's CA with --cacert FILE, or --insecure)"
                                : "");
    char words[240];
    server_words(r, words, sizeof(words));
    if (r->status == 401)
        return cs_error_set(CS_EPERM,
                            "the server refused the access token (HTTP 401 Unauthorized) for %s "
                            "at %s (give one with --token T or $CONSILIUM_TOKEN)%s",
                            what, url, words);
    if (r->status == 403)
        return cs_error_set(CS_EPERM, "access to %s is forbidden (HTTP 403) at %s%s", what, url,
                            words);
    if (r->status == 404)
        return cs_error_set(CS_ENOTFOUND, "%s not found on the server (HTTP 404) at %s%s", what,
                            url, words);
    if (r->status != 200)
        return cs_error_set(CS_EIO, "the server answered HTTP %ld for %s at %s%s", r->status, what,
                            url, words);
    return 0;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load((const atomic_int *)userdata) != 0;
}

int vw_dw_get_json(vw_dw *c, const char *path, const char *what, const atomic_int *cancel,
                   json_t **out)
{
    *out = NULL;
    char url[2400];
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    CURL *e = curl_easy_init();
    if (!e)
        return cs_error_set(CS_ENOMEM, "out of memory");
    vw_dw_resp r;
    struct curl_slist *h;
    vw_dw_setup(c, e, url, "application/dicom+json, application/json", &r, &h);
    if (cancel) {
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)cancel);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    }
    int cc = (int)curl_easy_perform(e);
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        vw_dw_resp_free(&r);
        return cs_error_set(CS_ECLOSED, "%s: cancelled", what);
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    int rc = vw_dw_check(&r, cc, what, url);
    if (rc == 0 && r.status == 200 && r.len == 0) {
        /* QIDO may answer 204 No Content (or an empty 200) for "no match" */
        *out = json_array();
    } else if (rc == 0) {
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        if (!j)
            rc = cs_error_set(CS_EFORMAT,
                              "the server's answer for %s is not valid JSON (%s, line %d) at %s",
                              what, je.text, je.line, url);
        else if (!json_is_array(j)) {
            json_decref(j);
            rc = cs_error_set(CS_EFORMAT,
                              "the server's answer for %s is JSON but not a DICOM JSON array at %s",
                              what, url);
        } else {
            *out = j;
        }
    } else if (r.status == 204) {
        rc = 0;
        *out = json_array();
    }
    vw_dw_resp_free(&r);
    return rc;
}

/* ---- multipart/related ---- */

/* The value of parameter @p name in a Content-Type (quoted or token). */
static int ctype_param(const char *ct, const char *name, char *out, size_t n)
{
    const char *p = strchr(ct, ';');
    size_t nl = strlen(name);
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        const char *ke = p;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        if (*p != '=') {
            p = *p ? p : NULL;
            continue;
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = 0;
        int match = (size_t)(ke - k) == nl && strncasecmp(k, name, nl) == 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                if (match && len + 1 < n)
                    out[len++] = *p;
                p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t') {
                if (match && len + 1 < n)
                    out[len++] = *p;
                p++;
            }
        }
        if (match) {
            out[len] = '\0';
            return len ? 0 : -1;
        }
        p = strchr(p, ';');
    }
    return -1;
}

static const char *memfind(const char *h, size_t hl, const char *n, size_t nl)
{
    if (nl == 0 || hl < nl)
        return NULL;
    for (const char *p = h; p + nl <= h + hl; p++) {
        p = memchr(p, n[0], (size_t)(h + hl - p));
        if (!p || p + nl > h + hl)
            return NULL;
        if (memcmp(p, n, nl) == 0)
            return p;
    }
    return NULL;
}

int vw_dw_multipart_first(const char *ctype, const char *body, size_t len, const char **part,
                          size_t *plen, char *err, size_t errn)
{
    *part = NULL;
    *plen = 0;
    if (strncasecmp(ctype, "multipart/related", 17) != 0) {
        snprintf(err, errn, "the answer is %s, not multipart/related",
                 ctype[0] ? ctype : "untyped");
        return CS_EFORMAT;
    }
    char bnd[200];
    if (ctype_param(ctype, "boundary", bnd, sizeof(bnd)) < 0) {
        snprintf(err, errn, "multipart answer without a boundary parameter (Content-Type: %s)",
                 ctype);
        return CS_EFORMAT;
    }
    char delim[210];
    int dl = snprintf(delim, sizeof(delim), "--%s", bnd);
    const char *d = memfind(body, len, delim, (size_t)dl);
    if (!d || (d != body && (d < body + 2 || d[-1] != '\n'))) {
        snprintf(err, errn, "multipart answer without its first boundary (%zu bytes)", len);
        return CS_EFORMAT;
    }
    const char *p = d + dl;
    const char *end = body + len;
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
        snprintf(err, errn, "multipart answer with no part");
        return CS_EFORMAT;
    }
    /* the rest of the boundary line, then the part's headers up to a blank line */
    const char *hs = memfind(p, (size_t)(end - p), "\r\n", 2);
    if (!hs) {
        snprintf(err, errn, "truncated multipart answer (part headers cut off)");
        return CS_EFORMAT;
    }
    const char *data;
    if (end - hs >= 4 && memcmp(hs, "\r\n\r\n", 4) == 0) {
        data = hs + 4; /* no part headers */
    } else {
        const char *he = memfind(hs, (size_t)(end - hs), "\r\n\r\n", 4);
        if (!he) {
            snprintf(err, errn, "truncated multipart answer (part headers cut off)");
            return CS_EFORMAT;
        }
        data = he + 4;
    }
    char close[214];
    int cl = snprintf(close, sizeof(close), "\r\n--%s", bnd);
    const char *e = memfind(data, (size_t)(end - data), close, (size_t)cl);
    if (!e) {
        snprintf(err, errn,
                 "truncated multipart answer: %zu bytes of the part arrived, its closing "
                 "boundary did not",
                 (size_t)(end - data));
        return CS_EFORMAT;
    }
    *part = data;
    *plen = (size_t)(e - data);
    return 0;
}

/* ---- DICOM JSON ---- */

static const json_t *value0(const json_t *obj, const char *tag, size_t i)
{
    const json_t *el = json_object_get(obj, tag);
    const json_t *v = el ? json_object_get(el, "Value") : NULL;
    return json_is_array(v) ? json_array_get(v, i) : NULL;
}

const char *vw_dj_str(const json_t *obj, const char *tag)
{
    const json_t *v = value0(obj, tag, 0);
    if (json_is_object(v)) /* PN */
        v = json_object_get(v, "Alphabetic");
    return json_string_value(v);
}

int vw_dj_num(const json_t *obj, const char *tag, size_t i, double *out)
{
    const json_t *v = value0(obj, tag, i);
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    if (!s)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    while (*end && isspace((unsigned char)*end))
        end++;
    if (errno || end == s || *end)
        return -1;
    *out = d;
    return 0;
}

size_t vw_dj_count(const json_t *obj, const char *tag)
{
    const json_t *el = json_object_get(obj, tag);
    const json_t *v = el ? json_object_get(el, "Value") : NULL;
    return json_is_array(v) ? json_array_size(v) : 0;
}

void vw_dj_copy(const json_t *obj, const char *tag, char *out, size_t n)
{
    const char *s = vw_dj_str(obj, tag);
    snprintf(out, n, "%s", s ? s : "");
}
