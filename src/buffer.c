/*
** buffer.c -- the one growable byte buffer of the C core (cv_buf), in the
** manner of lua-cjson's strbuf, and the one out-of-memory error.
**
** A cv_buf is plain memory: {p, len, cap}. The functions here never raise;
** they answer 0 or -1 (out of memory, the buffer unchanged), so they are
** safe inside libcurl callbacks. Where a buffer must not leak when a Lua
** error unwinds the C stack, box it: cv_buf_box() pushes a userdata that
** owns the buffer and frees it from __gc (Lua's liolib.c "boxed" idiom).
*/
#include <stdlib.h>
#include <string.h>

#include "cv.h"

#define BOX_MT        "converse.Buffer"
#define MIN_CAPACITY  256

int cv_buf_grow(cv_buf *b, size_t extra) {
  size_t cap, need;
  char *p;
  if (b->cap - b->len >= extra) return 0;
  if (extra > (size_t)-1 - b->len) return -1;
  need = b->len + extra;
  cap = b->cap ? b->cap : MIN_CAPACITY;
  while (cap < need) cap = cap > (size_t)-1 / 2 ? need : cap * 2;
  p = (char *)realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

int cv_buf_add(cv_buf *b, const char *p, size_t n) {
  if (n == 0) return 0;                    /* p may be NULL then */
  if (cv_buf_reserve(b, n) != 0) return -1;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

void cv_buf_free(cv_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

static int box_gc(lua_State *L) {
  cv_buf_free((cv_buf *)luaL_checkudata(L, 1, BOX_MT));
  return 0;
}

cv_buf *cv_buf_box(lua_State *L) {
  cv_buf *b = (cv_buf *)lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, BOX_MT);
  return b;
}

int cv_error_oom(lua_State *L, const char *what) {
  lua_pushfstring(L, "out of memory %s", what);
  cv_error_push(L, "json", lua_tostring(L, -1));
  lua_pushliteral(L, CV_CODE_OOM);
  lua_setfield(L, -2, "code");
  lua_error(L);
  CV_UNREACHABLE();
}

void cv_buf_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc",  box_gc},
    {NULL, NULL}
  };
  luaL_newmetatable(L, BOX_MT);
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
}
