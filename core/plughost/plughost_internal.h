/* Private to core/plughost (and the plugin test harness, which links the
 * same code): JSON <-> Lua conversion.
 *
 * JSON null is the light userdata NULL (`cs.null`, as lua-cjson's
 * `cjson.null`) inside arrays; null object members are left out (nil). */
#ifndef CS_PLUGHOST_INTERNAL_H
#define CS_PLUGHOST_INTERNAL_H

#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "cs/common.h"

/** Nesting deeper than this is refused both ways. */
#define CS_PLUGHOST_JSON_DEPTH 64

/** Push @p j as a Lua value (objects -> tables, arrays -> sequences). May
 *  raise a Lua memory error. */
CS_INTERNAL void cs_plughost_push_json(lua_State *L, const json_t *j);

/** The Lua value at @p idx as new JSON. Tables whose keys are exactly 1..n
 *  (n >= 1) become arrays; other tables objects (number keys stringified);
 *  an empty table is {}. NULL on a value JSON cannot hold (function,
 *  userdata, NaN, cycles/too deep), with a message in @p err. */
CS_INTERNAL json_t *cs_plughost_to_json(lua_State *L, int idx, char *err, size_t errlen);

#endif
