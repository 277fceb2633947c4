/* The plugin test harness: runs one spec file against the REAL plugin host
 * (same sandbox, limits and threads) wired to a fake core.
 *
 *   harness --plugin plugins/annotations --spec plugins/annotations/tests/x_spec.lua
 *           [--lib plugins/lib] [--handler-ms N]
 *
 * The fake core records commands and emits, answers reads from a snapshot
 * the spec sets (h.snapshot{...}) and keeps a fake clock (h.advance). The
 * spec runs in an ordinary Lua state with a busted-compatible subset
 * (describe/it/before_each/after_each/pending, assert.*). Each `it` gets a
 * fresh host and fake core. Prints "N passed, N failed"; exit status 1 on
 * any failure. The API is documented in plugins/README.md ("Testing"). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cs/bus.h"
#include "cs/err.h"
#include "cs/plughost.h"

#include "plughost_internal.h"

#define IDLE_MS 10000

typedef struct {
    pthread_mutex_t mu;
    json_t *commands; /* [{plugin, req, cmd}] */
    json_t *emits;    /* [{plugin, name, data}] */
    json_t *snapshot; /* {annotations=[...], storage={...}, slides={...}, reads={op: answer}} */
    atomic_llong now;
    int64_t last_req;
    char err[256]; /* valid until the next read (plugin threads serialise on mu) */
} fake;

typedef struct {
    const char *plugin_dir, *lib_dir;
    int handler_ms;
    fake f;
    cs_plughost *host;
    char name[64];
} harness;

/* ---- the fake core ---- */

static int fake_command(void *ud, const char *plugin, int64_t req, const json_t *cmd)
{
    fake *f = ud;
    pthread_mutex_lock(&f->mu);
    json_array_append_new(f->commands, json_pack("{s:s, s:I, s:O}", "plugin", plugin, "req",
                                                 (json_int_t)req, "cmd", cmd));
    f->last_req = req;
    const char *op = json_string_value(json_object_get(cmd, "op"));
    if (op && strcmp(op, "storage.set") == 0) {
        json_t *st = json_object_get(f->snapshot, "storage");
        if (!json_is_object(st)) {
            st = json_object();
            json_object_set_new(f->snapshot, "storage", st);
        }
        const char *key = json_string_value(json_object_get(cmd, "key"));
        json_t *v = json_object_get(cmd, "value");
        if (key && v)
            json_object_set(st, key, v);
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static json_t *find_annotation(fake *f, const char *id)
{
    json_t *list = json_object_get(f->snapshot, "annotations");
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a)
    {
        const char *aid = json_string_value(json_object_get(a, "id"));
        if (aid && id && strcmp(aid, id) == 0)
            return a;
    }
    return NULL;
}

static int in_bbox(json_t *a, json_t *bbox)
{
    if (!json_is_array(bbox) || json_array_size(bbox) != 4)
        return 1;
    double b[4];
    for (int i = 0; i < 4; i++)
        b[i] = json_number_value(json_array_get(bbox, (size_t)i));
    size_t i;
    json_t *pt;
    double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
    json_array_foreach(json_object_get(a, "pts"), i, pt)
    {
        double x = json_number_value(json_array_get(pt, 0));
        double y = json_number_value(json_array_get(pt, 1));
        x0 = x < x0 ? x : x0;
        y0 = y < y0 ? y : y0;
        x1 = x > x1 ? x : x1;
        y1 = y > y1 ? y : y1;
    }
    return !(x1 < b[0] || x0 > b[2] || y1 < b[1] || y0 > b[3]);
}

static json_t *fake_read(void *ud, const char *plugin, const json_t *q, const char **err)
{
    fake *f = ud;
    json_t *out = NULL;
    const char *op = json_string_value(json_object_get(q, "op"));
    pthread_mutex_lock(&f->mu);
    snprintf(f->err, sizeof(f->err), "not found");
    if (!op) {
        snprintf(f->err, sizeof(f->err), "read without op");
    } else if (strcmp(op, "annot.get") == 0) {
        json_t *a = find_annotation(f, json_string_value(json_object_get(q, "id")));
        out = a ? json_deep_copy(a) : NULL;
    } else if (strcmp(op, "annot.measure") == 0) {
        json_t *a = find_annotation(f, json_string_value(json_object_get(q, "id")));
        json_t *m = a ? json_object_get(a, "measure") : NULL;
        out = m ? json_deep_copy(m) : NULL;
    } else if (strcmp(op, "annot.query") == 0) {
        const char *slide = json_string_value(json_object_get(q, "slide"));
        out = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(f->snapshot, "annotations"), i, a)
        {
            const char *s = json_string_value(json_object_get(a, "slide"));
            if (s && slide && strcmp(s, slide) == 0 && in_bbox(a, json_object_get(q, "bbox")))
                json_array_append(out, a);
        }
    } else if (strcmp(op, "storage.get") == 0) {
        json_t *v = json_object_get(json_object_get(f->snapshot, "storage"),
                                    json_string_value(json_object_get(q, "key")));
        out = v ? json_deep_copy(v) : NULL;
    } else if (strcmp(op, "slide.get") == 0) {
        json_t *v = json_object_get(json_object_get(f->snapshot, "slides"),
                                    json_string_value(json_object_get(q, "id")));
        out = v ? json_deep_copy(v) : NULL;
    } else {
        json_t *v = json_object_get(json_object_get(f->snapshot, "reads"), op);
        if (v)
            out = json_deep_copy(v);
        else
            snprintf(f->err, sizeof(f->err), "unknown read op %s", op);
    }
    pthread_mutex_unlock(&f->mu);
    if (!out)
        *err = f->err;
    (void)plugin;
    return out;
}

static void fake_emit(void *ud, const char *plugin, const char *name, const json_t *data)
{
    fake *f = ud;
    pthread_mutex_lock(&f->mu);
    json_array_append_new(f->emits,
                          json_pack("{s:s, s:s, s:O}", "plugin", plugin ? plugin : "", "name", name,
                                    "data", data ? (json_t *)data : json_null()));
    pthread_mutex_unlock(&f->mu);
}

static int64_t fake_now(void *ud)
{
    fake *f = ud;
    return atomic_load(&f->now);
}

/* ---- h.* ---- */

static harness *H(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void need_host(lua_State *L, harness *hs)
{
    if (!hs->host)
        luaL_error(L, "h.*: no host (call inside it/before_each)");
}

static void wait_idle(lua_State *L, harness *hs)
{
    if (cs_plughost_idle(hs->host, IDLE_MS) != 0)
        luaL_error(L, "the plugin did not go idle within %d ms", IDLE_MS);
}

static json_t *arg_json(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return json_object();
    char err[160];
    json_t *j = cs_plughost_to_json(L, idx, err, sizeof(err));
    if (!j)
        luaL_error(L, "cannot convert argument %d to JSON: %s", idx, err);
    return j;
}

static void push_steal(lua_State *L, json_t *j)
{
    cs_plughost_push_json(L, j);
    json_decref(j);
}

static int post(lua_State *L, int wait)
{
    harness *hs = H(L);
    need_host(L, hs);
    const char *name = luaL_checkstring(L, 1);
    const char *topic = "", *origin = "user";
    int64_t seq = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "topic");
        lua_getfield(L, 3, "origin");
        lua_getfield(L, 3, "seq");
        topic = luaL_optstring(L, -3, "");
        origin = luaL_optstring(L, -2, "user");
        seq = (int64_t)luaL_optinteger(L, -1, 0);
    }
    json_t *data = arg_json(L, 2);
    if (!*topic) {
        const char *slide = json_string_value(json_object_get(data, "slide"));
        if (slide) {
            lua_pushfstring(L, "slide:%s", slide);
            topic = lua_tostring(L, -1);
        }
    }
    cs_event *ev = cs_event_new(name, topic, seq, origin, data);
    if (!ev)
        return luaL_error(L, "out of memory");
    cs_plughost_post(hs->host, ev);
    cs_event_unref(ev);
    if (wait)
        wait_idle(L, hs);
    return 0;
}

static int h_emit(lua_State *L)
{
    return post(L, 1);
}

static int h_post(lua_State *L)
{
    return post(L, 0);
}

static int h_advance(lua_State *L)
{
    harness *hs = H(L);
    need_host(L, hs);
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ms >= 0, 1, "time only moves forward");
    /* step so every timer fires at its own time (at most 1000 steps) */
    int64_t target = atomic_load(&hs->f.now) + ms;
    int64_t step = ms > 1000 ? (ms + 999) / 1000 : 1;
    while (atomic_load(&hs->f.now) < target) {
        int64_t n = atomic_load(&hs->f.now) + step;
        atomic_store(&hs->f.now, n < target ? n : target);
        cs_plughost_kick(hs->host);
        wait_idle(L, hs);
    }
    return 0;
}

static int h_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)atomic_load(&H(L)->f.now));
    return 1;
}

static int peek_opt(lua_State *L, int idx)
{
    if (!lua_istable(L, idx))
        return 0;
    lua_getfield(L, idx, "peek");
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* mode 0: commands (cmd tables); 1: requests ({req, plugin, cmd}) */
static int take_commands(lua_State *L, int mode)
{
    harness *hs = H(L);
    int peek = peek_opt(L, 1);
    pthread_mutex_lock(&hs->f.mu);
    json_t *list = hs->f.commands;
    if (!peek)
        hs->f.commands = json_array();
    else
        json_incref(list);
    pthread_mutex_unlock(&hs->f.mu);
    lua_newtable(L);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        cs_plughost_push_json(L, mode == 0 ? json_object_get(c, "cmd") : c);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    json_decref(list);
    return 1;
}

static int h_commands(lua_State *L)
{
    return take_commands(L, 0);
}

static int h_requests(lua_State *L)
{
    return take_commands(L, 1);
}

static int h_last_req(lua_State *L)
{
    harness *hs = H(L);
    pthread_mutex_lock(&hs->f.mu);
    int64_t r = hs->f.last_req;
    pthread_mutex_unlock(&hs->f.mu);
    if (!r)
        return 0;
    lua_pushinteger(L, (lua_Integer)r);
    return 1;
}

static int h_emits(lua_State *L)
{
    harness *hs = H(L);
    int peek = peek_opt(L, 1);
    pthread_mutex_lock(&hs->f.mu);
    json_t *list = hs->f.emits;
    if (!peek)
        hs->f.emits = json_array();
    else
        json_incref(list);
    pthread_mutex_unlock(&hs->f.mu);
    push_steal(L, list);
    return 1;
}

static int h_complete(lua_State *L)
{
    harness *hs = H(L);
    need_host(L, hs);
    lua_Integer req = luaL_checkinteger(L, 1);
    const char *err = luaL_optstring(L, 3, NULL);
    json_t *result = lua_isnoneornil(L, 2) ? NULL : arg_json(L, 2);
    cs_plughost_complete(hs->host, hs->name, (int64_t)req, result, err);
    json_decref(result);
    wait_idle(L, hs);
    return 0;
}

static int h_snapshot(lua_State *L)
{
    harness *hs = H(L);
    if (lua_isnoneornil(L, 1)) {
        pthread_mutex_lock(&hs->f.mu);
        json_t *s = json_deep_copy(hs->f.snapshot);
        pthread_mutex_unlock(&hs->f.mu);
        push_steal(L, s);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    json_t *s = arg_json(L, 1);
    if (!json_is_object(s)) {
        json_decref(s);
        s = json_object();
    }
    pthread_mutex_lock(&hs->f.mu);
    json_decref(hs->f.snapshot);
    hs->f.snapshot = s;
    pthread_mutex_unlock(&hs->f.mu);
    return 0;
}

static int h_stats(lua_State *L)
{
    harness *hs = H(L);
    need_host(L, hs);
    json_t *all = cs_plughost_stats(hs->host);
    cs_plughost_push_json(L, json_array_get(all, 0));
    json_decref(all);
    return 1;
}

static int h_reload(lua_State *L)
{
    harness *hs = H(L);
    need_host(L, hs);
    int rc = cs_plughost_reload(hs->host, hs->name);
    if (rc == 0)
        wait_idle(L, hs);
    lua_pushboolean(L, rc == 0);
    if (rc)
        lua_pushstring(L, cs_error_last());
    return rc ? 2 : 1;
}

static int h_idle(lua_State *L)
{
    harness *hs = H(L);
    need_host(L, hs);
    lua_pushboolean(L, cs_plughost_idle(hs->host, (int)luaL_optinteger(L, 1, IDLE_MS)) == 0);
    return 1;
}

static void fake_reset(fake *f)
{
    pthread_mutex_lock(&f->mu);
    json_decref(f->commands);
    json_decref(f->emits);
    json_decref(f->snapshot);
    f->commands = json_array();
    f->emits = json_array();
    f->snapshot = json_object();
    f->last_req = 0;
    atomic_store(&f->now, 0);
    pthread_mutex_unlock(&f->mu);
}

static int h_start(lua_State *L)
{
    harness *hs = H(L);
    if (hs->host)
        return 0;
    cs_plughost_opts o = CS_PLUGHOST_OPTS_INIT;
    o.lib_dir = hs->lib_dir;
    o.random_seed = 42;
    o.nice = 0;
    if (hs->handler_ms > 0)
        o.handler_ms = hs->handler_ms;
    cs_plughost_core core = {&hs->f, fake_command, fake_read, fake_emit, fake_now};
    if (cs_plughost_new(&hs->host, &o, &core) != 0)
        return luaL_error(L, "cs_plughost_new: %s", cs_error_last());
    if (cs_plughost_add_plugin(hs->host, hs->plugin_dir) != 0)
        return luaL_error(L, "%s: %s", hs->plugin_dir, cs_error_last());
    int n = cs_plughost_start(hs->host);
    json_t *st = cs_plughost_stats(hs->host);
    json_t *p = json_array_get(st, 0);
    snprintf(hs->name, sizeof(hs->name), "%s", json_string_value(json_object_get(p, "name")));
    if (n != 1) {
        lua_pushfstring(L, "plugin %s did not start: %s", hs->name,
                        json_string_value(json_object_get(p, "last_error")));
        json_decref(st);
        return lua_error(L);
    }
    json_decref(st);
    wait_idle(L, hs);
    return 0;
}

static int h_stop(lua_State *L)
{
    harness *hs = H(L);
    cs_plughost_free(hs->host);
    hs->host = NULL;
    return 0;
}

static int h_reset(lua_State *L)
{
    fake_reset(&H(L)->f);
    return 0;
}

static const luaL_Reg h_funcs[] = {
    {"emit", h_emit},
    {"post", h_post},
    {"advance", h_advance},
    {"now", h_now},
    {"commands", h_commands},
    {"requests", h_requests},
    {"last_req", h_last_req},
    {"emits", h_emits},
    {"complete", h_complete},
    {"snapshot", h_snapshot},
    {"stats", h_stats},
    {"reload", h_reload},
    {"idle", h_idle},
    {"_start", h_start},
    {"_stop", h_stop},
    {"_reset", h_reset},
    {NULL, NULL},
};

/* The busted-compatible subset and the runner, in Lua. */
static const char runner_lua[] =
    "local spec_path = ...\n"
    "local tests, stack = {}, {{name = nil, before = {}, after = {}}}\n"
    "local function fullname(n)\n"
    "  local parts = {}\n"
    "  for _, d in ipairs(stack) do if d.name then parts[#parts + 1] = d.name end end\n"
    "  parts[#parts + 1] = n\n"
    "  return table.concat(parts, ' ')\n"
    "end\n"
    "function describe(name, fn)\n"
    "  stack[#stack + 1] = {name = name, before = {}, after = {}}\n"
    "  fn()\n"
    "  stack[#stack] = nil\n"
    "end\n"
    "context = describe\n"
    "function it(name, fn)\n"
    "  local befores, afters = {}, {}\n"
    "  for _, d in ipairs(stack) do\n"
    "    for _, b in ipairs(d.before) do befores[#befores + 1] = b end\n"
    "    for _, a in ipairs(d.after) do table.insert(afters, 1, a) end\n"
    "  end\n"
    "  tests[#tests + 1] = {name = fullname(name), fn = fn, before = befores, after = afters}\n"
    "end\n"
    "function pending(name) tests[#tests + 1] = {name = fullname(name), pending = true} end\n"
    "function before_each(fn) table.insert(stack[#stack].before, fn) end\n"
    "function after_each(fn) table.insert(stack[#stack].after, fn) end\n"
    "local function ser(v, depth)\n"
    "  depth = depth or 0\n"
    "  if type(v) == 'string' then return string.format('%q', v) end\n"
    "  if v == h.null then return 'null' end\n"
    "  if type(v) ~= 'table' then return tostring(v) end\n"
    "  if depth > 6 then return '{...}' end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(keys) do\n"
    "    out[#out + 1] = (type(k) == 'string' and k or '[' .. tostring(k) .. ']') .. '=' ..\n"
    "      ser(v[k], depth + 1)\n"
    "  end\n"
    "  return '{' .. table.concat(out, ', ') .. '}'\n"
    "end\n"
    "local function deep_eq(a, b)\n"
    "  if a == b then return true end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then\n"
    "    if math.type(a) and math.type(b) then return a == b end\n"
    "    return false\n"
    "  end\n"
    "  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local function fail(msg, lvl) error(msg, (lvl or 2) + 1) end\n"
    "local A = {}\n"
    "function A.same(e, a, m) if not deep_eq(e, a) then\n"
    "  fail((m and m .. ': ' or '') .. 'expected ' .. ser(e) .. '\\n  got      ' .. ser(a)) end "
    "end\n"
    "function A.equals(e, a, m) if e ~= a then\n"
    "  fail((m and m .. ': ' or '') .. 'expected ' .. ser(e) .. ' got ' .. ser(a)) end end\n"
    "A.equal = A.equals\n"
    "function A.is_true(v, m) if v ~= true then fail(m or ('expected true, got ' .. ser(v))) end "
    "end\n"
    "function A.is_false(v, m) if v ~= false then fail(m or ('expected false, got ' .. ser(v))) "
    "end end\n"
    "function A.is_nil(v, m) if v ~= nil then fail(m or ('expected nil, got ' .. ser(v))) end end\n"
    "function A.is_not_nil(v, m) if v == nil then fail(m or 'expected a value, got nil') end end\n"
    "A.not_nil = A.is_not_nil\n"
    "function A.truthy(v, m) if not v then fail(m or ('expected truthy, got ' .. ser(v))) end end\n"
    "function A.falsy(v, m) if v then fail(m or ('expected falsy, got ' .. ser(v))) end end\n"
    "A.is_truthy, A.is_falsy = A.truthy, A.falsy\n"
    "function A.has_error(fn, want)\n"
    "  local ok, err = pcall(fn)\n"
    "  if ok then fail('expected an error') end\n"
    "  if want ~= nil and not tostring(err):find(want, 1, true) then\n"
    "    fail('expected error containing ' .. ser(want) .. ', got ' .. ser(err)) end\n"
    "end\n"
    "A.error = A.has_error\n"
    "function A.matches(pat, s, m) if type(s) ~= 'string' or not s:find(pat) then\n"
    "  fail(m or ('expected ' .. ser(s) .. ' to match ' .. ser(pat))) end end\n"
    "A.are, A.is = A, A\n"
    "assert = setmetatable(A, {__call = function(_, v, m, ...)\n"
    "  if not v then error(m or 'assertion failed!', 2) end\n"
    "  return v, m, ...\n"
    "end})\n"
    "local chunk, err = loadfile(spec_path)\n"
    "if not chunk then print('FAIL - loading ' .. spec_path .. ': ' .. err); return 0, 1 end\n"
    "local ok, lerr = pcall(chunk)\n"
    "if not ok then print('FAIL - running ' .. spec_path .. ': ' .. tostring(lerr)); return 0, 1 "
    "end\n"
    "local passed, failed, skipped = 0, 0, 0\n"
    "for _, t in ipairs(tests) do\n"
    "  if t.pending then\n"
    "    skipped = skipped + 1; print('SKIP - ' .. t.name)\n"
    "  else\n"
    "    h._reset()\n"
    "    local ok2, e = xpcall(function()\n"
    "      h._start()\n"
    "      for _, b in ipairs(t.before) do b() end\n"
    "      t.fn()\n"
    "    end, debug.traceback)\n"
    "    for _, a in ipairs(t.after) do\n"
    "      local ok3, e3 = xpcall(a, debug.traceback)\n"
    "      if ok2 and not ok3 then ok2, e = false, e3 end\n"
    "    end\n"
    "    h._stop()\n"
    "    if ok2 then passed = passed + 1; print('ok - ' .. t.name)\n"
    "    else failed = failed + 1; print('FAIL - ' .. t.name .. '\\n  ' .. tostring(e)) end\n"
    "  end\n"
    "end\n"
    "if #tests == 0 then print('FAIL - no tests in ' .. spec_path); failed = 1 end\n"
    "print(string.format('%d passed, %d failed%s', passed, failed,\n"
    "  skipped > 0 and string.format(' (%d pending)', skipped) or ''))\n"
    "return passed, failed\n";

static void usage(void)
{
    fprintf(stderr, "usage: harness --plugin DIR --spec FILE [--lib DIR] [--handler-ms N]\n");
}

int main(int argc, char **argv)
{
    harness hs;
    memset(&hs, 0, sizeof(hs));
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc)
            hs.plugin_dir = argv[++i];
        else if (strcmp(argv[i], "--spec") == 0 && i + 1 < argc)
            spec = argv[++i];
        else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc)
            hs.lib_dir = argv[++i];
        else if (strcmp(argv[i], "--handler-ms") == 0 && i + 1 < argc)
            hs.handler_ms = (int)strtol(argv[++i], NULL, 10);
        else {
            usage();
            return 2;
        }
    }
    if (!hs.plugin_dir || !spec) {
        usage();
        return 2;
    }
    char libguess[4096];
    struct stat st;
    if (!hs.lib_dir) {
        snprintf(libguess, sizeof(libguess), "%s/../lib", hs.plugin_dir);
        if (stat(libguess, &st) == 0 && S_ISDIR(st.st_mode))
            hs.lib_dir = libguess;
    }
    pthread_mutex_init(&hs.f.mu, NULL);
    fake_reset(&hs.f);

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_pushlightuserdata(L, &hs);
    luaL_setfuncs(L, h_funcs, 1);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "h");
    int rc = 1;
    if (luaL_loadbuffer(L, runner_lua, sizeof(runner_lua) - 1, "=harness") != LUA_OK) {
        fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
    } else {
        lua_pushstring(L, spec);
        if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
            fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
            printf("0 passed, 1 failed\n");
        } else {
            rc = lua_tointeger(L, -1) > 0 ? 1 : 0;
        }
    }
    lua_close(L);
    cs_plughost_free(hs.host);
    pthread_mutex_lock(&hs.f.mu);
    json_decref(hs.f.commands);
    json_decref(hs.f.emits);
    json_decref(hs.f.snapshot);
    pthread_mutex_unlock(&hs.f.mu);
    pthread_mutex_destroy(&hs.f.mu);
    return rc;
}
