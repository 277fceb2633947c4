/* consilium dicom echo|send|find|move|report|info: DICOM network tools.
 * Peers are written AET@HOST:PORT. Results go to stdout (find: one JSON
 * object per match), progress and errors to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <jansson.h>

#include "cs/db.h"
#include "cs/dicom.h"
#include "cs/dicomnet.h"
#include "cs/dimse.h"
#include "cs/err.h"
#include "cs/thread.h"

int cs_cli_dicom(int argc, char **argv);

#define MAX_KEYS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: consilium dicom <command> [options]\n\n"
               "commands:\n"
               "  echo AET@HOST:PORT              C-ECHO (verification)\n"
               "  send AET@HOST:PORT PATH...      C-STORE files and folders (recursively)\n"
               "  find AET@HOST:PORT [-k KEY=VALUE]...   Study Root C-FIND (JSON lines)\n"
               "  move AET@HOST:PORT --dest AET [-k KEY=VALUE]...   Study Root C-MOVE\n"
               "  report --to AET@HOST:PORT ...   send a reading as a Basic Text SR\n"
               "  info FILE...                    what a file says about its image\n"
               "  anonymize IN OUT                de-identify (PS3.15 Annex E basic profile)\n\n"
               "Run 'consilium dicom <command> --help' for a command's options.\n");
}

static int is_help(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* ------------------------------------------------------------ keywords */

static const struct {
    const char *name;
    uint32_t tag;
} keywords[] = {
    {"PatientName", 0x00100010},
    {"PatientID", 0x00100020},
    {"PatientBirthDate", 0x00100030},
    {"PatientSex", 0x00100040},
    {"StudyDate", 0x00080020},
    {"StudyTime", 0x00080030},
    {"AccessionNumber", 0x00080050},
    {"ReferringPhysicianName", 0x00080090},
    {"StudyDescription", 0x00081030},
    {"StudyID", 0x00200010},
    {"StudyInstanceUID", 0x0020000D},
    {"ModalitiesInStudy", 0x00080061},
    {"NumberOfStudyRelatedSeries", 0x00201206},
    {"NumberOfStudyRelatedInstances", 0x00201208},
    {"SeriesInstanceUID", 0x0020000E},
    {"Modality", 0x00080060},
    {"SeriesNumber", 0x00200011},
    {"SeriesDescription", 0x0008103E},
    {"BodyPartExamined", 0x00180015},
    {"NumberOfSeriesRelatedInstances", 0x00201209},
    {"SOPInstanceUID", 0x00080018},
    {"SOPClassUID", 0x00080016},
    {"InstanceNumber", 0x00200013},
    {"Rows", 0x00280010},
    {"Columns", 0x00280011},
    {"NumberOfFrames", 0x00280008},
    {"QueryRetrieveLevel", 0x00080052},
    {"SpecificCharacterSet", 0x00080005},
    {"RetrieveAETitle", 0x00080054},
};
#define NKEYWORDS ((int)(sizeof(keywords) / sizeof(keywords[0])))

static int tag_of(const char *name, uint32_t *tag)
{
    for (int i = 0; i < NKEYWORDS; i++)
        if (!strcmp(keywords[i].name, name)) {
            *tag = keywords[i].tag;
            return 0;
        }
    unsigned g, e;
    char tail;
    if (sscanf(name, "%4x,%4x%c", &g, &e, &tail) == 2 ||
        sscanf(name, "(%4x,%4x)%c", &g, &e, &tail) == 2) {
        *tag = (g << 16) | e;
        return 0;
    }
    return -1;
}

static const char *name_of(uint32_t tag, char *buf, size_t cap)
{
    for (int i = 0; i < NKEYWORDS; i++)
        if (keywords[i].tag == tag)
            return keywords[i].name;
    snprintf(buf, cap, "%04X,%04X", tag >> 16, tag & 0xffff);
    return buf;
}

typedef struct keyset {
    cs_dicomnet_attr k[MAX_KEYS];
    char *vals[MAX_KEYS];
    int n;
} keyset;

static int key_add(keyset *ks, uint32_t tag, const char *value)
{
    for (int i = 0; i < ks->n; i++)
        if (ks->k[i].tag == tag) {
            free(ks->vals[i]);
            ks->vals[i] = strdup(value);
            ks->k[i].value = ks->vals[i];
            return ks->vals[i] ? 0 : -1;
        }
    if (ks->n == MAX_KEYS)
        return -1;
    ks->vals[ks->n] = strdup(value);
    if (!ks->vals[ks->n])
        return -1;
    ks->k[ks->n].tag = tag;
    ks->k[ks->n].value = ks->vals[ks->n];
    ks->n++;
    return 0;
}

static void key_free(keyset *ks)
{
    for (int i = 0; i < ks->n; i++)
        free(ks->vals[i]);
    ks->n = 0;
}

/* "-k KEY=VALUE" or "-k KEY" (return key). */
static int key_parse(keyset *ks, const char *arg, const char *cmd)
{
    char name[64];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    uint32_t tag;
    if (len >= sizeof(name)) {
        fprintf(stderr, "consilium dicom %s: key '%s' is too long\n", cmd, arg);
        return -1;
    }
    memcpy(name, arg, len);
    name[len] = '\0';
    if (tag_of(name, &tag) < 0) {
        fprintf(stderr, "consilium dicom %s: unknown key '%s' (a keyword or gggg,eeee)\n", cmd,
                name);
        return -1;
    }
    if (key_add(ks, tag, eq ? eq + 1 : "") < 0) {
        fprintf(stderr, "consilium dicom %s: too many keys\n", cmd);
        return -1;
    }
    return 0;
}

static const char *level_of(const char *s)
{
    if (!strcasecmp(s, "study"))
        return "STUDY";
    if (!strcasecmp(s, "series"))
        return "SERIES";
    if (!strcasecmp(s, "image") || !strcasecmp(s, "instance"))
        return "IMAGE";
    if (!strcasecmp(s, "patient"))
        return "PATIENT";
    return NULL;
}

/* Return keys every level answers by default. */
static void default_keys(keyset *ks, const char *level)
{
    static const char *study[] = {"StudyInstanceUID", "PatientID",         "PatientName",
                                  "StudyDate",        "StudyTime",         "AccessionNumber",
                                  "StudyDescription", "ModalitiesInStudy", NULL};
    static const char *series[] = {"StudyInstanceUID", "SeriesInstanceUID", "Modality",
                                   "SeriesNumber",     "SeriesDescription", NULL};
    static const char *image[] = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                  "SOPClassUID",      "InstanceNumber",    NULL};
    const char **l = !strcmp(level, "STUDY") ? study : !strcmp(level, "SERIES") ? series : image;
    for (; *l; l++) {
        uint32_t tag;
        tag_of(*l, &tag);
        int have = 0;
        for (int i = 0; i < ks->n && !have; i++)
            have = ks->k[i].tag == tag;
        if (!have)
            key_add(ks, tag, "");
    }
}

/* ------------------------------------------------------ shared options */

typedef struct common {
    const char *aet;
    int timeout;
    cs_dicomnet_peer peer;
    int have_peer;
} common;

/* Handles --aet, --timeout and the positional peer. @return 1 consumed
 * (i advanced), 0 not ours, -1 error. */
static int common_opt(common *c, int argc, char **argv, int *i, const char *cmd)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--aet") && *i + 1 < argc) {
        c->aet = argv[++*i];
        if (!*c->aet || strlen(c->aet) > 16) {
            fprintf(stderr, "consilium dicom %s: --aet needs 1-16 characters\n", cmd);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--timeout") && *i + 1 < argc) {
        if (parse_int(argv[++*i], 1, 3600, &c->timeout) < 0) {
            fprintf(stderr, "consilium dicom %s: --timeout wants seconds (1-3600)\n", cmd);
            return -1;
        }
        return 1;
    }
    if (a[0] != '-' && !c->have_peer && strchr(a, '@')) {
        if (cs_dicomnet_peer_parse(&c->peer, a) < 0) {
            fprintf(stderr, "consilium dicom %s: %s\n", cmd, cs_error_last());
            return -1;
        }
        c->have_peer = 1;
        return 1;
    }
    return 0;
}

static int need_peer(const common *c, const char *cmd)
{
    if (!c->have_peer)
        fprintf(stderr, "consilium dicom %s: give the peer as AET@HOST:PORT\n", cmd);
    return c->have_peer ? 0 : -1;
}

#define COMMON_HELP                                                                                \
    "  --aet TITLE        our (calling) AE title (default CONSILIUM)\n"                            \
    "  --timeout S        network timeout in seconds (default 30)\n"                               \
    "  -h, --help         this text\n"

/* ---------------------------------------------------------------- echo */

static int cmd_echo(int argc, char **argv)
{
    common c = {.aet = "CONSILIUM", .timeout = 30};
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: consilium dicom echo AET@HOST:PORT [options]\n\n"
                   "C-ECHO the peer and print the round trip.\n\noptions:\n" COMMON_HELP);
            return 0;
        }
        int r = common_opt(&c, argc, argv, &i, "echo");
        if (r < 0)
            return 2;
        if (r == 0) {
            fprintf(stderr, "consilium dicom echo: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (need_peer(&c, "echo") < 0)
        return 2;
    cs_dicomnet_connect_opts o = CS_DICOMNET_CONNECT_OPTS_INIT;
    o.calling_aet = c.aet;
    o.timeout_s = c.timeout;
    int64_t t0 = cs_clock_ns();
    cs_dicomnet_assoc *a;
    int status = -1;
    if (cs_dicomnet_connect(&a, &c.peer, &o) < 0 || cs_dicomnet_echo(a, &status) < 0) {
        fprintf(stderr, "consilium dicom echo: %s\n", cs_error_last());
        return 1;
    }
    cs_dicomnet_assoc_free(a);
    printf("echo %s@%s:%d: status 0x%04x (%s) in %.1f ms\n", c.peer.aet, c.peer.host, c.peer.port,
           status, status == 0 ? "success" : "failure", (cs_clock_ns() - t0) / 1e6);
    return status == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- send */

typedef struct filelist {
    char **paths;
    char (*classes)[65];
    char (*syntaxes)[65];
    int n, cap;
    int64_t bytes;
} filelist;

static int list_add(filelist *l, const char *path)
{
    char sop[65], ts[65];
    if (cs_dicomnet_file_probe(path, sop, ts) < 0)
        return 0; /* not DICOM: skipped */
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        char **p = realloc(l->paths, (size_t)cap * sizeof(*p));
        if (!p)
            return -1;
        l->paths = p;
        char(*c)[65] = realloc(l->classes, (size_t)cap * sizeof(*c));
        if (!c)
            return -1;
        l->classes = c;
        char(*t)[65] = realloc(l->syntaxes, (size_t)cap * sizeof(*t));
        if (!t)
            return -1;
        l->syntaxes = t;
        l->cap = cap;
    }
    l->paths[l->n] = strdup(path);
    if (!l->paths[l->n])
        return -1;
    memcpy(l->classes[l->n], sop, 65);
    memcpy(l->syntaxes[l->n], ts, 65);
    struct stat st;
    if (stat(path, &st) == 0)
        l->bytes += st.st_size;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_walk(filelist *l, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "consilium dicom send: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return list_add(l, path);
    if (depth > 16)
        return 0;
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "consilium dicom send: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    int nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, (size_t)cap * sizeof(*p));
            if (!p)
                break;
            names = p;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[nn] = malloc(len);
        if (names[nn])
            snprintf(names[nn++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nn, sizeof(*names), cmp_str);
    int r = 0;
    for (int i = 0; i < nn; i++) {
        if (r == 0)
            r = list_walk(l, names[i], depth + 1);
        free(names[i]);
    }
    free(names);
    return r;
}

static int cmd_send(int argc, char **argv)
{
    common c = {.aet = "CONSILIUM", .timeout = 30};
    const char *ts_name = NULL, *want = NULL;
    int quiet = 0;
    filelist l = {0};
    const char **inputs = calloc((size_t)argc, sizeof(*inputs));
    int ninputs = 0;
    if (!inputs)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            printf(
                "usage: consilium dicom send AET@HOST:PORT [options] PATH...\n\n"
                "C-STORE DICOM files; folders are walked (non-DICOM files skipped). One\n"
                "association; progress on stderr.\n\noptions:\n"
                "  --ts NAME          propose and send in this transfer syntax (transcoding\n"
                "                     when needed): explicit, implicit, deflate, rle,\n"
                "                     jpeg-lossless, jpeg-baseline, jpeg-ls, jpeg-ls-near, j2k,\n"
                "                     j2k-lossless, htj2k... or a UID. Default: as stored\n"
                "  -q, --quiet        no progress\n" COMMON_HELP);
            free(inputs);
            return 0;
        }
        int r = common_opt(&c, argc, argv, &i, "send");
        if (r < 0) {
            free(inputs);
            return 2;
        }
        if (r)
            continue;
        if (!strcmp(argv[i], "--ts") && i + 1 < argc) {
            ts_name = argv[++i];
            want = cs_dimse_ts_from_name(ts_name);
            if (!want) {
                fprintf(stderr, "consilium dicom send: unknown transfer syntax '%s'\n", ts_name);
                free(inputs);
                return 2;
            }
            if (!want[0])
                want = NULL;
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "consilium dicom send: unknown option '%s'\n", argv[i]);
            free(inputs);
            return 2;
        } else {
            inputs[ninputs++] = argv[i];
        }
    }
    if (need_peer(&c, "send") < 0 || ninputs == 0) {
        if (c.have_peer)
            fprintf(stderr, "consilium dicom send: give files or folders to send\n");
        free(inputs);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < ninputs && rc == 0; i++)
        rc = list_walk(&l, inputs[i], 0);
    free(inputs);
    if (rc == 0 && l.n == 0) {
        fprintf(stderr, "consilium dicom send: no DICOM files found\n");
        rc = -1;
    }
    /* The proposal: each SOP class once, with the wanted syntax or the
     * files' own (an uncompressed fallback is always added). */
    const char **classes = NULL, *syntaxes[16];
    int nc = 0, nt = 0;
    if (rc == 0) {
        classes = calloc((size_t)l.n, sizeof(*classes));
        if (!classes)
            rc = -1;
        if (want)
            syntaxes[nt++] = want;
        for (int i = 0; rc == 0 && i < l.n; i++) {
            int seen = 0;
            for (int j = 0; j < nc && !seen; j++)
                seen = !strcmp(classes[j], l.classes[i]);
            if (!seen)
                classes[nc++] = l.classes[i];
            seen = 0;
            for (int j = 0; j < nt && !seen; j++)
                seen = !strcmp(syntaxes[j], l.syntaxes[i]);
            if (!seen && nt < 16 && !want)
                syntaxes[nt++] = l.syntaxes[i];
        }
    }
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int failed = 0, sent = 0;
    int64_t sent_bytes = 0;
    int64_t t0 = cs_clock_ns(), last = 0;
    cs_dicomnet_assoc *a = NULL;
    if (rc == 0) {
        cs_dicomnet_connect_opts o = CS_DICOMNET_CONNECT_OPTS_INIT;
        o.calling_aet = c.aet;
        o.timeout_s = c.timeout;
        o.sop_classes = classes;
        o.nsop_classes = nc;
        o.transfer_syntaxes = syntaxes;
        o.ntransfer_syntaxes = nt;
        o.verification = 0;
        if (cs_dicomnet_connect(&a, &c.peer, &o) < 0) {
            fprintf(stderr, "consilium dicom send: %s\n", cs_error_last());
            rc = -1;
        }
    }
    for (int i = 0; rc == 0 && i < l.n; i++) {
        int status = 0;
        int r = cs_dimse_send_file(a, l.paths[i], want, tmpdir, &status, NULL);
        struct stat st;
        if (r == 0 && status == 0) {
            sent++;
            if (stat(l.paths[i], &st) == 0)
                sent_bytes += st.st_size;
        } else {
            failed++;
            fprintf(stderr, "%sconsilium dicom send: %s: %s\n", quiet ? "" : "\n", l.paths[i],
                    r < 0                ? cs_error_last()
                    : cs_error_last()[0] ? cs_error_last()
                                         : "refused");
            if (r == CS_EIO)
                break; /* the association is gone */
        }
        int64_t now = cs_clock_ns();
        if (!quiet && (now - last > 250000000LL || i + 1 == l.n)) {
            last = now;
            double s = (now - t0) / 1e9;
            fprintf(stderr, "\r[%d/%d] %.1f MB, %.1f images/s", i + 1, l.n, sent_bytes / 1e6,
                    s > 0 ? (i + 1) / s : 0.0);
        }
    }
    cs_dicomnet_assoc_free(a);
    double s = (cs_clock_ns() - t0) / 1e9;
    if (rc == 0) {
        if (!quiet)
            fprintf(stderr, "\n");
        printf("sent %d of %d file(s), %.1f MB in %.2f s (%.1f images/s, %.1f MB/s); %d failed\n",
               sent, l.n, sent_bytes / 1e6, s, s > 0 ? sent / s : 0.0,
               s > 0 ? sent_bytes / 1e6 / s : 0.0, failed + (l.n - sent - failed));
    }
    for (int i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(l.classes);
    free(l.syntaxes);
    free(classes);
    return rc < 0 ? 1 : (sent == l.n ? 0 : 1);
}

/* ---------------------------------------------------------- find, move */

static int print_match(void *userdata, const cs_dicomnet_attr *attrs, int n)
{
    int *count = userdata;
    json_t *o = json_object();
    char buf[16];
    for (int i = 0; i < n; i++)
        json_object_set_new(o, name_of(attrs[i].tag, buf, sizeof(buf)),
                            json_string(attrs[i].value));
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(o);
    (*count)++;
    return 0;
}

static int find_or_move(int argc, char **argv, int move)
{
    const char *cmd = move ? "move" : "find";
    common c = {.aet = "CONSILIUM", .timeout = 30};
    const char *level = NULL, *dest = NULL;
    keyset ks = {0};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (is_help(argv[i])) {
            if (move)
                printf("usage: consilium dicom move AET@HOST:PORT --dest AET [options]\n\n"
                       "Study Root C-MOVE of what the keys select to the AE title --dest (the\n"
                       "peer must know its address; e.g. our own node).\n\noptions:\n"
                       "  --dest AET         where the peer sends the instances\n"
                       "  --level L          study (default), series or image\n"
                       "  -k KEY=VALUE       a key, e.g. StudyInstanceUID=1.2.3\n" COMMON_HELP);
            else
                printf(
                    "usage: consilium dicom find AET@HOST:PORT [options]\n\n"
                    "Study Root C-FIND; prints each match as one JSON object per line.\n\n"
                    "options:\n"
                    "  --level L          study (default), series or image\n"
                    "  -k KEY[=VALUE]     a matching key (wildcards * ?, date ranges A-B) or,\n"
                    "                     without a value, a return key; KEY is a keyword\n"
                    "                     (PatientID, StudyDate, ...) or gggg,eeee\n" COMMON_HELP);
            key_free(&ks);
            return 0;
        }
        int r = common_opt(&c, argc, argv, &i, cmd);
        if (r < 0)
            rc = 2;
        if (r)
            continue;
        if (!strcmp(argv[i], "--level") && i + 1 < argc) {
            level = level_of(argv[++i]);
            if (!level) {
                fprintf(stderr, "consilium dicom %s: --level is study, series or image\n", cmd);
                rc = 2;
            }
        } else if (!strcmp(argv[i], "-k") && i + 1 < argc) {
            if (key_parse(&ks, argv[++i], cmd) < 0)
                rc = 2;
        } else if (move && !strcmp(argv[i], "--dest") && i + 1 < argc) {
            dest = argv[++i];
        } else {
            fprintf(stderr, "consilium dicom %s: unexpected '%s'\n", cmd, argv[i]);
            rc = 2;
        }
    }
    if (rc == 0 && need_peer(&c, cmd) < 0)
        rc = 2;
    if (rc == 0 && move && (!dest || !*dest || strlen(dest) > 16)) {
        fprintf(stderr, "consilium dicom move: --dest AET (1-16 characters) is required\n");
        rc = 2;
    }
    if (rc) {
        key_free(&ks);
        return rc;
    }
    if (!level)
        level = "STUDY";
    if (!move)
        default_keys(&ks, level);
    cs_dicomnet_connect_opts o = CS_DICOMNET_CONNECT_OPTS_INIT;
    o.calling_aet = c.aet;
    o.timeout_s = c.timeout;
    o.verification = 0;
    o.find = !move;
    o.move = move;
    cs_dicomnet_assoc *a;
    if (cs_dicomnet_connect(&a, &c.peer, &o) < 0) {
        fprintf(stderr, "consilium dicom %s: %s\n", cmd, cs_error_last());
        key_free(&ks);
        return 1;
    }
    int64_t t0 = cs_clock_ns();
    if (move) {
        cs_dicomnet_move_result mr;
        int r = cs_dicomnet_move(a, level, dest, ks.k, ks.n, &mr);
        cs_dicomnet_assoc_free(a);
        key_free(&ks);
        if (r < 0) {
            fprintf(stderr, "consilium dicom move: %s\n", cs_error_last());
            return 1;
        }
        printf("move to %s: status 0x%04x, %d completed, %d failed, %d warning(s) in %.2f s\n",
               dest, mr.status, mr.completed, mr.failed, mr.warning, (cs_clock_ns() - t0) / 1e9);
        return mr.status == 0 && mr.failed == 0 ? 0 : 1;
    }
    int count = 0, status = 0;
    int r = cs_dicomnet_find(a, level, ks.k, ks.n, print_match, &count, &status);
    cs_dicomnet_assoc_free(a);
    key_free(&ks);
    if (r < 0) {
        fprintf(stderr, "consilium dicom find: %s\n", cs_error_last());
        return 1;
    }
    fprintf(stderr, "%d match(es), status 0x%04x, %.1f ms\n", count, status,
            (cs_clock_ns() - t0) / 1e6);
    return status == 0 ? 0 : 1;
}

/* -------------------------------------------------------------- report */

/* The stored file and identity of @p sop from the node's index. */
static int lookup(cs_db *db, const char *store, const char *sop, char *path, size_t cap, char *cls,
                  char *series)
{
    cs_db_stmt *st;
    if (cs_db_prepare(
            db, &st, "SELECT path, sop_class, series_uid FROM dicom_instances WHERE sop_uid = $1") <
        0)
        return -1;
    cs_db_bind_text(st, 1, sop);
    int r = cs_db_step(st) == CS_DB_ROW ? 0 : -1;
    if (r == 0) {
        snprintf(path, cap, "%s/%s", store, cs_db_column_text(st, 0));
        snprintf(cls, 65, "%s", cs_db_column_text(st, 1));
        snprintf(series, 65, "%s", cs_db_column_text(st, 2));
    }
    cs_db_finalize(st);
    return r;
}

static int cmd_report(int argc, char **argv)
{
    common c = {.aet = "CONSILIUM", .timeout = 30};
    const char *to[8], *text = NULL, *author = NULL, *title = "Consult report";
    const char *study = NULL, *db_path = NULL, *store = NULL, *ref = NULL, *out = NULL;
    const char *keys[32];
    int nto = 0, nkeys = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (is_help(a)) {
            printf("usage: consilium dicom report --to AET@HOST:PORT [--to ...] --text TEXT\n"
                   "       (--db F --store DIR --study UID | --ref FILE) [options]\n\n"
                   "Make the reading a Basic Text SR in the study (patient and study copied\n"
                   "from one of its instances) and C-STORE it to each --to.\n\noptions:\n"
                   "  --text T           the conclusion (UTF-8)\n"
                   "  --author NAME      the observer (DICOM PN, e.g. Doe^Jane)\n"
                   "  --title T          the report series description\n"
                   "  --key SOPUID       a key image (repeatable; needs --db/--store)\n"
                   "  --db F --store DIR the node's index and store, to find the study\n"
                   "  --study UID        the study read\n"
                   "  --ref FILE         an instance of the study (instead of --db/--study)\n"
                   "  --out FILE         also keep the SR here\n" COMMON_HELP);
            return 0;
        }
        int r = common_opt(&c, argc, argv, &i, "report");
        if (r < 0)
            return 2;
        if (r) {
            if (c.have_peer && nto < 8 && strchr(argv[i], '@') && argv[i][0] != '-') {
                to[nto++] = argv[i];
                c.have_peer = 0;
            }
            continue;
        }
        if (!strcmp(a, "--to") && more && nto < 8)
            to[nto++] = argv[++i];
        else if (!strcmp(a, "--text") && more)
            text = argv[++i];
        else if (!strcmp(a, "--author") && more)
            author = argv[++i];
        else if (!strcmp(a, "--title") && more)
            title = argv[++i];
        else if (!strcmp(a, "--key") && more && nkeys < 32)
            keys[nkeys++] = argv[++i];
        else if (!strcmp(a, "--db") && more)
            db_path = argv[++i];
        else if (!strcmp(a, "--store") && more)
            store = argv[++i];
        else if (!strcmp(a, "--study") && more)
            study = argv[++i];
        else if (!strcmp(a, "--ref") && more)
            ref = argv[++i];
        else if (!strcmp(a, "--out") && more)
            out = argv[++i];
        else {
            fprintf(stderr, "consilium dicom report: unexpected '%s'\n", a);
            return 2;
        }
    }
    if (!nto || !text || (!ref && !(db_path && store && study))) {
        fprintf(stderr, "consilium dicom report: needs --to, --text and either --ref FILE or\n"
                        "--db, --store and --study (see --help)\n");
        return 2;
    }
    if (nkeys && !(db_path && store)) {
        fprintf(stderr, "consilium dicom report: --key needs --db and --store\n");
        return 2;
    }
    cs_db *db = NULL;
    if (db_path && cs_db_open(&db, db_path) < 0) {
        fprintf(stderr, "consilium dicom report: %s\n", cs_error_last());
        return 1;
    }
    char refbuf[4096], cls[32][65], ser[32][65], kpath[4096];
    cs_dicom_ref refs[32];
    int rc = 0;
    for (int i = 0; i < nkeys && rc == 0; i++) {
        if (lookup(db, store, keys[i], kpath, sizeof(kpath), cls[i], ser[i]) < 0) {
            fprintf(stderr, "consilium dicom report: key image %s is not in the store\n", keys[i]);
            rc = 1;
        }
        refs[i].sop_class_uid = cls[i];
        refs[i].sop_instance_uid = keys[i];
        refs[i].series_uid = ser[i];
    }
    if (rc == 0 && !ref) {
        cs_db_stmt *st;
        rc = 1;
        if (cs_db_prepare(db, &st,
                          "SELECT path FROM dicom_instances WHERE study_uid = $1 AND sop_class"
                          " NOT LIKE '1.2.840.10008.5.1.4.1.1.88.%' ORDER BY instance_number"
                          " LIMIT 1") == 0) {
            cs_db_bind_text(st, 1, study);
            if (cs_db_step(st) == CS_DB_ROW) {
                snprintf(refbuf, sizeof(refbuf), "%s/%s", store, cs_db_column_text(st, 0));
                ref = refbuf;
                rc = 0;
            }
            cs_db_finalize(st);
        }
        if (rc)
            fprintf(stderr, "consilium dicom report: study %s is not in the store\n", study);
    }
    cs_db_close(db);
    char tmpdir[] = "/tmp/cs-report-XXXXXX", path[4200], uid[65];
    if (rc == 0 && !mkdtemp(tmpdir)) {
        fprintf(stderr, "consilium dicom report: %s\n", strerror(errno));
        rc = 1;
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/report.dcm", out ? "" : tmpdir);
        if (out)
            snprintf(path, sizeof(path), "%s", out);
        if (cs_dicom_report_write(path, ref, title, text, author, refs, nkeys, uid) < 0) {
            fprintf(stderr, "consilium dicom report: %s\n", cs_error_last());
            rc = 1;
        }
    }
    for (int i = 0; rc == 0 && i < nto; i++) {
        cs_dicomnet_peer peer;
        if (cs_dicomnet_peer_parse(&peer, to[i]) < 0) {
            fprintf(stderr, "consilium dicom report: %s\n", cs_error_last());
            rc = 2;
            break;
        }
        static const char *sr_class[] = {"1.2.840.10008.5.1.4.1.1.88.11"};
        cs_dicomnet_connect_opts o = CS_DICOMNET_CONNECT_OPTS_INIT;
        o.calling_aet = c.aet;
        o.timeout_s = c.timeout;
        o.sop_classes = sr_class;
        o.nsop_classes = 1;
        o.verification = 0;
        cs_dicomnet_assoc *a;
        int status = -1;
        if (cs_dicomnet_connect(&a, &peer, &o) < 0) {
            fprintf(stderr, "consilium dicom report: %s\n", cs_error_last());
            rc = 1;
            continue;
        }
        int r = cs_dicomnet_store_file(a, path, NULL, &status, NULL);
        cs_dicomnet_assoc_free(a);
        if (r < 0 || status != 0) {
            fprintf(stderr, "consilium dicom report: to %s: %s\n", to[i],
                    r < 0 ? cs_error_last() : "refused");
            rc = 1;
        } else {
            printf("report %s stored at %s\n", uid, to[i]);
        }
    }
    if (!out && tmpdir[strlen(tmpdir) - 1] != 'X') {
        unlink(path);
        rmdir(tmpdir);
    }
    return rc;
}

/* ---------------------------------------------------------- info, anon */

static int cmd_info(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        printf("usage: consilium dicom info FILE...\n\nPrint what each file says about its "
               "image (cs_dicom_get_info) and its identifiers.\n");
        return argc < 2 ? 2 : 0;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        cs_dicom *d;
        if (cs_dicom_open(&d, argv[i]) < 0) {
            fprintf(stderr, "consilium dicom info: %s: %s\n", argv[i], cs_error_last());
            rc = 1;
            continue;
        }
        cs_dicom_info in;
        cs_dicom_get_info(d, &in);
        char pid[80] = "", pname[200] = "";
        cs_dicom_get_string(d, CS_DICOM_TAG(0x0010, 0x0020), pid, sizeof(pid));
        cs_dicom_get_string(d, CS_DICOM_TAG(0x0010, 0x0010), pname, sizeof(pname));
        printf("file:            %s\n"
               "patient:         %s (%s)\n"
               "sop class:       %s\nsop instance:    %s\n"
               "study:           %s\nseries:          %s\n"
               "transfer syntax: %s%s\nmodality:        %s\n"
               "image:           %d x %d, %d frame(s), %d sample(s) %s, %d/%d bits%s\n",
               argv[i], pname, pid, in.sop_class_uid, in.sop_instance_uid, in.study_uid,
               in.series_uid, in.transfer_syntax, in.lossy ? " (lossy)" : "", in.modality, in.cols,
               in.rows, in.frames, in.samples, in.photometric, in.bits_stored, in.bits_allocated,
               in.pixel_signed ? " signed" : "");
        if (in.spacing_kind)
            printf("spacing:         %g x %g mm%s\n", in.spacing[0], in.spacing[1],
                   in.spacing_kind == 2 ? " (at the detector)" : "");
        if (in.has_window)
            printf("window:          %g / %g\n", in.window_center, in.window_width);
        cs_dicom_free(d);
    }
    return rc;
}

static int anon_one(const char *in, const char *out)
{
    cs_dicom *d = NULL;
    int r = cs_dicom_open(&d, in);
    if (r == 0)
        r = cs_dicom_deidentify(d);
    if (r == 0)
        r = cs_dicom_save(d, out);
    if (r < 0)
        fprintf(stderr, "consilium dicom anonymize: %s: %s\n", in, cs_error_last());
    cs_dicom_free(d);
    return r;
}

static int cmd_anonymize(int argc, char **argv)
{
    if (argc != 3 || is_help(argv[1])) {
        printf("usage: consilium dicom anonymize IN OUT\n\n"
               "De-identify by the PS3.15 Annex E Basic Profile (cs_dicom_deidentify): IN a\n"
               "file and OUT a file, or IN a folder (walked) and OUT a folder receiving one\n"
               "file per DICOM file found.\n");
        return argc == 2 && is_help(argv[1]) ? 0 : 2;
    }
    struct stat st;
    if (stat(argv[1], &st) < 0) {
        fprintf(stderr, "consilium dicom anonymize: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode))
        return anon_one(argv[1], argv[2]) < 0 ? 1 : 0;
    filelist l = {0};
    if (list_walk(&l, argv[1], 0) < 0)
        return 1;
    mkdir(argv[2], 0755);
    int failed = 0;
    for (int i = 0; i < l.n; i++) {
        char out[4200];
        snprintf(out, sizeof(out), "%s/%06d.dcm", argv[2], i + 1);
        failed += anon_one(l.paths[i], out) < 0;
        free(l.paths[i]);
    }
    printf("de-identified %d of %d file(s) into %s\n", l.n - failed, l.n, argv[2]);
    free(l.paths);
    free(l.classes);
    free(l.syntaxes);
    return failed ? 1 : 0;
}

int cs_cli_dicom(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *v = argv[1];
    if (!strcmp(v, "echo"))
        return cmd_echo(argc - 1, argv + 1);
    if (!strcmp(v, "send"))
        return cmd_send(argc - 1, argv + 1);
    if (!strcmp(v, "find"))
        return find_or_move(argc - 1, argv + 1, 0);
    if (!strcmp(v, "move"))
        return find_or_move(argc - 1, argv + 1, 1);
    if (!strcmp(v, "report"))
        return cmd_report(argc - 1, argv + 1);
    if (!strcmp(v, "info"))
        return cmd_info(argc - 1, argv + 1);
    if (!strcmp(v, "anonymize") || !strcmp(v, "anon"))
        return cmd_anonymize(argc - 1, argv + 1);
    fprintf(stderr, "consilium dicom: unknown command '%s'\n", v);
    usage(stderr);
    return 2;
}
