/*
** json_encode.c -- Lua value -> JSON text.
**
** Output goes into a growable buffer owned by a boxed userdata (slot 3 of
** the encoder's stack frame), so an error raised half-way (NaN, a function,
** a sparse table ...) leaves nothing to free by hand: the box is collected.
**
** Stack while encoding: 1 = value, 2 = options, 3 = buffer box,
** 4 = array metatable, then one or two slots per level of nesting; every
** CV_JSON_WINDOW levels the outer slots move into a table and come back on
** the way out (cv_json_spill), so 10000 levels fit LuaJIT's 8000 slots.
** The recursion is three C frames per level, CV_JSON_DEPTH_MAX at most.
**
** Numbers read back as what they were: integers with every digit, floats
** in the shortest form that round-trips. Without an integer subtype (5.1,
** 5.2, LuaJIT) an integral double prints as an integer only within
** +-2^53, where every integer is exact and the decoder reads a number back;
** beyond, the float form (1.152921504606847e+18, 9007199254740994.0), which
** the decoder also reads back as a number rather than as a big-integer
** string.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_internal.h"

#define ARRAY_MT_SLOT     4

typedef struct cv_encoder {
  lua_State *L;
  cv_buf    *b;                 /* boxed: slot 3 */
  int        max_depth;
  int        sort_keys;
  int        window;            /* first stack slot of the current window */
} cv_encoder;

/* ---- buffer ------------------------------------------------------------ */

static void grow(cv_encoder *e, size_t need) {
  if (cv_buf_reserve(e->b, need) != 0) cv_error_oom(e->L, "encoding JSON");
}

static void put(cv_encoder *e, const char *s, size_t n) {
  if (e->b->cap - e->b->len < n) grow(e, n);
  memcpy(e->b->p + e->b->len, s, n);
  e->b->len += n;
}

#define putc_(e, c) \
  do { if ((e)->b->len == (e)->b->cap) grow((e), 1); \
       (e)->b->p[(e)->b->len++] = (char)(c); } while (0)
#define putlit(e, s)  put((e), "" s, sizeof(s) - 1)

/* ---- scalars ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned lo = (c == 0xE0) ? 0xA0 : 0x80, hi = (c == 0xED) ? 0x9F : 0xBF;
    return (n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned lo = (c == 0xF0) ? 0x90 : 0x80, hi = (c == 0xF4) ? 0x8F : 0xBF;
    return (n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80
            && (s[3] & 0xC0) == 0x80) ? 4 : 0;
  }
  return 0;
}

static void put_string(cv_encoder *e, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, run = 0;
  if (e->b->cap - e->b->len < n + 2) grow(e, n + 2);
  putc_(e, '"');
  while (i < n) {
    unsigned c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) { i++; continue; }
    if (c >= 0x80) {
      size_t k = utf8_len(s + i, n - i);
      if (k == 0)
        cv_error_raise(e->L, "json", "cannot encode string: invalid UTF-8 at byte %d",
                       (int)i + 1);
      i += k;
      continue;
    }
    put(e, str + run, i - run);
    switch (c) {
      case '"':  putlit(e, "\\\""); break;
      case '\\': putlit(e, "\\\\"); break;
      case '\n': putlit(e, "\\n"); break;
      case '\r': putlit(e, "\\r"); break;
      case '\t': putlit(e, "\\t"); break;
      case '\b': putlit(e, "\\b"); break;
      case '\f': putlit(e, "\\f"); break;
      default: {
        char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
        put(e, u, 6);
      }
    }
    run = ++i;
  }
  put(e, str + run, n - run);
  putc_(e, '"');
}

/* Shortest "%.Ng" text that reads back as exactly d. */
static int format_double(char *out, size_t size, double d) {
  int n = 0, prec;
  for (prec = 15; prec <= 17; prec++) {
    n = snprintf(out, size, "%.*g", prec, d);
    if (strtod(out, NULL) == d) break;
  }
  /* strtod/snprintf follow LC_NUMERIC: JSON wants '.' whatever the locale */
  for (prec = 0; prec < n; prec++)
    if (out[prec] == ',') out[prec] = '.';
  return n;
}

static void put_number(cv_encoder *e, int idx) {
  char tmp[64];
  int n;
#if CV_HAS_INTEGER
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
    put(e, tmp, (size_t)n);
    return;
  }
#endif
  {
    double d = (double)lua_tonumber(e->L, idx);
    if (isnan(d) || isinf(d))
      cv_error_raise(e->L, "json", "cannot encode %s: JSON has no NaN or Infinity",
                     isnan(d) ? "NaN" : "infinity");
#if !CV_HAS_INTEGER
    /* No integer subtype: integral values within 2^53 print as integers. */
    if (floor(d) == d && fabs(d) <= 9007199254740992.0) {
      n = snprintf(tmp, sizeof tmp, "%.0f", d);
      put(e, tmp, (size_t)n);
      return;
    }
#endif
    n = format_double(tmp, sizeof tmp, d);
    /* keep floats floats: 1.0 must not come back as the integer 1, nor
    ** 2^53 + 2 as a big-integer string where there is no integer subtype */
    if (strpbrk(tmp, ".eEn") == NULL) { tmp[n++] = '.'; tmp[n++] = '0'; }
    put(e, tmp, (size_t)n);
  }
}

/* ---- tables ------------------------------------------------------------ */

static void encode_value(cv_encoder *e, int idx, int depth);

/* Classify the table at idx: returns the array length, or -1 for an object.
** Raises on keys that fit neither (mixed, sparse, non-string). */
static lua_Integer classify(cv_encoder *e, int idx, int marked) {
  lua_State *L = e->L;
  lua_Integer max = 0, count = 0;
  int strings = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      strings++;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number k = lua_tonumber(L, -1);
      if (k < 1 || floor(k) != k || k > 9007199254740992.0) {
        cv_error_raise(L, "json", "cannot encode table: key %s is not a string "
                       "or array index", lua_tostring(L, -1));
      }
      count++;
      if ((lua_Integer)k > max) max = (lua_Integer)k;
    } else {
      cv_error_raise(L, "json", "cannot encode table: key of type %s",
                     luaL_typename(L, -1));
    }
    if (strings && count)
      cv_error_raise(L, "json", "cannot encode table with mixed array and object keys");
  }
  if (marked && strings)
    cv_error_raise(L, "json", "cannot encode array: it has string keys");
  if (strings || (count == 0 && !marked)) return -1;
  if (max != count)
    cv_error_raise(L, "json", "cannot encode sparse array (%d items, largest index %d)",
                   (int)count, (int)max);
  return count;
}

static void encode_array(cv_encoder *e, int idx, lua_Integer n, int depth) {
  lua_Integer i;
  putc_(e, '[');
  for (i = 1; i <= n; i++) {
    if (i > 1) putc_(e, ',');
    lua_rawgeti(e->L, idx, (int)i);
    encode_value(e, lua_gettop(e->L), depth);
    lua_pop(e->L, 1);
  }
  putc_(e, ']');
}

typedef struct cv_key { const char *p; size_t n; } cv_key;

static int key_cmp(const void *a, const void *b) {
  const cv_key *x = (const cv_key *)a, *y = (const cv_key *)b;
  int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void encode_object(cv_encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  putc_(e, '{');
  if (!e->sort_keys) {
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t kn;
      const char *k = lua_tolstring(L, -2, &kn);   /* keys are strings here */
      if (!first) putc_(e, ',');
      first = 0;
      put_string(e, k, kn);
      putc_(e, ':');
      encode_value(e, lua_gettop(L), depth);
      lua_pop(L, 1);
    }
  } else {
    /* Key pointers stay valid: the table keeps the strings alive. The array
    ** is a userdata so an error while encoding a value frees it. */
    size_t n = 0, i = 0;
    cv_key *keys;
    lua_pushnil(L);
    while (lua_next(L, idx)) { lua_pop(L, 1); n++; }
    keys = (cv_key *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      keys[i].p = lua_tolstring(L, -1, &keys[i].n);
      i++;
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    for (i = 0; i < n; i++) {
      if (i) putc_(e, ',');
      put_string(e, keys[i].p, keys[i].n);
      lua_pushlstring(L, keys[i].p, keys[i].n);
      putc_(e, ':');
      lua_rawget(L, idx);
      encode_value(e, lua_gettop(L), depth);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  putc_(e, '}');
}

static void encode_container(cv_encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  int marked = 0;
  lua_Integer n;
  if (lua_getmetatable(L, idx)) {
    marked = lua_rawequal(L, -1, ARRAY_MT_SLOT);
    lua_pop(L, 1);
  }
  n = classify(e, idx, marked);
  if (n >= 0) encode_array(e, idx, n, depth + 1);
  else encode_object(e, idx, depth + 1);
}

/* The table at idx (the top of the stack below the root). */
static void encode_table(cv_encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  int from = e->window;
  if (depth >= e->max_depth)
    cv_error_raise(L, "json", "cannot encode: nesting deeper than %d (or a cycle)",
                   e->max_depth);
  if (!lua_checkstack(L, 8))
    cv_error_raise(L, "json", "cannot encode: Lua stack exhausted");
  if (depth == 0 || depth % CV_JSON_WINDOW != 0) {
    encode_container(e, idx, depth);
    return;
  }
  cv_json_spill(L, from, 1);                /* the table stays on top, at from + 1 */
  e->window = from + 1;
  encode_container(e, from + 1, depth);
  e->window = from;
  cv_json_unspill(L, from);
}

static void encode_value(cv_encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:     putlit(e, "null"); break;
    case LUA_TBOOLEAN: if (lua_toboolean(L, idx)) putlit(e, "true");
                       else putlit(e, "false");
                       break;
    case LUA_TNUMBER:  put_number(e, idx); break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_string(e, s, n);
      break;
    }
    case LUA_TTABLE:   encode_table(e, idx, depth); break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) { putlit(e, "null"); break; }
      /* fall through */
    default:
      cv_error_raise(L, "json", "cannot encode a value of type %s", luaL_typename(L, idx));
  }
}

/* core.json_encode(value [, opts]) -> string */
int cv_json_encode(lua_State *L) {
  cv_encoder e;
  cv_buf *b;
  lua_settop(L, 2);
  e.L = L;
  e.max_depth = CV_JSON_DEPTH;
  e.sort_keys = 0;
  e.window = 5;
  if (!lua_isnil(L, 2)) {
    if (!lua_istable(L, 2)) cv_error_raise(L, "usage", "JSON options must be a table");
    if (cv_getfield(L, 2, "max_depth") != LUA_TNIL) {
      lua_Number n = lua_tonumber(L, -1);
      if (!(n >= 1 && n <= CV_JSON_DEPTH_MAX) || n != (lua_Number)(int)n)
        cv_error_raise(L, "usage", "max_depth must be an integer 1..%d", CV_JSON_DEPTH_MAX);
      e.max_depth = (int)n;
    }
    if (cv_getfield(L, 2, "sort_keys") != LUA_TNIL)
      e.sort_keys = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  b = cv_buf_box(L);                                     /* slot 3 */
  luaL_getmetatable(L, CV_ARRAY_MT);                     /* slot 4 */
  e.b = b;
  encode_value(&e, 1, 0);
  lua_pushlstring(L, b->p, b->len);
  cv_buf_free(b);
  return 1;
}
