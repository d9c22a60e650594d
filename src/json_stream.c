/*
** json_stream.c -- the streaming decoder (converse.Decoder).
**
** Bytes are fed in chunks of any size; records come out one by one as soon
** as they are complete. The decoder walks the envelope with a small state
** machine (object keys, the dotted `records` path, the records array) and
** hands each element of the records array to the value parser. A record
** is parsed straight from the buffer; when it is cut by the end of the
** bytes fed so far, a resumable scanner finds where it ends as more bytes
** arrive, and the record is parsed once, complete. Memory: the unconsumed
** bytes (at most about one record plus one chunk) and one scratch buffer.
**
** cv_decoder_feed never raises and never touches a lua_State: it runs
** inside libcurl's write callback. Problems found there are reported by
** the next cv_decoder_next.
*/
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json_internal.h"

#define MAX_PATH     16

enum {
  ST_BEGIN,        /* before the top-level value */
  ST_WHOLE,        /* whole mode: the top-level value is the record */
  ST_KEY_FIRST,    /* after '{': a key or '}' */
  ST_KEY,          /* after ',' in an object: a key */
  ST_COLON,        /* after a key */
  ST_VALUE,        /* after ':' */
  ST_OBJ_NEXT,     /* after a member: ',' or '}' */
  ST_ARR_FIRST,    /* after the records' '[': a record or ']' */
  ST_ARR_ITEM,     /* a record */
  ST_ARR_NEXT,     /* after a record: ',' or ']' */
  ST_TRAILING,     /* after the top-level value */
  ST_DONE
};

enum { FEED_OK, FEED_OOM, FEED_TOO_BIG, FEED_CLOSED };

struct cv_decoder {
  /* options */
  int         max_depth, big_string, whole;
  size_t      max_string, max_record;
  uint64_t    max_body;
  int         npath;                       /* components of `records` */
  char       *path[MAX_PATH];
  size_t      pathlen[MAX_PATH];
  /* input */
  cv_buf      in;                          /* unconsumed bytes: in.p[start, in.len) */
  size_t      start;
  uint64_t    off;                         /* document offset of buf[start] */
  uint64_t    fed;
  int         eof, feed_err, closed;
  /* envelope walk */
  int         state, level;                /* level: object depth on the path; -1 = bare array */
  int         on_path;                     /* levels [0, on_path) matched the path */
  cv_buf      key;                         /* the current member's key (decoded) */
  int         env_ref, env_stale;
  uint64_t    count;
  /* a record (or envelope value) cut by the end of the buffer */
  size_t      scan_pos;                    /* bytes scanned from buf[start], 0 = none */
  int         scan_depth, scan_str, scan_scalar;
  /* parser state kept across records */
  cv_buf      scratch;
  int         obj_hint[CV_HINT_DEPTH], arr_hint[CV_HINT_DEPTH];
  int         keys_ref;                    /* the key cache's Lua half (registry) */
  cv_keycache keys;
};

/* ---- feeding (no Lua) -------------------------------------------------- */

int cv_decoder_feed(cv_decoder *d, const char *p, size_t n) {
  if (d->feed_err != FEED_OK || d->closed) return -1;
  if (d->max_body && d->fed + n > d->max_body) { d->feed_err = FEED_TOO_BIG; return -1; }
  if (d->in.cap - d->in.len < n && d->start > 0) {      /* compact first */
    memmove(d->in.p, d->in.p + d->start, d->in.len - d->start);
    d->in.len -= d->start;
    d->start = 0;
  }
  if (cv_buf_add(&d->in, p, n) != 0) { d->feed_err = FEED_OOM; return -1; }
  d->fed += n;
  return 0;
}

size_t cv_decoder_pending(const cv_decoder *d) { return d->in.len - d->start; }
void cv_decoder_eof(cv_decoder *d) { d->eof = 1; }
uint64_t cv_decoder_count(const cv_decoder *d) { return d->count; }

void cv_decoder_reset(cv_decoder *d) {
  d->start = d->in.len = 0;
  d->off = d->fed = 0;
  d->eof = 0;
  d->feed_err = FEED_OK;
  d->state = ST_BEGIN;
  d->level = d->on_path = 0;
  d->key.len = 0;
  d->count = 0;
  d->scan_pos = 0;
  d->env_stale = 1;
}

/* The transfer feeding this decoder is gone: give its buffers back now
** rather than when the garbage collector gets to the userdata. */
void cv_decoder_trim(cv_decoder *d) {
  cv_buf_free(&d->in);
  cv_buf_free(&d->scratch);
  d->start = 0;
  d->scan_pos = 0;
  d->eof = 1;
  if (d->state != ST_DONE) d->feed_err = FEED_CLOSED;   /* nothing more can be read */
}

/* ---- helpers ----------------------------------------------------------- */

/* A parser over the unconsumed bytes; call with the fixed slots pushed
** (array metatable at mt_idx, key cache at mt_idx + 1; 0 = none). */
static void init_parser(lua_State *L, cv_decoder *d, cv_parser *P, int mt_idx) {
  cv_json_parser_init(P, L, d->in.p + d->start, d->in.len - d->start, d->off, d->eof,
                      d->whole ? 0 : d->level + 1 + (d->state == ST_ARR_ITEM));
  P->max_depth = d->max_depth;
  P->max_string = d->max_string;
  P->big_string = d->big_string;
  P->array_mt = mt_idx;
  if (mt_idx != 0) {
    P->keys_idx = mt_idx + 1;
    P->keys = &d->keys;
  }
  P->scratch = &d->scratch;
  P->obj_hint = d->obj_hint;
  P->arr_hint = d->arr_hint;
}

/* Raise a "json" error at `at` (NULL: the first unconsumed byte). */
static int fail(lua_State *L, cv_decoder *d, const char *at, const char *fmt, ...) {
  cv_parser P;
  va_list ap;
  init_parser(L, d, &P, 0);
  va_start(ap, fmt);
  return cv_json_verror(&P, at ? at : d->in.p + d->start, fmt, ap);
}

static void consume(cv_decoder *d, size_t n) {
  d->start += n;
  d->off += n;
  if (d->start == d->in.len) d->start = d->in.len = 0;
}

/* Skip whitespace; returns the first other byte or -1 when none is buffered. */
static int peek(cv_decoder *d) {
  const char *p = d->in.p + d->start, *e = d->in.p + d->in.len;
  const char *q = cv_json_ws(p, e);
  consume(d, (size_t)(q - p));
  return q < e ? (unsigned char)*q : -1;
}

/* Resume the scan for the end of the value at buf[start]: 1 and *ext = its
** length when complete, 0 when more bytes are needed. Strings are scanned
** with memchr; nothing is validated here (the parser does that). */
static int scan(lua_State *L, cv_decoder *d, size_t *ext) {
  const char *b = d->in.p + d->start;
  size_t n = d->in.len - d->start, i = d->scan_pos;
  if (i == 0) {
    char c = b[0];
    d->scan_scalar = 0;
    if (c == '{' || c == '[') { d->scan_depth = 1; d->scan_str = 0; i = 1; }
    else if (c == '"') { d->scan_depth = 0; d->scan_str = 1; i = 1; }
    else d->scan_scalar = 1;                 /* number or literal */
  }
  if (d->scan_scalar) {
    while (i < n && !strchr(",]} \t\r\n", b[i])) i++;
    if (i == n && !d->eof) { d->scan_pos = i; return 0; }
    *ext = i;
    d->scan_pos = 0;
    return 1;
  }
  while (i < n) {
    if (d->scan_str) {
      const char *q = (const char *)memchr(b + i, '"', n - i);
      size_t k;
      if (q == NULL) {                       /* keep a trailing backslash for later */
        for (k = n; k > i && b[k - 1] == '\\'; k--) {}
        i = ((n - k) & 1) ? n - 1 : n;
        break;
      }
      for (k = (size_t)(q - b); k > i && b[k - 1] == '\\'; k--) {}
      i = (size_t)(q - b) + 1;
      if ((((size_t)(q - b) - k) & 1) == 0) {
        d->scan_str = 0;
        if (d->scan_depth == 0) { *ext = i; d->scan_pos = 0; return 1; }
      }
      continue;
    }
    switch (b[i++]) {
      case '"': d->scan_str = 1; break;
      case '{': case '[':
        if (++d->scan_depth > d->max_depth + 1)
          fail(L, d, b + i - 1, "nesting deeper than max_depth");
        break;
      case '}': case ']':
        if (--d->scan_depth == 0) { *ext = i; d->scan_pos = 0; return 1; }
        break;
      default: break;
    }
  }
  d->scan_pos = i;
  if (d->max_record && i > d->max_record)
    fail(L, d, NULL, "record larger than max_record");
  return 0;
}

/* Parse (skip = 0) or skip the value at buf[start]; pushes it when parsed.
** Returns 1 when done, 0 when more bytes are needed. */
static int take_value(lua_State *L, cv_decoder *d, int skip, int mt_idx) {
  cv_parser P;
  size_t ext;
  const char *p;
  int top = lua_gettop(L);
  if (d->scan_pos == 0 && !skip) {           /* fast path: parse in place */
    init_parser(L, d, &P, mt_idx);
    p = cv_json_value(&P, P.base);
    if (p != NULL) {
      consume(d, (size_t)(p - P.base));
      return 1;
    }
    lua_settop(L, top);                      /* cut short: find its end first */
  }
  if (!scan(L, d, &ext)) {
    if (d->eof) fail(L, d, d->in.p + d->in.len, "unexpected end of input");
    return 0;
  }
  if (d->max_record && ext > d->max_record)
    fail(L, d, NULL, "record larger than max_record");
  if (!skip) {
    init_parser(L, d, &P, mt_idx);
    P.end = P.base + ext;
    P.final = 1;
    p = cv_json_value(&P, P.base);
    if (p != P.end) {
      init_parser(L, d, &P, mt_idx);
      cv_json_error(&P, p, "unexpected data after a value");
    }
  }
  consume(d, ext);
  return 1;
}

/* Decode the member key at buf[start] (a string) into d->key. */
static int take_key(lua_State *L, cv_decoder *d, int mt_idx) {
  size_t n;
  const char *s;
  if (!take_value(L, d, 0, mt_idx)) return 0;
  s = lua_tolstring(L, -1, &n);
  d->key.len = 0;
  if (cv_buf_add(&d->key, s, n) != 0) cv_error_oom(L, "decoding an envelope key");
  lua_pop(L, 1);
  return 1;
}

static int key_is(cv_decoder *d, int level) {
  return level < d->npath && d->key.len == d->pathlen[level]
      && memcmp(d->key.p, d->path[level], d->key.len) == 0;
}

/* The envelope table, (re)created when stale; pushed. */
static void push_env(lua_State *L, cv_decoder *d) {
  if (d->env_stale || d->env_ref == LUA_NOREF || d->env_ref == LUA_REFNIL) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->env_ref);
    lua_newtable(L);
    d->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    d->env_stale = 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->env_ref);
}

/* env[path[0]]...[path[level-1]][key] = value on top (popped). */
static void set_env(lua_State *L, cv_decoder *d) {
  int i;
  push_env(L, d);
  for (i = 0; i < d->level; i++) {
    lua_pushlstring(L, d->path[i], d->pathlen[i]);
    if (cv_rawget(L, -2) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushlstring(L, d->path[i], d->pathlen[i]);
      lua_pushvalue(L, -2);
      lua_rawset(L, -4);
    }
    lua_remove(L, -2);
  }
  lua_pushlstring(L, d->key.p, d->key.len);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

/* After the records array or a nested object closes. */
static void close_container(cv_decoder *d) {
  if (d->level <= 0) d->state = ST_TRAILING;
  else { d->level--; d->state = ST_OBJ_NEXT; }
}

/* ---- the state machine ------------------------------------------------- */

static int step(lua_State *L, cv_decoder *d, int skip, int mt_idx) {
  for (;;) {
    int c;
    if (d->state == ST_DONE) return CV_DEC_DONE;
    if (d->scan_pos == 0) {
      c = peek(d);
      if (c < 0) {
        if (!d->eof) return CV_DEC_MORE;
        if (d->state == ST_TRAILING) { d->state = ST_DONE; return CV_DEC_DONE; }
        if (d->state == ST_BEGIN && d->fed == 0)
          fail(L, d, NULL, "empty document (a JSON value expected)");
        fail(L, d, NULL, "unexpected end of input");
      }
    } else {
      c = (unsigned char)d->in.p[d->start];
    }
    switch (d->state) {
      case ST_BEGIN:
        if (d->whole) { d->state = ST_WHOLE; break; }
        if (c == '[') { consume(d, 1); d->level = -1; d->state = ST_ARR_FIRST; break; }
        if (c == '{' && d->npath > 0) { consume(d, 1); d->level = 0; d->state = ST_KEY_FIRST; break; }
        fail(L, d, NULL, d->npath ? "a JSON object or array expected"
                                  : "a JSON array of records expected");
        break;
      case ST_WHOLE:
        if (!take_value(L, d, skip, mt_idx)) return CV_DEC_MORE;
        d->state = ST_TRAILING;
        d->count++;
        return CV_DEC_RECORD;
      case ST_KEY_FIRST:
        if (c == '}') { consume(d, 1); close_container(d); break; }
        /* fall through */
      case ST_KEY:
        if (c != '"') fail(L, d, NULL, "object key (a string) expected");
        if (!take_key(L, d, mt_idx)) return CV_DEC_MORE;
        d->state = ST_COLON;
        break;
      case ST_COLON:
        if (c != ':') fail(L, d, NULL, "':' expected after an object key");
        consume(d, 1);
        d->state = ST_VALUE;
        break;
      case ST_VALUE:
        if (d->scan_pos == 0 && key_is(d, d->level)) {
          if (d->level == d->npath - 1 && c == '[') {
            consume(d, 1);
            d->state = ST_ARR_FIRST;
            break;
          }
          if (d->level < d->npath - 1 && c == '{') {
            consume(d, 1);
            d->level++;
            d->state = ST_KEY_FIRST;
            break;
          }
          if (d->level == d->npath - 1 && c != 'n')
            fail(L, d, NULL, "the records field '%s' is not an array", d->path[d->level]);
        }
        if (!take_value(L, d, 0, mt_idx)) return CV_DEC_MORE;
        set_env(L, d);
        d->state = ST_OBJ_NEXT;
        break;
      case ST_OBJ_NEXT:
        consume(d, 1);
        if (c == ',') d->state = ST_KEY;
        else if (c == '}') close_container(d);
        else fail(L, d, d->in.p + d->start - 1, "',' or '}' expected in an object");
        break;
      case ST_ARR_FIRST:
        if (c == ']') {
          consume(d, 1);
          if (d->level < 0) d->state = ST_TRAILING; else d->state = ST_OBJ_NEXT;
          break;
        }
        d->state = ST_ARR_ITEM;
        /* fall through */
      case ST_ARR_ITEM:
        if (!take_value(L, d, skip, mt_idx)) return CV_DEC_MORE;
        d->state = ST_ARR_NEXT;
        d->count++;
        return CV_DEC_RECORD;
      case ST_ARR_NEXT:
        consume(d, 1);
        if (c == ',') d->state = ST_ARR_ITEM;
        else if (c == ']') d->state = d->level < 0 ? ST_TRAILING : ST_OBJ_NEXT;
        else fail(L, d, d->in.p + d->start - 1, "',' or ']' expected after a record");
        break;
      case ST_TRAILING:
        fail(L, d, NULL, "unexpected data after the JSON value");
        break;
      default:
        return CV_DEC_DONE;
    }
  }
}

static int next_or_skip(lua_State *L, cv_decoder *d, int skip) {
  int r, mt;
  if (d->closed) return cv_error_raise(L, "usage", "decoder is closed");
  if (d->feed_err == FEED_OOM) cv_error_oom(L, "buffering the body");
  if (d->feed_err == FEED_TOO_BIG) fail(L, d, NULL, "body larger than max_body");
  if (d->feed_err == FEED_CLOSED)
    fail(L, d, NULL, "the transfer was closed before the body was complete");
  luaL_getmetatable(L, CV_ARRAY_MT);
  mt = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->keys_ref);
  r = step(L, d, skip, mt);
  if (r == CV_DEC_RECORD && !skip) { lua_remove(L, mt); lua_remove(L, mt); }
  else lua_settop(L, mt - 1);
  return r;
}

int cv_decoder_next(lua_State *L, cv_decoder *d) { return next_or_skip(L, d, 0); }
int cv_decoder_skip(lua_State *L, cv_decoder *d) { return next_or_skip(L, d, 1); }

void cv_decoder_push_envelope(lua_State *L, cv_decoder *d) { push_env(L, d); }

/* ---- the userdata ------------------------------------------------------ */

cv_decoder *cv_decoder_check(lua_State *L, int idx) {
  return (cv_decoder *)luaL_checkudata(L, idx, CV_DECODER_MT);
}

static cv_decoder *check_open(lua_State *L) {
  cv_decoder *d = cv_decoder_check(L, 1);
  if (d->closed) cv_error_raise(L, "usage", "decoder is closed");
  return d;
}

static void release(cv_decoder *d) {
  int i;
  cv_buf_free(&d->in);
  cv_buf_free(&d->key);
  cv_buf_free(&d->scratch);
  for (i = 0; i < d->npath; i++) free(d->path[i]);
  d->npath = 0;
  d->start = 0;
  d->closed = 1;
}

static lua_Number opt_size(lua_State *L, int idx, const char *k, lua_Number dflt) {
  lua_Number v = dflt;
  if (cv_getfield(L, idx, k) != LUA_TNIL) {
    v = lua_tonumber(L, -1);
    if (!(v >= 0)) cv_error_raise(L, "usage", "%s must be a size in bytes", k);
  }
  lua_pop(L, 1);
  return v;
}

cv_decoder *cv_decoder_new(lua_State *L, int opts) {
  cv_decoder *d;
  const char *records = NULL;
  if (opts != 0 && lua_isnoneornil(L, opts)) opts = 0;
  if (opts != 0) opts = cv_absindex(L, opts);
  d = (cv_decoder *)lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  d->closed = 1;                              /* until fully set up */
  d->env_ref = d->keys_ref = LUA_NOREF;
  luaL_setmetatable(L, CV_DECODER_MT);
  lua_createtable(L, CV_KEY_SLOTS, 0);
  d->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  cv_json_options(L, opts, &d->max_depth, &d->max_string, &d->big_string);
  d->max_record = (size_t)CV_JSON_MAX_STRING;
  if (opts != 0) {
    lua_Number v;
    cv_getfield(L, opts, "whole");
    d->whole = lua_toboolean(L, -1);
    lua_pop(L, 1);
    v = opt_size(L, opts, "max_record", (lua_Number)d->max_record);
    d->max_record = v > 1e18 ? (size_t)-1 : (size_t)v;
    v = opt_size(L, opts, "max_body", 0);
    d->max_body = v > 1e18 ? 0 : (uint64_t)v;
    if (cv_getfield(L, opts, "records") == LUA_TSTRING) records = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) cv_error_raise(L, "usage", "records must be a dotted path string");
  }
  d->closed = 0;
  if (records != NULL) {
    const char *p = records;
    while (*p) {
      const char *dot = strchr(p, '.');
      size_t n = dot ? (size_t)(dot - p) : strlen(p);
      if (n == 0 || d->npath == MAX_PATH)
        cv_error_raise(L, "usage", "bad records path '%s'", records);
      d->path[d->npath] = (char *)malloc(n + 1);
      if (d->path[d->npath] == NULL) cv_error_oom(L, "reading the records path");
      memcpy(d->path[d->npath], p, n);
      d->path[d->npath][n] = '\0';
      d->pathlen[d->npath++] = n;
      p += n + (dot ? 1 : 0);
      if (dot && *p == '\0') cv_error_raise(L, "usage", "bad records path '%s'", records);
    }
  }
  if (opts != 0) lua_pop(L, 1);              /* records */
  cv_decoder_reset(d);
  return d;
}

static int dec_new(lua_State *L) {
  cv_decoder_new(L, lua_isnoneornil(L, 1) ? 0 : 1);
  return 1;
}

static int dec_feed(lua_State *L) {
  cv_decoder *d = check_open(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (d->eof) return cv_error_raise(L, "usage", "feed after finish");
  cv_decoder_feed(d, s, n);                  /* failures surface in next() */
  lua_settop(L, 1);
  return 1;
}

/* d:next() -> record | nil, "more" | nil, "done" */
static int dec_next(lua_State *L) {
  cv_decoder *d = check_open(L);
  int r = cv_decoder_next(L, d);
  if (r == CV_DEC_RECORD) return 1;
  lua_pushnil(L);
  if (r == CV_DEC_MORE) lua_pushliteral(L, "more");
  else lua_pushliteral(L, "done");
  return 2;
}

/* d:skip() -> true | nil, "more" | nil, "done" */
static int dec_skip(lua_State *L) {
  cv_decoder *d = check_open(L);
  int r = cv_decoder_skip(L, d);
  if (r == CV_DEC_RECORD) { lua_pushboolean(L, 1); return 1; }
  lua_pushnil(L);
  if (r == CV_DEC_MORE) lua_pushliteral(L, "more");
  else lua_pushliteral(L, "done");
  return 2;
}

static int dec_finish(lua_State *L) {
  cv_decoder *d = check_open(L);
  cv_decoder_eof(d);
  lua_settop(L, 1);
  return 1;
}

static int dec_envelope(lua_State *L) {
  cv_decoder *d = check_open(L);
  cv_decoder_push_envelope(L, d);
  return 1;
}

static int dec_count(lua_State *L) {
  cv_decoder *d = check_open(L);
#if CV_HAS_INTEGER
  lua_pushinteger(L, (lua_Integer)d->count);
#else
  lua_pushnumber(L, (lua_Number)d->count);
#endif
  return 1;
}

static int dec_pending(lua_State *L) {
  cv_decoder *d = check_open(L);
  lua_pushnumber(L, (lua_Number)cv_decoder_pending(d));
  return 1;
}

static int dec_reset(lua_State *L) {
  cv_decoder *d = check_open(L);
  cv_decoder_reset(d);
  lua_settop(L, 1);
  return 1;
}

static int dec_close(lua_State *L) {
  cv_decoder *d = cv_decoder_check(L, 1);
  if (!d->closed) release(d);
  luaL_unref(L, LUA_REGISTRYINDEX, d->env_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, d->keys_ref);
  d->env_ref = d->keys_ref = LUA_NOREF;
  memset(d->keys.n, 0, sizeof d->keys.n);
  return 0;
}

static int dec_tostring(lua_State *L) {
  cv_decoder *d = cv_decoder_check(L, 1);
  if (d->closed) lua_pushliteral(L, "converse.Decoder (closed)");
  else lua_pushfstring(L, "converse.Decoder (%d records, %d bytes pending)",
                       (int)d->count, (int)cv_decoder_pending(d));
  return 1;
}

static const luaL_Reg dec_methods[] = {
  {"feed",      dec_feed},
  {"next",      dec_next},
  {"skip",      dec_skip},
  {"finish",    dec_finish},
  {"envelope",  dec_envelope},
  {"count",     dec_count},
  {"pending",   dec_pending},
  {"reset",     dec_reset},
  {"close",     dec_close},
  {NULL, NULL}
};

static const luaL_Reg dec_meta[] = {
  {"__gc",       dec_close},
  {"__close",    dec_close},
  {"__tostring", dec_tostring},
  {NULL, NULL}
};

void cv_decoder_open(lua_State *L) {
  cv_class(L, CV_DECODER_MT, dec_meta, dec_methods);
  lua_pushcfunction(L, dec_new);
}
