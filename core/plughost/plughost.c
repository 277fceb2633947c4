/* The Lua 5.4 plugin host: discovery, sandbox, limits, dispatch.
 *
 * Each plugin is an actor (PLUGINS.md §1): one lua_State, one thread
 * ("lua/<name>") and a bounded inbox. Invariants:
 * - Only the plugin's own thread touches its lua_State while the thread
 *   runs; loading (before the thread starts) and closing (after it was
 *   joined) happen on the caller of cs_plughost_start/reload/free, under
 *   the plugin's `life` lock.
 * - Posting never blocks on Lua: cs_plughost_post takes the host's read
 *   lock and each plugin's `mu` just long enough to push a reference.
 * - Every entry into Lua is protected (lua_pcall / lua_resume) with a CPU
 *   deadline armed, so no Lua code runs without a budget: handlers,
 *   timers, lifecycle callbacks, finalizers run by lua_close.
 * - The host owns every subscription, timer and pending request (registry
 *   tables and the C timer array), so lua_close tears a plugin down
 *   completely. */
#include "cs/plughost.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "cs/err.h"
#include "cs/log.h"
#include "cs/thread.h"

#include "plughost_internal.h"

#define HOOK_COUNT      10000 /* instructions between deadline checks */
#define ON_STOP_MS      2000
#define MANIFEST_MEM    (4u << 20)
#define NAME_MAX_LEN    48
#define ERR_LEN         1024
#define CS_TIMER_MT     "cs.timer"
#define MAX_STRIKE_SLOT 64

/* Permissions a manifest may ask for (PLUGINS.md §6). */
enum {
    PERM_ANNOT_WRITE = 1u << 0,
    PERM_CONSULT_WRITE = 1u << 1,
    PERM_MINUTES_WRITE = 1u << 2,
    PERM_SWITCHER_CONTROL = 1u << 3,
};

static const struct {
    const char *name;
    unsigned bit;
} perm_names[] = {
    {"annot.write", PERM_ANNOT_WRITE},
    {"consult.write", PERM_CONSULT_WRITE},
    {"minutes.write", PERM_MINUTES_WRITE},
    {"switcher.control", PERM_SWITCHER_CONTROL},
};

/* State-like events: only the latest value is delivered (a dirty slot). */
static const char *const coalesced_names[] = {"viewer.viewport_changed", "stream.stats",
                                              "switcher.source_health"};
#define NCOALESCED ((int)(sizeof(coalesced_names) / sizeof(coalesced_names[0])))

enum { ST_NEW, ST_FAILED, ST_RUNNING, ST_DISABLED, ST_STOPPED };
enum { PHASE_NONE, PHASE_LOAD, PHASE_RUN, PHASE_STOP };

/* Registry keys (addresses of these statics: light userdata as registry
 * keys only, PLUGINS.md §4). */
static const char KEY_SUBS = 's';    /* name -> {fn...} */
static const char KEY_HOOKS = 'h';   /* name -> {{prio, fn}...} (registered only) */
static const char KEY_WAITING = 'w'; /* req -> coroutine suspended in cs.await */
static const char KEY_ISSUED = 'i';  /* req -> issuing coroutine (weak values) or true */
static const char KEY_DONE = 'd';    /* coroutine (weak key) -> {req -> {result, err}} */
static const char KEY_LOADED = 'l';  /* require cache */
static const char KEY_FROZEN = 'f';  /* frozen tables (weak keys) */

/* Memory cap and CPU deadline of one lua_State; lua_getextraspace holds a
 * pointer to it, so the allocator and the count hook find it. */
typedef struct {
    atomic_size_t mem, peak;
    size_t limit;
    int refused;         /* an allocation was refused since the last reset */
    int64_t deadline_ns; /* 0: unarmed */
    int limit_ms;
    int killing; /* past the deadline: every line raises */
    struct plugin *p;
} guard;

typedef struct {
    char name[NAME_MAX_LEN + 1];
    char version[32];
    int api;
    unsigned needs;
    json_t *config;
    char error[ERR_LEN];
} manifest;

typedef struct completion {
    struct completion *next;
    int64_t req;
    json_t *result;
    char *error;
} completion;

typedef struct {
    int64_t due, interval; /* host ms; interval 0: one-shot */
    int id, ref;
} timer;

typedef struct plugin {
    cs_plughost *host;
    pthread_mutex_t life; /* start/stop/reload of this plugin */
    pthread_mutex_t mu;   /* everything marked (mu) */
    pthread_cond_t cv;

    /* Set under life (+ mu when the thread may run). */
    char *dir;
    char name[NAME_MAX_LEN + 1];
    char version[32];
    int api;
    unsigned needs;
    json_t *config;
    char scan_error[ERR_LEN];
    cs_logger *log;
    lua_State *L;
    cs_thread *thread;
    guard g;

    /* (mu) */
    atomic_int state;
    int stop, want_save, waiting, busy, pending_start;
    const char *stop_reason;
    cs_event **ring;
    int ring_head, ring_len;
    int choked, overflow_pending;
    int64_t choke_dropped;
    cs_event *dirty[NCOALESCED];
    completion *done_head, *done_tail;
    char **subs;
    int nsubs;
    int64_t next_due; /* INT64_MAX: no timer */
    int64_t events, dropped, strikes;
    int64_t strike_ns[MAX_STRIKE_SLOT];
    int nstrike;
    char last_error[ERR_LEN];
    json_t *saved;
    int ntimers_stat, npending_stat;

    /* Plugin thread only (or the loader before the thread starts). */
    int phase;
    timer *timers;
    int ntimers, timer_seq;
    lua_State *current_co;
    int awaiting;
    cs_event *current_ev;
    int64_t first_req;
    atomic_llong next_req;
} plugin;

struct cs_plughost {
    cs_plughost_opts opts;
    cs_plughost_core core;
    char *lib_dir;
    cs_logger *log;
    pthread_rwlock_t lock; /* the plugins array */
    plugin **plugins;
    int n, cap;
};

static const char *const state_names[] = {"stopped", CS_PLUGIN_STATE_FAILED, CS_PLUGIN_STATE_LOADED,
                                          CS_PLUGIN_STATE_DISABLED, "stopped"};

/* ------------------------------------------------------------------------ */
/* Clocks, memory, deadline */

static int64_t host_now_ms(const cs_plughost *h)
{
    if (h->core.now_ms)
        return h->core.now_ms(h->core.userdata);
    return cs_clock_ns() / 1000000;
}

static void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    guard *g = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        atomic_fetch_sub(&g->mem, old);
        return NULL;
    }
    if (nsize > old && g->limit && atomic_load(&g->mem) + (nsize - old) > g->limit) {
        g->refused = 1;
        return NULL;
    }
    void *n = realloc(ptr, nsize);
    if (!n)
        return NULL;
    size_t cur;
    if (nsize >= old)
        cur = atomic_fetch_add(&g->mem, nsize - old) + (nsize - old);
    else
        cur = atomic_fetch_sub(&g->mem, old - nsize) - (old - nsize);
    if (cur > atomic_load(&g->peak))
        atomic_store(&g->peak, cur);
    return n;
}

static guard *guard_of(lua_State *L)
{
    return *(guard **)lua_getextraspace(L);
}

static plugin *plugin_of(lua_State *L)
{
    return guard_of(L)->p;
}

/* Redis luaMaskCountHook: past the deadline, re-arm on every line and
 * raise again, so a pcall in the script cannot swallow the kill. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
    guard *g = guard_of(L);
    if (!g->killing) {
        if (!g->deadline_ns || cs_clock_ns() < g->deadline_ns) {
            if (lua_gethookmask(L) != LUA_MASKCOUNT || lua_gethookcount(L) != HOOK_COUNT)
                lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
            return;
        }
        g->killing = 1;
    }
    lua_sethook(L, count_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
    luaL_error(L, "timeout: ran past its %d ms deadline", g->limit_ms);
}

static void arm(guard *g, int ms)
{
    g->limit_ms = ms;
    g->deadline_ns = cs_clock_ns() + (int64_t)ms * 1000000;
    g->killing = 0;
    g->refused = 0;
}

static void disarm(guard *g)
{
    g->deadline_ns = 0;
    g->killing = 0;
}

static lua_State *state_new(guard *g)
{
    lua_State *L = lua_newstate(guard_alloc, g);
    if (!L)
        return NULL;
    *(guard **)lua_getextraspace(L) = g;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
    return L;
}

/* Message handler: the error with a traceback. */
static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* lua_pcall with the traceback handler; the error (or nothing) stays on top. */
static int pcall_tb(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Errors and strikes */

static void set_last_error(plugin *p, const char *kind, const char *msg)
{
    pthread_mutex_lock(&p->mu);
    /* truncating a long message is intended */
    if (snprintf(p->last_error, sizeof(p->last_error), "%s: %s", kind, msg) < 0)
        p->last_error[0] = 0;
    pthread_mutex_unlock(&p->mu);
}

static void drop_queued_locked(plugin *p)
{
    cs_plughost *h = p->host;
    while (p->ring_len) {
        cs_event_unref(p->ring[p->ring_head]);
        p->ring_head = (p->ring_head + 1) % h->opts.inbox;
        p->ring_len--;
    }
    p->ring_head = 0;
    for (int i = 0; i < NCOALESCED; i++) {
        cs_event_unref(p->dirty[i]);
        p->dirty[i] = NULL;
    }
    while (p->done_head) {
        completion *c = p->done_head;
        p->done_head = c->next;
        json_decref(c->result);
        free(c->error);
        free(c);
    }
    p->done_tail = NULL;
    p->choked = p->overflow_pending = 0;
    p->choke_dropped = 0;
}

/* A violation: logged under the plugin's name, kept as last_error, one
 * strike; opts.strikes within the window disable the plugin. */
static void violation(plugin *p, const char *kind, const char *what, const char *msg)
{
    cs_plughost *h = p->host;
    cs_log(p->log, CS_LOG_ERROR, "%s in %s: %s", kind, what, msg);
    int64_t now = cs_clock_ns();
    int disable = 0;
    pthread_mutex_lock(&p->mu);
    snprintf(p->last_error, sizeof(p->last_error), "%s in %s: %s", kind, what, msg);
    p->strikes++;
    int n = h->opts.strikes < MAX_STRIKE_SLOT ? h->opts.strikes : MAX_STRIKE_SLOT;
    p->strike_ns[p->nstrike % n] = now;
    p->nstrike++;
    if (p->nstrike >= n && atomic_load(&p->state) == ST_RUNNING) {
        /* the oldest of the last n strikes */
        int64_t oldest = p->strike_ns[p->nstrike % n];
        if (now - oldest <= (int64_t)h->opts.strike_window_s * 1000000000) {
            atomic_store(&p->state, ST_DISABLED);
            drop_queued_locked(p);
            disable = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (disable) {
        cs_log(p->log, CS_LOG_ERROR, "disabled after %d violations", n);
        if (h->core.emit) {
            char reason[ERR_LEN + 64];
            snprintf(reason, sizeof(reason), "%d violations; last: %s in %s: %s", n, kind, what,
                     msg);
            json_t *d = json_pack("{s:s, s:s}", "name", p->name, "reason", reason);
            if (d)
                h->core.emit(h->core.userdata, p->name, "plugin.disabled", d);
            json_decref(d);
        }
    }
}

static const char *error_kind(plugin *p, int st)
{
    if (p->g.killing)
        return "timeout";
    if (st == LUA_ERRMEM || p->g.refused)
        return "memory";
    return "error";
}

static int running(plugin *p)
{
    return atomic_load(&p->state) == ST_RUNNING;
}

/* ------------------------------------------------------------------------ */
/* Frozen tables: the contents move to a hidden table R; the (now empty)
 * table gets {__index=R, __newindex=raise, __pairs, __len, __metatable}. */

static int frozen_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a frozen table (key '%s')",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
}

static int raw_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int frozen_pairs(lua_State *L)
{
    lua_pushcfunction(L, raw_next);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    lua_pushnil(L);
    return 3;
}

static int frozen_len(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

static int is_frozen(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_FROZEN);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    int r = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return r;
}

/* Freeze the table at idx; deep: also its table values (recursively). */
static void freeze(lua_State *L, int idx, int deep)
{
    idx = lua_absindex(L, idx);
    if (is_frozen(L, idx))
        return;
    luaL_checkstack(L, 8, "freeze");
    lua_newtable(L); /* R */
    int r = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, r);
    }
    lua_pushnil(L);
    while (lua_next(L, r)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, idx);
    }
    if (deep) {
        lua_pushnil(L);
        while (lua_next(L, r)) {
            if (lua_type(L, -1) == LUA_TTABLE)
                freeze(L, -1, 1);
            lua_pop(L, 1);
        }
    }
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, r);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, frozen_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, frozen_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushcfunction(L, frozen_len);
    lua_setfield(L, -2, "__len");
    lua_pushliteral(L, "frozen");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_FROZEN);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 2); /* frozen set, R */
}

/* After load: _G (top level), cs (deep) and the libraries. */
static int freeze_all(lua_State *L)
{
    static const char *const libs[] = {"cs", "string", "table", "math", "utf8", "coroutine"};
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        lua_getfield(L, g, libs[i]);
        if (lua_type(L, -1) == LUA_TTABLE)
            freeze(L, -1, i == 0);
        lua_pop(L, 1);
    }
    freeze(L, g, 0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Replacements for base functions */

static int l_rawset(lua_State *L)
{
    if (is_frozen(L, 1))
        return luaL_error(L, "attempt to modify a frozen table");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* load(chunk [, name [, mode [, env]]]): mode is always "t" (a crafted
 * binary chunk can crash the VM). An absent env stays absent. */
static int l_load(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checkany(L, 1);
    if (n > 4)
        lua_settop(L, n = 4);
    while (lua_gettop(L) < 3)
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* setmetatable refuses __gc: finalizers run with hooks off (lgc.c GCTM),
 * so a looping finalizer could not be killed. Lua marks an object for
 * finalization only when __gc is present at setmetatable time, so adding
 * the field later has no effect. */
static int l_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in plugins");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int l_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed in a plugin");
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

static void log_args(lua_State *L, cs_log_level level, int first)
{
    plugin *p = plugin_of(L);
    luaL_Buffer b;
    int n = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (int i = first; i <= n; i++) {
        if (i > first)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    cs_log(p ? p->log : NULL, level, "%s", lua_tostring(L, -1));
}

static int l_print(lua_State *L)
{
    log_args(L, CS_LOG_INFO, 1);
    return 0;
}

/* require(name): Lua files only, from the plugin's folder, its lib/ and
 * opts.lib_dir; names are [A-Za-z0-9_] separated by single dots. */
static int valid_module_name(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (const char *c = s; *c; c++) {
        if (*c == '.') {
            if (c[1] == '.' || c[1] == 0)
                return 0;
        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '_')) {
            return 0;
        }
    }
    return strlen(s) <= 128;
}

static int l_require(lua_State *L)
{
    plugin *p = plugin_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_LOADED);
    lua_getfield(L, 2, name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    if (!valid_module_name(name))
        return luaL_error(L,
                          "require: invalid module name '%s' (plugins require Lua modules "
                          "by dotted name from their folder and plugins/lib)",
                          name);
    char rel[160];
    snprintf(rel, sizeof(rel), "%s", name);
    for (char *c = rel; *c; c++)
        if (*c == '.')
            *c = '/';
    const char *bases[3] = {p->dir, NULL, p->host->lib_dir};
    char libsub[4096];
    snprintf(libsub, sizeof(libsub), "%s/lib", p->dir);
    bases[1] = libsub;
    char path[4096];
    int found = 0;
    for (int i = 0; i < 3 && !found; i++) {
        if (!bases[i])
            continue;
        snprintf(path, sizeof(path), "%s/%s.lua", bases[i], rel);
        struct stat st;
        found = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    }
    if (!found)
        return luaL_error(L,
                          "module '%s' not found (plugins may require only Lua files from "
                          "their folder and plugins/lib)",
                          name);
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The cs API */

static int l_log_debug(lua_State *L)
{
    log_args(L, CS_LOG_DEBUG, 1);
    return 0;
}
static int l_log_info(lua_State *L)
{
    log_args(L, CS_LOG_INFO, 1);
    return 0;
}
static int l_log_warn(lua_State *L)
{
    log_args(L, CS_LOG_WARN, 1);
    return 0;
}
static int l_log_error(lua_State *L)
{
    log_args(L, CS_LOG_ERROR, 1);
    return 0;
}

static int l_time_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)host_now_ms(plugin_of(L)->host));
    return 1;
}

static void check_load_phase(lua_State *L, const char *fn)
{
    if (plugin_of(L)->phase != PHASE_LOAD)
        luaL_error(L, "too late: %s works only while main.lua loads", fn);
}

static int l_on(lua_State *L)
{
    plugin *p = plugin_of(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    check_load_phase(L, "cs.on");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_SUBS);
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        char *copy = strdup(name);
        pthread_mutex_lock(&p->mu);
        char **ns = copy ? realloc(p->subs, sizeof(*ns) * (size_t)(p->nsubs + 1)) : NULL;
        if (ns) {
            p->subs = ns;
            p->subs[p->nsubs++] = copy;
        }
        pthread_mutex_unlock(&p->mu);
        if (!ns) {
            free(copy);
            return luaL_error(L, "out of memory");
        }
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int l_hook(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_Integer prio = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    check_load_phase(L, "cs.hook");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_HOOKS);
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, prio);
    lua_setfield(L, -2, "prio");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "fn");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* Push JSON (stealing the reference) without leaking it if Lua raises. */
static int push_json_fn(lua_State *L)
{
    cs_plughost_push_json(L, lua_touserdata(L, 1));
    return 1;
}

static void push_json_steal(lua_State *L, json_t *j)
{
    lua_pushcfunction(L, push_json_fn);
    lua_pushlightuserdata(L, j);
    int st = lua_pcall(L, 1, 1, 0);
    json_decref(j);
    if (st != LUA_OK)
        lua_error(L);
}

/* The Lua value at idx as JSON, or a Lua argument error. */
static json_t *check_json(lua_State *L, int idx, const char *what)
{
    char err[160];
    json_t *j = cs_plughost_to_json(L, idx, err, sizeof(err));
    if (!j)
        luaL_error(L, "%s: %s", what, err);
    return j;
}

/* A write: permission check in C, then core->command. Steals @p cmd.
 * Returns req, or nil, err. */
static int issue(lua_State *L, unsigned perm, json_t *cmd)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    if (perm && !(p->needs & perm)) {
        json_decref(cmd);
        for (size_t i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++)
            if (perm_names[i].bit == perm)
                return luaL_error(L, "API disabled: needs %s", perm_names[i].name);
        return luaL_error(L, "API disabled");
    }
    if (!cmd)
        return luaL_error(L, "out of memory");
    if (!h->core.command) {
        json_decref(cmd);
        lua_pushnil(L);
        lua_pushliteral(L, "no core to run commands");
        return 2;
    }
    int64_t req = atomic_fetch_add(&p->next_req, 1) + 1;
    /* issued[req] = the issuing coroutine (weak), so a completion that
     * arrives before its cs.await is kept only while that coroutine lives */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_ISSUED);
    if (lua_isyieldable(L))
        lua_pushthread(L);
    else
        lua_pushboolean(L, 1);
    lua_rawseti(L, -2, (lua_Integer)req);
    lua_pop(L, 1);
    cs_error_clear();
    int rc = h->core.command(h->core.userdata, p->name, req, cmd);
    json_decref(cmd);
    if (rc != 0) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_ISSUED);
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)req);
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushstring(L, *cs_error_last() ? cs_error_last() : cs_strerror(rc));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)req);
    return 1;
}

/* A read answered at once by the core. Steals @p q. */
static int do_read(lua_State *L, json_t *q)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    if (!q)
        return luaL_error(L, "out of memory");
    if (!h->core.read) {
        json_decref(q);
        lua_pushnil(L);
        lua_pushliteral(L, "no core to answer reads");
        return 2;
    }
    const char *err = NULL;
    json_t *r = h->core.read(h->core.userdata, p->name, q, &err);
    json_decref(q);
    if (!r) {
        lua_pushnil(L);
        lua_pushstring(L, err && *err ? err : "read failed");
        return 2;
    }
    push_json_steal(L, r);
    return 1;
}

static int l_emit(lua_State *L)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    const char *name = luaL_checkstring(L, 1);
    size_t nl = strlen(p->name);
    if (strncmp(name, p->name, nl) != 0 || name[nl] != '.' || !name[nl + 1])
        return luaL_argerror(L, 1,
                             lua_pushfstring(L, "plugin events are named '%s.<event>'", p->name));
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' ||
              *c == '-'))
            return luaL_argerror(L, 1, "event names are lowercase [a-z0-9_.-]");
    json_t *d = lua_isnoneornil(L, 2) ? json_object() : check_json(L, 2, "cs.emit");
    if (h->core.emit)
        h->core.emit(h->core.userdata, p->name, name, d);
    json_decref(d);
    return 0;
}

static int l_ui_notify(lua_State *L)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    const char *text = luaL_checkstring(L, 1);
    json_t *d = json_pack("{s:s, s:s}", "plugin", p->name, "text", text);
    if (!d)
        return luaL_argerror(L, 1, "text must be UTF-8");
    if (h->core.emit)
        h->core.emit(h->core.userdata, p->name, "ui.notify", d);
    json_decref(d);
    return 0;
}

static int l_await(lua_State *L)
{
    plugin *p = plugin_of(L);
    lua_Integer req = luaL_checkinteger(L, 1);
    /* already completed while this coroutine awaited something else */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_DONE);
    lua_pushthread(L);
    if (lua_rawget(L, -2) == LUA_TTABLE && lua_rawgeti(L, -1, req) == LUA_TTABLE) {
        lua_getfield(L, -1, "result");
        lua_getfield(L, -2, "error");
        lua_pushnil(L);
        lua_rawseti(L, -5, req);
        return 2;
    }
    lua_settop(L, 1);
    if (L != p->current_co || !lua_isyieldable(L))
        return luaL_error(L, "cs.await works only in a handler or timer callback, not in a "
                             "nested coroutine, main.lua or on_save/on_stop");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_ISSUED);
    if (lua_rawgeti(L, -1, req) == LUA_TNIL) {
        lua_pushnil(L);
        lua_pushliteral(L, "unknown request");
        return 2;
    }
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_WAITING);
    lua_pushthread(L);
    lua_rawseti(L, -2, req);
    lua_settop(L, 0);
    p->awaiting = 1;
    return lua_yield(L, 0);
}

/* Timers */

static void update_next_due(plugin *p)
{
    int64_t due = INT64_MAX;
    for (int i = 0; i < p->ntimers; i++)
        if (p->timers[i].due < due)
            due = p->timers[i].due;
    pthread_mutex_lock(&p->mu);
    p->next_due = due;
    p->ntimers_stat = p->ntimers;
    pthread_mutex_unlock(&p->mu);
}

static int add_timer(lua_State *L, int every)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, ms >= (every ? 1 : 0) && ms <= (lua_Integer)1 << 40, 1, "delay out of range");
    if (p->phase == PHASE_STOP) {
        lua_pushnil(L);
        lua_pushliteral(L, "stopping");
        return 2;
    }
    if (p->ntimers >= h->opts.max_timers) {
        lua_pushnil(L);
        lua_pushfstring(L, "too many timers (at most %d)", h->opts.max_timers);
        return 2;
    }
    timer *nt = realloc(p->timers, sizeof(*nt) * (size_t)(p->ntimers + 1));
    if (!nt)
        return luaL_error(L, "out of memory");
    p->timers = nt;
    int *ud = lua_newuserdatauv(L, sizeof(int), 0);
    luaL_setmetatable(L, CS_TIMER_MT);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    timer *t = &p->timers[p->ntimers++];
    t->id = *ud = ++p->timer_seq;
    t->ref = ref;
    t->interval = every ? ms : 0;
    t->due = host_now_ms(h) + ms;
    update_next_due(p);
    return 1;
}

static int l_after(lua_State *L)
{
    return add_timer(L, 0);
}

static int l_every(lua_State *L)
{
    return add_timer(L, 1);
}

static int l_timer_cancel(lua_State *L)
{
    plugin *p = plugin_of(L);
    int id = *(int *)luaL_checkudata(L, 1, CS_TIMER_MT);
    for (int i = 0; i < p->ntimers; i++) {
        if (p->timers[i].id == id) {
            luaL_unref(L, LUA_REGISTRYINDEX, p->timers[i].ref);
            p->timers[i] = p->timers[--p->ntimers];
            update_next_due(p);
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* Storage and annotations */

static int l_storage_get(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    return do_read(L, json_pack("{s:s, s:s}", "op", "storage.get", "key", key));
}

static int l_storage_set(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    json_t *v = check_json(L, 2, "cs.storage.set");
    return issue(L, 0, json_pack("{s:s, s:s, s:o}", "op", "storage.set", "key", key, "value", v));
}

static int l_annot_create(lua_State *L)
{
    const char *image = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    json_t *a = check_json(L, 2, "cs.annot.create");
    if (!json_is_object(a)) {
        json_decref(a);
        return luaL_argerror(L, 2, "annotation fields expected ({type=..., pts=...})");
    }
    return issue(
        L, PERM_ANNOT_WRITE,
        json_pack("{s:s, s:s, s:o}", "op", "annot.create", "slide", image, "annotation", a));
}

static int l_annot_update(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer rev = luaL_checkinteger(L, 3);
    json_t *patch = check_json(L, 2, "cs.annot.update");
    if (!json_is_object(patch)) {
        json_decref(patch);
        return luaL_argerror(L, 2, "patch fields expected");
    }
    return issue(L, PERM_ANNOT_WRITE,
                 json_pack("{s:s, s:s, s:I, s:o}", "op", "annot.update", "id", id, "rev",
                           (json_int_t)rev, "patch", patch));
}

static int l_annot_delete(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int has_rev = !lua_isnoneornil(L, 2);
    lua_Integer rev = has_rev ? luaL_checkinteger(L, 2) : 0;
    json_t *cmd = json_pack("{s:s, s:s}", "op", "annot.delete", "id", id);
    if (has_rev && cmd)
        json_object_set_new(cmd, "rev", json_integer((json_int_t)rev));
    return issue(L, PERM_ANNOT_WRITE, cmd);
}

static int l_annot_query(lua_State *L)
{
    const char *image = luaL_checkstring(L, 1);
    json_t *bbox = NULL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "bbox") != LUA_TNIL) {
            luaL_argcheck(L, lua_istable(L, -1) && lua_rawlen(L, -1) == 4, 2,
                          "bbox must be {x0, y0, x1, y1}");
            bbox = json_array();
            for (int i = 1; i <= 4; i++) {
                lua_rawgeti(L, -1, i);
                int ok;
                lua_Number v = lua_tonumberx(L, -1, &ok);
                lua_pop(L, 1);
                if (!ok) {
                    json_decref(bbox);
                    return luaL_argerror(L, 2, "bbox must hold 4 numbers");
                }
                json_array_append_new(bbox, json_real(v));
            }
        }
        lua_pop(L, 1);
    }
    json_t *q = json_pack("{s:s, s:s}", "op", "annot.query", "slide", image);
    if (q && bbox)
        json_object_set_new(q, "bbox", bbox);
    else
        json_decref(bbox);
    return do_read(L, q);
}

static int l_annot_get(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    return do_read(L, json_pack("{s:s, s:s}", "op", "annot.get", "id", id));
}

static int l_annot_measure(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    return do_read(L, json_pack("{s:s, s:s}", "op", "annot.measure", "id", id));
}

/* cs._x: private, unstable. */
static int l_x_since_post_ns(lua_State *L)
{
    plugin *p = plugin_of(L);
    if (!p->current_ev)
        return 0;
    lua_pushinteger(L, (lua_Integer)(cs_clock_ns() - cs_event_time_ns(p->current_ev)));
    return 1;
}

static const luaL_Reg cs_funcs[] = {
    {"on", l_on},       {"hook", l_hook}, {"after", l_after}, {"every", l_every},
    {"await", l_await}, {"emit", l_emit}, {NULL, NULL},
};
static const luaL_Reg log_funcs[] = {
    {"debug", l_log_debug}, {"info", l_log_info}, {"warn", l_log_warn},
    {"error", l_log_error}, {NULL, NULL},
};
static const luaL_Reg time_funcs[] = {{"now", l_time_now}, {NULL, NULL}};
static const luaL_Reg storage_funcs[] = {
    {"get", l_storage_get}, {"set", l_storage_set}, {NULL, NULL}};
static const luaL_Reg ui_funcs[] = {{"notify", l_ui_notify}, {NULL, NULL}};
static const luaL_Reg annot_funcs[] = {
    {"create", l_annot_create},
    {"update", l_annot_update},
    {"delete", l_annot_delete},
    {"query", l_annot_query},
    {"get", l_annot_get},
    {"measure", l_annot_measure},
    {NULL, NULL},
};
static const luaL_Reg x_funcs[] = {{"since_post_ns", l_x_since_post_ns}, {NULL, NULL}};
static const luaL_Reg timer_methods[] = {{"cancel", l_timer_cancel}, {NULL, NULL}};

static void sub_table(lua_State *L, const char *name, const luaL_Reg *funcs)
{
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    lua_setfield(L, -2, name);
}

static void new_registry_table(lua_State *L, const void *key, const char *mode)
{
    lua_newtable(L);
    if (mode) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, mode);
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Build the sandbox (run protected). Upvalue-free: the plugin comes from
 * the extra space. */
static int sandbox_setup(lua_State *L)
{
    plugin *p = plugin_of(L);
    cs_plughost *h = p->host;
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
    };
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* package.loaded from luaL_requiref: not reachable from Lua (no
     * package library); our own cache for require */
    new_registry_table(L, &KEY_SUBS, NULL);
    new_registry_table(L, &KEY_HOOKS, NULL);
    new_registry_table(L, &KEY_WAITING, NULL);
    new_registry_table(L, &KEY_ISSUED, "v");
    new_registry_table(L, &KEY_DONE, "k");
    new_registry_table(L, &KEY_LOADED, NULL);
    new_registry_table(L, &KEY_FROZEN, "k");

    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, g, "dofile");
    lua_pushnil(L);
    lua_setfield(L, g, "loadfile");
    lua_getfield(L, g, "load");
    lua_pushcclosure(L, l_load, 1);
    lua_setfield(L, g, "load");
    lua_getfield(L, g, "rawset");
    lua_pushcclosure(L, l_rawset, 1);
    lua_setfield(L, g, "rawset");
    lua_getfield(L, g, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setfield(L, g, "setmetatable");
    lua_pushcfunction(L, l_collectgarbage);
    lua_setfield(L, g, "collectgarbage");
    lua_pushcfunction(L, l_print);
    lua_setfield(L, g, "print");
    lua_pushcfunction(L, l_require);
    lua_setfield(L, g, "require");

    lua_getfield(L, g, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    /* the string metatable is shared by every string: hide it */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* math.random: seeded per plugin, fixed under test */
    lua_getfield(L, g, "math");
    lua_getfield(L, -1, "randomseed");
    uint32_t seed = h->opts.random_seed ? h->opts.random_seed : (uint32_t)cs_clock_ns();
    lua_pushinteger(L, (lua_Integer)seed);
    lua_call(L, 1, 0);
    lua_pop(L, 1);

    luaL_newmetatable(L, CS_TIMER_MT);
    luaL_newlibtable(L, timer_methods);
    luaL_setfuncs(L, timer_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "cs.timer");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newlibtable(L, cs_funcs);
    luaL_setfuncs(L, cs_funcs, 0);
    sub_table(L, "log", log_funcs);
    sub_table(L, "time", time_funcs);
    sub_table(L, "storage", storage_funcs);
    sub_table(L, "ui", ui_funcs);
    sub_table(L, "annot", annot_funcs);
    sub_table(L, "_x", x_funcs);
    lua_pushinteger(L, CS_PLUGIN_API_LEVEL);
    lua_setfield(L, -2, "api_level");
    lua_pushinteger(L, CS_PLUGIN_API_COMPATIBLE);
    lua_setfield(L, -2, "api_compatible");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, p->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, p->version);
    lua_setfield(L, -2, "version");
    if (p->config)
        cs_plughost_push_json(L, p->config);
    else
        lua_newtable(L);
    lua_setfield(L, -2, "config");
    lua_setfield(L, g, "cs");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Manifest */

static int lua_string_field(lua_State *L, int t, const char *k, char *out, size_t len, int req,
                            char *err, size_t errlen)
{
    lua_pushstring(L, k);
    int ty = lua_rawget(L, t);
    int rc = 0;
    if (ty == LUA_TSTRING && lua_rawlen(L, -1) < len) {
        snprintf(out, len, "%s", lua_tostring(L, -1));
    } else if (ty != LUA_TNIL || req) {
        snprintf(err, errlen, "manifest: '%s' must be a string (< %zu bytes)", k, len);
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

/* Scan dir/manifest.lua in a throwaway state with an empty environment
 * into @p m (the caller frees m->config). 0, or -1 with m->error. */
static int scan_manifest(manifest *m, const char *dir, int ms)
{
    memset(m, 0, sizeof(*m));
    char *err = m->error;
    size_t errlen = sizeof(m->error);
    char path[4096];
    snprintf(path, sizeof(path), "%s/manifest.lua", dir);
    guard g = {.limit = MANIFEST_MEM};
    lua_State *L = state_new(&g);
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        snprintf(err, errlen, "manifest: %s", lua_tostring(L, -1));
        goto out;
    }
    lua_newtable(L);
    lua_setupvalue(L, -2, 1); /* _ENV = {} */
    arm(&g, ms);
    int st = lua_pcall(L, 0, 1, 0);
    const char *kind = g.killing ? "timeout" : st == LUA_ERRMEM ? "memory" : "error";
    disarm(&g);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "manifest %s: %s", kind, msg ? msg : "?");
        goto out;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "manifest must return a table");
        goto out;
    }
    int t = lua_gettop(L);
    char name[NAME_MAX_LEN + 1];
    if (lua_string_field(L, t, "name", name, sizeof(name), 1, err, errlen) ||
        lua_string_field(L, t, "version", m->version, sizeof(m->version), 1, err, errlen))
        goto out;
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')) {
            snprintf(err, errlen, "manifest: name '%s' must be [a-z0-9_-]", name);
            goto out;
        }
    }
    if (!*name) {
        snprintf(err, errlen, "manifest: empty name");
        goto out;
    }
    snprintf(m->name, sizeof(m->name), "%s", name);
    lua_pushliteral(L, "api");
    lua_rawget(L, t);
    if (!lua_isinteger(L, -1)) {
        snprintf(err, errlen, "manifest: 'api' must be an integer");
        goto out;
    }
    m->api = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (m->api < CS_PLUGIN_API_COMPATIBLE || m->api > CS_PLUGIN_API_LEVEL) {
        snprintf(err, errlen, "api level %d is not supported (this host accepts %d..%d)", m->api,
                 CS_PLUGIN_API_COMPATIBLE, CS_PLUGIN_API_LEVEL);
        goto out;
    }
    m->needs = 0;
    lua_pushliteral(L, "needs");
    int ty = lua_rawget(L, t);
    if (ty == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            unsigned bit = 0;
            for (size_t k = 0; k < sizeof(perm_names) / sizeof(perm_names[0]); k++)
                if (strcmp(s, perm_names[k].name) == 0)
                    bit = perm_names[k].bit;
            if (!bit) {
                snprintf(err, errlen, "manifest: unknown permission '%s' in needs", s);
                goto out;
            }
            m->needs |= bit;
            lua_pop(L, 1);
        }
    } else if (ty != LUA_TNIL) {
        snprintf(err, errlen, "manifest: 'needs' must be a list of permissions");
        goto out;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "config");
    ty = lua_rawget(L, t);
    if (ty == LUA_TTABLE) {
        char jerr[128];
        m->config = cs_plughost_to_json(L, -1, jerr, sizeof(jerr));
        if (!m->config || !json_is_object(m->config)) {
            snprintf(err, errlen, "manifest: 'config' must be a table of settings%s%s",
                     m->config ? "" : ": ", m->config ? "" : jerr);
            json_decref(m->config);
            m->config = NULL;
            goto out;
        }
    } else if (ty != LUA_TNIL) {
        snprintf(err, errlen, "manifest: 'config' must be a table");
        goto out;
    }
    err[0] = 0;
    rc = 0;
out:
    lua_close(L);
    return rc;
}

/* Adopt a scanned manifest (stealing m->config); under mu for readers of
 * stats. The name changes only when @p rename. */
static void adopt_manifest(plugin *p, manifest *m, int rename)
{
    pthread_mutex_lock(&p->mu);
    if (rename && m->name[0])
        snprintf(p->name, sizeof(p->name), "%s", m->name);
    snprintf(p->version, sizeof(p->version), "%s", m->version);
    p->api = m->api;
    p->needs = m->needs;
    json_decref(p->config);
    p->config = m->config;
    m->config = NULL;
    snprintf(p->scan_error, sizeof(p->scan_error), "%s", m->error);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------------ */
/* Running Lua on the plugin thread */

/* Resume @p co (on L's stack top or anchored elsewhere) with nargs values
 * already pushed on it. Handles await, errors and strikes. */
static void resume_co(plugin *p, lua_State *L, lua_State *co, int nargs, const char *what)
{
    p->current_co = co;
    p->awaiting = 0;
    arm(&p->g, p->phase == PHASE_STOP ? ON_STOP_MS : p->host->opts.handler_ms);
    int nres = 0;
    int st = lua_resume(co, L, nargs, &nres);
    const char *kind = error_kind(p, st);
    int refused = p->g.refused;
    disarm(&p->g);
    p->current_co = NULL;
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        if (!p->awaiting) {
            violation(p, "error", what, "yielded outside cs.await (coroutine.yield in a handler)");
            lua_resetthread(co);
        }
        p->awaiting = 0;
    } else if (st == LUA_OK) {
        lua_pop(co, nres);
        if (refused) /* the handler caught its own memory error */
            violation(p, "memory", what, "allocation refused past the memory limit");
    } else {
        const char *msg = lua_tostring(co, -1);
        if (!msg)
            msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
        luaL_traceback(L, co, msg, 0);
        violation(p, kind, what, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_resetthread(co);
    }
    if (refused || st == LUA_ERRMEM)
        lua_gc(L, LUA_GCCOLLECT, 0);
    /* C code still runs in this entry: keep a budget armed */
    arm(&p->g, p->host->opts.handler_ms);
}

/* Call fn (at index fn) with the nargs values below the top in a new
 * coroutine. */
static void run_in_coroutine(plugin *p, lua_State *L, int fn, int nargs, const char *what)
{
    int base = lua_gettop(L) - nargs;
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, fn);
    for (int i = 1; i <= nargs; i++)
        lua_pushvalue(L, base + i);
    lua_xmove(L, co, nargs + 1);
    resume_co(p, L, co, nargs, what);
    lua_settop(L, base + nargs);
}

/* Deliver data/meta (the two values on top) to every handler of @p name. */
static void call_handlers(plugin *p, lua_State *L, const char *name)
{
    int top = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_SUBS);
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_settop(L, top);
        return;
    }
    int list = lua_gettop(L);
    char what[128];
    snprintf(what, sizeof(what), "handler for %s", name);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= n && running(p); i++) {
        lua_rawgeti(L, list, i);
        lua_pushvalue(L, top - 1);
        lua_pushvalue(L, top);
        run_in_coroutine(p, L, list + 1, 2, what);
        lua_settop(L, list);
    }
    lua_settop(L, top);
}

static int dispatch_event_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    cs_event *ev = lua_touserdata(L, 1);
    lua_settop(L, 0);
    cs_plughost_push_json(L, cs_event_data(ev));
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cs_event_name(ev));
    lua_setfield(L, -2, "event");
    lua_pushinteger(L, (lua_Integer)cs_event_seq(ev));
    lua_setfield(L, -2, "seq");
    lua_pushstring(L, cs_event_topic(ev));
    lua_setfield(L, -2, "topic");
    lua_pushstring(L, cs_event_origin(ev));
    lua_setfield(L, -2, "origin");
    p->current_ev = ev;
    call_handlers(p, L, cs_event_name(ev));
    p->current_ev = NULL;
    return 0;
}

static int overflow_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    lua_Integer dropped = (lua_Integer)(intptr_t)lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, dropped);
    lua_setfield(L, -2, "dropped");
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "queue.overflow");
    lua_setfield(L, -2, "event");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "seq");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "topic");
    lua_pushliteral(L, "core");
    lua_setfield(L, -2, "origin");
    call_handlers(p, L, "queue.overflow");
    return 0;
}

static int completion_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    completion *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_Integer req = (lua_Integer)c->req;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_ISSUED); /* 1 */
    lua_rawgeti(L, 1, req);                         /* 2: issuer */
    lua_pushnil(L);
    lua_rawseti(L, 1, req);
    if (c->result && !c->error)
        cs_plughost_push_json(L, c->result); /* 3: result */
    else if (!c->error)
        lua_pushboolean(L, 1);
    else
        lua_pushnil(L);
    if (c->error) /* 4: err */
        lua_pushstring(L, c->error);
    else
        lua_pushnil(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_WAITING); /* 5 */
    lua_rawgeti(L, 5, req);                          /* 6 */
    if (lua_type(L, 6) == LUA_TTHREAD) {
        lua_pushnil(L);
        lua_rawseti(L, 5, req);
        lua_State *co = lua_tothread(L, 6);
        if (lua_status(co) == LUA_YIELD) {
            lua_pushvalue(L, 3);
            lua_pushvalue(L, 4);
            lua_xmove(L, co, 2);
            resume_co(p, L, co, 2, "cs.await continuation");
        }
    } else if (lua_type(L, 2) == LUA_TTHREAD && lua_status(lua_tothread(L, 2)) == LUA_YIELD) {
        /* the issuer awaits something else: keep it for its cs.await */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_DONE);
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, 2);
            lua_pushvalue(L, -2);
            lua_rawset(L, -4);
        }
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "result");
        lua_pushvalue(L, 4);
        lua_setfield(L, -2, "error");
        lua_rawseti(L, -2, req);
    }
    lua_settop(L, 4);
    /* and "command.done" for whoever subscribed */
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, req);
    lua_setfield(L, -2, "req");
    lua_pushboolean(L, c->error == NULL);
    lua_setfield(L, -2, "ok");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "result");
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "error");
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "command.done");
    lua_setfield(L, -2, "event");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "seq");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "topic");
    lua_pushliteral(L, "core");
    lua_setfield(L, -2, "origin");
    call_handlers(p, L, "command.done");
    return 0;
}

static int timers_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    int64_t now = (int64_t)(intptr_t)lua_touserdata(L, 1);
    lua_settop(L, 0);
    for (int guard_n = 0; guard_n < p->host->opts.max_timers + 1 && running(p); guard_n++) {
        int best = -1;
        for (int i = 0; i < p->ntimers; i++)
            if (p->timers[i].due <= now && (best < 0 || p->timers[i].due < p->timers[best].due))
                best = i;
        if (best < 0)
            break;
        timer *t = &p->timers[best];
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
        if (t->interval) {
            t->due += t->interval;
            if (t->due <= now)
                t->due = now + t->interval;
        } else {
            luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
            p->timers[best] = p->timers[--p->ntimers];
        }
        update_next_due(p);
        lua_pushboolean(L, 0);
        run_in_coroutine(p, L, 1, 1, "timer");
        lua_settop(L, 0);
    }
    update_next_due(p);
    return 0;
}

/* Shutdown: every pending timer fires once with premature=true. */
static int premature_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    while (p->ntimers > 0) {
        timer t = p->timers[--p->ntimers];
        lua_rawgeti(L, LUA_REGISTRYINDEX, t.ref);
        luaL_unref(L, LUA_REGISTRYINDEX, t.ref);
        lua_pushboolean(L, 1);
        run_in_coroutine(p, L, lua_gettop(L) - 1, 1, "timer (premature)");
        lua_settop(L, 0);
    }
    update_next_due(p);
    return 0;
}

/* on_start(config, saved): global function, in a coroutine (may await). */
static int start_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    lua_settop(L, 0);
    if (lua_getglobal(L, "on_start") != LUA_TFUNCTION)
        return 0;
    lua_getglobal(L, "cs");
    lua_getfield(L, -1, "config");
    lua_remove(L, -2);
    json_t *saved = NULL;
    pthread_mutex_lock(&p->mu);
    saved = p->saved;
    p->saved = NULL;
    pthread_mutex_unlock(&p->mu);
    if (saved)
        push_json_steal(L, saved);
    else
        lua_pushnil(L);
    run_in_coroutine(p, L, 1, 2, "on_start");
    return 0;
}

/* on_save() -> table, then on_stop(reason); plain protected calls. */
static int save_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    lua_settop(L, 0);
    if (lua_getglobal(L, "on_save") != LUA_TFUNCTION)
        return 0;
    arm(&p->g, p->host->opts.handler_ms);
    int st = pcall_tb(L, 0, 1);
    if (st != LUA_OK) {
        violation(p, error_kind(p, st), "on_save", lua_tostring(L, -1));
        return 0;
    }
    if (lua_istable(L, -1)) {
        char err[160];
        json_t *j = cs_plughost_to_json(L, -1, err, sizeof(err));
        if (!j) {
            violation(p, "error", "on_save", err);
            return 0;
        }
        pthread_mutex_lock(&p->mu);
        json_decref(p->saved);
        p->saved = j;
        pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

static int stop_fn(lua_State *L)
{
    plugin *p = plugin_of(L);
    const char *reason = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (lua_getglobal(L, "on_stop") != LUA_TFUNCTION)
        return 0;
    lua_pushstring(L, reason);
    arm(&p->g, ON_STOP_MS);
    int st = pcall_tb(L, 1, 0);
    if (st != LUA_OK)
        violation(p, error_kind(p, st), "on_stop", lua_tostring(L, -1));
    return 0;
}

/* One protected entry into Lua from the plugin loop. */
static void enter(plugin *p, lua_CFunction fn, void *arg, const char *what)
{
    lua_State *L = p->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    arm(&p->g, p->phase == PHASE_STOP ? ON_STOP_MS : p->host->opts.handler_ms);
    int st = lua_pcall(L, 1, 0, 1);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        violation(p, error_kind(p, st), what, msg ? msg : "?");
        if (st == LUA_ERRMEM || p->g.refused)
            lua_gc(L, LUA_GCCOLLECT, 0);
    }
    disarm(&p->g);
    lua_settop(L, 0);
}

static void renice(plugin *p)
{
    int n = p->host->opts.nice;
    if (n > 0 && cs_thread_nice(n))
        cs_log(p->log, CS_LOG_DEBUG, "%s", cs_error_last());
}

static int plugin_idle_locked(plugin *p, int64_t now)
{
    /* busy first: a handler that strikes its plugin out is still
     * reporting it (plugin.disabled) after the state has changed */
    if (p->busy)
        return 0;
    if (atomic_load(&p->state) != ST_RUNNING)
        return 1;
    if (p->pending_start || p->ring_len || p->done_head || p->overflow_pending)
        return 0;
    for (int i = 0; i < NCOALESCED; i++)
        if (p->dirty[i])
            return 0;
    return p->next_due > now;
}

static void plugin_thread(void *arg)
{
    plugin *p = arg;
    cs_plughost *h = p->host;
    renice(p);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->stop)
            break;
        if (!running(p)) {
            p->waiting = 1;
            pthread_cond_wait(&p->cv, &p->mu);
            p->waiting = 0;
            continue;
        }
        if (p->pending_start) {
            p->pending_start = 0;
            p->busy = 1;
            pthread_mutex_unlock(&p->mu);
            enter(p, start_fn, NULL, "on_start");
            pthread_mutex_lock(&p->mu);
            p->busy = 0;
            continue;
        }
        if (p->done_head) {
            completion *c = p->done_head;
            p->done_head = c->next;
            if (!p->done_head)
                p->done_tail = NULL;
            p->busy = 1;
            pthread_mutex_unlock(&p->mu);
            enter(p, completion_fn, c, "command.done");
            json_decref(c->result);
            free(c->error);
            free(c);
            pthread_mutex_lock(&p->mu);
            p->busy = 0;
            continue;
        }
        cs_event *ev = NULL;
        if (p->ring_len) {
            ev = p->ring[p->ring_head];
            p->ring_head = (p->ring_head + 1) % h->opts.inbox;
            if (--p->ring_len == 0 && p->choked) {
                p->choked = 0;
                p->overflow_pending = 1;
            }
        } else if (p->overflow_pending) {
            int64_t n = p->choke_dropped;
            p->overflow_pending = 0;
            p->choke_dropped = 0;
            p->busy = 1;
            pthread_mutex_unlock(&p->mu);
            enter(p, overflow_fn, (void *)(intptr_t)n, "queue.overflow");
            pthread_mutex_lock(&p->mu);
            p->busy = 0;
            continue;
        } else {
            for (int i = 0; i < NCOALESCED && !ev; i++) {
                ev = p->dirty[i];
                p->dirty[i] = NULL;
            }
        }
        if (ev) {
            p->events++;
            p->busy = 1;
            pthread_mutex_unlock(&p->mu);
            enter(p, dispatch_event_fn, ev, cs_event_name(ev));
            cs_event_unref(ev);
            pthread_mutex_lock(&p->mu);
            p->busy = 0;
            continue;
        }
        if (p->next_due != INT64_MAX) {
            int64_t now = host_now_ms(h);
            if (p->next_due <= now) {
                p->busy = 1;
                pthread_mutex_unlock(&p->mu);
                enter(p, timers_fn, (void *)(intptr_t)now, "timer");
                pthread_mutex_lock(&p->mu);
                p->busy = 0;
                continue;
            }
            int64_t wait = p->next_due - now;
            if (wait > 1000)
                wait = 1000;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            p->waiting = 1;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            p->waiting = 0;
        } else {
            p->waiting = 1;
            pthread_cond_wait(&p->cv, &p->mu);
            p->waiting = 0;
        }
    }
    int save = p->want_save;
    const char *reason = p->stop_reason ? p->stop_reason : "shutdown";
    int was_running = running(p);
    pthread_mutex_unlock(&p->mu);
    if (was_running) {
        if (save)
            enter(p, save_fn, NULL, "on_save");
        p->phase = PHASE_STOP;
        enter(p, premature_fn, NULL, "timer (premature)");
        enter(p, stop_fn, (void *)reason, "on_stop");
    }
}

/* ------------------------------------------------------------------------ */
/* Plugin records, load, stop */

static plugin *plugin_new(cs_plughost *h, const char *dir)
{
    plugin *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ring = calloc((size_t)h->opts.inbox, sizeof(*p->ring));
    p->dir = strdup(dir);
    if (!p->ring || !p->dir) {
        free(p->ring);
        free(p->dir);
        free(p);
        return NULL;
    }
    p->host = h;
    pthread_mutex_init(&p->life, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->state, ST_NEW);
    atomic_init(&p->next_req, 0);
    p->next_due = INT64_MAX;
    p->g.p = p;
    p->g.limit = h->opts.mem_limit;
    return p;
}

static void set_logger(plugin *p)
{
    char lname[64];
    snprintf(lname, sizeof(lname), "lua/%s", p->name);
    cs_log_free(p->log);
    p->log = NULL;
    cs_log_new(&p->log, lname);
}

/* Scan the manifest of p->dir; on failure the plugin is "failed" and named
 * after its folder. */
static int rescan(plugin *p)
{
    cs_plughost *h = p->host;
    manifest m;
    int rc = scan_manifest(&m, p->dir, h->opts.manifest_ms);
    adopt_manifest(p, &m, 1);
    if (!p->name[0]) {
        const char *base = strrchr(p->dir, '/');
        base = base && base[1] ? base + 1 : p->dir;
        pthread_mutex_lock(&p->mu);
        snprintf(p->name, sizeof(p->name), "%s", base);
        pthread_mutex_unlock(&p->mu);
    }
    set_logger(p);
    if (rc != 0)
        cs_log(p->log, CS_LOG_ERROR, "%s", p->scan_error);
    return rc;
}

static void close_state(plugin *p)
{
    if (!p->L)
        return;
    /* finalizers run by lua_close get a budget too */
    p->phase = PHASE_STOP;
    arm(&p->g, ON_STOP_MS);
    lua_close(p->L);
    disarm(&p->g);
    p->L = NULL;
    free(p->timers);
    p->timers = NULL;
    p->ntimers = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nsubs; i++)
        free(p->subs[i]);
    free(p->subs);
    p->subs = NULL;
    p->nsubs = 0;
    p->next_due = INT64_MAX;
    p->ntimers_stat = 0;
    drop_queued_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/* Load main.lua into a fresh sandbox (caller thread; life held; the plugin
 * thread not running). 0, or -1 with last_error set and state "failed". */
static int load(plugin *p)
{
    cs_plughost *h = p->host;
    atomic_store(&p->g.mem, 0);
    atomic_store(&p->g.peak, 0);
    p->g.limit = h->opts.mem_limit;
    lua_State *L = state_new(&p->g);
    if (!L) {
        set_last_error(p, "load", "out of memory");
        atomic_store(&p->state, ST_FAILED);
        return -1;
    }
    p->L = L;
    p->phase = PHASE_LOAD;
    p->timer_seq = 0;
    p->first_req = atomic_load(&p->next_req);
    lua_pushcfunction(L, sandbox_setup);
    arm(&p->g, h->opts.load_ms);
    int st = pcall_tb(L, 0, 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/main.lua", p->dir);
    if (st == LUA_OK && (st = luaL_loadfilex(L, path, "t")) == LUA_OK) {
        st = pcall_tb(L, 0, 0);
        if (st == LUA_OK) {
            lua_pushcfunction(L, freeze_all);
            st = pcall_tb(L, 0, 0);
        }
    }
    const char *kind = error_kind(p, st);
    disarm(&p->g);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        char m[ERR_LEN];
        snprintf(m, sizeof(m), "%s", msg ? msg : "?");
        cs_log(p->log, CS_LOG_ERROR, "load %s: %s", kind, m);
        set_last_error(p, kind[0] == 'e' ? "load error" : kind, m);
        close_state(p);
        atomic_store(&p->state, ST_FAILED);
        return -1;
    }
    p->phase = PHASE_RUN;
    return 0;
}

/* Load and start the thread; life held. */
static int start_plugin(plugin *p)
{
    cs_plughost *h = p->host;
    if (p->scan_error[0]) {
        set_last_error(p, "manifest", p->scan_error);
        atomic_store(&p->state, ST_FAILED);
        return -1;
    }
    if (load(p) != 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    p->stop = 0;
    p->pending_start = 1;
    p->nstrike = 0;
    p->strikes = 0;
    p->last_error[0] = 0;
    atomic_store(&p->state, ST_RUNNING);
    pthread_mutex_unlock(&p->mu);
    char tname[64];
    snprintf(tname, sizeof(tname), "lua/%s", p->name);
    int rc = cs_thread_start(&p->thread, tname, plugin_thread, p);
    if (rc != 0) {
        set_last_error(p, "start", cs_error_last());
        atomic_store(&p->state, ST_FAILED);
        close_state(p);
        return rc;
    }
    (void)h;
    return 0;
}

/* Stop the thread (on_save if @p save, premature timers, on_stop) and
 * close the state; life held. */
static void stop_plugin(plugin *p, const char *reason, int save)
{
    if (p->thread) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        p->stop_reason = reason;
        p->want_save = save;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        cs_thread_join(p->thread);
        p->thread = NULL;
    }
    close_state(p);
    pthread_mutex_lock(&p->mu);
    p->stop = 0;
    p->busy = 0;
    p->pending_start = 0;
    pthread_mutex_unlock(&p->mu);
    p->phase = PHASE_NONE;
}

static void plugin_free(plugin *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->life);
    stop_plugin(p, "shutdown", 0);
    pthread_mutex_unlock(&p->life);
    json_decref(p->saved);
    json_decref(p->config);
    cs_log_free(p->log);
    free(p->ring);
    free(p->dir);
    pthread_mutex_destroy(&p->life);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Public API */

int cs_plughost_new(cs_plughost **out, const cs_plughost_opts *opts, const cs_plughost_core *core)
{
    cs_plughost_opts def = CS_PLUGHOST_OPTS_INIT;
    cs_plughost *h = calloc(1, sizeof(*h));
    if (!h)
        return cs_error_set(CS_ENOMEM, "out of memory");
    h->opts = def;
    if (opts)
        memcpy(&h->opts, opts, opts->size < sizeof(def) ? opts->size : sizeof(def));
    h->opts.size = sizeof(def);
    if (h->opts.inbox < 1 || h->opts.handler_ms < 1 || h->opts.load_ms < 1 ||
        h->opts.manifest_ms < 1 || h->opts.strikes < 1 || h->opts.max_timers < 0 ||
        h->opts.mem_limit < (64u << 10)) {
        free(h);
        return cs_error_set(CS_EINVAL, "plughost: invalid options");
    }
    if (core)
        h->core = *core;
    if (h->opts.lib_dir && !(h->lib_dir = strdup(h->opts.lib_dir))) {
        free(h);
        return cs_error_set(CS_ENOMEM, "out of memory");
    }
    h->opts.lib_dir = h->lib_dir;
    pthread_rwlock_init(&h->lock, NULL);
    cs_log_new(&h->log, "plughost");
    *out = h;
    return 0;
}

void cs_plughost_free(cs_plughost *h)
{
    if (!h)
        return;
    /* stop every thread first: a stopping plugin may still emit, and the
     * core may post that back to us while the others are being freed */
    for (int i = 0; i < h->n; i++) {
        plugin *p = h->plugins[i];
        pthread_mutex_lock(&p->life);
        stop_plugin(p, "shutdown", 0);
        atomic_store(&p->state, ST_STOPPED);
        pthread_mutex_unlock(&p->life);
    }
    for (int i = 0; i < h->n; i++)
        plugin_free(h->plugins[i]);
    free(h->plugins);
    pthread_rwlock_destroy(&h->lock);
    cs_log_free(h->log);
    free(h->lib_dir);
    free(h);
}

static plugin *find_locked(cs_plughost *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->plugins[i]->name, name) == 0)
            return h->plugins[i];
    return NULL;
}

int cs_plughost_add_plugin(cs_plughost *h, const char *dir)
{
    struct stat st;
    char mpath[4096];
    snprintf(mpath, sizeof(mpath), "%s/manifest.lua", dir);
    if (stat(mpath, &st) != 0)
        return cs_error_set(CS_ENOTFOUND, "%s: no manifest.lua", dir);
    plugin *p = plugin_new(h, dir);
    if (!p)
        return cs_error_set(CS_ENOMEM, "out of memory");
    rescan(p);
    pthread_rwlock_wrlock(&h->lock);
    plugin *old = find_locked(h, p->name);
    if (old) {
        /* a later folder replaces the plugin: effective now if it has not
         * started, else at its next reload */
        pthread_mutex_lock(&old->life);
        free(old->dir);
        old->dir = p->dir;
        p->dir = NULL;
        if (atomic_load(&old->state) == ST_NEW || atomic_load(&old->state) == ST_FAILED) {
            rescan(old);
            atomic_store(&old->state, ST_NEW);
        }
        pthread_mutex_unlock(&old->life);
        pthread_rwlock_unlock(&h->lock);
        plugin_free(p);
        return 0;
    }
    if (h->n == h->cap) {
        int nc = h->cap ? h->cap * 2 : 8;
        plugin **np = realloc(h->plugins, sizeof(*np) * (size_t)nc);
        if (!np) {
            pthread_rwlock_unlock(&h->lock);
            plugin_free(p);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        h->plugins = np;
        h->cap = nc;
    }
    h->plugins[h->n++] = p;
    pthread_rwlock_unlock(&h->lock);
    return 0;
}

static int skip_entry(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    if (d->d_name[0] == '.')
        return 0;
    if (n >= 8 && strcmp(d->d_name + n - 8, ".disable") == 0)
        return 0;
    return 1;
}

int cs_plughost_add_dir(cs_plughost *h, const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, skip_entry, alphasort);
    if (n < 0)
        return cs_error_set(CS_ENOTFOUND, "plugin folder %s: %s", dir, strerror(errno));
    int found = 0;
    for (int i = 0; i < n; i++) {
        char path[4096], mpath[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
        snprintf(mpath, sizeof(mpath), "%s/manifest.lua", path);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && stat(mpath, &st) == 0 &&
            cs_plughost_add_plugin(h, path) == 0)
            found++;
        free(list[i]);
    }
    free(list);
    return found;
}

int cs_plughost_start(cs_plughost *h)
{
    pthread_rwlock_rdlock(&h->lock);
    int n = h->n;
    plugin **ps = malloc(sizeof(*ps) * (size_t)(n ? n : 1));
    if (ps)
        memcpy(ps, h->plugins, sizeof(*ps) * (size_t)n);
    pthread_rwlock_unlock(&h->lock);
    if (!ps)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int count = 0;
    for (int i = 0; i < n; i++) {
        plugin *p = ps[i];
        pthread_mutex_lock(&p->life);
        if (atomic_load(&p->state) == ST_NEW)
            start_plugin(p);
        if (running(p))
            count++;
        pthread_mutex_unlock(&p->life);
    }
    free(ps);
    return count;
}

static int coalesced_index(const char *name)
{
    for (int i = 0; i < NCOALESCED; i++)
        if (strcmp(name, coalesced_names[i]) == 0)
            return i;
    return -1;
}

static int subscribed_locked(plugin *p, const char *name)
{
    for (int i = 0; i < p->nsubs; i++)
        if (strcmp(p->subs[i], name) == 0)
            return 1;
    return 0;
}

/* @p probe: when full, refuse (CS_EAGAIN) instead of choking. */
static int post_one(plugin *p, cs_event *ev, int ci, int probe)
{
    cs_plughost *h = p->host;
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (!running(p) || p->stop || !subscribed_locked(p, cs_event_name(ev))) {
        rc = CS_ENOTFOUND;
    } else if (ci >= 0) {
        cs_event_unref(p->dirty[ci]);
        p->dirty[ci] = cs_event_ref(ev);
    } else if (p->choked) {
        p->dropped++;
        p->choke_dropped++;
        rc = CS_EAGAIN;
    } else if (p->ring_len == h->opts.inbox) {
        if (probe) {
            rc = CS_EAGAIN;
        } else {
            p->choked = 1;
            p->dropped++;
            p->choke_dropped++;
            rc = CS_EAGAIN;
        }
    } else {
        p->ring[(p->ring_head + p->ring_len) % h->opts.inbox] = cs_event_ref(ev);
        p->ring_len++;
    }
    if (rc == 0 && p->waiting)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void cs_plughost_post(cs_plughost *h, cs_event *ev)
{
    if (!h || !ev)
        return;
    int ci = coalesced_index(cs_event_name(ev));
    pthread_rwlock_rdlock(&h->lock);
    for (int i = 0; i < h->n; i++)
        post_one(h->plugins[i], ev, ci, 0);
    pthread_rwlock_unlock(&h->lock);
}

int cs_plughost_try_post_to(cs_plughost *h, const char *plugin_name, cs_event *ev)
{
    int ci = coalesced_index(cs_event_name(ev));
    pthread_rwlock_rdlock(&h->lock);
    plugin *p = find_locked(h, plugin_name);
    int rc = p ? post_one(p, ev, ci, 1) : CS_ENOTFOUND;
    pthread_rwlock_unlock(&h->lock);
    return rc;
}

void cs_plughost_bus_fn(void *host, cs_event *ev)
{
    cs_plughost_post(host, ev);
}

void cs_plughost_complete(cs_plughost *h, const char *plugin_name, int64_t req,
                          const json_t *result, const char *error)
{
    if (!h || !plugin_name)
        return;
    pthread_rwlock_rdlock(&h->lock);
    plugin *p = find_locked(h, plugin_name);
    if (p) {
        pthread_mutex_lock(&p->mu);
        if (running(p) && req > p->first_req && req <= atomic_load(&p->next_req)) {
            completion *c = calloc(1, sizeof(*c));
            if (c) {
                c->req = req;
                c->result = result ? json_deep_copy(result) : NULL;
                c->error = error ? strdup(error) : NULL;
                if (p->done_tail)
                    p->done_tail->next = c;
                else
                    p->done_head = c;
                p->done_tail = c;
                if (p->waiting)
                    pthread_cond_signal(&p->cv);
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_rwlock_unlock(&h->lock);
}

int cs_plughost_reload(cs_plughost *h, const char *name)
{
    pthread_rwlock_rdlock(&h->lock);
    plugin *p = find_locked(h, name);
    pthread_rwlock_unlock(&h->lock);
    if (!p)
        return cs_error_set(CS_ENOTFOUND, "no plugin named %s", name);
    pthread_mutex_lock(&p->life);
    int was = atomic_load(&p->state);
    stop_plugin(p, "reload", was == ST_RUNNING);
    atomic_store(&p->state, ST_STOPPED);
    int rc = 0;
    manifest m;
    if (scan_manifest(&m, p->dir, h->opts.manifest_ms) == 0 && strcmp(m.name, p->name) != 0)
        snprintf(m.error, sizeof(m.error), "manifest name changed from %s to %s", p->name, m.name);
    adopt_manifest(p, &m, 0);
    if (p->scan_error[0]) {
        set_last_error(p, "manifest", p->scan_error);
        atomic_store(&p->state, ST_FAILED);
        rc = cs_error_set(CS_EFORMAT, "%s: %s", name, p->scan_error);
    } else if (start_plugin(p) != 0) {
        rc = cs_error_set(CS_EFORMAT, "%s: %s", name, p->last_error);
    } else {
        cs_log(p->log, CS_LOG_INFO, "reloaded");
    }
    pthread_mutex_unlock(&p->life);
    return rc;
}

void cs_plughost_kick(cs_plughost *h)
{
    pthread_rwlock_rdlock(&h->lock);
    for (int i = 0; i < h->n; i++) {
        plugin *p = h->plugins[i];
        pthread_mutex_lock(&p->mu);
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_rwlock_unlock(&h->lock);
}

int cs_plughost_idle(cs_plughost *h, int timeout_ms)
{
    int64_t end = cs_clock_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int64_t now = host_now_ms(h);
        int idle = 1;
        pthread_rwlock_rdlock(&h->lock);
        for (int i = 0; i < h->n && idle; i++) {
            plugin *p = h->plugins[i];
            pthread_mutex_lock(&p->mu);
            idle = plugin_idle_locked(p, now);
            pthread_mutex_unlock(&p->mu);
        }
        pthread_rwlock_unlock(&h->lock);
        if (idle)
            return 0;
        if (cs_clock_ns() > end)
            return cs_error_set(CS_ETIMEDOUT, "plugins still busy after %d ms", timeout_ms);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

json_t *cs_plughost_stats(cs_plughost *h)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    pthread_rwlock_rdlock(&h->lock);
    for (int i = 0; i < h->n; i++) {
        plugin *p = h->plugins[i];
        pthread_mutex_lock(&p->mu);
        json_t *o = json_pack(
            "{s:s, s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:i, s:i, s:b}", "name",
            p->name, "version", p->version, "api", p->api, "dir", p->dir ? p->dir : "", "state",
            state_names[atomic_load(&p->state)], "strikes", (json_int_t)p->strikes, "memory",
            (json_int_t)atomic_load(&p->g.mem), "memory_peak", (json_int_t)atomic_load(&p->g.peak),
            "events", (json_int_t)p->events, "dropped", (json_int_t)p->dropped, "last_error",
            p->last_error, "timers", p->ntimers_stat, "subscriptions", p->nsubs, "choked",
            p->choked);
        pthread_mutex_unlock(&p->mu);
        if (o)
            json_array_append_new(arr, o);
    }
    pthread_rwlock_unlock(&h->lock);
    return arr;
}

int cs_plughost_check_dir(const char *dir, const char *lib_dir, json_t **report)
{
    cs_plughost_opts opts = CS_PLUGHOST_OPTS_INIT;
    opts.lib_dir = lib_dir;
    cs_plughost *h;
    int rc = cs_plughost_new(&h, &opts, NULL);
    if (rc)
        return rc;
    json_t *rep = json_array();
    int failed = 0;
    rc = cs_plughost_add_dir(h, dir);
    if (rc < 0) {
        json_decref(rep);
        cs_plughost_free(h);
        return rc;
    }
    for (int i = 0; i < h->n; i++) {
        plugin *p = h->plugins[i];
        pthread_mutex_lock(&p->life);
        int ok = !p->scan_error[0] && load(p) == 0;
        if (!ok && p->scan_error[0])
            set_last_error(p, "manifest", p->scan_error);
        close_state(p);
        pthread_mutex_unlock(&p->life);
        failed += !ok;
        json_array_append_new(rep, json_pack("{s:s, s:b, s:s}", "name", p->name, "ok", ok, "error",
                                             ok ? "" : p->last_error));
    }
    cs_plughost_free(h);
    if (report)
        *report = rep;
    else
        json_decref(rep);
    return failed;
}
