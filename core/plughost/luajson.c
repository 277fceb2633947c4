/* JSON <-> Lua values for the plugin host and its test harness.
 *
 * Invariants: never raises on bad input when converting to JSON (returns
 * NULL with a message), so a plugin's odd table becomes a `nil, err`, not
 * an error unwinding through C that holds JSON references. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "plughost_internal.h"

static void push_json(lua_State *L, const json_t *j, int depth)
{
    luaL_checkstack(L, 4, "JSON too deep");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        lua_createtable(L, 0, (int)json_object_size(j));
        if (depth >= CS_PLUGHOST_JSON_DEPTH)
            return;
        json_object_foreach((json_t *)j, k, v)
        {
            if (json_is_null(v))
                continue;
            push_json(L, v, depth + 1);
            lua_setfield(L, -2, k);
        }
        return;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, (int)n, 0);
        if (depth >= CS_PLUGHOST_JSON_DEPTH)
            return;
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(j, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        return;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
        return;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        return;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return;
    case JSON_NULL:
    default:
        lua_pushlightuserdata(L, NULL);
        return;
    }
}

void cs_plughost_push_json(lua_State *L, const json_t *j)
{
    if (!j) {
        lua_pushnil(L);
        return;
    }
    push_json(L, j, 0);
}

/* Number of entries if the table's keys are exactly 1..n, else -1. */
static lua_Integer sequence_length(lua_State *L, int idx)
{
    lua_Integer n = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER || !lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max)
            max = k;
        n++;
    }
    return n > 0 && n == max ? n : -1;
}

static json_t *to_json(lua_State *L, int idx, int depth, char *err, size_t errlen)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(err, errlen, "cannot encode a non-finite number");
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        if (!j)
            snprintf(err, errlen, "cannot encode a string that is not UTF-8");
        return j;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return json_null();
        break;
    case LUA_TTABLE: {
        if (depth >= CS_PLUGHOST_JSON_DEPTH) {
            snprintf(err, errlen, "table nested deeper than %d (or a cycle)",
                     CS_PLUGHOST_JSON_DEPTH);
            return NULL;
        }
        if (!lua_checkstack(L, 4)) {
            snprintf(err, errlen, "out of stack");
            return NULL;
        }
        idx = lua_absindex(L, idx);
        lua_Integer n = sequence_length(L, idx);
        if (n > 0) {
            json_t *a = json_array();
            for (lua_Integer i = 1; a && i <= n; i++) {
                lua_rawgeti(L, idx, i);
                json_t *v = to_json(L, -1, depth + 1, err, errlen);
                lua_pop(L, 1);
                if (!v || json_array_append_new(a, v) != 0) {
                    json_decref(a);
                    return NULL;
                }
            }
            return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (o && lua_next(L, idx)) {
            char kbuf[32];
            const char *k;
            if (lua_type(L, -2) == LUA_TSTRING) {
                k = lua_tostring(L, -2);
            } else if (lua_type(L, -2) == LUA_TNUMBER) {
                if (lua_isinteger(L, -2))
                    snprintf(kbuf, sizeof(kbuf), "%lld", (long long)lua_tointeger(L, -2));
                else
                    snprintf(kbuf, sizeof(kbuf), "%.17g", lua_tonumber(L, -2));
                k = kbuf;
            } else {
                snprintf(err, errlen, "cannot encode a %s key", luaL_typename(L, -2));
                lua_pop(L, 2);
                json_decref(o);
                return NULL;
            }
            json_t *v = to_json(L, -1, depth + 1, err, errlen);
            lua_pop(L, 1);
            if (!v || json_object_set_new(o, k, v) != 0) {
                if (v)
                    snprintf(err, errlen, "cannot encode key (not UTF-8?)");
                lua_pop(L, 1);
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    default:
        break;
    }
    snprintf(err, errlen, "cannot encode a %s", luaL_typename(L, idx));
    return NULL;
}

json_t *cs_plughost_to_json(lua_State *L, int idx, char *err, size_t errlen)
{
    return to_json(L, idx, 0, err, errlen);
}
