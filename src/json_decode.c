/*
** json_decode.c -- JSON text -> Lua values (recursive descent), and
** core.json_decode. The parser works on a contiguous byte range that may
** end before the document does (the streaming decoder feeds it whatever
** has arrived): reaching the end then answers "incomplete" (NULL) instead
** of an error, and the caller tries again with more bytes.
**
** Hot paths: strings without escapes are pushed straight from the input
** (ASCII runs checked 8 bytes at a time); object keys that repeat the key
** sequence of the previous object at the same place are pushed from the
** key cache (json_internal.h) with no duplicate check; integers are
** accumulated without strtod; short floats use the exact fast path
** (mantissa <= 2^53 and a power of ten <= 22); tables are pre-sized from
** the previous object or array seen at the same depth.
**
** A duplicate key in any object is an error (README "JSON semantics").
** Stack while parsing: the caller's fixed slots (array metatable, key
** cache), then per open object its cache slot table (depths 1..
** CV_KEY_DEPTHS) and the table, then the pending key; per open array the
** table. The recursion is one C frame per level (< 200 bytes even under
** ASan), CV_JSON_DEPTH_MAX levels at most.
*/
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_internal.h"

/* ---- errors ------------------------------------------------------------ */

int cv_json_verror(cv_parser *P, const char *p, const char *fmt, va_list ap) {
  lua_State *L = P->L;
  uint64_t off = P->base_off + (uint64_t)(p - P->base);
  char where[48];
  lua_pushvfstring(L, fmt, ap);
  snprintf(where, sizeof where, " at byte offset %llu", (unsigned long long)off);
  lua_pushstring(L, where);
  lua_concat(L, 2);
  cv_error_push(L, "json", lua_tostring(L, -1));
#if CV_HAS_INTEGER
  lua_pushinteger(L, (lua_Integer)off);
#else
  lua_pushnumber(L, (lua_Number)off);
#endif
  lua_setfield(L, -2, "offset");
  return lua_error(L);
}

int cv_json_error(cv_parser *P, const char *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return cv_json_verror(P, p, fmt, ap);      /* never returns: no va_end needed */
}

/* The key is shown up to 60 bytes (cut on a character boundary), control
** characters as '?', so the message stays one printable line. */
int cv_json_dup_key(cv_parser *P, const char *at) {
  size_t n, m, i;
  const char *k = lua_tolstring(P->L, -1, &n);
  char shown[64];
  m = n > 60 ? 60 : n;
  while (m > 0 && m < n && ((unsigned char)k[m] & 0xC0) == 0x80) m--;
  for (i = 0; i < m; i++) shown[i] = (unsigned char)k[i] < 0x20 ? '?' : k[i];
  shown[m] = '\0';
  return cv_json_error(P, at, "duplicate key \"%s%s\"", shown, m < n ? "..." : "");
}

const char *cv_json_unexpected(cv_parser *P, const char *p) {
  char hex[8];
  if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7F)
    cv_json_error(P, p, "unexpected character '%c'", *p);
  snprintf(hex, sizeof hex, "0x%02X", (unsigned)(unsigned char)*p);
  cv_json_error(P, p, "unexpected byte %s", hex);
  return NULL;
}

void cv_json_parser_init(cv_parser *P, lua_State *L, const char *s, size_t n,
                         uint64_t off, int final, int depth) {
  memset(P, 0, sizeof *P);
  P->L = L;
  P->base = s;
  P->end = s + n;
  P->base_off = off;
  P->final = final;
  P->depth = depth;
  P->max_depth = CV_JSON_DEPTH;
  P->max_string = CV_JSON_MAX_STRING;
  P->window = lua_gettop(L) + 1;
  P->spill_at = depth + CV_JSON_WINDOW;
}

/* ---- strings ----------------------------------------------------------- */

/* p = a \uXXXX escape that is half of a surrogate pair, alone. */
static void lone_surrogate(cv_parser *P, const char *p, const char *which) {
  char hex[5];
  memcpy(hex, p + 2, 4);
  hex[4] = '\0';
  cv_json_error(P, p, "lone %s surrogate \\u%s", which, hex);
}

long cv_json_escape(cv_parser *P, const char *p, size_t *len) {
  long cu, lo;
  *len = 2;
  switch (p[1]) {
    case '"':  return '"';
    case '\\': return '\\';
    case '/':  return '/';
    case 'b':  return '\b';
    case 'f':  return '\f';
    case 'n':  return '\n';
    case 'r':  return '\r';
    case 't':  return '\t';
    case 'u':  break;
    default:   cv_json_error(P, p, "invalid escape '\\%c'", p[1]);
  }
  if (P->end - p < 6) {
    if (P->final) cv_json_error(P, p, "unexpected end of input");
    return -2;
  }
  if ((cu = cv_hex4(p + 2)) < 0) cv_json_error(P, p, "invalid \\u escape");
  if (cu >= 0xDC00 && cu <= 0xDFFF) lone_surrogate(P, p, "low");
  *len = 6;
  if (cu < 0xD800 || cu > 0xDBFF) return cu;
  if (P->end - p < 12) {
    if (!P->final) return -2;
    lone_surrogate(P, p, "high");
  }
  lo = (p[6] == '\\' && p[7] == 'u') ? cv_hex4(p + 8) : -1;
  if (lo < 0xDC00 || lo > 0xDFFF) lone_surrogate(P, p, "high");
  *len = 12;
  return 0x10000 + ((cu - 0xD800) << 10) + (lo - 0xDC00);
}

static size_t put_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The slow path: a string with escapes, decoded into the scratch buffer.
** s0 = first byte after the opening quote, p = the first backslash.
** Invariant at the top of the loop: scratch holds the decoded text of
** [s0, s), and [s, p) is plain text not copied yet. */
static const char *string_escaped(cv_parser *P, const char *s0, const char *p) {
  const char *end = P->end, *s = s0;
  cv_buf *b = P->scratch;
  b->len = 0;
  for (;;) {
    unsigned char c = 0;
    while (end - p >= 8 && !cv_special8(p)) p += 8;
    while (p < end && (c = (unsigned char)*p) >= 0x20 && c < 0x80 && c != '"' && c != '\\')
      p++;
    if (cv_buf_add(b, s, (size_t)(p - s)) != 0) cv_error_oom(P->L, "decoding a string");
    if (b->len > P->max_string) cv_json_error(P, s0, "string longer than max_string");
    if (p >= end) return CV_MORE(P, p);
    c = (unsigned char)*p;
    if (c == '"') break;
    if (cv_buf_reserve(b, 4) != 0) cv_error_oom(P->L, "decoding a string");
    if (c == '\\') {
      size_t n;
      long cp;
      if (p + 1 >= end) return CV_MORE(P, p);
      if ((cp = cv_json_escape(P, p, &n)) < 0) return NULL;
      b->len += put_utf8(b->p + b->len, (unsigned long)cp);
      p += n;
    } else if (c < 0x20) {
      cv_json_error(P, p, "control character in string");
    } else {
      int k = cv_utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return CV_MORE(P, p);
      if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
      memcpy(b->p + b->len, p, (size_t)k);
      b->len += (size_t)k;
      p += k;
    }
    if (b->len > P->max_string) cv_json_error(P, s0, "string longer than max_string");
    s = p;
  }
  lua_pushlstring(P->L, b->p, b->len);
  return p + 1;
}

const char *cv_json_string(cv_parser *P, const char *p) {
  const char *s = p, *end = P->end;
  for (;;) {
    unsigned char c;
    while (end - p >= 8 && !cv_special8(p)) p += 8;
    if (p >= end) return CV_MORE(P, p);
    c = (unsigned char)*p;
    if (c == '"') {
      if ((size_t)(p - s) > P->max_string) cv_json_error(P, s, "string longer than max_string");
      lua_pushlstring(P->L, s, (size_t)(p - s));
      return p + 1;
    }
    if (c == '\\') return string_escaped(P, s, p);
    if (c < 0x20) cv_json_error(P, p, "control character in string");
    if (c < 0x80) { p++; continue; }
    {
      int k = cv_utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return CV_MORE(P, p);
      if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
      p += k;
    }
  }
}

/* ---- numbers ----------------------------------------------------------- */

static const double POW10[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* strtod on [s, e), whatever LC_NUMERIC says the decimal point is. */
static double slow_double(cv_parser *P, const char *s, const char *e) {
  char tmp[128], *buf = tmp, dp = localeconv()->decimal_point[0];
  size_t n = (size_t)(e - s), i;
  if (n >= sizeof tmp) {
    P->scratch->len = 0;
    if (cv_buf_reserve(P->scratch, n + 1) != 0) cv_error_oom(P->L, "decoding a number");
    buf = P->scratch->p;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (dp != '.')
    for (i = 0; i < n; i++) if (buf[i] == '.') buf[i] = dp;
  return strtod(buf, NULL);
}

/* An integer literal: exact when it fits, else the nearest float or its text. */
static void push_integer(cv_parser *P, const char *s, const char *e, const cv_number *n) {
  lua_State *L = P->L;
  if (!n->overflow) {
    if (n->m == 0 && n->neg) { lua_pushnumber(L, -0.0); return; }   /* "-0": keep the sign */
#if CV_HAS_INTEGER
    if (!n->neg && n->m <= (uint64_t)INT64_MAX) { lua_pushinteger(L, (lua_Integer)n->m); return; }
    if (n->neg && n->m <= (uint64_t)INT64_MAX + 1) {
      lua_pushinteger(L, (lua_Integer)(0 - n->m));
      return;
    }
#else
    if (n->m <= 9007199254740992ULL) {              /* exact in a double */
      lua_pushnumber(L, n->neg ? -(lua_Number)n->m : (lua_Number)n->m);
      return;
    }
#endif
  }
  if (P->big_string) lua_pushlstring(L, s, (size_t)(e - s));
  else lua_pushnumber(L, (lua_Number)slow_double(P, s, e));
}

static const char *parse_number(cv_parser *P, const char *s) {
  cv_number n;
  const char *p = cv_json_number(P, s, &n);
  if (p == NULL) return NULL;
  if (!n.is_float) push_integer(P, s, p, &n);
  else if (!n.overflow && n.m <= 9007199254740992ULL && n.exp10 >= -22 && n.exp10 <= 22) {
    double d = (double)n.m;
    d = n.exp10 < 0 ? d / POW10[-n.exp10] : d * POW10[n.exp10];
    lua_pushnumber(P->L, n.neg ? -d : d);
  } else {
    lua_pushnumber(P->L, (lua_Number)slow_double(P, s, p));
  }
  return p;
}

/* ---- the key cache ----------------------------------------------------- */

int cv_json_slot_push(cv_parser *P) {
  lua_State *L = P->L;
  int s;
  if (P->keys == NULL || P->depth > CV_KEY_DEPTHS) return -1;
  s = (P->depth - 1) * CV_KEY_WAYS + (P->way & (CV_KEY_WAYS - 1));
  if (cv_rawgeti(L, P->keys_idx, s + 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 16, 0);
    lua_pushvalue(L, -1);
    lua_rawseti(L, P->keys_idx, s + 1);
    P->keys->n[s] = 0;                      /* a new table holds no key yet */
  }
  return s;
}

void cv_json_slot_store(cv_parser *P, int s, int slot_idx, int i, const char *raw,
                        size_t rawn) {
  lua_State *L = P->L;
  const char *k;
  size_t n;
  if (s < 0 || i >= CV_KEY_MAX || P->keys->n[s] != i) return;
  k = lua_tolstring(L, -1, &n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, slot_idx, i + 1);
  if (n != rawn) {                          /* escapes: keep the raw text to compare */
    lua_pushlstring(L, raw, rawn);
    k = lua_tostring(L, -1);
    lua_rawseti(L, slot_idx, CV_KEY_MAX + i + 1);
  }
  P->keys->slot[s].k[i].p = k;              /* kept alive by the slot table */
  P->keys->slot[s].k[i].n = rawn;
  P->keys->n[s] = i + 1;
}

/* ---- the Lua stack window ---------------------------------------------- */

void cv_json_spill(lua_State *L, int from, int keep) {
  int top = lua_gettop(L), m = top - keep - from + 1, i;
  lua_createtable(L, m, 1);
  for (i = 0; i < m; i++) {
    lua_pushvalue(L, from + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushnumber(L, (lua_Number)m);         /* slots may be nil: keep the count */
  lua_setfield(L, -2, "n");
  if (m == 0) {                             /* nothing to move: slide the table in */
    lua_insert(L, from);
    return;
  }
  lua_replace(L, from);
  for (i = 1; i <= keep; i++) {
    lua_pushvalue(L, top - keep + i);
    lua_replace(L, from + i);
  }
  lua_settop(L, from + keep);
}

void cv_json_unspill(lua_State *L, int from) {
  int m, i;
  lua_getfield(L, from, "n");
  m = (int)lua_tonumber(L, -1);
  lua_pop(L, 1);
  for (i = 0; i < m; i++) {                 /* [s1..si, t, kept] -> [s1..si+1, t, kept] */
    lua_rawgeti(L, from + i, i + 1);
    lua_insert(L, from + i);
  }
  lua_remove(L, from + m);
}

/* ---- structures -------------------------------------------------------- */

/* The key of member i at p (its '"'), pushed. t = the object's stack index,
** s its cache slot (table at t - 1) or -1, *seq = keys 0..i-1 were hits. */
static const char *parse_key(cv_parser *P, const char *p, int t, int s, int i, int *seq) {
  lua_State *L = P->L;
  const char *q;
  size_t hit;
  if (*p != '"') cv_json_error(P, p, "object key (a string) expected");
  if (*seq && (hit = cv_json_slot_hit(P, s, i, p + 1)) != 0) {
    lua_rawgeti(L, t - 1, i + 1);           /* distinct from keys 0..i-1: no check */
    return p + 1 + hit;
  }
  if (*seq) { *seq = 0; P->keys->n[s] = i; } /* the cache follows this object now */
  if ((q = cv_json_string(P, p + 1)) == NULL) return NULL;
  lua_pushvalue(L, -1);
  if (cv_rawget(L, t) != LUA_TNIL) {
    lua_pop(L, 1);
    cv_json_dup_key(P, p);
  }
  lua_pop(L, 1);
  cv_json_slot_store(P, s, t - 1, i, p + 1, (size_t)(q - p - 2));
  return q;
}

static const char *parse_object(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int h = P->depth < CV_HINT_DEPTH ? P->depth : CV_HINT_DEPTH - 1, i = 0, t, s, seq;
  cv_json_enter(P, p);
  s = cv_json_slot_push(P);
  seq = s >= 0;
  lua_createtable(L, 0, P->obj_hint[h]);
  t = lua_gettop(L);
  p = cv_json_ws(p + 1, end);
  if (p >= end) return CV_MORE(P, p);
  if (*p != '}') {
    for (;;) {
      if ((p = parse_key(P, p, t, s, i, &seq)) == NULL) return NULL;
      p = cv_json_ws(p, end);
      if (p >= end) return CV_MORE(P, p);
      if (*p != ':') cv_json_error(P, p, "':' expected after an object key");
      p = cv_json_ws(p + 1, end);
      if (p >= end) return CV_MORE(P, p);
      P->way = i++;
      if ((p = cv_json_value(P, p)) == NULL) return NULL;
      lua_rawset(L, t);
      p = cv_json_ws(p, end);
      if (p >= end) return CV_MORE(P, p);
      if (*p == '}') break;
      if (*p != ',') cv_json_error(P, p, "',' or '}' expected in an object");
      p = cv_json_ws(p + 1, end);
      if (p >= end) return CV_MORE(P, p);
    }
    P->obj_hint[h] = i;
  }
  if (s >= 0) lua_remove(L, t - 1);
  P->depth--;
  return p + 1;
}

static const char *parse_array(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int h = P->depth < CV_HINT_DEPTH ? P->depth : CV_HINT_DEPTH - 1, n = 0;
  cv_json_enter(P, p);
  lua_createtable(L, P->arr_hint[h], 0);
  lua_pushvalue(L, P->array_mt);
  lua_setmetatable(L, -2);
  p = cv_json_ws(p + 1, end);
  if (p >= end) return CV_MORE(P, p);
  if (*p == ']') { P->depth--; return p + 1; }
  for (;;) {
    P->way = 0;
    if ((p = cv_json_value(P, p)) == NULL) return NULL;
    lua_rawseti(L, -2, ++n);
    p = cv_json_ws(p, end);
    if (p >= end) return CV_MORE(P, p);
    if (*p == ',') {
      p = cv_json_ws(p + 1, end);
      if (p >= end) return CV_MORE(P, p);
      continue;
    }
    if (*p == ']') break;
    cv_json_error(P, p, "',' or ']' expected in an array");
  }
  P->arr_hint[h] = n;
  P->depth--;
  return p + 1;
}

/* A container at a window boundary: the outer levels' slots move aside. */
static const char *spilled(cv_parser *P, const char *p) {
  int from = P->window;
  cv_json_spill(P->L, from, 0);
  P->window = from + 1;
  P->spill_at += CV_JSON_WINDOW;
  p = *p == '{' ? parse_object(P, p) : parse_array(P, p);
  P->spill_at -= CV_JSON_WINDOW;
  P->window = from;
  if (p != NULL) cv_json_unspill(P->L, from);
  return p;
}

const char *cv_json_value(cv_parser *P, const char *p) {
  switch (*p) {
    case '"': return cv_json_string(P, p + 1);
    case '{': return P->depth < P->spill_at ? parse_object(P, p) : spilled(P, p);
    case '[': return P->depth < P->spill_at ? parse_array(P, p) : spilled(P, p);
    case 't':
      if ((p = cv_json_literal(P, p, "true", 4)) != NULL) lua_pushboolean(P->L, 1);
      return p;
    case 'f':
      if ((p = cv_json_literal(P, p, "false", 5)) != NULL) lua_pushboolean(P->L, 0);
      return p;
    case 'n':
      if ((p = cv_json_literal(P, p, "null", 4)) != NULL) lua_pushlightuserdata(P->L, NULL);
      return p;
    default:
      if (*p == '-' || CV_IS_DIGIT(*p)) return parse_number(P, p);
      return cv_json_unexpected(P, p);
  }
}

/* ---- options and core.json_decode ------------------------------------- */

void cv_json_options(lua_State *L, int idx, int *max_depth, size_t *max_string,
                     int *big_string) {
  *max_depth = CV_JSON_DEPTH;
  *max_string = CV_JSON_MAX_STRING;
  *big_string = !CV_HAS_INTEGER;
  if (idx == 0 || lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx)) cv_error_raise(L, "usage", "JSON options must be a table");
  if (cv_getfield(L, idx, "max_depth") != LUA_TNIL) {
    lua_Number n = lua_tonumber(L, -1);
    if (!(n >= 1 && n <= CV_JSON_DEPTH_MAX) || n != (lua_Number)(int)n)
      cv_error_raise(L, "usage", "max_depth must be an integer 1..%d", CV_JSON_DEPTH_MAX);
    *max_depth = (int)n;
  }
  lua_pop(L, 1);
  if (cv_getfield(L, idx, "max_string") != LUA_TNIL) {
    lua_Number n = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
    if (!(n >= 0)) cv_error_raise(L, "usage", "max_string must be a size in bytes");
    *max_string = n > 1e18 ? (size_t)-1 : (size_t)n;
  }
  lua_pop(L, 1);
  if (cv_getfield(L, idx, "big_integers") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (s != NULL && strcmp(s, "string") == 0) *big_string = 1;
    else if (s != NULL && strcmp(s, "float") == 0) *big_string = 0;
    else cv_error_raise(L, "usage", "big_integers must be \"float\" or \"string\"");
  }
  lua_pop(L, 1);
}

/* core.json_decode(s [, opts]) -> value
** Stack: 1 = s, 2 = opts, 3 = scratch box, 4 = array metatable, 5 = key cache. */
int cv_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *p;
  cv_parser P;
  cv_keycache keys;
  cv_buf *box;
  int max_depth, big_string;
  size_t max_string;
  int obj_hint[CV_HINT_DEPTH] = {0}, arr_hint[CV_HINT_DEPTH] = {0};
  lua_settop(L, 2);
  cv_json_options(L, 2, &max_depth, &max_string, &big_string);
  box = cv_buf_box(L);                                                 /* 3 */
  luaL_getmetatable(L, CV_ARRAY_MT);                                  /* 4 */
  lua_createtable(L, CV_KEY_SLOTS, 0);                                /* 5 */
  memset(keys.n, 0, sizeof keys.n);
  cv_json_parser_init(&P, L, s, len, 0, 1, 0);
  P.max_depth = max_depth;
  P.max_string = max_string;
  P.big_string = big_string;
  P.array_mt = 4;
  P.keys_idx = 5;
  P.keys = &keys;
  P.scratch = box;
  P.obj_hint = obj_hint;
  P.arr_hint = arr_hint;
  p = cv_json_ws(s, P.end);
  if (p >= P.end) return cv_json_error(&P, p, "empty document (a JSON value expected)");
  p = cv_json_value(&P, p);
  p = cv_json_ws(p, P.end);
  if (p < P.end) cv_json_error(&P, p, "unexpected data after the JSON value");
  cv_buf_free(box);
  return 1;
}
