/* The event bus: refcounted immutable events, subscribers called on the
 * posting thread under a read lock (they only try-push). */
#include "cs/bus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cs/err.h"
#include "cs/thread.h"

struct cs_event {
    atomic_int refs;
    int64_t seq;
    int64_t time_ns;
    char *name, *topic, *origin;
    json_t *data;
    pthread_once_t frame_once;
    char *frame;
    size_t frame_len;
};

static char *dup0(const char *s)
{
    return strdup(s ? s : "");
}

cs_event *cs_event_new(const char *name, const char *topic, int64_t seq, const char *origin,
                       json_t *data)
{
    cs_event *ev = calloc(1, sizeof(*ev));
    if (!ev) {
        json_decref(data);
        return NULL;
    }
    atomic_init(&ev->refs, 1);
    ev->seq = seq;
    ev->time_ns = cs_clock_ns();
    ev->name = dup0(name);
    ev->topic = dup0(topic);
    ev->origin = dup0(origin);
    ev->data = data ? data : json_object();
    ev->frame_once = (pthread_once_t)PTHREAD_ONCE_INIT;
    if (!ev->name || !ev->topic || !ev->origin || !ev->data) {
        cs_event_unref(ev);
        return NULL;
    }
    return ev;
}

cs_event *cs_event_ref(cs_event *ev)
{
    atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
    return ev;
}

void cs_event_unref(cs_event *ev)
{
    if (!ev || atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(ev->name);
    free(ev->topic);
    free(ev->origin);
    json_decref(ev->data);
    free(ev->frame);
    free(ev);
}

const char *cs_event_name(const cs_event *ev)
{
    return ev->name;
}

const char *cs_event_topic(const cs_event *ev)
{
    return ev->topic;
}

int64_t cs_event_seq(const cs_event *ev)
{
    return ev->seq;
}

const char *cs_event_origin(const cs_event *ev)
{
    return ev->origin;
}

const json_t *cs_event_data(const cs_event *ev)
{
    return ev->data;
}

int64_t cs_event_time_ns(const cs_event *ev)
{
    return ev->time_ns;
}

/* pthread_once has no argument: the event being framed is passed through a
 * thread-local (the once routine runs on the calling thread). */
static _Thread_local cs_event *framing;

static void make_frame(void)
{
    cs_event *ev = framing;
    json_t *f =
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:O}", "type", "event", "seq", (json_int_t)ev->seq,
                  "event", ev->name, "topic", ev->topic, "origin", ev->origin, "data", ev->data);
    if (!f)
        return;
    ev->frame = json_dumps(f, JSON_COMPACT);
    ev->frame_len = ev->frame ? strlen(ev->frame) : 0;
    json_decref(f);
}

const char *cs_event_frame(cs_event *ev, size_t *len)
{
    framing = ev;
    pthread_once(&ev->frame_once, make_frame);
    framing = NULL;
    if (len)
        *len = ev->frame_len;
    return ev->frame;
}

typedef struct {
    int64_t id;
    cs_bus_fn fn;
    void *userdata;
} sub;

struct cs_bus {
    pthread_rwlock_t lock;
    sub *subs;
    size_t nsubs, cap;
    int64_t next_id;
    atomic_uint_fast64_t posted;
};

int cs_bus_new(cs_bus **out)
{
    cs_bus *b = calloc(1, sizeof(*b));
    if (!b)
        return cs_error_set(CS_ENOMEM, "out of memory");
    pthread_rwlock_init(&b->lock, NULL);
    b->next_id = 1;
    *out = b;
    return 0;
}

void cs_bus_free(cs_bus *bus)
{
    if (!bus)
        return;
    pthread_rwlock_destroy(&bus->lock);
    free(bus->subs);
    free(bus);
}

int64_t cs_bus_subscribe(cs_bus *bus, cs_bus_fn fn, void *userdata)
{
    pthread_rwlock_wrlock(&bus->lock);
    if (bus->nsubs == bus->cap) {
        size_t cap = bus->cap ? bus->cap * 2 : 8;
        sub *s = realloc(bus->subs, cap * sizeof(*s));
        if (!s) {
            pthread_rwlock_unlock(&bus->lock);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        bus->subs = s;
        bus->cap = cap;
    }
    int64_t id = bus->next_id++;
    bus->subs[bus->nsubs++] = (sub){id, fn, userdata};
    pthread_rwlock_unlock(&bus->lock);
    return id;
}

void cs_bus_unsubscribe(cs_bus *bus, int64_t id)
{
    pthread_rwlock_wrlock(&bus->lock);
    for (size_t i = 0; i < bus->nsubs; i++) {
        if (bus->subs[i].id == id) {
            memmove(&bus->subs[i], &bus->subs[i + 1], (bus->nsubs - i - 1) * sizeof(sub));
            bus->nsubs--;
            break;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
}

void cs_bus_post(cs_bus *bus, cs_event *ev)
{
    atomic_fetch_add_explicit(&bus->posted, 1, memory_order_relaxed);
    pthread_rwlock_rdlock(&bus->lock);
    for (size_t i = 0; i < bus->nsubs; i++)
        bus->subs[i].fn(bus->subs[i].userdata, ev);
    pthread_rwlock_unlock(&bus->lock);
}

uint64_t cs_bus_posted(const cs_bus *bus)
{
    return atomic_load_explicit(&((cs_bus *)bus)->posted, memory_order_relaxed);
}
