/* consilium: the node and its tools. One binary, subcommands, no SDL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <getopt.h>
#include <jansson.h>
#include <signal.h>

#include "cs/dimse.h"
#include "cs/err.h"
#include "cs/plughost.h"
#include "cs/server.h"
#include "cs/slide.h"

static volatile sig_atomic_t stop_requested;

int cs_cli_dicom(int argc, char **argv);     /* dicom_cmd.c */
int cs_cli_stream(int argc, char **argv);    /* stream_cmd.c */
int cs_cli_recording(int argc, char **argv); /* stream_cmd.c */

static void on_signal(int sig)
{
    stop_requested = 1;
}

static void usage_main(FILE *f)
{
    fprintf(f, "usage: consilium <command> [options]\n\n"
               "commands:\n"
               "  serve PATH...   serve slides (DeepZoom, IIIF), annotations and live events\n"
               "  plugins list|check DIR...   show plugins' state, or check that they load\n"
               "  info FILE       print a slide's properties and levels\n"
               "  dicom echo|send|find|move|report|info   DICOM network tools\n"
               "  stream          live HD video: send (SRT, recording) or receive\n"
               "  recording verify DIR   check a recording's hashes and chain\n\n"
               "Run 'consilium <command> --help' for a command's options.\n");
}

static void usage_serve(FILE *f)
{
    fprintf(f,
            "usage: consilium serve [options] PATH...\n\n"
            "PATH is a slide file, a folder scanned (two levels deep) for slides, or\n"
            "synthetic:WxH for a generated test slide.\n\n"
            "options:\n"
            "  --bind ADDR          address to listen on (default 127.0.0.1)\n"
            "  --port N             port (default 8080; 0 picks a free one)\n"
            "  --token T            bearer token clients must send (default: random, printed)\n"
            "  --cache-mb M         encoded-tile cache size in MiB (default 256)\n"
            "  --threads N          HTTP worker threads (default 4)\n"
            "  --tile-size N        DeepZoom tile size (default: the slide's stored tiles)\n"
            "  --overlap N          DeepZoom overlap (default: 0 with stored tiles, else 1)\n"
            "  --quality Q          JPEG quality of tiles the server makes (default 75)\n"
            "  --max-size N         largest IIIF output width/height (default 4096)\n"
            "  --serve-associated   also serve label/macro images (they identify patients)\n"
            "  --cors-origin O      Access-Control-Allow-Origin (default *)\n"
            "  --tls-cert F --tls-key F   serve HTTPS with this PEM certificate and key\n"
            "  --port-file F        write the port number to F once listening\n"
            "  --audit-log F        append the audit trail (JSON lines, DICOM/ATNA codes) to F\n"
            "                       (default: the 'audit' log lines on stderr)\n"
            "  --db F               the store: annotations, their op log, the audit table\n"
            "                       (default: a temporary database removed at exit)\n"
            "  --user NAME:ROLE:TOKEN   another user (repeatable); ROLE is viewer (read only),\n"
            "                       pathologist, coordinator or admin. --token is 'owner', admin\n"
            "  --plugins DIR        load the Lua plugins in DIR (repeatable; later replaces\n"
            "                       a plugin of the same name)\n"
            "  --plugin-lib DIR     shared Lua libraries for require (default: DIR/lib of the\n"
            "                       first --plugins folder that has one)\n"
            "DICOM node (C-ECHO, C-STORE, C-FIND SCP; auto-forward; needs no PATH):\n"
            "  --dicom-port N       listen for DICOM associations on port N\n"
            "  --aet TITLE          our AE title (default CONSILIUM)\n"
            "  --store DIR          the study store (files indexed in --db; default\n"
            "                       --db is DIR/consilium.db); also served as DICOMweb\n"
            "  --dicom-config F     JSON: aet, dicom_port, store, peers, routes\n"
            "  --dicom-timeout S    drop associations idle or stalled for S seconds (30)\n"
            "  --no-prerender       render DICOMweb images only on request (default: frame 1\n"
            "                       of each compressed instance is rendered as it arrives)\n"
            "  -h, --help           this text\n");
}

#define MAX_LIST 64

/* The first DIR/lib of @p dirs that exists, in @p buf. */
static const char *default_lib(const char *const *dirs, int n, char *buf, size_t len)
{
    struct stat st;
    for (int i = 0; i < n; i++) {
        snprintf(buf, len, "%s/lib", dirs[i]);
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
            return buf;
    }
    return NULL;
}

/* The node stored an instance: DICOMweb may render it ahead. */
static void on_dicom_stored(void *server, const char *path, const char *ts)
{
    cs_server_dicom_stored(server, path, ts);
}

static int cmd_serve(int argc, char **argv)
{
    cs_server_opts o = CS_SERVER_OPTS_INIT;
    const char *port_file = NULL;
    enum {
        O_BIND = 256,
        O_PORT,
        O_TOKEN,
        O_CACHE,
        O_THREADS,
        O_TILE,
        O_OVERLAP,
        O_QUALITY,
        O_MAX,
        O_ASSOC,
        O_CORS,
        O_CERT,
        O_KEY,
        O_PORTFILE,
        O_AUDIT,
        O_DB,
        O_USER,
        O_PLUGINS,
        O_PLUGLIB,
        O_DPORT,
        O_AET,
        O_STORE,
        O_DCONFIG,
        O_DTIMEOUT,
        O_NOPRE
    };
    cs_dimse_opts dopts = CS_DIMSE_OPTS_INIT;
    int dicom_on = 0;
    char dbbuf[4096];
    const char *users[MAX_LIST], *plugin_dirs[MAX_LIST];
    char libbuf[4096];
    static const struct option longopts[] = {
        {"bind", required_argument, 0, O_BIND},
        {"port", required_argument, 0, O_PORT},
        {"token", required_argument, 0, O_TOKEN},
        {"cache-mb", required_argument, 0, O_CACHE},
        {"threads", required_argument, 0, O_THREADS},
        {"tile-size", required_argument, 0, O_TILE},
        {"overlap", required_argument, 0, O_OVERLAP},
        {"quality", required_argument, 0, O_QUALITY},
        {"max-size", required_argument, 0, O_MAX},
        {"serve-associated", no_argument, 0, O_ASSOC},
        {"cors-origin", required_argument, 0, O_CORS},
        {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},
        {"port-file", required_argument, 0, O_PORTFILE},
        {"audit-log", required_argument, 0, O_AUDIT},
        {"db", required_argument, 0, O_DB},
        {"user", required_argument, 0, O_USER},
        {"plugins", required_argument, 0, O_PLUGINS},
        {"plugin-lib", required_argument, 0, O_PLUGLIB},
        {"dicom-port", required_argument, 0, O_DPORT},
        {"aet", required_argument, 0, O_AET},
        {"store", required_argument, 0, O_STORE},
        {"dicom-config", required_argument, 0, O_DCONFIG},
        {"dicom-timeout", required_argument, 0, O_DTIMEOUT},
        {"no-prerender", no_argument, 0, O_NOPRE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        int numeric_ok = optarg && end && *end == '\0';
        switch (c) {
        case O_BIND:
            o.bind = optarg;
            break;
        case O_TOKEN:
            o.token = optarg;
            break;
        case O_ASSOC:
            o.serve_associated = 1;
            break;
        case O_NOPRE:
            o.dicom_prerender = 0;
            break;
        case O_CORS:
            o.cors_origin = optarg;
            break;
        case O_CERT:
            o.tls_cert = optarg;
            break;
        case O_KEY:
            o.tls_key = optarg;
            break;
        case O_PORTFILE:
            port_file = optarg;
            break;
        case O_AUDIT:
            o.audit_path = optarg;
            break;
        case O_DB:
            o.db_path = optarg;
            break;
        case O_PLUGLIB:
            o.plugin_lib = optarg;
            break;
        case O_AET:
            dopts.aet = optarg;
            break;
        case O_STORE:
            dopts.store = optarg;
            break;
        case O_DCONFIG:
            dopts.config_path = optarg;
            dicom_on = 1;
            break;
        case O_USER:
        case O_PLUGINS:
            if ((c == O_USER ? o.nusers : o.nplugin_dirs) == MAX_LIST) {
                fprintf(stderr, "consilium serve: at most %d --%s\n", MAX_LIST,
                        c == O_USER ? "user" : "plugins");
                return 2;
            }
            if (c == O_USER)
                users[o.nusers++] = optarg;
            else
                plugin_dirs[o.nplugin_dirs++] = optarg;
            break;
        case 'h':
            usage_serve(stdout);
            return 0;
        case '?':
            usage_serve(stderr);
            return 2;
        default:
            if (!numeric_ok || v < 0 || v > 1000000) {
                fprintf(stderr, "consilium serve: '%s' is not a valid number\n", optarg);
                return 2;
            }
            if (c == O_PORT)
                o.port = (int)v;
            else if (c == O_CACHE)
                o.cache_bytes = (size_t)v << 20;
            else if (c == O_THREADS)
                o.threads = (int)v;
            else if (c == O_TILE)
                o.tile_size = (int)v;
            else if (c == O_OVERLAP)
                o.overlap = (int)v;
            else if (c == O_QUALITY)
                o.quality = (int)v;
            else if (c == O_MAX)
                o.max_width = o.max_height = (int)v;
            else if (c == O_DPORT && v <= 65535)
                dopts.port = (int)v, dicom_on = 1;
            else if (c == O_DTIMEOUT && v > 0)
                dopts.timeout_s = (int)v;
            else if (c == O_DPORT || c == O_DTIMEOUT) {
                fprintf(stderr, "consilium serve: '%s' is out of range\n", optarg);
                return 2;
            }
        }
    }
    if (optind >= argc && !dicom_on) {
        fprintf(stderr, "consilium serve: give at least one slide file or folder\n");
        usage_serve(stderr);
        return 2;
    }
    if ((o.tls_cert == NULL) != (o.tls_key == NULL)) {
        fprintf(stderr, "consilium serve: --tls-cert and --tls-key go together\n");
        return 2;
    }
    o.users = users;
    o.plugin_dirs = plugin_dirs;
    if (!o.plugin_lib)
        o.plugin_lib = default_lib(plugin_dirs, o.nplugin_dirs, libbuf, sizeof(libbuf));
    cs_dimse *node = NULL;
    if (dicom_on) {
        if (!o.db_path && dopts.store) { /* the node and DICOMweb share one index */
            snprintf(dbbuf, sizeof(dbbuf), "%s/consilium.db", dopts.store);
            mkdir(dopts.store, 0755);
            o.db_path = dbbuf;
        }
        if (!o.db_path) {
            fprintf(stderr, "consilium serve: the DICOM node needs --store DIR or --db FILE\n");
            return 2;
        }
        dopts.db_path = o.db_path;
        if (cs_dimse_new(&node, &dopts) < 0) {
            fprintf(stderr, "consilium serve: DICOM node: %s\n", cs_error_last());
            return 1;
        }
        o.dicom_store = cs_dimse_store(node);
    }
    cs_server *s;
    if (cs_server_new(&s, &o) < 0) {
        fprintf(stderr, "consilium serve: %s\n", cs_error_last());
        cs_dimse_free(node);
        return 1;
    }
    for (int i = optind; i < argc; i++) {
        if (cs_server_add_path(s, argv[i]) < 0) {
            fprintf(stderr, "consilium serve: %s\n", cs_error_last());
            cs_dimse_free(node);
            cs_server_free(s);
            return 1;
        }
    }
    if (cs_server_slide_count(s) == 0 && !node)
        fprintf(stderr, "consilium serve: warning: no slides found\n");
    if (node)
        cs_dimse_on_stored(node, on_dicom_stored, s);
    if (cs_server_start(s) < 0 || (node && cs_dimse_start(node) < 0)) {
        fprintf(stderr, "consilium serve: %s\n", cs_error_last());
        cs_dimse_free(node);
        cs_server_free(s);
        return 1;
    }
    if (node)
        printf("dicom: %s on port %d, store %s\n", cs_dimse_aet(node), cs_dimse_port(node),
               cs_dimse_store(node));
    const char *scheme = o.tls_cert ? "https" : "http";
    printf("consilium: serving %d slide(s) on %s://%s:%d\n", cs_server_slide_count(s), scheme,
           o.bind, cs_server_port(s));
    printf("token: %s\n", cs_server_token(s));
    for (int i = 0; i < cs_server_slide_count(s) && i < 20; i++) {
        const char *id = cs_server_slide_id(s, i);
        printf("  %s  DZI  %s://%s:%d/slides/%s.dzi\n", id, scheme, o.bind, cs_server_port(s), id);
        printf("  %s  IIIF %s://%s:%d/iiif/3/%s/info.json\n", id, scheme, o.bind, cs_server_port(s),
               id);
    }
    fflush(stdout);
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (f) {
            fprintf(f, "%d\n", cs_server_port(s));
            fclose(f);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop_requested)
        pause();
    printf("consilium: stopping\n");
    cs_dimse_free(node);
    cs_server_free(s);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: consilium info FILE\n\nPrint a slide's vendor, size, resolution, levels,\n"
               "associated images and properties.\n");
        return argc < 2 ? 2 : 0;
    }
    cs_slide *s;
    if (cs_slide_open(&s, argv[1]) < 0) {
        fprintf(stderr, "consilium info: %s\n", cs_error_last());
        return 1;
    }
    cs_slide_level l;
    cs_slide_get_level(s, 0, &l);
    printf("file:        %s\nvendor:      %s\nsize:        %lld x %lld\n", argv[1],
           cs_slide_vendor(s), (long long)l.width, (long long)l.height);
    if (cs_slide_mpp_x(s) > 0)
        printf("mpp:         %.4f x %.4f um/px\n", cs_slide_mpp_x(s), cs_slide_mpp_y(s));
    else
        printf("mpp:         unknown\n");
    if (cs_slide_objective_power(s) > 0)
        printf("objective:   %gx\n", cs_slide_objective_power(s));
    printf("levels:      %d\n", cs_slide_level_count(s));
    for (int i = 0; i < cs_slide_level_count(s); i++) {
        cs_slide_get_level(s, i, &l);
        printf("  [%d] %lld x %lld  downsample %.4f  tiles %dx%d%s\n", i, (long long)l.width,
               (long long)l.height, l.downsample, l.tile_width, l.tile_height,
               l.raw == CS_SLIDE_RAW_JPEG ? "  stored JPEG (passthrough)" : "");
    }
    printf("associated:  ");
    for (const char *const *n = cs_slide_associated_names(s); *n; n++)
        printf("%s ", *n);
    printf("(local only; identifying)\nproperties:\n");
    for (const char *const *n = cs_slide_property_names(s); *n; n++)
        printf("  %s = %s\n", *n, cs_slide_property(s, *n));
    cs_slide_close(s);
    return 0;
}

static void usage_plugins(FILE *f)
{
    fprintf(f, "usage: consilium plugins list DIR...\n"
               "       consilium plugins check DIR...\n\n"
               "list   loads every plugin of the folders (as 'serve --plugins' would), starts\n"
               "       them and prints each one's state, strikes, memory and last error\n"
               "check  scans and loads each plugin in a throwaway host, prints OK or the\n"
               "       error; exits 1 when any fails\n\n"
               "options:\n"
               "  --plugin-lib DIR   shared Lua libraries (default: DIR/lib)\n"
               "  -h, --help         this text\n");
}

static int cmd_plugins(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_plugins(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1], *lib = NULL, *dirs[MAX_LIST];
    int n = 0;
    char libbuf[4096];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--plugin-lib") && i + 1 < argc)
            lib = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage_plugins(stdout), 0;
        else if (n < MAX_LIST)
            dirs[n++] = argv[i];
    }
    if (n == 0 || (strcmp(verb, "list") && strcmp(verb, "check"))) {
        usage_plugins(stderr);
        return 2;
    }
    if (!lib)
        lib = default_lib(dirs, n, libbuf, sizeof(libbuf));
    int failed = 0;
    if (!strcmp(verb, "check")) {
        for (int i = 0; i < n; i++) {
            json_t *report = NULL;
            int r = cs_plughost_check_dir(dirs[i], lib, &report);
            if (r < 0) {
                fprintf(stderr, "consilium plugins: %s: %s\n", dirs[i], cs_error_last());
                return 1;
            }
            size_t k;
            json_t *p;
            json_array_foreach(report, k, p)
            {
                int ok = json_is_true(json_object_get(p, "ok"));
                printf("%-20s %s%s\n", json_string_value(json_object_get(p, "name")),
                       ok ? "OK" : "FAILED: ",
                       ok ? "" : json_string_value(json_object_get(p, "error")));
            }
            failed += r;
            json_decref(report);
        }
        return failed ? 1 : 0;
    }
    cs_plughost_opts po = CS_PLUGHOST_OPTS_INIT;
    po.lib_dir = lib;
    cs_plughost_core core = {0};
    cs_plughost *h;
    if (cs_plughost_new(&h, &po, &core) < 0) {
        fprintf(stderr, "consilium plugins: %s\n", cs_error_last());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (cs_plughost_add_dir(h, dirs[i]) < 0) {
            fprintf(stderr, "consilium plugins: %s\n", cs_error_last());
            cs_plughost_free(h);
            return 1;
        }
    }
    cs_plughost_start(h);
    cs_plughost_idle(h, 2000);
    json_t *stats = cs_plughost_stats(h);
    printf("%-20s %-10s %-9s %7s %10s  %s\n", "NAME", "VERSION", "STATE", "STRIKES", "MEMORY",
           "LAST ERROR");
    size_t k;
    json_t *p;
    json_array_foreach(stats, k, p)
    {
        const char *state = json_string_value(json_object_get(p, "state"));
        const char *err = json_string_value(json_object_get(p, "last_error"));
        int errlen = err ? (int)strcspn(err, "\n") : 0; /* the first line, not the traceback */
        printf("%-20s %-10s %-9s %7lld %9.1fK  %.*s\n",
               json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "version")) ?: "-", state ?: "-",
               (long long)json_integer_value(json_object_get(p, "strikes")),
               (double)json_integer_value(json_object_get(p, "memory")) / 1024, errlen,
               err ? err : "");
        failed += state && strcmp(state, CS_PLUGIN_STATE_LOADED) != 0;
    }
    json_decref(stats);
    cs_plughost_free(h);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_main(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "plugins") == 0)
        return cmd_plugins(argc - 1, argv + 1);
    if (strcmp(argv[1], "dicom") == 0)
        return cs_cli_dicom(argc - 1, argv + 1);
    if (strcmp(argv[1], "stream") == 0)
        return cs_cli_stream(argc - 1, argv + 1);
    if (strcmp(argv[1], "recording") == 0)
        return cs_cli_recording(argc - 1, argv + 1);
    fprintf(stderr, "consilium: unknown command '%s'\n", argv[1]);
    usage_main(stderr);
    return 2;
}
