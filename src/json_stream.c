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
** A string fed from Lua (d:feed) is not copied: it is read in place (the
** decoder holds a reference to it) while the buffer is empty. Only what a
** cut record needs moves into the buffer: the start of the string, a
** piece at a time, while a record cut at the end of the last one is
** completed; the string's own cut end, when it runs out.
**
** cv_decoder_feed never raises and never touches a lua_State: it runs
** inside libcurl's write callback. Problems found there are reported by
** the next cv_decoder_next.
**
** Invariants:
** - the unconsumed bytes are in.p[start, in.len), then ext[ext_pos,
**   ext_len) when a fed string is held (ext != NULL); an empty buffer has
**   start = in.len = 0 and in.p may be NULL;
** - the view, the bytes being read, is the buffer's unconsumed bytes, or
**   when there are none, the held string's: pointers come from
**   in_begin()/in_end() only; `off` is the document offset of the view's
**   first byte; the end of the view is the end of the document iff
**   at_eof();
** - scan_pos > 0 iff the value at the view's start was scanned that far and
**   is not complete yet (the scanner's state is scan_*);
** - env_bytes counts the bytes consumed outside the records array and
**   never exceeds max_envelope; records never exceed max_record, and the
**   scanner stops at the limit instead of reading on;
** - bit i of path_seen: the object at level i had its key path[i]; with
**   the envelope table it makes every duplicate key an error.
*/
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json_internal.h"

#define MAX_PATH     16
#define MAX_ENVELOPE ((size_t)1 << 20)
#define KEY_HOLD     (CV_KEY_VALUES + 2)   /* keys[]: the fed string read in place */
#ifndef CV_BORROW_MIN                      /* (the fuzzers build with 1: everything is held) */
#define CV_BORROW_MIN 512                  /* shorter strings fed are copied */
#endif
#ifndef CV_PIECE_MIN
#define CV_PIECE_MIN  4096                 /* bytes of a held string copied at a time */
#endif

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
enum { TAKE_SKIP, TAKE_TABLE, TAKE_RAW };  /* what take_value does with a value */

struct cv_decoder {
  /* options */
  int         max_depth, big_string, whole, raw;
  size_t      max_string, max_record, max_envelope;
  uint64_t    max_body;
  int         npath;                       /* components of `records` */
  char       *path[MAX_PATH];
  size_t      pathlen[MAX_PATH];
  /* input */
  cv_buf      in;                          /* unconsumed bytes: in.p[start, in.len) */
  size_t      start;
  uint64_t    off;                         /* document offset of the view's first byte */
  uint64_t    fed;
  int         eof, feed_err, closed;
  const char *ext;                         /* a fed string read in place (kept by keys[KEY_HOLD]) */
  size_t      ext_len, ext_pos;
  size_t      lent;                        /* the buffer ends with ext[ext_pos - lent, ext_pos) */
  int         held;                        /* keys[KEY_HOLD] is set */
  /* envelope walk */
  int         state, level;                /* level: object depth on the path; -1 = bare array */
  cv_buf      key;                         /* the current member's key (decoded) */
  unsigned    path_seen;
  uint64_t    env_bytes;
  int         env_ref, env_stale;
  uint64_t    count;
  /* a record (or envelope value) cut by the end of the buffer */
  size_t      scan_pos;                    /* bytes of the view scanned, 0 = none */
  int         scan_depth, scan_str, scan_scalar;
  /* parser state kept across records */
  cv_buf      scratch;
  cv_buf      out;                         /* raw mode: the record's text */
  int         obj_hint[CV_HINT_DEPTH], arr_hint[CV_HINT_DEPTH];
  int         keys_ref;                    /* the key cache's Lua half (registry) */
  cv_keycache keys;
  cv_valcache *vals;                       /* the value cache (table mode), kept by keys_ref */
};

/* ---- the input buffer (no Lua) ----------------------------------------- */

static const char EMPTY[1] = "";

/* Is the view the held string? (The buffer is empty.) */
static int on_ext(const cv_decoder *d) { return d->ext != NULL && d->start == d->in.len; }

static const char *in_begin(const cv_decoder *d) {
  if (on_ext(d)) return d->ext + d->ext_pos;
  return d->in.p ? d->in.p + d->start : EMPTY;
}
static const char *in_end(const cv_decoder *d) {
  if (on_ext(d)) return d->ext + d->ext_len;
  return d->in.p ? d->in.p + d->in.len : EMPTY;
}
static size_t in_avail(const cv_decoder *d) { return (size_t)(in_end(d) - in_begin(d)); }
/* Is the end of the view the end of the document? (Nothing follows it.) */
static int at_eof(const cv_decoder *d) {
  return d->eof && (d->ext == NULL || on_ext(d) || d->ext_pos == d->ext_len);
}

/* Append n bytes to the buffer. Compact first when out of room, or when
** what is left to read is no more than what was read (then it moves at
** most as many bytes as the decoder consumed since the last move: O(1) a
** byte, and usually only the cut record, moved when the decoder asks for
** more). */
static int in_append(cv_decoder *d, const char *p, size_t n) {
  if (d->start > 0 && (d->in.cap - d->in.len < n || d->in.len - d->start <= d->start)) {
    memmove(d->in.p, d->in.p + d->start, d->in.len - d->start);
    d->in.len -= d->start;
    d->start = 0;
  }
  return cv_buf_add(&d->in, p, n);
}

/* The held string's unread bytes move to the buffer; it is let go. */
static int spill(cv_decoder *d) {
  size_t left = d->ext != NULL ? d->ext_len - d->ext_pos : 0;
  const char *p = d->ext;
  d->ext = NULL;
  d->lent = 0;
  return left > 0 ? in_append(d, p + d->ext_pos, left) : 0;
}

/* Start a feed of n bytes: check it, and move what is unread of a held
** string to the buffer (the new bytes follow it); 0 when it may go on. */
static int feed_begin(cv_decoder *d, size_t n) {
  if (d->feed_err != FEED_OK || d->closed) return -1;
  if (d->max_body && d->fed + n > d->max_body) { d->feed_err = FEED_TOO_BIG; return -1; }
  if (spill(d) != 0) { d->feed_err = FEED_OOM; return -1; }
  return 0;
}

int cv_decoder_feed(cv_decoder *d, const char *p, size_t n) {
  if (n == 0) return d->feed_err != FEED_OK || d->closed ? -1 : 0;
  if (feed_begin(d, n) != 0) return -1;
  if (in_append(d, p, n) != 0) { d->feed_err = FEED_OOM; return -1; }
  d->fed += n;
  return 0;
}

size_t cv_decoder_pending(const cv_decoder *d) {
  return d->in.len - d->start + (d->ext != NULL ? d->ext_len - d->ext_pos : 0);
}
void cv_decoder_eof(cv_decoder *d) { d->eof = 1; }
uint64_t cv_decoder_count(const cv_decoder *d) { return d->count; }

void cv_decoder_reset(cv_decoder *d) {
  d->start = d->in.len = 0;
  d->ext = NULL;
  d->lent = 0;
  d->off = d->fed = 0;
  d->eof = 0;
  d->feed_err = FEED_OK;
  d->state = ST_BEGIN;
  d->level = 0;
  d->key.len = 0;
  d->path_seen = 0;
  d->env_bytes = 0;
  d->count = 0;
  d->scan_pos = 0;
  d->env_stale = 1;
}

/* The transfer feeding this decoder is gone: give its buffers back now
** rather than when the garbage collector gets to the userdata. */
void cv_decoder_trim(cv_decoder *d) {
  cv_buf_free(&d->in);
  cv_buf_free(&d->scratch);
  cv_buf_free(&d->out);
  d->start = 0;
  d->ext = NULL;
  d->lent = 0;
  d->scan_pos = 0;
  d->eof = 1;
  if (d->state != ST_DONE) d->feed_err = FEED_CLOSED;   /* nothing more can be read */
}

/* Bytes outside the records array count against max_envelope. */
static int in_envelope(const cv_decoder *d) {
  return !d->whole && d->state != ST_ARR_FIRST && d->state != ST_ARR_ITEM
      && d->state != ST_ARR_NEXT;
}

/* n bytes of the view are read. When what the buffer has left is a copy
** of the held string's bytes before ext_pos, they are read there instead:
** the view moves back to the string. */
static void consume(cv_decoder *d, size_t n) {
  if (in_envelope(d)) d->env_bytes += n;
  d->off += n;
  if (d->start < d->in.len) {
    size_t left;
    d->start += n;
    left = d->in.len - d->start;
    if (left <= d->lent) {
      d->ext_pos -= left;
      d->start = d->in.len = 0;
      d->lent = 0;
    }
  } else {
    d->ext_pos += n;
  }
}

/* Skip whitespace; returns the first other byte or -1 when none is buffered. */
static int peek(cv_decoder *d) {
  for (;;) {
    const char *p = in_begin(d), *e = in_end(d);
    const char *q = cv_json_ws(p, e);
    consume(d, (size_t)(q - p));
    if (q < e) return (unsigned char)*q;
    if (!on_ext(d) || d->ext_pos == d->ext_len) return -1;   /* else the view moved on */
  }
}

/* The view ended inside a value. When it was the buffer (a record cut at
** the end of the last string) and the held string has more, a piece of
** the string is copied to the buffer (4 KiB, or as much as the buffer
** holds when more: the copying stays linear for a record of any size):
** 1, read on; once the record is read, what is left of the piece is read
** in the string again (consume). When it was the string, its cut end is
** copied to the buffer: 0, more bytes are needed. */
static int refill(lua_State *L, cv_decoder *d) {
  size_t left, n;
  int was_ext;
  if (d->ext == NULL) return 0;
  left = d->ext_len - d->ext_pos;
  was_ext = on_ext(d);
  n = was_ext ? left : d->in.len - d->start;
  if (n < CV_PIECE_MIN) n = CV_PIECE_MIN;
  if (n > left) n = left;
  if (n == 0) return 0;
  if (in_append(d, d->ext + d->ext_pos, n) != 0) {
    d->feed_err = FEED_OOM;
    cv_error_oom(L, "buffering the body");
  }
  d->ext_pos += n;
  d->lent += n;
  return !was_ext;
}

/* ---- errors and parsers ------------------------------------------------ */

/* The depth of the container holding the value at the view's start. */
static int outer_depth(const cv_decoder *d) {
  return d->whole ? 0 : d->level + 1 + (d->state == ST_ARR_ITEM);
}

/* A parser over the unconsumed bytes; call with the fixed slots pushed
** (key cache at base, array metatable at base + 1, value cache at base + 2;
** 0 = none). */
static void init_parser(lua_State *L, cv_decoder *d, cv_parser *P, int base) {
  cv_json_parser_init(P, L, in_begin(d), in_avail(d), d->off, at_eof(d), outer_depth(d));
  P->max_depth = d->max_depth;
  P->max_string = d->max_string;
  P->big_string = d->big_string;
  if (base != 0) {
    P->keys_idx = base;
    P->keys = &d->keys;
    P->array_mt = base + 1;
    P->vals_idx = base + 2;
    P->vals = d->vals;
  }
  P->scratch = &d->scratch;
  P->obj_hint = d->obj_hint;
  P->arr_hint = d->arr_hint;
  P->out = &d->out;
}

/* Raise a "json" error at `at` (NULL: the first unconsumed byte). */
static int fail(lua_State *L, cv_decoder *d, const char *at, const char *fmt, ...) {
  cv_parser P;
  va_list ap;
  init_parser(L, d, &P, 0);
  va_start(ap, fmt);
  /* cppcheck-suppress va_end_missing ; cv_json_verror never returns */
  return cv_json_verror(&P, at ? at : P.base, fmt, ap);
}

/* The duplicate-key error for the key on top of the stack, at offset off. */
static int fail_dup(lua_State *L, uint64_t off) {
  cv_parser P;
  cv_json_parser_init(&P, L, EMPTY, 0, off, 1, 0);
  return cv_json_dup_key(&P, EMPTY);
}

/* ---- values ------------------------------------------------------------ */

/* The most bytes the value at the view's start may take, and the error when it
** takes more: max_record, and for the envelope what is left of max_envelope. */
static size_t value_limit(const cv_decoder *d, const char **what) {
  uint64_t left;
  *what = "record larger than max_record";
  if (!in_envelope(d)) return d->max_record;
  left = d->env_bytes >= d->max_envelope ? 0 : d->max_envelope - d->env_bytes;
  if (left < d->max_record) {
    *what = "envelope larger than max_envelope";
    return (size_t)left;
  }
  *what = "envelope value larger than max_record";
  return d->max_record;
}

/* The scanner, for a container or a string: resume at i, stop at n. */
static int scan_nested(lua_State *L, cv_decoder *d, size_t i, size_t n, size_t *ext) {
  const char *b = in_begin(d);
  int outer = outer_depth(d);
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
        if (d->scan_depth == 0) { *ext = i; return 1; }
      }
      continue;
    }
    switch (b[i++]) {
      case '"': d->scan_str = 1; break;
      case '{': case '[':                    /* the parser's own check, same place */
        if (outer + ++d->scan_depth > d->max_depth)
          fail(L, d, b + i - 1, "nesting deeper than max_depth (%d)", d->max_depth);
        break;
      case '}': case ']':
        if (--d->scan_depth == 0) { *ext = i; return 1; }
        break;
      default: break;
    }
  }
  d->scan_pos = i;
  return 0;
}

/* Resume the scan for the end of the value at the view's start: 1 and *ext = its
** length when complete, 0 when more bytes are needed. It reads at most
** max + 1 bytes and raises `what` past max. Nothing is validated here
** (the parser does that) but the depth, exactly as the parser counts it. */
static int scan(lua_State *L, cv_decoder *d, size_t max, const char *what, size_t *ext) {
  const char *b = in_begin(d);
  size_t n = in_avail(d), i = d->scan_pos;
  int cut = 0, done;
  if (n > max) { n = max + 1; cut = 1; }
  if (i == 0) {
    d->scan_depth = 0;
    d->scan_str = b[0] == '"';
    d->scan_scalar = b[0] != '"' && b[0] != '{' && b[0] != '[';
    i = d->scan_str;
  }
  if (d->scan_scalar) {                      /* number or literal */
    while (i < n && !strchr(",]} \t\r\n", b[i])) i++;
    d->scan_pos = i;
    done = i < n || (at_eof(d) && !cut);
    *ext = i;
  } else {
    done = scan_nested(L, d, i, n, ext);
  }
  if (done) d->scan_pos = 0;
  if ((done && *ext > max) || (!done && cut)) fail(L, d, NULL, "%s", what);
  return done;
}

/* Parse the value at P->base in the given mode (TAKE_TABLE or TAKE_RAW). */
static const char *parse_in(cv_parser *P, int mode) {
  return mode == TAKE_RAW ? cv_json_raw(P, P->base) : cv_json_value(P, P->base);
}

/* Parse (pushed) or skip the value at the view's start, as `mode` says.
** Returns 1 when done, 0 when more bytes are needed. */
static int take_value(lua_State *L, cv_decoder *d, int mode, int base) {
  cv_parser P;
  const char *what, *p;
  size_t max = value_limit(d, &what), ext;
  int top = lua_gettop(L);
  if (d->scan_pos == 0 && mode != TAKE_SKIP) {      /* fast path: parse in place */
    init_parser(L, d, &P, base);
    if ((size_t)(P.end - P.base) > max) { P.end = P.base + max + 1; P.final = 0; }
    if ((p = parse_in(&P, mode)) != NULL) {
      if ((size_t)(p - P.base) > max) fail(L, d, NULL, "%s", what);
      consume(d, (size_t)(p - P.base));
      return 1;
    }
    lua_settop(L, top);                      /* cut short: find its end first */
  }
  if (!scan(L, d, max, what, &ext)) {
    if (at_eof(d)) fail(L, d, in_end(d), "unexpected end of input");
    return 0;
  }
  if (mode != TAKE_SKIP) {
    init_parser(L, d, &P, base);
    P.end = P.base + ext;
    P.final = 1;
    if ((p = parse_in(&P, mode)) != P.end) cv_json_error(&P, p, "unexpected data after a value");
  }
  consume(d, ext);
  return 1;
}

/* ---- the envelope ------------------------------------------------------ */

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

/* Push env[path[0]]...[path[level-1]], creating the tables missing. */
static void push_env_level(lua_State *L, cv_decoder *d) {
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
}

/* env[path[0]]...[path[level-1]][key] = value on top (popped). */
static void set_env(lua_State *L, cv_decoder *d) {
  push_env_level(L, d);
  lua_pushlstring(L, d->key.p, d->key.len);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

/* Did the object at d->level already have the key d->key? The path's own
** key leaves a bit (its value is not kept); any other key is in env. */
static int key_seen(lua_State *L, cv_decoder *d) {
  int seen;
  if (key_is(d, d->level)) {
    seen = (d->path_seen >> d->level) & 1;
    d->path_seen |= 1u << d->level;
    return seen;
  }
  push_env_level(L, d);
  lua_pushlstring(L, d->key.p, d->key.len);
  seen = cv_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return seen;
}

/* Decode the member key at the view's start (a string) into d->key. */
static int take_key(lua_State *L, cv_decoder *d, int base) {
  size_t n;
  const char *s;
  uint64_t at = d->off;
  if (!take_value(L, d, TAKE_TABLE, base)) return 0;
  s = lua_tolstring(L, -1, &n);
  d->key.len = 0;
  if (cv_buf_add(&d->key, s, n) != 0) cv_error_oom(L, "decoding an envelope key");
  if (key_seen(L, d)) fail_dup(L, at);
  lua_pop(L, 1);
  return 1;
}

/* After the records array or a nested object closes. */
static void close_container(cv_decoder *d) {
  if (d->level <= 0) d->state = ST_TRAILING;
  else { d->level--; d->state = ST_OBJ_NEXT; }
}

/* ---- the state machine ------------------------------------------------- */

/* ST_VALUE: the value of member d->key; c = its first byte. */
static int member_value(lua_State *L, cv_decoder *d, int c, int base) {
  if (d->scan_pos == 0 && key_is(d, d->level)) {
    if (d->level == d->npath - 1 && c == '[') {
      d->state = ST_ARR_FIRST;                 /* its '[' is not envelope */
      consume(d, 1);
      return 1;
    }
    if (d->level < d->npath - 1 && c == '{') {
      consume(d, 1);
      d->level++;
      d->state = ST_KEY_FIRST;
      return 1;
    }
    if (d->level == d->npath - 1 && c != 'n')
      fail(L, d, NULL, "the records field '%s' is not an array", d->path[d->level]);
  }
  if (!take_value(L, d, TAKE_TABLE, base)) return 0;
  set_env(L, d);
  d->state = ST_OBJ_NEXT;
  return 1;
}

/* The next byte c that is not whitespace, or -1 at the end of the input
** fed so far (raises at the real end when the document is incomplete). */
static int next_byte(lua_State *L, cv_decoder *d) {
  int c;
  if (d->scan_pos != 0) return (unsigned char)*in_begin(d);
  c = peek(d);
  if (d->env_bytes > d->max_envelope) fail(L, d, NULL, "envelope larger than max_envelope");
  if (c >= 0 || !at_eof(d)) return c;
  if (d->state == ST_TRAILING) { d->state = ST_DONE; return -1; }
  if (d->state == ST_BEGIN && d->fed == 0)
    fail(L, d, NULL, "empty document (a JSON value expected)");
  return fail(L, d, NULL, "unexpected end of input");
}

static int step(lua_State *L, cv_decoder *d, int skip, int base) {
  int rec = skip ? TAKE_SKIP : d->raw ? TAKE_RAW : TAKE_TABLE;
  for (;;) {
    int c;
    if (d->state == ST_DONE) return CV_DEC_DONE;
    if ((c = next_byte(L, d)) < 0) return d->state == ST_DONE ? CV_DEC_DONE : CV_DEC_MORE;
    switch (d->state) {
      case ST_BEGIN:
        if (d->whole) { d->state = ST_WHOLE; break; }
        if (c == '[') { d->level = -1; d->state = ST_ARR_FIRST; consume(d, 1); break; }
        if (c == '{' && d->npath > 0) { consume(d, 1); d->level = 0; d->state = ST_KEY_FIRST; break; }
        fail(L, d, NULL, d->npath ? "a JSON object or array expected"
                                  : "a JSON array of records expected");
        break;
      case ST_WHOLE:
        if (!take_value(L, d, rec, base)) return CV_DEC_MORE;
        d->state = ST_TRAILING;
        d->count++;
        return CV_DEC_RECORD;
      case ST_KEY_FIRST:
        if (c == '}') { consume(d, 1); close_container(d); break; }
        /* fall through */
      case ST_KEY:
        if (c != '"') fail(L, d, NULL, "object key (a string) expected");
        if (!take_key(L, d, base)) return CV_DEC_MORE;
        d->state = ST_COLON;
        break;
      case ST_COLON:
        if (c != ':') fail(L, d, NULL, "':' expected after an object key");
        consume(d, 1);
        d->state = ST_VALUE;
        break;
      case ST_VALUE:
        if (!member_value(L, d, c, base)) return CV_DEC_MORE;
        break;
      case ST_OBJ_NEXT:
        if (c != ',' && c != '}') fail(L, d, NULL, "',' or '}' expected in an object");
        consume(d, 1);
        if (c == ',') d->state = ST_KEY;
        else close_container(d);
        break;
      case ST_ARR_FIRST:
        if (c == ']') {
          consume(d, 1);
          d->state = d->level < 0 ? ST_TRAILING : ST_OBJ_NEXT;
          break;
        }
        d->state = ST_ARR_ITEM;
        /* fall through */
      case ST_ARR_ITEM:
        if (!take_value(L, d, rec, base)) return CV_DEC_MORE;
        d->state = ST_ARR_NEXT;
        d->count++;
        return CV_DEC_RECORD;
      case ST_ARR_NEXT:
        if (c != ',' && c != ']') fail(L, d, NULL, "',' or ']' expected after a record");
        consume(d, 1);
        if (c == ',') d->state = ST_ARR_ITEM;
        else d->state = d->level < 0 ? ST_TRAILING : ST_OBJ_NEXT;
        break;
      case ST_TRAILING:
        fail(L, d, NULL, "unexpected data after the JSON value");
        break;
      default:
        return CV_DEC_DONE;
    }
  }
}

/* Stack while stepping: base = the key cache table, then the array
** metatable and the value cache's strings (both kept in the key cache). */
static int next_or_skip(lua_State *L, cv_decoder *d, int skip) {
  int r, base;
  if (d->closed) return cv_error_raise(L, "usage", "decoder is closed");
  if (d->feed_err == FEED_OOM) cv_error_oom(L, "buffering the body");
  if (d->feed_err == FEED_TOO_BIG) fail(L, d, NULL, "body larger than max_body");
  if (d->feed_err == FEED_CLOSED)
    fail(L, d, NULL, "the transfer was closed before the body was complete");
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->keys_ref);
  base = lua_gettop(L);
  lua_rawgeti(L, base, CV_KEY_MT);
  lua_rawgeti(L, base, CV_KEY_VALUES);
  r = step(L, d, skip, base);
  while (r == CV_DEC_MORE && refill(L, d)) r = step(L, d, skip, base);
  if (d->ext != NULL && d->ext_pos == d->ext_len) {   /* read to its end */
    d->ext = NULL;
    d->lent = 0;
  }
  if (d->held && d->ext == NULL) {           /* let the string read in place go */
    lua_pushnil(L);
    lua_rawseti(L, base, KEY_HOLD);
    d->held = 0;
  }
  if (r == CV_DEC_RECORD && !skip) lua_replace(L, base);
  lua_settop(L, base - (r != CV_DEC_RECORD || skip));
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
  cv_buf_free(&d->out);
  d->ext = NULL;
  d->lent = 0;
  for (i = 0; i < d->npath; i++) free(d->path[i]);
  d->npath = 0;
  d->start = 0;
  d->closed = 1;
}

static size_t opt_size(lua_State *L, int idx, const char *k, size_t dflt) {
  size_t v = dflt;
  if (cv_getfield(L, idx, k) != LUA_TNIL) {
    lua_Number n = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
    if (!(n >= 0)) cv_error_raise(L, "usage", "%s must be a size in bytes", k);
    v = n >= (lua_Number)(size_t)-1 ? (size_t)-1 : (size_t)n;   /* math.huge: none */
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int idx, const char *k) {
  int t = cv_getfield(L, idx, k), v = lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) cv_error_raise(L, "usage", "%s must be a boolean", k);
  lua_pop(L, 1);
  return v;
}

/* The decoder's own options (cv_json_options reads the parser's). */
static void read_options(lua_State *L, cv_decoder *d, int opts) {
  size_t body;
  cv_getfield(L, opts, "whole");
  d->whole = lua_toboolean(L, -1);
  lua_pop(L, 1);
  d->raw = opt_bool(L, opts, "raw");
  d->max_record = opt_size(L, opts, "max_record", d->max_record);
  d->max_envelope = opt_size(L, opts, "max_envelope", d->max_envelope);
  body = opt_size(L, opts, "max_body", 0);
  d->max_body = body == (size_t)-1 ? 0 : (uint64_t)body;
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
  lua_createtable(L, CV_KEY_VALUES + 1, 0);           /* the key cache table */
  luaL_getmetatable(L, CV_ARRAY_MT);
  lua_rawseti(L, -2, CV_KEY_MT);
  d->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  cv_json_options(L, opts, &d->max_depth, &d->max_string, &d->big_string);
  d->max_record = CV_JSON_MAX_STRING;
  d->max_envelope = MAX_ENVELOPE;
  if (opts != 0) {
    read_options(L, d, opts);
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
  if (!d->raw) {                             /* raw mode pushes no values */
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->keys_ref);
    d->vals = cv_json_vals_push(L, lua_gettop(L));
    lua_pop(L, 2);
  }
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
  if (n < CV_BORROW_MIN) {
    cv_decoder_feed(d, s, n);                /* failures surface in next() */
  } else if (feed_begin(d, n) == 0) {        /* read in place: held by keys[KEY_HOLD] */
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->keys_ref);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, KEY_HOLD);
    d->held = 1;
    d->ext = s;
    d->ext_len = n;
    d->ext_pos = 0;
    d->fed += n;
  }
  lua_settop(L, 1);
  return 1;
}

/* d:next() -> record | nil, "more" | nil, "done"
** Called once per record: its type check compares the metatable with
** upvalue 1 (luaL_checkudata looks the name up in the registry each time). */
static int dec_next(lua_State *L) {
  cv_decoder *d = (cv_decoder *)lua_touserdata(L, 1);
  int ok = 0;
  if (d != NULL && lua_getmetatable(L, 1)) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!ok || d->closed) d = check_open(L);  /* raises the usual error */
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
  memset(&d->keys, 0, sizeof d->keys);       /* their memory goes with the table */
  d->vals = NULL;
  return 0;
}

static int dec_tostring(lua_State *L) {
  cv_decoder *d = cv_decoder_check(L, 1);
  if (d->closed) lua_pushliteral(L, "converse.Decoder (closed)");
  else lua_pushfstring(L, "converse.Decoder (%d records, %d bytes pending)",
                       (int)d->count, (int)cv_decoder_pending(d));
  return 1;
}

static const luaL_Reg dec_methods[] = {     /* and next (cv_decoder_open) */
  {"feed",      dec_feed},
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
  luaL_getmetatable(L, CV_DECODER_MT);       /* next, with the metatable as upvalue */
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, dec_next, 1);
  lua_setfield(L, -2, "next");
  lua_pop(L, 2);
  lua_pushcfunction(L, dec_new);
}
