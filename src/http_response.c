/*
** http_response.c -- one HTTP/1.1 response read from a byte stream, for a
** transport that moves the bytes itself (the nginx cosocket transport) and
** for fixtures and specs that feed bytes with no socket at all.
**
**   local r = core.http_response{ method =, decoder =, max_body =, max_error_body = }
**   while r:wants() do r:feed(sock:receiveany(65536)) end   -- or r:eof()
**
** A Response joins the framing parser (http.c), the body sink (body.c:
** gzip/deflate, routing, back-pressure) and, for a 2xx body, the streaming
** decoder. It is sans I/O: the caller reads the socket when wants() says
** so, and hands failures of its own (timeouts, resets) to nobody here: it
** reports them itself once next() asks for bytes it cannot get.
**
** Invariants:
** - Work per call is bounded: at most STEP wire bytes parsed per pass,
**   PUMP_LIMIT bytes inflated per call, one record decoded per next().
** - Memory is bounded: the caller feeds only while wants() is true, which
**   it is only when every fed byte was used and the body takes more
**   (cv_body_accepts); so `in` holds at most one fed chunk, the decoder
**   about HIGH_WATER (body.c) plus a record, an error body max_error_body.
** - complete() is true only when the framing parser read the whole
**   response, the connection may stay open (no Connection: close, no body
**   delimited by the close, no second framing) and no byte came after it:
**   only then may the connection go back to a keep-alive pool.
** - Nothing raises except the decoder's JSON errors from next(), usage
**   errors and the out-of-memory error; malloc'd memory belongs to the
**   userdata (__gc and __close share one close, safe twice).
*/
#include <string.h>

#include "cv.h"

#define RESPONSE_MT      "converse.HttpResponse"
#define STEP             ((size_t)64 << 10)    /* wire bytes parsed per pass */
#define PUMP_LIMIT       ((size_t)1 << 20)     /* inflated bytes per call */
#define ERROR_BODY_CAP   ((size_t)64 << 10)    /* default max_error_body */

typedef struct cv_response {
  cv_http     http;
  cv_body     body;
  cv_decoder *dec;              /* for a 2xx body; NULL: keep it as text */
  int         dec_ref;
  cv_buf      in;               /* fed bytes not parsed yet: in.p[pos, in.len) */
  size_t      pos;
  size_t      max_body, max_error_body;
  int         open, head_done, peer_closed, extra, eof_sent;
  uint64_t    wire;             /* every byte fed */
} cv_response;

static int is_2xx(const cv_response *r) { return r->http.status >= 200 && r->http.status < 300; }

static cv_response *check_response(lua_State *L) {
  cv_response *r = (cv_response *)luaL_checkudata(L, 1, RESPONSE_MT);
  if (!r->open) cv_error_raise(L, "usage", "response is closed");
  return r;
}

/* ---- moving bytes (no Lua) --------------------------------------------- */

static void start_body(cv_response *r) {
  int ok = is_2xx(r);
  r->head_done = 1;
  cv_body_init(&r->body, ok ? r->dec : NULL, !ok, ok ? r->max_body : r->max_error_body,
               r->http.encoding);
}

/* Parse buffered bytes into the body while it takes them, then inflate
** held bytes (at most `limit` out). Returns whether anything moved. */
static int step(cv_response *r, size_t limit) {
  int moved = 0;
  for (;;) {
    cv_http_event ev;
    size_t avail = r->in.len - r->pos, used;
    const char *p = r->in.p != NULL ? r->in.p + r->pos : "";
    if (cv_http_finished(&r->http)) break;
    if (r->head_done && !cv_body_accepts(&r->body)) break;
    used = cv_http_parse(&r->http, p, avail < STEP ? avail : STEP, &ev);
    r->pos += used;
    if (used > 0) moved = 1;
    if (ev.type == CV_HTTP_NEED_DATA) {
      if (r->pos < r->in.len) continue;               /* STEP cut the input */
      if (!r->peer_closed) break;
      if (cv_http_eof(&r->http) == CV_HTTP_DONE) moved = 1;
      break;
    }
    moved = 1;
    if (ev.type == CV_HTTP_HEAD) start_body(r);
    else if (ev.type == CV_HTTP_BODY) cv_body_write(&r->body, ev.p, ev.n, limit);
    else if (ev.type == CV_HTTP_DONE) { if (r->pos < r->in.len) r->extra = 1; break; }
    else if (ev.type == CV_HTTP_ERROR) break;
  }
  if (r->pos == r->in.len) r->in.len = r->pos = 0;
  if (r->head_done && cv_body_pump(&r->body, limit) > 0) moved = 1;
  return moved;
}

static int http_done(const cv_response *r) {
  return cv_http_finished(&r->http) && r->http.error == NULL;
}

/* Should the caller read more bytes? */
static int wants(const cv_response *r) {
  if (!r->open || r->peer_closed || cv_http_finished(&r->http)) return 0;
  if (r->pos < r->in.len) return 0;
  return !r->head_done || cv_body_accepts(&r->body);
}

/* The wire body ended: inflate what is held and tell the decoder. */
static void settle(cv_response *r) {
  int st;
  if (!http_done(r) || r->eof_sent) return;
  st = cv_body_finish(&r->body, PUMP_LIMIT);
  if (st == CV_BODY_PENDING) return;
  if (st == CV_BODY_OK && r->body.dec != NULL) cv_decoder_eof(r->body.dec);
  r->eof_sent = 1;
}

/* ---- failures ---------------------------------------------------------- */

static int push_http_failure(lua_State *L, const cv_response *r) {
  return cv_push_failure(L, "network", r->http.error, r->http.permanent);
}

/* ---- Lua methods ------------------------------------------------------- */

/* r:feed(bytes): take every byte (feed only while wants() says so). */
static int response_feed(lua_State *L) {
  cv_response *r = check_response(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (r->peer_closed) return cv_error_raise(L, "usage", "feed after eof");
  if (r->pos > 0 && r->in.cap - r->in.len < n) {    /* compact first */
    memmove(r->in.p, r->in.p + r->pos, r->in.len - r->pos);
    r->in.len -= r->pos;
    r->pos = 0;
  }
  if (cv_buf_add(&r->in, s, n) != 0) return cv_error_oom(L, "reading the response");
  r->wire += n;
  step(r, PUMP_LIMIT);
  return 0;
}

/* r:eof(): the peer closed the connection. */
static int response_eof(lua_State *L) {
  cv_response *r = check_response(L);
  r->peer_closed = 1;
  step(r, PUMP_LIMIT);
  return 0;
}

/* r:wants() -> true when the caller should read more bytes (does the
** pending bounded work first). */
static int response_wants(lua_State *L) {
  cv_response *r = check_response(L);
  step(r, PUMP_LIMIT);
  lua_pushboolean(L, wants(r));
  return 1;
}

/* Push the head's fields as a table: names in lower case, repeats joined. */
static void push_fields(lua_State *L, const cv_buf *f) {
  const char *p = f->p, *end = f->p ? f->p + f->len : NULL;
  lua_newtable(L);
  while (p != NULL && p < end) {
    const char *nl = (const char *)memchr(p, '\n', (size_t)(end - p));
    const char *colon = (const char *)memchr(p, ':', (size_t)(nl - p));
    lua_pushlstring(L, p, (size_t)(colon - p));
    lua_pushvalue(L, -1);
    if (cv_rawget(L, -3) == LUA_TSTRING) {            /* repeated: join */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, colon + 2, (size_t)(nl - colon) - 2);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, colon + 2, (size_t)(nl - colon) - 2);
    }
    lua_rawset(L, -3);
    p = nl + 1;
  }
}

/* r:head() -> status, headers | false (not read yet) | nil, kind, message, permanent */
static int response_head(lua_State *L) {
  cv_response *r = check_response(L);
  step(r, PUMP_LIMIT);
  if (!r->head_done) {
    if (r->http.error != NULL) return push_http_failure(L, r);
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushinteger(L, r->http.status);
  push_fields(L, &r->http.fields);
  return 2;
}

/* r:next([skip]) -> record | true (skipped) | nil (no more) | core.EMPTY
**                 | false (give me bytes) | nil, kind, message, permanent
** Records already decoded come out before a framing or body failure is
** reported, however the bytes were split (fuzz/http_response_fuzz.c). */
static int response_next(lua_State *L) {
  cv_response *r = check_response(L);
  int skip = lua_toboolean(L, 2);
  step(r, PUMP_LIMIT);
  if (!r->head_done) {
    if (r->http.error != NULL) return push_http_failure(L, r);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!is_2xx(r) || r->dec == NULL) { lua_pushnil(L); return 1; }
  for (;;) {
    int moved = step(r, PUMP_LIMIT), bs;
    settle(r);
    bs = r->body.state;
    if (bs == CV_BODY_OK && r->eof_sent && r->body.decoded == 0) { cv_push_empty(L); return 1; }
    if (cv_body_next(L, &r->body, skip) != CV_DEC_MORE) return 1;
    if (bs != CV_BODY_OK && bs != CV_BODY_DECODER)    /* records first, then why no more */
      return cv_body_push_failure(L, &r->body);
    if (moved || cv_body_pump(&r->body, PUMP_LIMIT) > 0) continue;
    if (http_done(r) && !r->eof_sent) continue;
    if (r->http.error != NULL) return push_http_failure(L, r);
    lua_pushboolean(L, 0);
    return 1;
  }
}

/* r:text([now]) -> the body as text | false (more to come) | nil, kind, message, permanent
** A 2xx body without decoder (up to max_body), or the first max_error_body
** bytes of an error body; `now`: whatever arrived so far will do. */
static int response_text(lua_State *L) {
  cv_response *r = check_response(L);
  int now = lua_toboolean(L, 2), st;
  step(r, PUMP_LIMIT);
  if (!r->head_done) {
    if (r->http.error != NULL) return push_http_failure(L, r);
    lua_pushboolean(L, 0);
    return 1;
  }
  st = r->body.state;
  if (st == CV_BODY_OK) {
    if (http_done(r)) {
      st = cv_body_finish(&r->body, PUMP_LIMIT);
      if (st == CV_BODY_PENDING && !now) { lua_pushboolean(L, 0); return 1; }
    } else if (r->http.error != NULL) {
      return push_http_failure(L, r);
    } else if (!now) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  if (st == CV_BODY_OOM || st == CV_BODY_TOO_BIG
      || (is_2xx(r) && (st == CV_BODY_BAD_ENCODING || st == CV_BODY_TRUNCATED_ENCODING)))
    return cv_body_push_failure(L, &r->body);
  lua_pushlstring(L, r->body.text.p ? r->body.text.p : "", r->body.text.len);
  return 1;
}

/* r:envelope() -> the fields around the records */
static int response_envelope(lua_State *L) {
  cv_response *r = check_response(L);
  if (r->dec == NULL) { lua_newtable(L); return 1; }
  cv_decoder_push_envelope(L, r->dec);
  return 1;
}

/* r:complete() -> true when the response was read completely and the
** connection may carry another request (keep-alive) */
static int response_complete(lua_State *L) {
  cv_response *r = check_response(L);
  lua_pushboolean(L, http_done(r) && r->http.keep_alive && !r->extra && !r->peer_closed
                     && r->pos == r->in.len);
  return 1;
}

/* r:state() -> "head" | "body" | "done" | "failed" (framing only) */
static int response_state(lua_State *L) {
  cv_response *r = check_response(L);
  if (r->http.error != NULL) lua_pushliteral(L, "failed");
  else if (cv_http_finished(&r->http)) lua_pushliteral(L, "done");
  else if (r->head_done) lua_pushliteral(L, "body");
  else lua_pushliteral(L, "head");
  return 1;
}

/* r:info() -> { status, bytes, wire, count, http_version, done, keep_alive } */
static int response_info(lua_State *L) {
  cv_response *r = check_response(L);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, r->http.status);              lua_setfield(L, -2, "status");
  lua_pushnumber(L, (lua_Number)r->body.wire);     lua_setfield(L, -2, "bytes");
  lua_pushnumber(L, (lua_Number)r->wire);          lua_setfield(L, -2, "wire");
  lua_pushnumber(L, r->dec ? (lua_Number)cv_decoder_count(r->dec) : 0);
  lua_setfield(L, -2, "count");
  /* CURL_HTTP_VERSION_1_0 = 1, _1_1 = 2: what converse.request maps */
  lua_pushinteger(L, r->head_done ? (r->http.minor == 0 ? 1 : 2) : 0);
  lua_setfield(L, -2, "http_version");
  lua_pushboolean(L, cv_http_finished(&r->http));  lua_setfield(L, -2, "done");
  lua_pushboolean(L, r->http.keep_alive);          lua_setfield(L, -2, "keep_alive");
  return 1;
}

static int response_close(lua_State *L) {
  cv_response *r = (cv_response *)luaL_checkudata(L, 1, RESPONSE_MT);
  if (r->open) {
    r->open = 0;
    cv_http_free(&r->http);
    cv_body_free(&r->body);
    cv_buf_free(&r->in);
    r->pos = 0;
    if (r->dec != NULL) cv_decoder_trim(r->dec);
    r->dec = NULL;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, r->dec_ref);     /* no-op on LUA_NOREF */
  r->dec_ref = LUA_NOREF;
  return 0;
}

static int response_tostring(lua_State *L) {
  cv_response *r = (cv_response *)luaL_checkudata(L, 1, RESPONSE_MT);
  if (!r->open) lua_pushliteral(L, "converse.HttpResponse (closed)");
  else lua_pushfstring(L, "converse.HttpResponse (%d, %s)", r->http.status,
                       r->http.error ? "failed" : cv_http_finished(&r->http) ? "done"
                       : r->head_done ? "body" : "head");
  return 1;
}

/* core.http_response{ method =, decoder =, max_body =, max_error_body = } */
static int response_new(lua_State *L) {
  cv_response *r;
  int head;
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  cv_getfield(L, 1, "method");
  head = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "HEAD") == 0;
  lua_pop(L, 1);
  r = (cv_response *)lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);                  /* closed until set up */
  r->dec_ref = LUA_NOREF;
  luaL_setmetatable(L, RESPONSE_MT);
  r->max_body = cv_opt_size(L, 1, "max_body", (size_t)256 << 20);
  r->max_error_body = cv_opt_size(L, 1, "max_error_body", ERROR_BODY_CAP);
  if (cv_getfield(L, 1, "decoder") != LUA_TNIL) {
    r->dec = cv_decoder_check(L, -1);
    r->dec_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  cv_http_init(&r->http, head);
  cv_body_init(&r->body, NULL, 0, 0, CV_ENC_IDENTITY);
  r->open = 1;
  return 1;
}

/* ---- core.http_parse: the raw events, for fixtures ------------------------- */

/* Append event `ev` to the array at stack index `list` (absolute) as its i-th. */
static void push_event(lua_State *L, int list, const cv_http *h, const cv_http_event *ev, int i) {
  static const char *const names[] = { "need_data", "info", "head", "body", "done", "error" };
  lua_createtable(L, 0, 4);
  lua_pushstring(L, names[ev->type]);
  lua_setfield(L, -2, "type");
  if (ev->type == CV_HTTP_INFO || ev->type == CV_HTTP_HEAD) {
    lua_pushinteger(L, h->status);
    lua_setfield(L, -2, "status");
  }
  if (ev->type == CV_HTTP_HEAD) {
    push_fields(L, &h->fields);
    lua_setfield(L, -2, "headers");
    lua_pushboolean(L, h->keep_alive);
    lua_setfield(L, -2, "keep_alive");
  }
  if (ev->type == CV_HTTP_BODY) {
    lua_pushlstring(L, ev->p, ev->n);
    lua_setfield(L, -2, "data");
  }
  if (ev->type == CV_HTTP_DONE) {
    lua_pushboolean(L, h->keep_alive);
    lua_setfield(L, -2, "keep_alive");
  }
  if (ev->type == CV_HTTP_ERROR) {
    lua_pushstring(L, h->error);
    lua_setfield(L, -2, "error");
  }
  lua_rawseti(L, list, i);
}

/* core.http_parse(chunks [, opts]) -> { {type=, status=, headers=, data=, error=}, ... }
** Feeds each string of `chunks` to a fresh parser (opts.method, opts.eof:
** the peer closes after the last chunk) and lists every event but need_data. */
static int http_parse(lua_State *L) {
  cv_response *r;
  int i, n, k = 0, head = 0, eof = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_istable(L, 2)) {
    cv_getfield(L, 2, "method");
    head = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "HEAD") == 0;
    cv_getfield(L, 2, "eof");
    eof = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
  n = (int)lua_rawlen(L, 1);
  for (i = 1; i <= n; i++) {                           /* nothing raises once parsing starts */
    if (cv_rawgeti(L, 1, i) != LUA_TSTRING) return luaL_argerror(L, 1, "strings expected");
    lua_pop(L, 1);
  }
  r = (cv_response *)lua_newuserdatauv(L, sizeof *r, 0);   /* 2: owns the parser's memory */
  memset(r, 0, sizeof *r);
  r->dec_ref = LUA_NOREF;
  luaL_setmetatable(L, RESPONSE_MT);
  cv_http_init(&r->http, head);
  r->open = 1;
  lua_newtable(L);                                     /* 3: events */
  for (i = 1; i <= n && !cv_http_finished(&r->http); i++) {
    size_t len, off = 0;
    const char *s;
    lua_rawgeti(L, 1, i);
    s = lua_tolstring(L, -1, &len);
    for (;;) {
      cv_http_event ev;
      off += cv_http_parse(&r->http, s + off, len - off, &ev);
      if (ev.type == CV_HTTP_NEED_DATA) break;
      push_event(L, 3, &r->http, &ev, ++k);
      if (ev.type == CV_HTTP_DONE || ev.type == CV_HTTP_ERROR) break;
    }
    lua_pop(L, 1);
  }
  if (eof && !cv_http_finished(&r->http)) {
    cv_http_event ev = { 0, NULL, 0 };
    ev.type = cv_http_eof(&r->http);
    push_event(L, 3, &r->http, &ev, ++k);
  }
  return 1;
}

static const luaL_Reg response_methods[] = {
  {"feed",      response_feed},
  {"eof",       response_eof},
  {"wants",     response_wants},
  {"head",      response_head},
  {"next",      response_next},
  {"text",      response_text},
  {"envelope",  response_envelope},
  {"complete",  response_complete},
  {"state",     response_state},
  {"info",      response_info},
  {"close",     response_close},
  {NULL, NULL}
};

static const luaL_Reg response_meta[] = {
  {"__gc",       response_close},
  {"__close",    response_close},
  {"__tostring", response_tostring},
  {NULL, NULL}
};

void cv_http_open(lua_State *L) {
  cv_class(L, RESPONSE_MT, response_meta, response_methods);
  lua_pushcfunction(L, response_new);
  lua_setfield(L, -2, "http_response");
  lua_pushcfunction(L, http_parse);
  lua_setfield(L, -2, "http_parse");
}
