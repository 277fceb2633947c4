/* Live video through FFmpeg 5.1 (libavformat, libavcodec, libswscale,
 * libavdevice) and libx264: sources, the low-latency H.264 encoder, MPEG-TS
 * over SRT/UDP and fragmented-MP4 outputs, and the capture time carried in
 * every frame.
 *
 * The capture time is the wall clock (CLOCK_REALTIME, ns) when a frame was
 * taken from its source. The encoder writes it into each access unit as an
 * H.264 "user data unregistered" SEI (UUID CS_VIDEO_SEI_UUID); a source
 * reading such a stream gives it back on the decoded frame, so any receiver
 * can report capture-to-decoded latency (the two clocks must agree: same
 * machine, or NTP).
 *
 * SRT goes only through libavformat (which links the GnuTLS libsrt build);
 * never link libsrt directly into the same process.
 *
 * Objects are used by one thread at a time; only the *_interrupt()
 * functions may be called from another thread. Frames and packets are
 * refcounted and immutable once shared. */
#ifndef CS_VIDEO_H
#define CS_VIDEO_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"

typedef struct cs_vframe cs_vframe;
typedef struct cs_vpacket cs_vpacket;
typedef struct cs_video_source cs_video_source;
typedef struct cs_video_enc cs_video_enc;
typedef struct cs_video_out cs_video_out;

/** The SEI payload's 16-byte UUID, as text. */
#define CS_VIDEO_SEI_UUID "c5a1c0de-7e1e-4a7e-8a11-ca97e5e1f1a6"

/** @p url with any SRT passphrase replaced by "***", for logs and stats. */
CS_API void cs_video_url_redact(const char *url, char *out, size_t n);

/* ---------------------------------------------------------------- frames */

/** A new black 8-bit YUV 4:2:0 frame of @p w x @p h (even sizes). */
CS_API int cs_vframe_new(cs_vframe **out, int w, int h);
CS_API cs_vframe *cs_vframe_ref(cs_vframe *f);
CS_API void cs_vframe_unref(cs_vframe *f);
CS_API int cs_vframe_width(const cs_vframe *f);
CS_API int cs_vframe_height(const cs_vframe *f);
/** Plane @p i (0 Y, 1 U, 2 V) and its stride. Write only to a frame nobody
 *  else holds (just made by cs_vframe_new() or cs_vframe_copy()). */
CS_API uint8_t *cs_vframe_plane(const cs_vframe *f, int i, int *stride);
/** A deep copy, writable. */
CS_API int cs_vframe_copy(cs_vframe **out, const cs_vframe *f);
/** Capture time, CLOCK_REALTIME ns; 0 when unknown. */
CS_API int64_t cs_vframe_capture_ns(const cs_vframe *f);
CS_API void cs_vframe_set_capture_ns(cs_vframe *f, int64_t ns);
/** Presentation time in microseconds from the source's start (files: from
 *  their first frame); -1 when unknown. */
CS_API int64_t cs_vframe_pts_us(const cs_vframe *f);

/* --------------------------------------------------------------- packets */

CS_API cs_vpacket *cs_vpacket_ref(cs_vpacket *p);
CS_API void cs_vpacket_unref(cs_vpacket *p);
CS_API size_t cs_vpacket_size(const cs_vpacket *p);
/** 1 for an IDR access unit (a receiver can start here). */
CS_API int cs_vpacket_is_key(const cs_vpacket *p);
/** The capture time of the frame it encodes. */
CS_API int64_t cs_vpacket_capture_ns(const cs_vpacket *p);
/** Presentation time in microseconds from the start of the encode. */
CS_API int64_t cs_vpacket_pts_us(const cs_vpacket *p);
/** The encoder that made it: to compare with, never to use (it may be
 *  gone). */
CS_API const cs_video_enc *cs_vpacket_encoder(const cs_vpacket *p);

/* --------------------------------------------------------------- sources */

typedef struct cs_video_source_opts {
    size_t size;         /**< sizeof(cs_video_source_opts) */
    int width, height;   /**< frames are scaled to this; 0: the source's own */
    int fps;             /**< rate asked of test patterns and cameras; 0: 30 */
    const char *format;  /**< demuxer ("v4l2", "rawvideo", "lavfi", ...); NULL: from the URL */
    const char *options; /**< demuxer/protocol options "key=value:key=value"; may be NULL */
    int timeout_ms;      /**< open, and no frame for this long: CS_ETIMEDOUT; 0: 3000 */
    int realtime;        /**< 1: a file is read at its own pace, not as fast as it decodes */
    /** Polled while blocked (open included): non-zero makes the call return
     *  CS_ECLOSED. May be NULL. */
    int (*interrupt)(void *userdata);
    void *interrupt_userdata;
} cs_video_source_opts;

#define CS_VIDEO_SOURCE_OPTS_INIT                                                                  \
    {                                                                                              \
        sizeof(cs_video_source_opts), 0, 0, 0, NULL, NULL, 0, 1, NULL, NULL                        \
    }

/** Open a source. @p url is one of:
 *  - "testsrc" (lavfi testsrc2 at the asked size and rate),
 *    "lavfi:GRAPH" (any lavfi source graph);
 *  - "pan:IMAGE" a still image (PNG, JPEG, TIFF...) larger than the frame,
 *    panned across like a microscope stage at the asked rate: a moving,
 *    detailed picture for demos and benchmarks;
 *  - "/dev/videoN" (V4L2 through libavdevice);
 *  - "srt://", "udp://", "rtsp://", "http://" or a file path.
 *  @return 0, CS_ENOTFOUND, CS_EFORMAT (no video stream), CS_ETIMEDOUT, CS_EIO. */
CS_API int cs_video_source_open(cs_video_source **out, const char *url,
                                const cs_video_source_opts *o);
/** The next decoded frame as YUV 4:2:0 at the asked size; its capture time
 *  comes from the stream's capture-time SEI when present, else it is the
 *  time it was read. A change of the input's size mid-stream is scaled away.
 *  @return 0; CS_EOF at the end of a file; CS_ETIMEDOUT when nothing came
 *  for timeout_ms; CS_EIO when the input is gone; CS_ECLOSED when
 *  interrupted. After an error other than CS_EFORMAT, close and reopen. */
CS_API int cs_video_source_read(cs_video_source *s, cs_vframe **out);
/** Make a blocked open or read return CS_ECLOSED. Thread-safe. */
CS_API void cs_video_source_interrupt(cs_video_source *s);
CS_API void cs_video_source_close(cs_video_source *s);
/** The input's codec name, native size and rate (0 when unknown). */
CS_API void cs_video_source_info(const cs_video_source *s, const char **codec, int *w, int *h,
                                 double *fps);
/** Seek a file to the keyframe at or before @p us (then frames run on from
 *  there, at the source's pace). @return 0, CS_EINVAL for a live input. */
CS_API int cs_video_source_seek(cs_video_source *s, int64_t us);
/** A file's duration in microseconds; 0 for a live input. */
CS_API int64_t cs_video_source_duration_us(const cs_video_source *s);
/** Frames that failed to decode (corrupt input), since open. */
CS_API int64_t cs_video_source_errors(const cs_video_source *s);

/* --------------------------------------------------------------- encoder */

typedef struct cs_video_enc_opts {
    size_t size;        /**< sizeof(cs_video_enc_opts) */
    int width, height;  /**< default 1920x1080 */
    int fps;            /**< default 30 */
    int bitrate_kbps;   /**< default 4000; also the VBV max rate */
    int vbv_ms;         /**< VBV buffer in ms of bitrate; default 2 frames' worth */
    int keyint;         /**< frames between keyframes; default and max 2 s of frames */
    const char *preset; /**< x264 preset; default "superfast" */
    int intra_refresh;  /**< 1: periodic intra refresh, no IDR spikes (thin links) */
    int threads;        /**< x264 threads (sliced); 0: 2 */
    int stamp;          /**< 1 (default): capture-time SEI in every access unit */
} cs_video_enc_opts;

#define CS_VIDEO_ENC_OPTS_INIT                                                                     \
    {                                                                                              \
        sizeof(cs_video_enc_opts), 1920, 1080, 30, 4000, 0, 0, NULL, 0, 0, 1                       \
    }

CS_API int cs_video_enc_new(cs_video_enc **out, const cs_video_enc_opts *o);
CS_API void cs_video_enc_free(cs_video_enc *e);
/** Encode @p f (the encoder's size). @p force_idr makes it an IDR frame
 *  (a receiver joining or a recording segment starting). */
CS_API int cs_video_enc_send(cs_video_enc *e, cs_vframe *f, int force_idr);
/** @return 0 with a packet, CS_EAGAIN when it needs another frame. */
CS_API int cs_video_enc_receive(cs_video_enc *e, cs_vpacket **out);
CS_API void cs_video_enc_size(const cs_video_enc *e, int *w, int *h, int *fps);
/** Frames between keyframes (the default applied). */
CS_API int cs_video_enc_keyint(const cs_video_enc *e);
/** The index of the next frame to be sent (frames count from 0). */
CS_API int64_t cs_video_enc_next(const cs_video_enc *e);
/** Give the next frame sent index @p n (no lower than cs_video_enc_next()):
 *  a second encoder that takes some of another's frames keeps the first
 *  one's timestamps, so a receiver can pass from one stream to the other. */
CS_API int cs_video_enc_skip_to(cs_video_enc *e, int64_t n);

/* --------------------------------------------------------------- outputs */

typedef struct cs_video_out_opts {
    size_t size;         /**< sizeof(cs_video_out_opts) */
    const char *format;  /**< "mpegts", "mp4" (fragmented), ...; NULL: from the URL */
    const char *options; /**< protocol/muxer options "key=value:key=value" */
    int timeout_ms;      /**< open (an SRT listener waits this long for a caller); 0: forever */
    /** Polled while blocked (open included): non-zero makes the call return
     *  CS_ECLOSED. May be NULL. */
    int (*interrupt)(void *userdata);
    void *interrupt_userdata;
} cs_video_out_opts;

#define CS_VIDEO_OUT_OPTS_INIT                                                                     \
    {                                                                                              \
        sizeof(cs_video_out_opts), NULL, NULL, 0, NULL, NULL                                       \
    }

/** Open an output for @p enc's stream: "srt://HOST:PORT?..." (MPEG-TS; an
 *  empty host or mode=listener listens and returns when one caller has
 *  connected), "udp://..." (MPEG-TS), or a file ("x.ts", "x.mp4": fragmented
 *  MP4, each fragment starting at a keyframe). The first packet written must
 *  be a keyframe. @return 0, CS_ETIMEDOUT, CS_ECLOSED (interrupted), CS_EIO. */
CS_API int cs_video_out_open(cs_video_out **out, const char *url, const cs_video_enc *enc,
                             const cs_video_out_opts *o);
/** Write one access unit and push it out (no muxer buffering).
 *  @return 0, or CS_EIO when the peer is gone. */
CS_API int cs_video_out_write(cs_video_out *o, cs_vpacket *p);
/** Write the trailer and close. @return 0 or CS_EIO. */
CS_API int cs_video_out_close(cs_video_out *o);
/** Make a blocked open or write return. Thread-safe. */
CS_API void cs_video_out_interrupt(cs_video_out *o);
/** Bytes written so far. */
CS_API int64_t cs_video_out_bytes(const cs_video_out *o);

#endif
