/*
** compat.h -- the only place where Lua version differences live.
** The rest of the C core is written against the Lua 5.4 API; on Lua 5.1 /
** LuaJIT 2.1 the macros below map that API onto what is available.
*/
#ifndef CV_COMPAT_H
#define CV_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

#if LUA_VERSION_NUM >= 503
#define CV_HAS_INTEGER 1
#else
#define CV_HAS_INTEGER 0
#endif

#if LUA_VERSION_NUM < 502
/* Lua 5.1 / LuaJIT 2.1. LuaJIT has some of the 5.2 auxiliary functions and
** plain 5.1 has none: use our own everywhere, under the 5.2 names. */
#define lua_rawlen(L, i)          lua_objlen(L, (i))
#define cv_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

static inline void cv_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

static inline void cv_compat_setmetatable(lua_State *L, const char *name) {
  luaL_getmetatable(L, name);
  lua_setmetatable(L, -2);
}

#define luaL_setfuncs(L, l, nup)  cv_compat_setfuncs(L, (l), (nup))
#define luaL_setmetatable(L, n)   cv_compat_setmetatable(L, (n))
#else
#define cv_absindex(L, i)         lua_absindex(L, (i))
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, sz, nuv)  lua_newuserdata(L, (sz))
#endif

#if !CV_HAS_INTEGER
/* No integer subtype: every number is a double. */
#define lua_isinteger(L, i)       0
#endif

/* lua_getfield returns the type only from 5.3 on. */
#if LUA_VERSION_NUM >= 503
#define cv_getfield(L, i, k)      lua_getfield(L, (i), (k))
#define cv_rawget(L, i)           lua_rawget(L, (i))
#define cv_rawgeti(L, i, n)       lua_rawgeti(L, (i), (n))
#else
#define cv_getfield(L, i, k)      (lua_getfield(L, (i), (k)), lua_type(L, -1))
#define cv_rawget(L, i)           (lua_rawget(L, (i)), lua_type(L, -1))
#define cv_rawgeti(L, i, n)       (lua_rawgeti(L, (i), (n)), lua_type(L, -1))
#endif

#endif
