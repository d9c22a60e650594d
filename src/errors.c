/*
** errors.c -- error objects raised by the C core.
** An error object is a table {kind=, message=, ...} whose metatable is the
** registry's CV_ERROR_MT; the Lua layer (converse.errors) fills in
** __tostring and the rest, so C and Lua raise the very same kind of value.
*/
#include <stdarg.h>

#include "cv.h"

void cv_error_push(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "retryable");
  luaL_getmetatable(L, CV_ERROR_MT);
  lua_setmetatable(L, -2);
}

int cv_error_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  cv_error_push(L, kind, lua_tostring(L, -1));
  lua_error(L);
  CV_UNREACHABLE();
}

int cv_push_failure(lua_State *L, const char *kind, const char *msg, int permanent) {
  lua_pushnil(L);
  lua_pushstring(L, kind);
  lua_pushstring(L, msg);
  lua_pushboolean(L, permanent);
  return 4;
}

/* Fallback __tostring until converse.errors installs the full one. */
static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "converse: %s error: %s",
                  luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
  return 1;
}

void cv_errors_open(lua_State *L) {
  if (luaL_newmetatable(L, CV_ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, CV_ARRAY_MT);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}
