/* viewer/reading: the radiology reading mode (DICOMweb).
 *
 * `consilium-view http://host:port/dicomweb [--study UID] [--series UID]`
 * (or any URL with --reading) reads DICOM studies over DICOMweb: a study
 * list, a series strip, slices sorted along the patient axis, window/level
 * with CT presets, cine, a ruler in mm, corner overlays; and the same in
 * headless --screenshot / --script runs for tests.
 *
 * Modules:
 *  - dicomweb.c: HTTP, DICOM JSON, multipart;
 *  - reading_load.c: one series: its metadata, slice order, and a "rload"
 *    thread that fetches raw frames (curl multi, `parallel` transfers) in
 *    order outward from the current slice, and turns them into pixels;
 *  - reading.c: the reading state, window/level, compositor, overlays,
 *    input (shared by the window and --script);
 *  - reading_run.c: options, the window loop, headless runs and --script.
 *
 * Threads: main = render (SDL, state, compositor); one "rload" thread per
 * series being loaded. A slice's pixels are written by its loader before
 * the slice's state turns READY (release); the render thread reads them
 * after seeing READY (acquire) and never waits on the network once a
 * series' metadata is in. */
#ifndef VW_READING_H
#define VW_READING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <SDL.h>

#include "cs/thread.h"

#include "dicomweb.h"
#include "overlay.h"

/* ---- one series (reading_load.c) ---- */

enum { VW_SPACING_NONE, VW_SPACING_PIXEL, VW_SPACING_IMAGER };
enum { VW_PX_MONO8, VW_PX_MONO16, VW_PX_RGB };
enum { VW_SLICE_NONE, VW_SLICE_FLIGHT, VW_SLICE_READY, VW_SLICE_FAILED };

/** What the series metadata says of one instance. */
typedef struct {
    char sop[72];
    int number; /**< InstanceNumber (0 when absent) */
    int rows, cols, samples, bits_alloc, bits_stored, pixrep, planar, nframes;
    char photometric[24];
    double slope, intercept;
    int have_window;
    double wc, ww;
    int spacing_kind;      /**< VW_SPACING_* */
    double ps_row, ps_col; /**< mm between rows (vertical), between columns */
    int have_ipp, have_iop, have_loc;
    double ipp[3], iop[6], loc;
    double frame_ms; /**< FrameTime, or 1000 / CineRate; 0 when unknown */
    char age[16], sex[16], date[16], patient[128], series_desc[128], study_desc[128];
    char modality[16];
    int series_number;
} vw_rinst;

typedef struct {
    int inst;   /**< index in vw_rseries.inst */
    int frame;  /**< 1-based frame number */
    double pos; /**< position along the slice normal (mm), NAN when unknown */
    atomic_int state;
    int kind;  /**< VW_PX_* (READY) */
    void *px;  /**< rows*cols values (MONO8 uint8, MONO16 uint16 bit pattern) or RGB bytes */
    char *err; /**< FAILED: why */
    /* the server-rendered JPEG, a first paint while the raw frame is on its
     * way (the first slice shown only); pw x ph RGB once pstate is READY */
    atomic_int pstate;
    uint8_t *preview;
    int pw, ph;
} vw_rslice;

typedef struct vw_rseries {
    vw_dw *dw;
    char study[72], uid[72];
    int parallel;
    int preview; /**< fetch the rendered JPEG of the first slice first */
    void (*wake)(void *userdata);
    void *userdata;
    /* written by the loader before `ready` turns 1, then read-only */
    vw_rinst *inst;
    size_t ninst;
    vw_rslice *slices;
    size_t nslices;
    char err[600];     /**< when ready is -1 */
    atomic_int ready;  /**< 0 metadata loading, 1 ready, -1 failed */
    atomic_int cur;    /**< the slice the user looks at: fetch outward from it */
    atomic_int stop;   /**< the loader should stop */
    atomic_int loaded; /**< slices READY or FAILED */
    atomic_int inflight;
    atomic_llong bytes;
    atomic_llong t_meta_ns, t_done_ns; /**< cs_clock_ns() when metadata / all frames came */
    cs_thread *th;
    void *multi; /**< CURLM*, owned by the loader while it runs */
} vw_rseries;

/** Start loading series @p uid of @p study: metadata first, then frames
 *  (@p parallel transfers; with @p preview, also the rendered JPEG of the
 *  current slice, beside them). @p wake runs on the loader after each
 *  change. */
int vw_rseries_new(vw_rseries **out, vw_dw *dw, const char *study, const char *uid, int parallel,
                   int preview, void (*wake)(void *userdata), void *userdata);
/** Stop the loader (transfers in flight are dropped, to be fetched again on
 *  resume); loaded slices stay. */
void vw_rseries_pause(vw_rseries *s);
/** Start the loader again if slices are missing. */
int vw_rseries_resume(vw_rseries *s);
void vw_rseries_free(vw_rseries *s);
/** Set the slice to fetch outward from. */
void vw_rseries_set_current(vw_rseries *s, int slice);
/** Parse a WADO-RS metadata array into instances and sorted slices (used by
 *  the loader; exposed for tests). @return 0 or CS_EFORMAT with a message. */
int vw_rseries_parse(vw_rseries *s, const json_t *meta);
/** Convert one raw frame (explicit VR little endian) of instance @p in into
 *  @p sl's pixels. @return 0 or CS_EFORMAT with @p err written. */
int vw_rslice_decode(vw_rslice *sl, const vw_rinst *in, const unsigned char *data, size_t len,
                     char *err, size_t errn);

/* ---- the reading state (reading.c) ---- */

typedef struct {
    char uid[72];
    char name[128], pid[72], birth[16], sex[16], date[16], desc[128], modalities[64];
    int nseries, ninst;
} vw_rstudy;

typedef struct {
    char uid[72];
    char modality[16];
    int number;
    char desc[128];
    int ninst;
    int slice;     /**< the slice shown when the user left the series */
    vw_rseries *s; /**< loaded on first view, kept while the study is open */
} vw_rseries_info;

typedef struct {
    const char *url; /**< the DICOMweb base */
    const char *token;
    const char *study, *series;
    const char *screenshot, *script, *font, *cacert;
    int w, h, timing, insecure, parallel, overlays;
    int no_preview; /**< --no-preview: no rendered JPEG first paint */
    double timeout_s;
} vw_ropts;

enum { VW_RSCREEN_STUDIES, VW_RSCREEN_READ };

/** A study being opened from the list by a worker ("ropen"). */
typedef struct vw_ropen vw_ropen;

typedef struct {
    vw_ropts o;
    vw_dw dw;
    int64_t t_start;
    int screen; /**< VW_RSCREEN_* */
    /* the study list (browser) */
    vw_rstudy *studies;
    size_t nstudies;
    int study_sel;
    vw_ropen *opening; /**< Enter on the list: the study's QIDO off this thread */
    /* the open study */
    vw_rstudy study;
    vw_rseries_info *series;
    size_t nseries;
    int cur; /**< current series index */
    int slice;
    /* display */
    int wl_set; /**< 0: the file's own, computed when the first slice shows */
    double wc, ww;
    char preset[16];
    int invert, overlays;
    /* cine */
    int cine;
    int64_t cine_t0;
    int cine_s0;
    /* ruler (image pixel coordinates) and drags */
    int ruler;
    double rx0, ry0, rx1, ry1;
    int drag; /**< 0, SDL_BUTTON_LEFT (ruler), SDL_BUTTON_RIGHT (window) */
    int drag_x, drag_y;
    double drag_wc, drag_ww;
    /* zoom (1: the image fitted) and pan (screen px) */
    double zoom, panx, pany;
    /* the last frame's geometry: image px = (screen - off) / scale */
    double scale, offx, offy;
    int view_w, view_h, img_cols, img_rows;
    /* the series strip as last drawn (clicks pick a series) */
    int strip_n, strip_y, strip_lh, strip_w;
    /* look-up table from stored value to grey */
    uint8_t *lut;
    size_t lut_n;
    double lut_key[8];
    /* timing */
    int64_t t_first_ns;   /**< when the first image was composed (0: not yet) */
    int64_t t_preview_ns; /**< when a server-rendered preview was first shown */
    int timing_first_done, timing_complete_done, timing_preview_done;
    char status[300];
    void (*wake)(void *userdata);
    void *userdata;
} vw_reading;

/** Whether argv asks for reading mode (a target ending in /dicomweb or
 *  /dicom-web, or --reading). */
int vw_reading_wanted(int argc, char **argv);
/** consilium-view in reading mode. @return the exit code. */
int vw_reading_main(int argc, char **argv);

/** Open the study list (no --study) or the study and its series list.
 *  Blocking (startup). @return 0 or a CS_E* code with the message set. */
int vw_reading_open(vw_reading *r);
void vw_reading_close(vw_reading *r);
/** Open study @p uid (blocking: its series list), then its first series
 *  (or @p series when given). */
int vw_reading_open_study(vw_reading *r, const char *uid, const char *series);
/** Open study @p uid from the list without blocking: a worker asks for its
 *  series; vw_reading_tick() adopts them (or shows why not). */
int vw_reading_open_async(vw_reading *r, const char *uid);
/** Switch to series index @p i (its loader starts or resumes). */
int vw_reading_set_series(vw_reading *r, int i);
void vw_reading_set_slice(vw_reading *r, int i);
/** The current series, or NULL. */
vw_rseries *vw_reading_series(const vw_reading *r);
void vw_reading_set_window(vw_reading *r, double c, double w, const char *name);
/** Zoom to @p zoom times the fit, keeping the image point under screen
 *  point (@p sx, @p sy) where it is. */
void vw_reading_zoom(vw_reading *r, double zoom, double sx, double sy);
/** Preset by name: brain, lung, bone, abdomen, file. @return 0 or -1. */
int vw_reading_preset(vw_reading *r, const char *name);
/** Compose the view into @p fb (XRGB, @p pitch pixels per row).
 *  @return 1 the current slice is shown, 2 its server-rendered preview is,
 *  0 it is loading, <0 it failed. */
int vw_reading_compose(vw_reading *r, uint32_t *fb, int pitch, int w, int h);
/** Draw overlays, ruler, series strip or the study list with @p ren. */
void vw_reading_draw(vw_reading *r, SDL_Renderer *ren, vw_overlay *ov, int w, int h);
/** One input event (window or script). @return 1 when the frame changed,
 *  -1 to quit. */
int vw_reading_event(vw_reading *r, const SDL_Event *ev, int w, int h);
/** Periodic work: cine, timing lines. @return 1 when the frame changed. */
int vw_reading_tick(vw_reading *r);
/** The ruler's length and unit ("mm", "mm (detector)", "px"). */
double vw_reading_ruler_length(const vw_reading *r, const char **unit);
/** One-line state for --script's `state`. */
void vw_reading_state_line(const vw_reading *r, char *out, size_t n);

#endif
