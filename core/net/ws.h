/* The WebSocket hub of GET /ws (private to core/net; see PROTOCOL.md).
 *
 * The server checks the token and hands the request to
 * cs_ws_upgrade_response(); after the 101 each connection runs on its own
 * thread ("ws-N"): wslay over the upgraded socket (a socketpair end when
 * TLS is on, libmicrohttpd forwarding to TLS), poll() on it and on an
 * eventfd that says "frames queued".
 *
 * Outgoing frames: every connection subscribes to the bus; the bus
 * callback only filters (topic "" goes to everyone, "slide:ID" to the
 * connections subscribed to ID) and try-pushes a reference into the
 * connection's bounded queue. A connection whose queue passes queue_max
 * frames is closed with 1013; neither the poster nor other clients wait.
 *
 * Resume: on {"op":"subscribe","since":N} the live subscription is
 * registered first (live events queue up), then S = last_seq() and
 * replay(slide, N, S) emits the logged events directly, then queued live
 * events with 0 < seq <= S are skipped: each op-log event arrives once and
 * in order. This needs the core to make an event visible to last_seq() and
 * replay() before (or while) posting it, and to post op-log events of a
 * slide in seq order.
 *
 * Thread-safety: all functions are thread-safe. The core callbacks run on
 * the connection's thread: command() and replay() may take a while (they
 * only hold up that client) but must not call back into the hub for the
 * same connection except through cs_ws_send(). */
#ifndef CS_NET_WS_H
#define CS_NET_WS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cs/bus.h"
#include "cs/common.h"
#include "cs/log.h"

struct MHD_Connection;
struct MHD_Response;

typedef struct cs_ws cs_ws;

/** What the hub asks of the core (annotations, op log). Any callback may be
 *  NULL: no command is supported, nothing is logged. */
typedef struct {
    void *userdata;
    /** A command frame from a client (an op other than subscribe,
     *  unsubscribe, viewport and ping, which the hub handles). @p msg is
     *  borrowed for the call (json_incref to keep it). The core answers,
     *  now or later, with cs_ws_send(hub, conn, frame). */
    void (*command)(void *userdata, cs_ws *hub, int64_t conn, const char *user, const char *role,
                    json_t *msg);
    /** Replay the op-log events of @p slide with seq in (since, upto] by
     *  calling emit for each, in order (emit borrows the event). @return 0,
     *  or CS_ERANGE when the log no longer reaches back to @p since (the
     *  hub then sends {"type":"resync"}). */
    int (*replay)(void *userdata, const char *slide, int64_t since, int64_t upto,
                  void (*emit)(void *ctx, cs_event *ev), void *ctx);
    /** The latest op-log seq (0: empty log). */
    int64_t (*last_seq)(void *userdata);
} cs_ws_core;

typedef struct {
    size_t size;
    int ping_interval_ms;     /**< a WebSocket ping after this long (30 s) */
    int dead_after_ms;        /**< nothing heard for this long: close (75 s) */
    int close_timeout_ms;     /**< wait this long for the peer's close frame (2 s) */
    int queue_max;            /**< frames queued for a client before 1013 (4096) */
    uint64_t max_frame;       /**< largest message accepted, else 1009 (16 MiB) */
    int viewport_interval_ms; /**< at most one viewport event per client this often (50 ms) */
} cs_ws_opts;

#define CS_WS_OPTS_INIT                                                                            \
    {                                                                                              \
        sizeof(cs_ws_opts), 30000, 75000, 2000, 4096, 16u << 20, 50                                \
    }

/** A hub posting to and reading from @p bus (borrowed; it must outlive the
 *  hub). @p core is copied. @p opts may be NULL (defaults). @p log is
 *  borrowed. @return 0 or CS_ENOMEM. */
CS_INTERNAL int cs_ws_new(cs_ws **out, cs_bus *bus, const cs_ws_core *core, const cs_ws_opts *opts,
                          cs_logger *log);

/** Check the WebSocket handshake of @p conn (the token was checked by the
 *  caller; @p user and @p role are copied) and make the response to queue
 *  with *@p status: 101 (the connection starts when libmicrohttpd calls
 *  back), or 400 / 426 with a JSON error body (426 also carries
 *  Sec-WebSocket-Version: 13). NULL only when out of memory. The caller
 *  queues it and destroys it. Needs MHD_ALLOW_UPGRADE on the daemon. */
CS_INTERNAL struct MHD_Response *cs_ws_upgrade_response(cs_ws *hub, struct MHD_Connection *conn,
                                                        const char *user, const char *role,
                                                        unsigned *status);

/** Run a connection on an already upgraded socket @p fd (the hub closes
 *  it): for tests, without libmicrohttpd. @p id receives its id. */
CS_INTERNAL int cs_ws_attach(cs_ws *hub, int fd, const char *user, const char *role, int64_t *id);

/** Queue one text frame (copied) for connection @p conn. Never blocks.
 *  @return 0, CS_ENOTFOUND when the connection is gone, CS_EAGAIN when its
 *  queue is full (it is then being closed with 1013), CS_ENOMEM. */
CS_INTERNAL int cs_ws_send(cs_ws *hub, int64_t conn, const char *frame, size_t len);

/** Close every connection (1001, "going away"), wait for their threads, and
 *  refuse later upgrades. Call before MHD_stop_daemon(): libmicrohttpd must
 *  not see upgraded connections still open. */
CS_INTERNAL void cs_ws_close_all(cs_ws *hub);

/** cs_ws_close_all(), then free. NULL is a no-op. */
CS_INTERNAL void cs_ws_free(cs_ws *hub);

/** {"connections":n,"accepted":n,"closed_slow":n,"closed_malformed":n,
 *   "frames_sent":n,"frames_dropped":n} (a new reference). */
CS_INTERNAL json_t *cs_ws_stats(cs_ws *hub);

#endif
