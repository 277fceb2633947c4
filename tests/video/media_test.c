/* unit.media: codecs/video and core/media in process. The capture time
 * survives encode -> MPEG-TS / fMP4 -> decode; bad files and options give
 * clear errors; a pipeline with an SRT listener serves receivers that join
 * and leave, records, and stops cleanly. Also run under ThreadSanitizer
 * (the tsan preset builds only this test). */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "cs/err.h"
#include "cs/media.h"
#include "cs/record.h"
#include "cs/thread.h"
#include "cs/video.h"

static char work[512];

/* A UDP port free on 127.0.0.1 now (SRT runs over UDP). */
static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", work, name);
}

/* Encode @p n frames of a moving bar with capture times base + i ms. */
static void write_clip(const char *path, int n, int64_t base)
{
    cs_video_enc_opts eo = CS_VIDEO_ENC_OPTS_INIT;
    eo.width = 320;
    eo.height = 240;
    eo.bitrate_kbps = 500;
    eo.keyint = 10;
    cs_video_enc *enc;
    assert_int_equal(cs_video_enc_new(&enc, &eo), 0);
    cs_video_out *out;
    assert_int_equal(cs_video_out_open(&out, path, enc, NULL), 0);
    for (int i = 0; i <= n; i++) {
        cs_vframe *f = NULL;
        if (i < n) {
            assert_int_equal(cs_vframe_new(&f, 320, 240), 0);
            int ys;
            uint8_t *y = cs_vframe_plane(f, 0, &ys);
            for (int r = 0; r < 240; r++)
                memset(y + (size_t)r * ys + (i * 8) % 280, 235, 40);
            cs_vframe_set_capture_ns(f, base + (int64_t)i * 1000000);
        }
        assert_int_equal(cs_video_enc_send(enc, f, 0), 0);
        cs_vframe_unref(f);
        if (i == n) /* flush: the encoder gives what it holds */
            cs_video_enc_send(enc, NULL, 0);
        cs_vpacket *p;
        while (cs_video_enc_receive(enc, &p) == 0) {
            assert_int_equal(cs_video_out_write(out, p), 0);
            cs_vpacket_unref(p);
        }
    }
    assert_int_equal(cs_video_out_close(out), 0);
    cs_video_enc_free(enc);
}

static void read_clip(const char *path, int n, int64_t base)
{
    cs_video_source_opts so = CS_VIDEO_SOURCE_OPTS_INIT;
    so.realtime = 0;
    cs_video_source *s;
    assert_int_equal(cs_video_source_open(&s, path, &so), 0);
    int got = 0;
    cs_vframe *f;
    while (cs_video_source_read(s, &f) == 0) {
        assert_int_equal(cs_vframe_width(f), 320);
        assert_int_equal(cs_vframe_height(f), 240);
        assert_int_equal(cs_vframe_capture_ns(f), base + (int64_t)got * 1000000);
        got++;
        cs_vframe_unref(f);
    }
    assert_int_equal(got, n);
    cs_video_source_close(s);
}

static void media__capture_time_survives_ts_and_mp4(void **state)
{
    (void)state;
    char ts[600], mp4[600];
    path_in(ts, sizeof(ts), "clip.ts");
    path_in(mp4, sizeof(mp4), "clip.mp4");
    int64_t base = 1700000000123456789LL;
    write_clip(ts, 25, base);
    read_clip(ts, 25, base);
    write_clip(mp4, 25, base);
    read_clip(mp4, 25, base);
    /* a recording seeks */
    cs_video_source_opts so = CS_VIDEO_SOURCE_OPTS_INIT;
    so.realtime = 0;
    cs_video_source *s;
    assert_int_equal(cs_video_source_open(&s, mp4, &so), 0);
    assert_true(cs_video_source_duration_us(s) > 700000);
    assert_int_equal(cs_video_source_seek(s, 500000), 0);
    cs_vframe *f;
    assert_int_equal(cs_video_source_read(s, &f), 0);
    assert_true(cs_vframe_pts_us(f) >= 300000 && cs_vframe_pts_us(f) <= 600000);
    cs_vframe_unref(f);
    cs_video_source_close(s);
}

static void media__bad_files_and_options(void **state)
{
    (void)state;
    cs_video_source *s;
    assert_int_equal(cs_video_source_open(&s, "/nonexistent/clip.ts", NULL), CS_ENOTFOUND);
    assert_non_null(strstr(cs_error_last(), "/nonexistent/clip.ts"));
    char junk[600];
    path_in(junk, sizeof(junk), "junk.ts");
    FILE *f = fopen(junk, "wb");
    for (int i = 0; i < 20000; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);
    int rc = cs_video_source_open(&s, junk, NULL);
    assert_true(rc == CS_EFORMAT || rc == CS_EIO);
    assert_true(strlen(cs_error_last()) > 10);
    cs_video_enc_opts eo = CS_VIDEO_ENC_OPTS_INIT;
    eo.width = 321;
    cs_video_enc *e;
    assert_int_equal(cs_video_enc_new(&e, &eo), CS_EINVAL);
    assert_non_null(strstr(cs_error_last(), "321"));
    cs_vframe *fr;
    assert_int_equal(cs_vframe_new(&fr, 7, 8), CS_EINVAL);
    char red[200];
    cs_video_url_redact("srt://h:1?mode=caller&passphrase=secret123456&latency=2", red,
                        sizeof(red));
    assert_string_equal(red, "srt://h:1?mode=caller&passphrase=***&latency=2");
    cs_media *m;
    cs_media_opts mo = CS_MEDIA_OPTS_INIT;
    assert_int_equal(cs_media_start(&m, &mo), CS_EINVAL);
}

static int64_t stat_int(cs_media *m, const char *key)
{
    json_t *st = cs_media_stats(m);
    int64_t v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

static void media__listener_receivers_recording_and_stop(void **state)
{
    (void)state;
    char rec[600], url[64], curl[700];
    path_in(rec, sizeof(rec), "rec");
    int port = free_udp_port();
    snprintf(url, sizeof(url), "srt://:%d", port);
    const char *outs[] = {url};
    cs_media_opts mo = CS_MEDIA_OPTS_INIT;
    mo.source = "testsrc";
    mo.enc.width = 320;
    mo.enc.height = 240;
    mo.enc.bitrate_kbps = 500;
    mo.outputs = outs;
    mo.noutputs = 1;
    mo.passphrase = "unit-test-passphrase";
    mo.srt_latency_ms = 20;
    mo.record_dir = rec;
    mo.segment_s = 1;
    cs_media *m;
    assert_int_equal(cs_media_start(&m, &mo), 0);
    snprintf(curl, sizeof(curl), "srt://127.0.0.1:%d?mode=caller", port);
    char full[800];
    assert_int_equal(cs_media_srt_url(full, sizeof(full), curl, "unit-test-passphrase", 20, NULL),
                     0);
    /* receivers join and leave: ffmpeg in its own process (SRT callers
     * and the listener in one process share libsrt's state) */
    for (int k = 0; k < 3; k++) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd),
                 "timeout 60 ffmpeg -v error -nostdin -i '%s' -frames:v 15 -f null - "
                 ">/dev/null 2>&1",
                 full);
        int rc = system(cmd);
        if (rc != 0)
            fail_msg("receiver %d: ffmpeg exit %d", k, rc);
    }
    usleep(1500000);
    int64_t frames = stat_int(m, "frames");
    assert_true(frames > 30);
    /* a late frame is dropped rather than queued; under TSan (several
     * times slower) a few are */
    assert_true(stat_int(m, "dropped") * 10 <= frames);
    assert_int_equal(cs_media_stop(m), 0);
    json_t *rep;
    assert_int_equal(cs_record_verify(rec, &rep), 0);
    assert_true(json_integer_value(json_object_get(rep, "segments")) >= 1);
    json_decref(rep);
}

int main(void)
{
    const char *w = getenv("CS_WORK");
    snprintf(work, sizeof(work), "%s/media_unit", w ? w : "/tmp");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
    if (system(cmd) != 0)
        return 1;
    mkdir(w ? w : "/tmp", 0755);
    mkdir(work, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(media__capture_time_survives_ts_and_mp4),
        cmocka_unit_test(media__bad_files_and_options),
        cmocka_unit_test(media__listener_receivers_recording_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
