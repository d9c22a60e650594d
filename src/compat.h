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
/* Lua 5.1 / LuaJIT 2.1 */
#define lua_rawlen(L, i)          lua_objlen(L, (i))
#define cv_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#define lua_newuserdatauv(L, sz, nuv)  lua_newuserdata(L, (sz))
#else
#define cv_absindex(L, i)         lua_absindex(L, (i))
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
