/* viewer/fetch: gets DeepZoom tiles off the render thread.
 *
 * Two backends behind one handle:
 *  - http: one "net" thread drives a libcurl multi handle with up to
 *    `parallel` keep-alive transfers; "decode" threads turn the JPEG bytes
 *    into XRGB pixels with cs_jpeg (TurboJPEG);
 *  - file: `parallel` "tiles" threads make each tile in-process with
 *    cs_tiles_get_dzi() (the same bytes the server would send) and decode it.
 *
 * The render thread says what it wants with vw_fetch_want(): a priority
 * ordered list that replaces the previous one. Its first n_urgent keys are
 * the tiles on screen; the rest (the ring around the view) start only while
 * no urgent transfer runs, so they never take bandwidth from what the user
 * is looking at. Tiles not yet started that
 * drop out of the list are never fetched; transfers in flight that drop out
 * are cancelled unless more than half has arrived. Finished tiles (or
 * failures) come back through a bounded cs_queue, vw_fetch_results(); the
 * render thread pops them without blocking and acknowledges each with
 * vw_fetch_ack(), after which the tile may be fetched again if wanted again
 * (after eviction). The `wake` callback runs on a worker thread after each
 * result is queued.
 *
 * Thread-safety: vw_fetch_want/ack/in_flight may be called from the render
 * thread while the workers run; they take a short lock, never held across
 * I/O. */
#ifndef VW_FETCH_H
#define VW_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "cs/queue.h"
#include "cs/tiles.h"

#include "geom.h"

typedef struct vw_fetch vw_fetch;

/** One finished tile, popped from vw_fetch_results(); free with vw_tile_result_free(). */
typedef struct {
    vw_key key;
    int status;   /**< 0 or a CS_E* code */
    uint32_t *px; /**< w*h XRGB8888 pixels (malloc); NULL on failure */
    int w, h;
    size_t bytes; /**< encoded (JPEG) size */
    char msg[240];
} vw_tile_result;

typedef struct {
    size_t size;
    const char *tile_url; /**< http: tile URL prefix; "{level}/{col}_{row}.jpeg" is appended */
    const char *token;    /**< http: bearer token or NULL */
    int insecure;         /**< http: skip TLS verification */
    const char *cacert;   /**< http: CA bundle or NULL */
    cs_tiles *tiles;      /**< file: borrowed, used when tile_url is NULL */
    int parallel;         /**< concurrent transfers (http) or tile threads (file) */
    int decoders;         /**< http: decode threads */
    void (*wake)(void *userdata);
    void *userdata;
} vw_fetch_opts;

#define VW_FETCH_OPTS_INIT                                                                         \
    {                                                                                              \
        sizeof(vw_fetch_opts), NULL, NULL, 0, NULL, NULL, 6, 2, NULL, NULL                         \
    }

int vw_fetch_new(vw_fetch **out, const vw_fetch_opts *opts);
/** Stop every thread, cancel transfers, free queued results. NULL is a no-op. */
void vw_fetch_free(vw_fetch *f);
/** Replace the wanted list (copied), most wanted first; the first
 *  @p n_urgent keys are urgent. */
void vw_fetch_want(vw_fetch *f, const vw_key *keys, size_t n, size_t n_urgent);
/** The render thread has consumed the result for @p key. */
void vw_fetch_ack(vw_fetch *f, vw_key key);
/** Tiles being transferred, made or decoded right now. */
int vw_fetch_in_flight(vw_fetch *f);
cs_queue *vw_fetch_results(vw_fetch *f);
void vw_tile_result_free(vw_tile_result *r);

#endif
