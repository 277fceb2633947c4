/* viewer/video: the live video view (--video URL).
 *
 * A "video" thread reads decoded frames from a cs_video_source and hands
 * the newest one to the render thread through a one-slot mailbox: a newer
 * frame replaces one not yet shown (counted as a late drop), so no queue,
 * and no latency, builds up behind a slow display. The render thread
 * uploads the frame into an IYUV streaming texture (SDL_UpdateYUVTexture)
 * and draws it letterboxed in its area, with a stats overlay, a "SOURCE
 * LOST" banner while a live source reconnects (0.5 s back-off doubling to
 * 5 s), and for files (recordings) a progress bar, pause and seeking.
 *
 * Files are paced here, not by the source (which is opened with
 * realtime = 0): pausing must not turn into a fast-forward on resume, and a
 * seek decodes from the keyframe before the target as fast as it can,
 * showing nothing until the target.
 *
 * Threads: vw_video_open/close/update/draw/presented/event/seek/... are
 * called from the render (main) thread only; the wake callback runs on the
 * video thread. */
#ifndef VW_VIDEO_H
#define VW_VIDEO_H

#include <stdint.h>
#include <stdio.h>

#include <SDL.h>

#include "app.h"
#include "overlay.h"

typedef struct {
    const char *url;        /**< --video: srt://HOST:PORT, udp://..., a file */
    const char *passphrase; /**< --passphrase, else $CS_SRT_PASSPHRASE; may be NULL */
    int latency_ms;         /**< --latency: SRT receive latency; 0: cs_media's default */
    int wait_ms;            /**< --video-wait: headless wait for the frames (default 5000) */
    int frames;             /**< --video-frames: headless: frames shown before the
                                 screenshot (default 1) */
    int timeout_ms;         /**< no frame for this long: the source is lost (default 2000) */
} vw_video_opts;

#define VW_VIDEO_OPTS_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, 0, 5000, 1, 2000                                                               \
    }

typedef struct {
    int64_t frames;          /**< frames displayed */
    int64_t received;        /**< frames decoded and handed over */
    int64_t late_drops;      /**< frames replaced in the mailbox before they were shown */
    int64_t errors;          /**< decode errors (all connections) */
    double first_ms;         /**< open to first frame displayed; -1: none yet */
    double lat_p50, lat_p95; /**< capture-to-display, ms; -1: n/a */
    int lat_n;               /**< samples behind lat_p50/p95 */
    int width, height;       /**< displayed frame size */
    int64_t pos_us, dur_us;  /**< displayed pts; duration (0: live) */
    int paused, lost, ended, failed;
    double fps; /**< frames received per second (last second) */
    char codec[32];
    char error[512]; /**< the last source error (passphrase redacted) */
} vw_video_stats;

typedef struct vw_video vw_video;

/** Move the video options (--video, --passphrase, --latency, --video-wait,
 *  --video-frames) out of @p argv, which is compacted. @return the new
 *  argc, or -1 after printing a message. */
int vw_video_args(vw_video_opts *o, int argc, char **argv);

/** Start the video thread on @p o->url. @p wake (may be NULL) runs on the
 *  video thread whenever there is something new to draw. @return 0 or
 *  CS_ENOMEM / CS_EINVAL. Opening the source happens on the thread: an
 *  unreachable source shows as "lost", a missing file as "failed". */
int vw_video_open(vw_video **out, const vw_video_opts *o, void (*wake)(void *userdata),
                  void *userdata);
/** Stop the thread (interrupting a blocked read) and free. NULL is a no-op. */
void vw_video_close(vw_video *v);

/** Take the newest frame, if any, and upload it into a texture of @p ren.
 *  @return 1 when something changed and the view must be drawn again. */
int vw_video_update(vw_video *v, SDL_Renderer *ren);
/** Draw the view into @p area: the frame letterboxed, the overlay, the
 *  banner, the progress bar (files). */
void vw_video_draw(vw_video *v, SDL_Renderer *ren, vw_overlay *ov, const SDL_Rect *area);
/** Call after SDL_RenderPresent: the uploaded frame is on screen (counts
 *  it and its capture-to-display latency). */
void vw_video_presented(vw_video *v);
/** An input event for the video area (keys I, Space, Left, Right, Home; a
 *  click in the progress bar). @return 1 when it must be drawn again. */
int vw_video_event(vw_video *v, const SDL_Event *ev, const SDL_Rect *area);
/** Wait up to @p ms for something new from the video thread. */
void vw_video_wait(vw_video *v, int ms);

/** Files: seek to @p us (clamped to the file). @return the seek's
 *  generation (see vw_video_shown_gen), or -1 for a live source. */
int64_t vw_video_seek(vw_video *v, int64_t us);
/** The seek generation of the frame on display (0 before any seek). */
int64_t vw_video_shown_gen(const vw_video *v);
/** Files: pause (1) or play (0). */
void vw_video_set_paused(vw_video *v, int paused);
int vw_video_is_file(const vw_video *v);
void vw_video_get_stats(vw_video *v, vw_video_stats *out);
/** The source URL with the passphrase redacted. */
const char *vw_video_url(const vw_video *v);
/** One line {"video":{...}} with the stats, to @p f. */
void vw_video_print_json(vw_video *v, FILE *f);

/** The window's layout: the video alone fills it; beside a slide, the slide
 *  takes the left two thirds and the video the right third. */
void vw_video_layout(int w, int h, int with_slide, SDL_Rect *slide, SDL_Rect *video);

/* Modes; each returns the process exit code. @p a->o.target is NULL when
 * the video is shown alone (then a->src and the fetcher are unused). */
int vw_video_ui_run(vw_app *a, const vw_video_opts *o);              /* video.c */
int vw_video_headless_screenshot(vw_app *a, const vw_video_opts *o); /* headless.c */
int vw_video_headless_script(vw_app *a, const vw_video_opts *o);     /* script.c */

#endif
