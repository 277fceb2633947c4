/* srtcount: a light SRT receiver for bench/video. One process holds N
 * SRT caller connections (one thread each, libsrt through libavformat's
 * srt:// protocol, as the rest of the project does) and only reads bytes:
 * no demuxing, no decoding, so the receivers do not eat the CPU of the
 * sender being measured.
 *
 * Per connection it counts bytes, TS packets, continuity-counter gaps
 * (packets lost in transport) and, on the video PID, access units (PES
 * starts) and the PTS span they cover: expected frames = span * fps + 1,
 * missing = expected - received (frames the sender dropped for this
 * receiver, or lost). A refused or failed connection is retried until the
 * deadline (our sender accepts one caller at a time).
 *
 * usage: video_srtcount [--fps N] [--n N] [--start-ms MS] DURATION_S URL [URL...]
 *   each URL gets N connections (default 1); prints one JSON object. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavformat/avio.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/log.h>

typedef struct conn {
    pthread_t th;
    const char *url;
    int64_t t_connect_ns, t_first_ns, t_last_ns;
    int64_t bytes, packets, cc_errors, cc_lost, aus, attempts, resyncs;
    int64_t pts_first, pts_last;
    int video_pid;
    int error;
    /* parser state */
    uint8_t carry[188];
    int ncarry;
    int8_t cc[8192];
} conn;

static atomic_int stop;
static int64_t t0_ns, deadline_ns;
static int fps = 30;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int interrupted(void *ud)
{
    (void)ud;
    return atomic_load(&stop) || now_ns() >= deadline_ns;
}

static int64_t read_pts(const uint8_t *p)
{
    return ((int64_t)(p[0] & 0x0e) << 29) | ((int64_t)p[1] << 22) | ((int64_t)(p[2] & 0xfe) << 14) |
           ((int64_t)p[3] << 7) | (p[4] >> 1);
}

static void ts_packet(conn *c, const uint8_t *p)
{
    int pid = ((p[1] & 0x1f) << 8) | p[2];
    int pusi = p[1] & 0x40;
    int afc = (p[3] >> 4) & 3;
    int cc = p[3] & 15;
    c->packets++;
    if (pid == 0x1fff)
        return;
    if (afc & 1) {
        int last = c->cc[pid];
        if (last >= 0 && cc != last) {
            int lost = (cc - last - 1) & 15;
            if (lost) {
                c->cc_errors++;
                c->cc_lost += lost;
            }
        }
        c->cc[pid] = (int8_t)cc;
    }
    if (!pusi || !(afc & 1))
        return;
    int off = 4;
    if (afc & 2)
        off += 1 + p[4];
    if (off + 14 > 188)
        return;
    const uint8_t *pes = p + off;
    if (pes[0] || pes[1] || pes[2] != 1 || (pes[3] & 0xf0) != 0xe0)
        return; /* not a video PES */
    if (c->video_pid < 0)
        c->video_pid = pid;
    if (pid != c->video_pid)
        return;
    c->aus++;
    if (pes[7] & 0x80) {
        int64_t pts = read_pts(pes + 9);
        if (c->pts_first < 0)
            c->pts_first = pts;
        c->pts_last = pts;
    }
}

static void feed(conn *c, const uint8_t *b, int n)
{
    while (n > 0) {
        if (c->ncarry) {
            int k = 188 - c->ncarry < n ? 188 - c->ncarry : n;
            memcpy(c->carry + c->ncarry, b, (size_t)k);
            c->ncarry += k;
            b += k;
            n -= k;
            if (c->ncarry == 188) {
                if (c->carry[0] == 0x47)
                    ts_packet(c, c->carry);
                else
                    c->resyncs++;
                c->ncarry = 0;
            }
            continue;
        }
        if (b[0] != 0x47) {
            c->resyncs++;
            b++;
            n--;
            continue;
        }
        if (n >= 188) {
            ts_packet(c, b);
            b += 188;
            n -= 188;
        } else {
            memcpy(c->carry, b, (size_t)n);
            c->ncarry = n;
            n = 0;
        }
    }
}

static void *run(void *arg)
{
    conn *c = arg;
    AVIOInterruptCB cb = {interrupted, NULL};
    uint8_t buf[65536];
    while (!interrupted(NULL)) {
        AVIOContext *io = NULL;
        AVDictionary *o = NULL;
        av_dict_set(&o, "connect_timeout", "2000", 0);
        c->attempts++;
        int rc = avio_open2(&io, c->url, AVIO_FLAG_READ, &cb, &o);
        av_dict_free(&o);
        if (rc < 0) {
            c->error = rc;
            struct timespec ts = {0, 50000000}; /* refused: the listener is busy */
            nanosleep(&ts, NULL);
            continue;
        }
        c->error = 0;
        c->t_connect_ns = now_ns();
        for (;;) {
            int n = avio_read_partial(io, buf, sizeof(buf));
            if (n <= 0)
                break;
            int64_t t = now_ns();
            if (!c->t_first_ns)
                c->t_first_ns = t;
            c->t_last_ns = t;
            c->bytes += n;
            feed(c, buf, n);
        }
        avio_closep(&io);
        if (c->bytes) /* one stream per connection: do not count a second one */
            break;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = 1, i = 1;
    long start_ms = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (i + 1 >= argc)
            return 2;
        if (!strcmp(argv[i], "--fps"))
            fps = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--n"))
            n = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--start-ms"))
            start_ms = strtol(argv[i + 1], NULL, 10);
        else
            return 2;
    }
    if (argc - i < 2 || n < 1 || fps < 1) {
        fprintf(stderr, "usage: video_srtcount [--fps N] [--n N] [--start-ms MS] DURATION_S "
                        "URL [URL...]\n");
        return 2;
    }
    double dur = strtod(argv[i++], NULL);
    int nurl = argc - i, total = nurl * n;
    av_log_set_level(AV_LOG_QUIET);
    t0_ns = now_ns();
    deadline_ns = t0_ns + (int64_t)(dur * 1e9);
    conn *cs = calloc((size_t)total, sizeof(*cs));
    if (!cs)
        return 1;
    for (int k = 0; k < total; k++) {
        conn *c = &cs[k];
        c->url = argv[i + k / n];
        c->video_pid = -1;
        c->pts_first = c->pts_last = -1;
        memset(c->cc, -1, sizeof(c->cc));
        if (start_ms) { /* stagger the callers a little */
            struct timespec ts = {start_ms / 1000, (start_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        if (pthread_create(&c->th, NULL, run, c)) {
            total = k;
            break;
        }
    }
    for (int k = 0; k < total; k++)
        pthread_join(cs[k].th, NULL);
    printf("{\"connections\":[");
    for (int k = 0; k < total; k++) {
        conn *c = &cs[k];
        int64_t expected = c->pts_first >= 0 ? (c->pts_last - c->pts_first) * fps / 90000 + 1 : 0;
        char eb[128] = "";
        if (c->error && !c->bytes)
            av_strerror(c->error, eb, sizeof(eb));
        printf("%s{\"attempts\":%lld,\"connect_ms\":%.1f,\"first_byte_ms\":%.1f,"
               "\"seconds\":%.3f,\"bytes\":%lld,\"ts_packets\":%lld,\"cc_errors\":%lld,"
               "\"cc_lost_packets\":%lld,\"resyncs\":%lld,\"frames\":%lld,"
               "\"frames_expected\":%lld,\"error\":\"%s\"}",
               k ? "," : "", (long long)c->attempts,
               c->t_connect_ns ? (double)(c->t_connect_ns - t0_ns) / 1e6 : -1.0,
               c->t_first_ns ? (double)(c->t_first_ns - t0_ns) / 1e6 : -1.0,
               c->t_first_ns ? (double)(c->t_last_ns - c->t_first_ns) / 1e9 : 0.0,
               (long long)c->bytes, (long long)c->packets, (long long)c->cc_errors,
               (long long)c->cc_lost, (long long)c->resyncs, (long long)c->aus, (long long)expected,
               eb);
    }
    printf("]}\n");
    free(cs);
    return 0;
}
