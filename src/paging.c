/*
** paging.c -- the paging state machine (converse.cv_paging), sans I/O.
**
** It never sees a socket: the pager driving a transport asks it which page
** to request next (`want`), tells it what each page's envelope said
** (`learn`: next cursor, page count, has_more) and how many records the page
** held (`finish`), and it answers whether to go on. The same machine serves
** the libcurl transport and, later, nginx cosockets.
**
** Styles: "page" (page numbers; stop on an empty page, a short page, or
** after the page count), "cursor" (stop when the cursor is null/absent/""),
** "none" (one request), "auto" (decide from each envelope: a cursor, a page
** count, has_more, or a short page). Pages are finished in the order they
** were requested. A cursor or a first record seen before raises nothing
** here: `learn` and `first` answer with a code the driver turns into an
** error object, so the driver can attach the request it belongs to.
*/
#include <stdlib.h>
#include <string.h>

#include "cv.h"

#define PAGING_MT  "converse.cv_paging"

enum { S_PAGE, S_CURSOR, S_NONE, S_AUTO };

/* A set of byte strings: cursors and first-record fingerprints seen. */
typedef struct cv_strset {
  char    **item;
  size_t   *len;
  size_t    n, cap;           /* cap is a power of two (or 0) */
} cv_strset;

typedef struct cv_paging {
  int        style, concurrency, has_total_field, short_stops, closed;
  long long  first_page, next_number, page_size, max_pages, total;   /* total 0 = unknown */
  long long  issued, finished;
  int        stopped;         /* no more requests */
  int        cursor_ready;    /* the next cursor is known */
  char      *cursor;          /* next cursor (NULL: none / first page) */
  size_t     cursor_len;
  int        last, more;      /* auto: the envelope of the oldest page said so */
  cv_strset     cursors, firsts;
} cv_paging;

/* ---- string set -------------------------------------------------------- */

static size_t hash_bytes(const char *s, size_t n) {
  size_t h = 1469598103934665603ULL, i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

static void set_free(cv_strset *s) {
  size_t i;
  for (i = 0; i < s->cap; i++) free(s->item[i]);
  free(s->item);
  free(s->len);
  memset(s, 0, sizeof *s);
}

/* 1 if present; else inserts it and returns 0; -1 when out of memory. */
static int set_add(cv_strset *s, const char *str, size_t n) {
  size_t i, mask;
  char *copy;
  if ((s->n + 1) * 2 > s->cap) {
    cv_strset g;
    size_t cap = s->cap ? s->cap * 2 : 16;
    g.item = (char **)calloc(cap, sizeof *g.item);
    g.len = (size_t *)calloc(cap, sizeof *g.len);
    if (g.item == NULL || g.len == NULL) { free(g.item); free(g.len); return -1; }
    g.cap = cap;
    g.n = 0;
    for (i = 0; i < s->cap; i++) {
      if (s->item[i] != NULL) {
        size_t j = hash_bytes(s->item[i], s->len[i]) & (cap - 1);
        while (g.item[j] != NULL) j = (j + 1) & (cap - 1);
        g.item[j] = s->item[i];
        g.len[j] = s->len[i];
        g.n++;
      }
    }
    free(s->item);
    free(s->len);
    *s = g;
  }
  mask = s->cap - 1;
  for (i = hash_bytes(str, n) & mask; s->item[i] != NULL; i = (i + 1) & mask)
    if (s->len[i] == n && memcmp(s->item[i], str, n) == 0) return 1;
  copy = (char *)malloc(n ? n : 1);
  if (copy == NULL) return -1;
  memcpy(copy, str, n);
  s->item[i] = copy;
  s->len[i] = n;
  s->n++;
  return 0;
}

/* ---- the machine ------------------------------------------------------- */

static cv_paging *check_paging(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  if (p->closed) cv_error_raise(L, "usage", "paging state is closed");
  return p;
}

static long long in_flight(const cv_paging *p) { return p->issued - p->finished; }

static int set_cursor(lua_State *L, cv_paging *p, const char *c, size_t n) {
  char *copy = (char *)malloc(n + 1);
  if (copy == NULL) return cv_error_oom(L, "in the paging state");
  memcpy(copy, c, n);
  copy[n] = '\0';
  free(p->cursor);
  p->cursor = copy;
  p->cursor_len = n;
  return 0;
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
      window = p->total ? p->concurrency
             : p->has_total_field ? 1      /* wait for the page count, don't guess */
             : (p->concurrency > 1 ? 2 : 1);  /* one page of prefetch */
      if (in_flight(p) >= window || (p->total && p->next_number > p->total)) return 0;
      p->issued++;
      break;
  }
  lua_pushliteral(L, "page");
  lua_pushinteger(L, (lua_Integer)p->next_number++);
  return 2;
}

/* ps:learn{ cursor=, total=, has_more=, bare= } for the oldest page in flight.
** Returns nil, or "REPEATED_CURSOR" when the cursor was seen before. */
static int paging_learn(lua_State *L) {
  cv_paging *p = check_paging(L);
  size_t n = 0;
  const char *c = NULL;
  int has_more = -1, bare;
  lua_Number total;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (cv_getfield(L, 2, "cursor") == LUA_TSTRING) c = lua_tolstring(L, -1, &n);
  if (c != NULL && n == 0) c = NULL;
  cv_getfield(L, 2, "total");
  total = lua_tonumber(L, -1);
  if (cv_getfield(L, 2, "has_more") == LUA_TBOOLEAN) has_more = lua_toboolean(L, -1);
  cv_getfield(L, 2, "bare");
  bare = lua_toboolean(L, -1);
  p->last = p->more = 0;
  if (p->style == S_CURSOR || (p->style == S_AUTO && c != NULL && has_more != 0)) {
    int seen;
    free(p->cursor);
    p->cursor = NULL;
    if (c == NULL) {
      if (p->style == S_CURSOR) p->stopped = 1;
      return 0;
    }
    seen = set_add(&p->cursors, c, n);
    if (seen < 0) return cv_error_oom(L, "in the paging state");
    if (seen) { lua_pushliteral(L, "REPEATED_CURSOR"); return 1; }
    set_cursor(L, p, c, n);
    p->cursor_ready = 1;
    return 0;
  }
  if (p->style == S_AUTO) {
    free(p->cursor);
    p->cursor = NULL;
  }
  if (total >= 1 && !p->total && (p->style == S_PAGE || p->style == S_AUTO))
    p->total = (long long)total;
  if (p->style == S_AUTO) {
    if (has_more == 0) p->last = 1;
    else if (has_more == 1) p->more = 1;
    else if (!(total >= 1) && bare) p->last = 1;   /* an envelope without paging: one page */
  }
  return 0;
}

/* ps:first(fingerprint) -> true when a page started with this record before */
static int paging_first(lua_State *L) {
  cv_paging *p = check_paging(L);
  size_t n;
  const char *fp = luaL_checklstring(L, 2, &n);
  int seen = set_add(&p->firsts, fp, n);
  if (seen < 0) return cv_error_oom(L, "in the paging state");
  lua_pushboolean(L, seen);
  return 1;
}

/* ps:finish(number_or_nil, count) -> true when iteration is over (drop the
** pages still in flight) */
static int paging_finish(lua_State *L) {
  cv_paging *p = check_paging(L);
  lua_Integer number = luaL_optinteger(L, 2, 0);
  lua_Integer count = luaL_checkinteger(L, 3);
  int shrt = p->short_stops && p->page_size > 0 && count < p->page_size;
  p->finished++;
  switch (p->style) {
    case S_PAGE:
      if (count == 0 || shrt || (p->total && number >= p->total)) p->stopped = 1;
      break;
    case S_NONE:
      p->stopped = 1;
      break;
    case S_AUTO:
      if (p->cursor == NULL && !p->more
          && (count == 0 || shrt || p->last || (p->total && number >= p->total)))
        p->stopped = 1;
      break;
    default:
      break;
  }
  if (p->max_pages && p->issued >= p->max_pages && in_flight(p) == 0) p->stopped = 1;
  lua_pushboolean(L, p->stopped);
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
  lua_pushinteger(L, (lua_Integer)p->issued);   lua_setfield(L, -2, "issued");
  lua_pushinteger(L, (lua_Integer)p->finished); lua_setfield(L, -2, "finished");
  if (p->total) { lua_pushinteger(L, (lua_Integer)p->total); lua_setfield(L, -2, "total"); }
  lua_pushboolean(L, p->stopped);               lua_setfield(L, -2, "stopped");
  if (p->cursor) { lua_pushlstring(L, p->cursor, p->cursor_len); lua_setfield(L, -2, "cursor"); }
  return 1;
}

static int paging_close(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  if (p->closed) return 0;
  p->closed = 1;
  free(p->cursor);
  p->cursor = NULL;
  set_free(&p->cursors);
  set_free(&p->firsts);
  return 0;
}

static int paging_tostring(lua_State *L) {
  cv_paging *p = (cv_paging *)luaL_checkudata(L, 1, PAGING_MT);
  lua_pushfstring(L, "converse.cv_paging (%d pages requested%s)", (int)p->issued,
                  p->stopped ? ", stopped" : "");
  return 1;
}

static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer dflt, lua_Integer min) {
  lua_Integer v = dflt;
  if (cv_getfield(L, 1, k) != LUA_TNIL) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n < (lua_Number)min || n != (lua_Number)(lua_Integer)n)
      cv_error_raise(L, "usage", "%s must be a whole number >= %d", k, (int)min);
    v = (lua_Integer)n;
  }
  lua_pop(L, 1);
  return v;
}

/* core.paging{ style=, first_page=, page_size=, short_stops=, concurrency=,
**              max_pages=, cursor=, total_field= } */
static int paging_new(lua_State *L) {
  static const char *const styles[] = { "page", "cursor", "none", "auto", NULL };
  cv_paging *p;
  int style;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  cv_getfield(L, 1, "style");
  style = luaL_checkoption(L, 2, "page", styles);
  lua_pop(L, 1);
  p = (cv_paging *)lua_newuserdatauv(L, sizeof *p, 0);                 /* 2 */
  memset(p, 0, sizeof *p);
  p->closed = 1;                               /* until fully set up */
  luaL_setmetatable(L, PAGING_MT);
  p->style = style;
  p->first_page = opt_int(L, "first_page", 1, -1000000000);
  p->next_number = p->first_page;
  p->page_size = opt_int(L, "page_size", 0, 0);
  p->concurrency = (int)opt_int(L, "concurrency", 2, 1);
  p->max_pages = opt_int(L, "max_pages", 0, 0);
  cv_getfield(L, 1, "short_stops");
  p->short_stops = lua_toboolean(L, -1);
  cv_getfield(L, 1, "total_field");
  p->has_total_field = lua_toboolean(L, -1);
  lua_pop(L, 2);
  p->cursor_ready = 1;
  p->closed = 0;
  if (cv_getfield(L, 1, "cursor") == LUA_TSTRING) {
    size_t n;
    const char *c = lua_tolstring(L, -1, &n);
    set_cursor(L, p, c, n);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  return 1;
}

static const luaL_Reg paging_methods[] = {
  {"want",    paging_want},
  {"learn",   paging_learn},
  {"first",   paging_first},
  {"finish",  paging_finish},
  {"stop",    paging_stop},
  {"state",   paging_state},
  {"close",   paging_close},
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
