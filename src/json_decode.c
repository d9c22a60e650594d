/*
** json_decode.c -- JSON text -> Lua values (recursive descent), and
** core.json_decode. The parser works on a contiguous byte range that may
** end before the document does (the streaming decoder feeds it whatever
** has arrived): reaching the end then answers "incomplete" (NULL) instead
** of an error, and the caller tries again with more bytes.
**
** Hot paths: strings without escapes are pushed straight from the input
** (ASCII runs checked 8 bytes at a time); integers are accumulated without
** strtod; short floats use the exact fast path (mantissa <= 2^53 and a
** power of ten <= 22); tables are pre-sized from the previous object or
** array seen at the same depth.
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

/* Incomplete input: NULL while more may come, an error at the real end. */
#define MORE(P, p) \
  ((P)->final ? (cv_json_error((P), (p), "unexpected end of input"), (const char *)NULL) \
              : (const char *)NULL)

/* ---- strings ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available): >0 valid,
** 0 invalid, -1 cut short by the end of the buffer. */
static int utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  int len;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;               /* no UTF-16 surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;               /* nothing above U+10FFFF */
  } else return 0;
  if (n < 2) return -1;
  if (s[1] < lo || s[1] > hi) return 0;
  if (len >= 3) {
    if (n < 3) return -1;
    if ((s[2] & 0xC0) != 0x80) return 0;
  }
  if (len == 4) {
    if (n < 4) return -1;
    if ((s[3] & 0xC0) != 0x80) return 0;
  }
  return len;
}

/* Does the 8-byte word hold a byte that ends a plain ASCII run:
** '"', '\\', a control character, or a byte >= 0x80? */
static int special8(const char *p) {
  uint64_t x, q, b;
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  memcpy(&x, p, 8);
  q = x ^ (ones * '"');
  b = x ^ (ones * '\\');
  return (((x - ones * 0x20) | (q - ones) | (b - ones) | x) & high) != 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at p -> code unit, or -1. */
static long hex4(const char *p) {
  int a = hexval((unsigned char)p[0]), b = hexval((unsigned char)p[1]);
  int c = hexval((unsigned char)p[2]), d = hexval((unsigned char)p[3]);
  if ((a | b | c | d) < 0) return -1;
  return (long)((a << 12) | (b << 8) | (c << 4) | d);
}

/* p = a \uXXXX escape that is half of a surrogate pair, alone. */
static void lone_surrogate(cv_parser *P, const char *p, const char *which) {
  char hex[5];
  memcpy(hex, p + 2, 4);
  hex[4] = '\0';
  cv_json_error(P, p, "lone %s surrogate \\u%s", which, hex);
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
** s = first byte after the opening quote, p = the first backslash. */
static const char *string_escaped(cv_parser *P, const char *s, const char *p) {
  const char *end = P->end;
  cv_buf *b = P->scratch;
  b->len = 0;
  if (cv_buf_add(b, s, (size_t)(p - s)) != 0) cv_error_oom(P->L, "decoding a string");
  for (;;) {
    unsigned char c;
    char *o;
    if (cv_buf_reserve(b, 4) != 0) cv_error_oom(P->L, "decoding a string");
    o = b->p + b->len;                      /* room for the 4 bytes one step writes */
    if (p >= end) return MORE(P, p);
    c = (unsigned char)*p;
    if (c == '"') break;
    if (c == '\\') {
      if (p + 1 >= end) return MORE(P, p);
      switch (p[1]) {
        case '"':  *o = '"'; break;
        case '\\': *o = '\\'; break;
        case '/':  *o = '/'; break;
        case 'b':  *o = '\b'; break;
        case 'f':  *o = '\f'; break;
        case 'n':  *o = '\n'; break;
        case 'r':  *o = '\r'; break;
        case 't':  *o = '\t'; break;
        case 'u': {
          long cu, lo;
          if (end - p < 6) return MORE(P, p);
          cu = hex4(p + 2);
          if (cu < 0) cv_json_error(P, p, "invalid \\u escape");
          if (cu >= 0xDC00 && cu <= 0xDFFF)
            lone_surrogate(P, p, "low");
          if (cu >= 0xD800 && cu <= 0xDBFF) {
            if (end - p < 12) {
              if (!P->final) return NULL;
              lone_surrogate(P, p, "high");
            }
            lo = (p[6] == '\\' && p[7] == 'u') ? hex4(p + 8) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
              lone_surrogate(P, p, "high");
            cu = 0x10000 + ((cu - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
          b->len += put_utf8(o, (unsigned long)cu);
          p += 6;
          continue;
        }
        default:
          cv_json_error(P, p, "invalid escape '\\%c'", p[1]);
      }
      b->len++;
      p += 2;
    } else if (c < 0x20) {
      cv_json_error(P, p, "control character in string");
    } else if (c < 0x80) {
      *o = (char)c;
      b->len++;
      p++;
    } else {
      int k = utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return MORE(P, p);
      if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
      memcpy(o, p, (size_t)k);
      b->len += (size_t)k;
      p += k;
    }
    if (b->len > P->max_string) cv_json_error(P, s, "string longer than max_string");
  }
  lua_pushlstring(P->L, b->p, b->len);
  return p + 1;
}

/* p = first byte after the opening quote. */
static const char *parse_string(cv_parser *P, const char *p) {
  const char *s = p, *end = P->end;
  for (;;) {
    unsigned char c;
    while (end - p >= 8 && !special8(p)) p += 8;
    if (p >= end) return MORE(P, p);
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
      int k = utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return MORE(P, p);
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
  double d;
  if (n >= sizeof tmp) {
    P->scratch->len = 0;
    if (cv_buf_reserve(P->scratch, n + 1) != 0) cv_error_oom(P->L, "decoding a number");
    buf = P->scratch->p;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (dp != '.')
    for (i = 0; i < n; i++) if (buf[i] == '.') buf[i] = dp;
  d = strtod(buf, NULL);
  return d;
}

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

static const char *parse_number(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *s = p, *end = P->end;
  uint64_t m = 0;
  int neg = 0, is_float = 0, overflow = 0, exp10 = 0;
  if (*p == '-') {
    neg = 1;
    if (++p >= end) return MORE(P, p);
  }
  if (*p == '0') {
    p++;
    if (p < end && IS_DIGIT(*p)) cv_json_error(P, s, "number with a leading zero");
  } else if (IS_DIGIT(*p)) {
    do {
      unsigned d = (unsigned)(*p - '0');
      if (m < 1844674407370955161ULL || (m == 1844674407370955161ULL && d <= 5))
        m = m * 10 + d;
      else
        overflow = 1;
      p++;
    } while (p < end && IS_DIGIT(*p));
  } else {
    cv_json_error(P, s, "invalid number");
  }
  if (p < end && *p == '.') {
    is_float = 1;
    if (++p >= end) return MORE(P, p);
    if (!IS_DIGIT(*p)) cv_json_error(P, p, "digit expected after '.'");
    do {
      if (m < 100000000000000000ULL) { m = m * 10 + (unsigned)(*p - '0'); exp10--; }
      else overflow = 1;
      p++;
    } while (p < end && IS_DIGIT(*p));
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    int eneg = 0, ev = 0;
    is_float = 1;
    if (++p >= end) return MORE(P, p);
    if (*p == '+' || *p == '-') {
      eneg = *p == '-';
      if (++p >= end) return MORE(P, p);
    }
    if (!IS_DIGIT(*p)) cv_json_error(P, p, "digit expected in exponent");
    do {
      if (ev < 100000) ev = ev * 10 + (*p - '0');
      p++;
    } while (p < end && IS_DIGIT(*p));
    exp10 += eneg ? -ev : ev;
  }
  if (p >= end && !P->final) return NULL;       /* more digits may follow */
  if (!is_float && !overflow) {
    if (m == 0 && neg) {                        /* "-0": keep the sign */
      lua_pushnumber(L, -0.0);
      return p;
    }
#if CV_HAS_INTEGER
    if (!neg && m <= (uint64_t)INT64_MAX) { lua_pushinteger(L, (lua_Integer)m); return p; }
    if (neg && m <= (uint64_t)INT64_MAX + 1) {
      lua_pushinteger(L, (lua_Integer)(0 - m));
      return p;
    }
#else
    if (m <= 9007199254740992ULL) {             /* exact in a double */
      lua_pushnumber(L, neg ? -(lua_Number)m : (lua_Number)m);
      return p;
    }
#endif
    overflow = 1;
  }
  if (!is_float) {                              /* integer outside the exact range */
    if (P->big_string) lua_pushlstring(L, s, (size_t)(p - s));
    else lua_pushnumber(L, (lua_Number)slow_double(P, s, p));
    return p;
  }
  if (!overflow && m <= 9007199254740992ULL && exp10 >= -22 && exp10 <= 22) {
    double d = (double)m;
    d = exp10 < 0 ? d / POW10[-exp10] : d * POW10[exp10];
    lua_pushnumber(L, neg ? -d : d);
    return p;
  }
  lua_pushnumber(L, (lua_Number)slow_double(P, s, p));
  return p;
}

/* ---- structures -------------------------------------------------------- */

static const char *literal(cv_parser *P, const char *p, const char *word, size_t n) {
  size_t have = (size_t)(P->end - p);
  if (memcmp(p, word, have < n ? have : n) != 0) cv_json_error(P, p, "invalid literal");
  if (have < n) return MORE(P, p);
  return p + n;
}

static void enter(cv_parser *P, const char *p) {
  if (++P->depth > P->max_depth)
    cv_json_error(P, p, "nesting deeper than max_depth (%d)", P->max_depth);
  if (!lua_checkstack(P->L, 4)) cv_json_error(P, p, "Lua stack exhausted");
}

static const char *parse_object(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int d = P->depth < CV_HINT_DEPTH ? P->depth : CV_HINT_DEPTH - 1, n = 0;
  enter(P, p);
  lua_createtable(L, 0, P->obj_hint[d]);
  p = cv_json_ws(p + 1, end);
  if (p >= end) return MORE(P, p);
  if (*p == '}') { P->depth--; return p + 1; }
  for (;;) {
    if (*p != '"') cv_json_error(P, p, "object key (a string) expected");
    if ((p = parse_string(P, p + 1)) == NULL) return NULL;
    p = cv_json_ws(p, end);
    if (p >= end) return MORE(P, p);
    if (*p != ':') cv_json_error(P, p, "':' expected after an object key");
    p = cv_json_ws(p + 1, end);
    if (p >= end) return MORE(P, p);
    if ((p = cv_json_value(P, p)) == NULL) return NULL;
    lua_rawset(L, -3);
    n++;
    p = cv_json_ws(p, end);
    if (p >= end) return MORE(P, p);
    if (*p == ',') {
      p = cv_json_ws(p + 1, end);
      if (p >= end) return MORE(P, p);
      continue;
    }
    if (*p == '}') break;
    cv_json_error(P, p, "',' or '}' expected in an object");
  }
  P->obj_hint[d] = n;
  P->depth--;
  return p + 1;
}

static const char *parse_array(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int d = P->depth < CV_HINT_DEPTH ? P->depth : CV_HINT_DEPTH - 1, n = 0;
  enter(P, p);
  lua_createtable(L, P->arr_hint[d], 0);
  lua_pushvalue(L, P->array_mt);
  lua_setmetatable(L, -2);
  p = cv_json_ws(p + 1, end);
  if (p >= end) return MORE(P, p);
  if (*p == ']') { P->depth--; return p + 1; }
  for (;;) {
    if ((p = cv_json_value(P, p)) == NULL) return NULL;
    lua_rawseti(L, -2, ++n);
    p = cv_json_ws(p, end);
    if (p >= end) return MORE(P, p);
    if (*p == ',') {
      p = cv_json_ws(p + 1, end);
      if (p >= end) return MORE(P, p);
      continue;
    }
    if (*p == ']') break;
    cv_json_error(P, p, "',' or ']' expected in an array");
  }
  P->arr_hint[d] = n;
  P->depth--;
  return p + 1;
}

const char *cv_json_value(cv_parser *P, const char *p) {
  switch (*p) {
    case '"': return parse_string(P, p + 1);
    case '{': return parse_object(P, p);
    case '[': return parse_array(P, p);
    case 't':
      if ((p = literal(P, p, "true", 4)) != NULL) lua_pushboolean(P->L, 1);
      return p;
    case 'f':
      if ((p = literal(P, p, "false", 5)) != NULL) lua_pushboolean(P->L, 0);
      return p;
    case 'n':
      if ((p = literal(P, p, "null", 4)) != NULL) lua_pushlightuserdata(P->L, NULL);
      return p;
    default:
      if (*p == '-' || IS_DIGIT(*p)) return parse_number(P, p);
      if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7F)
        return (cv_json_error(P, p, "unexpected character '%c'", *p), (const char *)NULL);
      {
        char hex[8];
        snprintf(hex, sizeof hex, "0x%02X", (unsigned)(unsigned char)*p);
        return (cv_json_error(P, p, "unexpected byte %s", hex), (const char *)NULL);
      }
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
    if (!(n >= 1 && n <= CV_JSON_DEPTH_MAX))
      cv_error_raise(L, "usage", "max_depth must be 1..%d", CV_JSON_DEPTH_MAX);
    *max_depth = (int)n;
  }
  lua_pop(L, 1);
  if (cv_getfield(L, idx, "max_string") != LUA_TNIL) {
    lua_Number n = lua_tonumber(L, -1);
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

/* core.json_decode(s [, opts]) -> value */
int cv_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *p;
  cv_parser P;
  cv_buf *box;
  int obj_hint[CV_HINT_DEPTH] = {0}, arr_hint[CV_HINT_DEPTH] = {0};
  lua_settop(L, 2);
  memset(&P, 0, sizeof P);
  cv_json_options(L, 2, &P.max_depth, &P.max_string, &P.big_string);
  box = cv_buf_box(L);                                                 /* 3 */
  luaL_getmetatable(L, CV_ARRAY_MT);                                  /* 4 */
  P.L = L;
  P.base = s;
  P.end = s + len;
  P.final = 1;
  P.array_mt = 4;
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
