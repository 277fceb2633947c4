/* consilium stream: send live video (encode, SRT fan-out, recording) or,
 * with no --out and no --record, receive one and report its latency.
 * consilium recording verify: check a recording folder's hash chain. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/media.h"
#include "cs/record.h"
#include "cs/thread.h"
#include "cs/video.h"

int cs_cli_stream(int argc, char **argv);
int cs_cli_recording(int argc, char **argv);

#define MAX_OUT 16

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: consilium stream [--source URL] [--out URL]... [options]\n\n"
               "Sends live H.264 video: one encode, fanned out to every output and receiver,\n"
               "recorded when --record is given. With no --out and no --record it receives\n"
               "--source instead, decodes it and reports fps and capture-to-decoded latency.\n\n"
               "source:\n"
               "  --source URL        testsrc (default), pan:IMAGE (a still panned like a\n"
               "                      microscope stage), /dev/videoN, srt://HOST:PORT,\n"
               "                      udp://..., rtsp://..., lavfi:GRAPH or a file\n"
               "  --source-format F   demuxer (rawvideo, v4l2, ...)   --source-opts K=V:K=V\n"
               "output:\n"
               "  --out URL           srt://:PORT listens for receivers (each gets its own\n"
               "                      stream from a fresh keyframe); srt://HOST:PORT calls;\n"
               "                      udp://HOST:PORT; a .ts or .mp4 file. Repeatable\n"
               "  --passphrase P      SRT encryption (default: CS_SRT_PASSPHRASE, else a\n"
               "                      random one, printed on stderr)\n"
               "  --no-encryption     SRT without a passphrase\n"
               "  --latency MS        SRT receive latency (default 120; 4 x RTT on lossy links)\n"
               "encoding:\n"
               "  --size WxH (1920x1080)  --fps N (30)  --bitrate 4M  --preset superfast\n"
               "  --keyint FRAMES (2 s)   --intra-refresh (no keyframe bursts: thin links)\n"
               "recording:\n"
               "  --record DIR        fMP4 segments + hash-chained manifest.jsonl\n"
               "  --segment S (60)    --retention-years N (10)\n"
               "run:\n"
               "  --duration S        stop after S seconds (default: until Ctrl-C)\n"
               "  --stats             one JSON line of stats per second on stdout\n"
               "  --receivers N       at most N SRT receivers at once (64)\n"
               "  -v                  log every state change (default: warnings)\n");
}

static int parse_size(const char *s, int *w, int *h)
{
    char *e;
    long a = strtol(s, &e, 10);
    if (*e != 'x')
        return -1;
    long b = strtol(e + 1, &e, 10);
    if (*e || a < 16 || b < 16 || a > 8192 || b > 8192 || (a | b) & 1)
        return -1;
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* "4M", "4000k", "4000000" -> kbit/s */
static int parse_rate(const char *s, int *kbps)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || v <= 0)
        return -1;
    if (*e == 'M' || *e == 'm')
        v *= 1000, e++;
    else if (*e == 'k' || *e == 'K')
        e++;
    else
        v /= 1000;
    if (*e || v < 50 || v > 200000)
        return -1;
    *kbps = (int)v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void random_passphrase(char *out, size_t n)
{
    static const char abc[] = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    unsigned char r[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)(cs_clock_ns() >> (i % 8));
    }
    if (fd >= 0)
        close(fd);
    size_t k = 0;
    for (; k < sizeof(r) && k + 1 < n; k++)
        out[k] = abc[r[k] % (sizeof(abc) - 1)];
    out[k] = '\0';
}

static void print_stats(void *ud, json_t *st)
{
    (void)ud;
    char *s = json_dumps(st, JSON_COMPACT);
    if (s) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, int p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(int64_t), cmp64);
    size_t i = n * (size_t)p / 100;
    return (double)v[i < n ? i : n - 1] / 1e6;
}

/* Receive --source, decode it, report latency; the summary is the last
 * line on stdout. */
static int receive(const char *url, const cs_video_source_opts *so, int duration_s, int stats)
{
    int64_t t0 = cs_clock_ns();
    cs_video_source *s;
    int rc = cs_video_source_open(&s, url, so);
    if (rc) {
        fprintf(stderr, "consilium stream: %s\n", cs_error_last());
        return 1;
    }
    size_t cap = 1 << 16, n = 0, all_n = 0;
    int64_t *lat = malloc(cap * sizeof(int64_t)), *win = malloc(cap * sizeof(int64_t));
    int64_t first_ms = -1, frames = 0, tick = cs_clock_ns(), tick_frames = 0, stamped = 0;
    int64_t last_pts = -1, lost = 0;
    size_t wn = 0;
    const char *codec = "";
    int w = 0, h = 0;
    while (!stop_flag && lat && win) {
        if (duration_s && cs_clock_ns() - t0 >= (int64_t)duration_s * 1000000000)
            break;
        cs_vframe *f;
        rc = cs_video_source_read(s, &f);
        if (rc == CS_EFORMAT)
            continue;
        if (rc) {
            if (rc != CS_EOF)
                fprintf(stderr, "consilium stream: %s\n", cs_error_last());
            break;
        }
        int64_t now = cs_clock_wall_ns();
        if (first_ms < 0)
            first_ms = (cs_clock_ns() - t0) / 1000000;
        frames++;
        /* frames missing between two decoded ones, from their timestamps */
        int64_t pts = cs_vframe_pts_us(f);
        double fps = 0;
        cs_video_source_info(s, NULL, NULL, NULL, &fps);
        if (pts >= 0 && last_pts >= 0 && fps > 0) {
            double step = (double)(pts - last_pts) * fps / 1e6;
            if (step > 1.5 && step < 1000)
                lost += (int64_t)(step + 0.5) - 1;
        }
        last_pts = pts;
        int64_t c = cs_vframe_capture_ns(f);
        if (c && now - c > -1000000000LL && now - c < 60000000000LL && now - c != 0) {
            stamped++;
            if (all_n < cap)
                lat[all_n++] = now - c;
            if (wn < cap)
                win[wn++] = now - c;
        }
        cs_vframe_unref(f);
        if (stats && cs_clock_ns() - tick >= 1000000000) {
            double dt = (double)(cs_clock_ns() - tick) / 1e9;
            cs_video_source_info(s, &codec, &w, &h, NULL);
            printf("{\"fps\":%.1f,\"frames\":%lld,\"latency_ms\":{\"p50\":%.1f,\"p95\":%.1f},"
                   "\"width\":%d,\"height\":%d,\"errors\":%lld}\n",
                   (double)(frames - tick_frames) / dt, (long long)frames, pct(win, wn, 50),
                   pct(win, wn, 95), w, h, (long long)cs_video_source_errors(s));
            fflush(stdout);
            tick = cs_clock_ns();
            tick_frames = frames;
            wn = 0;
        }
    }
    n = all_n;
    cs_video_source_info(s, &codec, &w, &h, NULL);
    double secs = (double)(cs_clock_ns() - t0) / 1e9;
    printf("{\"summary\":true,\"codec\":\"%s\",\"width\":%d,\"height\":%d,\"frames\":%lld,"
           "\"stamped\":%lld,\"lost\":%lld,\"seconds\":%.2f,\"first_frame_ms\":%lld,"
           "\"errors\":%lld,\"latency_ms\":{\"p50\":%.1f,\"p95\":%.1f,\"max\":%.1f}}\n",
           codec, w, h, (long long)frames, (long long)stamped, (long long)lost, secs,
           (long long)first_ms, (long long)cs_video_source_errors(s), pct(lat, n, 50),
           pct(lat, n, 95), pct(lat, n, 100));
    fflush(stdout);
    free(lat);
    free(win);
    cs_video_source_close(s);
    return frames > 0 ? 0 : 1;
}

int cs_cli_stream(int argc, char **argv)
{
    cs_media_opts o = CS_MEDIA_OPTS_INIT;
    const char *outs[MAX_OUT];
    int nout = 0, duration = 0, stats = 0, verbose = 0, noenc = 0;
    const char *pass = getenv("CS_SRT_PASSPHRASE");
    o.source = "testsrc";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
#define ARG(name) (!strcmp(a, name) && (v || (bad = 1, 0)) && ++i)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (ARG("--source")) {
            o.source = v;
        } else if (ARG("--source-format")) {
            o.src.format = v;
        } else if (ARG("--source-opts")) {
            o.src.options = v;
        } else if (ARG("--out")) {
            if (nout == MAX_OUT) {
                fprintf(stderr, "consilium stream: at most %d --out\n", MAX_OUT);
                return 2;
            }
            outs[nout++] = v;
        } else if (ARG("--passphrase")) {
            pass = v;
        } else if (!strcmp(a, "--no-encryption")) {
            noenc = 1;
        } else if (ARG("--latency")) {
            bad = parse_int(v, 1, 10000, &o.srt_latency_ms);
        } else if (ARG("--size")) {
            bad = parse_size(v, &o.enc.width, &o.enc.height);
        } else if (ARG("--fps")) {
            bad = parse_int(v, 1, 120, &o.enc.fps);
        } else if (ARG("--bitrate")) {
            bad = parse_rate(v, &o.enc.bitrate_kbps);
        } else if (ARG("--preset")) {
            o.enc.preset = v;
        } else if (ARG("--keyint")) {
            bad = parse_int(v, 1, 1000, &o.enc.keyint);
        } else if (!strcmp(a, "--intra-refresh")) {
            o.enc.intra_refresh = 1;
        } else if (ARG("--record")) {
            o.record_dir = v;
        } else if (ARG("--segment")) {
            bad = parse_int(v, 1, 3600, &o.segment_s);
        } else if (ARG("--retention-years")) {
            bad = parse_int(v, 1, 100, &o.retention_years);
        } else if (ARG("--duration")) {
            bad = parse_int(v, 1, 1000000, &duration);
        } else if (ARG("--receivers")) {
            bad = parse_int(v, 1, 1000, &o.max_receivers);
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!strcmp(a, "-v")) {
            verbose = 1;
        } else {
            fprintf(stderr, "consilium stream: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "consilium stream: bad or missing value for %s%s%s\n", a, v ? ": " : "",
                    v ? v : "");
            return 2;
        }
#undef ARG
    }
    char gen[32];
    if (noenc) {
        pass = NULL;
    } else if (!pass || !*pass) {
        random_passphrase(gen, sizeof(gen));
        pass = gen;
        if (nout)
            fprintf(stderr, "consilium stream: SRT passphrase %s\n", pass);
    } else if (strlen(pass) < 10 || strlen(pass) > 79) {
        fprintf(stderr, "consilium stream: an SRT passphrase has 10 to 79 characters\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!nout && !o.record_dir) {
        /* receive */
        char url[1024];
        const char *u = o.source;
        if (!strncmp(u, "srt://", 6)) {
            if (cs_media_srt_url(url, sizeof(url), u, noenc ? NULL : pass, o.srt_latency_ms,
                                 NULL)) {
                fprintf(stderr, "consilium stream: %s\n", cs_error_last());
                return 2;
            }
            u = url;
        }
        cs_video_source_opts so = o.src;
        so.realtime = 0;
        so.timeout_ms = 5000;
        return receive(u, &so, duration, stats);
    }

    cs_logger *log = NULL;
    if (cs_log_new(&log, "stream")) {
        fprintf(stderr, "consilium stream: %s\n", cs_error_last());
        return 1;
    }
    cs_log_set_level(log, verbose ? CS_LOG_INFO : CS_LOG_WARN);
    o.outputs = outs;
    o.noutputs = nout;
    o.passphrase = pass;
    o.log = log;
    if (stats)
        o.on_stats = print_stats;
    cs_media *m;
    if (cs_media_start(&m, &o)) {
        fprintf(stderr, "consilium stream: %s\n", cs_error_last());
        cs_log_free(log);
        return 1;
    }
    int64_t t0 = cs_clock_ns();
    while (!stop_flag && (!duration || cs_clock_ns() - t0 < (int64_t)duration * 1000000000)) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    json_t *st = cs_media_stats(m);
    int rc = cs_media_stop(m);
    if (rc)
        fprintf(stderr, "consilium stream: %s\n", cs_error_last());
    if (st) {
        json_object_set_new(st, "summary", json_true());
        print_stats(NULL, st);
        json_decref(st);
    }
    cs_log_free(log);
    return rc ? 1 : 0;
}

int cs_cli_recording(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        strcmp(argv[1], "verify") || argc != 3) {
        FILE *f =
            argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
        fprintf(f, "usage: consilium recording verify DIR\n\n"
                   "Checks a recording folder: every segment's SHA-256 and size against\n"
                   "manifest.jsonl, the manifest's hash chain, and segments it does not list.\n"
                   "Prints a JSON report; exit status 0 intact, 1 problems found, 2 unreadable.\n");
        return f == stdout ? 0 : 2;
    }
    json_t *rep;
    int rc = cs_record_verify(argv[2], &rep);
    if (rc < 0) {
        fprintf(stderr, "consilium recording verify: %s\n", cs_error_last());
        return 2;
    }
    char *s = json_dumps(rep, JSON_INDENT(2));
    printf("%s\n", s ? s : "{}");
    free(s);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rep, "problems"), i, p)
        fprintf(stderr, "problem: %s\n", json_string_value(p));
    fprintf(stderr, "%s: %lld segments, %s\n", argv[2],
            (long long)json_integer_value(json_object_get(rep, "segments")),
            rc ? "PROBLEMS FOUND" : "intact (hashes and chain verified)");
    json_decref(rep);
    return rc ? 1 : 0;
}
