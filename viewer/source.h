/* viewer/source: opens what the user named and learns its geometry.
 *
 *  - a server URL: http(s)://host:port/slides/{id}.dzi, .../slides/{id}, or
 *    the bare http(s)://host:port (the first slide of GET /slides). The slide
 *    JSON (GET /slides/{id}) gives the size, MPP and DeepZoom tile geometry;
 *  - a local file, opened in-process with cs_slide_open() + cs_tiles_new(),
 *    which makes the same DeepZoom tiles the server would.
 *
 * Errors (unreachable server, refused token, unknown slide, unreadable file)
 * come back as CS_E* codes with a message for the user. Startup only: the
 * HTTP requests here block, so they are never made from the render loop. */
#ifndef VW_SOURCE_H
#define VW_SOURCE_H

#include "cs/slide.h"
#include "cs/tiles.h"

#include "geom.h"

typedef struct {
    vw_geom geom;
    double mpp_x; /**< µm per level-0 pixel, 0 when unknown */
    double mpp_y; /**< the same vertically (mpp_x when the slide gives one only) */
    char id[200]; /**< the server's slide id (URL mode) */
    char name[256];
    /* http */
    char *base;     /**< "http://host:port" (with any path prefix) */
    char *tile_url; /**< base + "/slides/{id}_files/" */
    const char *token;
    int insecure;
    const char *cacert;
    /* file */
    cs_slide *slide;
    cs_tiles *tiles;
} vw_source;

/** @param token bearer token or NULL; @param insecure, @p cacert TLS options.
 *  The strings must outlive the source. @return 0 or a CS_E* code; the
 *  message (cs_error_last()) is written for the user. */
int vw_source_open(vw_source *s, const char *target, const char *token, int insecure,
                   const char *cacert);
void vw_source_close(vw_source *s);
/** Whether @p target names a server rather than a file. */
int vw_source_is_url(const char *target);

/** The viewer's blocking GET (metadata, annotation lists): bearer @p token
 *  (NULL or "": none), TLS options as vw_source_open, @p timeout_s.
 *  @p body receives the answer (malloc'ed, NUL-terminated, NULL when empty;
 *  at most 17 MiB), @p status the HTTP status, @p err libcurl's message
 *  (at least CURL_ERROR_SIZE bytes). @return the CURLcode (0: answered). */
int vw_http_get(const char *url, const char *token, int insecure, const char *cacert,
                long timeout_s, char **body, long *status, char *err);

#endif
