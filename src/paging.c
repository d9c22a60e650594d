/*
** paging.c -- the paging state machine (converse.Paging), sans I/O.
**
** It never sees a socket. The pager driving a transport asks it which page
** to request next (`want`), whether the next request must wait for the
** oldest page's envelope (`needs_envelope`), hands it each page's envelope
** (`learn`: it reads the cursor, the page count and has_more itself), asks
** whether a page's first record was seen at the top of an earlier page
** (`first`), and reports each finished page (`finish`: its record count and
** the fingerprints of its first and last records). It answers whether to go
** on, and where a resumed run must start (`position`). The same machine
** serves the libcurl and the nginx transports.
**
** Styles: "page" (page numbers; stop on an empty page, a short page, or
** after the page count), "cursor" (stop when the cursor is null/absent/""),
** "none" (one request), "auto" (decide from each envelope: a cursor, a page
** count, has_more, or a short page).
**
** Invariants:
** - Pages are finished in the order they were requested.
** - A server that lies cannot end the iteration silently nor make it loop:
**   a page count that is not a whole number in [0, 2^53], an empty page
**   before the page count says the data ends, a cursor seen before, or a
**   page identical to an earlier one (same first record, last record and
**   count) is answered with a code the driver raises as an error.
** - Once the page count is known, short pages do not stop the iteration:
**   only the count (as the latest envelope says it) does.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv.h"

#define PAGING_MT       "converse.Paging"
#define MAX_PAGE_COUNT  9007199254740992.0      /* 2^53 */
#define DEFAULT_CURSOR  "cursor"

enum { S_PAGE, S_CURSOR, S_NONE, S_AUTO };

/* A set of byte strings: cursors, first-record and page fingerprints. */
typedef struct cv_strset {
  char    **item;
  size_t   *len;
  size_t    n, cap;           /* cap is a power of two (or 0) */
} cv_strset;

typedef struct cv_paging {
  int        style, concurrency, short_stops, closed;
  long long  first_page, next_number, page_size, max_pages, total;   /* total -1 = unknown */
  long long  issued, finished, last_finished;   /* last_finished: number of the last page done */
  int        stopped;         /* no more requests */
  int        complete;        /* stopped because the data ended (not by stop() or max_pages) */
  int        cursor_ready;    /* the next cursor is known */
  char      *cursor;          /* next cursor (NULL: none / first page) */
  size_t     cursor_len;
  int        last, more;      /* auto: the envelope of the oldest page said so */
  char      *cursor_field, *total_field;        /* dotted paths in the envelope */
  cv_strset  cursors, firsts, pages;
} cv_paging;

/* ---- string set -------------------------------------------------------- */

static size_t hash_bytes(const char *s, size_t n) {
  size_t h = (size_t)1469598103934665603ULL, i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * (size_t)1099511628211ULL;
  return h;
}

static void set_free(cv_strset *s) {
  size_t i;
  for (i = 0; i < s->cap; i++) free(s->item[i]);
  free(s->item);
  free(s->len);
  memset(s, 0, sizeof *s);
}

static int set_grow(cv_strset *s) {
  cv_strset g;
  size_t cap = s->cap ? s->cap * 2 : 16, i;
  g.item = (char **)calloc(cap, sizeof *g.item);
  g.len = (size_t *)calloc(cap, sizeof *g.len);
  if (g.item == NULL || g.len == NULL) { free(g.item); free(g.len); return -1; }
  g.cap = cap;
  g.n = s->n;
  for (i = 0; i < s->cap; i++) {
    if (s->item[i] != NULL) {
      size_t j = hash_bytes(s->item[i], s->len[i]) & (cap - 1);
      while (g.item[j] != NULL) j = (j + 1) & (cap - 1);
      g.item[j] = s->item[i];
      g.len[j] = s->len[i];
    }
  }
  free(s->item);
  free(s->len);
  *s = g;
  return 0;
}

/* 1 if present; else inserts it (unless `probe`) and returns 0; -1 when out of memory. */
static int set_add(cv_strset *s, const char *str, size_t n, int probe) {
  size_t i, mask;
  char *copy;
  if ((s->n + 1) * 2 > s->cap && set_grow(s) != 0) return -1;
  mask = s->cap - 1;
  for (i = hash_bytes(str, n) & mask; s->item[i] != NULL; i = (i + 1) & mask)
    if (s->len[i] == n && memcmp(s->item[i], str, n) == 0) return 1;
  if (probe) return 0;
  copy = (char *)malloc(n ? n : 1);
  if (copy == NULL) return -1;
  memcpy(copy, str, n);
  s->item[i] = copy;
  s->len[i] = n;
  s->n++;
  return 0;
}

/* ---- envelope reading -------------------------------------------------- */

/* Push env[path] for a dotted path (nil when a step is missing); returns its type. */
static int dig(lua_State *L, int env, const char *path) {
  lua_pushvalue(L, env);
  while (path != NULL && *path) {
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushnil(L); break; }
    lua_pushlstring(L, path, n);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    path = dot ? dot + 1 : NULL;
  }
  return lua_type(L, -1);
}

/* A cursor is a non-empty string or a number; null, "", false ... are none.
** Leaves the cursor text (or nil) on the stack. */
static int dig_cursor(lua_State *L, int env, const char *path) {
  int t = dig(L, env, path);
  if (t == LUA_TNUMBER || (t == LUA_TSTRING && lua_rawlen(L, -1) > 0)) {
    if (t == LUA_TNUMBER) lua_tostring(L, -1);      /* converts in place */
    return 1;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  return 0;
}

/* Read a page count at the top of the stack (popped). Returns 1 and sets
** *out for a whole number in [0, 2^53]; 0 when absent (nil or null);
** -1 when present but not such a number. */
static int read_count(lua_State *L, long long *out) {
  int t = lua_type(L, -1);
  double v;
  if (t == LUA_TNIL || (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL)) {
    lua_pop(L, 1);
    return 0;
  }
  if (t == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 16 || s[n] != '\0') { lua_pop(L, 1); return -1; }
    v = strtod(s, NULL);
  } else if (t == LUA_TNUMBER) {
    v = (double)lua_tonumber(L, -1);
  } else {
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  if (!(v >= 0 && v <= MAX_PAGE_COUNT) || floor(v) != v) return -1;
  *out = (long long)v;
  return 1;
}

/* ---- the machine ------------------------------------------------------- */

static cv_paging *check_paging(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  if (p->closed) cv_error_raise(L, "usage", "paging state is closed");
  return p;
}

static long long in_flight(const cv_paging *p) { return p->issued - p->finished; }

static void set_cursor(lua_State *L, cv_paging *p, const char *c, size_t n) {
  char *copy = (char *)malloc(n + 1);
  if (copy == NULL) { cv_error_oom(L, "in the paging state"); return; }
  memcpy(copy, c, n);
  copy[n] = '\0';
  free(p->cursor);
  p->cursor = copy;
  p->cursor_len = n;
}

static void drop_cursor(cv_paging *p) {
  free(p->cursor);
  p->cursor = NULL;
  p->cursor_len = 0;
}

static void push_number(lua_State *L, long long n) {
#if CV_HAS_INTEGER
  lua_pushinteger(L, (lua_Integer)n);
#else
  lua_pushnumber(L, (lua_Number)n);
#endif
}

/* ps:want() -> "page", n | "cursor", c_or_nil | nil (nothing to start now) */
static int paging_want(lua_State *L) {
  cv_paging *p = check_paging(L);
  long long window;
  if (p->stopped || (p->max_pages && p->issued >= p->max_pages)) return 0;
  switch (p->style) {
    case S_NONE:
      if (p->issued > 0) return 0;
      p->issued++;
      lua_pushliteral(L, "page");
      lua_pushnil(L);
      return 2;
    case S_CURSOR:                         /* as soon as the next cursor is known */
      if (!p->cursor_ready) return 0;
      p->cursor_ready = 0;
      p->issued++;
      lua_pushliteral(L, "cursor");
      if (p->cursor) lua_pushlstring(L, p->cursor, p->cursor_len); else lua_pushnil(L);
      return 2;
    case S_AUTO:          /* a known cursor at once; a page number after the last page */
      if (p->cursor != NULL) {
        if (!p->cursor_ready) return 0;
        p->cursor_ready = 0;
        p->issued++;
        lua_pushliteral(L, "cursor");
        lua_pushlstring(L, p->cursor, p->cursor_len);
        return 2;
      }
      if (in_flight(p) > 0) return 0;
      p->issued++;
      break;
    default:                               /* S_PAGE */
      window = p->total >= 0 ? p->concurrency
             : p->total_field ? 1          /* wait for the page count, don't guess */
             : (p->concurrency > 1 ? 2 : 1);  /* one page of prefetch */
      if (in_flight(p) >= window || (p->total >= 0 && p->next_number > p->total)) return 0;
      p->issued++;
      break;
  }
  lua_pushliteral(L, "page");
  push_number(L, p->next_number++);
  return 2;
}

/* ps:needs_envelope() -> true when the next request waits for what the
** oldest page's envelope says (its cursor, or the page count). */
static int paging_needs_envelope(lua_State *L) {
  cv_paging *p = check_paging(L);
  int needs = 0;
  if (!p->stopped) {
    if (p->style == S_CURSOR || p->style == S_AUTO) needs = in_flight(p) == 1;
    else if (p->style == S_PAGE) needs = p->total_field != NULL && p->total < 0;
  }
  lua_pushboolean(L, needs);
  return 1;
}

/* Fail with a code: pushes nil, code, detail; returns 3. */
static int answer(lua_State *L, const char *code, const char *detail) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, detail);
  return 3;
}

/* ps:learn(envelope) for the oldest page in flight.
** Returns true, or nil, code, detail: "REPEATED_CURSOR" (detail: the
** cursor), "BAD_PAGE_COUNT" (detail: what the field held). */
static int paging_learn(lua_State *L) {
  cv_paging *p = check_paging(L);
  int has_more = -1, bare, has_cursor, counted;
  long long total = -1;
  size_t n = 0;
  const char *c;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  has_cursor = dig_cursor(L, 2, p->cursor_field);                    /* 3 */
  if (!has_cursor && p->style == S_AUTO) {
    lua_pop(L, 1);
    if (!(has_cursor = dig_cursor(L, 2, "next_cursor"))) {
      lua_pop(L, 1);
      has_cursor = dig_cursor(L, 2, "nextCursor");
    }
  }
  c = has_cursor ? lua_tolstring(L, 3, &n) : NULL;
  if (p->total_field) dig(L, 2, p->total_field);                     /* 4 */
  else lua_pushnil(L);
  if (lua_isnil(L, 4) && p->style == S_AUTO) {
    lua_pop(L, 1);
    if (dig(L, 2, "pages") == LUA_TNIL) { lua_pop(L, 1); dig(L, 2, "total_pages"); }
  }
  lua_pushvalue(L, 4);
  counted = read_count(L, &total);
  if (counted < 0) {
    const char *what = lua_type(L, 4) == LUA_TNUMBER || lua_type(L, 4) == LUA_TSTRING
                     ? lua_tostring(L, 4) : luaL_typename(L, 4);
    return answer(L, "BAD_PAGE_COUNT", what);
  }
  if (dig(L, 2, "has_more") == LUA_TBOOLEAN) has_more = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_pushnil(L);
  bare = lua_next(L, 2) != 0;                  /* a non-empty envelope ... */
  lua_settop(L, 4);
  if (bare) bare = dig(L, 2, "page") == LUA_TNIL;   /* ... without a page number */
  lua_settop(L, 4);
  p->last = p->more = 0;
  if (p->style == S_CURSOR || (p->style == S_AUTO && c != NULL && has_more != 0)) {
    int seen;
    drop_cursor(p);
    if (c == NULL) {
      if (p->style == S_CURSOR) p->stopped = p->complete = 1;
      lua_pushboolean(L, 1);
      return 1;
    }
    seen = set_add(&p->cursors, c, n, 0);
    if (seen < 0) return cv_error_oom(L, "in the paging state");
    if (seen) return answer(L, "REPEATED_CURSOR", c);
    set_cursor(L, p, c, n);
    p->cursor_ready = 1;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (p->style == S_AUTO) drop_cursor(p);
  if (counted > 0 && (p->style == S_PAGE || p->style == S_AUTO)) p->total = total;
  if (p->style == S_AUTO) {
    /* has_more says it; else an envelope without paging fields is one page */
    p->more = has_more == 1;
    p->last = has_more == 0 || (has_more < 0 && counted <= 0 && bare);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ps:first(fingerprint) -> true when an earlier page started with this
** record: the driver then reads the page whole before handing it out, so
** that `finish` can tell a repeated page from data that merely starts alike. */
static int paging_first(lua_State *L) {
  cv_paging *p = check_paging(L);
  size_t n;
  const char *fp = luaL_checklstring(L, 2, &n);
  int seen = set_add(&p->firsts, fp, n, 0);
  if (seen < 0) return cv_error_oom(L, "in the paging state");
  lua_pushboolean(L, seen);
  return 1;
}

/* Remember a page by (first, last, count) (`probe`: only look); 1 when
** seen before. */
static int page_seen(lua_State *L, cv_paging *p, const char *first, size_t nf,
                     const char *last, size_t nl, long long count, int probe) {
  cv_buf *key = cv_buf_box(L);
  char num[32];
  int seen, k = snprintf(num, sizeof num, "%lld", count);
  if (cv_buf_add(key, num, (size_t)k + 1) != 0 || cv_buf_add(key, first, nf) != 0
      || cv_buf_add(key, "\n", 1) != 0 || cv_buf_add(key, last, nl) != 0)
    cv_error_oom(L, "in the paging state");
  seen = set_add(&p->pages, key->p, key->len, probe);
  cv_buf_free(key);
  lua_pop(L, 1);
  if (seen < 0) cv_error_oom(L, "in the paging state");
  return seen;
}

/* ps:finish(number_or_nil, count [, first_fp, last_fp]) -> stopped
**   | nil, code, detail ("REPEATED_PAGE", "PAGE_COUNT_MISMATCH").
** stopped = true: iteration is over (drop the pages still in flight). */
static int paging_finish(lua_State *L) {
  cv_paging *p = check_paging(L);
  lua_Integer number = (lua_Integer)luaL_optnumber(L, 2, 0);
  lua_Integer count = luaL_checkinteger(L, 3);
  int known = p->total >= 0;
  int shrt = p->short_stops && p->page_size > 0 && count < p->page_size;
  p->finished++;
  p->last_finished = (long long)number;
  if (count > 0 && lua_type(L, 4) == LUA_TSTRING && lua_type(L, 5) == LUA_TSTRING) {
    size_t nf, nl;
    const char *f = lua_tolstring(L, 4, &nf), *l = lua_tolstring(L, 5, &nl);
    if (page_seen(L, p, f, nf, l, nl, (long long)count, 0)) {
      p->stopped = 1;
      return answer(L, "REPEATED_PAGE", lua_pushfstring(L, "%d records", (int)count));
    }
  }
  switch (p->style) {
    case S_PAGE:
    case S_AUTO:
      if (p->style == S_AUTO && (p->cursor != NULL || p->more)) break;
      if (known && count == 0 && number < p->total && !(p->style == S_AUTO && p->last)) {
        p->stopped = 1;
        return answer(L, "PAGE_COUNT_MISMATCH",
                      lua_pushfstring(L, "page %d is empty but the page count is %d",
                                      (int)number, (int)p->total));
      }
      if ((p->style == S_AUTO && p->last) || (known && number >= p->total)
          || (!known && (count == 0 || shrt)))
        p->stopped = p->complete = 1;
      break;
    case S_NONE:
      p->stopped = p->complete = 1;
      break;
    default:                               /* S_CURSOR: learn saw the last cursor */
      break;
  }
  if (p->max_pages && p->issued >= p->max_pages && in_flight(p) == 0) p->stopped = 1;
  lua_pushboolean(L, p->stopped);
  return 1;
}

/* ps:repeats(count, first_fp, last_fp) -> true when a page finished
** earlier had the same count, first and last record (nothing is recorded). */
static int paging_repeats(lua_State *L) {
  cv_paging *p = check_paging(L);
  lua_Integer count = luaL_checkinteger(L, 2);
  size_t nf, nl;
  const char *f = luaL_checklstring(L, 3, &nf), *l = luaL_checklstring(L, 4, &nl);
  lua_pushboolean(L, page_seen(L, p, f, nf, l, nl, (long long)count, 1));
  return 1;
}

/* core.fingerprint(s) -> 16 hex digits (64-bit FNV-1a): identifies records,
** pages and queries; not a cryptographic hash. */
int cv_fingerprint(lua_State *L) {
  size_t n, i;
  const char *s = luaL_checklstring(L, 1, &n);
  uint64_t h = 14695981039346656037ULL;
  char hex[17];
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  for (i = 0; i < 16; i++) hex[i] = "0123456789abcdef"[(h >> (60 - 4 * i)) & 15];
  lua_pushlstring(L, hex, 16);
  return 1;
}

/* ps:position() -> where a new run resumes after the pages finished so far:
** { page = n } | { cursor = c } | { done = true } | nil (nothing finished yet) */
static int paging_position(lua_State *L) {
  cv_paging *p = check_paging(L);
  if (p->finished == 0) return 0;
  lua_createtable(L, 0, 1);
  if (p->complete) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "done");
  } else if (p->cursor != NULL) {
    lua_pushlstring(L, p->cursor, p->cursor_len);
    lua_setfield(L, -2, "cursor");
  } else {
    push_number(L, p->last_finished + 1);
    lua_setfield(L, -2, "page");
  }
  return 1;
}

/* ps:stop(): no more requests (the consumer stopped or failed) */
static int paging_stop(lua_State *L) {
  cv_paging *p = check_paging(L);
  p->stopped = 1;
  return 0;
}

/* ps:state() -> { issued=, finished=, total=, stopped=, cursor= } (for tests) */
static int paging_state(lua_State *L) {
  cv_paging *p = check_paging(L);
  lua_createtable(L, 0, 5);
  push_number(L, p->issued);   lua_setfield(L, -2, "issued");
  push_number(L, p->finished); lua_setfield(L, -2, "finished");
  if (p->total >= 0) { push_number(L, p->total); lua_setfield(L, -2, "total"); }
  lua_pushboolean(L, p->stopped);               lua_setfield(L, -2, "stopped");
  if (p->cursor) { lua_pushlstring(L, p->cursor, p->cursor_len); lua_setfield(L, -2, "cursor"); }
  return 1;
}

static int paging_close(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  if (p->closed) return 0;
  p->closed = 1;
  drop_cursor(p);
  free(p->cursor_field);
  free(p->total_field);
  p->cursor_field = p->total_field = NULL;
  set_free(&p->cursors);
  set_free(&p->firsts);
  set_free(&p->pages);
  return 0;
}

static int paging_tostring(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  lua_pushfstring(L, "converse.Paging (%d pages requested%s)", (int)p->issued,
                  p->stopped ? ", stopped" : "");
  return 1;
}

static long long opt_int(lua_State *L, const char *k, long long dflt, long long min) {
  long long v = dflt;
  if (cv_getfield(L, 1, k) != LUA_TNIL) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || !(n >= (lua_Number)min && n <= MAX_PAGE_COUNT) || floor(n) != n)
      cv_error_raise(L, "usage", "%s must be a whole number >= %d", k, (int)min);
    v = (long long)n;
  }
  lua_pop(L, 1);
  return v;
}

static char *opt_path(lua_State *L, const char *k, const char *dflt) {
  const char *s = dflt;
  char *copy;
  int t = cv_getfield(L, 1, k);
  if (t == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (t != LUA_TNIL) cv_error_raise(L, "usage", "%s must be a dotted path string", k);
  if (s == NULL) { lua_pop(L, 1); return NULL; }
  copy = (char *)malloc(strlen(s) + 1);
  if (copy == NULL) { cv_error_oom(L, "in the paging state"); return NULL; }
  strcpy(copy, s);
  lua_pop(L, 1);
  return copy;
}

/* core.paging{ style=, first_page=, page_size=, short_stops=, concurrency=,
**              max_pages=, cursor=, cursor_field=, total_field= } */
static int paging_new(lua_State *L) {
  static const char *const styles[] = { "page", "cursor", "none", "auto", NULL };
  cv_paging *p;
  int style;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  cv_getfield(L, 1, "style");
  style = luaL_checkoption(L, 2, "page", styles);
  lua_pop(L, 1);
  p = (cv_paging *)lua_newuserdatauv(L, sizeof *p, 0);             /* 2 */
  memset(p, 0, sizeof *p);
  p->closed = 1;                               /* until fully set up */
  luaL_setmetatable(L, PAGING_MT);
  p->style = style;
  p->total = -1;
  p->first_page = opt_int(L, "first_page", 1, -1000000000);
  p->next_number = p->first_page;
  p->page_size = opt_int(L, "page_size", 0, 0);
  p->concurrency = (int)opt_int(L, "concurrency", 2, 1);
  p->max_pages = opt_int(L, "max_pages", 0, 0);
  cv_getfield(L, 1, "short_stops");
  p->short_stops = lua_toboolean(L, -1);
  lua_pop(L, 1);
  p->cursor_ready = 1;
  p->closed = 0;                               /* from here on __gc frees what is set */
  p->cursor_field = opt_path(L, "cursor_field", DEFAULT_CURSOR);
  p->total_field = opt_path(L, "total_field", NULL);
  if (cv_getfield(L, 1, "cursor") == LUA_TSTRING) {
    size_t n;
    const char *c = lua_tolstring(L, -1, &n);
    if (n > 0) set_cursor(L, p, c, n);
  }
  lua_settop(L, 2);
  return 1;
}

static const luaL_Reg paging_methods[] = {
  {"want",            paging_want},
  {"needs_envelope",  paging_needs_envelope},
  {"learn",           paging_learn},
  {"first",           paging_first},
  {"finish",          paging_finish},
  {"repeats",         paging_repeats},
  {"position",        paging_position},
  {"stop",            paging_stop},
  {"state",           paging_state},
  {"close",           paging_close},
  {NULL, NULL}
};

static const luaL_Reg paging_meta[] = {
  {"__gc",       paging_close},
  {"__close",    paging_close},
  {"__tostring", paging_tostring},
  {NULL, NULL}
};

void cv_paging_open(lua_State *L) {
  cv_class(L, PAGING_MT, paging_meta, paging_methods);
  lua_pushcfunction(L, paging_new);
}
