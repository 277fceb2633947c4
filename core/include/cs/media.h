/* core/media: the live video pipeline.
 *
 *   source -> [capture thread: each frame numbered by its timestamp at
 *   the output rate, so a faster source keeps one frame per slot and a
 *   slower one leaves gaps] -> mailbox (2 frames; a late frame is
 *   dropped, never queued into latency, its gap kept in the timestamps;
 *   keyframes fall on the grid of frame numbers, so drops do not move
 *   them) -> [encode thread: freeze, then a "source lost" slate while
 *   the capture thread reconnects, each such frame in the slot of the
 *   time it is sent, so the stall keeps its length in the timestamps;
 *   one H.264 encode] -> each packet fanned out by reference to every
 *   sink:
 *     - SRT listeners: a [listen thread] per listening URL accepts callers,
 *       each caller gets its own sink (a bounded queue and a [sender
 *       thread], its own MPEG-TS mux starting at a keyframe);
 *     - other outputs (SRT caller, UDP, a file): one sink each, reopened
 *       with back-off when they fail;
 *     - the recorder (cs/record.h), on its own sink.
 *   A sink whose queue is full drops packets up to the next keyframe: a
 *   slow receiver never slows the others.
 *   A sink that needs a keyframe (a receiver joining, an output reopened,
 *   a sink that dropped) waits for the shared stream's if one is due within
 *   200 ms; otherwise a [bridge thread] with a second encoder (same
 *   size, rate and timestamps; x264 ultrafast, one thread) encodes the
 *   frames from an IDR of its own for those sinks alone until the shared
 *   stream's next keyframe, where they switch over: a join costs the
 *   viewers already there nothing. With intra refresh (no natural
 *   keyframes) the shared stream forces an IDR.
 *
 * Stats (once a second, and on demand): frames in/out/dropped, encoded
 * bitrate, keyframes of the shared stream, sinks served by the bridge
 * ("bridged"), per-sink queue depth, bytes and drops, capture-to-encoded
 * latency, source state. They go to the on_stats callback (the server
 * posts them on the bus as "media.stats"). Media threads never call Lua or
 * wait on the database. */
#ifndef CS_MEDIA_H
#define CS_MEDIA_H

#include <jansson.h>

#include "cs/common.h"
#include "cs/log.h"
#include "cs/video.h"

typedef struct cs_media cs_media;

typedef struct cs_media_opts {
    size_t size;              /**< sizeof(cs_media_opts) */
    const char *source;       /**< cs_video_source_open() URL */
    cs_video_source_opts src; /**< width/height/fps are set from enc */
    cs_video_enc_opts enc;
    const char *const *outputs; /**< output URLs (see cs_video_out_open) */
    int noutputs;
    const char *passphrase; /**< added to srt:// URLs that have none; NULL: none */
    int srt_latency_ms;     /**< added to srt:// URLs that have none; 0: 120 */
    const char *record_dir; /**< record here (cs/record.h); NULL: no recording */
    int segment_s;          /**< recording segment length; 0: 60 */
    int retention_years;    /**< 0: 10 */
    int stall_ms;           /**< no frame for this long: freeze, then slate; 0: 500 */
    int max_receivers;      /**< SRT callers served at once; 0: 64 */
    int sink_queue;         /**< packets queued per sink; 0: 2 s of frames */
    void (*on_stats)(void *userdata, json_t *stats); /**< borrowed; may be NULL */
    void *userdata;
    cs_logger *log; /**< may be NULL */
} cs_media_opts;

#define CS_MEDIA_OPTS_INIT                                                                         \
    {                                                                                              \
        sizeof(cs_media_opts), NULL, CS_VIDEO_SOURCE_OPTS_INIT, CS_VIDEO_ENC_OPTS_INIT, NULL, 0,   \
            NULL, 0, NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL                                         \
    }

/** Start the pipeline. It runs even while the source is away (slate) and
 *  while nobody watches. @return 0, CS_EINVAL (bad options), CS_EIO (an
 *  output or the recording folder cannot be opened). */
CS_API int cs_media_start(cs_media **out, const cs_media_opts *o);
/** A snapshot of the stats (see above); caller owns it. */
CS_API json_t *cs_media_stats(cs_media *m);
/** Force an IDR frame soon (rate-limited to one per 250 ms). */
CS_API void cs_media_request_idr(cs_media *m);
/** @p url with our SRT defaults: an empty host ("srt://:9000") listens on
 *  every interface, otherwise the URL calls; the passphrase (when given)
 *  and the latency (0: 120 ms) are added unless the URL sets them.
 *  @param listener receives 1 for a listener URL; may be NULL. */
CS_API int cs_media_srt_url(char *out, size_t n, const char *url, const char *passphrase,
                            int latency_ms, int *listener);
/** Stop every thread, finish the recording segment, free. */
CS_API int cs_media_stop(cs_media *m);

#endif
