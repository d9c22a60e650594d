/*
** converse_core.c -- luaopen_converse_core: registration only.
*/
#include "cv.h"

/* Register a userdata class: metatable `name` with the metamethods `meta`
** and an __index table of `methods`. */
void cv_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

size_t cv_opt_size(lua_State *L, int idx, const char *key, size_t dflt) {
  size_t v = dflt;
  if (cv_getfield(L, idx, key) != LUA_TNIL) {
    lua_Number n = luaL_checknumber(L, -1);
    v = !(n > 0) ? 0 : n >= 1e15 ? (size_t)1e15 : (size_t)n;
  }
  lua_pop(L, 1);
  return v;
}

static int core_error_mt(lua_State *L) {
  luaL_getmetatable(L, CV_ERROR_MT);
  return 1;
}

static int core_array_mt(lua_State *L) {
  luaL_getmetatable(L, CV_ARRAY_MT);
  return 1;
}

/* core.EMPTY: what a transfer's next() answers for a 2xx response whose
** body is empty (no JSON at all), distinct from nil (no more records). */
static char empty_sentinel;                /* only its address matters */

void cv_push_empty(lua_State *L) { lua_pushlightuserdata(L, &empty_sentinel); }

static const luaL_Reg core_funcs[] = {
  {"json_decode",   cv_json_decode},
  {"json_encode",   cv_json_encode},
  {"fingerprint",   cv_fingerprint},
  {"sha256",        cv_sha256},
  {"error_mt",      core_error_mt},
  {"array_mt",      core_array_mt},
  {NULL, NULL}
};

CV_EXPORT int luaopen_converse_core(lua_State *L);

CV_EXPORT int luaopen_converse_core(lua_State *L) {
  cv_errors_open(L);
  cv_buf_open(L);
  lua_newtable(L);
  luaL_setfuncs(L, core_funcs, 0);
  lua_pushliteral(L, CV_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushlightuserdata(L, NULL);          /* same value as cjson.null */
  lua_setfield(L, -2, "null");
  cv_push_empty(L);
  lua_setfield(L, -2, "EMPTY");
  cv_decoder_open(L);                      /* pushes the constructor */
  lua_setfield(L, -2, "decoder");
  cv_transport_open(L);
  lua_setfield(L, -2, "transport");
  cv_http_open(L);                         /* core.http_response, core.http_parse */
  cv_paging_open(L);
  lua_setfield(L, -2, "paging");
  cv_policy_open(L);
  cv_signals_open(L);
  cv_fs_open(L);
  return 1;
}
