/* core/media: recordings as fMP4 segments with a hash-chained manifest
 * (see cs/record.h for the format and the durability order). */
#include "cs/record.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>

#include "cs/err.h"
#include "cs/file.h"
#include "cs/thread.h"

#define MANIFEST  "manifest.jsonl"
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct cs_record {
    cs_record_opts o;
    const cs_video_enc *enc;
    char dir[900];
    cs_video_out *out; /* the open segment, or NULL */
    char part[1200], final[1100], name[128];
    int64_t seq, frames;
    _Atomic int64_t segments; /* read by the pipeline's stats thread */
    int64_t start_ns, last_ns, start_pts_us;
    int want_key;
    char prev[65];
};

static void hex(const unsigned char *md, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int sha256_file(const char *path, char out[65], int64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 18);
    int rc = !ctx || !buf ? cs_error_set(CS_ENOMEM, "out of memory") : 0;
    int64_t n = 0;
    if (!rc) {
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        for (;;) {
            ssize_t k = read(fd, buf, 1 << 18);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                rc = cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(errno));
            if (k <= 0)
                break;
            EVP_DigestUpdate(ctx, buf, (size_t)k);
            n += k;
        }
    }
    if (!rc) {
        unsigned char md[32];
        EVP_DigestFinal_ex(ctx, md, NULL);
        hex(md, out);
        if (size)
            *size = n;
    }
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}

static void sha256_text(const char *a, const char *b, char out[65])
{
    unsigned char md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, a, strlen(a));
    EVP_DigestUpdate(ctx, "\n", 1);
    EVP_DigestUpdate(ctx, b, strlen(b));
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    hex(md, out);
}

/* The chain hash of a manifest entry (without its "hash" member). */
static int entry_hash(json_t *entry, const char *prev, char out[65])
{
    json_t *c = json_deep_copy(entry);
    if (!c)
        return cs_error_set(CS_ENOMEM, "out of memory");
    json_object_del(c, "hash");
    char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(c);
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    sha256_text(prev, s, out);
    free(s);
    return 0;
}

static void iso_utc(int64_t ns, char *out, size_t n)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[32];
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", b, (int)(ns / 1000000 % 1000));
}

/* Read the manifest; @p fn sees each line's parsed object (NULL for a line
 * that is not JSON). */
static int manifest_each(const char *dir, void (*fn)(void *ud, json_t *e, const char *line),
                         void *ud)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? CS_ENOTFOUND
                               : cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    while ((k = getline(&line, &cap, f)) > 0) {
        if (line[k - 1] == '\n')
            line[k - 1] = '\0';
        if (!*line)
            continue;
        json_t *e = json_loads(line, 0, NULL);
        fn(ud, json_is_object(e) ? e : NULL, line);
        json_decref(e);
    }
    free(line);
    fclose(f);
    return 0;
}

static void resume_fn(void *ud, json_t *e, const char *line)
{
    (void)line;
    cs_record *r = ud;
    const char *h = json_string_value(json_object_get(e, "hash"));
    if (h && strlen(h) == 64) {
        snprintf(r->prev, sizeof(r->prev), "%s", h);
        json_int_t s = json_integer_value(json_object_get(e, "seq"));
        if (s >= r->seq)
            r->seq = s + 1;
    }
}

int cs_record_open(cs_record **out, const char *dir, const cs_video_enc *enc,
                   const cs_record_opts *o)
{
    *out = NULL;
    cs_record_opts def = CS_RECORD_OPTS_INIT;
    if (!o)
        o = &def;
    if (strlen(dir) >= 900)
        return cs_error_set(CS_EINVAL, "recording folder name too long");
    if (mkdir(dir, 0750) && errno != EEXIST)
        return cs_error_set(CS_EIO, "cannot create %s: %s", dir, strerror(errno));
    cs_record *r = calloc(1, sizeof(*r));
    if (!r)
        return cs_error_set(CS_ENOMEM, "out of memory");
    r->o = *o;
    if (r->o.segment_s <= 0)
        r->o.segment_s = 60;
    if (r->o.retention_years <= 0)
        r->o.retention_years = 10;
    r->enc = enc;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    snprintf(r->prev, sizeof(r->prev), ZERO_HASH);
    r->seq = 1;
    r->want_key = 1;
    int rc = manifest_each(dir, resume_fn, r);
    if (rc && rc != CS_ENOTFOUND) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int append_manifest(cs_record *r, json_t *e)
{
    char h[65];
    int rc = entry_hash(e, r->prev, h);
    if (rc)
        return rc;
    json_object_set_new(e, "hash", json_string(h));
    char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", r->dir, MANIFEST);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    size_t n = strlen(s);
    int ok = fd >= 0 && write(fd, s, n) == (ssize_t)n && write(fd, "\n", 1) == 1 &&
             (!r->o.sync || fdatasync(fd) == 0);
    int err = errno;
    if (fd >= 0)
        close(fd);
    free(s);
    if (!ok)
        return cs_error_set(CS_EIO, "cannot append to %s: %s", path, strerror(err));
    memcpy(r->prev, h, sizeof(r->prev));
    return 0;
}

/* Close the open segment: trailer, sync, rename, hash, manifest. */
static int finish_segment(cs_record *r)
{
    if (!r->out)
        return 0;
    int rc = cs_video_out_close(r->out);
    r->out = NULL;
    if (!rc && r->o.sync)
        rc = cs_file_sync(r->part, CS_FILE_SYNC_DATA);
    if (!rc && rename(r->part, r->final))
        rc = cs_error_set(CS_EIO, "rename %s: %s", r->part, strerror(errno));
    if (!rc && r->o.sync)
        rc = cs_file_sync(r->dir, CS_FILE_SYNC_DIR);
    char sha[65];
    int64_t bytes = 0;
    if (!rc)
        rc = sha256_file(r->final, sha, &bytes);
    if (rc)
        return rc;
    char start[40], end[40], retain[16];
    iso_utc(r->start_ns, start, sizeof(start));
    iso_utc(r->last_ns, end, sizeof(end));
    time_t t = (time_t)(r->start_ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_year += r->o.retention_years;
    strftime(retain, sizeof(retain), "%Y-%m-%d", &tm);
    json_t *e =
        json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:s}", "seq", (json_int_t)r->seq,
                  "file", r->name, "bytes", (json_int_t)bytes, "sha256", sha, "start", start, "end",
                  end, "frames", (json_int_t)r->frames, "retain_until", retain, "prev", r->prev);
    if (!e)
        return cs_error_set(CS_ENOMEM, "out of memory");
    rc = append_manifest(r, e);
    json_decref(e);
    if (!rc) {
        r->seq++;
        atomic_fetch_add(&r->segments, 1);
    }
    return rc;
}

static int start_segment(cs_record *r)
{
    r->start_ns = cs_clock_wall_ns();
    time_t t = (time_t)(r->start_ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(r->name, sizeof(r->name), "seg-%06lld-%s.mp4", (long long)r->seq, ts);
    snprintf(r->final, sizeof(r->final), "%s/%s", r->dir, r->name);
    snprintf(r->part, sizeof(r->part), "%s.part", r->final);
    cs_video_out_opts oo = CS_VIDEO_OUT_OPTS_INIT;
    oo.format = "mp4";
    int rc = cs_video_out_open(&r->out, r->part, r->enc, &oo);
    r->frames = 0;
    return rc;
}

int cs_record_write(cs_record *r, cs_vpacket *p)
{
    int key = cs_vpacket_is_key(p);
    if (r->out && key &&
        cs_vpacket_pts_us(p) - r->start_pts_us >= (int64_t)r->o.segment_s * 1000000) {
        int rc = finish_segment(r);
        if (rc)
            return rc;
    }
    if (!r->out) {
        if (!key) {
            r->want_key = 1;
            return 0;
        }
        int rc = start_segment(r);
        if (rc)
            return rc;
        r->start_pts_us = cs_vpacket_pts_us(p);
    }
    r->want_key = cs_vpacket_pts_us(p) - r->start_pts_us >= (int64_t)r->o.segment_s * 1000000;
    int rc = cs_video_out_write(r->out, p);
    if (rc) {
        cs_video_out_close(r->out);
        r->out = NULL;
        unlink(r->part);
        r->want_key = 1;
        return rc;
    }
    r->frames++;
    r->last_ns = cs_clock_wall_ns();
    return 0;
}

int cs_record_wants_key(const cs_record *r)
{
    return r->want_key;
}

int64_t cs_record_segments(const cs_record *r)
{
    return atomic_load(&r->segments);
}

int cs_record_close(cs_record *r)
{
    if (!r)
        return 0;
    int rc = finish_segment(r);
    free(r);
    return rc;
}

/* ------------------------------------------------------------- verify */

typedef struct {
    const char *dir;
    json_t *problems, *listed;
    char prev[65];
    int64_t line, segments, bytes;
    json_t *first, *last;
} verify_ctx;

static void problem(verify_ctx *v, const char *fmt, ...) CS_PRINTF(2, 3);
static void problem(verify_ctx *v, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(v->problems, json_string(msg));
}

static void verify_fn(void *ud, json_t *e, const char *line)
{
    verify_ctx *v = ud;
    char ln[24];
    snprintf(ln, sizeof(ln), "%lld", (long long)++v->line);
    if (!e) {
        problem(v, "manifest line %s is not JSON: %.200s", ln, line);
        return;
    }
    const char *file = json_string_value(json_object_get(e, "file"));
    const char *sha = json_string_value(json_object_get(e, "sha256"));
    const char *prev = json_string_value(json_object_get(e, "prev"));
    const char *hash = json_string_value(json_object_get(e, "hash"));
    if (!file || !sha || !prev || !hash || strchr(file, '/')) {
        problem(v, "manifest line %s lacks file, sha256, prev or hash", ln);
        return;
    }
    if (strcmp(prev, v->prev))
        problem(v,
                "manifest line %s: the chain is broken (prev is not the hash of the line before)",
                ln);
    char h[65];
    if (entry_hash(e, prev, h) == 0 && strcmp(h, hash))
        problem(v, "manifest line %s (%s): its hash does not match its contents", ln, file);
    snprintf(v->prev, sizeof(v->prev), "%s", hash);
    json_object_set_new(v->listed, file, json_true());
    char path[1400], got[65];
    snprintf(path, sizeof(path), "%s/%s", v->dir, file);
    int64_t size = 0;
    if (sha256_file(path, got, &size)) {
        problem(v, "%s: listed in the manifest but missing or unreadable (%s)", file,
                cs_error_last());
        return;
    }
    if (strcmp(got, sha))
        problem(v, "%s: SHA-256 differs from the manifest (the file was changed)", file);
    if (size != json_integer_value(json_object_get(e, "bytes")))
        problem(v, "%s: size differs from the manifest", file);
    v->segments++;
    v->bytes += size;
    if (!v->first)
        v->first = json_deep_copy(e);
    json_decref(v->last);
    v->last = json_deep_copy(e);
}

int cs_record_verify(const char *dir, json_t **report)
{
    *report = NULL;
    verify_ctx v = {dir, json_array(), json_object(), ZERO_HASH, 0, 0, 0, NULL, NULL};
    json_t *partial = json_array();
    int rc = manifest_each(dir, verify_fn, &v);
    if (rc == CS_ENOTFOUND)
        rc = cs_error_set(CS_ENOTFOUND, "%s: no %s (not a recording folder)", dir, MANIFEST);
    DIR *d = rc ? NULL : opendir(dir);
    if (!rc && !d)
        rc = cs_error_set(CS_EIO, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 9 && !strcmp(de->d_name + n - 9, ".mp4.part"))
            json_array_append_new(partial, json_string(de->d_name));
        else if (n > 4 && !strcmp(de->d_name + n - 4, ".mp4") &&
                 !json_object_get(v.listed, de->d_name))
            problem(&v, "%s: a segment the manifest does not list", de->d_name);
    }
    if (d)
        closedir(d);
    if (rc) {
        json_decref(v.problems);
        json_decref(v.listed);
        json_decref(partial);
        json_decref(v.first);
        json_decref(v.last);
        return rc;
    }
    int np = (int)json_array_size(v.problems);
    *report =
        json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "segments", (json_int_t)v.segments, "bytes",
                  (json_int_t)v.bytes, "problems", v.problems, "partial", partial, "first",
                  v.first ? v.first : json_null(), "last", v.last ? v.last : json_null());
    json_decref(v.listed);
    return np;
}
