/* viewer/sync: live annotations against a Consilium server
 * (core/net/PROTOCOL.md).
 *
 * A "sync" thread loads GET /slides/{id}/annotations (which gives `seq`),
 * opens ws://host:port/ws?access_token=T (wslay over a plain TCP socket;
 * https/wss servers get the REST load only, no live sync), subscribes with
 * {"op":"subscribe","slides":[id],"since":seq}, and hands every frame to the
 * render thread through a bounded queue. After a drop it reconnects with
 * backoff (0.5 s doubling to 10 s) and subscribes with since = the last seq
 * seen; on {"type":"resync"} it loads the list again first.
 *
 * The render thread (vw_sync_poll) applies hello, events and replies to the
 * annotation list; vw_sync_changed (the editor's callback) turns local
 * edits into annot.create/update/delete commands with req ids, queued to
 * the thread (never blocking). An annotation has at most one request in
 * flight; edits made meanwhile are sent when its reply arrives. On
 * ok:false error:"conflict" the "current" version replaces the local one
 * and the editor shows a status message. Requests still unanswered when the
 * connection drops are sent again after the reconnect.
 *
 * vw_sync_new/free/poll/changed/ready/pending: render thread only. */
#ifndef VW_SYNC_H
#define VW_SYNC_H

#include <stddef.h>

#include "annot.h"
#include "edit.h"

typedef struct vw_sync vw_sync;

typedef struct {
    const char *base;  /**< "http://host:port" (+ any path prefix) */
    const char *token; /**< bearer token */
    const char *slide; /**< slide id */
    int insecure;
    const char *cacert;
    void (*wake)(void *userdata); /**< runs on the sync thread when a message is queued */
    void *userdata;
} vw_sync_opts;

/** Start the thread. @p annots and @p edit belong to the render thread and
 *  must outlive the handle; the editor's author becomes the server's user
 *  once the hello arrives. */
int vw_sync_new(vw_sync **out, const vw_sync_opts *o, vw_annots *annots, vw_edit *edit);
/** Stop the thread and free. NULL is a no-op. */
void vw_sync_free(vw_sync *s);
/** Apply what arrived, without blocking. @return 1 when something changed. */
int vw_sync_poll(vw_sync *s);
/** The editor's change callback (userdata = the vw_sync). */
void vw_sync_changed(void *userdata, vw_annot *a, int op);
/** Whether the list is loaded and the subscription made. */
int vw_sync_ready(const vw_sync *s);
/** Whether the sync thread gave up for good (e.g. no annotation routes). */
int vw_sync_failed(const vw_sync *s);
/** Requests sent and not answered yet, plus edits waiting to be sent. */
int vw_sync_pending(const vw_sync *s);

#endif
