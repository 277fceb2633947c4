/* The node's HTTP server (libmicrohttpd): slides as DeepZoom and IIIF Image
 * API 3 tiles, slide metadata as JSON.
 *
 * Routes (every one but /health needs the bearer token, given as
 * "Authorization: Bearer T" or "?access_token=T"):
 *   GET /health
 *   GET /slides, /slides/{id}
 *   GET /slides/{id}.dzi, /slides/{id}_files/{level}/{col}_{row}.jpeg
 *   GET /slides/{id}/associated/{name}.jpg    (403 unless serve_associated)
 *   GET /iiif/3/{id}/info.json, /iiif/3/{id}/{region}/{size}/{rot}/{quality}.jpg
 *   GET /ws                                   WebSocket event channel (PROTOCOL.md)
 *   GET /ws/stats                             WebSocket hub counters (connections, closes)
 *   GET /dicomweb/studies[/{study}/series[/{series}/instances]]   QIDO-RS
 *   GET /dicomweb/studies/{study}/series/{series}[/instances/{sop}][/metadata]
 *   GET /dicomweb/.../instances/{sop}/frames/{n[,m...]}[/rendered], .../rendered
 *                                             WADO-RS (see core/net/PROTOCOL.md)
 * Errors are JSON {"error": word, "message": text}: 400 malformed, 401 no or
 * wrong token, 403 not allowed, 404 unknown slide or tile out of range, 410
 * slide removed while served, 413 size above the maximum, 422 slide corrupt.
 * URL parts never touch the file system: slides are looked up by id in the
 * set registered at start.
 *
 * Audit: access to a slide (metadata, tiles, associated images) leaves a
 * record with the DICOM/IHE ATNA code 110103, once per client, user, slide
 * and kind every 5 minutes; a missing or wrong token leaves 110114 (user
 * authentication, failed), at most once per client every 10 s. Records
 * name the user by a fingerprint of the token, never the token.
 *
 * Thread-safety: configure (add paths) before cs_server_start(); after it the
 * server runs on its own thread pool until cs_server_free(). */
#ifndef CS_SERVER_H
#define CS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "cs/bus.h"
#include "cs/common.h"

typedef struct cs_server cs_server;

typedef struct {
    size_t size;
    const char *bind;          /**< address to bind; "127.0.0.1" by default */
    int port;                  /**< 0: any free port (read it back with cs_server_port) */
    const char *token;         /**< NULL: generate a random one */
    size_t cache_bytes;        /**< encoded-tile cache budget */
    int threads;               /**< HTTP worker threads */
    int tile_size;             /**< DeepZoom tile size; 0 = automatic (see cs/tiles.h) */
    int overlap;               /**< -1 = automatic */
    int quality;               /**< JPEG quality of made tiles */
    int max_width, max_height; /**< largest IIIF output */
    int serve_associated;      /**< serve label/macro images (they identify patients) */
    const char *cors_origin;   /**< Access-Control-Allow-Origin value */
    const char *tls_cert;      /**< PEM file paths: both set turns HTTPS on */
    const char *tls_key;
    const char *audit_path;   /**< JSON-lines audit trail; NULL: the "audit" logger */
    const char *db_path;      /**< the store (annotations, audit); NULL: a temporary file */
    const char *const *users; /**< "NAME:ROLE:TOKEN" each; roles viewer, pathologist,
                                   coordinator, admin (the server token is "owner", admin) */
    int nusers;
    const char *const *plugin_dirs; /**< folders of plugins, loaded in order */
    int nplugin_dirs;
    const char *plugin_lib; /**< shared Lua libraries (plugins/lib) */
    /** The DICOM node's study store (files indexed in db_path): serves
     *  DICOMweb under /dicomweb/ (and /dicom-web/); NULL: none. */
    const char *dicom_store;
    /** 1 (default): frame 1 of each compressed instance the node stores is
     *  rendered ahead (cs_server_dicom_stored), so /rendered answers from
     *  disk; 0: every rendered image is made on request. */
    int dicom_prerender;
} cs_server_opts;

#define CS_SERVER_OPTS_INIT                                                                        \
    {                                                                                              \
        sizeof(cs_server_opts), "127.0.0.1", 8080, NULL, 256u << 20, 4, 0, -1, 75, 4096, 4096, 0,  \
            "*", NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL, 1                           \
    }

CS_API int cs_server_new(cs_server **out, const cs_server_opts *opts);
/** Register a slide file, a folder (scanned two levels deep for slide files)
 *  or "synthetic:WxH". Unreadable slides are kept and answer 422 with the
 *  reason. @return number of slides added, or CS_ENOTFOUND for a missing path. */
CS_API int cs_server_add_path(cs_server *s, const char *path);
CS_API int cs_server_slide_count(const cs_server *s);
/** Start listening. @return 0 or CS_EIO (the message says why). */
CS_API int cs_server_start(cs_server *s);
CS_API int cs_server_port(const cs_server *s);
CS_API const char *cs_server_token(const cs_server *s);
/** The server's event bus: what is posted there reaches the WebSocket
 *  clients of /ws (topic "slide:ID" those subscribed to ID, "" all).
 *  Borrowed; valid until cs_server_free(). Thread-safe. */
CS_API cs_bus *cs_server_bus(cs_server *s);
/** The DICOM node stored the file @p path (new or replacing) in transfer
 *  syntax @p ts: queue it to be rendered ahead when compressed (see
 *  dicom_prerender). Never blocks; thread-safe. */
CS_API void cs_server_dicom_stored(cs_server *s, const char *path, const char *ts);
/** First slide's id (for printing example URLs), or NULL. */
CS_API const char *cs_server_slide_id(const cs_server *s, int index);
CS_API void cs_server_free(cs_server *s);

#endif
