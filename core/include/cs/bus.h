/* The event bus: immutable, refcounted events fanned out to subscribers
 * (plugins, WebSocket clients) without ever blocking the poster.
 *
 * An event has a name ("annotation.created"), a topic ("slide:<id>", or ""
 * for node-wide events), a sequence number (> 0 for events kept in a
 * durable log, such as the annotation op log, so a client can resume after
 * it; 0 for transient ones), an origin (who caused it: a user, a plugin or
 * "core") and a JSON payload.
 *
 * cs_bus_post() calls every subscriber's function on the posting thread.
 * A subscriber function must not block: it takes a reference and try-pushes
 * the event into its own queue (or drops it and remembers that it did).
 * After cs_bus_unsubscribe() returns, the function is never called again.
 *
 * Thread-safety: all functions are thread-safe. Events are immutable once
 * created; their payload must not be modified after cs_event_new(). */
#ifndef CS_BUS_H
#define CS_BUS_H

#include <stdint.h>

#include <jansson.h>

#include "cs/common.h"

typedef struct cs_event cs_event;
typedef struct cs_bus cs_bus;

/** A new event with one reference. @p data is stolen (may be NULL: {}).
 *  @p topic and @p origin may be NULL (""). @return NULL on out of memory. */
CS_API cs_event *cs_event_new(const char *name, const char *topic, int64_t seq, const char *origin,
                              json_t *data);
CS_API cs_event *cs_event_ref(cs_event *ev);
/** Drop a reference; NULL is a no-op. */
CS_API void cs_event_unref(cs_event *ev);

CS_API const char *cs_event_name(const cs_event *ev);
CS_API const char *cs_event_topic(const cs_event *ev);
CS_API int64_t cs_event_seq(const cs_event *ev);
CS_API const char *cs_event_origin(const cs_event *ev);
/** The payload, borrowed for the event's lifetime. Do not modify. */
CS_API const json_t *cs_event_data(const cs_event *ev);
/** Post time (cs_clock_ns) set by cs_event_new: for latency measurements. */
CS_API int64_t cs_event_time_ns(const cs_event *ev);

/** The event as one WebSocket text frame:
 *  {"type":"event","seq":N,"event":name,"topic":topic,"origin":o,"data":{...}}.
 *  Serialised once, on first use, and shared; borrowed for the event's
 *  lifetime. NULL on out of memory. */
CS_API const char *cs_event_frame(cs_event *ev, size_t *len);

/** A subscriber: must not block; returns nothing. */
typedef void (*cs_bus_fn)(void *userdata, cs_event *ev);

CS_API int cs_bus_new(cs_bus **out);
/** NULL is a no-op. Every subscriber must have unsubscribed. */
CS_API void cs_bus_free(cs_bus *bus);
/** @return a subscription id > 0, or a negative error code. */
CS_API int64_t cs_bus_subscribe(cs_bus *bus, cs_bus_fn fn, void *userdata);
CS_API void cs_bus_unsubscribe(cs_bus *bus, int64_t id);
/** Deliver @p ev to every subscriber; the caller keeps its reference. */
CS_API void cs_bus_post(cs_bus *bus, cs_event *ev);
/** Events posted so far (for stats). */
CS_API uint64_t cs_bus_posted(const cs_bus *bus);

#endif
