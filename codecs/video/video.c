/* codecs/video: FFmpeg 5.1 and libx264 behind cs/video.h.
 *
 * Frames are AVFrames (YUV 4:2:0) and packets AVPackets, each wrapped with
 * a refcount and the capture time. Every blocking libav call runs with an
 * interrupt callback that checks a stop flag and a deadline, so a dead
 * camera or a vanished SRT peer turns into CS_ETIMEDOUT or CS_EIO instead of
 * a hang. */
#include "cs/video.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "cs/err.h"
#include "cs/thread.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    avdevice_register_all();
    avformat_network_init();
    /* libav's own chatter off unless asked: errors come back as messages */
    av_log_set_level(getenv("CS_VIDEO_DEBUG") ? AV_LOG_VERBOSE : AV_LOG_QUIET);
}

static const uint8_t sei_uuid[16] = {0xc5, 0xa1, 0xc0, 0xde, 0x7e, 0x1e, 0x4a, 0x7e,
                                     0x8a, 0x11, 0xca, 0x97, 0xe5, 0xe1, 0xf1, 0xa6};

static const char *averr(int e, char *buf, size_t n)
{
    av_strerror(e, buf, n);
    return buf;
}

/* "k=v:k=v" into a dictionary (values may not contain ':'). */
static int dict_parse(AVDictionary **d, const char *s)
{
    if (!s || !*s)
        return 0;
    if (av_dict_parse_string(d, s, "=", ":", 0) < 0)
        return cs_error_set(CS_EINVAL, "bad options '%s' (want key=value:key=value)", s);
    return 0;
}

void cs_video_url_redact(const char *url, char *out, size_t n)
{
    snprintf(out, n, "%s", url);
    char *p = strstr(out, "passphrase=");
    if (!p)
        return;
    p += strlen("passphrase=");
    char *q = p + strcspn(p, "&");
    char tail[600];
    snprintf(tail, sizeof(tail), "%s", q);
    snprintf(p, n - (size_t)(p - out), "***%s", tail);
}

/* ------------------------------------------------------------ interrupts */

typedef struct {
    atomic_int stop;
    _Atomic int64_t deadline_ns; /* monotonic; 0: none */
    int (*user)(void *);         /* the caller's own interrupt, or NULL */
    void *user_data;
} intr;

static int intr_stopped(intr *i)
{
    if (!atomic_load(&i->stop) && i->user && i->user(i->user_data))
        atomic_store(&i->stop, 1);
    return atomic_load(&i->stop);
}

static int intr_cb(void *opaque)
{
    intr *i = opaque;
    if (intr_stopped(i))
        return 1;
    int64_t d = atomic_load(&i->deadline_ns);
    return d && cs_clock_ns() > d;
}

static void intr_arm(intr *i, int ms)
{
    atomic_store(&i->deadline_ns, ms > 0 ? cs_clock_ns() + (int64_t)ms * 1000000 : 0);
}

/* ---------------------------------------------------------------- frames */

struct cs_vframe {
    atomic_int ref;
    AVFrame *av;
    int64_t capture_ns;
    int64_t pts_us;
};

static cs_vframe *vframe_wrap(AVFrame *av)
{
    cs_vframe *f = calloc(1, sizeof(*f));
    if (!f) {
        av_frame_free(&av);
        return NULL;
    }
    atomic_init(&f->ref, 1);
    f->av = av;
    f->pts_us = -1;
    return f;
}

int cs_vframe_new(cs_vframe **out, int w, int h)
{
    if (w < 2 || h < 2 || (w | h) & 1 || w > 8192 || h > 8192)
        return cs_error_set(CS_EINVAL, "frame size %dx%d: want even sizes up to 8192", w, h);
    AVFrame *av = av_frame_alloc();
    if (!av)
        return cs_error_set(CS_ENOMEM, "out of memory");
    av->format = AV_PIX_FMT_YUV420P;
    av->width = w;
    av->height = h;
    if (av_frame_get_buffer(av, 0) < 0) {
        av_frame_free(&av);
        return cs_error_set(CS_ENOMEM, "out of memory for a %dx%d frame", w, h);
    }
    for (int y = 0; y < h; y++)
        memset(av->data[0] + (size_t)y * av->linesize[0], 16, (size_t)w);
    for (int p = 1; p < 3; p++)
        for (int y = 0; y < h / 2; y++)
            memset(av->data[p] + (size_t)y * av->linesize[p], 128, (size_t)w / 2);
    if (!(*out = vframe_wrap(av)))
        return cs_error_set(CS_ENOMEM, "out of memory");
    return 0;
}

int cs_vframe_copy(cs_vframe **out, const cs_vframe *f)
{
    int rc = cs_vframe_new(out, f->av->width, f->av->height);
    if (rc)
        return rc;
    av_frame_copy((*out)->av, f->av);
    (*out)->capture_ns = f->capture_ns;
    (*out)->pts_us = f->pts_us;
    return 0;
}

cs_vframe *cs_vframe_ref(cs_vframe *f)
{
    if (f)
        atomic_fetch_add(&f->ref, 1);
    return f;
}

void cs_vframe_unref(cs_vframe *f)
{
    if (f && atomic_fetch_sub(&f->ref, 1) == 1) {
        av_frame_free(&f->av);
        free(f);
    }
}

int cs_vframe_width(const cs_vframe *f)
{
    return f->av->width;
}

int cs_vframe_height(const cs_vframe *f)
{
    return f->av->height;
}

uint8_t *cs_vframe_plane(const cs_vframe *f, int i, int *stride)
{
    if (stride)
        *stride = f->av->linesize[i];
    return f->av->data[i];
}

int64_t cs_vframe_capture_ns(const cs_vframe *f)
{
    return f->capture_ns;
}

void cs_vframe_set_capture_ns(cs_vframe *f, int64_t ns)
{
    f->capture_ns = ns;
}

int64_t cs_vframe_pts_us(const cs_vframe *f)
{
    return f->pts_us;
}

/* --------------------------------------------------------------- packets */

struct cs_vpacket {
    atomic_int ref;
    AVPacket *av; /* time base: microseconds */
    int64_t capture_ns;
    const cs_video_enc *enc;
};

cs_vpacket *cs_vpacket_ref(cs_vpacket *p)
{
    if (p)
        atomic_fetch_add(&p->ref, 1);
    return p;
}

void cs_vpacket_unref(cs_vpacket *p)
{
    if (p && atomic_fetch_sub(&p->ref, 1) == 1) {
        av_packet_free(&p->av);
        free(p);
    }
}

size_t cs_vpacket_size(const cs_vpacket *p)
{
    return (size_t)p->av->size;
}

int cs_vpacket_is_key(const cs_vpacket *p)
{
    return (p->av->flags & AV_PKT_FLAG_KEY) != 0;
}

int64_t cs_vpacket_capture_ns(const cs_vpacket *p)
{
    return p->capture_ns;
}

int64_t cs_vpacket_pts_us(const cs_vpacket *p)
{
    return p->av->pts;
}

const cs_video_enc *cs_vpacket_encoder(const cs_vpacket *p)
{
    return p->enc;
}

/* --------------------------------------------------------------- sources */

struct cs_video_source {
    cs_video_source_opts o;
    intr in;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *raw;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt; /* what sws was made for */
    int out_w, out_h;
    int paced; /* read at the file's own rate */
    int64_t pace_t0_ns, pace_pts0_us;
    int eof_sent;
    int64_t errors;
    char codec[32];
    double fps;
    /* pan: a still image panned across */
    AVFrame *pan;
    int64_t pan_n, pan_t0_ns;
    /* srt://: opened non-blocking and polled (see srt_poll_read) */
    AVIOContext *srt_in, *srt_pb;
};

static int64_t stream_us(const AVStream *st, int64_t ts)
{
    if (ts == AV_NOPTS_VALUE)
        return -1;
    return av_rescale_q(ts, st->time_base, AV_TIME_BASE_Q);
}

/* Decode one still image fully (pan:), as YUV 4:2:0 at least 1.5x the
 * frame, so the pan has somewhere to go. */
static int pan_load(cs_video_source *s, const char *path)
{
    cs_video_source_opts o = s->o;
    o.realtime = 0;
    cs_video_source *img;
    int rc = cs_video_source_open(&img, path, &o);
    if (rc)
        return rc;
    int iw = 0, ih = 0;
    cs_video_source_info(img, NULL, &iw, &ih, NULL);
    cs_video_source_close(img);
    if (!s->o.width || !s->o.height) {
        s->o.width = 1920;
        s->o.height = 1080;
    }
    double k = 1.0;
    if (iw < s->o.width * 3 / 2 || ih < s->o.height * 3 / 2) {
        double kx = (double)s->o.width * 1.5 / (iw ? iw : 1);
        double ky = (double)s->o.height * 1.5 / (ih ? ih : 1);
        k = kx > ky ? kx : ky;
    }
    o.width = ((int)(iw * k) + 1) & ~1;
    o.height = ((int)(ih * k) + 1) & ~1;
    rc = cs_video_source_open(&img, path, &o);
    if (rc)
        return rc;
    cs_vframe *f;
    rc = cs_video_source_read(img, &f);
    cs_video_source_close(img);
    if (rc)
        return rc;
    s->pan = av_frame_clone(f->av);
    cs_vframe_unref(f);
    if (!s->pan)
        return cs_error_set(CS_ENOMEM, "out of memory");
    s->out_w = s->o.width;
    s->out_h = s->o.height;
    s->fps = s->o.fps;
    snprintf(s->codec, sizeof(s->codec), "pan");
    return 0;
}

/* Position of the pan at frame n: a triangle wave on each axis (even
 * offsets keep the chroma aligned); bench/video's FFmpeg anchor uses the
 * same formula in its crop filter. */
static int pan_pos(int64_t n, int v, int span)
{
    if (span <= 0)
        return 0;
    int64_t p = (n * v) % (2 * (int64_t)span);
    return (int)((p > span ? 2 * span - p : p) & ~1);
}

static int pan_read(cs_video_source *s, cs_vframe **out)
{
    int64_t now = cs_clock_ns();
    if (!s->pan_t0_ns)
        s->pan_t0_ns = now;
    int64_t due = s->pan_t0_ns + s->pan_n * 1000000000 / s->o.fps;
    while (due > (now = cs_clock_ns())) {
        if (intr_stopped(&s->in))
            return cs_error_set(CS_ECLOSED, "interrupted");
        int64_t d = due - now;
        struct timespec ts = {0, d > 20000000 ? 20000000 : d};
        nanosleep(&ts, NULL);
    }
    AVFrame *av = av_frame_alloc();
    if (!av || av_frame_ref(av, s->pan) < 0) {
        av_frame_free(&av);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    int x = pan_pos(s->pan_n, 6, s->pan->width - s->out_w);
    int y = pan_pos(s->pan_n, 2, s->pan->height - s->out_h);
    av->data[0] += (size_t)y * av->linesize[0] + x;
    av->data[1] += (size_t)(y / 2) * av->linesize[1] + x / 2;
    av->data[2] += (size_t)(y / 2) * av->linesize[2] + x / 2;
    av->width = s->out_w;
    av->height = s->out_h;
    cs_vframe *f = vframe_wrap(av);
    if (!f)
        return cs_error_set(CS_ENOMEM, "out of memory");
    f->capture_ns = cs_clock_wall_ns();
    f->pts_us = s->pan_n * 1000000 / s->o.fps;
    s->pan_n++;
    *out = f;
    return 0;
}

static int is_live_url(const char *url)
{
    static const char *const live[] = {
        "srt:", "udp:", "rtp:", "rtsp:", "rtmp:", "tcp:", "/dev/", "pipe:", "http:", "https:"};
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
        if (!strncmp(url, live[i], strlen(live[i])))
            return 1;
    return 0;
}

/* libsrt 1.5's epoll wait, in which libavformat's srt:// blocks to read,
 * notices new data only on a 10 ms tick. Measured here on loopback at SRT
 * latency 2 ms: 14.5 ms from the sender's write to the reader, against
 * 4.7 ms with the socket opened non-blocking and polled. So an SRT input
 * is read that way, still through libavformat: while nothing is there it
 * looks again after 0.1 ms, doubling to 1 ms (a frame's datagrams come
 * together, then nothing for most of a frame interval). */
static int srt_poll_read(void *opaque, uint8_t *buf, int size)
{
    cs_video_source *s = opaque;
    long pause_ns = 100000;
    for (;;) {
        int n = avio_read_partial(s->srt_in, buf, size);
        if (n != AVERROR(EAGAIN))
            return n;
        s->srt_in->eof_reached = 0; /* "nothing yet" is not an end */
        s->srt_in->error = 0;
        if (intr_cb(&s->in))
            return AVERROR_EXIT;
        struct timespec pause = {0, pause_ns};
        nanosleep(&pause, NULL);
        pause_ns = pause_ns >= 500000 ? 1000000 : pause_ns * 2;
    }
}

static void srt_close(cs_video_source *s)
{
    if (s->srt_pb) {
        av_freep(&s->srt_pb->buffer);
        avio_context_free(&s->srt_pb);
    }
    avio_closep(&s->srt_in);
}

/* Connects (or listens) and gives s->fmt the polling reader; @p opt: the
 * caller's options, of which the SRT protocol takes its own. */
static int srt_open(cs_video_source *s, const char *url, const AVDictionary *opt)
{
    enum { SRT_BUF = 32768 };
    AVDictionary *po = NULL;
    av_dict_copy(&po, opt, 0);
    int e = avio_open2(&s->srt_in, url, AVIO_FLAG_READ | AVIO_FLAG_NONBLOCK,
                       &s->fmt->interrupt_callback, &po);
    av_dict_free(&po);
    if (e < 0)
        return e;
    uint8_t *buf = av_malloc(SRT_BUF);
    s->srt_pb = buf ? avio_alloc_context(buf, SRT_BUF, 0, s, srt_poll_read, NULL, NULL) : NULL;
    if (!s->srt_pb) {
        av_free(buf);
        avio_closep(&s->srt_in);
        return AVERROR(ENOMEM);
    }
    s->fmt->pb = s->srt_pb;
    return 0;
}

static int open_input(cs_video_source *s, const char *url)
{
    char inner[512];
    const char *fmtname = s->o.format;
    const char *u = url;
    AVDictionary *opt = NULL;
    int fps = s->o.fps;
    if (!strcmp(url, "testsrc")) {
        snprintf(inner, sizeof(inner), "testsrc2=size=%dx%d:rate=%d",
                 s->o.width ? s->o.width : 1280, s->o.height ? s->o.height : 720, fps);
        u = inner;
        fmtname = "lavfi";
    } else if (!strncmp(url, "lavfi:", 6)) {
        u = url + 6;
        fmtname = "lavfi";
    } else if (!strncmp(url, "/dev/video", 10)) {
        fmtname = fmtname ? fmtname : "v4l2";
        char v[32];
        snprintf(v, sizeof(v), "%d", fps);
        av_dict_set(&opt, "framerate", v, 0);
        if (s->o.width && s->o.height) {
            snprintf(v, sizeof(v), "%dx%d", s->o.width, s->o.height);
            av_dict_set(&opt, "video_size", v, 0);
        }
    }
    int ts = !fmtname && (!strncmp(url, "srt:", 4) || !strncmp(url, "udp:", 4));
    if (ts)
        fmtname = "mpegts"; /* probing would wait for probesize bytes */
    if (is_live_url(url)) {
        /* an MPEG-TS sender puts one access unit in each PES: without the
         * parser a frame is handed over when its PES ends, not when the
         * next one starts (a frame of latency) */
        av_dict_set(&opt, "fflags", ts ? "nobuffer+noparse+nofillin" : "nobuffer", 0);
        av_dict_set(&opt, "probesize", "32768", 0);
        av_dict_set(&opt, "analyzeduration", "100000", 0);
    }
    int rc = dict_parse(&opt, s->o.options);
    if (rc) {
        av_dict_free(&opt);
        return rc;
    }
    const AVInputFormat *ifmt = NULL;
    if (fmtname && !(ifmt = av_find_input_format(fmtname))) {
        av_dict_free(&opt);
        return cs_error_set(CS_EINVAL, "unknown input format '%s'", fmtname);
    }
    /* An SRT listener takes one caller at a time (libavformat listens with
     * a backlog of 1 and listens again after each accept), so a caller
     * refused while another joins retries until its timeout. */
    int srt = !strncmp(url, "srt:", 4);
    int srt_caller = srt && !strstr(url, "mode=listener");
    char shown[600], eb[128];
    cs_video_url_redact(url, shown, sizeof(shown));
    int64_t end = cs_clock_ns() + (int64_t)s->o.timeout_ms * 1000000;
    int e;
    intr_arm(&s->in, s->o.timeout_ms);
    for (;;) {
        AVDictionary *o2 = NULL;
        av_dict_copy(&o2, opt, 0);
        s->fmt = avformat_alloc_context();
        if (!s->fmt) {
            av_dict_free(&o2);
            av_dict_free(&opt);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        s->fmt->interrupt_callback.callback = intr_cb;
        s->fmt->interrupt_callback.opaque = &s->in;
        e = srt ? srt_open(s, u, o2) : 0;
        if (e >= 0) {
            e = avformat_open_input(&s->fmt, srt ? shown : u, ifmt, &o2);
        } else {
            avformat_free_context(s->fmt);
            s->fmt = NULL;
        }
        if (e < 0)
            srt_close(s);
        av_dict_free(&o2);
        if (e >= 0 || !srt_caller || intr_stopped(&s->in) || cs_clock_ns() + 200000000 > end)
            break;
        struct timespec pause = {0, 150000000};
        nanosleep(&pause, NULL);
    }
    av_dict_free(&opt);
    if (e < 0) {
        if (intr_stopped(&s->in))
            return cs_error_set(CS_ECLOSED, "%s: interrupted", shown);
        if (srt_caller)
            return cs_error_set(CS_EIO,
                                "%s: refused or unreachable for %d ms (wrong passphrase, "
                                "nobody listening, or the sender is full): %s",
                                shown, s->o.timeout_ms, averr(e, eb, sizeof(eb)));
        if (intr_cb(&s->in))
            return cs_error_set(CS_ETIMEDOUT, "%s: nothing came in %d ms", shown, s->o.timeout_ms);
        if (e == AVERROR(ENOENT))
            return cs_error_set(CS_ENOTFOUND, "%s: no such file or device", shown);
        return cs_error_set(CS_EIO, "%s: %s", shown, averr(e, eb, sizeof(eb)));
    }
    /* Probing a live input throws away what it read (nobuffer): for a
     * live MPEG-TS the keyframe it joined on, for raw video on a pipe or a
     * camera the first frame. So it is skipped where the streams are
     * known: a TS names its codec in the PMT (the decoder learns the rest
     * from the stream); raw video and cameras come with their size. */
    int known = is_live_url(url) && s->fmt->nb_streams > 0;
    for (unsigned i = 0; known && i < s->fmt->nb_streams; i++) {
        const AVCodecParameters *cp = s->fmt->streams[i]->codecpar;
        if (cp->codec_type == AVMEDIA_TYPE_VIDEO &&
            (cp->codec_id == AV_CODEC_ID_NONE || (!ts && !(cp->width && cp->height))))
            known = 0;
    }
    e = known ? 0 : avformat_find_stream_info(s->fmt, NULL);
    if (e < 0) {
        if (intr_cb(&s->in))
            return cs_error_set(CS_ETIMEDOUT, "%s: no stream information in %d ms", shown,
                                s->o.timeout_ms);
        return cs_error_set(CS_EFORMAT, "%s: %s", shown, averr(e, eb, sizeof(eb)));
    }
    const AVCodec *codec = NULL;
    s->stream = av_find_best_stream(s->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (s->stream < 0 || !codec)
        return cs_error_set(CS_EFORMAT, "%s: no video stream that can be decoded", shown);
    AVStream *st = s->fmt->streams[s->stream];
    s->dec = avcodec_alloc_context3(codec);
    if (!s->dec)
        return cs_error_set(CS_ENOMEM, "out of memory");
    avcodec_parameters_to_context(s->dec, st->codecpar);
    s->dec->flags |= AV_CODEC_FLAG_LOW_DELAY;
    s->dec->thread_type = FF_THREAD_SLICE; /* frame threads would add frames of delay */
    s->dec->thread_count = 2;
    e = avcodec_open2(s->dec, codec, NULL);
    if (e < 0)
        return cs_error_set(CS_EFORMAT, "%s: cannot open the %s decoder: %s", shown, codec->name,
                            averr(e, eb, sizeof(eb)));
    snprintf(s->codec, sizeof(s->codec), "%s", codec->name);
    AVRational r = st->avg_frame_rate.num ? st->avg_frame_rate : st->r_frame_rate;
    s->fps = r.num && r.den ? av_q2d(r) : 0;
    /* 0: the first decoded frame's size */
    s->out_w = s->o.width ? s->o.width : st->codecpar->width & ~1;
    s->out_h = s->o.height ? s->o.height : st->codecpar->height & ~1;
    s->paced = s->o.realtime && !is_live_url(url) &&
               (!fmtname || strcmp(fmtname, "rawvideo") || strncmp(url, "pipe:", 5));
    return 0;
}

int cs_video_source_open(cs_video_source **out, const char *url, const cs_video_source_opts *o)
{
    pthread_once(&once, init_once);
    *out = NULL;
    if (!url || !*url)
        return cs_error_set(CS_EINVAL, "no source given");
    cs_video_source *s = calloc(1, sizeof(*s));
    if (!s)
        return cs_error_set(CS_ENOMEM, "out of memory");
    cs_video_source_opts def = CS_VIDEO_SOURCE_OPTS_INIT;
    s->o = o ? *o : def;
    s->in.user = s->o.interrupt;
    s->in.user_data = s->o.interrupt_userdata;
    if (!s->o.fps)
        s->o.fps = 30;
    if (!s->o.timeout_ms)
        s->o.timeout_ms = 3000;
    s->pkt = av_packet_alloc();
    s->raw = av_frame_alloc();
    int rc =
        (s->o.width | s->o.height) & 1 || s->o.width < 0 || s->o.height < 0
            ? cs_error_set(CS_EINVAL, "frame size %dx%d: want even sizes", s->o.width, s->o.height)
        : !s->pkt || !s->raw       ? cs_error_set(CS_ENOMEM, "out of memory")
        : !strncmp(url, "pan:", 4) ? pan_load(s, url + 4)
                                   : open_input(s, url);
    if (rc) {
        cs_video_source_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* The capture time from our SEI, if the frame carries one. */
static int64_t sei_capture_ns(const AVFrame *f)
{
    for (int i = 0; i < f->nb_side_data; i++) {
        const AVFrameSideData *sd = f->side_data[i];
        if (sd->type == AV_FRAME_DATA_SEI_UNREGISTERED && sd->size >= 24 &&
            !memcmp(sd->data, sei_uuid, 16)) {
            uint64_t v = 0;
            for (int k = 0; k < 8; k++)
                v = v << 8 | sd->data[16 + k];
            return (int64_t)v;
        }
    }
    return 0;
}

static int convert(cs_video_source *s, AVFrame *in, cs_vframe **out)
{
    AVFrame *av;
    if (!s->out_w || !s->out_h) {
        s->out_w = in->width & ~1;
        s->out_h = in->height & ~1;
    }
    if (in->format == AV_PIX_FMT_YUV420P && in->width == s->out_w && in->height == s->out_h) {
        av = av_frame_clone(in);
        if (!av)
            return cs_error_set(CS_ENOMEM, "out of memory");
    } else {
        if (!s->sws || s->sws_w != in->width || s->sws_h != in->height ||
            s->sws_fmt != in->format) {
            sws_freeContext(s->sws);
            s->sws = sws_getContext(in->width, in->height, in->format, s->out_w, s->out_h,
                                    AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
            if (!s->sws)
                return cs_error_set(
                    CS_EFORMAT, "cannot convert %dx%d %s to %dx%d YUV 4:2:0", in->width, in->height,
                    av_get_pix_fmt_name(in->format) ? av_get_pix_fmt_name(in->format) : "?",
                    s->out_w, s->out_h);
            s->sws_w = in->width;
            s->sws_h = in->height;
            s->sws_fmt = in->format;
        }
        av = av_frame_alloc();
        if (!av)
            return cs_error_set(CS_ENOMEM, "out of memory");
        av->format = AV_PIX_FMT_YUV420P;
        av->width = s->out_w;
        av->height = s->out_h;
        if (av_frame_get_buffer(av, 0) < 0) {
            av_frame_free(&av);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        sws_scale(s->sws, (const uint8_t *const *)in->data, in->linesize, 0, in->height, av->data,
                  av->linesize);
        av_frame_copy_props(av, in);
    }
    cs_vframe *f = vframe_wrap(av);
    if (!f)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int64_t c = sei_capture_ns(in);
    f->capture_ns = c ? c : cs_clock_wall_ns();
    f->pts_us = stream_us(s->fmt->streams[s->stream], in->best_effort_timestamp);
    *out = f;
    return 0;
}

static void pace(cs_video_source *s, int64_t pts_us)
{
    if (!s->paced || pts_us < 0)
        return;
    int64_t now = cs_clock_ns();
    if (!s->pace_t0_ns || pts_us < s->pace_pts0_us) {
        s->pace_t0_ns = now;
        s->pace_pts0_us = pts_us;
        return;
    }
    int64_t due = s->pace_t0_ns + (pts_us - s->pace_pts0_us) * 1000;
    while (due > (now = cs_clock_ns()) && !intr_stopped(&s->in)) {
        int64_t d = due - now;
        struct timespec ts = {0, d > 20000000 ? 20000000 : d};
        nanosleep(&ts, NULL);
    }
}

int cs_video_source_read(cs_video_source *s, cs_vframe **out)
{
    *out = NULL;
    if (intr_stopped(&s->in))
        return cs_error_set(CS_ECLOSED, "interrupted");
    if (s->pan)
        return pan_read(s, out);
    char eb[128];
    for (;;) {
        int e = avcodec_receive_frame(s->dec, s->raw);
        if (e == 0) {
            int rc = convert(s, s->raw, out);
            av_frame_unref(s->raw);
            if (rc)
                return rc;
            pace(s, (*out)->pts_us);
            if (!sei_capture_ns((*out)->av))
                (*out)->capture_ns = cs_clock_wall_ns(); /* taken now, after pacing */
            return 0;
        }
        if (e == AVERROR_EOF)
            return cs_error_set(CS_EOF, "end of stream");
        if (e != AVERROR(EAGAIN)) {
            s->errors++;
            return cs_error_set(CS_EFORMAT, "decode: %s", averr(e, eb, sizeof(eb)));
        }
        if (s->eof_sent)
            return cs_error_set(CS_EOF, "end of stream");
        intr_arm(&s->in, s->o.timeout_ms);
        e = av_read_frame(s->fmt, s->pkt);
        if (e == AVERROR_EOF) {
            avcodec_send_packet(s->dec, NULL);
            s->eof_sent = 1;
            continue;
        }
        if (e < 0) {
            if (intr_stopped(&s->in))
                return cs_error_set(CS_ECLOSED, "interrupted");
            if (e == AVERROR_EXIT || intr_cb(&s->in))
                return cs_error_set(CS_ETIMEDOUT, "no data for %d ms", s->o.timeout_ms);
            return cs_error_set(CS_EIO, "input: %s", averr(e, eb, sizeof(eb)));
        }
        if (s->pkt->stream_index != s->stream) {
            av_packet_unref(s->pkt);
            continue;
        }
        e = avcodec_send_packet(s->dec, s->pkt);
        av_packet_unref(s->pkt);
        if (e < 0 && e != AVERROR(EAGAIN)) {
            s->errors++;
            return cs_error_set(CS_EFORMAT, "corrupt %s data: %s", s->codec,
                                averr(e, eb, sizeof(eb)));
        }
    }
}

int cs_video_source_seek(cs_video_source *s, int64_t us)
{
    if (s->pan || !s->fmt || !s->fmt->pb || s->fmt->duration <= 0 ||
        (s->fmt->pb->seekable & AVIO_SEEKABLE_NORMAL) == 0)
        return cs_error_set(CS_EINVAL, "this source cannot seek (live input)");
    AVStream *st = s->fmt->streams[s->stream];
    int64_t start = s->fmt->start_time != AV_NOPTS_VALUE ? s->fmt->start_time : 0;
    int64_t ts = av_rescale_q(us + start, AV_TIME_BASE_Q, st->time_base);
    intr_arm(&s->in, s->o.timeout_ms);
    int e = av_seek_frame(s->fmt, s->stream, ts, AVSEEK_FLAG_BACKWARD);
    if (e < 0) {
        char eb[128];
        return cs_error_set(CS_EIO, "seek to %.3f s: %s", us / 1e6, averr(e, eb, sizeof(eb)));
    }
    avcodec_flush_buffers(s->dec);
    s->eof_sent = 0;
    s->pace_t0_ns = 0;
    return 0;
}

int64_t cs_video_source_duration_us(const cs_video_source *s)
{
    if (!s->fmt || s->fmt->duration <= 0 || s->fmt->duration == AV_NOPTS_VALUE)
        return 0;
    return s->fmt->duration;
}

void cs_video_source_interrupt(cs_video_source *s)
{
    if (s)
        atomic_store(&s->in.stop, 1);
}

void cs_video_source_info(const cs_video_source *s, const char **codec, int *w, int *h, double *fps)
{
    if (codec)
        *codec = s->codec;
    int nw = s->pan ? s->out_w : 0, nh = s->pan ? s->out_h : 0;
    if (s->fmt && s->stream >= 0 && s->dec) {
        nw = s->dec->width ? s->dec->width : s->fmt->streams[s->stream]->codecpar->width;
        nh = s->dec->height ? s->dec->height : s->fmt->streams[s->stream]->codecpar->height;
    }
    if (w)
        *w = nw;
    if (h)
        *h = nh;
    if (fps)
        *fps = s->fps;
}

int64_t cs_video_source_errors(const cs_video_source *s)
{
    return s->errors;
}

void cs_video_source_close(cs_video_source *s)
{
    if (!s)
        return;
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    srt_close(s);
    av_packet_free(&s->pkt);
    av_frame_free(&s->raw);
    av_frame_free(&s->pan);
    sws_freeContext(s->sws);
    free(s);
}

/* --------------------------------------------------------------- encoder */

#define CAPTURE_RING 64

struct cs_video_enc {
    cs_video_enc_opts o;
    AVCodecContext *ctx;
    AVPacket *pkt;
    int64_t n;                     /* frames sent */
    int64_t capture[CAPTURE_RING]; /* by pts */
};

int cs_video_enc_new(cs_video_enc **out, const cs_video_enc_opts *o)
{
    pthread_once(&once, init_once);
    *out = NULL;
    cs_video_enc_opts def = CS_VIDEO_ENC_OPTS_INIT;
    cs_video_enc *e = calloc(1, sizeof(*e));
    if (!e)
        return cs_error_set(CS_ENOMEM, "out of memory");
    e->o = o ? *o : def;
    cs_video_enc_opts *p = &e->o;
    if (!p->width || !p->height) {
        p->width = 1920;
        p->height = 1080;
    }
    if (!p->fps)
        p->fps = 30;
    if (!p->bitrate_kbps)
        p->bitrate_kbps = 4000;
    if (!p->keyint || p->keyint > 2 * p->fps)
        p->keyint = 2 * p->fps;
    if (!p->vbv_ms)
        p->vbv_ms = 2000 / p->fps + 1;
    if (!p->preset)
        p->preset = "superfast";
    if (!p->threads)
        p->threads = 2;
    int rc = 0;
    if ((p->width | p->height) & 1 || p->width < 16 || p->height < 16 || p->width > 8192 ||
        p->height > 8192 || p->fps < 1 || p->fps > 240 || p->bitrate_kbps < 50)
        rc = cs_error_set(CS_EINVAL, "encoder: bad settings %dx%d at %d fps, %d kbit/s", p->width,
                          p->height, p->fps, p->bitrate_kbps);
    const AVCodec *codec = rc ? NULL : avcodec_find_encoder_by_name("libx264");
    if (!rc && !codec)
        rc = cs_error_set(CS_ENOTFOUND, "this FFmpeg has no libx264 encoder");
    if (!rc && (!(e->ctx = avcodec_alloc_context3(codec)) || !(e->pkt = av_packet_alloc())))
        rc = cs_error_set(CS_ENOMEM, "out of memory");
    if (rc) {
        cs_video_enc_free(e);
        return rc;
    }
    AVCodecContext *c = e->ctx;
    c->width = p->width;
    c->height = p->height;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, p->fps};
    c->framerate = (AVRational){p->fps, 1};
    c->bit_rate = (int64_t)p->bitrate_kbps * 1000;
    c->rc_max_rate = c->bit_rate;
    c->rc_buffer_size = (int)((int64_t)p->bitrate_kbps * p->vbv_ms);
    c->gop_size = p->keyint;
    c->keyint_min = p->keyint;
    c->max_b_frames = 0;
    c->thread_count = p->threads;
    c->thread_type = FF_THREAD_SLICE;
    /* SPS/PPS stay in-band before every keyframe: a receiver can join at
     * any keyframe of an MPEG-TS stream (recordings take them from there). */
    AVDictionary *opt = NULL;
    av_dict_set(&opt, "preset", p->preset, 0);
    av_dict_set(&opt, "tune", "zerolatency", 0);
    av_dict_set(&opt, "forced-idr", "1", 0);
    av_dict_set(&opt, "udu_sei", p->stamp ? "1" : "0", 0);
    av_dict_set(&opt, "a53cc", "0", 0);
    if (p->intra_refresh)
        av_dict_set(&opt, "intra-refresh", "1", 0);
    /* no scene-cut keyframes: a burst the VBV did not plan for */
    av_dict_set(&opt, "x264-params", "scenecut=0:aud=1", 0);
    int err = avcodec_open2(c, codec, &opt);
    av_dict_free(&opt);
    if (err < 0) {
        char eb[128];
        rc = cs_error_set(CS_EINVAL, "libx264: %s", averr(err, eb, sizeof(eb)));
        cs_video_enc_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void cs_video_enc_free(cs_video_enc *e)
{
    if (!e)
        return;
    avcodec_free_context(&e->ctx);
    av_packet_free(&e->pkt);
    free(e);
}

void cs_video_enc_size(const cs_video_enc *e, int *w, int *h, int *fps)
{
    if (w)
        *w = e->o.width;
    if (h)
        *h = e->o.height;
    if (fps)
        *fps = e->o.fps;
}

int cs_video_enc_keyint(const cs_video_enc *e)
{
    return e->o.keyint;
}

int64_t cs_video_enc_next(const cs_video_enc *e)
{
    return e->n;
}

int cs_video_enc_skip_to(cs_video_enc *e, int64_t n)
{
    if (n < e->n)
        return cs_error_set(CS_EINVAL, "encoder: frame %lld after frame %lld", (long long)n,
                            (long long)e->n - 1);
    e->n = n;
    return 0;
}

int cs_video_enc_send(cs_video_enc *e, cs_vframe *f, int force_idr)
{
    if (f && (f->av->width != e->o.width || f->av->height != e->o.height))
        return cs_error_set(CS_EINVAL, "frame %dx%d for a %dx%d encoder", f->av->width,
                            f->av->height, e->o.width, e->o.height);
    AVFrame *av = NULL;
    if (f) {
        if (!(av = av_frame_clone(f->av)))
            return cs_error_set(CS_ENOMEM, "out of memory");
        av_frame_remove_side_data(av, AV_FRAME_DATA_SEI_UNREGISTERED);
        av->pts = e->n++;
        av->pict_type = force_idr ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
        int64_t cap = f->capture_ns ? f->capture_ns : cs_clock_wall_ns();
        e->capture[av->pts % CAPTURE_RING] = cap;
        if (e->o.stamp) {
            AVFrameSideData *sd =
                av_frame_new_side_data(av, AV_FRAME_DATA_SEI_UNREGISTERED, 16 + 8);
            if (sd) {
                memcpy(sd->data, sei_uuid, 16);
                for (int k = 0; k < 8; k++)
                    sd->data[16 + k] = (uint8_t)((uint64_t)cap >> (56 - 8 * k));
            }
        }
    }
    int err = avcodec_send_frame(e->ctx, av);
    av_frame_free(&av);
    if (err < 0 && err != AVERROR_EOF) {
        char eb[128];
        return cs_error_set(CS_EIO, "libx264: %s", averr(err, eb, sizeof(eb)));
    }
    return 0;
}

int cs_video_enc_receive(cs_video_enc *e, cs_vpacket **out)
{
    *out = NULL;
    int err = avcodec_receive_packet(e->ctx, e->pkt);
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF)
        return CS_EAGAIN;
    if (err < 0) {
        char eb[128];
        return cs_error_set(CS_EIO, "libx264: %s", averr(err, eb, sizeof(eb)));
    }
    cs_vpacket *p = calloc(1, sizeof(*p));
    if (!p) {
        av_packet_unref(e->pkt);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    atomic_init(&p->ref, 1);
    p->av = av_packet_alloc();
    if (!p->av) {
        free(p);
        av_packet_unref(e->pkt);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    p->capture_ns = e->capture[e->pkt->pts % CAPTURE_RING];
    p->enc = e;
    av_packet_move_ref(p->av, e->pkt);
    av_packet_rescale_ts(p->av, e->ctx->time_base, AV_TIME_BASE_Q);
    p->av->duration = 1000000 / e->o.fps;
    *out = p;
    return 0;
}

/* --------------------------------------------------------------- outputs */

struct cs_video_out {
    intr in;
    AVFormatContext *oc;
    AVStream *st;
    int mp4;
    int header;      /* header written (mp4: at the first keyframe) */
    int64_t pts0_us; /* first packet's pts: each output starts at 0 */
    int64_t bytes;
    int timeout_ms;
    AVDictionary *hdr_opt;
    char url[512];
};

/* Annex B SPS and PPS NAL units of a keyframe, as codec extradata (MP4
 * needs them in its header; the TS stream carries them in-band). */
static int extradata_from(AVCodecParameters *par, const AVPacket *pkt)
{
    const uint8_t *d = pkt->data, *end = pkt->data + pkt->size;
    uint8_t *x = av_mallocz((size_t)pkt->size + AV_INPUT_BUFFER_PADDING_SIZE);
    if (!x)
        return cs_error_set(CS_ENOMEM, "out of memory");
    size_t n = 0;
    while (d + 3 < end) {
        if (d[0] || d[1] || d[2] != 1) {
            d++;
            continue;
        }
        const uint8_t *nal = d + 3, *q = nal;
        while (q + 3 <= end && !(q[0] == 0 && q[1] == 0 && (q[2] == 1 || q[2] == 0)))
            q++;
        if (q + 3 > end)
            q = end;
        int type = nal < end ? nal[0] & 0x1f : 0;
        if (type == 7 || type == 8) {
            memcpy(x + n, "\0\0\0\1", 4);
            memcpy(x + n + 4, nal, (size_t)(q - nal));
            n += 4 + (size_t)(q - nal);
        }
        d = q;
    }
    if (!n) {
        av_free(x);
        return cs_error_set(CS_EFORMAT, "keyframe without SPS/PPS");
    }
    av_freep(&par->extradata);
    par->extradata = x;
    par->extradata_size = (int)n;
    return 0;
}

int cs_video_out_open(cs_video_out **out, const char *url, const cs_video_enc *enc,
                      const cs_video_out_opts *o)
{
    pthread_once(&once, init_once);
    *out = NULL;
    cs_video_out_opts def = CS_VIDEO_OUT_OPTS_INIT;
    if (!o)
        o = &def;
    cs_video_out *v = calloc(1, sizeof(*v));
    if (!v)
        return cs_error_set(CS_ENOMEM, "out of memory");
    cs_video_url_redact(url, v->url, sizeof(v->url));
    v->timeout_ms = o->timeout_ms;
    v->in.user = o->interrupt;
    v->in.user_data = o->interrupt_userdata;
    v->pts0_us = AV_NOPTS_VALUE;
    const char *fmt = o->format;
    size_t ul = strlen(url);
    if (!fmt && (!strncmp(url, "srt:", 4) || !strncmp(url, "udp:", 4) || !strncmp(url, "rtp:", 4)))
        fmt = "mpegts";
    if (!fmt && ul > 4 && !strcmp(url + ul - 4, ".mp4"))
        fmt = "mp4";
    v->mp4 = fmt && (!strcmp(fmt, "mp4") || !strcmp(fmt, "mov"));
    char eb[128];
    int e = avformat_alloc_output_context2(&v->oc, NULL, fmt, url);
    if (e < 0 || !v->oc) {
        int rc = cs_error_set(CS_EINVAL, "%s: no muxer for it (%s)", v->url,
                              e < 0 ? averr(e, eb, sizeof(eb)) : "unknown format");
        free(v);
        return rc;
    }
    v->oc->interrupt_callback.callback = intr_cb;
    v->oc->interrupt_callback.opaque = &v->in;
    v->st = avformat_new_stream(v->oc, NULL);
    int rc = 0;
    if (!v->st)
        rc = cs_error_set(CS_ENOMEM, "out of memory");
    AVDictionary *opt = NULL;
    if (!rc) {
        AVCodecParameters *par = v->st->codecpar;
        par->codec_type = AVMEDIA_TYPE_VIDEO;
        par->codec_id = AV_CODEC_ID_H264;
        cs_video_enc_size(enc, &par->width, &par->height, NULL);
        v->st->time_base = (AVRational){1, 90000};
        int fps = 30;
        cs_video_enc_size(enc, NULL, NULL, &fps);
        v->st->avg_frame_rate = (AVRational){fps, 1};
        v->st->r_frame_rate = (AVRational){fps, 1};
        /* MPEG-TS: the PCR runs this far behind each frame's DTS, the
         * decoder buffer delay a T-STD receiver (a hardware decoder, a
         * videoconference gateway) schedules by. It must cover the VBV
         * buffer (2 frames by default) or such a receiver sees every frame
         * late; libavformat-based receivers, ours included, decode on
         * arrival and do not wait for it. MP4 has no use for it. */
        int three_frames_us = 3000000 / (fps > 0 ? fps : 1);
        v->oc->max_delay = v->mp4 ? 0 : three_frames_us > 100000 ? three_frames_us : 100000;
        rc = dict_parse(&opt, o->options);
    }
    if (!rc && !(v->oc->oformat->flags & AVFMT_NOFILE)) {
        intr_arm(&v->in, o->timeout_ms);
        e = avio_open2(&v->oc->pb, url, AVIO_FLAG_WRITE, &v->oc->interrupt_callback, &opt);
        intr_arm(&v->in, 0);
        if (e < 0) {
            if (intr_stopped(&v->in))
                rc = cs_error_set(CS_ECLOSED, "%s: interrupted", v->url);
            else if (e == AVERROR_EXIT || e == AVERROR(ETIMEDOUT))
                rc = cs_error_set(CS_ETIMEDOUT, "%s: nobody connected in %d ms", v->url,
                                  o->timeout_ms);
            else
                rc = cs_error_set(CS_EIO, "%s: %s", v->url, averr(e, eb, sizeof(eb)));
        }
    }
    if (!rc) {
        if (v->mp4)
            av_dict_set(&opt, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
        else if (!strcmp(v->oc->oformat->name, "mpegts")) {
            /* the PES length lets the receiver hand over a frame as soon as
             * it is complete instead of at the start of the next one */
            av_dict_set(&opt, "omit_video_pes_length", "0", 0);
        }
        av_dict_set(&opt, "flush_packets", "1", 0);
    }
    if (rc) {
        av_dict_free(&opt);
        cs_video_out_close(v);
        return rc;
    }
    v->hdr_opt = opt; /* for avformat_write_header, at the first keyframe */
    *out = v;
    return 0;
}

static int write_header(cs_video_out *v, const AVPacket *key)
{
    AVDictionary *opt = v->hdr_opt;
    v->hdr_opt = NULL;
    int rc = v->mp4 ? extradata_from(v->st->codecpar, key) : 0;
    char eb[128];
    if (!rc) {
        intr_arm(&v->in, 5000);
        int e = avformat_write_header(v->oc, &opt);
        intr_arm(&v->in, 0);
        if (e < 0)
            rc = cs_error_set(CS_EIO, "%s: cannot start the stream: %s", v->url,
                              averr(e, eb, sizeof(eb)));
    }
    av_dict_free(&opt);
    if (!rc)
        v->header = 1;
    return rc;
}

int cs_video_out_write(cs_video_out *v, cs_vpacket *p)
{
    if (!v->header) {
        if (!cs_vpacket_is_key(p))
            return 0; /* a stream starts at a keyframe */
        int rc = write_header(v, p->av);
        if (rc)
            return rc;
    }
    if (v->pts0_us == AV_NOPTS_VALUE)
        v->pts0_us = p->av->pts;
    AVPacket *k = av_packet_clone(p->av);
    if (!k)
        return cs_error_set(CS_ENOMEM, "out of memory");
    k->pts -= v->pts0_us;
    k->dts = k->pts;
    k->stream_index = 0;
    av_packet_rescale_ts(k, AV_TIME_BASE_Q, v->st->time_base);
    size_t n = (size_t)k->size;
    intr_arm(&v->in, v->timeout_ms > 0 ? v->timeout_ms : 5000);
    int e = av_write_frame(v->oc, k);
    if (e >= 0 && v->oc->pb)
        avio_flush(v->oc->pb);
    intr_arm(&v->in, 0);
    av_packet_free(&k);
    if (e < 0 || (v->oc->pb && v->oc->pb->error < 0)) {
        char eb[128];
        return cs_error_set(CS_EIO, "%s: %s", v->url,
                            averr(e < 0 ? e : v->oc->pb->error, eb, sizeof(eb)));
    }
    v->bytes += (int64_t)n;
    return 0;
}

int cs_video_out_close(cs_video_out *v)
{
    if (!v)
        return 0;
    int rc = 0;
    if (v->oc) {
        if (v->header && !intr_stopped(&v->in)) {
            intr_arm(&v->in, 2000);
            if (av_write_trailer(v->oc) < 0)
                rc = cs_error_set(CS_EIO, "%s: cannot finish the stream", v->url);
        }
        if (v->oc->pb && !(v->oc->oformat->flags & AVFMT_NOFILE)) {
            if (v->oc->pb->error < 0 && !rc)
                rc = cs_error_set(CS_EIO, "%s: write error", v->url);
            avio_closep(&v->oc->pb);
        }
        avformat_free_context(v->oc);
    }
    av_dict_free(&v->hdr_opt);
    free(v);
    return rc;
}

void cs_video_out_interrupt(cs_video_out *v)
{
    if (v)
        atomic_store(&v->in.stop, 1);
}

int64_t cs_video_out_bytes(const cs_video_out *v)
{
    return v->bytes;
}
