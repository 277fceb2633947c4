/* The Lua 5.4 plugin host (design: ../shared/design/PLUGINS.md; API for
 * plugin authors: plugins/README.md).
 *
 * Each plugin is an actor: its own lua_State, OS thread ("lua/<name>") and
 * bounded inbox. The core never waits for a plugin: cs_plughost_post() only
 * try-pushes. Plugins read through the core's read() callback (answered at
 * once, from state the core publishes) and write through commands: the core
 * applies a command on its own thread, then calls cs_plughost_complete(),
 * which delivers "command.done" to the plugin.
 *
 * The host is generic: it knows no family's semantics. Calls such as
 * cs.annot.create() become commands {"op":"annot.create",...} whose required
 * permission the host checks in C against the manifest's `needs` before the
 * core sees them.
 *
 * Thread-safety: every function is thread-safe. The core callbacks are
 * called from plugin threads, concurrently; they must not block for long
 * and must not call back into the host except cs_plughost_complete() and
 * cs_plughost_post(). */
#ifndef CS_PLUGHOST_H
#define CS_PLUGHOST_H

#include <stdint.h>

#include <jansson.h>

#include "cs/bus.h"
#include "cs/common.h"

typedef struct cs_plughost cs_plughost;

/** What the host needs from the core (or from a test's fake core). */
typedef struct {
    void *userdata;
    /** A write: queue @p cmd (borrowed; copy what you keep) from @p plugin,
     *  then later call cs_plughost_complete(host, plugin, req, ...). Called
     *  only after the permission check. @return 0, or an error code (the
     *  Lua call then returns nil, message). */
    int (*command)(void *userdata, const char *plugin, int64_t req, const json_t *cmd);
    /** A read ({"op":"annot.query",...}, "annot.get", "annot.measure",
     *  "storage.get", "slide.get"...): answer at once with a new reference,
     *  or NULL and *err (a message valid until the calling thread's next
     *  call into the core, e.g. cs_error_last()). */
    json_t *(*read)(void *userdata, const char *plugin, const json_t *query, const char **err);
    /** cs.emit(name, data) and host notices (plugin.disabled...): post to the
     *  core's bus. @p data is borrowed. May be NULL. */
    void (*emit)(void *userdata, const char *plugin, const char *name, const json_t *data);
    /** Clock for timers, in ms; NULL means the monotonic clock. Tests pass a
     *  fake one and call cs_plughost_kick() after moving it. CPU deadlines
     *  always use the real clock. */
    int64_t (*now_ms)(void *userdata);
} cs_plughost_core;

typedef struct {
    size_t size;
    size_t mem_limit;     /**< bytes per plugin (64 MiB) */
    int handler_ms;       /**< CPU deadline per handler (20 ms) */
    int load_ms;          /**< deadline for loading main.lua (500 ms) */
    int manifest_ms;      /**< deadline for scanning manifest.lua (100 ms) */
    int inbox;            /**< inbox entries per plugin (1024) */
    int strikes;          /**< violations within strike_window_s that disable (3) */
    int strike_window_s;  /**< (300) */
    int max_timers;       /**< per plugin (256) */
    const char *lib_dir;  /**< shared Lua libraries (plugins/lib); NULL: none */
    uint32_t random_seed; /**< 0: per-plugin seed from the clock; else fixed (tests) */
    int nice;             /**< niceness added to plugin threads (10) */
} cs_plughost_opts;

#define CS_PLUGHOST_OPTS_INIT                                                                      \
    {                                                                                              \
        sizeof(cs_plughost_opts), 64u << 20, 20, 500, 100, 1024, 3, 300, 256, NULL, 0, 10          \
    }

/** Plugin states as reported by stats. */
#define CS_PLUGIN_STATE_LOADED   "running"
#define CS_PLUGIN_STATE_DISABLED "disabled"
#define CS_PLUGIN_STATE_FAILED   "failed" /* manifest or load error */

/** @p core is copied. */
CS_API int cs_plughost_new(cs_plughost **out, const cs_plughost_opts *opts,
                           const cs_plughost_core *core);
/** Stop every plugin (on_stop gets 2 s), join the threads, free. NULL is a no-op. */
CS_API void cs_plughost_free(cs_plughost *h);

/** Add a folder of plugins (each sub-folder with manifest.lua; "*.disable"
 *  skipped; sorted order; a later folder's plugin replaces an earlier one of
 *  the same name). Nothing loads until cs_plughost_start().
 *  @return plugins found, or CS_ENOTFOUND. */
CS_API int cs_plughost_add_dir(cs_plughost *h, const char *dir);
/** Add one plugin folder. */
CS_API int cs_plughost_add_plugin(cs_plughost *h, const char *dir);
/** Scan, load and start every plugin added. A plugin that fails to load is
 *  kept in state "failed" with its error; the others run.
 *  @return the number running. */
CS_API int cs_plughost_start(cs_plughost *h);

/** Offer an event to every plugin subscribed to its name (try-push; full
 *  inbox: the plugin is choked and later gets "queue.overflow"). Coalesced
 *  events (viewer.viewport_changed, stream.stats, switcher.source_health)
 *  keep only the latest per plugin. Never blocks. */
CS_API void cs_plughost_post(cs_plughost *h, cs_event *ev);
/** Offer an event to one plugin only, without choking it: @return 0,
 *  CS_EAGAIN when its inbox is full (retry later), CS_ENOTFOUND when no
 *  such plugin runs or it is not subscribed. For benches and tools that
 *  must not lose events; the core uses cs_plughost_post(). @since 0.1 */
CS_API int cs_plughost_try_post_to(cs_plughost *h, const char *plugin, cs_event *ev);

/** A bus subscriber function that calls cs_plughost_post (userdata = host). */
CS_API void cs_plughost_bus_fn(void *host, cs_event *ev);

/** Answer command @p req of @p plugin: "command.done" {req, ok, result |
 *  error} reaches the plugin (and resumes a cs.await on it). @p result is
 *  borrowed; @p error NULL means success. Unknown plugin or req: ignored. */
CS_API void cs_plughost_complete(cs_plughost *h, const char *plugin, int64_t req,
                                 const json_t *result, const char *error);

/** Stop, close, rescan and reload one plugin, then on_start with what its
 *  on_save returned. A disabled plugin comes back with no strikes. */
CS_API int cs_plughost_reload(cs_plughost *h, const char *name);

/** Wake plugin threads so timers due by the (fake) clock fire. */
CS_API void cs_plughost_kick(cs_plughost *h);
/** Wait until every inbox is empty, no handler runs and no timer is due,
 *  or @p timeout_ms passes. @return 0 or CS_ETIMEDOUT. For tests. */
CS_API int cs_plughost_idle(cs_plughost *h, int timeout_ms);

/** [{name, version, api, dir, state, strikes, memory, memory_peak, events,
 *  dropped, last_error}] — a new reference. */
CS_API json_t *cs_plughost_stats(cs_plughost *h);

/** Scan and load each plugin of @p dir in a throwaway host without starting
 *  it (for `consilium plugins check`): [{name, ok, error}] in @p report.
 *  @return the number that failed. */
CS_API int cs_plughost_check_dir(const char *dir, const char *lib_dir, json_t **report);

/** The API level this host implements, and the oldest it still accepts. */
#define CS_PLUGIN_API_LEVEL      1
#define CS_PLUGIN_API_COMPATIBLE 1

#endif
