/* Private to core/net: REST handlers that need no libmicrohttpd. Each takes
 * the parsed request and returns an HTTP status with a JSON body, so the
 * logic is testable without a socket and server.c only moves bytes. */
#ifndef CS_NET_REST_H
#define CS_NET_REST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cs/bus.h"
#include "cs/common.h"
#include "cs/plughost.h"
#include "cs/session.h"

/* The largest request body accepted (a big GeoJSON import). */
#define CS_REST_MAX_BODY (16u << 20)

typedef struct {
    const char *method; /* GET, POST, PATCH, DELETE */
    const char *slide;  /* slide id (already known to exist) */
    const char *aid;    /* annotation id, NULL for the collection */
    const char *format; /* ?format= */
    const char *bbox;   /* ?bbox=x0,y0,x1,y1 */
    const char *rev;    /* ?rev= (DELETE) */
    const char *body;   /* request body, NUL-terminated, may be NULL */
    size_t body_len;
    int can_write; /* the user's role may write */
} cs_rest_request;

/* /slides/{slide}/annotations[/{aid}]. @p out gets the response body (a new
 * reference); @p content_type a static string. @return the HTTP status. */
CS_INTERNAL unsigned cs_rest_annotations(cs_session *s, const cs_session_actor *who,
                                         const cs_rest_request *rq, json_t **out,
                                         const char **content_type);

/* {"error": word, "message": text} for a CS_E* code, and its status. */
CS_INTERNAL unsigned cs_rest_error(int code, const char *message, json_t **out);

/* The wiring of plugins to the session and the bus (glue.c). */
typedef struct cs_glue cs_glue;
CS_INTERNAL int cs_glue_new(cs_glue **out, cs_session *s, cs_bus *bus);
CS_INTERNAL void cs_glue_set_host(cs_glue *g, cs_plughost *h);
CS_INTERNAL cs_plughost_core cs_glue_plughost_core(cs_glue *g);
/* WebSocket clients' commands, replay and resume point (see ws.h). */
struct cs_ws;
CS_INTERNAL void cs_glue_ws_command(cs_glue *g, struct cs_ws *hub, int64_t conn, const char *user,
                                    const char *role, json_t *msg);
CS_INTERNAL int cs_glue_ws_replay(cs_glue *g, const char *slide, int64_t since, int64_t upto,
                                  void (*emit)(void *ctx, cs_event *ev), void *ctx);
CS_INTERNAL int64_t cs_glue_last_seq(cs_glue *g);
/* After this no call reaches the session. */
CS_INTERNAL void cs_glue_close(cs_glue *g);
CS_INTERNAL void cs_glue_free(cs_glue *g);

/* DICOMweb over the DICOM store (dicomweb.c). */
typedef struct cs_dicomweb cs_dicomweb;
typedef struct {
    unsigned status;
    char content_type[160];
    char *body; /* malloc'd, the caller's to free(); NULL when empty */
    size_t len;
    char object[65]; /* the study touched, for the audit trail ("" none) */
} cs_dicomweb_reply;
typedef const char *(*cs_dicomweb_arg_fn)(void *ctx, const char *key);

/* @p db_path: the database the DICOM node indexes into; @p store_dir: its
 * files; @p readers: database handles at most (one per request thread);
 * @p prerender: start the thread that renders stored instances ahead. */
CS_INTERNAL int cs_dicomweb_new(cs_dicomweb **out, const char *db_path, const char *store_dir,
                                int readers, int prerender);
/* Queue the store file @p path, in transfer syntax @p ts, to be rendered
 * ahead if it is compressed; never blocks. */
CS_INTERNAL void cs_dicomweb_prerender(cs_dicomweb *w, const char *path, const char *ts);
/* Answer GET /dicomweb/@p path; @p arg reads query arguments. */
CS_INTERNAL void cs_dicomweb_handle(cs_dicomweb *w, const char *path, cs_dicomweb_arg_fn arg,
                                    void *ctx, cs_dicomweb_reply *out);
CS_INTERNAL void cs_dicomweb_free(cs_dicomweb *w);

#endif
