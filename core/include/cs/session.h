/* The session: the one thread that owns consult state (annotations now),
 * applies every write in order (from REST, WebSocket clients and plugins),
 * commits it to the store, and only then acknowledges it and posts its
 * event on the bus.
 *
 * Writes are commands (JSON, ops below) submitted with cs_session_submit();
 * the session thread takes whatever is queued (up to 256), applies each in
 * a savepoint of one transaction, commits (WAL, synchronous=FULL: on disk),
 * then calls each command's done callback and posts the events. A command
 * that fails rolls back alone. Reads (cs_session_read, cs_session_replay)
 * run on the caller's thread on a pooled read connection.
 *
 * Commands ({"op": ...}):
 *   annot.create {slide, annotation}        → the annotation (rev 1)
 *   annot.import {slide, geojson}           → {imported, annotations}
 *   annot.update {id, rev, patch}           → the new version; a stale rev
 *                                             fails with CS_ECONFLICT and the
 *                                             result {"current": {...}}
 *   annot.delete {id[, rev]}                → {id, slide, rev, deleted}
 *   storage.set  {key, value}               → {} (per plugin: origin)
 * Reads:
 *   annot.list {slide[, bbox:[x0,y0,x1,y1]]} → {slide, seq, annotations}
 *   annot.query {slide[, bbox]}              → [annotations] (the plugin API's)
 *   annot.get {id}, annot.measure {id}, storage.get {key}
 *
 * Events posted (topic "slide:<id>", seq = the op log's): annotation.created,
 * annotation.updated (the new version), annotation.deleted
 * ({id, slide, rev, deleted}).
 *
 * Thread-safety: all functions are thread-safe. */
#ifndef CS_SESSION_H
#define CS_SESSION_H

#include <stdint.h>

#include <jansson.h>

#include "cs/bus.h"
#include "cs/common.h"
#include "cs/log.h"

typedef struct cs_session cs_session;

/** Who asks: the author of what is written and the audit record's subject. */
typedef struct {
    const char *user;   /**< token's user, or "plugin:<name>" */
    const char *origin; /**< event origin: the user, or the plugin's name */
    const char *client; /**< network address, or "plugin" */
} cs_session_actor;

/** Called on the session thread once the command is committed (or failed).
 *  @p result is borrowed (NULL on failure, except {"current"} on conflict). */
typedef void (*cs_session_done)(void *userdata, int code, const json_t *result,
                                const char *message);

/** Open the store at @p db_path and start the session thread; events go to
 *  @p bus (may be NULL). */
CS_API int cs_session_new(cs_session **out, const char *db_path, cs_bus *bus, cs_logger *log);
/** Finish queued commands, stop, close. NULL is a no-op. */
CS_API void cs_session_free(cs_session *s);

/** Make a slide known (before any command names it); MPPs <= 0: unknown. */
CS_API int cs_session_add_slide(cs_session *s, const char *id, double mpp_x, double mpp_y);

/** Queue a write. @p cmd is copied. @return 0 (done will be called), or
 *  CS_EAGAIN when the queue is full (done is not called). */
CS_API int cs_session_submit(cs_session *s, const cs_session_actor *who, const json_t *cmd,
                             cs_session_done done, void *userdata);
/** Submit and wait. @p result (a new reference, may be NULL) as for done. */
CS_API int cs_session_call(cs_session *s, const cs_session_actor *who, const json_t *cmd,
                           json_t **result);

/** Answer a read (see above) for @p who. @return a new reference, or NULL
 *  with the code in @p code and the message in cs_error_last(). */
CS_API json_t *cs_session_read(cs_session *s, const cs_session_actor *who, const json_t *query,
                               int *code);

/** The latest op-log seq committed. */
CS_API int64_t cs_session_last_seq(cs_session *s);
/** Call @p emit for each op-log event of @p slide with since < seq <= upto,
 *  in order. */
CS_API int cs_session_replay(cs_session *s, const char *slide, int64_t since, int64_t upto,
                             void (*emit)(void *ctx, cs_event *ev), void *ctx);

/** Writes applied, batches committed (for stats and the bench). */
CS_API json_t *cs_session_stats(cs_session *s);

#endif
