/*
** bench/floor.c -- the physical floor of decoding into Lua tables
** (issue 12): build the very tables a decoder builds, with no parsing.
**
**   local floor = require "bench.floor"          -- build/<abi>/bench/floor.so
**   local tape = floor.tape()
**   tape:add(record)                             -- untimed: remember a decoded record
**   for r in tape:rows() do ... end              -- timed: build them again
**
** A tape holds each record as a flat list of typed values: object (member
** count, then key index and value per member), array (length, elements),
** string (length, bytes), integer, float, true, false, null. Keys are
** interned once, when the tape is made, and kept in a Lua table (an
** upvalue of the iterator): building a record pushes them with
** lua_rawgeti, so the floor pays no hashing or interning for keys. Every
** other value is made the way a decoder must make it: strings with
** lua_pushlstring (short ones hashed and interned by Lua), tables with
** lua_createtable at their final size, arrays with the converse.array
** metatable, null as the light userdata NULL (converse.null). What is left
** is the cost of the Lua values themselves: allocation, interning of the
** values, table stores and the garbage collector.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"

#define TAPE_MT  "converse.bench.Tape"
#define ARRAY_MT "converse.array"       /* src/cv.h CV_ARRAY_MT */

enum { T_OBJ = 'o', T_ARR = 'a', T_STR = 's', T_INT = 'i', T_FLT = 'f', T_TRUE = 't',
       T_FALSE = 'F', T_NULL = 'n' };

typedef struct tape {
  unsigned char *p;
  size_t len, cap;
  size_t rows;
} tape;

static tape *check_tape(lua_State *L, int idx) {
  return (tape *)luaL_checkudata(L, idx, TAPE_MT);
}

static void put(lua_State *L, tape *t, const void *p, size_t n) {
  if (t->cap - t->len < n) {
    size_t cap = t->cap ? t->cap : 1 << 20;
    unsigned char *q;
    while (cap - t->len < n) cap *= 2;
    q = (unsigned char *)realloc(t->p, cap);
    if (q == NULL) luaL_error(L, "out of memory growing the tape");
    t->p = q;
    t->cap = cap;
  }
  memcpy(t->p + t->len, p, n);
  t->len += n;
}

static void put_tag(lua_State *L, tape *t, int tag) {
  unsigned char c = (unsigned char)tag;
  put(L, t, &c, 1);
}

static void put_u32(lua_State *L, tape *t, size_t v) {
  uint32_t u = (uint32_t)v;
  put(L, t, &u, sizeof u);
}

static int is_array(lua_State *L, int idx) {
  int r = 0;
  if (lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, ARRAY_MT);
    r = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  return r;
}

/* The index of the key on top of the stack in the key table (keys at
** kidx: [i] = key, [key] = i), added when new. */
static size_t key_index(lua_State *L, int kidx) {
  size_t i;
  lua_pushvalue(L, -1);
  lua_rawget(L, kidx);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    i = lua_rawlen(L, kidx) + 1;
    lua_pushvalue(L, -1);
    lua_rawseti(L, kidx, (int)i);
    lua_pushvalue(L, -1);
    lua_pushnumber(L, (lua_Number)i);
    lua_rawset(L, kidx);
    return i;
  }
  i = (size_t)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return i;
}

/* Append the value at idx (absolute). */
static void add_value(lua_State *L, tape *t, int idx, int kidx) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_tag(L, t, T_STR);
      put_u32(L, t, n);
      put(L, t, s, n);
      break;
    }
    case LUA_TNUMBER:
#if LUA_VERSION_NUM >= 503
      if (lua_isinteger(L, idx)) {
        int64_t v = (int64_t)lua_tointeger(L, idx);
        put_tag(L, t, T_INT);
        put(L, t, &v, sizeof v);
        break;
      }
#endif
      {
        double d = (double)lua_tonumber(L, idx);
        put_tag(L, t, T_FLT);
        put(L, t, &d, sizeof d);
      }
      break;
    case LUA_TBOOLEAN:
      put_tag(L, t, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
      break;
    case LUA_TLIGHTUSERDATA:
      put_tag(L, t, T_NULL);
      break;
    case LUA_TTABLE:
      luaL_checkstack(L, 4, "tape: too deep");
      if (is_array(L, idx)) {
        size_t n = lua_rawlen(L, idx), i;
        put_tag(L, t, T_ARR);
        put_u32(L, t, n);
        for (i = 1; i <= n; i++) {
          lua_rawgeti(L, idx, (int)i);
          add_value(L, t, lua_gettop(L), kidx);
          lua_pop(L, 1);
        }
      } else {
        size_t n = 0, at;
        put_tag(L, t, T_OBJ);
        at = t->len;
        put_u32(L, t, 0);                       /* patched below */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
          lua_pushvalue(L, -2);
          put_u32(L, t, key_index(L, kidx));
          lua_pop(L, 1);
          add_value(L, t, lua_gettop(L), kidx);
          lua_pop(L, 1);
          n++;
        }
        {
          uint32_t u = (uint32_t)n;
          memcpy(t->p + at, &u, sizeof u);
        }
      }
      break;
    default:
      luaL_error(L, "tape: cannot hold a %s", luaL_typename(L, idx));
  }
}

/* tape:add(value) */
static int tape_add(lua_State *L) {
  tape *t = check_tape(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, TAPE_MT ".keys");   /* 3 */
  lua_pushvalue(L, 1);
  lua_rawget(L, 3);                                      /* 4: this tape's key table */
  add_value(L, t, 2, 4);
  t->rows++;
  return 0;
}

static uint32_t get_u32(const unsigned char **p) {
  uint32_t u;
  memcpy(&u, *p, sizeof u);
  *p += sizeof u;
  return u;
}

/* Build the value at *p and push it. kidx: key table; mt: array metatable. */
static void push_value(lua_State *L, const unsigned char **p, int kidx, int mt) {
  int tag = *(*p)++;
  switch (tag) {
    case T_OBJ: {
      uint32_t n = get_u32(p), i;
      lua_createtable(L, 0, (int)n);
      for (i = 0; i < n; i++) {
        lua_rawgeti(L, kidx, (int)get_u32(p));
        push_value(L, p, kidx, mt);
        lua_rawset(L, -3);
      }
      break;
    }
    case T_ARR: {
      uint32_t n = get_u32(p), i;
      lua_createtable(L, (int)n, 0);
      lua_pushvalue(L, mt);
      lua_setmetatable(L, -2);
      for (i = 1; i <= n; i++) {
        push_value(L, p, kidx, mt);
        lua_rawseti(L, -2, (int)i);
      }
      break;
    }
    case T_STR: {
      uint32_t n = get_u32(p);
      lua_pushlstring(L, (const char *)*p, n);
      *p += n;
      break;
    }
    case T_INT: {
      int64_t v;
      memcpy(&v, *p, sizeof v);
      *p += sizeof v;
#if LUA_VERSION_NUM >= 503
      lua_pushinteger(L, (lua_Integer)v);
#else
      lua_pushnumber(L, (lua_Number)v);
#endif
      break;
    }
    case T_FLT: {
      double d;
      memcpy(&d, *p, sizeof d);
      *p += sizeof d;
      lua_pushnumber(L, (lua_Number)d);
      break;
    }
    case T_TRUE:  lua_pushboolean(L, 1); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    default:      lua_pushlightuserdata(L, NULL); break;
  }
}

/* The iterator: upvalue 1 = its cursor (the tape and a position), 2 = the
** key table, 3 = the array metatable. Nothing but the record is checked
** or made per call: this is the floor. */
typedef struct cursor {
  const tape *t;
  size_t      at;
} cursor;

static int rows_next(lua_State *L) {
  cursor *c = (cursor *)lua_touserdata(L, lua_upvalueindex(1));
  const unsigned char *p = c->t->p + c->at;
  if (c->at >= c->t->len) return 0;
  push_value(L, &p, lua_upvalueindex(2), lua_upvalueindex(3));
  c->at = (size_t)(p - c->t->p);
  return 1;
}

/* tape:rows() -> iterator building each record again (the tape must live
** as long as the iterator: keep a reference to it) */
static int tape_rows(lua_State *L) {
  tape *t = check_tape(L, 1);
  cursor *c;
  lua_settop(L, 1);
  c = (cursor *)lua_newuserdata(L, sizeof *c);           /* 2 */
  c->t = t;
  c->at = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, TAPE_MT ".keys");
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  lua_remove(L, -2);                                       /* 3: key table */
  luaL_getmetatable(L, ARRAY_MT);                          /* 4 */
  if (lua_isnil(L, -1)) return luaL_error(L, "require \"converse\" first (converse.array)");
  lua_pushcclosure(L, rows_next, 3);
  return 1;
}

static int tape_count(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_tape(L, 1)->rows);
  return 1;
}

static int tape_bytes(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_tape(L, 1)->len);
  return 1;
}

static int tape_gc(lua_State *L) {
  tape *t = check_tape(L, 1);
  free(t->p);
  t->p = NULL;
  t->len = t->cap = 0;
  return 0;
}

/* floor.tape() -> an empty tape */
static int tape_new(lua_State *L) {
  tape *t = (tape *)lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  luaL_getmetatable(L, TAPE_MT);
  lua_setmetatable(L, -2);
  lua_getfield(L, LUA_REGISTRYINDEX, TAPE_MT ".keys");
  lua_pushvalue(L, -2);
  lua_newtable(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

int luaopen_bench_floor(lua_State *L);

int luaopen_bench_floor(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"add",   tape_add},
    {"rows",  tape_rows},
    {"count", tape_count},
    {"bytes", tape_bytes},
    {NULL, NULL}
  };
  luaL_newmetatable(L, TAPE_MT);
  lua_pushcfunction(L, tape_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);                           /* tape -> its key table (weak keys) */
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, TAPE_MT ".keys");
  lua_newtable(L);
  lua_pushcfunction(L, tape_new);
  lua_setfield(L, -2, "tape");
  return 1;
}
