/*
** json_decode.c -- JSON text -> Lua values (recursive descent), and
** core.json_decode. The parser works on a contiguous byte range that may
** end before the document does (the streaming decoder feeds it whatever
** has arrived): reaching the end then answers "incomplete" (NULL) instead
** of an error, and the caller tries again with more bytes.
**
** Hot paths: strings without escapes are pushed straight from the input
** (plain runs checked 16 bytes at a time with SSE2, else 8); strings with
** escapes copy their plain runs a block at a time; object keys predicted
** by the key cache (json_internal.h) are pushed from it, their duplicate
** check one bit; short plain values of members whose values repeat come
** from the value cache; integers are accumulated 8 digits at a time,
** without strtod; floats use the exact fast path (mantissa <= 2^53 and a
** power of ten <= 22), then x87 extended precision (19 digits, 10^27)
** where the platform has it, strtod last; tables are pre-sized from the
** previous object or array seen at the same depth.
**
** A duplicate key in any object is an error (README "JSON semantics").
** Stack while parsing: the caller's fixed slots (array metatable, key
** cache, value cache), then per open object the table and its cache slot
** table (depths 1..CV_KEY_DEPTHS), then the pending key; per open array
** the table. The recursion is two C frames per level (cv_json_value and
** parse_object or parse_array: about 240 bytes at -O2, 400 under ASan
** with gcc 12), CV_JSON_DEPTH_MAX levels at most.
*/
#include <float.h>
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
  /* cppcheck-suppress va_end_missing ; cv_json_verror never returns */
  return cv_json_verror(P, p, fmt, ap);
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

/* What the one-letter escapes stand for (0: not one). */
static const char SIMPLE_ESCAPE[256] = {
  ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n',
  ['r'] = '\r', ['t'] = '\t'
};

/* The slow path: a string with escapes, decoded into the scratch buffer.
** s0 = first byte after the opening quote, p = the first backslash.
** Each turn of the loop copies the plain run at p a block at a time (each
** block is stored whole, then the output advances only by its plain
** bytes), then decodes the byte that ended it: a UTF-8 sequence (the
** usual case), an escape, or the closing quote. Invariants at the top of
** the loop: [b->p, o) is the decoded text of [s0, p), and there is room
** for a block and a character after o (o <= room). */
CV_JSON_NOINLINE static const char *string_escaped(cv_parser *P, const char *s0,
                                                   const char *p) {
  const char *end = P->end;
  cv_buf *b = P->scratch;
  char *o, *room;
  b->len = 0;
  if (cv_buf_add(b, s0, (size_t)(p - s0)) != 0
      || cv_buf_reserve(b, 4 + CV_BLOCK) != 0) cv_error_oom(P->L, "decoding a string");
  o = b->p + b->len;
  room = b->p + b->cap - (4 + CV_BLOCK);
  for (;;) {
    unsigned char c;
    if (o > room) {
      b->len = (size_t)(o - b->p);
      if (cv_buf_grow(b, 4 + CV_BLOCK) != 0) cv_error_oom(P->L, "decoding a string");
      o = b->p + b->len;
      room = b->p + b->cap - (4 + CV_BLOCK);
    }
    if (end - p >= CV_BLOCK) {
      cv_mask m = cv_plain_mask(p);
      size_t k;
      cv_block_copy(o, p);
      if (m == 0) {
        p += CV_BLOCK;
        o += CV_BLOCK;
        continue;
      }
      k = CV_PLAIN_AT(m, p);
      p += k;
      o += k;
    } else {                                      /* the tail: fewer than CV_BLOCK bytes */
      while (p < end && cv_plain_byte((unsigned char)*p)) *o++ = *p++;
    }
    if ((size_t)(o - b->p) > P->max_string) cv_json_error(P, s0, "string longer than max_string");
    if (p >= end) return CV_MORE(P, p);
    c = (unsigned char)*p;
    if (c >= 0x80) {
      int k = cv_utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return CV_MORE(P, p);
      if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
      if (end - p >= 4) memcpy(o, p, 4);          /* there is room for 4 */
      else memcpy(o, p, (size_t)k);
      o += k;
      p += k;
    } else if (c == '\\') {
      if (p + 1 >= end) return CV_MORE(P, p);
      if (SIMPLE_ESCAPE[(unsigned char)p[1]] != 0) {   /* \n \t \" ...: no call */
        *o++ = SIMPLE_ESCAPE[(unsigned char)p[1]];
        p += 2;
      } else {
        size_t n;
        long cp = cv_json_escape(P, p, &n);
        if (cp < 0) return NULL;
        o += put_utf8(o, (unsigned long)cp);
        p += n;
      }
    } else if (c == '"') {
      break;
    } else {
      cv_json_error(P, p, "control character in string");
    }
  }
  lua_pushlstring(P->L, b->p, (size_t)(o - b->p));
  return p + 1;
}

const char *cv_json_string(cv_parser *P, const char *p) {
  const char *s = p, *end = P->end;
  for (;;) {
    unsigned char c;
    p = cv_json_plain(p, end);
    if (p >= end) return CV_MORE(P, p);
    c = (unsigned char)*p;
    if (c >= 0x80) {
      do {                                        /* a run of other characters */
        int k = cv_utf8_seq((const unsigned char *)p, (size_t)(end - p));
        if (k < 0) return CV_MORE(P, p);
        if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
        p += k;
      } while (p < end && (unsigned char)*p >= 0x80);
      continue;
    }
    if (c == '"') {
      if ((size_t)(p - s) > P->max_string) cv_json_error(P, s, "string longer than max_string");
      lua_pushlstring(P->L, s, (size_t)(p - s));
      return p + 1;
    }
    if (c == '\\') return string_escaped(P, s, p);
    cv_json_error(P, p, "control character in string");
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
  size_t n = (size_t)(e - s);
  if (n >= sizeof tmp) {
    P->scratch->len = 0;
    if (cv_buf_reserve(P->scratch, n + 1) != 0) cv_error_oom(P->L, "decoding a number");
    buf = P->scratch->p;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (dp != '.') {
    size_t i;
    for (i = 0; i < n; i++) if (buf[i] == '.') buf[i] = dp;
  }
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

#if (defined(__x86_64__) || defined(__i386__)) && LDBL_MANT_DIG == 64
/* The x87 extended format: m (up to 2^64) and 10^k (k <= 27) are exact in
** it, so m * 10^k or m / 10^k is one correctly rounded operation to 64
** bits; rounding that to a double again is correct unless the first
** rounding landed exactly halfway between two doubles (its 11 low bits
** 10000000000), where strtod decides instead. Answers 0 then. */
static const long double LPOW10[] = {
  1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L, 1e8L, 1e9L, 1e10L, 1e11L, 1e12L, 1e13L,
  1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L,
  1e26L, 1e27L
};
#define LONG_DOUBLE_PATH 1
static int long_double(const cv_number *n, double *out) {
  long double x = (long double)n->m;
  uint64_t mant;
  x = n->exp10 < 0 ? x / LPOW10[-n->exp10] : x * LPOW10[n->exp10];
  memcpy(&mant, &x, sizeof mant);           /* the 64-bit significand comes first */
  if ((mant & 0x7FF) == 0x400) return 0;
  *out = (double)x;
  return 1;
}
#endif

CV_JSON_NOINLINE static const char *parse_number(cv_parser *P, const char *s) {
  cv_number n;
  const char *p = cv_json_number(P, s, &n);
  double d;
  if (p == NULL) return NULL;
  if (!n.is_float) push_integer(P, s, p, &n);
  else if (!n.overflow && n.m <= 9007199254740992ULL && n.exp10 >= -22 && n.exp10 <= 22) {
    d = (double)n.m;
    d = n.exp10 < 0 ? d / POW10[-n.exp10] : d * POW10[n.exp10];
    lua_pushnumber(P->L, n.neg ? -d : d);
#ifdef LONG_DOUBLE_PATH
  } else if (!n.overflow && n.exp10 >= -27 && n.exp10 <= 27 && long_double(&n, &d)) {
    lua_pushnumber(P->L, n.neg ? -d : d);
#endif
  } else {
    lua_pushnumber(P->L, (lua_Number)slow_double(P, s, p));
  }
  return p;
}

/* ---- the key cache ----------------------------------------------------- */

const cv_head cv_heads[9] = {
  {{0}}, {{0xFF}}, {{0xFF, 0xFF}}, {{0xFF, 0xFF, 0xFF}}, {{0xFF, 0xFF, 0xFF, 0xFF}},
  {{0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}, {{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
  {{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}, {{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}
};

/* UTF-8 lead bytes (json_internal.h): C2..DF two bytes; E0..EF three (E0:
** no overlong form, ED: no UTF-16 surrogate); F0..F4 four (F0: no overlong
** form, F4: nothing above U+10FFFF). */
#define U8_2      { 2, 0x80, 0x3F, 0, 0 }
#define U8_3(lo, hi) { 3, (lo), (hi) - (lo), 0x00C0, 0x0080 }
#define U8_4(lo, hi) { 4, (lo), (hi) - (lo), 0xC0C0, 0x8080 }
const cv_u8lead cv_utf8_lead[256] = {
  [0xC2] = U8_2, [0xC3] = U8_2, [0xC4] = U8_2, [0xC5] = U8_2, [0xC6] = U8_2, [0xC7] = U8_2,
  [0xC8] = U8_2, [0xC9] = U8_2, [0xCA] = U8_2, [0xCB] = U8_2, [0xCC] = U8_2, [0xCD] = U8_2,
  [0xCE] = U8_2, [0xCF] = U8_2, [0xD0] = U8_2, [0xD1] = U8_2, [0xD2] = U8_2, [0xD3] = U8_2,
  [0xD4] = U8_2, [0xD5] = U8_2, [0xD6] = U8_2, [0xD7] = U8_2, [0xD8] = U8_2, [0xD9] = U8_2,
  [0xDA] = U8_2, [0xDB] = U8_2, [0xDC] = U8_2, [0xDD] = U8_2, [0xDE] = U8_2, [0xDF] = U8_2,
  [0xE0] = U8_3(0xA0, 0xBF), [0xE1] = U8_3(0x80, 0xBF), [0xE2] = U8_3(0x80, 0xBF),
  [0xE3] = U8_3(0x80, 0xBF), [0xE4] = U8_3(0x80, 0xBF), [0xE5] = U8_3(0x80, 0xBF),
  [0xE6] = U8_3(0x80, 0xBF), [0xE7] = U8_3(0x80, 0xBF), [0xE8] = U8_3(0x80, 0xBF),
  [0xE9] = U8_3(0x80, 0xBF), [0xEA] = U8_3(0x80, 0xBF), [0xEB] = U8_3(0x80, 0xBF),
  [0xEC] = U8_3(0x80, 0xBF), [0xED] = U8_3(0x80, 0x9F), [0xEE] = U8_3(0x80, 0xBF),
  [0xEF] = U8_3(0x80, 0xBF),
  [0xF0] = U8_4(0x90, 0xBF), [0xF1] = U8_4(0x80, 0xBF), [0xF2] = U8_4(0x80, 0xBF),
  [0xF3] = U8_4(0x80, 0xBF), [0xF4] = U8_4(0x80, 0x8F)
};

/* A new, empty slot s: its table (pushed) and its C half. */
static cv_keyslot *new_slot(cv_parser *P, int s) {
  lua_State *L = P->L;
  cv_keyslot *S;
  lua_createtable(L, 16, 16);
  S = (cv_keyslot *)lua_newuserdatauv(L, sizeof *S, 0);
  S->n = 0;
  S->first = -1;
  S->stale = 0;
  lua_rawseti(L, -2, 0);
  lua_pushvalue(L, -1);
  lua_rawseti(L, P->keys_idx, s + 1);
  P->keys->slot[s] = S;                     /* kept alive by keys[s + 1] */
  return S;
}

void cv_json_keys_begin(cv_parser *P, cv_objkeys *o) {
  cv_keyslot *S;
  int s;
  o->pred = o->last = -1;
  o->misses = o->count = 0;
  o->seen = 0;
  o->S = NULL;
  if (P->keys == NULL || P->depth > CV_KEY_DEPTHS) { o->s = -1; return; }
  s = (P->depth - 1) * CV_KEY_WAYS + (P->way & (CV_KEY_WAYS - 1));
  S = P->keys->slot[s];
  if (S == NULL || S->stale) S = new_slot(P, s);
  else lua_rawgeti(P->L, P->keys_idx, s + 1);
  o->S = S;
  o->s = s;
  o->sidx = lua_gettop(P->L);
  o->pred = S->first;
}

void cv_json_keys_end(cv_parser *P, cv_objkeys *o) {
  (void)P;
  if (o->s >= 0 && o->S->n == CV_KEY_MAX && o->misses * 2 > o->count) o->S->stale = 1;
}

/* Append the decoded key on top of the stack (left there) to slot S, its
** table at sidx; raw/rawn = its text between the quotes. */
static int add_key(cv_parser *P, cv_keyslot *S, int sidx, const char *raw, size_t rawn) {
  lua_State *L = P->L;
  int j = S->n;
  cv_keyref *k = &S->k[j];
  size_t n;
  const char *str = lua_tolstring(L, -1, &n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, sidx, j + 1);
  lua_pushvalue(L, -1);
  lua_pushinteger(L, j);
  lua_rawset(L, sidx);
  if (n != rawn) {                          /* escapes: keep the raw text to compare */
    lua_pushlstring(L, raw, rawn);
    str = lua_tostring(L, -1);
    lua_rawseti(L, sidx, CV_KEY_MAX + j + 1);
  }
  k->p = str;                               /* kept alive by the slot table */
  k->n = (uint32_t)rawn;
  k->next = -1;
  k->vscore = CV_VSCORE_START;
  if (rawn < CV_KEY_INLINE) {
    char w[CV_KEY_INLINE], m[CV_KEY_INLINE];
    memset(w, 0, sizeof w);
    memset(m, 0, sizeof m);
    memcpy(w, raw, rawn);
    w[rawn] = '"';
    memset(m, 0xFF, rawn + 1);
    memcpy(k->w, w, sizeof w);
    memcpy(k->m, m, sizeof m);
  }
  S->n = j + 1;
  return j;
}

int cv_json_key_missed(cv_parser *P, cv_objkeys *o, const char *p, const char *q) {
  lua_State *L = P->L;
  cv_keyslot *S;
  int j = -1;
  if (o->s < 0) return -1;
  S = o->S;
  o->misses++;
  lua_pushvalue(L, -1);
  if (cv_rawget(L, o->sidx) == LUA_TNUMBER) j = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (j >= 0) {
    if ((o->seen >> j) & 1) return 1;
  } else if (S->n < CV_KEY_MAX) {
    j = add_key(P, S, o->sidx, p, (size_t)(q - p - 1));
  }
  if (o->count == 0) S->first = j;          /* learn the shape */
  else if (o->last >= 0) S->k[o->last].next = (int16_t)j;
  o->last = j;
  if (j < 0) { o->pred = -1; return -1; }
  o->pred = S->k[j].next;
  o->seen |= (uint64_t)1 << j;
  return 0;
}

/* ---- the value cache --------------------------------------------------- */

/* Push the value cache's strings table (keys[CV_KEY_VALUES], made when
** missing) and return its C half. keys_idx: the key cache table. */
cv_valcache *cv_json_vals_push(lua_State *L, int keys_idx) {
  cv_valcache *V;
  if (cv_rawgeti(L, keys_idx, CV_KEY_VALUES + 1) == LUA_TUSERDATA) {
    V = (cv_valcache *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, keys_idx, CV_KEY_VALUES);
    return V;
  }
  lua_pop(L, 1);
  V = (cv_valcache *)lua_newuserdatauv(L, sizeof *V, 0);
  memset(V, 0, sizeof *V);
  lua_rawseti(L, keys_idx, CV_KEY_VALUES + 1);
  lua_createtable(L, CV_VAL_ENTRIES, 0);
  lua_pushvalue(L, -1);
  lua_rawseti(L, keys_idx, CV_KEY_VALUES);
  return V;
}

/* Entry of the n bytes at p (readable for 8 bytes at least). */
static unsigned val_hash(const char *p, size_t n) {
  uint64_t a, b = 0;
  memcpy(&a, p, 8);
  if (n < 8) a &= cv_heads[n].u;
  else memcpy(&b, p + n - 8, 8);
  return (unsigned)(((a ^ (b * 31) ^ n) * 0x9E3779B97F4A7C15ULL) >> (64 - CV_VAL_BITS));
}

/* A string value of the member P->vkey, p = after its opening quote.
** A short plain one is pushed from the value cache or put there. */
CV_JSON_NOINLINE static const char *cached_value(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  cv_keyref *k = P->vkey;
  const char *q;
  cv_valref *e;
  size_t n;
  unsigned h;
  if (P->end - p < CV_VAL_MAX + 8) return cv_json_string(P, p);   /* near the end: plain */
  q = cv_json_plain(p, p + CV_VAL_MAX + 1);
  if (*q != '"' || q - p > CV_VAL_MAX) {    /* escapes, UTF-8 or long: not cached */
    k->vscore--;
    return cv_json_string(P, p);
  }
  n = (size_t)(q - p);
  if (n > P->max_string) cv_json_error(P, p, "string longer than max_string");
  h = val_hash(p, n);
  e = &P->vals->v[h];
  if (e->n1 == n + 1 && cv_words_eq(p, e->b, n)) {
    lua_rawgeti(L, P->vals_idx, (int)h + 1);
    if (k->vscore < CV_VSCORE_MAX) k->vscore++;
    return q + 1;
  }
  k->vscore--;
  lua_pushlstring(L, p, n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, P->vals_idx, (int)h + 1);
  memset(e->b, 0, sizeof e->b);
  memcpy(e->b, p, n);
  e->n1 = (uint32_t)n + 1;
  return q + 1;
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

/* A key that is not the predicted one: p = its '"'; decoded, pushed and
** checked. t = the object's stack index, o = what its keys have been so
** far (o->last, o->pred, o->seen and o->count up to date). */
CV_JSON_NOINLINE static const char *key_missed(cv_parser *P, const char *p, int t,
                                               cv_objkeys *o) {
  lua_State *L = P->L;
  const char *q;
  int r;
  if (*p != '"') cv_json_error(P, p, "object key (a string) expected");
  if ((q = cv_json_string(P, p + 1)) == NULL) return NULL;
  r = cv_json_key_missed(P, o, p + 1, q);
  if (r > 0) cv_json_dup_key(P, p);
  if (r < 0) {                              /* not in the cache: the slow check */
    lua_pushvalue(L, -1);
    if (cv_rawget(L, t) != LUA_TNIL) {
      lua_pop(L, 1);
      cv_json_dup_key(P, p);
    }
    lua_pop(L, 1);
  }
  return q;
}

/* The hot loop keeps the key cache state in locals: pred (the key
** predicted next), seen (o.seen), kj (the slot's index of the member's
** key, -1 when the cache does not hold it); o is brought up to date for
** misses. Strings and numbers are dispatched here, not by cv_json_value. */
static const char *parse_object(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int h = P->depth < CV_HINT_DEPTH ? P->depth : CV_HINT_DEPTH - 1, t, pred, count = 0;
  int vals = P->vals != NULL;
  cv_objkeys o;
  cv_json_enter(P, p);
  lua_createtable(L, 0, P->obj_hint[h]);
  t = lua_gettop(L);
  cv_json_keys_begin(P, &o);
  pred = o.pred;
  p = cv_json_ws(p + 1, end);
  if (p >= end) return CV_MORE(P, p);
  if (*p != '}') {
    int kj = -1;
    uint64_t seen = 0;
    for (;;) {
      size_t hit;
      if (pred >= 0 && *p == '"' && (hit = cv_json_key_hit(P, &o.S->k[pred], p + 1)) != 0) {
        kj = pred;                          /* pushed from the cache */
        lua_rawgeti(L, o.sidx, kj + 1);
        if ((seen >> kj) & 1) cv_json_dup_key(P, p);
        seen |= (uint64_t)1 << kj;
        pred = o.S->k[kj].next;
        p += 1 + hit;
      } else {
        o.last = kj;
        o.pred = pred;
        o.seen = seen;
        o.count = count;
        if ((p = key_missed(P, p, t, &o)) == NULL) return NULL;
        pred = o.pred;
        seen = o.seen;
        kj = o.last;
      }
      count++;
      p = cv_json_ws(p, end);
      if (p >= end) return CV_MORE(P, p);
      if (*p != ':') cv_json_error(P, p, "':' expected after an object key");
      p = cv_json_ws(p + 1, end);
      if (p >= end) return CV_MORE(P, p);
      if (kj >= 0) {                        /* a cached key: its slot and its values */
        cv_keyref *k = &o.S->k[kj];
        P->way = kj;
        P->vkey = vals && k->vscore > 0 ? k : NULL;
      } else {
        P->way = count - 1;
        P->vkey = NULL;
      }
      if (*p == '"') p = P->vkey != NULL ? cached_value(P, p + 1) : cv_json_string(P, p + 1);
      else if (CV_IS_DIGIT(*p) || *p == '-') p = parse_number(P, p);
      else p = cv_json_value(P, p);
      if (p == NULL) return NULL;
      lua_rawset(L, t);
      p = cv_json_ws(p, end);
      if (p >= end) return CV_MORE(P, p);
      if (*p == '}') break;
      if (*p != ',') cv_json_error(P, p, "',' or '}' expected in an object");
      p = cv_json_ws(p + 1, end);
      if (p >= end) return CV_MORE(P, p);
    }
    P->obj_hint[h] = count;
  }
  o.count = count;
  cv_json_keys_end(P, &o);
  if (o.s >= 0) lua_pop(L, 1);
  P->depth--;
  return p + 1;
}

/* Elements share the value cache score of the member holding the array. */
static const char *parse_array(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  cv_keyref *vkey = P->vkey;
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
    P->vkey = vkey;
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
    case '"': return P->vkey != NULL ? cached_value(P, p + 1) : cv_json_string(P, p + 1);
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
** Stack: 1 = s, 2 = opts, 3 = scratch box, 4 = array metatable, 5 = key
** cache, 6 = value cache strings (texts of VALUES_FROM bytes or more). */
#define VALUES_FROM ((size_t)64 << 10)
int cv_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *p;
  cv_parser P;
  cv_keycache keys;
  cv_buf *box;
  int max_depth, big_string;
  size_t max_string;
  int obj_hint[CV_HINT_DEPTH] = {0}, arr_hint[CV_HINT_DEPTH] = {0};
  cv_valcache *vals = NULL;
  lua_settop(L, 2);
  cv_json_options(L, 2, &max_depth, &max_string, &big_string);
  box = cv_buf_box(L);                                                 /* 3 */
  luaL_getmetatable(L, CV_ARRAY_MT);                                  /* 4 */
  lua_createtable(L, CV_KEY_SLOTS, 0);                                /* 5 */
  memset(&keys, 0, sizeof keys);
  if (len >= VALUES_FROM) vals = cv_json_vals_push(L, 5);              /* 6 */
  cv_json_parser_init(&P, L, s, len, 0, 1, 0);
  P.max_depth = max_depth;
  P.max_string = max_string;
  P.big_string = big_string;
  P.array_mt = 4;
  P.keys_idx = 5;
  P.keys = &keys;
  P.vals_idx = 6;
  P.vals = vals;
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
