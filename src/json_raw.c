/*
** json_raw.c -- raw mode of the streaming decoder: each record's exact
** JSON text as a Lua string, validated exactly as json_decode.c validates
** (grammar, UTF-8, escapes, surrogates, numbers, max_depth, max_string,
** duplicate keys), with the whitespace outside strings removed. Strings
** and numbers are copied byte for byte: no re-escaping, no reformatting.
** No table is built.
**
** The copy is lazy: P->run is the first input byte not yet in P->out.
** Whitespace ends a run (appended to out; the next run starts after it).
** A value with no whitespace at all is pushed straight from the input.
** Invariant: every append is non-empty, so out->len == 0 at the end iff
** nothing was appended.
**
** Duplicate keys: keys the key cache holds are checked by its bit set
** (json_internal.h); the others go into a Lua table of such keys, made at
** the first of them. Stack per open object: its cache slot table (depths
** 1 .. CV_KEY_DEPTHS), then that set (nil until needed). Arrays hold no slot.
*/
#include "json_internal.h"

static const char *raw_value(cv_parser *P, const char *p);

/* Append the run [P->run, p) to the output. */
static void flush(cv_parser *P, const char *p) {
  if (cv_buf_add(P->out, P->run, (size_t)(p - P->run)) != 0)
    cv_error_oom(P->L, "copying a raw record");
}

/* Skip the whitespace at p, leaving it out of the copy. */
static const char *raw_ws(cv_parser *P, const char *p) {
  const char *q = cv_json_ws(p, P->end);
  if (q != p) {
    flush(P, p);
    P->run = q;
  }
  return q;
}

static size_t utf8_len(long cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* A string value at p (after its quote): checked as cv_json_string checks
** it, nothing decoded. Its decoded length is (p - s) - shrink; like
** string_escaped, once the string has a backslash it is checked before
** each special byte and after it, so both modes fail the same way. */
static const char *raw_string(cv_parser *P, const char *p) {
  const char *s = p, *end = P->end;
  size_t shrink = 0;                        /* what the escapes lose when decoded */
  int escaped = 0;
  for (;;) {
    unsigned char c;
    p = cv_json_plain(p, end);
    escaped |= p < end && *p == '\\';
    if (escaped && (size_t)(p - s) - shrink > P->max_string)
      cv_json_error(P, s, "string longer than max_string");
    if (p >= end) return CV_MORE(P, p);
    c = (unsigned char)*p;
    if (c == '"') break;
    if (c == '\\') {
      size_t n;
      long cp;
      if (p + 1 >= end) return CV_MORE(P, p);
      if ((cp = cv_json_escape(P, p, &n)) < 0) return NULL;
      shrink += n - utf8_len(cp);
      p += n;
    } else if (c < 0x20) {
      cv_json_error(P, p, "control character in string");
    } else {
      int k = cv_utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (k < 0) return CV_MORE(P, p);
      if (k == 0) cv_json_error(P, p, "invalid UTF-8 in string");
      p += k;
    }
    if (escaped && (size_t)(p - s) - shrink > P->max_string)
      cv_json_error(P, s, "string longer than max_string");
  }
  if ((size_t)(p - s) - shrink > P->max_string) cv_json_error(P, s, "string longer than max_string");
  return p + 1;
}

/* The key at p (its '"'); set = the stack index of the set of the
** object's keys that the cache does not hold (nil until needed), o = what
** its keys have been so far (json_internal.h, the key cache). */
static const char *raw_key(cv_parser *P, const char *p, int set, cv_objkeys *o) {
  lua_State *L = P->L;
  const char *q;
  size_t hit;
  int r;
  if (*p != '"') cv_json_error(P, p, "object key (a string) expected");
  if (o->pred >= 0 && (hit = cv_json_key_hit(P, &o->S->k[o->pred], p + 1)) != 0) {
    int j = o->pred;
    if ((o->seen >> j) & 1) {
      lua_rawgeti(L, o->sidx, j + 1);
      cv_json_dup_key(P, p);
    }
    o->seen |= (uint64_t)1 << j;
    o->last = j;
    o->pred = o->S->k[j].next;
    o->count++;
    return p + 1 + hit;
  }
  if ((q = cv_json_string(P, p + 1)) == NULL) return NULL;
  r = cv_json_key_missed(P, o, p + 1, q);
  o->count++;
  if (r > 0) cv_json_dup_key(P, p);
  if (r < 0) {                              /* not in the cache: the set */
    if (lua_isnil(L, set)) {
      lua_newtable(L);
      lua_replace(L, set);
    }
    lua_pushvalue(L, -1);
    if (cv_rawget(L, set) != LUA_TNIL) {
      lua_pop(L, 1);
      cv_json_dup_key(P, p);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, set);
  }
  lua_pop(L, 1);
  return q;
}

static const char *raw_object(cv_parser *P, const char *p) {
  lua_State *L = P->L;
  const char *end = P->end;
  int set;
  cv_objkeys o;
  cv_json_enter(P, p);
  cv_json_keys_begin(P, &o);
  lua_pushnil(L);
  set = lua_gettop(L);
  p = raw_ws(P, p + 1);
  if (p >= end) return CV_MORE(P, p);
  if (*p != '}') {
    for (;;) {
      if ((p = raw_key(P, p, set, &o)) == NULL) return NULL;
      p = raw_ws(P, p);
      if (p >= end) return CV_MORE(P, p);
      if (*p != ':') cv_json_error(P, p, "':' expected after an object key");
      p = raw_ws(P, p + 1);
      if (p >= end) return CV_MORE(P, p);
      P->way = o.last >= 0 ? o.last : o.count - 1;
      if ((p = raw_value(P, p)) == NULL) return NULL;
      p = raw_ws(P, p);
      if (p >= end) return CV_MORE(P, p);
      if (*p == '}') break;
      if (*p != ',') cv_json_error(P, p, "',' or '}' expected in an object");
      p = raw_ws(P, p + 1);
      if (p >= end) return CV_MORE(P, p);
    }
  }
  cv_json_keys_end(P, &o);
  lua_settop(L, set - 1 - (o.s >= 0));
  P->depth--;
  return p + 1;
}

static const char *raw_array(cv_parser *P, const char *p) {
  const char *end = P->end;
  cv_json_enter(P, p);
  p = raw_ws(P, p + 1);
  if (p >= end) return CV_MORE(P, p);
  if (*p != ']') {
    for (;;) {
      P->way = 0;
      if ((p = raw_value(P, p)) == NULL) return NULL;
      p = raw_ws(P, p);
      if (p >= end) return CV_MORE(P, p);
      if (*p == ']') break;
      if (*p != ',') cv_json_error(P, p, "',' or ']' expected in an array");
      p = raw_ws(P, p + 1);
      if (p >= end) return CV_MORE(P, p);
    }
  }
  P->depth--;
  return p + 1;
}

/* A container at a window boundary (see cv_json_spill). */
static const char *raw_spilled(cv_parser *P, const char *p) {
  int from = P->window;
  cv_json_spill(P->L, from, 0);
  P->window = from + 1;
  P->spill_at += CV_JSON_WINDOW;
  p = *p == '{' ? raw_object(P, p) : raw_array(P, p);
  P->spill_at -= CV_JSON_WINDOW;
  P->window = from;
  if (p != NULL) cv_json_unspill(P->L, from);
  return p;
}

static const char *raw_value(cv_parser *P, const char *p) {
  cv_number n;
  switch (*p) {
    case '"': return raw_string(P, p + 1);
    case '{': return P->depth < P->spill_at ? raw_object(P, p) : raw_spilled(P, p);
    case '[': return P->depth < P->spill_at ? raw_array(P, p) : raw_spilled(P, p);
    case 't': return cv_json_literal(P, p, "true", 4);
    case 'f': return cv_json_literal(P, p, "false", 5);
    case 'n': return cv_json_literal(P, p, "null", 4);
    default:
      if (*p == '-' || CV_IS_DIGIT(*p)) return cv_json_number(P, p, &n);
      return cv_json_unexpected(P, p);
  }
}

const char *cv_json_raw(cv_parser *P, const char *p) {
  const char *q;
  P->out->len = 0;
  P->run = p;
  if ((q = raw_value(P, p)) == NULL) return NULL;
  if (P->out->len == 0) {                   /* no whitespace: the input as it is */
    lua_pushlstring(P->L, p, (size_t)(q - p));
  } else {
    flush(P, q);
    lua_pushlstring(P->L, P->out->p, P->out->len);
  }
  return q;
}
